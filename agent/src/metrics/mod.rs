//! Prometheus metrics on the agent's health server (`/metrics`), with
//! prometheus-client. Two halves:
//!
//! * [`AgentMetrics`]: what the agent knows (endpoints, identities,
//!   policies, map entries, sync duration and policy-change-to-enforced
//!   latency, invalid objects, last successful sync, build info), set by
//!   the agent after each round.
//! * [`DatapathCollector`]: read from the pinned maps at scrape time —
//!   packets and bytes per direction, verdict and reason (`METRICS`), drops
//!   per namespace (`EP_DROPS`, named through the monitor's directory;
//!   per pod only with `--metrics-pod-labels`), event counters
//!   (`EVENT_STATS`), map capacities, events lost by slow monitors.
//!
//! Names follow `palisade_<subsystem>_<thing>_<unit>`; counters are
//! registered without `_total` (the encoder adds it); every label value
//! comes from an enum or names a namespace (bounded), never an address or
//! a port.

mod datapath;
mod labels;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub use datapath::DatapathCollector;
pub use labels::{
    BuildLabels, EndpointState, EndpointStateLabels, IdentityKindLabel, IdentityLabels, MapLabel,
    MapLabels, ModeLabels, PolicyMode, SourceKind, SourceKindLabels, SourceProblemKind,
    SourceProblemLabels, TierLabel, TierLabels, UnenforcedLabels,
};

/// What the agent sets.
#[derive(Clone, Debug)]
pub struct AgentMetrics {
    /// `palisade_endpoints{state}`.
    pub endpoints: Family<EndpointStateLabels, Gauge>,
    /// `palisade_identities{kind}`.
    pub identities: Family<IdentityLabels, Gauge>,
    /// `palisade_policies{mode}`.
    pub policies: Family<ModeLabels, Gauge>,
    /// `palisade_bpf_map_entries{map}`.
    pub map_entries: Family<MapLabels, Gauge>,
    /// `palisade_policy_sync_duration_seconds`.
    pub sync_duration: Histogram,
    /// `palisade_policy_enforce_latency_seconds`.
    pub enforce_latency: Histogram,
    /// `palisade_source_invalid_objects{kind}`.
    pub invalid_objects: Family<SourceProblemLabels, Gauge>,
    /// `palisade_unenforced_policy_objects{kind,api_version}`.
    pub unenforced: Family<UnenforcedLabels, Gauge>,
    /// `palisade_cluster_policy_priority_overlaps{tier}`.
    pub priority_overlaps: Family<TierLabels, Gauge>,
    /// `palisade_tier_table_overflows`.
    pub tier_overflows: Gauge,
    /// `palisade_policy_sync_errors_total`.
    pub sync_errors: Counter,
    /// `palisade_policy_last_sync_timestamp_seconds`.
    pub last_sync: Gauge<f64, AtomicU64>,
    /// `palisade_policy_revision`.
    pub revision: Gauge,
    /// `palisade_cni_sandboxes`.
    pub cni_sandboxes: Gauge,
    /// `palisade_cni_address_disagreements_total`.
    pub cni_address_disagreements: Counter,
    /// The Kubernetes source's watchers.
    pub source: SourceMetrics,
}

/// What the Kubernetes source sets: how its watchers fare.
#[derive(Clone, Debug, Default)]
pub struct SourceMetrics {
    /// `palisade_source_watch_failures_total{kind}`: a watcher failed and
    /// reconnects (each is one attempt while the API is away).
    pub failures: Family<SourceKindLabels, Counter>,
    /// `palisade_source_relists_total{kind}`: completed (re)lists.
    pub relists: Family<SourceKindLabels, Counter>,
    /// `palisade_source_current{kind}`: 1 while the kind's watch is current.
    pub current: Family<SourceKindLabels, Gauge>,
    /// `palisade_source_last_current_timestamp_seconds`: the last time
    /// every watcher was current and their state went to the agent.
    pub last_current: Gauge<f64, AtomicU64>,
}

impl SourceMetrics {
    fn labels(kind: crate::source::Kind) -> SourceKindLabels {
        SourceKindLabels {
            kind: match kind {
                crate::source::Kind::Namespace => SourceKind::Namespace,
                crate::source::Kind::Pod => SourceKind::Pod,
                crate::source::Kind::NetworkPolicy => SourceKind::NetworkPolicy,
                crate::source::Kind::ClusterNetworkPolicy => SourceKind::ClusterNetworkPolicy,
                crate::source::Kind::Node => SourceKind::Node,
                crate::source::Kind::Unenforced => SourceKind::Unenforced,
            },
        }
    }

    /// A watcher of `kind` failed.
    pub fn failed(&self, kind: crate::source::Kind) {
        self.failures.get_or_create(&Self::labels(kind)).inc();
        self.current.get_or_create(&Self::labels(kind)).set(0);
    }

    /// A watcher of `kind` completed a list.
    pub fn relisted(&self, kind: crate::source::Kind) {
        self.relists.get_or_create(&Self::labels(kind)).inc();
        self.current.get_or_create(&Self::labels(kind)).set(1);
    }

    /// Every watcher is current; their state went to the agent.
    pub fn synced(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_current.set(now.as_secs_f64());
    }

    fn register(&self, reg: &mut Registry) {
        reg.register(
            "palisade_source_watch_failures",
            "Kubernetes watcher failures, by kind (each is followed by a reconnect and a relist)",
            self.failures.clone(),
        );
        reg.register(
            "palisade_source_relists",
            "Completed Kubernetes lists, by kind (the first one and every relist)",
            self.relists.clone(),
        );
        reg.register(
            "palisade_source_current",
            "1 while the kind's Kubernetes watch is current, 0 while it reconnects",
            self.current.clone(),
        );
        reg.register(
            "palisade_source_last_current_timestamp_seconds",
            "Unix time the Kubernetes source last handed the agent a state with every watcher current",
            self.last_current.clone(),
        );
    }
}

/// The registry and the agent's handles.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Set by the agent.
    pub agent: AgentMetrics,
}

impl AgentMetrics {
    /// Registers the agent's metrics.
    pub fn register(reg: &mut Registry) -> Self {
        let m = AgentMetrics {
            endpoints: Family::default(),
            identities: Family::default(),
            policies: Family::default(),
            map_entries: Family::default(),
            sync_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            enforce_latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            invalid_objects: Family::default(),
            unenforced: Family::default(),
            priority_overlaps: Family::default(),
            tier_overflows: Gauge::default(),
            sync_errors: Counter::default(),
            last_sync: Gauge::default(),
            revision: Gauge::default(),
            cni_sandboxes: Gauge::default(),
            cni_address_disagreements: Counter::default(),
            source: SourceMetrics::default(),
        };
        m.source.register(reg);
        reg.register(
            "palisade_endpoints",
            "Local pods by endpoint state (enforced: entry and programs in place)",
            m.endpoints.clone(),
        );
        reg.register(
            "palisade_identities",
            "Security identities in use, by kind",
            m.identities.clone(),
        );
        reg.register(
            "palisade_policies",
            "Valid NetworkPolicies known, by mode",
            m.policies.clone(),
        );
        reg.register(
            "palisade_bpf_map_entries",
            "Entries the agent keeps in each BPF map",
            m.map_entries.clone(),
        );
        reg.register(
            "palisade_policy_sync_duration_seconds",
            "Time to compile and write one policy commit to the maps",
            m.sync_duration.clone(),
        );
        reg.register(
            "palisade_policy_enforce_latency_seconds",
            "Time from a source change reaching the agent to its effect being in the maps",
            m.enforce_latency.clone(),
        );
        reg.register(
            "palisade_source_invalid_objects",
            "Objects or files currently rejected (the last valid version stays in force)",
            m.invalid_objects.clone(),
        );
        reg.register(
            "palisade_unenforced_policy_objects",
            "Network policy objects of kinds Palisade does not enforce (AdminNetworkPolicy, vendor CRDs, ...), by kind and apiVersion",
            m.unenforced.clone(),
        );
        reg.register(
            "palisade_cluster_policy_priority_overlaps",
            "Pairs of ClusterNetworkPolicies of one tier with the same priority whose rules act differently on some traffic of a local pod (per direction): there the order by name decides, which the API leaves undefined",
            m.priority_overlaps.clone(),
        );
        reg.register(
            "palisade_tier_table_overflows",
            "Policy entries whose ClusterNetworkPolicy port segments exceed a tier table: they deny every port (fail closed)",
            m.tier_overflows.clone(),
        );
        reg.register(
            "palisade_policy_sync_errors",
            "Commits whose map writes failed",
            m.sync_errors.clone(),
        );
        reg.register(
            "palisade_policy_last_sync_timestamp_seconds",
            "Unix time of the last successful commit",
            m.last_sync.clone(),
        );
        reg.register(
            "palisade_policy_revision",
            "The policy revision in the datapath",
            m.revision.clone(),
        );
        reg.register(
            "palisade_cni_sandboxes",
            "Local pod sandboxes recorded from CNI ADD (kept across restarts until DEL, \
             their interface going, or the pod's deletion)",
            m.cni_sandboxes.clone(),
        );
        reg.register(
            "palisade_cni_address_disagreements",
            "Times CNI and status.podIPs were seen to give a pod different addresses \
             (the newer fact is enforced)",
            m.cni_address_disagreements.clone(),
        );
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        reg.register("palisade_build_info", "Build information", build);
        m
    }
}

impl Metrics {
    /// The agent's metrics, plus the datapath collector if given.
    pub fn new(datapath: Option<DatapathCollector>) -> Arc<Self> {
        let mut registry = Registry::default();
        let agent = AgentMetrics::register(&mut registry);
        if let Some(c) = datapath {
            registry.register_collector(Box::new(c));
        }
        Arc::new(Metrics { registry, agent })
    }

    /// The exposition text (OpenMetrics, which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail; a collector that fails to read a
        // map skips its samples rather than erroring.
        let _ = encode(&mut s, &self.registry);
        s
    }
}

/// The content type of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_agent_metrics_with_conventional_names() {
        let m = Metrics::new(None);
        m.agent
            .endpoints
            .get_or_create(&EndpointStateLabels {
                state: EndpointState::Enforced,
            })
            .set(3);
        m.agent.sync_duration.observe(0.002);
        m.agent.sync_errors.inc();
        let text = m.encode();
        assert!(
            text.contains("palisade_endpoints{state=\"enforced\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("palisade_policy_sync_errors_total 1"),
            "{text}"
        );
        assert!(
            text.contains("palisade_policy_sync_duration_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("palisade_build_info{version=\""), "{text}");
    }
}
