//! The tier rows of the datapath benchmark: the same flows with 0, 1, 100
//! and 1,000 ClusterNetworkPolicy rules selecting the pod, on top of the
//! largest NetworkPolicy tables (100,000 policy entries, 50,000 CIDR
//! prefixes of filler).
//!
//! The pod's own entries are compiled by the real compiler from objects: a
//! NetworkPolicy isolating the pod for ingress and allowing the peer pod on
//! TCP/80, and `N` Admin rules in policies of 25 rules each (priorities
//! spread, actions Deny/Pass/Accept in turn): half of them ingress rules
//! from the peer's namespace on one of 100 ports (so the peer's entry
//! holds a segment table: the ingress peers of a ClusterNetworkPolicy are
//! pods and namespaces, never CIDRs), half egress rules towards a CIDR of
//! their own (`10.128.0.0/9`, one region each). No tier rule matches the
//! measured ports (80, 22), so every new flow reads all three entries and
//! searches the table before NetworkPolicy decides: the tiers' worst case.

use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use palisade_common::EndpointInfo;
use palisade_compiler::{Compiler, PodRef, api::ClusterNetworkPolicy};
use palisade_tests::bpf::{TEST_IFINDEX, TestDatapath};
use serde_json::{Value, json};

const NODE: &str = "bench-node";

fn object<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

fn running_pod(ns: &str, name: &str, node: &str, ips: [IpAddr; 2]) -> Pod {
    object(json!({
        "metadata": {"namespace": ns, "name": name, "uid": format!("uid-{name}"),
                     "labels": {"app": name}},
        "spec": {"nodeName": node, "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIPs": [{"ip": ips[0].to_string()}, {"ip": ips[1].to_string()}]},
    }))
}

/// The `n` tier rules, in policies of 25: even ones ingress from the
/// peer's namespace on one of 100 ports, odd ones egress to a CIDR of
/// their own.
fn cluster_policies(n: usize) -> Vec<ClusterNetworkPolicy> {
    let rules: Vec<(bool, Value)> = (0..n)
        .map(|i| {
            let action = ["Deny", "Pass", "Accept"][i % 3];
            if i.is_multiple_of(2) {
                let port = 2000 + (i / 2) % 100;
                let from = json!([{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "dev"}}}]);
                (true, json!({"action": action, "from": from,
                              "protocols": [{"tcp": {"destinationPort": {"number": port}}}]}))
            } else {
                let net = format!("10.{}.{}.0/24", 128 + i / 256, i % 256);
                (false, json!({"action": action, "to": [{"networks": [net]}],
                               "protocols": [{"tcp": {"destinationPort": {"number": 1000 + i % 1000}}}]}))
            }
        })
        .collect();
    rules
        .chunks(50)
        .enumerate()
        .map(|(p, chunk)| {
            let of = |ingress: bool| -> Vec<&Value> {
                chunk
                    .iter()
                    .filter(|r| r.0 == ingress)
                    .map(|r| &r.1)
                    .collect()
            };
            object(json!({
                "apiVersion": "policy.networking.k8s.io/v1alpha2",
                "kind": "ClusterNetworkPolicy",
                "metadata": {"name": format!("bench-{p:03}")},
                "spec": {"tier": "Admin", "priority": (p * 7) % 1000,
                         "subject": {"namespaces": {}}, "ingress": of(true), "egress": of(false)},
            }))
        })
        .collect()
}

/// A datapath holding the compiled entries of the pod at `pod` (the peer
/// pod at `peer`) with `rules` tier rules, and the filler.
pub fn setup(rules: usize, pod: [IpAddr; 2], peer: [IpAddr; 2]) -> TestDatapath {
    let mut c = Compiler::new(NODE);
    for ns in ["prod", "dev"] {
        let n: Namespace = object(json!({"metadata": {"name": ns}}));
        c.apply_namespace(&n).unwrap();
    }
    c.apply_pod(&running_pod("prod", "web", NODE, pod)).unwrap();
    c.apply_pod(&running_pod("dev", "client", "other-node", peer))
        .unwrap();
    let np: NetworkPolicy = object(json!({
        "metadata": {"namespace": "prod", "name": "web"},
        "spec": {"podSelector": {}, "ingress": [{
            "from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "client"}}}],
            "ports": [{"protocol": "TCP", "port": 80}]}]},
    }));
    c.apply_policy(&np).unwrap();
    for p in cluster_policies(rules) {
        c.apply_cluster_policy(&p).unwrap();
    }
    c.commit();
    assert!(c.rejections().is_empty(), "{:?}", c.rejections());
    let st = c.state();
    let ep = &st.endpoints[&PodRef::new("prod", "web")];
    let mut t = TestDatapath::new();
    t.set_endpoint(EndpointInfo {
        ep_id: ep.ep_id,
        identity: ep.identity,
        flags: ep.flags,
        _pad: 0,
    });
    for (k, v) in &st.policy {
        t.allow(*k, *v);
    }
    for (id, ports) in &st.portsets {
        t.portset(*id, &ports.to_bitmap());
    }
    for (id, codes) in &st.tiersets {
        t.tierset(*id, &codes.to_table().expect("a table's worth of segments"));
    }
    for (a, v) in st.exact_entries() {
        t.ipcache_exact(a, v);
    }
    for (n, v) in st.lpm_entries() {
        t.ipcache_prefix(n, v.identity);
    }
    for a in pod {
        t.allow_source(TEST_IFINDEX, a.into());
    }
    t
}

/// `n` distinct sources, alternately in `10.0.0.0/9` (filler prefixes)
/// and in `10.128.0.0/9` (the egress rules' regions).
pub fn sources(n: usize) -> Vec<IpAddr> {
    (0..n)
        .map(|i| {
            let i = i as u32;
            IpAddr::V4(if i.is_multiple_of(2) {
                Ipv4Addr::from(0x0a00_0000 | (i.wrapping_mul(2_654_435_761) & 0x007f_ff00) | 1)
            } else {
                Ipv4Addr::from(0x0a80_0000 | ((i / 2) % 1000) << 8 | (i % 250 + 1))
            })
        })
        .collect()
}
