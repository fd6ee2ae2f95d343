//! Map contents in datapath numbering ([`DpState`]) and single writes
//! ([`DpOp`]). Unlike the compiler's `DesiredState`, endpoints are keyed by
//! ifindex: this is what the `ENDPOINTS` map holds.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use palisade_common::{
    EndpointInfo, IpcacheValue, PORT_BITMAP_WORDS, PolicyKey, PolicyValue, PortBitmap,
};
use palisade_compiler::PortSet;

/// One write to one map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DpOp {
    /// `ENDPOINTS[ifindex] = info`.
    EndpointUpsert {
        /// Host-side interface.
        ifindex: u32,
        /// The entry.
        info: EndpointInfo,
    },
    /// Delete `ENDPOINTS[ifindex]`.
    EndpointRemove {
        /// Host-side interface.
        ifindex: u32,
    },
    /// `POLICY[key] = value`.
    PolicyUpsert {
        /// Key.
        key: PolicyKey,
        /// Value.
        value: PolicyValue,
    },
    /// Delete `POLICY[key]`.
    PolicyRemove {
        /// Key.
        key: PolicyKey,
    },
    /// `PORTSETS[id] = ports.to_bitmap()`.
    PortsetUpsert {
        /// Id.
        id: u32,
        /// Ports.
        ports: PortSet,
    },
    /// Delete `PORTSETS[id]`.
    PortsetRemove {
        /// Id.
        id: u32,
    },
    /// `IPCACHE_EXACT4/6[addr] = value`.
    ExactUpsert {
        /// Address.
        addr: IpAddr,
        /// Value.
        value: IpcacheValue,
    },
    /// Delete `IPCACHE_EXACT4/6[addr]`.
    ExactRemove {
        /// Address.
        addr: IpAddr,
    },
    /// `IPCACHE_V4/V6[prefix] = value`.
    LpmUpsert {
        /// Prefix.
        prefix: IpNet,
        /// Value.
        value: IpcacheValue,
    },
    /// Delete `IPCACHE_V4/V6[prefix]`.
    LpmRemove {
        /// Prefix.
        prefix: IpNet,
    },
    /// `SOURCES_V4/V6[ifindex, prefix] = SOURCE_ALLOWED`: the pod on
    /// `ifindex` may send from `prefix`.
    SourceUpsert {
        /// Host-side interface.
        ifindex: u32,
        /// An own address (/32, /128) or a namespace's allowed prefix.
        prefix: IpNet,
    },
    /// Delete `SOURCES_V4/V6[ifindex, prefix]`.
    SourceRemove {
        /// Host-side interface.
        ifindex: u32,
        /// Prefix.
        prefix: IpNet,
    },
}

/// The contents of the maps the agent writes, in datapath numbering.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DpState {
    /// `ENDPOINTS`.
    pub endpoints: BTreeMap<u32, EndpointInfo>,
    /// `POLICY`.
    pub policy: BTreeMap<PolicyKey, PolicyValue>,
    /// `PORTSETS`.
    pub portsets: BTreeMap<u32, PortSet>,
    /// `IPCACHE_EXACT4`.
    pub exact4: BTreeMap<Ipv4Addr, IpcacheValue>,
    /// `IPCACHE_EXACT6`.
    pub exact6: BTreeMap<Ipv6Addr, IpcacheValue>,
    /// `IPCACHE_V4`.
    pub lpm4: BTreeMap<Ipv4Net, IpcacheValue>,
    /// `IPCACHE_V6`.
    pub lpm6: BTreeMap<Ipv6Net, IpcacheValue>,
    /// `SOURCES_V4` and `SOURCES_V6`: (interface, prefix). Not part of the
    /// compiled state: `agent::sources` derives and writes them.
    pub sources: BTreeSet<(u32, IpNet)>,
}

/// The set of ports of a bitmap.
pub fn bitmap_ports(b: &PortBitmap) -> PortSet {
    let mut ranges = Vec::new();
    let mut start: Option<u32> = None;
    for w in 0..PORT_BITMAP_WORDS {
        let word = b.words[w];
        for bit in 0..64u32 {
            let p = w as u32 * 64 + bit;
            let set = word & (1u64 << bit) != 0;
            match (set, start) {
                (true, None) => start = Some(p),
                (false, Some(s)) => {
                    ranges.push((s as u16, (p - 1) as u16));
                    start = None;
                }
                _ => {}
            }
        }
    }
    if let Some(s) = start {
        ranges.push((s as u16, u16::MAX));
    }
    PortSet::from_ranges(ranges)
}

impl DpState {
    /// Applies one write.
    pub fn apply(&mut self, op: &DpOp) {
        match op {
            DpOp::EndpointUpsert { ifindex, info } => {
                self.endpoints.insert(*ifindex, *info);
            }
            DpOp::EndpointRemove { ifindex } => {
                self.endpoints.remove(ifindex);
            }
            DpOp::PolicyUpsert { key, value } => {
                self.policy.insert(*key, *value);
            }
            DpOp::PolicyRemove { key } => {
                self.policy.remove(key);
            }
            DpOp::PortsetUpsert { id, ports } => {
                self.portsets.insert(*id, ports.clone());
            }
            DpOp::PortsetRemove { id } => {
                self.portsets.remove(id);
            }
            DpOp::ExactUpsert { addr, value } => match addr {
                IpAddr::V4(a) => {
                    self.exact4.insert(*a, *value);
                }
                IpAddr::V6(a) => {
                    self.exact6.insert(*a, *value);
                }
            },
            DpOp::ExactRemove { addr } => match addr {
                IpAddr::V4(a) => {
                    self.exact4.remove(a);
                }
                IpAddr::V6(a) => {
                    self.exact6.remove(a);
                }
            },
            DpOp::LpmUpsert { prefix, value } => match prefix {
                IpNet::V4(n) => {
                    self.lpm4.insert(*n, *value);
                }
                IpNet::V6(n) => {
                    self.lpm6.insert(*n, *value);
                }
            },
            DpOp::LpmRemove { prefix } => match prefix {
                IpNet::V4(n) => {
                    self.lpm4.remove(n);
                }
                IpNet::V6(n) => {
                    self.lpm6.remove(n);
                }
            },
            DpOp::SourceUpsert { ifindex, prefix } => {
                self.sources.insert((*ifindex, prefix.trunc()));
            }
            DpOp::SourceRemove { ifindex, prefix } => {
                self.sources.remove(&(*ifindex, prefix.trunc()));
            }
        }
    }

    /// The exact ipcache entry of `addr`.
    pub fn exact(&self, addr: &IpAddr) -> Option<IpcacheValue> {
        match addr {
            IpAddr::V4(a) => self.exact4.get(a).copied(),
            IpAddr::V6(a) => self.exact6.get(a).copied(),
        }
    }

    /// The LPM entry of exactly `net`.
    pub fn lpm(&self, net: &IpNet) -> Option<IpcacheValue> {
        match net {
            IpNet::V4(n) => self.lpm4.get(n).copied(),
            IpNet::V6(n) => self.lpm6.get(n).copied(),
        }
    }

    /// Every exact entry, both families.
    pub fn exact_entries(&self) -> impl Iterator<Item = (IpAddr, IpcacheValue)> + '_ {
        self.exact4
            .iter()
            .map(|(a, v)| (IpAddr::V4(*a), *v))
            .chain(self.exact6.iter().map(|(a, v)| (IpAddr::V6(*a), *v)))
    }

    /// Every LPM entry, both families.
    pub fn lpm_entries(&self) -> impl Iterator<Item = (IpNet, IpcacheValue)> + '_ {
        self.lpm4
            .iter()
            .map(|(n, v)| (IpNet::V4(*n), *v))
            .chain(self.lpm6.iter().map(|(n, v)| (IpNet::V6(*n), *v)))
    }

    /// The ports a policy value allows (`None`: it names a missing portset).
    pub fn value_ports(&self, v: &PolicyValue) -> Option<PortSet> {
        if v.portset == 0 {
            Some(PortSet::range(v.port_lo, v.port_hi))
        } else {
            self.portsets.get(&v.portset).cloned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_round_trip() {
        for set in [
            PortSet::new(),
            PortSet::all(),
            PortSet::from_ranges([(0, 0), (80, 80), (443, 445), (65535, 65535)]),
            PortSet::from_ranges([(63, 64), (127, 129)]),
        ] {
            assert_eq!(bitmap_ports(&set.to_bitmap()), set);
        }
    }
}
