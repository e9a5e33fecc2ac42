//! herald as a user starts it: `herald run`, `herald status`, `herald
//! check-config`, SIGHUP, and the documentation a user reaches from the
//! README. One test binary for the theme.

mod admin_endpoint;
mod check_config;
mod config_reload;
mod deploy_docs;
