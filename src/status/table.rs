//! `herald status` output: the report as aligned text tables, one section per
//! part (think `birdc show protocols`).

use std::fmt::Write;

use super::{BfdState, BgpState, PeerStatus, StatusReport};

/// Renders `report`, with ages measured from `now` (Unix seconds).
pub(super) fn render(report: &StatusReport, now: u64) -> String {
    let mut out = String::new();
    let config = &report.config;
    let router_id = config
        .router_id
        .map_or_else(|| "node address".to_string(), |id| id.to_string());
    let _ = writeln!(
        out,
        "herald {} on {}: AS {}, router id {}, interface {}, up {}",
        report.version,
        report.node_name,
        config.asn,
        router_id,
        config.interface,
        age(Some(report.started_at), now),
    );
    if let Some(drain) = &report.drain {
        let left = drain
            .seconds_left
            .map_or(String::new(), |s| format!(", withdrawing in {s}s"));
        let _ = writeln!(
            out,
            "DRAINING ({}): {}{left}",
            drain.trigger.replace('_', " "),
            drain.phase.replace('_', " "),
        );
    }
    if let Some(election) = &report.leader_election {
        let _ = match (&election.leader, election.leading) {
            (_, true) => writeln!(out, "allocation: this pod leads ({})", election.identity),
            (Some(leader), false) => writeln!(
                out,
                "allocation: {leader} leads; this pod ({}) follows",
                election.identity
            ),
            (None, false) => writeln!(
                out,
                "allocation: no leader; this pod ({}) is contending",
                election.identity
            ),
        };
    }

    section(&mut out, "Peers", {
        let mut table = Table::new(&[
            "NAME",
            "ADDRESS",
            "ASN",
            "STATE",
            "FOR",
            "HOLD",
            "PREFIXES",
            "BFD",
            "LAST ERROR",
        ]);
        for peer in &report.peers {
            table.row(vec![
                peer.name.clone(),
                peer.address.clone(),
                peer.asn.to_string(),
                format!("{:?}", peer.state),
                age(peer.since, now),
                peer.hold_time.map_or("-".to_string(), |s| format!("{s}s")),
                peer.prefixes_sent.to_string(),
                bfd_summary(report, &peer.name),
                last_error(peer, now),
            ]);
        }
        table
    });

    section(&mut out, "BFD sessions", {
        let mut table = Table::new(&[
            "PEER",
            "REMOTE",
            "LOCAL",
            "HOPS",
            "STATE",
            "REMOTE STATE",
            "SINCE",
            "TX",
            "DETECT",
            "DIAGNOSTIC",
        ]);
        for session in &report.bfd_sessions {
            table.row(vec![
                session.peer.clone(),
                session.remote_address.to_string(),
                session
                    .local_address
                    .map_or("-".to_string(), |a| a.to_string()),
                if session.multihop { "multi" } else { "single" }.to_string(),
                bfd_state(Some(session.state)),
                bfd_state(session.remote_state),
                age(session.since, now),
                micros(session.tx_interval_us),
                micros(session.detection_time_us),
                or_dash(&session.diagnostic),
            ]);
        }
        table
    });

    section(&mut out, "Announcements", {
        let mut table = Table::new(&[
            "ADDRESS",
            "SERVICE",
            "POOL",
            "WEIGHT",
            "ANNOUNCED TO",
            "REASON",
        ]);
        for announcement in &report.announcements {
            let to = if announcement.announced_to.is_empty() {
                "-".to_string()
            } else {
                announcement.announced_to.join(",")
            };
            table.row(vec![
                announcement.address.to_string(),
                announcement.service.clone(),
                or_dash(&announcement.pool),
                weight(announcement.weight, announcement.pending_weight),
                to,
                or_dash(&announcement.reason),
            ]);
        }
        table
    });

    section(&mut out, "Sources", {
        let mut table = Table::new(&["SOURCE", "HEALTHY", "LAST UPDATE", "DETAIL"]);
        for source in &report.sources {
            table.row(vec![
                source.name.clone(),
                if source.healthy { "yes" } else { "NO" }.to_string(),
                age(source.last_update, now),
                or_dash(&source.detail),
            ]);
        }
        table
    });
    if let Some(allocation) = &report.allocation {
        section(&mut out, "Allocation", {
            let mut table = Table::new(&["POOL", "SIZE", "IN USE", "LEADING"]);
            let leading = match (allocation.leading, allocation.synced) {
                (true, true) => "yes",
                (true, false) => "yes (listing)",
                (false, _) => "no",
            };
            for pool in &allocation.pools {
                table.row(vec![
                    pool.name.clone(),
                    pool.size.to_string(),
                    pool.in_use.to_string(),
                    leading.to_string(),
                ]);
            }
            table
        });
    }
    out
}

/// The weight column: the weight sent, and the one waiting for
/// `anti_flap.weight_delay` (`2->3`).
fn weight(sent: Option<u32>, pending: Option<u32>) -> String {
    match (sent, pending) {
        (Some(sent), Some(pending)) => format!("{sent}->{pending}"),
        (Some(sent), None) => sent.to_string(),
        (None, Some(pending)) => format!("-->{pending}"),
        (None, None) => "-".to_string(),
    }
}

fn section(out: &mut String, title: &str, table: Table) {
    let _ = writeln!(out, "\n{title}");
    if table.rows.is_empty() {
        let _ = writeln!(out, "  (none reported)");
    } else {
        out.push_str(&table.to_string());
    }
}

/// The BFD sessions guarding `peer` in one cell: state, transmit interval
/// and detection time ("Up tx 50ms detect 150ms"); "off" when there is none.
fn bfd_summary(report: &StatusReport, peer: &str) -> String {
    let cells: Vec<String> = report
        .bfd_sessions
        .iter()
        .filter(|session| session.peer == peer)
        .map(|session| {
            format!(
                "{:?} tx {} detect {}",
                session.state,
                micros(session.tx_interval_us),
                micros(session.detection_time_us)
            )
        })
        .collect();
    if cells.is_empty() {
        "off".to_string()
    } else {
        cells.join("; ")
    }
}

/// A peer's last error with its age; once the peer is Established again
/// after it, as history ("BFD down, 12s ago, now Established"), so that a
/// flap at start-up does not read as a current fault.
fn last_error(peer: &PeerStatus, now: u64) -> String {
    let Some(error) = &peer.last_error else {
        return "-".to_string();
    };
    let Some(at) = peer.last_error_at else {
        return error.clone();
    };
    let ago = age(Some(at), now);
    let recovered = peer.state == BgpState::Established && peer.since.is_some_and(|s| s >= at);
    if recovered {
        format!("{error}, {ago} ago, now Established")
    } else {
        format!("{error}, {ago} ago")
    }
}

fn or_dash(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "-".to_string())
}

fn bfd_state(state: Option<BfdState>) -> String {
    state.map_or("-".to_string(), |s| format!("{s:?}"))
}

fn micros(value: Option<u64>) -> String {
    match value {
        None => "-".to_string(),
        Some(us) if us % 1000 == 0 => format!("{}ms", us / 1000),
        Some(us) => format!("{}us", us),
    }
}

/// "3d4h", "2h5m", "5m3s", "42s" since `then`; "-" when unknown.
fn age(then: Option<u64>, now: u64) -> String {
    let Some(then) = then else {
        return "-".to_string();
    };
    let s = now.saturating_sub(then);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// Left-aligned columns two spaces apart, indented by two.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::from(" ");
            for (cell, width) in row.iter().zip(&widths) {
                line.push(' ');
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 1));
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::status::tests::peer;
    use crate::status::{
        AnnouncementStatus, BfdSessionStatus, BgpState, ConfigSummary, DrainStatus,
        LeaderElectionStatus, SourceStatus,
    };

    fn report() -> StatusReport {
        StatusReport {
            node_name: "node-a".to_string(),
            version: "0.1.0".to_string(),
            started_at: 1_000,
            config: ConfigSummary {
                asn: 64601,
                interface: "lo".to_string(),
                ..ConfigSummary::default()
            },
            peers: vec![peer("r1", BgpState::Established)],
            bfd_sessions: vec![],
            announcements: vec![AnnouncementStatus {
                address: "198.51.100.7".parse().unwrap(),
                service: "default/web".to_string(),
                pool: None,
                announced_to: vec![],
                reason: Some("outside every pool".to_string()),
                weight: None,
                pending_weight: None,
            }],
            sources: vec![SourceStatus {
                name: "kubernetes".to_string(),
                healthy: false,
                last_update: Some(1_000),
                detail: Some("watch failed: connection refused".to_string()),
            }],
            drain: None,
            leader_election: None,
            allocation: None,
        }
    }

    #[test]
    fn the_table_shows_every_section_with_aligned_columns() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000 + 3 * 60 + 5);
        let text = report().render(now);
        assert!(
            text.starts_with("herald 0.1.0 on node-a: AS 64601, router id node address"),
            "{text}"
        );
        assert!(text.contains("up 3m5s"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().position(|l| l.contains("NAME")).unwrap();
        let row = lines[header + 1];
        assert!(row.contains("r1") && row.contains("Established") && row.contains("9s"));
        // The STATE column starts at the same offset in header and row.
        assert_eq!(
            lines[header].find("STATE"),
            row.find("Established"),
            "{text}"
        );
        assert!(text.contains("BFD sessions\n  (none reported)"), "{text}");
        assert!(text.contains("198.51.100.7") && text.contains("outside every pool"));
        assert!(text.contains("kubernetes") && text.contains("NO"), "{text}");
    }

    /// A node with two peers (one up with BFD, one down), a BFD session,
    /// announced and refused addresses and a stale source.
    fn busy_report() -> StatusReport {
        let mut r2 = peer("r2", BgpState::Active);
        r2.address = "2001:db8::1".to_string();
        r2.since = Some(99_990);
        r2.hold_time = None;
        r2.prefixes_sent = 0;
        r2.last_error = Some("connection refused".to_string());
        StatusReport {
            node_name: "node-a".to_string(),
            version: "0.1.0".to_string(),
            started_at: 100_000 - 3 * 3600 - 120,
            config: ConfigSummary {
                asn: 64601,
                router_id: Some("192.0.2.11".parse().unwrap()),
                interface: "lo".to_string(),
                ..ConfigSummary::default()
            },
            peers: vec![peer("r1", BgpState::Established), r2],
            drain: None,
            leader_election: None,
            allocation: None,
            bfd_sessions: vec![BfdSessionStatus {
                peer: "r1".to_string(),
                local_address: Some("192.0.2.11".parse().unwrap()),
                remote_address: "192.0.2.1".parse().unwrap(),
                multihop: false,
                state: BfdState::Up,
                remote_state: Some(BfdState::Up),
                since: Some(1_000),
                tx_interval_us: Some(50_000),
                detection_time_us: Some(150_000),
                diagnostic: None,
            }],
            announcements: vec![
                AnnouncementStatus {
                    address: "203.0.113.10".parse().unwrap(),
                    service: "shop/web".to_string(),
                    pool: Some("public".to_string()),
                    announced_to: vec!["r1".to_string(), "r2".to_string()],
                    reason: None,
                    weight: Some(2),
                    pending_weight: Some(3),
                },
                AnnouncementStatus {
                    address: "203.0.113.11".parse().unwrap(),
                    service: "shop/api".to_string(),
                    pool: Some("public".to_string()),
                    announced_to: vec![],
                    reason: Some(
                        "no ready endpoint on this node (externalTrafficPolicy: Local)".to_string(),
                    ),
                    weight: None,
                    pending_weight: None,
                },
            ],
            sources: vec![SourceStatus {
                name: "kubernetes".to_string(),
                healthy: true,
                last_update: Some(99_998),
                detail: None,
            }],
        }
    }

    #[test]
    fn a_busy_node_renders_exactly_as_documented() {
        let text = busy_report().render(UNIX_EPOCH + Duration::from_secs(100_000));
        let expected = "\
herald 0.1.0 on node-a: AS 64601, router id 192.0.2.11, interface lo, up 3h2m

Peers
  NAME  ADDRESS      ASN    STATE        FOR   HOLD  PREFIXES  BFD                      LAST ERROR
  r1    192.0.2.1    64512  Established  1d3h  9s    2         Up tx 50ms detect 150ms  -
  r2    2001:db8::1  64512  Active       10s   -     0         off                      connection refused

BFD sessions
  PEER  REMOTE     LOCAL       HOPS    STATE  REMOTE STATE  SINCE  TX    DETECT  DIAGNOSTIC
  r1    192.0.2.1  192.0.2.11  single  Up     Up            1d3h   50ms  150ms   -

Announcements
  ADDRESS       SERVICE   POOL    WEIGHT  ANNOUNCED TO  REASON
  203.0.113.10  shop/web  public  2->3    r1,r2         -
  203.0.113.11  shop/api  public  -       -             no ready endpoint on this node (externalTrafficPolicy: Local)

Sources
  SOURCE      HEALTHY  LAST UPDATE  DETAIL
  kubernetes  yes      2s           -
";
        assert_eq!(text, expected, "got:\n{text}");
    }

    #[test]
    fn a_peer_with_two_bfd_sessions_shows_both_and_one_without_shows_off() {
        let mut report = busy_report();
        let mut v6 = report.bfd_sessions[0].clone();
        v6.remote_address = "2001:db8::1".parse().unwrap();
        v6.state = BfdState::Down;
        v6.tx_interval_us = Some(1_000_000);
        v6.detection_time_us = None;
        report.bfd_sessions.push(v6);
        assert_eq!(
            bfd_summary(&report, "r1"),
            "Up tx 50ms detect 150ms; Down tx 1000ms detect -"
        );
        assert_eq!(bfd_summary(&report, "r2"), "off");
    }

    #[test]
    fn a_drain_is_shown_under_the_header_line() {
        let mut report = busy_report();
        report.drain = Some(DrainStatus {
            phase: "graceful_shutdown".to_string(),
            trigger: "admin_request".to_string(),
            seconds_left: Some(12),
        });
        let text = report.render(UNIX_EPOCH + Duration::from_secs(100_000));
        assert_eq!(
            text.lines().nth(1),
            Some("DRAINING (admin request): graceful shutdown, withdrawing in 12s"),
            "{text}"
        );
        report.drain = Some(DrainStatus {
            phase: "withdrawn".to_string(),
            trigger: "sigterm".to_string(),
            seconds_left: None,
        });
        let text = report.render(UNIX_EPOCH + Duration::from_secs(100_000));
        assert_eq!(text.lines().nth(1), Some("DRAINING (sigterm): withdrawn"));
        report.drain = None;
        let text = report.render(UNIX_EPOCH + Duration::from_secs(100_000));
        assert_eq!(text.lines().nth(1), Some(""), "nothing while serving");
    }

    #[test]
    fn the_allocation_leader_is_shown_under_the_header_line() {
        let mut report = busy_report();
        let now = UNIX_EPOCH + Duration::from_secs(100_000);
        let line = |report: &StatusReport| report.render(now).lines().nth(1).unwrap().to_string();
        assert_eq!(line(&report), "", "nothing while allocation is off");
        report.leader_election = Some(LeaderElectionStatus {
            identity: "node-a/herald-1".to_string(),
            leader: Some("node-a/herald-1".to_string()),
            leading: true,
        });
        assert_eq!(
            line(&report),
            "allocation: this pod leads (node-a/herald-1)"
        );
        report.leader_election = Some(LeaderElectionStatus {
            identity: "node-a/herald-1".to_string(),
            leader: Some("node-b/herald-2".to_string()),
            leading: false,
        });
        assert_eq!(
            line(&report),
            "allocation: node-b/herald-2 leads; this pod (node-a/herald-1) follows"
        );
        report.leader_election = Some(LeaderElectionStatus {
            identity: "node-a/herald-1".to_string(),
            leader: None,
            leading: false,
        });
        assert_eq!(
            line(&report),
            "allocation: no leader; this pod (node-a/herald-1) is contending"
        );
    }

    #[test]
    fn a_last_error_carries_its_age_and_reads_as_history_once_established_again() {
        let now = 100_000;
        let mut peer = peer("r1", BgpState::Established);
        assert_eq!(last_error(&peer, now), "-");

        // Down now: the error is current.
        peer.state = BgpState::Active;
        peer.since = Some(now - 5);
        peer.last_error = Some("BFD down".to_string());
        peer.last_error_at = Some(now - 5);
        assert_eq!(last_error(&peer, now), "BFD down, 5s ago");

        // Established after it: history, not a fault.
        peer.state = BgpState::Established;
        peer.since = Some(now - 3);
        assert_eq!(last_error(&peer, now), "BFD down, 5s ago, now Established");

        // Established since before the error (the error came from a
        // connection collision, say): still current.
        peer.since = Some(now - 60);
        assert_eq!(last_error(&peer, now), "BFD down, 5s ago");

        // No time known (BIRD): the message alone.
        peer.last_error_at = None;
        assert_eq!(last_error(&peer, now), "BFD down");
    }

    #[test]
    fn ages_are_written_in_the_two_largest_units() {
        assert_eq!(age(Some(100), 142), "42s");
        assert_eq!(age(Some(0), 3 * 3600 + 120), "3h2m");
        assert_eq!(age(Some(0), 2 * 86400 + 3600), "2d1h");
        assert_eq!(age(None, 5), "-");
        assert_eq!(age(Some(10), 5), "0s");
        assert_eq!(micros(Some(150_000)), "150ms");
        assert_eq!(micros(Some(3_300)), "3300us");
    }
}
