//! The reconcile (the writes from whatever pinned maps hold to a compiled
//! state, endpoint entries by host interface) against a direct evaluation
//! of the datapath's verdict: for random pairs of contents (agreeing on
//! what numbers mean, as one numbering guarantees), no prefix of the
//! writes allows a flow that neither allows, and all of them reach the new
//! contents.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::{lookup, sim};
use ipnet::{IpNet, Ipv4Net};
use palisade_common::{
    CIDR_IDENTITY_BASE, EndpointInfo, IDENTITY_ANY, IpcacheValue, PolicyKey, PolicyValue, proto,
};
use palisade_compiler::{PortSet, Tables, Write, reconcile as transition};
use proptest::prelude::*;

type DpState = Tables<u32, EndpointInfo>;
type DpOp = Write<u32, EndpointInfo>;

const C0: u32 = CIDR_IDENTITY_BASE;
const C1: u32 = CIDR_IDENTITY_BASE + 1;
const PORTS: [u16; 5] = [22, 80, 443, 8080, 9999];

fn prefixes() -> [(Ipv4Net, u32); 2] {
    [
        ("10.0.0.0/8".parse().unwrap(), C0),
        ("10.1.0.0/16".parse().unwrap(), C1),
    ]
}

fn peers() -> [Ipv4Addr; 4] {
    [
        Ipv4Addr::new(10, 1, 0, 1),
        Ipv4Addr::new(10, 2, 0, 1),
        Ipv4Addr::new(11, 0, 0, 1),
        Ipv4Addr::new(10, 1, 9, 9),
    ]
}

fn portset(id: u32) -> PortSet {
    match id {
        1 => PortSet::from_ranges([(80, 80), (443, 443)]),
        _ => PortSet::from_ranges([(22, 22), (8080, 8080)]),
    }
}

fn allowed(s: &DpState, ifindex: u32, dir: u8, peer: Ipv4Addr, port: u16) -> bool {
    sim(s, &ifindex, dir, IpAddr::V4(peer), proto::TCP, port).unwrap()
}

/// A random state: each interface's endpoint id is drawn from its own pool
/// (an id never moves between interfaces); prefixes keep their region.
fn state() -> impl Strategy<Value = DpState> {
    let ep = (0u32..3, 0u32..4); // (which id of the pool, flags)
    let exact = proptest::collection::vec(proptest::option::of(256u32..259), 4);
    let lpm = proptest::collection::vec(any::<bool>(), 2);
    let pol = proptest::collection::vec((1u32..7, 0usize..6, 0u8..2, 0u8..4), 0..14);
    (proptest::collection::vec(ep, 2), exact, lpm, pol).prop_map(|(eps, exact, lpm, pol)| {
        let mut s = DpState::default();
        for (i, (pick, flags)) in eps.into_iter().enumerate() {
            let ifindex = i as u32 + 1;
            if pick == 2 {
                continue;
            }
            // interface 1 owns ids {1, 3, 5}, interface 2 owns {2, 4, 6}
            let ep_id = ifindex + 2 * pick;
            s.endpoints.insert(
                ifindex,
                EndpointInfo {
                    ep_id,
                    identity: 256,
                    flags,
                    _pad: 0,
                },
            );
        }
        for ((net, id), on) in prefixes().into_iter().zip(lpm) {
            if on {
                s.ipcache_lpm4.insert(
                    net,
                    IpcacheValue {
                        identity: id,
                        cidr_identity: id,
                    },
                );
            }
        }
        for (addr, id) in peers().into_iter().zip(exact) {
            if let Some(id) = id {
                let cidr = lookup(&s, IpAddr::V4(addr)).cidr_identity;
                s.ipcache_exact4.insert(
                    addr,
                    IpcacheValue {
                        identity: id,
                        cidr_identity: cidr,
                    },
                );
            }
        }
        let ids = [IDENTITY_ANY, 256, 257, 258, C0, C1];
        for (ep_id, id, dir, val) in pol {
            let value = match val {
                0 => PolicyValue::range(80, 80),
                1 => PolicyValue::range(0, 1000),
                v => PolicyValue {
                    port_lo: 0,
                    port_hi: 0,
                    portset: u32::from(v) - 1,
                    ..PolicyValue::NOTHING
                },
            };
            if value.portset != 0 {
                s.portsets.insert(value.portset, portset(value.portset));
            }
            s.policy.insert(
                PolicyKey {
                    ep_id,
                    identity: ids[id],
                    direction: dir,
                    proto: proto::TCP,
                    view: 0,
                    _pad: 0,
                },
                value,
            );
        }
        s
    })
}

fn verdicts(s: &DpState) -> Vec<bool> {
    let mut v = Vec::new();
    for ifindex in [1, 2] {
        for dir in [0, 1] {
            for peer in peers().into_iter().chain([Ipv4Addr::new(12, 0, 0, 1)]) {
                for port in PORTS {
                    v.push(allowed(s, ifindex, dir, peer, port));
                }
            }
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn no_intermediate_state_allows_more_than_old_or_new(old in state(), new in state()) {
        let ops = transition(&old, &new);
        let (vo, vn) = (verdicts(&old), verdicts(&new));
        let mut s = old.clone();
        for (i, op) in ops.iter().enumerate() {
            s.apply(op);
            let vi = verdicts(&s);
            for (j, allow) in vi.iter().enumerate() {
                prop_assert!(!allow || vo[j] || vn[j], "step {i} ({op:?}) allows flow #{j}");
            }
        }
        prop_assert_eq!(&s, &new);
    }
}

#[test]
fn equal_states_need_no_writes() {
    let mut s = DpState::default();
    s.apply(&DpOp::IpcacheLpmUpsert {
        prefix: IpNet::V4("10.0.0.0/8".parse().unwrap()),
        value: IpcacheValue {
            identity: C0,
            cidr_identity: C0,
        },
    });
    s.apply(&DpOp::IpcacheExactUpsert {
        addr: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)),
        value: IpcacheValue {
            identity: 256,
            cidr_identity: C0,
        },
    });
    s.apply(&DpOp::PortsetUpsert {
        id: 1,
        ports: portset(1),
    });
    assert!(transition(&s, &s.clone()).is_empty());
    assert_eq!(
        transition(&DpState::default(), &s)[0],
        DpOp::PortsetUpsert {
            id: 1,
            ports: portset(1)
        },
        "port sets go first"
    );
}
