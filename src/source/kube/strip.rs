//! Shrinks objects to what the policy reads before they enter the stores, so
//! herald's memory stays small with tens of thousands of Services.
//!
//! Owns: the choice of fields kept. Must not touch: the decision itself; every
//! function here must leave the policy's answer unchanged (tested below).
//!
//! Kept:
//! - Service: name, namespace, uid (for Events), creationTimestamp (the
//!   oldest claimant owns an address), labels (for the service selectors), the `herald.dev/*` annotations, `spec.type`,
//!   `spec.loadBalancerClass` (herald's own class is selected), `clusterIP(s)`,
//!   `externalIPs`, both traffic policies, and `status.loadBalancer.ingress[]`
//!   `ip`/`hostname`. Dropped: managedFields, `last-applied-configuration`
//!   and every other annotation, ports, selectors, conditions, and the
//!   resourceVersion (the watcher reads it before stripping; the stores and
//!   the policy never do).
//! - EndpointSlice: namespace, name, the `kubernetes.io/service-name` label,
//!   `addressType`, and of the endpoints only `conditions`, and `nodeName`
//!   when it is this node: every endpoint on this node, and one ready
//!   endpoint elsewhere (the policy only asks whether one exists, not where).
//!   The uid, resourceVersion, addresses, ports, hints, zones and target
//!   references go.
//! - Namespace: name and labels.
//! - Node: name, labels, `status.addresses` (a service address that is
//!   one of the node's own is refused) and the `herald.dev/node-weight`
//!   annotation (weighted ECMP).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Namespace, Node, NodeStatus, Service, ServiceSpec,
    ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::policy::annotations;
use crate::policy::endpoints::SERVICE_NAME_LABEL;

fn slim_metadata(meta: &mut ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        ..ObjectMeta::default()
    }
}

/// Keeps what the policy reads of a Service.
pub fn service(service: &mut Service) {
    let mut meta = slim_metadata(&mut service.metadata);
    meta.uid = service.metadata.uid.take();
    // The oldest Service claiming an address owns it.
    meta.creation_timestamp = service.metadata.creation_timestamp.take();
    meta.labels = service.metadata.labels.take().filter(|l| !l.is_empty());
    meta.annotations = service
        .metadata
        .annotations
        .take()
        .map(|all| {
            all.into_iter()
                .filter(|(key, _)| annotations::ALL.contains(&key.as_str()))
                .collect::<BTreeMap<_, _>>()
        })
        .filter(|kept| !kept.is_empty());
    service.metadata = meta;
    service.spec = service.spec.take().map(|spec| ServiceSpec {
        type_: spec.type_,
        // herald's own class selects the Service (allocation).
        load_balancer_class: spec.load_balancer_class,
        cluster_ip: spec.cluster_ip,
        cluster_ips: spec.cluster_ips,
        external_ips: spec.external_ips,
        external_traffic_policy: spec.external_traffic_policy,
        internal_traffic_policy: spec.internal_traffic_policy,
        ..ServiceSpec::default()
    });
    service.status = service.status.take().and_then(|status| {
        let ingress: Vec<LoadBalancerIngress> = status
            .load_balancer?
            .ingress?
            .into_iter()
            .map(|i| LoadBalancerIngress {
                ip: i.ip,
                hostname: i.hostname,
                ..LoadBalancerIngress::default()
            })
            .collect();
        Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(ingress),
            }),
            conditions: None,
        })
    });
}

/// Keeps what the policy reads of an EndpointSlice, seen from `node`.
pub fn endpoint_slice(slice: &mut EndpointSlice, node: &str) {
    let mut meta = slim_metadata(&mut slice.metadata);
    meta.labels = slice
        .metadata
        .labels
        .take()
        .and_then(|mut l| l.remove_entry(SERVICE_NAME_LABEL))
        .map(|(k, v)| BTreeMap::from([(k, v)]));
    slice.metadata = meta;
    slice.ports = None;
    let mut kept_ready_elsewhere = false;
    let endpoints = std::mem::take(&mut slice.endpoints);
    slice.endpoints = endpoints
        .into_iter()
        .filter(|endpoint| {
            if endpoint.node_name.as_deref() == Some(node) {
                return true;
            }
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if ready && !kept_ready_elsewhere {
                kept_ready_elsewhere = true;
                return true;
            }
            false
        })
        .map(|endpoint| Endpoint {
            node_name: endpoint.node_name.filter(|name| name == node),
            conditions: endpoint.conditions,
            ..Endpoint::default()
        })
        .collect();
}

/// Keeps the name and labels of a Namespace.
pub fn namespace(namespace: &mut Namespace) {
    let mut meta = slim_metadata(&mut namespace.metadata);
    meta.labels = namespace.metadata.labels.take();
    *namespace = Namespace {
        metadata: meta,
        ..Namespace::default()
    };
}

/// Keeps the name, labels, addresses and weight annotation of this Node.
pub fn node(node: &mut Node) {
    let mut meta = slim_metadata(&mut node.metadata);
    meta.labels = node.metadata.labels.take();
    meta.annotations = node
        .metadata
        .annotations
        .take()
        .and_then(|mut all| all.remove_entry(crate::policy::NODE_WEIGHT_ANNOTATION))
        .map(|(key, value)| [(key, value)].into_iter().collect());
    let addresses = node
        .status
        .take()
        .and_then(|status| status.addresses)
        .filter(|addresses| !addresses.is_empty());
    *node = Node {
        metadata: meta,
        status: addresses.map(|addresses| NodeStatus {
            addresses: Some(addresses),
            ..NodeStatus::default()
        }),
        ..Node::default()
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::endpoints::{EndpointIndex, Family};
    use k8s_openapi::api::discovery::v1::EndpointConditions;

    const NODE: &str = "node-a";

    fn json_size<T: serde::Serialize>(value: &T) -> usize {
        serde_json::to_vec(value).unwrap().len()
    }

    fn fat_service() -> Service {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "42",
                "creationTimestamp": "2026-01-02T03:04:05Z",
                "generation": 3,
                "labels": {"app": "web"},
                "annotations": {
                    "herald.dev/advertise": "true",
                    "herald.dev/med": "7",
                    "kubectl.kubernetes.io/last-applied-configuration": "x".repeat(2000),
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply",
                                   "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": {
                "type": "LoadBalancer", "clusterIP": "198.51.100.1",
                "clusterIPs": ["198.51.100.1", "2001:db8::1"],
                "externalIPs": ["203.0.113.11"],
                "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Cluster",
                "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
                "selector": {"app": "web"}, "sessionAffinity": "None",
            },
            "status": {"loadBalancer": {"ingress": [
                {"ip": "203.0.113.10", "ipMode": "VIP", "ports": [{"port": 80, "protocol": "TCP"}]},
                {"hostname": "lb.example.com"},
            ]}, "conditions": []},
        }))
        .unwrap()
    }

    #[test]
    fn a_stripped_service_keeps_every_field_the_policy_reads() {
        let mut s = fat_service();
        let before = json_size(&s);
        service(&mut s);
        let meta = &s.metadata;
        assert_eq!(meta.name.as_deref(), Some("web"));
        assert_eq!(meta.namespace.as_deref(), Some("shop"));
        assert_eq!(meta.uid.as_deref(), Some("u-1"));
        assert_eq!(
            meta.creation_timestamp.as_ref().unwrap().0.to_string(),
            "2026-01-02T03:04:05Z"
        );
        assert!(meta.resource_version.is_none());
        assert_eq!(meta.labels.as_ref().unwrap()["app"], "web");
        let kept: Vec<&String> = meta.annotations.as_ref().unwrap().keys().collect();
        assert_eq!(kept, ["herald.dev/advertise", "herald.dev/med"]);
        assert!(meta.managed_fields.is_none());
        assert!(meta.generation.is_none());
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.cluster_ips.as_ref().unwrap().len(), 2);
        assert_eq!(spec.external_ips.as_ref().unwrap()[0], "203.0.113.11");
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
        assert!(spec.ports.is_none() && spec.selector.is_none());
        let ingress = s.status.as_ref().unwrap().load_balancer.as_ref().unwrap();
        let ingress = ingress.ingress.as_ref().unwrap();
        assert_eq!(ingress[0].ip.as_deref(), Some("203.0.113.10"));
        assert!(ingress[0].ports.is_none());
        assert_eq!(ingress[1].hostname.as_deref(), Some("lb.example.com"));
        let after = json_size(&s);
        assert!(after * 4 < before, "{before} -> {after} bytes");
    }

    #[test]
    fn a_service_without_status_or_annotations_strips_cleanly() {
        let mut s = Service::default();
        service(&mut s);
        assert_eq!(s, Service::default());
    }

    fn endpoint(
        node: &str,
        ready: Option<bool>,
        serving: Option<bool>,
        terminating: Option<bool>,
    ) -> Endpoint {
        Endpoint {
            addresses: vec!["10.1.2.3".to_string()],
            node_name: Some(node.to_string()),
            hostname: Some("pod".to_string()),
            zone: Some("z1".to_string()),
            conditions: Some(EndpointConditions {
                ready,
                serving,
                terminating,
            }),
            ..Endpoint::default()
        }
    }

    fn slice_of(endpoints: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some("web-abc".to_string()),
                namespace: Some("shop".to_string()),
                labels: Some(BTreeMap::from([
                    (SERVICE_NAME_LABEL.to_string(), "web".to_string()),
                    (
                        "endpointslice.kubernetes.io/managed-by".to_string(),
                        "x".to_string(),
                    ),
                ])),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".to_string(),
            endpoints,
            ports: None,
        }
    }

    #[test]
    fn stripping_a_slice_never_changes_what_the_policy_sees() {
        // Every combination of up to four endpoints over three nodes and the
        // interesting condition triples.
        let conditions = [
            (Some(true), Some(true), Some(false)),
            (Some(false), Some(false), Some(false)),
            (Some(false), Some(true), Some(true)),
            (Some(false), Some(false), Some(true)),
            (None, None, None),
        ];
        let nodes = [NODE, "node-b", "node-c"];
        let choices: Vec<(usize, usize)> = (0..nodes.len())
            .flat_map(|n| (0..conditions.len()).map(move |c| (n, c)))
            .collect();
        let mut checked = 0;
        for a in &choices {
            for b in &choices {
                for c in &choices {
                    let endpoints: Vec<Endpoint> = [a, b, c]
                        .iter()
                        .map(|(n, k)| {
                            let (r, s, t) = conditions[*k];
                            endpoint(nodes[*n], r, s, t)
                        })
                        .collect();
                    let original = slice_of(endpoints);
                    let mut stripped = original.clone();
                    endpoint_slice(&mut stripped, NODE);
                    let want =
                        EndpointIndex::build([&original], NODE).summary("shop", "web", Family::V4);
                    let got =
                        EndpointIndex::build([&stripped], NODE).summary("shop", "web", Family::V4);
                    assert_eq!(got, want, "{original:?}");
                    assert!(stripped.endpoints.iter().all(|e| e.addresses.is_empty()));
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 15 * 15 * 15);
    }

    #[test]
    fn a_big_remote_slice_shrinks_to_one_endpoint() {
        let endpoints = (0..100)
            .map(|_| endpoint("node-b", Some(true), Some(true), Some(false)))
            .collect();
        let mut slice = slice_of(endpoints);
        endpoint_slice(&mut slice, NODE);
        assert_eq!(slice.endpoints.len(), 1);
        assert_eq!(slice.metadata.labels.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn a_stripped_node_keeps_its_name_labels_and_addresses_only() {
        let mut n: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": NODE, "labels": {"a": "b"}, "managedFields": [{"manager": "kubelet"}],
                         "annotations": {"herald.dev/node-weight": "3", "other": "x".repeat(500)}},
            "spec": {"podCIDR": "10.0.0.0/24"},
            "status": {"images": [{"names": ["x".repeat(500)], "sizeBytes": 1}],
                       "addresses": [{"type": "InternalIP", "address": "192.0.2.11"}]},
        }))
        .unwrap();
        node(&mut n);
        assert_eq!(n.metadata.name.as_deref(), Some(NODE));
        assert_eq!(n.metadata.labels.as_ref().unwrap()["a"], "b");
        assert!(n.spec.is_none() && n.metadata.managed_fields.is_none());
        let annotations = n.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations.len(), 1);
        assert_eq!(annotations["herald.dev/node-weight"], "3");
        let status = n.status.as_ref().unwrap();
        assert!(status.images.is_none());
        assert_eq!(status.addresses.as_ref().unwrap()[0].address, "192.0.2.11");
        let mut bare: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": NODE}, "status": {"phase": "Running"}}))
        .unwrap();
        node(&mut bare);
        assert!(bare.status.is_none());
    }
}
