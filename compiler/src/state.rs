//! The desired contents of the datapath maps for one node
//! ([`DesiredState`]), the single writes to them ([`MapOp`]) and how a
//! write changes them. The order of a commit's writes is `diff.rs`'s.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use palisade_common::{IpcacheValue, PolicyKey, PolicyValue};

use crate::ports::PortSet;

/// A pod by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodRef {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl PodRef {
    /// A pod reference.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        PodRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A local pod as the datapath sees it. The agent finds the pod's host-side
/// interface and writes `ENDPOINTS[ifindex] = EndpointInfo { ep_id,
/// identity, flags }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Endpoint id, never 0, stable while the pod (same UID) stays a local
    /// endpoint; the first field of every [`PolicyKey`] of the pod.
    pub ep_id: u32,
    /// The pod's identity.
    pub identity: u32,
    /// [`palisade_common::endpoint_flags`] bits (isolation per direction).
    pub flags: u32,
    /// The pod's addresses.
    pub ips: Vec<IpAddr>,
}

/// One write to one datapath map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOp {
    /// Write `ENDPOINTS[ifindex of pod]`.
    EndpointUpsert {
        /// The pod (the agent knows its interface).
        pod: PodRef,
        /// The entry.
        endpoint: Endpoint,
    },
    /// Delete the endpoint entry of a pod that is no longer a local
    /// endpoint.
    EndpointRemove {
        /// The pod.
        pod: PodRef,
        /// Its former endpoint id.
        ep_id: u32,
    },
    /// Write `POLICY[key]`.
    PolicyUpsert {
        /// The key.
        key: PolicyKey,
        /// The value.
        value: PolicyValue,
    },
    /// Delete `POLICY[key]`.
    PolicyRemove {
        /// The key.
        key: PolicyKey,
    },
    /// Write `PORTSETS[id] = ports.to_bitmap()`.
    PortsetUpsert {
        /// The id (never 0).
        id: u32,
        /// The set.
        ports: PortSet,
    },
    /// Delete `PORTSETS[id]`.
    PortsetRemove {
        /// The id.
        id: u32,
    },
    /// Write `IPCACHE_EXACT4/6[addr]`.
    IpcacheExactUpsert {
        /// The address (its family selects the map).
        addr: IpAddr,
        /// The value.
        value: IpcacheValue,
    },
    /// Delete `IPCACHE_EXACT4/6[addr]`.
    IpcacheExactRemove {
        /// The address.
        addr: IpAddr,
    },
    /// Write `IPCACHE_V4/V6[prefix]`.
    IpcacheLpmUpsert {
        /// The prefix (its family selects the map).
        prefix: IpNet,
        /// The value (both fields are the region identity).
        value: IpcacheValue,
    },
    /// Delete `IPCACHE_V4/V6[prefix]`.
    IpcacheLpmRemove {
        /// The prefix.
        prefix: IpNet,
    },
}

/// The desired contents of every map the compiler owns, for one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredState {
    /// Local endpoints.
    pub endpoints: BTreeMap<PodRef, Endpoint>,
    /// `POLICY`: one entry per key, the union of every allowed port.
    pub policy: BTreeMap<PolicyKey, PolicyValue>,
    /// `PORTSETS`: id → set (write [`PortSet::to_bitmap`]).
    pub portsets: BTreeMap<u32, PortSet>,
    /// `IPCACHE_EXACT4`.
    pub ipcache_exact4: BTreeMap<Ipv4Addr, IpcacheValue>,
    /// `IPCACHE_EXACT6`.
    pub ipcache_exact6: BTreeMap<Ipv6Addr, IpcacheValue>,
    /// `IPCACHE_V4` (LPM).
    pub ipcache_lpm4: BTreeMap<Ipv4Net, IpcacheValue>,
    /// `IPCACHE_V6` (LPM).
    pub ipcache_lpm6: BTreeMap<Ipv6Net, IpcacheValue>,
}

impl DesiredState {
    /// Applies one operation (what the agent does to the real maps).
    pub fn apply(&mut self, op: &MapOp) {
        match op {
            MapOp::EndpointUpsert { pod, endpoint } => {
                self.endpoints.insert(pod.clone(), endpoint.clone());
            }
            MapOp::EndpointRemove { pod, .. } => {
                self.endpoints.remove(pod);
            }
            MapOp::PolicyUpsert { key, value } => {
                self.policy.insert(*key, *value);
            }
            MapOp::PolicyRemove { key } => {
                self.policy.remove(key);
            }
            MapOp::PortsetUpsert { id, ports } => {
                self.portsets.insert(*id, ports.clone());
            }
            MapOp::PortsetRemove { id } => {
                self.portsets.remove(id);
            }
            MapOp::IpcacheExactUpsert { addr, value } => match addr {
                IpAddr::V4(a) => {
                    self.ipcache_exact4.insert(*a, *value);
                }
                IpAddr::V6(a) => {
                    self.ipcache_exact6.insert(*a, *value);
                }
            },
            MapOp::IpcacheExactRemove { addr } => match addr {
                IpAddr::V4(a) => {
                    self.ipcache_exact4.remove(a);
                }
                IpAddr::V6(a) => {
                    self.ipcache_exact6.remove(a);
                }
            },
            MapOp::IpcacheLpmUpsert { prefix, value } => match prefix {
                IpNet::V4(n) => {
                    self.ipcache_lpm4.insert(*n, *value);
                }
                IpNet::V6(n) => {
                    self.ipcache_lpm6.insert(*n, *value);
                }
            },
            MapOp::IpcacheLpmRemove { prefix } => match prefix {
                IpNet::V4(n) => {
                    self.ipcache_lpm4.remove(n);
                }
                IpNet::V6(n) => {
                    self.ipcache_lpm6.remove(n);
                }
            },
        }
    }

    /// The exact ipcache entry of `addr`.
    pub fn exact(&self, addr: &IpAddr) -> Option<IpcacheValue> {
        match addr {
            IpAddr::V4(a) => self.ipcache_exact4.get(a).copied(),
            IpAddr::V6(a) => self.ipcache_exact6.get(a).copied(),
        }
    }

    /// The LPM entry of exactly `prefix`.
    pub fn lpm(&self, prefix: &IpNet) -> Option<IpcacheValue> {
        match prefix {
            IpNet::V4(n) => self.ipcache_lpm4.get(n).copied(),
            IpNet::V6(n) => self.ipcache_lpm6.get(n).copied(),
        }
    }

    /// The ports a policy value allows (`None` if it names a missing
    /// portset).
    pub fn value_ports(&self, value: &PolicyValue) -> Option<PortSet> {
        if value.portset == 0 {
            Some(PortSet::range(value.port_lo, value.port_hi))
        } else {
            self.portsets.get(&value.portset).cloned()
        }
    }

    /// Every operation that builds this state from empty maps, in a safe
    /// order (portsets, ipcache and policy entries before endpoints).
    pub fn full_sync_ops(&self) -> Vec<MapOp> {
        let mut ops = Vec::new();
        for (id, ports) in &self.portsets {
            ops.push(MapOp::PortsetUpsert {
                id: *id,
                ports: ports.clone(),
            });
        }
        for (k, v) in &self.policy {
            ops.push(MapOp::PolicyUpsert { key: *k, value: *v });
        }
        let mut lpm: Vec<(IpNet, IpcacheValue)> = self
            .ipcache_lpm4
            .iter()
            .map(|(n, v)| (IpNet::V4(*n), *v))
            .chain(self.ipcache_lpm6.iter().map(|(n, v)| (IpNet::V6(*n), *v)))
            .collect();
        lpm.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        for (prefix, value) in lpm {
            ops.push(MapOp::IpcacheLpmUpsert { prefix, value });
        }
        for (a, v) in &self.ipcache_exact4 {
            ops.push(MapOp::IpcacheExactUpsert {
                addr: IpAddr::V4(*a),
                value: *v,
            });
        }
        for (a, v) in &self.ipcache_exact6 {
            ops.push(MapOp::IpcacheExactUpsert {
                addr: IpAddr::V6(*a),
                value: *v,
            });
        }
        for (pod, endpoint) in &self.endpoints {
            ops.push(MapOp::EndpointUpsert {
                pod: pod.clone(),
                endpoint: endpoint.clone(),
            });
        }
        ops
    }
}
