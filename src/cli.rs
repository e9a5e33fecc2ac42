//! Command line (foundation issue: being written).

/// Entry point called by `main`.
pub fn main() -> anyhow::Result<()> {
    Ok(())
}
