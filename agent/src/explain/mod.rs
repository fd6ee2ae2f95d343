//! `palisade explain`: whether a flow is allowed and why, from the
//! compiler's rule-level attribution (`palisade_compiler::Compiler::explain`,
//! the same model the maps are compiled from), with rule, peer and port
//! indexes mapped back to the NetworkPolicy as written. Works on a compiler
//! fed from manifest files (offline) or on the agent's own (live).

mod offline;

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use palisade_common::{direction, proto};
use palisade_compiler::{
    Compiler, Decider, End, ExplainError, Explanation, Judgement, PeerKind, PeerMatch, PodRef,
    PolicyName, PortMatch, Query, RuleMatch, Side, TierMatch,
};
use serde::{Deserialize, Serialize};

pub use offline::{LoadError, load_files, manifest_files};

/// The question, as typed (parsed by [`parse_request`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainRequest {
    /// `NS/POD`, an IP or a CIDR.
    pub from: String,
    /// `NS/POD`, an IP or a CIDR.
    pub to: String,
    /// `PORT/PROTOCOL` (`5432/TCP`), `PORT` (TCP), or `ICMP`/`ICMPv6`.
    pub port: String,
}

/// The question cannot be asked or answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExplainCmdError {
    /// A side is neither `NS/POD`, an IP nor a CIDR.
    #[error("{which} {value:?}: expected NAMESPACE/POD, an IP address or a CIDR")]
    BadSide {
        /// `--from` or `--to`.
        which: &'static str,
        /// What was given.
        value: String,
    },
    /// The port is malformed.
    #[error(
        "malformed port {0:?}: expected PORT/PROTOCOL (e.g. 5432/TCP, 53/UDP, 9000/SCTP), PORT, or ICMP"
    )]
    BadPort(String),
    /// No such namespace.
    #[error("unknown namespace {0:?}")]
    UnknownNamespace(String),
    /// The compiler could not answer.
    #[error(transparent)]
    Explain(#[from] ExplainError),
}

/// The parsed question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// For the compiler.
    pub query: Query,
    /// A CIDR side is judged by its first address: noted in the answer.
    pub notes: Vec<String>,
}

fn parse_side(
    which: &'static str,
    s: &str,
    notes: &mut Vec<String>,
) -> Result<Side, ExplainCmdError> {
    let s = s.trim();
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok(Side::Addr(a));
    }
    if let Ok(n) = s.parse::<IpNet>() {
        let n = n.trunc();
        if n.prefix_len() != n.max_prefix_len() {
            notes.push(format!(
                "{which} {n}: judged by its first address {}; ipBlocks may split the range",
                n.network()
            ));
        }
        return Ok(Side::Addr(n.network()));
    }
    match s.split_once('/') {
        Some((ns, pod)) if !ns.is_empty() && !pod.is_empty() && !pod.contains('/') => {
            Ok(Side::Pod(PodRef::new(ns, pod)))
        }
        _ => Err(ExplainCmdError::BadSide {
            which,
            value: s.to_string(),
        }),
    }
}

/// Parses `PORT/PROTOCOL`, `PORT`, `ICMP`, `ICMPv6`.
pub fn parse_port(s: &str) -> Result<(u8, u16), ExplainCmdError> {
    let bad = || ExplainCmdError::BadPort(s.to_string());
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "icmp" => return Ok((proto::ICMP, 0)),
        "icmpv6" => return Ok((proto::ICMPV6, 0)),
        _ => {}
    }
    let (port, protocol) = match t.split_once('/') {
        Some((p, pr)) => (p, pr),
        None => (t, "TCP"),
    };
    let protocol = match protocol.to_ascii_uppercase().as_str() {
        "TCP" => proto::TCP,
        "UDP" => proto::UDP,
        "SCTP" => proto::SCTP,
        _ => return Err(bad()),
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    Ok((protocol, port))
}

/// Parses a request.
pub fn parse_request(r: &ExplainRequest, enforce_host: bool) -> Result<Parsed, ExplainCmdError> {
    let mut notes = Vec::new();
    let from = parse_side("--from", &r.from, &mut notes)?;
    let to = parse_side("--to", &r.to, &mut notes)?;
    let (protocol, port) = parse_port(&r.port)?;
    Ok(Parsed {
        query: Query {
            from,
            to,
            protocol,
            port,
            enforce_host,
        },
        notes,
    })
}

/// One allowing rule, as written in the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleReport {
    /// `namespace/name`.
    pub policy: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// Index in `spec.ingress`/`spec.egress`.
    pub rule: usize,
    /// Index in the rule's `from`/`to` (absent: the rule has none, every
    /// peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<usize>,
    /// Index in the rule's `ports` (absent: the rule has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_index: Option<usize>,
    /// The port that matched, in words (`TCP 80`, `TCP 8000-8100`,
    /// `http (TCP 80)`, `any`).
    pub port: String,
}

/// One side's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideReport {
    /// `namespace/name`.
    pub pod: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// Some enforced policy selects the pod in this direction.
    pub isolated: bool,
    /// Those policies.
    pub selecting: Vec<String>,
    /// Audited policies selecting the pod in this direction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audited: Vec<String>,
    /// Traffic from this node: exempt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_exempt: bool,
    /// This side lets the flow through.
    pub allowed: bool,
    /// Enforced rules allowing it.
    pub allowed_by: Vec<RuleReport>,
    /// With audited policies enforced too, would it pass? (absent: no
    /// audited policy here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_allowed: Option<bool>,
    /// Audited rules allowing it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit_allowed_by: Vec<RuleReport>,
    /// Audited ClusterNetworkPolicies selecting the pod in this direction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audited_cluster: Vec<String>,
    /// With audited policies enforced too, what would decide (as
    /// `decided_by`; absent: no audited policy here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_decided_by: Option<String>,
    /// The tier rule that would decide then, if a tier would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_rule: Option<String>,
    /// The ClusterNetworkPolicy tiers consulted, in order (absent: none
    /// selects the pod in this direction).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<TierReport>,
    /// What decided this side: `host`, `admin`, `networkpolicy`,
    /// `baseline` or `default`.
    pub decided_by: String,
}

/// One ClusterNetworkPolicy tier of a side's walk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierReport {
    /// `admin` or `baseline`.
    pub tier: String,
    /// The tier's policies selecting the pod, in the order consulted.
    pub policies: Vec<String>,
    /// The first matching rule, as monitor names it (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Its action: `Accept`, `Deny` or `Pass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The first matching rules of the tier's other policies with the same
    /// priority: the API leaves their order undefined, Palisade consults
    /// them by name, so `rule` decides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ties: Vec<String>,
    /// The rule's peer that matched, by kind and place among the rule's
    /// peers of that kind (`nodes #1`: its second `nodes` peer;
    /// `networks #0`: its first CIDR); absent when every peer matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

/// One end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndReport {
    /// `namespace/pod`, `host`, or the address.
    pub name: String,
    /// The address judged.
    pub addr: IpAddr,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainReport {
    /// The verdict.
    pub allowed: bool,
    /// Sender.
    pub from: EndReport,
    /// Receiver.
    pub to: EndReport,
    /// `TCP`, `UDP`, `SCTP`, `ICMP`, ...
    pub protocol: String,
    /// Destination port (0 without ports).
    pub port: u16,
    /// The sender's egress (absent: the sender is not a pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<SideReport>,
    /// The receiver's ingress (absent: the receiver is not a pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<SideReport>,
    /// Remarks (CIDR sides).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn end_name(e: &End) -> String {
    match &e.kind {
        PeerKind::Pod(p) => p.to_string(),
        PeerKind::Host => format!("host {}", e.addr),
        PeerKind::Address => e.addr.to_string(),
    }
}

fn peers_of(np: &NetworkPolicy, dir: u8, rule: usize) -> Option<&[NetworkPolicyPeer]> {
    let spec = np.spec.as_ref()?;
    if dir == direction::INGRESS {
        spec.ingress.as_ref()?.get(rule)?.from.as_deref()
    } else {
        spec.egress.as_ref()?.get(rule)?.to.as_deref()
    }
}

fn ports_of(np: &NetworkPolicy, dir: u8, rule: usize) -> Option<&[NetworkPolicyPort]> {
    let spec = np.spec.as_ref()?;
    if dir == direction::INGRESS {
        spec.ingress.as_ref()?.get(rule)?.ports.as_deref()
    } else {
        spec.egress.as_ref()?.get(rule)?.ports.as_deref()
    }
}

fn port_entry_matches(p: &NetworkPolicyPort, protocol: u8, m: &PortMatch) -> bool {
    let pr = p.protocol.as_deref().unwrap_or("TCP");
    if pr != proto::Name(protocol).to_string() {
        return false;
    }
    match (&p.port, m) {
        (None, _) => true,
        (Some(IntOrString::String(n)), PortMatch::Named(name, _)) => n == name,
        (Some(IntOrString::Int(v)), PortMatch::Range(lo, hi)) => {
            let lo_p = *v;
            let hi_p = p.end_port.unwrap_or(*v);
            // The entry overlaps the merged range that matched.
            lo_p <= i32::from(*hi) && hi_p >= i32::from(*lo)
        }
        _ => false,
    }
}

/// Maps a rule match to the policy as written (raw object optional).
fn rule_report(
    m: &RuleMatch,
    dir: u8,
    protocol: u8,
    port: u16,
    raw: Option<&NetworkPolicy>,
) -> RuleReport {
    let peer = match m.peer {
        PeerMatch::All => None,
        PeerMatch::Selector(j) => raw
            .and_then(|np| peers_of(np, dir, m.rule))
            .and_then(|ps| {
                ps.iter()
                    .enumerate()
                    .filter(|(_, p)| p.ip_block.is_none())
                    .nth(j)
                    .map(|(i, _)| i)
            })
            .or(Some(j)),
        PeerMatch::Block(k) => raw
            .and_then(|np| peers_of(np, dir, m.rule))
            .and_then(|ps| {
                ps.iter()
                    .enumerate()
                    .filter(|(_, p)| p.ip_block.is_some())
                    .nth(k)
                    .map(|(i, _)| i)
            })
            .or(Some(k)),
        // Only ClusterNetworkPolicy rules have nodes peers.
        PeerMatch::Nodes(j) => Some(j),
    };
    let port_index = match &m.port {
        PortMatch::Any => None,
        pm => raw
            .and_then(|np| ports_of(np, dir, m.rule))
            .and_then(|ps| ps.iter().position(|p| port_entry_matches(p, protocol, pm))),
    };
    let pr = proto::Name(protocol).to_string();
    let port_s = match &m.port {
        PortMatch::Any => "any".to_string(),
        PortMatch::Range(lo, hi) if lo == hi => format!("{pr} {lo}"),
        PortMatch::Range(lo, hi) => format!("{pr} {lo}-{hi} (matches {port})"),
        PortMatch::Named(n, p) => format!("{n} ({pr} {p})"),
    };
    RuleReport {
        policy: m.policy.to_string(),
        direction: direction::as_str(dir).into(),
        rule: m.rule,
        peer,
        port_index,
        port: port_s,
    }
}

fn side_report(
    j: &Judgement,
    protocol: u8,
    port: u16,
    raw: &dyn Fn(&PolicyName) -> Option<NetworkPolicy>,
) -> SideReport {
    let rules = |v: &[RuleMatch]| {
        v.iter()
            .map(|m| rule_report(m, j.direction, protocol, port, raw(&m.policy).as_ref()))
            .collect()
    };
    let tier = |name: &str, policies: &[String], m: Option<&TierMatch>| TierReport {
        tier: name.into(),
        policies: policies.to_vec(),
        rule: m.map(|m| m.rule.to_string()),
        action: m.map(|m| m.rule.action.to_string()),
        ties: m
            .map(|m| m.ties.iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        peer: m.and_then(|m| match m.peer {
            PeerMatch::All => None,
            PeerMatch::Selector(j) => Some(format!("pods/namespaces #{j}")),
            PeerMatch::Block(k) => Some(format!("networks #{k}")),
            PeerMatch::Nodes(j) => Some(format!("nodes #{j}")),
        }),
    };
    let mut tiers = Vec::new();
    if !j.admin_selecting.is_empty() {
        tiers.push(tier("admin", &j.admin_selecting, j.admin.as_ref()));
    }
    if !j.baseline_selecting.is_empty() {
        tiers.push(tier("baseline", &j.baseline_selecting, j.baseline.as_ref()));
    }
    let decider = |d: Decider| {
        match d {
            Decider::Host => "host",
            Decider::Admin(_) => "admin",
            Decider::NetworkPolicy(_) => "networkpolicy",
            Decider::Baseline(_) => "baseline",
            Decider::Default => "default",
        }
        .to_string()
    };
    SideReport {
        tiers,
        decided_by: decider(j.decided_by()),
        audited_cluster: j
            .audited_cluster
            .iter()
            .map(|n| format!("ClusterNetworkPolicy {n}"))
            .collect(),
        audit_decided_by: j.audit_decided_by().map(decider),
        audit_rule: j.audit_rule().map(|t| t.rule.to_string()),
        pod: j.pod.to_string(),
        direction: direction::as_str(j.direction).into(),
        isolated: j.isolated(),
        selecting: j.selecting.iter().map(ToString::to_string).collect(),
        audited: j.audited.iter().map(ToString::to_string).collect(),
        host_exempt: j.host_exempt,
        allowed: j.allowed(),
        allowed_by: rules(&j.allowed_by),
        audit_allowed: j.audit_allowed(),
        audit_allowed_by: rules(&j.audit_allowed_by),
    }
}

/// Builds the report from the compiler's explanation.
pub fn report(
    e: &Explanation,
    q: &Query,
    notes: Vec<String>,
    raw: &dyn Fn(&PolicyName) -> Option<NetworkPolicy>,
) -> ExplainReport {
    let port = if proto::has_ports(q.protocol) {
        q.port
    } else {
        0
    };
    ExplainReport {
        allowed: e.allowed(),
        from: EndReport {
            name: end_name(&e.from),
            addr: e.from.addr,
        },
        to: EndReport {
            name: end_name(&e.to),
            addr: e.to.addr,
        },
        protocol: proto::Name(q.protocol).to_string(),
        port,
        egress: e
            .egress
            .as_ref()
            .map(|j| side_report(j, q.protocol, port, raw)),
        ingress: e
            .ingress
            .as_ref()
            .map(|j| side_report(j, q.protocol, port, raw)),
        notes,
    }
}

/// Runs a request against a compiler (after its commit). `raw` gives the
/// NetworkPolicy as written, for indexes.
pub fn explain(
    c: &Compiler,
    r: &ExplainRequest,
    enforce_host: bool,
    raw: &dyn Fn(&PolicyName) -> Option<NetworkPolicy>,
) -> Result<ExplainReport, ExplainCmdError> {
    let parsed = parse_request(r, enforce_host)?;
    for s in [&parsed.query.from, &parsed.query.to] {
        if let Side::Pod(p) = s
            && !c.has_pod(p)
            && !c.has_namespace(&p.namespace)
        {
            return Err(ExplainCmdError::UnknownNamespace(p.namespace.clone()));
        }
    }
    let e = c.explain(&parsed.query)?;
    let mut notes = parsed.notes;
    if c.audit_all() && !e.allowed() {
        notes.push(
            "the agent runs with --audit: this flow passes and is reported as an audit event"
                .into(),
        );
    }
    Ok(report(&e, &parsed.query, notes, raw))
}

/// A side's walk through the tiers, as a chain of steps up to the one
/// that decides: `[Admin] Pass by … → [NetworkPolicy] allowed by … `.
fn chain(s: &SideReport, other: &str, what: &str) -> String {
    let mut steps = Vec::new();
    let tier = |name: &str| s.tiers.iter().find(|t| t.tier == name);
    let tier_step = |label: &str, t: &TierReport| match &t.rule {
        Some(rule) => {
            let peer = t
                .peer
                .as_ref()
                .map(|p| format!(" (peer: {p})"))
                .unwrap_or_default();
            format!(
                "[{label}] {} by {rule}{peer}",
                t.action.as_deref().unwrap_or("")
            )
        }
        None => format!("[{label}] no rule of {} matches", t.policies.join(", ")),
    };
    if let Some(t) = tier("admin") {
        steps.push(tier_step("Admin", t));
    }
    if s.decided_by != "admin" {
        steps.push(if !s.isolated {
            "[NetworkPolicy] none isolates it".to_string()
        } else if let Some(r) = s.allowed_by.first() {
            format!("[NetworkPolicy] allowed by {}", rule_line(r))
        } else {
            format!(
                "[NetworkPolicy] isolated by {}; no rule allows {other} on {what}",
                s.selecting.join(", ")
            )
        });
    }
    if (s.decided_by == "baseline" || s.decided_by == "default")
        && let Some(t) = tier("baseline")
    {
        steps.push(tier_step("Baseline", t));
    }
    if s.decided_by == "default" {
        steps.push("default: allowed".into());
    }
    steps.join(" → ")
}

fn rule_line(r: &RuleReport) -> String {
    let list = if r.direction == "ingress" {
        "from"
    } else {
        "to"
    };
    let mut s = format!("{} {}[{}]", r.policy, r.direction, r.rule);
    match r.peer {
        Some(i) => s.push_str(&format!(" {list}[{i}]")),
        None => s.push_str(&format!(" (no {list}: every peer)")),
    }
    match r.port_index {
        Some(i) => s.push_str(&format!(" ports[{i}]: {}", r.port)),
        None => s.push_str(&format!(": {}", r.port)),
    }
    s
}

impl fmt::Display for ExplainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.port == 0 {
            self.protocol.clone()
        } else {
            format!("{}/{}", self.port, self.protocol)
        };
        writeln!(
            f,
            "{}: {} ({}) -> {} ({}) {what}",
            if self.allowed { "ALLOWED" } else { "DENIED" },
            self.from.name,
            self.from.addr,
            self.to.name,
            self.to.addr
        )?;
        let sides = [
            (0, self.from.name.as_str(), self.egress.as_ref()),
            (1, self.to.name.as_str(), self.ingress.as_ref()),
        ];
        for (i, name, side) in sides {
            let dir = if i == 0 { "egress" } else { "ingress" };
            let Some(s) = side else {
                writeln!(f, "  {dir} of {name}: not a pod, no {dir} policy applies")?;
                continue;
            };
            let other = if i == 0 {
                &self.to.name
            } else {
                &self.from.name
            };
            if !s.tiers.is_empty() && !s.host_exempt {
                writeln!(
                    f,
                    "  {dir} of {}: {}: {}",
                    s.pod,
                    if s.allowed { "allowed" } else { "denied" },
                    chain(s, other, &what)
                )?;
                if s.decided_by == "networkpolicy" {
                    for r in s.allowed_by.iter().skip(1) {
                        writeln!(f, "    also allowed by {}", rule_line(r))?;
                    }
                }
                for t in &s.tiers {
                    for tie in &t.ties {
                        writeln!(
                            f,
                            "    same priority: {tie} matches too; the API leaves the order \
                             of equal priorities undefined, Palisade consults them by name"
                        )?;
                    }
                }
            } else if s.host_exempt {
                writeln!(
                    f,
                    "  {dir} of {}: allowed: traffic from this node is exempt (agent without --enforce-host)",
                    s.pod
                )?;
            } else if !s.isolated {
                writeln!(
                    f,
                    "  {dir} of {}: allowed: not isolated (no policy selects it for {dir})",
                    s.pod
                )?;
            } else {
                writeln!(
                    f,
                    "  {dir} of {}: isolated by {}",
                    s.pod,
                    s.selecting.join(", ")
                )?;
                if s.allowed_by.is_empty() {
                    writeln!(f, "    denied: no rule allows {other} on {what}")?;
                }
                for r in &s.allowed_by {
                    writeln!(f, "    allowed by {}", rule_line(r))?;
                }
            }
            if let Some(a) = s.audit_allowed {
                let audited: Vec<&str> = s
                    .audited
                    .iter()
                    .chain(&s.audited_cluster)
                    .map(String::as_str)
                    .collect();
                writeln!(
                    f,
                    "    audit: {} (audit mode) would {} it{}",
                    audited.join(", "),
                    if a { "allow" } else { "deny" },
                    s.audit_rule
                        .as_ref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                )?;
                for r in &s.audit_allowed_by {
                    writeln!(f, "      allowed by {}", rule_line(r))?;
                }
            }
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        Ok(())
    }
}
