//! Reload tests on temp files with tokio's paused clock: the poll ticks
//! advance virtual time, so "nothing arrives within 10 polls" is exact and
//! no test sleeps.

use std::path::Path;

use tokio::sync::mpsc::error::TryRecvError;

use super::*;

const CONFIG: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/herald.yaml"));
const SERVICES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/services.yaml"
));

fn options() -> ReloadOptions {
    ReloadOptions {
        poll: Duration::from_secs(1),
        sighup: false,
    }
}

async fn next(reloads: &mut mpsc::Receiver<Reload>) -> Reload {
    tokio::time::timeout(Duration::from_secs(30), reloads.recv())
        .await
        .expect("a reload within 30 s of virtual time")
        .expect("the reload source is running")
}

/// Lets the poll task run for `polls` intervals of virtual time.
async fn polls(polls: u32) {
    tokio::time::sleep(Duration::from_secs(u64::from(polls))).await;
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn with_asn(asn: u32) -> String {
    CONFIG.replacen("asn: 64601", &format!("asn: {asn}"), 1)
}

fn start(dir: &Path, services: bool) -> (ReloadSource, mpsc::Receiver<Reload>, Metrics, PathBuf) {
    let config = dir.join("herald.yaml");
    write(&config, CONFIG);
    let services_path = services.then(|| {
        let path = dir.join("services.yaml");
        write(&path, SERVICES);
        path
    });
    let metrics = Metrics::default();
    let (source, reloads) =
        ReloadSource::spawn_with(config.clone(), services_path, metrics.clone(), options())
            .unwrap();
    (source, reloads, metrics, config)
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_file_is_never_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (_source, mut reloads, metrics, config) = start(dir.path(), true);
    // Rewriting the same bytes is no change either.
    write(&config, CONFIG);
    polls(10).await;
    assert!(matches!(reloads.try_recv(), Err(TryRecvError::Empty)));
    assert_eq!(metrics.count("config", "loaded"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_changed_valid_config_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (_source, mut reloads, metrics, config) = start(dir.path(), false);
    write(&config, &with_asn(64700));
    match next(&mut reloads).await {
        Reload::Config(config) => assert_eq!(config.asn, 64700),
        other => panic!("expected the new config, got {other:?}"),
    }
    assert_eq!(metrics.count("config", "loaded"), 1);
    // Reported once, not at every poll.
    polls(5).await;
    assert!(matches!(reloads.try_recv(), Err(TryRecvError::Empty)));
}

#[tokio::test(start_paused = true)]
async fn an_invalid_file_is_rejected_once_with_its_field_path_and_a_fixed_one_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (_source, mut reloads, metrics, config) = start(dir.path(), false);
    write(&config, &CONFIG.replacen("min_rx: 50ms", "min_rx: 5ms", 1));
    match next(&mut reloads).await {
        Reload::Rejected { path, error } => {
            assert_eq!(path, config);
            let problems = error.problems();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].path, "peers[0].bfd.min_rx");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(metrics.count("config", "rejected"), 1);
    polls(5).await;
    assert!(
        matches!(reloads.try_recv(), Err(TryRecvError::Empty)),
        "the same bad bytes are reported once"
    );
    write(&config, &with_asn(64702));
    assert!(matches!(next(&mut reloads).await, Reload::Config(c) if c.asn == 64702));
    assert_eq!(metrics.count("config", "loaded"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_parse_error_is_rejected_with_the_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_source, mut reloads, _metrics, config) = start(dir.path(), false);
    write(
        &config,
        &CONFIG.replacen("hold_time: 9s", "hold_time: 9x", 1),
    );
    let Reload::Rejected { error, .. } = next(&mut reloads).await else {
        panic!("expected a rejection");
    };
    assert!(
        matches!(&error, ConfigError::Parse { field, line: Some(_), .. } if field == "peers[0].hold_time"),
        "{error:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_removed_file_is_rejected_as_unreadable_and_its_return_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let (_source, mut reloads, _metrics, config) = start(dir.path(), false);
    std::fs::remove_file(&config).unwrap();
    let Reload::Rejected { error, .. } = next(&mut reloads).await else {
        panic!("expected a rejection");
    };
    assert!(error.to_string().starts_with("cannot read"), "{error}");
    write(&config, CONFIG);
    assert!(matches!(next(&mut reloads).await, Reload::Config(_)));
}

#[tokio::test(start_paused = true)]
async fn a_configmap_style_symlink_swap_is_noticed() {
    // The kubelet's layout: herald.yaml -> ..data/herald.yaml,
    // ..data -> ..<timestamp>/ ; an update writes a new directory and renames
    // a new ..data symlink over the old one.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("..v1")).unwrap();
    write(&root.join("..v1/herald.yaml"), CONFIG);
    std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/herald.yaml", root.join("herald.yaml")).unwrap();
    let metrics = Metrics::default();
    let (_source, mut reloads) =
        ReloadSource::spawn_with(root.join("herald.yaml"), None, metrics, options()).unwrap();

    std::fs::create_dir(root.join("..v2")).unwrap();
    write(&root.join("..v2/herald.yaml"), &with_asn(64703));
    std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..v1")).unwrap();

    assert!(matches!(next(&mut reloads).await, Reload::Config(c) if c.asn == 64703));
}

#[tokio::test(start_paused = true)]
async fn a_changed_services_file_is_delivered_and_an_invalid_one_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (_source, mut reloads, metrics, _config) = start(dir.path(), true);
    let services = dir.path().join("services.yaml");
    write(&services, &SERVICES.replacen("name: web", "name: api", 1));
    match next(&mut reloads).await {
        Reload::Services(file) => assert_eq!(file.services[0].name, "api"),
        other => panic!("expected the services file, got {other:?}"),
    }
    write(&services, &SERVICES.replacen("rise: 2", "rise: 0", 1));
    let Reload::Rejected { path, error } = next(&mut reloads).await else {
        panic!("expected a rejection");
    };
    assert_eq!(path, services);
    assert_eq!(error.problems()[0].path, "services[0].check.rise");
    assert_eq!(metrics.count("services", "loaded"), 1);
    assert_eq!(metrics.count("services", "rejected"), 1);
    assert_eq!(metrics.count("config", "loaded"), 0);
}

#[tokio::test(start_paused = true)]
async fn an_asked_reload_reports_both_files_even_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (source, mut reloads, _metrics, _config) = start(dir.path(), true);
    source.reload_now();
    assert!(matches!(next(&mut reloads).await, Reload::Config(_)));
    assert!(matches!(next(&mut reloads).await, Reload::Services(_)));
    polls(3).await;
    assert!(matches!(reloads.try_recv(), Err(TryRecvError::Empty)));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_source_ends_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (source, mut reloads, _metrics, _config) = start(dir.path(), false);
    drop(source);
    let end = tokio::time::timeout(Duration::from_secs(30), reloads.recv()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
}

#[test]
fn the_metric_is_registered_with_its_labels() {
    let mut registry = crate::metrics::MetricsRegistry::new();
    let metrics = Metrics::register(registry.registry());
    metrics
        .reloads
        .get_or_create(&ReloadLabels {
            file: "config",
            result: "rejected",
        })
        .inc();
    let text = registry.encode();
    assert!(
        text.contains("herald_config_reloads_total{file=\"config\",result=\"rejected\"} 1"),
        "{text}"
    );
}
