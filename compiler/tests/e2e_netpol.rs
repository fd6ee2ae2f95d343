//! The scenarios of the upstream Kubernetes e2e NetworkPolicy suite
//! (`test/e2e/network/netpol/network_policy.go`): namespaces x, y, z with
//! pods a, b, c each, serving 80 and 81 on TCP, UDP and SCTP under the
//! named ports `serve-<port>-<proto>`. Every scenario runs on IPv4 and on
//! IPv6. Reachability from pod s to pod d is judged by the compiled maps:
//! s's egress towards d's address and d's ingress from s's address (all pods
//! are local, so both sides are enforced here); loopback is ignored as
//! upstream does.

mod common;

use common::*;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use palisade_common::{direction, proto};
use palisade_compiler::{Compiler, PodRef};
use serde_json::{Value, json};

const NS: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Copy, Debug)]
enum Fam {
    V4,
    V6,
}

fn addr(fam: Fam, pod: &str) -> String {
    let (n, p) = pod.split_once('/').unwrap();
    let ni = NS.iter().position(|x| *x == n).unwrap() + 1;
    let pi = PODS.iter().position(|x| *x == p).unwrap() + 1;
    match fam {
        Fam::V4 => format!("192.0.2.{}", ni * 10 + pi),
        Fam::V6 => format!("2001:db8::{ni}{pi}"),
    }
}

fn host(fam: Fam, bits: u8) -> String {
    let len = match fam {
        Fam::V4 => 32,
        Fam::V6 => 128,
    };
    format!("/{}", len - bits)
}

fn all_pods() -> Vec<String> {
    NS.iter()
        .flat_map(|n| PODS.iter().map(move |p| format!("{n}/{p}")))
        .collect()
}

struct Env {
    c: Compiler,
    fam: Fam,
}

impl Env {
    fn new(fam: Fam) -> Env {
        let mut c = Compiler::new(NODE);
        for n in NS {
            c.apply_namespace(&ns(n, &[("ns", n)])).unwrap();
        }
        for p in all_pods() {
            let (n, name) = p.split_once('/').unwrap();
            let a = addr(fam, &p);
            let ports = [
                ("serve-80-tcp", "TCP", 80),
                ("serve-81-tcp", "TCP", 81),
                ("serve-80-udp", "UDP", 80),
                ("serve-81-udp", "UDP", 81),
                ("serve-80-sctp", "SCTP", 80),
                ("serve-81-sctp", "SCTP", 81),
            ];
            c.apply_pod(&pod(n, name, &[("pod", name)], NODE, &[&a], &ports))
                .unwrap();
        }
        let mut e = Env { c, fam };
        e.commit();
        e
    }

    fn commit(&mut self) {
        let old = self.c.state().clone();
        let diff = self.c.commit();
        let mut replayed = old;
        for op in &diff.ops {
            replayed.apply(op);
        }
        assert_eq!(
            &replayed,
            self.c.state(),
            "the diff leads to the committed state"
        );
        check_invariants(&self.c);
    }

    fn apply(&mut self, p: NetworkPolicy) {
        self.c.apply_policy(&p).unwrap();
        self.commit();
    }

    fn policy(&mut self, namespace: &str, name: &str, spec: Value) {
        self.apply(np(namespace, name, spec));
    }

    fn ip(&self, pod: &str) -> String {
        addr(self.fam, pod)
    }

    fn reach(&self, from: &str, to: &str, port: u16, pr: u8) -> bool {
        let pref = |s: &str| {
            let (n, p) = s.split_once('/').unwrap();
            PodRef::new(n, p)
        };
        let st = self.c.state();
        let out = sim(
            st,
            &pref(from),
            direction::EGRESS,
            ip(&self.ip(to)),
            pr,
            port,
        )
        .unwrap();
        let inn = sim(
            st,
            &pref(to),
            direction::INGRESS,
            ip(&self.ip(from)),
            pr,
            port,
        )
        .unwrap();
        out && inn
    }

    /// Checks every pair against `expect(from, to)`.
    #[track_caller]
    fn check(&self, port: u16, pr: u8, expect: impl Fn(&str, &str) -> bool) {
        let mut wrong = Vec::new();
        for f in all_pods() {
            for t in all_pods() {
                if f == t {
                    continue;
                }
                let (got, want) = (self.reach(&f, &t, port, pr), expect(&f, &t));
                if got != want {
                    wrong.push(format!("{f} -> {t}: got {got}, want {want}"));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "{:?} port {port} proto {pr}:\n{}",
            self.fam,
            wrong.join("\n")
        );
    }
}

fn in_ns(p: &str, n: &str) -> bool {
    p.starts_with(&format!("{n}/"))
}

fn both(test: impl Fn(Fam)) {
    test(Fam::V4);
    test(Fam::V6);
}

const TCP: u8 = proto::TCP;
const UDP: u8 = proto::UDP;
const SCTP: u8 = proto::SCTP;

#[test]
fn no_policy_allows_everything() {
    both(|fam| {
        let e = Env::new(fam);
        for pr in [TCP, UDP, SCTP, ICMP] {
            e.check(80, pr, |_, _| true);
        }
    });
}

#[test]
fn default_deny_ingress() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy("x", "deny-ingress", json!({"podSelector": {}}));
        e.check(80, TCP, |_, t| !in_ns(t, "x"));
        e.check(80, ICMP, |_, t| !in_ns(t, "x"));
    });
}

#[test]
fn default_deny_all() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy(
            "x",
            "deny-all",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        );
        e.check(80, TCP, |f, t| !in_ns(t, "x") && !in_ns(f, "x"));
    });
}

#[test]
fn allow_from_pod_in_namespace_by_pod_selector() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy(
            "x",
            "x-a-allows-x-b",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]
            }),
        );
        e.check(80, TCP, |f, t| t != "x/a" || f == "x/b");
    });
}

#[test]
fn allow_ingress_for_a_target_over_deny_all() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy("x", "deny-all", json!({"podSelector": {}, "ingress": []}));
        e.policy(
            "x",
            "allow-all-to-a",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"podSelector": {}, "namespaceSelector": {}}]}]
            }),
        );
        e.check(80, TCP, |_, t| !in_ns(t, "x") || t == "x/a");
    });
}

#[test]
fn allow_ingress_from_all_namespaces() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy(
            "x",
            "allow-from-another-ns",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {}}}]}]
            }),
        );
        e.check(80, TCP, |_, _| true);
        // but only pods: a non-pod address is denied
        let st = e.c.state();
        let other = if matches!(fam, Fam::V4) {
            "198.51.100.1"
        } else {
            "2001:db8:1::1"
        };
        assert!(
            !sim(
                st,
                &PodRef::new("x", "a"),
                direction::INGRESS,
                ip(other),
                TCP,
                80
            )
            .unwrap()
        );
    });
}

#[test]
fn allow_only_from_other_namespace_by_namespace_selector() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy("x", "allow-client-a-via-ns-selector", json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]}]
        }));
        e.check(80, TCP, |f, t| t != "x/a" || in_ns(f, "y"));
    });
}

#[test]
fn pod_selector_with_match_expressions() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy("x", "x-a-allows-x-b", json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b"]}]}}]}]
        }));
        e.check(80, TCP, |f, t| t != "x/a" || f == "x/b");
    });
}

#[test]
fn namespace_selector_with_match_expressions() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy(
            "x",
            "allow-ns-y-match-selector",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["y"]}]}}]}]
            }),
        );
        e.check(80, TCP, |f, t| t != "x/a" || in_ns(f, "y"));
    });
}

#[test]
fn pod_selector_or_namespace_selector() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy("x", "allow-ns-y-match-selector", json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [
                {"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["x"]}]}},
                {"podSelector": {"matchLabels": {"pod": "b"}}}
            ]}]
        }));
        e.check(80, TCP, |f, t| t != "x/a" || f == "x/b" || !in_ns(f, "x"));
    });
}

#[test]
fn pod_selector_and_namespace_selector() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy("x", "allow-ns-y-podselector-and-nsselector", json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{
                "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["x"]}]},
                "podSelector": {"matchLabels": {"pod": "b"}}
            }]}]
        }));
        e.check(80, TCP, |f, t| t != "x/a" || f == "y/b" || f == "z/b");
    });
}

#[test]
fn multiple_pod_selectors_and_namespace_selectors() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy("x", "allow-ns-y-z-pod-b-c", json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{
                "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["x"]}]},
                "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b", "c"]}]}
            }]}]
        }));
        e.check(80, TCP, |f, t| {
            t != "x/a" || (!in_ns(f, "x") && !f.ends_with("/a"))
        });
    });
}

#[test]
fn any_of_several_pod_selectors() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy(
            "x",
            "allow-ns-x-pod-b-c",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [
                    {"podSelector": {"matchLabels": {"pod": "b"}}},
                    {"podSelector": {"matchLabels": {"pod": "c"}}}
                ]}]
            }),
        );
        e.check(80, TCP, |f, t| t != "x/a" || f == "x/b" || f == "x/c");
    });
}

#[test]
fn only_a_pod_of_another_namespace() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy(
            "x",
            "allow-ns-y-pod-a",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}},
                    "podSelector": {"matchLabels": {"pod": "a"}}
                }]}]
            }),
        );
        e.check(80, TCP, |f, t| t != "x/a" || f == "y/a");
    });
}

#[test]
fn ports_and_stacked_policies() {
    both(|fam| {
        let mut e = Env::new(fam);
        let from_y =
            json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]);
        e.policy(
            "x",
            "allow-81",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": from_y, "ports": [{"port": 81, "protocol": "TCP"}]}]
            }),
        );
        e.check(81, TCP, |f, t| t != "x/a" || in_ns(f, "y"));
        e.check(80, TCP, |_, t| t != "x/a");
        e.check(81, UDP, |_, t| t != "x/a");
        e.policy(
            "x",
            "allow-80",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": from_y, "ports": [{"port": 80, "protocol": "TCP"}]}]
            }),
        );
        e.check(80, TCP, |f, t| t != "x/a" || in_ns(f, "y"));
        e.check(81, TCP, |f, t| t != "x/a" || in_ns(f, "y"));
        // the union of 80 and 81 for one key is one inline range
        assert!(e.c.state().portsets.is_empty());
    });
}

#[test]
fn allow_all_policy() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy(
            "x",
            "allow-all",
            json!({"podSelector": {}, "ingress": [{}]}),
        );
        for pr in [TCP, UDP, SCTP, ICMP] {
            e.check(80, pr, |_, _| true);
            e.check(81, pr, |_, _| true);
        }
    });
}

#[test]
fn ingress_on_one_named_port() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy(
            "x",
            "allow-all",
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}),
        );
        e.check(81, TCP, |_, _| true);
        e.check(80, TCP, |_, t| !in_ns(t, "x"));
        e.check(81, UDP, |_, t| !in_ns(t, "x"));
    });
}

#[test]
fn ingress_from_namespace_on_one_named_port() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy("x", "allow-client-a-via-ns-selector-80", json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}],
                         "ports": [{"port": "serve-80-tcp", "protocol": "TCP"}]}]
        }));
        e.check(80, TCP, |f, t| t != "x/a" || in_ns(f, "y"));
        e.check(81, TCP, |_, t| t != "x/a");
    });
}

#[test]
fn egress_on_one_named_port() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy(
            "x",
            "allow-egress",
            json!({
                "podSelector": {}, "policyTypes": ["Egress"],
                "egress": [{"ports": [{"port": "serve-80-tcp"}]}]
            }),
        );
        e.check(80, TCP, |_, _| true);
        e.check(81, TCP, |f, _| !in_ns(f, "x"));
        e.check(80, UDP, |f, _| !in_ns(f, "x"));
    });
}

#[test]
fn updated_and_deleted_policies() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy("x", "allow-ingress", json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": 81}]}]
        }));
        e.check(81, TCP, |f, t| t != "x/a" || f == "x/b");
        // replaced: now only from x/c on 80
        e.policy("x", "allow-ingress", json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "c"}}}], "ports": [{"port": 80}]}]
        }));
        e.check(81, TCP, |_, t| t != "x/a");
        e.check(80, TCP, |f, t| t != "x/a" || f == "x/c");
        e.c.delete_policy("x", "allow-ingress");
        e.commit();
        e.check(80, TCP, |_, _| true);
        assert!(e.c.state().policy.is_empty() && e.c.state().ipcache_lpm4.is_empty());
    });
}

#[test]
fn ingress_from_updated_namespace() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy(
            "x",
            "allow-client-a-via-ns-selector",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns2": "updated"}}}]}]
            }),
        );
        e.check(80, TCP, |_, t| t != "x/a");
        e.c.apply_namespace(&ns("y", &[("ns", "y"), ("ns2", "updated")]))
            .unwrap();
        e.commit();
        e.check(80, TCP, |f, t| t != "x/a" || in_ns(f, "y"));
        e.c.apply_namespace(&ns("y", &[("ns", "y")])).unwrap();
        e.commit();
        e.check(80, TCP, |_, t| t != "x/a");
    });
}

#[test]
fn ingress_from_updated_pod_and_to_updated_pod() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy(
            "x",
            "allow-client-a-via-pod-selector",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "updated"}}}]}]
            }),
        );
        e.check(80, TCP, |_, t| t != "x/a");
        let relabel = |e: &mut Env, p: &str, l: &[(&str, &str)]| {
            let (n, name) = p.split_once('/').unwrap();
            let a = e.ip(p);
            e.c.apply_pod(&pod(
                n,
                name,
                l,
                NODE,
                &[&a],
                &[("serve-80-tcp", "TCP", 80)],
            ))
            .unwrap();
            e.commit();
        };
        relabel(&mut e, "x/b", &[("pod", "b"), ("pod", "updated")]);
        relabel(&mut e, "x/b", &[("pod", "updated")]);
        e.check(80, TCP, |f, t| t != "x/a" || f == "x/b");
        // "deny ingress access to updated pod": x/a relabelled out of the selection
        relabel(&mut e, "x/a", &[("pod", "not-a")]);
        e.check(80, TCP, |_, _| true);
    });
}

#[test]
fn deny_egress_by_pod_selector_and_for_a_namespace() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy(
            "x",
            "deny-egress-a",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"]}),
        );
        e.check(80, TCP, |f, _| f != "x/a");
        e.policy(
            "x",
            "deny-egress-all",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": []}),
        );
        e.check(80, TCP, |f, _| !in_ns(f, "x"));
        e.check(80, ICMP, |f, _| !in_ns(f, "x"));
    });
}

#[test]
fn ingress_and_egress_together() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy(
            "x",
            "allow-client-a-via-pod-selector",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
                "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]
            }),
        );
        e.check(80, TCP, |f, t| {
            (t != "x/a" || f == "x/b") && (f != "x/a" || t == "x/b")
        });
    });
}

#[test]
fn client_side_egress_deny_wins_over_server_allow() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy("x", "deny-egress", json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": []}));
        e.policy("y", "allow-from-x-a", json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}, "podSelector": {"matchLabels": {"pod": "a"}}}]}]
        }));
        e.check(80, TCP, |f, t| f != "x/a" && t != "y/a");
    });
}

#[test]
fn egress_to_pods_in_other_namespace() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy("x", "allow-to-y-b", json!({
            "podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]
        }));
        e.check(80, TCP, |f, t| f != "x/a" || t == "y/b");
    });
}

#[test]
fn multiple_egress_policies_allow_all_wins() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy("x", "allow-to-b-80", json!({
            "podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": 80}]}]
        }));
        e.check(80, TCP, |f, t| f != "x/a" || t == "x/b");
        e.check(81, TCP, |f, _| f != "x/a");
        e.policy("x", "allow-all-egress", json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": [{}]}));
        e.check(80, TCP, |_, _| true);
        e.check(81, TCP, |_, _| true);
    });
}

#[test]
fn egress_to_server_in_cidr_block() {
    both(|fam| {
        let mut e = Env::new(fam);
        let cidr = format!("{}{}", e.ip("x/b"), host(fam, 0));
        e.policy(
            "x",
            "allow-client-a-via-cidr-egress-rule",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": {"cidr": cidr}}]}]
            }),
        );
        e.check(80, TCP, |f, t| f != "x/a" || t == "x/b");
    });
}

#[test]
fn egress_cidr_with_except() {
    both(|fam| {
        let mut e = Env::new(fam);
        // a block covering every pod, except x/b
        let (cidr, except) = match fam {
            Fam::V4 => ("192.0.2.0/24".to_string(), format!("{}/32", e.ip("x/b"))),
            Fam::V6 => ("2001:db8::/64".to_string(), format!("{}/128", e.ip("x/b"))),
        };
        e.policy(
            "x",
            "deny-client-a-via-except-cidr-egress-rule",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": {"cidr": cidr, "except": [except]}}]}]
            }),
        );
        e.check(80, TCP, |f, t| f != "x/a" || t != "x/b");
        // "an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed"
        e.policy(
            "x",
            "allow-client-a-via-cidr-egress-rule",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": {"cidr": except}}]}]
            }),
        );
        e.check(80, TCP, |_, _| true);
        e.c.delete_policy("x", "allow-client-a-via-cidr-egress-rule");
        e.commit();
        e.check(80, TCP, |f, t| f != "x/a" || t != "x/b");
    });
}

#[test]
fn ingress_from_cidr_with_except_matches_pod_ips() {
    both(|fam| {
        let mut e = Env::new(fam);
        let (cidr, except) = match fam {
            Fam::V4 => ("192.0.2.16/29".to_string(), format!("{}/32", e.ip("y/b"))),
            Fam::V6 => (
                "2001:db8::20/124".to_string(),
                format!("{}/128", e.ip("y/b")),
            ),
        };
        // y pods are 192.0.2.21-23 (2001:db8::21-23): inside the block, y/b excepted
        e.policy(
            "x",
            "allow-from-y-block",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"ipBlock": {"cidr": cidr, "except": [except]}}]}]
            }),
        );
        e.check(80, TCP, |f, t| t != "x/a" || (in_ns(f, "y") && f != "y/b"));
    });
}

#[test]
fn ingress_and_egress_controlled_independently() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy(
            "x",
            "deny-egress-a",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"]}),
        );
        e.policy("x", "allow-ingress-to-a", json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"], "ingress": [{}]}));
        e.check(80, TCP, |f, _| f != "x/a");
        e.c.delete_policy("x", "deny-egress-a");
        e.commit();
        e.check(80, TCP, |_, _| true);
    });
}

#[test]
fn protocols_are_not_confused() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy(
            "x",
            "allow-only-sctp-ingress-on-port-81",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"ports": [{"port": 81, "protocol": "SCTP"}]}]
            }),
        );
        e.check(81, SCTP, |_, _| true);
        e.check(81, TCP, |_, t| t != "x/a");
        e.check(81, UDP, |_, t| t != "x/a");
        e.policy(
            "x",
            "allow-only-udp-ingress-on-port-81",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"ports": [{"port": 81, "protocol": "UDP"}]}]
            }),
        );
        e.check(81, UDP, |_, _| true);
        e.check(81, TCP, |_, t| t != "x/a");
        e.check(80, UDP, |_, t| t != "x/a");
    });
}

#[test]
fn namespace_selector_on_default_label_without_label_in_object() {
    both(|fam| {
        let mut e = Env::new(fam);
        // namespace objects without any labels still carry the automatic one
        for n in NS {
            e.c.apply_namespace(&ns(n, &[])).unwrap();
        }
        e.commit();
        e.policy(
            "x",
            "allow-from-z",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["z"]}]},
                    "podSelector": {"matchExpressions": [{"key": "pod", "operator": "Exists"}]}}]}]
            }),
        );
        e.check(80, TCP, |f, t| t != "x/a" || in_ns(f, "z"));
    });
}

#[test]
fn end_port_ranges() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy(
            "x",
            "allow-80-81",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                             "ports": [{"port": 80, "endPort": 81, "protocol": "TCP"}]}]
            }),
        );
        e.check(80, TCP, |f, t| t != "x/a" || in_ns(f, "y"));
        e.check(81, TCP, |f, t| t != "x/a" || in_ns(f, "y"));
        e.check(82, TCP, |_, t| t != "x/a");
        e.check(79, TCP, |_, t| t != "x/a");
        // endPort mixed with a single port: {80..81} ∪ {9000} needs a bitmap
        e.policy("x", "allow-9000", json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": [{"port": 9000}]}]
        }));
        e.check(9000, TCP, |f, t| t != "x/a" || in_ns(f, "y"));
        e.check(81, TCP, |f, t| t != "x/a" || in_ns(f, "y"));
        assert_eq!(
            e.c.state().portsets.len(),
            1,
            "one shared bitmap for the 3 y pods"
        );
    });
}

#[test]
fn any_port_of_one_protocol() {
    both(|fam| {
        let mut e = Env::new(fam);
        e.policy(
            "x",
            "allow-tcp",
            json!({
                "podSelector": {"matchLabels": {"pod": "a"}},
                "ingress": [{"ports": [{"protocol": "TCP"}]}]
            }),
        );
        e.check(80, TCP, |_, _| true);
        e.check(81, TCP, |_, _| true);
        e.check(80, UDP, |_, t| t != "x/a");
        e.check(0, ICMP, |_, t| t != "x/a");
        // `ports: [{}]` = every TCP port
        e.policy(
            "x",
            "empty-port",
            json!({"podSelector": {"matchLabels": {"pod": "b"}}, "ingress": [{"ports": [{}]}]}),
        );
        e.check(81, TCP, |_, _| true);
        e.check(81, UDP, |_, t| t != "x/a" && t != "x/b");
    });
}
