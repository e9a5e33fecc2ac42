//! The allocator's rules, table by table: requests, sharing, exhaustion,
//! families, pool changes and conflicting statuses.

use super::*;

fn pool(name: &str, cidrs: &[&str]) -> PoolConfig {
    PoolConfig {
        name: name.to_string(),
        cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
        allocate: true,
        ..PoolConfig::default()
    }
}

fn config() -> AllocationConfig {
    AllocationConfig {
        enabled: true,
        ..AllocationConfig::default()
    }
}

/// A herald-class LoadBalancer Service created at second `age`.
fn svc(namespace: &str, name: &str, age: i64) -> ServiceInput {
    ServiceInput {
        namespace: namespace.to_string(),
        name: name.to_string(),
        uid: Some(format!("uid-{namespace}-{name}")),
        created: Some(Timestamp::from_second(1_700_000_000 + age).unwrap()),
        load_balancer: true,
        class: Some("herald.dev/bgp".to_string()),
        families: vec![IpFamily::IPv4],
        ports: BTreeSet::from([("TCP".to_string(), 80)]),
        ..ServiceInput::default()
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn run(services: &[ServiceInput], pools: &[PoolConfig]) -> Allocation {
    allocate(
        services,
        pools,
        &NamespaceLabels::new(),
        &config(),
        &BTreeSet::new(),
    )
}

/// The addresses and refusal of one Service, as text.
fn outcome(allocation: &Allocation, name: &str) -> (Vec<String>, Option<String>) {
    let verdict = allocation
        .services
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no verdict for {name}: {allocation:?}"));
    match &verdict.verdict {
        Verdict::Serve {
            addresses, refusal, ..
        } => (
            addresses.iter().map(|a| a.address.to_string()).collect(),
            refusal.as_ref().map(|r| r.code().to_string()),
        ),
        Verdict::Release { addresses } => (
            addresses.iter().map(|a| format!("release {a}")).collect(),
            None,
        ),
    }
}

fn mismatches(allocation: &Allocation, name: &str) -> Vec<Mismatch> {
    match allocation.services.iter().find(|s| s.name == name) {
        Some(ServiceAllocation {
            verdict: Verdict::Serve { mismatches, .. },
            ..
        }) => mismatches.clone(),
        other => panic!("{other:?}"),
    }
}

fn strs(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn fresh_services_get_the_lowest_free_addresses_oldest_first() {
    let pools = [pool("public", &["203.0.113.0/30"])];
    // Created in the other order than their names sort.
    let services = [svc("a", "young", 5), svc("b", "old", 1)];
    let allocation = run(&services, &pools);
    // A /30 skips .0 (network) and .3 (broadcast).
    assert_eq!(outcome(&allocation, "old"), (strs(&["203.0.113.1"]), None));
    assert_eq!(
        outcome(&allocation, "young"),
        (strs(&["203.0.113.2"]), None)
    );
    assert_eq!(allocation.services[0].name, "old");
    assert_eq!(
        allocation.pools,
        vec![PoolUsage {
            name: "public".into(),
            size: 2,
            in_use: 2
        }]
    );
}

#[test]
fn two_computations_over_the_same_services_agree_whatever_their_order() {
    let pools = [pool("public", &["203.0.113.0/24"])];
    let mut services: Vec<ServiceInput> = (0..50)
        .map(|i| svc(&format!("ns{}", i % 7), &format!("s{i}"), i % 5))
        .collect();
    let first = run(&services, &pools);
    services.reverse();
    let second = run(&services, &pools);
    assert_eq!(first, second);
    let addresses: BTreeSet<Vec<String>> = first
        .services
        .iter()
        .map(|s| outcome(&first, &s.name).0)
        .collect();
    assert_eq!(addresses.len(), 50, "every Service its own address");
}

#[test]
fn which_services_are_herald_s() {
    let pools = [pool("public", &["203.0.113.0/24"])];
    let mut other_class = svc("a", "other-class", 1);
    other_class.class = Some("example.com/lb".into());
    let mut unclassed = svc("a", "unclassed", 2);
    unclassed.class = None;
    let mut cluster_ip = svc("a", "cluster-ip", 3);
    cluster_ip.load_balancer = false;
    let services = [
        other_class,
        unclassed.clone(),
        cluster_ip,
        svc("a", "ours", 4),
    ];
    let allocation = run(&services, &pools);
    let names: Vec<&str> = allocation
        .services
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["ours"]);
    // claim_unclassed takes the unclassed one too.
    let claiming = AllocationConfig {
        claim_unclassed: true,
        ..config()
    };
    let allocation = allocate(
        &services,
        &pools,
        &NamespaceLabels::new(),
        &claiming,
        &BTreeSet::new(),
    );
    let names: Vec<&str> = allocation
        .services
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["unclassed", "ours"]);
}

#[test]
fn requests_table() {
    let pools = [
        pool("public", &["203.0.113.0/24", "2001:db8:1::/64"]),
        PoolConfig {
            allocate: false,
            ..pool("static", &["198.51.100.0/24"])
        },
        PoolConfig {
            namespaces: vec!["team-a".into()],
            ..pool("team-a", &["198.18.0.0/24"])
        },
    ];
    let with = |name: &str, edit: &dyn Fn(&mut ServiceInput)| {
        let mut s = svc("team-b", name, 10);
        edit(&mut s);
        s
    };
    struct Case {
        service: ServiceInput,
        addresses: &'static [&'static str],
        refusal: Option<&'static str>,
    }
    let cases = [
        Case {
            service: with("annotated", &|s| {
                s.requested_ips = Some("203.0.113.77".into())
            }),
            addresses: &["203.0.113.77"],
            refusal: None,
        },
        Case {
            service: with("deprecated-field", &|s| {
                s.load_balancer_ip = Some("203.0.113.78".into())
            }),
            addresses: &["203.0.113.78"],
            refusal: None,
        },
        Case {
            service: with("annotation-wins", &|s| {
                s.requested_ips = Some("203.0.113.79".into());
                s.load_balancer_ip = Some("203.0.113.80".into());
            }),
            addresses: &["203.0.113.79"],
            refusal: None,
        },
        Case {
            service: with("outside", &|s| s.requested_ips = Some("192.0.2.9".into())),
            addresses: &[],
            refusal: Some("RequestedOutsidePools"),
        },
        Case {
            service: with("not-allocating", &|s| {
                s.requested_ips = Some("198.51.100.9".into())
            }),
            addresses: &[],
            refusal: Some("PoolNotAllocating"),
        },
        Case {
            service: with("other-tenant", &|s| {
                s.requested_ips = Some("198.18.0.9".into())
            }),
            addresses: &[],
            refusal: Some("PoolNotPermitted"),
        },
        Case {
            service: with("garbage", &|s| s.requested_ips = Some("203.0.113.x".into())),
            addresses: &[],
            refusal: Some("InvalidRequest"),
        },
        Case {
            service: with("two-of-a-family", &|s| {
                s.requested_ips = Some("203.0.113.5, 203.0.113.6".into())
            }),
            addresses: &[],
            refusal: Some("InvalidRequest"),
        },
        Case {
            service: with("wrong-family", &|s| {
                s.requested_ips = Some("2001:db8:1::5".into())
            }),
            addresses: &[],
            refusal: Some("InvalidRequest"),
        },
        Case {
            service: with("named-pool", &|s| s.pool = Some("public".into())),
            addresses: &["203.0.113.1"],
            refusal: None,
        },
        Case {
            service: with("unknown-pool", &|s| s.pool = Some("nowhere".into())),
            addresses: &[],
            refusal: Some("UnknownPool"),
        },
        Case {
            service: with("named-static", &|s| s.pool = Some("static".into())),
            addresses: &[],
            refusal: Some("PoolNotAllocating"),
        },
        Case {
            service: with("named-other-tenant", &|s| s.pool = Some("team-a".into())),
            addresses: &[],
            refusal: Some("PoolNotPermitted"),
        },
        Case {
            service: with("request-outside-named-pool", &|s| {
                s.pool = Some("team-a".into());
                s.namespace = "team-a".into();
                s.requested_ips = Some("203.0.113.90".into());
            }),
            addresses: &[],
            refusal: Some("InvalidRequest"),
        },
    ];
    for case in cases {
        let name = case.service.name.clone();
        let allocation = run(&[case.service], &pools);
        let (addresses, refusal) = outcome(&allocation, &name);
        assert_eq!(addresses, strs(case.addresses), "{name}");
        assert_eq!(refusal.as_deref(), case.refusal, "{name}");
    }
}

#[test]
fn a_tenant_never_gets_an_address_from_a_pool_it_may_not_use() {
    let mut labels = BTreeMap::new();
    labels.insert(
        "team-c".to_string(),
        BTreeMap::from([("lb".to_string(), "gold".to_string())]),
    );
    let gold = PoolConfig {
        namespace_selector: Some(
            serde_json::from_value(serde_json::json!({"matchLabels": {"lb": "gold"}})).unwrap(),
        ),
        ..pool("gold", &["198.18.0.0/30"])
    };
    let web_only = PoolConfig {
        service_selector: Some(
            serde_json::from_value(serde_json::json!({"matchLabels": {"tier": "web"}})).unwrap(),
        ),
        ..pool("web", &["198.18.1.0/30"])
    };
    let pools = [gold, web_only];
    let mut web = svc("team-c", "web", 1);
    web.labels.insert("tier".into(), "web".into());
    let services = [
        svc("team-c", "gold-tenant", 0),
        svc("team-d", "neither", 2),
        web.clone(),
        {
            let mut w = web.clone();
            w.namespace = "team-d".into();
            w.name = "web-d".into();
            w
        },
    ];
    let allocation = allocate(&services, &pools, &labels, &config(), &BTreeSet::new());
    assert_eq!(
        outcome(&allocation, "gold-tenant"),
        (strs(&["198.18.0.1"]), None)
    );
    // team-c's web Service is admitted by both pools: the first with room.
    assert_eq!(outcome(&allocation, "web"), (strs(&["198.18.0.2"]), None));
    assert_eq!(outcome(&allocation, "web-d"), (strs(&["198.18.1.1"]), None));
    assert_eq!(
        outcome(&allocation, "neither"),
        (vec![], Some("NoAllocatingPool".into()))
    );
}

#[test]
fn exhaustion_refuses_the_newest_and_names_the_pool() {
    let pools = [pool("public", &["203.0.113.0/30"])];
    let services = [svc("a", "one", 1), svc("a", "two", 2), svc("a", "three", 3)];
    let allocation = run(&services, &pools);
    let (addresses, refusal) = outcome(&allocation, "three");
    assert!(addresses.is_empty());
    assert_eq!(refusal.as_deref(), Some("PoolExhausted"));
    let Some(Verdict::Serve {
        refusal: Some(refusal),
        ..
    }) = allocation.get("a", "three")
    else {
        panic!()
    };
    assert_eq!(refusal.to_string(), "pool public is exhausted (IPv4)");
    assert_eq!(allocation.pools[0].in_use, 2);
    // A /32 and a /31 hand out every address.
    let small = [pool("small", &["203.0.113.8/31", "203.0.113.20/32"])];
    let allocation = run(&services, &small);
    assert_eq!(outcome(&allocation, "one").0, strs(&["203.0.113.8"]));
    assert_eq!(outcome(&allocation, "two").0, strs(&["203.0.113.9"]));
    assert_eq!(outcome(&allocation, "three").0, strs(&["203.0.113.20"]));
}

#[test]
fn a_second_pool_takes_over_when_the_first_is_full() {
    let pools = [
        pool("first", &["203.0.113.0/31"]),
        pool("second", &["198.51.100.0/24"]),
    ];
    let services: Vec<ServiceInput> = (0..3).map(|i| svc("a", &format!("s{i}"), i)).collect();
    let allocation = run(&services, &pools);
    assert_eq!(outcome(&allocation, "s2").0, strs(&["198.51.100.1"]));
}

#[test]
fn sharing_table() {
    let pools = [pool("public", &["203.0.113.0/24"])];
    let shared = |namespace: &str, name: &str, age: i64, key: &str, port: i32| {
        let mut s = svc(namespace, name, age);
        s.shared_key = Some(key.into());
        s.ports = BTreeSet::from([("TCP".to_string(), port)]);
        s
    };
    let services = [
        shared("a", "http", 1, "web", 80),
        shared("a", "https", 2, "web", 443),
        // Same key, same port: its own address.
        shared("a", "http-again", 3, "web", 80),
        // Same key, other namespace: its own address.
        shared("b", "elsewhere", 4, "web", 8080),
        // Other key: its own address.
        shared("a", "other-key", 5, "dns", 53),
    ];
    let allocation = run(&services, &pools);
    assert_eq!(outcome(&allocation, "http").0, strs(&["203.0.113.1"]));
    assert_eq!(outcome(&allocation, "https").0, strs(&["203.0.113.1"]));
    assert_eq!(outcome(&allocation, "http-again").0, strs(&["203.0.113.2"]));
    assert_eq!(outcome(&allocation, "elsewhere").0, strs(&["203.0.113.3"]));
    assert_eq!(outcome(&allocation, "other-key").0, strs(&["203.0.113.4"]));
    assert_eq!(allocation.pools[0].in_use, 4);

    // A request for an address another Service holds.
    let mut taker = svc("b", "taker", 9);
    taker.requested_ips = Some("203.0.113.1".into());
    let mut sharer = shared("a", "sharer", 9, "web", 53);
    sharer.requested_ips = Some("203.0.113.1".into());
    let mut clash = shared("a", "clash", 9, "web", 80);
    clash.requested_ips = Some("203.0.113.1".into());
    let with = |extra: ServiceInput| {
        let mut all = services.to_vec();
        let name = extra.name.clone();
        all.push(extra);
        outcome(&run(&all, &pools), &name)
    };
    assert_eq!(with(taker), (vec![], Some("AddressTaken".into())));
    assert_eq!(with(sharer), (strs(&["203.0.113.1"]), None));
    assert_eq!(with(clash), (vec![], Some("AddressTaken".into())));
}

#[test]
fn families_table() {
    let pools = [
        pool("v4", &["203.0.113.0/24"]),
        pool("v6", &["2001:db8:6::/120"]),
    ];
    let v4_only = [pool("v4", &["203.0.113.0/24"])];
    let full_v4 = [
        pool("v4", &["203.0.113.0/32"]),
        pool("v6", &["2001:db8:6::/120"]),
    ];
    let family = |name: &str, families: &[IpFamily], policy: FamilyPolicy| {
        let mut s = svc("a", name, 1);
        s.families = families.to_vec();
        s.family_policy = policy;
        s
    };
    use FamilyPolicy::*;
    use IpFamily::*;
    // The oldest Service: it takes the first IPv4 address of every table.
    let blocker = svc("a", "blocker", 0);
    type Case<'a> = (
        ServiceInput,
        &'a [PoolConfig],
        &'a [&'a str],
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            family("single4", &[IPv4], SingleStack),
            &pools,
            &["203.0.113.2"],
            None,
        ),
        (
            family("single6", &[IPv6], SingleStack),
            &pools,
            &["2001:db8:6::1"],
            None,
        ),
        (
            family("require", &[IPv6, IPv4], RequireDualStack),
            &pools,
            &["2001:db8:6::1", "203.0.113.2"],
            None,
        ),
        (
            family("prefer", &[IPv4, IPv6], PreferDualStack),
            &pools,
            &["203.0.113.2", "2001:db8:6::1"],
            None,
        ),
        // Only IPv4 pools: PreferDualStack takes what there is, quietly;
        // RequireDualStack takes nothing.
        (
            family("prefer-v4-only", &[IPv4, IPv6], PreferDualStack),
            &v4_only,
            &["203.0.113.2"],
            None,
        ),
        (
            family("require-v4-only", &[IPv4, IPv6], RequireDualStack),
            &v4_only,
            &[],
            Some("NoAllocatingPool"),
        ),
        (
            family("single6-v4-only", &[IPv6], SingleStack),
            &v4_only,
            &[],
            Some("NoAllocatingPool"),
        ),
        // IPv4 exhausted (the blocker holds the only address): RequireDualStack
        // does not keep the IPv6 address it could have had.
        (
            family("require-v4-full", &[IPv4, IPv6], RequireDualStack),
            &full_v4,
            &[],
            Some("PoolExhausted"),
        ),
        (
            family("prefer-v4-full", &[IPv4, IPv6], PreferDualStack),
            &full_v4,
            &["2001:db8:6::1"],
            None,
        ),
    ];
    for (service, pools, addresses, refusal) in cases {
        let name = service.name.clone();
        let allocation = run(&[blocker.clone(), service], pools);
        let got = outcome(&allocation, &name);
        assert_eq!(got, (strs(addresses), refusal.map(String::from)), "{name}");
    }
    // The IPv6 address a RequireDualStack Service gave back is free for the
    // next one.
    let mut next = svc("a", "next", 5);
    next.families = vec![IPv6];
    let allocation = run(
        &[
            blocker,
            family("require-v4-full", &[IPv4, IPv6], RequireDualStack),
            next,
        ],
        &full_v4,
    );
    assert_eq!(outcome(&allocation, "next").0, strs(&["2001:db8:6::1"]));
}

#[test]
fn assigned_addresses_are_kept_first_so_a_new_leader_hands_out_nothing_in_use() {
    let pools = [pool("public", &["203.0.113.0/24"])];
    // The newest Service already carries .1; an older one has nothing yet.
    let mut holder = svc("a", "holder", 9);
    holder.ingress = vec!["203.0.113.1".into()];
    let services = [svc("a", "older", 1), holder];
    let allocation = run(&services, &pools);
    assert_eq!(outcome(&allocation, "holder").0, strs(&["203.0.113.1"]));
    assert_eq!(outcome(&allocation, "older").0, strs(&["203.0.113.2"]));
    let Some(Verdict::Serve { addresses, .. }) = allocation.get("a", "holder") else {
        panic!()
    };
    assert!(!addresses[0].new);
}

#[test]
fn a_pool_change_never_moves_an_assigned_address_and_reports_it() {
    let mut kept = svc("a", "kept", 1);
    kept.ingress = vec!["203.0.113.7".into()];
    // The pool moved to another range.
    let moved = [pool("public", &["198.51.100.0/24"])];
    let allocation = run(std::slice::from_ref(&kept), &moved);
    assert_eq!(outcome(&allocation, "kept"), (strs(&["203.0.113.7"]), None));
    assert_eq!(
        mismatches(&allocation, "kept"),
        [Mismatch::OutsideAllocatingPools {
            address: ip("203.0.113.7")
        }]
    );
    // The pool stopped admitting the namespace.
    let closed = [PoolConfig {
        namespaces: vec!["other".into()],
        ..pool("public", &["203.0.113.0/24"])
    }];
    let allocation = run(std::slice::from_ref(&kept), &closed);
    assert_eq!(outcome(&allocation, "kept").0, strs(&["203.0.113.7"]));
    assert!(matches!(
        mismatches(&allocation, "kept")[..],
        [Mismatch::PoolNotPermitted { .. }]
    ));
    // herald.dev/pool now names another pool.
    let two = [
        pool("public", &["203.0.113.0/24"]),
        pool("b", &["198.51.100.0/24"]),
    ];
    kept.pool = Some("b".into());
    let allocation = run(std::slice::from_ref(&kept), &two);
    assert_eq!(outcome(&allocation, "kept").0, strs(&["203.0.113.7"]));
    assert!(matches!(
        mismatches(&allocation, "kept")[..],
        [Mismatch::OtherPool { .. }]
    ));
    // A new explicit request does move it: the user asked.
    kept.requested_ips = Some("198.51.100.9".into());
    let allocation = run(std::slice::from_ref(&kept), &two);
    assert_eq!(
        outcome(&allocation, "kept"),
        (strs(&["198.51.100.9"]), None)
    );
}

#[test]
fn conflicting_statuses_leave_the_address_with_the_oldest() {
    let pools = [pool("public", &["203.0.113.0/24"])];
    let mut old = svc("a", "old", 1);
    old.ingress = vec!["203.0.113.5".into()];
    let mut young = svc("b", "young", 2);
    young.ingress = vec!["203.0.113.5".into(), "not-an-ip".into()];
    let allocation = run(&[young, old], &pools);
    assert_eq!(outcome(&allocation, "old").0, strs(&["203.0.113.5"]));
    assert_eq!(outcome(&allocation, "young").0, strs(&["203.0.113.1"]));
    assert_eq!(
        mismatches(&allocation, "young"),
        [Mismatch::Replaced {
            address: ip("203.0.113.5"),
            owner: "a/old".into()
        }]
    );
}

#[test]
fn a_family_the_service_no_longer_wants_is_dropped() {
    let pools = [pool("public", &["203.0.113.0/24", "2001:db8:1::/64"])];
    let mut s = svc("a", "was-dual", 1);
    s.ingress = vec!["203.0.113.9".into(), "2001:db8:1::9".into()];
    let allocation = run(&[s], &pools);
    assert_eq!(outcome(&allocation, "was-dual").0, strs(&["203.0.113.9"]));
}

#[test]
fn release_only_what_herald_wrote_from_its_allocating_pools() {
    let pools = [
        pool("public", &["203.0.113.0/24"]),
        PoolConfig {
            allocate: false,
            ..pool("static", &["198.51.100.0/24"])
        },
    ];
    let mut now_cluster_ip = svc("a", "now-cluster-ip", 1);
    now_cluster_ip.load_balancer = false;
    now_cluster_ip.class = None;
    now_cluster_ip.ingress = vec!["203.0.113.4".into(), "198.51.100.4".into()];
    // Another controller's LoadBalancer, addresses in herald's pool: never
    // touched unless herald served it before.
    let mut metallb = svc("a", "metallb", 2);
    metallb.class = None;
    metallb.ingress = vec!["203.0.113.5".into()];
    let mut reclassed = svc("a", "reclassed", 3);
    reclassed.class = Some("example.com/other".into());
    reclassed.ingress = vec!["203.0.113.6".into()];
    let services = [now_cluster_ip, metallb, reclassed];
    let served = BTreeSet::from(["a/reclassed".to_string()]);
    let allocation = allocate(
        &services,
        &pools,
        &NamespaceLabels::new(),
        &config(),
        &served,
    );
    assert_eq!(
        outcome(&allocation, "now-cluster-ip").0,
        strs(&["release 203.0.113.4"])
    );
    assert!(allocation.get("a", "metallb").is_none());
    assert_eq!(
        outcome(&allocation, "reclassed").0,
        strs(&["release 203.0.113.6"])
    );
    // What other Services carry counts as in use (released addresses are
    // free only once the release is written).
    assert_eq!(allocation.pools[0].in_use, 3);
}

#[test]
fn an_address_another_controller_assigned_is_never_handed_out_again() {
    let pools = [pool("public", &["203.0.113.0/29"])];
    let mut metallb = svc("a", "metallb", 0);
    metallb.class = None;
    metallb.ingress = vec!["203.0.113.1".into(), "203.0.113.3".into()];
    metallb.shared_key = Some("k".into());
    let mut ours = svc("a", "ours", 1);
    ours.shared_key = Some("k".into());
    ours.ports = BTreeSet::from([("TCP".to_string(), 443)]);
    let mut pinned = svc("a", "pinned", 2);
    pinned.requested_ips = Some("203.0.113.3".into());
    let allocation = run(&[metallb, ours, pinned], &pools);
    // Not shared either, whatever the key says.
    assert_eq!(outcome(&allocation, "ours"), (strs(&["203.0.113.2"]), None));
    assert_eq!(
        outcome(&allocation, "pinned"),
        (vec![], Some("AddressTaken".into()))
    );
    assert!(allocation.get("a", "metallb").is_none());
    assert_eq!(allocation.pools[0].in_use, 3);
}

#[test]
fn an_external_ip_is_never_handed_out() {
    let pools = [pool("public", &["203.0.113.0/29"])];
    let mut web = svc("a", "web", 0);
    web.load_balancer = false;
    web.external_ips = vec!["203.0.113.1".into()];
    let mut ours_with_external = svc("b", "ours", 1);
    ours_with_external.external_ips = vec!["203.0.113.2".into()];
    let allocation = run(&[web, ours_with_external, svc("c", "next", 2)], &pools);
    assert_eq!(outcome(&allocation, "ours").0, strs(&["203.0.113.3"]));
    assert_eq!(outcome(&allocation, "next").0, strs(&["203.0.113.4"]));
}

#[test]
fn ipv6_pools_are_sized_without_overflow_and_skip_the_anycast_address() {
    let pools = [pool("v6", &["2001:db8:ffff::/64", "2001:db8:1::/48"])];
    let mut s = svc("a", "v6", 1);
    s.families = vec![IpFamily::IPv6];
    let allocation = run(&[s], &pools);
    assert_eq!(outcome(&allocation, "v6").0, strs(&["2001:db8:ffff::1"]));
    assert_eq!(
        allocation.pools[0].size,
        ((1u128 << 64) - 1) + ((1u128 << 80) - 1)
    );
}

#[test]
fn a_thousand_services_in_one_pass_all_get_distinct_addresses() {
    let pools = [pool("public", &["198.18.0.0/20"])];
    let services: Vec<ServiceInput> = (0..1000)
        .map(|i| svc(&format!("ns{}", i % 10), &format!("s{i:04}"), i % 3))
        .collect();
    let allocation = run(&services, &pools);
    let mut seen = BTreeSet::new();
    for service in &allocation.services {
        let (addresses, refusal) = outcome(&allocation, &service.name);
        assert_eq!((addresses.len(), refusal), (1, None), "{}", service.name);
        assert!(seen.insert(addresses[0].clone()), "{addresses:?} twice");
    }
    assert_eq!(allocation.pools[0].in_use, 1000);
}

#[test]
fn from_service_reads_every_field_the_allocator_uses() {
    let service: Service = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": "web", "namespace": "shop", "uid": "u-1",
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "labels": {"tier": "web"},
            "annotations": {
                "herald.dev/pool": " public ",
                "herald.dev/load-balancer-ips": "203.0.113.7,2001:db8::7",
                "herald.dev/allow-shared-ip": "k",
                "other": "x",
            },
        },
        "spec": {
            "type": "LoadBalancer", "loadBalancerClass": "herald.dev/bgp",
            "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack",
            "loadBalancerIP": "203.0.113.8",
            "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "x"}]}},
    }))
    .unwrap();
    let input = ServiceInput::from_service(&service);
    assert_eq!(input.key(), "shop/web");
    assert!(input.load_balancer);
    assert_eq!(input.class.as_deref(), Some("herald.dev/bgp"));
    assert_eq!(input.families, [IpFamily::IPv4, IpFamily::IPv6]);
    assert_eq!(input.family_policy, FamilyPolicy::RequireDualStack);
    assert_eq!(input.pool.as_deref(), Some("public"));
    assert_eq!(
        input.requested_ips.as_deref(),
        Some("203.0.113.7,2001:db8::7")
    );
    assert_eq!(input.load_balancer_ip.as_deref(), Some("203.0.113.8"));
    assert_eq!(input.shared_key.as_deref(), Some("k"));
    assert_eq!(
        input.ports,
        BTreeSet::from([("TCP".into(), 80), ("UDP".into(), 53)])
    );
    assert_eq!(input.ingress, ["203.0.113.7"]);
    assert!(input.created.is_some());
}

/// A fixed-seed xorshift64*: reproducible random inputs without a seed file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

/// Hostile, random Services (garbage requests, odd families, conflicting
/// statuses, a pool at the very end of the address space): the allocator
/// never panics, never gives one address to two Services that may not
/// share it, hands out new addresses only from allocating pools that admit
/// the Service and never one another Service carries, and gives the same
/// answer whatever the input order.
#[test]
fn random_inputs_keep_every_invariant() {
    let pools = [
        pool("small", &["203.0.113.0/29", "2001:db8:1::/126"]),
        PoolConfig {
            namespaces: vec!["ns1".into()],
            ..pool("ns1-only", &["198.51.100.0/30"])
        },
        PoolConfig {
            allocate: false,
            ..pool("static", &["192.0.2.0/30"])
        },
        // The very end of the IPv6 space: the search must not overflow.
        pool("edge", &["ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"]),
    ];
    let texts = [
        "203.0.113.1",
        "203.0.113.7",
        "198.51.100.1",
        "192.0.2.1",
        "2001:db8:1::1",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "203.0.113.1,2001:db8:1::2",
        "203.0.113.1,203.0.113.2",
        "not an ip",
        "",
        ",,,",
        "10.0.0.1",
    ];
    let families = [
        vec![IpFamily::IPv4],
        vec![IpFamily::IPv6],
        vec![IpFamily::IPv4, IpFamily::IPv6],
        vec![IpFamily::IPv6, IpFamily::IPv4],
        vec![],
    ];
    let policies = [
        FamilyPolicy::SingleStack,
        FamilyPolicy::PreferDualStack,
        FamilyPolicy::RequireDualStack,
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..300 {
        let count = 1 + rng.next() % 14;
        let mut services: Vec<ServiceInput> = (0..count)
            .map(|i| {
                let namespace = *rng.pick(&["ns1", "ns2"]);
                let mut s = svc(namespace, &format!("s{i}"), (rng.next() % 4) as i64);
                s.class = rng
                    .pick(&[
                        Some("herald.dev/bgp"),
                        Some("herald.dev/bgp"),
                        None,
                        Some("x.io/y"),
                    ])
                    .map(String::from);
                s.load_balancer = !rng.next().is_multiple_of(8);
                s.families = rng.pick(&families).clone();
                s.family_policy = *rng.pick(&policies);
                if rng.next().is_multiple_of(3) {
                    s.requested_ips = Some(rng.pick(&texts).to_string());
                }
                if rng.next().is_multiple_of(3) {
                    s.load_balancer_ip = Some(rng.pick(&texts).to_string());
                }
                if rng.next().is_multiple_of(5) {
                    s.pool = Some(
                        rng.pick(&["small", "ns1-only", "static", "none"])
                            .to_string(),
                    );
                }
                if rng.next().is_multiple_of(3) {
                    s.shared_key = Some("k".to_string());
                }
                s.ports = BTreeSet::from([("TCP".to_string(), *rng.pick(&[80, 443, 53]))]);
                s.ingress = (0..rng.next() % 3)
                    .map(|_| rng.pick(&texts).to_string())
                    .collect();
                if rng.next().is_multiple_of(6) {
                    s.created = None;
                }
                s
            })
            .collect();
        let config = AllocationConfig {
            claim_unclassed: rng.next().is_multiple_of(2),
            ..config()
        };
        let served: BTreeSet<String> = services
            .iter()
            .filter(|_| rng.next().is_multiple_of(4))
            .map(ServiceInput::key)
            .collect();
        let none = NamespaceLabels::new();
        let first = allocate(&services, &pools, &none, &config, &served);
        services.reverse();
        let second = allocate(&services, &pools, &none, &config, &served);
        assert_eq!(first, second, "round {round}: the order changed the answer");

        let by_key: BTreeMap<String, &ServiceInput> =
            services.iter().map(|s| (s.key(), s)).collect();
        let mut carried: BTreeMap<IpAddr, Vec<&ServiceInput>> = BTreeMap::new();
        for allocation in &first.services {
            let service = by_key[&format!("{}/{}", allocation.namespace, allocation.name)];
            let Verdict::Serve { addresses, .. } = &allocation.verdict else {
                continue;
            };
            for assigned in addresses {
                carried.entry(assigned.address).or_default().push(service);
                if !assigned.new {
                    continue;
                }
                let index = pools
                    .iter()
                    .position(|p| p.cidrs.iter().any(|c| c.contains(&assigned.address)))
                    .unwrap_or_else(|| panic!("round {round}: {assigned:?} outside the pools"));
                assert!(pools[index].allocate, "round {round}: {assigned:?}");
                assert!(
                    pools[index].namespaces.is_empty()
                        || pools[index].namespaces.contains(&service.namespace),
                    "round {round}: {assigned:?} for {}",
                    service.key()
                );
                // Never an address another Service carries, unless it is
                // herald's and shares it.
                for other in &services {
                    let carries = other
                        .ingress
                        .iter()
                        .any(|t| t.parse() == Ok(assigned.address));
                    if other.key() != service.key() && carries {
                        assert!(
                            Holder::of(other).shares_with(&Holder::of(service))
                                && other.load_balancer
                                && config.claims_class(other.class.as_deref()),
                            "round {round}: {} got {} which {} carries",
                            service.key(),
                            assigned.address,
                            other.key()
                        );
                    }
                }
            }
        }
        for (address, holders) in carried {
            for (i, a) in holders.iter().enumerate() {
                for b in &holders[i + 1..] {
                    assert!(
                        Holder::of(a).shares_with(&Holder::of(b)),
                        "round {round}: {address} on {} and {}",
                        a.key(),
                        b.key()
                    );
                }
            }
        }
    }
}
