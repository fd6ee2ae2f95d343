//! Small socket helpers shared by servers, probes and raw capture: bounded
//! readiness waits and receiving into plain byte buffers.

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Waits until `fd` is readable or `timeout` passes; `Ok(false)` on timeout.
pub(crate) fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    match n {
        n if n < 0 => {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(err)
            }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}

/// Time left until `deadline`, or `None` once it has passed.
pub(crate) fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

/// `recv_from` into an ordinary byte buffer.
pub(crate) fn recv_from(sock: &Socket, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
    // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and
    // recv_from only writes initialised bytes into the buffer.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
    sock.recv_from(uninit)
}

/// `recv` into an ordinary byte buffer.
pub(crate) fn recv(sock: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: as in `recv_from`.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
    sock.recv(uninit)
}

/// The socket domain for `addr`'s family.
pub(crate) fn domain_of(addr: IpAddr) -> Domain {
    match addr {
        IpAddr::V4(_) => Domain::IPV4,
        IpAddr::V6(_) => Domain::IPV6,
    }
}

/// A raw IP socket for `protocol` in the calling thread's namespace.
pub(crate) fn raw_ip(addr: IpAddr, protocol: i32) -> io::Result<Socket> {
    Socket::new(domain_of(addr), Type::RAW, Some(Protocol::from(protocol)))
}

/// `SockAddr` for a raw socket peer (port 0).
pub(crate) fn raw_peer(addr: IpAddr) -> SockAddr {
    SockAddr::from(SocketAddr::new(addr, 0))
}
