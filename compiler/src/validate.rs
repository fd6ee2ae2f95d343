//! Validation and normalisation of the Kubernetes objects the compiler
//! consumes, with the API server's rules (`pkg/apis/networking/validation`,
//! metav1 label selector validation, core pod IP and port checks).
//!
//! Each function returns the normalised model or the first error, named by
//! object and field path, in the order the API server checks fields.
//!
//! CIDRs: parsed as the API server's legacy CIDR fields with strict
//! validation, except that an address with host bits set (`10.1.2.3/8`) is
//! accepted and truncated to its network, as API servers without
//! `StrictIPCIDRValidation` store such values and every implementation
//! masks them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use palisade_common::{direction, proto};

use crate::error::{CompileError, FieldError, ObjectKind, ObjectRef, Reason};
use crate::model::{
    IpBlock, NAMESPACE_NAME_LABEL, NamedPorts, NamespaceObj, NodeObj, PeerSelector, Peers, PodObj,
    PolicyObj, PolicyRef, Rule, RulePorts,
};
use crate::ports::{PortSet, class_index};
use crate::selector::{Selector, check_labels};
use crate::state::PodRef;

/// The annotation (on a NetworkPolicy or Namespace) that selects its mode.
pub const MODE_ANNOTATION: &str = "policy.palisade.dev/mode";
/// The annotation's value for audit mode (`enforce`, or absent, enforces).
pub const MODE_AUDIT: &str = "audit";

/// Whether annotations ask for audit mode.
pub(crate) fn mode_is_audit(annotations: Option<&BTreeMap<String, String>>) -> bool {
    annotations
        .and_then(|a| a.get(MODE_ANNOTATION))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(MODE_AUDIT))
}

/// Validates a namespace; returns its name, its effective labels
/// (including [`NAMESPACE_NAME_LABEL`] when the object lacks it) and its
/// mode.
pub(crate) fn namespace(ns: &Namespace) -> Result<(String, NamespaceObj), CompileError> {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let obj = ObjectRef::new(ObjectKind::Namespace, "", name.clone());
    if name.is_empty() {
        return Err(FieldError::new("metadata.name", Reason::Required).on(obj));
    }
    let mut labels = ns.metadata.labels.clone().unwrap_or_default();
    check_labels(&labels, "metadata.labels").map_err(|e| e.on(obj))?;
    labels
        .entry(NAMESPACE_NAME_LABEL.to_string())
        .or_insert_with(|| name.clone());
    let audit = mode_is_audit(ns.metadata.annotations.as_ref());
    Ok((name, NamespaceObj { labels, audit }))
}

fn names(
    kind: ObjectKind,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Result<(String, String, ObjectRef), CompileError> {
    let ns = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let obj = ObjectRef::new(kind, ns.clone(), name.clone());
    if name.is_empty() {
        return Err(FieldError::new("metadata.name", Reason::Required).on(obj));
    }
    if ns.is_empty() {
        return Err(FieldError::new("metadata.namespace", Reason::Required).on(obj));
    }
    Ok((ns, name, obj))
}

/// Parses a protocol name (`None` = TCP) into its class.
fn protocol(value: Option<&str>, path: &str) -> Result<u8, FieldError> {
    match value.unwrap_or("TCP") {
        "TCP" => Ok(proto::TCP),
        "UDP" => Ok(proto::UDP),
        "SCTP" => Ok(proto::SCTP),
        other => Err(FieldError::new(
            path,
            Reason::UnsupportedProtocol {
                value: other.to_string(),
            },
        )),
    }
}

pub(crate) fn port_number(value: i32, path: &str) -> Result<u16, FieldError> {
    if (1..=65535).contains(&value) {
        Ok(value as u16)
    } else {
        Err(FieldError::new(
            path,
            Reason::PortOutOfRange {
                value: value.into(),
            },
        ))
    }
}

fn port_name(name: &str, path: &str) -> Result<(), FieldError> {
    crate::syntax::check_port_name(name).map_err(|detail| {
        FieldError::new(
            path,
            Reason::InvalidPortName {
                name: name.to_string(),
                detail,
            },
        )
    })
}

fn ip(value: &str, path: &str) -> Result<IpAddr, FieldError> {
    IpAddr::from_str(value).map_err(|_| {
        FieldError::new(
            path,
            Reason::InvalidIp {
                value: value.to_string(),
            },
        )
    })
}

/// The `status.addresses` types that must hold an IP address.
const NODE_IP_TYPES: [&str; 2] = ["InternalIP", "ExternalIP"];

/// A cluster-scoped object's metadata: a name, and no namespace.
pub(crate) fn cluster_scoped(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    kind: ObjectKind,
) -> Result<(), FieldError> {
    if meta.name.as_deref().is_none_or(str::is_empty) {
        return Err(FieldError::new("metadata.name", Reason::Required));
    }
    if meta.namespace.as_deref().is_some_and(|n| !n.is_empty()) {
        return Err(FieldError::new(
            "metadata.namespace",
            Reason::ClusterScoped { kind },
        ));
    }
    Ok(())
}

/// Validates a Node (cluster-scoped); returns its name and what `nodes`
/// peers match: its labels and every address of `status.addresses` that
/// is an IP, whatever its type. An `InternalIP` or `ExternalIP` entry
/// that is not an IP address is an error (never skipped: a Deny rule
/// would then miss the address the node really has).
pub(crate) fn node(node: &Node) -> Result<(String, NodeObj), CompileError> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let obj = ObjectRef::new(ObjectKind::Node, "", name.clone());
    cluster_scoped(&node.metadata, ObjectKind::Node).map_err(|e| e.on(obj.clone()))?;
    let labels = node.metadata.labels.clone().unwrap_or_default();
    check_labels(&labels, "metadata.labels").map_err(|e| e.on(obj.clone()))?;
    let mut addrs = BTreeSet::new();
    let listed = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    for (i, a) in listed.into_iter().flatten().enumerate() {
        let path = format!("status.addresses[{i}].address");
        match IpAddr::from_str(&a.address) {
            Ok(addr) => {
                addrs.insert(addr);
            }
            Err(_) if NODE_IP_TYPES.contains(&a.type_.as_str()) => {
                return Err(ip(&a.address, &path).expect_err("not an IP").on(obj));
            }
            // A host or DNS name.
            Err(_) => {}
        }
    }
    Ok((name, NodeObj { labels, addrs }))
}

/// Validates a pod.
pub(crate) fn pod(pod: &Pod) -> Result<(PodRef, PodObj), CompileError> {
    let (ns, name, obj) = names(ObjectKind::Pod, &pod.metadata)?;
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    check_labels(&labels, "metadata.labels").map_err(|e| e.on(obj.clone()))?;
    let mut named = NamedPorts::new();
    let spec = pod.spec.as_ref();
    for (i, c) in spec
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        for (j, p) in c.ports.iter().flatten().enumerate() {
            let path = format!("spec.containers[{i}].ports[{j}]");
            let port = port_number(p.container_port, &format!("{path}.containerPort"))
                .map_err(|e| e.on(obj.clone()))?;
            let class = protocol(p.protocol.as_deref(), &format!("{path}.protocol"))
                .map_err(|e| e.on(obj.clone()))?;
            if let Some(n) = &p.name {
                port_name(n, &format!("{path}.name")).map_err(|e| e.on(obj.clone()))?;
                named.insert((n.clone(), class, port));
            }
        }
    }
    let status = pod.status.as_ref();
    let mut ips = BTreeSet::new();
    let listed = status
        .and_then(|s| s.pod_ips.as_ref())
        .filter(|v| !v.is_empty());
    if let Some(list) = listed {
        for (i, p) in list.iter().enumerate() {
            ips.insert(
                ip(&p.ip, &format!("status.podIPs[{i}].ip")).map_err(|e| e.on(obj.clone()))?,
            );
        }
    }
    if let Some(single) = status
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|s| !s.is_empty())
    {
        let a = ip(single, "status.podIP").map_err(|e| e.on(obj.clone()))?;
        if listed.is_none() {
            ips.insert(a);
        }
    }
    let phase = status.and_then(|s| s.phase.as_deref());
    Ok((
        PodRef {
            namespace: ns,
            name,
        },
        PodObj {
            uid: pod.metadata.uid.clone(),
            labels: Arc::new(labels),
            named_ports: Arc::new(named),
            ips: ips.into_iter().collect(),
            node: spec
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            terminated: matches!(phase, Some("Succeeded" | "Failed")),
        },
    ))
}

/// Validates a NetworkPolicy and applies the policyTypes defaulting.
pub(crate) fn policy(np: &NetworkPolicy) -> Result<(PolicyRef, PolicyObj), CompileError> {
    let (ns, name, obj) = names(ObjectKind::NetworkPolicy, &np.metadata)?;
    let compiled = policy_spec(np).map_err(|e| e.on(obj))?;
    Ok((
        PolicyRef {
            namespace: ns,
            name,
        },
        compiled,
    ))
}

fn policy_spec(np: &NetworkPolicy) -> Result<PolicyObj, FieldError> {
    let default_spec = Default::default();
    let spec = np.spec.as_ref().unwrap_or(&default_spec);
    let pod_selector = match &spec.pod_selector {
        Some(s) => Selector::compile(s, "spec.podSelector")?,
        None => Selector::everything(),
    };
    let mut ingress = Vec::new();
    for (i, r) in spec.ingress.iter().flatten().enumerate() {
        let path = format!("spec.ingress[{i}]");
        let ports = rule_ports(r.ports.as_deref(), &path)?;
        let peers = rule_peers(r.from.as_deref(), &format!("{path}.from"))?;
        ingress.push(Rule { peers, ports });
    }
    let mut egress = Vec::new();
    for (i, r) in spec.egress.iter().flatten().enumerate() {
        let path = format!("spec.egress[{i}]");
        let ports = rule_ports(r.ports.as_deref(), &path)?;
        let peers = rule_peers(r.to.as_deref(), &format!("{path}.to"))?;
        egress.push(Rule { peers, ports });
    }
    let types = spec.policy_types.as_deref().unwrap_or(&[]);
    if types.len() > 2 {
        return Err(FieldError::new(
            "spec.policyTypes",
            Reason::TooManyPolicyTypes { count: types.len() },
        ));
    }
    let (mut has_in, mut has_eg) = (false, false);
    for (i, t) in types.iter().enumerate() {
        match t.as_str() {
            "Ingress" => has_in = true,
            "Egress" => has_eg = true,
            other => {
                return Err(FieldError::new(
                    format!("spec.policyTypes[{i}]"),
                    Reason::UnsupportedPolicyType {
                        value: other.to_string(),
                    },
                ));
            }
        }
    }
    if types.is_empty() {
        // API defaulting: Ingress always, Egress iff there are egress rules.
        has_in = true;
        has_eg = !egress.is_empty();
    }
    let mut rules: [Option<Vec<Rule>>; 2] = [None, None];
    if has_in {
        rules[direction::INGRESS as usize] = Some(ingress);
    }
    if has_eg {
        rules[direction::EGRESS as usize] = Some(egress);
    }
    Ok(PolicyObj {
        pod_selector,
        rules,
        audit: mode_is_audit(np.metadata.annotations.as_ref()),
    })
}

fn rule_ports(
    ports: Option<&[NetworkPolicyPort]>,
    rule_path: &str,
) -> Result<RulePorts, FieldError> {
    let ports = ports.unwrap_or(&[]);
    if ports.is_empty() {
        // No ports: every port of every protocol, other protocols included.
        return Ok(RulePorts::all());
    }
    let mut numeric: [PortSet; 4] = Default::default();
    let mut named = Vec::new();
    for (j, p) in ports.iter().enumerate() {
        let path = format!("{rule_path}.ports[{j}]");
        let class = protocol(p.protocol.as_deref(), &format!("{path}.protocol"))?;
        let set = &mut numeric[class_index(class)];
        match &p.port {
            None => {
                if let Some(end) = p.end_port {
                    return Err(FieldError::new(
                        format!("{path}.endPort"),
                        Reason::EndPortWithoutPort { end },
                    ));
                }
                set.insert(0, u16::MAX);
            }
            Some(IntOrString::Int(n)) => {
                let lo = port_number(*n, &format!("{path}.port"))?;
                let hi = match p.end_port {
                    None => lo,
                    Some(end) => {
                        if end < *n {
                            return Err(FieldError::new(
                                format!("{path}.endPort"),
                                Reason::EndPortBelowPort { end, port: *n },
                            ));
                        }
                        port_number(end, &format!("{path}.endPort"))?
                    }
                };
                set.insert(lo, hi);
            }
            Some(IntOrString::String(name)) => {
                if let Some(end) = p.end_port {
                    return Err(FieldError::new(
                        format!("{path}.endPort"),
                        Reason::EndPortWithNamedPort { end },
                    ));
                }
                port_name(name, &format!("{path}.port"))?;
                if !named.contains(&(name.clone(), class)) {
                    named.push((name.clone(), class));
                }
            }
        }
    }
    Ok(RulePorts { numeric, named })
}

fn rule_peers(peers: Option<&[NetworkPolicyPeer]>, path: &str) -> Result<Peers, FieldError> {
    let peers = peers.unwrap_or(&[]);
    if peers.is_empty() {
        return Ok(Peers::All);
    }
    let mut selectors = Vec::new();
    let mut blocks = Vec::new();
    for (k, peer) in peers.iter().enumerate() {
        let p = format!("{path}[{k}]");
        let pods = peer
            .pod_selector
            .as_ref()
            .map(|s| Selector::compile(s, &format!("{p}.podSelector")))
            .transpose()?;
        let namespaces = peer
            .namespace_selector
            .as_ref()
            .map(|s| Selector::compile(s, &format!("{p}.namespaceSelector")))
            .transpose()?;
        let block = peer
            .ip_block
            .as_ref()
            .map(|b| ip_block(b, &format!("{p}.ipBlock")))
            .transpose()?;
        match (pods, namespaces, block) {
            (None, None, None) => return Err(FieldError::new(p, Reason::EmptyPeer)),
            (None, None, Some(b)) => blocks.push(b),
            (_, _, Some(_)) => return Err(FieldError::new(p, Reason::IpBlockWithOtherPeer)),
            (pods, namespaces, None) => selectors.push(PeerSelector {
                namespaces,
                pods: pods.unwrap_or_else(Selector::everything),
            }),
        }
    }
    Ok(Peers::Listed { selectors, blocks })
}

/// Parses a CIDR (see the module docs for the accepted forms).
pub(crate) fn cidr(value: &str, path: &str) -> Result<IpNet, FieldError> {
    let invalid = |detail: &str| {
        FieldError::new(
            path,
            Reason::InvalidCidr {
                value: value.to_string(),
                detail: detail.to_string(),
            },
        )
    };
    let Some((addr, len)) = value.split_once('/') else {
        return Err(invalid(
            "must be an address and a prefix length, e.g. 10.0.0.0/8",
        ));
    };
    if len.is_empty()
        || !len.bytes().all(|b| b.is_ascii_digit())
        || (len.len() > 1 && len.starts_with('0'))
    {
        return Err(invalid(
            "prefix length must be a decimal number without leading zeros",
        ));
    }
    let addr = IpAddr::from_str(addr).map_err(|_| invalid("not a valid IP address"))?;
    let len: u8 = len
        .parse()
        .map_err(|_| invalid("prefix length out of range"))?;
    let net = IpNet::new(addr, len).map_err(|_| invalid("prefix length out of range"))?;
    Ok(net.trunc())
}

fn ip_block(b: &IPBlock, path: &str) -> Result<IpBlock, FieldError> {
    if b.cidr.is_empty() {
        return Err(FieldError::new(format!("{path}.cidr"), Reason::Required));
    }
    let net = cidr(&b.cidr, &format!("{path}.cidr"))?;
    let mut except = Vec::new();
    for (i, e) in b.except.iter().flatten().enumerate() {
        let ep = format!("{path}.except[{i}]");
        let en = cidr(e, &ep)?;
        if !net.contains(&en.network()) || net.prefix_len() >= en.prefix_len() {
            return Err(FieldError::new(
                ep,
                Reason::ExceptNotStrictSubset {
                    except: e.clone(),
                    cidr: b.cidr.clone(),
                },
            ));
        }
        except.push(en);
    }
    except.sort();
    except.dedup();
    Ok(IpBlock { cidr: net, except })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_forms() {
        assert_eq!(cidr("10.1.2.3/8", "f").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            cidr("2001:db8::1/32", "f").unwrap().to_string(),
            "2001:db8::/32"
        );
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.0/08",
            "010.0.0.0/8",
            "x/8",
            "10.0.0.0/",
            "::/129",
        ] {
            assert!(cidr(bad, "f").is_err(), "{bad}");
        }
    }
}
