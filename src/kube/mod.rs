//! The Kubernetes source (the Kubernetes issue fills this module).
//!
//! Owns: watchers and reflector stores for Services, EndpointSlices and this
//! Node, and the Events herald records. Must not touch: netlink or BGP; it
//! only feeds the policy.
