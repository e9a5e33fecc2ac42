//! The demo behind `sudo bash scripts/demo`: herald on three nodes behind
//! an FRR router, driven by a Kubernetes Service applied with kubectl.
//!
//! It builds the `ecmp3` lab in network namespaces (router r1 with FRR,
//! nodes n1..n3 each running herald and a tiny HTTP server on the service
//! address, a client, and a real Kubernetes API server (kube-apiserver and etcd) behind the router),
//! applies a Service with kubectl, prints the router's ECMP route and
//! `herald status`, sends new connections and shows the per-node split,
//! takes one node's link down while traffic flows and prints the measured
//! blackhole, brings it back, and tears everything down.
//!
//! ```text
//! demo --herald PATH [--short] [--standalone]
//! ```
//! `--short` sends fewer requests (what CI runs); `--standalone` gives herald
//! a services file instead of the Kubernetes API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use herald_testnet::scenario::service::{self, FAST_BFD, NODES};
use herald_testnet::scenario::{HeraldSetup, SERVICE_V4, ServiceLab, Source, TrafficPolicy};
use herald_testnet::traffic::{LoadSpec, TrafficReport};
use herald_testnet::{Lab, LabError, Result, fib};

struct Args {
    herald: PathBuf,
    short: bool,
    standalone: bool,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut herald = None;
    let mut short = false;
    let mut standalone = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--herald" => herald = args.next().map(PathBuf::from),
            "--short" => short = true,
            "--standalone" => standalone = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let herald = herald.ok_or("usage: demo --herald PATH [--short] [--standalone]")?;
    if !herald.exists() {
        return Err(format!(
            "{} does not exist (cargo build first)",
            herald.display()
        ));
    }
    Ok(Args {
        herald,
        short,
        standalone,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let lab = match Lab::start() {
        Ok(lab) => lab,
        Err(skip) => {
            eprintln!("demo cannot run: {skip}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let outcome = run(&lab, &args);
    let what = if args.standalone {
        "herald and FRR"
    } else {
        "herald, FRR and the API"
    };
    if outcome.is_err() {
        lab.print_logs(30);
    }
    // Tear down before printing the verdict, so a failure still cleans up.
    drop(lab);
    match outcome {
        Ok(()) => {
            println!(
                "\nlab torn down: namespaces deleted, {what} stopped ({} s in all).",
                started.elapsed().as_secs()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn step(text: &str) {
    println!("\n==> {text}");
}

fn run(lab: &Lab, args: &Args) -> Result<()> {
    let source = if args.standalone {
        Source::Standalone
    } else {
        Source::Kubernetes(TrafficPolicy::Cluster)
    };
    step(&format!(
        "building the lab: router r1 (FRR), nodes n1..n3 (herald), client{}",
        if args.standalone {
            ""
        } else {
            ", Kubernetes API"
        }
    ));
    println!("  namespaces: {}-*", lab.id());
    let net = ServiceLab::with_herald(lab, HeraldSetup::new(&args.herald, source))?;
    match &net.cluster {
        Some(cluster) => {
            println!(
                "  kube-apiserver {} (with etcd, RBAC on) listens on {} behind r1; herald uses \
                 its ServiceAccount; kubectl applied Nodes, a Service and its EndpointSlice:",
                cluster.server_version()?,
                cluster.url()
            );
            let columns = "custom-columns=SERVICE:.metadata.name,TYPE:.spec.type,\
                           EXTERNAL-IPS:.spec.externalIPs,TRAFFIC-POLICY:.spec.externalTrafficPolicy,\
                           ADVERTISE:.metadata.annotations.herald\\.dev/advertise";
            print!(
                "{}",
                indent(&cluster.kubectl(&["get", "service", "web", "-o", columns])?)
            );
            println!("  herald on every node watches it and announces {SERVICE_V4}/32 to r1");
        }
        None => println!(
            "  herald on every node reads a services file listing {SERVICE_V4} and announces it to r1"
        ),
    }
    println!(
        "  with BFD {} ms x {} beside each session",
        FAST_BFD.interval_ms, FAST_BFD.multiplier
    );
    net.settle(3, Duration::from_secs(60))?;
    net.wait_bfd_up(Duration::from_secs(30))?;

    step("r1's kernel FIB spreads the service over three next hops (ECMP)");
    let r1 = net.router_ns()?;
    print!("{}", indent(&r1.ip(&["route", "show", SERVICE_V4])?));
    let router = net.ecmp.router()?;
    println!("r1# show bfd peers brief");
    print!("{}", indent(&router.vtysh("show bfd peers brief")?));

    step("herald status on n1");
    let n1 = net.ns("n1")?;
    let herald = args.herald.display().to_string();
    let socket = net.herald("n1").admin_socket().display().to_string();
    print!(
        "{}",
        indent(&n1.exec(&herald, &["status", "--admin-socket", &socket])?)
    );

    let requests = if args.short { 600 } else { 3000 };
    step(&format!(
        "the client opens {requests} new connections to {SERVICE_V4}:80"
    ));
    let spec = LoadSpec::count(
        service::service_target(),
        requests,
        Duration::from_millis(4),
    );
    let traffic = net.load_with(spec)?.finish();
    print_split(&traffic);

    step("n2's link goes down (ip link set eth1 down) while the client keeps connecting");
    let load = net.load(Duration::from_secs(if args.short { 4 } else { 8 }))?;
    std::thread::sleep(Duration::from_secs(2));
    let n2 = net.next_hop("n2")?;
    let fault = Instant::now();
    net.node_link_down("n2")?;
    let fib_took = fib::wait_until_gone(r1, SERVICE_V4, n2, Duration::from_secs(10))?;
    let traffic = load.finish();
    println!(
        "  r1 dropped n2 ({n2}) {} ms after the link went down (BFD detection {} ms)",
        fib_took.as_millis(),
        FAST_BFD.interval_ms * u32::from(FAST_BFD.multiplier)
    );
    println!(
        "  new connections failed for {} ms: {} of {} failed, then the other nodes took them",
        traffic.blackhole_after(fault).as_millis(),
        traffic.failed_since(fault),
        traffic.sent()
    );
    print!("{}", indent(&r1.ip(&["route", "show", SERVICE_V4])?));

    step("n2's link comes back");
    net.node_link_up("n2")?;
    let back = Instant::now();
    net.wait_next_hops(&NODES, Duration::from_secs(60))
        .map_err(|e| with_logs(e, &net))?;
    println!(
        "  n2 is back in r1's ECMP set after {} ms (herald reconnects with a backoff):",
        back.elapsed().as_millis()
    );
    print!("{}", indent(&r1.ip(&["route", "show", SERVICE_V4])?));
    Ok(())
}

fn print_split(traffic: &TrafficReport) {
    println!(
        "  {} sent, {} failed; new connections per node:",
        traffic.sent(),
        traffic.failed()
    );
    let served = traffic.served_by();
    for node in NODES {
        let n = served.get(node).copied().unwrap_or(0);
        let share = n as f64 * 100.0 / traffic.sent().max(1) as f64;
        println!(
            "    {node}: {n:5} ({share:4.1} %) {}",
            "#".repeat((share / 2.0) as usize)
        );
    }
}

fn with_logs(e: LabError, net: &ServiceLab) -> LabError {
    if let Some(node) = net.herald.get("n2") {
        eprintln!("{}", node.log());
    }
    e
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}
