//! When FRR did something, from its own log: the router's side of a
//! failover, timed by the router itself.
//!
//! [`Frr::log_events`](crate::Frr::log_events) turns on microsecond log
//! timestamps, `log stdout debugging` (each daemon's stdout is its process
//! log in the lab) and `debug bfd peer`, so bfdd logs every session state
//! change and bgpd every neighbour change (`%ADJCHANGE`). This module finds,
//! in such a log, the first line about one peer that matches, and reads its
//! timestamp. FRR prints local time; the lab starts FRR with `TZ=UTC0`, so
//! the stamps are UTC.
//!
//! Owns only the parsing; never touches a daemon.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// The FRR configuration that makes the router log the events read here.
pub const EVENT_LOG_CONFIG: &str =
    "log timestamp precision 6\nlog stdout debugging\ndebug bfd peer\ndebug bgp neighbor-events\n";

/// What a router logs about one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterEvent {
    /// bfdd: the BFD session went from Up to Down
    /// (`state-change: [mhop:no peer:ADDR ...] up -> down reason:...`).
    BfdDown,
    /// bgpd: the BGP session left Established (`debug bgp neighbor-events`:
    /// `ADDR went from Established to ...`; or, with `bgp
    /// log-neighbor-changes`, `%ADJCHANGE: neighbor ADDR... Down ...`).
    BgpDown,
}

impl RouterEvent {
    /// The daemon that logs this event.
    pub fn daemon(self) -> &'static str {
        match self {
            RouterEvent::BfdDown => "bfdd",
            RouterEvent::BgpDown => "bgpd",
        }
    }

    fn matches(self, line: &str, peer: &str) -> bool {
        match self {
            RouterEvent::BfdDown => {
                line.contains("state-change:")
                    && mentions(line, &format!("peer:{peer}"))
                    && line.contains("-> down")
            }
            RouterEvent::BgpDown => {
                let fsm = line.contains(" went from Established to ")
                    && mentions(line, &format!("] {peer}"));
                let adjacency = line.contains("ADJCHANGE: neighbor")
                    && mentions(line, &format!("neighbor {peer}"))
                    && line.contains(" Down");
                fsm || adjacency
            }
        }
    }
}

/// `needle` occurs in `line` and is not the start of a longer address
/// (`192.0.2.1` must not match `192.0.2.11`).
fn mentions(line: &str, needle: &str) -> bool {
    line.match_indices(needle).any(|(at, _)| {
        !line[at + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_hexdigit() || c == '.' || c == ':')
    })
}

/// The time of the first line in `log` that records `event` for `peer` at
/// or after `after`.
pub fn first_event(
    log: &str,
    event: RouterEvent,
    peer: IpAddr,
    after: SystemTime,
) -> Option<SystemTime> {
    let peer = peer.to_string();
    log.lines()
        .filter(|line| event.matches(line, &peer))
        .filter_map(stamp)
        .find(|at| *at >= after)
}

/// The timestamp that opens an FRR log line: `2026/11/21 12:11:59.306017`
/// (UTC, see the module doc), or `None` if the line has none.
pub fn stamp(line: &str) -> Option<SystemTime> {
    let (date, rest) = line.split_once(' ')?;
    let time = rest.split_whitespace().next()?;
    let mut ymd = date.split('/').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    if ymd.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = clock.split(':').map(|p| p.parse::<u64>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    if fraction.is_empty() || fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos = fraction.parse::<u32>().ok()? * 10u32.pow(9 - fraction.len() as u32);
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the well-known
/// era-based conversion).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64, micros: u32) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(seconds, micros * 1000)
    }

    const LOG: &str = "\
2026/11/21 12:11:59.306017 BFD: [PSB4R-8T1TJ] session-new: mhop:no peer:192.0.2.11 local:0.0.0.0 vrf:default
2026/11/21 12:12:03.000100 BFD: [SEY1D-NT8EQ] state-change: [mhop:no peer:192.0.2.11 local:192.0.2.1 vrf:default ifname:eth1] down -> up reason:none
2026/11/21 12:12:09.500250 BFD: [SEY1D-NT8EQ] state-change: [mhop:no peer:192.0.2.12 local:192.0.2.1 vrf:default ifname:eth2] up -> down reason:control-expired
2026/11/21 12:12:09.731000 BFD: [SEY1D-NT8EQ] state-change: [mhop:no peer:192.0.2.11 local:192.0.2.1 vrf:default ifname:eth1] up -> down reason:control-expired
2026/11/21 12:12:09.735000 BGP: [ZQHFG-DQGX1] 192.0.2.12 went from Established to Clearing
2026/11/21 12:12:09.740000 BGP: [ZQHFG-DQGX1] 192.0.2.11 went from Established to Clearing
2026/11/21 12:12:09.740001 BGP: [M59KS-A3ZXZ] %ADJCHANGE: neighbor 192.0.2.11(n1) in vrf default Down BFD down received
";

    #[test]
    fn a_stamp_is_read_as_utc_with_its_microseconds() {
        // 2026-11-21T12:11:59Z is 1,795,263,119 s after the epoch.
        assert_eq!(
            stamp("2026/11/21 12:11:59.306017 BFD: x"),
            Some(at(1_795_263_119, 306_017))
        );
        assert_eq!(stamp("1970/01/01 00:00:00.000001 x"), Some(at(0, 1)));
        assert_eq!(stamp("2000/03/01 00:00:00 x"), Some(at(951_868_800, 0)));
    }

    #[test]
    fn lines_without_a_stamp_are_skipped() {
        for line in [
            "",
            "BFD: no stamp",
            "2026/13/01 00:00:00.1 x",
            "2026/11/21 25:00:00.1 x",
            "2026/11/21 12:00:00.x x",
            "2026/11/21/3 12:00:00.1 x",
        ] {
            assert_eq!(stamp(line), None, "{line}");
        }
    }

    #[test]
    fn the_first_bfd_down_of_that_peer_after_the_fault_is_found() {
        let peer: IpAddr = "192.0.2.11".parse().unwrap();
        let fault = at(1_795_263_129, 0); // 12:12:09
        assert_eq!(
            first_event(LOG, RouterEvent::BfdDown, peer, fault),
            Some(at(1_795_263_129, 731_000))
        );
        assert_eq!(
            first_event(LOG, RouterEvent::BgpDown, peer, fault),
            Some(at(1_795_263_129, 740_000))
        );
    }

    #[test]
    fn a_neighbour_change_line_alone_also_counts_as_bgp_down() {
        let log = "2026/11/21 12:12:09.740001 BGP: [M59KS-A3ZXZ] %ADJCHANGE: neighbor \
                   192.0.2.11(n1) in vrf default Down BFD down received";
        let peer: IpAddr = "192.0.2.11".parse().unwrap();
        assert_eq!(
            first_event(log, RouterEvent::BgpDown, peer, at(0, 0)),
            Some(at(1_795_263_129, 740_001))
        );
    }

    #[test]
    fn another_peer_an_up_transition_and_earlier_lines_do_not_count() {
        // 192.0.2.1 is a prefix of 192.0.2.11 and 192.0.2.12.
        let short: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            first_event(LOG, RouterEvent::BfdDown, short, at(0, 0)),
            None
        );
        let peer: IpAddr = "192.0.2.11".parse().unwrap();
        let late = at(1_795_263_130, 0);
        assert_eq!(first_event(LOG, RouterEvent::BfdDown, peer, late), None);
    }
}
