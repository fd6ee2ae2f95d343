//! Differential test: for random map contents and thousands of random
//! packets, the real programs (BPF_PROG_TEST_RUN) decide exactly what the
//! independent model in `palisade_tests::model` decides. The check can fail:
//! `a_broken_entry_is_caught` plants an entry the model does not know of and
//! expects a mismatch. Needs root.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use palisade_common::{
    CIDR_IDENTITY_BASE, DropReason, EndpointInfo, IDENTITY_ANY, IDENTITY_HOST, IpcacheValue,
    PolicyKey, PolicyValue, PortBitmap, config_flags, endpoint_flags as ef, event_kind, proto,
};
use palisade_tests::{
    bpf::{Action, TEST_IFINDEX, TestDatapath},
    model::{Contents, Expect},
    packet::{L4, PacketSpec, tcp},
};
use proptest::prelude::*;

const EP: u32 = 9;
const POD: u32 = 300;
const IDS: [u32; 5] = [IDENTITY_ANY, IDENTITY_HOST, 300, 301, 302];

fn v4(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 1, i / 4, i))
}
fn v6(i: u8) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        1,
        u16::from(i / 4),
        0,
        0,
        0,
        u16::from(i),
    ))
}
/// Prefixes over the address pool, nested and disjoint.
fn prefixes() -> Vec<IpNet> {
    [
        "10.0.0.0/8",
        "10.1.0.0/16",
        "10.1.1.0/24",
        "10.1.0.4/30",
        "10.1.0.8/32",
        "2001:db8::/32",
        "2001:db8:1::/48",
        "2001:db8:1:1::/64",
        "2001:db8:1::/126",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect()
}
const PORTS: [u16; 10] = [0, 1, 53, 79, 80, 81, 443, 1023, 1024, 65535];

fn arb_value() -> impl Strategy<Value = PolicyValue> {
    prop_oneof![
        Just(PolicyValue::ALL_PORTS),
        (0usize..PORTS.len(), 0usize..PORTS.len()).prop_map(|(a, b)| {
            let (lo, hi) = (PORTS[a.min(b)], PORTS[a.max(b)]);
            PolicyValue::range(lo, hi)
        }),
        Just(PolicyValue {
            port_lo: 0,
            port_hi: 0,
            portset: 1
        }),
        Just(PolicyValue {
            port_lo: 0,
            port_hi: 0,
            portset: 2
        }),
    ]
}

fn arb_contents() -> impl Strategy<Value = Contents> {
    let entry = (
        0usize..IDS.len(),
        0u8..2,
        prop::sample::select(vec![6u8, 17, 132, 255]),
        0u8..2,
        arb_value(),
    )
        .prop_map(|(i, dir, p, view, v)| {
            (
                PolicyKey {
                    ep_id: EP,
                    identity: IDS[i],
                    direction: dir,
                    proto: p,
                    view,
                    _pad: 0,
                },
                v,
            )
        });
    let exact =
        (0u8..12, 0usize..IDS.len(), 0usize..4, any::<bool>()).prop_map(|(a, i, c, six)| {
            let cidr = if c == 0 {
                palisade_common::IDENTITY_WORLD
            } else {
                CIDR_IDENTITY_BASE + c as u32
            };
            (
                (if six { v6(a) } else { v4(a) }),
                IpcacheValue {
                    identity: IDS[i].max(1),
                    cidr_identity: cidr,
                },
            )
        });
    // What the pod may send from: a few pool addresses and prefixes.
    let source = prop_oneof![
        (0u8..12, any::<bool>()).prop_map(|(a, six)| IpNet::from(if six { v6(a) } else { v4(a) })),
        (0usize..9).prop_map(|i| prefixes()[i]),
    ];
    (
        any::<u8>(),
        prop::collection::vec(entry, 0..16),
        prop::collection::vec(exact, 0..10),
        prop::collection::vec((0usize..9, 0u32..4), 0..7),
        (0u32..8, 0u32..3),
        prop::collection::vec(source, 0..6),
    )
        .prop_map(|(flags, entries, exact, prefs, (cfg, sv), sources)| {
            let all = prefixes();
            let mut c = Contents {
                endpoint: Some(EndpointInfo {
                    ep_id: EP,
                    identity: POD,
                    flags: u32::from(flags) & 0x3f,
                    _pad: 0,
                }),
                config_flags: cfg & (config_flags::ENFORCE_HOST)
                    | [
                        0,
                        config_flags::SOURCE_VERIFY_AUDIT,
                        config_flags::SOURCE_VERIFY_OFF,
                    ][sv as usize],
                sources,
                ..Default::default()
            };
            c.policy = entries.into_iter().collect();
            c.exact = exact.into_iter().collect();
            let mut seen = std::collections::BTreeMap::new();
            for (i, id) in prefs {
                seen.insert(all[i], CIDR_IDENTITY_BASE + id);
            }
            c.prefixes = seen.into_iter().collect();
            let mut a = PortBitmap::EMPTY;
            a.insert_range(53, 53);
            a.insert_range(80, 443);
            let mut b = PortBitmap::EMPTY;
            b.insert_range(0, 1);
            b.insert_range(1024, 65535);
            c.portsets.insert(1, a);
            c.portsets.insert(2, b);
            c
        })
}

fn arb_packet() -> impl Strategy<Value = (u8, PacketSpec)> {
    (
        0u8..2,
        0u8..12,
        0u8..12,
        any::<bool>(),
        0u8..5,
        0usize..PORTS.len(),
        any::<u16>(),
    )
        .prop_map(|(dir, a, b, six, kind, port, sport)| {
            let (s, d) = if six { (v6(a), v6(b)) } else { (v4(a), v4(b)) };
            let dport = PORTS[port];
            let l4 = match kind {
                0 => L4::Tcp {
                    sport,
                    dport,
                    flags: tcp::SYN,
                },
                1 => L4::Udp { sport, dport },
                2 => L4::Sctp { sport, dport },
                3 => L4::Icmp {
                    ty: if six { 128 } else { 8 },
                    code: 0,
                    id: sport,
                    quote: vec![],
                },
                _ => L4::Raw {
                    proto: 47,
                    payload: vec![0; 4],
                },
            };
            (dir, PacketSpec::new(s, d, l4))
        })
}

fn load(t: &mut TestDatapath, c: &Contents) {
    t.set_endpoint(c.endpoint.unwrap());
    t.set_config(palisade_common::Config {
        flags: c.config_flags,
        ..Default::default()
    });
    for (k, v) in &c.policy {
        t.allow(*k, *v);
    }
    for (id, b) in &c.portsets {
        t.portset(*id, b);
    }
    for (a, v) in &c.exact {
        t.ipcache_exact(*a, *v);
    }
    for (n, id) in &c.prefixes {
        t.ipcache_prefix(*n, *id);
    }
    for n in &c.sources {
        t.allow_source(TEST_IFINDEX, *n);
    }
}

fn unload(t: &mut TestDatapath, c: &Contents) {
    for k in c.policy.keys() {
        t.disallow(k);
    }
    for a in c.exact.keys() {
        t.forget_exact(*a);
    }
    for (n, _) in &c.prefixes {
        t.forget_prefix(*n);
    }
    for n in &c.sources {
        t.forget_source(TEST_IFINDEX, *n);
    }
    t.clear_ct();
    let _ = t.events();
}

/// Runs every packet as a new flow; returns the first disagreement.
fn disagreement(
    t: &mut TestDatapath,
    c: &Contents,
    packets: &[(u8, PacketSpec)],
) -> Option<String> {
    for (dir, p) in packets {
        t.clear_ct();
        let _ = t.events();
        let want = c.decide(*dir, p);
        let got_action = t.run(*dir, &p.frame());
        let ev = t.events();
        let got = match (got_action, ev.first()) {
            (Action::Drop, Some(e)) => Expect::Drop(DropReason::from_u8(e.reason).unwrap()),
            (Action::Drop, None) => return Some(format!("dropped without event: {p:?}")),
            (Action::Pass, Some(e)) if e.kind == event_kind::AUDIT => {
                Expect::Audited(DropReason::from_u8(e.reason).unwrap())
            }
            (Action::Pass, _) => Expect::Pass,
        };
        if got != want {
            return Some(format!("dir {dir} {p:?}: datapath {got:?}, model {want:?}"));
        }
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn datapath_agrees_with_the_model(c in arb_contents(), packets in prop::collection::vec(arb_packet(), 64)) {
        let mut t = TestDatapath::new();
        // Fresh token bucket budget per case: events are how we read reasons.
        t.set_config(palisade_common::Config { events_per_sec: 1_000_000, events_burst: 1_000_000, flags: c.config_flags, ..Default::default() });
        load(&mut t, &c);
        t.set_config(palisade_common::Config { events_per_sec: 1_000_000, events_burst: 1_000_000, flags: c.config_flags, ..Default::default() });
        let d = disagreement(&mut t, &c, &packets);
        unload(&mut t, &c);
        prop_assert!(d.is_none(), "{}", d.unwrap());
    }
}

#[test]
fn a_broken_entry_is_caught() {
    let mut t = TestDatapath::new();
    t.set_config(palisade_common::Config {
        events_per_sec: 1_000_000,
        events_burst: 1_000_000,
        ..Default::default()
    });
    let mut c = Contents {
        endpoint: Some(EndpointInfo {
            ep_id: EP,
            identity: POD,
            flags: ef::ISOLATED_INGRESS,
            _pad: 0,
        }),
        ..Default::default()
    };
    c.exact.insert(
        v4(1),
        IpcacheValue {
            identity: 301,
            cidr_identity: palisade_common::IDENTITY_WORLD,
        },
    );
    c.policy.insert(
        PolicyKey {
            ep_id: EP,
            identity: 301,
            direction: 0,
            proto: proto::TCP,
            view: 0,
            _pad: 0,
        },
        PolicyValue::range(80, 80),
    );
    load(&mut t, &c);
    let packets: Vec<(u8, PacketSpec)> = PORTS
        .iter()
        .map(|p| (0, PacketSpec::tcp(v4(1), v4(2), 1000, *p, tcp::SYN)))
        .collect();
    assert_eq!(
        disagreement(&mut t, &c, &packets),
        None,
        "agrees before sabotage"
    );
    // Sabotage: widen the map's range by one port behind the model's back.
    t.allow(
        PolicyKey {
            ep_id: EP,
            identity: 301,
            direction: 0,
            proto: proto::TCP,
            view: 0,
            _pad: 0,
        },
        PolicyValue::range(80, 81),
    );
    let d = disagreement(&mut t, &c, &packets);
    assert!(
        d.as_deref().is_some_and(|s| s.contains("dport: 81")),
        "mismatch not caught: {d:?}"
    );
}

#[test]
fn a_source_entry_the_model_does_not_know_is_caught() {
    let mut t = TestDatapath::new();
    t.set_config(palisade_common::Config {
        events_per_sec: 1_000_000,
        events_burst: 1_000_000,
        ..Default::default()
    });
    let c = Contents {
        endpoint: Some(EndpointInfo {
            ep_id: EP,
            identity: POD,
            flags: 0,
            _pad: 0,
        }),
        sources: vec![IpNet::from(v4(1))],
        ..Default::default()
    };
    load(&mut t, &c);
    let packets: Vec<(u8, PacketSpec)> = [v4(1), v4(2)]
        .iter()
        .map(|s| (1, PacketSpec::udp(*s, v4(3), 1000, 53)))
        .collect();
    assert_eq!(
        disagreement(&mut t, &c, &packets),
        None,
        "agrees before sabotage"
    );
    // Sabotage: let the pod send from a second address behind the model's
    // back.
    t.allow_source(TEST_IFINDEX, IpNet::from(v4(2)));
    let d = disagreement(&mut t, &c, &packets);
    assert!(
        d.as_deref().is_some_and(|s| s.contains("InvalidSource")),
        "mismatch not caught: {d:?}"
    );
}
