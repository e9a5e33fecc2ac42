//! Which EndpointSlices belong to which Service (their
//! `kubernetes.io/service-name` label), as of the last evaluation: the
//! desired task uses it to decide again only the Services a slice change
//! concerns, and to hand the policy every slice of a changed Service.
//!
//! Owns: the index, in both directions. Must not touch: the stores (the
//! caller reads them) or the policy.
//!
//! Memory: one entry per slice in each direction, the Service's key shared
//! (`Arc`) between the two and the slice names of a Service in a `Vec` (a
//! Service has one slice or a few): about a third of what two maps of owned
//! keys with a set per Service took at 10,000 slices.

use std::collections::HashMap;
use std::sync::Arc;

use crate::policy::ServiceKey;

/// A slice by (namespace, name).
pub type SliceId = (String, String);

#[derive(Debug, Default)]
pub struct SliceIndex {
    owner: HashMap<SliceId, Arc<ServiceKey>>,
    slices: HashMap<Arc<ServiceKey>, Vec<String>>,
}

impl SliceIndex {
    /// Forgets every slice.
    pub fn clear(&mut self) {
        self.owner.clear();
        self.slices.clear();
    }

    /// Records that `slice` now belongs to `owner` (`None`: to no Service,
    /// or it is gone). Returns the Service it belonged to before, if any and
    /// different, so that both can be decided again.
    pub fn set(&mut self, slice: SliceId, owner: Option<ServiceKey>) -> Option<ServiceKey> {
        let before = self.owner.remove(&slice);
        if let Some(before) = &before
            && owner.as_ref() == Some(&**before)
        {
            self.owner.insert(slice, before.clone());
            return None;
        }
        if let Some(before) = &before
            && let Some(names) = self.slices.get_mut(before)
        {
            names.retain(|name| *name != slice.1);
            if names.is_empty() {
                self.slices.remove(before);
            }
        }
        if let Some(owner) = owner {
            let key = self
                .slices
                .get_key_value(&owner)
                .map(|(key, _)| key.clone())
                .unwrap_or_else(|| Arc::new(owner));
            self.slices
                .entry(key.clone())
                .or_default()
                .push(slice.1.clone());
            self.owner.insert(slice, key);
        }
        before.map(|key| (*key).clone())
    }

    /// The names of the slices of `service` (all in its namespace).
    pub fn slices_of(&self, service: &ServiceKey) -> &[String] {
        self.slices
            .get(service)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// How many slices are indexed.
    pub fn len(&self) -> usize {
        self.owner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owner.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> SliceId {
        ("shop".to_string(), name.to_string())
    }

    fn key(name: &str) -> ServiceKey {
        ServiceKey::new("shop", name)
    }

    #[test]
    fn slices_are_listed_under_their_service() {
        let mut index = SliceIndex::default();
        assert_eq!(index.set(id("web-1"), Some(key("web"))), None);
        assert_eq!(index.set(id("web-2"), Some(key("web"))), None);
        assert_eq!(index.set(id("db-1"), Some(key("db"))), None);
        assert_eq!(index.slices_of(&key("web")), ["web-1", "web-2"]);
        assert_eq!(index.slices_of(&key("db")), ["db-1"]);
        assert!(index.slices_of(&key("cache")).is_empty());
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn a_slice_moved_to_another_service_names_the_old_one_and_leaves_it() {
        let mut index = SliceIndex::default();
        index.set(id("web-1"), Some(key("web")));
        assert_eq!(index.set(id("web-1"), Some(key("db"))), Some(key("web")));
        assert!(index.slices_of(&key("web")).is_empty());
        assert_eq!(index.slices_of(&key("db")), ["web-1"]);
    }

    #[test]
    fn setting_the_same_owner_again_changes_nothing() {
        let mut index = SliceIndex::default();
        index.set(id("web-1"), Some(key("web")));
        assert_eq!(index.set(id("web-1"), Some(key("web"))), None);
        assert_eq!(index.slices_of(&key("web")), ["web-1"]);
    }

    #[test]
    fn a_deleted_slice_is_forgotten_in_both_directions() {
        let mut index = SliceIndex::default();
        index.set(id("web-1"), Some(key("web")));
        index.set(id("web-2"), Some(key("web")));
        assert_eq!(index.set(id("web-1"), None), Some(key("web")));
        assert_eq!(index.slices_of(&key("web")), ["web-2"]);
        assert_eq!(index.set(id("web-2"), None), Some(key("web")));
        assert!(index.is_empty());
        assert!(index.slices.is_empty(), "no empty list is kept");
        index.clear();
        assert!(index.is_empty());
    }
}
