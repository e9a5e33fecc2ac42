//! Leader election for the allocator against the real API server, with
//! herald's ServiceAccount and the Role of deploy/rbac: several electors
//! with different identities, exactly one leader at any moment; the
//! leader's task aborted (as a killed process: no release) and another
//! leads after the lease expires; a graceful stop hands over at once; and
//! a tenant's token cannot read or write the Lease.

use std::time::{Duration, Instant};

use herald::config::LeaderElectionConfig;
use herald::kube::lease::{LEASE_NAME, LeaderElection, LeaseMetrics};
use herald_testnet::cluster::{Cluster, HERALD_NAMESPACE};
use herald_testnet::lab_or_skip;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use serde_json::json;
use tokio::sync::watch;

use crate::support::*;

/// How late a step-down may be published after the deadline: timer and
/// scheduling lateness on a loaded machine only.
const STEP_DOWN_SLACK: Duration = Duration::from_millis(200);

/// Short, so the tests take seconds; the ratios are the defaults' (15/10/2).
fn timing() -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: Duration::from_secs(4),
        renew_deadline: Duration::from_secs(3),
        retry_period: Duration::from_millis(500),
    }
}

async fn herald_client(cluster: &Cluster) -> kube::Client {
    kube::Client::try_from(client_config(cluster.kubeconfig()).await).expect("a client")
}

async fn elector(cluster: &Cluster, identity: &str) -> LeaderElection {
    LeaderElection::spawn(
        herald_client(cluster).await,
        HERALD_NAMESPACE,
        identity,
        timing(),
        LeaseMetrics::default(),
    )
}

/// Which of `leaders` read `true` now.
fn leading(leaders: &[(String, watch::Receiver<bool>)]) -> Vec<String> {
    leaders
        .iter()
        .filter(|(_, rx)| *rx.borrow())
        .map(|(id, _)| id.clone())
        .collect()
}

/// Samples `leaders` every 10 ms for `span`: never two at once. Returns how
/// many samples saw exactly one.
async fn sample(leaders: &[(String, watch::Receiver<bool>)], span: Duration) -> (usize, usize) {
    let start = Instant::now();
    let (mut samples, mut one) = (0, 0);
    while start.elapsed() < span {
        let now = leading(leaders);
        assert!(now.len() <= 1, "two leaders at once: {now:?}");
        samples += 1;
        one += usize::from(now.len() == 1);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (samples, one)
}

/// Waits (bounded) until exactly one of `leaders` leads; returns its index
/// and how long it took.
async fn wait_one(
    leaders: &[(String, watch::Receiver<bool>)],
    bound: Duration,
) -> (usize, Duration) {
    let start = Instant::now();
    loop {
        let now: Vec<usize> = (0..leaders.len())
            .filter(|i| *leaders[*i].1.borrow())
            .collect();
        assert!(now.len() <= 1, "two leaders at once: {now:?}");
        if let [index] = now[..] {
            return (index, start.elapsed());
        }
        assert!(start.elapsed() < bound, "no leader within {bound:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn holder(cluster: &Cluster) -> String {
    let lease = cluster
        .get_json(&["lease", LEASE_NAME, "-n", HERALD_NAMESPACE])
        .expect("kubectl get lease");
    lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn three_electors_one_leader_killed_and_graceful_handovers() {
    let lab = KubeLab::start(lab_or_skip!());
    lab.run(|cluster, _| async move {
        let ids = ["node-a/herald-1", "node-b/herald-2", "node-c/herald-3"];
        let mut electors = Vec::new();
        for id in ids {
            electors.push(Some(elector(&cluster, id).await));
        }
        let mut leaders: Vec<(String, watch::Receiver<bool>)> = ids
            .iter()
            .zip(&electors)
            .map(|(id, e)| (id.to_string(), e.as_ref().unwrap().leader()))
            .collect();
        let (first, took) = wait_one(&leaders, BOUND).await;
        println!("first leader {} after {took:?}", ids[first]);
        assert_eq!(holder(&cluster), ids[first], "the Lease names the leader");
        let state = electors[first].as_ref().unwrap().state().borrow().clone();
        assert!(state.leading && state.holder.as_deref() == Some(ids[first]));
        // Renewals keep the one leader; the others see who it is.
        let (samples, one) = sample(&leaders, Duration::from_secs(6)).await;
        assert_eq!(one, samples, "exactly one leader in every sample");
        for (i, e) in electors.iter().enumerate() {
            let state = e.as_ref().unwrap().state().borrow().clone();
            assert_eq!(state.holder.as_deref(), Some(ids[first]), "{}", ids[i]);
            assert_eq!(state.leading, i == first);
        }

        // The leader's task aborted: no release, as a killed process. The
        // next one may lead only once the Lease it saw last change has been
        // unchanged for lease_duration.
        drop(electors[first].take());
        leaders.remove(first);
        let remaining: Vec<&str> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != first)
            .map(|(_, id)| *id)
            .collect();
        let (second, takeover) = wait_one(&leaders, BOUND).await;
        let t = timing();
        println!(
            "killed leader -> {} leads after {takeover:?} (lease_duration {:?}, retry_period {:?})",
            remaining[second], t.lease_duration, t.retry_period
        );
        // Not before the Lease could have expired: its last renew was at
        // most one retry period (plus the write) before the abort.
        assert!(
            takeover >= t.lease_duration - 2 * t.retry_period,
            "took over after {takeover:?}, before the lease expired"
        );
        // Within lease_duration + retry_period, with room for a loaded
        // machine's API calls.
        assert!(
            takeover < t.lease_duration + t.retry_period + Duration::from_secs(3),
            "took over after {takeover:?}"
        );
        assert_eq!(holder(&cluster), remaining[second]);

        // A graceful stop releases the Lease: the last one leads within
        // about a retry period, long before the lease would expire.
        let index = electors
            .iter()
            .position(|e| e.as_ref().is_some_and(|e| *e.leader().borrow()))
            .expect("a leader");
        let last = electors
            .iter()
            .position(|e| e.as_ref().is_some_and(|e| !*e.leader().borrow()))
            .expect("a follower");
        let mut last_rx = electors[last].as_ref().unwrap().leader();
        let stopping = electors[index].take().unwrap();
        let stopped_rx = stopping.leader();
        let start = Instant::now();
        stopping.shutdown().await;
        assert!(!*stopped_rx.borrow(), "a stopped elector does not lead");
        tokio::time::timeout(BOUND, last_rx.wait_for(|leading| *leading))
            .await
            .expect("the last elector leads")
            .unwrap();
        let handover = start.elapsed();
        println!(
            "graceful stop -> {} leads after {handover:?} (retry_period {:?})",
            electors[last].as_ref().unwrap().state().borrow().identity,
            t.retry_period
        );
        assert!(
            handover < t.lease_duration - t.retry_period,
            "the handover waited for the lease to expire: {handover:?}"
        );
    });
}

/// A tenant with `admin` and every right on Leases in its own namespace
/// plays the attacker: with its
/// ServiceAccount token it tries to read, take over, and create herald's
/// Lease. Each is 403, the Lease keeps its holder, and the leader never
/// stops leading. A Lease of the same name in the tenant's namespace is
/// the tenant's business: herald never reads it.
#[test]
fn a_tenant_cannot_read_or_take_the_allocation_lease() {
    let lab = KubeLab::start(lab_or_skip!());
    lab.run(|cluster, _| async move {
        cluster
            .kubectl(&["create", "namespace", "tenant-a"])
            .unwrap();
        cluster
            .kubectl(&["-n", "tenant-a", "create", "serviceaccount", "tenant"])
            .unwrap();
        cluster
            .kubectl(&[
                "-n",
                "tenant-a",
                "create",
                "rolebinding",
                "tenant-admin",
                "--clusterrole=admin",
                "--serviceaccount=tenant-a:tenant",
            ])
            .unwrap();
        // And every right on Leases in its own namespace (what a tenant
        // running its own leader-elected controllers has).
        cluster
            .kubectl(&[
                "-n",
                "tenant-a",
                "create",
                "role",
                "leases",
                "--verb=*",
                "--resource=leases.coordination.k8s.io",
            ])
            .unwrap();
        cluster
            .kubectl(&[
                "-n",
                "tenant-a",
                "create",
                "rolebinding",
                "tenant-leases",
                "--role=leases",
                "--serviceaccount=tenant-a:tenant",
            ])
            .unwrap();
        let token = cluster
            .kubectl(&[
                "-n",
                "tenant-a",
                "create",
                "token",
                "tenant",
                "--duration=1h",
            ])
            .unwrap();
        let tenant_kubeconfig = cluster.kubeconfig_with_token(&token, "tenant").unwrap();
        assert_ne!(
            std::fs::read_to_string(&tenant_kubeconfig).unwrap(),
            std::fs::read_to_string(cluster.kubeconfig()).unwrap(),
            "the token was replaced"
        );
        let tenant = kube::Client::try_from(client_config(&tenant_kubeconfig).await).unwrap();

        let leader = elector(&cluster, "node-a/herald-1").await;
        let mut rx = leader.leader();
        tokio::time::timeout(BOUND, rx.wait_for(|l| *l))
            .await
            .unwrap()
            .unwrap();
        let mut watching = leader.leader();
        watching.mark_unchanged();

        let theirs: Api<Lease> = Api::namespaced(tenant.clone(), HERALD_NAMESPACE);
        let forbidden = |result: Result<Lease, kube::Error>, what: &str| match result {
            Err(kube::Error::Api(status)) if status.code == 403 => {
                println!("tenant {what}: 403 {}", status.message);
            }
            other => panic!("tenant {what}: expected 403, got {other:?}"),
        };
        forbidden(theirs.get(LEASE_NAME).await, "get");
        let hostile = Lease {
            metadata: ObjectMeta {
                name: Some(LEASE_NAME.to_string()),
                namespace: Some(HERALD_NAMESPACE.to_string()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some("tenant-a/attacker".to_string()),
                lease_duration_seconds: Some(86_400),
                ..LeaseSpec::default()
            }),
        };
        forbidden(
            theirs
                .replace(LEASE_NAME, &PostParams::default(), &hostile)
                .await,
            "replace",
        );
        forbidden(
            theirs
                .patch(
                    LEASE_NAME,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(
                        json!({"spec": {"holderIdentity": "tenant-a/attacker"}}),
                    ),
                )
                .await,
            "patch",
        );
        forbidden(
            theirs
                .delete(LEASE_NAME, &Default::default())
                .await
                .map(|_| hostile.clone()),
            "delete",
        );
        let mut other = hostile.clone();
        other.metadata.name = Some("herald-allocator-2".to_string());
        forbidden(
            theirs.create(&PostParams::default(), &other).await,
            "create",
        );
        // In its own namespace the tenant may: herald never looks there.
        let own: Api<Lease> = Api::namespaced(tenant, "tenant-a");
        let mut decoy = hostile.clone();
        decoy.metadata.namespace = Some("tenant-a".to_string());
        own.create(&PostParams::default(), &decoy)
            .await
            .expect("the tenant's own Lease");

        // herald's own elector run with the tenant's token: it never leads,
        // and says why (/status shows last_error, the metric counts it).
        let metrics = LeaseMetrics::default();
        let impostor = LeaderElection::spawn(
            kube::Client::try_from(client_config(&tenant_kubeconfig).await).unwrap(),
            HERALD_NAMESPACE,
            "tenant-a/attacker",
            timing(),
            metrics.clone(),
        );
        let mut state = impostor.state();
        let refused = tokio::time::timeout(
            BOUND,
            state.wait_for(|s| {
                s.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("forbidden"))
            }),
        )
        .await
        .expect("the impostor reports the 403")
        .unwrap()
        .clone();
        println!("impostor's last_error: {:?}", refused.last_error);
        assert!(!refused.leading && !*impostor.leader().borrow());
        let forbidden = metrics
            .failures
            .get_or_create(&herald::kube::lease::FailureLabels {
                call: "get",
                reason: "forbidden",
            })
            .get();
        assert!(forbidden >= 1, "{forbidden}");

        // The leader kept leading through all of it, and the Lease is its.
        tokio::time::sleep(timing().lease_duration).await;
        assert!(!*impostor.leader().borrow());
        drop(impostor);
        assert!(*leader.leader().borrow());
        assert!(
            !watching.has_changed().unwrap(),
            "the leader never stepped down"
        );
        assert_eq!(holder(&cluster), "node-a/herald-1");
        leader.shutdown().await;
        assert_eq!(holder(&cluster), "", "released on a graceful stop");
    });
}

/// The leader loses the API (its connections cut and refused, as in a
/// partition): it stops leading by its renew deadline, and the other takes
/// over only after the lease expired on its own clock, with no moment of two
/// leaders. Then the API server itself freezes (SIGSTOP: calls hang, nothing
/// answers) under the new leader: the call timeout and the step-down timer
/// still end its leadership by the deadline.
#[test]
fn a_leader_cut_off_from_the_api_steps_down_before_the_other_takes_over() {
    let lab = KubeLab::start(lab_or_skip!());
    lab.run(|cluster, proxy| async move {
        let via_proxy = cluster
            .kubeconfig_via(proxy.address(), "herald-lease-proxy")
            .unwrap();
        let cut_off = LeaderElection::spawn(
            kube::Client::try_from(client_config(&via_proxy).await).unwrap(),
            HERALD_NAMESPACE,
            "node-a/herald-1",
            timing(),
            LeaseMetrics::default(),
        );
        let mut a = cut_off.leader();
        tokio::time::timeout(BOUND, a.wait_for(|l| *l))
            .await
            .unwrap()
            .unwrap();
        let direct = elector(&cluster, "node-b/herald-2").await;
        let mut b = direct.leader();
        let leaders = vec![("a".to_string(), a.clone()), ("b".to_string(), b.clone())];
        let (samples, one) = sample(&leaders, Duration::from_secs(2)).await;
        assert_eq!(one, samples);

        let t = timing();
        proxy.refuse(true);
        proxy.cut();
        let cut = Instant::now();
        // Sample both while waiting for b: never two leaders.
        let mut a_stopped = None;
        while !*b.borrow() {
            let now = leading(&leaders);
            assert!(now.len() <= 1, "two leaders at once: {now:?}");
            if a_stopped.is_none() && !*a.borrow() {
                a_stopped = Some(cut.elapsed());
            }
            assert!(cut.elapsed() < BOUND, "b never took over");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took_over = cut.elapsed();
        let a_stopped = a_stopped.expect("a stopped before b took over");
        println!(
            "partition: the cut-off leader stopped after {a_stopped:?} (renew_deadline {:?}), \
             the other led after {took_over:?} (lease_duration {:?})",
            t.renew_deadline, t.lease_duration
        );
        assert!(
            a_stopped <= t.renew_deadline + STEP_DOWN_SLACK,
            "{a_stopped:?}"
        );
        assert!(
            took_over - a_stopped >= t.lease_duration - t.renew_deadline - t.retry_period,
            "b took over {:?} after a stopped",
            took_over - a_stopped
        );
        assert_eq!(holder(&cluster), "node-b/herald-2");
        drop(cut_off);

        // The API server frozen under b: its calls hang.
        b.mark_unchanged();
        cluster.freeze_apiserver().unwrap();
        let frozen = Instant::now();
        let stopped = tokio::time::timeout(BOUND, b.wait_for(|l| !*l)).await;
        let stopped_after = frozen.elapsed();
        cluster.thaw_apiserver().unwrap();
        stopped
            .expect("b stops leading while the API is frozen")
            .unwrap();
        println!(
            "API frozen: the leader stopped after {stopped_after:?} (renew_deadline {:?})",
            t.renew_deadline
        );
        // A correctness bound, not a performance figure: the deadline
        // counts from the last renew, sent before the freeze, and a timer
        // publishes `false` at it even while the hung call has not timed
        // out (without that timer this took 3.41 s).
        assert!(
            stopped_after <= t.renew_deadline + STEP_DOWN_SLACK,
            "{stopped_after:?}"
        );
        // Back: b's Lease is still its own, so it renews and leads again.
        tokio::time::timeout(BOUND, b.wait_for(|l| *l))
            .await
            .expect("b leads again once the API answers")
            .unwrap();
        direct.shutdown().await;
    });
}
