//! Table-driven tests of the policy: one row per rule, and one per
//! combination that has bitten other projects.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Node, Service, ServiceSpec, ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::*;
use crate::config::kubernetes::EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS;
use crate::model::AnyCommunity;

const NODE: &str = "node-a";

fn pools() -> Vec<PoolConfig> {
    vec![
        PoolConfig {
            name: "public".to_string(),
            cidrs: vec![
                "203.0.113.0/24".parse().unwrap(),
                "2001:db8:ffff::/64".parse().unwrap(),
            ],
            communities: vec!["65000:100".parse().unwrap()],
            allow_external_ips: true,
            allow_path_attributes: true,
            ..PoolConfig::default()
        },
        PoolConfig {
            name: "internal".to_string(),
            cidrs: vec!["198.51.100.0/24".parse().unwrap()],
            communities: vec![],
            allow_external_ips: true,
            allow_path_attributes: true,
            ..PoolConfig::default()
        },
    ]
}

/// A Service under construction.
#[derive(Clone)]
struct Svc(Service);

fn svc(name: &str) -> Svc {
    Svc(Service {
        metadata: ObjectMeta {
            namespace: Some("default".to_string()),
            name: Some(name.to_string()),
            uid: Some(format!("uid-{name}")),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".to_string()),
            cluster_ips: Some(vec!["198.51.100.1".to_string()]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

impl Svc {
    fn advertised(self) -> Self {
        self.annotate(annotations::ADVERTISE, "true")
    }
    fn annotate(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_string(), value.to_string());
        self
    }
    fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_string(), value.to_string());
        self
    }
    fn created(mut self, at: &str) -> Self {
        self.0.metadata.creation_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at.parse().unwrap()),
        );
        self
    }
    fn namespace(mut self, namespace: &str) -> Self {
        self.0.metadata.namespace = Some(namespace.to_string());
        self
    }
    fn spec(&mut self) -> &mut ServiceSpec {
        self.0.spec.as_mut().unwrap()
    }
    fn class(mut self, class: Option<&str>) -> Self {
        self.spec().load_balancer_class = class.map(String::from);
        self
    }
    fn type_(mut self, type_: &str) -> Self {
        self.spec().type_ = Some(type_.to_string());
        self
    }
    fn ingress(mut self, ips: &[&str]) -> Self {
        let ingress = ips
            .iter()
            .map(|ip| LoadBalancerIngress {
                ip: Some(ip.to_string()),
                ..LoadBalancerIngress::default()
            })
            .collect();
        self.0.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(ingress),
            }),
            ..ServiceStatus::default()
        });
        self
    }
    fn ingress_hostname(mut self, hostname: &str) -> Self {
        let status = self.0.status.get_or_insert_with(ServiceStatus::default);
        let lb = status
            .load_balancer
            .get_or_insert_with(LoadBalancerStatus::default);
        lb.ingress
            .get_or_insert_with(Vec::new)
            .push(LoadBalancerIngress {
                hostname: Some(hostname.to_string()),
                ..LoadBalancerIngress::default()
            });
        self
    }
    fn external(mut self, ips: &[&str]) -> Self {
        self.spec().external_ips = Some(ips.iter().map(|s| s.to_string()).collect());
        self
    }
    fn cluster(mut self, ips: &[&str]) -> Self {
        self.spec().cluster_ips = Some(ips.iter().map(|s| s.to_string()).collect());
        self.spec().cluster_ip = ips.first().map(|s| s.to_string());
        self
    }
    fn local(mut self) -> Self {
        self.spec().external_traffic_policy = Some("Local".to_string());
        self
    }
    fn internal_local(mut self) -> Self {
        self.spec().internal_traffic_policy = Some("Local".to_string());
        self
    }
}

/// One endpoint: (node, ready, serving, terminating); `None` leaves the
/// condition unset.
type Ep = (&'static str, Option<bool>, Option<bool>, Option<bool>);

const READY_HERE: Ep = (NODE, Some(true), Some(true), Some(false));
const READY_THERE: Ep = ("node-b", Some(true), Some(true), Some(false));
const NOT_READY_HERE: Ep = (NODE, Some(false), Some(false), Some(false));
const NOT_READY_THERE: Ep = ("node-b", Some(false), Some(false), Some(false));
const DRAINING_HERE: Ep = (NODE, Some(false), Some(true), Some(true));
const DRAINING_THERE: Ep = ("node-b", Some(false), Some(true), Some(true));
const DEAD_HERE: Ep = (NODE, Some(false), Some(false), Some(true));
const UNSET_HERE: Ep = (NODE, None, None, None);

fn slice_in(namespace: &str, service: &str, family: &str, endpoints: &[Ep]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_string()),
            name: Some(format!("{service}-{family}-{}", endpoints.len())),
            labels: Some(BTreeMap::from([(
                endpoints::SERVICE_NAME_LABEL.to_string(),
                service.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        address_type: family.to_string(),
        endpoints: endpoints
            .iter()
            .enumerate()
            .map(|(i, (node, ready, serving, terminating))| Endpoint {
                addresses: vec![format!("10.0.0.{i}")],
                node_name: Some(node.to_string()),
                conditions: Some(EndpointConditions {
                    ready: *ready,
                    serving: *serving,
                    terminating: *terminating,
                }),
                ..Endpoint::default()
            })
            .collect(),
        ports: None,
    }
}

fn slice(service: &str, endpoints: &[Ep]) -> EndpointSlice {
    slice_in("default", service, "IPv4", endpoints)
}

fn slice6(service: &str, endpoints: &[Ep]) -> EndpointSlice {
    slice_in("default", service, "IPv6", endpoints)
}

fn node(labels: &[(&str, &str)]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(NODE.to_string()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        ..Node::default()
    }
}

/// This node, with these `status.addresses` (InternalIP; a name that is
/// not an IP is skipped, as the kubelet's Hostname entry is).
fn node_with_addresses(addresses: &[&str]) -> Node {
    let mut node = node(&[]);
    node.status = Some(k8s_openapi::api::core::v1::NodeStatus {
        addresses: Some(
            addresses
                .iter()
                .map(|a| k8s_openapi::api::core::v1::NodeAddress {
                    address: a.to_string(),
                    type_: "InternalIP".to_string(),
                })
                .collect(),
        ),
        ..Default::default()
    });
    node
}

fn snapshot(services: Vec<Svc>, slices: Vec<EndpointSlice>, node: Node) -> Snapshot {
    Snapshot {
        services: services.into_iter().map(|s| Arc::new(s.0)).collect(),
        endpoint_slices: slices.into_iter().map(Arc::new).collect(),
        node: Arc::new(node),
        namespaces: Arc::new(BTreeMap::from([
            ("shop".to_string(), BTreeMap::new()),
            (
                "trusted-ns".to_string(),
                BTreeMap::from([("tier".to_string(), "trusted".to_string())]),
            ),
        ])),
    }
}

struct Case {
    name: &'static str,
    services: Vec<Svc>,
    slices: Vec<EndpointSlice>,
    node: Node,
    selection: SelectionConfig,
    announced: &'static [&'static str],
    /// (address, Refusal::code) pairs that must be among the decisions.
    refused: &'static [(&'static str, &'static str)],
}

fn case(name: &'static str) -> Case {
    Case {
        name,
        services: vec![],
        slices: vec![],
        node: node(&[]),
        selection: with(|_| {}),
        announced: &[],
        refused: &[],
    }
}

fn check(case: Case) {
    let desired = evaluate(
        &snapshot(case.services, case.slices, case.node),
        &pools(),
        &case.selection,
    );
    let announced: BTreeSet<IpAddr> = case.announced.iter().map(|a| a.parse().unwrap()).collect();
    assert_eq!(
        desired.addresses(),
        announced,
        "{}: announced set",
        case.name
    );
    for (address, code) in case.refused {
        let found = desired
            .refusals()
            .any(|(d, r)| d.address == *address && r.code() == *code);
        assert!(
            found,
            "{}: expected {address} refused as {code}, decisions: {:#?}",
            case.name, desired.services
        );
    }
    // Every announcement is backed by an Announced decision and vice versa.
    let from_decisions: BTreeSet<IpAddr> = desired
        .decisions()
        .filter(|d| matches!(d.outcome, Outcome::Announced { .. }))
        .map(|d| d.address.parse().unwrap())
        .collect();
    assert_eq!(from_decisions, announced, "{}: decisions", case.name);
}

/// The rule tables below predate the tenant rules and consider external
/// addresses too (the default is load-balancer addresses only).
fn with(f: impl FnOnce(&mut SelectionConfig)) -> SelectionConfig {
    let mut selection = SelectionConfig {
        address_kinds: [AddressKind::LoadBalancer, AddressKind::External].into(),
        ..SelectionConfig::default()
    };
    f(&mut selection);
    selection
}

fn allocated(unclassed: bool) -> AllocatedClass {
    AllocatedClass {
        class: "herald.dev/bgp".to_string(),
        unclassed,
    }
}

#[test]
fn selection_rules() {
    let cases = vec![
        Case {
            services: vec![svc("web").advertised().ingress(&["203.0.113.10"])],
            slices: vec![slice("web", &[READY_HERE])],
            announced: &["203.0.113.10"],
            ..case("the annotation selects a Service")
        },
        Case {
            services: vec![svc("web").ingress(&["203.0.113.10"])],
            slices: vec![slice("web", &[READY_HERE])],
            refused: &[("203.0.113.10", "NotSelected")],
            ..case("without annotation or config nothing is selected")
        },
        Case {
            services: vec![
                svc("web").ingress(&["203.0.113.10"]),
                svc("plain").type_("ClusterIP").external(&["203.0.113.11"]),
            ],
            slices: vec![slice("web", &[READY_HERE]), slice("plain", &[READY_HERE])],
            selection: with(|s| s.load_balancer_services = true),
            announced: &["203.0.113.10"],
            refused: &[("203.0.113.11", "NotSelected")],
            ..case("load_balancer_services selects LoadBalancer Services only")
        },
        Case {
            services: vec![
                svc("web").label("bgp", "yes").ingress(&["203.0.113.10"]),
                svc("other").label("bgp", "no").ingress(&["203.0.113.11"]),
            ],
            slices: vec![slice("web", &[READY_HERE]), slice("other", &[READY_HERE])],
            selection: with(|s| {
                s.service_selector = Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([("bgp".to_string(), "yes".to_string())])),
                    ..LabelSelector::default()
                })
            }),
            announced: &["203.0.113.10"],
            refused: &[("203.0.113.11", "NotSelected")],
            ..case("a label selector selects matching Services")
        },
        Case {
            services: vec![
                svc("web")
                    .annotate(annotations::ADVERTISE, "false")
                    .ingress(&["203.0.113.10"]),
            ],
            slices: vec![slice("web", &[READY_HERE])],
            selection: with(|s| s.load_balancer_services = true),
            refused: &[("203.0.113.10", "NotSelected")],
            ..case("advertise false opts out even when the config selects")
        },
        Case {
            services: vec![
                svc("ours")
                    .class(Some("herald.dev/bgp"))
                    .ingress(&["203.0.113.10"]),
                svc("theirs")
                    .class(Some("example.com/lb"))
                    .ingress(&["203.0.113.11"]),
                svc("unclassed").ingress(&["203.0.113.12"]),
                svc("ours-but-cluster-ip")
                    .class(Some("herald.dev/bgp"))
                    .type_("ClusterIP")
                    .external(&["203.0.113.13"]),
                svc("ours-opted-out")
                    .class(Some("herald.dev/bgp"))
                    .annotate(annotations::ADVERTISE, "false")
                    .ingress(&["203.0.113.14"]),
            ],
            slices: [
                "ours",
                "theirs",
                "unclassed",
                "ours-but-cluster-ip",
                "ours-opted-out",
            ]
            .iter()
            .map(|name| slice(name, &[READY_HERE]))
            .collect(),
            selection: with(|s| s.allocated_class = Some(allocated(false))),
            announced: &["203.0.113.10"],
            refused: &[
                ("203.0.113.11", "NotSelected"),
                ("203.0.113.12", "NotSelected"),
                ("203.0.113.13", "NotSelected"),
                ("203.0.113.14", "NotSelected"),
            ],
            ..case("herald's allocation class selects its LoadBalancer Services")
        },
        Case {
            services: vec![
                svc("ours")
                    .class(Some("herald.dev/bgp"))
                    .ingress(&["203.0.113.10"]),
                svc("theirs")
                    .class(Some("example.com/lb"))
                    .ingress(&["203.0.113.11"]),
                svc("unclassed").ingress(&["203.0.113.12"]),
            ],
            slices: ["ours", "theirs", "unclassed"]
                .iter()
                .map(|name| slice(name, &[READY_HERE]))
                .collect(),
            selection: with(|s| s.allocated_class = Some(allocated(true))),
            announced: &["203.0.113.10", "203.0.113.12"],
            refused: &[("203.0.113.11", "NotSelected")],
            ..case("claim_unclassed adds the LoadBalancer Services without a class")
        },
        Case {
            services: vec![
                svc("ours")
                    .class(Some("herald.dev/bgp"))
                    .ingress(&["203.0.113.10"]),
            ],
            slices: vec![slice("ours", &[READY_HERE])],
            refused: &[("203.0.113.10", "NotSelected")],
            ..case("allocation off: the class alone selects nothing")
        },
        Case {
            services: vec![
                svc("web")
                    .annotate(annotations::ADVERTISE, "yes")
                    .ingress(&["203.0.113.10"])
                    .external(&["203.0.113.11"]),
            ],
            slices: vec![slice("web", &[READY_HERE])],
            refused: &[
                ("203.0.113.10", "InvalidAnnotation"),
                ("203.0.113.11", "InvalidAnnotation"),
            ],
            ..case("a malformed advertise annotation refuses every address")
        },
    ];
    for c in cases {
        check(c);
    }
}

#[test]
fn address_kind_rules() {
    let cases = vec![
        Case {
            services: vec![
                svc("web")
                    .advertised()
                    .ingress(&["203.0.113.10"])
                    .external(&["203.0.113.11"])
                    .cluster(&["198.51.100.1"]),
            ],
            slices: vec![slice("web", &[READY_HERE])],
            selection: SelectionConfig::default(),
            announced: &["203.0.113.10"],
            refused: &[
                ("203.0.113.11", "AddressKindNotRequested"),
                ("198.51.100.1", "AddressKindNotRequested"),
            ],
            ..case("load-balancer only by default; external and cluster only when asked")
        },
        Case {
            services: vec![
                svc("web")
                    .advertised()
                    .annotate(annotations::ADDRESS_KINDS, "cluster")
                    .ingress(&["203.0.113.10"])
                    .cluster(&["198.51.100.1"]),
            ],
            slices: vec![slice("web", &[READY_HERE])],
            announced: &["198.51.100.1"],
            refused: &[("203.0.113.10", "AddressKindNotRequested")],
            ..case("the address-kinds annotation replaces the default kinds")
        },
        Case {
            services: vec![
                svc("web")
                    .advertised()
                    .ingress(&["203.0.113.10"])
                    .cluster(&["198.51.100.1"]),
            ],
            slices: vec![slice("web", &[READY_HERE])],
            selection: with(|s| s.address_kinds = BTreeSet::from([AddressKind::Cluster])),
            announced: &["198.51.100.1"],
            refused: &[("203.0.113.10", "AddressKindNotRequested")],
            ..case("config address_kinds apply without annotation")
        },
        Case {
            services: vec![
                svc("web")
                    .advertised()
                    .annotate(annotations::ADDRESS_KINDS, "cluster,nodeport")
                    .ingress(&["203.0.113.10"]),
            ],
            slices: vec![slice("web", &[READY_HERE])],
            refused: &[("203.0.113.10", "InvalidAnnotation")],
            ..case("a malformed address-kinds annotation refuses every address")
        },
        Case {
            services: vec![svc("web").advertised().ingress_hostname("lb.example.com")],
            slices: vec![slice("web", &[READY_HERE])],
            ..case("an ingress with a hostname and no ip has nothing to announce")
        },
        Case {
            services: vec![
                svc("web")
                    .advertised()
                    .ingress(&["203.0.113.10"])
                    .ingress_hostname("lb.example.com"),
            ],
            slices: vec![slice("web", &[READY_HERE])],
            announced: &["203.0.113.10"],
            ..case("a hostname ingress beside an ip ingress leaves the ip announced")
        },
        Case {
            services: vec![
                svc("web")
                    .advertised()
                    .ingress(&["203.0.113.999", "203.0.113.10"])
                    .external(&["not-an-ip"]),
            ],
            slices: vec![slice("web", &[READY_HERE])],
            announced: &["203.0.113.10"],
            refused: &[
                ("203.0.113.999", "InvalidAddress"),
                ("not-an-ip", "InvalidAddress"),
            ],
            ..case("text that is not an IP is refused without touching the rest")
        },
        Case {
            services: vec![
                svc("headless")
                    .advertised()
                    .annotate(annotations::ADDRESS_KINDS, "cluster")
                    .cluster(&["None"]),
            ],
            slices: vec![slice("headless", &[READY_HERE])],
            ..case("a headless Service has no cluster address")
        },
    ];
    for c in cases {
        check(c);
    }
}

#[test]
fn pool_rules() {
    let cases = vec![
        Case {
            services: vec![
                svc("web")
                    .advertised()
                    .ingress(&["192.0.2.10", "203.0.113.10"]),
            ],
            slices: vec![slice("web", &[READY_HERE])],
            announced: &["203.0.113.10"],
            refused: &[("192.0.2.10", "OutsidePools")],
            ..case("an address outside every pool is never announced")
        },
        Case {
            services: vec![
                svc("web")
                    .advertised()
                    .annotate(annotations::ADDRESS_KINDS, "cluster")
                    .cluster(&["10.96.0.10"]),
            ],
            slices: vec![slice("web", &[READY_HERE])],
            refused: &[("10.96.0.10", "OutsidePools")],
            ..case("cluster addresses need a pool too")
        },
        Case {
            services: vec![svc("web").advertised().ingress(&["192.0.2.10"])],
            slices: vec![],
            node: node(&[(EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS, "")]),
            refused: &[("192.0.2.10", "OutsidePools")],
            ..case("outside the pools is reported before any node or endpoint reason")
        },
        Case {
            services: vec![
                svc("web")
                    .advertised()
                    .ingress(&["203.0.113.50", "203.0.113.10"]),
            ],
            slices: vec![slice("web", &[READY_HERE])],
            node: node_with_addresses(&["192.0.2.11", "203.0.113.50", "node-a.example"]),
            announced: &["203.0.113.10"],
            refused: &[("203.0.113.50", "NodeAddress")],
            ..case("one of the node's own addresses is never announced, even inside a pool")
        },
    ];
    for c in cases {
        check(c);
    }
}

#[test]
fn traffic_policy_rules() {
    let local = || svc("web").advertised().local().ingress(&["203.0.113.10"]);
    let cluster = || svc("web").advertised().ingress(&["203.0.113.10"]);
    let cases = vec![
        Case {
            services: vec![local()],
            slices: vec![slice("web", &[READY_HERE, NOT_READY_THERE])],
            announced: &["203.0.113.10"],
            ..case("Local: a ready local endpoint announces")
        },
        Case {
            services: vec![local()],
            slices: vec![slice("web", &[READY_THERE, NOT_READY_HERE])],
            refused: &[("203.0.113.10", "NoReadyLocalEndpoint")],
            ..case("Local: ready endpoints only on other nodes do not")
        },
        Case {
            services: vec![local()],
            slices: vec![slice("web", &[DRAINING_HERE])],
            announced: &["203.0.113.10"],
            ..case("Local: a serving terminating endpoint holds while nothing is ready elsewhere")
        },
        Case {
            services: vec![local()],
            slices: vec![slice("web", &[DRAINING_HERE]), slice("web", &[READY_THERE])],
            refused: &[("203.0.113.10", "NoReadyLocalEndpoint")],
            ..case("Local: only terminating pods here and a ready pod elsewhere withdraws")
        },
        Case {
            services: vec![local()],
            slices: vec![slice("web", &[DRAINING_HERE, DRAINING_THERE])],
            announced: &["203.0.113.10"],
            ..case("Local: terminating elsewhere does not count as ready elsewhere")
        },
        Case {
            services: vec![local()],
            slices: vec![slice("web", &[DEAD_HERE])],
            refused: &[("203.0.113.10", "NoReadyLocalEndpoint")],
            ..case("Local: a terminating endpoint that no longer serves does not announce")
        },
        Case {
            services: vec![local()],
            slices: vec![slice("web", &[UNSET_HERE])],
            announced: &["203.0.113.10"],
            ..case("Local: unset conditions mean ready, as the API says")
        },
        Case {
            services: vec![local()],
            slices: vec![slice_in("other", "web", "IPv4", &[READY_HERE])],
            refused: &[("203.0.113.10", "NoReadyLocalEndpoint")],
            ..case("Local: a slice of a same-named Service in another namespace does not count")
        },
        Case {
            services: vec![cluster()],
            slices: vec![],
            refused: &[("203.0.113.10", "NoReadyEndpoint")],
            ..case("Cluster: zero EndpointSlices, nothing announced")
        },
        Case {
            services: vec![cluster()],
            slices: vec![slice("web", &[])],
            refused: &[("203.0.113.10", "NoReadyEndpoint")],
            ..case("Cluster: an empty EndpointSlice, nothing announced")
        },
        Case {
            services: vec![cluster()],
            slices: vec![slice("web", &[NOT_READY_HERE, DRAINING_THERE])],
            refused: &[("203.0.113.10", "NoReadyEndpoint")],
            ..case("Cluster: only unready or terminating endpoints, nothing announced")
        },
        Case {
            services: vec![cluster()],
            slices: vec![slice("web", &[READY_THERE])],
            announced: &["203.0.113.10"],
            ..case("Cluster: a ready endpoint on another node lets every node announce")
        },
        Case {
            services: vec![cluster()],
            slices: vec![],
            selection: with(|s| s.cluster_policy_requires_ready_endpoint = false),
            announced: &["203.0.113.10"],
            ..case("Cluster: the endpoint requirement can be switched off")
        },
        Case {
            services: vec![cluster()],
            slices: vec![slice_in("default", "web", "FQDN", &[READY_HERE])],
            refused: &[("203.0.113.10", "NoReadyEndpoint")],
            ..case("Cluster: FQDN slices are not endpoints of an IP service")
        },
        Case {
            services: vec![
                svc("web")
                    .advertised()
                    .local()
                    .internal_local()
                    .annotate(annotations::ADDRESS_KINDS, "cluster,external")
                    .external(&["203.0.113.11"])
                    .cluster(&["198.51.100.1"]),
            ],
            slices: vec![slice("web", &[READY_THERE])],
            refused: &[
                ("203.0.113.11", "NoReadyLocalEndpoint"),
                ("198.51.100.1", "NoReadyLocalEndpoint"),
            ],
            ..case(
                "external addresses follow externalTrafficPolicy, cluster ones internalTrafficPolicy",
            )
        },
        Case {
            services: vec![
                svc("web")
                    .advertised()
                    .local()
                    .annotate(annotations::ADDRESS_KINDS, "cluster,external")
                    .external(&["203.0.113.11"])
                    .cluster(&["198.51.100.1"]),
            ],
            slices: vec![slice("web", &[READY_THERE])],
            announced: &["198.51.100.1"],
            refused: &[("203.0.113.11", "NoReadyLocalEndpoint")],
            ..case(
                "a cluster address with internalTrafficPolicy Cluster needs a ready endpoint anywhere",
            )
        },
    ];
    for c in cases {
        check(c);
    }
}

#[test]
fn node_exclusion_rules() {
    let cases = vec![
        Case {
            services: vec![
                svc("web").advertised().ingress(&["203.0.113.10"]),
                svc("api").advertised().local().external(&["203.0.113.11"]),
            ],
            slices: vec![slice("web", &[READY_HERE]), slice("api", &[READY_HERE])],
            node: node(&[(EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS, "true")]),
            refused: &[
                ("203.0.113.10", "NodeExcluded"),
                ("203.0.113.11", "NodeExcluded"),
            ],
            ..case("the standard exclusion label withdraws everything, whatever its value")
        },
        Case {
            services: vec![svc("web").advertised().ingress(&["203.0.113.10"])],
            slices: vec![slice("web", &[READY_HERE])],
            node: node(&[("example.com/no-bgp", "")]),
            selection: with(|s| s.node_exclusion_labels = vec!["example.com/no-bgp".to_string()]),
            refused: &[("203.0.113.10", "NodeExcluded")],
            ..case("a configured exclusion label works the same")
        },
        Case {
            services: vec![svc("web").advertised().ingress(&["203.0.113.10"])],
            slices: vec![slice("web", &[READY_HERE])],
            node: node(&[(EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS, "true")]),
            selection: with(|s| s.node_exclusion_labels = vec![]),
            announced: &["203.0.113.10"],
            ..case("with no exclusion labels configured the label is ignored")
        },
    ];
    for c in cases {
        check(c);
    }
}

#[test]
fn dual_stack_rules() {
    let cases = vec![
        Case {
            services: vec![
                svc("web")
                    .advertised()
                    .local()
                    .ingress(&["203.0.113.10", "2001:db8:ffff::10"]),
            ],
            slices: vec![slice("web", &[READY_HERE]), slice6("web", &[READY_HERE])],
            announced: &["203.0.113.10", "2001:db8:ffff::10"],
            ..case("both families announce with ready endpoints in both")
        },
        Case {
            services: vec![
                svc("web")
                    .advertised()
                    .local()
                    .ingress(&["203.0.113.10", "2001:db8:ffff::10"]),
            ],
            slices: vec![slice("web", &[READY_HERE]), slice6("web", &[READY_THERE])],
            announced: &["203.0.113.10"],
            refused: &[("2001:db8:ffff::10", "NoReadyLocalEndpoint")],
            ..case("each family follows its own EndpointSlices")
        },
        Case {
            services: vec![
                svc("web")
                    .advertised()
                    .ingress(&["2001:DB8:FFFF:0::10", "2001:db8:1::10"]),
            ],
            slices: vec![slice6("web", &[READY_THERE])],
            announced: &["2001:db8:ffff::10"],
            refused: &[("2001:db8:1::10", "OutsidePools")],
            ..case("IPv6 addresses are checked against IPv6 pool CIDRs in canonical form")
        },
        Case {
            services: vec![svc("web").advertised().ingress(&["2001:db8:ffff::10"])],
            slices: vec![slice("web", &[READY_HERE])],
            refused: &[("2001:db8:ffff::10", "NoReadyEndpoint")],
            ..case("IPv4 endpoints do not make an IPv6 address ready")
        },
    ];
    for c in cases {
        check(c);
    }
}

#[test]
fn attribute_rules() {
    let cases = vec![
        Case {
            services: vec![
                svc("web")
                    .advertised()
                    .annotate(annotations::COMMUNITIES, "65000:100,65000:1:2,nope")
                    .ingress(&["203.0.113.10"]),
            ],
            slices: vec![slice("web", &[READY_HERE])],
            refused: &[("203.0.113.10", "InvalidAnnotation")],
            ..case("malformed communities refuse the address")
        },
        Case {
            services: vec![
                svc("web")
                    .advertised()
                    .annotate(annotations::COMMUNITIES, "65535:666")
                    .ingress(&["203.0.113.10"]),
            ],
            slices: vec![slice("web", &[READY_HERE])],
            refused: &[("203.0.113.10", "InvalidAnnotation")],
            ..case("a tenant cannot set BLACKHOLE by annotation")
        },
        Case {
            services: vec![
                svc("web")
                    .advertised()
                    .annotate(annotations::MED, "10")
                    .ingress(&["203.0.113.10", "198.51.100.10"]),
            ],
            slices: vec![slice("web", &[READY_HERE])],
            selection: with(|s| {
                s.pool_annotations.insert(
                    "public".to_string(),
                    PoolAnnotationPolicy {
                        med: false,
                        ..PoolAnnotationPolicy::default()
                    },
                );
            }),
            announced: &["198.51.100.10"],
            refused: &[("203.0.113.10", "InvalidAnnotation")],
            ..case("a pool that forbids MED refuses only its own addresses")
        },
        Case {
            services: vec![
                svc("web")
                    .advertised()
                    .annotate(annotations::LOCAL_PREF, "high")
                    .ingress(&["203.0.113.10"]),
            ],
            slices: vec![slice("web", &[READY_HERE])],
            refused: &[("203.0.113.10", "InvalidAnnotation")],
            ..case("a malformed local-pref refuses the address")
        },
    ];
    for c in cases {
        check(c);
    }
}

fn only_announcement(desired: &Desired) -> &Announcement {
    assert_eq!(desired.announcements.len(), 1, "{desired:#?}");
    desired.announcements.iter().next().unwrap()
}

#[test]
fn annotation_attributes_are_merged_with_the_pool_communities() {
    let snapshot = snapshot(
        vec![
            svc("web")
                .advertised()
                .annotate(annotations::COMMUNITIES, "65000:200, 65000:1:2")
                .annotate(annotations::LOCAL_PREF, "300")
                .annotate(annotations::MED, "5")
                .ingress(&["203.0.113.10"]),
        ],
        vec![slice("web", &[READY_HERE])],
        node(&[]),
    );
    let desired = evaluate(&snapshot, &pools(), &SelectionConfig::default());
    let attributes = &only_announcement(&desired).attributes;
    let communities: Vec<String> = attributes
        .communities
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(communities, ["65000:100", "65000:200"]);
    let large: Vec<String> = attributes
        .large_communities
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(large, ["65000:1:2"]);
    assert_eq!(attributes.local_pref, Some(300));
    assert_eq!(attributes.med, Some(5));
    assert_eq!(
        desired.services[0][0].outcome,
        Outcome::Announced {
            pool: "public".to_string()
        }
    );
}

#[test]
fn a_listed_reserved_community_is_permitted() {
    let snapshot = snapshot(
        vec![
            svc("web")
                .advertised()
                .annotate(annotations::COMMUNITIES, "65535:666")
                .ingress(&["203.0.113.10"]),
        ],
        vec![slice("web", &[READY_HERE])],
        node(&[]),
    );
    let selection = with(|s| {
        s.pool_annotations.insert(
            "public".to_string(),
            PoolAnnotationPolicy {
                communities: Some(vec!["65535:666".parse::<AnyCommunity>().unwrap()]),
                ..PoolAnnotationPolicy::default()
            },
        );
    });
    let desired = evaluate(&snapshot, &pools(), &selection);
    let attributes = &only_announcement(&desired).attributes;
    assert!(
        attributes
            .communities
            .contains(&crate::model::Community::new(65535, 666))
    );
}

#[test]
fn refusals_name_the_annotation_and_why() {
    let snapshot = snapshot(
        vec![
            svc("web")
                .advertised()
                .annotate(annotations::COMMUNITIES, "65535:666")
                .ingress(&["203.0.113.10"]),
        ],
        vec![slice("web", &[READY_HERE])],
        node(&[]),
    );
    let desired = evaluate(&snapshot, &pools(), &SelectionConfig::default());
    let (_, refusal) = desired.refusals().next().unwrap();
    assert_eq!(
        refusal.to_string(),
        "annotation herald.dev/communities: community 65535:666 is not permitted in pool public"
    );
}

#[test]
fn a_shared_address_is_announced_once_with_the_union_of_communities() {
    let snapshot = snapshot(
        vec![
            svc("b")
                .advertised()
                .annotate(annotations::ALLOW_SHARED_IP, "web")
                .annotate(annotations::COMMUNITIES, "65000:2")
                .annotate(annotations::MED, "20")
                .ingress(&["203.0.113.10"]),
            svc("a")
                .advertised()
                .annotate(annotations::ALLOW_SHARED_IP, "web")
                .annotate(annotations::COMMUNITIES, "65000:1")
                .annotate(annotations::MED, "10")
                .ingress(&["203.0.113.10"]),
        ],
        vec![slice("a", &[READY_HERE]), slice("b", &[READY_HERE])],
        node(&[]),
    );
    let desired = evaluate(&snapshot, &pools(), &SelectionConfig::default());
    let attributes = &only_announcement(&desired).attributes;
    assert_eq!(attributes.communities.len(), 3);
    assert_eq!(
        attributes.med,
        Some(10),
        "the first service by name sets MED"
    );
    let announced = desired
        .decisions()
        .filter(|d| matches!(d.outcome, Outcome::Announced { .. }))
        .count();
    assert_eq!(
        announced, 2,
        "both services report the address as announced"
    );
}

#[test]
fn the_answer_does_not_depend_on_the_order_of_the_stores() {
    let services = vec![
        svc("a").advertised().ingress(&["203.0.113.1"]),
        svc("b").advertised().local().ingress(&["203.0.113.2"]),
        svc("c")
            .advertised()
            .namespace("x")
            .ingress(&["203.0.113.3"]),
        svc("d").ingress(&["203.0.113.4"]),
    ];
    let slices = vec![
        slice("a", &[READY_THERE]),
        slice("b", &[READY_HERE]),
        slice_in("x", "c", "IPv4", &[READY_THERE]),
    ];
    let forward = evaluate(
        &snapshot(services.clone(), slices.clone(), node(&[])),
        &pools(),
        &SelectionConfig::default(),
    );
    let mut reversed_services = services;
    reversed_services.reverse();
    let mut reversed_slices = slices;
    reversed_slices.reverse();
    let backward = evaluate(
        &snapshot(reversed_services, reversed_slices, node(&[])),
        &pools(),
        &SelectionConfig::default(),
    );
    assert_eq!(forward, backward);
    assert_eq!(forward.announcements.len(), 3);
}

#[test]
fn a_status_change_without_a_generation_bump_changes_the_answer() {
    // Kubernetes does not bump metadata.generation when only status changes;
    // the policy must look at the status itself.
    let before = svc("web").advertised();
    let after = before.clone().ingress(&["203.0.113.10"]);
    assert_eq!(before.0.metadata.generation, after.0.metadata.generation);
    let slices = vec![slice("web", &[READY_HERE])];
    let selection = SelectionConfig::default();
    let first = evaluate(
        &snapshot(vec![before], slices.clone(), node(&[])),
        &pools(),
        &selection,
    );
    let second = evaluate(
        &snapshot(vec![after], slices, node(&[])),
        &pools(),
        &selection,
    );
    assert!(first.announcements.is_empty());
    assert_eq!(second.addresses().len(), 1);
}

#[test]
fn every_address_considered_gets_exactly_one_decision() {
    let snapshot = snapshot(
        vec![
            svc("web")
                .advertised()
                .ingress(&["203.0.113.10", "192.0.2.1"])
                .external(&["203.0.113.11"])
                .cluster(&["198.51.100.1", "2001:db8:ffff::1"]),
            svc("off").ingress(&["203.0.113.20"]),
        ],
        vec![slice("web", &[READY_HERE])],
        node(&[]),
    );
    let desired = evaluate(&snapshot, &pools(), &SelectionConfig::default());
    let seen: Vec<(String, AddressKind)> = desired
        .decisions()
        .map(|d| (d.address.clone(), d.kind))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("203.0.113.20".to_string(), AddressKind::LoadBalancer),
            ("203.0.113.10".to_string(), AddressKind::LoadBalancer),
            ("192.0.2.1".to_string(), AddressKind::LoadBalancer),
            ("203.0.113.11".to_string(), AddressKind::External),
            ("198.51.100.1".to_string(), AddressKind::Cluster),
            ("2001:db8:ffff::1".to_string(), AddressKind::Cluster),
        ]
    );
}

#[test]
fn decisions_serialize_for_the_status_page() {
    let snapshot = snapshot(
        vec![svc("web").advertised().ingress(&["192.0.2.10"])],
        vec![],
        node(&[]),
    );
    let desired = evaluate(&snapshot, &pools(), &SelectionConfig::default());
    let json = serde_json::to_value(&desired.services[0][0]).unwrap();
    assert_eq!(json["address"], "192.0.2.10");
    assert_eq!(json["kind"], "load-balancer");
    assert_eq!(json["outcome"]["outcome"], "refused");
    assert_eq!(json["outcome"]["reason"], "outside_pools");
    assert_eq!(json["service"]["name"], "web");
}

/// Pools with the tenant rules switched the secure way (the defaults), for
/// the tests that play a tenant.
fn tenant_pools() -> Vec<PoolConfig> {
    vec![
        PoolConfig {
            name: "public".to_string(),
            cidrs: vec!["203.0.113.0/24".parse().unwrap()],
            ..PoolConfig::default()
        },
        PoolConfig {
            name: "shop-only".to_string(),
            cidrs: vec!["198.51.100.0/25".parse().unwrap()],
            namespaces: vec!["shop".to_string()],
            ..PoolConfig::default()
        },
        PoolConfig {
            name: "labelled".to_string(),
            cidrs: vec!["198.51.100.128/25".parse().unwrap()],
            service_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("tier".to_string(), "edge".to_string())])),
                ..LabelSelector::default()
            }),
            allow_external_ips: true,
            allow_path_attributes: true,
            ..PoolConfig::default()
        },
    ]
}

/// (address, service name, outcome code or "Announced") for every decision.
fn outcomes(desired: &Desired) -> Vec<(String, String, String)> {
    desired
        .decisions()
        .filter(|d| d.kind != AddressKind::Cluster)
        .map(|d| {
            let code = match &d.outcome {
                Outcome::Announced { .. } => "Announced".to_string(),
                Outcome::Refused(r) => r.code().to_string(),
            };
            (d.address.clone(), d.service.to_string(), code)
        })
        .collect()
}

fn tenant_evaluate(services: Vec<Svc>, selection: &SelectionConfig) -> Desired {
    let slices = services
        .iter()
        .map(|s| {
            let meta = &s.0.metadata;
            slice_in(
                meta.namespace.as_deref().unwrap(),
                meta.name.as_deref().unwrap(),
                "IPv4",
                &[READY_HERE],
            )
        })
        .collect();
    evaluate(
        &snapshot(services, slices, node(&[])),
        &tenant_pools(),
        selection,
    )
}

#[test]
fn an_external_ip_naming_another_tenants_address_is_refused_by_default() {
    // Tenant A's LoadBalancer address; tenant B copies it into externalIPs
    // and asks for external addresses by annotation.
    let a = svc("web")
        .namespace("a")
        .created("2026-01-01T00:00:00Z")
        .advertised()
        .ingress(&["203.0.113.10"]);
    let b = svc("steal")
        .namespace("b")
        .created("2025-01-01T00:00:00Z")
        .advertised()
        .annotate(annotations::ADDRESS_KINDS, "external")
        .external(&["203.0.113.10"]);
    let desired = tenant_evaluate(vec![a, b], &SelectionConfig::default());
    assert_eq!(
        outcomes(&desired),
        vec![
            ("203.0.113.10".into(), "a/web".into(), "Announced".into()),
            (
                "203.0.113.10".into(),
                "b/steal".into(),
                "ExternalIPNotAllowed".into()
            ),
        ]
    );
    assert_eq!(desired.announcements.len(), 1);
}

#[test]
fn external_ips_are_not_considered_unless_asked_for() {
    let b = svc("steal")
        .namespace("b")
        .advertised()
        .external(&["203.0.113.10"]);
    let desired = tenant_evaluate(vec![b], &SelectionConfig::default());
    assert_eq!(
        outcomes(&desired),
        vec![(
            "203.0.113.10".into(),
            "b/steal".into(),
            "AddressKindNotRequested".into()
        )]
    );
}

#[test]
fn the_oldest_service_owns_an_address_and_shares_it_only_in_its_namespace_by_key() {
    let owner = svc("web")
        .namespace("shop")
        .created("2026-01-01T00:00:00Z")
        .advertised()
        .annotate(annotations::ALLOW_SHARED_IP, "k")
        .ingress(&["203.0.113.10"]);
    let sibling = svc("web-udp")
        .namespace("shop")
        .created("2026-03-01T00:00:00Z")
        .advertised()
        .annotate(annotations::ALLOW_SHARED_IP, "k")
        .ingress(&["203.0.113.10"]);
    let other_key = svc("other")
        .namespace("shop")
        .created("2026-03-01T00:00:00Z")
        .advertised()
        .annotate(annotations::ALLOW_SHARED_IP, "x")
        .ingress(&["203.0.113.10"]);
    let other_ns = svc("web")
        .namespace("tenant-b")
        .created("2026-03-01T00:00:00Z")
        .advertised()
        .annotate(annotations::ALLOW_SHARED_IP, "k")
        .ingress(&["203.0.113.10"]);
    let no_time = svc("z")
        .namespace("shop")
        .advertised()
        .annotate(annotations::ALLOW_SHARED_IP, "k")
        .ingress(&["203.0.113.10"]);
    let desired = tenant_evaluate(
        vec![owner, sibling, other_key, other_ns, no_time],
        &SelectionConfig::default(),
    );
    assert_eq!(
        outcomes(&desired),
        vec![
            (
                "203.0.113.10".into(),
                "shop/other".into(),
                "AddressInUse".into()
            ),
            ("203.0.113.10".into(), "shop/web".into(), "Announced".into()),
            (
                "203.0.113.10".into(),
                "shop/web-udp".into(),
                "Announced".into()
            ),
            ("203.0.113.10".into(), "shop/z".into(), "Announced".into()),
            (
                "203.0.113.10".into(),
                "tenant-b/web".into(),
                "AddressInUse".into()
            ),
        ]
    );
    let refused = desired
        .refusals()
        .find(|(d, _)| d.service.namespace == "tenant-b")
        .unwrap()
        .1;
    assert_eq!(
        refused,
        &Refusal::AddressInUse {
            owner: "shop/web".into()
        }
    );
    // Without a key, not even the same namespace shares.
    let first = svc("a")
        .namespace("shop")
        .created("2026-01-01T00:00:00Z")
        .advertised()
        .ingress(&["203.0.113.10"]);
    let second = svc("b")
        .namespace("shop")
        .created("2026-01-02T00:00:00Z")
        .advertised()
        .ingress(&["203.0.113.10"]);
    let desired = tenant_evaluate(vec![second, first], &SelectionConfig::default());
    assert_eq!(
        outcomes(&desired),
        vec![
            ("203.0.113.10".into(), "shop/a".into(), "Announced".into()),
            (
                "203.0.113.10".into(),
                "shop/b".into(),
                "AddressInUse".into()
            ),
        ]
    );
}

#[test]
fn ownership_does_not_move_when_the_owner_has_no_ready_endpoint_here() {
    // The owner's pods are elsewhere (Local policy): this node announces the
    // address for nobody, rather than for the newer claimant.
    let owner = svc("web")
        .namespace("a")
        .created("2026-01-01T00:00:00Z")
        .advertised()
        .local()
        .ingress(&["203.0.113.10"]);
    let thief = svc("web")
        .namespace("b")
        .created("2026-02-01T00:00:00Z")
        .advertised()
        .ingress(&["203.0.113.10"]);
    let slices = vec![
        slice_in("a", "web", "IPv4", &[READY_THERE]),
        slice_in("b", "web", "IPv4", &[READY_HERE]),
    ];
    let desired = evaluate(
        &snapshot(vec![owner, thief], slices, node(&[])),
        &tenant_pools(),
        &SelectionConfig::default(),
    );
    assert!(desired.announcements.is_empty());
    assert_eq!(
        outcomes(&desired),
        vec![
            (
                "203.0.113.10".into(),
                "a/web".into(),
                "NoReadyLocalEndpoint".into()
            ),
            ("203.0.113.10".into(), "b/web".into(), "AddressInUse".into()),
        ]
    );
}

#[test]
fn pools_limit_namespaces_services_external_ips_and_path_attributes() {
    let selection =
        with(|s| s.address_kinds = [AddressKind::LoadBalancer, AddressKind::External].into());
    let desired = tenant_evaluate(
        vec![
            svc("in")
                .namespace("shop")
                .advertised()
                .ingress(&["198.51.100.10"]),
            svc("out")
                .namespace("other")
                .advertised()
                .ingress(&["198.51.100.11"]),
            svc("edge")
                .namespace("x")
                .label("tier", "edge")
                .advertised()
                .annotate(annotations::LOCAL_PREF, "200")
                .external(&["198.51.100.200"]),
            svc("plain")
                .namespace("x")
                .advertised()
                .ingress(&["198.51.100.201"]),
            svc("ext")
                .namespace("x")
                .advertised()
                .external(&["203.0.113.20"]),
            svc("pref")
                .namespace("x")
                .advertised()
                .annotate(annotations::LOCAL_PREF, "200")
                .ingress(&["203.0.113.21"]),
            svc("med")
                .namespace("x")
                .advertised()
                .annotate(annotations::MED, "5")
                .ingress(&["203.0.113.22"]),
        ],
        &selection,
    );
    assert_eq!(
        outcomes(&desired),
        vec![
            (
                "198.51.100.11".into(),
                "other/out".into(),
                "PoolNamespaceNotPermitted".into()
            ),
            ("198.51.100.10".into(), "shop/in".into(), "Announced".into()),
            ("198.51.100.200".into(), "x/edge".into(), "Announced".into()),
            (
                "203.0.113.20".into(),
                "x/ext".into(),
                "ExternalIPNotAllowed".into()
            ),
            (
                "203.0.113.22".into(),
                "x/med".into(),
                "PathAttributesNotAllowed".into()
            ),
            (
                "198.51.100.201".into(),
                "x/plain".into(),
                "PoolServiceNotSelected".into()
            ),
            (
                "203.0.113.21".into(),
                "x/pref".into(),
                "PathAttributesNotAllowed".into()
            ),
        ]
    );
    let edge = desired
        .announcements
        .iter()
        .find(|a| a.address.to_string() == "198.51.100.200")
        .unwrap();
    assert_eq!(edge.attributes.local_pref, Some(200));
}

#[test]
fn a_service_gets_at_most_max_addresses_per_service() {
    let selection = with(|s| s.max_addresses_per_service = 2);
    let desired = tenant_evaluate(
        vec![svc("many").advertised().ingress(&[
            "203.0.113.1",
            "203.0.113.2",
            "203.0.113.2",
            "203.0.113.3",
            "192.0.2.1",
        ])],
        &selection,
    );
    assert_eq!(
        outcomes(&desired),
        vec![
            (
                "203.0.113.1".into(),
                "default/many".into(),
                "Announced".into()
            ),
            (
                "203.0.113.2".into(),
                "default/many".into(),
                "Announced".into()
            ),
            (
                "203.0.113.2".into(),
                "default/many".into(),
                "Announced".into()
            ),
            (
                "203.0.113.3".into(),
                "default/many".into(),
                "TooManyAddresses".into()
            ),
            (
                "192.0.2.1".into(),
                "default/many".into(),
                "OutsidePools".into()
            ),
        ]
    );
    // The default is 8.
    let nine: Vec<String> = (1..=9).map(|i| format!("203.0.113.{i}")).collect();
    let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
    let desired = tenant_evaluate(
        vec![svc("nine").advertised().ingress(&nine)],
        &SelectionConfig::default(),
    );
    assert_eq!(desired.announcements.len(), 8);
    let refused: Vec<&str> = desired
        .refusals()
        .filter(|(d, _)| d.kind == AddressKind::LoadBalancer)
        .map(|(_, r)| r.code())
        .collect();
    assert_eq!(refused, ["TooManyAddresses"]);
}

#[test]
fn a_namespace_selector_admits_namespaces_by_their_labels() {
    let pools = vec![PoolConfig {
        name: "trusted".to_string(),
        cidrs: vec!["203.0.113.0/24".parse().unwrap()],
        namespaces: vec!["shop".to_string()],
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "tier".to_string(),
                "trusted".to_string(),
            )])),
            ..LabelSelector::default()
        }),
        ..PoolConfig::default()
    }];
    let services = vec![
        svc("listed")
            .namespace("shop")
            .advertised()
            .ingress(&["203.0.113.1"]),
        svc("labelled")
            .namespace("trusted-ns")
            .advertised()
            .ingress(&["203.0.113.2"]),
        svc("neither")
            .namespace("other")
            .advertised()
            .ingress(&["203.0.113.3"]),
    ];
    let selection = with(|s| s.cluster_policy_requires_ready_endpoint = false);
    let desired = evaluate(&snapshot(services, vec![], node(&[])), &pools, &selection);
    assert_eq!(
        outcomes(&desired),
        vec![
            (
                "203.0.113.3".into(),
                "other/neither".into(),
                "PoolNamespaceNotPermitted".into()
            ),
            (
                "203.0.113.1".into(),
                "shop/listed".into(),
                "Announced".into()
            ),
            (
                "203.0.113.2".into(),
                "trusted-ns/labelled".into(),
                "Announced".into()
            ),
        ]
    );
}

/// The pools above with weighted ECMP on `public` (and the non-transitive
/// encoding when asked), `internal` left unweighted.
fn weighted_pools(transitive: Option<bool>) -> Vec<PoolConfig> {
    let mut pools = pools();
    pools[0].weighted_ecmp = true;
    pools[0].link_bandwidth_transitive = transitive;
    pools
}

fn annotated_node(weight: &str) -> Node {
    let mut node = node(&[]);
    node.metadata.annotations = Some(BTreeMap::from([(
        NODE_WEIGHT_ANNOTATION.to_string(),
        weight.to_string(),
    )]));
    node
}

/// The link bandwidth each announced address carries.
fn bandwidths(desired: &Desired) -> BTreeMap<String, Option<LinkBandwidth>> {
    desired
        .announcements
        .iter()
        .map(|a| (a.address.to_string(), a.attributes.link_bandwidth))
        .collect()
}

#[test]
fn weighted_ecmp_rules() {
    let local = |name: &str| svc(name).advertised().local().ingress(&["203.0.113.10"]);
    let cluster = || svc("web").advertised().ingress(&["203.0.113.10"]);
    let shared = |name: &str| local(name).annotate(annotations::ALLOW_SHARED_IP, "k");
    let lb = |units: u32| Some(LinkBandwidth::new(64601, units * WEIGHT_UNIT, true));
    struct Row {
        name: &'static str,
        services: Vec<Svc>,
        slices: Vec<EndpointSlice>,
        node: Node,
        pools: Vec<PoolConfig>,
        selection: SelectionConfig,
        expect: Vec<(&'static str, Option<LinkBandwidth>)>,
        node_weight_problem: bool,
    }
    let selection = |f: fn(&mut SelectionConfig)| {
        with(|s| {
            s.local_as = 64601;
            f(s)
        })
    };
    let row = |name| Row {
        name,
        services: vec![],
        slices: vec![],
        node: node(&[]),
        pools: weighted_pools(None),
        selection: selection(|_| {}),
        expect: vec![],
        node_weight_problem: false,
    };
    let rows = vec![
        Row {
            services: vec![local("web")],
            slices: vec![slice(
                "web",
                &[READY_HERE, READY_HERE, READY_THERE, NOT_READY_HERE],
            )],
            expect: vec![("203.0.113.10", lb(2))],
            ..row("Local: the weight is the number of ready endpoints on this node")
        },
        Row {
            services: vec![local("web")],
            slices: vec![
                slice("web", &[READY_HERE]),
                slice_in("default", "web", "IPv4", &[READY_HERE, READY_HERE]),
            ],
            expect: vec![("203.0.113.10", lb(3))],
            ..row("Local: endpoints of every slice of the family count")
        },
        Row {
            services: vec![local("web")],
            slices: vec![slice(
                "web",
                &[DRAINING_HERE, DRAINING_HERE, DRAINING_THERE],
            )],
            expect: vec![("203.0.113.10", lb(2))],
            ..row("Local: serving terminating endpoints count while they alone hold the address")
        },
        Row {
            services: vec![local("web")],
            slices: vec![slice("web", &[READY_HERE, DRAINING_HERE, DRAINING_HERE])],
            expect: vec![("203.0.113.10", lb(1))],
            ..row("Local: with a ready endpoint here, terminating ones do not count")
        },
        Row {
            services: vec![local("web")],
            slices: vec![slice("web", &[READY_THERE, READY_THERE])],
            expect: vec![],
            ..row("Local: no local endpoint, no announcement (and so no weight)")
        },
        Row {
            services: vec![cluster()],
            slices: vec![slice("web", &[READY_THERE, READY_THERE, READY_THERE])],
            expect: vec![("203.0.113.10", lb(1))],
            ..row("Cluster: the node weight, by default 1, whatever the endpoints")
        },
        Row {
            services: vec![cluster()],
            slices: vec![slice("web", &[READY_THERE])],
            selection: selection(|s| s.node_weight = 5),
            expect: vec![("203.0.113.10", lb(5))],
            ..row("Cluster: kubernetes.node_weight")
        },
        Row {
            services: vec![cluster()],
            slices: vec![slice("web", &[READY_THERE])],
            node: annotated_node(" 7 "),
            selection: selection(|s| s.node_weight = 5),
            expect: vec![("203.0.113.10", lb(7))],
            ..row("Cluster: the Node annotation overrides the config")
        },
        Row {
            services: vec![cluster()],
            slices: vec![slice("web", &[READY_THERE])],
            node: annotated_node("0"),
            selection: selection(|s| s.node_weight = 5),
            expect: vec![("203.0.113.10", lb(5))],
            node_weight_problem: true,
            ..row("Cluster: an annotation of 0 keeps the config's weight and says why")
        },
        Row {
            services: vec![cluster()],
            slices: vec![slice("web", &[READY_THERE])],
            node: annotated_node("1001"),
            expect: vec![("203.0.113.10", lb(1))],
            node_weight_problem: true,
            ..row("Cluster: an annotation over the maximum keeps the config's weight")
        },
        Row {
            services: vec![cluster()],
            slices: vec![slice("web", &[READY_THERE])],
            node: annotated_node("2.5"),
            expect: vec![("203.0.113.10", lb(1))],
            node_weight_problem: true,
            ..row("Cluster: a fraction is not a weight")
        },
        Row {
            services: vec![
                local("web")
                    .ingress(&["203.0.113.10", "2001:db8:ffff::10"])
                    .annotate(annotations::ADDRESS_KINDS, "load-balancer"),
            ],
            slices: vec![
                slice("web", &[READY_HERE, READY_HERE]),
                slice6("web", &[READY_HERE, READY_THERE]),
            ],
            expect: vec![("203.0.113.10", lb(2)), ("2001:db8:ffff::10", lb(1))],
            ..row("Local, dual stack: each family counts its own endpoints")
        },
        Row {
            services: vec![shared("a"), shared("b")],
            slices: vec![
                slice("a", &[READY_HERE, READY_HERE]),
                slice("b", &[READY_HERE, READY_THERE]),
            ],
            expect: vec![("203.0.113.10", lb(3))],
            ..row("a shared address carries the sum of its Services' weights")
        },
        Row {
            services: vec![shared("a"), shared("b")],
            slices: vec![slice("a", &[READY_THERE]), slice("b", &[READY_HERE])],
            expect: vec![("203.0.113.10", lb(1))],
            ..row("a sharing Service that announces nothing here adds nothing")
        },
        Row {
            services: vec![svc("web").advertised().local().ingress(&["198.51.100.10"])],
            slices: vec![slice("web", &[READY_HERE, READY_HERE])],
            expect: vec![("198.51.100.10", None)],
            ..row("a pool without weighted_ecmp sends no link bandwidth")
        },
        Row {
            services: vec![local("web")],
            slices: vec![slice("web", &[READY_HERE])],
            pools: weighted_pools(Some(false)),
            expect: vec![(
                "203.0.113.10",
                Some(LinkBandwidth::new(64601, WEIGHT_UNIT, false)),
            )],
            ..row("link_bandwidth_transitive: false sends the non-transitive form")
        },
        Row {
            services: vec![local("web")],
            slices: vec![slice("web", &[READY_HERE])],
            selection: selection(|s| s.local_as = 4_200_000_000),
            expect: vec![(
                "203.0.113.10",
                Some(LinkBandwidth {
                    transitive: true,
                    asn: LinkBandwidth::AS_TRANS,
                    bytes_per_second: WEIGHT_UNIT,
                }),
            )],
            ..row("a four-octet local AS is carried as AS_TRANS")
        },
        Row {
            services: vec![local("web")],
            slices: vec![slice("web", &[READY_HERE; 5000])],
            expect: vec![(
                "203.0.113.10",
                Some(LinkBandwidth::new(64601, u32::MAX, true)),
            )],
            ..row("a weight beyond 32 bits of bytes/s saturates")
        },
    ];
    for r in rows {
        let desired = evaluate(
            &snapshot(r.services, r.slices, r.node),
            &r.pools,
            &r.selection,
        );
        let expect: BTreeMap<String, Option<LinkBandwidth>> = r
            .expect
            .into_iter()
            .map(|(a, b)| (a.parse::<IpAddr>().unwrap().to_string(), b))
            .collect();
        assert_eq!(bandwidths(&desired), expect, "{}", r.name);
        assert_eq!(
            desired.node_weight_problem.is_some(),
            r.node_weight_problem,
            "{}: {:?}",
            r.name,
            desired.node_weight_problem
        );
    }
}

#[test]
fn an_invalid_node_weight_annotation_is_named_with_its_value_and_the_fallback() {
    let selection = with(|s| s.node_weight = 4);
    let (weight, problem) = node_weight(&annotated_node("heavy"), &selection);
    assert_eq!(weight, 4);
    assert_eq!(
        problem.as_deref(),
        Some(
            "annotation herald.dev/node-weight: \"heavy\" is not a whole number from 1 to 1000; \
             using kubernetes.node_weight (4)"
        )
    );
    let long = "9".repeat(10_000);
    let (_, problem) = node_weight(&annotated_node(&long), &selection);
    assert!(problem.unwrap().len() < 200, "the value is cut short");
    assert_eq!(node_weight(&node(&[]), &selection), (4, None));
}
