//! The contents of the datapath maps ([`Tables`]), the single writes to
//! them ([`Write`]) and how a write changes them, for whoever keys the
//! endpoint entries: the compiler by pod ([`DesiredState`], [`MapOp`]),
//! the agent by host interface (what the `ENDPOINTS` map holds). The
//! order of writes between two contents is `order.rs`'s.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use palisade_common::{EndpointInfo, IpcacheValue, PolicyKey, PolicyValue};

use crate::ports::PortSet;
use crate::verdicts::{PortCodes, Verdicts};

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

/// What the ordering of writes needs to know of an endpoint entry.
pub trait EndpointEntry {
    /// The endpoint id its policy rows are keyed by.
    fn ep_id(&self) -> u32;
    /// Its [`palisade_common::endpoint_flags`].
    fn flags(&self) -> u32;
    /// The identity of the endpoint's pod.
    fn identity(&self) -> u32;
}

impl EndpointEntry for Endpoint {
    fn ep_id(&self) -> u32 {
        self.ep_id
    }
    fn flags(&self) -> u32 {
        self.flags
    }
    fn identity(&self) -> u32 {
        self.identity
    }
}

impl EndpointEntry for EndpointInfo {
    fn ep_id(&self) -> u32 {
        self.ep_id
    }
    fn flags(&self) -> u32 {
        self.flags
    }
    fn identity(&self) -> u32 {
        self.identity
    }
}

/// One write to one datapath map; endpoint entries sit at a `K` (a pod
/// for the compiler, a host interface for the agent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write<K, E> {
    /// Write the endpoint entry at `at`.
    EndpointUpsert {
        /// Where (the compiler's pod; the agent knows its interface).
        at: K,
        /// The entry.
        endpoint: E,
    },
    /// Delete the endpoint entry at `at`.
    EndpointRemove {
        /// Where.
        at: K,
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
    /// Write `TIERSETS[id]` = the table of `codes`
    /// ([`PortCodes::inline_or_table`]).
    TiersetUpsert {
        /// The id (never 0).
        id: u32,
        /// The codes.
        codes: PortCodes,
    },
    /// Delete `TIERSETS[id]`.
    TiersetRemove {
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

impl<K, E> Write<K, E> {
    /// The write itself when it is not to an endpoint entry (with any
    /// endpoint key type), else `(where, the new entry or None)`: endpoint
    /// entries are where the writer decides (the agent: the pod's
    /// interface).
    #[allow(clippy::type_complexity)]
    pub fn split_endpoint<K2, E2>(self) -> Result<Write<K2, E2>, (K, Option<E>)> {
        Ok(match self {
            Write::EndpointUpsert { at, endpoint } => return Err((at, Some(endpoint))),
            Write::EndpointRemove { at } => return Err((at, None)),
            Write::PolicyUpsert { key, value } => Write::PolicyUpsert { key, value },
            Write::PolicyRemove { key } => Write::PolicyRemove { key },
            Write::PortsetUpsert { id, ports } => Write::PortsetUpsert { id, ports },
            Write::PortsetRemove { id } => Write::PortsetRemove { id },
            Write::TiersetUpsert { id, codes } => Write::TiersetUpsert { id, codes },
            Write::TiersetRemove { id } => Write::TiersetRemove { id },
            Write::IpcacheExactUpsert { addr, value } => Write::IpcacheExactUpsert { addr, value },
            Write::IpcacheExactRemove { addr } => Write::IpcacheExactRemove { addr },
            Write::IpcacheLpmUpsert { prefix, value } => Write::IpcacheLpmUpsert { prefix, value },
            Write::IpcacheLpmRemove { prefix } => Write::IpcacheLpmRemove { prefix },
        })
    }
}

/// A compiler write: endpoint entries by pod.
pub type MapOp = Write<PodRef, Endpoint>;

/// The desired contents of every map the compiler owns, for one node.
pub type DesiredState = Tables<PodRef, Endpoint>;

/// The contents of the maps the compiler owns (`ENDPOINTS`, `POLICY`,
/// `PORTSETS`, the ipcache), endpoint entries at `K`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tables<K, E> {
    /// Local endpoints.
    pub endpoints: BTreeMap<K, E>,
    /// `POLICY`: one entry per key, the union of every allowed port.
    pub policy: BTreeMap<PolicyKey, PolicyValue>,
    /// `PORTSETS`: id → set (write [`PortSet::to_bitmap`]).
    pub portsets: BTreeMap<u32, PortSet>,
    /// `TIERSETS`: id → codes.
    pub tiersets: BTreeMap<u32, PortCodes>,
    /// `IPCACHE_EXACT4`.
    pub ipcache_exact4: BTreeMap<Ipv4Addr, IpcacheValue>,
    /// `IPCACHE_EXACT6`.
    pub ipcache_exact6: BTreeMap<Ipv6Addr, IpcacheValue>,
    /// `IPCACHE_V4` (LPM).
    pub ipcache_lpm4: BTreeMap<Ipv4Net, IpcacheValue>,
    /// `IPCACHE_V6` (LPM).
    pub ipcache_lpm6: BTreeMap<Ipv6Net, IpcacheValue>,
}

impl<K, E> Default for Tables<K, E> {
    fn default() -> Self {
        Tables {
            endpoints: BTreeMap::new(),
            policy: BTreeMap::new(),
            portsets: BTreeMap::new(),
            tiersets: BTreeMap::new(),
            ipcache_exact4: BTreeMap::new(),
            ipcache_exact6: BTreeMap::new(),
            ipcache_lpm4: BTreeMap::new(),
            ipcache_lpm6: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, E: Clone> Tables<K, E> {
    /// Applies one write (what the agent does to the real maps).
    pub fn apply(&mut self, op: &Write<K, E>) {
        match op {
            Write::EndpointUpsert { at, endpoint } => {
                self.endpoints.insert(at.clone(), endpoint.clone());
            }
            Write::EndpointRemove { at } => {
                self.endpoints.remove(at);
            }
            Write::PolicyUpsert { key, value } => {
                self.policy.insert(*key, *value);
            }
            Write::PolicyRemove { key } => {
                self.policy.remove(key);
            }
            Write::PortsetUpsert { id, ports } => {
                self.portsets.insert(*id, ports.clone());
            }
            Write::PortsetRemove { id } => {
                self.portsets.remove(id);
            }
            Write::TiersetUpsert { id, codes } => {
                self.tiersets.insert(*id, codes.clone());
            }
            Write::TiersetRemove { id } => {
                self.tiersets.remove(id);
            }
            Write::IpcacheExactUpsert { addr, value } => match addr {
                IpAddr::V4(a) => {
                    self.ipcache_exact4.insert(*a, *value);
                }
                IpAddr::V6(a) => {
                    self.ipcache_exact6.insert(*a, *value);
                }
            },
            Write::IpcacheExactRemove { addr } => match addr {
                IpAddr::V4(a) => {
                    self.ipcache_exact4.remove(a);
                }
                IpAddr::V6(a) => {
                    self.ipcache_exact6.remove(a);
                }
            },
            Write::IpcacheLpmUpsert { prefix, value } => match prefix {
                IpNet::V4(n) => {
                    self.ipcache_lpm4.insert(*n, *value);
                }
                IpNet::V6(n) => {
                    self.ipcache_lpm6.insert(*n, *value);
                }
            },
            Write::IpcacheLpmRemove { prefix } => match prefix {
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

    /// The policy entries whose ClusterNetworkPolicy codes need more
    /// segments than a tier table holds ([`palisade_common::TIER_SEGMENTS`]):
    /// they hold a Deny ahead of every rule on every port instead (fail
    /// closed), which denies more than the policies say. After a commit no
    /// other entry holds that value.
    pub fn tier_overflows(&self) -> impl Iterator<Item = &PolicyKey> + '_ {
        self.policy
            .iter()
            .filter(|(_, v)| {
                v.tierset == 0
                    && v.tier_lo == 0
                    && v.tier_hi == u16::MAX
                    && v.codes.admin == palisade_common::tier_code::BOTTOM
            })
            .map(|(k, _)| k)
    }

    /// What a policy value says (`None` if it names a missing table).
    pub fn value_says(&self, value: &PolicyValue) -> Option<Verdicts> {
        let allow = if value.portset == 0 {
            PortSet::range(value.port_lo, value.port_hi)
        } else {
            self.portsets.get(&value.portset)?.clone()
        };
        let codes = if value.tierset == 0 {
            PortCodes::from_inline(value.tier_lo, value.tier_hi, value.codes)
        } else {
            self.tiersets.get(&value.tierset)?.clone()
        };
        Some(Verdicts { allow, codes })
    }

    /// Every exact entry, both families.
    pub fn exact_entries(&self) -> impl Iterator<Item = (IpAddr, IpcacheValue)> + '_ {
        self.ipcache_exact4
            .iter()
            .map(|(a, v)| (IpAddr::V4(*a), *v))
            .chain(
                self.ipcache_exact6
                    .iter()
                    .map(|(a, v)| (IpAddr::V6(*a), *v)),
            )
    }

    /// Every LPM entry, both families.
    pub fn lpm_entries(&self) -> impl Iterator<Item = (IpNet, IpcacheValue)> + '_ {
        self.ipcache_lpm4
            .iter()
            .map(|(n, v)| (IpNet::V4(*n), *v))
            .chain(self.ipcache_lpm6.iter().map(|(n, v)| (IpNet::V6(*n), *v)))
    }

    /// The same contents with the endpoint entries moved to other keys
    /// (`place` returns where an entry goes; `None` leaves it out).
    pub fn rekeyed<K2: Ord, E2>(
        &self,
        mut place: impl FnMut(&K, &E) -> Option<(K2, E2)>,
    ) -> Tables<K2, E2> {
        Tables {
            endpoints: self
                .endpoints
                .iter()
                .filter_map(|(k, e)| place(k, e))
                .collect(),
            policy: self.policy.clone(),
            portsets: self.portsets.clone(),
            tiersets: self.tiersets.clone(),
            ipcache_exact4: self.ipcache_exact4.clone(),
            ipcache_exact6: self.ipcache_exact6.clone(),
            ipcache_lpm4: self.ipcache_lpm4.clone(),
            ipcache_lpm6: self.ipcache_lpm6.clone(),
        }
    }

    /// Every write that builds these contents from empty maps, in a safe
    /// order (portsets, ipcache and policy entries before endpoints).
    pub fn full_sync_ops(&self) -> Vec<Write<K, E>> {
        let mut ops = Vec::new();
        for (id, ports) in &self.portsets {
            ops.push(Write::PortsetUpsert {
                id: *id,
                ports: ports.clone(),
            });
        }
        for (id, codes) in &self.tiersets {
            ops.push(Write::TiersetUpsert {
                id: *id,
                codes: codes.clone(),
            });
        }
        for (k, v) in &self.policy {
            ops.push(Write::PolicyUpsert { key: *k, value: *v });
        }
        let mut lpm: Vec<(IpNet, IpcacheValue)> = self
            .ipcache_lpm4
            .iter()
            .map(|(n, v)| (IpNet::V4(*n), *v))
            .chain(self.ipcache_lpm6.iter().map(|(n, v)| (IpNet::V6(*n), *v)))
            .collect();
        lpm.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        for (prefix, value) in lpm {
            ops.push(Write::IpcacheLpmUpsert { prefix, value });
        }
        for (a, v) in &self.ipcache_exact4 {
            ops.push(Write::IpcacheExactUpsert {
                addr: IpAddr::V4(*a),
                value: *v,
            });
        }
        for (a, v) in &self.ipcache_exact6 {
            ops.push(Write::IpcacheExactUpsert {
                addr: IpAddr::V6(*a),
                value: *v,
            });
        }
        for (at, endpoint) in &self.endpoints {
            ops.push(Write::EndpointUpsert {
                at: at.clone(),
                endpoint: endpoint.clone(),
            });
        }
        ops
    }
}
