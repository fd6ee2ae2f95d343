//! Typed, owned handles to every map userspace reads or writes.

use aya::{
    Ebpf,
    maps::{
        Array, HashMap, LpmTrie, Map, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues, RingBuf,
    },
    util::nr_cpus,
};
use palisade_common::{
    Config, Counter, CtKey4, CtKey6, CtValue, EndpointDropKey, EndpointInfo, EventStats,
    FlowCacheEntry, FragKey, FragValue, IpcacheValue, PolicyKey, PolicyValue, PortBitmap,
    SourceKey4, SourceKey6, TierTable, map_names,
};

use super::DatapathError;

/// The datapath's maps (see `palisade_common::map_names` for what each holds).
pub struct Maps {
    /// `ENDPOINTS`: ifindex → endpoint.
    pub endpoints: HashMap<MapData, u32, EndpointInfo>,
    /// `POLICY`.
    pub policy: HashMap<MapData, PolicyKey, PolicyValue>,
    /// `PORTSETS`.
    pub portsets: HashMap<MapData, u32, PortBitmap>,
    /// `TIERSETS`.
    pub tiersets: HashMap<MapData, u32, TierTable>,
    /// `IPCACHE_EXACT4`.
    pub ipcache_exact4: HashMap<MapData, [u8; 4], IpcacheValue>,
    /// `IPCACHE_EXACT6`.
    pub ipcache_exact6: HashMap<MapData, [u8; 16], IpcacheValue>,
    /// `IPCACHE_V4`.
    pub ipcache_v4: LpmTrie<MapData, [u8; 4], IpcacheValue>,
    /// `IPCACHE_V6`.
    pub ipcache_v6: LpmTrie<MapData, [u8; 16], IpcacheValue>,
    /// `SOURCES_V4`: (interface, address or prefix) a pod may send from.
    pub sources_v4: LpmTrie<MapData, SourceKey4, u8>,
    /// `SOURCES_V6`.
    pub sources_v6: LpmTrie<MapData, SourceKey6, u8>,
    /// `CT_V4`.
    pub ct_v4: HashMap<MapData, CtKey4, CtValue>,
    /// `CT_V6`.
    pub ct_v6: HashMap<MapData, CtKey6, CtValue>,
    /// `FLOW_CACHE` (private to this load, never pinned).
    pub flow_cache: PerCpuArray<MapData, FlowCacheEntry>,
    /// `FRAGS`.
    pub frags: HashMap<MapData, FragKey, FragValue>,
    /// `CONFIG`.
    pub config: Array<MapData, Config>,
    /// `METRICS`.
    pub metrics: PerCpuArray<MapData, Counter>,
    /// `EP_DROPS`.
    pub ep_drops: PerCpuHashMap<MapData, EndpointDropKey, u64>,
    /// `EVENT_STATS`.
    pub event_stats: PerCpuArray<MapData, EventStats>,
    /// `EVENTS`: the drop/audit ring.
    pub events: RingBuf<MapData>,
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<Map, DatapathError> {
    ebpf.take_map(name).ok_or(DatapathError::MissingMap(name))
}

macro_rules! typed {
    ($ebpf:expr, $name:expr) => {
        take($ebpf, $name)?
            .try_into()
            .map_err(|source| DatapathError::Map {
                name: $name,
                source,
            })?
    };
}

impl Maps {
    /// Takes the maps out of a loaded object.
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        Ok(Maps {
            endpoints: typed!(ebpf, map_names::ENDPOINTS),
            policy: typed!(ebpf, map_names::POLICY),
            portsets: typed!(ebpf, map_names::PORTSETS),
            tiersets: typed!(ebpf, map_names::TIERSETS),
            ipcache_exact4: typed!(ebpf, map_names::IPCACHE_EXACT4),
            ipcache_exact6: typed!(ebpf, map_names::IPCACHE_EXACT6),
            ipcache_v4: typed!(ebpf, map_names::IPCACHE_V4),
            ipcache_v6: typed!(ebpf, map_names::IPCACHE_V6),
            sources_v4: typed!(ebpf, map_names::SOURCES_V4),
            sources_v6: typed!(ebpf, map_names::SOURCES_V6),
            ct_v4: typed!(ebpf, map_names::CT_V4),
            ct_v6: typed!(ebpf, map_names::CT_V6),
            flow_cache: typed!(ebpf, map_names::FLOW_CACHE),
            frags: typed!(ebpf, map_names::FRAGS),
            config: typed!(ebpf, map_names::CONFIG),
            metrics: typed!(ebpf, map_names::METRICS),
            ep_drops: typed!(ebpf, map_names::EP_DROPS),
            event_stats: typed!(ebpf, map_names::EVENT_STATS),
            events: typed!(ebpf, map_names::EVENTS),
        })
    }

    /// Writes the datapath configuration.
    pub fn set_config(&mut self, cfg: &Config) -> Result<(), DatapathError> {
        self.config
            .set(0, cfg, 0)
            .map_err(|source| DatapathError::Map {
                name: map_names::CONFIG,
                source,
            })
    }

    /// Empties the established-flow cache on every CPU, so that conntrack
    /// entries deleted from userspace take effect at once (otherwise a
    /// cached flow may pass for up to a second).
    pub fn clear_flow_cache(&mut self) -> Result<(), DatapathError> {
        let per_cpu = |source| DatapathError::PerCpu {
            name: map_names::FLOW_CACHE,
            source,
        };
        let cpus = nr_cpus().map_err(|(_, e)| per_cpu(e))?;
        for i in 0..self.flow_cache.len() {
            let empty =
                PerCpuValues::try_from(vec![FlowCacheEntry::default(); cpus]).map_err(per_cpu)?;
            self.flow_cache
                .set(i, empty, 0)
                .map_err(|source| DatapathError::Map {
                    name: map_names::FLOW_CACHE,
                    source,
                })?;
        }
        Ok(())
    }

    /// Sums a `METRICS` slot over all CPUs.
    pub fn counter(&self, index: u32) -> Result<Counter, DatapathError> {
        let per_cpu = self
            .metrics
            .get(&index, 0)
            .map_err(|source| DatapathError::Map {
                name: map_names::METRICS,
                source,
            })?;
        Ok(per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
            packets: acc.packets + c.packets,
            bytes: acc.bytes + c.bytes,
        }))
    }

    /// Sums `EVENT_STATS` over all CPUs.
    pub fn event_stats(&self) -> Result<EventStats, DatapathError> {
        let per_cpu = self
            .event_stats
            .get(&0, 0)
            .map_err(|source| DatapathError::Map {
                name: map_names::EVENT_STATS,
                source,
            })?;
        Ok(per_cpu
            .iter()
            .fold(EventStats::default(), |acc, s| EventStats {
                emitted: acc.emitted + s.emitted,
                rate_limited: acc.rate_limited + s.rate_limited,
                ring_full: acc.ring_full + s.ring_full,
            }))
    }
}
