//! `speaker: bird` without a lab: the include file herald renders and the
//! reference configurations in bird-compat/ parse with the real BIRD 2
//! (`bird -p`), and the speaker drives a scripted control socket through
//! reloads, a rejected file, BIRD going away and coming back.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::bird::schedule::SchedulePolicy;
use herald::bird::{BirdSpeaker, Metrics};
use herald::config::Config;
use herald::metrics::MetricsRegistry;
use herald::model::{Announcement, Community, LargeCommunity, RouteAttributes};
use herald::status::{BfdState, BgpState};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

const EXAMPLE: &str = include_str!("../../bird-compat/herald-example.yaml");
const NODE_CONF: &str = include_str!("../../bird-compat/bird-node.conf");
const ROUTER_CONF: &str = include_str!("../../bird-compat/bird-router.conf");

/// Whether `bird` can run here; under CI=true it must.
fn bird_or_skip() -> bool {
    let found = std::process::Command::new("bird")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and the bird binary (Debian package bird2) is missing"
        );
        eprintln!("skipped: no bird binary (apt-get install bird2)");
    }
    found
}

/// `bird -p -c FILE`: Ok, or BIRD's complaint.
fn bird_parse(file: &Path) -> Result<(), String> {
    let output = std::process::Command::new("bird")
        .arg("-p")
        .arg("-c")
        .arg(file)
        .output()
        .expect("run bird -p");
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn announcement(address: &str, attributes: RouteAttributes) -> Announcement {
    Announcement {
        address: address.parse().unwrap(),
        attributes,
    }
}

fn every_attribute() -> RouteAttributes {
    let mut attributes = RouteAttributes::default();
    attributes.communities.insert(Community::new(65000, 100));
    attributes.communities.insert(Community::GRACEFUL_SHUTDOWN);
    attributes.large_communities.insert(LargeCommunity {
        global_admin: 4_200_000_000,
        local_data_1: 1,
        local_data_2: 2,
    });
    attributes.med = Some(10);
    attributes.local_pref = Some(200);
    attributes.link_bandwidth = Some(herald::model::LinkBandwidth::new(64601, 2_000_000, true));
    attributes
}

#[test]
fn the_rendered_include_and_the_reference_configs_parse_with_bird() {
    if !bird_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let include = dir.path().join("herald.conf");
    let node = dir.path().join("bird.conf");
    std::fs::write(
        &node,
        NODE_CONF.replace("/etc/bird/herald.conf", include.to_str().unwrap()),
    )
    .unwrap();
    let mut config = Config::from_yaml(EXAMPLE).expect("the example config is valid");
    // A second peer, multihop, and a third without BFD: every template shape.
    config.peers.push(config.peers[0].clone());
    config.peers[1].name = "far-away".into();
    config.peers[1].address = herald::config::PeerAddress::Ip("198.51.100.1".parse().unwrap());
    config.peers[1].ebgp_multihop = 3;
    config.peers[1].bfd.multihop = true;
    config.peers.push(config.peers[0].clone());
    config.peers[2].name = "gw".into();
    config.peers[2].address = herald::config::PeerAddress::Gateway;
    config.peers[2].bfd.enabled = false;
    config.validate().expect("still valid");

    for set in [
        BTreeSet::new(),
        BTreeSet::from([
            announcement("203.0.113.10", every_attribute()),
            announcement("203.0.113.11", RouteAttributes::default()),
            announcement("2001:db8:ffff::10", every_attribute()),
        ]),
    ] {
        let text = herald::bird::render::include_file(&config, &set);
        std::fs::write(&include, &text).unwrap();
        bird_parse(&node).unwrap_or_else(|e| panic!("bird rejects:\n{e}\n{text}"));
    }

    // A check that cannot fail proves nothing: a broken file is refused.
    std::fs::write(&include, "protocol static herald4 { ipv4; route x; }\n").unwrap();
    assert!(bird_parse(&node).is_err());

    let router = dir.path().join("router.conf");
    std::fs::write(&router, ROUTER_CONF).unwrap();
    bird_parse(&router).unwrap_or_else(|e| panic!("bird-router.conf: {e}"));
}

/// What the scripted BIRD has seen.
#[derive(Default)]
struct Seen {
    /// The include file at each accepted `configure`.
    loaded: Vec<String>,
}

/// A control socket that answers like BIRD 2: greets, checks and "loads"
/// the include file (refusing any file that announces 203.0.113.99), and
/// reports one BGP session and its BFD session.
struct ScriptedBird {
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedBird {
    fn start(socket: &Path, include: &Path, seen: Arc<Mutex<Seen>>) -> ScriptedBird {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket).expect("bind the scripted socket");
        let include = include.to_path_buf();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                connections.spawn(serve(stream, include.clone(), seen.clone()));
            }
        });
        ScriptedBird { task }
    }

    /// Stops listening and drops every connection, like a BIRD that died.
    fn stop(self, socket: &Path) {
        self.task.abort();
        let _ = std::fs::remove_file(socket);
    }
}

async fn serve(stream: tokio::net::UnixStream, include: PathBuf, seen: Arc<Mutex<Seen>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    if write.write_all(b"0001 BIRD 2.0.12 ready.\n").await.is_err() {
        return;
    }
    while let Ok(Some(command)) = lines.next_line().await {
        let file = std::fs::read_to_string(&include).unwrap_or_default();
        let good = !file.contains("203.0.113.99/32");
        let reading = format!("0002-Reading configuration from {}\n", include.display());
        let reply = match command.as_str() {
            "configure check" if good => format!("{reading}0020 Configuration OK\n"),
            "configure" if good => {
                seen.lock().unwrap().loaded.push(file);
                format!("{reading}0003 Reconfigured\n")
            }
            "configure check" | "configure" => {
                format!("{reading}8002 {}:9:12 syntax error\n", include.display())
            }
            "show protocols all" => {
                "2002-Name       Proto      Table      State  Since         Info\n\
1002-r1         BGP        ---        up     09:17:59.180  Established   \n\
1006-  BGP state:          Established\n \
    Neighbor address: 192.0.2.1\n \
    Neighbor AS:      64512\n \
    Hold timer:       8.208/9\n \
  Channel ipv4\n \
    Routes:         0 imported, 2 exported, 0 preferred\n\
0000 \n"
                    .to_string()
            }
            "show bfd sessions" => "1020-herald_bfd:\n \
IP address                Interface  State      Since         Interval  Timeout\n \
192.0.2.1                 eth1       Up         09:17:55.440    0.050    0.150\n\
0000 \n"
                .to_string(),
            _ => "9001 syntax error, unexpected CF_SYM_UNDEFINED\n".to_string(),
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The value of the unlabelled sample `name` in the exposition.
fn metric(registry: &MetricsRegistry, name: &str) -> f64 {
    registry
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `check` every 20 ms for at most `limit`; panics with `what`.
async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_speaker_reloads_rejects_and_reconnects_against_a_scripted_bird() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bird.ctl");
    let include = dir.path().join("herald.conf");
    let config = Config::from_yaml(&format!(
        "asn: 64601\nrouter_id: 192.0.2.11\nspeaker: bird\n\
         bird: {{control_socket: {}, include_file: {}}}\n\
         pools: [{{name: p, cidrs: [203.0.113.0/24], communities: ['65000:100']}}]\n\
         peers: [{{name: tor, address: 192.0.2.1, asn: 64512}}]\n",
        socket.display(),
        include.display()
    ))
    .unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let bird = ScriptedBird::start(&socket, &include, seen.clone());
    let mut registry = MetricsRegistry::new();
    let metrics = Metrics::register(registry.registry());
    let policy = SchedulePolicy {
        settle: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        min_interval: Duration::from_millis(50),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
    };
    // The file of a previous run (a restart of herald).
    std::fs::write(&include, "# the previous run's routes\n").unwrap();
    let speaker = BirdSpeaker::start_with_policy(&config, metrics, Some(policy)).unwrap();
    let limit = Duration::from_secs(20);
    // Until the agent says what to announce, BIRD keeps what it runs.
    eventually("the first read-back", limit, || !speaker.peers().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        seen.lock().unwrap().loaded.is_empty(),
        "reloaded before announce"
    );
    assert_eq!(
        std::fs::read_to_string(&include).unwrap(),
        "# the previous run's routes\n"
    );
    let loaded = |needle: &'static str| {
        let seen = seen.clone();
        move || {
            seen.lock()
                .unwrap()
                .loaded
                .last()
                .is_some_and(|f| f.contains(needle))
        }
    };

    // Announce: BIRD reloads with the route and its pool community.
    let ten = announcement("203.0.113.10", {
        let mut a = RouteAttributes::default();
        a.communities.insert(Community::new(65000, 100));
        a
    });
    speaker.announce(&BTreeSet::from([ten.clone()]));
    eventually(
        "203.0.113.10 loaded",
        limit,
        loaded("route 203.0.113.10/32 blackhole { bgp_community.add((65000,100)); };"),
    )
    .await;
    eventually("a reload counted", limit, || speaker.status().reloads >= 1).await;

    // Read-back: BIRD's session appears under the configured peer's name.
    eventually("peers read back", limit, || {
        speaker
            .peers()
            .iter()
            .any(|p| p.name == "tor" && p.state == BgpState::Established && p.prefixes_sent == 2)
    })
    .await;
    eventually("BFD read back", limit, || {
        speaker.bfd_sessions().iter().any(|s| {
            s.peer == "tor" && s.state == BfdState::Up && s.detection_time_us == Some(150_000)
        })
    })
    .await;

    // The same set again renders the same file: no reload.
    let reloads = seen.lock().unwrap().loaded.len();
    let unchanged = metric(&registry, "herald_bird_applies_unchanged_total");
    speaker.announce(&BTreeSet::from([ten.clone()]));
    eventually("the unchanged apply", limit, || {
        metric(&registry, "herald_bird_applies_unchanged_total") > unchanged
    })
    .await;
    assert_eq!(seen.lock().unwrap().loaded.len(), reloads);

    // A file BIRD rejects: reported, and the last good file is back on disk.
    let bad = announcement("203.0.113.99", RouteAttributes::default());
    speaker.announce(&BTreeSet::from([ten.clone(), bad]));
    eventually("the rejection", limit, || {
        speaker.status().rejected.is_some()
    })
    .await;
    let on_disk = std::fs::read_to_string(&include).unwrap();
    assert!(
        on_disk.contains("203.0.113.10/32") && !on_disk.contains("203.0.113.99"),
        "{on_disk}"
    );
    assert!(
        speaker.status().rejected.unwrap().contains("syntax error"),
        "{:?}",
        speaker.status()
    );
    assert_eq!(metric(&registry, "herald_bird_include_rejected_total"), 1.0);

    // The next good change goes through and clears the report.
    let eleven = announcement("203.0.113.11", RouteAttributes::default());
    speaker.announce(&BTreeSet::from([ten.clone(), eleven.clone()]));
    eventually("203.0.113.11 loaded", limit, loaded("203.0.113.11/32")).await;
    eventually("the report cleared", limit, || {
        speaker.status().rejected.is_none()
    })
    .await;

    // BIRD goes away: a clear error, and the change waits.
    bird.stop(&socket);
    let twelve = announcement("203.0.113.12", RouteAttributes::default());
    speaker.announce(&BTreeSet::from([ten, eleven, twelve]));
    eventually("the disconnect and a failed reconnect", limit, || {
        let status = speaker.status();
        !status.connected
            && status
                .last_error
                .is_some_and(|e| e.contains(socket.to_str().unwrap()))
            && registry
                .encode()
                .contains("herald_bird_errors_total{reason=\"connect\"}")
    })
    .await;
    assert_eq!(metric(&registry, "herald_bird_control_connected"), 0.0);

    // BIRD is back: herald reconnects and BIRD converges on the latest set.
    let _bird = ScriptedBird::start(&socket, &include, seen.clone());
    eventually(
        "203.0.113.12 loaded after the restart",
        limit,
        loaded("203.0.113.12/32"),
    )
    .await;
    eventually("connected again", limit, || speaker.status().connected).await;

    // flushed(): the pending change reaches BIRD before it returns (what
    // the agent waits on between a withdrawal and removing the address).
    speaker.announce(&BTreeSet::new());
    speaker.flushed(limit).await;
    let last = seen.lock().unwrap().loaded.last().cloned().unwrap();
    assert!(!last.contains("route 203."), "{last}");
    speaker.stop().await;
}
