//! Probes from an endpoint's namespace: TCP connect (+ banner), UDP echo,
//! ICMP echo and SCTP INIT over raw sockets, alone or many at once.
//!
//! Every probe is bounded by its own timeout ([`DEFAULT_TIMEOUT`] unless set)
//! and never sleeps: it waits on its socket until an answer or the deadline.

use std::io::{self, Read as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::names::random_u32;
use crate::netns::{enter_on_this_thread, run_in};
use crate::sctp;
use crate::sock::{raw_ip, raw_peer, recv, remaining, wait_readable};
use crate::topology::Endpoint;
use crate::wire::{icmp_echo_request, is_icmp_echo_reply, strip_ipv4_header};

/// Default probe timeout: long enough for a lab round trip, short enough
/// that "should be blocked" probes stay cheap.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(300);

/// Timeout for probes expected to be answered (reached or refused): it only
/// costs time when the answer does not come, and absorbs scheduling delays
/// on a loaded CI machine.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Most threads [`probe_all`] runs at once.
pub const MAX_PARALLEL_PROBES: usize = 64;

/// Most answers a probe reads before giving up on finding its own (raw
/// sockets see every packet of their protocol in the namespace).
const MAX_READS: usize = 256;

/// What a probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// TCP: the handshake completed; `banner` is what the server sent before
    /// closing (empty if it sent nothing within the timeout).
    Connected {
        /// The server's banner, e.g. `palisade-lab default/web tcp/80`.
        banner: String,
    },
    /// UDP, ICMP or SCTP: the matching answer came back. `reply` is the
    /// UDP reply, the SCTP State Cookie (both name the server), or for ICMP
    /// the address that answered.
    Replied {
        /// What identifies the responder.
        reply: String,
    },
    /// The destination answered "nothing here": TCP RST, ICMP port or
    /// protocol unreachable.
    Refused,
    /// An ICMP host/network/administratively-prohibited error came back.
    Unreachable,
    /// No answer before the deadline (what a dropping policy looks like).
    TimedOut,
    /// The probe could not run (namespace or socket setup failed).
    Failed(String),
}

impl ProbeResult {
    /// Connected or replied: the traffic got through both ways.
    pub fn reached(&self) -> bool {
        matches!(self, Self::Connected { .. } | Self::Replied { .. })
    }

    /// The banner or reply text, if the probe got through.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Connected { banner } => Some(banner),
            Self::Replied { reply } => Some(reply),
            _ => None,
        }
    }
}

/// Which kind of probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// TCP connect to `port`, then read the banner.
    Tcp {
        /// Destination port.
        port: u16,
    },
    /// One UDP datagram to `port`, expecting it echoed.
    Udp {
        /// Destination port.
        port: u16,
        /// Source port (0: the kernel picks one).
        sport: u16,
    },
    /// ICMP / ICMPv6 echo request.
    Icmp,
    /// SCTP INIT from `sport` to `dport`, expecting INIT ACK.
    Sctp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
}

/// One probe: from a namespace to an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Namespace the probe runs in.
    pub from: String,
    /// Destination address.
    pub dst: IpAddr,
    /// Protocol and ports.
    pub kind: ProbeKind,
    /// How long to wait for the answer.
    pub timeout: Duration,
}

impl ProbeSpec {
    /// A probe of `kind` from `from` to `dst` with [`DEFAULT_TIMEOUT`].
    pub fn new(from: &impl Endpoint, dst: IpAddr, kind: ProbeKind) -> Self {
        Self {
            from: from.netns().to_owned(),
            dst,
            kind,
            timeout: DEFAULT_TIMEOUT,
        }
    }
    /// TCP connect probe.
    pub fn tcp(from: &impl Endpoint, dst: impl Into<IpAddr>, port: u16) -> Self {
        Self::new(from, dst.into(), ProbeKind::Tcp { port })
    }
    /// UDP echo probe (from a port the kernel picks).
    pub fn udp(from: &impl Endpoint, dst: impl Into<IpAddr>, port: u16) -> Self {
        Self::new(from, dst.into(), ProbeKind::Udp { port, sport: 0 })
    }
    /// UDP echo probe from source port `sport` (which concurrent probes to
    /// other peers may share).
    pub fn udp_from(from: &impl Endpoint, sport: u16, dst: impl Into<IpAddr>, port: u16) -> Self {
        Self::new(from, dst.into(), ProbeKind::Udp { port, sport })
    }
    /// ICMP echo probe.
    pub fn icmp(from: &impl Endpoint, dst: impl Into<IpAddr>) -> Self {
        Self::new(from, dst.into(), ProbeKind::Icmp)
    }
    /// SCTP INIT probe from a random source port.
    pub fn sctp(from: &impl Endpoint, dst: impl Into<IpAddr>, dport: u16) -> Self {
        let sport = 32_768 + (random_u32() % 28_000) as u16;
        Self::new(from, dst.into(), ProbeKind::Sctp { sport, dport })
    }
    /// The same probe with another timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Connects by TCP from `from` to `dst:port` and reads the banner.
pub fn tcp_connect(
    from: &impl Endpoint,
    dst: impl Into<IpAddr>,
    port: u16,
    timeout: Duration,
) -> ProbeResult {
    probe(&ProbeSpec::tcp(from, dst, port).timeout(timeout))
}

/// Sends one UDP datagram from `from` to `dst:port` and waits for the echo.
pub fn udp_echo(
    from: &impl Endpoint,
    dst: impl Into<IpAddr>,
    port: u16,
    timeout: Duration,
) -> ProbeResult {
    probe(&ProbeSpec::udp(from, dst, port).timeout(timeout))
}

/// Pings `dst` from `from` once (raw ICMP / ICMPv6 socket).
pub fn icmp_echo(from: &impl Endpoint, dst: impl Into<IpAddr>, timeout: Duration) -> ProbeResult {
    probe(&ProbeSpec::icmp(from, dst).timeout(timeout))
}

/// Sends an SCTP INIT from `from` (`sport`) to `dst:dport`; reached iff the
/// INIT ACK comes back.
pub fn sctp_probe(
    from: &impl Endpoint,
    dst: impl Into<IpAddr>,
    sport: u16,
    dport: u16,
    timeout: Duration,
) -> ProbeResult {
    probe(&ProbeSpec::new(from, dst.into(), ProbeKind::Sctp { sport, dport }).timeout(timeout))
}

/// Runs one probe on a fresh thread inside its namespace.
pub fn probe(spec: &ProbeSpec) -> ProbeResult {
    run_in(&spec.from, || probe_here(spec)).unwrap_or_else(|e| ProbeResult::Failed(e.to_string()))
}

/// Runs all probes concurrently on at most [`MAX_PARALLEL_PROBES`] threads;
/// results are in the order of `specs`. Takes about the longest timeout per
/// `MAX_PARALLEL_PROBES` blocked probes.
pub fn probe_all(specs: &[ProbeSpec]) -> Vec<ProbeResult> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<ProbeResult>>> = Mutex::new(vec![None; specs.len()]);
    let workers = specs.len().min(MAX_PARALLEL_PROBES);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut current: Option<&str> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(spec) = specs.get(i) else { break };
                    let result = if current == Some(spec.from.as_str()) {
                        probe_here(spec)
                    } else {
                        match enter_on_this_thread(&spec.from) {
                            Ok(()) => {
                                current = Some(&spec.from);
                                probe_here(spec)
                            }
                            Err(e) => ProbeResult::Failed(e.to_string()),
                        }
                    };
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| ProbeResult::Failed("probe did not run".into())))
        .collect()
}

/// Runs `spec` in the calling thread's namespace.
fn probe_here(spec: &ProbeSpec) -> ProbeResult {
    let deadline = Instant::now() + spec.timeout;
    let outcome = match spec.kind {
        ProbeKind::Tcp { port } => tcp_here(spec.dst, port, deadline),
        ProbeKind::Udp { port, sport } => udp_here(spec.dst, sport, port, deadline),
        ProbeKind::Icmp => icmp_here(spec.dst, deadline),
        ProbeKind::Sctp { sport, dport } => sctp_here(spec.dst, sport, dport, deadline),
    };
    outcome.unwrap_or_else(classify)
}

/// Maps a socket error to the probe result it means.
fn classify(err: io::Error) -> ProbeResult {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => return ProbeResult::Refused,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => return ProbeResult::TimedOut,
        _ => {}
    }
    match err.raw_os_error() {
        Some(libc::ENOPROTOOPT) => ProbeResult::Refused, // ICMP protocol unreachable
        Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EACCES | libc::EPERM) => {
            ProbeResult::Unreachable
        }
        _ => ProbeResult::Failed(err.to_string()),
    }
}

fn tcp_here(dst: IpAddr, port: u16, deadline: Instant) -> io::Result<ProbeResult> {
    let timeout = remaining(deadline).ok_or(io::ErrorKind::TimedOut)?;
    let mut stream = TcpStream::connect_timeout(&SocketAddr::new(dst, port), timeout)?;
    let mut banner = Vec::new();
    let mut buf = [0u8; 512];
    // Bounded by the deadline and by the banner size.
    while banner.len() < 4096 {
        let Some(left) = remaining(deadline) else {
            break;
        };
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => banner.extend_from_slice(&buf[..n]),
        }
    }
    Ok(ProbeResult::Connected {
        banner: String::from_utf8_lossy(&banner).trim_end().to_owned(),
    })
}

fn udp_here(dst: IpAddr, sport: u16, port: u16, deadline: Instant) -> io::Result<ProbeResult> {
    let local: SocketAddr = match dst {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, sport).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, sport).into(),
    };
    // A chosen port may be in use by a concurrent probe to another peer:
    // both sockets are connected, so each gets its own peer's answers.
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(local),
        socket2::Type::DGRAM,
        None,
    )?;
    if sport != 0 {
        sock.set_reuse_address(true)?;
    }
    sock.bind(&local.into())?;
    let sock = UdpSocket::from(sock);
    sock.connect(SocketAddr::new(dst, port))?;
    let nonce = format!("nonce-{:08x}", random_u32());
    sock.send(nonce.as_bytes())?;
    let mut buf = [0u8; 2048];
    for _ in 0..MAX_READS {
        let left = remaining(deadline).ok_or(io::ErrorKind::TimedOut)?;
        sock.set_read_timeout(Some(left))?;
        let n = sock.recv(&mut buf)?;
        let reply = String::from_utf8_lossy(&buf[..n]);
        if let Some(text) = reply.strip_suffix(&nonce) {
            return Ok(ProbeResult::Replied {
                reply: text.trim_end().to_owned(),
            });
        }
    }
    Ok(ProbeResult::TimedOut)
}

fn icmp_here(dst: IpAddr, deadline: Instant) -> io::Result<ProbeResult> {
    let protocol = if dst.is_ipv4() {
        libc::IPPROTO_ICMP
    } else {
        libc::IPPROTO_ICMPV6
    };
    let sock = raw_ip(dst, protocol)?;
    // Connected: only packets from `dst`, and ICMP errors become recv errors.
    sock.connect(&raw_peer(dst))?;
    let (id, seq) = ((random_u32() & 0xffff) as u16, 1);
    let payload = random_u32().to_be_bytes();
    sock.send(&icmp_echo_request(dst, id, seq, &payload))?;
    let mut buf = [0u8; 2048];
    for _ in 0..MAX_READS {
        let left = remaining(deadline).ok_or(io::ErrorKind::TimedOut)?;
        if !wait_readable(sock.as_raw_fd(), left)? {
            return Ok(ProbeResult::TimedOut);
        }
        let n = recv(&sock, &mut buf)?;
        let msg = if dst.is_ipv4() {
            strip_ipv4_header(&buf[..n]).unwrap_or_default()
        } else {
            &buf[..n]
        };
        if is_icmp_echo_reply(dst.is_ipv6(), msg, id, seq, &payload) {
            return Ok(ProbeResult::Replied {
                reply: dst.to_string(),
            });
        }
    }
    Ok(ProbeResult::TimedOut)
}

fn sctp_here(dst: IpAddr, sport: u16, dport: u16, deadline: Instant) -> io::Result<ProbeResult> {
    let sock = raw_ip(dst, sctp::IPPROTO_SCTP)?;
    sock.connect(&raw_peer(dst))?;
    let tag = random_u32() | 1; // never 0: 0 is reserved
    sock.send(&sctp::init(sport, dport, tag))?;
    let mut buf = [0u8; 2048];
    for _ in 0..MAX_READS {
        let left = remaining(deadline).ok_or(io::ErrorKind::TimedOut)?;
        if !wait_readable(sock.as_raw_fd(), left)? {
            return Ok(ProbeResult::TimedOut);
        }
        let n = recv(&sock, &mut buf)?;
        let bytes = if dst.is_ipv4() {
            strip_ipv4_header(&buf[..n]).unwrap_or_default()
        } else {
            &buf[..n]
        };
        let Some(pkt) = sctp::parse(bytes) else {
            continue;
        };
        if (pkt.src_port, pkt.dst_port, pkt.vtag) != (dport, sport, tag) {
            continue;
        }
        match pkt.chunk_type {
            sctp::CHUNK_INIT_ACK => {
                let cookie = pkt.state_cookie().unwrap_or_default();
                return Ok(ProbeResult::Replied {
                    reply: String::from_utf8_lossy(cookie).into_owned(),
                });
            }
            sctp::CHUNK_ABORT => return Ok(ProbeResult::Refused),
            _ => {}
        }
    }
    Ok(ProbeResult::TimedOut)
}
