//! Source verification on a pod's egress: an IP packet leaving a pod must
//! come from one of the pod's own addresses, or from a prefix the pod's
//! namespace may send from, as the agent wrote them to `SOURCES_V4` /
//! `SOURCES_V6` under the pod's host interface (key layout on
//! `palisade_common::SourceKey4`). Anything else is `invalid-source`:
//! dropped (default), reported and passed (`SOURCE_VERIFY_AUDIT`), or not
//! looked at (`SOURCE_VERIFY_OFF`). It applies whether or not the pod is
//! isolated, before fragments, connection tracking and policy, so a pod
//! cannot borrow another pod's address, or an address policy trusts.
//!
//! What is exempt, precisely:
//!
//! * frames that are not IP (ARP and the rest; ARP is link control, and
//!   non-IP frames are judged as before);
//! * ICMPv6 neighbour discovery and MLD messages (types 130-137, 143) from
//!   a link-local (`fe80::/10`) or the unspecified (`::`) source: neighbour
//!   and router solicitations, advertisements, duplicate address detection
//!   (from `::`) and listener reports are sent from those, and never leave
//!   the link. The same messages from any other source are checked like
//!   any packet (a pod's solicitation from its own address passes). Any
//!   other packet from a link-local or unspecified source is checked, and
//!   so dropped unless the namespace's prefixes include `fe80::/10`. IPv4
//!   has no such exemption: `0.0.0.0` (DHCP) and `169.254.0.0/16` are
//!   checked like any source;
//! * IP frames too short to hold their IP header: the kernel drops those
//!   itself (`ip_rcv_core`, `ipv6_rcv`), nothing routes them.
//!
//! The established-flow fast path (`fastpath`) runs before parsing and does
//! not verify; it needs not. It passes a packet only when this CPU's
//! `FLOW_CACHE` slot of the packet's direction holds exactly the packet's
//! tuple — source address, destination address, ports, protocol — and
//! interface. Egress slots are filled only by the full path, from an
//! egress packet it has just passed after this check (never from one it
//! passed as unverified in audit mode, see `datapath`), so a packet that
//! hits one carries a source that was verified for that interface. A pod
//! spoofing another pod's address computes a tuple nobody verified on its
//! interface: it misses, takes the full path and is judged here, before
//! conntrack could match it to anything. Verified entries stop answering
//! within about a second (`FlowCacheEntry`), and interface indexes are not
//! reused soon after a pod's interface is deleted (the kernel allocates
//! them cyclically), so an entry cannot outlive the pod that verified it.

use aya_ebpf::{maps::lpm_trie::Key, programs::TcContext};
use palisade_common::{Addr, SourceKey4, SourceKey6, addr_to_bytes};

use crate::{
    SOURCES_V4, SOURCES_V6,
    wire::{ETH_HLEN, ETH_P_IP, ETH_P_IPV6, IPV4_HLEN, IPV6_HLEN},
};

/// Whether the pod behind `ifindex` may send from `saddr` (IPv4 in the
/// first word when `v4`).
///
/// A BPF subprogram, like `ipcache::lookup`: the caller goes on from one
/// state whichever way the lookup went.
#[inline(never)]
pub fn allowed(v4: bool, saddr: &Addr, ifindex: u32) -> bool {
    if v4 {
        let key = Key::new(
            64,
            SourceKey4 {
                ifindex,
                addr: saddr[0].to_ne_bytes(),
            },
        );
        SOURCES_V4.get(&key).is_some()
    } else {
        let key = Key::new(
            160,
            SourceKey6 {
                ifindex,
                addr: addr_to_bytes(*saddr),
            },
        );
        SOURCES_V6.get(&key).is_some()
    }
}

/// Whether an IPv6 source is link-local (`fe80::/10`) or unspecified
/// (`::`): the sources neighbour discovery and MLD use.
#[inline(always)]
pub fn link_scoped(saddr: &Addr) -> bool {
    let b = saddr[0].to_ne_bytes();
    (b[0] == 0xfe && b[1] & 0xc0 == 0x80) || (saddr[0] | saddr[1] | saddr[2] | saddr[3]) == 0
}

/// The source address of a frame that did not parse.
pub enum FrameSource {
    /// Not IPv4 or IPv6, or too short to hold its IP header (the kernel
    /// does not route it).
    None,
    /// The IP header is there but not in the linear area: it cannot be
    /// verified (callers fail closed).
    Unreadable,
    /// The source address (IPv4 when the flag is set).
    Ip(bool, Addr),
}

/// Reads the source address straight from the frame, for frames whose
/// transport headers did not parse (the pipeline's `Packet` is not there).
#[inline(always)]
pub fn of_frame(ctx: &TcContext) -> FrameSource {
    let data = ctx.data();
    let end = ctx.data_end();
    let len = ctx.len() as usize;
    if data + ETH_HLEN > end {
        return FrameSource::None;
    }
    let frame = data as *const u8;
    let ethertype = u16::from_be_bytes(unsafe { *(frame.add(12) as *const [u8; 2]) });
    if ethertype == ETH_P_IP {
        if len < ETH_HLEN + IPV4_HLEN {
            return FrameSource::None;
        }
        if data + ETH_HLEN + IPV4_HLEN > end {
            return FrameSource::Unreadable;
        }
        let s = unsafe { *(frame.add(ETH_HLEN + 12) as *const u32) };
        FrameSource::Ip(true, [s, 0, 0, 0])
    } else if ethertype == ETH_P_IPV6 {
        if len < ETH_HLEN + IPV6_HLEN {
            return FrameSource::None;
        }
        if data + ETH_HLEN + IPV6_HLEN > end {
            return FrameSource::Unreadable;
        }
        let s = unsafe { *(frame.add(ETH_HLEN + 8) as *const [u32; 4]) };
        FrameSource::Ip(false, s)
    } else {
        FrameSource::None
    }
}
