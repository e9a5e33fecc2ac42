//! [`CutProxy`]: a TCP relay between herald and the API server that a test
//! can cut. It listens inside a lab namespace, forwards every connection to
//! one upstream address, and on [`CutProxy::cut`] shuts every open
//! connection down (both directions, as a middlebox or a rebooted load
//! balancer would); while refusing, it closes new connections at once. TLS
//! passes through untouched: the API server's certificate must name the
//! address herald dials, so the proxy listens on the API server's own
//! address, on another port.
//!
//! What this module owns: its listening socket and one relay thread pair per
//! connection, all inside the namespace it was started in. What it must not
//! do: read or change the bytes it relays, or outlive the test (dropping it
//! cuts everything and stops the acceptor within a second).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{LabError, Result};
use crate::netns::Namespace;

/// How often the acceptor looks at the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(50);

struct Shared {
    upstream: SocketAddr,
    /// Both sockets of every relayed connection (client side, upstream side).
    open: Mutex<Vec<(TcpStream, TcpStream)>>,
    refusing: AtomicBool,
    stopping: AtomicBool,
    accepted: AtomicU64,
    cut: AtomicU64,
}

/// A cuttable TCP relay (see the module doc).
pub struct CutProxy {
    listen: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for CutProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CutProxy")
            .field("listen", &self.listen)
            .field("upstream", &self.shared.upstream)
            .finish()
    }
}

impl CutProxy {
    /// Listens on `listen` inside `ns` and relays to `upstream`.
    pub fn start(ns: &Namespace, listen: SocketAddr, upstream: SocketAddr) -> Result<CutProxy> {
        let listener = ns
            .run_in(move || TcpListener::bind(listen))?
            .map_err(|source| LabError::Io {
                context: "cannot listen for the proxy",
                path: listen.to_string().into(),
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| LabError::Io {
                context: "cannot make the proxy's socket non-blocking",
                path: listen.to_string().into(),
                source,
            })?;
        let shared = Arc::new(Shared {
            upstream,
            open: Mutex::new(Vec::new()),
            refusing: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            cut: AtomicU64::new(0),
        });
        // The relay threads connect upstream, so they must be in the
        // namespace too: the acceptor is, and threads inherit it.
        let acceptor = {
            let shared = Arc::clone(&shared);
            ns.spawn_thread(move || accept_loop(listener, shared))
        };
        Ok(CutProxy {
            listen,
            shared,
            acceptor: Some(std::thread::spawn(move || {
                let _ = acceptor.join();
            })),
        })
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.listen
    }

    /// Shuts every open connection down; returns how many there were.
    pub fn cut(&self) -> usize {
        let mut open = self.shared.open.lock().expect("proxy lock");
        let n = open.len();
        for (client, server) in open.drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
        self.shared.cut.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// While `refusing`, every new connection is closed as soon as it is
    /// accepted (the API looks down to the client).
    pub fn refuse(&self, refusing: bool) {
        self.shared.refusing.store(refusing, Ordering::Relaxed);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections cut so far.
    pub fn cut_count(&self) -> u64 {
        self.shared.cut.load(Ordering::Relaxed)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.cut();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stopping.load(Ordering::Relaxed) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(_) => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        if shared.refusing.load(Ordering::Relaxed) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let _ = client.set_nonblocking(false);
        let Ok(server) = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5))
        else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let handles = (client.try_clone(), server.try_clone());
        let (Ok(client_copy), Ok(server_copy)) = handles else {
            continue;
        };
        {
            let mut open = shared.open.lock().expect("proxy lock");
            open.retain(|(a, b)| a.peer_addr().is_ok() && b.peer_addr().is_ok());
            if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
                open.push((a, b));
            }
        }
        std::thread::spawn(move || relay(client, server_copy));
        std::thread::spawn(move || relay(server, client_copy));
    }
}

/// Copies `from` to `to` until either side ends, then shuts both down.
fn relay(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
