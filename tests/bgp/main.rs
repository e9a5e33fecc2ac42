//! herald's BGP speaker: against itself over loopback, a hostile raw-bytes
//! peer, an independent decoder (netgauze), FRR, BIRD and GoBGP in the lab,
//! the router examples of docs/routers/, and the speakers' benchmark. One
//! test binary for the theme.

mod differential;
mod hostile;
mod lab;
mod lab_bench;
mod router_examples;
mod session;
