//! The `herald-apiserver` binary: listens where told, prints its URL, writes a kubeconfig, and
//! takes faults over its control endpoint.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use serde_json::json;

/// Kills the server process by PID on every path, panics included.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_binary_serves_writes_a_kubeconfig_and_takes_faults_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kc");
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_herald-apiserver"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--bookmark-interval",
                "1",
                "--kubeconfig-out",
            ])
            .arg(&kubeconfig)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn herald-apiserver"),
    );
    let mut line = String::new();
    BufReader::new(server.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().to_string();
    let addr: SocketAddr = url.strip_prefix("http://").unwrap().parse().unwrap();
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(text.contains(&format!("server: {url}")), "{text}");

    assert_eq!(common::get(addr, "/version").json()["major"], "1");
    let r = common::post(
        addr,
        "/_standin/faults",
        &json!({"fault": "fail", "count": 1, "status": 500}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(common::get(addr, "/api/v1/namespaces").status, 500);
    let list = common::get(addr, "/api/v1/namespaces").json();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"default") && names.contains(&"kube-system"));
    let mut w = common::Watch::open(
        addr,
        "/api/v1/nodes?watch=true&allowWatchBookmarks=true&resourceVersion=1",
    );
    assert_eq!(
        w.next().unwrap()["type"],
        "BOOKMARK",
        "--bookmark-interval applies"
    );
}
