//! BGP-4: herald's own announce-only speaker.
//!
//! Owns: the wire codec (`packet`), the pure session FSM (`fsm`), the
//! per-peer Adj-RIB-Out (`rib_out`), the TCP transport (`transport`), the
//! per-peer session task (`session`) and the speaker that runs one session
//! per peer with the passive listener (`speaker`). Must not touch: netlink, Kubernetes, or
//! BFD internals; BFD reaches a session only through the session's admin
//! input (`bfd down`).
//!
//! # Supported standards
//! - RFC 4271 BGP-4 (messages, FSM §8, collision detection §6.8)
//! - RFC 4760 multiprotocol extensions (IPv6 unicast), RFC 2545 IPv6 next hop
//! - RFC 5492 capabilities, RFC 6793 4-octet AS numbers
//! - RFC 2918 route refresh, RFC 4724 graceful restart (restarting speaker)
//! - RFC 7606 revised error handling, RFC 8654 extended messages
//! - RFC 1997 communities, RFC 8092 large communities, RFC 8326 graceful
//!   shutdown
//! - RFC 4486 Cease subcodes, RFC 9003 shutdown communication, RFC 9384
//!   Cease "BFD Down"
//! - RFC 2385 TCP MD5 signatures, RFC 5082 GTSM

pub mod fsm;
pub mod listener;
pub mod metrics;
pub mod packet;
pub mod rib_out;
pub mod session;
pub mod speaker;
pub mod transport;
