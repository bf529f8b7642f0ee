//! UDP endpoints as operators write them (`udp://HOST:PORT[?ttl=N&iface=ADDR]`) and the socket
//! options each needs: multicast membership or TTL and interface, and a receive buffer large
//! enough for bursts.
//!
//! Owns socket setup only; never reads or writes a datagram (the receiver and the exchange
//! simulator each do their own I/O and share nothing else). Setup runs before the feed starts,
//! never on the feed path.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

/// One line's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Host and port (a multicast group, or a unicast address).
    pub addr: SocketAddrV4,
    /// Multicast TTL a sender sets (default 1: the local network only).
    pub ttl: u32,
    /// Interface to join or send a multicast group on (default: the kernel's choice).
    pub iface: Ipv4Addr,
}

impl Endpoint {
    /// `udp://127.0.0.1:PORT` (port 0: the kernel picks one when it is bound).
    pub fn loopback(port: u16) -> Endpoint {
        Endpoint {
            addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, port),
            ttl: 1,
            iface: Ipv4Addr::UNSPECIFIED,
        }
    }

    /// Whether the address is a multicast group.
    pub fn is_multicast(&self) -> bool {
        self.addr.ip().is_multicast()
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "udp://{}", self.addr)
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Endpoint, String> {
        let bad = |why: &str| format!("`{s}`: {why} (write udp://HOST:PORT[?ttl=N&iface=ADDR])");
        let rest = s
            .strip_prefix("udp://")
            .ok_or_else(|| bad("not a udp:// address"))?;
        let (host, query) = rest.split_once('?').unwrap_or((rest, ""));
        let addr: SocketAddrV4 = host
            .parse()
            .map_err(|_| bad("HOST:PORT must be an IPv4 address and a port"))?;
        if addr.port() == 0 {
            return Err(bad("port 0"));
        }
        let mut ep = Endpoint {
            addr,
            ttl: 1,
            iface: Ipv4Addr::UNSPECIFIED,
        };
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            match kv.split_once('=') {
                Some(("ttl", v)) => {
                    ep.ttl = v
                        .parse()
                        .ok()
                        .filter(|t| (1..=255).contains(t))
                        .ok_or_else(|| bad("ttl must be 1 to 255"))?
                }
                Some(("iface", v)) => {
                    ep.iface = v
                        .parse()
                        .map_err(|_| bad("iface must be an IPv4 address"))?
                }
                _ => return Err(bad(&format!("unknown option `{kv}`"))),
            }
        }
        if !ep.is_multicast() && (query.contains("ttl=") || query.contains("iface=")) {
            return Err(bad("ttl and iface apply to multicast groups only"));
        }
        Ok(ep)
    }
}

/// Parses a comma-separated list of one or two lines (A, then B).
pub fn parse_lines(s: &str) -> Result<Vec<Endpoint>, String> {
    let lines = s
        .split(',')
        .map(str::parse)
        .collect::<Result<Vec<Endpoint>, String>>()?;
    match lines.len() {
        1 | 2 => Ok(lines),
        n => Err(format!("`{s}`: {n} lines; give one or two (A and B)")),
    }
}

/// The receive buffer a socket got.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct RcvBuf {
    /// Bytes asked for.
    pub asked: usize,
    /// Bytes the kernel reports (it doubles what is set, for its bookkeeping).
    pub granted: usize,
    /// Whether `SO_RCVBUFFORCE` (past `net.core.rmem_max`) was allowed.
    pub forced: bool,
}

/// Binds a nonblocking socket that receives `ep`: a unicast address is bound as given; a group
/// is bound on its port with address reuse (several receivers on one host) and joined on
/// `ep.iface`. Asks for `rcvbuf` bytes of receive buffer.
pub fn bind_receiver(ep: &Endpoint, rcvbuf: usize) -> std::io::Result<(UdpSocket, RcvBuf)> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    let granted = grow_rcvbuf(&s, rcvbuf)?;
    if ep.is_multicast() {
        s.set_reuse_address(true)?;
        s.bind(&SockAddr::from(SocketAddrV4::new(
            Ipv4Addr::UNSPECIFIED,
            ep.addr.port(),
        )))?;
        s.join_multicast_v4(ep.addr.ip(), &ep.iface)?;
    } else {
        s.bind(&SockAddr::from(ep.addr))?;
    }
    s.set_nonblocking(true)?;
    Ok((s.into(), granted))
}

/// A nonblocking socket on an ephemeral port, for sending to `ep` (and receiving answers to
/// what it sends): for a group, with the TTL, the interface and loopback delivery set.
pub fn sender(ep: Option<&Endpoint>) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    if let Some(ep) = ep.filter(|e| e.is_multicast()) {
        multicast_send_options(&s, ep)?;
    }
    s.bind(&SockAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)))?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

fn multicast_send_options(s: &Socket, ep: &Endpoint) -> std::io::Result<()> {
    s.set_multicast_ttl_v4(ep.ttl)?;
    s.set_multicast_loop_v4(true)?;
    if !ep.iface.is_unspecified() {
        s.set_multicast_if_v4(&ep.iface)?;
    }
    Ok(())
}

/// Asks for `bytes` of receive buffer: `SO_RCVBUFFORCE` where the process may (it passes
/// `net.core.rmem_max`), else `SO_RCVBUF`; reports what the kernel granted.
fn grow_rcvbuf(s: &Socket, bytes: usize) -> std::io::Result<RcvBuf> {
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: a valid fd, a c_int option value of the size passed.
    let forced = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        s.set_recv_buffer_size(bytes)?;
    }
    Ok(RcvBuf {
        asked: bytes,
        granted: s.recv_buffer_size()?,
        forced,
    })
}

/// The kernel's count of UDP datagrams dropped for a full receive buffer, host-wide
/// (`UdpRcvbufErrors` in `/proc/net/snmp`); `None` where the file does not say.
pub fn udp_rcvbuf_errors() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp: "));
    let names = udp.next()?;
    let values = udp.next()?;
    let i = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn a_multicast_line_parses_with_its_options() {
        let ep: Endpoint = "udp://239.1.2.3:31001?ttl=4&iface=127.0.0.1"
            .parse()
            .unwrap();
        assert!(ep.is_multicast());
        assert_eq!((ep.ttl, ep.iface), (4, Ipv4Addr::LOCALHOST));
        let two = parse_lines("udp://127.0.0.1:1,udp://127.0.0.1:2").unwrap();
        assert_eq!(two.len(), 2);
    }

    #[rstest]
    #[case::scheme("tcp://127.0.0.1:1")]
    #[case::no_port("udp://127.0.0.1")]
    #[case::port_zero("udp://127.0.0.1:0")]
    #[case::hostname("udp://localhost:1")]
    #[case::ttl_zero("udp://239.1.1.1:1?ttl=0")]
    #[case::unknown_option("udp://239.1.1.1:1?x=1")]
    #[case::ttl_on_unicast("udp://127.0.0.1:1?ttl=2")]
    fn bad_endpoints_are_refused(#[case] s: &str) {
        assert!(s.parse::<Endpoint>().is_err(), "{s}");
    }

    #[test]
    fn three_lines_are_refused() {
        assert!(parse_lines("udp://127.0.0.1:1,udp://127.0.0.1:2,udp://127.0.0.1:3").is_err());
    }

    /// The multicast path is covered by its socket options, never by sending to a group.
    #[test]
    fn a_multicast_sender_gets_its_ttl_interface_and_loopback() {
        let ep: Endpoint = "udp://239.9.9.9:31001?ttl=3&iface=127.0.0.1"
            .parse()
            .unwrap();
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        multicast_send_options(&s, &ep).unwrap();
        assert_eq!(s.multicast_ttl_v4().unwrap(), 3);
        assert_eq!(s.multicast_if_v4().unwrap(), Ipv4Addr::LOCALHOST);
        assert!(s.multicast_loop_v4().unwrap());
    }

    #[test]
    fn a_receiver_gets_the_buffer_it_asks_for_or_the_most_the_kernel_allows() {
        let (_s, got) = bind_receiver(&Endpoint::loopback(0), 8 << 20).unwrap();
        let max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let floor = if got.forced {
            8 << 20
        } else {
            max.min(8 << 20)
        };
        assert!(got.granted >= floor, "{got:?}, rmem_max {max}");
    }

    /// A group is joined on the interface the endpoint names (the membership is checked by
    /// leaving it, which fails for a group never joined); nothing is sent to it.
    #[test]
    fn a_multicast_receiver_joins_its_group_on_the_interface() {
        let ep: Endpoint = "udp://239.7.7.7:31999?iface=127.0.0.1".parse().unwrap();
        let (s, _) = bind_receiver(&ep, 1 << 20).unwrap();
        let s = Socket::from(s);
        assert!(s.leave_multicast_v4(ep.addr.ip(), &ep.iface).is_ok());
        assert!(s
            .leave_multicast_v4(&"239.7.7.8".parse().unwrap(), &ep.iface)
            .is_err());
    }

    #[test]
    fn the_kernel_drop_counter_is_read() {
        assert!(udp_rcvbuf_errors().is_some());
    }
}
