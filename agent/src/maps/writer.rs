//! The sole writer of the BPF maps: applies [`DpOp`]s and [`SourceOp`]s
//! one by one (each a single atomic map update), and reads the maps back
//! into a [`Mirror`]
//! (after a restart, to reconcile against what the previous agent left).
//! Removing an absent entry is not an error, so replays are idempotent.

use std::net::IpAddr;

use aya::maps::MapError;
use aya::maps::lpm_trie::Key;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use palisade_common::{SOURCE_ALLOWED, SourceKey4, SourceKey6, map_names};

use palisade_compiler::{PortCodes, Verdicts};

use super::{DpOp, Mirror, SourceOp, bitmap_ports};
use crate::datapath::Maps;

/// A map write or read failed.
#[derive(Debug, thiserror::Error)]
#[error("map {map}: {what}: {source}")]
pub struct MapWriteError {
    /// The map.
    pub map: &'static str,
    /// The operation and key.
    pub what: String,
    /// Cause.
    #[source]
    pub source: MapError,
}

fn not_found(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound | MapError::ElementNotFound => true,
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

fn removed(r: Result<(), MapError>) -> Result<(), MapError> {
    match r {
        Err(e) if not_found(&e) => Ok(()),
        r => r,
    }
}

fn v4_key(n: &Ipv4Net) -> Key<[u8; 4]> {
    Key::new(u32::from(n.prefix_len()), n.network().octets())
}

fn v6_key(n: &Ipv6Net) -> Key<[u8; 16]> {
    Key::new(u32::from(n.prefix_len()), n.network().octets())
}

/// The `SOURCES_V4` key: the whole interface index, then the prefix.
fn source4_key(ifindex: u32, n: &Ipv4Net) -> Key<SourceKey4> {
    let addr = n.network().octets();
    Key::new(32 + u32::from(n.prefix_len()), SourceKey4 { ifindex, addr })
}

/// The `SOURCES_V6` key.
fn source6_key(ifindex: u32, n: &Ipv6Net) -> Key<SourceKey6> {
    let addr = n.network().octets();
    Key::new(32 + u32::from(n.prefix_len()), SourceKey6 { ifindex, addr })
}

/// Applies one write to the maps.
pub fn apply(maps: &mut Maps, op: &DpOp) -> Result<(), MapWriteError> {
    let err = |map: &'static str, what: String| move |source| MapWriteError { map, what, source };
    match op {
        DpOp::EndpointUpsert {
            at: ifindex,
            endpoint: info,
        } => maps.endpoints.insert(ifindex, info, 0).map_err(err(
            map_names::ENDPOINTS,
            format!("insert ifindex {ifindex}"),
        )),
        DpOp::EndpointRemove { at: ifindex } => removed(maps.endpoints.remove(ifindex)).map_err(
            err(map_names::ENDPOINTS, format!("remove ifindex {ifindex}")),
        ),
        DpOp::PolicyUpsert { key, value } => maps
            .policy
            .insert(key, value, 0)
            .map_err(err(map_names::POLICY, format!("insert {key:?}"))),
        DpOp::PolicyRemove { key } => removed(maps.policy.remove(key))
            .map_err(err(map_names::POLICY, format!("remove {key:?}"))),
        DpOp::PortsetUpsert { id, ports } => maps
            .portsets
            .insert(id, *ports.to_bitmap(), 0)
            .map_err(err(map_names::PORTSETS, format!("insert {id}"))),
        DpOp::PortsetRemove { id } => removed(maps.portsets.remove(id))
            .map_err(err(map_names::PORTSETS, format!("remove {id}"))),
        DpOp::TiersetUpsert { id, codes } => {
            // The compiler never numbers codes with more segments than a
            // table holds; should one come, it denies (fail closed).
            let table = codes
                .to_table()
                .or_else(|| Verdicts::bottom().codes.to_table())
                .expect("a one-segment function fits a table");
            maps.tiersets
                .insert(id, *table, 0)
                .map_err(err(map_names::TIERSETS, format!("insert {id}")))
        }
        DpOp::TiersetRemove { id } => removed(maps.tiersets.remove(id))
            .map_err(err(map_names::TIERSETS, format!("remove {id}"))),
        DpOp::IpcacheExactUpsert { addr, value } => match addr {
            IpAddr::V4(a) => maps
                .ipcache_exact4
                .insert(a.octets(), value, 0)
                .map_err(err(map_names::IPCACHE_EXACT4, format!("insert {a}"))),
            IpAddr::V6(a) => maps
                .ipcache_exact6
                .insert(a.octets(), value, 0)
                .map_err(err(map_names::IPCACHE_EXACT6, format!("insert {a}"))),
        },
        DpOp::IpcacheExactRemove { addr } => match addr {
            IpAddr::V4(a) => removed(maps.ipcache_exact4.remove(&a.octets()))
                .map_err(err(map_names::IPCACHE_EXACT4, format!("remove {a}"))),
            IpAddr::V6(a) => removed(maps.ipcache_exact6.remove(&a.octets()))
                .map_err(err(map_names::IPCACHE_EXACT6, format!("remove {a}"))),
        },
        DpOp::IpcacheLpmUpsert { prefix, value } => match prefix {
            IpNet::V4(n) => maps
                .ipcache_v4
                .insert(&v4_key(n), value, 0)
                .map_err(err(map_names::IPCACHE_V4, format!("insert {n}"))),
            IpNet::V6(n) => maps
                .ipcache_v6
                .insert(&v6_key(n), value, 0)
                .map_err(err(map_names::IPCACHE_V6, format!("insert {n}"))),
        },
        DpOp::IpcacheLpmRemove { prefix } => match prefix {
            IpNet::V4(n) => removed(maps.ipcache_v4.remove(&v4_key(n)))
                .map_err(err(map_names::IPCACHE_V4, format!("remove {n}"))),
            IpNet::V6(n) => removed(maps.ipcache_v6.remove(&v6_key(n)))
                .map_err(err(map_names::IPCACHE_V6, format!("remove {n}"))),
        },
    }
}

/// Applies one write to `SOURCES_V4/V6`.
pub fn apply_source(maps: &mut Maps, op: &SourceOp) -> Result<(), MapWriteError> {
    let err = |map: &'static str, what: String| move |source| MapWriteError { map, what, source };
    match op {
        SourceOp::Upsert { ifindex, prefix } => match prefix {
            IpNet::V4(n) => maps
                .sources_v4
                .insert(&source4_key(*ifindex, n), SOURCE_ALLOWED, 0)
                .map_err(err(
                    map_names::SOURCES_V4,
                    format!("insert ifindex {ifindex} {n}"),
                )),
            IpNet::V6(n) => maps
                .sources_v6
                .insert(&source6_key(*ifindex, n), SOURCE_ALLOWED, 0)
                .map_err(err(
                    map_names::SOURCES_V6,
                    format!("insert ifindex {ifindex} {n}"),
                )),
        },
        SourceOp::Remove { ifindex, prefix } => match prefix {
            IpNet::V4(n) => {
                removed(maps.sources_v4.remove(&source4_key(*ifindex, n))).map_err(err(
                    map_names::SOURCES_V4,
                    format!("remove ifindex {ifindex} {n}"),
                ))
            }
            IpNet::V6(n) => {
                removed(maps.sources_v6.remove(&source6_key(*ifindex, n))).map_err(err(
                    map_names::SOURCES_V6,
                    format!("remove ifindex {ifindex} {n}"),
                ))
            }
        },
    }
}

/// Reads every map the agent writes.
pub fn read_state(maps: &Maps) -> Result<Mirror, MapWriteError> {
    let err = |map: &'static str| {
        move |source| MapWriteError {
            map,
            what: "iterate".into(),
            source,
        }
    };
    let mut m = Mirror::default();
    let s = &mut m.tables;
    for r in maps.endpoints.iter() {
        let (k, v) = r.map_err(err(map_names::ENDPOINTS))?;
        s.endpoints.insert(k, v);
    }
    for r in maps.policy.iter() {
        let (k, v) = r.map_err(err(map_names::POLICY))?;
        s.policy.insert(k, v);
    }
    for r in maps.portsets.iter() {
        let (k, v) = r.map_err(err(map_names::PORTSETS))?;
        s.portsets.insert(k, bitmap_ports(&v));
    }
    for r in maps.tiersets.iter() {
        let (k, v) = r.map_err(err(map_names::TIERSETS))?;
        s.tiersets.insert(k, PortCodes::from_table(&v));
    }
    for r in maps.ipcache_exact4.iter() {
        let (k, v) = r.map_err(err(map_names::IPCACHE_EXACT4))?;
        s.ipcache_exact4.insert(k.into(), v);
    }
    for r in maps.ipcache_exact6.iter() {
        let (k, v) = r.map_err(err(map_names::IPCACHE_EXACT6))?;
        s.ipcache_exact6.insert(k.into(), v);
    }
    for r in maps.ipcache_v4.iter() {
        let (k, v) = r.map_err(err(map_names::IPCACHE_V4))?;
        let len = k.prefix_len().min(32) as u8;
        if let Ok(n) = Ipv4Net::new(k.data().into(), len) {
            s.ipcache_lpm4.insert(n.trunc(), v);
        }
    }
    for r in maps.ipcache_v6.iter() {
        let (k, v) = r.map_err(err(map_names::IPCACHE_V6))?;
        let len = k.prefix_len().min(128) as u8;
        if let Ok(n) = Ipv6Net::new(k.data().into(), len) {
            s.ipcache_lpm6.insert(n.trunc(), v);
        }
    }
    for r in maps.sources_v4.iter() {
        let (k, _) = r.map_err(err(map_names::SOURCES_V4))?;
        let len = k.prefix_len().saturating_sub(32).min(32) as u8;
        let d = k.data();
        if let Ok(n) = Ipv4Net::new(d.addr.into(), len) {
            m.sources.insert((d.ifindex, IpNet::V4(n.trunc())));
        }
    }
    for r in maps.sources_v6.iter() {
        let (k, _) = r.map_err(err(map_names::SOURCES_V6))?;
        let len = k.prefix_len().saturating_sub(32).min(128) as u8;
        let d = k.data();
        if let Ok(n) = Ipv6Net::new(d.addr.into(), len) {
            m.sources.insert((d.ifindex, IpNet::V6(n.trunc())));
        }
    }
    Ok(m)
}
