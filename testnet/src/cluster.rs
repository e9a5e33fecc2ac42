//! [`Cluster`]: the Kubernetes API stand-in (`herald-apiserver`) as a lab
//! host, reachable from the nodes through the router, driven with kubectl.
//!
//! What this module owns: one stand-in per cluster, listening inside a lab
//! namespace (its socket is created on a thread that entered the namespace,
//! so nodes reach it at a lab address, like a real control plane behind the
//! ToR), a kubeconfig for herald and kubectl, and kubectl runs inside that
//! namespace with their own cache directory and a request timeout. What it
//! must not touch: `~/.kube` or any real cluster (every kubectl call names
//! the lab's kubeconfig).
//!
//! ```text
//!  Cluster::start(api_ns, 198.18.0.2:6443)   StandIn::start inside api_ns; kubeconfig in <lab>/api/
//!  cluster.apply(yaml) / kubectl(args)       `ip netns exec API kubectl --kubeconfig .. ARGS`
//!  cluster.standin().faults()                go_down / come_up (a control-plane outage)
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_apiserver::{Options, StandIn};

use crate::error::{LabError, Result};
use crate::netns::Namespace;

/// Where Debian's kubernetes-client puts kubectl (1.32).
pub const KUBECTL: &str = "/usr/bin/kubectl";

/// The port the stand-in listens on.
pub const API_PORT: u16 = 6443;

/// Every kubectl call gives up after this (`--request-timeout`), so a
/// stand-in that is down never hangs a test.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(20);

/// A Kubernetes API (the stand-in) in a lab namespace. Stops when dropped.
pub struct Cluster {
    ns: Namespace,
    standin: StandIn,
    kubeconfig: PathBuf,
    dir: PathBuf,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("namespace", &self.ns.name())
            .field("url", &self.standin.url())
            .finish()
    }
}

impl Cluster {
    /// Starts the stand-in listening on `listen` inside `ns` and writes a
    /// kubeconfig for it in the node's directory. Fails if kubectl is not
    /// installed (scripts/install-packages installs it).
    pub fn start(ns: &Namespace, listen: SocketAddr) -> Result<Cluster> {
        if !Path::new(KUBECTL).exists() {
            return Err(LabError::Node {
                node: ns.node().to_owned(),
                message: format!(
                    "{KUBECTL} is missing (apt-get install kubernetes-client, or \
                     sudo bash scripts/install-packages)"
                ),
            });
        }
        let standin = ns
            .run_in(move || {
                StandIn::start(Options {
                    listen,
                    ..Options::default()
                })
            })?
            .map_err(|e| LabError::Node {
                node: ns.node().to_owned(),
                message: format!("the API stand-in did not start: {e}"),
            })?;
        let dir = ns.dir().join("kube");
        std::fs::create_dir_all(&dir).map_err(|source| LabError::Io {
            context: "cannot create the kubeconfig directory",
            path: dir.clone(),
            source,
        })?;
        let kubeconfig = standin.kubeconfig(&dir).map_err(|e| LabError::Node {
            node: ns.node().to_owned(),
            message: e.to_string(),
        })?;
        Ok(Cluster {
            ns: ns.clone(),
            standin,
            kubeconfig,
            dir,
        })
    }

    /// The stand-in itself: its store and fault injection.
    pub fn standin(&self) -> &StandIn {
        &self.standin
    }

    /// The kubeconfig (for herald's `KUBECONFIG` and kubectl).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `http://ADDR:PORT`.
    pub fn url(&self) -> String {
        self.standin.url()
    }

    /// `kubectl --kubeconfig K --cache-dir D --request-timeout 20s ARGS`
    /// inside the API's namespace; returns stdout.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let kubeconfig = self.kubeconfig.display().to_string();
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
        self.ns
            .exec_with_env(&[("HOME".to_owned(), home)], KUBECTL, &full)
    }

    /// Writes `manifest` (YAML, several documents allowed) to a file and runs
    /// `kubectl apply -f FILE`.
    pub fn apply(&self, manifest: &str) -> Result<String> {
        let mut n = 1;
        let path = loop {
            let candidate = self.dir.join(format!("manifest-{n}.yaml"));
            if !candidate.exists() {
                break candidate;
            }
            n += 1;
        };
        std::fs::write(&path, manifest).map_err(|source| LabError::Io {
            context: "cannot write the manifest",
            path: path.clone(),
            source,
        })?;
        self.kubectl(&["apply", "-f", &path.display().to_string()])
    }
}
