//! One test per validation error: the message names the object and the
//! field path, the object is listed among the rejections, and the last
//! valid version stays in force (a new invalid object is not applied).

mod common;

use common::*;
use palisade_common::{direction, endpoint_flags, proto};
use palisade_compiler::{Compiler, ObjectKind, ObjectRef, PodRef, Reason};
use serde_json::{Value, json};

/// Applies a policy `prod/allow-db` with `spec` and returns the error text.
fn reject(spec: Value) -> String {
    let mut c = Compiler::new(NODE);
    let err = c.apply_policy(&np("prod", "allow-db", spec)).unwrap_err();
    let obj = ObjectRef::new(ObjectKind::NetworkPolicy, "prod", "allow-db");
    assert_eq!(err.object, obj);
    assert_eq!(c.rejections().get(&obj), Some(&err));
    assert!(
        c.commit().ops.is_empty(),
        "nothing of a rejected policy is applied"
    );
    err.to_string()
}

fn ingress_ports(ports: Value) -> Value {
    json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}, ports]}]})
}

#[test]
fn end_port_below_port() {
    assert_eq!(
        reject(ingress_ports(json!({"port": 8080, "endPort": 80}))),
        "NetworkPolicy prod/allow-db: spec.ingress[0].ports[1].endPort: 80 must be >= port 8080"
    );
}

#[test]
fn end_port_with_named_port() {
    let m = reject(ingress_ports(json!({"port": "http", "endPort": 90})));
    assert!(m.starts_with("NetworkPolicy prod/allow-db: spec.ingress[0].ports[1].endPort: 90 may not be specified when port is non-numeric"), "{m}");
}

#[test]
fn end_port_without_port() {
    let m = reject(ingress_ports(json!({"endPort": 90})));
    assert!(m.starts_with("NetworkPolicy prod/allow-db: spec.ingress[0].ports[1].endPort: 90 may not be specified when port is not specified"), "{m}");
}

#[test]
fn end_port_out_of_range() {
    let m = reject(ingress_ports(json!({"port": 80, "endPort": 70000})));
    assert!(m.starts_with("NetworkPolicy prod/allow-db: spec.ingress[0].ports[1].endPort: 70000 must be between 1 and 65535"), "{m}");
}

#[test]
fn port_zero_and_too_large() {
    let m = reject(ingress_ports(json!({"port": 0})));
    assert!(m.starts_with("NetworkPolicy prod/allow-db: spec.ingress[0].ports[1].port: 0 must be between 1 and 65535"), "{m}");
    let m = reject(
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 65536}]}]}),
    );
    assert!(m.starts_with("NetworkPolicy prod/allow-db: spec.egress[0].ports[0].port: 65536 must be between 1 and 65535"), "{m}");
}

#[test]
fn unknown_protocol() {
    let m = reject(ingress_ports(json!({"port": 80, "protocol": "ICMP"})));
    assert!(m.starts_with(r#"NetworkPolicy prod/allow-db: spec.ingress[0].ports[1].protocol: unsupported protocol "ICMP""#), "{m}");
}

#[test]
fn invalid_named_ports() {
    for (name, detail) in [
        ("HTTP", "alpha-numeric"),
        ("80", "at least one letter"),
        ("-http", "begin or end"),
        ("ht--tp", "consecutive"),
        ("a-very-long-port-name", "15 characters"),
    ] {
        let m = reject(ingress_ports(json!({"port": name})));
        assert!(m.starts_with(&format!(r#"NetworkPolicy prod/allow-db: spec.ingress[0].ports[1].port: invalid port name "{name}""#)), "{m}");
        assert!(m.contains(detail), "{m}");
    }
}

#[test]
fn bad_cidr() {
    let m = reject(
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}),
    );
    assert!(m.starts_with(r#"NetworkPolicy prod/allow-db: spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR "10.0.0.0/33""#), "{m}");
    let m = reject(
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.1"}}]}]}),
    );
    assert!(
        m.contains("spec.ingress[0].from[0].ipBlock.cidr: invalid CIDR"),
        "{m}"
    );
    let m = reject(json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": ""}}]}]}));
    assert_eq!(
        m,
        "NetworkPolicy prod/allow-db: spec.ingress[0].from[0].ipBlock.cidr: required value"
    );
}

#[test]
fn bad_except() {
    let m = reject(
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [
        {"podSelector": {}},
        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "11.0.0.0/16"]}}]}]}),
    );
    assert_eq!(
        m,
        r#"NetworkPolicy prod/allow-db: spec.egress[0].to[1].ipBlock.except[1]: "11.0.0.0/16" must be a strict subset of cidr "10.0.0.0/8""#
    );
    let m = reject(
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]}]}),
    );
    assert!(
        m.contains("spec.ingress[0].from[0].ipBlock.except[0]") && m.contains("strict subset"),
        "{m}"
    );
    let m = reject(
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["2001:db8::/32"]}}]}]}),
    );
    assert!(m.contains("strict subset"), "{m}");
    let m = reject(
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/99"]}}]}]}),
    );
    assert!(
        m.contains("spec.ingress[0].from[0].ipBlock.except[0]: invalid CIDR"),
        "{m}"
    );
}

#[test]
fn empty_peer_and_ip_block_with_selector() {
    let m = reject(json!({"podSelector": {}, "ingress": [{"from": [{}]}]}));
    assert_eq!(
        m,
        "NetworkPolicy prod/allow-db: spec.ingress[0].from[0]: must specify a peer"
    );
    let m = reject(
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}}]}]}),
    );
    assert_eq!(
        m,
        "NetworkPolicy prod/allow-db: spec.ingress[0].from[0]: may not specify both ipBlock and another peer"
    );
}

#[test]
fn invalid_selector_operator() {
    let m = reject(
        json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["x"]}]}}),
    );
    assert!(m.starts_with(r#"NetworkPolicy prod/allow-db: spec.podSelector.matchExpressions[0].operator: "Equals" is not a valid selector operator"#), "{m}");
}

#[test]
fn in_and_not_in_need_values() {
    for op in ["In", "NotIn"] {
        let m = reject(
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": op}]}}]}]}),
        );
        assert_eq!(
            m,
            format!(
                "NetworkPolicy prod/allow-db: spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values: must be specified when operator is {op}"
            )
        );
    }
}

#[test]
fn exists_and_does_not_exist_forbid_values() {
    for op in ["Exists", "DoesNotExist"] {
        let m = reject(
            json!({"podSelector": {"matchExpressions": [{"key": "team", "operator": op, "values": ["a"]}]}}),
        );
        assert_eq!(
            m,
            format!(
                "NetworkPolicy prod/allow-db: spec.podSelector.matchExpressions[0].values: may not be specified when operator is {op}"
            )
        );
    }
}

#[test]
fn invalid_label_keys_and_values() {
    let m = reject(json!({"podSelector": {"matchLabels": {"bad key": "x"}}}));
    assert!(m.starts_with(r#"NetworkPolicy prod/allow-db: spec.podSelector.matchLabels: invalid label key "bad key""#), "{m}");
    let m = reject(json!({"podSelector": {"matchLabels": {"app": "-x"}}}));
    assert!(
        m.starts_with(
            r#"NetworkPolicy prod/allow-db: spec.podSelector.matchLabels: invalid label value "-x""#
        ),
        "{m}"
    );
    let m = reject(
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"podSelector": {"matchExpressions": [{"key": "/app", "operator": "Exists"}]}}]}]}),
    );
    assert!(m.starts_with(r#"NetworkPolicy prod/allow-db: spec.egress[0].to[0].podSelector.matchExpressions[0].key: invalid label key "/app""#), "{m}");
    let m = reject(
        json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["ok", "not ok"]}]}}),
    );
    assert!(m.starts_with(r#"NetworkPolicy prod/allow-db: spec.podSelector.matchExpressions[0].values[1]: invalid label value "not ok""#), "{m}");
}

#[test]
fn invalid_policy_types() {
    let m = reject(json!({"podSelector": {}, "policyTypes": ["Ingress", "Sideways"]}));
    assert_eq!(
        m,
        r#"NetworkPolicy prod/allow-db: spec.policyTypes[1]: unsupported policy type "Sideways": must be one of Ingress, Egress"#
    );
    let m = reject(json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress", "Ingress"]}));
    assert_eq!(
        m,
        "NetworkPolicy prod/allow-db: spec.policyTypes: may not specify more than two policyTypes (got 3)"
    );
}

#[test]
fn missing_names() {
    let mut c = Compiler::new(NODE);
    let nameless: k8s_openapi::api::networking::v1::NetworkPolicy =
        serde_json::from_value(json!({"metadata": {"namespace": "prod"}, "spec": {}})).unwrap();
    let e = c.apply_policy(&nameless).unwrap_err();
    assert_eq!(
        (e.field.as_str(), &*e.reason),
        ("metadata.name", &Reason::Required)
    );
    let nsless: k8s_openapi::api::networking::v1::NetworkPolicy =
        serde_json::from_value(json!({"metadata": {"name": "x"}, "spec": {}})).unwrap();
    assert_eq!(
        c.apply_policy(&nsless).unwrap_err().to_string(),
        "NetworkPolicy x: metadata.namespace: required value"
    );
}

#[test]
fn pod_with_malformed_ip_keeps_last_valid_version() {
    let mut c = Compiler::new(NODE);
    c.apply_pod(&pod(
        "prod",
        "web",
        &[("app", "web")],
        NODE,
        &["192.0.2.1"],
        &[],
    ))
    .unwrap();
    c.commit();
    let e = c
        .apply_pod(&pod(
            "prod",
            "web",
            &[("app", "db")],
            NODE,
            &["192.0.2.1", "192.0.2.300"],
            &[],
        ))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"Pod prod/web: status.podIPs[1].ip: invalid IP address "192.0.2.300""#
    );
    assert!(c.commit().ops.is_empty(), "the previous version stays");
    assert_eq!(c.rejections().len(), 1);
    assert!(
        c.state()
            .ipcache_exact4
            .contains_key(&"192.0.2.1".parse().unwrap())
    );
    // a later valid version clears the rejection
    c.apply_pod(&pod(
        "prod",
        "web",
        &[("app", "db")],
        NODE,
        &["192.0.2.2"],
        &[],
    ))
    .unwrap();
    assert!(c.rejections().is_empty());
    assert!(!c.commit().ops.is_empty());
}

#[test]
fn pod_with_invalid_container_ports() {
    let mut c = Compiler::new(NODE);
    let e = c
        .apply_pod(&pod(
            "prod",
            "web",
            &[],
            NODE,
            &["192.0.2.1"],
            &[("Web", "TCP", 80)],
        ))
        .unwrap_err();
    assert!(
        e.to_string().starts_with(
            r#"Pod prod/web: spec.containers[0].ports[0].name: invalid port name "Web""#
        ),
        "{e}"
    );
    let e = c
        .apply_pod(&pod(
            "prod",
            "web",
            &[],
            NODE,
            &["192.0.2.1"],
            &[("web", "ICMP", 80)],
        ))
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Pod prod/web: spec.containers[0].ports[0].protocol"),
        "{e}"
    );
    let e = c
        .apply_pod(&pod(
            "prod",
            "web",
            &[],
            NODE,
            &["192.0.2.1"],
            &[("web", "TCP", 0)],
        ))
        .unwrap_err();
    assert!(
        e.to_string().starts_with(
            "Pod prod/web: spec.containers[0].ports[0].containerPort: 0 must be between"
        ),
        "{e}"
    );
}

#[test]
fn namespace_with_invalid_label() {
    let mut c = Compiler::new(NODE);
    let e = c
        .apply_namespace(&ns("prod", &[("team", "a b")]))
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with(r#"Namespace prod: metadata.labels: invalid label value "a b""#),
        "{e}"
    );
}

#[test]
fn replaced_policy_keeps_the_last_valid_version_until_fixed_or_deleted() {
    let mut c = Compiler::new(NODE);
    c.apply_pod(&pod(
        "prod",
        "db",
        &[("app", "db")],
        NODE,
        &["192.0.2.1"],
        &[],
    ))
    .unwrap();
    let good = np(
        "prod",
        "allow-db",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 5432}]}]}),
    );
    c.apply_policy(&good).unwrap();
    c.commit();
    let allowed = |c: &Compiler, port| {
        sim(
            c.state(),
            &PodRef::new("prod", "db"),
            direction::INGRESS,
            ip("198.51.100.1"),
            proto::TCP,
            port,
        )
        .unwrap()
    };
    assert!(allowed(&c, 5432) && !allowed(&c, 80));
    // an update that would open everything but is invalid changes nothing
    let bad = np(
        "prod",
        "allow-db",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 0}]}, {}]}),
    );
    assert!(c.apply_policy(&bad).is_err());
    assert!(c.commit().ops.is_empty());
    assert!(allowed(&c, 5432) && !allowed(&c, 80));
    assert_eq!(c.rejections().len(), 1);
    // deleting the object removes its last valid version and the rejection
    c.delete_policy("prod", "allow-db");
    c.commit();
    assert!(c.rejections().is_empty());
    assert_eq!(
        c.state().endpoints[&PodRef::new("prod", "db")].flags & endpoint_flags::ISOLATED_INGRESS,
        0
    );
}
