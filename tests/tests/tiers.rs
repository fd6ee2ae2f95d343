//! ClusterNetworkPolicy tiers in the datapath, on crafted frames through
//! BPF_PROG_TEST_RUN: the Admin tier before NetworkPolicy, the Baseline
//! tier after it, Pass, the first matching rule across the three entries
//! of a flow, inline codes and segment tables, a dangling table, audit
//! mode, the node's exemption, replies of accepted connections, and what
//! drop events say. The random cases are in `differential.rs`; these are
//! the API's sentences one by one. Needs root.

use std::net::{IpAddr, Ipv4Addr};

use palisade_common::{
    CIDR_IDENTITY_BASE, Config, DropReason, EndpointInfo, IDENTITY_ANY, IDENTITY_HOST,
    IDENTITY_WORLD, IpcacheValue, PolicyKey, PolicyValue, TIER_SEGMENTS, TierCodes, TierTable,
    direction::{EGRESS, INGRESS},
    endpoint_flags as ef, event_kind, proto, tier_code, verdict,
};
use palisade_tests::{
    bpf::{Action, TEST_IFINDEX, TestDatapath},
    fixture::{peer4, pod4},
    packet::{PacketSpec, tcp},
};

const EP: u32 = 7;
const POD_ID: u32 = 300;
const PEER_ID: u32 = 301;
/// The CIDR identity the peer's address also falls in (a `networks` peer).
const PEER_CIDR: u32 = CIDR_IDENTITY_BASE + 5;

/// An endpoint with `flags`, a peer with its own and a CIDR identity, and
/// nothing allowed or coded yet.
fn datapath(flags: u32) -> TestDatapath {
    let mut t = TestDatapath::new();
    t.set_config(Config {
        events_per_sec: 1_000_000,
        events_burst: 1_000_000,
        ..Default::default()
    });
    t.set_endpoint(EndpointInfo {
        ep_id: EP,
        identity: POD_ID,
        flags,
        _pad: 0,
    });
    t.ipcache_exact(
        pod4(),
        IpcacheValue {
            identity: POD_ID,
            cidr_identity: IDENTITY_WORLD,
        },
    );
    t.ipcache_exact(
        peer4(),
        IpcacheValue {
            identity: PEER_ID,
            cidr_identity: PEER_CIDR,
        },
    );
    t.allow_source(TEST_IFINDEX, pod4().into());
    t
}

fn key(identity: u32, dir: u8) -> PolicyKey {
    PolicyKey {
        ep_id: EP,
        identity,
        direction: dir,
        proto: proto::TCP,
        view: 0,
        _pad: 0,
    }
}

/// An entry NetworkPolicy allows nothing in, with `codes` on every port.
fn coded(codes: TierCodes) -> PolicyValue {
    PolicyValue {
        tier_lo: 0,
        tier_hi: u16::MAX,
        codes,
        ..PolicyValue::NOTHING
    }
}

fn admin(rank: u32, action: u32) -> TierCodes {
    TierCodes {
        admin: tier_code::of(rank, action),
        baseline: tier_code::NONE,
    }
}

fn baseline(rank: u32, action: u32) -> TierCodes {
    TierCodes {
        admin: tier_code::NONE,
        baseline: tier_code::of(rank, action),
    }
}

/// A SYN from the peer to the pod (ingress) or from the pod to the peer
/// (egress), on destination port `dport`.
fn syn(dir: u8, dport: u16) -> Vec<u8> {
    let (src, dst) = if dir == INGRESS {
        (peer4(), pod4())
    } else {
        (pod4(), peer4())
    };
    PacketSpec::tcp(src, dst, 40000, dport, tcp::SYN).frame()
}

/// Runs a new flow; returns the action and the (kind, reason, rule code)
/// of the event it raised, if any.
fn judge(t: &mut TestDatapath, dir: u8, dport: u16) -> (Action, Option<(u8, u8, u32)>) {
    t.clear_ct();
    let _ = t.events();
    let action = t.run(dir, &syn(dir, dport));
    let ev = t.events();
    (action, ev.first().map(|e| (e.kind, e.reason, e.rule_code)))
}

const TIERED: u32 = ef::TIERED_INGRESS | ef::TIERED_EGRESS;
const ISOLATED: u32 = ef::ISOLATED_INGRESS | ef::ISOLATED_EGRESS;

#[test]
fn an_admin_deny_beats_a_networkpolicy_allow_and_names_its_rule() {
    for dir in [INGRESS, EGRESS] {
        let mut t = datapath(ISOLATED | TIERED);
        t.allow(key(PEER_ID, dir), PolicyValue::ALL_PORTS);
        // The deny is on the peer's CIDR identity (a `networks` peer).
        t.allow(key(PEER_CIDR, dir), coded(admin(3, tier_code::DENY)));
        assert_eq!(
            judge(&mut t, dir, 80),
            (
                Action::Drop,
                Some((
                    event_kind::DROP,
                    DropReason::AdminDenied as u8,
                    tier_code::of(3, tier_code::DENY)
                ))
            )
        );
        assert_eq!(
            t.counter(dir, verdict::DROPPED, DropReason::AdminDenied as u8)
                .packets,
            1
        );
    }
}

#[test]
fn an_admin_accept_is_final_even_where_networkpolicy_isolates() {
    let mut t = datapath(ISOLATED | TIERED);
    t.allow(
        key(IDENTITY_ANY, INGRESS),
        coded(admin(1, tier_code::ACCEPT)),
    );
    assert_eq!(judge(&mut t, INGRESS, 22), (Action::Pass, None));
    // Egress has no Admin rule: NetworkPolicy isolation decides.
    assert_eq!(
        judge(&mut t, EGRESS, 22).1.map(|e| e.1),
        Some(DropReason::PolicyDenied as u8)
    );
}

#[test]
fn pass_hands_the_flow_to_networkpolicy_then_to_baseline() {
    // Isolated: NetworkPolicy decides after Pass, whatever Baseline says.
    let mut t = datapath(ISOLATED | TIERED);
    let pass_then_deny = TierCodes {
        admin: tier_code::of(1, tier_code::PASS),
        baseline: tier_code::of(1, tier_code::DENY),
    };
    t.allow(key(PEER_ID, INGRESS), PolicyValue::range(80, 80));
    t.allow(key(IDENTITY_ANY, INGRESS), coded(pass_then_deny));
    assert_eq!(judge(&mut t, INGRESS, 80), (Action::Pass, None));
    assert_eq!(
        judge(&mut t, INGRESS, 81).1.map(|e| (e.1, e.2)),
        Some((DropReason::PolicyDenied as u8, 0))
    );
    // Not isolated: Baseline decides after Pass.
    let mut t = datapath(TIERED);
    t.allow(key(IDENTITY_ANY, INGRESS), coded(pass_then_deny));
    assert_eq!(
        judge(&mut t, INGRESS, 80).1.map(|e| (e.1, e.2)),
        Some((
            DropReason::BaselineDenied as u8,
            tier_code::of(1, tier_code::DENY)
        ))
    );
}

#[test]
fn baseline_applies_only_to_pods_networkpolicy_does_not_isolate() {
    for (flags, want) in [
        (TIERED, Some(DropReason::BaselineDenied as u8)),
        (TIERED | ISOLATED, None),
    ] {
        let mut t = datapath(flags);
        t.allow(
            key(PEER_ID, EGRESS),
            PolicyValue {
                tier_lo: 0,
                tier_hi: u16::MAX,
                codes: baseline(2, tier_code::DENY),
                ..PolicyValue::ALL_PORTS
            },
        );
        assert_eq!(judge(&mut t, EGRESS, 443).1.map(|e| e.1), want);
    }
    // Baseline Accept and no rule at all both leave the default: allowed.
    for action in [tier_code::ACCEPT, tier_code::PASS] {
        let mut t = datapath(TIERED);
        t.allow(key(PEER_ID, EGRESS), coded(baseline(1, action)));
        assert_eq!(judge(&mut t, EGRESS, 443), (Action::Pass, None));
    }
}

#[test]
fn the_first_matching_rule_wins_across_the_entries_of_a_flow() {
    // Rank 1 (consulted first) on the peer's identity, rank 2 on any peer.
    for (first, second, want) in [
        (tier_code::ACCEPT, tier_code::DENY, Action::Pass),
        (tier_code::DENY, tier_code::ACCEPT, Action::Drop),
    ] {
        let mut t = datapath(TIERED);
        t.allow(key(PEER_ID, INGRESS), coded(admin(1, first)));
        t.allow(key(IDENTITY_ANY, INGRESS), coded(admin(2, second)));
        assert_eq!(judge(&mut t, INGRESS, 80).0, want);
        // The same rules the other way round on the entries.
        let mut t = datapath(TIERED);
        t.allow(key(IDENTITY_ANY, INGRESS), coded(admin(1, first)));
        t.allow(key(PEER_CIDR, INGRESS), coded(admin(2, second)));
        assert_eq!(judge(&mut t, INGRESS, 80).0, want);
    }
}

#[test]
fn inline_codes_cover_only_their_port_range() {
    let mut t = datapath(TIERED);
    t.allow(
        key(PEER_ID, EGRESS),
        PolicyValue {
            tier_lo: 1000,
            tier_hi: 1999,
            codes: admin(1, tier_code::DENY),
            ..PolicyValue::NOTHING
        },
    );
    for (port, want) in [
        (999, Action::Pass),
        (1000, Action::Drop),
        (1999, Action::Drop),
        (2000, Action::Pass),
    ] {
        assert_eq!(judge(&mut t, EGRESS, port).0, want, "port {port}");
    }
}

/// A table with segments starting at `starts` (the first must be 0).
fn table(segments: &[(u16, TierCodes)]) -> TierTable {
    let mut t = TierTable {
        starts: [u16::MAX; TIER_SEGMENTS],
        codes: [TierCodes::NONE; TIER_SEGMENTS],
    };
    for (i, (start, codes)) in segments.iter().enumerate() {
        t.starts[i] = *start;
        t.codes[i] = *codes;
    }
    for i in segments.len()..TIER_SEGMENTS {
        t.codes[i] = segments[segments.len() - 1].1;
    }
    t
}

#[test]
fn segment_tables_give_each_port_its_codes_and_a_missing_table_denies() {
    let mut t = datapath(TIERED);
    // 0-79 none, 80 accept, 81-442 deny, 443 accept, 444-65535 pass then
    // baseline deny.
    t.tierset(
        9,
        &table(&[
            (0, TierCodes::NONE),
            (80, admin(1, tier_code::ACCEPT)),
            (81, admin(2, tier_code::DENY)),
            (443, admin(1, tier_code::ACCEPT)),
            (
                444,
                TierCodes {
                    admin: tier_code::of(3, tier_code::PASS),
                    baseline: tier_code::of(1, tier_code::DENY),
                },
            ),
        ]),
    );
    t.allow(
        key(PEER_ID, EGRESS),
        PolicyValue {
            tierset: 9,
            ..PolicyValue::NOTHING
        },
    );
    for (port, want) in [
        (79, None),
        (80, None),
        (81, Some(DropReason::AdminDenied as u8)),
        (442, Some(DropReason::AdminDenied as u8)),
        (443, None),
        (444, Some(DropReason::BaselineDenied as u8)),
        (65535, Some(DropReason::BaselineDenied as u8)),
    ] {
        assert_eq!(
            judge(&mut t, EGRESS, port).1.map(|e| e.1),
            want,
            "port {port}"
        );
    }
    // Fail closed: the entry names a table that is not there.
    t.forget_tierset(9);
    assert_eq!(
        judge(&mut t, EGRESS, 80),
        (
            Action::Drop,
            Some((
                event_kind::DROP,
                DropReason::AdminDenied as u8,
                tier_code::BOTTOM
            ))
        )
    );
}

#[test]
fn audit_mode_reports_tier_denials_and_passes_them() {
    let mut t = datapath(TIERED | ef::AUDIT_INGRESS);
    t.allow(key(IDENTITY_ANY, INGRESS), coded(admin(4, tier_code::DENY)));
    assert_eq!(
        judge(&mut t, INGRESS, 80),
        (
            Action::Pass,
            Some((
                event_kind::AUDIT,
                DropReason::AdminDenied as u8,
                tier_code::of(4, tier_code::DENY)
            ))
        )
    );
}

#[test]
fn the_node_is_exempt_before_the_tiers() {
    let mut t = datapath(TIERED);
    let node = IpAddr::V4(Ipv4Addr::new(198, 18, 255, 1));
    t.ipcache_exact(
        node,
        IpcacheValue {
            identity: IDENTITY_HOST,
            cidr_identity: IDENTITY_WORLD,
        },
    );
    t.allow(key(IDENTITY_ANY, INGRESS), coded(admin(1, tier_code::DENY)));
    let probe = PacketSpec::tcp(node, pod4(), 50000, 8080, tcp::SYN).frame();
    assert_eq!(t.run(INGRESS, &probe), Action::Pass);
    assert_eq!(judge(&mut t, INGRESS, 8080).0, Action::Drop);
}

#[test]
fn replies_of_an_accepted_connection_pass_where_the_reverse_is_denied() {
    let mut t = datapath(TIERED);
    // Egress to the peer accepted; anything the peer opens is denied.
    t.allow(key(PEER_ID, EGRESS), coded(admin(1, tier_code::ACCEPT)));
    t.allow(key(PEER_ID, INGRESS), coded(admin(1, tier_code::DENY)));
    let open = PacketSpec::tcp(pod4(), peer4(), 40000, 443, tcp::SYN).frame();
    assert_eq!(t.run(EGRESS, &open), Action::Pass);
    let reply = PacketSpec::tcp(peer4(), pod4(), 443, 40000, tcp::SYN | tcp::ACK).frame();
    assert_eq!(t.run(INGRESS, &reply), Action::Pass);
    let opened_by_peer = PacketSpec::tcp(peer4(), pod4(), 40001, 443, tcp::SYN).frame();
    assert_eq!(t.run(INGRESS, &opened_by_peer), Action::Drop);
}

#[test]
fn endpoints_without_the_tiered_bit_ignore_codes() {
    // The compiler sets the bit whenever a tier applies; without it the
    // NetworkPolicy-only walk is taken and codes are never read.
    let mut t = datapath(0);
    t.allow(key(IDENTITY_ANY, INGRESS), coded(admin(1, tier_code::DENY)));
    assert_eq!(judge(&mut t, INGRESS, 80), (Action::Pass, None));
}
