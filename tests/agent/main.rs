//! The agent as users run it: `herald run` in a lab namespace, against real
//! or scripted routers.

mod coupling_latency;
