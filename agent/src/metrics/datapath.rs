//! Datapath counters read from the pinned maps at scrape time.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use palisade_common::{
    Counter, DropReason, EndpointDropKey, EventStats, ForwardReason, direction, map_names,
    metrics_index, verdict,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::labels::{
    Direction, DropLabels, DropReasonLabel, EventLabels, EventOutcome, ForwardLabels,
    ForwardReasonLabel, MapLabel, MapLabels, NamespaceDropLabels, PodDropLabels, Verdict,
};
use crate::datapath::sum_cpus;
use crate::monitor::Hub;
use crate::monitor::reader::{OpenError, open_pinned, sum_stats};

/// Monotonic totals built from `EP_DROPS`, whose entries vanish with their
/// endpoint (LRU map): each scrape adds what grew since the last one.
#[derive(Default)]
struct EpTotals {
    last: HashMap<EndpointDropKey, u64>,
    by_ns: BTreeMap<NamespaceDropLabels, u64>,
    by_pod: BTreeMap<PodDropLabels, u64>,
}

/// Reads `METRICS`, `EP_DROPS` and `EVENT_STATS` on each scrape.
pub struct DatapathCollector {
    metrics: PerCpuArray<MapData, Counter>,
    ep_drops: PerCpuHashMap<MapData, EndpointDropKey, u64>,
    event_stats: PerCpuArray<MapData, EventStats>,
    capacity: Vec<(MapLabel, u32)>,
    hub: Arc<Hub>,
    per_pod: bool,
    totals: Mutex<EpTotals>,
}

impl fmt::Debug for DatapathCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatapathCollector")
            .field("per_pod", &self.per_pod)
            .finish_non_exhaustive()
    }
}

fn typed<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    dir: &Path,
    name: &str,
) -> Result<T, OpenError> {
    open_pinned(dir, name)?
        .try_into()
        .map_err(|source| OpenError::Map {
            path: dir.join(name).display().to_string(),
            source,
        })
}

fn pin_name(m: MapLabel) -> &'static str {
    match m {
        MapLabel::Endpoints => map_names::ENDPOINTS,
        MapLabel::Policy => map_names::POLICY,
        MapLabel::Portsets => map_names::PORTSETS,
        MapLabel::Tiersets => map_names::TIERSETS,
        MapLabel::IpcacheExact4 => map_names::IPCACHE_EXACT4,
        MapLabel::IpcacheExact6 => map_names::IPCACHE_EXACT6,
        MapLabel::IpcacheV4 => map_names::IPCACHE_V4,
        MapLabel::IpcacheV6 => map_names::IPCACHE_V6,
        MapLabel::SourcesV4 => map_names::SOURCES_V4,
        MapLabel::SourcesV6 => map_names::SOURCES_V6,
        MapLabel::CtV4 => map_names::CT_V4,
        MapLabel::CtV6 => map_names::CT_V6,
        MapLabel::Frags => map_names::FRAGS,
        MapLabel::EpDrops => map_names::EP_DROPS,
    }
}

impl DatapathCollector {
    /// Opens the maps pinned under `pin_dir`. `per_pod` adds drops per pod
    /// (one series per local pod, direction and reason: opt-in).
    pub fn open(pin_dir: &Path, hub: Arc<Hub>, per_pod: bool) -> Result<Self, OpenError> {
        let mut capacity = Vec::new();
        for m in MapLabel::ALL {
            let path = pin_dir.join(pin_name(m));
            let data = MapData::from_pin(&path).map_err(|source| OpenError::Map {
                path: path.display().to_string(),
                source,
            })?;
            if let Ok(info) = data.info() {
                capacity.push((m, info.max_entries()));
            }
        }
        Ok(DatapathCollector {
            metrics: typed(pin_dir, map_names::METRICS)?,
            ep_drops: typed(pin_dir, map_names::EP_DROPS)?,
            event_stats: typed(pin_dir, map_names::EVENT_STATS)?,
            capacity,
            hub,
            per_pod,
            totals: Mutex::new(EpTotals::default()),
        })
    }

    fn counter(&self, index: u32) -> Counter {
        match self.metrics.get(&index, 0) {
            Ok(v) => sum_cpus(&v),
            Err(_) => Counter::default(),
        }
    }

    fn update_totals(&self) -> EpTotalsView {
        let dir = self.hub.directory();
        let mut t = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = HashMap::new();
        for item in self.ep_drops.iter() {
            let Ok((k, v)) = item else { continue };
            let now: u64 = sum_cpus(&v);
            let before = t.last.get(&k).copied().unwrap_or(0);
            // A smaller value is a new entry for a reused key: count it whole.
            let delta = if now >= before { now - before } else { now };
            seen.insert(k, now);
            if delta == 0 {
                continue;
            }
            let (Some(local), Some(reason)) =
                (dir.endpoints.get(&k.ep_id), DropReason::from_u8(k.reason))
            else {
                continue;
            };
            let verdict = if k.verdict == verdict::AUDIT {
                Verdict::Audit
            } else {
                Verdict::Dropped
            };
            let ns = NamespaceDropLabels {
                namespace: local.pod.namespace.clone(),
                direction: Direction::from_u8(k.direction),
                reason: reason.as_str(),
                verdict,
            };
            if self.per_pod {
                *t.by_pod
                    .entry(PodDropLabels {
                        namespace: ns.namespace.clone(),
                        pod: local.pod.name.clone(),
                        direction: ns.direction,
                        reason: ns.reason,
                        verdict,
                    })
                    .or_default() += delta;
            }
            *t.by_ns.entry(ns).or_default() += delta;
        }
        t.last = seen;
        EpTotalsView {
            by_ns: t.by_ns.clone(),
            by_pod: t.by_pod.clone(),
        }
    }
}

struct EpTotalsView {
    by_ns: BTreeMap<NamespaceDropLabels, u64>,
    by_pod: BTreeMap<PodDropLabels, u64>,
}

fn family<L: EncodeLabelSet, M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, M)>,
) -> Result<(), fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in samples {
        metric.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for DatapathCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), fmt::Error> {
        let dirs = [direction::INGRESS, direction::EGRESS];
        let drop_series = |v: u8, bytes: bool| {
            let mut out = Vec::new();
            for d in dirs {
                for r in DropReason::ALL {
                    let c = self.counter(metrics_index(d, v, r as u8));
                    out.push((
                        DropLabels {
                            direction: Direction::from_u8(d),
                            reason: DropReasonLabel(r),
                        },
                        ConstCounter::new(if bytes { c.bytes } else { c.packets }),
                    ));
                }
            }
            out
        };
        let fwd_series = |bytes: bool| {
            let mut out = Vec::new();
            for d in dirs {
                for r in ForwardReason::ALL {
                    let c = self.counter(metrics_index(d, verdict::FORWARDED, r as u8));
                    out.push((
                        ForwardLabels {
                            direction: Direction::from_u8(d),
                            reason: ForwardReasonLabel(r),
                        },
                        ConstCounter::new(if bytes { c.bytes } else { c.packets }),
                    ));
                }
            }
            out
        };
        family(
            &mut enc,
            "palisade_datapath_forwarded",
            "Packets passed, by direction and reason",
            MetricType::Counter,
            fwd_series(false),
        )?;
        family(
            &mut enc,
            "palisade_datapath_forwarded_bytes",
            "Bytes passed, by direction and reason",
            MetricType::Counter,
            fwd_series(true),
        )?;
        family(
            &mut enc,
            "palisade_datapath_drops",
            "Packets dropped, by direction and reason",
            MetricType::Counter,
            drop_series(verdict::DROPPED, false),
        )?;
        family(
            &mut enc,
            "palisade_datapath_drop_bytes",
            "Bytes dropped, by direction and reason",
            MetricType::Counter,
            drop_series(verdict::DROPPED, true),
        )?;
        family(
            &mut enc,
            "palisade_datapath_audits",
            "Packets that would have been dropped and were passed (audit), by direction and reason",
            MetricType::Counter,
            drop_series(verdict::AUDIT, false),
        )?;
        family(
            &mut enc,
            "palisade_datapath_audit_bytes",
            "Bytes that would have been dropped and were passed (audit)",
            MetricType::Counter,
            drop_series(verdict::AUDIT, true),
        )?;
        let totals = self.update_totals();
        family(
            &mut enc,
            "palisade_datapath_namespace_drops",
            "Drops and would-drops of local pods, by namespace",
            MetricType::Counter,
            totals
                .by_ns
                .into_iter()
                .map(|(l, v)| (l, ConstCounter::new(v))),
        )?;
        if self.per_pod {
            family(
                &mut enc,
                "palisade_datapath_pod_drops",
                "Drops and would-drops of local pods, by pod (--metrics-pod-labels)",
                MetricType::Counter,
                totals
                    .by_pod
                    .into_iter()
                    .map(|(l, v)| (l, ConstCounter::new(v))),
            )?;
        }
        let s = sum_stats(&self.event_stats).unwrap_or_default();
        family(
            &mut enc,
            "palisade_datapath_events",
            "Drop/audit events: written to the ring, suppressed by the rate limit, lost to a full ring",
            MetricType::Counter,
            [
                (EventOutcome::Emitted, s.emitted),
                (EventOutcome::RateLimited, s.rate_limited),
                (EventOutcome::RingFull, s.ring_full),
            ]
            .into_iter()
            .map(|(outcome, v)| (EventLabels { outcome }, ConstCounter::new(v))),
        )?;
        family(
            &mut enc,
            "palisade_bpf_map_capacity",
            "max_entries of each BPF map",
            MetricType::Gauge,
            self.capacity
                .iter()
                .map(|(m, c)| (MapLabels { map: *m }, ConstGauge::new(*c as i64))),
        )?;
        let mut m = enc.encode_descriptor(
            "palisade_monitor_events_lost",
            "Events a slow monitor could not take (dropped from its queue)",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.hub.lost_total.load(Ordering::Relaxed)).encode(m)?;
        m = enc.encode_descriptor(
            "palisade_monitor_events_read",
            "Events the agent read from the ring",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.hub.read_total.load(Ordering::Relaxed)).encode(m)?;
        m = enc.encode_descriptor(
            "palisade_monitor_subscribers",
            "Monitors connected",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.hub.subscribers() as i64).encode(m)?;
        Ok(())
    }
}
