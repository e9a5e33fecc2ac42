//! What changed between two valid configurations, sorted by what applying it
//! costs: a reload applies exactly this and leaves everything else running,
//! because resetting a session whose settings did not change withdraws
//! every route it carries and makes the routers rehash their ECMP sets for
//! nothing.
//!
//! Owns: the classification. Pure: two `Config` values in, a [`ConfigDiff`]
//! out; reads no files (a key file rewritten in place under the same
//! `password_file` path is not a config change: the session picks it up on
//! its next connect). Must not touch: the running sessions; the agent applies
//! the diff.
//!
//! Peers are identified by `name`: a renamed peer is one removed and one
//! added. What each change costs:
//!
//! | Change | Cost |
//! |---|---|
//! | peer added / removed | start / stop its BGP and BFD sessions |
//! | `address`, `asn`, `port`, `hold_time`, `password_file`, `ebgp_multihop`, `ttl_security`, `passive`, `listen`, `graceful_restart`, `bfd.strict` | a new BGP session (the OPEN, the socket or the FSM's coupling to BFD change) |
//! | `bfd.min_rx`, `bfd.min_tx`, `bfd.multiplier` | `BfdRuntime::change_parameters` (a Poll sequence, RFC 5880 §6.8.3); BGP stays up |
//! | `bfd.auth` (and a BFD key file rewritten in place, re-read at every reload) | `BfdRuntime::change_auth`: the session keeps its state; BGP stays up |
//! | `bfd.enabled`, `bfd.multihop`, `bfd.min_ttl` | the BFD session is removed and/or added; BGP stays up |
//! | `node_selector` | re-check whether this node uses the peer |
//! | top-level `asn`, `router_id` | every BGP session restarts (both are in the OPEN) |
//! | `interface` | the owned addresses move to the new interface |
//! | `pools`, `kubernetes` (and `asn`, which the link-bandwidth community carries) | the sources re-evaluate the desired set |
//! | `anti_flap` | `AntiFlap::set_config` |
//! | `drain` | used by the next drain |
//! | `admin_listen`, anything else this version cannot apply | needs a restart of herald; said in [`ConfigDiff::needs_restart`] |

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::{AntiFlapConfig, Config, DrainConfig, PeerConfig};

/// What changed between an old and a new configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigDiff {
    /// Peers only the new file has, in its order.
    pub peers_added: Vec<PeerConfig>,
    /// Peers only the old file had, in its order.
    pub peers_removed: Vec<PeerConfig>,
    /// Peers in both files whose settings differ, in the new file's order.
    pub peers_changed: Vec<PeerChange>,
    /// Names of peers in both files with identical settings.
    pub peers_unchanged: Vec<String>,
    /// The local AS changed: every BGP session restarts.
    pub asn: Option<(u32, u32)>,
    /// The router id changed: every BGP session restarts.
    pub router_id: Option<(Option<Ipv4Addr>, Option<Ipv4Addr>)>,
    /// The interface that holds service addresses changed.
    pub interface: Option<(String, String)>,
    /// Pools or the `kubernetes` selection changed: the desired set must be
    /// evaluated again.
    pub policy_changed: bool,
    /// The new anti-flap settings, when they changed.
    pub anti_flap: Option<AntiFlapConfig>,
    /// The new drain settings, when they changed.
    pub drain: Option<DrainConfig>,
    /// Changes that take effect only when herald restarts, each as
    /// `field: why`.
    pub needs_restart: Vec<String>,
}

/// One peer present in both files, and what about it changed.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerChange {
    pub old: PeerConfig,
    pub new: PeerConfig,
    /// A BGP-level setting changed: the session must be replaced.
    pub session: bool,
    /// What the BFD session needs.
    pub bfd: BfdChange,
    /// `node_selector` changed: whether this node uses the peer may differ.
    pub node_selector: bool,
}

/// What a peer's BFD session needs after a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BfdChange {
    /// Nothing.
    None,
    /// Only the intervals or the multiplier: `change_parameters`, which
    /// RFC 5880 §6.8.3 applies with a Poll Sequence on the running session.
    Parameters,
    /// Enabled or disabled, or single-hop/multihop switched: remove the old
    /// session (if any) and add the new one (if any). BGP stays up.
    Session,
}

impl PeerChange {
    pub fn name(&self) -> &str {
        &self.new.name
    }
}

impl ConfigDiff {
    /// Compares two valid configurations.
    pub fn between(old: &Config, new: &Config) -> ConfigDiff {
        let mut diff = ConfigDiff::default();
        diff_peers(&mut diff, &old.peers, &new.peers);
        if old.asn != new.asn {
            diff.asn = Some((old.asn, new.asn));
        }
        if old.router_id != new.router_id {
            diff.router_id = Some((old.router_id, new.router_id));
        }
        if old.interface != new.interface {
            diff.interface = Some((old.interface.clone(), new.interface.clone()));
        }
        // The local AS is in every link-bandwidth community (weighted ECMP)
        // the policy attaches.
        diff.policy_changed =
            old.pools != new.pools || policy_selection_differs(old, new) || old.asn != new.asn;
        if old.anti_flap != new.anti_flap {
            diff.anti_flap = Some(new.anti_flap.clone());
        }
        if old.drain != new.drain {
            diff.drain = Some(new.drain.clone());
        }
        if old.admin_listen != new.admin_listen {
            diff.needs_restart.push(format!(
                "admin_listen: the admin endpoint keeps listening on {} until herald \
                 restarts (new: {})",
                old.admin_listen, new.admin_listen
            ));
        }
        if !only_known_fields_differ(old, new) {
            diff.needs_restart.push(
                "fields this reload does not apply changed; restart herald to apply them"
                    .to_string(),
            );
        }
        diff
    }

    /// True when applying the new file changes nothing at all.
    pub fn is_empty(&self) -> bool {
        self.peers_added.is_empty()
            && self.peers_removed.is_empty()
            && self.peers_changed.is_empty()
            && self.asn.is_none()
            && self.router_id.is_none()
            && self.interface.is_none()
            && !self.policy_changed
            && self.anti_flap.is_none()
            && self.drain.is_none()
            && self.needs_restart.is_empty()
    }

    /// True when every BGP session restarts (local AS or router id changed).
    pub fn restarts_every_session(&self) -> bool {
        self.asn.is_some() || self.router_id.is_some()
    }

    /// Names of the peers in both files whose BGP session must be replaced:
    /// their own session settings changed, or every session restarts.
    pub fn sessions_to_restart(&self) -> Vec<&str> {
        let all = self.restarts_every_session();
        self.peers_changed
            .iter()
            .filter(|change| all || change.session)
            .map(PeerChange::name)
            .chain(
                self.peers_unchanged
                    .iter()
                    .filter(|_| all)
                    .map(String::as_str),
            )
            .collect()
    }

    /// One line per change, for the reload log and `/status`.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for peer in &self.peers_added {
            lines.push(format!("peer {:?} added", peer.name));
        }
        for peer in &self.peers_removed {
            lines.push(format!("peer {:?} removed", peer.name));
        }
        for change in &self.peers_changed {
            let mut what = Vec::new();
            if change.session {
                what.push("new BGP session");
            }
            match change.bfd {
                BfdChange::None => {}
                BfdChange::Parameters => what.push("BFD parameters (BGP stays up)"),
                BfdChange::Session => what.push("new BFD session (BGP stays up)"),
            }
            if change.node_selector {
                what.push("node selector");
            }
            lines.push(format!(
                "peer {:?} changed: {}",
                change.name(),
                what.join(", ")
            ));
        }
        if let Some((old, new)) = self.asn {
            lines.push(format!("asn {old} -> {new}: every BGP session restarts"));
        }
        if let Some((old, new)) = self.router_id {
            let show =
                |id: Option<Ipv4Addr>| id.map_or("node address".to_string(), |i| i.to_string());
            lines.push(format!(
                "router_id {} -> {}: every BGP session restarts",
                show(old),
                show(new)
            ));
        }
        if let Some((old, new)) = &self.interface {
            lines.push(format!("interface {old} -> {new}: service addresses move"));
        }
        if self.policy_changed {
            lines.push("pools or kubernetes selection changed: desired set re-evaluated".into());
        }
        if self.anti_flap.is_some() {
            lines.push("anti_flap changed".into());
        }
        if self.drain.is_some() {
            lines.push("drain changed (used by the next drain)".into());
        }
        lines.extend(
            self.needs_restart
                .iter()
                .map(|why| format!("needs restart: {why}")),
        );
        lines
    }
}

fn diff_peers(diff: &mut ConfigDiff, old: &[PeerConfig], new: &[PeerConfig]) {
    let old_by_name: BTreeMap<&str, &PeerConfig> =
        old.iter().map(|p| (p.name.as_str(), p)).collect();
    let new_names: BTreeMap<&str, ()> = new.iter().map(|p| (p.name.as_str(), ())).collect();
    for peer in new {
        match old_by_name.get(peer.name.as_str()) {
            None => diff.peers_added.push(peer.clone()),
            Some(&before) if before == peer => diff.peers_unchanged.push(peer.name.clone()),
            Some(&before) => diff.peers_changed.push(classify(before, peer)),
        }
    }
    diff.peers_removed = old
        .iter()
        .filter(|p| !new_names.contains_key(p.name.as_str()))
        .cloned()
        .collect();
}

fn classify(old: &PeerConfig, new: &PeerConfig) -> PeerChange {
    // Everything but the BFD intervals and the node selector is part of the
    // BGP session: compare with those set equal.
    let mut session_part = new.clone();
    session_part.node_selector = old.node_selector.clone();
    session_part.bfd = old.bfd.clone();
    session_part.bfd.strict = new.bfd.strict;
    let session = session_part != *old;
    let bfd = if old.bfd.enabled != new.bfd.enabled
        || (new.bfd.enabled
            && (old.bfd.multihop != new.bfd.multihop || old.bfd.min_ttl != new.bfd.min_ttl))
    {
        BfdChange::Session
    } else if new.bfd.enabled
        && (old.bfd.min_rx != new.bfd.min_rx
            || old.bfd.min_tx != new.bfd.min_tx
            || old.bfd.multiplier != new.bfd.multiplier
            || old.bfd.auth != new.bfd.auth)
    {
        BfdChange::Parameters
    } else {
        BfdChange::None
    };
    PeerChange {
        old: old.clone(),
        new: new.clone(),
        session,
        bfd,
        node_selector: old.node_selector != new.node_selector,
    }
}

#[cfg(feature = "agent")]
fn policy_selection_differs(old: &Config, new: &Config) -> bool {
    old.kubernetes != new.kubernetes
}

#[cfg(not(feature = "agent"))]
fn policy_selection_differs(_: &Config, _: &Config) -> bool {
    false
}

/// True when `old` and `new` are equal once every field this module knows
/// how to apply is made equal: fields added later (by other parts of herald)
/// that the reload does not know are reported as needing a restart instead
/// of being ignored silently.
fn only_known_fields_differ(old: &Config, new: &Config) -> bool {
    let mut rest = new.clone();
    rest.asn = old.asn;
    rest.router_id = old.router_id;
    rest.interface = old.interface.clone();
    rest.admin_listen = old.admin_listen;
    rest.pools = old.pools.clone();
    rest.peers = old.peers.clone();
    rest.drain = old.drain.clone();
    rest.anti_flap = old.anti_flap.clone();
    #[cfg(feature = "agent")]
    {
        rest.kubernetes = old.kubernetes.clone();
    }
    rest == *old
}

#[cfg(test)]
mod tests;
