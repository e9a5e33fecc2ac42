//! The network-namespace lab (filled by the foundation issue).
