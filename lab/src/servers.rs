//! Servers inside an endpoint's namespace: TCP banner servers, UDP echo
//! servers and the SCTP responder, all on one thread per [`Servers`] guard.
//!
//! * TCP: one dual-stack `[::]:port` listener; each connection gets the
//!   banner `palisade-lab <label> tcp/<port>\n` and is closed.
//! * UDP: one socket per endpoint address (so replies leave from the address
//!   the probe targeted); each datagram is answered with
//!   `palisade-lab <label> udp/<port> ` followed by the datagram.
//! * SCTP (the "SCTP responder"): one raw `IPPROTO_SCTP` socket per address;
//!   each valid INIT to a served port is answered with an INIT ACK whose State
//!   Cookie is `palisade-lab <label> sctp/<port>`. INITs to other ports are
//!   ignored (so they time out rather than being refused), which keeps
//!   several guards in one namespace from answering for each other. An open
//!   raw socket also keeps the kernel from sending ICMP protocol unreachable.
//!
//! All sockets are bound before [`serve`] returns, so probes can start at
//! once. The thread polls with a short timeout and stops when the guard drops.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd as _, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::names::random_u32;
use crate::netns::{NetnsError, enter_on_this_thread};
use crate::sctp;
use crate::sock::{raw_ip, recv_from};
use crate::topology::Endpoint;
use crate::wire::strip_ipv4_header;

/// How often the server thread checks its stop flag.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long [`serve`] waits for the sockets to be bound.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most events handled per socket per wake-up (keeps one busy socket from
/// starving the others and the stop check).
const BURST: usize = 64;

/// Which servers to run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Services {
    tcp: BTreeSet<u16>,
    udp: BTreeSet<u16>,
    sctp: BTreeSet<u16>,
}

impl Services {
    /// No servers yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a TCP banner server on `port`.
    pub fn tcp(mut self, port: u16) -> Self {
        self.tcp.insert(port);
        self
    }
    /// Adds a UDP echo server on `port`.
    pub fn udp(mut self, port: u16) -> Self {
        self.udp.insert(port);
        self
    }
    /// Answers SCTP INITs to `port`.
    pub fn sctp(mut self, port: u16) -> Self {
        self.sctp.insert(port);
        self
    }
}

/// The TCP banner for `label` on `port` (what [`ProbeResult::Connected`]
/// carries, without the trailing newline).
///
/// [`ProbeResult::Connected`]: crate::ProbeResult::Connected
pub fn tcp_banner(label: &str, port: u16) -> String {
    format!("palisade-lab {label} tcp/{port}")
}

/// The UDP reply prefix for `label` on `port` (what a UDP probe reports).
pub fn udp_banner(label: &str, port: u16) -> String {
    format!("palisade-lab {label} udp/{port}")
}

/// The SCTP State Cookie for `label` on `port` (what an SCTP probe reports).
pub fn sctp_banner(label: &str, port: u16) -> String {
    format!("palisade-lab {label} sctp/{port}")
}

/// Running servers; dropping the guard stops them (within ~20 ms).
#[derive(Debug)]
pub struct Servers {
    netns: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Servers {
    /// The namespace the servers run in.
    pub fn netns(&self) -> &str {
        &self.netns
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts `services` in `endpoint`'s namespace; returns once all sockets are
/// bound and listening.
pub fn serve(endpoint: &impl Endpoint, services: &Services) -> Result<Servers, NetnsError> {
    let netns = endpoint.netns().to_owned();
    let label = endpoint.label();
    let addrs = endpoint.addrs();
    let services = services.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = {
        let (thread_netns, stop) = (netns.clone(), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("lab-servers".into())
            .spawn(move || {
                let sockets = enter_on_this_thread(&thread_netns)
                    .and_then(|()| bind_all(&thread_netns, &services, &addrs));
                match sockets {
                    Ok(sockets) => {
                        let _ = ready_tx.send(Ok(()));
                        run(&label, &sockets, &stop);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| NetnsError::io(&netns, "spawn server thread", e))?
    };
    let guard = Servers {
        netns: netns.clone(),
        stop,
        thread: Some(thread),
    };
    match ready_rx.recv_timeout(READY_TIMEOUT) {
        Ok(Ok(())) => Ok(guard),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(NetnsError::NotReady {
            netns,
            what: "servers".into(),
            timeout_ms: READY_TIMEOUT.as_millis(),
        }),
    }
}

/// Starts only an SCTP responder for `ports` (same as [`serve`] with
/// [`Services::sctp`]).
pub fn sctp_responder(endpoint: &impl Endpoint, ports: &[u16]) -> Result<Servers, NetnsError> {
    let services = ports.iter().fold(Services::new(), |s, p| s.sctp(*p));
    serve(endpoint, &services)
}

enum Listener {
    Tcp(TcpListener, u16),
    Udp(UdpSocket, u16),
    Sctp(Socket, IpAddr),
}

impl Listener {
    fn fd(&self) -> RawFd {
        match self {
            Self::Tcp(l, _) => l.as_raw_fd(),
            Self::Udp(s, _) => s.as_raw_fd(),
            Self::Sctp(s, _) => s.as_raw_fd(),
        }
    }
}

struct Bound {
    listeners: Vec<Listener>,
    sctp_ports: BTreeSet<u16>,
}

fn bind_all(netns: &str, services: &Services, addrs: &[IpAddr]) -> Result<Bound, NetnsError> {
    let mut listeners = Vec::new();
    for &port in &services.tcp {
        let err = |e| NetnsError::io(netns, format!("listen tcp [::]:{port}"), e);
        let sock = Socket::new(Domain::IPV6, Type::STREAM, None).map_err(err)?;
        sock.set_only_v6(false).map_err(err)?;
        sock.set_reuse_address(true).map_err(err)?;
        sock.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())
            .map_err(err)?;
        sock.listen(128).map_err(err)?;
        sock.set_nonblocking(true).map_err(err)?;
        listeners.push(Listener::Tcp(sock.into(), port));
    }
    for &port in &services.udp {
        for &addr in addrs {
            let at = SocketAddr::new(addr, port);
            let err = |e| NetnsError::io(netns, format!("bind udp {at}"), e);
            let sock = UdpSocket::bind(at).map_err(err)?;
            sock.set_nonblocking(true).map_err(err)?;
            listeners.push(Listener::Udp(sock, port));
        }
    }
    if !services.sctp.is_empty() {
        for &addr in addrs {
            let err = |e| NetnsError::io(netns, format!("raw sctp socket on {addr}"), e);
            let sock = raw_ip(addr, sctp::IPPROTO_SCTP).map_err(err)?;
            sock.bind(&SocketAddr::new(addr, 0).into()).map_err(err)?;
            sock.set_nonblocking(true).map_err(err)?;
            listeners.push(Listener::Sctp(sock, addr));
        }
    }
    Ok(Bound {
        listeners,
        sctp_ports: services.sctp.clone(),
    })
}

fn run(label: &str, bound: &Bound, stop: &AtomicBool) {
    let mut pollfds: Vec<libc::pollfd> = bound
        .listeners
        .iter()
        .map(|l| libc::pollfd {
            fd: l.fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let interval = POLL_INTERVAL.as_millis() as libc::c_int;
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `pollfds` is a valid array of `len` pollfds.
        let n = unsafe {
            libc::poll(
                pollfds.as_mut_ptr(),
                pollfds.len() as libc::nfds_t,
                interval,
            )
        };
        if n <= 0 {
            continue; // timeout, or EINTR: check the stop flag again
        }
        for (pfd, listener) in pollfds.iter_mut().zip(&bound.listeners) {
            if pfd.revents & libc::POLLIN == 0 {
                continue;
            }
            pfd.revents = 0;
            match listener {
                Listener::Tcp(l, port) => serve_tcp(l, &tcp_banner(label, *port)),
                Listener::Udp(s, port) => serve_udp(s, &udp_banner(label, *port), &mut buf),
                Listener::Sctp(s, addr) => serve_sctp(s, *addr, label, &bound.sctp_ports, &mut buf),
            }
        }
    }
}

fn serve_tcp(listener: &TcpListener, banner: &str) {
    let line = format!("{banner}\n");
    for _ in 0..BURST {
        let Ok((mut stream, _)) = listener.accept() else {
            return; // WouldBlock: nothing more to accept
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
        let _ = stream.write_all(line.as_bytes());
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
}

fn serve_udp(sock: &UdpSocket, banner: &str, buf: &mut [u8]) {
    for _ in 0..BURST {
        let Ok((n, peer)) = sock.recv_from(buf) else {
            return;
        };
        let mut reply = Vec::with_capacity(banner.len() + 1 + n);
        reply.extend_from_slice(banner.as_bytes());
        reply.push(b' ');
        reply.extend_from_slice(&buf[..n]);
        let _ = sock.send_to(&reply, peer);
    }
}

fn serve_sctp(sock: &Socket, local: IpAddr, label: &str, ports: &BTreeSet<u16>, buf: &mut [u8]) {
    for _ in 0..BURST {
        let Ok((n, peer)) = recv_from(sock, buf) else {
            return;
        };
        let bytes = if local.is_ipv4() {
            strip_ipv4_header(&buf[..n]).unwrap_or_default()
        } else {
            &buf[..n]
        };
        let Some(pkt) = sctp::parse(bytes) else {
            continue;
        };
        if pkt.chunk_type != sctp::CHUNK_INIT || !ports.contains(&pkt.dst_port) {
            continue;
        }
        let cookie = sctp_banner(label, pkt.dst_port);
        if let Some(ack) = sctp::init_ack(&pkt, random_u32() | 1, cookie.as_bytes()) {
            let _ = sock.send_to(&ack, &peer);
        }
    }
}
