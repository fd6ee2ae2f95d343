//! Hand-built diffs whose order matters, checked two ways: replaying each
//! prefix never allows a probe that neither the old nor the new state
//! allows, and the operations appear in the documented order.

mod common;

use std::collections::BTreeSet;

use common::*;
use palisade_common::{direction, endpoint_flags, proto};
use palisade_compiler::{Compiler, Diff, MapOp, PodRef};
use serde_json::json;

fn setup() -> Compiler {
    let mut c = Compiler::new(NODE);
    c.apply_namespace(&ns("a", &[])).unwrap();
    c.apply_pod(&pod(
        "a",
        "web",
        &[("app", "web")],
        NODE,
        &["192.0.2.1"],
        &[],
    ))
    .unwrap();
    c.apply_pod(&pod(
        "a",
        "db",
        &[("app", "db")],
        OTHER_NODE,
        &["192.0.2.2"],
        &[],
    ))
    .unwrap();
    c.apply_pod(&pod(
        "a",
        "other",
        &[("app", "other")],
        OTHER_NODE,
        &["192.0.2.3"],
        &[],
    ))
    .unwrap();
    c.commit();
    c
}

fn egress_to_db(port: i32) -> k8s_openapi::api::networking::v1::NetworkPolicy {
    np(
        "a",
        "web-egress",
        json!({
            "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}], "ports": [{"port": port}]}]
        }),
    )
}

/// Commits and checks the diff's safety with probes over every address
/// of both states and `ports`.
fn commit_checked(c: &mut Compiler, ports: &[u16]) -> Diff {
    let old = c.state().clone();
    let diff = c.commit();
    let extra: BTreeSet<_> = [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "192.0.2.4",
        "192.0.2.9",
    ]
    .map(ip)
    .into();
    let p = probes(&old, c.state(), &extra, ports);
    let end = replay_checked(&old, c.state(), &diff.ops, &p);
    assert_eq!(&end, c.state());
    check_invariants(c);
    diff
}

fn position(ops: &[MapOp], f: impl Fn(&MapOp) -> bool) -> usize {
    ops.iter()
        .position(f)
        .unwrap_or_else(|| panic!("op not found in {ops:#?}"))
}

fn egress_allows(c: &Compiler, to: &str, port: u16) -> bool {
    sim(
        c.state(),
        &PodRef::new("a", "web"),
        direction::EGRESS,
        ip(to),
        proto::TCP,
        port,
    )
    .unwrap()
}

#[test]
fn isolation_is_set_after_the_entries_and_cleared_before_their_removal() {
    let mut c = setup();
    c.apply_policy(&egress_to_db(80)).unwrap();
    let d = commit_checked(&mut c, &[80]);
    let entry = position(&d.ops, |o| matches!(o, MapOp::PolicyUpsert { .. }));
    let flag = position(
        &d.ops,
        |o| matches!(o, MapOp::EndpointUpsert { endpoint, .. } if endpoint.flags & endpoint_flags::ISOLATED_EGRESS != 0),
    );
    assert!(entry < flag, "{:#?}", d.ops);
    assert!(egress_allows(&c, "192.0.2.2", 80) && !egress_allows(&c, "192.0.2.3", 80));

    c.delete_policy("a", "web-egress");
    let d = commit_checked(&mut c, &[80]);
    let flag = position(
        &d.ops,
        |o| matches!(o, MapOp::EndpointUpsert { endpoint, .. } if endpoint.flags == 0),
    );
    let removal = position(&d.ops, |o| matches!(o, MapOp::PolicyRemove { .. }));
    assert!(flag < removal, "{:#?}", d.ops);
    assert!(c.state().policy.is_empty());
}

#[test]
fn relabelled_peer_new_identity_entries_before_the_switch_old_after() {
    let mut c = setup();
    c.apply_policy(&egress_to_db(80)).unwrap();
    c.apply_policy(&np("a", "web-egress-other", json!({
        "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "other"}}}], "ports": [{"port": 81}]}]
    })))
    .unwrap();
    commit_checked(&mut c, &[80, 81]);
    // "other" becomes "db": its address moves to the db identity.
    c.apply_pod(&pod(
        "a",
        "other",
        &[("app", "db")],
        OTHER_NODE,
        &["192.0.2.3"],
        &[],
    ))
    .unwrap();
    let d = commit_checked(&mut c, &[80, 81]);
    let switch = position(
        &d.ops,
        |o| matches!(o, MapOp::IpcacheExactUpsert { addr, .. } if *addr == ip("192.0.2.3")),
    );
    let removal = position(&d.ops, |o| matches!(o, MapOp::PolicyRemove { .. }));
    assert!(
        switch < removal,
        "the old identity's entry goes after the switch: {:#?}",
        d.ops
    );
    assert!(egress_allows(&c, "192.0.2.3", 80) && !egress_allows(&c, "192.0.2.3", 81));
}

#[test]
fn gaining_identity_takes_its_new_ports_before_the_switch() {
    // db keeps its identity (it only gains an address) while its allowed
    // port changes from 80 to 443: written before the switch, else the
    // moved pod would be reachable on 80.
    let mut c = setup();
    c.apply_policy(&egress_to_db(80)).unwrap();
    commit_checked(&mut c, &[80, 443]);
    c.apply_policy(&egress_to_db(443)).unwrap();
    c.apply_pod(&pod(
        "a",
        "other",
        &[("app", "db")],
        OTHER_NODE,
        &["192.0.2.3"],
        &[],
    ))
    .unwrap();
    let d = commit_checked(&mut c, &[80, 443]);
    let write = position(
        &d.ops,
        |o| matches!(o, MapOp::PolicyUpsert { value, .. } if value.port_lo == 443),
    );
    let switch = position(
        &d.ops,
        |o| matches!(o, MapOp::IpcacheExactUpsert { addr, .. } if *addr == ip("192.0.2.3")),
    );
    assert!(write < switch, "{:#?}", d.ops);
    assert!(egress_allows(&c, "192.0.2.3", 443) && !egress_allows(&c, "192.0.2.3", 80));
}

#[test]
fn identity_gaining_and_losing_is_narrowed_around_the_switch() {
    // db moves from .2 to .4 while its port changes from 80 to 443: the
    // entry is narrowed to 80∩443 = nothing before the switch and set to
    // 443 after (two writes for one entry, the only such case).
    let mut c = setup();
    c.apply_policy(&egress_to_db(80)).unwrap();
    commit_checked(&mut c, &[80, 443]);
    c.apply_policy(&egress_to_db(443)).unwrap();
    c.apply_pod(&pod(
        "a",
        "db",
        &[("app", "db")],
        OTHER_NODE,
        &["192.0.2.4"],
        &[],
    ))
    .unwrap();
    let d = commit_checked(&mut c, &[80, 443]);
    let narrow = position(&d.ops, |o| matches!(o, MapOp::PolicyRemove { .. }));
    let add = position(
        &d.ops,
        |o| matches!(o, MapOp::IpcacheExactUpsert { addr, .. } if *addr == ip("192.0.2.4")),
    );
    let widen = position(
        &d.ops,
        |o| matches!(o, MapOp::PolicyUpsert { value, .. } if value.port_lo == 443),
    );
    assert!(narrow < add && add < widen, "{:#?}", d.ops);
    assert!(egress_allows(&c, "192.0.2.4", 443) && !egress_allows(&c, "192.0.2.2", 443));
}

#[test]
fn lpm_prefixes_are_added_longest_first_and_removed_shortest_first() {
    let mut c = setup();
    let block = |except: bool| {
        let b = if except {
            json!({"cidr": "198.51.100.0/24", "except": ["198.51.100.128/25", "198.51.100.192/26"]})
        } else {
            json!({"cidr": "198.51.100.0/24"})
        };
        np(
            "a",
            "blocks",
            json!({
                "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": b}]}]
            }),
        )
    };
    c.apply_policy(&block(true)).unwrap();
    let d = commit_checked(&mut c, &[80]);
    let lens: Vec<u8> = d
        .ops
        .iter()
        .filter_map(|o| match o {
            MapOp::IpcacheLpmUpsert { prefix, .. } => Some(prefix.prefix_len()),
            _ => None,
        })
        .collect();
    assert_eq!(lens, vec![26, 25, 24]);
    assert!(egress_allows(&c, "198.51.100.1", 80) && !egress_allows(&c, "198.51.100.200", 80));
    c.apply_policy(&block(false)).unwrap();
    let d = commit_checked(&mut c, &[80]);
    let lens: Vec<u8> = d
        .ops
        .iter()
        .filter_map(|o| match o {
            MapOp::IpcacheLpmRemove { prefix } => Some(prefix.prefix_len()),
            _ => None,
        })
        .collect();
    assert_eq!(lens, vec![25, 26]);
    assert!(egress_allows(&c, "198.51.100.200", 80));
}

#[test]
fn new_bitmaps_come_first_and_unused_ones_last() {
    let mut c = setup();
    c.apply_policy(&np(
        "a",
        "multi",
        json!({
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"ports": [{"port": 80}, {"port": 443}]}]
        }),
    ))
    .unwrap();
    let d = commit_checked(&mut c, &[80, 443, 444]);
    assert!(
        matches!(d.ops[0], MapOp::PortsetUpsert { .. }),
        "{:#?}",
        d.ops
    );
    c.delete_policy("a", "multi");
    let d = commit_checked(&mut c, &[80, 443]);
    assert!(
        matches!(d.ops.last(), Some(MapOp::PortsetRemove { .. })),
        "{:#?}",
        d.ops
    );
    assert!(c.state().portsets.is_empty());
}
