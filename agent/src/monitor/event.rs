//! A drop or audit event as `palisade monitor` shows it: both ends named
//! (namespace/pod, `host`, a CIDR region, or `world`), the flow, the reason
//! and the policies it is attributed to, default deny included. Built from
//! the raw [`DropEvent`] and a [`Directory`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use palisade_common::{
    CIDR_IDENTITY_BASE, DROP_EVENT_VERSION, DropEvent, DropReason, IDENTITY_HOST, addr_to_bytes,
    direction, endpoint_flags, event_kind, family, proto,
};
use serde::{Deserialize, Serialize};

use super::Directory;

/// Which events a monitor wants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// Drops only.
    #[default]
    Drop,
    /// Audit (would-drop) events only.
    Audit,
    /// Both.
    All,
}

impl EventType {
    fn wants(self, kind: &str) -> bool {
        match self {
            EventType::All => true,
            EventType::Drop => kind == "drop",
            EventType::Audit => kind == "audit",
        }
    }
}

/// A monitor's filters (all must hold).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorFilter {
    /// Either end is a pod of this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Either end is a pod of this name (in `namespace`, if given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The reason (`policy-denied`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Drops, audits or both.
    #[serde(default, rename = "type")]
    pub kind: EventType,
    /// How often to send counters (ms; default 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats_interval_ms: Option<u64>,
}

impl MonitorFilter {
    /// Whether `ev` passes the filters.
    pub fn matches(&self, ev: &MonitorEvent) -> bool {
        if !self.kind.wants(&ev.kind) {
            return false;
        }
        if let Some(r) = &self.reason
            && *r != ev.reason
        {
            return false;
        }
        if self.namespace.is_none() && self.pod.is_none() {
            return true;
        }
        [&ev.src, &ev.dst].iter().any(|p| {
            self.namespace
                .as_ref()
                .is_none_or(|n| p.namespace.as_ref() == Some(n))
                && self.pod.as_ref().is_none_or(|n| p.pod.as_ref() == Some(n))
        })
    }

    /// Validates the reason name.
    pub fn check(&self) -> Result<(), String> {
        if let Some(r) = &self.reason
            && !DropReason::ALL.iter().any(|d| d.as_str() == r)
        {
            let known: Vec<&str> = DropReason::ALL.iter().map(|d| d.as_str()).collect();
            return Err(format!(
                "unknown reason {r:?} (known: {})",
                known.join(", ")
            ));
        }
        Ok(())
    }
}

/// One end of the flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// `namespace/pod`, `host`, a CIDR, `world`, or `?` (not parsed).
    pub name: String,
    /// The pod's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<IpAddr>,
    /// The port (protocols with ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// A named, attributed event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorEvent {
    /// `bpf_ktime_get_ns()` of the event.
    pub time_ns: u64,
    /// `drop` or `audit`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `DropReason::as_str`.
    pub reason: String,
    /// `ingress` or `egress` (of the local pod).
    pub direction: String,
    /// `TCP`, `UDP`, `SCTP`, `ICMP`, `ICMPv6`, `proto-N`, or empty.
    pub protocol: String,
    /// The packet's source.
    pub src: Peer,
    /// The packet's destination.
    pub dst: Peer,
    /// The local pod (`namespace/name`), if the endpoint is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Host-side interface index.
    pub ifindex: u32,
    /// Packet length.
    pub length: u32,
    /// Enforced policies selecting the local pod in this direction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Audited policies selecting the local pod in this direction (an
    /// audit event of the audit view names these).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audited_policies: Vec<String>,
    /// Why, in words.
    pub explanation: String,
}

/// Counters sent to a monitor now and then, and on request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStats {
    /// Events the datapath wrote to the ring (since it was created).
    pub emitted: u64,
    /// Events the datapath suppressed (rate limit).
    pub rate_limited: u64,
    /// Events lost because the ring was full.
    pub ring_full: u64,
    /// Events this monitor lost because it read too slowly.
    pub lost: u64,
}

/// One line of a monitor stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StreamLine {
    /// An event.
    Event {
        /// It.
        event: Box<MonitorEvent>,
    },
    /// Counters.
    Stats {
        /// Them.
        stats: StreamStats,
    },
    /// The subscription's answer (first line), or a final error.
    Status {
        /// Subscribed.
        ok: bool,
        /// Why not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// Empty for events without an IP protocol (not IP).
fn protocol_name(p: u8) -> String {
    match p {
        0 => String::new(),
        p => proto::Name(p).to_string(),
    }
}

/// An event's address of family `fam` (none if not IP).
pub(crate) fn address(fam: u8, a: palisade_common::Addr) -> Option<IpAddr> {
    let b = addr_to_bytes(a);
    match fam {
        family::V4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        family::V6 => Some(IpAddr::V6(Ipv6Addr::from(b))),
        _ => None,
    }
}

/// Names the end at `addr` with identity `identity` (the peer's as the
/// datapath saw it).
fn peer(dir: &Directory, addr: Option<IpAddr>, identity: u32, port: Option<u16>) -> Peer {
    let mut p = Peer {
        addr,
        port,
        ..Default::default()
    };
    if let Some(pod) = addr.and_then(|a| dir.pod_at(&a)) {
        p.name = pod.to_string();
        p.namespace = Some(pod.namespace.clone());
        p.pod = Some(pod.name.clone());
    } else if identity == IDENTITY_HOST || addr.is_some_and(|a| dir.host.contains(&a)) {
        p.name = "host".into();
    } else if identity >= CIDR_IDENTITY_BASE
        && let Some(c) = dir.cidrs.get(&identity)
    {
        p.name = c.clone();
    } else if addr.is_some() {
        p.name = "world".into();
    } else {
        p.name = "?".into();
    }
    p
}

fn names(v: &[palisade_compiler::PolicyName]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

fn short_list(v: &[palisade_compiler::PolicyName]) -> String {
    v.iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Names and attributes a raw event; `None` for records of another layout
/// version.
pub fn enrich(raw: &DropEvent, dir: &Directory) -> Option<MonitorEvent> {
    if raw.version != DROP_EVENT_VERSION {
        return None;
    }
    let reason = DropReason::from_u8(raw.reason);
    let kind = if raw.kind == event_kind::AUDIT {
        "audit"
    } else {
        "drop"
    };
    let ingress = raw.direction == direction::INGRESS;
    let ports = proto::has_ports(raw.proto);
    let (saddr, daddr) = (
        address(raw.family, raw.saddr),
        address(raw.family, raw.daddr),
    );
    let local = dir.local(raw.ep_id, raw.ifindex);
    let local_peer = |addr, port| match local {
        Some(l) => Peer {
            name: l.pod.to_string(),
            namespace: Some(l.pod.namespace.clone()),
            pod: Some(l.pod.name.clone()),
            addr,
            port,
        },
        None => peer(dir, addr, 0, port),
    };
    let sport = ports.then_some(raw.sport);
    let dport = ports.then_some(raw.dport);
    let (src, dst) = if ingress {
        (
            peer(dir, saddr, raw.src_identity, sport),
            local_peer(daddr, dport),
        )
    } else {
        (
            local_peer(saddr, sport),
            peer(dir, daddr, raw.dst_identity, dport),
        )
    };
    let d = raw.direction as usize & 1;
    let (selecting, audited) = match local {
        Some(l) => (l.selecting[d].clone(), l.audited[d].clone()),
        None => (Vec::new(), Vec::new()),
    };
    let dir_s = direction::as_str(raw.direction);
    let protocol = protocol_name(raw.proto);
    let local_name = local.map_or_else(
        || format!("interface {}", raw.ifindex),
        |l| l.pod.to_string(),
    );
    let remote = if ingress { &src } else { &dst };
    let on = if ports {
        format!("{protocol}/{}", raw.dport)
    } else if protocol.is_empty() {
        "this protocol".into()
    } else {
        protocol.clone()
    };
    let explanation = match reason {
        Some(DropReason::PolicyDenied) => {
            let flags = local.map_or(0, |l| l.flags);
            let view = flags & endpoint_flags::view_isolated(raw.direction) != 0
                && flags & endpoint_flags::isolated(raw.direction) == 0;
            let no_rule = format!("no rule allows {} on {on}", remote.name);
            if kind == "audit" && view {
                format!(
                    "audited {} {} would isolate {local_name} for {dir_s}; {no_rule}",
                    if audited.len() == 1 {
                        "policy"
                    } else {
                        "policies"
                    },
                    short_list(&audited)
                )
            } else if selecting.is_empty() {
                format!("{local_name} is isolated for {dir_s}; {no_rule}")
            } else if kind == "audit" {
                format!(
                    "{local_name} isolated for {dir_s} by {} (audit mode: passed); {no_rule}",
                    short_list(&selecting)
                )
            } else {
                format!(
                    "{local_name} isolated for {dir_s} by {}; {no_rule}",
                    short_list(&selecting)
                )
            }
        }
        Some(r @ (DropReason::AdminDenied | DropReason::BaselineDenied)) => {
            let rule = dir
                .tier_rules
                .get(&(raw.direction, raw.rule_code))
                .cloned()
                .unwrap_or_else(|| {
                    format!(
                        "a ClusterNetworkPolicy rule since changed (code {})",
                        raw.rule_code
                    )
                });
            let tail = if r == DropReason::BaselineDenied {
                format!(" ({local_name} is isolated by no NetworkPolicy for {dir_s})")
            } else {
                String::new()
            };
            let verb = if kind == "audit" {
                "would be denied (audit mode: passed)"
            } else {
                "denied"
            };
            format!(
                "{} to {} on {on} {verb} by {rule}{tail}",
                src.name, dst.name
            )
        }
        Some(DropReason::Truncated) => "a header ends before the packet does".into(),
        Some(DropReason::Malformed) => "an invalid header field".into(),
        Some(DropReason::FragmentNoState) => {
            "a later IP fragment without an allowed first fragment".into()
        }
        Some(DropReason::UnsupportedL3) => format!("not IP, to or from {local_name} (isolated)"),
        Some(DropReason::UnknownEndpoint) => format!(
            "interface {} carries Palisade's program but has no endpoint entry (fail closed)",
            raw.ifindex
        ),
        Some(DropReason::PolicyRevoked) => {
            "an established connection the current policy no longer allows".into()
        }
        Some(DropReason::ExtensionHeaderLimit) => {
            "more IPv6 extension headers than the datapath walks".into()
        }
        Some(DropReason::PolicyPending) => {
            format!("the policy of {local_name} is not known yet (--default-deny-until-synced)")
        }
        Some(DropReason::Internal) => {
            "the datapath could not reach its per-CPU scratch memory (fail closed)".into()
        }
        Some(DropReason::InvalidSource) => match saddr {
            Some(a) => {
                let owner = match dir.pod_at(&a) {
                    Some(p) => format!("that address belongs to {p}"),
                    None if dir.host.contains(&a) => "that address is this node's".into(),
                    None => "that address belongs to no known pod".into(),
                };
                format!("{local_name} sent from {a}, which is not its address; {owner}")
            }
            None => format!(
                "{local_name} sent from an address that is not its own (headers not parsed)"
            ),
        },
        None => format!("unknown reason {}", raw.reason),
    };
    Some(MonitorEvent {
        time_ns: raw.timestamp_ns,
        kind: kind.into(),
        reason: reason.map_or_else(|| format!("reason-{}", raw.reason), |r| r.as_str().into()),
        direction: dir_s.into(),
        protocol,
        src,
        dst,
        endpoint: local.map(|l| l.pod.to_string()),
        ifindex: raw.ifindex,
        length: raw.pkt_len,
        policies: names(&selecting),
        audited_policies: names(&audited),
        explanation,
    })
}

struct End<'a>(&'a Peer);

impl fmt::Display for End<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.addr, self.0.port) {
            (Some(IpAddr::V6(a)), Some(p)) => write!(f, "[{a}]:{p}"),
            (Some(a), Some(p)) => write!(f, "{a}:{p}"),
            (Some(a), None) => write!(f, "{a}"),
            (None, _) => write!(f, "?"),
        }
    }
}

impl fmt::Display for MonitorEvent {
    /// `xx drop (policy-denied) ingress x/b <- y/a TCP 10.0.0.1:4242 -> 10.0.0.2:80: why`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.kind == "audit" { "~~" } else { "xx" };
        let ends = if self.direction == "ingress" {
            format!("{} <- {}", self.dst.name, self.src.name)
        } else {
            format!("{} -> {}", self.src.name, self.dst.name)
        };
        write!(
            f,
            "{mark} {} ({}) {} {ends}",
            self.kind, self.reason, self.direction
        )?;
        if !self.protocol.is_empty() {
            write!(f, " {}", self.protocol)?;
        }
        write!(
            f,
            " {} -> {}: {}",
            End(&self.src),
            End(&self.dst),
            self.explanation
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_common::addr_from_bytes;
    use palisade_compiler::{PodRef, PolicyName};

    fn v4(a: [u8; 4]) -> palisade_common::Addr {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&a);
        addr_from_bytes(b)
    }

    fn directory() -> Directory {
        let mut d = Directory::default();
        d.endpoints.insert(
            7,
            LocalPodBuilder::new("x", "b")
                .selecting(direction::INGRESS, "default-deny-all")
                .build(),
        );
        let addresses = std::sync::Arc::make_mut(&mut d.addresses);
        addresses.insert("10.0.0.1".parse().unwrap(), PodRef::new("y", "a"));
        addresses.insert("10.0.0.2".parse().unwrap(), PodRef::new("x", "b"));
        d.cidrs
            .insert(CIDR_IDENTITY_BASE + 3, "203.0.113.0/24".into());
        d
    }

    struct LocalPodBuilder(super::super::LocalPod);
    impl LocalPodBuilder {
        fn new(ns: &str, name: &str) -> Self {
            LocalPodBuilder(super::super::LocalPod {
                pod: PodRef::new(ns, name),
                flags: endpoint_flags::ISOLATED_INGRESS,
                selecting: Default::default(),
                audited: Default::default(),
            })
        }
        fn selecting(mut self, dir: u8, name: &str) -> Self {
            let ns = self.0.pod.namespace.clone();
            self.0.selecting[dir as usize].push(PolicyName::new(ns, name));
            self
        }
        fn build(self) -> super::super::LocalPod {
            self.0
        }
    }

    fn raw(dir: u8, src: [u8; 4], dst: [u8; 4], src_id: u32, dst_id: u32) -> DropEvent {
        DropEvent {
            rule_code: 0,
            _pad2: 0,
            timestamp_ns: 1,
            ifindex: 12,
            ep_id: 7,
            src_identity: src_id,
            dst_identity: dst_id,
            saddr: v4(src),
            daddr: v4(dst),
            sport: 4242,
            dport: 80,
            pkt_len: 60,
            version: DROP_EVENT_VERSION,
            kind: event_kind::DROP,
            reason: DropReason::PolicyDenied as u8,
            direction: dir,
            proto: proto::TCP,
            family: family::V4,
            l4_flags: 0x02,
            _pad: 0,
        }
    }

    #[test]
    fn names_both_ends_and_attributes_default_deny() {
        let d = directory();
        let ev = enrich(
            &raw(direction::INGRESS, [10, 0, 0, 1], [10, 0, 0, 2], 300, 301),
            &d,
        )
        .unwrap();
        assert_eq!(
            ev.to_string(),
            "xx drop (policy-denied) ingress x/b <- y/a TCP 10.0.0.1:4242 -> 10.0.0.2:80: \
             x/b isolated for ingress by default-deny-all; no rule allows y/a on TCP/80"
        );
        assert_eq!(ev.policies, ["x/default-deny-all"]);
        let f = MonitorFilter {
            namespace: Some("y".into()),
            ..Default::default()
        };
        assert!(f.matches(&ev));
        let f = MonitorFilter {
            namespace: Some("z".into()),
            ..Default::default()
        };
        assert!(!f.matches(&ev));
        let f = MonitorFilter {
            kind: EventType::Audit,
            ..Default::default()
        };
        assert!(!f.matches(&ev));
        // JSON round trip.
        let line = serde_json::to_string(&StreamLine::Event {
            event: Box::new(ev.clone()),
        })
        .unwrap();
        let back: StreamLine = serde_json::from_str(&line).unwrap();
        assert_eq!(
            back,
            StreamLine::Event {
                event: Box::new(ev)
            }
        );
    }

    #[test]
    fn egress_to_a_cidr_region_and_audit_view() {
        let mut d = directory();
        let ep = d.endpoints.get_mut(&7).unwrap();
        ep.flags = endpoint_flags::VIEW_ISOLATED_EGRESS;
        ep.audited[direction::EGRESS as usize].push(PolicyName::new("x", "lockdown"));
        let mut r = raw(
            direction::EGRESS,
            [10, 0, 0, 2],
            [203, 0, 113, 9],
            301,
            CIDR_IDENTITY_BASE + 3,
        );
        r.kind = event_kind::AUDIT;
        let ev = enrich(&r, &d).unwrap();
        assert_eq!(
            ev.to_string(),
            "~~ audit (policy-denied) egress x/b -> 203.0.113.0/24 TCP 10.0.0.2:4242 -> 203.0.113.9:80: \
             audited policy lockdown would isolate x/b for egress; no rule allows 203.0.113.0/24 on TCP/80"
        );
        assert_eq!(ev.audited_policies, ["x/lockdown"]);
        r.version = 9;
        assert!(enrich(&r, &d).is_none());
    }

    #[test]
    fn a_pending_pod_is_named_not_world() {
        // A pod CNI announced whose policy is not known yet: no endpoint
        // id, named by its interface and by CNI's address.
        let mut d = directory();
        let pending = LocalPodBuilder::new("prod", "web").build();
        d.pending.insert(12, pending);
        d.pending_addresses
            .insert("10.0.0.9".parse().unwrap(), PodRef::new("prod", "web"));
        let mut r = raw(direction::EGRESS, [10, 0, 0, 9], [10, 0, 0, 1], 0, 300);
        r.ep_id = 0;
        r.reason = DropReason::PolicyPending as u8;
        let ev = enrich(&r, &d).unwrap();
        assert_eq!(
            ev.to_string(),
            "xx drop (policy-pending) egress prod/web -> y/a TCP 10.0.0.9:4242 -> 10.0.0.1:80: \
             the policy of prod/web is not known yet (--default-deny-until-synced)"
        );
        // Seen from the other end, its address names it too.
        let mut r = raw(direction::INGRESS, [10, 0, 0, 9], [10, 0, 0, 2], 0, 301);
        r.ep_id = 7;
        let ev = enrich(&r, &d).unwrap();
        assert_eq!(ev.src.name, "prod/web");
        assert!(d.check_filter(Some("prod"), Some("web")).is_ok());
    }

    #[test]
    fn invalid_source_names_the_owner_of_the_borrowed_address() {
        let d = directory();
        // x/b (endpoint 7) sends from y/a's address, then from nobody's.
        let mut r = raw(direction::EGRESS, [10, 0, 0, 1], [10, 0, 0, 9], 300, 0);
        r.reason = DropReason::InvalidSource as u8;
        let ev = enrich(&r, &d).unwrap();
        assert_eq!(ev.reason, "invalid-source");
        assert_eq!(
            ev.to_string(),
            "xx drop (invalid-source) egress x/b -> world TCP 10.0.0.1:4242 -> 10.0.0.9:80: \
             x/b sent from 10.0.0.1, which is not its address; that address belongs to y/a"
        );
        r.saddr = v4([198, 18, 9, 9]);
        r.kind = event_kind::AUDIT;
        assert!(enrich(&r, &d).unwrap().to_string().ends_with(
            "x/b sent from 198.18.9.9, which is not its address; that address belongs to no known pod"
        ));
        let f = MonitorFilter {
            reason: Some("invalid-source".into()),
            ..Default::default()
        };
        assert!(f.check().is_ok());
    }

    #[test]
    fn filter_checks_reason_names() {
        let f = MonitorFilter {
            reason: Some("policy-denied".into()),
            ..Default::default()
        };
        assert!(f.check().is_ok());
        let f = MonitorFilter {
            reason: Some("nope".into()),
            ..Default::default()
        };
        assert!(f.check().unwrap_err().contains("unknown reason \"nope\""));
    }
}
