//! Corner cases of the semantics and of the bookkeeping (identities,
//! endpoint ids, portsets, regions), each checked on the compiled maps.

mod common;

use common::*;
use palisade_common::{
    CIDR_IDENTITY_BASE, IDENTITY_ANY, IDENTITY_HOST, IDENTITY_WORLD, POD_IDENTITY_BASE, direction,
    endpoint_flags, proto,
};
use palisade_compiler::{Compiler, DesiredState, IdentityInfo, PodRef};
use serde_json::json;

fn commit(c: &mut Compiler) {
    let old = c.state().clone();
    let d = c.commit();
    let mut s = old;
    for op in &d.ops {
        s.apply(op);
    }
    assert_eq!(&s, c.state());
    check_invariants(c);
}

fn allows(c: &Compiler, pod: (&str, &str), dir: u8, peer: &str, pr: u8, port: u16) -> bool {
    sim(
        c.state(),
        &PodRef::new(pod.0, pod.1),
        dir,
        ip(peer),
        pr,
        port,
    )
    .unwrap()
}

const EG: u8 = direction::EGRESS;
const IN: u8 = direction::INGRESS;
const TCP: u8 = proto::TCP;

fn local_web(c: &mut Compiler) {
    c.apply_pod(&pod(
        "a",
        "web",
        &[("app", "web")],
        NODE,
        &["192.0.2.1", "2001:db8::1"],
        &[],
    ))
    .unwrap();
}

#[test]
fn overlapping_except_and_cidr_from_different_policies() {
    for (big, hole, inside, elsewhere, outside) in [
        (
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.3",
            "10.2.0.1",
            "11.0.0.1",
        ),
        (
            "2001:db8::/32",
            "2001:db8:1::/48",
            "2001:db8:1::3",
            "2001:db8:2::1",
            "2001:db9::1",
        ),
    ] {
        let mut c = Compiler::new(NODE);
        local_web(&mut c);
        let pol = |name: &str, block: serde_json::Value| {
            np(
                "a",
                name,
                json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": block}]}]}),
            )
        };
        c.apply_policy(&pol("big", json!({"cidr": big, "except": [hole]})))
            .unwrap();
        commit(&mut c);
        assert!(!allows(&c, ("a", "web"), EG, inside, TCP, 80));
        assert!(allows(&c, ("a", "web"), EG, elsewhere, TCP, 80));
        assert!(!allows(&c, ("a", "web"), EG, outside, TCP, 80));
        c.apply_policy(&pol("hole", json!({"cidr": hole}))).unwrap();
        commit(&mut c);
        assert!(
            allows(&c, ("a", "web"), EG, inside, TCP, 80),
            "allowed by the second policy"
        );
        assert!(allows(&c, ("a", "web"), EG, elsewhere, TCP, 80));
        assert!(!allows(&c, ("a", "web"), EG, outside, TCP, 80));
        // the hole prefix is mentioned by both policies: one region, shared
        let lpm = c.state().ipcache_lpm4.len() + c.state().ipcache_lpm6.len();
        assert_eq!(lpm, 2);
        c.delete_policy("a", "big");
        commit(&mut c);
        assert!(allows(&c, ("a", "web"), EG, inside, TCP, 80));
        assert!(!allows(&c, ("a", "web"), EG, elsewhere, TCP, 80));
        c.delete_policy("a", "hole");
        commit(&mut c);
        assert!(c.state().ipcache_lpm4.is_empty() && c.state().ipcache_lpm6.is_empty());
        assert!(
            c.state()
                .ipcache_exact4
                .values()
                .all(|v| v.cidr_identity == IDENTITY_WORLD)
        );
    }
}

#[test]
fn named_port_signature_splits_identities_so_egress_stays_exact() {
    let mut c = Compiler::new(NODE);
    local_web(&mut c);
    c.apply_pod(&pod(
        "a",
        "api-1",
        &[("app", "api")],
        OTHER_NODE,
        &["192.0.2.11"],
        &[("http", "TCP", 80)],
    ))
    .unwrap();
    c.apply_pod(&pod(
        "a",
        "api-2",
        &[("app", "api")],
        OTHER_NODE,
        &["192.0.2.12"],
        &[("http", "TCP", 8080)],
    ))
    .unwrap();
    c.apply_pod(&pod(
        "a",
        "api-3",
        &[("app", "api")],
        OTHER_NODE,
        &["192.0.2.13"],
        &[("http", "TCP", 80)],
    ))
    .unwrap();
    c.apply_policy(&np("a", "to-api", json!({
        "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "api"}}}], "ports": [{"port": "http"}]}]
    })))
    .unwrap();
    commit(&mut c);
    let id = |a: &str| c.state().exact(&ip(a)).unwrap().identity;
    assert_ne!(
        id("192.0.2.11"),
        id("192.0.2.12"),
        "same labels, different named ports"
    );
    assert_eq!(
        id("192.0.2.11"),
        id("192.0.2.13"),
        "same labels and named ports share"
    );
    assert!(allows(&c, ("a", "web"), EG, "192.0.2.11", TCP, 80));
    assert!(!allows(&c, ("a", "web"), EG, "192.0.2.11", TCP, 8080));
    assert!(allows(&c, ("a", "web"), EG, "192.0.2.12", TCP, 8080));
    assert!(!allows(&c, ("a", "web"), EG, "192.0.2.12", TCP, 80));
    assert_eq!(c.state().policy.len(), 2);
}

#[test]
fn ingress_named_ports_resolve_per_local_endpoint() {
    let mut c = Compiler::new(NODE);
    c.apply_pod(&pod(
        "a",
        "s1",
        &[("app", "srv")],
        NODE,
        &["192.0.2.1"],
        &[("http", "TCP", 80)],
    ))
    .unwrap();
    c.apply_pod(&pod(
        "a",
        "s2",
        &[("app", "srv")],
        NODE,
        &["192.0.2.2"],
        &[("http", "TCP", 8080)],
    ))
    .unwrap();
    c.apply_pod(&pod(
        "a",
        "s3",
        &[("app", "srv")],
        NODE,
        &["192.0.2.3"],
        &[],
    ))
    .unwrap();
    c.apply_policy(&np(
        "a",
        "http-in",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]}),
    ))
    .unwrap();
    commit(&mut c);
    let peer = "198.51.100.1";
    assert!(
        allows(&c, ("a", "s1"), IN, peer, TCP, 80) && !allows(&c, ("a", "s1"), IN, peer, TCP, 8080)
    );
    assert!(
        allows(&c, ("a", "s2"), IN, peer, TCP, 8080) && !allows(&c, ("a", "s2"), IN, peer, TCP, 80)
    );
    assert!(
        !allows(&c, ("a", "s3"), IN, peer, TCP, 80),
        "a name the pod does not serve matches nothing"
    );
    // the pod starts serving the name: its entries follow
    c.apply_pod(&pod(
        "a",
        "s3",
        &[("app", "srv")],
        NODE,
        &["192.0.2.3"],
        &[("http", "TCP", 81)],
    ))
    .unwrap();
    commit(&mut c);
    assert!(allows(&c, ("a", "s3"), IN, peer, TCP, 81));
}

#[test]
fn egress_named_port_to_everything_only_reaches_pods_serving_it() {
    let mut c = Compiler::new(NODE);
    local_web(&mut c);
    c.apply_pod(&pod(
        "b",
        "api",
        &[],
        OTHER_NODE,
        &["192.0.2.11"],
        &[("http", "TCP", 8080)],
    ))
    .unwrap();
    c.apply_pod(&pod("b", "db", &[], OTHER_NODE, &["192.0.2.12"], &[]))
        .unwrap();
    c.apply_policy(&np(
        "a",
        "http-out",
        json!({
            "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
            "egress": [{"ports": [{"port": "http"}, {"port": 443}]}]
        }),
    ))
    .unwrap();
    commit(&mut c);
    assert!(allows(&c, ("a", "web"), EG, "192.0.2.11", TCP, 8080));
    assert!(!allows(&c, ("a", "web"), EG, "192.0.2.12", TCP, 8080));
    assert!(
        !allows(&c, ("a", "web"), EG, "203.0.113.1", TCP, 8080),
        "non-pods have no named ports"
    );
    assert!(allows(&c, ("a", "web"), EG, "203.0.113.1", TCP, 443));
    assert!(c.state().policy.keys().any(|k| k.identity == IDENTITY_ANY));
}

#[test]
fn egress_named_port_through_ip_block_is_conservative() {
    let mut c = Compiler::new(NODE);
    local_web(&mut c);
    // same identity, one pod inside the block, one outside
    c.apply_pod(&pod(
        "b",
        "in",
        &[("app", "api")],
        OTHER_NODE,
        &["192.0.2.11"],
        &[("http", "TCP", 8080)],
    ))
    .unwrap();
    c.apply_pod(&pod(
        "b",
        "out",
        &[("app", "api")],
        OTHER_NODE,
        &["198.51.100.11"],
        &[("http", "TCP", 8080)],
    ))
    .unwrap();
    c.apply_policy(&np("a", "block-http", json!({
        "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": [{"port": "http"}, {"port": 443}]}]
    })))
    .unwrap();
    commit(&mut c);
    assert!(
        !allows(&c, ("a", "web"), EG, "198.51.100.11", TCP, 8080),
        "never over-allow"
    );
    assert!(
        !allows(&c, ("a", "web"), EG, "192.0.2.11", TCP, 8080),
        "conservative: the identity spans the edge"
    );
    assert!(allows(&c, ("a", "web"), EG, "192.0.2.11", TCP, 443));
    c.delete_pod("b", "out");
    commit(&mut c);
    assert!(
        allows(&c, ("a", "web"), EG, "192.0.2.11", TCP, 8080),
        "every pod of the identity is inside now"
    );
    assert!(!allows(&c, ("a", "web"), EG, "192.0.2.99", TCP, 8080));
    // a pod of the identity appears outside: the entry goes before its address
    c.apply_pod(&pod(
        "b",
        "out",
        &[("app", "api")],
        OTHER_NODE,
        &["198.51.100.11"],
        &[("http", "TCP", 8080)],
    ))
    .unwrap();
    commit(&mut c);
    assert!(!allows(&c, ("a", "web"), EG, "198.51.100.11", TCP, 8080));
}

#[test]
fn ip_blocks_match_pod_addresses_but_not_same_labelled_pods_elsewhere() {
    let mut c = Compiler::new(NODE);
    local_web(&mut c);
    c.apply_pod(&pod(
        "b",
        "x1",
        &[("app", "x")],
        OTHER_NODE,
        &["192.0.2.11"],
        &[],
    ))
    .unwrap();
    c.apply_pod(&pod(
        "b",
        "x2",
        &[("app", "x")],
        OTHER_NODE,
        &["198.51.100.11"],
        &[],
    ))
    .unwrap();
    c.apply_policy(&np(
        "a",
        "p",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.8/29"}}]}]}),
    ))
    .unwrap();
    commit(&mut c);
    assert!(allows(&c, ("a", "web"), IN, "192.0.2.11", TCP, 1));
    assert!(
        !allows(&c, ("a", "web"), IN, "198.51.100.11", TCP, 1),
        "same identity, outside the block"
    );
    let v = c.state().exact(&ip("192.0.2.11")).unwrap();
    assert!(
        v.identity >= POD_IDENTITY_BASE
            && v.identity < CIDR_IDENTITY_BASE
            && v.cidr_identity >= CIDR_IDENTITY_BASE
    );
}

#[test]
fn address_claimed_twice_goes_to_the_node_then_the_smallest_pod() {
    let mut c = Compiler::new(NODE);
    c.apply_pod(&pod(
        "b",
        "zz",
        &[("app", "z")],
        OTHER_NODE,
        &["192.0.2.5"],
        &[],
    ))
    .unwrap();
    c.apply_pod(&pod(
        "b",
        "aa",
        &[("app", "a")],
        OTHER_NODE,
        &["192.0.2.5"],
        &[],
    ))
    .unwrap();
    commit(&mut c);
    let who = |c: &Compiler| c.identity(c.state().exact(&ip("192.0.2.5")).unwrap().identity);
    assert!(matches!(who(&c), Some(IdentityInfo::Pod { labels, .. }) if labels["app"] == "a"));
    c.set_host_addresses(vec![ip("192.0.2.5")]);
    commit(&mut c);
    assert_eq!(
        c.state().exact(&ip("192.0.2.5")).unwrap().identity,
        IDENTITY_HOST
    );
    c.set_host_addresses(vec![]);
    c.delete_pod("b", "aa");
    commit(&mut c);
    assert!(matches!(who(&c), Some(IdentityInfo::Pod { labels, .. }) if labels["app"] == "z"));
}

#[test]
fn endpoints_need_an_address_a_running_phase_and_pod_networking() {
    let mut c = Compiler::new(NODE);
    c.apply_pod(&pod("a", "web", &[("app", "web")], NODE, &[], &[]))
        .unwrap();
    c.apply_policy(&np("a", "deny", json!({"podSelector": {}})))
        .unwrap();
    commit(&mut c);
    assert!(c.state().endpoints.is_empty() && c.state().ipcache_exact4.is_empty());
    local_web(&mut c);
    commit(&mut c);
    let ep = &c.state().endpoints[&PodRef::new("a", "web")];
    assert_eq!(
        ep.flags,
        endpoint_flags::ISOLATED_INGRESS,
        "selected once its address arrives"
    );
    let mut done = pod("a", "web", &[("app", "web")], NODE, &["192.0.2.1"], &[]);
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    c.apply_pod(&done).unwrap();
    commit(&mut c);
    assert!(c.state().endpoints.is_empty() && c.state().ipcache_exact4.is_empty());
    let mut hn = pod("a", "web", &[("app", "web")], NODE, &["192.0.2.1"], &[]);
    hn.spec.as_mut().unwrap().host_network = Some(true);
    c.apply_pod(&hn).unwrap();
    commit(&mut c);
    assert!(c.state().endpoints.is_empty() && c.state().ipcache_exact4.is_empty());
    assert!(c.state().policy.is_empty());
}

#[test]
fn endpoint_ids_are_stable_for_a_pods_life() {
    let mut c = Compiler::new(NODE);
    local_web(&mut c);
    commit(&mut c);
    let ep = |c: &Compiler| c.state().endpoints[&PodRef::new("a", "web")].clone();
    let first = ep(&c);
    assert_ne!(first.ep_id, 0);
    c.apply_pod(&pod(
        "a",
        "web",
        &[("app", "other")],
        NODE,
        &["192.0.2.7"],
        &[("x", "TCP", 1)],
    ))
    .unwrap();
    commit(&mut c);
    assert_eq!(
        ep(&c).ep_id,
        first.ep_id,
        "relabelled and re-addressed: same pod, same id"
    );
    assert_ne!(ep(&c).identity, first.identity);
    let mut reborn = pod(
        "a",
        "web",
        &[("app", "other")],
        NODE,
        &["192.0.2.7"],
        &[("x", "TCP", 1)],
    );
    reborn.metadata.uid = Some("new-uid".into());
    c.apply_pod(&reborn).unwrap();
    commit(&mut c);
    assert_ne!(ep(&c).ep_id, first.ep_id, "a new UID is a new life");
    // moved to another node: no endpoint, still a peer
    c.apply_pod(&pod(
        "a",
        "web",
        &[("app", "other")],
        OTHER_NODE,
        &["192.0.2.7"],
        &[],
    ))
    .unwrap();
    commit(&mut c);
    assert!(c.state().endpoints.is_empty());
    assert!(c.state().exact(&ip("192.0.2.7")).is_some());
}

#[test]
fn identities_are_refcounted_and_stable() {
    let mut c = Compiler::new(NODE);
    c.apply_pod(&pod(
        "a",
        "p1",
        &[("app", "x")],
        OTHER_NODE,
        &["192.0.2.1"],
        &[],
    ))
    .unwrap();
    c.apply_pod(&pod(
        "a",
        "p2",
        &[("app", "x")],
        OTHER_NODE,
        &["192.0.2.2"],
        &[],
    ))
    .unwrap();
    commit(&mut c);
    let id = c.state().exact(&ip("192.0.2.1")).unwrap().identity;
    c.delete_pod("a", "p1");
    commit(&mut c);
    assert_eq!(
        c.state().exact(&ip("192.0.2.2")).unwrap().identity,
        id,
        "still used: unchanged"
    );
    // relabelled away and back within one batch: same identity, no ops
    c.apply_pod(&pod(
        "a",
        "p2",
        &[("app", "y")],
        OTHER_NODE,
        &["192.0.2.2"],
        &[],
    ))
    .unwrap();
    c.apply_pod(&pod(
        "a",
        "p2",
        &[("app", "x")],
        OTHER_NODE,
        &["192.0.2.2"],
        &[],
    ))
    .unwrap();
    assert!(c.commit().ops.is_empty());
    c.delete_pod("a", "p2");
    commit(&mut c);
    assert!(c.identity(id).is_none(), "released once unused");
}

#[test]
fn namespaces_without_objects_have_the_automatic_label() {
    let mut c = Compiler::new(NODE);
    local_web(&mut c);
    c.apply_pod(&pod("ghost", "p", &[], OTHER_NODE, &["192.0.2.9"], &[]))
        .unwrap();
    c.apply_policy(&np(
        "a",
        "from-ghost",
        json!({"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ghost"}}}]}]}),
    ))
    .unwrap();
    commit(&mut c);
    assert!(allows(&c, ("a", "web"), IN, "192.0.2.9", TCP, 80));
    c.apply_namespace(&ns("ghost", &[("team", "t")])).unwrap();
    commit(&mut c);
    assert!(
        allows(&c, ("a", "web"), IN, "192.0.2.9", TCP, 80),
        "the API server adds it too"
    );
}

#[test]
fn policy_types_defaulting_and_protocol_classes() {
    let mut c = Compiler::new(NODE);
    local_web(&mut c);
    c.apply_policy(&np(
        "a",
        "p",
        json!({"podSelector": {}, "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]}),
    ))
    .unwrap();
    commit(&mut c);
    let ep = &c.state().endpoints[&PodRef::new("a", "web")];
    assert_eq!(
        ep.flags,
        endpoint_flags::ISOLATED_INGRESS | endpoint_flags::ISOLATED_EGRESS
    );
    assert!(allows(&c, ("a", "web"), EG, "203.0.113.5", proto::UDP, 53));
    assert!(!allows(&c, ("a", "web"), EG, "203.0.113.5", ICMP, 0));
    assert!(c.state().policy.keys().all(|k| k.proto == proto::UDP));
    c.apply_policy(&np("a", "p", json!({"podSelector": {}, "egress": [{}]})))
        .unwrap();
    commit(&mut c);
    let classes: Vec<u8> = c.state().policy.keys().map(|k| k.proto).collect();
    assert_eq!(
        classes,
        vec![proto::TCP, proto::UDP, proto::SCTP, proto::OTHER]
    );
    assert!(allows(&c, ("a", "web"), EG, "203.0.113.5", ICMP, 0));
    assert!(
        !allows(&c, ("a", "web"), IN, "203.0.113.5", ICMP, 0),
        "ingress isolated by default"
    );
}

#[test]
fn portsets_are_deduplicated_and_freed() {
    let mut c = Compiler::new(NODE);
    local_web(&mut c);
    c.apply_pod(&pod(
        "a",
        "web2",
        &[("app", "web")],
        NODE,
        &["192.0.2.2"],
        &[],
    ))
    .unwrap();
    c.apply_policy(&np("a", "p", json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}, {"port": 443}, {"port": 8000, "endPort": 8100}]}]}))).unwrap();
    commit(&mut c);
    assert_eq!(c.state().portsets.len(), 1, "one bitmap for both endpoints");
    let set = c.state().portsets.values().next().unwrap();
    assert_eq!(set.ranges(), &[(80, 80), (443, 443), (8000, 8100)]);
    let bitmap = set.to_bitmap();
    assert!(bitmap.contains(8050) && bitmap.contains(443) && !bitmap.contains(444));
    c.apply_policy(&np(
        "a",
        "p",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "endPort": 90}]}]}),
    ))
    .unwrap();
    commit(&mut c);
    assert!(c.state().portsets.is_empty());
}

#[test]
fn revision_counts_commits_with_operations() {
    let mut c = Compiler::new(NODE);
    assert_eq!(c.commit().revision, 0);
    local_web(&mut c);
    assert_eq!(c.commit().revision, 1);
    local_web(&mut c); // identical: nothing changes
    let d = c.commit();
    assert!(d.ops.is_empty());
    assert_eq!((d.revision, c.revision()), (1, 1));
}

#[test]
fn full_sync_ops_rebuild_the_state() {
    let mut c = Compiler::new(NODE);
    local_web(&mut c);
    c.apply_policy(&np("a", "p", json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
        "ports": [{"port": 80}, {"port": 443}]}]}))).unwrap();
    c.set_host_addresses(vec![ip("192.0.2.254")]);
    commit(&mut c);
    let mut s = DesiredState::default();
    for op in c.state().full_sync_ops() {
        s.apply(&op);
    }
    assert_eq!(&s, c.state());
}
