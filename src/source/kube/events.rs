//! Kubernetes Events on Services: "this node started announcing 203.0.113.10",
//! "stopped announcing it because ...", "refused it because ...".
//!
//! Owns: deciding which events to record ([`EventLedger`], pure) and
//! recording them ([`EventPublisher`], `events.k8s.io/v1` through kube's
//! `Recorder`). Must not touch: the desired set.
//!
//! De-duplication: the ledger remembers, per (Service, address), what it last
//! reported, and plans an event only when that changes. A resync or relist
//! that produces the same decisions plans nothing. What is reported:
//! - `Announcing` (Normal) when this node starts announcing an address;
//! - `Withdrawn` (Normal) when it stops, with the reason;
//! - a Warning named after the refusal code (`OutsidePools`, `NodeAddress`,
//!   `InvalidAnnotation`, `InvalidAddress`, and the tenant rules:
//!   `AddressInUse`, `ExternalIPNotAllowed`, `PathAttributesNotAllowed`,
//!   `PoolNamespaceNotPermitted`, `PoolServiceNotSelected`,
//!   `TooManyAddresses`) when a selected Service has an
//!   address herald refuses because of how the Service or the config is
//!   written. Refusals that depend on where pods run (`NoReadyLocalEndpoint`,
//!   `NoReadyEndpoint`, `NodeExcluded`) are reported only as the reason of a
//!   `Withdrawn`: otherwise every node without a local pod would record an
//!   event for every `Local` Service. `NotSelected` and
//!   `AddressKindNotRequested` are never reported (they concern Services
//!   herald was not asked to handle). All of them appear in `/status`.
//!
//! Cluster-wide de-duplication: every node runs the same policy over the same
//! Services, so every node plans the same refusal Warning. Those are
//! recorded as one Event per (Service, reason, note) for the whole cluster:
//! its name is derived from them ([`shared_event_name`]), the first node
//! creates it and every other node (and every later repeat) adds to its
//! `series.count`. `Announcing` and `Withdrawn` name the node and stay one
//! Event per node (through kube's `Recorder`, reporting instance = the node
//! name). The ledger starts empty on restart, so a restart reports the
//! current state once.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as EventObject, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::policy::{Decision, Desired, Outcome, Refusal, ServiceDecisions, ServiceRef};

/// The controller name on every Event herald records.
pub const CONTROLLER: &str = "herald";

/// One Event to record on a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub service: ServiceRef,
    pub warning: bool,
    /// CamelCase, e.g. `Announcing`, `Withdrawn`, `OutsidePools`.
    pub reason: String,
    /// What herald did: `Announce`, `Withdraw` or `Refuse`.
    pub action: &'static str,
    pub note: String,
    /// The same for every node (a refusal, which names no node): recorded
    /// once for the cluster, with a count, instead of once per node.
    pub cluster_wide: bool,
}

/// What was last reported for one (Service, address).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reported {
    Announced,
    Refused(Refusal),
}

/// Remembers the decisions last seen per Service, to report only changes.
/// It keeps the last desired set's per-Service decisions (shared with it,
/// not copied) and walks the new set beside them, both in Service order: a
/// Service whose decisions did not change costs one pointer comparison, so a
/// resync of 10,000 Services plans nothing cheaply.
#[derive(Debug, Default)]
pub struct EventLedger {
    node: String,
    last: Vec<ServiceDecisions>,
}

/// One state per address of a Service: announced if any kind is, else the
/// first refusal.
fn states(decisions: &[Decision]) -> BTreeMap<&str, (Reported, &Decision)> {
    let mut states: BTreeMap<&str, (Reported, &Decision)> = BTreeMap::new();
    for decision in decisions {
        let state = match &decision.outcome {
            Outcome::Announced { .. } => Reported::Announced,
            Outcome::Refused(r) => Reported::Refused(r.clone()),
        };
        match states.get(decision.address.as_str()) {
            Some((Reported::Announced, _)) => {}
            Some(_) if state != Reported::Announced => {}
            _ => {
                states.insert(&decision.address, (state, decision));
            }
        }
    }
    states
}

impl EventLedger {
    pub fn new(node: &str) -> Self {
        EventLedger {
            node: node.to_string(),
            last: Vec::new(),
        }
    }

    /// The events a new desired set calls for.
    pub fn plan(&mut self, desired: &Desired) -> Vec<PlannedEvent> {
        let mut planned = Vec::new();
        // Both lists are in Service order (see `Desired::services`).
        let mut before = self.last.iter().peekable();
        for now in &desired.services {
            // The common case: the very decisions seen last time.
            if before.next_if(|b| Arc::ptr_eq(b, now)).is_some() {
                continue;
            }
            let Some(service) = now.first().map(|d| &d.service) else {
                continue;
            };
            // Services before this one are gone: deleted Services get no
            // event (there is nothing to attach it to).
            while before
                .next_if(|b| b.first().is_none_or(|d| d.service < *service))
                .is_some()
            {}
            let previous = before.next_if(|b| b.first().is_some_and(|d| d.service == *service));
            if previous.is_some_and(|b| Arc::ptr_eq(b, now) || **b == **now) {
                continue;
            }
            planned.extend(self.plan_service(service, previous.map(|b| &**b), now));
        }
        self.last = desired.services.clone();
        for event in &mut planned {
            fit_note(&mut event.note);
        }
        planned.sort_by(|a, b| (&a.service, &a.note).cmp(&(&b.service, &b.note)));
        planned
    }

    fn plan_service(
        &self,
        service: &ServiceRef,
        before: Option<&[Decision]>,
        now: &[Decision],
    ) -> Vec<PlannedEvent> {
        let before = before.map(states).unwrap_or_default();
        let now = states(now);
        let mut planned = Vec::new();
        for (address, (state, decision)) in &now {
            let previous = before.get(address).map(|(s, _)| s);
            if previous == Some(state) {
                continue;
            }
            match (previous, state) {
                (_, Reported::Announced) => planned.push(PlannedEvent {
                    service: service.clone(),
                    warning: false,
                    reason: "Announcing".to_string(),
                    action: "Announce",
                    cluster_wide: false,
                    note: format!(
                        "node {} announces {address} ({}){}",
                        self.node,
                        decision.kind,
                        match &decision.outcome {
                            Outcome::Announced { pool } => format!(" from pool {pool}"),
                            Outcome::Refused(_) => String::new(),
                        }
                    ),
                }),
                (Some(Reported::Announced), Reported::Refused(refusal)) => {
                    planned.push(PlannedEvent {
                        service: service.clone(),
                        warning: false,
                        reason: "Withdrawn".to_string(),
                        action: "Withdraw",
                        cluster_wide: false,
                        note: format!("node {} stopped announcing {address}: {refusal}", self.node),
                    })
                }
                (_, Reported::Refused(refusal)) if is_reported(refusal) => {
                    planned.push(PlannedEvent {
                        service: service.clone(),
                        warning: true,
                        reason: refusal.code().to_string(),
                        action: "Refuse",
                        cluster_wide: true,
                        note: format!(
                            "herald will not announce {address} ({}): {refusal}",
                            decision.kind
                        ),
                    })
                }
                _ => {}
            }
        }
        // Addresses that went away while the Service stayed.
        for (address, (state, _)) in &before {
            if *state == Reported::Announced && !now.contains_key(address) {
                planned.push(PlannedEvent {
                    service: service.clone(),
                    warning: false,
                    reason: "Withdrawn".to_string(),
                    action: "Withdraw",
                    cluster_wide: false,
                    note: format!(
                        "node {} stopped announcing {address}: the Service no longer has it",
                        self.node
                    ),
                });
            }
        }
        planned
    }
}

/// The API server refuses an `events.k8s.io/v1` Event whose note is longer
/// than this many bytes (its validation: "can have at most 1024
/// characters"), and a note quotes what a user wrote in an annotation.
pub const MAX_NOTE_BYTES: usize = 1024;

/// Shortens `note` to at most [`MAX_NOTE_BYTES`], cut at a character
/// boundary and ending in `...` so a reader sees it was cut.
fn fit_note(note: &mut String) {
    const MARK: &str = "...";
    if note.len() <= MAX_NOTE_BYTES {
        return;
    }
    let mut end = MAX_NOTE_BYTES - MARK.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push_str(MARK);
}

/// Refusals worth a Warning on their own (see the module doc).
fn is_reported(refusal: &Refusal) -> bool {
    matches!(
        refusal,
        Refusal::OutsidePools
            | Refusal::NodeAddress
            | Refusal::InvalidAnnotation { .. }
            | Refusal::InvalidAddress
            | Refusal::PoolNamespaceNotPermitted { .. }
            | Refusal::PoolServiceNotSelected { .. }
            | Refusal::ExternalIPNotAllowed { .. }
            | Refusal::PathAttributesNotAllowed { .. }
            | Refusal::TooManyAddresses { .. }
            | Refusal::AddressInUse { .. }
    )
}

/// How many times a cluster-wide Event's count is re-read and patched when
/// other nodes patch it at the same moment (409 Conflict).
const SHARED_EVENT_ATTEMPTS: usize = 5;

/// The `reportingInstance` of cluster-wide Events: no single node.
pub const CLUSTER_INSTANCE: &str = "herald-cluster";

/// Records planned events: per-node ones through kube's `Recorder`
/// (`events.k8s.io/v1`; repeats within its cache window become a `series`
/// patch), cluster-wide ones as one shared Event per name.
#[derive(Clone)]
pub struct EventPublisher {
    client: kube::Client,
    recorder: Recorder,
}

impl EventPublisher {
    pub fn new(client: kube::Client, node: &str) -> Self {
        let reporter = Reporter {
            controller: CONTROLLER.to_string(),
            instance: Some(node.to_string()),
        };
        EventPublisher {
            recorder: Recorder::new(client.clone(), reporter),
            client,
        }
    }

    pub async fn publish(&self, planned: &PlannedEvent) -> Result<(), kube::Error> {
        if planned.cluster_wide {
            return self.publish_shared(planned).await;
        }
        let event = Event {
            type_: event_type(planned),
            reason: planned.reason.clone(),
            note: Some(planned.note.clone()),
            action: planned.action.to_string(),
            secondary: None,
        };
        self.recorder
            .publish(&event, &reference(&planned.service))
            .await
    }

    /// Creates the shared Event, or, if some node already did, counts one
    /// more occurrence in its `series`. Uses only `create` and `patch` (the
    /// ClusterRole grants no `get` on events): an empty merge patch returns
    /// the current object, and the count is written with its
    /// `resourceVersion` as a precondition, so concurrent nodes never lose a
    /// count (a 409 re-reads and tries again).
    async fn publish_shared(&self, planned: &PlannedEvent) -> Result<(), kube::Error> {
        let events: Api<EventObject> =
            Api::namespaced(self.client.clone(), &planned.service.namespace);
        let name = shared_event_name(planned);
        let now = MicroTime(Timestamp::now());
        let object = EventObject {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(planned.service.namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(now.clone()),
            type_: Some(if planned.warning { "Warning" } else { "Normal" }.to_string()),
            reason: Some(planned.reason.clone()),
            note: Some(planned.note.clone()),
            action: Some(planned.action.to_string()),
            regarding: Some(reference(&planned.service)),
            reporting_controller: Some(CONTROLLER.to_string()),
            reporting_instance: Some(CLUSTER_INSTANCE.to_string()),
            ..EventObject::default()
        };
        match events.create(&PostParams::default(), &object).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(error),
        }
        let mut last = None;
        for _ in 0..SHARED_EVENT_ATTEMPTS {
            let current = events
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({})),
                )
                .await?;
            let count = current.series.as_ref().map_or(2, |s| s.count + 1);
            let patch = serde_json::json!({
                "metadata": {"resourceVersion": current.metadata.resource_version},
                "series": EventSeries { count, last_observed_time: now.clone() },
            });
            match events
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    last = Some(kube::Error::Api(status));
                }
                Err(error) => return Err(error),
            }
        }
        Err(last.expect("at least one attempt"))
    }
}

fn event_type(planned: &PlannedEvent) -> EventType {
    if planned.warning {
        EventType::Warning
    } else {
        EventType::Normal
    }
}

/// The name every node gives the cluster-wide Event for `planned`:
/// `<service>.herald.<hash>`, the hash (FNV-1a, 64 bits: stable across
/// herald versions and machines, unlike std's hasher) over the Service's
/// uid, reason and note. The same refusal gives the same name on every
/// node; a different note (another address or detail) another Event.
pub fn shared_event_name(planned: &PlannedEvent) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let service = &planned.service;
    for part in [
        service.namespace.as_str(),
        service.name.as_str(),
        service.uid.as_deref().unwrap_or_default(),
        planned.reason.as_str(),
        planned.note.as_str(),
    ] {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{}.herald.{hash:016x}", service.name)
}

/// The Service as an event's `regarding`.
pub fn reference(service: &ServiceRef) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("Service".to_string()),
        namespace: Some(service.namespace.clone()),
        name: Some(service.name.clone()),
        uid: service.uid.clone(),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::AddressKind;

    fn service(name: &str) -> ServiceRef {
        ServiceRef {
            namespace: "default".to_string(),
            name: name.to_string(),
            uid: Some(format!("uid-{name}")),
        }
    }

    fn decision(name: &str, address: &str, outcome: Outcome) -> Decision {
        Decision {
            service: service(name),
            address: address.to_string(),
            ip: address.parse().ok(),
            kind: AddressKind::LoadBalancer,
            outcome,
        }
    }

    fn announced() -> Outcome {
        Outcome::Announced {
            pool: "public".to_string(),
        }
    }

    /// A desired set of these decisions, grouped per Service as the policy
    /// groups them (the tests list Services in name order).
    fn desired(decisions: Vec<Decision>) -> Desired {
        Desired {
            announcements: Default::default(),
            services: decisions
                .chunk_by(|a, b| a.service == b.service)
                .map(ServiceDecisions::from)
                .collect(),
            node_excluded: None,
            node_weight_problem: None,
        }
    }

    #[test]
    fn a_note_over_the_api_servers_limit_is_cut_at_a_character_boundary() {
        let mut short = "node n1 announces 203.0.113.10".to_string();
        fit_note(&mut short);
        assert_eq!(short, "node n1 announces 203.0.113.10");
        let mut long = format!("annotation herald.dev/communities: {}", "é".repeat(2000));
        fit_note(&mut long);
        assert!(long.len() <= MAX_NOTE_BYTES, "{}", long.len());
        assert!(long.len() > MAX_NOTE_BYTES - 8, "{}", long.len());
        assert!(long.ends_with("..."));
        assert!(long.starts_with("annotation herald.dev/communities: é"));
    }

    fn reasons(events: &[PlannedEvent]) -> Vec<(&str, &str)> {
        events
            .iter()
            .map(|e| (e.service.name.as_str(), e.reason.as_str()))
            .collect()
    }

    #[test]
    fn starting_and_stopping_to_announce_are_each_reported_once() {
        let mut ledger = EventLedger::new("node-a");
        let up = desired(vec![decision("web", "203.0.113.10", announced())]);
        let events = ledger.plan(&up);
        assert_eq!(reasons(&events), [("web", "Announcing")]);
        assert_eq!(
            events[0].note,
            "node node-a announces 203.0.113.10 (load-balancer) from pool public"
        );
        assert!(ledger.plan(&up).is_empty(), "a resync reports nothing");
        let down = desired(vec![decision(
            "web",
            "203.0.113.10",
            Outcome::Refused(Refusal::NoReadyLocalEndpoint),
        )]);
        let events = ledger.plan(&down);
        assert_eq!(reasons(&events), [("web", "Withdrawn")]);
        assert!(
            events[0].note.ends_with("no ready endpoint on this node"),
            "{}",
            events[0].note
        );
        assert!(ledger.plan(&down).is_empty());
    }

    #[test]
    fn configuration_refusals_warn_once_and_placement_refusals_stay_quiet() {
        let mut ledger = EventLedger::new("node-a");
        let state = desired(vec![
            decision("bad", "192.0.2.1", Outcome::Refused(Refusal::OutsidePools)),
            decision(
                "far",
                "203.0.113.2",
                Outcome::Refused(Refusal::NoReadyLocalEndpoint),
            ),
            decision("off", "203.0.113.3", Outcome::Refused(Refusal::NotSelected)),
        ]);
        let events = ledger.plan(&state);
        assert_eq!(reasons(&events), [("bad", "OutsidePools")]);
        assert!(events[0].warning);
        assert_eq!(
            events[0].note,
            "herald will not announce 192.0.2.1 (load-balancer): outside every configured pool"
        );
        assert!(ledger.plan(&state).is_empty());
    }

    #[test]
    fn a_changed_refusal_detail_is_reported_again() {
        let mut ledger = EventLedger::new("node-a");
        let refusal = |detail: &str| {
            Outcome::Refused(Refusal::InvalidAnnotation {
                annotation: "herald.dev/med",
                detail: detail.to_string(),
            })
        };
        ledger.plan(&desired(vec![decision(
            "web",
            "203.0.113.10",
            refusal("\"x\""),
        )]));
        let events = ledger.plan(&desired(vec![decision(
            "web",
            "203.0.113.10",
            refusal("\"y\""),
        )]));
        assert_eq!(reasons(&events), [("web", "InvalidAnnotation")]);
    }

    #[test]
    fn an_address_removed_from_a_service_is_reported_withdrawn() {
        let mut ledger = EventLedger::new("node-a");
        ledger.plan(&desired(vec![
            decision("web", "203.0.113.10", announced()),
            decision("web", "203.0.113.11", announced()),
        ]));
        let events = ledger.plan(&desired(vec![decision("web", "203.0.113.11", announced())]));
        assert_eq!(reasons(&events), [("web", "Withdrawn")]);
        assert!(events[0].note.contains("203.0.113.10"));
    }

    #[test]
    fn a_deleted_service_gets_no_event_and_is_forgotten() {
        let mut ledger = EventLedger::new("node-a");
        let up = desired(vec![decision("web", "203.0.113.10", announced())]);
        ledger.plan(&up);
        assert!(ledger.plan(&desired(vec![])).is_empty());
        assert_eq!(
            reasons(&ledger.plan(&up)),
            [("web", "Announcing")],
            "recreated"
        );
    }

    #[test]
    fn shared_decisions_plan_nothing_and_a_service_gone_between_them_is_forgotten() {
        let mut ledger = EventLedger::new("node-a");
        let all = desired(vec![
            decision("a", "203.0.113.1", announced()),
            decision("b", "203.0.113.2", announced()),
            decision("c", "203.0.113.3", announced()),
        ]);
        assert_eq!(ledger.plan(&all).len(), 3);
        // The next set shares a and c (same allocations); b was deleted.
        let without_b = Desired {
            announcements: Default::default(),
            services: vec![all.services[0].clone(), all.services[2].clone()],
            node_excluded: None,
            node_weight_problem: None,
        };
        assert!(ledger.plan(&without_b).is_empty());
        assert_eq!(ledger.last.len(), 2, "b is forgotten");
        // b comes back: it is reported again, a and c are not.
        assert_eq!(reasons(&ledger.plan(&all)), [("b", "Announcing")]);
    }

    #[test]
    fn an_address_announced_under_one_kind_counts_as_announced() {
        let mut ledger = EventLedger::new("node-a");
        let mut cluster = decision(
            "web",
            "203.0.113.10",
            Outcome::Refused(Refusal::KindNotRequested),
        );
        cluster.kind = AddressKind::Cluster;
        let events = ledger.plan(&desired(vec![
            cluster,
            decision("web", "203.0.113.10", announced()),
        ]));
        assert_eq!(reasons(&events), [("web", "Announcing")]);
    }

    #[test]
    fn refusals_are_cluster_wide_and_announcements_per_node() {
        let mut ledger = EventLedger::new("node-a");
        let events = ledger.plan(&desired(vec![
            decision("bad", "192.0.2.1", Outcome::Refused(Refusal::OutsidePools)),
            decision("web", "203.0.113.10", announced()),
        ]));
        let scope: Vec<(&str, bool)> = events
            .iter()
            .map(|e| (e.reason.as_str(), e.cluster_wide))
            .collect();
        assert_eq!(scope, [("OutsidePools", true), ("Announcing", false)]);
        let withdrawn = ledger.plan(&desired(vec![decision(
            "web",
            "203.0.113.10",
            Outcome::Refused(Refusal::NoReadyEndpoint),
        )]));
        assert!(!withdrawn[0].cluster_wide);
    }

    #[test]
    fn every_node_names_the_same_refusal_alike_and_different_refusals_apart() {
        let plan = |node: &str, address: &str| {
            EventLedger::new(node).plan(&desired(vec![decision(
                "bad",
                address,
                Outcome::Refused(Refusal::OutsidePools),
            )]))
        };
        let a = shared_event_name(&plan("node-a", "192.0.2.1")[0]);
        let b = shared_event_name(&plan("node-b", "192.0.2.1")[0]);
        let other = shared_event_name(&plan("node-a", "192.0.2.2")[0]);
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert!(a.starts_with("bad.herald."), "{a}");
        // A stable hash: the same on every machine and herald version.
        let fixed = PlannedEvent {
            service: service("web"),
            warning: true,
            reason: "OutsidePools".to_string(),
            action: "Refuse",
            note: "n".to_string(),
            cluster_wide: true,
        };
        assert_eq!(shared_event_name(&fixed), "web.herald.f8765b171af5ee0d");
    }

    #[test]
    fn the_event_regards_the_service_by_uid() {
        let reference = reference(&service("web"));
        assert_eq!(reference.kind.as_deref(), Some("Service"));
        assert_eq!(reference.api_version.as_deref(), Some("v1"));
        assert_eq!(reference.uid.as_deref(), Some("uid-web"));
    }
}
