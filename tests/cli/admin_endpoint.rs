//! `herald run` as a process: it serves the probes and `/metrics` on TCP and
//! `/status` and `/drain` only on its admin socket, `herald status` reads
//! the socket, another user cannot, and SIGTERM stops it cleanly. Also keeps docs/metrics.md in step
//! with what /metrics serves.
//!
//! The agent places addresses and opens BGP and BFD sockets, so it runs in a
//! lab namespace of its own (`ip netns exec`), never in the host's; the test
//! reaches its admin endpoint from a thread inside that namespace.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use herald::cli::{HttpResponse, parse_response};
use herald::status::StatusReport;
use herald_testnet::{Lab, Namespace, lab_or_skip};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// A `herald run` child in a namespace of its own, killed (by its PID) if
/// the test ends early.
struct Agent {
    child: Option<Child>,
    admin: SocketAddr,
    socket: PathBuf,
    ns: Namespace,
    _dir: tempfile::TempDir,
    _lab: Lab,
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Agent {
    /// Starts `herald run` in a new namespace of `lab` and waits (at most
    /// 20 s) until the admin endpoint accepts connections.
    fn start(lab: Lab) -> Agent {
        let ns = lab.namespace("agent").unwrap();
        let admin: SocketAddr = ([127, 0, 0, 1], 9179).into();
        let dir = tempfile::tempdir().unwrap();
        // Traversable by other users, so that only the socket's own mode and
        // herald's peer check stand between them and the agent.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("run/admin.sock");
        let text = std::fs::read_to_string(example("herald.yaml")).expect("examples/herald.yaml");
        let config = dir.path().join("herald.yaml");
        std::fs::write(
            &config,
            text.replacen("127.0.0.1:9179", &admin.to_string(), 1),
        )
        .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name(), HERALD])
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--services")
            .arg(example("services.yaml"))
            .arg("--admin-socket")
            .arg(&socket)
            .env("NODE_NAME", "node-under-test")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn herald run");
        let mut agent = Agent {
            child: Some(child),
            admin,
            socket,
            ns,
            _dir: dir,
            _lab: lab,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while agent.connect(Duration::from_millis(200)).is_err() {
            if let Some(status) = agent.child.as_mut().unwrap().try_wait().unwrap() {
                let output = agent.child.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "herald run exited early with {status}:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            assert!(
                Instant::now() < deadline,
                "the admin endpoint did not open within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    /// A connection to the admin endpoint, opened inside the namespace.
    fn connect(&self, timeout: Duration) -> std::io::Result<TcpStream> {
        let admin = self.admin;
        self.ns
            .run_in(move || TcpStream::connect_timeout(&admin, timeout))
            .map_err(std::io::Error::other)?
    }

    fn get(&self, path: &str) -> HttpResponse {
        let mut stream = self.connect(Duration::from_secs(5)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        parse_response(&raw).expect("an HTTP response")
    }

    /// `METHOD PATH` on the admin socket (a file: no namespace needed).
    fn socket_request(&self, method: &str, path: &str) -> HttpResponse {
        let mut stream = UnixStream::connect(&self.socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        parse_response(&raw).expect("an HTTP response")
    }

    /// `METHOD PATH` on TCP `admin_listen`, from inside the namespace.
    fn tcp_request(&self, method: &str, path: &str) -> HttpResponse {
        let mut stream = self.connect(Duration::from_secs(5)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        parse_response(&raw).expect("an HTTP response")
    }

    /// `herald status --admin-socket` as another user (uid and gid 65532,
    /// no supplementary groups, no capabilities).
    fn herald_status_as_another_user(&self) -> Output {
        Command::new("setpriv")
            .args(["--reuid", "65532", "--regid", "65532", "--clear-groups"])
            .arg(HERALD)
            .args(["status", "--admin-socket"])
            .arg(&self.socket)
            .output()
            .expect("setpriv (util-linux)")
    }

    fn herald_status(&self, json: bool) -> Output {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.ns.name(), HERALD]);
        command
            .arg("status")
            .arg("--admin-socket")
            .arg(&self.socket);
        if json {
            command.arg("--json");
        }
        command.output().unwrap()
    }

    /// Sends SIGTERM and waits (at most 10 s) for the exit; returns the
    /// output and how long the exit took.
    fn terminate(mut self) -> (Output, Duration) {
        let child = self.child.take().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        let sent = Instant::now();
        kill(pid, Signal::SIGTERM).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(output) => (output.unwrap(), sent.elapsed()),
            Err(_) => {
                let _ = kill(pid, Signal::SIGKILL);
                panic!("herald run did not exit within 10 s of SIGTERM");
            }
        }
    }
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

fn body(response: &HttpResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

#[test]
fn run_serves_the_four_endpoints_and_stops_on_sigterm() {
    let agent = Agent::start(lab_or_skip!());

    let livez = agent.get("/livez");
    assert_eq!(livez.status, 200);
    assert_eq!(body(&livez).trim(), "ok");

    // The example's router is not in this namespace: its session never
    // comes up, so herald is not ready, and says why.
    let readyz = agent.get("/readyz");
    assert_eq!(readyz.status, 503, "{}", body(&readyz));
    assert!(
        body(&readyz).contains("[-]peers failed: "),
        "{}",
        body(&readyz)
    );

    let metrics = agent.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.content_type.as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = body(&metrics);
    let build = format!(
        "herald_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&build), "{text}");
    assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");

    // /status only on the socket: TCP answers 404.
    assert_eq!(agent.get("/status").status, 404);
    let status = agent.socket_request("GET", "/status");
    assert_eq!(status.status, 200);
    assert_eq!(status.content_type.as_deref(), Some("application/json"));
    let report: StatusReport = serde_json::from_slice(&status.body).expect("JSON");
    assert_eq!(report.node_name, "node-under-test");
    assert_eq!(report.config.asn, 64601);

    assert_eq!(agent.get("/nothing-here").status, 404);

    let (output, took) = agent.terminate();
    println!(
        "herald run exited {:?} after SIGTERM in {took:?}",
        output.status.code()
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(stderr.contains("SIGTERM"), "{stderr}");
}

#[test]
fn herald_status_prints_tables_and_json_from_the_running_agent() {
    let agent = Agent::start(lab_or_skip!());

    let output = agent.herald_status(false);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with(&format!(
            "herald {} on node-under-test: AS 64601, router id 192.0.2.11",
            env!("CARGO_PKG_VERSION")
        )),
        "{stdout}"
    );
    for section in [
        "\nPeers\n",
        "\nBFD sessions\n",
        "\nAnnouncements\n",
        "\nSources\n",
    ] {
        assert!(stdout.contains(section), "{section:?} missing:\n{stdout}");
    }

    let output = agent.herald_status(true);
    assert!(output.status.success());
    let report: StatusReport = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(report.config.pools[0].name, "public");

    let (output, _) = agent.terminate();
    assert_eq!(output.status.code(), Some(0));
}

/// A panic in any task ends `herald run` with the panic's message and a
/// failure code, instead of tokio swallowing it and herald running on
/// without that task. (The trigger exists in debug builds only.)
#[test]
fn a_panic_in_a_task_ends_the_process_with_its_message() {
    let mut agent = Agent::start(lab_or_skip!());
    let response = agent.socket_request("POST", "/debug/panic");
    assert_eq!(response.status, 202, "{}", body(&response));
    let child = agent.child.take().unwrap();
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            panic!("herald run kept running after a task panicked");
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(70), "{stderr}");
    assert!(
        stderr.contains("test-only panic in a spawned task"),
        "{stderr}"
    );
}

#[test]
fn herald_status_says_clearly_when_nothing_listens() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let output = Command::new(HERALD)
        .arg("status")
        .arg("--admin-socket")
        .arg(&socket)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(
        stderr.trim(),
        format!(
            "herald is not running: nothing answers at {} (no such socket)",
            socket.display()
        )
    );
    // The old TCP option says where /status went instead of failing vaguely.
    let output = Command::new(HERALD)
        .args(["status", "--admin", "127.0.0.1:9179"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("use --admin-socket PATH"), "{stderr}");
}

/// The attacker is any process on the node (herald uses host networking)
/// or, with `admin_listen: 0.0.0.0`, any pod: on TCP nothing reads the
/// report or changes routing, whatever the method or spelling; a process of
/// another user on the node cannot use the socket either, even when its
/// file mode is loosened by hand.
#[test]
fn tcp_and_other_users_get_neither_status_nor_drain() {
    let agent = Agent::start(lab_or_skip!());
    for (method, path) in [
        ("POST", "/drain"),
        ("DELETE", "/drain"),
        ("GET", "/status"),
        ("POST", "/drain/"),
        ("POST", "//drain"),
        ("POST", "/drain?now=1"),
        ("POST", "/%64rain"),
    ] {
        let response = agent.tcp_request(method, path);
        assert_eq!(response.status, 404, "{method} {path}: {}", body(&response));
    }
    // Nothing started a drain.
    let report: StatusReport =
        serde_json::from_slice(&agent.socket_request("GET", "/status").body).unwrap();
    assert_eq!(report.drain, None);

    let meta = std::fs::metadata(&agent.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(agent.socket.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700,
        "herald creates the socket's directory 0700"
    );
    // The directory is herald's own; open it up so only the socket's mode
    // protects it: the kernel refuses another user.
    std::fs::set_permissions(
        agent.socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let output = agent.herald_status_as_another_user();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
    // Loosen the socket's mode too: herald's peer check still refuses.
    std::fs::set_permissions(&agent.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let output = agent.herald_status_as_another_user();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(!stderr.contains("permission denied"), "{stderr}");
    let metrics = body(&agent.get("/metrics"));
    assert!(
        metrics.contains("\nherald_admin_socket_refused_connections_total 1\n"),
        "{metrics}"
    );
    // Root (this test) still gets in.
    assert_eq!(agent.socket_request("GET", "/status").status, 200);

    let (output, _) = agent.terminate();
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn run_refuses_an_invalid_config_with_the_field_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    let example = std::fs::read_to_string(example("herald.yaml")).unwrap();
    std::fs::write(&config, example.replacen("min_rx: 50ms", "min_rx: 5ms", 1)).unwrap();
    let output = Command::new(HERALD)
        .args(["run", "--node-name", "n1", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("peers[0].bfd.min_rx: must be at least 10ms"),
        "{stderr}"
    );
}

/// (sample name, type, help) of every metric family in an exposition.
fn served_catalogue(text: &str) -> BTreeSet<(String, String, String)> {
    let mut help = std::collections::BTreeMap::new();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap();
            help.insert(name.to_string(), text.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap();
            let name = match kind {
                "counter" => format!("{family}_total"),
                "info" => format!("{family}_info"),
                _ => family.to_string(),
            };
            let help = help.get(family).cloned().unwrap_or_default();
            out.insert((name, kind.to_string(), help));
        }
    }
    out
}

/// (name, type, help) of every row of the catalogue table in docs/metrics.md,
/// with whether the row lists labels.
fn documented_catalogue() -> std::collections::BTreeMap<(String, String, String), bool> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md"))
            .unwrap();
    doc.lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
            assert_eq!(cells.len(), 4, "docs/metrics.md row {line:?}");
            (
                (
                    cells[0].trim().trim_matches('`').to_string(),
                    cells[1].trim().to_string(),
                    cells[3].trim().to_string(),
                ),
                !cells[2].trim().is_empty(),
            )
        })
        .collect()
}

#[test]
fn docs_metrics_md_lists_exactly_what_metrics_serves() {
    let agent = Agent::start(lab_or_skip!());
    // One request first, so labelled families have a sample too.
    assert_eq!(agent.get("/livez").status, 200);
    let served = served_catalogue(&body(&agent.get("/metrics")));
    let documented = documented_catalogue();
    let undocumented: Vec<_> = served
        .iter()
        .filter(|row| !documented.contains_key(*row))
        .collect();
    // A labelled family has no series until something records one (a BGP
    // session, a dropped BFD packet) and is not served until then; a family
    // without labels is always served.
    let not_served: Vec<_> = documented
        .iter()
        .filter(|(row, labelled)| !**labelled && !served.contains(*row))
        .map(|(row, _)| row)
        .collect();
    assert!(
        undocumented.is_empty() && not_served.is_empty(),
        "docs/metrics.md and /metrics disagree.\nserved but not documented: \
         {undocumented:#?}\ndocumented but not served: {not_served:#?}"
    );
    assert!(served.len() >= 9, "{served:#?}");
}
