//! Readers of BIRD's `show protocols all` and `show bfd sessions` replies,
//! and their mapping onto herald's `/status` rows.
//!
//! Owns: turning the text tables of a [`Reply`] into typed rows
//! ([`BirdProtocol`], [`BirdBfdSession`]) and those into
//! [`PeerStatus`] / [`BfdSessionStatus`]. Must not touch: the socket (the
//! speaker asks, this module reads), and the status board.
//!
//! The tables are written for people, not programs, so the readers are
//! lenient: a line they do not understand is skipped, never an error, and
//! they never panic on any reply (the fuzz target `bird_reply` feeds them
//! whatever the decoder accepts). Formats read, captured from BIRD 2.0.12:
//!
//! ```text
//! 1002-r1         BGP        ---        up     09:17:59.180  Established
//! 1006-  BGP state:          Established
//!      Neighbor address: 192.0.2.1
//!      Neighbor AS:      64512
//!      Hold timer:       8.208/9
//!      Last error:       Received: Administrative shutdown
//!      Routes:         0 imported, 1 exported, 0 preferred
//!
//! 1020-herald_bfd:
//!  IP address                Interface  State      Since         Interval  Timeout
//!  192.0.2.1                 eth1       Up         09:17:55.440    0.050    0.150
//! ```

use std::net::IpAddr;

use super::reply::{Reply, code};
use crate::status::{BfdSessionStatus, BfdState, BgpState, PeerStatus};

/// One row of `show protocols all`, with the BGP details when it is a BGP
/// protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BirdProtocol {
    pub name: String,
    /// `BGP`, `Static`, `BFD`, `Device`, ...
    pub proto: String,
    pub table: String,
    /// BIRD's protocol state: `up`, `start`, `down`, `flush`.
    pub state: String,
    /// The Info column (`Established`, `Active  Socket: ...`).
    pub info: String,
    pub bgp: Option<BgpDetails>,
}

/// What `show protocols all` says about one BGP protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpDetails {
    pub state: Option<BgpState>,
    pub neighbor_address: Option<IpAddr>,
    pub neighbor_as: Option<u32>,
    pub local_as: Option<u32>,
    /// The negotiated hold time (`Hold timer: 8.208/9` -> 9).
    pub hold_time: Option<u16>,
    /// Routes exported to the neighbour, summed over the channels.
    pub routes_exported: u64,
    pub last_error: Option<String>,
    /// Channels in state UP, as herald names families (`ipv4_unicast`,
    /// `ipv6_unicast`).
    pub families: Vec<String>,
}

/// One row of `show bfd sessions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BirdBfdSession {
    /// The BFD protocol instance that owns it.
    pub protocol: String,
    pub address: IpAddr,
    /// `None` for a multihop session (no interface).
    pub interface: Option<String>,
    pub state: BfdState,
    /// The transmit interval in force, in microseconds.
    pub interval_us: Option<u64>,
    /// The detection time in force, in microseconds.
    pub timeout_us: Option<u64>,
}

/// Reads every protocol of a `show protocols [all]` reply.
pub fn protocols(reply: &Reply) -> Vec<BirdProtocol> {
    let mut out: Vec<BirdProtocol> = Vec::new();
    // The channel whose lines are being read (`Channel ipv4`).
    let mut channel: Option<String> = None;
    for line in &reply.lines {
        match line.code {
            code::PROTOCOL_LIST => {
                channel = None;
                if let Some(protocol) = protocol_row(&line.text) {
                    out.push(protocol);
                }
            }
            code::PROTOCOL_DETAILS => {
                if let Some(protocol) = out.last_mut() {
                    protocol_detail(protocol, &mut channel, &line.text);
                }
            }
            _ => {}
        }
    }
    out
}

fn protocol_row(text: &str) -> Option<BirdProtocol> {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    if tokens.len() < 4 {
        return None;
    }
    // Since is one token (`09:17:40.896`, `2026-11-21`) or two with
    // `timeformat protocol iso long` (`2026-11-21 09:17:40`).
    let mut info_from = 5;
    if let (Some(date), Some(time)) = (tokens.get(4), tokens.get(5))
        && is_date(date)
        && time.contains(':')
    {
        info_from = 6;
    }
    Some(BirdProtocol {
        name: tokens[0].to_string(),
        proto: tokens[1].to_string(),
        table: tokens[2].to_string(),
        state: tokens[3].to_string(),
        info: tokens.get(info_from..).unwrap_or_default().join(" "),
        bgp: (tokens[1] == "BGP").then(BgpDetails::default),
    })
}

fn is_date(token: &str) -> bool {
    let parts: Vec<&str> = token.split('-').collect();
    parts.len() == 3 && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

fn protocol_detail(protocol: &mut BirdProtocol, channel: &mut Option<String>, text: &str) {
    let Some(bgp) = protocol.bgp.as_mut() else {
        return;
    };
    if let Some(name) = text.trim().strip_prefix("Channel ") {
        *channel = Some(name.trim().to_string());
        return;
    }
    let Some((key, value)) = text.trim().split_once(':') else {
        return;
    };
    if key.trim() == "State"
        && value.trim() == "UP"
        && let Some(family) = channel.as_deref().and_then(family_of_channel)
    {
        bgp.families.push(family.to_string());
    }
    let value = value.trim();
    match key.trim() {
        "BGP state" => bgp.state = bgp_state(value),
        "Neighbor address" => {
            // A link-local neighbour is written `fe80::1%eth0`.
            let address = value.split('%').next().unwrap_or(value);
            bgp.neighbor_address = address.parse().ok();
        }
        "Neighbor AS" => bgp.neighbor_as = value.parse().ok(),
        "Local AS" => bgp.local_as = value.parse().ok(),
        "Hold timer" => {
            bgp.hold_time = value
                .rsplit('/')
                .next()
                .and_then(|hold| hold.trim().parse().ok());
        }
        "Last error" => bgp.last_error = Some(value.to_string()).filter(|v| !v.is_empty()),
        "Routes" => {
            // `0 imported, 1 exported, 0 preferred` (BIRD adds `filtered`
            // with `import keep filtered`).
            for part in value.split(',') {
                let mut words = part.split_whitespace();
                if let (Some(count), Some("exported")) = (words.next(), words.next()) {
                    bgp.routes_exported += count.parse::<u64>().unwrap_or(0);
                }
            }
        }
        _ => {}
    }
}

/// herald's name for the family of a BIRD channel.
fn family_of_channel(channel: &str) -> Option<&'static str> {
    match channel {
        "ipv4" => Some("ipv4_unicast"),
        "ipv6" => Some("ipv6_unicast"),
        _ => None,
    }
}

/// BIRD's BGP states (`proto/bgp/bgp.c`, `bgp_state_names`). BIRD's `Down`
/// and `Close` are both RFC 4271 Idle: no session and none starting.
fn bgp_state(text: &str) -> Option<BgpState> {
    Some(match text.split_whitespace().next()? {
        "Idle" | "Down" | "Close" => BgpState::Idle,
        "Connect" => BgpState::Connect,
        "Active" => BgpState::Active,
        "OpenSent" => BgpState::OpenSent,
        "OpenConfirm" => BgpState::OpenConfirm,
        "Established" => BgpState::Established,
        _ => return None,
    })
}

/// Reads every session of a `show bfd sessions` reply.
pub fn bfd_sessions(reply: &Reply) -> Vec<BirdBfdSession> {
    let mut out = Vec::new();
    let mut protocol = String::new();
    for line in reply.lines.iter().filter(|l| l.code == code::BFD_SESSIONS) {
        let text = line.text.trim();
        if let Some(name) = text.strip_suffix(':')
            && !name.contains(char::is_whitespace)
        {
            protocol = name.to_string();
            continue;
        }
        let tokens: Vec<&str> = text.split_whitespace().collect();
        if tokens.len() < 6 {
            continue;
        }
        let Ok(address) = tokens[0].split('%').next().unwrap_or("").parse() else {
            continue; // the heading, or something newer
        };
        let Some(state) = bfd_state(tokens[2]) else {
            continue;
        };
        out.push(BirdBfdSession {
            protocol: protocol.clone(),
            address,
            interface: Some(tokens[1].to_string()).filter(|i| i != "---"),
            state,
            interval_us: seconds_to_us(tokens[tokens.len() - 2]),
            timeout_us: seconds_to_us(tokens[tokens.len() - 1]),
        });
    }
    out
}

fn bfd_state(text: &str) -> Option<BfdState> {
    Some(match text {
        "AdminDown" => BfdState::AdminDown,
        "Down" => BfdState::Down,
        "Init" => BfdState::Init,
        "Up" => BfdState::Up,
        _ => return None,
    })
}

/// `0.050` (seconds, as BIRD prints intervals) in microseconds, without
/// floating point.
fn seconds_to_us(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut micros = 0u64;
    for (i, digit) in fraction.bytes().take(6).enumerate() {
        micros += u64::from(digit - b'0') * 10u64.pow(5 - i as u32);
    }
    whole.checked_mul(1_000_000)?.checked_add(micros)
}

/// How herald names a BIRD BGP protocol: the configured peer with that
/// neighbour address, else BIRD's protocol name.
pub trait PeerNames {
    fn peer_name(&self, address: IpAddr) -> Option<String>;
}

impl<F: Fn(IpAddr) -> Option<String>> PeerNames for F {
    fn peer_name(&self, address: IpAddr) -> Option<String> {
        self(address)
    }
}

/// The `/status` rows of the BGP protocols in `protocols`.
pub fn peer_statuses(protocols: &[BirdProtocol], names: &impl PeerNames) -> Vec<PeerStatus> {
    protocols
        .iter()
        .filter_map(|protocol| {
            let bgp = protocol.bgp.as_ref()?;
            let name = bgp
                .neighbor_address
                .and_then(|a| names.peer_name(a))
                .unwrap_or_else(|| protocol.name.clone());
            let state = bgp.state.unwrap_or(BgpState::Idle);
            Some(PeerStatus {
                name,
                address: bgp
                    .neighbor_address
                    .map_or_else(String::new, |a| a.to_string()),
                asn: bgp.neighbor_as.unwrap_or(0),
                state,
                since: None,
                hold_time: bgp.hold_time.filter(|_| state == BgpState::Established),
                prefixes_sent: bgp.routes_exported,
                last_error: bgp.last_error.clone().or_else(|| {
                    (state != BgpState::Established && !protocol.info.is_empty())
                        .then(|| format!("BIRD protocol {}: {}", protocol.name, protocol.info))
                }),
                // BIRD's `show protocols all` does not say when.
                last_error_at: None,
            })
        })
        .collect()
}

/// The `/status` rows of BIRD's BFD sessions.
pub fn bfd_session_statuses(
    sessions: &[BirdBfdSession],
    names: &impl PeerNames,
) -> Vec<BfdSessionStatus> {
    sessions
        .iter()
        .map(|session| BfdSessionStatus {
            peer: names
                .peer_name(session.address)
                .unwrap_or_else(|| session.address.to_string()),
            local_address: None,
            remote_address: session.address,
            multihop: session.interface.is_none(),
            state: session.state,
            remote_state: None,
            since: None,
            tx_interval_us: session.interval_us,
            detection_time_us: session.timeout_us.filter(|t| *t > 0),
            diagnostic: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bird::reply::ReplyDecoder;

    fn reply(bytes: &[u8]) -> Reply {
        let mut decoder = ReplyDecoder::new();
        decoder.push(bytes).unwrap();
        decoder.next_reply().unwrap().unwrap()
    }

    /// `show protocols all` from BIRD 2.0.12 with one session up and one
    /// refused (trimmed of capability lines).
    const PROTOCOLS_ALL: &[u8] = br#"2002-Name       Proto      Table      State  Since         Info
1002-device1    Device     ---        up     09:17:40.896  
1006-
1002-herald4    Static     master4    up     09:17:40.896  
1006-  Channel ipv4
     State:          UP
     Routes:         1 imported, 0 exported, 1 preferred
 
1002-r1         BGP        ---        up     09:17:59.180  Established   
1006-  BGP state:          Established
     Neighbor address: 192.0.2.1
     Neighbor AS:      64512
     Local AS:         64601
     Hold timer:       8.208/9
     Keepalive timer:  0.506/3
   Channel ipv4
     State:          UP
     Routes:         0 imported, 1 exported, 0 preferred
   Channel ipv6
     State:          DOWN
     Routes:         0 imported, 0 filtered, 2 exported, 0 preferred
 
1002-r2         BGP        ---        start  2026-11-21 09:18:04  Active        Received: Administrative shutdown
1006-  BGP state:          Active
     Neighbor address: 2001:db8::2
     Neighbor AS:      64513
     Connect delay:    0.741/5
     Last error:       Received: Administrative shutdown
 
0000 
"#;

    #[test]
    fn show_protocols_all_yields_every_protocol_with_bgp_details() {
        let all = protocols(&reply(PROTOCOLS_ALL));
        let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["device1", "herald4", "r1", "r2"]);
        assert!(all[1].bgp.is_none());
        let r1 = all[2].bgp.as_ref().unwrap();
        assert_eq!(r1.state, Some(BgpState::Established));
        assert_eq!(r1.neighbor_address, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(r1.neighbor_as, Some(64512));
        assert_eq!(r1.local_as, Some(64601));
        assert_eq!(r1.hold_time, Some(9));
        assert_eq!(r1.routes_exported, 3);
        assert_eq!(r1.families, ["ipv4_unicast"], "only channels in state UP");
        assert_eq!(all[2].info, "Established");
        assert_eq!(all[3].state, "start");
        assert_eq!(all[3].info, "Active Received: Administrative shutdown");
        let r2 = all[3].bgp.as_ref().unwrap();
        assert_eq!(r2.state, Some(BgpState::Active));
        assert_eq!(
            r2.last_error.as_deref(),
            Some("Received: Administrative shutdown")
        );
    }

    #[test]
    fn bgp_protocols_become_peer_rows_named_after_the_configured_peer() {
        let all = protocols(&reply(PROTOCOLS_ALL));
        let names = |a: IpAddr| (a.to_string() == "192.0.2.1").then(|| "tor-a".to_string());
        let rows = peer_statuses(&all, &names);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, "tor-a");
        assert_eq!(rows[0].state, BgpState::Established);
        assert_eq!(rows[0].hold_time, Some(9));
        assert_eq!(rows[0].prefixes_sent, 3);
        assert_eq!(rows[0].last_error, None);
        assert_eq!(rows[1].name, "r2", "unknown neighbours keep BIRD's name");
        assert_eq!(rows[1].address, "2001:db8::2");
        assert_eq!(rows[1].state, BgpState::Active);
        assert_eq!(rows[1].hold_time, None);
        assert_eq!(
            rows[1].last_error.as_deref(),
            Some("Received: Administrative shutdown")
        );
    }

    #[test]
    fn show_bfd_sessions_yields_sessions_with_microsecond_timers() {
        let text = br#"1020-herald_bfd:
 IP address                Interface  State      Since         Interval  Timeout
 192.0.2.1                 eth1       Up         09:17:55.440    0.050    0.150
 198.51.100.1              ---        Down       09:18:04.330    1.000    0.000
 other:
 2001:db8::1               eth2       Init       2026-11-21 09:18:04    0.300    0.900
0000 
"#;
        let sessions = bfd_sessions(&reply(text));
        assert_eq!(sessions.len(), 3);
        assert_eq!(sessions[0].protocol, "herald_bfd");
        assert_eq!(sessions[0].state, BfdState::Up);
        assert_eq!(sessions[0].interface.as_deref(), Some("eth1"));
        assert_eq!(sessions[0].interval_us, Some(50_000));
        assert_eq!(sessions[0].timeout_us, Some(150_000));
        assert_eq!(sessions[1].interface, None);
        assert_eq!(sessions[1].state, BfdState::Down);
        assert_eq!(sessions[2].protocol, "other");
        assert_eq!(sessions[2].timeout_us, Some(900_000));

        let rows = bfd_session_statuses(&sessions, &|_| None);
        assert_eq!(rows[0].peer, "192.0.2.1");
        assert!(rows[1].multihop);
        assert_eq!(rows[1].detection_time_us, None, "a zero timeout is none");
    }

    #[test]
    fn seconds_become_microseconds_exactly() {
        assert_eq!(seconds_to_us("0.050"), Some(50_000));
        assert_eq!(seconds_to_us("1.000"), Some(1_000_000));
        assert_eq!(seconds_to_us("12"), Some(12_000_000));
        assert_eq!(seconds_to_us("0.0000019"), Some(1));
        assert_eq!(seconds_to_us("-1.0"), None);
        assert_eq!(seconds_to_us("."), None);
        assert_eq!(seconds_to_us("99999999999999999999.0"), None);
    }

    #[test]
    fn an_empty_or_foreign_reply_yields_nothing() {
        let foreign = reply(b"1002-x\n1006-  BGP state: Established\n0000 \n");
        assert!(protocols(&foreign).is_empty());
        assert!(bfd_sessions(&foreign).is_empty());
        let error = reply(b"9001 syntax error\n");
        assert!(protocols(&error).is_empty());
    }
}
