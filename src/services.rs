//! (foundation issue: being written)
