//! ClusterNetworkPolicy validation (network-policy-api v0.2.0): one test
//! per rule of the CRD schema and its CEL rules. A rejected object is named
//! with its field path, listed among the rejections and changes nothing;
//! upstream-shaped objects (the conformance and CRD test YAMLs) parse and
//! are accepted; the fail-closed readings of peers and protocols of
//! unknown kinds are checked by their verdicts.

mod common;

use common::*;
use palisade_common::{direction, proto};
use palisade_compiler::api::{
    self, ClusterNetworkPolicy, ClusterNetworkPolicyRuleAction, Tier as ApiTier,
};
use palisade_compiler::{Compiler, ObjectKind, ObjectRef, PodRef};
use serde::Deserialize;
use serde_json::{Value, json};

const NAME: &str = "guard";

/// A ClusterNetworkPolicy `guard` with `spec`.
fn cnp(spec: Value) -> ClusterNetworkPolicy {
    serde_json::from_value(json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": NAME},
        "spec": spec,
    }))
    .unwrap()
}

/// A minimal valid spec with these extra fields.
fn spec(extra: Value) -> Value {
    let mut s = json!({"tier": "Admin", "priority": 10, "subject": {"namespaces": {}}});
    for (k, v) in extra.as_object().unwrap() {
        s[k] = v.clone();
    }
    s
}

fn egress(rule: Value) -> Value {
    spec(json!({"egress": [rule]}))
}

fn ingress(rule: Value) -> Value {
    spec(json!({"ingress": [rule]}))
}

/// A compiler with one local pod, committed.
fn compiler() -> Compiler {
    let mut c = Compiler::new(NODE);
    c.apply_namespace(&ns("prod", &[("team", "prod")])).unwrap();
    c.apply_pod(&pod(
        "prod",
        "web",
        &[("app", "web")],
        NODE,
        &["10.0.1.1"],
        &[("http", "TCP", 8080)],
    ))
    .unwrap();
    c.commit();
    c
}

/// Applies `obj` and returns the error text, checking that the object is
/// listed among the rejections and that nothing of it is applied.
fn reject_obj(obj: &ClusterNetworkPolicy) -> String {
    let mut c = compiler();
    let err = c.apply_cluster_policy(obj).unwrap_err();
    let name = obj.metadata.name.clone().unwrap_or_default();
    let r = ObjectRef::new(ObjectKind::ClusterNetworkPolicy, "", name);
    assert_eq!(err.object, r);
    assert_eq!(c.rejections().get(&r), Some(&err));
    assert!(
        c.commit().ops.is_empty(),
        "nothing of a rejected policy is applied"
    );
    err.to_string()
}

fn reject(spec: Value) -> String {
    reject_obj(&cnp(spec))
}

/// Applies `obj`, which must be accepted.
fn accept_obj(obj: &ClusterNetworkPolicy) -> Compiler {
    let mut c = compiler();
    c.apply_cluster_policy(obj)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(c.rejections().is_empty());
    c.commit();
    c
}

fn accept(spec: Value) -> Compiler {
    accept_obj(&cnp(spec))
}

fn expect(spec: Value, msg: &str) {
    assert_eq!(reject(spec), format!("ClusterNetworkPolicy guard: {msg}"));
}

// ----- accepted objects --------------------------------------------------

#[test]
fn minimal_objects_of_both_tiers_and_both_subjects() {
    for tier in ["Admin", "Baseline"] {
        for subject in [
            json!({"namespaces": {"matchLabels": {"team": "prod"}}}),
            json!({"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}}),
            json!({"pods": {"podSelector": {}}}),
        ] {
            accept(json!({"tier": tier, "priority": 0, "subject": subject.clone()}));
            accept(json!({"tier": tier, "priority": 1000, "subject": subject,
                "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}],
                "egress": [{"action": "Accept", "to": [{"pods": {"podSelector": {}}}]}]}));
        }
    }
}

#[test]
fn rules_reach_the_engine() {
    let c = accept(spec(json!({
        "ingress": [{"name": "from-dev", "action": "Deny", "from": [{"namespaces": {}}]}],
        "egress": [
            {"action": "Pass", "to": [{"networks": ["10.0.0.0/8"]}]},
            {"name": "rest", "action": "Accept", "to": [{"pods": {"podSelector": {}}}]},
        ],
    })));
    let rules = c.tier_rules();
    let shown: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        shown,
        [
            r#"ClusterNetworkPolicy admin/guard ingress[0] "from-dev" (priority 10, Deny)"#,
            "ClusterNetworkPolicy admin/guard egress[0] (priority 10, Pass)",
            r#"ClusterNetworkPolicy admin/guard egress[1] "rest" (priority 10, Accept)"#,
        ]
    );
}

// ----- metadata ----------------------------------------------------------

#[test]
fn name_is_required() {
    let mut obj = cnp(spec(json!({})));
    obj.metadata.name = None;
    assert_eq!(
        reject_obj(&obj),
        "ClusterNetworkPolicy : metadata.name: required value"
    );
}

#[test]
fn namespace_is_forbidden() {
    let mut obj = cnp(spec(json!({})));
    obj.metadata.namespace = Some("prod".into());
    assert_eq!(
        reject_obj(&obj),
        "ClusterNetworkPolicy guard: metadata.namespace: not allowed: ClusterNetworkPolicy is cluster-scoped"
    );
    // An empty namespace is no namespace.
    obj.metadata.namespace = Some(String::new());
    accept_obj(&obj);
}

#[test]
fn api_version_and_kind_if_given_are_this_api() {
    let mut obj = cnp(spec(json!({})));
    obj.api_version = Some("policy.networking.k8s.io/v1alpha1".into());
    assert!(reject_obj(&obj).starts_with(
        r#"ClusterNetworkPolicy guard: apiVersion: unsupported value "policy.networking.k8s.io/v1alpha1""#
    ));
    let mut obj = cnp(spec(json!({})));
    obj.kind = Some("AdminNetworkPolicy".into());
    assert!(reject_obj(&obj).starts_with(r#"ClusterNetworkPolicy guard: kind: unsupported value"#));
    let mut obj = cnp(spec(json!({})));
    obj.api_version = None;
    obj.kind = None;
    accept_obj(&obj);
}

// ----- tier, priority, subject -------------------------------------------

#[test]
fn tier_is_required_and_admin_or_baseline() {
    expect(
        json!({"priority": 1, "subject": {"namespaces": {}}}),
        "spec.tier: required value",
    );
    expect(
        spec(json!({"tier": "Developer"})),
        r#"spec.tier: unsupported value "Developer": must be one of Admin, Baseline"#,
    );
    expect(
        spec(json!({"tier": "admin"})),
        r#"spec.tier: unsupported value "admin": must be one of Admin, Baseline"#,
    );
}

#[test]
fn priority_is_required_and_between_0_and_1000() {
    expect(
        json!({"tier": "Admin", "subject": {"namespaces": {}}}),
        "spec.priority: required value",
    );
    expect(
        spec(json!({"priority": -1})),
        "spec.priority: -1 must be between 0 and 1000, inclusive",
    );
    expect(
        spec(json!({"priority": 1001})),
        "spec.priority: 1001 must be between 0 and 1000, inclusive",
    );
}

#[test]
fn subject_is_required_with_exactly_one_field() {
    expect(
        json!({"tier": "Admin", "priority": 1}),
        "spec.subject: required value",
    );
    expect(
        spec(json!({"subject": {}})),
        "spec.subject: must specify exactly one of namespaces, pods (got none)",
    );
    expect(
        spec(json!({"subject": {"namespaces": {}, "pods": {"podSelector": {}}}})),
        "spec.subject: must specify exactly one of namespaces, pods (got namespaces, pods)",
    );
}

#[test]
fn pods_need_a_pod_selector() {
    expect(
        spec(json!({"subject": {"pods": {"namespaceSelector": {}}}})),
        "spec.subject.pods.podSelector: required value",
    );
    expect(
        ingress(json!({"action": "Deny", "from": [{"pods": {"namespaceSelector": {}}}]})),
        "spec.ingress[0].from[0].pods.podSelector: required value",
    );
}

#[test]
fn label_selectors_are_valid() {
    let m = reject(spec(
        json!({"subject": {"namespaces": {"matchExpressions": [
        {"key": "team", "operator": "Equals", "values": ["a"]}]}}}),
    ));
    assert!(m.starts_with(r#"ClusterNetworkPolicy guard: spec.subject.namespaces.matchExpressions[0].operator: "Equals" is not a valid selector operator"#), "{m}");
    let m = reject(spec(
        json!({"subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "-x"}}}}}),
    ));
    assert!(m.starts_with(r#"ClusterNetworkPolicy guard: spec.subject.pods.podSelector.matchLabels: invalid label value "-x""#), "{m}");
    expect(
        egress(
            json!({"action": "Deny", "to": [{"pods": {"podSelector": {}}},
            {"namespaces": {"matchExpressions": [{"key": "team", "operator": "In"}]}}]}),
        ),
        "spec.egress[0].to[1].namespaces.matchExpressions[0].values: must be specified when operator is In",
    );
    let m = reject(egress(json!({"action": "Deny", "to": [
        {"pods": {"namespaceSelector": {"matchLabels": {"bad key": "x"}}, "podSelector": {}}}]})));
    assert!(m.starts_with(r#"ClusterNetworkPolicy guard: spec.egress[0].to[0].pods.namespaceSelector.matchLabels: invalid label key "bad key""#), "{m}");
}

// ----- rules -------------------------------------------------------------

#[test]
fn at_most_25_rules_per_direction() {
    let rule = json!({"action": "Deny", "from": [{"namespaces": {}}]});
    accept(spec(json!({"ingress": vec![rule.clone(); 25]})));
    expect(
        spec(json!({"ingress": vec![rule; 26]})),
        "spec.ingress: must have at most 25 items (got 26)",
    );
    let rule = json!({"action": "Deny", "to": [{"namespaces": {}}]});
    accept(spec(json!({"egress": vec![rule.clone(); 25]})));
    expect(
        spec(json!({"egress": vec![rule; 26]})),
        "spec.egress: must have at most 25 items (got 26)",
    );
}

#[test]
fn action_is_required_and_accept_deny_or_pass() {
    expect(
        ingress(json!({"from": [{"namespaces": {}}]})),
        "spec.ingress[0].action: required value",
    );
    expect(
        egress(json!({"action": "Allow", "to": [{"namespaces": {}}]})),
        r#"spec.egress[0].action: unsupported value "Allow": must be one of Accept, Deny, Pass"#,
    );
}

#[test]
fn rule_names_are_at_most_100_characters() {
    let ok = "é".repeat(100);
    accept(ingress(
        json!({"name": ok, "action": "Deny", "from": [{"namespaces": {}}]}),
    ));
    expect(
        ingress(json!({"name": "x".repeat(101), "action": "Deny", "from": [{"namespaces": {}}]})),
        "spec.ingress[0].name: must be no more than 100 characters (got 101)",
    );
}

#[test]
fn from_and_to_have_1_to_25_peers() {
    expect(
        ingress(json!({"action": "Deny"})),
        "spec.ingress[0].from: must have at least 1 item(s)",
    );
    expect(
        egress(json!({"action": "Deny", "to": []})),
        "spec.egress[0].to: must have at least 1 item(s)",
    );
    let peer = json!({"namespaces": {}});
    accept(ingress(
        json!({"action": "Deny", "from": vec![peer.clone(); 25]}),
    ));
    expect(
        egress(json!({"action": "Deny", "to": vec![peer; 26]})),
        "spec.egress[0].to: must have at most 25 items (got 26)",
    );
}

#[test]
fn peers_have_exactly_one_field() {
    expect(
        ingress(json!({"action": "Deny", "from": [{}]})),
        "spec.ingress[0].from[0]: must specify exactly one of namespaces, pods (got none)",
    );
    expect(
        egress(
            json!({"action": "Deny", "to": [{"namespaces": {}}, {"namespaces": {}, "networks": ["10.0.0.0/8"]}]}),
        ),
        "spec.egress[0].to[1]: must specify exactly one of namespaces, pods, nodes, networks, domainNames (got namespaces, networks)",
    );
    // A field this version does not know counts as a field.
    expect(
        ingress(json!({"action": "Deny", "from": [{"pods": {"podSelector": {}}, "services": {}}]})),
        "spec.ingress[0].from[0]: must specify exactly one of namespaces, pods (got pods, services)",
    );
}

#[test]
fn networks_have_1_to_25_distinct_cidrs() {
    expect(
        egress(json!({"action": "Deny", "to": [{"networks": []}]})),
        "spec.egress[0].to[0].networks: must have at least 1 item(s)",
    );
    let many: Vec<String> = (0..26).map(|i| format!("10.{i}.0.0/16")).collect();
    accept(egress(
        json!({"action": "Deny", "to": [{"networks": many[..25]}]}),
    ));
    expect(
        egress(json!({"action": "Deny", "to": [{"networks": many}]})),
        "spec.egress[0].to[0].networks: must have at most 25 items (got 26)",
    );
    expect(
        egress(
            json!({"action": "Deny", "to": [{"networks": ["10.0.0.0/8", "fd00::/8", "10.0.0.0/8"]}]}),
        ),
        r#"spec.egress[0].to[0].networks[2]: duplicate value "10.0.0.0/8""#,
    );
}

#[test]
fn networks_are_cidrs_as_cel_is_cidr_reads_them() {
    for bad in [
        "10.0.0.0",
        "10.0.0.0/33",
        "10.0.0.0/08",
        "010.0.0.0/8",
        "fd00::/129",
        "fe80::1%eth0/64",
        "example.com/8",
    ] {
        let m = reject(egress(
            json!({"action": "Deny", "to": [{"networks": ["192.0.2.0/24", bad]}]}),
        ));
        assert!(
            m.starts_with(&format!(
                r#"ClusterNetworkPolicy guard: spec.egress[0].to[0].networks[1]: invalid CIDR "{bad}""#
            )),
            "{m}"
        );
    }
    for mapped in [
        "::ffff:10.0.0.0/104",
        "::ffff:a00:0/104",
        "::ffff:10.1.2.3/64",
    ] {
        let m = reject(egress(
            json!({"action": "Deny", "to": [{"networks": [mapped]}]}),
        ));
        assert!(
            m.ends_with("IPv4-mapped IPv6 address is not allowed"),
            "{m}"
        );
    }
    let long = format!("2001:0db8:0000:0000:0000:0000:0000:0001/{}", 128);
    assert_eq!(long.len(), 43);
    accept(egress(
        json!({"action": "Deny", "to": [{"networks": [long]}]}),
    ));
    expect(
        egress(json!({"action": "Deny", "to": [{"networks": [format!("{long} ")]}]})),
        "spec.egress[0].to[0].networks[0]: must be no more than 43 characters (got 44)",
    );
    // Host bits are accepted (isCIDR is netip.ParsePrefix): the network
    // is the masked prefix, checked by behaviour below.
    accept(egress(
        json!({"action": "Deny", "to": [{"networks": ["10.1.2.3/8", "2001:db8::1/32", "0.0.0.0/0", "::/0"]}]}),
    ));
}

#[test]
fn networks_with_host_bits_mean_the_masked_prefix() {
    let mut c = compiler();
    c.apply_cluster_policy(&cnp(egress(
        json!({"action": "Deny", "to": [{"networks": ["203.0.113.77/24"]}]}),
    )))
    .unwrap();
    c.commit();
    assert!(!egress_allowed(&c, "203.0.113.1", proto::TCP, 443));
    assert!(!egress_allowed(&c, "203.0.113.255", proto::TCP, 443));
    assert!(egress_allowed(&c, "203.0.114.1", proto::TCP, 443));
}

#[test]
fn protocols_have_1_to_25_entries_of_exactly_one_field() {
    expect(
        ingress(json!({"action": "Deny", "from": [{"namespaces": {}}], "protocols": []})),
        "spec.ingress[0].protocols: must have at least 1 item(s)",
    );
    let entry = json!({"tcp": {"destinationPort": {"number": 80}}});
    accept(ingress(
        json!({"action": "Deny", "from": [{"namespaces": {}}], "protocols": vec![entry.clone(); 25]}),
    ));
    expect(
        ingress(
            json!({"action": "Deny", "from": [{"namespaces": {}}], "protocols": vec![entry; 26]}),
        ),
        "spec.ingress[0].protocols: must have at most 25 items (got 26)",
    );
    expect(
        ingress(json!({"action": "Deny", "from": [{"namespaces": {}}], "protocols": [{}]})),
        "spec.ingress[0].protocols[0]: must specify exactly one of tcp, udp, sctp, destinationNamedPort (got none)",
    );
    expect(
        egress(
            json!({"action": "Deny", "to": [{"namespaces": {}}], "protocols": [
            {"tcp": {"destinationPort": {"number": 80}}},
            {"udp": {"destinationPort": {"number": 53}}, "destinationNamedPort": "dns"}]}),
        ),
        "spec.egress[0].protocols[1]: must specify exactly one of tcp, udp, sctp, destinationNamedPort (got udp, destinationNamedPort)",
    );
}

#[test]
fn tcp_udp_sctp_need_a_destination_port() {
    for p in ["tcp", "udp", "sctp"] {
        expect(
            ingress(
                json!({"action": "Deny", "from": [{"namespaces": {}}], "protocols": [{p: {}}]}),
            ),
            &format!("spec.ingress[0].protocols[0].{p}.destinationPort: required value"),
        );
    }
}

#[test]
fn destination_port_is_a_number_or_a_range() {
    let with = |port: Value| {
        egress(json!({"action": "Deny", "to": [{"namespaces": {}}],
            "protocols": [{"sctp": {"destinationPort": port}}]}))
    };
    expect(
        with(json!({})),
        "spec.egress[0].protocols[0].sctp.destinationPort: must specify exactly one of number, range (got none)",
    );
    expect(
        with(json!({"number": 80, "range": {"start": 1, "end": 2}})),
        "spec.egress[0].protocols[0].sctp.destinationPort: must specify exactly one of number, range (got number, range)",
    );
    accept(with(json!({"number": 1})));
    accept(with(json!({"number": 65535})));
    expect(
        with(json!({"number": 0})),
        "spec.egress[0].protocols[0].sctp.destinationPort.number: 0 must be between 1 and 65535, inclusive",
    );
    expect(
        with(json!({"number": 65536})),
        "spec.egress[0].protocols[0].sctp.destinationPort.number: 65536 must be between 1 and 65535, inclusive",
    );
}

#[test]
fn port_ranges_have_start_below_end() {
    let with = |range: Value| {
        ingress(json!({"action": "Accept", "from": [{"namespaces": {}}],
            "protocols": [{"tcp": {"destinationPort": {"range": range}}}]}))
    };
    accept(with(json!({"start": 1, "end": 65535})));
    accept(with(json!({"start": 8080, "end": 8081})));
    // The CEL rule is `self.start < self.end`: equal bounds are invalid.
    expect(
        with(json!({"start": 8080, "end": 8080})),
        "spec.ingress[0].protocols[0].tcp.destinationPort.range: start port 8080 must be less than end port 8080",
    );
    expect(
        with(json!({"start": 9090, "end": 8080})),
        "spec.ingress[0].protocols[0].tcp.destinationPort.range: start port 9090 must be less than end port 8080",
    );
    expect(
        with(json!({"end": 8080})),
        "spec.ingress[0].protocols[0].tcp.destinationPort.range.start: required value",
    );
    expect(
        with(json!({"start": 8080})),
        "spec.ingress[0].protocols[0].tcp.destinationPort.range.end: required value",
    );
    expect(
        with(json!({"start": 0, "end": 8080})),
        "spec.ingress[0].protocols[0].tcp.destinationPort.range.start: 0 must be between 1 and 65535, inclusive",
    );
    expect(
        with(json!({"start": 1, "end": 70000})),
        "spec.ingress[0].protocols[0].tcp.destinationPort.range.end: 70000 must be between 1 and 65535, inclusive",
    );
}

#[test]
fn named_ports_are_not_checked_as_iana_names() {
    // The CRD accepts any string; a name no container port can have
    // matches nothing (see `validate_cluster.rs`).
    accept(ingress(
        json!({"action": "Deny", "from": [{"namespaces": {}}],
        "protocols": [{"destinationNamedPort": "Not_A_Port_Name"}]}),
    ));
}

#[test]
fn named_ports_never_with_networks_nodes_or_domain_names() {
    accept(egress(
        json!({"action": "Deny", "to": [{"pods": {"podSelector": {}}}],
        "protocols": [{"destinationNamedPort": "http"}]}),
    ));
    for peer in [
        json!({"networks": ["10.0.0.0/8"]}),
        json!({"nodes": {}}),
        json!({"domainNames": ["example.com"]}),
    ] {
        expect(
            egress(json!({"action": "Accept", "to": [{"namespaces": {}}, peer],
                "protocols": [{"tcp": {"destinationPort": {"number": 80}}}, {"destinationNamedPort": "http"}]})),
            "spec.egress[0]: networks/nodes/domainNames peers cannot be used with destinationNamedPort: they have no named ports",
        );
    }
}

#[test]
fn nodes_peers_are_accepted_and_validated() {
    for sel in [
        json!({}),
        json!({"matchLabels": {"kubernetes.io/os": "linux"}}),
        json!({"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]}),
    ] {
        for action in ["Accept", "Deny", "Pass"] {
            accept(egress(
                json!({"action": action, "to": [{"namespaces": {}}, {"nodes": sel}],
                    "protocols": [{"tcp": {"destinationPort": {"number": 10250}}}]}),
            ));
        }
    }
    // The schema still applies: an invalid selector is reported as such.
    let m = reject(egress(json!({"action": "Deny", "to": [
        {"nodes": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}}]})));
    assert!(
        m.contains("spec.egress[0].to[0].nodes.matchExpressions[0].values"),
        "{m}"
    );
    expect(
        egress(json!({"action": "Deny", "to": [{"nodes": {"matchLabels": {"bad key!": "x"}}}]})),
        r#"spec.egress[0].to[0].nodes.matchLabels: invalid label key "bad key!": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"#,
    );
    // One field per peer.
    expect(
        egress(json!({"action": "Deny", "to": [{"nodes": {}, "networks": ["10.0.0.0/8"]}]})),
        "spec.egress[0].to[0]: must specify exactly one of namespaces, pods, nodes, networks, domainNames (got nodes, networks)",
    );
    // Ingress peers have no nodes: an unknown field there fails closed
    // (a Deny of everything), it is not read as a nodes peer.
    let c = accept(ingress(json!({"action": "Deny", "from": [{"nodes": {}}]})));
    assert_eq!(c.tier_rules()[0].action, "Deny");
}

/// Nodes are validated as the API server stores them: by name, cluster
/// scope, labels and the IP-typed addresses; a bad Node is rejected with
/// its field and changes nothing.
#[test]
fn node_objects_are_validated() {
    let reject_node = |n: &k8s_openapi::api::core::v1::Node| {
        let mut c = compiler();
        let err = c.apply_node(n).unwrap_err();
        let r = ObjectRef::new(
            ObjectKind::Node,
            "",
            n.metadata.name.clone().unwrap_or_default(),
        );
        assert_eq!(err.object, r);
        assert_eq!(c.rejections().get(&r), Some(&err));
        assert!(c.nodes().is_empty());
        assert!(c.commit().ops.is_empty());
        err.to_string()
    };
    assert_eq!(
        reject_node(&node(
            "n1",
            &[],
            &[("InternalIP", "10.0.0.1"), ("ExternalIP", "10.0.0.300")]
        )),
        r#"Node n1: status.addresses[1].address: invalid IP address "10.0.0.300""#
    );
    assert_eq!(
        reject_node(&node("n1", &[("bad key!", "x")], &[])),
        r#"Node n1: metadata.labels: invalid label key "bad key!": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"#
    );
    assert_eq!(
        reject_node(&node("", &[], &[])),
        "Node : metadata.name: required value"
    );
    let mut namespaced = node("n1", &[], &[]);
    namespaced.metadata.namespace = Some("prod".into());
    assert_eq!(
        reject_node(&namespaced),
        "Node n1: metadata.namespace: not allowed: Node is cluster-scoped"
    );
    // Host and DNS names are not IPs and match nothing; every IP counts,
    // both families, whatever its type.
    let mut c = compiler();
    c.apply_node(&node(
        "n1",
        &[("kubernetes.io/os", "linux")],
        &[
            ("Hostname", "n1"),
            ("InternalDNS", "n1.cluster.local"),
            ("InternalIP", "10.0.0.1"),
            ("InternalIP", "fd00::1"),
            ("ExternalIP", "192.0.2.1"),
        ],
    ))
    .unwrap();
    assert_eq!(
        c.nodes(),
        vec![(
            "n1".to_string(),
            ["10.0.0.1", "192.0.2.1", "fd00::1"].map(ip).to_vec()
        )]
    );
    // A rejected update keeps the last valid version; a valid one or a
    // delete clears the rejection.
    c.apply_node(&node("n1", &[], &[("InternalIP", "nope")]))
        .unwrap_err();
    assert_eq!(c.nodes()[0].1.len(), 3);
    assert_eq!(c.rejections().len(), 1);
    c.delete_node("n1");
    assert!(c.rejections().is_empty() && c.nodes().is_empty());
}

#[test]
fn domain_names_peers_are_refused() {
    expect(
        egress(
            json!({"action": "Accept", "to": [{"domainNames": ["kubernetes.io", "*.kubernetes.io"]}]}),
        ),
        "spec.egress[0].to[0].domainNames: domainNames peers are not supported yet",
    );
    expect(
        egress(json!({"action": "Accept", "to": [{"domainNames": []}]})),
        "spec.egress[0].to[0].domainNames: must have at least 1 item(s)",
    );
    expect(
        egress(json!({"action": "Accept", "to": [{"domainNames": ["a.io", "a.io"]}]})),
        r#"spec.egress[0].to[0].domainNames[1]: duplicate value "a.io""#,
    );
}

#[test]
fn ingress_peers_have_no_networks() {
    // `networks` is not an ingress peer in v0.2.0: beside a known field it
    // is a second field; alone it is a peer of an unknown kind (fail
    // closed, see below).
    expect(
        ingress(
            json!({"action": "Deny", "from": [{"namespaces": {}, "networks": ["10.0.0.0/8"]}]}),
        ),
        "spec.ingress[0].from[0]: must specify exactly one of namespaces, pods (got namespaces, networks)",
    );
    accept(ingress(
        json!({"action": "Deny", "from": [{"networks": ["10.0.0.0/8"]}]}),
    ));
}

// ----- upstream objects --------------------------------------------------

fn parse_all(yaml: &str) -> Vec<ClusterNetworkPolicy> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| ClusterNetworkPolicy::deserialize(d).unwrap())
        .collect()
}

/// `conformance/base/admin_tier/standard-gress-rules-combined.yaml`
/// (abridged: the first three rules of each direction and one with ports).
const GRESS_RULES: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: gress-rules
spec:
  tier: Admin
  priority: 15
  subject:
    namespaces:
      matchLabels:
          kubernetes.io/metadata.name: network-policy-conformance-gryffindor
  egress:
  - name: "allow-to-ravenclaw-everything"
    action: "Accept"
    to:
    - namespaces:
        matchLabels:
          kubernetes.io/metadata.name: network-policy-conformance-ravenclaw
  - name: "deny-to-ravenclaw-everything"
    action: "Deny"
    to:
    - namespaces:
        matchLabels:
          kubernetes.io/metadata.name: network-policy-conformance-ravenclaw
  - name: "pass-to-ravenclaw-everything"
    action: "Pass"
    to:
    - namespaces:
        matchLabels:
          kubernetes.io/metadata.name: network-policy-conformance-ravenclaw
  - name: "deny-to-slytherin-at-ports-80-53-9003"
    action: "Deny"
    to:
    - namespaces:
        matchLabels:
          kubernetes.io/metadata.name: network-policy-conformance-slytherin
    protocols:
      - tcp:
          destinationPort:
            number: 80
      - udp:
          destinationPort:
            number: 53
      - sctp:
          destinationPort:
            number: 9003
  ingress:
  - name: "allow-from-ravenclaw-everything"
    action: "Accept"
    from:
    - namespaces:
        matchLabels:
          kubernetes.io/metadata.name: network-policy-conformance-ravenclaw
  - name: "deny-from-ravenclaw-everything"
    action: "Deny"
    from:
    - namespaces:
        matchLabels:
          kubernetes.io/metadata.name: network-policy-conformance-ravenclaw
"#;

/// `conformance/base/admin_tier/standard-egress-inline-cidr-rules.yaml`.
const INLINE_CIDR: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: inline-cidr-as-peers-example
spec:
  tier: Admin
  priority: 85
  subject:
    pods:
      namespaceSelector:
        matchLabels:
          conformance-house: gryffindor
      podSelector:
        matchLabels:
          conformance-house: gryffindor
  egress:
  - name: "allow-egress-to-slytherin"
    action: "Accept"
    to:
    - pods:
        namespaceSelector:
          matchLabels:
            conformance-house: slytherin
        podSelector:
          matchLabels:
            conformance-house: slytherin
  - name: "deny-egress-to-internet"
    action: "Deny"
    to:
    - networks:
        - 0.0.0.0/0
        - ::/0
"#;

/// `conformance/base/admin_tier/standard-priority-field.yaml` (three
/// documents, both tiers).
const PRIORITY_FIELD: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: priority-50-example
spec:
  tier: Admin
  priority: 50
  subject:
    pods:
      namespaceSelector:
        matchLabels:
          conformance-house: gryffindor
      podSelector:
        matchLabels:
          conformance-house: gryffindor
  ingress:
  - name: "deny-all-ingress-from-slytherin"
    action: "Deny"
    from:
    - pods:
        namespaceSelector:
          matchLabels:
            conformance-house: slytherin
        podSelector:
          matchLabels:
            conformance-house: slytherin
  egress:
  - name: "deny-all-egress-to-slytherin"
    action: "Deny"
    to:
    - pods:
        namespaceSelector:
          matchLabels:
            conformance-house: slytherin
        podSelector:
          matchLabels:
            conformance-house: slytherin
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: old-priority-60-new-priority-40-example
spec:
  tier: Admin
  priority: 60 # will be updated to 40 in the tests thus taking higher precedence over the deny at priority 50
  subject:
    pods:
      namespaceSelector:
        matchLabels:
          conformance-house: gryffindor
      podSelector:
        matchLabels:
          conformance-house: gryffindor
  ingress:
  - name: "pass-all-ingress-from-slytherin"
    action: "Pass"
    from:
    - pods:
        namespaceSelector:
          matchLabels:
            conformance-house: slytherin
        podSelector:
          matchLabels:
            conformance-house: slytherin
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: default
spec:
  tier: Baseline
  priority: 10
  subject:
    pods:
      namespaceSelector:
        matchLabels:
          conformance-house: gryffindor
      podSelector:
        matchLabels:
          conformance-house: gryffindor
  ingress:
  - name: "allow-all-ingress-from-slytherin"
    action: "Accept"
    from:
    - pods:
        namespaceSelector:
          matchLabels:
            conformance-house: slytherin
        podSelector:
          matchLabels:
            conformance-house: slytherin
"#;

/// `pkg/crdtest/testdata/valid/deny-with-ports.yaml`.
const DENY_WITH_PORTS: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: deny-with-ports
spec:
  tier: Admin
  priority: 0
  subject:
    namespaces:
      matchLabels:
        kubernetes.io/metadata.name: sensitive-ns
  ingress:
    - action: Deny
      name: select-all-deny-all
      from:
      - pods:
          namespaceSelector:
            matchLabels: {}
          podSelector:
            matchLabels: {}
      protocols:
        - tcp:
            destinationPort:
              number: 8080
            # flags: [syn] # future extension example
        - tcp:
            destinationPort:
              range:
                start: 8080
                end: 9090
        - udp:
            destinationPort:
              number: 8080
        - udp:
            destinationPort:
              number: 9090
        - destinationNamedPort: http
        - destinationNamedPort: monitoring
"#;

/// `pkg/crdtest/testdata/invalid/invalid-ingress-action.yaml`.
const INVALID_ACTION: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: invalid-ingress-action
spec:
  tier: Admin
  priority: 10
  subject:
    namespaces:
      matchLabels:
        kubernetes.io/metadata.name: sensitive-ns
  ingress:
    - action: Invalid
      from:
      - namespaces:
         namespaceSelector: {}
      name: select-all-deny-all
"#;

/// `conformance/base/admin_tier/experimental-egress-selector-rules.yaml`,
/// its template ports filled in.
const NODES_AND_CIDRS: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: node-and-cidr-as-peers-example
spec:
  tier: Admin
  priority: 75
  subject:
    pods:
      namespaceSelector:
        matchLabels:
          conformance-house: gryffindor
      podSelector:
        matchLabels:
          conformance-house: gryffindor
  egress:
  - name: "allow-egress-to-34346-on-nodes"
    action: "Accept"
    to:
    - nodes:
        matchLabels:
          kubernetes.io/os: linux
    protocols:
      - tcp:
          destinationPort:
            number: 34346
  - name: "deny-egress-to-slytherin-and-nodes-and-internet"
    action: "Deny"
    to:
    - pods:
        namespaceSelector:
          matchLabels:
            conformance-house: slytherin
        podSelector:
          matchLabels:
            conformance-house: slytherin
    - nodes:
        matchLabels:
          kubernetes.io/os: linux
    - networks:
        - 0.0.0.0/0
        - ::/0
"#;

#[test]
fn upstream_objects_parse_and_are_accepted() {
    let mut c = compiler();
    let mut names = Vec::new();
    for yaml in [
        GRESS_RULES,
        INLINE_CIDR,
        PRIORITY_FIELD,
        DENY_WITH_PORTS,
        NODES_AND_CIDRS,
    ] {
        for obj in parse_all(yaml) {
            c.apply_cluster_policy(&obj)
                .unwrap_or_else(|e| panic!("{e}"));
            names.push(obj.metadata.name.unwrap());
        }
    }
    assert_eq!(names.len(), 7);
    assert!(c.rejections().is_empty());
    let rules = c.tier_rules();
    assert_eq!(rules.len(), 4 + 2 + 2 + 2 + 1 + 1 + 1 + 2);
    assert!(rules.iter().any(|r| r.policy == "default"
        && r.tier == "baseline"
        && r.name.as_deref() == Some("allow-all-ingress-from-slytherin")));
}

#[test]
fn upstream_objects_parse_field_for_field() {
    let obj = &parse_all(DENY_WITH_PORTS)[0];
    assert_eq!(obj.spec.tier, Some(ApiTier::Admin));
    assert_eq!(obj.spec.priority, Some(0));
    let rule = &obj.spec.ingress[0];
    assert_eq!(rule.action, Some(ClusterNetworkPolicyRuleAction::Deny));
    let protocols = rule.protocols.as_ref().unwrap();
    assert_eq!(protocols.len(), 6);
    let range = protocols[1].tcp.as_ref().unwrap().destination_port.as_ref();
    let range = range.unwrap().range.as_ref().unwrap();
    assert_eq!((range.start, range.end), (Some(8080), Some(9090)));
    assert_eq!(
        protocols[5].destination_named_port.as_deref(),
        Some("monitoring")
    );
    // Serialising gives back the same object.
    let back: ClusterNetworkPolicy =
        serde_json::from_value(serde_json::to_value(obj).unwrap()).unwrap();
    assert_eq!(&back, obj);
    let inline = &parse_all(INLINE_CIDR)[0];
    let nets = inline.spec.egress[1].to[0].networks.as_ref().unwrap();
    assert_eq!(nets, &["0.0.0.0/0", "::/0"]);
}

#[test]
fn upstream_invalid_objects_are_rejected() {
    assert_eq!(
        reject_obj(&parse_all(INVALID_ACTION)[0]),
        r#"ClusterNetworkPolicy invalid-ingress-action: spec.ingress[0].action: unsupported value "Invalid": must be one of Accept, Deny, Pass"#
    );
}

#[test]
fn unknown_values_and_fields_parse() {
    let obj: ClusterNetworkPolicy = serde_yaml_ng::from_str(
        r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: future}
spec:
  tier: Developer
  priority: 5
  subject: {namespaces: {}}
  futureSpecField: 1
  egress:
  - action: Log
    to:
    - services: {names: [dns]}
    protocols:
    - icmp: {type: 8}
    - tcp: {destinationPort: {number: 80}, flags: [syn]}
status:
  conditions: [{type: Ready}]
"#,
    )
    .unwrap();
    assert_eq!(obj.spec.tier, Some(ApiTier::Other("Developer".into())));
    let rule = &obj.spec.egress[0];
    assert_eq!(
        rule.action,
        Some(ClusterNetworkPolicyRuleAction::Other("Log".into()))
    );
    assert!(rule.to[0].unknown.contains_key("services"));
    let protocols = rule.protocols.as_ref().unwrap();
    assert!(protocols[0].unknown.contains_key("icmp"));
    assert!(
        protocols[1]
            .tcp
            .as_ref()
            .unwrap()
            .unknown
            .contains_key("flags")
    );
    // Unknown fields of a peer survive a round trip.
    let json = serde_json::to_value(&obj).unwrap();
    assert_eq!(
        json["spec"]["egress"][0]["to"][0]["services"]["names"][0],
        "dns"
    );
    assert_eq!(api::API_VERSION, "policy.networking.k8s.io/v1alpha2");
}

// ----- fail closed -------------------------------------------------------

fn egress_allowed(c: &Compiler, to: &str, p: u8, port: u16) -> bool {
    sim(
        c.state(),
        &PodRef::new("prod", "web"),
        direction::EGRESS,
        ip(to),
        p,
        port,
    )
    .unwrap()
}

/// Egress verdicts of prod/web towards a pod-free address, the given
/// address, on TCP 80 and 443, UDP 53 and ICMP.
fn egress_verdicts(c: &Compiler, to: &str) -> Vec<bool> {
    [
        (proto::TCP, 80),
        (proto::TCP, 443),
        (proto::UDP, 53),
        (ICMP, 0),
    ]
    .iter()
    .map(|&(p, port)| egress_allowed(c, to, p, port))
    .collect()
}

/// A compiler where a Baseline policy denies every egress of prod/web.
fn baseline_deny_all() -> Compiler {
    let mut c = compiler();
    let deny = serde_json::from_value(json!({
        "metadata": {"name": "baseline-deny"},
        "spec": {"tier": "Baseline", "priority": 100, "subject": {"namespaces": {}},
            "egress": [{"action": "Deny", "to": [{"networks": ["0.0.0.0/0", "::/0"]}]}]},
    }))
    .unwrap();
    c.apply_cluster_policy(&deny).unwrap();
    c.commit();
    assert_eq!(egress_verdicts(&c, "198.51.100.1"), [false; 4]);
    c
}

#[test]
fn unknown_peer_kind_in_a_deny_rule_denies_everything() {
    let mut c = compiler();
    assert_eq!(egress_verdicts(&c, "198.51.100.1"), [true; 4]);
    // The rule's own protocols do not narrow a "Deny all".
    c.apply_cluster_policy(&cnp(egress(json!({"action": "Deny",
        "to": [{"networks": ["192.0.2.0/24"]}, {"services": {"names": ["dns"]}}],
        "protocols": [{"tcp": {"destinationPort": {"number": 443}}}]}))))
        .unwrap();
    c.commit();
    assert_eq!(egress_verdicts(&c, "198.51.100.1"), [false; 4]);
    assert_eq!(egress_verdicts(&c, "10.0.1.1"), [false; 4]);
    let rules = c.tier_rules();
    assert_eq!(rules[0].action, "Deny");
}

#[test]
fn unknown_peer_kind_in_a_pass_rule_denies_everything() {
    // A Pass of everything would skip the Deny below; the API's reading
    // for Pass rules is "Deny all" too.
    let mut c = compiler();
    c.apply_cluster_policy(&cnp(spec(json!({"egress": [
        {"action": "Pass", "to": [{"services": {}}]},
        {"action": "Accept", "to": [{"networks": ["0.0.0.0/0"]}]},
    ]}))))
    .unwrap();
    c.commit();
    assert_eq!(egress_verdicts(&c, "198.51.100.1"), [false; 4]);
    assert_eq!(c.tier_rules()[0].action, "Deny");
}

#[test]
fn unknown_peer_kind_in_an_accept_rule_allows_nothing() {
    let mut c = baseline_deny_all();
    // The whole rule matches no traffic: not even its known peer.
    c.apply_cluster_policy(&cnp(egress(json!({"action": "Accept",
        "to": [{"networks": ["198.51.100.0/24"]}, {"services": {"names": ["dns"]}}]}))))
        .unwrap();
    c.commit();
    assert_eq!(egress_verdicts(&c, "198.51.100.1"), [false; 4]);
    assert_eq!(egress_verdicts(&c, "203.0.113.1"), [false; 4]);
    // Without the unknown peer the same rule accepts.
    c.apply_cluster_policy(&cnp(egress(
        json!({"action": "Accept", "to": [{"networks": ["198.51.100.0/24"]}]}),
    )))
    .unwrap();
    c.commit();
    assert_eq!(egress_verdicts(&c, "198.51.100.1"), [true; 4]);
    assert_eq!(egress_verdicts(&c, "203.0.113.1"), [false; 4]);
}

#[test]
fn unknown_protocol_kinds_fail_closed() {
    // Accept: the rule matches nothing.
    let mut c = baseline_deny_all();
    for unknown in [
        json!({"icmp": {"type": 8}}),
        json!({"tcp": {"destinationPort": {"number": 80}, "flags": ["syn"]}}),
        json!({"udp": {"destinationPort": {"list": [53, 54]}}}),
    ] {
        c.apply_cluster_policy(&cnp(egress(json!({"action": "Accept",
            "to": [{"networks": ["198.51.100.0/24"]}],
            "protocols": [{"tcp": {"destinationPort": {"number": 443}}}, unknown]}))))
            .unwrap();
        c.commit();
        assert_eq!(egress_verdicts(&c, "198.51.100.1"), [false; 4]);
    }
    // Deny: every port of every protocol of every peer.
    let mut c = compiler();
    c.apply_cluster_policy(&cnp(egress(json!({"action": "Deny",
        "to": [{"networks": ["198.51.100.0/24"]}],
        "protocols": [{"tcp": {"destinationPort": {"number": 443}}}, {"icmp": {}}]}))))
        .unwrap();
    c.commit();
    assert_eq!(egress_verdicts(&c, "198.51.100.1"), [false; 4]);
    assert_eq!(egress_verdicts(&c, "203.0.113.1"), [false; 4]);
}

#[test]
fn unknown_ingress_peer_kind_fails_closed_too() {
    let mut c = compiler();
    c.apply_cluster_policy(&cnp(ingress(
        json!({"action": "Deny", "from": [{"networks": ["10.0.0.0/8"]}]}),
    )))
    .unwrap();
    c.commit();
    let from = |a: &str| {
        sim(
            c.state(),
            &PodRef::new("prod", "web"),
            direction::INGRESS,
            ip(a),
            proto::TCP,
            80,
        )
        .unwrap()
    };
    assert!(!from("10.0.2.1") && !from("198.51.100.1"));
}
