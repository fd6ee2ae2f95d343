//! The agent's side of observability: starts the event reader and the
//! metrics collector on the pinned maps, keeps the monitor's directory and
//! the agent metrics current after each round, and answers the read-only
//! control requests (`endpoints`, `policy_get`, `explain`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use palisade_common::{IDENTITY_HOST, direction, endpoint_flags, proto};
use palisade_compiler::{IdentityInfo, ObjectKind, PodRef, PolicyName};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::Agent;
use crate::config::AgentConfig;
use crate::control::Response;
use crate::metrics::{
    DatapathCollector, EndpointState, EndpointStateLabels, IdentityKindLabel, IdentityLabels,
    MapLabel, MapLabels, Metrics, ModeLabels, PolicyMode, SourceProblemKind, SourceProblemLabels,
    TierLabel, TierLabels, UnenforcedLabels,
};
use crate::monitor::{Directory, Hub, LocalPod};
use crate::source::{Kind, Object, ObjectKey};
use palisade_compiler::Meaning;

/// The cluster-wide part of the monitor's directory, rebuilt only when the
/// pods (or this node's addresses, which take precedence over pod
/// addresses) change: at cluster scale it is most of the directory's cost.
struct ClusterNames {
    /// [`super::feed::Feed::pods_generation`] and the node's addresses it
    /// was built at.
    key: (u64, BTreeSet<IpAddr>),
    addresses: Arc<HashMap<IpAddr, PodRef>>,
    pods: Arc<BTreeSet<PodRef>>,
    /// The pods' namespaces.
    namespaces: BTreeSet<String>,
}

/// Observability state owned by the agent.
pub(super) struct Observe {
    pub(super) hub: Arc<Hub>,
    pub(super) metrics: Arc<Metrics>,
    pending_since: Option<Instant>,
    last_directory: Option<(u64, Vec<crate::control::EndpointStatus>)>,
    cluster: Option<ClusterNames>,
    /// Revision and [`super::feed::Feed::generation`] the metrics that
    /// count the model (identities, policies by mode) were computed at:
    /// a round that changed neither (a `status` request) skips them.
    counted: Option<(u64, u64)>,
    /// The same-priority overlaps last reported (see
    /// [`palisade_compiler::PriorityOverlap`]).
    overlaps: BTreeSet<(String, u16, String, String, u8)>,
    /// The policy entries last reported as beyond a tier table.
    overflows: BTreeSet<palisade_common::PolicyKey>,
    _reader: Option<tokio::task::JoinHandle<()>>,
}

impl Observe {
    /// Opens the pinned maps; a failure only disables that part (logged).
    pub(super) fn start(cfg: &AgentConfig) -> Self {
        let hub = Hub::new();
        let reader = match crate::monitor::reader::spawn(&cfg.bpffs_dir, hub.clone()) {
            Ok(h) => Some(h),
            Err(error) => {
                warn!(%error, "drop events unavailable: `palisade monitor` will show none");
                None
            }
        };
        let collector =
            match DatapathCollector::open(&cfg.bpffs_dir, hub.clone(), cfg.metrics_pod_labels) {
                Ok(c) => Some(c),
                Err(error) => {
                    warn!(%error, "datapath metrics unavailable");
                    None
                }
            };
        Observe {
            hub,
            metrics: Metrics::new(collector),
            pending_since: None,
            last_directory: None,
            cluster: None,
            counted: None,
            overlaps: BTreeSet::new(),
            overflows: BTreeSet::new(),
            _reader: reader,
        }
    }

    /// A source change arrived: start the change-to-enforced clock.
    pub(super) fn note_change(&mut self) {
        self.pending_since.get_or_insert_with(Instant::now);
    }
}

fn identity_name(info: Option<IdentityInfo>, id: u32) -> String {
    match info {
        Some(IdentityInfo::Any) => "any".into(),
        Some(IdentityInfo::Host) => "host".into(),
        Some(IdentityInfo::World) => "world".into(),
        Some(IdentityInfo::Cidr(n)) => n.to_string(),
        Some(IdentityInfo::Pod {
            namespace, labels, ..
        }) => {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{namespace}{{{}}}", l.join(","))
        }
        None => format!("identity {id}"),
    }
}

impl Agent {
    /// The cluster-wide names, rebuilt if the pods changed.
    fn cluster_names(&mut self) -> &ClusterNames {
        let key = (self.feed.pods_generation(), self.host.clone());
        if self.obs.cluster.as_ref().is_none_or(|c| c.key != key) {
            let pods: BTreeSet<PodRef> = self.compiler.pods().into_iter().collect();
            let mut namespaces = BTreeSet::new();
            for p in &pods {
                if !namespaces.contains(&p.namespace) {
                    namespaces.insert(p.namespace.clone());
                }
            }
            self.obs.cluster = Some(ClusterNames {
                key,
                addresses: Arc::new(self.compiler.pod_addresses().into_iter().collect()),
                pods: Arc::new(pods),
                namespaces,
            });
        }
        self.obs.cluster.as_ref().expect("just set")
    }

    /// The directory the monitor names events with.
    fn directory(&mut self) -> Directory {
        let mut d = Directory::default();
        let mut ep_pods: HashMap<u32, PodRef> = HashMap::new();
        for (m, id) in self.numbers.numbering(&self.compiler) {
            match m {
                Meaning::Endpoint {
                    namespace, name, ..
                } => {
                    ep_pods.insert(*id, PodRef::new(namespace.clone(), name.clone()));
                }
                Meaning::Cidr { prefix } => {
                    d.cidrs.insert(*id, prefix.clone());
                }
                _ => {}
            }
        }
        for info in self.mirror.tables.endpoints.values() {
            let Some(pod) = ep_pods.get(&info.ep_id) else {
                continue;
            };
            let (ie, ia) = self.compiler.selecting(pod, direction::INGRESS);
            let (ee, ea) = self.compiler.selecting(pod, direction::EGRESS);
            d.endpoints.insert(
                info.ep_id,
                LocalPod {
                    pod: pod.clone(),
                    flags: info.flags,
                    selecting: [ie, ee],
                    audited: [ia, ea],
                },
            );
        }
        for (ifindex, pod) in self.endpoints.pending_by_ifindex() {
            d.pending.insert(
                ifindex,
                LocalPod {
                    pod: pod.clone(),
                    flags: self
                        .mirror
                        .tables
                        .endpoints
                        .get(&ifindex)
                        .map_or(0, |e| e.flags),
                    selecting: [Vec::new(), Vec::new()],
                    audited: [Vec::new(), Vec::new()],
                },
            );
            if let Some(r) = self.feed.cni(pod) {
                for ip in &r.ips {
                    d.pending_addresses.insert(*ip, pod.clone());
                }
            }
        }
        d.tier_rules = self
            .compiler
            .tier_rules()
            .into_iter()
            .map(|r| ((r.direction, r.code), r.to_string()))
            .collect();
        d.host = self.host.clone();
        let cluster = self.cluster_names();
        d.addresses = cluster.addresses.clone();
        d.pods = cluster.pods.clone();
        d.namespaces = cluster.namespaces.clone();
        for ns in self.compiler.policy_namespaces() {
            if !d.namespaces.contains(ns) {
                d.namespaces.insert(ns.to_string());
            }
        }
        d
    }

    /// After a round: directory and metrics.
    pub(super) fn observe_round(&mut self, committed: Option<(bool, Duration, u64)>) {
        let t0 = Instant::now();
        let status = self.endpoints.status();
        let key = (self.numbers.revision, status.clone());
        if self.obs.last_directory.as_ref() != Some(&key) {
            let d = self.directory();
            self.obs.hub.set_directory(d);
            self.obs.last_directory = Some(key);
        }
        let t_dir = t0.elapsed();
        let m = &self.obs.metrics.agent;
        if let Some((ok, took, before)) = committed {
            if ok {
                if self.numbers.revision != before {
                    m.sync_duration.observe(took.as_secs_f64());
                }
                if let Some(t) = self.obs.pending_since.take() {
                    m.enforce_latency.observe(t.elapsed().as_secs_f64());
                }
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64();
                m.last_sync.set(now);
            } else {
                m.sync_errors.inc();
            }
        }
        m.revision.set(self.numbers.revision as i64);
        m.cni_sandboxes.set(self.feed.cni_records().count() as i64);
        let disagreements = self.feed.address_disagreements();
        let counted_before = m.cni_address_disagreements.get();
        if disagreements > counted_before {
            m.cni_address_disagreements
                .inc_by(disagreements - counted_before);
        }
        let mut states: BTreeMap<EndpointState, i64> = [
            EndpointState::Enforced,
            EndpointState::Pending,
            EndpointState::NoInterface,
            EndpointState::Other,
        ]
        .into_iter()
        .map(|s| (s, 0))
        .collect();
        for e in &status {
            let s = match e.state.as_str() {
                "enforced" => EndpointState::Enforced,
                "pending" => EndpointState::Pending,
                "no-interface" => EndpointState::NoInterface,
                _ => EndpointState::Other,
            };
            *states.entry(s).or_default() += 1;
        }
        for (state, n) in states {
            m.endpoints
                .get_or_create(&EndpointStateLabels { state })
                .set(n);
        }
        let counted = (self.numbers.revision, self.feed.generation());
        let recount = self.obs.counted != Some(counted);
        let t1 = Instant::now();
        if recount {
            self.obs.counted = Some(counted);
            self.count_model();
        }
        let t_count = t1.elapsed();
        let t2 = Instant::now();
        let mir = &self.mirror;
        for (map, n) in [
            (MapLabel::Endpoints, mir.tables.endpoints.len()),
            (MapLabel::Policy, mir.tables.policy.len()),
            (MapLabel::Portsets, mir.tables.portsets.len()),
            (MapLabel::Tiersets, mir.tables.tiersets.len()),
            (MapLabel::IpcacheExact4, mir.tables.ipcache_exact4.len()),
            (MapLabel::IpcacheExact6, mir.tables.ipcache_exact6.len()),
            (MapLabel::IpcacheV4, mir.tables.ipcache_lpm4.len()),
            (MapLabel::IpcacheV6, mir.tables.ipcache_lpm6.len()),
            (
                MapLabel::SourcesV4,
                mir.sources
                    .iter()
                    .filter(|(_, n)| n.addr().is_ipv4())
                    .count(),
            ),
            (
                MapLabel::SourcesV6,
                mir.sources
                    .iter()
                    .filter(|(_, n)| n.addr().is_ipv6())
                    .count(),
            ),
        ] {
            m.map_entries
                .get_or_create(&MapLabels { map })
                .set(n as i64);
        }
        let mut problems: BTreeMap<SourceProblemKind, i64> = [
            SourceProblemKind::File,
            SourceProblemKind::Namespace,
            SourceProblemKind::Pod,
            SourceProblemKind::NetworkPolicy,
            SourceProblemKind::ClusterNetworkPolicy,
            SourceProblemKind::Node,
        ]
        .into_iter()
        .map(|k| (k, 0))
        .collect();
        *problems.entry(SourceProblemKind::File).or_default() += self.problems.len() as i64;
        for r in self.compiler.rejections().keys() {
            let k = match r.kind {
                ObjectKind::Namespace => SourceProblemKind::Namespace,
                ObjectKind::Pod => SourceProblemKind::Pod,
                ObjectKind::NetworkPolicy => SourceProblemKind::NetworkPolicy,
                ObjectKind::ClusterNetworkPolicy => SourceProblemKind::ClusterNetworkPolicy,
                ObjectKind::Node => SourceProblemKind::Node,
            };
            *problems.entry(k).or_default() += 1;
        }
        for (kind, n) in problems {
            m.invalid_objects
                .get_or_create(&SourceProblemLabels { kind })
                .set(n);
        }
        let mut unenforced: BTreeMap<(String, String), i64> = BTreeMap::new();
        for u in self.feed.unenforced() {
            *unenforced
                .entry((u.kind.clone(), u.api_version.clone()))
                .or_default() += 1;
        }
        m.unenforced.clear();
        for ((kind, api_version), n) in unenforced {
            m.unenforced
                .get_or_create(&UnenforcedLabels { kind, api_version })
                .set(n);
        }
        let t_metrics = t2.elapsed();
        let t3 = Instant::now();
        if recount {
            self.report_overlaps();
        }
        let t_overlaps = t3.elapsed();
        let t4 = Instant::now();
        if recount {
            self.report_tier_overflows();
            tracing::debug!(target: "palisade::round", dir_us = t_dir.as_micros() as u64,
                count_us = t_count.as_micros() as u64, metrics_us = t_metrics.as_micros() as u64,
                overlaps_us = t_overlaps.as_micros() as u64,
                overflows_us = t4.elapsed().as_micros() as u64, "observe");
        }
    }

    /// Same-priority overlaps of ClusterNetworkPolicies: a warning when one
    /// appears, a line when it is gone, and the gauge per tier.
    fn report_overlaps(&mut self) {
        let now = self.compiler.priority_overlaps();
        let mut pairs = [0i64; 2];
        let mut seen = BTreeSet::new();
        for o in &now {
            pairs[usize::from(o.tier != "admin")] += 1;
            let key = (
                o.tier.to_string(),
                o.priority,
                o.first.clone(),
                o.second.clone(),
                o.direction,
            );
            if !self.obs.overlaps.contains(&key) {
                let example = o.pods.first().map(ToString::to_string).unwrap_or_default();
                warn!(
                    tier = o.tier,
                    priority = o.priority,
                    first = %o.first,
                    second = %o.second,
                    direction = direction::as_str(o.direction),
                    pods = o.pods.len(),
                    example = %example,
                    "ClusterNetworkPolicies of the same priority act differently on the same \
                     traffic: the API leaves their order undefined; Palisade consults {} first \
                     (by name)",
                    o.first
                );
            }
            seen.insert(key);
        }
        for (tier, priority, first, second, dir) in self.obs.overlaps.difference(&seen) {
            info!(
                tier = %tier,
                priority,
                first = %first,
                second = %second,
                direction = direction::as_str(*dir),
                "same-priority overlap resolved"
            );
        }
        self.obs.overlaps = seen;
        let m = &self.obs.metrics.agent;
        for (tier, n) in [
            (TierLabel::Admin, pairs[0]),
            (TierLabel::Baseline, pairs[1]),
        ] {
            m.priority_overlaps
                .get_or_create(&TierLabels { tier })
                .set(n);
        }
    }

    /// Entries whose tier codes do not fit a table (they deny every port:
    /// fail closed): a warning naming each new one, and the gauge.
    fn report_tier_overflows(&mut self) {
        let st = self.compiler.state();
        let now: BTreeSet<_> = st.tier_overflows().copied().collect();
        for k in now.difference(&self.obs.overflows) {
            let pod = st
                .endpoints
                .iter()
                .find(|(_, e)| e.ep_id == k.ep_id)
                .map(|(p, _)| p.to_string())
                .unwrap_or_default();
            warn!(
                pod = %pod,
                direction = direction::as_str(k.direction),
                protocol = %proto::Name(k.proto),
                peer = %identity_name(self.compiler.identity(k.identity), k.identity),
                limit = palisade_common::TIER_SEGMENTS,
                "the ClusterNetworkPolicy rules for this peer need more port segments than a \
                 tier table holds: every port is denied (fail closed) until fewer distinct \
                 port ranges apply"
            );
        }
        if now.is_empty() && !self.obs.overflows.is_empty() {
            info!("every tier table fits again");
        }
        self.obs.metrics.agent.tier_overflows.set(now.len() as i64);
        self.obs.overflows = now;
    }

    /// The metrics that count the model: pod and CIDR identities, policies
    /// by mode.
    fn count_model(&self) {
        let m = &self.obs.metrics.agent;
        let st = self.compiler.state();
        let mut pod_ids: std::collections::BTreeSet<u32> = std::collections::BTreeSet::new();
        for v in st.ipcache_exact4.values().chain(st.ipcache_exact6.values()) {
            if v.identity != IDENTITY_HOST {
                pod_ids.insert(v.identity);
            }
        }
        m.identities
            .get_or_create(&IdentityLabels {
                kind: IdentityKindLabel::Pod,
            })
            .set(pod_ids.len() as i64);
        m.identities
            .get_or_create(&IdentityLabels {
                kind: IdentityKindLabel::Cidr,
            })
            .set((st.ipcache_lpm4.len() + st.ipcache_lpm6.len()) as i64);
        let (enforce, audit) = self.compiler.policy_modes();
        m.policies
            .get_or_create(&ModeLabels {
                mode: PolicyMode::Enforce,
            })
            .set(enforce as i64);
        m.policies
            .get_or_create(&ModeLabels {
                mode: PolicyMode::Audit,
            })
            .set(audit as i64);
    }

    fn raw_policy(
        &self,
        n: &PolicyName,
    ) -> Option<k8s_openapi::api::networking::v1::NetworkPolicy> {
        match self.feed.object(&ObjectKey {
            kind: Kind::NetworkPolicy,
            namespace: n.namespace.clone(),
            name: n.name.clone(),
        }) {
            Some(Object::NetworkPolicy(np)) => Some(np.as_ref().clone()),
            _ => None,
        }
    }

    pub(super) fn data(v: Value) -> Response {
        Response {
            ok: true,
            data: Some(v),
            ..Default::default()
        }
    }

    /// `endpoints`: local pods in detail.
    pub(super) fn endpoints_answer(&self) -> Response {
        let by_name: HashMap<&str, u32> = self
            .net
            .links
            .iter()
            .map(|(i, n)| (n.as_str(), *i))
            .collect();
        let pinned = crate::datapath::pinned_interfaces(&self.cfg.links_dir());
        let identities: HashMap<u32, Meaning> = self
            .compiler
            .numbering()
            .into_iter()
            .map(|(m, id)| (id, m))
            .collect();
        let list: Vec<Value> = self
            .endpoints
            .status()
            .into_iter()
            .map(|e| {
                let ifindex = e.interface.as_deref().and_then(|n| by_name.get(n).copied());
                let info = ifindex.and_then(|i| self.mirror.tables.endpoints.get(&i));
                let flags = info.map_or(0, |i| i.flags);
                let pod = e
                    .pod
                    .split_once('/')
                    .map(|(ns, n)| PodRef::new(ns, n))
                    .unwrap_or_else(|| PodRef::new("", e.pod.clone()));
                let sel = |d| {
                    let (en, au) = self.compiler.selecting(&pod, d);
                    json!({"enforced": en.iter().map(ToString::to_string).collect::<Vec<_>>(),
                           "audited": au.iter().map(ToString::to_string).collect::<Vec<_>>()})
                };
                let labels = info.and_then(|i| match identities.get(&i.identity) {
                    Some(Meaning::Pod { labels, .. }) => Some(labels.clone()),
                    _ => None,
                });
                let has = |bit: u32| flags & bit != 0;
                json!({
                    "pod": e.pod,
                    "interface": e.interface,
                    "ifindex": ifindex,
                    "endpoint_id": info.map(|i| i.ep_id),
                    "identity": info.map(|i| i.identity),
                    "labels": labels,
                    "isolated": {"ingress": has(endpoint_flags::ISOLATED_INGRESS),
                                 "egress": has(endpoint_flags::ISOLATED_EGRESS)},
                    "audit": {"ingress": has(endpoint_flags::AUDIT_INGRESS) || has(endpoint_flags::VIEW_ISOLATED_INGRESS),
                              "egress": has(endpoint_flags::AUDIT_EGRESS) || has(endpoint_flags::VIEW_ISOLATED_EGRESS)},
                    "policy_pending": has(endpoint_flags::POLICY_PENDING),
                    "attached": e.interface.as_ref().is_some_and(|n| pinned.contains(n)) && e.state != "no-interface",
                    "state": e.state,
                    "policies": {"ingress": sel(direction::INGRESS), "egress": sel(direction::EGRESS)},
                })
            })
            .collect();
        Self::data(Value::Array(list))
    }

    /// `policy_get`: what a policy compiled to on this node.
    pub(super) fn policy_answer(&self, namespace: &str, name: &str) -> Response {
        let pn = PolicyName::new(namespace, name);
        let Some(sum) = self.compiler.policy_summary(&pn) else {
            if !self.compiler.has_namespace(namespace) {
                return Response::error(format!("unknown namespace {namespace:?}"));
            }
            let rejected = self.compiler.rejections().iter().find(|(r, _)| {
                r.kind == ObjectKind::NetworkPolicy && r.namespace == namespace && r.name == name
            });
            return Response::error(match rejected {
                Some((_, e)) => format!("policy {pn} is rejected: {e}"),
                None => format!("policy {pn} not found"),
            });
        };
        let st = self.compiler.state();
        let endpoints: Vec<Value> = sum
            .selected_local
            .iter()
            .filter_map(|pod| {
                let ep = st.endpoints.get(pod)?;
                let entries: Vec<Value> = st
                    .policy
                    .iter()
                    .filter(|(k, _)| {
                        k.ep_id == ep.ep_id && sum.isolates[(k.direction & 1) as usize].is_some()
                    })
                    .map(|(k, v)| {
                        let ports = st
                            .value_says(v)
                            .map(|p| {
                                p.allow
                                    .ranges()
                                    .iter()
                                    .map(|(a, b)| {
                                        if a == b {
                                            a.to_string()
                                        } else {
                                            format!("{a}-{b}")
                                        }
                                    })
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                            .unwrap_or_default();
                        json!({
                            "direction": direction::as_str(k.direction),
                            "peer": identity_name(self.compiler.identity(k.identity), k.identity),
                            "protocol": proto::Name(k.proto).to_string(),
                            "ports": ports,
                            "view": if k.view == 0 { "enforced" } else { "audit" },
                        })
                    })
                    .collect();
                Some(json!({"pod": pod.to_string(), "entries": entries}))
            })
            .collect();
        let spec = self
            .raw_policy(&pn)
            .and_then(|np| serde_json::to_value(np.spec).ok());
        Self::data(json!({
            "policy": pn.to_string(),
            "mode": if sum.audited { "audit" } else { "enforce" },
            "isolates": {
                "ingress": sum.isolates[direction::INGRESS as usize].map(|n| json!({"rules": n})),
                "egress": sum.isolates[direction::EGRESS as usize].map(|n| json!({"rules": n})),
            },
            "selects": sum.selected_local.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "endpoints": endpoints,
            "spec": spec,
        }))
    }

    /// `policy get NAME`: a ClusterNetworkPolicy's tier, rules, subjects on
    /// this node and the entry ports where its rules are the first match
    /// of their tier.
    pub(super) fn cluster_policy_answer(&self, name: &str) -> Response {
        let Some(sum) = self.compiler.cluster_policy_summary(name) else {
            let rejected = self
                .compiler
                .rejections()
                .iter()
                .find(|(r, _)| r.kind == ObjectKind::ClusterNetworkPolicy && r.name == name);
            return Response::error(match rejected {
                Some((_, e)) => format!("ClusterNetworkPolicy {name:?} is rejected: {e}"),
                None => format!(
                    "ClusterNetworkPolicy {name:?} not found (a NetworkPolicy is NAMESPACE/NAME)"
                ),
            });
        };
        let st = self.compiler.state();
        let rule_of: HashMap<u32, String> =
            sum.rules.iter().map(|r| (r.code, r.to_string())).collect();
        let admin = sum.tier == "admin";
        let endpoints: Vec<Value> = sum
            .selected_local
            .iter()
            .filter_map(|pod| {
                let ep = st.endpoints.get(pod)?;
                let mut entries = Vec::new();
                for (k, v) in st.policy.iter().filter(|(k, _)| k.ep_id == ep.ep_id) {
                    let Some(says) = st.value_says(v) else {
                        continue;
                    };
                    // The ports of each of this policy's rules in this entry.
                    let mut ports: BTreeMap<u32, Vec<String>> = BTreeMap::new();
                    for (lo, hi, codes) in says.codes.ranges() {
                        let code = if admin { codes.admin } else { codes.baseline };
                        if rule_of.contains_key(&code) {
                            ports.entry(code).or_default().push(if lo == hi {
                                lo.to_string()
                            } else {
                                format!("{lo}-{hi}")
                            });
                        }
                    }
                    for (code, ports) in ports {
                        entries.push(json!({
                            "direction": direction::as_str(k.direction),
                            "peer": identity_name(self.compiler.identity(k.identity), k.identity),
                            "protocol": proto::Name(k.proto).to_string(),
                            "ports": ports.join(","),
                            "rule": rule_of[&code],
                        }));
                    }
                }
                Some(json!({"pod": pod.to_string(), "entries": entries}))
            })
            .collect();
        let spec = match self.feed.object(&ObjectKey {
            kind: Kind::ClusterNetworkPolicy,
            namespace: String::new(),
            name: name.to_string(),
        }) {
            Some(Object::ClusterNetworkPolicy(p)) => serde_json::to_value(&p.spec).ok(),
            _ => None,
        };
        Self::data(json!({
            "kind": "ClusterNetworkPolicy",
            "policy": name,
            "tier": sum.tier,
            "priority": sum.priority,
            "mode": if sum.audited { "audit" } else { "enforce" },
            "rules": sum.rules.iter().map(|r| json!({
                "rule": r.to_string(),
                "direction": direction::as_str(r.direction),
                "index": r.index,
                "name": r.name,
                "action": r.action,
            })).collect::<Vec<_>>(),
            "selects": sum.selected_local.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "same_priority": sum.same_priority,
            "endpoints": endpoints,
            "spec": spec,
        }))
    }

    /// `explain`, on the agent's compiled model.
    pub(super) fn explain_answer(&self, req: &crate::explain::ExplainRequest) -> Response {
        match crate::explain::explain(&self.compiler, req, self.cfg.enforce_host, &|n| {
            self.raw_policy(n)
        }) {
            Ok(mut r) => {
                // Enforcement the operator may believe in and does not have.
                r.notes.extend(
                    self.feed
                        .unenforced()
                        .map(|u| format!("NOT ENFORCED by Palisade: {u}")),
                );
                match serde_json::to_value(&r) {
                    Ok(v) => Self::data(v),
                    Err(e) => Response::error(e.to_string()),
                }
            }
            Err(e) => Response::error(e.to_string()),
        }
    }
}
