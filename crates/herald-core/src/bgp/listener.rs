//! The passive side of herald's BGP speaker: listening sockets on the BGP
//! port of the local addresses that peers with `listen` reach herald on,
//! and what each socket lets through.
//!
//! Owns: the listening sockets ([`Listeners`]), the TCP MD5 keys and the
//! GTSM floor installed on each, the accept loops that hand a connection to
//! its peer's session through the [`IncomingTable`], and the accounting of
//! refused connections (a counter, and a log line at most once a minute per
//! source). Must not touch: the sessions themselves or which peers exist
//! (the speaker adds and removes peers here).
//!
//! No socket listens on the wildcard address: a node whose peers all
//! connect out listens nowhere, and a host on another address of the node
//! reaches nothing. A socket exists while at least one peer is accepted on
//! its address.
//!
//! Keys: the kernel checks the SYN against the listener's keys before
//! herald sees anything, so a rotated key file cannot be read "when the
//! peer connects". Instead every socket reads its peers' keys again every
//! [`KEY_REFRESH`] and installs the ones that changed; the session reads
//! its own key before each outgoing attempt.
//!
//! GTSM: `IP_MINTTL` is one value per socket, while peers sharing a local
//! address may differ; the socket gets the lowest floor among them (none if
//! one of them does not use GTSM), and each accepted connection then gets
//! its own peer's floor (`session.rs`).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::metrics::{Metrics, REFUSED_HELD, REFUSED_NOT_A_PEER};
use super::transport::{BgpListener, Md5Key, TransportError};

/// How often a listening socket reads its peers' key files again.
pub const KEY_REFRESH: Duration = Duration::from_secs(1);
/// A refused source is logged at most once per this.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// The most sources whose last log line is remembered; beyond, new
/// sources are counted but not logged until old entries expire (a flood
/// from many forged addresses must not grow memory or the log).
const REFUSAL_LOG_SOURCES: usize = 4096;

/// Where an accepted connection from a configured peer goes.
#[derive(Clone)]
pub enum Incoming {
    /// To the peer's session ([`super::session::SessionHandle::incoming_sender`]).
    Session(mpsc::UnboundedSender<TcpStream>),
    /// Nowhere: the peer is configured but its session is held (strict BFD
    /// mode waits for BFD Up), so the connection is closed, as an Idle
    /// session refuses one (RFC 4271 §8.2.2).
    Held,
}

/// Peer address -> where its connections go.
pub type IncomingTable = Arc<RwLock<HashMap<IpAddr, Incoming>>>;

/// What a listening socket needs to know about one peer accepted on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenPeer {
    pub key: Option<Md5Key>,
    /// The peer's GTSM floor (`None`: no GTSM).
    pub min_ttl: Option<u8>,
}

/// One peer's entry on a socket: its settings and the key installed now.
struct Accepted {
    spec: ListenPeer,
    installed: Option<Vec<u8>>,
}

/// One listening socket and the peers accepted on it.
struct Socket {
    listener: Arc<BgpListener>,
    peers: Arc<Mutex<BTreeMap<IpAddr, Accepted>>>,
    task: JoinHandle<()>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The listening sockets, one per local address that a `listen` peer uses.
pub struct Listeners {
    port: u16,
    incoming: IncomingTable,
    refusals: Arc<Refusals>,
    sockets: HashMap<IpAddr, Socket>,
    /// Peer -> the local address it is accepted on.
    peers: HashMap<IpAddr, IpAddr>,
}

impl Listeners {
    /// No socket yet; sockets bind `port` (179 for herald) of a local
    /// address when the first peer needs it.
    pub fn new(port: u16, metrics: Arc<Metrics>, incoming: IncomingTable) -> Self {
        Listeners {
            port,
            incoming,
            refusals: Arc::new(Refusals::new(metrics)),
            sockets: HashMap::new(),
            peers: HashMap::new(),
        }
    }

    /// Accepts `peer`'s connections on `local`: binds the socket if this is
    /// its first peer, installs the peer's MD5 key and lowers the socket's
    /// GTSM floor if needed. An error (the address cannot be bound, the key
    /// cannot be read) leaves nothing installed for the peer.
    pub fn add_peer(
        &mut self,
        local: IpAddr,
        peer: IpAddr,
        spec: ListenPeer,
    ) -> Result<(), TransportError> {
        self.remove_peer(peer);
        let key = match &spec.key {
            Some(key) => Some(key.current(peer)?),
            None => None,
        };
        if !self.sockets.contains_key(&local) {
            let socket = self.bind(local)?;
            self.sockets.insert(local, socket);
        }
        let socket = &self.sockets[&local];
        let installed = match key {
            Some(key) => {
                socket.listener.set_md5_key(peer, &key)?;
                Some(key)
            }
            None => None,
        };
        let mut peers = socket.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.insert(peer, Accepted { spec, installed });
        let floor = floor(&peers);
        drop(peers);
        socket.listener.set_min_ttl(floor)?;
        self.peers.insert(peer, local);
        Ok(())
    }

    /// Stops accepting `peer`: its key leaves the socket, the floor is
    /// raised again if it was the lowest, and the socket closes when it was
    /// the last peer on it.
    pub fn remove_peer(&mut self, peer: IpAddr) {
        let Some(local) = self.peers.remove(&peer) else {
            return;
        };
        let Some(socket) = self.sockets.get(&local) else {
            return;
        };
        let mut peers = socket.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(accepted) = peers.remove(&peer)
            && accepted.installed.is_some()
            && let Err(error) = socket.listener.set_md5_key(peer, &[])
        {
            tracing::warn!(%peer, "BGP listener: cannot remove the TCP MD5 key: {error}");
        }
        let empty = peers.is_empty();
        let floor = floor(&peers);
        drop(peers);
        if empty {
            self.sockets.remove(&local);
        } else if let Err(error) = socket.listener.set_min_ttl(floor) {
            tracing::warn!(%local, "BGP listener: {error}");
        }
    }

    /// Where the socket for `local` listens (its port, when bound to 0).
    pub fn local_addr(&self, local: IpAddr) -> Option<SocketAddr> {
        self.sockets.get(&local)?.listener.local_addr().ok()
    }

    /// Every address a socket listens on.
    pub fn bound(&self) -> Vec<SocketAddr> {
        self.sockets
            .values()
            .filter_map(|s| s.listener.local_addr().ok())
            .collect()
    }

    fn bind(&self, local: IpAddr) -> Result<Socket, TransportError> {
        let listener = Arc::new(BgpListener::bind(SocketAddr::new(local, self.port))?);
        tracing::info!(address = %SocketAddr::new(local, self.port), "BGP listener bound");
        let peers = Arc::new(Mutex::new(BTreeMap::new()));
        let task = tokio::spawn(serve(
            listener.clone(),
            peers.clone(),
            self.incoming.clone(),
            self.refusals.clone(),
        ));
        Ok(Socket {
            listener,
            peers,
            task,
        })
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        self.sockets.clear();
    }
}

/// The socket's GTSM floor: the lowest among its peers, 0 (off) if one of
/// them has none.
fn floor(peers: &BTreeMap<IpAddr, Accepted>) -> u8 {
    peers
        .values()
        .map(|a| a.spec.min_ttl.unwrap_or(0))
        .min()
        .unwrap_or(0)
}

/// Accepts connections on one socket and hands each to its peer's session;
/// refreshes the peers' keys every [`KEY_REFRESH`].
async fn serve(
    listener: Arc<BgpListener>,
    peers: Arc<Mutex<BTreeMap<IpAddr, Accepted>>>,
    incoming: IncomingTable,
    refusals: Arc<Refusals>,
) {
    let mut refresh = tokio::time::interval(KEY_REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, from)) => {
                    let known = peers
                        .lock()
                        .map(|p| p.contains_key(&from.ip()))
                        .unwrap_or(false);
                    if known {
                        route(stream, from, &incoming, &refusals);
                    } else {
                        refusals.refuse(from, REFUSED_NOT_A_PEER, "not a peer accepted on this address");
                    }
                }
                Err(e) => {
                    tracing::warn!("BGP listener: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = refresh.tick() => refresh_keys(&listener, &peers),
        }
    }
}

/// Reads every peer's key again and installs the ones that changed. A key
/// that cannot be read now keeps the one installed (the session's own
/// attempts report the error).
fn refresh_keys(listener: &BgpListener, peers: &Mutex<BTreeMap<IpAddr, Accepted>>) {
    let mut peers = peers.lock().unwrap_or_else(|e| e.into_inner());
    for (peer, accepted) in peers.iter_mut() {
        let Some(source) = &accepted.spec.key else {
            continue;
        };
        match source.current(*peer) {
            Ok(key) if accepted.installed.as_ref() != Some(&key) => {
                match listener.set_md5_key(*peer, &key) {
                    Ok(()) => {
                        tracing::info!(%peer, "BGP listener: the peer's TCP MD5 key changed; installed");
                        accepted.installed = Some(key);
                    }
                    Err(error) => tracing::warn!(%peer, "BGP listener: {error}"),
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%peer, "BGP listener: keeping the installed key: {error}")
            }
        }
    }
}

/// Hands a connection from a configured peer to its session (or refuses it
/// while the session is held).
fn route(stream: TcpStream, from: SocketAddr, incoming: &IncomingTable, refusals: &Refusals) {
    let target = incoming
        .read()
        .ok()
        .and_then(|map| map.get(&from.ip()).cloned());
    match target {
        Some(Incoming::Session(tx)) => {
            let _ = tx.send(stream);
        }
        Some(Incoming::Held) => refusals.refuse(
            from,
            REFUSED_HELD,
            "the session waits for BFD Up (bfd.strict)",
        ),
        None => refusals.refuse(from, REFUSED_NOT_A_PEER, "not a configured peer"),
    }
}

/// Counts refused connections and logs each source at most once per
/// [`REFUSAL_LOG_INTERVAL`], with how many were refused meanwhile.
pub struct Refusals {
    metrics: Arc<Metrics>,
    /// Source address -> (when last logged, refused since).
    logged: Mutex<HashMap<IpAddr, (Instant, u64)>>,
}

impl Refusals {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Refusals {
            metrics,
            logged: Mutex::new(HashMap::new()),
        }
    }

    /// One refused connection from `from` (the caller drops the stream,
    /// which closes it).
    pub fn refuse(&self, from: SocketAddr, reason: &'static str, why: &str) {
        self.metrics.refused(reason);
        if let Some(suppressed) = self.should_log(from.ip(), Instant::now()) {
            if suppressed > 0 {
                tracing::info!(
                    "refused a BGP connection from {from}: {why} ({suppressed} more from {} in the last minute)",
                    from.ip()
                );
            } else {
                tracing::info!("refused a BGP connection from {from}: {why}");
            }
        }
    }

    /// `Some(refused since the last line)` when a line may be logged now.
    fn should_log(&self, source: IpAddr, now: Instant) -> Option<u64> {
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, suppressed)) = logged.get_mut(&source) {
            if now.saturating_duration_since(*at) < REFUSAL_LOG_INTERVAL {
                *suppressed += 1;
                return None;
            }
            let count = *suppressed;
            *at = now;
            *suppressed = 0;
            return Some(count);
        }
        if logged.len() >= REFUSAL_LOG_SOURCES {
            logged.retain(|_, (at, _)| now.saturating_duration_since(*at) < REFUSAL_LOG_INTERVAL);
            if logged.len() >= REFUSAL_LOG_SOURCES {
                return None;
            }
        }
        logged.insert(source, (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_logged_at_most_once_a_minute_with_the_count_between() {
        let refusals = Refusals::new(Arc::new(Metrics::default()));
        let a: IpAddr = "192.0.2.7".parse().unwrap();
        let b: IpAddr = "192.0.2.8".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(refusals.should_log(a, t0), Some(0));
        assert_eq!(refusals.should_log(b, t0), Some(0));
        for s in 1..=5 {
            assert_eq!(refusals.should_log(a, t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(
            refusals.should_log(a, t0 + REFUSAL_LOG_INTERVAL + Duration::from_secs(1)),
            Some(5)
        );
    }

    #[test]
    fn many_sources_do_not_grow_the_table_past_its_bound() {
        let refusals = Refusals::new(Arc::new(Metrics::default()));
        let t0 = Instant::now();
        for i in 0..(REFUSAL_LOG_SOURCES as u32 + 100) {
            refusals.should_log(IpAddr::V4(std::net::Ipv4Addr::from(0xC612_0000 + i)), t0);
        }
        assert_eq!(refusals.logged.lock().unwrap().len(), REFUSAL_LOG_SOURCES);
        // Once the old entries expire, new sources are logged again.
        let later = t0 + REFUSAL_LOG_INTERVAL + Duration::from_secs(1);
        assert_eq!(
            refusals.should_log("198.51.100.1".parse().unwrap(), later),
            Some(0)
        );
    }

    #[test]
    fn the_socket_floor_is_the_lowest_and_off_when_a_peer_has_none() {
        let entry = |min_ttl| Accepted {
            spec: ListenPeer { key: None, min_ttl },
            installed: None,
        };
        let mut peers = BTreeMap::new();
        assert_eq!(floor(&peers), 0);
        peers.insert("192.0.2.1".parse().unwrap(), entry(Some(255)));
        assert_eq!(floor(&peers), 255);
        peers.insert("192.0.2.2".parse().unwrap(), entry(Some(253)));
        assert_eq!(floor(&peers), 253);
        peers.insert("192.0.2.3".parse().unwrap(), entry(None));
        assert_eq!(floor(&peers), 0);
    }
}
