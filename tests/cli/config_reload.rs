//! SIGHUP reloads the configuration. The signal goes to the whole process:
//! no other test of this binary installs a SIGHUP handler (they run herald
//! as a child process), so this one alone receives it, and it raises it
//! only after its handler is installed (the default action would end the
//! process).

use std::time::Duration;

use herald::agent::reload::{Metrics, Reload, ReloadSource};

#[tokio::test]
async fn sighup_reports_the_unchanged_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.yaml");
    std::fs::write(&path, include_str!("../../examples/herald.yaml")).unwrap();
    let metrics = Metrics::default();
    let (_source, mut reloads) = ReloadSource::spawn(path, None, metrics.clone()).unwrap();
    // The handler is installed when spawn returns; an unchanged file is
    // reported only because of the signal (polling reports changes only).
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
    let reload = tokio::time::timeout(Duration::from_secs(10), reloads.recv())
        .await
        .expect("a reload within 10 s of SIGHUP")
        .expect("the source runs");
    assert!(matches!(reload, Reload::Config(c) if c.asn == 64601));
    assert_eq!(metrics.count("config", "loaded"), 1);
}
