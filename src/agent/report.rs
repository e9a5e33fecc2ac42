//! What `/status` says about each address and peer, built in pure code from
//! the agent's state.
//!
//! Owns: the wording of "announced to which peers, or why not" (an operator
//! asking why an address is not reachable through a router gets the answer
//! in one place) and the mapping of session states to the `/status` model.
//! Must not touch: the status board itself (the agent writes the rows).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use crate::bfd::packet::{Diagnostic, State as BfdPacketState};
use crate::bgp::fsm::State as SessionState;
use crate::model::Announcement;
use crate::source::Candidate;
use crate::status::{AnnouncementStatus, BfdState, BgpState};

/// A peer as the announcement rows need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    pub name: String,
    pub state: BgpState,
    /// Negotiated families (`ipv4_unicast`, `ipv6_unicast`).
    pub families: Vec<String>,
}

impl PeerView {
    fn carries(&self, address: IpAddr) -> bool {
        let family = match address {
            IpAddr::V4(_) => "ipv4_unicast",
            IpAddr::V6(_) => "ipv6_unicast",
        };
        self.state == BgpState::Established && self.families.iter().any(|f| f == family)
    }
}

/// What the agent knows when it writes the rows.
pub struct RowContext<'a> {
    /// What the reconciler last handed the speaker.
    pub announced: &'a BTreeSet<Announcement>,
    /// The effective desired set (after drain).
    pub effective: &'a BTreeSet<Announcement>,
    /// What the source asks for (before anti-flap and drain): a weight
    /// that differs from the one sent is waiting for `weight_delay`.
    pub wanted: &'a BTreeSet<Announcement>,
    pub placed: &'a BTreeSet<IpAddr>,
    /// Why netlink could not place an address, when it said.
    pub placement_problem: &'a dyn Fn(IpAddr) -> Option<String>,
    pub peers: &'a [PeerView],
    /// Why an address no longer desired is still announced (anti-flap
    /// holds its withdrawal), in words.
    pub held: &'a dyn Fn(IpAddr) -> Option<String>,
    /// The drain, in words, when one is in progress.
    pub drain: Option<&'a str>,
    /// The source has not delivered its first complete set yet.
    pub source_pending: Option<&'a str>,
}

/// One row per candidate. Linear in the candidates: the address sets are
/// looked up, never scanned per row (at 10,000 addresses a scan per row
/// cost seconds on every change).
pub fn announcement_rows(candidates: &[Candidate], ctx: &RowContext) -> Vec<AnnouncementStatus> {
    let announced_addresses: HashMap<IpAddr, Option<u32>> = ctx
        .announced
        .iter()
        .map(|a| (a.address, weight(a)))
        .collect();
    let desired_addresses: HashMap<IpAddr, Option<u32>> = ctx
        .effective
        .iter()
        .map(|a| (a.address, weight(a)))
        .collect();
    let wanted_addresses: HashMap<IpAddr, Option<u32>> =
        ctx.wanted.iter().map(|a| (a.address, weight(a))).collect();
    candidates
        .iter()
        .map(|c| {
            let sent_weight = announced_addresses.get(&c.address).copied().flatten();
            let announced = announced_addresses.contains_key(&c.address);
            let desired = desired_addresses.contains_key(&c.address);
            // The weight the source asks for, while anti-flap's
            // weight_delay keeps the one sent.
            let pending_weight = wanted_addresses
                .get(&c.address)
                .copied()
                .flatten()
                .filter(|w| announced && Some(*w) != sent_weight);
            let announced_to: Vec<String> = if announced {
                ctx.peers
                    .iter()
                    .filter(|p| p.carries(c.address))
                    .map(|p| p.name.clone())
                    .collect()
            } else {
                Vec::new()
            };
            let reason = reason(c, announced, desired, &announced_to, ctx);
            AnnouncementStatus {
                address: c.address,
                service: c.service.clone(),
                pool: c.pool.clone(),
                announced_to,
                reason,
                weight: sent_weight.filter(|_| announced),
                pending_weight,
            }
        })
        .collect()
}

/// An announcement's weight: its link bandwidth in units of
/// [`crate::policy::WEIGHT_UNIT`], rounded.
pub fn weight(announcement: &Announcement) -> Option<u32> {
    let unit = crate::policy::WEIGHT_UNIT;
    announcement
        .attributes
        .link_bandwidth
        .map(|lb| lb.bytes_per_second.saturating_add(unit / 2) / unit)
}

fn reason(
    c: &Candidate,
    announced: bool,
    desired: bool,
    announced_to: &[String],
    ctx: &RowContext,
) -> Option<String> {
    if let Some(refusal) = &c.refusal {
        return Some(match (ctx.held)(c.address) {
            Some(held) if announced => format!("{refusal}; {held}"),
            _ => refusal.clone(),
        });
    }
    if let Some(pending) = ctx.source_pending {
        return Some(pending.to_string());
    }
    if let Some(held) = (ctx.held)(c.address)
        && announced
    {
        return Some(held);
    }
    if !desired {
        return Some(match ctx.drain {
            Some(drain) => format!("drained ({drain})"),
            None => "withdrawn".to_string(),
        });
    }
    if !ctx.placed.contains(&c.address) {
        return Some(match (ctx.placement_problem)(c.address) {
            Some(problem) => format!("not on the interface: {problem}"),
            None => "waiting for the address to be on the interface".to_string(),
        });
    }
    if !announced {
        return Some("waiting to be announced".to_string());
    }
    let missing: Vec<String> = ctx
        .peers
        .iter()
        .filter(|p| !announced_to.contains(&p.name))
        .map(|p| {
            if p.state == BgpState::Established {
                format!("{} (family not negotiated)", p.name)
            } else {
                format!("{} ({:?})", p.name, p.state)
            }
        })
        .collect();
    let mut parts = Vec::new();
    if let Some(drain) = ctx.drain {
        parts.push(format!("draining: {drain}"));
    }
    if ctx.peers.is_empty() {
        parts.push("no peer configured for this node".to_string());
    } else if !missing.is_empty() {
        parts.push(format!("not announced to {}", missing.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// A session's FSM state (RFC 4271 §8.2.2) in the `/status` model.
pub fn bgp_state(state: SessionState) -> BgpState {
    match state {
        SessionState::Idle => BgpState::Idle,
        SessionState::Connect => BgpState::Connect,
        SessionState::Active => BgpState::Active,
        SessionState::OpenSent => BgpState::OpenSent,
        SessionState::OpenConfirm => BgpState::OpenConfirm,
        SessionState::Established => BgpState::Established,
    }
}

pub fn bfd_state(state: BfdPacketState) -> BfdState {
    match state {
        BfdPacketState::AdminDown => BfdState::AdminDown,
        BfdPacketState::Down => BfdState::Down,
        BfdPacketState::Init => BfdState::Init,
        BfdPacketState::Up => BfdState::Up,
    }
}

/// The local diagnostic in words, `None` for "no diagnostic".
pub fn diagnostic(diag: Diagnostic) -> Option<String> {
    (diag != Diagnostic::None).then(|| diag.as_str().replace('_', " "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RouteAttributes;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn ann(text: &str) -> Announcement {
        Announcement {
            address: ip(text),
            attributes: RouteAttributes::default(),
        }
    }

    fn candidate(address: &str) -> Candidate {
        Candidate {
            address: ip(address),
            service: "web".to_string(),
            pool: Some("public".to_string()),
            refusal: None,
        }
    }

    fn peer(name: &str, state: BgpState) -> PeerView {
        PeerView {
            name: name.to_string(),
            state,
            families: vec!["ipv4_unicast".to_string()],
        }
    }

    fn no_problem(_: IpAddr) -> Option<String> {
        None
    }

    fn weighted(text: &str, units: u32) -> Announcement {
        let mut a = ann(text);
        a.attributes.link_bandwidth = Some(crate::model::LinkBandwidth::new(
            64601,
            units * crate::policy::WEIGHT_UNIT,
            true,
        ));
        a
    }

    #[test]
    fn a_row_shows_the_weight_sent_and_the_one_waiting_for_weight_delay() {
        let sent = BTreeSet::from([weighted("203.0.113.10", 2), ann("203.0.113.11")]);
        let wanted = BTreeSet::from([weighted("203.0.113.10", 3), ann("203.0.113.11")]);
        let placed = BTreeSet::from([ip("203.0.113.10"), ip("203.0.113.11")]);
        let peers = [peer("r1", BgpState::Established)];
        let mut ctx = RowContext {
            announced: &sent,
            effective: &sent,
            wanted: &wanted,
            placed: &placed,
            placement_problem: &no_problem,
            held: &no_problem,
            peers: &peers,
            drain: None,
            source_pending: None,
        };
        let rows = announcement_rows(
            &[candidate("203.0.113.10"), candidate("203.0.113.11")],
            &ctx,
        );
        assert_eq!((rows[0].weight, rows[0].pending_weight), (Some(2), Some(3)));
        assert_eq!((rows[1].weight, rows[1].pending_weight), (None, None));
        ctx.wanted = &sent;
        let rows = announcement_rows(&[candidate("203.0.113.10")], &ctx);
        assert_eq!((rows[0].weight, rows[0].pending_weight), (Some(2), None));
        let json = serde_json::to_value(&rows[0]).unwrap();
        assert_eq!(json["weight"], 2);
        assert!(json.get("pending_weight").is_none());
    }

    #[test]
    fn an_announced_address_lists_the_established_peers_and_names_the_others() {
        let set = BTreeSet::from([ann("203.0.113.10")]);
        let placed = BTreeSet::from([ip("203.0.113.10")]);
        let peers = [
            peer("r1", BgpState::Established),
            peer("r2", BgpState::Active),
        ];
        let ctx = RowContext {
            announced: &set,
            effective: &set,
            wanted: &set,
            placed: &placed,
            placement_problem: &no_problem,
            held: &no_problem,
            peers: &peers,
            drain: None,
            source_pending: None,
        };
        let rows = announcement_rows(&[candidate("203.0.113.10")], &ctx);
        assert_eq!(rows[0].announced_to, vec!["r1".to_string()]);
        assert_eq!(
            rows[0].reason.as_deref(),
            Some("not announced to r2 (Active)")
        );
    }

    #[test]
    fn an_ipv6_address_is_not_announced_to_an_ipv4_only_session() {
        let set = BTreeSet::from([ann("2001:db8:ffff::10")]);
        let placed = BTreeSet::from([ip("2001:db8:ffff::10")]);
        let peers = [peer("r1", BgpState::Established)];
        let ctx = RowContext {
            announced: &set,
            effective: &set,
            wanted: &set,
            placed: &placed,
            placement_problem: &no_problem,
            held: &no_problem,
            peers: &peers,
            drain: None,
            source_pending: None,
        };
        let rows = announcement_rows(&[candidate("2001:db8:ffff::10")], &ctx);
        assert!(rows[0].announced_to.is_empty());
        assert_eq!(
            rows[0].reason.as_deref(),
            Some("not announced to r1 (family not negotiated)")
        );
    }

    #[test]
    fn a_refused_address_says_why_and_is_announced_nowhere() {
        let mut c = candidate("198.51.100.7");
        c.refusal = Some("outside every configured pool".to_string());
        let empty = BTreeSet::new();
        let ctx = RowContext {
            announced: &empty,
            effective: &empty,
            wanted: &empty,
            placed: &BTreeSet::new(),
            placement_problem: &no_problem,
            held: &no_problem,
            peers: &[],
            drain: None,
            source_pending: None,
        };
        let rows = announcement_rows(&[c], &ctx);
        assert_eq!(
            rows[0].reason.as_deref(),
            Some("outside every configured pool")
        );
        assert!(rows[0].announced_to.is_empty());
    }

    #[test]
    fn an_address_not_yet_on_the_interface_says_what_netlink_said() {
        let set = BTreeSet::from([ann("203.0.113.10")]);
        let problem = |_| Some("no such device".to_string());
        let ctx = RowContext {
            announced: &BTreeSet::new(),
            effective: &set,
            wanted: &set,
            placed: &BTreeSet::new(),
            placement_problem: &problem,
            held: &no_problem,
            peers: &[],
            drain: None,
            source_pending: None,
        };
        let rows = announcement_rows(&[candidate("203.0.113.10")], &ctx);
        assert_eq!(
            rows[0].reason.as_deref(),
            Some("not on the interface: no such device")
        );
    }

    #[test]
    fn an_address_whose_withdrawal_anti_flap_holds_is_announced_and_says_why() {
        let set = BTreeSet::from([ann("203.0.113.10")]);
        let placed = BTreeSet::from([ip("203.0.113.10")]);
        let peers = [peer("r1", BgpState::Established)];
        let held = |_| Some("withdrawal held by anti_flap for 4s (min_up)".to_string());
        let mut c = candidate("203.0.113.10");
        c.refusal = Some("health check failing: exit status: 1".to_string());
        let ctx = RowContext {
            announced: &set,
            effective: &set,
            wanted: &set,
            placed: &placed,
            placement_problem: &no_problem,
            held: &held,
            peers: &peers,
            drain: None,
            source_pending: None,
        };
        let rows = announcement_rows(&[c], &ctx);
        assert_eq!(rows[0].announced_to, vec!["r1".to_string()]);
        assert_eq!(
            rows[0].reason.as_deref(),
            Some(
                "health check failing: exit status: 1; withdrawal held by anti_flap for 4s (min_up)"
            )
        );
    }

    #[test]
    fn a_drained_address_says_so() {
        let set = BTreeSet::new();
        let ctx = RowContext {
            announced: &set,
            effective: &set,
            wanted: &set,
            placed: &BTreeSet::new(),
            placement_problem: &no_problem,
            held: &no_problem,
            peers: &[],
            drain: Some("withdrawn after admin_request"),
            source_pending: None,
        };
        let rows = announcement_rows(&[candidate("203.0.113.10")], &ctx);
        assert_eq!(
            rows[0].reason.as_deref(),
            Some("drained (withdrawn after admin_request)")
        );
    }
}
