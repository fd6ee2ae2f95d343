//! An independent NetworkPolicy v1 evaluator, as cyclonus' matcher: given
//! namespaces, pods (labels, addresses, named ports) and policies, is a
//! connection from pod `src` to pod `dst` on (port, protocol) allowed?
//! It computes the truth tables of the cyclonus generator's cases
//! (`cyclonus.rs`) and of our own, and cross-checks the hand-written
//! upstream tables. It shares no code with
//! the compiler.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub type Labels = BTreeMap<String, String>;

/// A pod as the evaluator sees it.
pub struct MPod {
    pub ns: String,
    pub labels: Labels,
    pub ip: IpAddr,
    /// (name, port, protocol)
    pub ports: Vec<(String, u16, String)>,
}

pub struct World<'a> {
    /// Namespace labels, including `kubernetes.io/metadata.name`.
    pub namespaces: &'a BTreeMap<String, Labels>,
    pub policies: &'a [NetworkPolicy],
}

pub fn selects(sel: &LabelSelector, labels: &Labels) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let exprs_ok = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        let have = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            other => panic!("unknown selector operator {other}"),
        }
    });
    labels_ok && exprs_ok
}

fn types(p: &NetworkPolicy) -> (bool, bool) {
    let spec = p.spec.as_ref().expect("spec");
    match &spec.policy_types {
        Some(t) => (
            t.iter().any(|x| x == "Ingress"),
            t.iter().any(|x| x == "Egress"),
        ),
        None => (true, spec.egress.is_some()),
    }
}

fn ports_match(
    ports: &Option<Vec<NetworkPolicyPort>>,
    server: &MPod,
    port: u16,
    proto: &str,
) -> bool {
    let Some(ports) = ports.as_ref().filter(|p| !p.is_empty()) else {
        return true;
    };
    ports.iter().any(|p| {
        let pproto = p.protocol.as_deref().unwrap_or("TCP");
        if pproto != proto {
            return false;
        }
        match &p.port {
            None => true,
            Some(IntOrString::Int(n)) => match p.end_port {
                Some(end) => (*n..=end).contains(&i32::from(port)),
                None => *n == i32::from(port),
            },
            Some(IntOrString::String(name)) => server
                .ports
                .iter()
                .any(|(n, num, pr)| n == name && pr == proto && *num == port),
        }
    })
}

fn peer_matches(w: &World, peer: &NetworkPolicyPeer, policy_ns: &str, other: &MPod) -> bool {
    if let Some(b) = &peer.ip_block {
        let net: ipnet::IpNet = b.cidr.parse().expect("cidr");
        if !net.contains(&other.ip) {
            return false;
        }
        return !b.except.iter().flatten().any(|e| {
            let e: ipnet::IpNet = e.parse().expect("except cidr");
            e.contains(&other.ip)
        });
    }
    let ns_ok = match &peer.namespace_selector {
        None => other.ns == policy_ns,
        Some(s) => selects(s, &w.namespaces[&other.ns]),
    };
    let pod_ok = peer
        .pod_selector
        .as_ref()
        .is_none_or(|s| selects(s, &other.labels));
    ns_ok && pod_ok
}

fn peers_match(
    w: &World,
    peers: &Option<Vec<NetworkPolicyPeer>>,
    policy_ns: &str,
    other: &MPod,
) -> bool {
    match peers.as_ref().filter(|p| !p.is_empty()) {
        None => true,
        Some(peers) => peers.iter().any(|p| peer_matches(w, p, policy_ns, other)),
    }
}

/// Whether `src` may open a connection to `dst` on `port`/`proto`.
pub fn allowed(w: &World, src: &MPod, dst: &MPod, port: u16, proto: &str) -> bool {
    let ns_of = |p: &NetworkPolicy| p.metadata.namespace.clone().unwrap_or_default();
    let selecting = |pod: &MPod, ingress: bool| -> Vec<&NetworkPolicy> {
        w.policies
            .iter()
            .filter(|p| ns_of(p) == pod.ns)
            .filter(|p| {
                p.spec
                    .as_ref()
                    .expect("spec")
                    .pod_selector
                    .as_ref()
                    .is_none_or(|s| selects(s, &pod.labels))
            })
            .filter(|p| {
                let (i, e) = types(p);
                if ingress { i } else { e }
            })
            .collect()
    };
    let egress = selecting(src, false);
    let egress_ok = egress.is_empty()
        || egress.iter().any(|p| {
            p.spec.as_ref().unwrap().egress.iter().flatten().any(|r| {
                ports_match(&r.ports, dst, port, proto) && peers_match(w, &r.to, &ns_of(p), dst)
            })
        });
    let ingress = selecting(dst, true);
    let ingress_ok = ingress.is_empty()
        || ingress.iter().any(|p| {
            p.spec.as_ref().unwrap().ingress.iter().flatten().any(|r| {
                ports_match(&r.ports, dst, port, proto) && peers_match(w, &r.from, &ns_of(p), src)
            })
        });
    egress_ok && ingress_ok
}
