//! Raw frames: injecting arbitrary Ethernet frames or IP packets on an
//! interface (`AF_PACKET` in its namespace) and capturing what arrives on
//! another, with a bounded wait for a marker.
//!
//! A capture on an interface sees frames *before* that interface's TC ingress
//! hook and after its TC egress hook. To observe a verdict of Palisade's
//! programs on a pod's host veth, capture at the far end (e.g. the
//! destination pod's `eth0`), not on the host veth itself.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::time::{Duration, Instant};

use crate::netns::{NetnsError, run_in};
use crate::sock::{remaining, wait_readable};
use crate::topology::{POD_IFACE, Pod};

/// EtherType of IPv4.
pub const ETH_P_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// Most frames [`Capture::wait_for`] examines per call.
const MAX_FRAMES: usize = 4096;

/// A MAC address.
pub type Mac = [u8; 6];

/// A frame seen by a [`Capture`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The whole frame, Ethernet header included.
    pub data: Vec<u8>,
    /// Whether the interface was sending it (`PACKET_OUTGOING`) rather than
    /// receiving it.
    pub outgoing: bool,
}

impl Frame {
    /// The bytes after the 14-byte Ethernet header.
    pub fn payload(&self) -> &[u8] {
        self.data.get(14..).unwrap_or_default()
    }
}

/// An `AF_PACKET` socket bound to one interface, receiving everything on it
/// from the moment it is opened.
#[derive(Debug)]
pub struct Capture {
    fd: OwnedFd,
    netns: String,
    ifname: String,
}

impl Capture {
    /// Starts capturing on `ifname` in `netns`. Open it before sending what
    /// you want to see.
    pub fn start(netns: &str, ifname: &str) -> Result<Self, NetnsError> {
        let fd = run_in(netns, || packet_socket(netns, ifname))??;
        Ok(Self {
            fd,
            netns: netns.to_owned(),
            ifname: ifname.to_owned(),
        })
    }

    /// The namespace and interface captured on.
    pub fn target(&self) -> (&str, &str) {
        (&self.netns, &self.ifname)
    }

    /// The first frame containing `marker` within `timeout`, if any.
    pub fn wait_for(&self, marker: &[u8], timeout: Duration) -> Option<Frame> {
        self.wait_until(timeout, |f| contains(&f.data, marker))
    }

    /// The first received (not sent) frame containing `marker`, if any.
    pub fn wait_for_incoming(&self, marker: &[u8], timeout: Duration) -> Option<Frame> {
        self.wait_until(timeout, |f| !f.outgoing && contains(&f.data, marker))
    }

    /// The first frame for which `accept` holds within `timeout`, if any.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut accept: impl FnMut(&Frame) -> bool,
    ) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65_536];
        for _ in 0..MAX_FRAMES {
            let left = remaining(deadline)?;
            if !wait_readable(self.fd.as_raw_fd(), left).ok()? {
                return None;
            }
            let Ok(frame) = self.recv(&mut buf) else {
                continue;
            };
            if accept(&frame) {
                return Some(frame);
            }
        }
        None
    }

    fn recv(&self, buf: &mut [u8]) -> io::Result<Frame> {
        // SAFETY: sockaddr_ll is plain old data; zeroed is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `buf` and `addr` are valid for the lengths passed.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&raw mut addr).cast(),
                &mut len,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Frame {
            data: buf[..n as usize].to_vec(),
            outgoing: addr.sll_pkttype == libc::PACKET_OUTGOING,
        })
    }
}

/// Sends `frame` (Ethernet header included) out of `ifname` in `netns`.
pub fn inject_frame(netns: &str, ifname: &str, frame: &[u8]) -> Result<(), NetnsError> {
    run_in(netns, || {
        let fd = packet_socket(netns, ifname)?;
        // SAFETY: `frame` is valid for its length.
        let n = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(NetnsError::io(
                netns,
                format!("send {}-byte frame on {ifname}", frame.len()),
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    })?
}

/// Sends the IP `packet` from `pod`'s `eth0` to its host veth, wrapped in an
/// Ethernet header with the right MACs (EtherType from the version nibble),
/// as if the pod had routed it. Its checksums and lengths are not touched.
pub fn inject_ip(pod: &Pod, packet: &[u8]) -> Result<(), NetnsError> {
    let src = mac_address(pod.netns(), POD_IFACE)?;
    let dst = mac_address(pod.node_netns(), pod.host_veth())?;
    let ethertype = if packet.first().is_some_and(|b| b >> 4 == 6) {
        ETH_P_IPV6
    } else {
        ETH_P_IPV4
    };
    inject_frame(
        pod.netns(),
        POD_IFACE,
        &ethernet_frame(dst, src, ethertype, packet),
    )
}

/// `dst | src | ethertype | payload`.
pub fn ethernet_frame(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The MAC address of `ifname` in `netns`.
pub fn mac_address(netns: &str, ifname: &str) -> Result<Mac, NetnsError> {
    run_in(netns, || {
        let err = |e| NetnsError::io(netns, format!("SIOCGIFHWADDR {ifname}"), e);
        // SAFETY: plain socket(2) call.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh fd we own.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ifreq is plain old data; zeroed is a valid value.
        let mut req: libc::ifreq = unsafe { mem::zeroed() };
        let name = ifname.as_bytes();
        if name.len() >= req.ifr_name.len() {
            return Err(err(io::ErrorKind::InvalidInput.into()));
        }
        for (dst, src) in req.ifr_name.iter_mut().zip(name) {
            *dst = *src as libc::c_char;
        }
        // SAFETY: `req` is a valid ifreq for this ioctl.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) } < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
        let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
        let mut mac = [0u8; 6];
        for (dst, src) in mac.iter_mut().zip(data) {
            *dst = src as u8;
        }
        Ok(mac)
    })?
}

/// An `AF_PACKET`/`SOCK_RAW` socket for all protocols bound to `ifname`, in
/// the calling thread's namespace.
fn packet_socket(netns: &str, ifname: &str) -> Result<OwnedFd, NetnsError> {
    let err = |e| NetnsError::io(netns, format!("AF_PACKET socket on {ifname}"), e);
    let cname =
        std::ffi::CString::new(ifname).map_err(|_| err(io::ErrorKind::InvalidInput.into()))?;
    // SAFETY: `cname` is a valid C string.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return Err(err(io::Error::last_os_error()));
    }
    let all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2) call.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(all),
        )
    };
    if raw < 0 {
        return Err(err(io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_ll is plain old data; zeroed is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = all;
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: `addr` is a valid sockaddr_ll of the given length.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const addr).cast(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(fd)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
