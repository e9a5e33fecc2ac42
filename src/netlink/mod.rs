//! Service addresses on the node's interface (the netlink issue fills this
//! module).
//!
//! Owns: the addresses herald adds, and only those. Must not touch: addresses
//! an operator added, routes, or anything BGP.
