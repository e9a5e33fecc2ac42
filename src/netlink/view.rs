//! The address task's view of the interface (pure: no sockets, no clock).
//!
//! The view is a model of the kernel's addresses, built from one dump and
//! then from notifications (which the kernel queues in the order changes
//! happen), plus the task's own acknowledged requests whose notification has
//! not been seen yet ("in flight"). An acknowledged add counts as present and
//! an acknowledged delete as absent until their notification arrives, so a
//! notification that was queued before a later request never makes the task
//! undo its own work.
//!
//! Two kernel facts shape the matching:
//! - An IPv4 add or delete, and an IPv6 delete, queue their notification
//!   before the request is acknowledged. An IPv6 add queues its
//!   `RTM_NEWADDR` from the DAD work, which may run after the
//!   acknowledgement, and a second `RTM_NEWADDR` follows when DAD flags
//!   change; if the address is deleted first, no `RTM_NEWADDR` comes at all.
//! - So a notification is matched against the oldest in-flight request of the
//!   same kind, and requests before it (whose notification the kernel
//!   skipped) are dropped; a deletion that matches nothing ends every
//!   in-flight add of that address (the address is gone).
//!
//! Must not touch: anything; it only records.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use super::reconcile::PresentAddress;

/// An address on the interface: (address, prefix length).
pub type Key = (IpAddr, u8);

/// One of the task's own requests, acknowledged, whose notification has not
/// been seen yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InFlight {
    /// Added: an `RTM_NEWADDR` follows (for IPv6, unless deleted first).
    Added,
    /// The add met `EEXIST`: the `RTM_NEWADDR` of whoever added it follows.
    Exists,
    /// Deleted: an `RTM_DELADDR` follows.
    Removed,
    /// The delete met "not there": the `RTM_DELADDR` of whoever deleted it
    /// follows.
    Gone,
}

impl InFlight {
    fn is_add(self) -> bool {
        matches!(self, InFlight::Added | InFlight::Exists)
    }
}

/// What an `RTM_DELADDR` meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deletion {
    /// The notification of the task's own delete.
    pub ours: bool,
    /// The address was herald's (marked, or added by the task).
    pub was_owned: bool,
}

/// The model plus in-flight requests.
#[derive(Clone, Debug, Default)]
pub struct InterfaceView {
    /// The interface's addresses as of the last notification or dump:
    /// key -> owned.
    model: BTreeMap<Key, bool>,
    /// Per address, acknowledged requests in order.
    in_flight: BTreeMap<Key, VecDeque<InFlight>>,
}

impl InterfaceView {
    /// A view from a dump: nothing in flight.
    pub fn from_dump(present: impl IntoIterator<Item = (Key, bool)>) -> Self {
        InterfaceView {
            model: present.into_iter().collect(),
            in_flight: BTreeMap::new(),
        }
    }

    /// Replace the model with a newer dump. The dump is newer than every
    /// acknowledged request, so nothing is in flight afterwards.
    pub fn replace(&mut self, present: impl IntoIterator<Item = (Key, bool)>) {
        *self = InterfaceView::from_dump(present);
    }

    /// Forget everything (the interface went away).
    pub fn clear(&mut self) {
        *self = InterfaceView::default();
    }

    /// Record an acknowledged request.
    pub fn record(&mut self, key: Key, request: InFlight) {
        self.in_flight.entry(key).or_default().push_back(request);
    }

    /// Apply an `RTM_NEWADDR`. Returns true when it is the notification of
    /// the task's own add.
    pub fn apply_new(&mut self, key: Key, owned: bool) -> bool {
        self.model.insert(key, owned);
        self.settle(key, InFlight::is_add).0
    }

    /// Apply an `RTM_DELADDR`.
    pub fn apply_del(&mut self, key: Key) -> Deletion {
        let modelled_owned = self.model.remove(&key) == Some(true);
        let (ours, skipped_add) = self.settle(key, |f| !f.is_add());
        if !ours {
            // Nothing of ours explains it: every add still in flight is gone.
            self.in_flight.remove(&key);
        }
        Deletion {
            ours,
            was_owned: modelled_owned || skipped_add,
        }
    }

    /// Match against the oldest in-flight request for which `matches` holds,
    /// dropping it and every older one. Returns (matched, whether an
    /// `Added` was among those dropped or left when nothing matched).
    fn settle(&mut self, key: Key, matches: fn(InFlight) -> bool) -> (bool, bool) {
        let Some(queue) = self.in_flight.get_mut(&key) else {
            return (false, false);
        };
        let result = match queue.iter().position(|&f| matches(f)) {
            Some(position) => {
                let dropped: Vec<InFlight> = queue.drain(..=position).collect();
                (true, dropped.contains(&InFlight::Added))
            }
            None => (false, queue.contains(&InFlight::Added)),
        };
        if queue.is_empty() {
            self.in_flight.remove(&key);
        }
        result
    }

    /// The interface as the task believes it is: the model, with the latest
    /// in-flight request of each address applied.
    pub fn present(&self) -> Vec<PresentAddress> {
        let mut present = self.model.clone();
        for (&key, queue) in &self.in_flight {
            match queue.back() {
                Some(InFlight::Added) => {
                    present.insert(key, true);
                }
                Some(InFlight::Exists) => {
                    present.entry(key).or_insert(false);
                }
                Some(InFlight::Removed | InFlight::Gone) => {
                    present.remove(&key);
                }
                None => {}
            }
        }
        present
            .into_iter()
            .map(|((address, prefix_len), owned)| PresentAddress {
                address,
                prefix_len,
                owned,
            })
            .collect()
    }

    /// Addresses in the model (for logs).
    pub fn modelled(&self) -> impl Iterator<Item = (Key, bool)> + '_ {
        self.model.iter().map(|(&k, &o)| (k, o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        let a: IpAddr = s.parse().unwrap();
        (a, if a.is_ipv4() { 32 } else { 128 })
    }

    fn present(view: &InterfaceView) -> Vec<(IpAddr, bool)> {
        view.present()
            .iter()
            .map(|p| (p.address, p.owned))
            .collect()
    }

    #[test]
    fn an_acknowledged_add_counts_as_present_before_its_notification() {
        let mut view = InterfaceView::default();
        view.record(key("203.0.113.1"), InFlight::Added);
        assert_eq!(present(&view), vec![(key("203.0.113.1").0, true)]);
        assert!(
            view.apply_new(key("203.0.113.1"), true),
            "its own notification"
        );
        assert_eq!(present(&view), vec![(key("203.0.113.1").0, true)]);
        assert!(
            !view.apply_new(key("203.0.113.1"), true),
            "a second NEWADDR matches nothing"
        );
    }

    #[test]
    fn a_notification_queued_before_a_later_delete_does_not_bring_the_address_back() {
        let k = key("203.0.113.1");
        let mut view = InterfaceView::default();
        view.record(k, InFlight::Added);
        view.record(k, InFlight::Removed);
        assert!(view.apply_new(k, true));
        assert!(present(&view).is_empty(), "the delete is still in flight");
        assert_eq!(
            view.apply_del(k),
            Deletion {
                ours: true,
                was_owned: true
            }
        );
        assert!(present(&view).is_empty());
    }

    #[test]
    fn an_ipv6_add_deleted_before_its_dad_notification_is_settled_by_the_delete() {
        let k = key("2001:db8::1");
        let mut view = InterfaceView::default();
        view.record(k, InFlight::Added);
        view.record(k, InFlight::Removed);
        // The DAD work saw the address dead: no NEWADDR ever comes.
        assert!(view.apply_del(k).ours);
        assert!(present(&view).is_empty());
        // Nothing is left in flight: a later external delete is not ours.
        view.record(k, InFlight::Added);
        view.apply_new(k, true);
        assert_eq!(
            view.apply_del(k),
            Deletion {
                ours: false,
                was_owned: true
            }
        );
    }

    #[test]
    fn an_external_delete_before_the_ipv6_add_notification_counts_as_owned_and_gone() {
        let k = key("2001:db8::1");
        let mut view = InterfaceView::default();
        view.record(k, InFlight::Added);
        assert_eq!(
            view.apply_del(k),
            Deletion {
                ours: false,
                was_owned: true
            }
        );
        assert!(
            present(&view).is_empty(),
            "the add is over: the address is gone"
        );
    }

    #[test]
    fn an_operator_address_deleted_is_not_owned() {
        let k = key("203.0.113.9");
        let mut view = InterfaceView::from_dump([(k, false)]);
        assert_eq!(
            view.apply_del(k),
            Deletion {
                ours: false,
                was_owned: false
            }
        );
    }

    #[test]
    fn an_add_that_met_eexist_counts_as_present_but_not_owned_until_the_notification() {
        let k = key("203.0.113.1");
        let mut view = InterfaceView::default();
        view.record(k, InFlight::Exists);
        assert_eq!(present(&view), vec![(k.0, false)]);
        assert!(view.apply_new(k, false));
        assert_eq!(present(&view), vec![(k.0, false)]);
    }

    #[test]
    fn a_delete_that_found_nothing_waits_for_the_other_deletion() {
        let k = key("203.0.113.1");
        let mut view = InterfaceView::from_dump([(k, true)]);
        view.record(k, InFlight::Gone);
        assert!(present(&view).is_empty());
        assert!(
            view.apply_del(k).ours,
            "the external delete explains our 'not there'"
        );
        assert!(present(&view).is_empty());
    }

    #[test]
    fn a_dump_replaces_the_model_and_ends_everything_in_flight() {
        let k = key("203.0.113.1");
        let mut view = InterfaceView::default();
        view.record(k, InFlight::Added);
        view.replace([(key("203.0.113.2"), true)]);
        assert_eq!(present(&view), vec![(key("203.0.113.2").0, true)]);
        assert!(!view.apply_del(k).ours);
    }
}
