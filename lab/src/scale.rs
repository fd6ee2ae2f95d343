//! The cluster shape of the scale benchmarks (`cargo xtask bench agent`,
//! the analysis benchmark): 10 000 pods (100 on node `n1`), 100
//! namespaces, 2 000 NetworkPolicies each selecting one of node `n1`'s
//! pods, and 200 ClusterNetworkPolicies (both tiers, namespace and pod
//! subjects, pod, namespace and CIDR peers, numbers and ranges, priorities
//! spread over 0-999 with ties), as Kubernetes JSON objects.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

/// Pods (the first [`LOCAL`] on node `n1`).
pub const PODS: usize = 10_000;
/// Pods on node `n1`.
pub const LOCAL: usize = 100;
/// Namespaces `ns-0`, ...
pub const NAMESPACES: usize = 100;
/// NetworkPolicies.
pub const POLICIES: usize = 2_000;
/// ClusterNetworkPolicies.
pub const CLUSTER_POLICIES: usize = 200;

/// Pod `p`'s address.
pub fn pod_ip(p: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 128, 0)) + p as u32)
}

/// Namespace `n`.
pub fn namespace(n: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": format!("ns-{n}"), "uid": format!("uid-ns-{n}"), "resourceVersion": "1",
                        "labels": {"kubernetes.io/metadata.name": format!("ns-{n}"),
                                   "team": format!("t-{}", n % 5)}}})
}

/// Pod `p` with its `role` label (the label the benchmark flips).
pub fn pod(p: usize) -> Value {
    labelled_pod(p, p % 7)
}

/// Pod `p` with the `role` label `r-ROLE`.
pub fn labelled_pod(p: usize, role: usize) -> Value {
    let node = if p < LOCAL {
        "n1".to_string()
    } else {
        format!("node-{}", p % 99 + 2)
    };
    let ip = pod_ip(p).to_string();
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": format!("pod-{p}"), "namespace": format!("ns-{}", p % NAMESPACES),
                        "uid": format!("uid-pod-{p}"), "resourceVersion": "1",
                        "labels": {"app": format!("app-{}", p % 50), "role": format!("r-{role}")}},
           "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x",
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
           "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
}

/// Policy `i` in namespace `i % 100` selects `app-(i % 50)`: one local pod.
pub fn policy(i: usize, port: u32, rv: u64) -> Value {
    let mut spec = json!({"podSelector": {"matchLabels": {"app": format!("app-{}", i % 50)}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": format!("t-{}", i % 5)}},
                               "podSelector": {"matchLabels": {"role": format!("r-{}", i % 7)}}}],
                     "ports": [{"protocol": "TCP", "port": port}]}]});
    if i.is_multiple_of(4) {
        spec["policyTypes"] = json!(["Ingress", "Egress"]);
        spec["egress"] = json!([{"to": [{"ipBlock": {"cidr": format!("10.{}.0.0/16", i % 256),
                                                      "except": [format!("10.{}.1.0/24", i % 256)]}}],
                                 "ports": [{"protocol": "TCP", "port": 443}]}]);
    }
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": format!("pol-{i}"), "namespace": format!("ns-{}", i % NAMESPACES),
                        "uid": format!("uid-pol-{i}"), "resourceVersion": rv.to_string(),
                        "generation": 1},
           "spec": spec})
}

/// ClusterNetworkPolicy `i`: every fifth in the Baseline tier; a namespace
/// or a pod subject; an ingress rule from pods of other teams on `port`;
/// every third also an egress rule towards a /24 on a port range.
pub fn cluster_policy(i: usize, port: u32, rv: u64) -> Value {
    let tier = if i % 5 == 4 { "Baseline" } else { "Admin" };
    let action = ["Deny", "Pass", "Accept"][i % 3];
    let subject = if i.is_multiple_of(2) {
        json!({"namespaces": {"matchLabels": {"team": format!("t-{}", i % 5)}}})
    } else {
        json!({"pods": {"namespaceSelector": {},
                        "podSelector": {"matchLabels": {"app": format!("app-{}", i % 50)}}}})
    };
    let mut spec = json!({"tier": tier, "priority": (i * 37) % 1000 / 2 * 2, "subject": subject,
        "ingress": [{"name": "from-team", "action": action,
                     "from": [{"pods": {"namespaceSelector": {"matchLabels": {"team": format!("t-{}", (i + 1) % 5)}},
                                        "podSelector": {"matchLabels": {"role": format!("r-{}", i % 7)}}}}],
                     "protocols": [{"tcp": {"destinationPort": {"number": port}}}]}]});
    if i.is_multiple_of(3) {
        spec["egress"] = json!([{"action": "Deny",
            "to": [{"networks": [format!("10.{}.{}.0/24", i % 256, i / 256)]}],
            "protocols": [{"tcp": {"destinationPort": {"range": {"start": 1000, "end": 2000}}}}]}]);
    }
    json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
           "metadata": {"name": format!("cnp-{i:03}"), "uid": format!("uid-cnp-{i}"),
                        "resourceVersion": rv.to_string(), "generation": 1},
           "spec": spec})
}

/// ClusterNetworkPolicy `i`'s port at the start.
pub fn cluster_port(i: usize) -> u32 {
    9000 + (i % 30) as u32
}

/// NetworkPolicy `i`'s port at the start.
pub fn base_port(i: usize) -> u32 {
    8000 + (i % 30) as u32
}
