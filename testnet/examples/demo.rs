//! The demo behind `sudo bash scripts/demo`: the ecmp3 lab with FRR as the
//! router and BIRD as the node speakers (herald replaces BIRD on the nodes
//! once the agent lands). It shows r1's ECMP route, freezes one node to show
//! BFD taking it out of the ECMP set, thaws it, and tears everything down.

use std::process::ExitCode;
use std::time::Duration;

use herald_testnet::scenario::{Ecmp3, LAB_BFD, SERVICE_V4};
use herald_testnet::{Lab, Result, fib};

fn main() -> ExitCode {
    let lab = match Lab::start() {
        Ok(lab) => lab,
        Err(skip) => {
            eprintln!("demo cannot run: {skip}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = run(&lab);
    // Tear down before printing the verdict, so a failure still cleans up.
    drop(lab);
    match outcome {
        Ok(()) => {
            println!("\nlab torn down: namespaces deleted, daemons stopped.");
            println!(
                "Today the nodes run BIRD; when herald's agent lands, herald nodes replace BIRD \
                 on the same topology (testnet/topologies/ecmp3.clab.yml)."
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(lab: &Lab) -> Result<()> {
    println!("building ecmp3: router r1 (FRR), nodes n1..n3 (BIRD), client, bridge br-ecmp3");
    println!("  namespaces: {}-*", lab.id());
    let scenario = Ecmp3::with_bird(lab)?;
    println!(
        "every node announces {SERVICE_V4}/32 over eBGP, BFD {} ms x {} beside each session",
        LAB_BFD.interval_ms, LAB_BFD.multiplier
    );
    let hops = scenario.wait_ecmp(3, Duration::from_secs(60))?;
    println!(
        "\nr1's kernel FIB spreads the service over {} next hops:",
        hops.len()
    );
    let r1 = scenario.net.ns("r1")?;
    print!("{}", r1.ip(&["route", "show", SERVICE_V4])?);
    let router = scenario.router()?;
    for node in scenario.nodes() {
        let peer = scenario.next_hop(&node)?.to_string();
        router.wait_bfd_up(&peer, Duration::from_secs(30))?;
    }
    println!("\nr1# show bgp ipv4 unicast {SERVICE_V4}/32");
    print!(
        "{}",
        router.vtysh(&format!("show bgp ipv4 unicast {SERVICE_V4}/32"))?
    );
    println!("\nr1# show bfd peers brief");
    print!("{}", router.vtysh("show bfd peers brief")?);

    // Let FRR 8.4's one early BFD re-registration pass (docs/lab.md).
    std::thread::sleep(Duration::from_secs(2));
    scenario.wait_ecmp(3, Duration::from_secs(30))?;
    let n2 = scenario.next_hop("n2")?;
    let speaker = scenario.speakers["n2"].process().clone();
    println!("\nfreezing n2's speaker (SIGSTOP: a hung node whose TCP session stays open)...");
    let took = fib::measure_withdrawal(r1, SERVICE_V4, n2, Duration::from_secs(10), || {
        speaker.freeze()
    })?;
    println!("n2 ({n2}) left r1's FIB after {} ms:", took.as_millis());
    print!("{}", r1.ip(&["route", "show", SERVICE_V4])?);

    speaker.thaw()?;
    println!("\nthawed n2; waiting for it to rejoin...");
    scenario.wait_ecmp(3, Duration::from_secs(60))?;
    print!("{}", r1.ip(&["route", "show", SERVICE_V4])?);
    Ok(())
}
