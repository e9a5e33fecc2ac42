//! Reconcile planning, pure: the desired announcements and what the agent
//! knows of the interface and the speaker in, the ordered steps out.
//!
//! Owns: the order rule of the agent. An address is announced only once
//! netlink has confirmed it on the interface, and it is withdrawn from every
//! peer before it is removed from the interface: either way round, the
//! routers would send this node traffic for an address it does not hold,
//! and the kernel would drop it. Must
//! not touch: netlink, BGP or time; the agent performs the steps, reads the
//! new state back and plans again until nothing is left to do.
//!
//! ```text
//!   desired (policy or services file, after drain)   actual (netlink status, speaker)
//!                        \                           /
//!                         plan() -> [Announce(set), PlaceAddresses(set)]
//! ```
//!
//! The very first pass (the speaker has never been told anything) places
//! the addresses first and announces only after that pass is done, so the
//! first set the speaker hears is complete and End-of-RIB (RFC 4724 §4.1)
//! follows the whole initial update, never an empty one. That first pass
//! removes nothing: after a restart the routers still hold herald's old
//! routes as stale, so an address no longer desired leaves the interface
//! only after the first announcement and its End-of-RIB withdrew it.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::model::Announcement;

/// What the agent knows of the effects it has already caused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actual {
    /// The address set netlink was last told to carry; `None` before the
    /// first time (netlink then adopts herald's addresses and removes none).
    pub addresses_wanted: Option<BTreeSet<IpAddr>>,
    /// Addresses netlink confirmed on the interface.
    pub placed: BTreeSet<IpAddr>,
    /// The set every peer was last told to announce; `None` before the
    /// first time (no End-of-RIB has been sent yet).
    pub announced: Option<BTreeSet<Announcement>>,
}

/// One effect, performed in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Every peer announces exactly this set (the rest is withdrawn).
    Announce(BTreeSet<Announcement>),
    /// The interface carries exactly these herald addresses.
    PlaceAddresses(BTreeSet<IpAddr>),
}

/// The steps that bring `actual` to `desired`, in order. Empty when there is
/// nothing to do. After performing them the agent reads the new state back
/// and plans again: an address placed by a `PlaceAddresses` step is
/// announced by the next plan.
pub fn plan(desired: &BTreeSet<Announcement>, actual: &Actual) -> Vec<Step> {
    let addresses: BTreeSet<IpAddr> = desired.iter().map(|a| a.address).collect();
    let announceable: BTreeSet<Announcement> = desired
        .iter()
        .filter(|a| actual.placed.contains(&a.address))
        .cloned()
        .collect();
    let place_needed = actual.addresses_wanted.as_ref() != Some(&addresses);
    let mut steps = Vec::new();
    match &actual.announced {
        // First pass: place everything first (removing nothing), then
        // announce the whole initial set at once.
        None => {
            let keep: BTreeSet<IpAddr> = addresses.union(&actual.placed).copied().collect();
            if !actual
                .addresses_wanted
                .as_ref()
                .is_some_and(|w| keep.is_subset(w))
            {
                steps.push(Step::PlaceAddresses(keep));
            } else {
                steps.push(Step::Announce(announceable));
            }
        }
        Some(announced) => {
            // `announceable` is a subset of `desired`: after this step no
            // address that is about to be removed is announced any more.
            if *announced != announceable {
                steps.push(Step::Announce(announceable));
            }
            if place_needed {
                steps.push(Step::PlaceAddresses(addresses));
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Community, RouteAttributes};

    fn ann(address: &str) -> Announcement {
        Announcement {
            address: address.parse().unwrap(),
            attributes: RouteAttributes::default(),
        }
    }

    fn set(addresses: &[&str]) -> BTreeSet<Announcement> {
        addresses.iter().map(|a| ann(a)).collect()
    }

    fn ips(addresses: &[&str]) -> BTreeSet<IpAddr> {
        addresses.iter().map(|a| a.parse().unwrap()).collect()
    }

    /// Performs the steps against a perfect interface and speaker, planning
    /// again until nothing is left; returns every step taken.
    fn converge(desired: &BTreeSet<Announcement>, actual: &mut Actual) -> Vec<Step> {
        let mut taken = Vec::new();
        for _ in 0..10 {
            let steps = plan(desired, actual);
            if steps.is_empty() {
                return taken;
            }
            for step in steps {
                match &step {
                    Step::Announce(set) => {
                        for a in set {
                            assert!(
                                actual.placed.contains(&a.address),
                                "{} announced before it was placed",
                                a.address
                            );
                        }
                        actual.announced = Some(set.clone());
                    }
                    Step::PlaceAddresses(addresses) => {
                        for removed in actual.placed.difference(addresses) {
                            let still = actual
                                .announced
                                .iter()
                                .flatten()
                                .any(|a| a.address == *removed);
                            assert!(!still, "{removed} removed while still announced");
                        }
                        actual.placed = addresses.clone();
                        actual.addresses_wanted = Some(addresses.clone());
                    }
                }
                taken.push(step);
            }
        }
        panic!("no convergence after 10 plans: {taken:?}");
    }

    #[test]
    fn the_first_pass_places_every_address_before_announcing_anything() {
        let desired = set(&["203.0.113.10", "2001:db8:ffff::10"]);
        let steps = plan(&desired, &Actual::default());
        assert_eq!(
            steps,
            vec![Step::PlaceAddresses(ips(&[
                "203.0.113.10",
                "2001:db8:ffff::10"
            ]))]
        );
    }

    #[test]
    fn the_first_announcement_is_the_complete_initial_set() {
        let desired = set(&["203.0.113.10", "203.0.113.11"]);
        let mut actual = Actual::default();
        let steps = converge(&desired, &mut actual);
        assert_eq!(
            steps,
            vec![
                Step::PlaceAddresses(ips(&["203.0.113.10", "203.0.113.11"])),
                Step::Announce(desired.clone()),
            ]
        );
    }

    #[test]
    fn an_empty_desired_set_is_announced_as_empty_after_the_first_pass() {
        let mut actual = Actual::default();
        let steps = converge(&BTreeSet::new(), &mut actual);
        assert_eq!(
            steps,
            vec![
                Step::PlaceAddresses(BTreeSet::new()),
                Step::Announce(BTreeSet::new())
            ]
        );
    }

    #[test]
    fn after_a_restart_an_address_no_longer_desired_is_removed_only_after_the_first_announcement() {
        let desired = set(&["203.0.113.10"]);
        let mut actual = Actual {
            addresses_wanted: None,
            placed: ips(&["203.0.113.10", "203.0.113.99"]),
            announced: None,
        };
        let steps = converge(&desired, &mut actual);
        assert_eq!(
            steps,
            vec![
                Step::PlaceAddresses(ips(&["203.0.113.10", "203.0.113.99"])),
                Step::Announce(desired.clone()),
                Step::PlaceAddresses(ips(&["203.0.113.10"])),
            ]
        );
    }

    #[test]
    fn a_restart_with_addresses_in_place_announces_them_at_once() {
        let desired = set(&["203.0.113.10"]);
        let mut actual = Actual {
            addresses_wanted: None,
            placed: ips(&["203.0.113.10"]),
            announced: None,
        };
        let steps = converge(&desired, &mut actual);
        assert_eq!(
            steps,
            vec![
                Step::PlaceAddresses(ips(&["203.0.113.10"])),
                Step::Announce(desired.clone()),
            ]
        );
    }

    #[test]
    fn a_new_address_is_placed_before_it_is_announced() {
        let mut actual = Actual::default();
        converge(&set(&["203.0.113.10"]), &mut actual);
        let desired = set(&["203.0.113.10", "203.0.113.11"]);
        let steps = converge(&desired, &mut actual);
        assert_eq!(
            steps,
            vec![
                Step::PlaceAddresses(ips(&["203.0.113.10", "203.0.113.11"])),
                Step::Announce(desired.clone()),
            ]
        );
    }

    #[test]
    fn a_removed_address_is_withdrawn_before_it_leaves_the_interface() {
        let mut actual = Actual::default();
        converge(&set(&["203.0.113.10", "203.0.113.11"]), &mut actual);
        let steps = converge(&set(&["203.0.113.10"]), &mut actual);
        assert_eq!(
            steps,
            vec![
                Step::Announce(set(&["203.0.113.10"])),
                Step::PlaceAddresses(ips(&["203.0.113.10"])),
            ]
        );
    }

    #[test]
    fn an_address_that_netlink_could_not_place_is_not_announced() {
        let desired = set(&["203.0.113.10", "203.0.113.11"]);
        let actual = Actual {
            addresses_wanted: Some(ips(&["203.0.113.10", "203.0.113.11"])),
            placed: ips(&["203.0.113.10"]),
            announced: None,
        };
        assert_eq!(
            plan(&desired, &actual),
            vec![Step::Announce(set(&["203.0.113.10"]))]
        );
    }

    #[test]
    fn an_address_that_vanished_from_the_interface_is_withdrawn() {
        let desired = set(&["203.0.113.10"]);
        let actual = Actual {
            addresses_wanted: Some(ips(&["203.0.113.10"])),
            placed: BTreeSet::new(),
            announced: Some(desired.clone()),
        };
        assert_eq!(
            plan(&desired, &actual),
            vec![Step::Announce(BTreeSet::new())]
        );
    }

    #[test]
    fn changed_attributes_are_re_announced_without_touching_the_interface() {
        let mut actual = Actual::default();
        converge(&set(&["203.0.113.10"]), &mut actual);
        let mut changed = ann("203.0.113.10");
        changed
            .attributes
            .communities
            .insert(Community::new(65000, 7));
        let desired = BTreeSet::from([changed]);
        assert_eq!(
            plan(&desired, &actual),
            vec![Step::Announce(desired.clone())]
        );
    }

    #[test]
    fn a_converged_state_plans_nothing() {
        let desired = set(&["203.0.113.10", "2001:db8:ffff::10"]);
        let mut actual = Actual::default();
        converge(&desired, &mut actual);
        assert!(plan(&desired, &actual).is_empty());
    }
}
