//! The end-to-end lab (issue 7): traffic through an FRR router to a service
//! address served by three nodes, faults injected while it flows.
//!
//! Each scenario prints requests sent, failed and the longest gap without a
//! success; it asserts the outcomes the issue names (counts, shares) and
//! only generous bounds on durations, printing the measured figure.
//! docs/failover.md has the table of figures and the commands.

use std::time::Duration;

use herald_testnet::lab_or_skip;
use herald_testnet::process::Signal;
use herald_testnet::{HeraldNode, HeraldOptions};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// The harness itself: herald starts in a lab namespace, answers /status
/// and /metrics from inside it, survives SIGSTOP/SIGCONT, and comes back
/// after SIGKILL and after a planned restart, each time as a new process.
#[test]
fn herald_node_answers_on_its_admin_endpoint_and_restarts() {
    let lab = lab_or_skip!();
    let ns = lab.namespace("n1").expect("namespace");
    let config = "asn: 64601\nrouter_id: 192.0.2.11\ninterface: lo\n\
                  admin_listen: 127.0.0.1:9179\npools:\n  - name: lab\n    cidrs: [203.0.113.0/24]\n\
                  peers: []\n";
    let mut node = HeraldNode::start(
        &ns,
        HeraldOptions {
            binary: HERALD.into(),
            config: config.into(),
            services: Some("services: []\n".into()),
            admin: "127.0.0.1:9179".parse().unwrap(),
            node_name: "n1".into(),
            env: vec![],
            extra_args: vec![],
        },
    )
    .expect("herald starts and answers /livez");
    let status = node.status().expect("/status");
    assert_eq!(status["config"]["asn"], 64601, "{status}");
    assert!(node.metrics().expect("/metrics").contains("# TYPE"));
    let first = node.pid().unwrap();

    node.signal(Signal::SIGSTOP).expect("SIGSTOP");
    assert!(
        node.get("/livez").is_err(),
        "a frozen herald does not answer"
    );
    node.signal(Signal::SIGCONT).expect("SIGCONT");
    node.wait_for(Duration::from_secs(10), "/status after SIGCONT", |_| Ok(()))
        .expect("answers again");

    node.kill().expect("SIGKILL");
    assert!(!node.is_running());
    node.launch().expect("starts again after SIGKILL");
    let second = node.pid().unwrap();
    assert_ne!(first, second);

    node.restart(Duration::from_secs(10))
        .expect("planned restart");
    assert_ne!(node.pid().unwrap(), second);
    assert_eq!(node.status().expect("/status")["node_name"], "n1");
}
