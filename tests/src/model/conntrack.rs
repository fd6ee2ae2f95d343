//! The model's connection tracking: which later packets of a flow pass
//! without policy, written from the rules the README states ("Connection
//! tracking", "Policy changes and existing flows") and deliberately not from
//! `ebpf/src/conntrack.rs`: flows are kept by their opener's packet (from,
//! to, direction) in an ordered map, no key ordering, no time.
//!
//! The rules:
//! * a packet of a flow that travels the other way from its opener's packet
//!   (a reply) passes and makes the flow answered;
//! * a packet travelling the opener's way passes only once the flow is
//!   answered; before that it is judged by policy as a first packet;
//! * a packet that opens a connection is always judged by policy, flow or
//!   not: a TCP SYN without ACK, and an SCTP packet whose first chunk is
//!   an INIT (RFC 9260, section 5.1: INIT starts an association; an
//!   association re-opened with the same ports is a new one);
//! * a packet policy passes (or audit mode lets through) opens the flow
//!   anew, unanswered, unless it is a TCP RST or an ICMP error;
//! * an ICMP error whose quoted packet belongs to a flow (in either role,
//!   having crossed the other way) passes, otherwise policy judges it;
//! * with revalidation, after each new policy epoch a flow's next matching
//!   packet first has its opener's packet judged by current policy: passed,
//!   the flow carries on; denied, the flow is forgotten and the packet
//!   dropped (`policy-revoked`).
//!
//! The model covers one endpoint without audit flags; time (timeouts,
//! expiry, eviction) is not modelled: scenarios run well inside them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use palisade_common::{DropReason, direction};

use super::{Contents, Expect};
use crate::packet::{L4, PacketSpec, sctp, tcp};

/// One end of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct End {
    addr: IpAddr,
    port: u16,
}

/// A packet as conntrack sees it: protocol, source, destination and the
/// direction it crosses the pod's interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Travel {
    proto: u8,
    from: End,
    to: End,
    dir: u8,
}

impl Travel {
    /// The same flow's packet the other way.
    fn back(&self) -> Travel {
        Travel {
            proto: self.proto,
            from: self.to,
            to: self.from,
            dir: other(self.dir),
        }
    }
}

fn other(dir: u8) -> u8 {
    if dir == direction::INGRESS {
        direction::EGRESS
    } else {
        direction::INGRESS
    }
}

/// A tracked flow.
#[derive(Clone, Debug)]
struct Flow {
    /// The packet that opened it, kept to judge it again.
    opener: PacketSpec,
    answered: bool,
    epoch: u32,
}

/// The model's connection-tracking state.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    /// Flows by their opener's packet.
    flows: BTreeMap<Travel, Flow>,
    /// The policy epoch in force.
    pub epoch: u32,
    /// Whether flows are judged again once the epoch moves.
    pub revalidate: bool,
}

/// The ports conntrack keys a packet by: TCP/UDP/SCTP ports, an ICMP echo's
/// identifier on the requester's side, nothing otherwise.
fn ports(l4: &L4, v6: bool) -> (u16, u16) {
    match l4 {
        L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } | L4::Sctp { sport, dport, .. } => {
            (*sport, *dport)
        }
        L4::Icmp { ty, id, .. } => match (v6, *ty) {
            (false, 8) | (true, 128) => (*id, 0),
            (false, 0) | (true, 129) => (0, *id),
            _ => (0, 0),
        },
        L4::Raw { .. } => (0, 0),
    }
}

fn travel(spec: &PacketSpec, dir: u8) -> Travel {
    let v6 = spec.src.is_ipv6();
    let (sport, dport) = ports(&spec.l4, v6);
    Travel {
        proto: spec.l4.proto(v6),
        from: End {
            addr: spec.src,
            port: sport,
        },
        to: End {
            addr: spec.dst,
            port: dport,
        },
        dir,
    }
}

/// Whether the packet opens a connection: a TCP SYN without ACK, or SCTP
/// whose first chunk is INIT.
fn opens(spec: &PacketSpec) -> bool {
    match spec.l4 {
        L4::Tcp { flags, .. } => flags & (tcp::SYN | tcp::ACK) == tcp::SYN,
        L4::Sctp { .. } => spec.sctp_first_chunk() == Some(sctp::INIT),
        _ => false,
    }
}

/// Whether the packet is an ICMP error (destination unreachable, time
/// exceeded, parameter problem; ICMPv6 types 1 to 4).
fn is_icmp_error(spec: &PacketSpec) -> bool {
    match (&spec.l4, spec.src.is_ipv6()) {
        (L4::Icmp { ty, .. }, false) => matches!(ty, 3 | 11 | 12),
        (L4::Icmp { ty, .. }, true) => (1..=4).contains(ty),
        _ => false,
    }
}

/// The packet an ICMP error quotes, read from the quoted bytes: TCP, UDP
/// or SCTP ports, or an echo's identifier; `None` for anything else.
fn quoted(spec: &PacketSpec, dir: u8) -> Option<Travel> {
    let L4::Icmp { quote, .. } = &spec.l4 else {
        return None;
    };
    let q = quote.as_slice();
    let (proto, src, dst, l4) = match q.first()? >> 4 {
        4 => {
            let ihl = usize::from(q.first()? & 0x0f) * 4;
            let a = |o: usize| -> Option<IpAddr> {
                let b: [u8; 4] = q.get(o..o + 4)?.try_into().ok()?;
                Some(IpAddr::V4(Ipv4Addr::from(b)))
            };
            (*q.get(9)?, a(12)?, a(16)?, q.get(ihl..)?)
        }
        6 => {
            let a = |o: usize| -> Option<IpAddr> {
                let b: [u8; 16] = q.get(o..o + 16)?.try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(b)))
            };
            (*q.get(6)?, a(8)?, a(24)?, q.get(40..)?)
        }
        _ => return None,
    };
    let be =
        |o: usize| -> Option<u16> { Some(u16::from_be_bytes(l4.get(o..o + 2)?.try_into().ok()?)) };
    let (sport, dport) = match proto {
        6 | 17 | 132 => (be(0)?, be(2)?),
        1 | 58 => match *l4.first()? {
            8 | 128 => (be(4)?, 0),
            0 | 129 => (0, be(4)?),
            _ => return None,
        },
        _ => return None,
    };
    Some(Travel {
        proto,
        from: End {
            addr: src,
            port: sport,
        },
        to: End {
            addr: dst,
            port: dport,
        },
        // The quoted packet crossed the pod's interface the other way.
        dir: other(dir),
    })
}

impl Tracker {
    /// The flow `t` belongs to: (its opener's packet, whether `t` is a
    /// reply).
    fn find(&self, t: &Travel) -> Option<(Travel, bool)> {
        if self.flows.contains_key(t) {
            Some((*t, false))
        } else if self.flows.contains_key(&t.back()) {
            Some((t.back(), true))
        } else {
            None
        }
    }

    /// Forgets every flow.
    pub fn clear(&mut self) {
        self.flows.clear();
    }

    /// Number of flows tracked.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The verdict on one packet crossing the pod's interface in `dir`,
    /// given map contents `c`; updates the flows as the datapath would.
    pub fn packet(&mut self, c: &Contents, dir: u8, spec: &PacketSpec) -> Expect {
        let t = travel(spec, dir);
        if is_icmp_error(spec) {
            if let Some(q) = quoted(spec, dir)
                && self.find(&q).is_some()
            {
                return Expect::Pass;
            }
            return c.decide(dir, spec);
        }
        if !opens(spec)
            && let Some((key, reply)) = self.find(&t)
        {
            let flow = self.flows.get_mut(&key).expect("found");
            if reply || flow.answered {
                if self.revalidate && flow.epoch != self.epoch {
                    if c.decide(key.dir, &flow.opener) != Expect::Pass {
                        self.flows.remove(&key);
                        return Expect::Drop(DropReason::PolicyRevoked);
                    }
                    flow.epoch = self.epoch;
                }
                flow.answered |= reply;
                return Expect::Pass;
            }
        }
        let verdict = c.decide(dir, spec);
        let rst = matches!(spec.l4, L4::Tcp { flags, .. } if flags & tcp::RST != 0);
        if !matches!(verdict, Expect::Drop(_)) && !rst {
            self.flows.remove(&t.back());
            self.flows.insert(
                t,
                Flow {
                    opener: spec.clone(),
                    answered: false,
                    epoch: self.epoch,
                },
            );
        }
        verdict
    }
}
