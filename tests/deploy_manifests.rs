//! deploy/ as a cluster operator uses it: every kustomization renders with
//! `kubectl kustomize`; every object is a valid Kubernetes object (it
//! round-trips through the k8s-openapi types without losing a field, so a
//! misspelt field fails; the ServiceMonitor, which k8s-openapi does not know,
//! is checked field by field); the ConfigMap's config passes `herald
//! check-config`; the DaemonSet keeps the promises of the deployment issue;
//! deploy/herald.yaml is the current rendering of deploy/base; and every
//! kustomization passes the real kube-apiserver's schema and admission
//! (`kubectl apply -k --dry-run=server`), then applies for real, in a lab
//! namespace (the ServiceMonitor against the Prometheus Operator's own CRD).
//!
//! kubectl is the one scripts/kube-bins builds with the API server (same
//! release); the tests that need the API server are lab tests (root).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use herald::config::Config;
use herald_testnet::cluster::{Cluster, KubeBins};
use herald_testnet::lab_or_skip;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// Every kustomization a user applies, relative to deploy/.
const KUSTOMIZATIONS: [&str; 4] = [
    "base",
    "overlays/prometheus",
    "overlays/prometheus-annotations",
    "overlays/dual-stack",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The kubectl scripts/kube-bins builds (the API server's release).
fn kubectl() -> Option<&'static str> {
    let bins = KubeBins::get().expect("scripts/kube-bins (kube-apiserver, etcd, kubectl)");
    Some(bins.kubectl.to_str().expect("a UTF-8 path"))
}

/// `kubectl kustomize deploy/<dir>` as text.
fn render_text(kubectl: &str, dir: &str) -> String {
    let output = Command::new(kubectl)
        .arg("kustomize")
        .arg(root().join("deploy").join(dir))
        .output()
        .expect("run kubectl kustomize");
    assert!(
        output.status.success(),
        "kubectl kustomize deploy/{dir} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 manifest")
}

/// Every YAML document of a multi-document text, as JSON values.
fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("valid YAML document"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn render(kubectl: &str, dir: &str) -> Vec<Value> {
    let objects = documents(&render_text(kubectl, dir));
    assert!(!objects.is_empty(), "deploy/{dir} rendered nothing");
    objects
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among {} objects", objects.len()))
}

/// Deserializes `object` into `T` and back, and requires the same JSON: a
/// field k8s-openapi does not know (a typo, a wrong level) is dropped on the
/// way and shows up as a difference.
fn round_trip<T: DeserializeOwned + serde::Serialize>(object: &Value) -> T {
    let typed: T = serde_json::from_value(object.clone()).unwrap_or_else(|e| {
        panic!(
            "{} {} does not deserialize: {e}",
            object["kind"], object["metadata"]["name"]
        )
    });
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, object,
        "{} {} lost or changed fields through the k8s-openapi type",
        object["kind"], object["metadata"]["name"]
    );
    typed
}

/// The herald config inside the rendered ConfigMap.
fn config_text(objects: &[Value]) -> String {
    find(objects, "ConfigMap", "herald")["data"]["herald.yaml"]
        .as_str()
        .expect("the ConfigMap holds herald.yaml")
        .to_string()
}

fn container(daemonset: &DaemonSet) -> &Container {
    let pod = daemonset
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(pod.containers.len(), 1, "one container");
    &pod.containers[0]
}

#[test]
fn every_kustomization_renders_with_unique_objects() {
    let Some(kubectl) = kubectl() else { return };
    for dir in KUSTOMIZATIONS {
        let objects = render(kubectl, dir);
        let mut seen = BTreeSet::new();
        for object in &objects {
            let key = (
                object["kind"].to_string(),
                object["metadata"]["namespace"].to_string(),
                object["metadata"]["name"].to_string(),
            );
            assert!(seen.insert(key.clone()), "deploy/{dir}: {key:?} twice");
            assert_eq!(
                object["metadata"]["labels"]["app.kubernetes.io/name"], "herald",
                "deploy/{dir}: {key:?} lacks the app label"
            );
            if object["kind"] != "Namespace"
                && object["kind"] != "ClusterRole"
                && object["kind"] != "ClusterRoleBinding"
            {
                assert_eq!(
                    object["metadata"]["namespace"], "herald-system",
                    "deploy/{dir}: {key:?}"
                );
            }
        }
        for kind in [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "DaemonSet",
        ] {
            assert!(
                objects.iter().any(|o| o["kind"] == kind),
                "deploy/{dir} has no {kind}"
            );
        }
    }
}

#[test]
fn every_object_round_trips_through_the_kubernetes_types() {
    let Some(kubectl) = kubectl() else { return };
    let mut service_monitors = 0;
    for dir in KUSTOMIZATIONS {
        for object in render(kubectl, dir) {
            match object["kind"].as_str().unwrap() {
                "Namespace" => drop(round_trip::<Namespace>(&object)),
                "ServiceAccount" => drop(round_trip::<ServiceAccount>(&object)),
                "ClusterRole" => drop(round_trip::<ClusterRole>(&object)),
                "ClusterRoleBinding" => drop(round_trip::<ClusterRoleBinding>(&object)),
                "Role" => drop(round_trip::<Role>(&object)),
                "RoleBinding" => drop(round_trip::<RoleBinding>(&object)),
                "ConfigMap" => drop(round_trip::<ConfigMap>(&object)),
                "DaemonSet" => drop(round_trip::<DaemonSet>(&object)),
                "Service" => drop(round_trip::<Service>(&object)),
                "ServiceMonitor" => {
                    check_service_monitor_shape(&object);
                    service_monitors += 1;
                }
                other => panic!("deploy/{dir}: no check for kind {other}"),
            }
        }
    }
    assert_eq!(
        service_monitors, 1,
        "the prometheus overlay's ServiceMonitor"
    );
}

/// The ServiceMonitor against the Prometheus Operator's
/// monitoring.coreos.com/v1 schema, for the fields it uses: nothing else is
/// allowed, so a typo fails here as it would fail the operator's CRD
/// validation.
fn check_service_monitor_shape(object: &Value) {
    fn keys(value: &Value) -> BTreeSet<&str> {
        value
            .as_object()
            .unwrap_or_else(|| panic!("not a mapping: {value}"))
            .keys()
            .map(String::as_str)
            .collect()
    }
    fn within(value: &Value, allowed: &[&str], what: &str) {
        for key in keys(value) {
            assert!(
                allowed.contains(&key),
                "ServiceMonitor {what}.{key} is not in the schema"
            );
        }
    }
    assert_eq!(object["apiVersion"], "monitoring.coreos.com/v1");
    within(object, &["apiVersion", "kind", "metadata", "spec"], "");
    let spec = &object["spec"];
    within(
        spec,
        &["selector", "namespaceSelector", "endpoints", "jobLabel"],
        "spec",
    );
    within(
        &spec["selector"],
        &["matchLabels", "matchExpressions"],
        "spec.selector",
    );
    within(
        &spec["namespaceSelector"],
        &["matchNames", "any"],
        "spec.namespaceSelector",
    );
    let endpoints = spec["endpoints"]
        .as_array()
        .expect("spec.endpoints is a list");
    assert!(!endpoints.is_empty());
    for endpoint in endpoints {
        within(
            endpoint,
            &["port", "path", "interval", "scrapeTimeout", "relabelings"],
            "spec.endpoints[]",
        );
        assert!(
            endpoint["port"].is_string(),
            "endpoints[].port names a Service port"
        );
        for relabeling in endpoint["relabelings"].as_array().into_iter().flatten() {
            within(
                relabeling,
                &[
                    "sourceLabels",
                    "targetLabel",
                    "action",
                    "regex",
                    "replacement",
                ],
                "spec.endpoints[].relabelings[]",
            );
        }
    }
}

/// `herald check-config` on the config a rendered ConfigMap carries.
fn check_config(dir: &str, text: &str) -> Config {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("herald.yaml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(HERALD)
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run herald check-config");
    assert!(
        output.status.success(),
        "deploy/{dir}: herald check-config refuses the ConfigMap's config:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stderr.is_empty(),
        "deploy/{dir}: the example config has warnings:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Config::from_yaml(text).unwrap()
}

#[test]
fn every_configmap_passes_check_config_and_overlays_change_only_what_they_say() {
    let Some(kubectl) = kubectl() else { return };
    let base = check_config("base", &config_text(&render(kubectl, "base")));
    assert!(
        base.admin_listen.ip().is_loopback(),
        "base keeps /status on loopback"
    );
    for dir in ["overlays/prometheus", "overlays/prometheus-annotations"] {
        let config = check_config(dir, &config_text(&render(kubectl, dir)));
        assert!(
            config.admin_listen.ip().is_unspecified(),
            "{dir}: scrapeable"
        );
        let mut expected = base.clone();
        expected.admin_listen = config.admin_listen;
        assert_eq!(config, expected, "{dir} changes only admin_listen");
    }
    let dual = check_config(
        "overlays/dual-stack",
        &config_text(&render(kubectl, "overlays/dual-stack")),
    );
    let families: BTreeSet<bool> = dual
        .pools
        .iter()
        .flat_map(|p| p.cidrs.iter().map(|c| c.addr().is_ipv6()))
        .collect();
    assert_eq!(families.len(), 2, "dual-stack pools hold both families");
    assert!(
        dual.peers
            .iter()
            .any(|p| p.address.to_string().contains(':')),
        "dual-stack has IPv6 peers"
    );
}

#[test]
fn the_daemonset_keeps_the_deployment_promises() {
    let Some(kubectl) = kubectl() else { return };
    for dir in KUSTOMIZATIONS {
        let objects = render(kubectl, dir);
        let config = Config::from_yaml(&config_text(&objects)).unwrap();
        let ds: DaemonSet = round_trip(find(&objects, "DaemonSet", "herald"));
        let spec = ds.spec.as_ref().unwrap();
        let pod = spec.template.spec.as_ref().unwrap();
        let c = container(&ds);
        let what = format!("deploy/{dir}");

        assert_eq!(pod.host_network, Some(true), "{what}: hostNetwork");
        assert_eq!(
            pod.dns_policy.as_deref(),
            Some("ClusterFirstWithHostNet"),
            "{what}"
        );
        assert_eq!(
            pod.priority_class_name.as_deref(),
            Some("system-node-critical"),
            "{what}"
        );
        let tolerations = pod.tolerations.as_deref().unwrap_or_default();
        assert!(
            tolerations
                .iter()
                .any(|t| t.operator.as_deref() == Some("Exists")
                    && t.key.is_none()
                    && t.effect.is_none()),
            "{what}: a toleration of every taint"
        );

        // NODE_NAME from the downward API.
        let node_name = c
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "NODE_NAME")
            .unwrap_or_else(|| panic!("{what}: no NODE_NAME"));
        let field = node_name
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap();
        assert_eq!(field.field_path, "spec.nodeName", "{what}");

        // Capabilities instead of privileged; read-only root.
        let security = c.security_context.as_ref().unwrap();
        assert_ne!(security.privileged, Some(true), "{what}: not privileged");
        // Not root; the exec may gain the binary's file capabilities
        // (allowPrivilegeEscalation), bounded by `capabilities.add`.
        assert_eq!(security.run_as_non_root, Some(true), "{what}");
        assert_eq!(security.run_as_user, Some(65532), "{what}");
        assert_eq!(security.allow_privilege_escalation, Some(true), "{what}");
        assert_eq!(security.read_only_root_filesystem, Some(true), "{what}");
        let caps = security.capabilities.as_ref().unwrap();
        assert_eq!(
            caps.drop.as_deref(),
            Some(&["ALL".to_string()][..]),
            "{what}"
        );
        // What tests/agent/privileges.rs runs herald with as a non-root
        // user against FRR: NET_ADMIN (netlink), NET_BIND_SERVICE (the BGP
        // listener on 179), SYS_NICE (bfd::runtime::BFD_THREAD_NICE); no
        // NET_RAW.
        let added: BTreeSet<&str> = caps.add.iter().flatten().map(String::as_str).collect();
        let needed = BTreeSet::from(["NET_ADMIN", "NET_BIND_SERVICE", "SYS_NICE"]);
        assert_eq!(
            added, needed,
            "{what}: exactly the capabilities herald needs"
        );

        // The image is the release the manifests come from.
        assert_eq!(
            c.image.as_deref(),
            Some(format!("herald:{}", env!("CARGO_PKG_VERSION")).as_str()),
            "{what}: deploy/base/kustomization.yaml's image tag follows Cargo.toml's version"
        );

        // Probes on the admin endpoint, where the config says it listens.
        for (probe, path) in [
            (c.liveness_probe.as_ref(), "/livez"),
            (c.readiness_probe.as_ref(), "/readyz"),
        ] {
            let get = probe
                .and_then(|p| p.http_get.as_ref())
                .unwrap_or_else(|| panic!("{what}: no {path} probe"));
            assert_eq!(get.path.as_deref(), Some(path), "{what}");
            assert_eq!(
                get.port,
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i32::from(
                    config.admin_listen.port()
                )),
                "{what}: {path} on admin_listen's port"
            );
            let host: std::net::IpAddr = get.host.as_deref().unwrap().parse().unwrap();
            assert!(
                config.admin_listen.ip().is_unspecified() || config.admin_listen.ip() == host,
                "{what}: {path} probes {host}, herald listens on {}",
                config.admin_listen
            );
        }

        // The drain fits in the grace period, with time left to close sessions.
        let grace = Duration::from_secs(pod.termination_grace_period_seconds.unwrap() as u64);
        assert!(
            grace >= config.drain.gshut_wait + Duration::from_secs(10),
            "{what}: terminationGracePeriodSeconds {grace:?} vs gshut_wait {:?}",
            config.drain.gshut_wait
        );

        let strategy = spec.update_strategy.as_ref().unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"), "{what}");
        let rolling = strategy.rolling_update.as_ref().unwrap();
        assert_eq!(
            rolling.max_unavailable,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1)),
            "{what}"
        );

        // The args name the mounted ConfigMap key; the service account is bound.
        let args = c.args.as_deref().unwrap();
        assert_eq!(
            args[..2],
            ["run".to_string(), "--config".to_string()],
            "{what}"
        );
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| args[2].starts_with(&format!("{}/", m.mount_path)))
            .unwrap_or_else(|| panic!("{what}: {} is not on a mount", args[2]));
        assert!(
            mount.sub_path.is_none(),
            "{what}: a subPath mount never sees reloads"
        );
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .unwrap();
        assert_eq!(volume.config_map.as_ref().unwrap().name, "herald", "{what}");
        assert!(args[2].ends_with("/herald.yaml"), "{what}");

        // The admin socket: on a writable emptyDir (the root file system is
        // read-only), in a directory herald creates itself (0700) below the
        // mount, because an emptyDir's own directory is world-writable and
        // herald refuses that as the socket's directory.
        let socket = args
            .iter()
            .position(|a| a == "--admin-socket")
            .map_or(herald::admin::DEFAULT_ADMIN_SOCKET, |i| {
                args[i + 1].as_str()
            });
        let socket_dir = Path::new(socket).parent().unwrap();
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| socket_dir.starts_with(&m.mount_path))
            .unwrap_or_else(|| panic!("{what}: the admin socket {socket} is not on a volume"));
        assert_ne!(
            Path::new(&mount.mount_path),
            socket_dir,
            "{what}: mount the volume above the socket's directory, not on it"
        );
        assert_ne!(mount.read_only, Some(true), "{what}: {socket}");
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .unwrap();
        assert!(
            volume.empty_dir.is_some(),
            "{what}: the socket's volume is the pod's own (emptyDir), not the host's"
        );
        let sa = pod.service_account_name.as_deref().unwrap();
        let binding: ClusterRoleBinding =
            round_trip(find(&objects, "ClusterRoleBinding", "herald"));
        let subject = &binding.subjects.as_ref().unwrap()[0];
        assert_eq!(
            (
                subject.kind.as_str(),
                subject.name.as_str(),
                subject.namespace.as_deref()
            ),
            ("ServiceAccount", sa, Some("herald-system")),
            "{what}: the binding names the DaemonSet's service account"
        );
        find(&objects, "ServiceAccount", sa);

        // The pod template selects itself.
        let selector = spec.selector.match_labels.as_ref().unwrap();
        let labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        for (key, value) in selector {
            assert_eq!(labels.get(key), Some(value), "{what}: selector {key}");
        }
    }
}

#[test]
fn the_prometheus_overlays_point_scrapers_at_the_admin_port() {
    let Some(kubectl) = kubectl() else { return };
    let objects = render(kubectl, "overlays/prometheus");
    let config = Config::from_yaml(&config_text(&objects)).unwrap();
    let ds: DaemonSet = round_trip(find(&objects, "DaemonSet", "herald"));
    let port = container(&ds)
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .expect("a container port named metrics");
    assert_eq!(port.container_port, i32::from(config.admin_listen.port()));
    let service: Service = round_trip(find(&objects, "Service", "herald-metrics"));
    let service_spec = service.spec.as_ref().unwrap();
    assert_eq!(service_spec.cluster_ip.as_deref(), Some("None"), "headless");
    let pod_labels = ds
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    for (key, value) in service_spec.selector.as_ref().unwrap() {
        assert_eq!(
            pod_labels.get(key),
            Some(value),
            "the Service selects herald's pods"
        );
    }
    let service_port = &service_spec.ports.as_ref().unwrap()[0];
    assert_eq!(
        service_port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("metrics".into()))
    );
    let monitor = find(&objects, "ServiceMonitor", "herald");
    let service_labels = service.metadata.labels.as_ref().unwrap();
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            service_labels.get(key).map(String::as_str),
            value.as_str(),
            "the ServiceMonitor selects the metrics Service"
        );
    }
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service_port.name.clone().unwrap().as_str()
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"][0],
        "herald-system"
    );

    let objects = render(kubectl, "overlays/prometheus-annotations");
    let config = Config::from_yaml(&config_text(&objects)).unwrap();
    let ds: DaemonSet = round_trip(find(&objects, "DaemonSet", "herald"));
    let annotations = ds
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap();
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    assert_eq!(
        annotations["prometheus.io/port"],
        config.admin_listen.port().to_string()
    );
}

#[test]
fn the_all_in_one_manifest_is_the_current_rendering_of_the_base() {
    let Some(_) = kubectl() else { return };
    let output = Command::new("bash")
        .arg(root().join("scripts/render-deploy"))
        .arg("--check")
        .output()
        .expect("run scripts/render-deploy");
    assert!(
        output.status.success(),
        "deploy/herald.yaml is stale; run `bash scripts/render-deploy`:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Whether `stored` holds everything `wanted` says: every key of an object
/// (recursively), arrays element by element, scalars equal. Names the first
/// path that differs.
fn holds(stored: &Value, wanted: &Value, path: &str) -> Result<(), String> {
    match (stored, wanted) {
        (Value::Object(stored), Value::Object(wanted)) => {
            for (key, value) in wanted {
                holds(
                    stored.get(key).unwrap_or(&Value::Null),
                    value,
                    &format!("{path}.{key}"),
                )?;
            }
            Ok(())
        }
        (Value::Array(stored), Value::Array(wanted)) if stored.len() == wanted.len() => stored
            .iter()
            .zip(wanted)
            .enumerate()
            .try_for_each(|(i, (s, w))| holds(s, w, &format!("{path}[{i}]"))),
        (stored, wanted) if stored == wanted => Ok(()),
        (stored, wanted) => Err(format!("{path}: stored {stored}, manifest {wanted}")),
    }
}

/// The real API server in a lab namespace, with the ServiceMonitor CRD.
fn cluster(lab: &herald_testnet::Lab) -> Cluster {
    let ns = lab.namespace("api").expect("a namespace");
    let cluster = Cluster::start_local(&ns).expect("kube-apiserver and etcd");
    cluster
        .install_monitoring_crds()
        .expect("the Prometheus Operator's CRDs");
    cluster
}

#[test]
fn every_kustomization_passes_the_api_servers_schema_and_admission_in_a_server_side_dry_run() {
    let lab = lab_or_skip!();
    let cluster = cluster(&lab);
    for dir in KUSTOMIZATIONS {
        let path = root().join("deploy").join(dir);
        let out = cluster
            .kubectl(&["apply", "-k", path_str(&path), "--dry-run=server"])
            .unwrap_or_else(|e| panic!("deploy/{dir} fails the server-side dry run: {e}"));
        assert!(
            out.contains("daemonset.apps/herald created (server dry run)"),
            "deploy/{dir}: {out}"
        );
    }
    // Nothing was stored.
    let listed = cluster
        .kubectl(&["get", "namespace", "herald-system", "-o", "name"])
        .unwrap();
    assert!(listed.contains("namespace/herald-system"), "{listed}");
    let daemonsets = cluster
        .kubectl(&["get", "daemonsets", "-A", "-o", "name"])
        .unwrap();
    assert!(daemonsets.trim().is_empty(), "{daemonsets}");
}

#[test]
fn the_all_in_one_manifest_applies_to_the_api_server_and_again_unchanged() {
    let lab = lab_or_skip!();
    let cluster = cluster(&lab);
    let manifest = root().join("deploy/herald.yaml");
    let out = cluster
        .kubectl(&["apply", "-f", path_str(&manifest)])
        .unwrap();
    let objects = documents(&std::fs::read_to_string(&manifest).unwrap());
    for object in &objects {
        let kind = object["kind"].as_str().unwrap().to_lowercase();
        let name = object["metadata"]["name"].as_str().unwrap();
        // The lab gave herald its Namespace, ServiceAccount and RBAC already.
        assert!(
            out.lines().any(|l| l.starts_with(&kind)
                && (l.contains(&format!("/{name} created"))
                    || l.contains(&format!("/{name} configured"))
                    || l.contains(&format!("/{name} unchanged")))),
            "{kind}/{name} applied, in:\n{out}"
        );
    }
    let again = cluster
        .kubectl(&["apply", "-f", path_str(&manifest)])
        .unwrap();
    assert_eq!(again.matches("unchanged").count(), objects.len(), "{again}");

    // What the server holds is what the manifest says.
    let stored = cluster
        .get_json(&["-n", "herald-system", "daemonset", "herald"])
        .expect("the DaemonSet is stored");
    let local = find(&objects, "DaemonSet", "herald");
    // The server fills in defaults (imagePullPolicy, terminationMessagePath
    // and the like); everything the manifest says must be there unchanged.
    if let Err(difference) = holds(&stored["spec"], &local["spec"], "spec") {
        panic!("the stored DaemonSet differs from the manifest: {difference}");
    }
    let config = cluster
        .get_json(&["-n", "herald-system", "configmap", "herald"])
        .unwrap();
    assert_eq!(
        config["data"],
        find(&objects, "ConfigMap", "herald")["data"]
    );
}

#[test]
fn every_overlay_applies_to_the_api_server_with_kubectl_apply_k() {
    let lab = lab_or_skip!();
    let cluster = cluster(&lab);
    let kubectl = kubectl().unwrap();
    for dir in KUSTOMIZATIONS {
        let path = root().join("deploy").join(dir);
        let out = cluster.kubectl(&["apply", "-k", path_str(&path)]).unwrap();
        assert!(out.contains("daemonset.apps/herald"), "deploy/{dir}: {out}");
        let objects = render(kubectl, dir);
        let stored = cluster
            .get_json(&["-n", "herald-system", "configmap", "herald"])
            .unwrap();
        assert_eq!(
            stored["data"],
            find(&objects, "ConfigMap", "herald")["data"],
            "deploy/{dir}: the overlay's config is in force"
        );
    }
    let monitor = cluster
        .get_json(&["-n", "herald-system", "servicemonitor", "herald"])
        .expect("the ServiceMonitor is stored");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
}

/// The `herald_...` metric names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("herald_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // A name starts a token: not inside another identifier.
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_metric_scanner_finds_names_in_promql_and_json() {
    let names = metric_names(
        r#"max by (reason) (herald_kube_refused_addresses{reason!~"x"}) and "expr": "rate(herald_bgp_messages_sent_total[5m])", not_herald_x"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "herald_bgp_messages_sent_total",
            "herald_kube_refused_addresses"
        ]
    );
}

/// Every metric the alerts and the dashboard of deploy/monitoring use is
/// one herald serves (docs/metrics.md is checked against /metrics by the
/// admin endpoint test), so no alert or panel can watch a name that does
/// not exist.
#[test]
fn the_alerts_and_the_dashboard_use_only_catalogued_metrics() {
    let catalogue = std::fs::read_to_string(root().join("docs/metrics.md")).unwrap();
    let catalogued = metric_names(&catalogue);
    let mut used = BTreeSet::new();
    for file in ["prometheusrule.yaml", "dashboard.json"] {
        let text = std::fs::read_to_string(root().join("deploy/monitoring").join(file)).unwrap();
        let names = metric_names(&text);
        assert!(!names.is_empty(), "{file} uses no herald metric");
        used.extend(names);
    }
    let unknown: Vec<&String> = used.difference(&catalogued).collect();
    assert!(unknown.is_empty(), "not in docs/metrics.md: {unknown:?}");
    // The alerts the operator asked for are all there.
    let rules =
        std::fs::read_to_string(root().join("deploy/monitoring/prometheusrule.yaml")).unwrap();
    for alert in [
        "HeraldBGPSessionDown",
        "HeraldBFDSessionDown",
        "HeraldAddressRefused",
        "HeraldKubernetesSourceStale",
        "HeraldDrainInProgress",
    ] {
        assert!(rules.contains(&format!("alert: {alert}")), "{alert}");
    }
}

#[test]
fn the_dashboard_is_grafana_json_with_unique_panels_that_each_query_something() {
    let text = std::fs::read_to_string(root().join("deploy/monitoring/dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(dashboard["uid"], "herald");
    let panels = dashboard["panels"].as_array().expect("panels");
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(
            !targets.is_empty() && targets.iter().all(|t| t["expr"].as_str().is_some()),
            "{}",
            panel["title"]
        );
    }
}

/// deploy/monitoring (the PrometheusRule and the dashboard's ConfigMap)
/// against the real API server with the operator's CRDs: the rule passes
/// the PrometheusRule schema.
#[test]
fn the_monitoring_kustomization_passes_the_api_servers_schema() {
    let lab = lab_or_skip!();
    let cluster = cluster(&lab);
    let path = root().join("deploy/monitoring");
    let out = cluster
        .kubectl(&["apply", "-k", path_str(&path), "--dry-run=server"])
        .unwrap_or_else(|e| panic!("deploy/monitoring fails the server-side dry run: {e}"));
    for object in [
        "prometheusrule.monitoring.coreos.com/herald created (server dry run)",
        "configmap/herald-dashboard created (server dry run)",
    ] {
        assert!(out.contains(object), "{object} in:\n{out}");
    }
}

// The Helm chart (deploy/helm/herald): with its defaults it renders what
// deploy/base does, with metrics on what deploy/overlays/prometheus does;
// `helm lint --strict` passes; the renderings pass the real API server's
// schema and admission; `helm install` and `helm upgrade` work against it.

const CHART: &str = "deploy/helm/herald";

/// The helm scripts/kube-bins builds from its Go module.
fn helm() -> &'static str {
    let bins = KubeBins::get().expect("scripts/kube-bins (kube-apiserver, etcd, kubectl, helm)");
    bins.helm.to_str().expect("a UTF-8 path")
}

/// `helm ARGS` with helm's folders in a fresh temporary directory (so no
/// user's repositories or plugins take part); stdout, or stderr as the error.
fn run_helm(args: &[&str]) -> Result<String, String> {
    let home = tempfile::tempdir().expect("a temporary directory");
    let output = Command::new(helm())
        .args(args)
        .env("HOME", home.path())
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .expect("run helm");
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).expect("UTF-8 output"))
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// `helm template herald deploy/helm/herald -n herald-system EXTRA`.
fn chart_text(extra: &[&str]) -> String {
    let chart = root().join(CHART);
    let mut args = vec![
        "template",
        "herald",
        path_str(&chart),
        "--namespace",
        "herald-system",
    ];
    args.extend_from_slice(extra);
    run_helm(&args).unwrap_or_else(|e| panic!("helm template {extra:?} failed: {e}"))
}

/// The labels only Helm adds (release, chart and version bookkeeping).
const HELM_LABELS: [&str; 4] = [
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
    "helm.sh/chart",
];

/// Requires the chart's object to be the kustomization's: the same fields
/// and values, the same config (as YAML values: the chart's has no
/// comments), and every label the kustomization sets (the chart adds
/// Helm's own and part-of).
fn same_object(chart: &Value, base: &Value, what: &str) {
    let mut chart = chart.clone();
    let mut base = base.clone();
    let chart_labels = chart["metadata"]
        .as_object_mut()
        .and_then(|m| m.remove("labels"))
        .unwrap_or(Value::Null);
    let base_labels = base["metadata"]
        .as_object_mut()
        .and_then(|m| m.remove("labels"))
        .unwrap_or(Value::Null);
    for (key, value) in base_labels.as_object().into_iter().flatten() {
        assert_eq!(
            chart_labels.get(key),
            Some(value),
            "{what}: the chart lacks the label {key}={value}"
        );
    }
    for key in chart_labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        assert!(
            base_labels.get(key).is_some()
                || HELM_LABELS.contains(&key.as_str())
                || key == "app.kubernetes.io/part-of",
            "{what}: the chart adds the label {key}"
        );
    }
    if chart["kind"] == "ConfigMap" {
        for object in [&mut chart, &mut base] {
            let text = object["data"]["herald.yaml"].as_str().unwrap().to_owned();
            let parsed: Value = serde_yaml_ng::from_str(&text).expect("herald.yaml is YAML");
            object["data"]["herald.yaml"] = parsed;
        }
    }
    // Both ways: a field the chart lacks, and a field only the chart has.
    if let Err(difference) = holds(&chart, &base, "").and_then(|()| holds(&base, &chart, "")) {
        panic!("{what}: the chart renders another object: {difference}");
    }
}

/// Compares a chart rendering with a kustomization's, object by object
/// (the Namespace aside: a Helm release lives in a namespace that exists
/// before it, so the chart does not create one).
fn chart_renders_like(chart: &[Value], kubectl: &str, dir: &str) {
    let rendered = render(kubectl, dir);
    let base: Vec<&Value> = rendered
        .iter()
        .filter(|o| o["kind"] != "Namespace")
        .collect();
    for object in &base {
        let kind = object["kind"].as_str().unwrap();
        let name = object["metadata"]["name"].as_str().unwrap();
        let what = format!("{kind}/{name} (deploy/{dir})");
        let ours = chart
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{what}: the chart does not render it"));
        same_object(ours, object, &what);
    }
    let kinds = |objects: &mut dyn Iterator<Item = &Value>| {
        objects
            .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        kinds(&mut chart.iter()),
        kinds(&mut base.iter().copied()),
        "the chart renders other objects than deploy/{dir}"
    );
}

#[test]
fn the_chart_passes_helm_lint_strict() {
    let chart = root().join(CHART);
    let out = run_helm(&["lint", "--strict", path_str(&chart)])
        .unwrap_or_else(|e| panic!("helm lint --strict {CHART}: {e}"));
    assert!(
        out.contains("1 chart(s) linted, 0 chart(s) failed"),
        "{out}"
    );
}

#[test]
fn the_chart_with_its_defaults_renders_the_base() {
    let Some(kubectl) = kubectl() else { return };
    let chart = documents(&chart_text(&[]));
    chart_renders_like(&chart, kubectl, "base");
    check_config("helm/herald", &config_text(&chart));
}

#[test]
fn the_chart_with_metrics_renders_the_prometheus_overlay() {
    let Some(kubectl) = kubectl() else { return };
    let chart = documents(&chart_text(&[
        "--set",
        "metrics.enabled=true",
        "--set",
        "metrics.serviceMonitor.enabled=true",
    ]));
    chart_renders_like(&chart, kubectl, "overlays/prometheus");
    let config = check_config("helm/herald", &config_text(&chart));
    assert_eq!(config.admin_listen.ip().to_string(), "0.0.0.0");
}

#[test]
fn the_chart_refuses_a_service_monitor_without_metrics() {
    let chart = root().join(CHART);
    let refused = run_helm(&[
        "template",
        "herald",
        path_str(&chart),
        "--set",
        "metrics.serviceMonitor.enabled=true",
    ])
    .expect_err("a ServiceMonitor for a loopback-only admin listener must be refused");
    assert!(
        refused.contains("metrics.serviceMonitor.enabled needs metrics.enabled"),
        "{refused}"
    );
}

#[test]
fn the_chart_takes_pools_peers_bfd_drain_and_the_image_from_its_values() {
    let values = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        values.path(),
        "image: {repository: registry.example/herald, tag: \"1.2.3\"}\n\
         config:\n  asn: 64700\n  interface: lo\n  admin_listen: 127.0.0.1:9179\n\
         \x20 pools: [{name: rack, cidrs: [198.51.100.0/24]}]\n\
         \x20 peers:\n\
         \x20   - {name: tor-a, address: 192.0.2.1, asn: 64512, bfd: {enabled: true, min_rx: 100ms, min_tx: 100ms, multiplier: 3}}\n\
         \x20   - {name: tor-b, address: 192.0.2.2, asn: 64512}\n\
         \x20 drain: {gshut_wait: 5s}\n",
    )
    .unwrap();
    let chart = documents(&chart_text(&["--values", path_str(values.path())]));
    let config = check_config("helm/herald", &config_text(&chart));
    assert_eq!(config.asn, 64700);
    assert_eq!(config.pools.len(), 1);
    assert_eq!(config.peers.len(), 2);
    let daemonset: DaemonSet = round_trip(find(&chart, "DaemonSet", "herald"));
    assert_eq!(
        container(&daemonset).image.as_deref(),
        Some("registry.example/herald:1.2.3")
    );
}

#[test]
fn the_chart_renders_objects_the_api_server_accepts_and_installs_and_upgrades() {
    let lab = lab_or_skip!();
    let cluster = cluster(&lab);
    for (what, extra) in [
        ("defaults", &[][..]),
        (
            "metrics and a ServiceMonitor",
            &[
                "--set",
                "metrics.enabled=true",
                "--set",
                "metrics.serviceMonitor.enabled=true",
            ][..],
        ),
    ] {
        let out = cluster
            .apply_dry_run(&chart_text(extra))
            .unwrap_or_else(|e| panic!("the chart ({what}) fails the server-side dry run: {e}"));
        assert!(
            out.contains("daemonset.apps/herald created (server dry run)"),
            "{what}: {out}"
        );
    }

    // A real install, then an upgrade that changes a pool: the ConfigMap
    // follows, the DaemonSet's pod template does not change (herald re-reads
    // its config in place). The lab made herald's own namespace, account and
    // role for the other tests, so the release goes beside them under
    // another name.
    cluster
        .apply(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: herald-helm\n  labels:\n    \
             pod-security.kubernetes.io/enforce: privileged\n",
        )
        .unwrap();
    let chart = root().join(CHART);
    let chart = path_str(&chart);
    let release = ["edge-herald", chart, "--namespace", "herald-helm"];
    cluster
        .helm(&[&["install"][..], &release[..]].concat())
        .unwrap_or_else(|e| panic!("helm install: {e}"));
    let before = cluster
        .get_json(&["-n", "herald-helm", "daemonset", "edge-herald"])
        .expect("the DaemonSet is stored");
    cluster
        .helm(
            &[
                &["upgrade"][..],
                &release[..],
                &[
                    "--reuse-values",
                    "--set-json",
                    r#"config.pools=[{"name":"public","cidrs":["198.51.100.0/24"]}]"#,
                ][..],
            ]
            .concat(),
        )
        .unwrap_or_else(|e| panic!("helm upgrade: {e}"));
    let stored = cluster
        .get_json(&["-n", "herald-helm", "configmap", "edge-herald"])
        .unwrap();
    let text = stored["data"]["herald.yaml"].as_str().unwrap();
    assert!(
        text.contains("198.51.100.0/24") && !text.contains("203.0.113.0/24"),
        "{text}"
    );
    let after = cluster
        .get_json(&["-n", "herald-helm", "daemonset", "edge-herald"])
        .unwrap();
    assert_eq!(
        before["spec"]["template"], after["spec"]["template"],
        "a config change must not restart the pods"
    );
    let binding = cluster
        .get_json(&["clusterrolebinding", "edge-herald"])
        .unwrap();
    assert_eq!(binding["subjects"][0]["namespace"], "herald-helm");
    let list = cluster
        .helm(&["list", "--namespace", "herald-helm"])
        .unwrap();
    assert!(
        list.contains("edge-herald") && list.contains("deployed"),
        "{list}"
    );
}
