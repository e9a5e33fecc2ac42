//! [`Cluster`]: a real Kubernetes control plane as a lab host. etcd and
//! kube-apiserver (built from their Go modules by `scripts/kube-bins`) run
//! inside a lab namespace, with TLS from a CA the lab generates, RBAC on
//! (`--authorization-mode=Node,RBAC`) and the default admission plugins.
//! herald gets a kubeconfig holding its ServiceAccount's token, bound to the
//! ClusterRole in `deploy/rbac`, so it runs with exactly the permissions users
//! grant it; the tests and kubectl use an admin client certificate.
//!
//! What this module owns: one etcd and one kube-apiserver per cluster (by
//! PID, in the lab's process table), their files under `<namespace dir>/kube`
//! (PKI, etcd data, audit log, kubeconfigs, kubectl's cache), and kubectl runs
//! inside that namespace. What it must not touch: `~/.kube` or any real
//! cluster (every kubectl call names the lab's kubeconfig), and nothing
//! outside the lab's namespaces (etcd listens on the namespace's loopback).
//!
//! ```text
//!  KubeBins::get()                  scripts/kube-bins once per process: kube-apiserver, etcd, kubectl, helm
//!  Cluster::start(api_ns, 198.18.0.2)
//!     pki: CA, serving cert (SAN: the address), admin cert (system:masters), SA signing key
//!     etcd 127.0.0.1:2379  ->  kube-apiserver ADDRESS:6443  ->  /readyz
//!     kubectl: Namespace herald-system, ServiceAccount herald, deploy/rbac; TokenRequest
//!  cluster.apply(yaml) / kubectl(args)        as admin
//!  cluster.kubeconfig()                       herald's (ServiceAccount token)
//!  cluster.forbidden()                        every 403 herald got (the audit log)
//!  cluster.freeze_apiserver() / kill_apiserver() / restart_apiserver() / compact()
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::netns::Namespace;
use crate::process::{Process, Signal};
use crate::wait::wait_until;

/// The port kube-apiserver listens on.
pub const API_PORT: u16 = 6443;

/// etcd's client port, on the API namespace's loopback.
const ETCD_CLIENT: &str = "127.0.0.1:2379";

/// The Service cluster IP range: a benchmarking range, large enough for the
/// 10,000 Services of the scale benchmark.
pub const SERVICE_CIDR: &str = "198.19.128.0/17";

/// herald's namespace and ServiceAccount, as in `deploy/base`.
pub const HERALD_NAMESPACE: &str = "herald-system";
pub const HERALD_SERVICE_ACCOUNT: &str = "herald";

/// Every kubectl call gives up after this (`--request-timeout`), so an API
/// server that is down never hangs a test.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long kube-apiserver may take to answer `/readyz` (on a loaded
/// 2-core machine it takes 3-15 s).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The binaries `scripts/kube-bins` builds (or finds cached).
#[derive(Debug, Clone)]
pub struct KubeBins {
    pub apiserver: PathBuf,
    pub etcd: PathBuf,
    pub kubectl: PathBuf,
    /// helm, built from its Go module beside kubectl.
    pub helm: PathBuf,
    /// The Prometheus Operator's ServiceMonitor and PrometheusRule CRDs
    /// (`monitoring-crds-vX.yaml`).
    pub monitoring_crds: PathBuf,
}

impl KubeBins {
    /// Runs `scripts/kube-bins` once per process (it builds nothing when the
    /// binaries are cached) and returns their paths: the last two lines it
    /// prints, and kubectl beside kube-apiserver.
    pub fn get() -> Result<&'static KubeBins> {
        static BINS: OnceLock<std::result::Result<KubeBins, String>> = OnceLock::new();
        BINS.get_or_init(|| KubeBins::build().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|message| LabError::Node {
                node: "kube-bins".to_owned(),
                message: message.clone(),
            })
    }

    fn build() -> Result<KubeBins> {
        let script = repository().join("scripts/kube-bins");
        let script_text = script.display().to_string();
        let stdout = crate::command::run("bash", &[&script_text]).map_err(|e| LabError::Node {
            node: "kube-bins".to_owned(),
            message: format!(
                "{e} (the real kube-apiserver and etcd are built from their Go modules: \
                 install Go 1.26 or newer, or run scripts/test, which does)"
            ),
        })?;
        let lines: Vec<&str> = stdout.lines().collect();
        let [.., apiserver, etcd] = lines.as_slice() else {
            return Err(LabError::Node {
                node: "kube-bins".to_owned(),
                message: format!("scripts/kube-bins printed fewer than two lines: {stdout}"),
            });
        };
        let apiserver = PathBuf::from(apiserver);
        let kubectl = apiserver.with_file_name("kubectl");
        let helm = apiserver.with_file_name("helm");
        let dir = apiserver.parent().unwrap_or(Path::new("/")).to_owned();
        let monitoring_crds = std::fs::read_dir(&dir)
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .find(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("monitoring-crds-") && n.ends_with(".yaml"))
            })
            .unwrap_or_else(|| dir.join("monitoring-crds.yaml"));
        let bins = KubeBins {
            etcd: PathBuf::from(etcd),
            kubectl,
            helm,
            apiserver,
            monitoring_crds,
        };
        for path in [
            &bins.apiserver,
            &bins.etcd,
            &bins.kubectl,
            &bins.helm,
            &bins.monitoring_crds,
        ] {
            if !path.is_file() {
                return Err(LabError::Node {
                    node: "kube-bins".to_owned(),
                    message: format!("{} is missing after scripts/kube-bins", path.display()),
                });
            }
        }
        Ok(bins)
    }
}

/// The repository's root (testnet's parent), where `deploy/` and `scripts/`
/// are.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testnet lives inside the repository")
        .to_owned()
}

/// A real Kubernetes API (etcd + kube-apiserver) in a lab namespace. Its
/// processes stop when it is dropped (and with the lab in any case).
pub struct Cluster {
    ns: Namespace,
    bins: &'static KubeBins,
    dir: PathBuf,
    address: IpAddr,
    etcd: Process,
    /// Replaced by [`Cluster::restart_apiserver`].
    apiserver: Mutex<Process>,
    /// From each kill of kube-apiserver until its restart authorizes herald
    /// again: a freshly started API server answers 403 for a moment while
    /// its RBAC cache fills, and herald's watches retry through it. 403s in
    /// these windows are not a missing permission.
    restarts: Mutex<Vec<(SystemTime, SystemTime)>>,
    admin_kubeconfig: PathBuf,
    herald_kubeconfig: PathBuf,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("namespace", &self.ns.name())
            .field("url", &self.url())
            .finish()
    }
}

impl Cluster {
    /// Starts etcd and kube-apiserver inside `ns`, the API server on
    /// `address:6443` (the address must already be on one of `ns`'s
    /// interfaces), waits until it is ready, and gives herald its
    /// ServiceAccount, RBAC (`deploy/rbac`) and a token.
    pub fn start(ns: &Namespace, address: IpAddr) -> Result<Cluster> {
        let bins = KubeBins::get()?;
        let dir = ns.dir().join("kube");
        mkdir(&dir)?;
        let pki = Pki::generate(&dir.join("pki"), address)?;
        let etcd = start_etcd(ns, bins, &dir)?;
        let audit_policy = dir.join("audit-policy.yaml");
        write(&audit_policy, &audit_policy_text())?;
        let cluster = Cluster {
            ns: ns.clone(),
            bins,
            address,
            etcd,
            apiserver: Mutex::new(start_apiserver(ns, bins, &dir, &pki, address)?),
            restarts: Mutex::new(Vec::new()),
            admin_kubeconfig: dir.join("admin.kubeconfig"),
            herald_kubeconfig: dir.join("herald.kubeconfig"),
            dir,
        };
        write(
            &cluster.admin_kubeconfig,
            &kubeconfig_text(
                &cluster.url(),
                &pki.ca,
                &format!(
                    "client-certificate: {}\n    client-key: {}",
                    pki.admin_cert.display(),
                    pki.admin_key.display()
                ),
            ),
        )?;
        cluster.wait_ready(READY_TIMEOUT)?;
        cluster.grant_herald(&pki)?;
        Ok(cluster)
    }

    /// Creates namespace `api` in `lab`, links it to `node` with a veth pair
    /// (`node`: eth-api 198.18.0.1/24, `api`: eth0 198.18.0.2/24) and starts
    /// the cluster there: a control plane one hop from the node, for tests
    /// without a router.
    pub fn start_linked(lab: &Lab, node: &Namespace) -> Result<Cluster> {
        let api = lab.namespace("api")?;
        lab.veth(node, "eth-api", &api, "eth0")?;
        node.add_address("eth-api", "198.18.0.1/24")?;
        api.add_address("eth0", "198.18.0.2/24")?;
        Cluster::start(&api, "198.18.0.2".parse().expect("a literal"))
    }

    /// Starts a cluster alone in `ns`, reachable on `ns`'s loopback only:
    /// for tests that run herald's code in process inside `ns`.
    pub fn start_local(ns: &Namespace) -> Result<Cluster> {
        ns.add_address("lo", "198.18.0.2/32")?;
        Cluster::start(ns, "198.18.0.2".parse().expect("a literal"))
    }

    /// The namespace the control plane runs in.
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// `https://ADDRESS:6443`.
    pub fn url(&self) -> String {
        format!("https://{}", SocketAddr::new(self.address, API_PORT))
    }

    /// The API server's socket address.
    pub fn socket_address(&self) -> SocketAddr {
        SocketAddr::new(self.address, API_PORT)
    }

    /// The server's version (`kubectl version`), `v1.37.2` say.
    pub fn server_version(&self) -> Result<String> {
        let stdout = self.kubectl(&["version", "-o", "json"])?;
        let value = crate::command::json("kubectl version -o json".to_owned(), stdout)?;
        Ok(value["serverVersion"]["gitVersion"]
            .as_str()
            .unwrap_or("(unknown version)")
            .to_owned())
    }

    /// herald's kubeconfig: its ServiceAccount's token and the lab's CA.
    pub fn kubeconfig(&self) -> &Path {
        &self.herald_kubeconfig
    }

    /// A kubeconfig like herald's, pointing at `server` instead (a proxy in
    /// front of the API server, say); written beside the others.
    pub fn kubeconfig_via(&self, server: SocketAddr, name: &str) -> Result<PathBuf> {
        let text =
            std::fs::read_to_string(&self.herald_kubeconfig).map_err(|source| LabError::Io {
                context: "cannot read herald's kubeconfig",
                path: self.herald_kubeconfig.clone(),
                source,
            })?;
        let path = self.dir.join(format!("{name}.kubeconfig"));
        write(
            &path,
            &text.replace(&self.url(), &format!("https://{server}")),
        )?;
        Ok(path)
    }

    /// A kubeconfig like herald's with `token` (another ServiceAccount's,
    /// from `kubectl create token`) instead of herald's; written beside the
    /// others as `NAME.kubeconfig`.
    pub fn kubeconfig_with_token(&self, token: &str, name: &str) -> Result<PathBuf> {
        let text =
            std::fs::read_to_string(&self.herald_kubeconfig).map_err(|source| LabError::Io {
                context: "cannot read herald's kubeconfig",
                path: self.herald_kubeconfig.clone(),
                source,
            })?;
        let mut replaced = String::new();
        for line in text.lines() {
            let rest = line.trim_start();
            if rest.starts_with("token:") {
                let indent = &line[..line.len() - rest.len()];
                replaced.push_str(&format!("{indent}token: {}\n", token.trim()));
            } else {
                replaced.push_str(line);
                replaced.push('\n');
            }
        }
        let path = self.dir.join(format!("{name}.kubeconfig"));
        write(&path, &replaced)?;
        Ok(path)
    }

    /// The admin kubeconfig (a client certificate in `system:masters`).
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The kubectl this cluster was built with (same release).
    pub fn kubectl_binary(&self) -> &Path {
        &self.bins.kubectl
    }

    /// Installs the Prometheus Operator's ServiceMonitor and PrometheusRule
    /// CRDs (as the operator ships them) and waits until the API serves the
    /// kinds.
    pub fn install_monitoring_crds(&self) -> Result<()> {
        let crds = self.bins.monitoring_crds.display().to_string();
        self.kubectl(&["apply", "--server-side", "-f", &crds])?;
        self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/prometheusrules.monitoring.coreos.com",
        ])
        .map(drop)
    }

    /// kube-apiserver's process (signals, log): the current one, after a
    /// restart the new one.
    pub fn apiserver(&self) -> Process {
        self.apiserver.lock().expect("cluster lock").clone()
    }

    /// etcd's process.
    pub fn etcd(&self) -> &Process {
        &self.etcd
    }

    /// `kubectl --kubeconfig ADMIN --cache-dir D --request-timeout 30s ARGS`
    /// inside the API's namespace; returns stdout.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.kubectl_as(&self.admin_kubeconfig, args)
    }

    /// kubectl with herald's own credentials (to show what RBAC allows it).
    pub fn kubectl_as_herald(&self, args: &[&str]) -> Result<String> {
        self.kubectl_as(&self.herald_kubeconfig, args)
    }

    fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Result<String> {
        let kubeconfig = kubeconfig.display().to_string();
        let cache = self.dir.join("cache").display().to_string();
        let timeout = format!("{}s", KUBECTL_TIMEOUT.as_secs());
        let mut full = vec![
            "--kubeconfig",
            kubeconfig.as_str(),
            "--cache-dir",
            cache.as_str(),
            "--request-timeout",
            timeout.as_str(),
        ];
        full.extend_from_slice(args);
        let home = self.dir.display().to_string();
        let kubectl = self.bins.kubectl.display().to_string();
        self.ns
            .exec_with_env(&[("HOME".to_owned(), home)], &kubectl, &full)
    }

    /// `helm --kubeconfig ADMIN ARGS` inside the API's namespace, with
    /// helm's cache, config and data folders in the lab's; returns stdout.
    pub fn helm(&self, args: &[&str]) -> Result<String> {
        let kubeconfig = self.admin_kubeconfig.display().to_string();
        let mut full = vec!["--kubeconfig", kubeconfig.as_str()];
        full.extend_from_slice(args);
        let env: Vec<(String, String)> = [
            ("HOME", "helm"),
            ("HELM_CACHE_HOME", "helm/cache"),
            ("HELM_CONFIG_HOME", "helm/config"),
            ("HELM_DATA_HOME", "helm/data"),
        ]
        .into_iter()
        .map(|(name, dir)| (name.to_owned(), self.dir.join(dir).display().to_string()))
        .collect();
        let helm = self.bins.helm.display().to_string();
        self.ns.exec_with_env(&env, &helm, &full)
    }

    /// Writes `manifest` (YAML or JSON, several YAML documents allowed) to a
    /// file and runs `kubectl apply -f FILE` as admin.
    pub fn apply(&self, manifest: &str) -> Result<String> {
        let path = self.manifest_path()?;
        write(&path, manifest)?;
        self.kubectl(&["apply", "-f", &path.display().to_string()])
    }

    /// [`Cluster::apply`] with `--dry-run=server`: the API server's schema
    /// and admission judge `manifest`, and nothing is stored.
    pub fn apply_dry_run(&self, manifest: &str) -> Result<String> {
        let path = self.manifest_path()?;
        write(&path, manifest)?;
        self.kubectl(&[
            "apply",
            "--dry-run=server",
            "-f",
            &path.display().to_string(),
        ])
    }

    /// `kubectl apply` of one JSON object.
    pub fn apply_json(&self, object: &serde_json::Value) -> Result<String> {
        self.apply(&object.to_string())
    }

    /// Sets a Service's `status.loadBalancer.ingress` to `ips` (what a
    /// load-balancer controller does): a merge patch of the status
    /// subresource.
    pub fn set_load_balancer_ips(&self, namespace: &str, name: &str, ips: &[&str]) -> Result<()> {
        let ingress: Vec<serde_json::Value> =
            ips.iter().map(|ip| serde_json::json!({"ip": ip})).collect();
        let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": ingress}}});
        self.kubectl(&[
            "-n",
            namespace,
            "patch",
            "service",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ])
        .map(drop)
    }

    /// `kubectl get KIND NAME -o json` as a value.
    pub fn get_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut full = vec!["get"];
        full.extend_from_slice(args);
        full.extend(["-o", "json"]);
        let stdout = self.kubectl(&full)?;
        crate::command::json(format!("kubectl {}", full.join(" ")), stdout)
    }

    /// The load-balancer addresses (`status.loadBalancer.ingress[].ip`) of
    /// every Service in `namespace`, by Service name (empty for one without).
    pub fn load_balancer_addresses(
        &self,
        namespace: &str,
    ) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
        let list = self.get_json(&["services", "-n", namespace])?;
        Ok(list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|service| {
                let ips = service["status"]["loadBalancer"]["ingress"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i["ip"].as_str().map(str::to_string))
                    .collect();
                let name = service["metadata"]["name"].as_str().unwrap_or("");
                (name.to_string(), ips)
            })
            .collect())
    }

    fn manifest_path(&self) -> Result<PathBuf> {
        let dir = self.dir.join("manifests");
        mkdir(&dir)?;
        let mut n = 1;
        loop {
            let candidate = dir.join(format!("manifest-{n}.yaml"));
            if !candidate.exists() {
                return Ok(candidate);
            }
            n += 1;
        }
    }

    /// Waits until `/readyz` answers `ok` (bounded).
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        wait_until(
            timeout,
            Duration::from_millis(250),
            &format!("kube-apiserver at {} to be ready", self.url()),
            || {
                self.apiserver()
                    .ensure_running()
                    .map_err(|e| e.to_string())?;
                self.etcd.ensure_running().map_err(|e| e.to_string())?;
                self.kubectl(&["get", "--raw", "/readyz"])
                    .map_err(|e| e.to_string())
                    .and_then(|body| {
                        if body.trim() == "ok" {
                            Ok(())
                        } else {
                            Err(body)
                        }
                    })
            },
        )
    }

    /// Namespace, ServiceAccount and RBAC for herald (the manifests users
    /// apply: `deploy/base/namespace.yaml`, `serviceaccount.yaml`,
    /// `deploy/rbac`), then a token for it from the TokenRequest API in
    /// herald's kubeconfig.
    fn grant_herald(&self, pki: &Pki) -> Result<()> {
        let deploy = repository().join("deploy");
        for file in ["base/namespace.yaml", "base/serviceaccount.yaml"] {
            self.kubectl(&["apply", "-f", &deploy.join(file).display().to_string()])?;
        }
        self.kubectl(&["apply", "-k", &deploy.join("rbac").display().to_string()])?;
        let token = self.kubectl(&[
            "-n",
            HERALD_NAMESPACE,
            "create",
            "token",
            HERALD_SERVICE_ACCOUNT,
            "--duration=24h",
        ])?;
        write(
            &self.herald_kubeconfig,
            &kubeconfig_text(&self.url(), &pki.ca, &format!("token: {}", token.trim())),
        )
    }

    /// Every request herald's ServiceAccount made that the API server
    /// answered 403, from the audit log (one line each: verb, URI, reason).
    /// A test that runs herald asserts this is empty: herald needs no
    /// permission that `deploy/rbac` does not grant.
    pub fn forbidden(&self) -> Result<Vec<String>> {
        let path = self.dir.join("audit.log");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(LabError::Io {
                    context: "cannot read the audit log",
                    path,
                    source,
                });
            }
        };
        let restarts = self.restarts.lock().expect("cluster lock").clone();
        Ok(forbidden_in_audit(&text, &restarts))
    }

    /// Panics with the requests when herald was refused anything.
    pub fn assert_nothing_forbidden(&self) {
        let forbidden = self.forbidden().expect("the audit log");
        assert!(
            forbidden.is_empty(),
            "the API server answered 403 to herald's ServiceAccount (deploy/rbac lacks a \
             permission herald uses):\n{}",
            forbidden.join("\n")
        );
    }

    /// SIGSTOP to kube-apiserver: connections stay open and nothing answers.
    pub fn freeze_apiserver(&self) -> Result<()> {
        self.apiserver().signal(Signal::SIGSTOP)
    }

    /// SIGCONT to kube-apiserver.
    pub fn thaw_apiserver(&self) -> Result<()> {
        self.apiserver().signal(Signal::SIGCONT)
    }

    /// SIGKILL to kube-apiserver (its connections are reset); etcd keeps the
    /// data for [`Cluster::restart_apiserver`].
    pub fn kill_apiserver(&self) -> Result<()> {
        let killed = SystemTime::now();
        self.apiserver().kill()?;
        self.restarts
            .lock()
            .expect("cluster lock")
            .push((killed, SystemTime::UNIX_EPOCH));
        Ok(())
    }

    /// Starts kube-apiserver again on the same files and data (after
    /// [`Cluster::kill_apiserver`]) and waits until it is ready.
    pub fn restart_apiserver(&self) -> Result<()> {
        if self.apiserver().is_running() {
            self.kill_apiserver()?;
        }
        let pki = Pki::existing(&self.dir.join("pki"));
        let new = start_apiserver(&self.ns, self.bins, &self.dir, &pki, self.address)?;
        *self.apiserver.lock().expect("cluster lock") = new;
        self.wait_ready(READY_TIMEOUT)?;
        self.wait_herald_authorized(READY_TIMEOUT)?;
        if let Some(window) = self.restarts.lock().expect("cluster lock").last_mut() {
            window.1 = SystemTime::now();
        }
        Ok(())
    }

    /// Waits until the API server's RBAC lets herald's ServiceAccount list
    /// Services (`kubectl auth can-i ... --as`): after a restart, /readyz
    /// passes a moment before the authorizer has read the bindings.
    pub fn wait_herald_authorized(&self, timeout: Duration) -> Result<()> {
        let user = format!("system:serviceaccount:{HERALD_NAMESPACE}:{HERALD_SERVICE_ACCOUNT}");
        wait_until(
            timeout,
            Duration::from_millis(100),
            "RBAC to authorize herald's ServiceAccount",
            || match self.kubectl(&["auth", "can-i", "list", "services", "--as", &user]) {
                Ok(answer) if answer.trim() == "yes" => Ok(()),
                Ok(answer) => Err(answer),
                Err(e) => Err(e.to_string()),
            },
        )
    }

    /// SIGSTOP / SIGCONT to etcd: the API server stays up but every read and
    /// write that needs storage fails or times out.
    pub fn freeze_etcd(&self) -> Result<()> {
        self.etcd.signal(Signal::SIGSTOP)
    }

    pub fn thaw_etcd(&self) -> Result<()> {
        self.etcd.signal(Signal::SIGCONT)
    }

    /// Compacts etcd up to its current revision (`etcdctl compact`, through
    /// etcd's JSON gateway): every watch or list at an older
    /// resourceVersion that reaches etcd gets 410 Gone. Returns the
    /// revision.
    pub fn compact(&self) -> Result<u64> {
        let revision = {
            let body = self.etcd_post("/v3/kv/range", r#"{"key":"AA=="}"#)?;
            body["header"]["revision"]
                .as_str()
                .and_then(|r| r.parse::<u64>().ok())
                .ok_or_else(|| LabError::Node {
                    node: self.ns.node().to_owned(),
                    message: format!("etcd's range answer has no revision: {body}"),
                })?
        };
        self.etcd_post(
            "/v3/kv/compaction",
            &format!(r#"{{"revision":"{revision}","physical":true}}"#),
        )?;
        Ok(revision)
    }

    fn etcd_post(&self, path: &str, body: &str) -> Result<serde_json::Value> {
        let addr: SocketAddr = ETCD_CLIENT.parse().expect("a literal");
        let path = path.to_owned();
        let body = body.as_bytes().to_vec();
        let response = self
            .ns
            .run_in(move || {
                crate::http::request(addr, "POST", &path, &body, Duration::from_secs(10))
            })?
            .map_err(|e| LabError::Node {
                node: self.ns.node().to_owned(),
                message: format!("etcd: {e}"),
            })?;
        if response.status != 200 {
            return Err(LabError::Node {
                node: self.ns.node().to_owned(),
                message: format!(
                    "etcd answered HTTP {}: {}",
                    response.status,
                    response.text()
                ),
            });
        }
        serde_json::from_slice(&response.body).map_err(|source| LabError::Json {
            command: "etcd gateway".to_owned(),
            output: response.text(),
            source,
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The lab would stop them too; stopping them here frees the
        // namespace's ports at once for a test that drops the cluster early.
        let _ = self.apiserver().kill();
        let _ = self.etcd.kill();
        // Every test that ran herald against this cluster fails when the
        // API server refused it anything, whether or not the test asked.
        if !std::thread::panicking() {
            self.assert_nothing_forbidden();
        }
    }
}

/// The files of the lab's PKI.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    admin_cert: PathBuf,
    admin_key: PathBuf,
    sa_key: PathBuf,
    sa_pub: PathBuf,
}

impl Pki {
    fn existing(dir: &Path) -> Pki {
        Pki {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("apiserver.crt"),
            server_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
        }
    }

    /// A CA, a serving certificate for `address` (and the names in-cluster
    /// clients use), an admin client certificate in `system:masters`, and
    /// the ServiceAccount token signing key pair, with `openssl`.
    fn generate(dir: &Path, address: IpAddr) -> Result<Pki> {
        mkdir(dir)?;
        let pki = Pki::existing(dir);
        let path = |p: &Path| p.display().to_string();
        let ca_key = dir.join("ca.key");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut args = vec!["req", "-x509", "-days", "2", "-subj", "/CN=herald-lab-ca"];
        args.extend(ec);
        let (ca_key_s, ca_s) = (path(&ca_key), path(&pki.ca));
        args.extend(["-keyout", &ca_key_s, "-out", &ca_s]);
        openssl(&args)?;

        let sign = |name: &str, subject: &str, extensions: &str, key: &Path, cert: &Path| {
            let csr = dir.join(format!("{name}.csr"));
            let ext = dir.join(format!("{name}.ext"));
            write(&ext, extensions)?;
            let (key_s, csr_s, cert_s, ext_s) = (path(key), path(&csr), path(cert), path(&ext));
            let mut req = vec!["req", "-subj", subject, "-keyout", &key_s, "-out", &csr_s];
            req.extend(ec);
            openssl(&req)?;
            openssl(&[
                "x509",
                "-req",
                "-days",
                "2",
                "-in",
                &csr_s,
                "-CA",
                &ca_s,
                "-CAkey",
                &ca_key_s,
                "-CAcreateserial",
                "-extfile",
                &ext_s,
                "-out",
                &cert_s,
            ])
        };
        sign(
            "apiserver",
            "/CN=kube-apiserver",
            &format!(
                "subjectAltName=IP:{address},IP:198.19.128.1,DNS:kubernetes,\
                 DNS:kubernetes.default,DNS:kubernetes.default.svc\n\
                 basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
                 extendedKeyUsage=serverAuth\n"
            ),
            &pki.server_key,
            &pki.server_cert,
        )?;
        sign(
            "admin",
            "/O=system:masters/CN=lab-admin",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
            &pki.admin_key,
            &pki.admin_cert,
        )?;
        let (sa_key, sa_pub) = (path(&pki.sa_key), path(&pki.sa_pub));
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &sa_key,
        ])?;
        openssl(&["pkey", "-in", &sa_key, "-pubout", "-out", &sa_pub])?;
        Ok(pki)
    }
}

fn openssl(args: &[&str]) -> Result<()> {
    crate::command::run("openssl", args).map(drop)
}

fn start_etcd(ns: &Namespace, bins: &KubeBins, dir: &Path) -> Result<Process> {
    let data = dir.join("etcd");
    let data = data.display().to_string();
    let client = format!("http://{ETCD_CLIENT}");
    let etcd = ns.spawn(
        "etcd",
        &bins.etcd.display().to_string(),
        &[
            "--name",
            "lab",
            "--data-dir",
            &data,
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-cluster",
            "lab=http://127.0.0.1:2380",
            "--log-level",
            "warn",
            // A lab cluster lives for one test: durability across power loss
            // is not worth an fsync per write on a shared 2-core machine.
            "--unsafe-no-fsync",
        ],
    )?;
    let addr: SocketAddr = ETCD_CLIENT.parse().expect("a literal");
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "etcd to answer /health",
        || {
            etcd.ensure_running().map_err(|e| e.to_string())?;
            let response = ns
                .run_in(move || {
                    crate::http::request(addr, "GET", "/health", b"", Duration::from_secs(2))
                })
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            if response.status == 200 && response.text().contains("\"true\"") {
                Ok(())
            } else {
                Err(format!("HTTP {}: {}", response.status, response.text()))
            }
        },
    )?;
    Ok(etcd)
}

fn start_apiserver(
    ns: &Namespace,
    bins: &KubeBins,
    dir: &Path,
    pki: &Pki,
    address: IpAddr,
) -> Result<Process> {
    let flag = |name: &str, value: &Path| format!("--{name}={}", value.display());
    let args = [
        format!("--etcd-servers=http://{ETCD_CLIENT}"),
        format!("--bind-address={address}"),
        format!("--advertise-address={address}"),
        format!("--secure-port={API_PORT}"),
        flag("tls-cert-file", &pki.server_cert),
        flag("tls-private-key-file", &pki.server_key),
        flag("client-ca-file", &pki.ca),
        "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
        flag("service-account-key-file", &pki.sa_pub),
        flag("service-account-signing-key-file", &pki.sa_key),
        "--authorization-mode=Node,RBAC".to_owned(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        flag("cert-dir", &dir.join("apiserver-certs")),
        flag("audit-log-path", &dir.join("audit.log")),
        flag("audit-policy-file", &dir.join("audit-policy.yaml")),
        "--profiling=false".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ns.spawn(
        "kube-apiserver",
        &bins.apiserver.display().to_string(),
        &args,
    )
}

/// The audit policy: every request of herald's ServiceAccount at Metadata
/// level (user, verb, URI, response code), nothing else, so the log stays
/// small while tests load the API with thousands of objects.
fn audit_policy_text() -> String {
    format!(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n\
         - level: Metadata\n  users: [\"system:serviceaccount:{HERALD_NAMESPACE}:{HERALD_SERVICE_ACCOUNT}\"]\n\
         - level: None\n"
    )
}

/// The 403s to herald's ServiceAccount in an audit log (JSON lines),
/// except those received within one of `restarts` (see [`Cluster`]'s
/// field; an open window, ending at the epoch, covers everything after its
/// start).
fn forbidden_in_audit(text: &str, restarts: &[(SystemTime, SystemTime)]) -> Vec<String> {
    let user = format!("system:serviceaccount:{HERALD_NAMESPACE}:{HERALD_SERVICE_ACCOUNT}");
    let during_restart = |event: &serde_json::Value| {
        let Some(received) = event["requestReceivedTimestamp"]
            .as_str()
            .and_then(audit_time)
        else {
            return false;
        };
        restarts
            .iter()
            .any(|&(from, to)| received >= from && (to == SystemTime::UNIX_EPOCH || received <= to))
    };
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| {
            event["responseStatus"]["code"] == 403
                && event["user"]["username"] == user.as_str()
                && !during_restart(event)
        })
        .map(|event| {
            format!(
                "{} {}: {}",
                event["verb"].as_str().unwrap_or("?"),
                event["requestURI"].as_str().unwrap_or("?"),
                event["annotations"]["authorization.k8s.io/reason"]
                    .as_str()
                    .or(event["responseStatus"]["message"].as_str())
                    .unwrap_or("forbidden")
            )
        })
        .collect()
}

/// An audit timestamp (`2026-12-06T18:50:01.123456Z`, UTC).
fn audit_time(stamp: &str) -> Option<SystemTime> {
    let stamp = stamp
        .strip_suffix('Z')?
        .replacen('-', "/", 2)
        .replacen('T', " ", 1);
    crate::frr_log::stamp(&stamp)
}

fn kubeconfig_text(server: &str, ca: &Path, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: {server}\n    \
         certificate-authority: {ca}\nusers:\n- name: lab\n  user:\n    {user}\ncontexts:\n\
         - name: lab\n  context:\n    cluster: lab\n    user: lab\ncurrent-context: lab\n",
        ca = ca.display()
    )
}

fn mkdir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| LabError::Io {
        context: "cannot create a directory",
        path: dir.to_owned(),
        source,
    })
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| LabError::Io {
        context: "cannot write a file",
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_log_yields_only_herald_s_403s() {
        let log = [
            r#"{"verb":"list","requestURI":"/api/v1/pods","user":{"username":"system:serviceaccount:herald-system:herald"},"responseStatus":{"code":403},"annotations":{"authorization.k8s.io/reason":""}}"#,
            r#"{"verb":"list","requestURI":"/api/v1/services","user":{"username":"system:serviceaccount:herald-system:herald"},"responseStatus":{"code":200}}"#,
            r#"{"verb":"get","requestURI":"/api/v1/secrets","user":{"username":"lab-admin"},"responseStatus":{"code":403}}"#,
            "not json",
        ]
        .join("\n");
        assert_eq!(
            forbidden_in_audit(&log, &[]),
            ["list /api/v1/pods: "],
            "only the ServiceAccount's 403"
        );
    }

    #[test]
    fn a_403_while_the_api_server_restarts_is_not_reported() {
        let event = |stamp: &str| {
            format!(
                r#"{{"verb":"watch","requestURI":"/api/v1/nodes","requestReceivedTimestamp":"{stamp}","user":{{"username":"system:serviceaccount:herald-system:herald"}},"responseStatus":{{"code":403}}}}"#
            )
        };
        let log = [
            event("2026-12-06T18:50:01.500000Z"),
            event("2026-12-06T18:50:09.000000Z"),
        ]
        .join("\n");
        let from = audit_time("2026-12-06T18:50:01.000000Z").unwrap();
        let to = audit_time("2026-12-06T18:50:02.000000Z").unwrap();
        assert_eq!(
            forbidden_in_audit(&log, &[(from, to)]).len(),
            1,
            "only the later one"
        );
        assert_eq!(
            forbidden_in_audit(&log, &[(from, SystemTime::UNIX_EPOCH)]).len(),
            0,
            "an open window covers both"
        );
        assert_eq!(
            audit_time("1970-01-01T00:00:01.5Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1500))
        );
    }

    #[test]
    fn kubeconfigs_name_the_server_the_ca_and_the_user() {
        let text = kubeconfig_text(
            "https://198.18.0.2:6443",
            Path::new("/lab/ca.crt"),
            "token: abc",
        );
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(
            doc["clusters"][0]["cluster"]["server"].as_str(),
            Some("https://198.18.0.2:6443")
        );
        assert_eq!(
            doc["clusters"][0]["cluster"]["certificate-authority"].as_str(),
            Some("/lab/ca.crt")
        );
        assert_eq!(doc["users"][0]["user"]["token"].as_str(), Some("abc"));
    }

    #[test]
    fn the_audit_policy_records_only_herald() {
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&audit_policy_text()).unwrap();
        assert_eq!(
            doc["rules"][0]["users"][0].as_str(),
            Some("system:serviceaccount:herald-system:herald")
        );
        assert_eq!(doc["rules"][1]["level"].as_str(), Some("None"));
    }
}
