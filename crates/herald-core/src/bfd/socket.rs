//! BFD sockets and their options (RFC 5881 §4-§5, RFC 5883 §2-§3).
//!
//! Owns: opening the receive sockets (one per family and port, with the
//! received TTL/Hop Limit, destination address, interface and the kernel's
//! arrival time reported in ancillary data), reading them (`recvmsg`, and
//! `recvmmsg` in batches with [`ReceiveBatch`]) and the per-session
//! transmit sockets (TTL 255, DSCP CS6, a fixed source port in
//! 49152-65535, bound to the interface when given). Must not touch:
//! packets or sessions.
//!
//! Every option used here exists in socket2 or nix, so no option needs
//! `sockopt_impl!`: the received-TTL check is done in user space from
//! `IP_RECVTTL` / `IPV6_RECVHOPLIMIT` so that every drop is counted (the
//! kernel-side `IP_MINTTL` would drop silently).

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, recvmsg, setsockopt,
    sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};

/// RFC 5881 §4: "BFD Control packets MUST be transmitted in UDP packets with
/// destination port 3784".
pub const SINGLE_HOP_PORT: u16 = 3784;
/// RFC 5883 §5: multihop Control packets go to UDP destination port 4784.
pub const MULTIHOP_PORT: u16 = 4784;
/// RFC 5881 §4: "The source port MUST be in the range 49152 through 65535."
pub const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;
/// DSCP CS6 (network control) in the TOS / Traffic Class byte.
pub const TOS_CS6: u8 = 0xc0;
/// RFC 5881 §5: "If BFD authentication is not in use on a session, all BFD
/// Control packets for the session MUST be sent with a Time to Live (TTL)
/// or Hop Limit value of 255."
pub const TTL_MAX: u8 = 255;

/// One received datagram and what the kernel said about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub len: usize,
    pub source: SocketAddr,
    /// The address it was sent to (IP_PKTINFO / IPV6_PKTINFO).
    pub destination: Option<IpAddr>,
    /// The interface it arrived on.
    pub ifindex: Option<u32>,
    /// Received TTL or Hop Limit.
    pub ttl: Option<u8>,
    /// When the kernel received it (`SO_TIMESTAMPNS`, wall clock).
    pub received_at: Option<SystemTime>,
}

impl Datagram {
    fn new(len: usize, source: SocketAddr) -> Datagram {
        Datagram {
            len,
            source,
            destination: None,
            ifindex: None,
            ttl: None,
            received_at: None,
        }
    }

    /// Take what one control message says.
    fn note(&mut self, control: ControlMessageOwned) {
        match control {
            ControlMessageOwned::Ipv4PacketInfo(info) => {
                self.ifindex = u32::try_from(info.ipi_ifindex).ok();
                self.destination = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    info.ipi_addr.s_addr,
                ))));
            }
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                self.ifindex = Some(info.ipi6_ifindex);
                self.destination = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
            }
            ControlMessageOwned::Ipv4Ttl(ttl) | ControlMessageOwned::Ipv6HopLimit(ttl) => {
                self.ttl = u8::try_from(ttl).ok();
            }
            ControlMessageOwned::ScmTimestampns(stamp) => {
                let (Ok(seconds), Ok(nanos)) = (
                    u64::try_from(stamp.tv_sec()),
                    u32::try_from(stamp.tv_nsec()),
                ) else {
                    return;
                };
                self.received_at =
                    SystemTime::UNIX_EPOCH.checked_add(Duration::new(seconds, nanos));
            }
            _ => {}
        }
    }
}

/// Room for the ancillary data a receive socket asks for.
fn control_space() -> Vec<u8> {
    nix::cmsg_space!(
        nix::libc::in6_pktinfo,
        nix::libc::c_int,
        nix::libc::timespec
    )
}

fn domain(ipv6: bool) -> Domain {
    if ipv6 { Domain::IPV6 } else { Domain::IPV4 }
}

/// Receive buffer of each receive socket (bytes; the kernel doubles it for
/// its bookkeeping).
const RECEIVE_BUFFER: usize = 4 << 20;

/// A non-blocking socket bound to the wildcard address on `port`, reporting
/// TTL, destination, interface and arrival time of each datagram.
pub fn receive_socket(ipv6: bool, port: u16) -> io::Result<UdpSocket> {
    let socket = Socket::new(domain(ipv6), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    let address: SocketAddr = if ipv6 {
        socket.set_only_v6(true)?;
        setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true)?;
        setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?;
        (Ipv6Addr::UNSPECIFIED, port).into()
    } else {
        setsockopt(&socket, sockopt::Ipv4RecvTtl, &true)?;
        setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)?;
        (Ipv4Addr::UNSPECIFIED, port).into()
    };
    setsockopt(&socket, sockopt::ReceiveTimestampns, &true)?;
    // One socket carries every session's packets: 64 sessions at 20 ms
    // fill the default buffer (about 270 small datagrams) in under 100 ms
    // of this thread not reading, and the kernel would drop the rest.
    // Above `net.core.rmem_max` only with CAP_NET_ADMIN (FORCE).
    if setsockopt(&socket, sockopt::RcvBufForce, &RECEIVE_BUFFER).is_err() {
        socket.set_recv_buffer_size(RECEIVE_BUFFER)?;
    }
    socket.bind(&address.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Receive buffer of a session's own receive socket: one peer's packets,
/// a few per interval.
const PEER_RECEIVE_BUFFER: usize = 256 << 10;

/// A non-blocking receive socket for one session: bound to `port` on
/// `local` (or the wildcard), to `interface` when given, and connected to
/// `peer` with port 0, so the kernel hands it every datagram from `peer`
/// to that port (any source port: RFC 5881 §4 lets the peer choose) and
/// nothing else. A connected socket outranks the wildcard receive socket
/// in the kernel's lookup, so the peer's packets get a queue of their own
/// and never wait behind other traffic to the BFD ports, which the
/// wildcard sockets still take (and count). Reports the same ancillary
/// data as [`receive_socket`].
pub fn peer_receive_socket(
    endpoint: &TransmitEndpoint<'_>,
    port: u16,
    peer: IpAddr,
) -> io::Result<UdpSocket> {
    let ipv6 = endpoint.ipv6;
    let socket = Socket::new(domain(ipv6), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    if ipv6 {
        socket.set_only_v6(true)?;
        setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true)?;
        setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)?;
    } else {
        setsockopt(&socket, sockopt::Ipv4RecvTtl, &true)?;
        setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)?;
    }
    setsockopt(&socket, sockopt::ReceiveTimestampns, &true)?;
    if setsockopt(&socket, sockopt::RcvBufForce, &PEER_RECEIVE_BUFFER).is_err() {
        socket.set_recv_buffer_size(PEER_RECEIVE_BUFFER)?;
    }
    if let Some(interface) = endpoint.interface {
        socket.bind_device(Some(interface.as_bytes()))?;
    }
    let local: SocketAddr = match (endpoint.local, ipv6) {
        (Some(IpAddr::V6(ip)), _) => {
            SocketAddrV6::new(ip, port, 0, scope_for(ip, endpoint.ifindex)).into()
        }
        (Some(ip), _) => (ip, port).into(),
        (None, true) => (Ipv6Addr::UNSPECIFIED, port).into(),
        (None, false) => (Ipv4Addr::UNSPECIFIED, port).into(),
    };
    socket.bind(&local.into())?;
    let remote: SocketAddr = match peer {
        IpAddr::V6(ip) => SocketAddrV6::new(ip, 0, 0, scope_for(ip, endpoint.ifindex)).into(),
        ip => (ip, 0).into(),
    };
    socket.connect(&remote.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Where a session's packets leave from.
#[derive(Clone, Debug)]
pub struct TransmitEndpoint<'a> {
    pub ipv6: bool,
    pub local: Option<IpAddr>,
    pub interface: Option<&'a str>,
    pub ifindex: Option<u32>,
}

/// A non-blocking transmit socket on a source port from [`SOURCE_PORTS`]
/// not in `taken`, starting the search at `start`. Returns the socket and
/// its port. RFC 5881 §4: "The same UDP source port number MUST be used for
/// all BFD Control packets associated with a particular session."
pub fn transmit_socket(
    endpoint: &TransmitEndpoint<'_>,
    taken: &HashSet<u16>,
    start: u16,
) -> io::Result<(UdpSocket, u16)> {
    let span = u32::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let offset = u32::from(start.saturating_sub(*SOURCE_PORTS.start())) % span;
    let mut last_error = io::Error::new(io::ErrorKind::AddrInUse, "no free source port");
    for step in 0..span {
        let port = *SOURCE_PORTS.start() + ((offset + step) % span) as u16;
        if taken.contains(&port) {
            continue;
        }
        match open_transmit(endpoint, port) {
            Ok(socket) => return Ok((socket, port)),
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => last_error = error,
            Err(error) => return Err(error),
        }
    }
    Err(last_error)
}

fn open_transmit(endpoint: &TransmitEndpoint<'_>, port: u16) -> io::Result<UdpSocket> {
    let socket = Socket::new(domain(endpoint.ipv6), Type::DGRAM, Some(Protocol::UDP))?;
    if endpoint.ipv6 {
        socket.set_only_v6(true)?;
        socket.set_unicast_hops_v6(TTL_MAX.into())?;
        socket.set_tclass_v6(TOS_CS6.into())?;
    } else {
        socket.set_ttl_v4(TTL_MAX.into())?;
        socket.set_tos_v4(TOS_CS6.into())?;
    }
    if let Some(interface) = endpoint.interface {
        socket.bind_device(Some(interface.as_bytes()))?;
    }
    let local: SocketAddr = match (endpoint.local, endpoint.ipv6) {
        (Some(IpAddr::V6(ip)), _) => {
            let scope = scope_for(ip, endpoint.ifindex);
            SocketAddrV6::new(ip, port, 0, scope).into()
        }
        (Some(ip), _) => (ip, port).into(),
        (None, true) => (Ipv6Addr::UNSPECIFIED, port).into(),
        (None, false) => (Ipv4Addr::UNSPECIFIED, port).into(),
    };
    socket.bind(&local.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The scope id a link-local IPv6 address needs.
pub fn scope_for(ip: Ipv6Addr, ifindex: Option<u32>) -> u32 {
    if ip.is_unicast_link_local() {
        ifindex.unwrap_or(0)
    } else {
        0
    }
}

/// The index of interface `name`.
pub fn ifindex(name: &str) -> io::Result<u32> {
    nix::net::if_::if_nametoindex(name).map_err(io::Error::from)
}

/// Read one datagram without blocking, with its ancillary data.
pub fn receive(socket: &impl AsRawFd, buffer: &mut [u8]) -> io::Result<Datagram> {
    let mut iov = [io::IoSliceMut::new(buffer)];
    let mut space = control_space();
    let message = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let source = message
        .address
        .as_ref()
        .and_then(storage_to_socket_addr)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without source"))?;
    let mut datagram = Datagram::new(message.bytes, source);
    for control in message.cmsgs().map_err(io::Error::from)? {
        datagram.note(control);
    }
    Ok(datagram)
}

/// Datagrams read with one `recvmmsg(2)`.
pub const BATCH: usize = 32;
/// Room for any BFD Control packet (24 octets, 52 with the longest
/// authentication section; the Length field cannot exceed 255) and for
/// telling a longer datagram apart.
const DATAGRAM_ROOM: usize = 512;

/// Reads up to [`BATCH`] datagrams per system call into buffers it owns,
/// so reading allocates nothing. One per receive socket: the kernel shrinks
/// each header's control-message room to what the datagram it held used,
/// which fits every later datagram of the same socket (they all carry the
/// same ancillary data).
pub struct ReceiveBatch {
    headers: MultiHeaders<SockaddrStorage>,
    buffers: Box<[[u8; DATAGRAM_ROOM]; BATCH]>,
    /// The datagrams of the last read, with the index of their buffer.
    datagrams: Vec<(usize, Datagram)>,
}

impl std::fmt::Debug for ReceiveBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiveBatch")
            .field("datagrams", &self.datagrams)
            .finish_non_exhaustive()
    }
}

impl Default for ReceiveBatch {
    fn default() -> Self {
        ReceiveBatch {
            headers: Self::headers(),
            buffers: Box::new([[0; DATAGRAM_ROOM]; BATCH]),
            datagrams: Vec::with_capacity(BATCH),
        }
    }
}

impl ReceiveBatch {
    fn headers() -> MultiHeaders<SockaddrStorage> {
        MultiHeaders::preallocate(BATCH, Some(control_space()))
    }

    /// Read what is queued on `socket` without blocking, at most
    /// [`BATCH`] datagrams, and return how many (0 when none was queued).
    pub fn receive(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.datagrams.clear();
        let mut slices = self
            .buffers
            .each_mut()
            .map(|buffer| [io::IoSliceMut::new(buffer)]);
        let mut truncated_control = false;
        match recvmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(results) => {
                for (index, message) in results.enumerate() {
                    let Some(source) = message.address.as_ref().and_then(storage_to_socket_addr)
                    else {
                        continue;
                    };
                    let mut datagram = Datagram::new(message.bytes, source);
                    match message.cmsgs() {
                        Ok(controls) => controls.for_each(|control| datagram.note(control)),
                        // Not expected (see the type's doc); the datagram
                        // then has no TTL and the TTL check drops it.
                        Err(_) => truncated_control = true,
                    }
                    self.datagrams.push((index, datagram));
                }
            }
            Err(nix::errno::Errno::EAGAIN) => {}
            Err(error) => return Err(error.into()),
        }
        if truncated_control {
            self.headers = Self::headers();
        }
        Ok(self.datagrams.len())
    }

    /// The datagrams of the last [`ReceiveBatch::receive`], with their
    /// payloads.
    pub fn datagrams(&self) -> impl Iterator<Item = (&Datagram, &[u8])> {
        self.datagrams.iter().map(|(index, datagram)| {
            let payload = &self.buffers[*index][..datagram.len.min(DATAGRAM_ROOM)];
            (datagram, payload)
        })
    }
}

fn storage_to_socket_addr(storage: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = storage.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    let v6 = storage.as_sockaddr_in6()?;
    Some(SocketAddr::V6(SocketAddrV6::new(
        v6.ip(),
        v6.port(),
        v6.flowinfo(),
        v6.scope_id(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmit_sockets_take_distinct_ports_in_the_rfc_range() {
        let endpoint = TransmitEndpoint {
            ipv6: false,
            local: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            interface: None,
            ifindex: None,
        };
        let mut taken = HashSet::new();
        let mut sockets = Vec::new();
        for _ in 0..3 {
            let (socket, port) = transmit_socket(&endpoint, &taken, 65535).unwrap();
            assert!(SOURCE_PORTS.contains(&port));
            assert!(taken.insert(port), "port {port} handed out twice");
            assert_eq!(socket.local_addr().unwrap().port(), port);
            sockets.push(socket);
        }
        // Wraps from the top of the range to the bottom.
        assert!(taken.contains(&65535) && taken.contains(&49152));
    }

    #[test]
    fn transmit_socket_sends_with_ttl_255_and_cs6() {
        let endpoint = TransmitEndpoint {
            ipv6: false,
            local: None,
            interface: None,
            ifindex: None,
        };
        let (socket, _) = transmit_socket(&endpoint, &HashSet::new(), 50000).unwrap();
        let socket = Socket::from(socket);
        assert_eq!(socket.ttl_v4().unwrap(), 255);
        assert_eq!(socket.tos_v4().unwrap(), 0xc0);
    }

    #[test]
    fn receive_reports_ttl_destination_and_interface() {
        let receiver = receive_socket(false, 0).unwrap();
        let port = receiver.local_addr().unwrap().port();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.set_ttl(64).unwrap();
        sender.send_to(b"hello", ("127.0.0.1", port)).unwrap();
        let mut buffer = [0u8; 64];
        let datagram = (0..1000)
            .find_map(|_| match receive(&receiver, &mut buffer) {
                Ok(d) => Some(d),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    None
                }
                Err(e) => panic!("{e}"),
            })
            .expect("datagram within a second");
        assert_eq!(datagram.len, 5);
        assert_eq!(datagram.ttl, Some(64));
        assert_eq!(datagram.destination, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(datagram.source, sender.local_addr().unwrap());
        assert_eq!(datagram.ifindex, Some(ifindex("lo").unwrap()));
        let age = SystemTime::now()
            .duration_since(datagram.received_at.expect("arrival stamp"))
            .expect("stamped in the past");
        assert!(age < Duration::from_secs(5), "{age:?}");
    }

    #[test]
    fn a_peer_socket_takes_that_peers_datagrams_and_the_wildcard_the_rest() {
        let wildcard = receive_socket(false, 0).unwrap();
        let port = wildcard.local_addr().unwrap().port();
        let endpoint = TransmitEndpoint {
            ipv6: false,
            local: None,
            interface: None,
            ifindex: None,
        };
        let peer_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let own = peer_receive_socket(&endpoint, port, peer_ip).unwrap();
        let peer = UdpSocket::bind((peer_ip, 0)).unwrap();
        let other = UdpSocket::bind("127.0.0.3:0").unwrap();
        for _ in 0..3 {
            other.send_to(b"flood", ("127.0.0.1", port)).unwrap();
        }
        peer.send_to(b"peer", ("127.0.0.1", port)).unwrap();
        let mut buffer = [0u8; 64];
        let mut read = |socket: &UdpSocket| {
            (0..1000).find_map(|_| match receive(socket, &mut buffer) {
                Ok(d) => Some(d),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    None
                }
                Err(e) => panic!("{e}"),
            })
        };
        let datagram = read(&own).expect("the peer's datagram on its own socket");
        assert_eq!(datagram.source, peer.local_addr().unwrap());
        assert!(datagram.ttl.is_some() && datagram.received_at.is_some());
        let datagram = read(&wildcard).expect("the rest on the wildcard socket");
        assert_eq!(datagram.source, other.local_addr().unwrap());
        assert!(
            matches!(receive(&own, &mut buffer), Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "only the peer's datagram on its own socket"
        );
    }

    #[test]
    fn a_batch_reads_every_queued_datagram_with_its_payload_and_ancillary_data() {
        let receiver = receive_socket(false, 0).unwrap();
        let port = receiver.local_addr().unwrap().port();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.set_ttl(255).unwrap();
        // More than one batch, so the second read reuses the headers.
        let sent = BATCH + 5;
        for i in 0..sent {
            sender.send_to(&[i as u8; 24], ("127.0.0.1", port)).unwrap();
        }
        let mut batch = ReceiveBatch::default();
        let mut seen = Vec::new();
        for _ in 0..1000 {
            batch.receive(&receiver).unwrap();
            for (datagram, payload) in batch.datagrams() {
                assert_eq!(datagram.ttl, Some(255));
                assert_eq!(datagram.source, sender.local_addr().unwrap());
                assert_eq!(datagram.destination, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
                assert!(datagram.received_at.is_some());
                assert_eq!(payload.len(), 24);
                seen.push(payload[0]);
            }
            if seen.len() == sent {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(seen, (0..sent).map(|i| i as u8).collect::<Vec<_>>());
        // Nothing queued: zero, not an error.
        assert_eq!(batch.receive(&receiver).unwrap(), 0);
    }
}
