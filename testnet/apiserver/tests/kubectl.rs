//! kubectl 1.32, unmodified, against the stand-in: apply (create, then a strategic merge patch
//! that must drop an old port), create, get, annotate, label, delete (which waits for 404),
//! validation on and off, `patch --subresource=status`, and a deploy-style multi-document apply.
//! Each test has its own server, kubeconfig and discovery cache.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use herald_apiserver::{Options, StandIn};
use serde_json::Value;

struct Kubectl {
    bin: &'static str,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
    standin: StandIn,
}

impl Kubectl {
    fn new() -> Option<Self> {
        let bin = common::kubectl_or_skip()?;
        let standin = StandIn::start(Options::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = standin.kubeconfig(dir.path()).unwrap();
        Some(Self {
            bin,
            kubeconfig,
            dir,
            standin,
        })
    }

    /// Runs kubectl with a bounded wait (60 s); kills it if it hangs.
    fn run(&self, args: &[&str]) -> Output {
        let cache = self.dir.path().join("cache");
        let mut child = Command::new(self.bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .env("HOME", self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        let start = Instant::now();
        while child.try_wait().expect("wait").is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kubectl {args:?} did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("output")
    }

    /// Runs kubectl and requires success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path_str(&path)
    }

    fn service(&self) -> Value {
        self.standin
            .get("v1", "Service", Some("default"), "web")
            .expect("the Service exists")
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn manifest(ports: &[u16]) -> String {
    let mut text = String::from(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations:\n    \
         herald.dev/advertise: \"true\"\nspec:\n  type: LoadBalancer\n  selector:\n    app: web\n  \
         ports:\n",
    );
    for p in ports {
        text.push_str(&format!("  - name: p{p}\n    port: {p}\n"));
    }
    text
}

fn ports(svc: &Value) -> Vec<u64> {
    svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_u64().unwrap())
        .collect()
}

#[test]
fn kubectl_apply_creates_then_a_changed_port_list_replaces_the_old_port() {
    let Some(k) = Kubectl::new() else { return };
    let file = k.write("svc.yaml", &manifest(&[80]));
    let out = k.run(&["apply", "-f", &file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("service/web created"));
    assert!(
        out.stderr.is_empty(),
        "no warnings: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created = k.service();
    assert!(
        created["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
    let file = k.write("svc.yaml", &manifest(&[8080, 8443]));
    let out = k.run(&["apply", "-f", &file]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("service/web configured"));
    assert!(
        out.stderr.is_empty(),
        "no warnings: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ports(&k.service()),
        [8080, 8443],
        "port 80 must go, not be merged"
    );
    let file = k.write("svc.yaml", &manifest(&[8443]));
    k.ok(&["apply", "-f", &file]);
    assert_eq!(ports(&k.service()), [8443]);
    let log = k.standin.requests();
    assert!(
        !log.iter()
            .any(|r| r.path == "/api/v1" || r.path.starts_with("/apis/discovery")),
        "aggregated discovery spares the per-group documents"
    );
    let patches: Vec<_> = k
        .standin
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 2);
    assert!(
        patches
            .iter()
            .all(|r| r.query.contains("fieldValidation=Strict"))
    );
}

#[test]
fn kubectl_apply_works_with_and_without_validation() {
    let Some(k) = Kubectl::new() else { return };
    let file = k.write("svc.yaml", &manifest(&[80]));
    k.ok(&["apply", "--validate=false", "-f", &file]);
    let first_post = k
        .standin
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert!(
        first_post.query.contains("fieldValidation=Ignore"),
        "{}",
        first_post.query
    );
    k.ok(&["delete", "-f", &file]);
    k.ok(&["apply", "--validate=true", "-f", &file]);
    let log = k.standin.requests();
    assert!(log.iter().any(|r| r.path == "/openapi/v3"));
    let last_post = log.iter().rev().find(|r| r.method == "POST").unwrap();
    assert!(
        last_post.query.contains("fieldValidation=Strict"),
        "{}",
        last_post.query
    );
}

#[test]
fn kubectl_create_get_annotate_label_and_delete() {
    let Some(k) = Kubectl::new() else { return };
    let file = k.write("svc.yaml", &manifest(&[80]));
    assert!(
        k.ok(&["create", "-f", &file])
            .contains("service/web created")
    );
    let again = k.run(&["create", "-f", &file]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("AlreadyExists"));
    let got: Value = serde_json::from_str(&k.ok(&["get", "service", "web", "-o", "json"])).unwrap();
    assert_eq!(got["metadata"]["name"], "web");
    let list: Value = serde_json::from_str(&k.ok(&["get", "svc", "-o", "json"])).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    k.ok(&["annotate", "service", "web", "herald.dev/advertise-"]);
    assert!(
        k.service()["metadata"]["annotations"]
            .get("herald.dev/advertise")
            .is_none()
    );
    k.ok(&[
        "annotate",
        "service",
        "web",
        "herald.dev/address-kinds=external",
    ]);
    assert_eq!(
        k.service()["metadata"]["annotations"]["herald.dev/address-kinds"],
        "external"
    );
    k.ok(&["label", "service", "web", "team=blue"]);
    assert_eq!(k.service()["metadata"]["labels"]["team"], "blue");
    assert!(
        k.ok(&["get", "svc", "-l", "team=blue", "-o", "name"])
            .contains("service/web")
    );
    assert!(
        k.ok(&["get", "svc", "-l", "team!=blue", "-o", "name"])
            .trim()
            .is_empty()
    );

    k.ok(&["delete", "service", "web"]);
    assert!(
        k.standin
            .get("v1", "Service", Some("default"), "web")
            .is_none()
    );
    let log = k.standin.requests();
    let delete_at = log.iter().position(|r| r.method == "DELETE").unwrap();
    assert!(
        log[delete_at..]
            .iter()
            .any(|r| r.method == "GET" && r.status == 404),
        "kubectl delete waits until the object is gone"
    );
    let version: Value = serde_json::from_str(&k.ok(&["version", "-o", "json"])).unwrap();
    assert_eq!(version["serverVersion"]["major"], "1");
    let missing = k.run(&["get", "service", "web"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NotFound"));
}

#[test]
fn kubectl_patch_subresource_status_changes_status_only() {
    let Some(k) = Kubectl::new() else { return };
    let file = k.write("svc.yaml", &manifest(&[80]));
    k.ok(&["apply", "-f", &file]);
    let before = k.service();
    k.ok(&[
        "patch",
        "service",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.10"}]}},"spec":{"type":"ClusterIP"}}"#,
    ]);
    let after = k.service();
    assert_eq!(
        after["status"]["loadBalancer"]["ingress"][0]["ip"],
        "192.0.2.10"
    );
    assert_eq!(after["spec"]["type"], "LoadBalancer");
    assert_eq!(
        after["metadata"]["generation"],
        before["metadata"]["generation"]
    );
    assert_ne!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    let status: Value = serde_json::from_str(&k.ok(&[
        "get",
        "service",
        "web",
        "--subresource=status",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(
        status["status"]["loadBalancer"]["ingress"][0]["ip"],
        "192.0.2.10"
    );
}

#[test]
fn kubectl_applies_a_deploy_style_manifest_with_rbac_and_a_daemonset() {
    let Some(k) = Kubectl::new() else { return };
    let file = k.write(
        "deploy.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: herald-system\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: herald\n  namespace: herald-system\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: herald\nrules:\n\
         - apiGroups: [\"\"]\n  resources: [services, nodes]\n  verbs: [get, list, watch]\n\
         - apiGroups: [discovery.k8s.io]\n  resources: [endpointslices]\n  verbs: [get, list, watch]\n\
         - apiGroups: [events.k8s.io]\n  resources: [events]\n  verbs: [create, patch]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: herald\n\
         roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: herald\n\
         subjects:\n- kind: ServiceAccount\n  name: herald\n  namespace: herald-system\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: herald\n  namespace: herald-system\n\
         data:\n  herald.yaml: |\n    asn: 64512\n---\n\
         apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: herald\n  namespace: herald-system\n\
         spec:\n  selector:\n    matchLabels: {app: herald}\n  template:\n    metadata:\n      labels: {app: herald}\n\
         \x20   spec:\n      serviceAccountName: herald\n      hostNetwork: true\n      containers:\n\
         \x20     - name: herald\n        image: herald:dev\n        args: [--config, /etc/herald/herald.yaml]\n",
    );
    let out = k.ok(&["apply", "-f", &file]);
    for created in [
        "namespace/herald-system created",
        "serviceaccount/herald created",
        "clusterrole.rbac.authorization.k8s.io/herald created",
        "clusterrolebinding.rbac.authorization.k8s.io/herald created",
        "configmap/herald created",
        "daemonset.apps/herald created",
    ] {
        assert!(out.contains(created), "{created} in {out}");
    }
    let again = k.ok(&["apply", "-f", &file]);
    assert_eq!(again.matches("unchanged").count(), 6, "{again}");
    let ds = k
        .standin
        .get("apps/v1", "DaemonSet", Some("herald-system"), "herald")
        .unwrap();
    assert_eq!(
        ds["spec"]["template"]["spec"]["containers"][0]["image"],
        "herald:dev"
    );
    // The Namespace goes Terminating first and its contents later, as on a real cluster.
    k.ok(&["delete", "-f", &file, "--ignore-not-found"]);
    assert!(
        k.standin
            .get(
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                None,
                "herald"
            )
            .is_none()
    );
    assert!(
        k.standin
            .get("v1", "Namespace", None, "herald-system")
            .is_none()
    );
    assert!(k.standin.list("apps/v1", "DaemonSet", None).is_empty());
}
