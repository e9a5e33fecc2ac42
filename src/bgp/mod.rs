//! BGP-4: herald's own announce-only speaker (the BGP speaker issue fills
//! this module).
//!
//! Owns: the wire codec, the pure session FSM, the per-peer Adj-RIB-Out and the
//! TCP transport. Must not touch: netlink, Kubernetes, or BFD internals; BFD
//! reaches a session only through the session's admin input.
