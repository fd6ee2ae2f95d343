//! Validation and normalisation of ClusterNetworkPolicies
//! (`policy.networking.k8s.io/v1alpha2`, network-policy-api v0.2.0): the
//! CRD's OpenAPI schema and CEL rules, checked on an [`api`] object, and
//! its translation into the validated model ([`ClusterPolicyObj`], rules in
//! the shape `TierRule` documents).
//!
//! Like `validate.rs` (whose helpers it shares: label selectors, CIDRs,
//! port numbers, the audit annotation) it returns the first error, named
//! by object and field path, in the order the API server checks fields.
//!
//! # What is checked
//!
//! The v0.2.0 CRD (standard and experimental channels): `metadata.name`
//! set and no namespace (the object is cluster-scoped); `tier` one of
//! `Admin`, `Baseline`; `priority` in `0..=1000`; `subject`, every peer,
//! every `protocols` entry and every `destinationPort` with exactly one
//! field; `podSelector` of `pods` present; at most 25 rules per direction;
//! `from`/`to` 1 to 25 peers; `protocols`, `networks` and `domainNames`
//! 1 to 25 items when present, `networks` and `domainNames` without
//! duplicates (they are sets); rule `name` at most 100 characters; port
//! numbers in `1..=65535`, range `start < end` (the CRD's CEL rule is
//! strict); `tcp`/`udp`/`sctp` not empty; `networks` items at most 43
//! characters and `isCIDR`: the Kubernetes CEL `isCIDR` (Go
//! `netip.ParsePrefix`) accepts host bits (`10.1.2.3/8` is kept as
//! `10.0.0.0/8`, as [`crate::validate::cidr`] does) and refuses zones,
//! leading zeros and IPv4-mapped IPv6 addresses; and the experimental
//! channel's CEL rule on egress rules: no `destinationNamedPort` in a rule
//! with `networks`, `nodes` or `domainNames` peers (the Go docs say so for
//! both channels: "You can't use this in a rule that targets resources
//! without named ports (e.g. Nodes or Networks)").
//!
//! Beyond the CRD: label selectors are validated as metav1 does (the CRD
//! does not check operators, keys or values; a selector this compiler
//! cannot evaluate is refused rather than guessed at). `destinationNamedPort`
//! is *not* checked to be an IANA service name: the CRD accepts any
//! string, and a name no container port can carry simply matches nothing,
//! which is what the API means.
//!
//! `nodes` peers keep their selector: the engine matches it against the
//! Node objects it knows and puts every address of every selected node
//! into the rule as a `/32` or `/128` block (`cluster.rs`).
//!
//! Refused although valid: `domainNames` peers ("... are not supported
//! yet"), after the schema checks. `domainNames` is Accept-only, so
//! refusing never loosens.
//!
//! Unknown enumeration values (`tier`, `action`) are refused, as the v0.2.0
//! CRD's enums do; the API defines no fail-closed reading for them.
//!
//! # Fail closed
//!
//! The Go docs of `ClusterNetworkPolicyIngressPeer` and
//! `ClusterNetworkPolicyEgressPeer`: "If an implementation sees no fields
//! are set then it can infer that the deployed CRD is of an incompatible
//! version with an unknown field. In that case it should fail closed. For
//! "Accept" rules, "fail closed" means: "treat the rule as matching no
//! traffic". For "Deny" and "Pass" rules, "fail closed" means: "treat the
//! rule as a 'Deny all' rule"."
//!
//! This follows those sentences literally, for the whole rule: a rule
//! with a peer whose only field is one this version does not know
//! - Accept: matches no traffic (no peers);
//! - Deny or Pass: becomes a Deny of everything ([`Peers::All`], every
//!   port of every protocol). A Pass is not kept as a Pass of everything,
//!   which would skip the tier's later Deny rules: the docs say 'Deny all'.
//!
//! The docs give protocols no sentence of their own, but the list of
//! one-of entries was chosen (NPEP-187, "Support older clients") so that
//! older clients can see fields they do not understand and "fail closed";
//! the only meaning the API gives that phrase is the one above, so a
//! `protocols` entry of an unknown kind (an unknown field in the entry, in
//! its `tcp`/`udp`/`sctp`, or in its `destinationPort`) is read the same
//! way. Two fields (one known) in a one-of are invalid, as the CRD's
//! `maxProperties: 1` makes them, whatever the second one is.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use palisade_common::proto;

use crate::api::{
    self, ClusterNetworkPolicy, ClusterNetworkPolicyProtocol, ClusterNetworkPolicyProtocolPorts,
    ClusterNetworkPolicyRuleAction, ClusterNetworkPolicySubject, NamespacedPod, UnknownFields,
};
use crate::error::{CompileError, FieldError, ObjectKind, ObjectRef, Reason};
use crate::model::{
    Action, ClusterPolicyObj, IpBlock, PeerSelector, Peers, Rule, RulePorts, Subject, Tier,
    TierRule,
};
use crate::ports::{PortSet, class_index};
use crate::selector::Selector;
use crate::validate::{cidr, mode_is_audit, port_number};

/// `maxItems` of `ingress`, `egress`, `from`, `to`, `protocols`,
/// `networks` and `domainNames`.
const MAX_ITEMS: usize = 25;
/// `maxLength` of a rule's `name`.
const MAX_RULE_NAME: usize = 100;
/// `maxLength` of a `networks` item.
const MAX_CIDR: usize = 43;
/// `maximum` of `priority`.
const MAX_PRIORITY: i32 = 1000;

/// Validates a ClusterNetworkPolicy; returns its name and its model.
pub(crate) fn cluster_policy(
    cnp: &ClusterNetworkPolicy,
) -> Result<(String, ClusterPolicyObj), CompileError> {
    let name = cnp.metadata.name.clone().unwrap_or_default();
    let obj = ObjectRef::new(ObjectKind::ClusterNetworkPolicy, "", name.clone());
    let model = object(cnp).map_err(|e| e.on(obj))?;
    Ok((name, model))
}

fn object(cnp: &ClusterNetworkPolicy) -> Result<ClusterPolicyObj, FieldError> {
    if let Some(v) = cnp.api_version.as_deref()
        && v != api::API_VERSION
    {
        return Err(unsupported("apiVersion", v, api::API_VERSION));
    }
    if let Some(k) = cnp.kind.as_deref()
        && k != api::KIND
    {
        return Err(unsupported("kind", k, api::KIND));
    }
    crate::validate::cluster_scoped(&cnp.metadata, ObjectKind::ClusterNetworkPolicy)?;
    let spec = &cnp.spec;
    let tier = match &spec.tier {
        None => return Err(FieldError::new("spec.tier", Reason::Required)),
        Some(api::Tier::Admin) => Tier::Admin,
        Some(api::Tier::Baseline) => Tier::Baseline,
        Some(api::Tier::Other(v)) => return Err(unsupported("spec.tier", v, "Admin, Baseline")),
    };
    let priority = match spec.priority {
        None => return Err(FieldError::new("spec.priority", Reason::Required)),
        Some(p) if (0..=MAX_PRIORITY).contains(&p) => p as u16,
        Some(p) => {
            return Err(FieldError::new(
                "spec.priority",
                Reason::OutOfRange {
                    value: p.into(),
                    min: 0,
                    max: MAX_PRIORITY.into(),
                },
            ));
        }
    };
    let subject = subject(spec.subject.as_ref())?;
    max_items(spec.ingress.len(), "spec.ingress")?;
    max_items(spec.egress.len(), "spec.egress")?;
    let mut ingress = Vec::new();
    for (i, r) in spec.ingress.iter().enumerate() {
        let peers: Vec<PeerFields> = r
            .from
            .iter()
            .map(|p| PeerFields {
                namespaces: p.namespaces.as_ref(),
                pods: p.pods.as_ref(),
                nodes: None,
                networks: None,
                domain_names: None,
                unknown: &p.unknown,
            })
            .collect();
        ingress.push(rule(
            &format!("spec.ingress[{i}]"),
            RuleFields {
                name: r.name.as_deref(),
                action: r.action.as_ref(),
                peers_field: "from",
                allowed_peers: "namespaces, pods",
                peers: &peers,
                protocols: r.protocols.as_deref(),
            },
        )?);
    }
    let mut egress = Vec::new();
    for (i, r) in spec.egress.iter().enumerate() {
        let peers: Vec<PeerFields> =
            r.to.iter()
                .map(|p| PeerFields {
                    namespaces: p.namespaces.as_ref(),
                    pods: p.pods.as_ref(),
                    nodes: p.nodes.as_ref(),
                    networks: p.networks.as_deref(),
                    domain_names: p.domain_names.as_deref(),
                    unknown: &p.unknown,
                })
                .collect();
        egress.push(rule(
            &format!("spec.egress[{i}]"),
            RuleFields {
                name: r.name.as_deref(),
                action: r.action.as_ref(),
                peers_field: "to",
                allowed_peers: "namespaces, pods, nodes, networks, domainNames",
                peers: &peers,
                protocols: r.protocols.as_deref(),
            },
        )?);
    }
    Ok(ClusterPolicyObj {
        tier,
        priority,
        subject,
        rules: [ingress, egress],
        audit: mode_is_audit(cnp.metadata.annotations.as_ref()),
    })
}

fn unsupported(path: &str, value: &str, allowed: &'static str) -> FieldError {
    FieldError::new(
        path,
        Reason::UnsupportedValue {
            value: value.to_string(),
            allowed,
        },
    )
}

fn max_items(count: usize, path: &str) -> Result<(), FieldError> {
    if count > MAX_ITEMS {
        return Err(FieldError::new(
            path,
            Reason::TooManyItems {
                count,
                max: MAX_ITEMS,
            },
        ));
    }
    Ok(())
}

/// `minItems: 1`, `maxItems: 25` (absent lists are empty).
fn item_count(count: usize, path: &str) -> Result<(), FieldError> {
    if count == 0 {
        return Err(FieldError::new(path, Reason::TooFewItems { min: 1 }));
    }
    max_items(count, path)
}

/// Exactly one of `given` (the names of the fields set), `allowed` naming
/// the fields this version knows.
fn exactly_one(given: Vec<String>, allowed: &'static str, path: &str) -> Result<(), FieldError> {
    if given.len() == 1 {
        return Ok(());
    }
    Err(FieldError::new(
        path,
        Reason::ExactlyOneOf { allowed, given },
    ))
}

/// The fields of `unknown` that are set (a `null` is no value).
fn unknown_set(unknown: &UnknownFields) -> impl Iterator<Item = String> + '_ {
    unknown
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, _)| k.clone())
}

fn subject(s: Option<&ClusterNetworkPolicySubject>) -> Result<Subject, FieldError> {
    let Some(s) = s else {
        return Err(FieldError::new("spec.subject", Reason::Required));
    };
    let mut given = Vec::new();
    if s.namespaces.is_some() {
        given.push("namespaces".to_string());
    }
    if s.pods.is_some() {
        given.push("pods".to_string());
    }
    exactly_one(given, "namespaces, pods", "spec.subject")?;
    if let Some(ns) = &s.namespaces {
        return Ok(Subject::Namespaces(Selector::compile(
            ns,
            "spec.subject.namespaces",
        )?));
    }
    let pods = s.pods.as_ref().expect("exactly one field");
    let (namespaces, pods) = namespaced(pods, "spec.subject.pods")?;
    Ok(Subject::Pods { namespaces, pods })
}

fn namespaced(p: &NamespacedPod, path: &str) -> Result<(Selector, Selector), FieldError> {
    let namespaces =
        Selector::compile(&p.namespace_selector, &format!("{path}.namespaceSelector"))?;
    let Some(pods) = &p.pod_selector else {
        return Err(FieldError::new(
            format!("{path}.podSelector"),
            Reason::Required,
        ));
    };
    let pods = Selector::compile(pods, &format!("{path}.podSelector"))?;
    Ok((namespaces, pods))
}

/// An ingress or egress peer, by reference (ingress peers have no
/// `nodes`, `networks` or `domainNames`).
struct PeerFields<'a> {
    namespaces: Option<&'a LabelSelector>,
    pods: Option<&'a NamespacedPod>,
    nodes: Option<&'a LabelSelector>,
    networks: Option<&'a [String]>,
    domain_names: Option<&'a [String]>,
    unknown: &'a UnknownFields,
}

impl PeerFields<'_> {
    /// Whether the peer has no named ports (the CEL rule's `has(...)`).
    fn without_named_ports(&self) -> bool {
        self.networks.is_some() || self.nodes.is_some() || self.domain_names.is_some()
    }
}

/// A validated peer.
enum PeerKind {
    Selector(PeerSelector),
    Networks(Vec<IpNet>),
    Nodes(Selector),
    /// Valid, but not enforced by this version: refuse the object (at this
    /// path) once the schema checks pass.
    Unsupported(String, &'static str),
    /// A kind this version does not know: fail closed.
    Unknown,
}

fn peer(p: &PeerFields, allowed: &'static str, path: &str) -> Result<PeerKind, FieldError> {
    let mut given: Vec<String> = [
        ("namespaces", p.namespaces.is_some()),
        ("pods", p.pods.is_some()),
        ("nodes", p.nodes.is_some()),
        ("networks", p.networks.is_some()),
        ("domainNames", p.domain_names.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(n, _)| n.to_string())
    .collect();
    given.extend(unknown_set(p.unknown));
    exactly_one(given, allowed, path)?;
    if let Some(ns) = p.namespaces {
        let namespaces = Selector::compile(ns, &format!("{path}.namespaces"))?;
        return Ok(PeerKind::Selector(PeerSelector {
            namespaces: Some(namespaces),
            pods: Selector::everything(),
        }));
    }
    if let Some(pods) = p.pods {
        let (namespaces, pods) = namespaced(pods, &format!("{path}.pods"))?;
        return Ok(PeerKind::Selector(PeerSelector {
            namespaces: Some(namespaces),
            pods,
        }));
    }
    if let Some(nodes) = p.nodes {
        let nodes = Selector::compile(nodes, &format!("{path}.nodes"))?;
        return Ok(PeerKind::Nodes(nodes));
    }
    if let Some(nets) = p.networks {
        return networks(nets, &format!("{path}.networks")).map(PeerKind::Networks);
    }
    if let Some(names) = p.domain_names {
        let at = format!("{path}.domainNames");
        item_count(names.len(), &at)?;
        no_duplicates(names, &at)?;
        return Ok(PeerKind::Unsupported(at, "domainNames peers"));
    }
    Ok(PeerKind::Unknown)
}

fn no_duplicates(values: &[String], path: &str) -> Result<(), FieldError> {
    let mut seen = BTreeSet::new();
    for (i, v) in values.iter().enumerate() {
        if !seen.insert(v) {
            return Err(FieldError::new(
                format!("{path}[{i}]"),
                Reason::Duplicate { value: v.clone() },
            ));
        }
    }
    Ok(())
}

fn networks(values: &[String], path: &str) -> Result<Vec<IpNet>, FieldError> {
    item_count(values.len(), path)?;
    for (i, v) in values.iter().enumerate() {
        let len = v.chars().count();
        if len > MAX_CIDR {
            return Err(FieldError::new(
                format!("{path}[{i}]"),
                Reason::TooLong { len, max: MAX_CIDR },
            ));
        }
    }
    no_duplicates(values, path)?;
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let net = cidr(v, &at)?;
        // `isCIDR` refuses IPv4-mapped IPv6 addresses (of the address as
        // written, before masking).
        let mapped = v
            .split_once('/')
            .and_then(|(a, _)| a.parse::<IpAddr>().ok())
            .is_some_and(|a| matches!(a, IpAddr::V6(a6) if a6.to_ipv4_mapped().is_some()));
        if mapped {
            return Err(FieldError::new(
                at,
                Reason::InvalidCidr {
                    value: v.clone(),
                    detail: "IPv4-mapped IPv6 address is not allowed".into(),
                },
            ));
        }
        if !out.contains(&net) {
            out.push(net);
        }
    }
    Ok(out)
}

/// A validated `protocols` entry.
enum ProtoKind {
    /// `(protocol, first port, last port)`.
    Ports(u8, u16, u16),
    /// `destinationNamedPort`.
    Named(String),
    /// A kind this version does not know: fail closed.
    Unknown,
}

fn protocol(e: &ClusterNetworkPolicyProtocol, path: &str) -> Result<ProtoKind, FieldError> {
    let mut given: Vec<String> = [
        ("tcp", e.tcp.is_some()),
        ("udp", e.udp.is_some()),
        ("sctp", e.sctp.is_some()),
        ("destinationNamedPort", e.destination_named_port.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(n, _)| n.to_string())
    .collect();
    given.extend(unknown_set(&e.unknown));
    exactly_one(given, "tcp, udp, sctp, destinationNamedPort", path)?;
    let by_proto = [
        (&e.tcp, proto::TCP, "tcp"),
        (&e.udp, proto::UDP, "udp"),
        (&e.sctp, proto::SCTP, "sctp"),
    ];
    for (ports, class, field) in by_proto {
        if let Some(p) = ports {
            return protocol_ports(p, class, &format!("{path}.{field}"));
        }
    }
    match &e.destination_named_port {
        Some(name) => Ok(ProtoKind::Named(name.clone())),
        None => Ok(ProtoKind::Unknown),
    }
}

/// `tcp`, `udp` or `sctp`: at least one attribute (all ANDed).
fn protocol_ports(
    p: &ClusterNetworkPolicyProtocolPorts,
    class: u8,
    path: &str,
) -> Result<ProtoKind, FieldError> {
    let port = p
        .destination_port
        .as_ref()
        .map(|d| destination_port(d, &format!("{path}.destinationPort")))
        .transpose()?;
    if unknown_set(&p.unknown).next().is_some() {
        return Ok(ProtoKind::Unknown);
    }
    match port {
        None => Err(FieldError::new(
            format!("{path}.destinationPort"),
            Reason::Required,
        )),
        Some(None) => Ok(ProtoKind::Unknown),
        Some(Some((lo, hi))) => Ok(ProtoKind::Ports(class, lo, hi)),
    }
}

/// A port or range; `None` for a kind this version does not know.
fn destination_port(p: &api::Port, path: &str) -> Result<Option<(u16, u16)>, FieldError> {
    let mut given: Vec<String> = [("number", p.number.is_some()), ("range", p.range.is_some())]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(n, _)| n.to_string())
        .collect();
    given.extend(unknown_set(&p.unknown));
    exactly_one(given, "number, range", path)?;
    if let Some(n) = p.number {
        let n = port_number(n, &format!("{path}.number"))?;
        return Ok(Some((n, n)));
    }
    let Some(r) = &p.range else {
        return Ok(None);
    };
    let bound = |v: Option<i32>, field: &str| {
        let at = format!("{path}.range.{field}");
        match v {
            None => Err(FieldError::new(at, Reason::Required)),
            Some(v) => port_number(v, &at).map(|p| (v, p)),
        }
    };
    let (start, lo) = bound(r.start, "start")?;
    let (end, hi) = bound(r.end, "end")?;
    if start >= end {
        return Err(FieldError::new(
            format!("{path}.range"),
            Reason::RangeNotIncreasing { start, end },
        ));
    }
    Ok(Some((lo, hi)))
}

/// An ingress or egress rule, by reference.
struct RuleFields<'a> {
    name: Option<&'a str>,
    action: Option<&'a ClusterNetworkPolicyRuleAction>,
    /// `from` or `to`.
    peers_field: &'static str,
    /// The peer fields this version knows, for messages.
    allowed_peers: &'static str,
    peers: &'a [PeerFields<'a>],
    protocols: Option<&'a [ClusterNetworkPolicyProtocol]>,
}

fn rule(path: &str, r: RuleFields) -> Result<TierRule, FieldError> {
    if let Some(n) = r.name {
        let len = n.chars().count();
        if len > MAX_RULE_NAME {
            return Err(FieldError::new(
                format!("{path}.name"),
                Reason::TooLong {
                    len,
                    max: MAX_RULE_NAME,
                },
            ));
        }
    }
    let action = match r.action {
        None => return Err(FieldError::new(format!("{path}.action"), Reason::Required)),
        Some(ClusterNetworkPolicyRuleAction::Accept) => Action::Accept,
        Some(ClusterNetworkPolicyRuleAction::Deny) => Action::Deny,
        Some(ClusterNetworkPolicyRuleAction::Pass) => Action::Pass,
        Some(ClusterNetworkPolicyRuleAction::Other(v)) => {
            return Err(unsupported(
                &format!("{path}.action"),
                v,
                "Accept, Deny, Pass",
            ));
        }
    };
    let peers_path = format!("{path}.{}", r.peers_field);
    item_count(r.peers.len(), &peers_path)?;
    let peers = r
        .peers
        .iter()
        .enumerate()
        .map(|(k, p)| peer(p, r.allowed_peers, &format!("{peers_path}[{k}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let protocols = match r.protocols {
        None => None,
        Some(list) => {
            item_count(list.len(), &format!("{path}.protocols"))?;
            Some(
                list.iter()
                    .enumerate()
                    .map(|(j, e)| protocol(e, &format!("{path}.protocols[{j}]")))
                    .collect::<Result<Vec<_>, _>>()?,
            )
        }
    };
    // The CEL rule of egress rules (experimental channel).
    let named = r
        .protocols
        .is_some_and(|l| l.iter().any(|e| e.destination_named_port.is_some()));
    if named && r.peers.iter().any(PeerFields::without_named_ports) {
        return Err(FieldError::new(path, Reason::NamedPortWithoutPods));
    }
    for p in &peers {
        if let PeerKind::Unsupported(at, what) = p {
            return Err(FieldError::new(at.clone(), Reason::NotSupported { what }));
        }
    }
    let name = r.name.filter(|n| !n.is_empty()).map(str::to_string);
    let unknown = peers.iter().any(|p| matches!(p, PeerKind::Unknown))
        || protocols
            .iter()
            .flatten()
            .any(|e| matches!(e, ProtoKind::Unknown));
    if unknown {
        // Fail closed (see the module documentation).
        let (action, peers, ports) = match action {
            Action::Accept => (
                Action::Accept,
                Peers::Listed {
                    selectors: Vec::new(),
                    blocks: Vec::new(),
                },
                RulePorts {
                    numeric: Default::default(),
                    named: Vec::new(),
                },
            ),
            Action::Deny | Action::Pass => (Action::Deny, Peers::All, RulePorts::all()),
        };
        return Ok(TierRule {
            name,
            action,
            rule: Rule { peers, ports },
            nodes: Vec::new(),
        });
    }
    let mut selectors = Vec::new();
    let mut blocks: Vec<IpBlock> = Vec::new();
    let mut nodes = Vec::new();
    for p in peers {
        match p {
            PeerKind::Selector(s) => selectors.push(s),
            PeerKind::Nodes(s) => nodes.push(s),
            PeerKind::Networks(nets) => {
                for cidr in nets {
                    if !blocks.iter().any(|b| b.cidr == cidr) {
                        blocks.push(IpBlock {
                            cidr,
                            except: Vec::new(),
                        });
                    }
                }
            }
            PeerKind::Unsupported(..) | PeerKind::Unknown => unreachable!("handled above"),
        }
    }
    let ports = match protocols {
        None => RulePorts::all(),
        Some(entries) => {
            let mut numeric: [PortSet; 4] = Default::default();
            let mut named = Vec::new();
            for e in entries {
                match e {
                    ProtoKind::Ports(class, lo, hi) => numeric[class_index(class)].insert(lo, hi),
                    ProtoKind::Named(n) => {
                        // A named port resolves on the container port of
                        // that name, whatever its protocol.
                        for class in [proto::TCP, proto::UDP, proto::SCTP] {
                            if !named.contains(&(n.clone(), class)) {
                                named.push((n.clone(), class));
                            }
                        }
                    }
                    ProtoKind::Unknown => unreachable!("handled above"),
                }
            }
            RulePorts { numeric, named }
        }
    };
    Ok(TierRule {
        name,
        action,
        rule: Rule {
            peers: Peers::Listed { selectors, blocks },
            ports,
        },
        nodes,
    })
}
