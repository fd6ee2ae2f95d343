//! The established-flow cache (`ebpf/src/flowcache.rs`, `fastpath.rs`) must
//! be invisible: for any sequence of packets, policy changes and policy
//! epochs, the programs decide exactly what they decide with the cache
//! emptied before every packet. And a cached flow never outlives its
//! conntrack entry. Needs root.

use std::cell::RefCell;
use std::time::Duration;

use palisade_common::{
    Config, DropReason, ForwardReason, PolicyKey, PolicyValue, config_flags,
    direction::{EGRESS, INGRESS},
    proto, verdict,
};
use palisade_tests::{
    bpf::{Action, TestDatapath},
    fixture::{self, peer, pod},
    packet::{L4, PacketSpec, tcp},
};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};

const EP: u32 = 4;
const POD_ID: u32 = 300;
const PEER_ID: u32 = 301;

fn key(dir: u8, proto: u8) -> PolicyKey {
    PolicyKey {
        ep_id: EP,
        identity: PEER_ID,
        direction: dir,
        proto,
        view: 0,
        _pad: 0,
    }
}

/// An endpoint isolated both ways; the pod and its peer in the ipcache.
fn datapath(cfg: Config) -> TestDatapath {
    let mut t = fixture::isolated(EP, POD_ID, PEER_ID);
    t.set_config(cfg);
    t
}

/// A flow between the pod and its peer: opened by the pod (egress) or by
/// the peer (ingress).
#[derive(Clone, Copy, Debug)]
struct Flow {
    v6: bool,
    udp: bool,
    opened_by_pod: bool,
    port: u16,
}

/// One step of a scenario.
#[derive(Clone, Debug)]
enum Step {
    /// A packet of `flow`, from its opener or its replier, with TCP flags.
    Packet { flow: usize, reply: bool, flags: u8 },
    /// Allow or stop allowing the flows' port in one direction.
    Policy { dir: u8, udp: bool, allow: bool },
    /// The agent's commit: a new policy epoch, with or without revalidation.
    Epoch { revalidate: bool },
}

const FLAGS: [u8; 7] = [
    tcp::SYN,
    tcp::SYN | tcp::ACK,
    tcp::ACK,
    tcp::ACK | tcp::PSH,
    tcp::ACK,
    tcp::FIN | tcp::ACK,
    tcp::RST,
];

fn arb_flow() -> impl Strategy<Value = Flow> {
    (any::<bool>(), any::<bool>(), any::<bool>(), 0u16..2).prop_map(|(v6, udp, by_pod, p)| Flow {
        v6,
        udp,
        opened_by_pod: by_pod,
        port: 80 + p,
    })
}

fn arb_step(flows: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0..flows, any::<bool>(), prop::sample::select(FLAGS.to_vec()))
            .prop_map(|(flow, reply, flags)| Step::Packet { flow, reply, flags }),
        1 => (prop::sample::select(vec![INGRESS, EGRESS]), any::<bool>(), any::<bool>())
            .prop_map(|(dir, udp, allow)| Step::Policy { dir, udp, allow }),
        1 => any::<bool>().prop_map(|revalidate| Step::Epoch { revalidate }),
    ]
}

/// A packet of `f` from its opener (`reply == false`, from port
/// `opener_port`) or from its replier, and the direction it crosses the
/// pod's veth.
fn packet(f: &Flow, reply: bool, flags: u8, opener_port: u16) -> (u8, Vec<u8>) {
    let (opener, replier) = if f.opened_by_pod {
        (pod(f.v6), peer(f.v6))
    } else {
        (peer(f.v6), pod(f.v6))
    };
    let (src, dst, sport, dport) = if reply {
        (replier, opener, f.port, opener_port)
    } else {
        (opener, replier, opener_port, f.port)
    };
    let l4 = if f.udp {
        L4::Udp { sport, dport }
    } else {
        L4::Tcp {
            sport,
            dport,
            flags,
        }
    };
    let dir = if src == pod(f.v6) { EGRESS } else { INGRESS };
    (dir, PacketSpec::new(src, dst, l4).frame())
}

/// What a datapath did with one packet: its action and, for a drop, the
/// reason its event carried.
fn outcome(t: &mut TestDatapath, dir: u8, frame: &[u8]) -> (Action, Option<u8>) {
    let _ = t.events();
    let a = t.run(dir, frame);
    let reason = if a == Action::Drop {
        t.events().last().map(|e| e.reason)
    } else {
        None
    };
    (a, reason)
}

/// No rate limit on events (they are how the tests read drop reasons).
fn events_unlimited() -> Config {
    Config {
        events_per_sec: 1_000_000,
        events_burst: 1_000_000,
        ..Config::default()
    }
}

/// Back to no policy, no connections, epoch 0 and an empty cache.
fn reset(t: &mut TestDatapath) {
    for dir in [INGRESS, EGRESS] {
        for p in [proto::TCP, proto::UDP] {
            let _ = t.dp.maps.policy.remove(&key(dir, p));
        }
    }
    t.set_config(events_unlimited());
    t.clear_ct();
    let _ = t.events();
}

/// Runs `steps` on a datapath with the cache and on one whose cache is
/// emptied before every packet; returns the first disagreement.
fn disagreement(
    cached: &mut TestDatapath,
    uncached: &mut TestDatapath,
    flows: &[Flow],
    steps: &[Step],
) -> Option<String> {
    reset(cached);
    reset(uncached);
    let mut cfg = events_unlimited();
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Packet { flow, reply, flags } => {
                let f = &flows[*flow % flows.len()];
                let (dir, frame) = packet(f, *reply, *flags, 40_000 + *flow as u16);
                uncached.dp.maps.clear_flow_cache().unwrap();
                let want = outcome(uncached, dir, &frame);
                let got = outcome(cached, dir, &frame);
                if got != want {
                    return Some(format!(
                        "step {i} {step:?} on {f:?}: with the cache {got:?}, without {want:?}"
                    ));
                }
            }
            Step::Policy { dir, udp, allow } => {
                let k = key(*dir, if *udp { proto::UDP } else { proto::TCP });
                for t in [&mut *cached, &mut *uncached] {
                    if *allow {
                        t.allow(k, PolicyValue::range(80, 81));
                    } else {
                        // Removing an allow that is not there is fine here.
                        let _ = t.dp.maps.policy.remove(&k);
                    }
                }
            }
            Step::Epoch { revalidate } => {
                cfg.policy_epoch += 1;
                cfg.flags = if *revalidate {
                    config_flags::CT_REVALIDATE
                } else {
                    0
                };
                cached.set_config(cfg);
                uncached.set_config(cfg);
            }
        }
    }
    None
}

#[test]
fn the_cache_never_changes_a_verdict() {
    // Two datapaths for all cases (loading one is the slow part).
    let pair = RefCell::new((datapath(events_unlimited()), datapath(events_unlimited())));
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let scenarios = (
        prop::collection::vec(arb_flow(), 1..5),
        prop::collection::vec(arb_step(4), 1..60),
    );
    let result = runner.run(&scenarios, |(flows, steps)| {
        let (cached, uncached) = &mut *pair.borrow_mut();
        match disagreement(cached, uncached, &flows, &steps) {
            None => Ok(()),
            Some(d) => Err(TestCaseError::fail(d)),
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Opens a TCP connection from the pod (SYN out, SYN-ACK in) and returns
/// the frame of its next outbound ACK.
fn open_from_pod(t: &mut TestDatapath, v6: bool) -> Vec<u8> {
    let out = |flags| PacketSpec::tcp(pod(v6), peer(v6), 41_000, 80, flags).frame();
    let back = PacketSpec::tcp(peer(v6), pod(v6), 80, 41_000, tcp::SYN | tcp::ACK).frame();
    assert_eq!(t.run(EGRESS, &out(tcp::SYN)), Action::Pass);
    assert_eq!(t.run(INGRESS, &back), Action::Pass);
    out(tcp::ACK)
}

#[test]
fn cached_packets_count_as_established() {
    for v6 in [false, true] {
        let mut t = datapath(Config::default());
        t.allow(key(EGRESS, proto::TCP), PolicyValue::range(80, 80));
        let ack = open_from_pod(&mut t, v6);
        let est = || {
            t.counter(EGRESS, verdict::FORWARDED, ForwardReason::Established as u8)
                .packets
        };
        let before = est();
        // The first ACK fills the cache, the rest are answered from it.
        assert_eq!(t.run_n(EGRESS, &ack, 1000).0, u32::MAX, "v6={v6}");
        assert_eq!(est() - before, 1000, "v6={v6}");
        let cached = (0..t.dp.maps.flow_cache.len()).any(|i| {
            t.dp.maps
                .flow_cache
                .get(&i, 0)
                .unwrap()
                .iter()
                .any(|e| e.valid == 1 && e.sport == 41_000 && e.dport == 80)
        });
        assert!(cached, "the flow is in the cache (v6={v6})");
    }
}

#[test]
fn a_cached_flow_never_outlives_its_conntrack_entry() {
    for v6 in [false, true] {
        let mut t = datapath(Config {
            tcp_established_timeout_s: 1,
            ..events_unlimited()
        });
        t.allow(key(EGRESS, proto::TCP), PolicyValue::range(80, 80));
        let ack = open_from_pod(&mut t, v6);
        assert_eq!(t.run_n(EGRESS, &ack, 100).0, u32::MAX);
        // Policy no longer allows the flow: only its entry lets it pass.
        t.disallow(&key(EGRESS, proto::TCP));
        assert_eq!(t.run(EGRESS, &ack), Action::Pass, "established, v6={v6}");
        std::thread::sleep(Duration::from_millis(1500));
        let _ = t.events();
        assert_eq!(
            t.run(EGRESS, &ack),
            Action::Drop,
            "the entry expired, so the ACK is judged by policy (v6={v6})"
        );
        assert_eq!(
            t.events().last().map(|e| e.reason),
            Some(DropReason::PolicyDenied as u8)
        );
    }
}

#[test]
fn a_new_epoch_with_revalidation_revokes_a_cached_flow() {
    let mut t = datapath(events_unlimited());
    t.allow(key(EGRESS, proto::TCP), PolicyValue::range(80, 80));
    let ack = open_from_pod(&mut t, false);
    assert_eq!(t.run_n(EGRESS, &ack, 100).0, u32::MAX);
    t.disallow(&key(EGRESS, proto::TCP));
    assert_eq!(
        t.run(EGRESS, &ack),
        Action::Pass,
        "kept without revalidation"
    );
    t.set_config(Config {
        policy_epoch: 1,
        flags: config_flags::CT_REVALIDATE,
        ..events_unlimited()
    });
    let _ = t.events();
    assert_eq!(t.run(EGRESS, &ack), Action::Drop);
    assert_eq!(
        t.events().last().map(|e| e.reason),
        Some(DropReason::PolicyRevoked as u8)
    );
}

/// The cache only holds answered flows: the opener's plain packets on a
/// flow nobody has answered (a UDP datagram, a TCP segment after an
/// unanswered SYN) are judged by the policy in force, so they stop as soon
/// as the allow goes, cache or not; once the peer answers, they are cached.
#[test]
fn unanswered_flows_are_never_answered_from_the_cache() {
    for v6 in [false, true] {
        for udp in [false, true] {
            let case = format!("v6={v6} udp={udp}");
            let mut t = datapath(events_unlimited());
            let p = if udp { proto::UDP } else { proto::TCP };
            t.allow(key(EGRESS, p), PolicyValue::range(80, 80));
            let f = Flow {
                v6,
                udp,
                opened_by_pod: true,
                port: 80,
            };
            let (dir, open) = packet(&f, false, tcp::SYN, 41_000);
            let (_, next) = packet(&f, false, tcp::ACK, 41_000);
            assert_eq!(t.run(dir, &open), Action::Pass, "{case}");
            assert_eq!(t.run(dir, &next), Action::Pass, "{case}: allowed");
            assert_eq!(t.run(dir, &next), Action::Pass, "{case}: allowed");
            t.disallow(&key(EGRESS, p));
            let _ = t.events();
            assert_eq!(t.run(dir, &next), Action::Drop, "{case}: unanswered");
            assert_eq!(
                t.events().last().map(|e| e.reason),
                Some(DropReason::PolicyDenied as u8),
                "{case}"
            );
            // Answered while allowed: the flow's packets ride on it (and
            // are cached) once the allow goes.
            t.allow(key(EGRESS, p), PolicyValue::range(80, 80));
            assert_eq!(t.run(dir, &next), Action::Pass, "{case}");
            let (back_dir, answer) = packet(&f, true, tcp::SYN | tcp::ACK, 41_000);
            assert_eq!(t.run(back_dir, &answer), Action::Pass, "{case}: answer");
            t.disallow(&key(EGRESS, p));
            assert_eq!(t.run_n(dir, &next, 100).0, u32::MAX, "{case}: answered");
        }
    }
}
