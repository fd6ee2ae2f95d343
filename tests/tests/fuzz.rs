//! Random frames against both programs: mutated valid frames (IPv4 options,
//! IPv6 extension-header chains up to and past the walk limit, fragments,
//! every transport, flipped, cut and extended bytes) and random bytes behind
//! an Ethernet header, under random map contents. Each frame is the first of
//! its flow (no connection state); the expected verdict comes from a
//! reference classifier written here from the header formats and the
//! datapath's documented contract (bounds against frame *and* announced IP
//! length, at most 8 IPv6 extension headers and transport within 512 bytes,
//! ARP and ND/MLD are link control), then from the policy model. Well-formed
//! frames are also cross-checked against `etherparse`, so the classifier
//! itself is held to an independent parser.
//!
//! Two counts are reported: verdict mismatches, and frames the datapath
//! passed that the reference would not have (allowed by mistake). Both
//! must be zero. Source verification is drawn with the map contents (off,
//! enforced or audited, and the prefixes the pod may send from), so the
//! rule is fuzzed on unparsable frames, fragments and neighbour discovery
//! as well as on judgeable packets. `PALISADE_FUZZ_FRAMES` sets how many frames run (default
//! 20,000 in `cargo xtask test`; `cargo xtask fuzz` runs millions). Needs
//! root.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use palisade_common::{
    CIDR_IDENTITY_BASE, Config, DropReason, EndpointInfo, IDENTITY_ANY, IDENTITY_HOST,
    IpcacheValue, PolicyKey, PolicyValue, PortBitmap, config_flags, direction,
    endpoint_flags as ef, event_kind,
};
use palisade_tests::{
    bpf::{Action, TestDatapath},
    load::{erase_contents, write_contents},
    model::{Contents, Expect},
    packet::{Ext, L4, PacketSpec, sctp},
};
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

/// Frames run with one map content before drawing the next.
const FRAMES_PER_CONTENT: usize = 256;
const EP: u32 = 5;
const POD: u32 = 300;
const IDS: [u32; 4] = [IDENTITY_ANY, IDENTITY_HOST, 301, 302];

/// Eight addresses per family; the last IPv6 one is link-local, the
/// source neighbour discovery uses.
fn pool(i: u8, six: bool) -> IpAddr {
    if six && i == 7 {
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 7))
    } else if six {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(i)))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))
    }
}

// ---------------------------------------------------------------------------
// The reference classifier.

/// What a frame is, by the header formats.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Class {
    /// ARP.
    Control,
    /// ICMPv6 neighbour discovery or MLD, from this source.
    Neighbour(IpAddr),
    /// Not IPv4, IPv6 or ARP.
    OtherL3,
    /// Cannot be judged: a header cut short, an impossible field, or a
    /// transport header past the walk limits.
    Bad(DropReason),
    /// A non-first fragment (no state here: it has no first fragment).
    LaterFragment,
    /// A judgeable first packet.
    Ip {
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        sport: u16,
        dport: u16,
        flags: u8,
    },
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// `need` bytes at `off` inside both the frame and the IP packet.
fn fits(frame: &[u8], ip_end: usize, off: usize, need: usize) -> Result<(), DropReason> {
    if off + need > ip_end || off + need > frame.len() {
        Err(DropReason::Truncated)
    } else {
        Ok(())
    }
}

fn classify(f: &[u8]) -> Class {
    if f.len() < 14 {
        return Class::Bad(DropReason::Truncated);
    }
    let r = match be16(f, 12) {
        0x0806 => return Class::Control,
        0x0800 => v4(f),
        0x86dd => v6(f),
        _ => return Class::OtherL3,
    };
    r.unwrap_or_else(Class::Bad)
}

fn v4(f: &[u8]) -> Result<Class, DropReason> {
    fits(f, f.len(), 14, 20)?;
    let ip = &f[14..];
    if ip[0] >> 4 != 4 {
        return Err(DropReason::Malformed);
    }
    let hlen = usize::from(ip[0] & 15) * 4;
    let tot = usize::from(be16(ip, 2));
    if hlen < 20 || tot < hlen {
        return Err(DropReason::Malformed);
    }
    let ip_end = 14 + tot;
    if ip_end > f.len() {
        return Err(DropReason::Truncated);
    }
    let frag = be16(ip, 6);
    if frag & 0x1fff != 0 {
        return Ok(Class::LaterFragment);
    }
    let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
    transport(f, ip_end, 14 + hlen, ip[9], src, dst)
}

fn v6(f: &[u8]) -> Result<Class, DropReason> {
    fits(f, f.len(), 14, 40)?;
    let ip = &f[14..];
    if ip[0] >> 4 != 6 {
        return Err(DropReason::Malformed);
    }
    let plen = usize::from(be16(ip, 4));
    // Payload length 0 announces a jumbogram: the frame bounds it.
    let ip_end = if plen == 0 { f.len() } else { 54 + plen };
    if ip_end > f.len() {
        return Err(DropReason::Truncated);
    }
    let addr = |at: usize| {
        let mut b = [0u8; 16];
        b.copy_from_slice(&ip[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(b))
    };
    let (src, dst) = (addr(8), addr(24));
    let mut next = ip[6];
    let mut off = 54;
    let mut walked = 0;
    let mut later = false;
    loop {
        let len = match next {
            _ if walked == 8 => {
                return Err(DropReason::ExtensionHeaderLimit);
            }
            0 | 43 | 60 => {
                fits(f, ip_end, off, 2)?;
                (usize::from(f[off + 1]) + 1) * 8
            }
            51 => {
                fits(f, ip_end, off, 2)?;
                (usize::from(f[off + 1]) + 2) * 4
            }
            44 => {
                fits(f, ip_end, off, 8)?;
                if be16(f, off + 2) >> 3 != 0 {
                    later = true;
                }
                8
            }
            _ => break,
        };
        walked += 1;
        next = f[off];
        off += len;
        if later {
            break;
        }
        if off > 512 {
            return Err(DropReason::ExtensionHeaderLimit);
        }
    }
    if off > 512 {
        return Err(DropReason::ExtensionHeaderLimit);
    }
    if later {
        return Ok(Class::LaterFragment);
    }
    if next == 58 {
        fits(f, ip_end, off, 4)?;
        if matches!(f[off], 130..=137 | 143) {
            return Ok(Class::Neighbour(src));
        }
    }
    transport(f, ip_end, off, next, src, dst)
}

fn transport(
    f: &[u8],
    ip_end: usize,
    off: usize,
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
) -> Result<Class, DropReason> {
    if off > 512 {
        return Err(DropReason::ExtensionHeaderLimit);
    }
    let (sport, dport, flags) = match proto {
        6 => {
            fits(f, ip_end, off, 20)?;
            let doff = usize::from(f[off + 12] >> 4);
            if doff < 5 {
                return Err(DropReason::Malformed);
            }
            fits(f, ip_end, off, doff * 4)?;
            (be16(f, off), be16(f, off + 2), f[off + 13])
        }
        17 => {
            fits(f, ip_end, off, 8)?;
            (be16(f, off), be16(f, off + 2), 0)
        }
        132 => {
            fits(f, ip_end, off, 12)?;
            (be16(f, off), be16(f, off + 2), 0)
        }
        1 | 58 => {
            fits(f, ip_end, off, 8)?;
            (0, 0, f[off])
        }
        _ => (0, 0, 0),
    };
    Ok(Class::Ip {
        src,
        dst,
        proto,
        sport,
        dport,
        flags,
    })
}

/// The verdict of a packet that cannot be judged by policy: dropped only
/// where the pod is isolated in that direction.
fn unjudgeable(c: &Contents, dir: u8, reason: DropReason) -> Expect {
    let Some(ep) = c.endpoint else {
        return if c.config_flags & config_flags::UNKNOWN_ENDPOINT_PASS != 0 {
            Expect::Pass
        } else {
            Expect::Drop(DropReason::UnknownEndpoint)
        };
    };
    let (iso, audit) = if dir == direction::INGRESS {
        (ef::ISOLATED_INGRESS, ef::AUDIT_INGRESS)
    } else {
        (ef::ISOLATED_EGRESS, ef::AUDIT_EGRESS)
    };
    if ep.flags & iso == 0 {
        Expect::Pass
    } else if ep.flags & audit != 0 {
        Expect::Audited(reason)
    } else {
        Expect::Drop(reason)
    }
}

/// The source address of an IP frame, read from the frame as the
/// documented contract says (for frames whose headers do not parse):
/// by ethertype, when the frame is long enough to hold the IP header.
fn frame_source(f: &[u8]) -> Option<IpAddr> {
    match be16(f, 12) {
        0x0800 if f.len() >= 14 + 20 => Some(IpAddr::V4(Ipv4Addr::new(f[26], f[27], f[28], f[29]))),
        0x86dd if f.len() >= 14 + 40 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(&f[22..38]);
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

fn link_scoped(a: &IpAddr) -> bool {
    match a {
        IpAddr::V6(v) => v.is_unspecified() || (v.segments()[0] & 0xffc0) == 0xfe80,
        IpAddr::V4(_) => false,
    }
}

/// Source verification in front of `then` (the verdict without it): a
/// pod's egress from a source none of its prefixes holds is
/// `invalid-source`, dropped, or in audit mode reported while whatever
/// else drops it still does.
fn source_rule(c: &Contents, dir: u8, src: Option<IpAddr>, then: Expect) -> Expect {
    let Some(src) = src else { return then };
    if dir != direction::EGRESS
        || c.config_flags & config_flags::SOURCE_VERIFY_OFF != 0
        || c.sources.iter().any(|n| n.contains(&src))
    {
        return then;
    }
    if c.endpoint.is_none() {
        return if c.config_flags & config_flags::UNKNOWN_ENDPOINT_PASS != 0 {
            then
        } else {
            Expect::Drop(DropReason::UnknownEndpoint)
        };
    }
    if c.config_flags & config_flags::SOURCE_VERIFY_AUDIT == 0 {
        return Expect::Drop(DropReason::InvalidSource);
    }
    match then {
        Expect::Drop(r) => Expect::Drop(r),
        _ => Expect::Audited(DropReason::InvalidSource),
    }
}

fn expect(c: &Contents, dir: u8, class: &Class, f: &[u8]) -> Expect {
    match class {
        Class::Control => Expect::Pass,
        Class::Neighbour(src) if link_scoped(src) => Expect::Pass,
        Class::Neighbour(src) => source_rule(c, dir, Some(*src), Expect::Pass),
        Class::OtherL3 => unjudgeable(c, dir, DropReason::UnsupportedL3),
        Class::Bad(r) => source_rule(c, dir, frame_source(f), unjudgeable(c, dir, *r)),
        Class::LaterFragment => source_rule(
            c,
            dir,
            frame_source(f),
            unjudgeable(c, dir, DropReason::FragmentNoState),
        ),
        Class::Ip {
            src,
            dst,
            proto,
            sport,
            dport,
            flags,
        } => {
            let l4 = match proto {
                6 => L4::Tcp {
                    sport: *sport,
                    dport: *dport,
                    flags: *flags,
                },
                17 => L4::Udp {
                    sport: *sport,
                    dport: *dport,
                },
                // The chunk type does not change a first packet's verdict.
                132 => L4::Sctp {
                    sport: *sport,
                    dport: *dport,
                    chunk: None,
                },
                p => L4::Raw {
                    proto: *p,
                    payload: Vec::new(),
                },
            };
            c.decide(dir, &PacketSpec::new(*src, *dst, l4))
        }
    }
}

/// For frames `etherparse` reads as whole, unfragmented TCP or UDP, the
/// tuple it sees; the classifier must see the same.
fn etherparse_tuple(f: &[u8]) -> Option<(IpAddr, IpAddr, u8, u16, u16)> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let p = SlicedPacket::from_ethernet(f).ok()?;
    let (src, dst, fragmented) = match p.net.as_ref()? {
        NetSlice::Ipv4(s) => (
            IpAddr::V4(s.header().source_addr()),
            IpAddr::V4(s.header().destination_addr()),
            s.is_payload_fragmented(),
        ),
        NetSlice::Ipv6(s) => (
            IpAddr::V6(s.header().source_addr()),
            IpAddr::V6(s.header().destination_addr()),
            s.is_payload_fragmented(),
        ),
        _ => return None,
    };
    if fragmented {
        return None;
    }
    match p.transport.as_ref()? {
        TransportSlice::Tcp(t) => Some((src, dst, 6, t.source_port(), t.destination_port())),
        TransportSlice::Udp(u) => Some((src, dst, 17, u.source_port(), u.destination_port())),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Generators.

fn arb_contents() -> impl Strategy<Value = Contents> {
    let value = prop_oneof![
        Just(PolicyValue::ALL_PORTS),
        (any::<u16>(), any::<u16>()).prop_map(|(a, b)| PolicyValue::range(a.min(b), a.max(b))),
        Just(PolicyValue {
            port_lo: 0,
            port_hi: 0,
            portset: 1,
            ..PolicyValue::NOTHING
        }),
    ];
    let entry = (
        0usize..IDS.len(),
        0u8..2,
        prop::sample::select(vec![6u8, 17, 132, 255]),
        0u8..2,
        value,
    );
    let exact = (0u8..8, any::<bool>(), 0usize..IDS.len(), 0u32..3);
    let source_mode = prop::sample::select(vec![
        config_flags::SOURCE_VERIFY_OFF,
        0,
        0,
        config_flags::SOURCE_VERIFY_AUDIT,
    ]);
    // What the pod may send from: single pool addresses, a few pool
    // prefixes, and sometimes all of link-local.
    let source = prop_oneof![
        4 => (0u8..8, any::<bool>()).prop_map(|(a, six)| IpNet::from(pool(a, six))),
        1 => Just("10.0.0.4/30".parse::<IpNet>().unwrap()),
        1 => Just("2001:db8::/126".parse::<IpNet>().unwrap()),
        1 => Just("fe80::/10".parse::<IpNet>().unwrap()),
    ];
    (
        prop::sample::select(vec![
            0u32,
            ef::ISOLATED_INGRESS | ef::ISOLATED_EGRESS,
            ef::ISOLATED_INGRESS,
            ef::ISOLATED_EGRESS,
            ef::ISOLATED_INGRESS | ef::AUDIT_INGRESS,
            ef::VIEW_ISOLATED_EGRESS,
            ef::POLICY_PENDING | ef::ISOLATED_INGRESS | ef::ISOLATED_EGRESS,
        ]),
        prop::collection::vec(entry, 0..12),
        prop::collection::vec(exact, 0..8),
        any::<bool>(),
        source_mode,
        prop::collection::vec(source, 0..5),
    )
        .prop_map(
            |(flags, entries, exact, enforce_host, source_mode, sources)| {
                let mut c = Contents {
                    sources,
                    config_flags: source_mode
                        | if enforce_host {
                            config_flags::ENFORCE_HOST
                        } else {
                            0
                        },
                    ..Contents::endpoint(EP, POD, flags)
                };
                for (i, dir, proto, view, v) in entries {
                    let key = PolicyKey {
                        ep_id: EP,
                        identity: IDS[i],
                        direction: dir,
                        proto,
                        view,
                        _pad: 0,
                    };
                    c.policy.insert(key, v);
                }
                for (a, six, i, cidr) in exact {
                    let cidr_identity = if cidr == 0 {
                        palisade_common::IDENTITY_WORLD
                    } else {
                        CIDR_IDENTITY_BASE + cidr
                    };
                    c.exact.insert(
                        pool(a, six),
                        IpcacheValue {
                            identity: IDS[i].max(1),
                            cidr_identity,
                        },
                    );
                }
                c.prefixes = vec![
                    ("10.0.0.0/29".parse().unwrap(), CIDR_IDENTITY_BASE + 1),
                    ("2001:db8::/125".parse().unwrap(), CIDR_IDENTITY_BASE + 2),
                ];
                let mut b = PortBitmap::EMPTY;
                b.insert_range(0, 0);
                b.insert_range(53, 80);
                b.insert_range(65535, 65535);
                c.portsets.insert(1, b);
                c
            },
        )
}

#[derive(Clone, Debug)]
enum Mutation {
    /// XOR a byte.
    Flip(usize, u8),
    /// Cut the frame.
    Truncate(usize),
    /// Append bytes.
    Extend(Vec<u8>),
}

fn arb_l4() -> impl Strategy<Value = L4> {
    let port = prop_oneof![Just(0u16), Just(65535), Just(53), Just(80), any::<u16>()];
    prop_oneof![
        (port.clone(), port.clone(), any::<u8>()).prop_map(|(sport, dport, flags)| L4::Tcp {
            sport,
            dport,
            flags
        }),
        (port.clone(), port.clone()).prop_map(|(sport, dport)| L4::Udp { sport, dport }),
        (
            port.clone(),
            port,
            prop::option::of(prop::sample::select(vec![
                sctp::DATA,
                sctp::INIT,
                sctp::INIT_ACK,
                sctp::ABORT,
                255
            ]))
        )
            .prop_map(|(sport, dport, chunk)| L4::Sctp {
                sport,
                dport,
                chunk
            }),
        (
            prop::sample::select(vec![0u8, 1, 2, 3, 4, 8, 11, 12, 128, 129, 133, 135, 143]),
            any::<u16>(),
            prop::collection::vec(any::<u8>(), 0..48)
        )
            .prop_map(|(ty, id, quote)| L4::Icmp {
                ty,
                code: 0,
                id,
                quote
            }),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..16))
            .prop_map(|(proto, payload)| L4::Raw { proto, payload }),
    ]
}

fn arb_ext() -> impl Strategy<Value = Ext> {
    prop_oneof![
        (0u8..4).prop_map(Ext::HopByHop),
        (0u8..4).prop_map(Ext::Routing),
        (0u8..40).prop_map(Ext::DestOpts),
        (1u8..4).prop_map(Ext::Auth),
        (0u16..3, any::<bool>(), any::<u32>()).prop_map(|(offset, more, id)| Ext::Fragment {
            offset,
            more,
            id
        }),
    ]
}

fn arb_frame() -> impl Strategy<Value = (u8, Vec<u8>)> {
    let spec = (
        0u8..8,
        0u8..8,
        any::<bool>(),
        arb_l4(),
        prop::collection::vec(any::<u8>(), 0..10)
            .prop_map(|o| o.into_iter().map(|b| b % 2).collect::<Vec<u8>>()),
        prop::option::weighted(0.15, (any::<u16>(), 0u16..3, any::<bool>())),
        prop::collection::vec(arb_ext(), 0..11),
        0usize..40,
        prop::sample::select(vec![false, false, false, true]),
    )
        .prop_map(|(a, b, six, l4, opts, frag, ext, payload, no_l4)| {
            let mut p = PacketSpec::new(pool(a, six), pool(b, six), l4);
            if six {
                p.ipv6_ext = ext;
            } else {
                // NOP/EOL options (the datapath only skips them).
                p.ipv4_options = opts;
                p.ipv4_fragment = frag;
            }
            p.payload = payload;
            p.no_l4 = no_l4;
            p.frame()
        });
    let mutation = prop_oneof![
        (0usize..200, 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (14usize..200).prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..32).prop_map(Mutation::Extend),
    ];
    let mutated = (spec, prop::collection::vec(mutation, 0..4)).prop_map(|(mut f, ms)| {
        for m in ms {
            match m {
                Mutation::Flip(i, x) if i < f.len() => f[i] ^= x,
                Mutation::Truncate(n) => f.truncate(n.max(14)),
                Mutation::Extend(b) => f.extend(b),
                Mutation::Flip(..) => {}
            }
        }
        f
    });
    let random = (
        prop::sample::select(vec![0x0800u16, 0x86dd, 0x0806, 0x8100, 0x88cc]),
        prop::collection::vec(any::<u8>(), 0..120),
    )
        .prop_map(|(ty, body)| {
            let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
            f.extend(ty.to_be_bytes());
            f.extend(body);
            f
        });
    (0u8..2, prop_oneof![4 => mutated, 1 => random])
}

// ---------------------------------------------------------------------------
// The run.

fn load(t: &mut TestDatapath, c: &Contents) {
    t.set_config(Config {
        flags: c.config_flags,
        events_per_sec: 100_000_000,
        events_burst: 100_000_000,
        ..Default::default()
    });
    write_contents(t, c);
}

#[derive(Default)]
struct Tally {
    frames: u64,
    mismatches: Vec<String>,
    wrongly_allowed: u64,
    classes: BTreeMap<&'static str, u64>,
    etherparse_checked: u64,
    /// Frames the kernel would not build an skb from.
    refused: u64,
    /// Frames the reference judged `invalid-source` (dropped or audited).
    invalid_source: u64,
}

fn run_frame(t: &mut TestDatapath, c: &Contents, dir: u8, f: &[u8], tally: &mut Tally) {
    let class = classify(f);
    tally.frames += 1;
    *tally
        .classes
        .entry(match class {
            Class::Control => "control",
            Class::Neighbour(_) => "neighbour",
            Class::OtherL3 => "other-l3",
            Class::Bad(DropReason::Truncated) => "truncated",
            Class::Bad(DropReason::Malformed) => "malformed",
            Class::Bad(_) => "ext-limit",
            Class::LaterFragment => "later-fragment",
            Class::Ip { .. } => "ip",
        })
        .or_default() += 1;
    if let (
        Some(tuple),
        Class::Ip {
            src,
            dst,
            proto,
            sport,
            dport,
            ..
        },
    ) = (etherparse_tuple(f), &class)
    {
        tally.etherparse_checked += 1;
        if tuple != (*src, *dst, *proto, *sport, *dport) {
            tally.mismatches.push(format!(
                "classifier and etherparse disagree on {f:02x?}: {class:?} vs {tuple:?}"
            ));
        }
    }
    let want = expect(c, dir, &class, f);
    if matches!(
        want,
        Expect::Drop(DropReason::InvalidSource) | Expect::Audited(DropReason::InvalidSource)
    ) {
        tally.invalid_source += 1;
    }
    let Some(action) = t.try_run(dir, f) else {
        // BPF_PROG_TEST_RUN builds no skb from an IP frame whose IP header
        // is cut short; real veths are held to those in the lab tests.
        tally.refused += 1;
        if class != Class::Bad(DropReason::Truncated) {
            tally
                .mismatches
                .push(format!("the kernel refused a {class:?} frame: {f:02x?}"));
        }
        return;
    };
    let ev = t.events();
    let got = match (action, ev.first()) {
        (Action::Drop, Some(e)) => DropReason::from_u8(e.reason).map_or(Expect::Pass, Expect::Drop),
        (Action::Drop, None) => Expect::Drop(DropReason::Internal),
        (Action::Pass, Some(e)) if e.kind == event_kind::AUDIT => {
            DropReason::from_u8(e.reason).map_or(Expect::Pass, Expect::Audited)
        }
        (Action::Pass, _) => Expect::Pass,
    };
    if action == Action::Pass && matches!(want, Expect::Drop(_)) {
        tally.wrongly_allowed += 1;
    }
    if got != want && tally.mismatches.len() < 20 {
        tally.mismatches.push(format!(
            "dir {dir} {class:?}: datapath {got:?}, reference {want:?}; frame {f:02x?}"
        ));
    }
    if action == Action::Pass && matches!(class, Class::Ip { .. }) {
        // The next frame is the first of its flow again.
        t.forget_flows();
    }
}

fn frames_wanted() -> usize {
    std::env::var("PALISADE_FUZZ_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

#[test]
fn random_frames_never_pass_where_the_reference_drops() {
    let wanted = frames_wanted();
    let mut runner = TestRunner::new(RunnerConfig {
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        ..RunnerConfig::default()
    });
    let contents = arb_contents();
    let frames = arb_frame();
    let mut t = TestDatapath::new();
    let mut tally = Tally::default();
    let started = std::time::Instant::now();
    while (tally.frames as usize) < wanted {
        let c = contents.new_tree(&mut runner).unwrap().current();
        load(&mut t, &c);
        for _ in 0..FRAMES_PER_CONTENT.min(wanted - tally.frames as usize) {
            let (dir, f) = frames.new_tree(&mut runner).unwrap().current();
            run_frame(&mut t, &c, dir, &f, &mut tally);
        }
        erase_contents(&mut t, &c);
        if !tally.mismatches.is_empty() {
            break;
        }
    }
    eprintln!(
        "fuzz: {} frames in {:.1} s, {} verdict mismatches, {} allowed by mistake; \
         {} cross-checked with etherparse, {} refused by the kernel, {} judged invalid-source; \
         by class: {:?}",
        tally.frames,
        started.elapsed().as_secs_f64(),
        tally.mismatches.len(),
        tally.wrongly_allowed,
        tally.etherparse_checked,
        tally.refused,
        tally.invalid_source,
        tally.classes
    );
    assert!(tally.refused * 5 < tally.frames, "most frames must run");
    assert!(
        tally.mismatches.is_empty() && tally.wrongly_allowed == 0,
        "{} mismatches, {} allowed by mistake:\n{}",
        tally.mismatches.len(),
        tally.wrongly_allowed,
        tally.mismatches.join("\n")
    );
    // Every class was reached: the generators exercise what they claim.
    assert!(
        tally.invalid_source > 0,
        "no frame exercised source verification"
    );
    for class in [
        "control",
        "neighbour",
        "other-l3",
        "truncated",
        "malformed",
        "later-fragment",
        "ip",
    ] {
        assert!(
            tally.classes.contains_key(class),
            "no {class} frame generated: {:?}",
            tally.classes
        );
    }
}

#[test]
fn the_reference_catches_a_datapath_that_passes_what_it_should_drop() {
    // The check can fail: a frame the reference drops, run against an
    // endpoint the test leaves un-isolated behind the reference's back,
    // counts as allowed by mistake.
    let mut t = TestDatapath::new();
    let mut c = Contents::endpoint(EP, POD, ef::ISOLATED_INGRESS);
    load(&mut t, &c);
    let f = PacketSpec::tcp(pool(1, false), pool(2, false), 1000, 80, 2).frame();
    let mut tally = Tally::default();
    run_frame(&mut t, &c, direction::INGRESS, &f, &mut tally);
    assert_eq!((tally.wrongly_allowed, tally.mismatches.len()), (0, 0));
    t.set_endpoint(EndpointInfo {
        flags: 0,
        ..c.endpoint.unwrap()
    });
    run_frame(&mut t, &c, direction::INGRESS, &f, &mut tally);
    assert_eq!(tally.wrongly_allowed, 1, "{:?}", tally.mismatches);
    c.endpoint = None;
    erase_contents(&mut t, &c);
}
