//! The cases of the cyclonus generator (kubernetes-sigs/network-policy-api
//! `cmd/policy-assistant/pkg/generator`) that apply to NetworkPolicy v1,
//! built here one Rust function per upstream generator function: the same
//! policies, the same steps. Expectations are not written down: every step
//! probes every ordered pair of pods on ports 80 and 81 over TCP, UDP and
//! SCTP (upstream's `ProbeAllAvailable`), in IPv4 and IPv6, and expects what
//! `model.rs` computes, as cyclonus does with its matcher.
//!
//! | upstream (`generator/<file>.go` function)      | cases | here |
//! |------------------------------------------------|------:|-----:|
//! | targetcases.go `TargetTestCases`               |     6 |    6 |
//! | rulescases.go `RulesTestCases`                 |     4 |    4 |
//! | peerscases.go `PeersTestCases` (zero/single/two peers) | 2 + 20 + 90 | 112 |
//! | portprotocolcases.go `PortProtocolTestCases` (zero/single/two) | 2 + 54 + 14 | 70 |
//! | examplecases.go `ExampleTestCases`             |     1 |    1 |
//! | actioncases.go `ActionTestCases`               |     6 |    6 |
//! | conflictcases.go `ConflictTestCases`           |    16 |   16 |
//! | namespacecases.go `NamespaceTestCases`         |     2 |    2 |
//! | upstreame2ecases.go `UpstreamE2ETestCases`     |    13 |    0 (in `cases.yaml`) |
//!
//! Each case's `source` names the upstream file, function and description.
//!
//! Mapping to the lab:
//! - Namespaces x, y, z with pods a, b, c labelled `ns: <name>` and
//!   `pod: <name>`, as cyclonus' defaults (and its constants.go selectors),
//!   so no constant needed changing; `kubernetes.io/metadata.name` is set
//!   on every namespace as the API server does.
//! - The generator's `PodIP` parameter is pod z/c's address, as upstream's
//!   `generate` command passes it (kubernetes-sigs/network-policy-api
//!   cmd/policy-assistant/pkg/cli/generate.go `RunGenerateCommand`):
//!   `MakeCIDRFromZeroes(PodIP, 8)` and `(PodIP, 4)` become
//!   `${zeroes:z/c:8}` and `${zeroes:z/c:4}` (a /24 and /28 in IPv4, a /120
//!   and /124 in IPv6), so such cases run once per family. With the lab's
//!   address plan the /24 holds the six pods of node n1 and the /28 holds
//!   all six too, so "ipblock with except" selects no pod (which pods the
//!   except takes depends on the addresses; `cases.yaml` has a case whose
//!   excepts take single pods).
//! - conflictcases.go's literal IPv4 blocks `0.0.0.0/0` (all) and
//!   `0.0.0.0/31` (no pod) are, in the IPv6 run, `::/0` and `::/127`.
//! - Probes go to pod addresses (cyclonus' default is the service name;
//!   through a service the connection reaches the same pod after DNAT, and
//!   policies judge pod addresses either way).
//! - `AllowDNS` is false: the lab has no DNS and probes by address, so no
//!   `allow-dns` policy is added to the conflict cases. The `AllowDNSRule`
//!   that is part of `baseTestPolicy`'s egress is kept (port 53 is never
//!   probed, so it changes no expectation).
//!
//! - Pods and namespaces that steps create (actioncases.go "Create/delete
//!   namespace": namespace y-2 labelled `ns: y` with pods a, b;
//!   "Create/delete pod": x/d; examplecases.go "should allow ingress access
//!   on one named port": namespace w with pod w/a) are lab pods built with
//!   the others, serving the same ports, that exist for Kubernetes only
//!   from the step that creates them to the step that deletes them (or
//!   their namespace): only then are they in the manifests, the
//!   evaluator's pods and the probes, and enforced by their node's agent
//!   (checked after every step). Steps 6 and 7 of the example probe TCP 81
//!   (the named port serve-81-tcp is 81/TCP).
//! - upstreame2ecases.go: the upstream e2e tests are in `cases.yaml` with
//!   upstream's own truth tables (checked against `model.rs`); they are not
//!   repeated here.

use std::collections::BTreeMap;

use crate::{Case, PolicyDoc, Step};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

const UPSTREAM: &str = "kubernetes-sigs/network-policy-api cmd/policy-assistant/pkg/generator";

/// The generator's `PodIP`: the address of pod z/c.
const POD_IP: &str = "z/c";

/// The generator's `Namespaces` (cyclonus' default `--namespace`).
const NAMESPACES: [&str; 3] = ["x", "y", "z"];

/// Every generated case, in upstream's `GenerateAllTestCases` order.
pub fn cases() -> Vec<Case> {
    [
        target_test_cases(),
        rules_test_cases(),
        peers_test_cases(),
        port_protocol_test_cases(),
        example_test_cases(),
        action_test_cases(),
        conflict_test_cases(),
        namespace_test_cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

// ------------------------------------------------------------ constants.go

fn tcp() -> Option<String> {
    Some("TCP".into())
}
fn udp() -> Option<String> {
    Some("UDP".into())
}
fn sctp() -> Option<String> {
    Some("SCTP".into())
}

fn num(n: i32) -> Option<IntOrString> {
    Some(IntOrString::Int(n))
}
fn named(name: &str) -> Option<IntOrString> {
    Some(IntOrString::String(name.into()))
}

fn pp(protocol: Option<String>, port: Option<IntOrString>) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol,
        port,
        end_port: None,
    }
}

fn pp_range(protocol: Option<String>, port: i32, end_port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol,
        port: num(port),
        end_port: Some(end_port),
    }
}

fn match_labels(key: &str, value: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(key.into(), value.into())])),
        match_expressions: None,
    }
}

fn match_in(key: &str, values: &[&str]) -> LabelSelector {
    LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: key.into(),
            operator: "In".into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }]),
    }
}

/// `emptySelector`
fn empty_selector() -> LabelSelector {
    LabelSelector::default()
}
/// `podAMatchLabelsSelector`
fn pod_a() -> LabelSelector {
    match_labels("pod", "a")
}
/// `podCMatchLabelsSelector`
fn pod_c() -> LabelSelector {
    match_labels("pod", "c")
}
/// `podABMatchExpressionsSelector`
fn pod_ab() -> LabelSelector {
    match_in("pod", &["a", "b"])
}
/// `podBCMatchExpressionsSelector`
fn pod_bc() -> LabelSelector {
    match_in("pod", &["b", "c"])
}
/// `nsXMatchLabelsSelector`
fn ns_x() -> LabelSelector {
    match_labels("ns", "x")
}
/// `nsXYMatchExpressionsSelector`
fn ns_xy() -> LabelSelector {
    match_in("ns", &["x", "y"])
}
/// `nsYZMatchExpressionsSelector`
fn ns_yz() -> LabelSelector {
    match_in("ns", &["y", "z"])
}
/// `nsZMatchDefaultLabelsSelector`
fn ns_z_default_label() -> LabelSelector {
    match_labels("kubernetes.io/metadata.name", "z")
}

fn peer(pods: Option<LabelSelector>, namespaces: Option<LabelSelector>) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: pods,
        namespace_selector: namespaces,
        ip_block: None,
    }
}

fn ip_peer(cidr: &str, except: &[&str]) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.into(),
            except: (!except.is_empty()).then(|| except.iter().map(|e| e.to_string()).collect()),
        }),
        ..Default::default()
    }
}

/// `AllowDNSRule`: UDP and TCP 53 to anywhere.
fn allow_dns_rule() -> Rule {
    Rule {
        ports: vec![pp(udp(), num(53)), pp(tcp(), num(53))],
        peers: vec![],
    }
}

// ---------------------------------------------------------------- netpol.go

/// A rule: ports and peers (from or to).
#[derive(Clone, Default)]
struct Rule {
    ports: Vec<NetworkPolicyPort>,
    peers: Vec<NetworkPolicyPeer>,
}

/// Upstream's `Netpol`: a target and, per direction, its rules if the
/// policy has that policy type.
#[derive(Clone)]
struct Netpol {
    name: String,
    namespace: String,
    pod_selector: LabelSelector,
    ingress: Option<Vec<Rule>>,
    egress: Option<Vec<Rule>>,
}

/// Go's `omitempty`: an empty list is left out.
fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

impl Netpol {
    fn new(name: &str, namespace: &str, pod_selector: LabelSelector) -> Netpol {
        Netpol {
            name: name.into(),
            namespace: namespace.into(),
            pod_selector,
            ingress: None,
            egress: None,
        }
    }

    /// `baseTestPolicy`: x/a, ingress TCP 80 from pods b/c of namespaces
    /// x/y, egress TCP 80 to pods a/b of namespaces y/z plus DNS.
    fn base() -> Netpol {
        Netpol {
            ingress: Some(vec![Rule {
                ports: vec![pp(tcp(), num(80))],
                peers: vec![peer(Some(pod_bc()), Some(ns_xy()))],
            }]),
            egress: Some(vec![
                Rule {
                    ports: vec![pp(tcp(), num(80))],
                    peers: vec![peer(Some(pod_ab()), Some(ns_yz()))],
                },
                allow_dns_rule(),
            ]),
            ..Netpol::new("base", "x", pod_a())
        }
    }

    fn with_ingress(mut self, rules: Vec<Rule>) -> Netpol {
        self.ingress = Some(rules);
        self
    }

    fn with_egress(mut self, rules: Vec<Rule>) -> Netpol {
        self.egress = Some(rules);
        self
    }

    fn dir(&mut self, is_ingress: bool) -> &mut Vec<Rule> {
        let rules = if is_ingress {
            &mut self.ingress
        } else {
            &mut self.egress
        };
        rules.as_mut().expect("policy has that direction")
    }

    /// `SetNamespace`
    fn set_namespace(mut self, ns: &str) -> Netpol {
        self.namespace = ns.into();
        self
    }

    /// `SetPodSelector`
    fn set_pod_selector(mut self, sel: LabelSelector) -> Netpol {
        self.pod_selector = sel;
        self
    }

    /// `SetRules`
    fn set_rules(mut self, is_ingress: bool, rules: Vec<Rule>) -> Netpol {
        *self.dir(is_ingress) = rules;
        self
    }

    /// `SetPorts`: the ports of the first rule.
    fn set_ports(mut self, is_ingress: bool, ports: Vec<NetworkPolicyPort>) -> Netpol {
        self.dir(is_ingress)[0].ports = ports;
        self
    }

    /// `SetPeers`: the peers of the first rule.
    fn set_peers(mut self, is_ingress: bool, peers: Vec<NetworkPolicyPeer>) -> Netpol {
        self.dir(is_ingress)[0].peers = peers;
        self
    }

    /// `NetworkPolicy()`: policy types Ingress then Egress, for the
    /// directions the policy has.
    fn doc(&self) -> PolicyDoc {
        let mut types = Vec::new();
        if self.ingress.is_some() {
            types.push("Ingress".to_string());
        }
        if self.egress.is_some() {
            types.push("Egress".to_string());
        }
        assert!(!types.is_empty(), "cannot have 0 policy types");
        let spec = NetworkPolicySpec {
            pod_selector: Some(self.pod_selector.clone()),
            ingress: non_empty(
                self.ingress
                    .iter()
                    .flatten()
                    .map(|r| NetworkPolicyIngressRule {
                        ports: non_empty(r.ports.clone()),
                        from: non_empty(r.peers.clone()),
                    })
                    .collect(),
            ),
            egress: non_empty(
                self.egress
                    .iter()
                    .flatten()
                    .map(|r| NetworkPolicyEgressRule {
                        ports: non_empty(r.ports.clone()),
                        to: non_empty(r.peers.clone()),
                    })
                    .collect(),
            ),
            policy_types: Some(types),
        };
        PolicyDoc {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            spec: serde_json::to_value(spec).expect("spec serializes"),
        }
    }
}

/// `BuildPolicy(setters...)` starts from `baseTestPolicy`.
fn build_policy() -> Netpol {
    Netpol::base()
}

// -------------------------------------------------------- cases and steps

fn create(policies: &[&Netpol]) -> Step {
    Step {
        create: policies.iter().map(|p| p.doc()).collect(),
        ..Default::default()
    }
}

fn case(name: String, file: &str, function: &str, description: &str, steps: Vec<Step>) -> Case {
    Case {
        name,
        source: format!("{UPSTREAM}/{file} {function}: \"{description}\""),
        steps,
        ..Default::default()
    }
}

/// `NewSingleStepTestCase(description, tags, ProbeAllAvailable, CreatePolicy(p))`.
fn single(name: String, file: &str, function: &str, description: &str, policy: &Netpol) -> Case {
    case(name, file, function, description, vec![create(&[policy])])
}

/// upstream's `describeDirectionality`
fn dir_name(is_ingress: bool) -> &'static str {
    if is_ingress { "ingress" } else { "egress" }
}

/// Lowercase words joined by dashes.
fn slug(s: &str) -> String {
    s.to_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// A label selector as a short, stable text for descriptions.
fn describe_selector(sel: &LabelSelector) -> String {
    serde_json::to_string(sel).expect("selector serializes")
}

// -------------------------------------------------------- targetcases.go

/// `TargetTestCases`: the base policy in each namespace, and with three pod
/// selectors.
fn target_test_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for ns in NAMESPACES {
        cases.push(single(
            format!("cyclonus-target-namespace-{ns}"),
            "targetcases.go",
            "TargetTestCases",
            &format!("set namespace to {ns}"),
            &build_policy().set_namespace(ns),
        ));
    }
    for (slug, sel) in [
        ("empty", empty_selector()),
        ("pod-a", pod_a()),
        ("pod-in-a-b", pod_ab()),
    ] {
        cases.push(single(
            format!("cyclonus-target-pod-selector-{slug}"),
            "targetcases.go",
            "TargetTestCases",
            &format!("set pod selector to {}", describe_selector(&sel)),
            &build_policy().set_pod_selector(sel),
        ));
    }
    cases
}

// --------------------------------------------------------- rulescases.go

/// `RulesTestCases`: deny all (no rules) and allow all (one empty rule), per
/// direction.
fn rules_test_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for is_ingress in [false, true] {
        let dir = dir_name(is_ingress);
        cases.push(single(
            format!("cyclonus-rules-{dir}-deny-all"),
            "rulescases.go",
            "RulesTestCases",
            &format!("{dir}: deny all"),
            &build_policy().set_rules(is_ingress, vec![]),
        ));
        cases.push(single(
            format!("cyclonus-rules-{dir}-allow-all"),
            "rulescases.go",
            "RulesTestCases",
            &format!("{dir}: allow all"),
            &build_policy().set_rules(is_ingress, vec![Rule::default()]),
        ));
    }
    cases
}

// --------------------------------------------------------- peerscases.go

/// A peer of `makePeers`, with upstream's description and a short name.
struct Peer {
    description: &'static str,
    slug: &'static str,
    peer: NetworkPolicyPeer,
}

/// `ipBlockPeers(PodIP)`: the /24 (IPv4; /120 IPv6) around the pod, and
/// the same except its /28 (/124).
fn ip_block_peers() -> Vec<Peer> {
    let cidr_but_8 = format!("${{zeroes:{POD_IP}:8}}");
    let cidr_but_4 = format!("${{zeroes:{POD_IP}:4}}");
    vec![
        Peer {
            description: "simple ipblock",
            slug: "ipblock",
            peer: ip_peer(&cidr_but_8, &[]),
        },
        Peer {
            description: "ipblock with except",
            slug: "ipblock-except",
            peer: ip_peer(&cidr_but_8, &[&cidr_but_4]),
        },
    ]
}

/// `podPeers` (upstream skips the nil/nil peer, which is invalid).
fn pod_peers() -> Vec<Peer> {
    let e = || Some(empty_selector());
    let p = |d, s, pods, nss| Peer {
        description: d,
        slug: s,
        peer: peer(pods, nss),
    };
    vec![
        p("empty pods + nil ns", "pods-all", e(), None),
        p("pods by label + nil ns", "pods-c", Some(pod_c()), None),
        p("nil pods + empty ns", "ns-all", None, e()),
        p("empty pods + empty ns", "ns-all-pods-all", e(), e()),
        p(
            "pods by label + empty ns",
            "ns-all-pods-c",
            Some(pod_c()),
            e(),
        ),
        p("nil pods + ns by label", "ns-x", None, Some(ns_x())),
        p(
            "empty pods + ns by label",
            "ns-x-pods-all",
            e(),
            Some(ns_x()),
        ),
        p(
            "pods by label + ns by label",
            "ns-x-pods-c",
            Some(pod_c()),
            Some(ns_x()),
        ),
    ]
}

/// `makePeers`
fn make_peers() -> Vec<Peer> {
    let mut peers = pod_peers();
    peers.extend(ip_block_peers());
    peers
}

/// `ZeroPeersTestCases`
fn zero_peers_test_cases() -> Vec<Case> {
    [true, false]
        .into_iter()
        .map(|is_ingress| {
            let dir = dir_name(is_ingress);
            single(
                format!("cyclonus-peers-{dir}-empty"),
                "peerscases.go",
                "ZeroPeersTestCases",
                &format!("{dir}: empty peers"),
                &build_policy().set_peers(is_ingress, vec![]),
            )
        })
        .collect()
}

/// `SinglePeersTestCases`
fn single_peers_test_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for is_ingress in [true, false] {
        let dir = dir_name(is_ingress);
        for p in make_peers() {
            cases.push(single(
                format!("cyclonus-peers-{dir}-{}", p.slug),
                "peerscases.go",
                "SinglePeersTestCases",
                p.description,
                &build_policy().set_peers(is_ingress, vec![p.peer.clone()]),
            ));
        }
    }
    cases
}

/// `TwoPeersTestCases`: every unordered pair of distinct peers.
fn two_peers_test_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let peers = make_peers();
    for is_ingress in [true, false] {
        let dir = dir_name(is_ingress);
        for (i, p1) in peers.iter().enumerate() {
            for p2 in &peers[i + 1..] {
                cases.push(single(
                    format!("cyclonus-peers-{dir}-{}+{}", p1.slug, p2.slug),
                    "peerscases.go",
                    "TwoPeersTestCases",
                    &format!("{dir}, 2-peer: {}, {}", p1.description, p2.description),
                    &build_policy().set_peers(is_ingress, vec![p1.peer.clone(), p2.peer.clone()]),
                ));
            }
        }
    }
    cases
}

/// `PeersTestCases`
fn peers_test_cases() -> Vec<Case> {
    [
        zero_peers_test_cases(),
        single_peers_test_cases(),
        two_peers_test_cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

// ------------------------------------------------- portprotocolcases.go

/// A short name for a policy port: `<protocol>-<port>`.
fn port_slug(p: &NetworkPolicyPort) -> String {
    let proto = p
        .protocol
        .as_deref()
        .map_or("noproto".to_string(), str::to_lowercase);
    let port = match (&p.port, p.end_port) {
        (None, _) => "anyport".to_string(),
        (Some(IntOrString::Int(n)), None) => n.to_string(),
        (Some(IntOrString::Int(n)), Some(end)) => format!("{n}-{end}"),
        (Some(IntOrString::String(s)), _) => s.clone(),
    };
    format!("{proto}-{port}")
}

/// Upstream's description of a case without one: its sorted tags
/// (`describePort`, `describeProtocol`, `describeEndPort`, direction).
fn port_tags(dir: &str, ports: &[NetworkPolicyPort], extra: &[&str]) -> String {
    let mut tags: Vec<String> = vec![dir.to_string()];
    tags.extend(extra.iter().map(|s| s.to_string()));
    for p in ports {
        tags.push(
            match p.port {
                None => "any-port",
                Some(IntOrString::Int(_)) => "numbered-port",
                Some(IntOrString::String(_)) => "named-port",
            }
            .into(),
        );
        if let Some(proto) = &p.protocol {
            tags.push(proto.to_lowercase());
        }
        if p.end_port.is_some() {
            tags.push("end-port".into());
        }
    }
    tags.sort();
    tags.dedup();
    tags.join(",")
}

/// `ZeroPortProtocolTestCases`
fn zero_port_protocol_test_cases() -> Vec<Case> {
    [false, true]
        .into_iter()
        .map(|is_ingress| {
            let dir = dir_name(is_ingress);
            single(
                format!("cyclonus-ports-{dir}-empty"),
                "portprotocolcases.go",
                "ZeroPortProtocolTestCases",
                &format!("{dir}: empty port/protocol"),
                &build_policy().set_ports(is_ingress, vec![]),
            )
        })
        .collect()
}

/// `networkPolicyPorts`: every protocol (unset, TCP, UDP, SCTP) by every
/// port (unset, 80, 81), the named ports, and the 53-80 / 53-84 ranges.
fn network_policy_ports() -> Vec<NetworkPolicyPort> {
    let mut ports = Vec::new();
    for protocol in [None, tcp(), udp(), sctp()] {
        for port in [None, num(80), num(81)] {
            ports.push(pp(protocol.clone(), port));
        }
    }
    ports.extend([
        pp(tcp(), named("serve-80-tcp")),
        pp(tcp(), named("serve-81-tcp")),
        pp(udp(), named("serve-80-udp")),
        pp(udp(), named("serve-81-udp")),
        pp(sctp(), named("serve-80-sctp")),
        pp(sctp(), named("serve-81-sctp")),
        pp_range(tcp(), 53, 80),
        pp_range(tcp(), 53, 84),
        pp_range(udp(), 53, 80),
        pp_range(udp(), 53, 84),
        pp_range(sctp(), 53, 80),
        pp_range(sctp(), 53, 84),
    ]);
    ports
}

/// `SinglePortProtocolTestCases`, with its three pathological cases.
fn single_port_protocol_test_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for is_ingress in [false, true] {
        let dir = dir_name(is_ingress);
        for npp in network_policy_ports() {
            cases.push(single(
                format!("cyclonus-ports-{dir}-{}", port_slug(&npp)),
                "portprotocolcases.go",
                "SinglePortProtocolTestCases",
                &port_tags(dir, std::slice::from_ref(&npp), &[]),
                &build_policy().set_ports(is_ingress, vec![npp.clone()]),
            ));
        }
        for (description, npp) in [
            (
                "open a named port that doesn't match its protocol",
                pp(tcp(), named("serve-81-udp")),
            ),
            (
                "open a named port that isn't served",
                pp(tcp(), named("serve-7981-udp")),
            ),
            (
                "open a numbered port that isn't served",
                pp(tcp(), num(7981)),
            ),
        ] {
            cases.push(single(
                format!("cyclonus-ports-{dir}-{}", port_slug(&npp)),
                "portprotocolcases.go",
                "SinglePortProtocolTestCases",
                description,
                &build_policy().set_ports(is_ingress, vec![npp]),
            ));
        }
    }
    cases
}

/// `TwoPortProtocolTestCases`: seven pairs of policy ports.
fn two_port_protocol_test_cases() -> Vec<Case> {
    let pairs = || {
        [
            [pp(None, None), pp(None, num(80))],
            [pp(None, None), pp(None, named("serve-80-tcp"))],
            [pp(None, None), pp(udp(), None)],
            [pp(None, num(80)), pp(None, num(81))],
            [pp(None, num(80)), pp(None, named("serve-81-tcp"))],
            [pp(None, num(80)), pp(udp(), named("serve-81-udp"))],
            [pp(udp(), num(80)), pp(udp(), named("serve-81-udp"))],
        ]
    };
    let mut cases = Vec::new();
    for is_ingress in [false, true] {
        let dir = dir_name(is_ingress);
        for pair in pairs() {
            cases.push(single(
                format!(
                    "cyclonus-ports-{dir}-{}+{}",
                    port_slug(&pair[0]),
                    port_slug(&pair[1])
                ),
                "portprotocolcases.go",
                "TwoPortProtocolTestCases",
                &port_tags(dir, &pair, &["multi-port/protocol"]),
                &build_policy().set_ports(is_ingress, pair.to_vec()),
            ));
        }
    }
    cases
}

/// `PortProtocolTestCases`
fn port_protocol_test_cases() -> Vec<Case> {
    [
        zero_port_protocol_test_cases(),
        single_port_protocol_test_cases(),
        two_port_protocol_test_cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

// ------------------------------------------------------- examplecases.go

/// `ExampleTestCases`: allow-all on the named port serve-81-tcp into x.
/// Steps 2-4: namespace w and pod w/a come and go. Step 5 probes
/// everything again, 6 and 7 probe TCP 81 (by number, then by the name
/// serve-81-tcp).
fn example_test_cases() -> Vec<Case> {
    let policy = Netpol::new(
        "allow-all",
        "x",
        LabelSelector {
            match_labels: Some(BTreeMap::new()),
            match_expressions: None,
        },
    )
    .with_ingress(vec![Rule {
        ports: vec![pp(None, named("serve-81-tcp"))],
        peers: vec![],
    }]);
    let tcp_81 = || Step {
        probe: vec!["tcp/81".into()],
        ..Default::default()
    };
    vec![case(
        "cyclonus-example-named-port-ingress".into(),
        "examplecases.go",
        "ExampleTestCases",
        "should allow ingress access on one named port",
        vec![
            create(&[&policy]),
            Step {
                create_namespaces: BTreeMap::from([("w".into(), labels_of(&[("ns", "w")]))]),
                create_pods: BTreeMap::from([("w/a".into(), labels_of(&[("pod", "a")]))]),
                ..Default::default()
            },
            Step {
                delete_pods: vec!["w/a".into()],
                ..Default::default()
            },
            Step {
                delete_namespaces: vec!["w".into()],
                ..Default::default()
            },
            Step::default(),
            tcp_81(),
            tcp_81(),
        ],
    )]
}

// -------------------------------------------------------- actioncases.go

/// `ActionTestCases`
fn action_test_cases() -> Vec<Case> {
    let file = "actioncases.go";
    let f = "ActionTestCases";
    let base = Netpol::base();
    let ns_labels = |labels: &[(&str, &str)]| Step {
        namespace_labels: BTreeMap::from([("y".to_string(), labels_of(labels))]),
        ..Default::default()
    };
    let pod_labels = |labels: &[(&str, &str)]| Step {
        pod_labels: BTreeMap::from([("y/b".to_string(), labels_of(labels))]),
        ..Default::default()
    };
    vec![
        case(
            "cyclonus-action-create-delete-policy".into(),
            file,
            f,
            "Create/delete policy",
            vec![
                create(&[&base]),
                Step {
                    delete: vec![format!("{}/{}", base.namespace, base.name)],
                    ..Default::default()
                },
            ],
        ),
        case(
            "cyclonus-action-create-update-policy".into(),
            file,
            f,
            "Create/update policy",
            vec![
                create(&[&base]),
                Step {
                    update: vec![
                        build_policy()
                            .set_ports(true, vec![pp(udp(), named("serve-81-udp"))])
                            .doc(),
                    ],
                    ..Default::default()
                },
            ],
        ),
        case(
            "cyclonus-action-create-delete-namespace".into(),
            file,
            f,
            "Create/delete namespace",
            vec![
                create(&[&base]),
                Step {
                    create_namespaces: BTreeMap::from([("y-2".into(), labels_of(&[("ns", "y")]))]),
                    create_pods: BTreeMap::from([
                        ("y-2/a".into(), labels_of(&[("pod", "a")])),
                        ("y-2/b".into(), labels_of(&[("pod", "b")])),
                    ]),
                    ..Default::default()
                },
                Step {
                    delete_namespaces: vec!["y-2".into()],
                    ..Default::default()
                },
            ],
        ),
        case(
            "cyclonus-action-set-namespace-labels".into(),
            file,
            f,
            "Update namespace so that policy applies, then again so it no longer applies",
            vec![
                create(&[&build_policy()
                    .set_peers(true, vec![peer(None, Some(match_labels("new-ns", "qrs")))])]),
                ns_labels(&[("ns", "y"), ("new-ns", "qrs")]),
                ns_labels(&[("ns", "y")]),
            ],
        ),
        case(
            "cyclonus-action-create-delete-pod".into(),
            file,
            f,
            "Create/delete pod",
            vec![
                create(&[&base]),
                Step {
                    create_pods: BTreeMap::from([("x/d".into(), labels_of(&[("pod", "d")]))]),
                    ..Default::default()
                },
                Step {
                    delete_pods: vec!["x/d".into()],
                    ..Default::default()
                },
            ],
        ),
        case(
            "cyclonus-action-set-pod-labels".into(),
            file,
            f,
            "Update pod so that policy applies, then again so it no longer applies",
            vec![
                create(&[&build_policy().set_peers(
                    true,
                    vec![peer(Some(match_labels("new-label", "abc")), Some(ns_yz()))],
                )]),
                pod_labels(&[("pod", "b"), ("new-label", "abc")]),
                pod_labels(&[("pod", "b")]),
            ],
        ),
    ]
}

fn labels_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ------------------------------------------------------ conflictcases.go

/// `ExplicitAllowAll`: one empty rule.
fn explicit_allow_all() -> Vec<Rule> {
    vec![Rule::default()]
}
/// `DenyAll`: no rules.
fn deny_all() -> Vec<Rule> {
    vec![]
}
/// `AllowAllByPod`: to/from every namespace.
fn allow_all_by_pod() -> Vec<Rule> {
    vec![Rule {
        ports: vec![],
        peers: vec![peer(None, Some(empty_selector()))],
    }]
}
/// `AllowAllByIP`: 0.0.0.0/0 (::/0 in the IPv6 run).
fn allow_all_by_ip() -> Vec<Rule> {
    vec![Rule {
        ports: vec![],
        peers: vec![ip_peer("${fam:0.0.0.0/0|::/0}", &[])],
    }]
}
/// `DenyAllByIP`: 0.0.0.0/31 (::/127), which holds no pod.
fn deny_all_by_ip() -> Vec<Rule> {
    vec![Rule {
        ports: vec![],
        peers: vec![ip_peer("${fam:0.0.0.0/31|::/127}", &[])],
    }]
}
/// `DenyAllByPod`: namespaces labelled this-will-never-happen=qrs123.
fn deny_all_by_pod() -> Vec<Rule> {
    vec![Rule {
        ports: vec![],
        peers: vec![peer(
            None,
            Some(match_labels("this-will-never-happen", "qrs123")),
        )],
    }]
}

/// A `conflictCase`: the upstream constructor's name, its description and
/// its policies.
struct Conflict {
    function: &'static str,
    description: &'static str,
    policies: Vec<Netpol>,
}

/// `ConflictTestCases`: source x/b, destination y/c, through
/// `ConflictNetworkPolicies` (which, as upstream, targets the source with
/// the ingress conflicts too). `AllowDNS` is off: no allow-dns policy.
fn conflict_test_cases() -> Vec<Case> {
    let source = || Netpol::new("", "x", match_labels("pod", "b"));
    let dest = || Netpol::new("", "y", match_labels("pod", "c"));
    let named = |p: Netpol, name: &str| Netpol {
        name: name.into(),
        ..p
    };
    let egress = |name: &str, rules: Vec<Rule>| named(source(), name).with_egress(rules);
    let ingress_on = |t: Netpol, name: &str, rules: Vec<Rule>| named(t, name).with_ingress(rules);
    let ingress = |name: &str, rules: Vec<Rule>| ingress_on(source(), name, rules);
    let c = |function, description, policies| Conflict {
        function,
        description,
        policies,
    };
    let conflicts = vec![
        c(
            "AllowAllIngressDenyAllEgress",
            "deny all from source, allow all to dest",
            vec![
                egress("deny-all-egress", deny_all()),
                ingress_on(dest(), "allow-all-ingress", explicit_allow_all()),
            ],
        ),
        c(
            "AllowAllEgressDenyAllIngress",
            "allow all from source, deny all to dest",
            vec![
                egress("allow-all-egress", explicit_allow_all()),
                ingress_on(dest(), "deny-all-ingress", deny_all()),
            ],
        ),
        c(
            "DenyAllEgressAllowAllEgress",
            "deny all + allow all from same source",
            vec![
                egress("deny-all-egress", deny_all()),
                egress("allow-all-egress", explicit_allow_all()),
            ],
        ),
        c(
            "DenyAllIngressAllowAllIngress",
            "deny all + allow all to same dest",
            vec![
                ingress_on(dest(), "deny-all-ingress", deny_all()),
                ingress_on(dest(), "allow-all-ingress", explicit_allow_all()),
            ],
        ),
        c(
            "DenyAllEgressAllowAllEgressByPod",
            "deny all + allow all by pod from same source",
            vec![
                egress("deny-all-egress", deny_all()),
                egress("allow-all-egress-by-pod", allow_all_by_pod()),
            ],
        ),
        c(
            "DenyAllEgressAllowAllEgressByIP",
            "deny all + allow all by IP from same source",
            vec![
                egress("deny-all-egress", deny_all()),
                egress("allow-all-egress-by-ip", allow_all_by_ip()),
            ],
        ),
        c(
            "DenyAllEgressByIPAllowAllEgressByPod",
            "deny all by IP + allow all by pod from same source",
            vec![
                egress("deny-all-egress-by-ip", deny_all_by_ip()),
                egress("allow-all-egress-by-pod", allow_all_by_pod()),
            ],
        ),
        c(
            "DenyAllEgressByPodAllowAllEgressByIP",
            "deny all by pod + allow all by IP from same source",
            vec![
                egress("deny-all-egress-by-pod", deny_all_by_pod()),
                egress("allow-all-egress-by-ip", allow_all_by_ip()),
            ],
        ),
        c(
            "DenyAllIngressAllowAllIngressByPod",
            "deny all + allow all by pod to same source",
            vec![
                ingress("deny-all-ingress", deny_all()),
                ingress("allow-all-ingress-by-pod", allow_all_by_pod()),
            ],
        ),
        c(
            "DenyAllIngressAllowAllIngressByIP",
            "deny all + allow all by IP to same source",
            vec![
                ingress("deny-all-ingress", deny_all()),
                ingress("allow-all-ingress-by-ip", allow_all_by_ip()),
            ],
        ),
        c(
            "DenyAllIngressByIPAllowAllIngressByPod",
            "deny all by IP + allow all by pod to same source",
            vec![
                ingress("deny-all-ingress-by-ip", deny_all_by_ip()),
                ingress("allow-all-ingress-by-pod", allow_all_by_pod()),
            ],
        ),
        c(
            "DenyAllIngressByPodAllowAllIngressByIP",
            "deny all by pod + allow all by IP to same source",
            vec![
                ingress("deny-all-ingress-by-pod", deny_all_by_pod()),
                ingress("allow-all-ingress-by-ip", allow_all_by_ip()),
            ],
        ),
        c(
            "DenyAllEgressByIP",
            "egress: deny all by IP",
            vec![egress("deny-all-egress-by-ip", deny_all_by_ip())],
        ),
        // Upstream names this policy deny-all-egress-by-ip too.
        c(
            "DenyAllEgressByPod",
            "egress: deny all by pod",
            vec![egress("deny-all-egress-by-ip", deny_all_by_pod())],
        ),
        c(
            "DenyAllIngressByIP",
            "ingress: deny all by IP",
            vec![ingress("deny-all-ingress-by-ip", deny_all_by_ip())],
        ),
        // Upstream names this policy deny-all-ingress-by-ip too.
        c(
            "DenyAllIngressByPod",
            "ingress: deny all by pod",
            vec![ingress("deny-all-ingress-by-ip", deny_all_by_pod())],
        ),
    ];
    conflicts
        .into_iter()
        .map(|c| {
            let policies: Vec<&Netpol> = c.policies.iter().collect();
            case(
                format!("cyclonus-conflict-{}", slug(c.description)),
                "conflictcases.go",
                &format!("ConflictTestCases/{}", c.function),
                c.description,
                vec![create(&policies)],
            )
        })
        .collect()
}

// ----------------------------------------------------- namespacecases.go

/// `NamespaceTestCases`: the base policy with one peer, namespace z by its
/// `kubernetes.io/metadata.name` label.
fn namespace_test_cases() -> Vec<Case> {
    [true, false]
        .into_iter()
        .map(|is_ingress| {
            let dir = dir_name(is_ingress);
            single(
                format!("cyclonus-namespace-{dir}-default-label"),
                "namespacecases.go",
                "NamespaceTestCases",
                &format!("{dir}: select namespace by default label"),
                &build_policy().set_peers(is_ingress, vec![peer(None, Some(ns_z_default_label()))]),
            )
        })
        .collect()
}

/// The generated cases per upstream generator file, for the table above.
pub fn counts(cases: &[Case]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for c in cases {
        if let Some(rest) = c.source.strip_prefix(UPSTREAM) {
            let file = rest.trim_start_matches('/').split(' ').next().unwrap_or("");
            *counts.entry(file.to_string()).or_default() += 1;
        }
    }
    counts
}
