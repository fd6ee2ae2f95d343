//! ClusterNetworkPolicies end to end, through the public API: objects in,
//! verdicts of the simulated datapath (`common::sim`) out. Namespaces
//! `prod` (pods `web`, `db`) and `dev` (pod `tool`), all on this node,
//! and two outside addresses. Every change is committed through
//! [`step`], which also checks that no intermediate state of the diff
//! allows a flow that neither the old nor the new state allows.

mod common;

use std::collections::BTreeSet;

use common::*;
use palisade_common::{direction, endpoint_flags, proto};
use palisade_compiler::api::ClusterNetworkPolicy;
use palisade_compiler::{Compiler, MODE_ANNOTATION, PodRef};
use serde_json::{Value, json};

const WEB: &str = "10.0.1.1";
const DB: &str = "10.0.1.2";
const TOOL: &str = "10.0.2.1";
/// In 203.0.113.0/24.
const BAD: &str = "203.0.113.7";
/// Outside every prefix the tests name.
const GOOD: &str = "198.51.100.9";

/// This node's addresses (node-1).
const HOST4: &str = "192.0.2.10";
const HOST6: &str = "2001:db8:fab::1";
/// node-2's addresses, and the one it moves to.
const N2_V4: &str = "192.0.2.20";
const N2_V6: &str = "2001:db8:fab::2";
const N2_MOVED: &str = "192.0.2.21";
const NODE_ADDRS: [&str; 5] = [HOST4, HOST6, N2_V4, N2_V6, N2_MOVED];

fn cnp(name: &str, spec: Value) -> ClusterNetworkPolicy {
    serde_json::from_value(json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap()
}

/// Applies `f` and commits, replaying the diff op by op against probes
/// of every pod, direction, address and a few ports.
fn step(c: &mut Compiler, f: impl FnOnce(&mut Compiler)) {
    let old = c.state().clone();
    f(c);
    let diff = c.commit();
    let new = c.state().clone();
    let extra: BTreeSet<_> = [WEB, DB, TOOL, BAD, GOOD, "203.0.113.8"]
        .into_iter()
        .chain(NODE_ADDRS)
        .map(ip)
        .collect();
    let probes = probes(&old, &new, &extra, &[53, 80, 81, 443, 8080, 9090]);
    let end = replay_checked(&old, &new, &diff.ops, &probes);
    assert_eq!(end, new, "the diff leads to the new state");
    check_invariants(c);
}

fn apply(c: &mut Compiler, obj: ClusterNetworkPolicy) {
    step(c, |c| c.apply_cluster_policy(&obj).unwrap());
}

fn env() -> Compiler {
    let mut c = Compiler::new(NODE);
    step(&mut c, |c| {
        c.apply_namespace(&ns("prod", &[("team", "prod")])).unwrap();
        c.apply_namespace(&ns("dev", &[("team", "dev")])).unwrap();
        let serve = [
            ("http", "TCP", 8080),
            ("metrics", "TCP", 9090),
            ("dns", "UDP", 53),
        ];
        for (n, name, app, addr) in [
            ("prod", "web", "web", WEB),
            ("prod", "db", "db", DB),
            ("dev", "tool", "tool", TOOL),
        ] {
            c.apply_pod(&pod(n, name, &[("app", app)], NODE, &[addr], &serve))
                .unwrap();
        }
    });
    c
}

fn verdict(c: &Compiler, local: &str, dir: u8, peer: &str, p: u8, port: u16) -> bool {
    let (n, name) = local.split_once('/').unwrap();
    sim(c.state(), &PodRef::new(n, name), dir, ip(peer), p, port).unwrap()
}

/// TCP egress of `local` towards `peer`.
fn out(c: &Compiler, local: &str, peer: &str, port: u16) -> bool {
    verdict(c, local, direction::EGRESS, peer, proto::TCP, port)
}

/// TCP ingress of `local` from `peer`.
fn inn(c: &Compiler, local: &str, peer: &str, port: u16) -> bool {
    verdict(c, local, direction::INGRESS, peer, proto::TCP, port)
}

fn deny_bad_net() -> ClusterNetworkPolicy {
    cnp(
        "block-net",
        json!({"tier": "Admin", "priority": 10, "subject": {"namespaces": {}},
            "egress": [{"name": "no-bad-net", "action": "Deny", "to": [{"networks": ["203.0.113.0/24"]}]}]}),
    )
}

#[test]
fn admin_deny_of_a_cidr_for_all_namespaces() {
    let mut c = env();
    assert!(out(&c, "prod/web", BAD, 443));
    apply(&mut c, deny_bad_net());
    for pod in ["prod/web", "prod/db", "dev/tool"] {
        assert!(!out(&c, pod, BAD, 443), "{pod}");
        assert!(!verdict(&c, pod, direction::EGRESS, BAD, proto::UDP, 53));
        assert!(!verdict(&c, pod, direction::EGRESS, BAD, ICMP, 0));
        assert!(out(&c, pod, GOOD, 443), "{pod}");
        assert!(out(&c, pod, TOOL, 80) && out(&c, pod, DB, 80));
        // No ingress rules: ingress is not affected.
        assert!(inn(&c, pod, BAD, 80));
    }
    let flags = c.state().endpoints[&PodRef::new("prod", "web")].flags;
    assert_ne!(flags & endpoint_flags::tiered(direction::EGRESS), 0);
    assert_eq!(flags & endpoint_flags::tiered(direction::INGRESS), 0);
}

#[test]
fn networks_match_pod_addresses_too() {
    let mut c = env();
    apply(
        &mut c,
        cnp(
            "no-prod",
            json!({"tier": "Admin", "priority": 10, "subject": {"namespaces": {"matchLabels": {"team": "dev"}}},
                "egress": [{"action": "Deny", "to": [{"networks": ["10.0.1.0/24"]}]}]}),
        ),
    );
    assert!(!out(&c, "dev/tool", WEB, 80) && !out(&c, "dev/tool", DB, 80));
    assert!(out(&c, "dev/tool", GOOD, 80));
    assert!(out(&c, "prod/web", DB, 80));
}

#[test]
fn namespaces_and_pods_subjects() {
    let mut c = env();
    apply(
        &mut c,
        cnp(
            "prod-from-dev",
            json!({"tier": "Admin", "priority": 10,
                "subject": {"namespaces": {"matchLabels": {"team": "prod"}}},
                "ingress": [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"team": "dev"}}}]}]}),
        ),
    );
    apply(
        &mut c,
        cnp(
            "db-to-web",
            json!({"tier": "Admin", "priority": 20,
                "subject": {"pods": {"namespaceSelector": {"matchLabels": {"team": "prod"}}, "podSelector": {"matchLabels": {"app": "db"}}}},
                "egress": [{"action": "Deny", "to": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}}]}]}),
        ),
    );
    // prod-from-dev: every pod of prod, from every pod of dev only.
    assert!(!inn(&c, "prod/web", TOOL, 80) && !inn(&c, "prod/db", TOOL, 80));
    assert!(inn(&c, "prod/web", DB, 80) && inn(&c, "prod/web", GOOD, 80));
    assert!(inn(&c, "dev/tool", WEB, 80));
    // db-to-web: only prod/db, only towards web.
    assert!(!out(&c, "prod/db", WEB, 80));
    assert!(out(&c, "prod/db", TOOL, 80) && out(&c, "prod/db", GOOD, 80));
    assert!(out(&c, "prod/web", DB, 80) && out(&c, "dev/tool", WEB, 80));
}

#[test]
fn subjects_follow_namespace_and_pod_labels() {
    let mut c = env();
    apply(&mut c, {
        let mut p = deny_bad_net();
        p.spec.subject = serde_json::from_value(json!({"pods": {
            "namespaceSelector": {"matchLabels": {"team": "prod"}},
            "podSelector": {"matchLabels": {"app": "db"}}}}))
        .unwrap();
        p
    });
    assert!(!out(&c, "prod/db", BAD, 80));
    assert!(out(&c, "prod/web", BAD, 80) && out(&c, "dev/tool", BAD, 80));
    // dev becomes a prod namespace: its db-labelled pods are subjects.
    step(&mut c, |c| {
        c.apply_namespace(&ns("dev", &[("team", "prod")])).unwrap();
        c.apply_pod(&pod("dev", "tool", &[("app", "db")], NODE, &[TOOL], &[]))
            .unwrap();
    });
    assert!(!out(&c, "dev/tool", BAD, 80));
    // and stop being subjects when relabelled back.
    step(&mut c, |c| {
        c.apply_namespace(&ns("dev", &[("team", "dev")])).unwrap();
    });
    assert!(out(&c, "dev/tool", BAD, 80));
}

#[test]
fn admin_pass_lets_network_policy_decide() {
    let mut c = env();
    apply(
        &mut c,
        cnp(
            "deny-dev",
            json!({"tier": "Admin", "priority": 20, "subject": {"namespaces": {"matchLabels": {"team": "prod"}}},
                "egress": [{"action": "Deny", "to": [{"namespaces": {"matchLabels": {"team": "dev"}}}]}]}),
        ),
    );
    step(&mut c, |c| {
        c.apply_policy(&np(
            "prod",
            "web-out",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
                "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"team": "dev"}}}], "ports": [{"port": 80}]}]}),
        ))
        .unwrap();
    });
    // The Admin Deny is final: the NetworkPolicy's allow does not matter.
    assert!(!out(&c, "prod/web", TOOL, 80) && !out(&c, "prod/db", TOOL, 80));
    apply(
        &mut c,
        cnp(
            "pass-dev",
            json!({"tier": "Admin", "priority": 10, "subject": {"namespaces": {}},
                "egress": [{"action": "Pass", "to": [{"namespaces": {"matchLabels": {"team": "dev"}}}]}]}),
        ),
    );
    // Passed: the NetworkPolicy decides for web (isolated: 80 only) ...
    assert!(out(&c, "prod/web", TOOL, 80));
    assert!(!out(&c, "prod/web", TOOL, 81));
    // ... and nothing isolates db: allowed.
    assert!(out(&c, "prod/db", TOOL, 81));
    // Traffic the Pass does not match is still subject to the rest.
    assert!(!out(&c, "prod/web", GOOD, 80), "web is isolated for egress");
    assert!(out(&c, "prod/db", GOOD, 80));
    step(&mut c, |c| c.delete_cluster_policy("pass-dev"));
    assert!(!out(&c, "prod/web", TOOL, 80) && !out(&c, "prod/db", TOOL, 81));
}

#[test]
fn baseline_applies_only_to_pods_no_network_policy_isolates() {
    let mut c = env();
    apply(
        &mut c,
        cnp(
            "baseline",
            json!({"tier": "Baseline", "priority": 10, "subject": {"namespaces": {"matchLabels": {"team": "prod"}}},
                "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}),
        ),
    );
    assert!(!inn(&c, "prod/web", TOOL, 80) && !inn(&c, "prod/db", TOOL, 80));
    // Only pods are peers of the rule.
    assert!(inn(&c, "prod/db", GOOD, 80));
    step(&mut c, |c| {
        c.apply_policy(&np(
            "prod",
            "web-in",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "dev"}}}]}]}),
        ))
        .unwrap();
    });
    // web is isolated: its NetworkPolicy decides, the Baseline is not consulted.
    assert!(inn(&c, "prod/web", TOOL, 80));
    assert!(!inn(&c, "prod/web", DB, 80) && !inn(&c, "prod/web", GOOD, 80));
    // db is not: the Baseline still denies.
    assert!(!inn(&c, "prod/db", TOOL, 80) && inn(&c, "prod/db", GOOD, 80));
    // Admin comes before both.
    apply(
        &mut c,
        cnp(
            "admin",
            json!({"tier": "Admin", "priority": 500, "subject": {"namespaces": {}},
                "ingress": [{"action": "Accept", "from": [{"pods": {"podSelector": {"matchLabels": {"app": "db"}}}}]}]}),
        ),
    );
    assert!(inn(&c, "prod/web", DB, 80));
}

#[test]
fn baseline_pass_is_the_default_allow() {
    let mut c = env();
    apply(
        &mut c,
        cnp(
            "baseline",
            json!({"tier": "Baseline", "priority": 10, "subject": {"namespaces": {}},
            "egress": [
                {"action": "Pass", "to": [{"networks": ["203.0.113.7/32"]}]},
                {"action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}]},
            ]}),
        ),
    );
    assert!(out(&c, "prod/web", BAD, 80));
    assert!(!out(&c, "prod/web", "203.0.113.8", 80));
}

#[test]
fn lower_priority_number_wins() {
    let mut c = env();
    let accept = |prio: i32| {
        cnp(
            "a-accept",
            json!({"tier": "Admin", "priority": prio, "subject": {"namespaces": {}},
                "egress": [{"action": "Accept", "to": [{"networks": ["203.0.113.0/24"]}]}]}),
        )
    };
    apply(&mut c, accept(20));
    let mut deny = deny_bad_net();
    assert_eq!(deny.spec.priority, Some(10));
    apply(&mut c, deny.clone());
    assert!(
        !out(&c, "prod/web", BAD, 443),
        "Deny at 10 before Accept at 20"
    );
    deny.spec.priority = Some(30);
    apply(&mut c, deny.clone());
    assert!(
        out(&c, "prod/web", BAD, 443),
        "Accept at 20 before Deny at 30"
    );
    apply(&mut c, accept(40));
    assert!(
        !out(&c, "prod/web", BAD, 443),
        "Deny at 30 before Accept at 40"
    );
    // Admin before Baseline whatever the numbers.
    deny.spec.tier = serde_json::from_value(json!("Baseline")).unwrap();
    deny.spec.priority = Some(0);
    apply(&mut c, deny);
    assert!(out(&c, "prod/web", BAD, 443));
}

#[test]
fn rules_of_a_policy_apply_in_written_order() {
    let mut c = env();
    let rules = |first: Value, second: Value| {
        cnp(
            "ordered",
            json!({"tier": "Admin", "priority": 10, "subject": {"namespaces": {}}, "egress": [first, second]}),
        )
    };
    let accept_one = json!({"action": "Accept", "to": [{"networks": ["203.0.113.7/32"]}]});
    let deny_all = json!({"action": "Deny", "to": [{"networks": ["203.0.113.0/24"]}]});
    apply(&mut c, rules(accept_one.clone(), deny_all.clone()));
    assert!(out(&c, "prod/web", BAD, 80));
    assert!(!out(&c, "prod/web", "203.0.113.8", 80));
    apply(&mut c, rules(deny_all, accept_one));
    assert!(!out(&c, "prod/web", BAD, 80));
    assert!(!out(&c, "prod/web", "203.0.113.8", 80));
}

#[test]
fn named_ports_and_ranges() {
    let mut c = env();
    apply(
        &mut c,
        cnp(
            "ports",
            json!({"tier": "Admin", "priority": 10, "subject": {"namespaces": {"matchLabels": {"team": "dev"}}},
                "egress": [{"action": "Deny", "to": [{"pods": {"podSelector": {"matchLabels": {"app": "web"}}}}],
                    "protocols": [{"destinationNamedPort": "http"}, {"destinationNamedPort": "dns"}]}],
                "ingress": [{"action": "Deny", "from": [{"namespaces": {}}],
                    "protocols": [{"tcp": {"destinationPort": {"range": {"start": 8000, "end": 8100}}}},
                                  {"udp": {"destinationPort": {"number": 53}}}]}]}),
        ),
    );
    // Named ports resolve on web's container ports, any protocol.
    assert!(!out(&c, "dev/tool", WEB, 8080));
    assert!(out(&c, "dev/tool", WEB, 9090) && out(&c, "dev/tool", DB, 8080));
    let udp = |c: &Compiler, dir, peer, port| verdict(c, "dev/tool", dir, peer, proto::UDP, port);
    assert!(!udp(&c, direction::EGRESS, WEB, 53));
    assert!(udp(&c, direction::EGRESS, WEB, 8080));
    // Ranges are inclusive; other protocols are not matched.
    assert!(!inn(&c, "dev/tool", WEB, 8000) && !inn(&c, "dev/tool", WEB, 8100));
    assert!(inn(&c, "dev/tool", WEB, 7999) && inn(&c, "dev/tool", WEB, 8101));
    assert!(!udp(&c, direction::INGRESS, WEB, 53) && udp(&c, direction::INGRESS, WEB, 54));
    assert!(verdict(
        &c,
        "dev/tool",
        direction::INGRESS,
        WEB,
        proto::SCTP,
        53
    ));
}

#[test]
fn an_invalid_update_keeps_the_previous_version() {
    let mut c = env();
    apply(&mut c, deny_bad_net());
    assert!(!out(&c, "prod/web", BAD, 443));
    // An update that would accept everything, but is invalid.
    let bad = cnp(
        "block-net",
        json!({"tier": "Admin", "priority": 5000, "subject": {"namespaces": {}},
            "egress": [{"action": "Accept", "to": [{"networks": ["0.0.0.0/0"]}]}]}),
    );
    let err = c.apply_cluster_policy(&bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ClusterNetworkPolicy block-net: spec.priority: 5000 must be between 0 and 1000, inclusive"
    );
    assert!(c.commit().ops.is_empty());
    assert!(!out(&c, "prod/web", BAD, 443));
    assert_eq!(c.rejections().len(), 1);
    // A valid update replaces it and clears the rejection.
    let mut fixed = deny_bad_net();
    fixed.spec.egress[0].to[0].networks = Some(vec!["198.51.100.0/24".into()]);
    apply(&mut c, fixed);
    assert!(c.rejections().is_empty());
    assert!(out(&c, "prod/web", BAD, 443) && !out(&c, "prod/web", GOOD, 443));
}

#[test]
fn delete_removes_the_effect_and_the_rejection() {
    let mut c = env();
    apply(&mut c, deny_bad_net());
    let mut bad = deny_bad_net();
    bad.spec.priority = Some(-1);
    assert!(c.apply_cluster_policy(&bad).is_err());
    step(&mut c, |c| c.delete_cluster_policy("block-net"));
    assert!(c.rejections().is_empty());
    assert!(out(&c, "prod/web", BAD, 443));
    assert!(c.tier_rules().is_empty());
    let flags = c.state().endpoints[&PodRef::new("prod", "web")].flags;
    assert_eq!(flags & endpoint_flags::tiered(direction::EGRESS), 0);
    // Deleting an unknown policy is harmless.
    step(&mut c, |c| c.delete_cluster_policy("never-there"));
}

#[test]
fn audit_mode_enforces_nothing() {
    let mut c = env();
    let mut p = deny_bad_net();
    p.metadata.annotations = Some([(MODE_ANNOTATION.to_string(), "audit".to_string())].into());
    apply(&mut c, p);
    assert!(out(&c, "prod/web", BAD, 443));
    // Its rules are named (audit events name them), as audited.
    let rules = c.tier_rules();
    assert!(
        !rules.is_empty() && rules.iter().all(|r| r.audit),
        "{rules:?}"
    );
    // Not tiered: an audit view walked through the tiers instead.
    let flags = c.state().endpoints[&PodRef::new("prod", "web")].flags;
    assert_eq!(flags & endpoint_flags::tiered(direction::EGRESS), 0);
    assert_ne!(flags & endpoint_flags::view_tiered(direction::EGRESS), 0);
    // Switching to enforce takes effect.
    apply(&mut c, deny_bad_net());
    assert!(!out(&c, "prod/web", BAD, 443));
}

#[test]
fn inspection_of_network_policies_leaves_cluster_policies_out() {
    let mut c = env();
    let mut audited = deny_bad_net();
    audited.metadata.name = Some("audited".into());
    audited.metadata.annotations =
        Some([(MODE_ANNOTATION.to_string(), "audit".to_string())].into());
    apply(&mut c, audited);
    apply(&mut c, deny_bad_net());
    assert_eq!(c.policy_modes(), (0, 0));
    assert!(c.policies().is_empty());
    assert_eq!(c.policy_namespaces().count(), 0);
    step(&mut c, |c| {
        c.apply_policy(&np("prod", "p", json!({"podSelector": {}})))
            .unwrap();
    });
    assert_eq!(c.policy_modes(), (1, 0));
    assert_eq!(c.policies().len(), 1);
}

/// The objects a compiler was given, to compile them again from scratch.
#[derive(Default)]
struct Objects {
    cluster: Cluster,
    cnps: std::collections::BTreeMap<String, ClusterNetworkPolicy>,
}

impl Objects {
    fn compile(&self) -> Compiler {
        let mut c = Compiler::new(NODE);
        for n in self.cluster.namespaces.values() {
            c.apply_namespace(n).unwrap();
        }
        for p in self.cluster.pods.values() {
            c.apply_pod(p).unwrap();
        }
        for p in self.cluster.policies.values() {
            c.apply_policy(p).unwrap();
        }
        for p in self.cnps.values() {
            c.apply_cluster_policy(p).unwrap();
        }
        for n in self.cluster.nodes.values() {
            c.apply_node(n).unwrap();
        }
        c.set_host_addresses(self.cluster.hosts.clone());
        c.commit();
        c
    }
}

#[test]
fn incremental_changes_equal_compiling_from_scratch() {
    let mut objs = Objects::default();
    let mut c = Compiler::new(NODE);
    let with_ports = [("http", "TCP", 8080), ("dns", "UDP", 53)];
    let pods = [
        ("prod", "web", "web", WEB),
        ("prod", "db", "db", DB),
        ("dev", "tool", "tool", TOOL),
    ];
    let cnps = [
        cnp(
            "a-admin",
            json!({"tier": "Admin", "priority": 10, "subject": {"namespaces": {"matchLabels": {"team": "prod"}}},
                "ingress": [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"team": "dev"}}}],
                    "protocols": [{"destinationNamedPort": "http"}]}],
                "egress": [{"action": "Pass", "to": [{"pods": {"podSelector": {"matchLabels": {"app": "tool"}}}}]},
                           {"action": "Deny", "to": [{"networks": ["10.0.0.0/8", "203.0.113.0/24"]}]}]}),
        ),
        cnp(
            "b-admin",
            json!({"tier": "Admin", "priority": 10, "subject": {"pods": {"podSelector": {"matchLabels": {"app": "db"}}}},
                "egress": [{"action": "Accept", "to": [{"networks": ["10.0.1.0/24"]}],
                    "protocols": [{"tcp": {"destinationPort": {"range": {"start": 80, "end": 90}}}}]}]}),
        ),
        cnp(
            "c-baseline",
            json!({"tier": "Baseline", "priority": 0, "subject": {"namespaces": {}},
                "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}],
                "egress": [{"action": "Deny", "to": [{"services": {}}]}]}),
        ),
    ];
    let check = |c: &Compiler, objs: &Objects, what: &str| {
        assert_eq!(canon(c), canon(&objs.compile()), "after {what}");
    };
    // Policies first, then the pods and namespaces they select.
    for p in &cnps {
        let name = p.metadata.name.clone().unwrap();
        step(&mut c, |c| c.apply_cluster_policy(p).unwrap());
        objs.cnps.insert(name.clone(), p.clone());
        check(&c, &objs, &name);
    }
    for (n, name, app, addr) in pods {
        let p = pod(n, name, &[("app", app)], NODE, &[addr], &with_ports);
        step(&mut c, |c| c.apply_pod(&p).unwrap());
        objs.cluster.add_pod(p);
        check(&c, &objs, name);
    }
    for (n, team) in [("prod", "prod"), ("dev", "dev")] {
        let o = ns(n, &[("team", team)]);
        step(&mut c, |c| c.apply_namespace(&o).unwrap());
        objs.cluster.add_ns(o);
        check(&c, &objs, n);
    }
    let netpol = np(
        "prod",
        "web",
        json!({"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [{"podSelector": {}}]}]}),
    );
    step(&mut c, |c| c.apply_policy(&netpol).unwrap());
    objs.cluster.add_policy(netpol);
    check(&c, &objs, "a NetworkPolicy");
    // Relabels move subjects and peers.
    let o = ns("dev", &[("team", "prod")]);
    step(&mut c, |c| c.apply_namespace(&o).unwrap());
    objs.cluster.add_ns(o);
    check(&c, &objs, "dev relabelled");
    let p = pod("prod", "web", &[("app", "db")], NODE, &[WEB], &with_ports);
    step(&mut c, |c| c.apply_pod(&p).unwrap());
    objs.cluster.add_pod(p);
    check(&c, &objs, "web relabelled");
    // Priorities and names reorder; a policy appears between two others.
    let mut b = cnps[1].clone();
    b.spec.priority = Some(5);
    step(&mut c, |c| c.apply_cluster_policy(&b).unwrap());
    objs.cnps.insert("b-admin".into(), b);
    check(&c, &objs, "b-admin reprioritised");
    let mut between = cnps[0].clone();
    between.metadata.name = Some("a-between".into());
    step(&mut c, |c| c.apply_cluster_policy(&between).unwrap());
    objs.cnps.insert("a-between".into(), between);
    check(&c, &objs, "a-between added");
    // Deletions.
    step(&mut c, |c| c.delete_cluster_policy("a-admin"));
    objs.cnps.remove("a-admin");
    check(&c, &objs, "a-admin deleted");
    step(&mut c, |c| c.delete_pod("prod", "db"));
    objs.cluster
        .pods
        .remove(&("prod".to_string(), "db".to_string()));
    check(&c, &objs, "db deleted");
    step(&mut c, |c| c.delete_namespace("dev"));
    objs.cluster.namespaces.remove("dev");
    check(&c, &objs, "dev deleted");
    for name in ["a-between", "b-admin", "c-baseline"] {
        step(&mut c, |c| c.delete_cluster_policy(name));
        objs.cnps.remove(name);
        check(&c, &objs, name);
    }
}

fn deny_ingress_from_pods() -> ClusterNetworkPolicy {
    cnp(
        "deny-pods",
        json!({"tier": "Admin", "priority": 10, "subject": {"namespaces": {}},
            "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}),
    )
}

/// prod/web deleted and created again (a new UID: a new endpoint id) at
/// the same address, with `labels` and its ports.
fn web_recreated(labels: &[(&str, &str)]) -> k8s_openapi::api::core::v1::Pod {
    let serve = [
        ("http", "TCP", 8080),
        ("metrics", "TCP", 9090),
        ("dns", "UDP", 53),
    ];
    let mut p = pod("prod", "web", labels, NODE, &[WEB], &serve);
    p.metadata.uid = Some("uid-prod-web-2".into());
    p
}

// Found by prop_tiers (tier_changes_one_commit_at_a_time). The old
// endpoint id of a re-created pod is consulted until the endpoint entry
// switches, after the ipcache switch; in a tiered direction a missing entry
// reads "no rule matches" (the default), so `order.rs` adds bottom entries
// for the identities gaining addresses that such a row has no entry for
// (an identity new to the cluster never has one).
#[test]
fn a_recreated_pod_with_new_labels_stays_denied() {
    let mut c = env();
    apply(&mut c, deny_ingress_from_pods());
    assert!(!inn(&c, "prod/web", WEB, 80));
    let again = web_recreated(&[("app", "web2")]);
    step(&mut c, |c| c.apply_pod(&again).unwrap());
    assert!(!inn(&c, "prod/web", WEB, 80));
}

#[test]
fn a_recreated_pod_stays_denied_from_a_relabelled_pod() {
    let mut c = env();
    apply(&mut c, deny_ingress_from_pods());
    assert!(!inn(&c, "prod/web", DB, 80));
    let again = web_recreated(&[("app", "web")]);
    let db = pod("prod", "db", &[("app", "db2")], NODE, &[DB], &[]);
    step(&mut c, |c| {
        c.apply_pod(&again).unwrap();
        c.apply_pod(&db).unwrap();
    });
    assert!(!inn(&c, "prod/web", DB, 80));
}

// Found by prop_tiers (the restart part of tier_changes_one_commit_at_a_time).
// A diff that makes an endpoint tiered while the ipcache moves addresses
// first holds the entries of the moving identities at the bottom. Cut
// short after such a write, the maps already hold it; the reconcile from
// there must not write it again (every write changes something).
#[test]
fn a_reconcile_after_a_cut_diff_writes_no_entry_twice() {
    let mut c = env();
    let old = c.state().clone();
    let p = cnp(
        "deny",
        json!({"tier": "Admin", "priority": 10, "subject": {"namespaces": {}},
            "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}],
            "egress": [{"action": "Deny", "to": [{"networks": ["203.0.113.0/24"]}]}]}),
    );
    c.apply_cluster_policy(&p).unwrap();
    let diff = c.commit();
    let new = c.state().clone();
    let extra: BTreeSet<_> = [WEB, DB, TOOL, BAD, GOOD].into_iter().map(ip).collect();
    let probes = probes(&old, &new, &extra, &[53, 80]);
    for cut in 0..=diff.ops.len() {
        let mut pinned = old.clone();
        for op in &diff.ops[..cut] {
            pinned.apply(op);
        }
        let writes = palisade_compiler::reconcile(&pinned, &new);
        let end = try_replay(&pinned, &new, &writes, &probes)
            .unwrap_or_else(|e| panic!("cut after {cut} writes: {e}"));
        assert_eq!(end, new);
    }
}

/// An Admin policy of priority 10 for every namespace with one egress
/// rule towards 203.0.113.0/24 on `ports` (all if empty).
fn admin_10(name: &str, action: &str, ports: Value) -> ClusterNetworkPolicy {
    let mut rule = json!({"action": action, "to": [{"networks": ["203.0.113.0/24"]}]});
    if ports != json!([]) {
        rule["protocols"] = ports;
    }
    cnp(
        name,
        json!({"tier": "Admin", "priority": 10, "subject": {"namespaces": {}}, "egress": [rule]}),
    )
}

fn tcp_port(port: u16) -> Value {
    json!([{"tcp": {"destinationPort": {"number": port}}}])
}

#[test]
fn same_priority_overlaps_with_different_actions_are_reported() {
    let mut c = env();
    apply(&mut c, admin_10("b-deny", "Deny", json!([])));
    assert!(
        c.priority_overlaps().is_empty(),
        "one policy overlaps nothing"
    );
    // Same priority, same traffic, same action: the order changes no verdict.
    apply(&mut c, admin_10("c-deny", "Deny", tcp_port(443)));
    assert!(c.priority_overlaps().is_empty());
    // Different action on a shared port: the order (by name) decides.
    apply(&mut c, admin_10("a-accept", "Accept", tcp_port(443)));
    assert!(out(&c, "prod/web", BAD, 443), "a-accept is consulted first");
    assert!(!out(&c, "prod/web", BAD, 80));
    let overlaps = c.priority_overlaps();
    let pairs: Vec<_> = overlaps
        .iter()
        .map(|o| {
            (
                o.first.as_str(),
                o.second.as_str(),
                o.tier,
                o.priority,
                o.direction,
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("a-accept", "b-deny", "admin", 10, direction::EGRESS),
            ("a-accept", "c-deny", "admin", 10, direction::EGRESS),
        ]
    );
    let pods: Vec<String> = overlaps[0].pods.iter().map(ToString::to_string).collect();
    assert_eq!(pods, ["dev/tool", "prod/db", "prod/web"]);
    // Disjoint ports do not overlap (b-deny covers every port).
    apply(&mut c, admin_10("a-accept", "Accept", tcp_port(8443)));
    let pairs: Vec<_> = c
        .priority_overlaps()
        .into_iter()
        .map(|o| (o.first, o.second))
        .collect();
    assert_eq!(pairs, [("a-accept".to_string(), "b-deny".to_string())]);
    // A rule for any peer meets a rule for a region.
    apply(
        &mut c,
        cnp(
            "a-accept",
            json!({"tier": "Admin", "priority": 10, "subject": {"namespaces": {}},
                "egress": [{"action": "Pass", "to": [{"namespaces": {}}]}]}),
        ),
    );
    let pairs: Vec<_> = c
        .priority_overlaps()
        .into_iter()
        .map(|o| (o.first, o.second))
        .collect();
    assert_eq!(
        pairs,
        [
            ("a-accept".to_string(), "b-deny".to_string()),
            ("a-accept".to_string(), "c-deny".to_string()),
        ],
        "pod identities may have addresses in the region"
    );
    // Two different regions never meet in one flow.
    apply(
        &mut c,
        cnp(
            "a-accept",
            json!({"tier": "Admin", "priority": 10, "subject": {"namespaces": {}},
                "egress": [{"action": "Accept", "to": [{"networks": ["198.51.100.0/24"]}]}]}),
        ),
    );
    c.delete_cluster_policy("c-deny");
    c.commit();
    assert!(c.priority_overlaps().is_empty());
    // Another priority, or a subject selecting other pods: no overlap.
    let mut other = admin_10("a-accept", "Accept", json!([]));
    other.spec.priority = Some(11);
    apply(&mut c, other);
    assert!(c.priority_overlaps().is_empty());
    let mut elsewhere = admin_10("a-accept", "Accept", json!([]));
    elsewhere.spec.subject = serde_json::from_value(
        json!({"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "none"}}}}),
    )
    .unwrap();
    apply(&mut c, elsewhere);
    assert!(c.priority_overlaps().is_empty());
}

#[test]
fn explain_names_the_rules_tied_by_priority() {
    let mut c = env();
    apply(&mut c, admin_10("b-deny", "Deny", json!([])));
    apply(&mut c, admin_10("a-accept", "Accept", tcp_port(443)));
    let q = |port| palisade_compiler::Query {
        from: palisade_compiler::Side::Pod(PodRef::new("prod", "web")),
        to: palisade_compiler::Side::Addr(ip(BAD)),
        protocol: proto::TCP,
        port,
        enforce_host: false,
    };
    let e = c.explain(&q(443)).unwrap();
    let admin = e.egress.unwrap().admin.unwrap();
    assert_eq!(admin.rule.policy, "a-accept");
    let ties: Vec<_> = admin
        .ties
        .iter()
        .map(|r| (r.policy.as_str(), r.action))
        .collect();
    assert_eq!(ties, [("b-deny", "Deny")]);
    // On port 80 only b-deny matches: no tie.
    let e = c.explain(&q(80)).unwrap();
    let admin = e.egress.unwrap().admin.unwrap();
    assert_eq!(admin.rule.policy, "b-deny");
    assert!(admin.ties.is_empty());
}

#[test]
fn cluster_policy_summary_names_rules_and_selected_pods() {
    let mut c = env();
    assert!(c.cluster_policy_summary("block-net").is_none());
    apply(&mut c, deny_bad_net());
    apply(
        &mut c,
        cnp(
            "block-dev",
            json!({"tier": "Admin", "priority": 10,
                "subject": {"namespaces": {"matchLabels": {"team": "dev"}}},
                "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}],
                "egress": [{"name": "x", "action": "Pass", "to": [{"namespaces": {}}]}]}),
        ),
    );
    let s = c.cluster_policy_summary("block-dev").unwrap();
    assert_eq!((s.tier, s.priority, s.audited), ("admin", 10, false));
    let rules: Vec<String> = s.rules.iter().map(ToString::to_string).collect();
    assert_eq!(
        rules,
        [
            "ClusterNetworkPolicy admin/block-dev ingress[0] (priority 10, Deny)",
            "ClusterNetworkPolicy admin/block-dev egress[0] \"x\" (priority 10, Pass)",
        ]
    );
    let selected: Vec<String> = s.selected_local.iter().map(ToString::to_string).collect();
    assert_eq!(selected, ["dev/tool"]);
    assert_eq!(s.same_priority, ["block-net"]);
    // The codes are those the datapath reports.
    let codes: BTreeSet<u32> = c.tier_rules().iter().map(|r| r.code).collect();
    assert!(s.rules.iter().all(|r| codes.contains(&r.code)));
    c.delete_cluster_policy("block-dev");
    c.commit();
    assert!(c.cluster_policy_summary("block-dev").is_none());
}

/// `n` Admin rules, each accepting ingress from every namespace on its
/// own TCP port (1000, 1002, ...), in policies of 25 rules.
fn many_ports(n: usize) -> Vec<ClusterNetworkPolicy> {
    let rules: Vec<Value> = (0..n)
        .map(|i| {
            json!({"action": "Accept", "from": [{"namespaces": {}}],
                   "protocols": [{"tcp": {"destinationPort": {"number": 1000 + 2 * i}}}]})
        })
        .collect();
    rules
        .chunks(25)
        .enumerate()
        .map(|(p, chunk)| {
            cnp(
                &format!("ports-{p:02}"),
                json!({"tier": "Admin", "priority": 50, "subject": {"namespaces": {}},
                       "ingress": chunk}),
            )
        })
        .collect()
}

#[test]
fn codes_beyond_a_table_fail_closed_and_are_reported() {
    use palisade_common::TIER_SEGMENTS;
    let mut c = env();
    // Deny TCP/81 from dev, so the entry of tool's identity has codes.
    apply(
        &mut c,
        cnp(
            "deny-81",
            json!({"tier": "Admin", "priority": 10, "subject": {"namespaces": {}},
                   "ingress": [{"action": "Deny", "from": [{"namespaces": {}}],
                                "protocols": [{"tcp": {"destinationPort": {"number": 81}}}]}]}),
        ),
    );
    // n ports give 2n + 1 segments (with 81 and its gap, 2n + 3).
    let fits = (TIER_SEGMENTS - 3) / 2;
    for p in many_ports(fits) {
        apply(&mut c, p);
    }
    assert_eq!(c.state().tier_overflows().count(), 0);
    assert!(inn(&c, "prod/web", TOOL, 80), "no rule: allowed");
    assert!(!inn(&c, "prod/web", TOOL, 81));
    assert!(inn(&c, "prod/web", TOOL, 1000));
    // One more port: the entry no longer fits a table. It denies every
    // port ahead of every rule (fail closed) and is reported.
    let mut more = many_ports(fits + 1);
    let last = more.pop().unwrap();
    apply(&mut c, last.clone());
    let over: Vec<_> = c.state().tier_overflows().copied().collect();
    assert!(!over.is_empty());
    // Every pod is a subject: each one's TCP ingress entries.
    let eps: BTreeSet<u32> = c.state().endpoints.values().map(|e| e.ep_id).collect();
    assert_eq!(over.iter().map(|k| k.ep_id).collect::<BTreeSet<_>>(), eps);
    assert!(
        over.iter()
            .all(|k| k.direction == direction::INGRESS && k.proto == proto::TCP)
    );
    assert!(!inn(&c, "prod/web", TOOL, 80), "fail closed");
    assert!(!inn(&c, "prod/web", TOOL, 1000), "fail closed");
    assert!(
        verdict(&c, "prod/web", direction::INGRESS, TOOL, proto::UDP, 53),
        "other protocols keep their entries"
    );
    // Back under the limit: exact again, nothing reported.
    c.delete_cluster_policy(last.metadata.name.as_deref().unwrap());
    c.commit();
    assert_eq!(c.state().tier_overflows().count(), 0);
    assert!(inn(&c, "prod/web", TOOL, 80) && inn(&c, "prod/web", TOOL, 1000));
}

// ----- nodes peers ---------------------------------------------------------

/// node-1 (this node: worker) and node-2 (infra), both Linux, dual-stack.
fn with_nodes(c: &mut Compiler) {
    step(c, |c| {
        c.set_host_addresses(vec![ip(HOST4), ip(HOST6)]);
        c.apply_node(&node_1(&[("role", "worker")])).unwrap();
        c.apply_node(&node_2(N2_V4)).unwrap();
    });
}

fn node_1(extra: &[(&str, &str)]) -> k8s_openapi::api::core::v1::Node {
    let mut labels = vec![("kubernetes.io/os", "linux")];
    labels.extend_from_slice(extra);
    node(
        NODE,
        &labels,
        &[
            ("InternalIP", HOST4),
            ("InternalIP", HOST6),
            ("Hostname", NODE),
        ],
    )
}

fn node_2(v4: &str) -> k8s_openapi::api::core::v1::Node {
    node(
        "node-2",
        &[("kubernetes.io/os", "linux"), ("role", "infra")],
        &[("InternalIP", v4), ("InternalIP", N2_V6)],
    )
}

fn deny_to_nodes(selector: Value) -> ClusterNetworkPolicy {
    cnp(
        "no-nodes",
        json!({"tier": "Admin", "priority": 10, "subject": {"namespaces": {"matchLabels": {"team": "prod"}}},
            "egress": [{"name": "not-the-nodes", "action": "Deny", "to": [{"nodes": selector}]}]}),
    )
}

#[test]
fn a_nodes_peer_selects_nodes_by_label_both_families() {
    let mut c = env();
    with_nodes(&mut c);
    apply(
        &mut c,
        deny_to_nodes(json!({"matchLabels": {"role": "infra"}})),
    );
    for addr in [N2_V4, N2_V6] {
        assert!(!out(&c, "prod/web", addr, 22), "{addr}");
        assert!(!verdict(
            &c,
            "prod/web",
            direction::EGRESS,
            addr,
            proto::UDP,
            53
        ));
        assert!(!verdict(&c, "prod/web", direction::EGRESS, addr, ICMP, 0));
        // The subject is prod only.
        assert!(out(&c, "dev/tool", addr, 22), "{addr}");
    }
    // node-1 is not infra; pods and the outside are not nodes.
    for addr in [HOST4, HOST6, DB, GOOD] {
        assert!(out(&c, "prod/web", addr, 22), "{addr}");
    }
}

#[test]
fn an_empty_nodes_selector_selects_every_node_this_one_included() {
    let mut c = env();
    with_nodes(&mut c);
    apply(&mut c, deny_to_nodes(json!({})));
    // This node's addresses resolve to the host identity in the exact
    // ipcache; their region still carries the rule.
    for addr in [HOST4, HOST6, N2_V4, N2_V6] {
        assert!(!out(&c, "prod/web", addr, 10250), "{addr}");
        assert!(!out(&c, "prod/db", addr, 10250), "{addr}");
    }
    assert!(out(&c, "prod/web", DB, 80) && out(&c, "prod/web", GOOD, 80));
    // Egress rules only: the node's traffic to the pods is not affected.
    assert!(inn(&c, "prod/web", HOST4, 8080));
}

#[test]
fn accept_to_nodes_before_a_deny_of_everything() {
    let mut c = env();
    with_nodes(&mut c);
    // The upstream conformance shape: accept one port on Linux nodes,
    // deny nodes and the internet after it.
    apply(
        &mut c,
        cnp(
            "nodes-then-world",
            json!({"tier": "Admin", "priority": 75, "subject": {"namespaces": {}},
                "egress": [
                    {"action": "Accept", "to": [{"nodes": {"matchLabels": {"kubernetes.io/os": "linux"}}}],
                        "protocols": [{"tcp": {"destinationPort": {"number": 10250}}}]},
                    {"action": "Deny", "to": [{"nodes": {"matchLabels": {"kubernetes.io/os": "linux"}}},
                        {"networks": ["0.0.0.0/0", "::/0"]}]}]}),
        ),
    );
    for addr in [HOST4, HOST6, N2_V4, N2_V6] {
        for pod in ["prod/web", "dev/tool"] {
            assert!(out(&c, pod, addr, 10250), "{pod} -> {addr}");
            assert!(!out(&c, pod, addr, 10251), "{pod} -> {addr}");
            assert!(!verdict(
                &c,
                pod,
                direction::EGRESS,
                addr,
                proto::UDP,
                10250
            ));
        }
    }
    assert!(!out(&c, "prod/web", GOOD, 10250));
    assert!(!out(&c, "prod/web", DB, 10250));
}

#[test]
fn nodes_peers_follow_node_changes() {
    let mut c = env();
    with_nodes(&mut c);
    apply(
        &mut c,
        deny_to_nodes(json!({"matchLabels": {"role": "infra"}})),
    );
    assert!(out(&c, "prod/web", HOST4, 22) && out(&c, "prod/web", HOST6, 22));
    // node-1 relabelled infra: its addresses are denied too.
    step(&mut c, |c| {
        c.apply_node(&node_1(&[("role", "infra")])).unwrap()
    });
    assert!(!out(&c, "prod/web", HOST4, 22) && !out(&c, "prod/web", HOST6, 22));
    // node-2 moves to another IPv4 address: the old one is free, the new
    // one denied, its IPv6 address still denied.
    assert!(out(&c, "prod/web", N2_MOVED, 22));
    step(&mut c, |c| c.apply_node(&node_2(N2_MOVED)).unwrap());
    assert!(out(&c, "prod/web", N2_V4, 22));
    assert!(!out(&c, "prod/web", N2_MOVED, 22) && !out(&c, "prod/web", N2_V6, 22));
    // An invalid update keeps the last valid version (fail closed).
    let mut bad = node_2(N2_V4);
    bad.metadata.labels = None;
    bad.status.as_mut().unwrap().addresses.as_mut().unwrap()[0].address = "192.0.2.999".into();
    step(&mut c, |c| {
        let err = c.apply_node(&bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"Node node-2: status.addresses[0].address: invalid IP address "192.0.2.999""#
        );
    });
    assert!(!out(&c, "prod/web", N2_MOVED, 22));
    // node-2 deleted: its addresses are ordinary outside addresses.
    step(&mut c, |c| c.delete_node("node-2"));
    assert!(out(&c, "prod/web", N2_MOVED, 22) && out(&c, "prod/web", N2_V6, 22));
    assert!(c.rejections().is_empty());
    // node-1 relabelled back: nothing is denied any more.
    step(&mut c, |c| c.apply_node(&node_1(&[])).unwrap());
    assert!(out(&c, "prod/web", HOST4, 22) && out(&c, "prod/web", HOST6, 22));
}

#[test]
fn nodes_changes_incrementally_equal_compiling_from_scratch() {
    let mut objs = Objects::default();
    let mut c = env();
    for (n, team) in [("prod", "prod"), ("dev", "dev")] {
        objs.cluster.add_ns(ns(n, &[("team", team)]));
    }
    let serve = [
        ("http", "TCP", 8080),
        ("metrics", "TCP", 9090),
        ("dns", "UDP", 53),
    ];
    for (n, name, app, addr) in [
        ("prod", "web", "web", WEB),
        ("prod", "db", "db", DB),
        ("dev", "tool", "tool", TOOL),
    ] {
        objs.cluster
            .add_pod(pod(n, name, &[("app", app)], NODE, &[addr], &serve));
    }
    let check = |c: &Compiler, objs: &Objects, what: &str| {
        assert_eq!(canon(c), canon(&objs.compile()), "after {what}");
    };
    // The policy before any node, then nodes arriving, changing, leaving.
    let p = deny_to_nodes(
        json!({"matchExpressions": [{"key": "role", "operator": "In", "values": ["infra"]}]}),
    );
    step(&mut c, |c| c.apply_cluster_policy(&p).unwrap());
    objs.cnps.insert("no-nodes".into(), p);
    check(&c, &objs, "the policy");
    step(&mut c, |c| c.set_host_addresses(vec![ip(HOST4), ip(HOST6)]));
    objs.cluster.hosts = vec![ip(HOST4), ip(HOST6)];
    for (what, n) in [
        ("node-1", node_1(&[])),
        ("node-2", node_2(N2_V4)),
        ("node-1 infra", node_1(&[("role", "infra")])),
        ("node-2 moved", node_2(N2_MOVED)),
    ] {
        step(&mut c, |c| c.apply_node(&n).unwrap());
        objs.cluster.add_node(n);
        check(&c, &objs, what);
    }
    // A NetworkPolicy allowing the node addresses as an ipBlock shares
    // their regions.
    let netpol = np(
        "prod",
        "web",
        json!({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.20/32"}}]}]}),
    );
    step(&mut c, |c| c.apply_policy(&netpol).unwrap());
    objs.cluster.add_policy(netpol);
    check(&c, &objs, "a NetworkPolicy on a node address");
    step(&mut c, |c| c.delete_node("node-2"));
    objs.cluster.nodes.remove("node-2");
    check(&c, &objs, "node-2 deleted");
    step(&mut c, |c| c.delete_cluster_policy("no-nodes"));
    objs.cnps.remove("no-nodes");
    check(&c, &objs, "the policy deleted");
    step(&mut c, |c| c.delete_node(NODE));
    objs.cluster.nodes.remove(NODE);
    check(&c, &objs, "node-1 deleted");
}

#[test]
fn explain_names_the_nodes_peer() {
    use palisade_compiler::{PeerMatch, Query, Side};
    let mut c = env();
    with_nodes(&mut c);
    apply(
        &mut c,
        cnp(
            "nodes-then-world",
            json!({"tier": "Admin", "priority": 75, "subject": {"namespaces": {}},
                "egress": [
                    {"name": "world", "action": "Deny", "to": [{"pods": {"podSelector": {"matchLabels": {"app": "db"}}}},
                        {"networks": ["0.0.0.0/0"]},
                        {"nodes": {"matchLabels": {"role": "worker"}}},
                        {"nodes": {"matchLabels": {"role": "infra"}}}]}]}),
        ),
    );
    let ask = |to: &str| {
        c.explain(&Query {
            from: Side::Pod(PodRef::new("prod", "web")),
            to: Side::Addr(ip(to)),
            protocol: proto::TCP,
            port: 22,
            enforce_host: false,
        })
        .unwrap()
    };
    for (addr, peer) in [
        (N2_V4, PeerMatch::Nodes(1)),
        (HOST4, PeerMatch::Nodes(0)),
        (GOOD, PeerMatch::Block(0)),
    ] {
        let e = ask(addr);
        assert!(!e.allowed(), "{addr}");
        let m = e.egress.unwrap().admin.unwrap();
        assert_eq!(m.rule.name.as_deref(), Some("world"));
        assert_eq!(m.peer, peer, "{addr}");
    }
}
