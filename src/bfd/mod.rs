//! BFD (RFC 5880/5881/5883): herald's own implementation (the BFD issue fills
//! this module).
//!
//! Owns: the control-packet codec, the pure session FSM and the runtime thread
//! with its sockets. Must not touch: BGP internals; it reports session state
//! changes and nothing else.
