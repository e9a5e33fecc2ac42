//! BFD (RFC 5880/5881/5883): herald's own implementation.
//!
//! Owns: the control-packet codec, the pure session FSM and the runtime thread
//! with its sockets. Must not touch: BGP internals; it reports session state
//! changes and nothing else (the agent couples them to BGP).
//!
//! # Supported standards
//! - RFC 5880, Bidirectional Forwarding Detection: Asynchronous mode, the
//!   full state machine, timer negotiation, Poll/Final sequences, jitter,
//!   administrative control, authentication (§6.7: Simple Password, Keyed
//!   and Meticulous Keyed MD5 and SHA1, per session). Not supported: Demand
//!   mode (never requested; a peer's is honoured), the Echo function.
//! - RFC 5881, BFD for IPv4 and IPv6 (Single Hop): UDP 3784, source ports
//!   49152-65535, TTL/Hop Limit 255 sent and required.
//! - RFC 5883, BFD for Multihop Paths: UDP 4784, a minimum received TTL.
//! - RFC 5882 §4.2: a peer's AdminDown is reported apart from failures.
//!
//! # Layout
//! - [`packet`]: the wire format and the session-free reception checks.
//! - [`auth`]: RFC 5880 §6.7 authentication: signing, checking, replay
//!   protection.
//! - [`session`]: one session, pure: input and time in, actions out.
//! - [`discriminator`]: unique non-zero local discriminators.
//! - [`runtime`]: the BFD thread: sockets, timers, demultiplexing; the API
//!   the agent uses ([`runtime::BfdRuntime`]).
//! - [`socket`]: socket options, and `recvmsg` / `recvmmsg` with ancillary
//!   data.
//! - [`timers`]: the runtime's queue of transmit and detection deadlines.
//! - [`metrics`]: the Prometheus families.

pub mod auth;
pub mod discriminator;
pub mod metrics;
pub mod packet;
pub mod runtime;
pub mod session;
pub mod socket;
pub mod timers;

use std::time::Duration;

/// The errors of the BFD subsystem.
#[derive(Debug, thiserror::Error)]
pub enum BfdError {
    /// A [`SessionConfig`] field out of range; `field` is its name there.
    #[error("{field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("cannot {action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("a bfd session {0} exists already")]
    DuplicateSession(String),
    #[error("unsupported session: {0}")]
    Unsupported(String),
    #[error("no bfd session with discriminator {0}")]
    UnknownSession(u32),
    #[error("the bfd runtime has stopped")]
    Stopped,
}

impl BfdError {
    fn io(action: impl Into<String>, source: std::io::Error) -> BfdError {
        BfdError::Io {
            action: action.into(),
            source,
        }
    }
}

/// The values one session runs with, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// bfd.DesiredMinTxInterval once Up.
    pub desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval. Zero would ask the peer to stop sending;
    /// herald refuses it.
    pub required_min_rx: Duration,
    /// bfd.DetectMult.
    pub detect_mult: u8,
}

/// Largest interval the 32-bit microsecond fields carry.
const MAX_INTERVAL: Duration = Duration::from_micros(u32::MAX as u64);

impl SessionConfig {
    /// Check the ranges the wire format and the RFC allow.
    pub fn validated(self) -> Result<SessionConfig, BfdError> {
        for (field, value) in [
            ("desired_min_tx", self.desired_min_tx),
            ("required_min_rx", self.required_min_rx),
        ] {
            if value < Duration::from_millis(1) {
                return Err(BfdError::InvalidConfig {
                    field,
                    reason: format!("{value:?} is below the 1ms minimum"),
                });
            }
            if value > MAX_INTERVAL {
                return Err(BfdError::InvalidConfig {
                    field,
                    reason: format!("{value:?} does not fit 32 bits of microseconds"),
                });
            }
        }
        if self.detect_mult == 0 {
            // RFC 5880 §6.8.6: a packet with Detect Mult 0 is discarded.
            return Err(BfdError::InvalidConfig {
                field: "detect_mult",
                reason: "must be at least 1".to_string(),
            });
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(min_tx_ms: u64, min_rx_ms: u64, detect_mult: u8) -> SessionConfig {
        SessionConfig {
            desired_min_tx: Duration::from_millis(min_tx_ms),
            required_min_rx: Duration::from_millis(min_rx_ms),
            detect_mult,
        }
    }

    #[test]
    fn validation_names_the_field_at_fault() {
        assert!(config(20, 50, 3).validated().is_ok());
        let err = config(0, 50, 3).validated().unwrap_err();
        assert!(err.to_string().starts_with("desired_min_tx:"), "{err}");
        let err = config(20, 10_000_000, 3).validated().unwrap_err();
        assert!(err.to_string().starts_with("required_min_rx:"), "{err}");
        let err = config(20, 50, 0).validated().unwrap_err();
        assert!(err.to_string().starts_with("detect_mult:"), "{err}");
    }
}
