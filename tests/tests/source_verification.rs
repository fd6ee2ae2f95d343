//! Source verification on the pod's egress (`ebpf/src/source.rs`) through
//! BPF_PROG_TEST_RUN: a packet from an address the pod may not use is
//! dropped as `invalid-source` in every protocol and family, isolated or
//! not, reported in audit mode, ignored when off; neighbour discovery from
//! link-scoped sources still passes; namespace prefixes extend the pod's
//! sources; and a spoofed packet cannot ride on connection-tracking or
//! flow-cache state that verified packets created. Needs root.

use std::net::IpAddr;

use ipnet::IpNet;
use palisade_common::{
    Config, DropReason, EndpointInfo, ForwardReason, IDENTITY_ANY, PolicyKey, PolicyValue,
    config_flags,
    direction::{EGRESS, INGRESS},
    event_kind, proto, verdict,
};
use palisade_tests::{
    bpf::{Action, TEST_IFINDEX, TestDatapath},
    fixture::{self, peer, pod},
    packet::{L4, PacketSpec, arp_request, sctp, tcp},
};

const EP: u32 = 7;
const POD_ID: u32 = 300;
const PEER_ID: u32 = 301;

/// Another pod's address: not one the pod under test may send from.
fn other(v6: bool) -> IpAddr {
    if v6 {
        "2001:db8::11".parse().unwrap()
    } else {
        "198.18.0.11".parse().unwrap()
    }
}

fn key(dir: u8, proto: u8) -> PolicyKey {
    PolicyKey {
        ep_id: EP,
        identity: IDENTITY_ANY,
        direction: dir,
        proto,
        view: 0,
        _pad: 0,
    }
}

fn config(flags: u32) -> Config {
    Config {
        flags,
        events_per_sec: 1_000_000,
        events_burst: 1_000_000,
        ..Default::default()
    }
}

/// The fixture's pod (its own addresses are its sources), isolated in
/// both directions or in none, every egress protocol allowed to anyone.
fn datapath(isolated: bool, flags: u32) -> TestDatapath {
    let mut t = fixture::isolated(EP, POD_ID, PEER_ID);
    if !isolated {
        t.set_endpoint(EndpointInfo {
            ep_id: EP,
            identity: POD_ID,
            flags: 0,
            _pad: 0,
        });
    }
    for p in [proto::TCP, proto::UDP, proto::SCTP, proto::OTHER] {
        t.allow(key(EGRESS, p), PolicyValue::ALL_PORTS);
    }
    t.set_config(config(flags));
    t
}

fn transports() -> [L4; 4] {
    [
        L4::Tcp {
            sport: 40_000,
            dport: 80,
            flags: tcp::SYN,
        },
        L4::Udp {
            sport: 40_001,
            dport: 53,
        },
        L4::Sctp {
            sport: 40_002,
            dport: 2905,
            chunk: Some(sctp::INIT),
        },
        L4::Icmp {
            ty: 8,
            code: 0,
            id: 7,
            quote: vec![],
        },
    ]
}

/// The same transport header for the family (ICMP echo is type 128 in v6).
fn for_family(l4: &L4, v6: bool) -> L4 {
    match l4 {
        L4::Icmp { id, .. } if v6 => L4::Icmp {
            ty: 128,
            code: 0,
            id: *id,
            quote: vec![],
        },
        other => other.clone(),
    }
}

fn invalid_source() -> u8 {
    DropReason::InvalidSource as u8
}

#[test]
fn spoofed_packets_drop_in_every_protocol_and_family_whatever_the_isolation() {
    for isolated in [true, false] {
        let mut t = datapath(isolated, 0);
        for v6 in [false, true] {
            for l4 in transports() {
                let l4 = for_family(&l4, v6);
                let own = PacketSpec::new(pod(v6), peer(v6), l4.clone());
                let spoofed = PacketSpec::new(other(v6), peer(v6), l4.clone());
                let what = format!("isolated={isolated} v6={v6} {l4:?}");
                t.clear_ct();
                let _ = t.events();
                assert_eq!(t.run(EGRESS, &own.frame()), Action::Pass, "own: {what}");
                assert!(t.events().is_empty(), "own: {what}");
                let tracked = t.ct_len();
                assert_eq!(
                    t.run(EGRESS, &spoofed.frame()),
                    Action::Drop,
                    "spoofed: {what}"
                );
                let ev = t.events();
                assert_eq!(ev.len(), 1, "one event: {what}");
                let e = &ev[0];
                assert_eq!(
                    (e.kind, e.reason, e.direction, e.ep_id, e.ifindex),
                    (event_kind::DROP, invalid_source(), EGRESS, EP, TEST_IFINDEX),
                    "{what}"
                );
                assert_eq!(
                    palisade_common::addr_to_bytes(e.saddr)[..if v6 { 16 } else { 4 }],
                    match other(v6) {
                        IpAddr::V4(a) => a.octets().to_vec(),
                        IpAddr::V6(a) => a.octets().to_vec(),
                    },
                    "the event names the borrowed address: {what}"
                );
                assert_eq!(t.ct_len(), tracked, "no state for it: {what}");
            }
        }
        assert_eq!(
            t.counter(EGRESS, verdict::DROPPED, invalid_source())
                .packets,
            8,
            "isolated={isolated}"
        );
    }
}

#[test]
fn own_addresses_are_judged_by_policy_as_before() {
    for v6 in [false, true] {
        let mut t = datapath(true, 0);
        t.disallow(&key(EGRESS, proto::UDP));
        let udp = |src| PacketSpec::udp(src, peer(v6), 40_001, 53).frame();
        assert_eq!(t.run(EGRESS, &udp(pod(v6))), Action::Drop);
        assert_eq!(
            t.events().last().map(|e| e.reason),
            Some(DropReason::PolicyDenied as u8),
            "v6={v6}"
        );
        assert_eq!(t.run(EGRESS, &udp(other(v6))), Action::Drop);
        assert_eq!(
            t.events().last().map(|e| e.reason),
            Some(invalid_source()),
            "the source is checked first (v6={v6})"
        );
        // Ingress is not source-checked: replies and new flows from any
        // peer reach the pod as policy says.
        let inbound = PacketSpec::tcp(other(v6), pod(v6), 5000, 80, tcp::SYN).frame();
        t.allow(key(INGRESS, proto::TCP), PolicyValue::ALL_PORTS);
        assert_eq!(t.run(INGRESS, &inbound), Action::Pass, "v6={v6}");
    }
}

#[test]
fn audit_mode_passes_and_reports_every_spoofed_packet() {
    for v6 in [false, true] {
        let mut t = datapath(false, config_flags::SOURCE_VERIFY_AUDIT);
        let spoofed = |flags| PacketSpec::tcp(other(v6), peer(v6), 40_000, 80, flags).frame();
        assert_eq!(t.run(EGRESS, &spoofed(tcp::SYN)), Action::Pass);
        // Plain segments of the spoofed flow never come from the flow
        // cache: each takes the full path and is reported.
        for _ in 0..3 {
            assert_eq!(t.run(EGRESS, &spoofed(tcp::ACK)), Action::Pass);
        }
        let ev = t.events();
        assert_eq!(ev.len(), 4, "v6={v6}");
        assert!(
            ev.iter()
                .all(|e| e.kind == event_kind::AUDIT && e.reason == invalid_source()),
            "v6={v6}: {ev:?}"
        );
        assert_eq!(
            t.counter(EGRESS, verdict::AUDIT, invalid_source()).packets,
            4
        );
        // The pod's own flow is not reported.
        let own = PacketSpec::tcp(pod(v6), peer(v6), 40_000, 80, tcp::SYN).frame();
        assert_eq!(t.run(EGRESS, &own), Action::Pass);
        assert!(t.events().is_empty());
        // Audit passes what source verification would drop, not what
        // policy drops.
        let mut t = datapath(true, config_flags::SOURCE_VERIFY_AUDIT);
        t.disallow(&key(EGRESS, proto::TCP));
        assert_eq!(t.run(EGRESS, &spoofed(tcp::SYN)), Action::Drop);
        assert_eq!(
            t.events().last().map(|e| (e.kind, e.reason)),
            Some((event_kind::DROP, DropReason::PolicyDenied as u8))
        );
    }
}

#[test]
fn off_mode_does_not_look_at_sources() {
    for v6 in [false, true] {
        let mut t = datapath(false, config_flags::SOURCE_VERIFY_OFF);
        let spoofed = PacketSpec::udp(other(v6), peer(v6), 40_001, 53).frame();
        assert_eq!(t.run(EGRESS, &spoofed), Action::Pass);
        assert!(t.events().is_empty());
        // Off wins over audit.
        t.set_config(config(
            config_flags::SOURCE_VERIFY_OFF | config_flags::SOURCE_VERIFY_AUDIT,
        ));
        assert_eq!(t.run(EGRESS, &spoofed), Action::Pass);
        assert!(t.events().is_empty());
        let mut t = datapath(true, config_flags::SOURCE_VERIFY_OFF);
        t.disallow(&key(EGRESS, proto::UDP));
        assert_eq!(t.run(EGRESS, &spoofed), Action::Drop);
        assert_eq!(
            t.events().last().map(|e| e.reason),
            Some(DropReason::PolicyDenied as u8)
        );
    }
}

fn icmp6(src: &str, dst: &str, ty: u8) -> Vec<u8> {
    PacketSpec::new(
        src.parse().unwrap(),
        dst.parse().unwrap(),
        L4::Icmp {
            ty,
            code: 0,
            id: 0,
            quote: vec![0; 16],
        },
    )
    .frame()
}

#[test]
fn neighbour_discovery_passes_from_link_scoped_sources_only() {
    let mut t = datapath(true, 0);
    let arp = arp_request(
        "198.18.0.11".parse().unwrap(),
        "198.18.0.1".parse().unwrap(),
    );
    assert_eq!(t.run(EGRESS, &arp), Action::Pass, "ARP is not IP");
    // Router and neighbour solicitations, advertisements, MLD reports from
    // the pod's link-local address; duplicate address detection and MLD
    // from the unspecified address; a solicitation from the pod's own
    // global address.
    for (src, ty) in [
        ("fe80::1", 133u8),
        ("fe80::1", 135),
        ("fe80::1", 136),
        ("fe80::1", 143),
        ("febf::1", 135),
        ("::", 135),
        ("::", 143),
        ("2001:db8::10", 135),
    ] {
        assert_eq!(
            t.run(EGRESS, &icmp6(src, "ff02::1:ff00:1", ty)),
            Action::Pass,
            "type {ty} from {src}"
        );
    }
    assert!(t.events().is_empty());
    // Neighbour discovery from another pod's address, and anything else
    // from a link-local or unspecified source, is checked and dropped.
    for (src, ty) in [
        ("2001:db8::11", 135u8),
        ("2001:db8::11", 136),
        ("fe80::1", 128),
        ("fec0::1", 135),
        ("::", 128),
    ] {
        assert_eq!(
            t.run(EGRESS, &icmp6(src, "fe80::2", ty)),
            Action::Drop,
            "type {ty} from {src}"
        );
        assert_eq!(
            t.events().last().map(|e| e.reason),
            Some(invalid_source()),
            "type {ty} from {src}"
        );
    }
    // The namespace may allow link-local sources explicitly.
    t.allow_source(TEST_IFINDEX, "fe80::/10".parse().unwrap());
    assert_eq!(
        t.run(EGRESS, &icmp6("fe80::1", "fe80::2", 128)),
        Action::Pass
    );
    // Neighbour discovery reaching the pod is never source-checked.
    assert_eq!(
        t.run(INGRESS, &icmp6("2001:db8::11", "2001:db8::10", 136)),
        Action::Pass
    );
}

#[test]
fn namespace_prefixes_extend_the_pods_sources() {
    let mut t = datapath(false, 0);
    for (net, inside, outside) in [
        ("198.51.100.0/24", "198.51.100.7", "198.51.101.7"),
        ("2001:db8:7::/48", "2001:db8:7:1::7", "2001:db8:8::7"),
    ] {
        let net: IpNet = net.parse().unwrap();
        let udp = |src: &str| {
            let src: IpAddr = src.parse().unwrap();
            PacketSpec::udp(src, peer(src.is_ipv6()), 40_001, 53).frame()
        };
        assert_eq!(t.run(EGRESS, &udp(inside)), Action::Drop, "{net} not yet");
        t.allow_source(TEST_IFINDEX, net);
        assert_eq!(t.run(EGRESS, &udp(inside)), Action::Pass, "{inside}");
        assert_eq!(t.run(EGRESS, &udp(outside)), Action::Drop, "{outside}");
        // Entries of another interface do not count (the prefix is taken
        // away as the agent does it: entry removed, flow cache emptied).
        t.forget_source(TEST_IFINDEX, net);
        t.dp.maps.clear_flow_cache().unwrap();
        t.allow_source(TEST_IFINDEX + 1, net);
        assert_eq!(t.run(EGRESS, &udp(inside)), Action::Drop, "other ifindex");
    }
}

#[test]
fn a_pod_with_no_known_address_sends_nothing() {
    let mut t = datapath(false, 0);
    for v6 in [false, true] {
        t.forget_source(TEST_IFINDEX, pod(v6).into());
        let own = PacketSpec::udp(pod(v6), peer(v6), 40_001, 53).frame();
        assert_eq!(t.run(EGRESS, &own), Action::Drop, "v6={v6}");
        assert_eq!(t.events().last().map(|e| e.reason), Some(invalid_source()));
    }
    // An interface without an endpoint entry keeps its own rule (fail
    // closed, or pass when configured), whatever the sources.
    t.remove_endpoint();
    let own = PacketSpec::udp(pod(false), peer(false), 40_001, 53).frame();
    assert_eq!(t.run(EGRESS, &own), Action::Drop);
    assert_eq!(
        t.events().last().map(|e| e.reason),
        Some(DropReason::UnknownEndpoint as u8)
    );
    t.set_config(config(config_flags::UNKNOWN_ENDPOINT_PASS));
    assert_eq!(t.run(EGRESS, &own), Action::Pass);
}

fn established(t: &TestDatapath) -> u64 {
    t.counter(EGRESS, verdict::FORWARDED, ForwardReason::Established as u8)
        .packets
}

fn cached(t: &TestDatapath, sport: u16) -> bool {
    (0..t.dp.maps.flow_cache.len()).any(|i| {
        t.dp.maps
            .flow_cache
            .get(&i, 0)
            .unwrap()
            .iter()
            .any(|e| e.valid == 1 && e.sport == sport)
    })
}

/// A connection a peer opened to `addr` on the pod's interface.
fn inbound_connection(t: &mut TestDatapath, v6: bool, addr: IpAddr) {
    t.allow(key(INGRESS, proto::TCP), PolicyValue::ALL_PORTS);
    let syn = PacketSpec::tcp(peer(v6), addr, 5000, 80, tcp::SYN).frame();
    assert_eq!(t.run(INGRESS, &syn), Action::Pass);
}

#[test]
fn a_spoofed_packet_cannot_use_state_that_verified_packets_created() {
    for v6 in [false, true] {
        let mut t = datapath(true, 0);
        t.disallow(&key(EGRESS, proto::TCP));
        let from = |src, flags| PacketSpec::tcp(src, peer(v6), 80, 5000, flags).frame();
        // Conntrack: a connection towards `other` on this interface. Its
        // reply from `other` would pass as established without the check…
        t.set_config(config(config_flags::SOURCE_VERIFY_OFF));
        inbound_connection(&mut t, v6, other(v6));
        let before = established(&t);
        assert_eq!(
            t.run(EGRESS, &from(other(v6), tcp::SYN | tcp::ACK)),
            Action::Pass
        );
        assert_eq!(established(&t), before + 1, "the entry matches (v6={v6})");
        // …and with it, neither the entry nor the flow cache lets it out.
        t.clear_ct();
        t.set_config(config(0));
        inbound_connection(&mut t, v6, other(v6));
        let _ = t.events();
        for flags in [tcp::SYN | tcp::ACK, tcp::ACK, tcp::ACK] {
            assert_eq!(t.run(EGRESS, &from(other(v6), flags)), Action::Drop);
            assert_eq!(t.events().last().map(|e| e.reason), Some(invalid_source()));
        }

        // Flow cache: the pod's own established flow is answered from the
        // cache; the same tuple from another address is not.
        t.clear_ct();
        t.allow(key(EGRESS, proto::TCP), PolicyValue::ALL_PORTS);
        let out = |src, flags| PacketSpec::tcp(src, peer(v6), 41_000, 80, flags).frame();
        let back = PacketSpec::tcp(peer(v6), pod(v6), 80, 41_000, tcp::SYN | tcp::ACK).frame();
        assert_eq!(t.run(EGRESS, &out(pod(v6), tcp::SYN)), Action::Pass);
        assert_eq!(t.run(INGRESS, &back), Action::Pass);
        assert_eq!(t.run_n(EGRESS, &out(pod(v6), tcp::ACK), 10).0, u32::MAX);
        assert!(cached(&t, 41_000), "the pod's flow is cached (v6={v6})");
        assert_eq!(t.run(EGRESS, &out(other(v6), tcp::ACK)), Action::Drop);
        assert_eq!(t.events().last().map(|e| e.reason), Some(invalid_source()));
        // The address is taken from the pod (as the agent does: entry
        // removed, then the cache emptied): its cached flow stops at once.
        t.forget_source(TEST_IFINDEX, pod(v6).into());
        t.dp.maps.clear_flow_cache().unwrap();
        assert_eq!(t.run(EGRESS, &out(pod(v6), tcp::ACK)), Action::Drop);
        assert_eq!(t.events().last().map(|e| e.reason), Some(invalid_source()));
        assert!(!cached(&t, 41_000), "nothing refilled the cache (v6={v6})");
        let ingress_isolated = t.counter(INGRESS, verdict::DROPPED, invalid_source());
        assert_eq!(
            ingress_isolated.packets, 0,
            "ingress is never source-checked"
        );
    }
}
