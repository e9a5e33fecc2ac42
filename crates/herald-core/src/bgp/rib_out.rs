//! The Adj-RIB-Out of one peer (RFC 4271 §3.2): what the peer has been
//! told, grouped by attributes, and the UPDATEs that move it to a new
//! desired set.
//!
//! Owns: the export policy (eBGP: our AS prepended, next hop self, no
//! LOCAL_PREF; iBGP: LOCAL_PREF, empty AS_PATH), the diff between what was
//! sent and what is desired, packing prefixes into as few UPDATEs as the
//! negotiated message size allows, End-of-RIB markers, route refresh and
//! graceful shutdown (RFC 8326). Must not touch: sockets or session state;
//! the session driver sends what this returns.
//!
//! # Supported standards
//! - RFC 4271 §9.2 (UPDATE-Send process; §5.1.3 next hop, §5.1.5
//!   LOCAL_PREF "SHALL NOT" go to external peers)
//! - RFC 4760 IPv6 in MP_REACH_NLRI / MP_UNREACH_NLRI
//! - RFC 4724 §2 End-of-RIB after the initial announcements
//! - RFC 2918 route refresh: the whole Adj-RIB-Out of the family again
//! - RFC 8326 GRACEFUL_SHUTDOWN (65535:0) added to everything during a drain
//! - RFC 8654 extended message size when agreed
//!
//! Packing is exact: each UPDATE is filled until the next prefix would
//! take it over the negotiated maximum, never one octet over (property
//! test `every_update_fits_and_the_updates_carry_exactly_the_difference`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;

use super::packet::{
    AfiSafi, AsPath, HEADER_LEN, MpNextHop, MpReach, MpUnreach, Origin, PathAttributes, Update,
    prefix_wire_len,
};
use crate::model::{Community, RouteAttributes};

/// LOCAL_PREF sent to internal peers when the announcement sets none (the
/// common default of FRR, BIRD and GoBGP).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// How routes are presented to this peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportPolicy {
    pub local_as: u32,
    /// iBGP (peer AS == local AS).
    pub internal: bool,
    /// NEXT_HOP for IPv4 routes (next hop self: our address on the session,
    /// or a configured one). Without it IPv4 routes are not announced.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop for IPv6 routes: global, and link-local when the peer is on
    /// the same link. Without it IPv6 routes are not announced.
    pub next_hop_v6: Option<(Ipv6Addr, Option<Ipv6Addr>)>,
    /// Families agreed in the OPEN exchange.
    pub families: Vec<AfiSafi>,
    /// 4096, or 65535 with RFC 8654.
    pub max_message_len: usize,
}

fn family_of(prefix: &IpNet) -> AfiSafi {
    match prefix {
        IpNet::V4(_) => AfiSafi::IPV4_UNICAST,
        IpNet::V6(_) => AfiSafi::IPV6_UNICAST,
    }
}

/// An attribute group: one family, one set of route attributes.
type GroupKey = (AfiSafi, Arc<RouteAttributes>);

/// What one peer has been told.
#[derive(Debug)]
pub struct AdjRibOut {
    policy: ExportPolicy,
    sent: BTreeMap<IpNet, Arc<RouteAttributes>>,
    /// Routes that cannot be announced to this peer (family not agreed, no
    /// next hop of that family, or attributes too large for one message).
    unannounceable: BTreeSet<IpNet>,
}

impl AdjRibOut {
    pub fn new(policy: ExportPolicy) -> Self {
        AdjRibOut {
            policy,
            sent: BTreeMap::new(),
            unannounceable: BTreeSet::new(),
        }
    }

    pub fn policy(&self) -> &ExportPolicy {
        &self.policy
    }

    /// Prefixes the peer currently holds from us, per family.
    pub fn announced(&self, family: AfiSafi) -> usize {
        self.sent.keys().filter(|p| family_of(p) == family).count()
    }

    /// Routes in the desired set that this peer cannot be sent.
    pub fn unannounceable(&self) -> &BTreeSet<IpNet> {
        &self.unannounceable
    }

    fn exportable(&self, prefix: &IpNet) -> bool {
        let family = family_of(prefix);
        self.policy.families.contains(&family)
            && match prefix {
                IpNet::V4(_) => self.policy.next_hop_v4.is_some(),
                IpNet::V6(_) => self.policy.next_hop_v6.is_some(),
            }
    }

    /// Moves the peer to `desired` (with GRACEFUL_SHUTDOWN added to every
    /// route while `graceful_shutdown`), returning the UPDATEs to send:
    /// withdrawals first, then announcements, only for what changed.
    pub fn sync(
        &mut self,
        desired: &BTreeMap<IpNet, RouteAttributes>,
        graceful_shutdown: bool,
    ) -> Vec<Update> {
        // Intern attributes so 100k routes sharing one set share one copy.
        let internal = self.policy.internal;
        let mut interned: BTreeMap<&RouteAttributes, Arc<RouteAttributes>> = BTreeMap::new();
        let mut target: BTreeMap<IpNet, Arc<RouteAttributes>> = BTreeMap::new();
        self.unannounceable.clear();
        for (prefix, attrs) in desired {
            if !self.exportable(prefix) {
                self.unannounceable.insert(*prefix);
                continue;
            }
            let shared = interned.entry(attrs).or_insert_with(|| {
                let mut exported = attrs.clone();
                // Normalized as the peer will see it, so two sets that differ
                // only in what this peer is not sent compare equal.
                exported.local_pref =
                    internal.then(|| attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF));
                if graceful_shutdown {
                    // RFC 8326 §3: "the g-shut initiator ... re-advertise[s]
                    // ... paths with the GRACEFUL_SHUTDOWN community".
                    exported.communities.insert(Community::GRACEFUL_SHUTDOWN);
                }
                Arc::new(exported)
            });
            target.insert(*prefix, Arc::clone(shared));
        }

        let withdrawn: Vec<IpNet> = self
            .sent
            .keys()
            .filter(|p| !target.contains_key(p))
            .copied()
            .collect();
        let mut groups: BTreeMap<GroupKey, Vec<IpNet>> = BTreeMap::new();
        for (prefix, attrs) in &target {
            let unchanged = self
                .sent
                .get(prefix)
                .is_some_and(|old| Arc::ptr_eq(old, attrs) || **old == **attrs);
            if !unchanged {
                groups
                    .entry((family_of(prefix), Arc::clone(attrs)))
                    .or_default()
                    .push(*prefix);
            }
        }
        let mut updates = self.pack_withdrawals(&withdrawn);
        for ((_, attrs), prefixes) in groups {
            match self.pack_announcements(&attrs, &prefixes) {
                Some(packed) => updates.extend(packed),
                None => {
                    for prefix in prefixes {
                        target.remove(&prefix);
                        self.unannounceable.insert(prefix);
                    }
                }
            }
        }
        // A route that became unannounceable but was sent before must go.
        let stale: Vec<IpNet> = self
            .unannounceable
            .iter()
            .filter(|p| self.sent.contains_key(p) && withdrawn.binary_search(p).is_err())
            .copied()
            .collect();
        updates.extend(self.pack_withdrawals(&stale));
        self.sent = target;
        updates
    }

    /// RFC 2918 §4: on a ROUTE-REFRESH "the BGP speaker ... re-advertise[s]
    /// to that peer the Adj-RIB-Out of the BGP speaker for the <AFI, SAFI>".
    pub fn refresh(&self, family: AfiSafi) -> Vec<Update> {
        let mut groups: BTreeMap<&Arc<RouteAttributes>, Vec<IpNet>> = BTreeMap::new();
        for (prefix, attrs) in &self.sent {
            if family_of(prefix) == family {
                groups.entry(attrs).or_default().push(*prefix);
            }
        }
        groups
            .into_iter()
            .filter_map(|(attrs, prefixes)| self.pack_announcements(attrs, &prefixes))
            .flatten()
            .collect()
    }

    /// End-of-RIB for every agreed family (RFC 4724 §2), sent once the
    /// initial announcements are out.
    pub fn end_of_rib(&self) -> Vec<Update> {
        self.policy
            .families
            .iter()
            .map(|f| Update::end_of_rib(*f))
            .collect()
    }

    /// The attributes sent with a group, NLRI aside.
    fn path_attributes(&self, attrs: &RouteAttributes, family: AfiSafi) -> PathAttributes {
        let p = &self.policy;
        PathAttributes {
            origin: Some(Origin::Igp),
            // RFC 4271 §5.1.2: to an external peer "the local system SHALL
            // prepend its own AS number ... as the last element of the
            // sequence"; to an internal peer an originated route carries an
            // empty AS_PATH.
            as_path: Some(if p.internal {
                AsPath::default()
            } else {
                AsPath::sequence(vec![p.local_as])
            }),
            // §5.1.3: next hop self (IPv4 in NEXT_HOP, IPv6 in MP_REACH).
            next_hop: if family == AfiSafi::IPV4_UNICAST {
                p.next_hop_v4
            } else {
                None
            },
            med: attrs.med,
            // §5.1.5: "A BGP speaker SHALL NOT include this attribute in
            // UPDATE messages it sends to external peers" and "SHALL
            // calculate the degree of preference ... and shall include [it]
            // ... to internal peers".
            local_pref: if p.internal { attrs.local_pref } else { None },
            communities: attrs.communities.iter().copied().collect(),
            extended_communities: attrs
                .link_bandwidth
                .iter()
                .map(|lb| lb.to_extended())
                .collect(),
            large_communities: attrs.large_communities.iter().copied().collect(),
            mp_reach: (family == AfiSafi::IPV6_UNICAST)
                .then(|| {
                    p.next_hop_v6.map(|(global, link_local)| MpReach {
                        family,
                        next_hop: MpNextHop::V6 { global, link_local },
                        nlri: Vec::new(),
                    })
                })
                .flatten(),
            ..PathAttributes::default()
        }
    }

    /// Packs one attribute group; `None` when the attributes leave no room
    /// for even one prefix.
    fn pack_announcements(
        &self,
        attrs: &RouteAttributes,
        prefixes: &[IpNet],
    ) -> Option<Vec<Update>> {
        let Some(first) = prefixes.first() else {
            return Some(Vec::new());
        };
        let family = family_of(first);
        let template = self.path_attributes(attrs, family);
        let max = self.policy.max_message_len;
        let mut updates = Vec::new();
        if family == AfiSafi::IPV4_UNICAST {
            // Header, withdrawn length, attribute length, attributes, NLRI.
            let fixed = HEADER_LEN + 4 + template.encoded_len();
            let size = |nlri| fixed + nlri;
            if size(prefix_wire_len(32)) > max {
                return None;
            }
            for chunk in chunks(prefixes, max, size) {
                updates.push(Update {
                    attributes: template.clone(),
                    nlri: chunk.iter().filter_map(as_v4).collect(),
                    ..Update::default()
                });
            }
        } else {
            let Some(mp) = &template.mp_reach else {
                return None;
            };
            let mut others = template.clone();
            others.mp_reach = None;
            let fixed = HEADER_LEN + 4 + others.encoded_len();
            let mp_fixed = MpReach::fixed_len(&mp.next_hop);
            let size = |nlri| fixed + attribute_len(mp_fixed + nlri);
            if size(prefix_wire_len(128)) > max {
                return None;
            }
            for chunk in chunks(prefixes, max, size) {
                let mut attributes = template.clone();
                if let Some(mp) = &mut attributes.mp_reach {
                    mp.nlri = chunk.to_vec();
                }
                updates.push(Update {
                    attributes,
                    ..Update::default()
                });
            }
        }
        Some(updates)
    }

    fn pack_withdrawals(&self, prefixes: &[IpNet]) -> Vec<Update> {
        let max = self.policy.max_message_len;
        let (v4, v6): (Vec<IpNet>, Vec<IpNet>) =
            prefixes.iter().partition(|p| matches!(p, IpNet::V4(_)));
        let mut updates = Vec::new();
        for chunk in chunks(&v4, max, |bytes| HEADER_LEN + 4 + bytes) {
            updates.push(Update {
                withdrawn: chunk.iter().filter_map(as_v4).collect(),
                ..Update::default()
            });
        }
        for chunk in chunks(&v6, max, |bytes| HEADER_LEN + 4 + attribute_len(3 + bytes)) {
            updates.push(Update {
                attributes: PathAttributes {
                    mp_unreach: Some(MpUnreach {
                        family: AfiSafi::IPV6_UNICAST,
                        withdrawn: chunk.to_vec(),
                    }),
                    ..PathAttributes::default()
                },
                ..Update::default()
            });
        }
        updates
    }
}

fn as_v4(p: &IpNet) -> Option<ipnet::Ipv4Net> {
    match p {
        IpNet::V4(p) => Some(*p),
        IpNet::V6(_) => None,
    }
}

/// Octets of a whole attribute with `value_len` octets of value.
fn attribute_len(value_len: usize) -> usize {
    super::packet::attribute_header_len(value_len) + value_len
}

/// Splits `prefixes` into runs whose message size, `size(nlri octets)`,
/// stays within `max`. Callers check that one prefix fits; one that does
/// not is skipped rather than sent over the limit.
fn chunks(prefixes: &[IpNet], max: usize, size: impl Fn(usize) -> usize) -> Vec<&[IpNet]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, prefix) in prefixes.iter().enumerate() {
        let len = prefix_wire_len(prefix.prefix_len());
        if size(bytes + len) > max {
            if i > start {
                out.push(&prefixes[start..i]);
            }
            start = i;
            bytes = 0;
            if size(len) > max {
                start = i + 1;
                continue;
            }
        }
        bytes += len;
    }
    if start < prefixes.len() {
        out.push(&prefixes[start..]);
    }
    out
}

#[cfg(test)]
mod tests;
