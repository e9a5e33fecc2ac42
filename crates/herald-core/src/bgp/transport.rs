//! TCP for BGP sessions: connecting to a peer, listening for peers, and the
//! socket options that protect and mark BGP traffic.
//!
//! Owns: socket creation and options (TCP MD5, GTSM / TTL, DSCP, source
//! address). Must not touch: BGP messages or session state; the session
//! driver reads and writes the streams this returns.
//!
//! # Supported standards
//! - RFC 4271 §8.2.1: TCP port 179 (configurable)
//! - RFC 2385 TCP MD5 signature option (`TCP_MD5SIG`), set on the client
//!   socket before `connect()` and on the listener for each peer
//! - RFC 5082 GTSM: send with TTL / hop limit 255 and have the kernel drop
//!   segments below 255 - (hops - 1) (`IP_MINTTL`, `IPV6_MINHOPCOUNT`)
//! - RFC 4271 / common practice: eBGP multihop TTL
//! - RFC 4594 §3.2 (network control): DSCP CS6 on BGP packets (TOS 0xC0,
//!   `IPV6_TCLASS` 0xC0)
//!
//! The three options socket2 and nix lack are declared with nix's
//! `sockopt_impl!`, so no `unsafe` is written here. Left out: TCP-AO (RFC
//! 5925), which this kernel does not offer.
//!
//! GTSM on the passive side: the listening socket carries a TTL floor too
//! ([`BgpListener::set_min_ttl`]), so the kernel drops a SYN from farther
//! away and the handshake never completes; each accepted connection then
//! gets its own peer's floor.
//!
//! TCP MD5 keys are [`Md5Key`]s: either fixed, or read again each time a
//! socket needs one, so a key file rotated in place takes effect at the
//! next connection attempt without a restart.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use nix::libc;
use nix::sys::socket::setsockopt;
use nix::{setsockopt_impl, sockopt_impl};
use socket2::SockRef;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The BGP port (RFC 4271 §8.2.1).
pub const BGP_PORT: u16 = 179;
/// DSCP CS6 in the TOS / traffic class octet.
pub const TOS_CS6: u8 = 0xC0;
/// The longest key `TCP_MD5SIG` takes (`TCP_MD5SIG_MAXKEYLEN`).
pub const MD5_MAX_KEY_LEN: usize = 80;

/// Transport errors; each names what failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("TCP MD5 key for {peer} is {len} octets; the kernel takes at most 80")]
    Md5KeyTooLong { peer: IpAddr, len: usize },
    #[error("setting {option} on the socket for {peer}")]
    SocketOption {
        option: &'static str,
        peer: IpAddr,
        #[source]
        source: io::Error,
    },
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {peer}")]
    Connect {
        peer: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {peer}: no answer within {timeout:?}")]
    ConnectTimeout { peer: SocketAddr, timeout: Duration },
    #[error("TCP MD5 key for {peer}: {reason}")]
    Md5KeyUnreadable { peer: IpAddr, reason: String },
}

/// A TCP MD5 key: fixed, or read again every time a socket needs it (the
/// agent reads the peer's `password_file`), so a rotated key file is used
/// from the next connection attempt on. Its `Debug` never shows the key.
#[derive(Clone)]
pub enum Md5Key {
    Fixed(Vec<u8>),
    /// Reads the key now; the error says why it cannot (it names the file).
    Read(Arc<dyn Fn() -> Result<Vec<u8>, String> + Send + Sync>),
}

impl Md5Key {
    /// A key read by `read` each time it is needed.
    pub fn read(read: impl Fn() -> Result<Vec<u8>, String> + Send + Sync + 'static) -> Self {
        Md5Key::Read(Arc::new(read))
    }

    /// The key as of now.
    pub fn current(&self, peer: IpAddr) -> Result<Vec<u8>, TransportError> {
        match self {
            Md5Key::Fixed(key) => Ok(key.clone()),
            Md5Key::Read(read) => {
                read().map_err(|reason| TransportError::Md5KeyUnreadable { peer, reason })
            }
        }
    }
}

impl PartialEq for Md5Key {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Md5Key::Fixed(a), Md5Key::Fixed(b)) => a == b,
            (Md5Key::Read(a), Md5Key::Read(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Md5Key {}

impl fmt::Debug for Md5Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Md5Key::Fixed(key) => write!(f, "Md5Key::Fixed({} octets)", key.len()),
            Md5Key::Read(_) => f.write_str("Md5Key::Read"),
        }
    }
}

/// `struct tcp_md5sig` from `<linux/tcp.h>`: a 128-octet
/// `__kernel_sockaddr_storage`, flags, prefix length, key length, ifindex
/// and an 80-octet key (216 octets in all).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TcpMd5Sig {
    addr: [u8; 128],
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: i32,
    key: [u8; MD5_MAX_KEY_LEN],
}

impl TcpMd5Sig {
    /// The key for segments to and from `peer`. An empty key removes it.
    /// `mapped` writes an IPv4 peer as an IPv4-mapped IPv6 address, as a
    /// dual-stack (`[::]`) listener needs.
    pub fn new(peer: IpAddr, key: &[u8], mapped: bool) -> Result<Self, TransportError> {
        if key.len() > MD5_MAX_KEY_LEN {
            return Err(TransportError::Md5KeyTooLong {
                peer,
                len: key.len(),
            });
        }
        let mut addr = [0u8; 128];
        let v6 = match peer {
            IpAddr::V4(v4) if mapped => Some(v4.to_ipv6_mapped()),
            IpAddr::V4(v4) => {
                addr[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
                addr[4..8].copy_from_slice(&v4.octets());
                None
            }
            IpAddr::V6(v6) => Some(v6),
        };
        if let Some(v6) = v6 {
            addr[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            addr[8..24].copy_from_slice(&v6.octets());
        }
        let mut sig = TcpMd5Sig {
            addr,
            flags: 0,
            prefixlen: 0,
            keylen: key.len() as u16,
            ifindex: 0,
            key: [0; MD5_MAX_KEY_LEN],
        };
        sig.key[..key.len()].copy_from_slice(key);
        Ok(sig)
    }
}

sockopt_impl!(
    /// `TCP_MD5SIG` (RFC 2385).
    TcpMd5SigOpt,
    SetOnly,
    libc::IPPROTO_TCP,
    libc::TCP_MD5SIG,
    TcpMd5Sig
);
sockopt_impl!(
    /// `IP_MINTTL`: the kernel drops IPv4 segments with a lower TTL.
    IpMinTtl,
    SetOnly,
    libc::IPPROTO_IP,
    libc::IP_MINTTL,
    libc::c_int
);
sockopt_impl!(
    /// `IPV6_MINHOPCOUNT`: the kernel drops IPv6 segments with a lower hop
    /// limit.
    Ipv6MinHopCount,
    SetOnly,
    libc::IPPROTO_IPV6,
    libc::IPV6_MINHOPCOUNT,
    libc::c_int
);

/// TTL handling for one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TtlPolicy {
    /// TTL / hop limit of what we send.
    pub send: u8,
    /// The lowest TTL accepted from the peer (GTSM), if any.
    pub min_receive: Option<u8>,
}

impl TtlPolicy {
    /// From the peer's `ebgp_multihop` (hops to the peer, 1 = directly
    /// connected) and `ttl_security`. RFC 5082 §3: "The GTSM ... sets the
    /// TTL ... to 255" and the receiver checks "TTL >= 255 - (hops - 1)".
    /// iBGP sessions without GTSM send 255, as routers do for internal peers.
    pub fn new(hops: u8, ttl_security: bool, internal: bool) -> Self {
        let hops = hops.max(1);
        if ttl_security {
            TtlPolicy {
                send: 255,
                min_receive: Some(255 - (hops - 1)),
            }
        } else {
            TtlPolicy {
                send: if internal { 255 } else { hops },
                min_receive: None,
            }
        }
    }
}

/// Everything a BGP socket to one peer needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketOptions {
    pub ttl: TtlPolicy,
    /// TCP MD5 key (the contents of `password_file`).
    pub md5_key: Option<Vec<u8>>,
    /// Local address to connect from.
    pub source: Option<IpAddr>,
}

fn option_error(option: &'static str, peer: IpAddr) -> impl FnOnce(io::Error) -> TransportError {
    move |source| TransportError::SocketOption {
        option,
        peer,
        source,
    }
}

/// TTL, GTSM floor and DSCP on a connected or connecting socket.
pub fn apply_ttl_and_dscp<S: AsFd>(
    socket: &S,
    peer: IpAddr,
    ttl: TtlPolicy,
) -> Result<(), TransportError> {
    let sock = SockRef::from(socket);
    match peer {
        IpAddr::V4(_) => {
            sock.set_ttl_v4(u32::from(ttl.send))
                .map_err(option_error("IP_TTL", peer))?;
            sock.set_tos_v4(u32::from(TOS_CS6))
                .map_err(option_error("IP_TOS", peer))?;
            if let Some(min) = ttl.min_receive {
                setsockopt(socket, IpMinTtl, &libc::c_int::from(min))
                    .map_err(|e| option_error("IP_MINTTL", peer)(e.into()))?;
            }
        }
        IpAddr::V6(_) => {
            sock.set_unicast_hops_v6(u32::from(ttl.send))
                .map_err(option_error("IPV6_UNICAST_HOPS", peer))?;
            sock.set_tclass_v6(u32::from(TOS_CS6))
                .map_err(option_error("IPV6_TCLASS", peer))?;
            if let Some(min) = ttl.min_receive {
                setsockopt(socket, Ipv6MinHopCount, &libc::c_int::from(min))
                    .map_err(|e| option_error("IPV6_MINHOPCOUNT", peer)(e.into()))?;
            }
        }
    }
    Ok(())
}

/// Sets (or, with an empty key, removes) the TCP MD5 key for `peer`.
pub fn set_md5_key<S: AsFd>(
    socket: &S,
    peer: IpAddr,
    key: &[u8],
    mapped: bool,
) -> Result<(), TransportError> {
    let sig = TcpMd5Sig::new(peer, key, mapped)?;
    setsockopt(socket, TcpMd5SigOpt, &sig).map_err(|e| option_error("TCP_MD5SIG", peer)(e.into()))
}

/// Connects to a peer with all options set before the SYN leaves, within
/// `timeout`.
pub async fn connect(
    peer: SocketAddr,
    options: &SocketOptions,
    timeout: Duration,
) -> Result<TcpStream, TransportError> {
    let ip = peer.ip();
    let socket = match peer {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|source| TransportError::Connect { peer, source })?;
    apply_ttl_and_dscp(&socket, ip, options.ttl)?;
    if let Some(key) = &options.md5_key {
        // RFC 2385 §4.1: every segment, the SYN included, carries the
        // signature, so the key must be in place before connect().
        set_md5_key(&socket, ip, key, false)?;
    }
    socket
        .set_nodelay(true)
        .map_err(option_error("TCP_NODELAY", ip))?;
    if let Some(source) = options.source {
        let addr = SocketAddr::new(source, 0);
        socket
            .bind(addr)
            .map_err(|source| TransportError::Bind { addr, source })?;
    }
    match tokio::time::timeout(timeout, socket.connect(peer)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(TransportError::Connect { peer, source }),
        Err(_) => Err(TransportError::ConnectTimeout { peer, timeout }),
    }
}

/// The passive side: one socket on the BGP port for all peers.
#[derive(Debug)]
pub struct BgpListener {
    listener: TcpListener,
    dual_stack: bool,
}

impl BgpListener {
    /// Listens on `addr` (`[::]:179` takes IPv4 peers too).
    pub fn bind(addr: SocketAddr) -> Result<Self, TransportError> {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(|source| TransportError::Bind { addr, source })?;
        socket
            .set_reuseaddr(true)
            .map_err(|source| TransportError::Bind { addr, source })?;
        // The SYN-ACK leaves before herald sees the connection, with the
        // listener's TTL: a GTSM peer drops anything below 255, so the
        // handshake would never complete. 255 (and CS6) for every peer;
        // each accepted connection then gets its own peer's TTL.
        apply_ttl_and_dscp(
            &socket,
            addr.ip(),
            TtlPolicy {
                send: 255,
                min_receive: None,
            },
        )?;
        socket
            .bind(addr)
            .map_err(|source| TransportError::Bind { addr, source })?;
        let listener = socket
            .listen(64)
            .map_err(|source| TransportError::Bind { addr, source })?;
        let dual_stack = addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        Ok(BgpListener {
            listener,
            dual_stack,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Installs a peer's TCP MD5 key: the kernel then refuses that peer's
    /// segments without a matching signature, the SYN included. An empty
    /// key removes it.
    pub fn set_md5_key(&self, peer: IpAddr, key: &[u8]) -> Result<(), TransportError> {
        set_md5_key(&self.listener, peer, key, self.dual_stack)
    }

    /// GTSM on the listening socket (`IP_MINTTL` / `IPV6_MINHOPCOUNT`): the
    /// kernel drops segments below `min`, a SYN included, so a host outside
    /// the radius never completes a handshake. 0 turns the floor off.
    pub fn set_min_ttl(&self, min: u8) -> Result<(), TransportError> {
        let addr = self
            .listener
            .local_addr()
            .map_err(|source| TransportError::Bind {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
        let value = libc::c_int::from(min);
        match addr {
            SocketAddr::V4(_) => setsockopt(&self.listener, IpMinTtl, &value)
                .map_err(|e| option_error("IP_MINTTL", addr.ip())(e.into())),
            SocketAddr::V6(_) => {
                setsockopt(&self.listener, Ipv6MinHopCount, &value)
                    .map_err(|e| option_error("IPV6_MINHOPCOUNT", addr.ip())(e.into()))?;
                if self.dual_stack {
                    // IPv4 peers of a dual-stack socket are checked by
                    // IP_MINTTL.
                    setsockopt(&self.listener, IpMinTtl, &value)
                        .map_err(|e| option_error("IP_MINTTL", addr.ip())(e.into()))?;
                }
                Ok(())
            }
        }
    }

    /// The next connection, with the address it came from (IPv4-mapped
    /// addresses unmapped). Deciding whether the peer is configured is the
    /// caller's job.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, mut from) = self.listener.accept().await?;
        if let IpAddr::V6(v6) = from.ip()
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            from = SocketAddr::new(IpAddr::V4(v4), from.port());
        }
        stream.set_nodelay(true)?;
        Ok((stream, from))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn md5_option_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<TcpMd5Sig>(), 216);
        let sig =
            TcpMd5Sig::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), b"secret", false).unwrap();
        assert_eq!(&sig.addr[..2], &(libc::AF_INET as u16).to_ne_bytes());
        assert_eq!(&sig.addr[4..8], &[192, 0, 2, 1]);
        assert_eq!(sig.keylen, 6);
        assert_eq!(&sig.key[..6], b"secret");
        let mapped = TcpMd5Sig::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), b"k", true).unwrap();
        assert_eq!(&mapped.addr[..2], &(libc::AF_INET6 as u16).to_ne_bytes());
        assert_eq!(
            &mapped.addr[8..24],
            &Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped().octets()
        );
    }

    #[test]
    fn md5_key_longer_than_80_octets_is_refused() {
        let err = TcpMd5Sig::new(IpAddr::V4(Ipv4Addr::LOCALHOST), &[b'x'; 81], false).unwrap_err();
        assert!(err.to_string().contains("at most 80"), "{err}");
    }

    #[test]
    fn gtsm_sends_255_and_requires_255_minus_extra_hops() {
        assert_eq!(
            TtlPolicy::new(1, true, false),
            TtlPolicy {
                send: 255,
                min_receive: Some(255)
            }
        );
        assert_eq!(
            TtlPolicy::new(3, true, false),
            TtlPolicy {
                send: 255,
                min_receive: Some(253)
            }
        );
        assert_eq!(
            TtlPolicy::new(1, false, false),
            TtlPolicy {
                send: 1,
                min_receive: None
            }
        );
        assert_eq!(
            TtlPolicy::new(4, false, false),
            TtlPolicy {
                send: 4,
                min_receive: None
            }
        );
        assert_eq!(
            TtlPolicy::new(1, false, true),
            TtlPolicy {
                send: 255,
                min_receive: None
            }
        );
        assert_eq!(TtlPolicy::new(0, true, false).min_receive, Some(255));
    }

    #[test]
    fn options_are_set_on_ipv4_and_ipv6_sockets() {
        for (socket, peer) in [
            (
                TcpSocket::new_v4().unwrap(),
                IpAddr::V4(Ipv4Addr::LOCALHOST),
            ),
            (
                TcpSocket::new_v6().unwrap(),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ),
        ] {
            apply_ttl_and_dscp(&socket, peer, TtlPolicy::new(1, true, false)).unwrap();
            set_md5_key(&socket, peer, b"key", false).unwrap();
            let sock = SockRef::from(&socket);
            match peer {
                IpAddr::V4(_) => {
                    assert_eq!(sock.ttl_v4().unwrap(), 255);
                    assert_eq!(sock.tos_v4().unwrap(), u32::from(TOS_CS6));
                }
                IpAddr::V6(_) => {
                    assert_eq!(sock.unicast_hops_v6().unwrap(), 255);
                    assert_eq!(sock.tclass_v6().unwrap(), u32::from(TOS_CS6));
                }
            }
        }
    }

    async fn try_connect(listener: &BgpListener, key: Option<&[u8]>) -> Result<(), TransportError> {
        let options = SocketOptions {
            ttl: TtlPolicy::new(1, false, false),
            md5_key: key.map(<[u8]>::to_vec),
            source: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        };
        let peer = listener.local_addr().unwrap();
        let _stream = connect(peer, &options, Duration::from_millis(1500)).await?;
        // The handshake completed; the listener must hand the connection over.
        tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("accepted")
            .expect("accept");
        Ok(())
    }

    #[tokio::test]
    async fn md5_right_key_connects_and_wrong_or_missing_key_does_not() {
        let listener = BgpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        listener
            .set_md5_key(IpAddr::V4(Ipv4Addr::LOCALHOST), b"right key")
            .unwrap();
        try_connect(&listener, Some(b"right key"))
            .await
            .expect("right key connects");
        let wrong = try_connect(&listener, Some(b"wrong key"))
            .await
            .unwrap_err();
        assert!(
            matches!(wrong, TransportError::ConnectTimeout { .. }),
            "{wrong}"
        );
        let missing = try_connect(&listener, None).await.unwrap_err();
        assert!(
            matches!(missing, TransportError::ConnectTimeout { .. }),
            "{missing}"
        );
    }
}
