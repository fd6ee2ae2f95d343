//! Per-packet cost of the datapath through BPF_PROG_TEST_RUN, next to the
//! empty program (`palisade_noop`) measured on the same packets in the same
//! run, at growing policy-map and CIDR-prefix sizes. Run as root:
//! `cargo xtask bench datapath [--repeat N]`.
//!
//! * established: an ACK of a tracked TCP connection the pod has answered
//!   (SYN, then SYN-ACK), repeated N times (IPv4 and IPv6). After the first
//!   run the flow is in the per-CPU flow cache, so this is the fast path.
//!   (Unanswered, the opener's ACKs would be judged by policy each time.)
//! * established, cache cold: M answered connections (a SYN and a SYN-ACK
//!   each), the flow cache emptied, then one ACK of each, once: every ACK
//!   misses the flow cache and takes the conntrack lookup (timed like the
//!   new-flow case below).
//! * new allowed SYN: BPF_PROG_TEST_RUN repeats one packet and after the
//!   first run a SYN is established, so this runs M distinct flows once each
//!   (different source ports) and sums the in-kernel durations; the empty
//!   program runs the same M packets the same way.
//! * denied SYN: repeated N times (denials leave no state). Drop events go
//!   through the per-CPU rate limiter (1000/s), so almost all runs take the
//!   suppressed path; the ring is drained between measurements.
//! * new allowed SYN from a CIDR peer: like "new allowed SYN" but the peer
//!   is not a pod and resolves through the LPM trie.
//! * denied SYN from a CIDR peer: like "denied SYN" (repeated) from that
//!   peer. After its first run the peer's identity comes from the per-CPU
//!   cache of resolved addresses.
//! * denied SYN, distinct CIDR peers: M SYNs from M different random
//!   addresses in 10.0.0.0/8 (where the prefixes are), once each, so every
//!   one misses that cache and resolves through the exact map and the LPM
//!   trie: the trie walk's growth with the number of prefixes.
//!
//! Then the pod's egress, where source verification applies, with the
//! check enforced and switched off (`CONFIG` flags) in the same run: an
//! established ACK from the pod (answered by the peer; fast path, no
//! check), established ACKs
//! with a cold flow cache and new allowed SYNs (both verified on the full
//! path), a denied SYN repeated N times (to TCP/22, which the pod may not
//! reach; drop events rate-limited as above) and M denied SYNs of distinct
//! flows (source ports), once each. `--egress-only` prints only this table.
//!
//! Then the same pod's ingress with 0, 1, 100 and 1,000
//! ClusterNetworkPolicy rules compiled from objects on top of the largest
//! tables (`datapath/tiers.rs` says which rules): established ACK, new
//! allowed SYN (distinct flows), denied SYN (repeated) and denied SYNs from
//! distinct peers. `--tiers-only` prints only this table.
//!
//! The stage table (`--stages-only`, at 1 policy entry and 1 prefix and
//! at 100,000 and 50,000): where a denied SYN and a new flow spend their
//! nanoseconds, measured by changing the map contents so that the
//! unchanged program stops at each stage in turn: no endpoint on the
//! interface, passed (parse, flow cache, conntrack, the endpoint lookup)
//! or dropped (plus the drop's counters and rate-limited event); the
//! endpoint's policy pending (plus the endpoint and the peer's identity);
//! denied by policy (plus the policy lookups: the whole denied path); an
//! allowed RST (judged like a SYN, but it opens no flow) and an allowed
//! SYN (plus the conntrack insert and the flow-cache write). Each a SYN
//! (RST) repeated N times, from M distinct source addresses in
//! 10.0.0.0/8 and on M distinct source ports, once each.
//!
//! Then the datapath log (`--datapath-log`), off (the default) and debug,
//! loaded side by side in the same run, on the ingress of the isolated pod:
//! the established ACK (fast path: never looks at the switch), a later
//! fragment without state and a TCP packet cut short in its header (rare
//! paths: each writes a record when logging is on; at most 20 a second per
//! CPU, so almost all runs take the rate-limited path), each repeated N
//! times. `--log-only` prints only this table.

#[path = "datapath/tiers.rs"]
mod tiers;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};
use palisade::datapath::DatapathLog;
use palisade_common::{
    CIDR_IDENTITY_BASE, Config, EndpointInfo, IDENTITY_ANY, IDENTITY_WORLD, IpcacheValue,
    PolicyKey, PolicyValue,
    config_flags::SOURCE_VERIFY_OFF,
    direction::{EGRESS, INGRESS},
    endpoint_flags as ef, program_names, proto,
};
use palisade_tests::{
    bpf::{TEST_IFINDEX, TestDatapath},
    packet::{PacketSpec, ethernet, ipv4, tcp},
};

const EP: u32 = 1;
const POD: u32 = 300;
const PEER: u32 = 301;

fn pod() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10))
}
fn peer() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, 20))
}
fn pod6() -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10))
}
fn peer6() -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20))
}
/// Deterministic pseudo-random numbers (xorshift) for filler entries.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn setup(policy_entries: u32, cidr_prefixes: u32) -> (TestDatapath, IpAddr) {
    let mut t = TestDatapath::new();
    t.set_endpoint(EndpointInfo {
        ep_id: EP,
        identity: POD,
        flags: ef::ISOLATED_INGRESS,
        _pad: 0,
    });
    for (addr, identity) in [(pod(), POD), (peer(), PEER), (pod6(), POD), (peer6(), PEER)] {
        t.ipcache_exact(
            addr,
            IpcacheValue {
                identity,
                cidr_identity: IDENTITY_WORLD,
            },
        );
    }
    let key = |identity| PolicyKey {
        ep_id: EP,
        identity,
        direction: INGRESS,
        proto: proto::TCP,
        view: 0,
        _pad: 0,
    };
    t.allow(key(PEER), PolicyValue::range(80, 80));
    // The pod answers from its own addresses (source verification).
    for a in [pod(), pod6()] {
        t.allow_source(TEST_IFINDEX, a.into());
    }
    fill_policy(&mut t, policy_entries, 2);
    // The probe peer is in the last region.
    let last = fill_prefixes(&mut t, cidr_prefixes, CIDR_IDENTITY_BASE);
    let mut peer_in_cidr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    if let Some((net, id)) = last {
        // The most specific region containing this address.
        peer_in_cidr = IpAddr::V4(net.network());
        t.ipcache_prefix(IpNet::V4(Ipv4Net::new(net.network(), 32).unwrap()), id);
        t.allow(key(id), PolicyValue::range(80, 80));
    }
    (t, peer_in_cidr)
}

/// Filler: `n - 1` entries of other endpoints (ids from `ep_base`) and
/// identities, so the map really holds `n` entries.
fn fill_policy(t: &mut TestDatapath, n: u32, ep_base: u32) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 1..n {
        let k = PolicyKey {
            ep_id: ep_base + (i % 1000),
            identity: 1000 + (rng.next() % 1_000_000) as u32,
            direction: (i % 2) as u8,
            proto: [proto::TCP, proto::UDP, proto::SCTP][(i % 3) as usize],
            view: 0,
            _pad: 0,
        };
        t.allow(
            k,
            PolicyValue::range((i % 60000) as u16, (i % 60000) as u16 + 10),
        );
    }
}

/// CIDR regions: `n` random prefixes in 10.0.0.0/8 with identities from
/// `id_base`; the last one and its identity.
fn fill_prefixes(t: &mut TestDatapath, n: u32, id_base: u32) -> Option<(Ipv4Net, u32)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ 0xffff);
    let mut last = None;
    for i in 0..n {
        let len = 16 + (rng.next() % 17) as u8;
        let addr = Ipv4Addr::from(0x0a00_0000 | (rng.next() as u32 & 0x00ff_ffff));
        let net = Ipv4Net::new(addr, len).unwrap().trunc();
        let id = id_base + i;
        t.ipcache_prefix(IpNet::V4(net), id);
        last = Some((net, id));
    }
    last
}

/// ns per run: (palisade, noop) on one packet repeated.
fn repeated(t: &TestDatapath, frame: &[u8], repeat: u32) -> (f64, f64) {
    let (_, ours) = t.run_program(program_names::TO_POD, frame, repeat);
    let (_, noop) = t.run_program(program_names::NOOP, frame, repeat);
    // The kernel reports the mean duration of one run.
    (ours, noop)
}

/// ns per run: (palisade, noop) over the ACKs of distinct tracked flows,
/// once each (flow-cache misses).
fn established_cold(t: &mut TestDatapath, flows: u16) -> (f64, f64) {
    t.clear_ct();
    for i in 0..flows {
        let syn = PacketSpec::tcp(peer(), pod(), 10_000 + i, 80, tcp::SYN).frame();
        assert_eq!(t.run_program(program_names::TO_POD, &syn, 1).0, u32::MAX);
        answer(t, pod(), peer(), 10_000 + i);
    }
    t.dp.maps.clear_flow_cache().unwrap();
    let (mut ours, mut noop) = (0.0, 0.0);
    for i in 0..flows {
        let ack = PacketSpec::tcp(peer(), pod(), 10_000 + i, 80, tcp::ACK).frame();
        let (rv, d) = t.run_program(program_names::TO_POD, &ack, 1);
        assert_eq!(rv, u32::MAX, "tracked flow must pass");
        ours += d;
        noop += t.run_program(program_names::NOOP, &ack, 1).1;
    }
    t.clear_ct();
    (ours / flows as f64, noop / flows as f64)
}

/// The SYN-ACK from `from` answering a SYN from `to`'s port `sport` to port
/// 80, through the program of `from`'s side: the flow is answered, so its
/// opener's ACKs ride on the conntrack entry.
fn answer(t: &TestDatapath, from: IpAddr, to: IpAddr, sport: u16) {
    let prog = if from == pod() || from == pod6() {
        program_names::FROM_POD
    } else {
        program_names::TO_POD
    };
    let f = PacketSpec::tcp(from, to, 80, sport, tcp::SYN | tcp::ACK).frame();
    assert_eq!(
        t.run_program(prog, &f, 1).0,
        u32::MAX,
        "the SYN-ACK must pass"
    );
}

/// ns per run: (palisade, noop) over denied SYNs from distinct sources,
/// once each.
fn denied_from(t: &mut TestDatapath, srcs: &[IpAddr]) -> (f64, f64) {
    let (mut ours, mut noop) = (0.0, 0.0);
    for (i, src) in srcs.iter().enumerate() {
        let f = PacketSpec::tcp(*src, pod(), 10_000 + i as u16, 22, tcp::SYN).frame();
        let (rv, d) = t.run_program(program_names::TO_POD, &f, 1);
        assert_eq!(rv, 2, "SYN from {src} to port 22 must be denied");
        ours += d;
        noop += t.run_program(program_names::NOOP, &f, 1).1;
        if i % 1000 == 999 {
            let _ = t.events();
        }
    }
    let _ = t.events();
    (ours / srcs.len() as f64, noop / srcs.len() as f64)
}

/// `n` distinct random addresses in 10.0.0.0/8.
fn random_sources(n: usize) -> Vec<IpAddr> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < n {
        seen.insert(0x0a00_0000 | (rng.next() as u32 & 0x00ff_ffff));
    }
    seen.into_iter()
        .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
        .collect()
}

/// ns per run: (palisade, noop) over distinct new flows, once each.
fn distinct(t: &mut TestDatapath, src: IpAddr, flows: u16) -> (f64, f64) {
    t.clear_ct();
    let frames: Vec<Vec<u8>> = (0..flows)
        .map(|i| PacketSpec::tcp(src, pod(), 10_000 + i, 80, tcp::SYN).frame())
        .collect();
    let (mut ours, mut noop) = (0.0, 0.0);
    for f in &frames {
        let (rv, d) = t.run_program(program_names::TO_POD, f, 1);
        assert_eq!(rv, u32::MAX, "new flow must be allowed");
        ours += d;
        noop += t.run_program(program_names::NOOP, f, 1).1;
    }
    t.clear_ct();
    (ours / flows as f64, noop / flows as f64)
}

/// The pod isolated for egress, allowed TCP/80 to anyone, its own
/// addresses as its sources; source verification per `flags`.
fn egress_setup(flags: u32) -> TestDatapath {
    let mut t = TestDatapath::new();
    t.set_endpoint(EndpointInfo {
        ep_id: EP,
        identity: POD,
        flags: ef::ISOLATED_EGRESS,
        _pad: 0,
    });
    for (addr, identity) in [(pod(), POD), (peer(), PEER), (pod6(), POD), (peer6(), PEER)] {
        t.ipcache_exact(
            addr,
            IpcacheValue {
                identity,
                cidr_identity: IDENTITY_WORLD,
            },
        );
    }
    for a in [pod(), pod6()] {
        t.allow_source(TEST_IFINDEX, a.into());
    }
    t.allow(
        PolicyKey {
            ep_id: EP,
            identity: IDENTITY_ANY,
            direction: EGRESS,
            proto: proto::TCP,
            view: 0,
            _pad: 0,
        },
        PolicyValue::range(80, 80),
    );
    t.set_config(Config {
        flags,
        ..Default::default()
    });
    t
}

/// ns per run from the pod: (palisade, noop) over `frames`, once each,
/// each returning `expect` (`u32::MAX` passed, 2 dropped).
fn once_each_from_pod(t: &mut TestDatapath, frames: &[Vec<u8>], expect: u32) -> (f64, f64) {
    once_each(t, program_names::FROM_POD, frames, expect)
}

/// ns per run through program `prog`: (palisade, noop) over `frames`, once
/// each, each returning `expect` (`u32::MAX` passed, 2 dropped). The ring
/// is drained every 1000 frames, as drops report.
fn once_each(
    t: &mut TestDatapath,
    prog: &'static str,
    frames: &[Vec<u8>],
    expect: u32,
) -> (f64, f64) {
    let (mut ours, mut noop) = (0.0, 0.0);
    for (i, f) in frames.iter().enumerate() {
        let (rv, d) = t.run_program(prog, f, 1);
        assert_eq!(rv, expect, "unexpected verdict through {prog}");
        ours += d;
        noop += t.run_program(program_names::NOOP, f, 1).1;
        if i % 1000 == 999 {
            let _ = t.events();
        }
    }
    let _ = t.events();
    (ours / frames.len() as f64, noop / frames.len() as f64)
}

/// The egress table: source verification enforced, then off.
fn egress_table(repeat: u32, flows: u16) {
    println!();
    println!(
        "egress (from the pod), repeat={repeat}, distinct flows={flows}; ns/packet (palisade / empty program = ratio)"
    );
    println!(
        "{:>20} | {:>24} | {:>24} | {:>24} | {:>24} | {:>24}",
        "source verification",
        "established ACK",
        "established, cache cold",
        "new allowed SYN",
        "denied SYN",
        "denied, distinct flows"
    );
    let cell = |(a, b): (f64, f64)| format!("{a:7.1} / {b:5.1} = {:4.2}x", a / b);
    for (name, flags) in [("enforce", 0), ("off", SOURCE_VERIFY_OFF)] {
        let mut t = egress_setup(flags);
        let out = |sport, flags| PacketSpec::tcp(pod(), peer(), sport, 80, flags).frame();
        let to_22 = |sport| PacketSpec::tcp(pod(), peer(), sport, 22, tcp::SYN).frame();
        assert_eq!(
            t.run_program(program_names::FROM_POD, &out(40_000, tcp::SYN), 1)
                .0,
            u32::MAX
        );
        answer(&t, peer(), pod(), 40_000);
        let ack = out(40_000, tcp::ACK);
        let (_, ours) = t.run_program(program_names::FROM_POD, &ack, repeat);
        let (_, noop) = t.run_program(program_names::NOOP, &ack, repeat);
        let est = (ours, noop);
        t.clear_ct();
        let syns: Vec<Vec<u8>> = (0..flows).map(|i| out(10_000 + i, tcp::SYN)).collect();
        let new = once_each_from_pod(&mut t, &syns, u32::MAX);
        // Answered now; the flow cache emptied: every ACK takes the
        // conntrack lookup.
        for i in 0..flows {
            answer(&t, peer(), pod(), 10_000 + i);
        }
        t.dp.maps.clear_flow_cache().unwrap();
        let acks: Vec<Vec<u8>> = (0..flows).map(|i| out(10_000 + i, tcp::ACK)).collect();
        let cold = once_each_from_pod(&mut t, &acks, u32::MAX);
        // Denials leave no state: one SYN repeated, then distinct flows.
        let denied = to_22(40_001);
        let (rv, ours) = t.run_program(program_names::FROM_POD, &denied, repeat);
        assert_eq!(rv, 2, "a SYN to TCP/22 must be denied");
        let (_, noop) = t.run_program(program_names::NOOP, &denied, repeat);
        let den = (ours, noop);
        let _ = t.events();
        let denied_syns: Vec<Vec<u8>> = (0..flows).map(|i| to_22(10_000 + i)).collect();
        let den_distinct = once_each_from_pod(&mut t, &denied_syns, 2);
        println!(
            "{name:>20} | {:>24} | {:>24} | {:>24} | {:>24} | {:>24}",
            cell(est),
            cell(cold),
            cell(new),
            cell(den),
            cell(den_distinct)
        );
    }
}

/// The stage table (see the module's doc): the ingress of the pod of
/// [`setup`], its map contents changed so that the program stops at each
/// stage in turn; nothing in the program is there for the benchmark.
fn stages_table(repeat: u32, flows: u16, policy: u32, cidrs: u32) {
    println!();
    println!(
        "where new and denied flows spend (ingress, {policy} policy entries, {cidrs} CIDR prefixes), \
         repeat={repeat}, distinct={flows}; ns/packet (palisade / empty program = ratio)"
    );
    println!(
        "{:>44} | {:>24} | {:>24} | {:>24}",
        "the program stops", "repeated", "distinct sources", "distinct flows (ports)"
    );
    let cell = |(a, b): (f64, f64)| format!("{a:7.1} / {b:5.1} = {:4.2}x", a / b);
    let (mut t, _) = setup(policy, cidrs);
    let sources = random_sources(flows as usize);
    let to_22 = |src: IpAddr, sport: u16| PacketSpec::tcp(src, pod(), sport, 22, tcp::SYN).frame();
    let to_80 = |sport: u16, flags| PacketSpec::tcp(peer(), pod(), sport, 80, flags).frame();
    let endpoint = |flags| EndpointInfo {
        ep_id: EP,
        identity: POD,
        flags,
        _pad: 0,
    };
    const DROP: u32 = 2;
    const PASS: u32 = u32::MAX;
    // A SYN to TCP/22, which the pod does not allow, stopped at each stage.
    let denied_rows: [(&str, Option<EndpointInfo>, u32, u32); 4] = [
        (
            "after conntrack: no endpoint, passes",
            None,
            palisade_common::config_flags::UNKNOWN_ENDPOINT_PASS,
            PASS,
        ),
        ("after conntrack: no endpoint, drop + event", None, 0, DROP),
        (
            "after identity: policy pending, drop + event",
            Some(endpoint(ef::ISOLATED_INGRESS | ef::POLICY_PENDING)),
            0,
            DROP,
        ),
        (
            "after policy: denied, drop + event (full)",
            Some(endpoint(ef::ISOLATED_INGRESS)),
            0,
            DROP,
        ),
    ];
    for (name, ep, flags, expect) in denied_rows {
        match ep {
            Some(ep) => t.set_endpoint(ep),
            None => t.remove_endpoint(),
        }
        t.set_config(Config {
            flags,
            ..Default::default()
        });
        let f = to_22(peer(), 40_001);
        assert_eq!(
            t.run_program(program_names::TO_POD, &f, 1).0,
            expect,
            "{name}"
        );
        let (rv, ours) = t.run_program(program_names::TO_POD, &f, repeat);
        assert_eq!(rv, expect, "{name}");
        let (_, noop) = t.run_program(program_names::NOOP, &f, repeat);
        let _ = t.events();
        let from: Vec<Vec<u8>> = sources.iter().map(|s| to_22(*s, 40_001)).collect();
        let srcs = once_each(&mut t, program_names::TO_POD, &from, expect);
        let ports: Vec<Vec<u8>> = (0..flows).map(|i| to_22(peer(), 10_000 + i)).collect();
        let flows = once_each(&mut t, program_names::TO_POD, &ports, expect);
        assert_eq!(
            t.ct_len(),
            0,
            "{name}: no stage before the insert leaves state"
        );
        println!(
            "{name:>44} | {:>24} | {:>24} | {:>24}",
            cell((ours, noop)),
            cell(srcs),
            cell(flows)
        );
    }
    // Allowed (TCP/80 from the peer): a RST is judged like a SYN but opens
    // no flow, so the difference to the SYN is the conntrack insert and
    // the flow-cache write.
    t.set_endpoint(endpoint(ef::ISOLATED_INGRESS));
    t.set_config(Config::default());
    t.clear_ct();
    let rst = to_80(40_002, tcp::RST);
    let (rv, ours) = t.run_program(program_names::TO_POD, &rst, repeat);
    assert_eq!(rv, PASS, "an allowed RST passes");
    let (_, noop) = t.run_program(program_names::NOOP, &rst, repeat);
    let rsts: Vec<Vec<u8>> = (0..flows).map(|i| to_80(10_000 + i, tcp::RST)).collect();
    let rst_flows = once_each(&mut t, program_names::TO_POD, &rsts, PASS);
    assert_eq!(t.ct_len(), 0, "an allowed RST leaves no state");
    println!(
        "{:>44} | {:>24} | {:>24} | {:>24}",
        "after policy: allowed RST, no state",
        cell((ours, noop)),
        "-",
        cell(rst_flows)
    );
    let syns: Vec<Vec<u8>> = (0..flows).map(|i| to_80(10_000 + i, tcp::SYN)).collect();
    let syn_flows = once_each(&mut t, program_names::TO_POD, &syns, PASS);
    t.clear_ct();
    println!(
        "{:>44} | {:>24} | {:>24} | {:>24}",
        "full: allowed SYN, conntrack insert",
        "-",
        "-",
        cell(syn_flows)
    );
}

/// The tier table: ClusterNetworkPolicy rules on the largest tables.
fn tiers_table(repeat: u32, flows: u16) {
    println!();
    println!(
        "ClusterNetworkPolicy rules selecting the pod (no rule matches the flows: every tier read), \
         on 100000 policy entries and 50000 CIDR prefixes; repeat={repeat}, distinct flows={flows}; \
         ns/packet (palisade / empty program = ratio)"
    );
    println!(
        "{:>10} | {:>24} | {:>24} | {:>24} | {:>24}",
        "tier rules", "established ACK", "new allowed SYN", "denied SYN", "denied, distinct peers"
    );
    let cell = |(a, b): (f64, f64)| format!("{a:7.1} / {b:5.1} = {:4.2}x", a / b);
    let sources = tiers::sources(flows as usize);
    for rules in [0, 1, 100, 1000] {
        let mut t = tiers::setup(rules, [pod(), pod6()], [peer(), peer6()]);
        fill_policy(&mut t, 100_000, 1_000_000);
        fill_prefixes(&mut t, 50_000, CIDR_IDENTITY_BASE + (1 << 22));
        let syn = PacketSpec::tcp(peer(), pod(), 40_000, 80, tcp::SYN).frame();
        assert_eq!(t.run_program(program_names::TO_POD, &syn, 1).0, u32::MAX);
        answer(&t, pod(), peer(), 40_000);
        let ack = PacketSpec::tcp(peer(), pod(), 40_000, 80, tcp::ACK).frame();
        let est = repeated(&t, &ack, repeat);
        t.clear_ct();
        let new = distinct(&mut t, peer(), flows);
        let denied = PacketSpec::tcp(peer(), pod(), 40_001, 22, tcp::SYN).frame();
        let (rv, _) = t.run_program(program_names::TO_POD, &denied, 1);
        assert_eq!(rv, 2, "TCP/22 is denied");
        let den = repeated(&t, &denied, repeat);
        let _ = t.events();
        let den_distinct = denied_from(&mut t, &sources);
        println!(
            "{rules:>10} | {:>24} | {:>24} | {:>24} | {:>24}",
            cell(est),
            cell(new),
            cell(den),
            cell(den_distinct)
        );
    }
}

/// Off and debug datapath logging side by side (see the module's doc).
fn log_table(repeat: u32) {
    println!();
    println!(
        "datapath log (--datapath-log), ingress of an isolated pod, repeat={repeat}; ns/packet (palisade / empty program = ratio)"
    );
    println!(
        "{:>8} | {:>24} | {:>24} | {:>24}",
        "log", "established ACK", "later fragment, no state", "truncated TCP header"
    );
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (peer(), pod()) else {
        unreachable!("IPv4 probe addresses")
    };
    let fragment = ethernet(
        0x0800,
        &ipv4(src, dst, proto::UDP, &[], Some((7, 100, true)), &[7; 16]),
    );
    let truncated = ethernet(0x0800, &ipv4(src, dst, proto::TCP, &[], None, &[0, 80, 0]));
    for (name, log) in [("off", DatapathLog::Off), ("debug", DatapathLog::Debug)] {
        let mut t = TestDatapath::with_datapath_log(log);
        log_setup(&mut t);
        let syn = PacketSpec::tcp(peer(), pod(), 40_000, 80, tcp::SYN).frame();
        let ack = PacketSpec::tcp(peer(), pod(), 40_000, 80, tcp::ACK).frame();
        assert_eq!(t.run_program(program_names::TO_POD, &syn, 1).0, u32::MAX);
        answer(&t, pod(), peer(), 40_000);
        let est = repeated(&t, &ack, repeat);
        // Both drop (the pod is isolated for ingress).
        assert_eq!(t.run_program(program_names::TO_POD, &fragment, 1).0, 2);
        assert_eq!(t.run_program(program_names::TO_POD, &truncated, 1).0, 2);
        let frag = repeated(&t, &fragment, repeat);
        let _ = t.events();
        let trunc = repeated(&t, &truncated, repeat);
        let _ = t.events();
        let cell = |(a, b): (f64, f64)| format!("{a:7.1} / {b:5.1} = {:4.2}x", a / b);
        println!(
            "{name:>8} | {:>24} | {:>24} | {:>24}",
            cell(est),
            cell(frag),
            cell(trunc)
        );
    }
}

/// The isolated pod and its peer of [`setup`], without the filler tables.
fn log_setup(t: &mut TestDatapath) {
    t.set_endpoint(EndpointInfo {
        ep_id: EP,
        identity: POD,
        flags: ef::ISOLATED_INGRESS,
        _pad: 0,
    });
    for (addr, identity) in [(pod(), POD), (peer(), PEER)] {
        t.ipcache_exact(
            addr,
            IpcacheValue {
                identity,
                cidr_identity: IDENTITY_WORLD,
            },
        );
    }
    t.allow(
        PolicyKey {
            ep_id: EP,
            identity: PEER,
            direction: INGRESS,
            proto: proto::TCP,
            view: 0,
            _pad: 0,
        },
        PolicyValue::range(80, 80),
    );
    t.allow_source(TEST_IFINDEX, pod().into());
}

fn main() {
    let repeat: u32 = std::env::args()
        .find_map(|a| {
            a.strip_prefix("--repeat=")
                .map(|v| v.parse().expect("--repeat=N"))
        })
        .unwrap_or(1_000_000);
    // Below the test datapath's conntrack capacity (16 384): more would
    // measure LRU evictions instead.
    let flows: u16 = 10_000;
    if std::env::args().any(|a| a == "--egress-only") {
        egress_table(repeat, flows);
        return;
    }
    if std::env::args().any(|a| a == "--tiers-only") {
        tiers_table(repeat, flows);
        return;
    }
    if std::env::args().any(|a| a == "--stages-only") {
        for (policy, cidrs) in [(1, 1), (100_000, 50_000)] {
            stages_table(repeat, flows, policy, cidrs);
        }
        return;
    }
    if std::env::args().any(|a| a == "--log-only") {
        log_table(repeat);
        return;
    }
    println!(
        "BPF_PROG_TEST_RUN, repeat={repeat}, distinct new flows={flows}; ns/packet (palisade / empty program = ratio)"
    );
    println!(
        "{:>8} {:>8} | {:>24} | {:>24} | {:>24} | {:>24} | {:>24} | {:>24} | {:>24} | {:>24}",
        "policy",
        "cidrs",
        "established ACK",
        "established ACK IPv6",
        "established, cache cold",
        "new allowed SYN",
        "denied SYN",
        "new SYN from CIDR peer",
        "denied SYN from CIDR peer",
        "denied, distinct CIDR peers"
    );
    let sources = random_sources(flows as usize);
    let sizes: [(u32, u32); 7] = [
        (1, 1),
        (1_000, 1),
        (10_000, 1),
        (100_000, 1),
        (1, 1_000),
        (1, 50_000),
        (100_000, 50_000),
    ];
    // `--quick`: only the smallest tables (for iterating on the datapath);
    // `--sizes=POLICYxCIDRS,...`: these rows only (e.g. `1x1,1x50000`).
    let quick = std::env::args().any(|a| a == "--quick");
    let chosen: Option<Vec<(u32, u32)>> = std::env::args().find_map(|a| {
        a.strip_prefix("--sizes=").map(|v| {
            v.split(',')
                .map(|r| {
                    let (p, c) = r.split_once('x').expect("--sizes=POLICYxCIDRS,...");
                    (
                        p.parse().expect("policy entries"),
                        c.parse().expect("CIDR prefixes"),
                    )
                })
                .collect()
        })
    });
    let rows: Vec<(u32, u32)> = match chosen {
        Some(rows) => rows,
        None if quick => sizes[..1].to_vec(),
        None => sizes.to_vec(),
    };
    for (policy, cidrs) in rows {
        let (mut t, cidr_peer) = setup(policy, cidrs);
        let syn = PacketSpec::tcp(peer(), pod(), 40_000, 80, tcp::SYN).frame();
        let ack = PacketSpec::tcp(peer(), pod(), 40_000, 80, tcp::ACK).frame();
        let denied = PacketSpec::tcp(peer(), pod(), 40_001, 22, tcp::SYN).frame();
        assert_eq!(t.run_program(program_names::TO_POD, &syn, 1).0, u32::MAX);
        answer(&t, pod(), peer(), 40_000);
        let est = repeated(&t, &ack, repeat);
        let syn6 = PacketSpec::tcp(peer6(), pod6(), 40_000, 80, tcp::SYN).frame();
        let ack6 = PacketSpec::tcp(peer6(), pod6(), 40_000, 80, tcp::ACK).frame();
        assert_eq!(t.run_program(program_names::TO_POD, &syn6, 1).0, u32::MAX);
        answer(&t, pod6(), peer6(), 40_000);
        let est6 = repeated(&t, &ack6, repeat);
        let cold = established_cold(&mut t, flows);
        let new = distinct(&mut t, peer(), flows);
        let den = repeated(&t, &denied, repeat);
        let _ = t.events();
        let cidr = distinct(&mut t, cidr_peer, flows);
        let cidr_denied = PacketSpec::tcp(cidr_peer, pod(), 40_001, 22, tcp::SYN).frame();
        let cidr_den = repeated(&t, &cidr_denied, repeat);
        let _ = t.events();
        let cidr_distinct = denied_from(&mut t, &sources);
        let cell = |(a, b): (f64, f64)| format!("{a:7.1} / {b:5.1} = {:4.2}x", a / b);
        println!(
            "{policy:>8} {cidrs:>8} | {:>24} | {:>24} | {:>24} | {:>24} | {:>24} | {:>24} | {:>24} | {:>24}",
            cell(est),
            cell(est6),
            cell(cold),
            cell(new),
            cell(den),
            cell(cidr),
            cell(cidr_den),
            cell(cidr_distinct)
        );
    }
    egress_table(repeat, flows);
    tiers_table(repeat, flows);
    log_table(repeat);
}
