//! One numbering: what every number the compiler writes to the maps means
//! ([`Meaning`]), for the agent to record before a commit's writes reach
//! the maps and to give back after a restart, so that the pinned maps and
//! the first compile agree on every number (`ids.rs` has the rules). The
//! numbers are the compiler's own: nothing translates them.
//!
//! | space          | meaning                                      | range |
//! |----------------|----------------------------------------------|-------|
//! | pod identity   | namespace, labels, named ports               | `256..2^24` |
//! | CIDR identity  | the prefix                                   | `2^24..` |
//! | endpoint id    | pod namespace/name and UID                   | `1..` |
//! | portset id     | the set of ports                             | `1..` |
//! | tierset id     | the tier codes of every port                 | `1..` |

use std::collections::BTreeMap;
use std::sync::Arc;

use ipnet::IpNet;
use palisade_common::{IdentityKind, identity_kind};
use serde::{Deserialize, Serialize};

use crate::commit::Output;
use crate::engine::Engine;
use crate::identity::IdentityKey;
use crate::ports::PortSet;
use crate::state::{EndpointEntry, PodRef, Tables};
use crate::verdicts::PortCodes;
use palisade_common::TierCodes;

/// What a number stands for. The serialized form is what agents record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Meaning {
    /// A pod identity.
    Pod {
        /// Namespace.
        namespace: String,
        /// Labels.
        labels: BTreeMap<String, String>,
        /// Named ports `(name, protocol class, port)`.
        named_ports: Vec<(String, u8, u16)>,
    },
    /// A CIDR region.
    Cidr {
        /// The prefix.
        prefix: String,
    },
    /// A local endpoint: one pod's life.
    Endpoint {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// `metadata.uid` (empty if none).
        uid: String,
    },
    /// A multi-range port set.
    Portset {
        /// Inclusive ranges.
        ranges: Vec<(u16, u16)>,
    },
    /// A multi-segment table of tier codes.
    Tierset {
        /// Segments: first port, Admin code, Baseline code.
        segments: Vec<(u16, u32, u32)>,
    },
}

fn tierset_meaning(c: &PortCodes) -> Meaning {
    Meaning::Tierset {
        segments: c
            .segments()
            .iter()
            .map(|&(p, t)| (p, t.admin, t.baseline))
            .collect(),
    }
}

fn pod_meaning(k: &IdentityKey) -> Meaning {
    Meaning::Pod {
        namespace: k.namespace.clone(),
        labels: k.labels.as_ref().clone(),
        named_ports: k.named_ports.iter().cloned().collect(),
    }
}

fn endpoint_meaning(pod: &PodRef, uid: &Option<String>) -> Meaning {
    Meaning::Endpoint {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        uid: uid.clone().unwrap_or_default(),
    }
}

/// Every number in use, and every remembered one not claimed yet, with
/// its meaning.
pub(crate) fn numbering(e: &Engine, out: &Output) -> Vec<(Meaning, u32)> {
    let mut all = Vec::new();
    for (id, ident) in &e.identities.by_id {
        all.push((pod_meaning(&ident.key), *id));
    }
    for (k, id) in e.identities.alloc.remembered() {
        all.push((pod_meaning(k), id));
    }
    let regions = &e.ipcache.regions;
    for (id, net) in regions.iter() {
        all.push((
            Meaning::Cidr {
                prefix: net.to_string(),
            },
            id,
        ));
    }
    for (net, id) in regions.alloc.remembered() {
        all.push((
            Meaning::Cidr {
                prefix: net.to_string(),
            },
            id,
        ));
    }
    for (pod, ep) in e.eps.iter() {
        all.push((endpoint_meaning(pod, &ep.uid), ep.ep_id));
    }
    for ((pod, uid), id) in e.eps.ids.remembered() {
        all.push((endpoint_meaning(pod, uid), id));
    }
    for (id, set) in &out.state.portsets {
        all.push((
            Meaning::Portset {
                ranges: set.ranges().to_vec(),
            },
            *id,
        ));
    }
    for (set, id) in out.values.portsets.alloc.remembered() {
        all.push((
            Meaning::Portset {
                ranges: set.ranges().to_vec(),
            },
            id,
        ));
    }
    for (id, c) in &out.state.tiersets {
        all.push((tierset_meaning(c), *id));
    }
    for (c, id) in out.values.tiersets.alloc.remembered() {
        all.push((tierset_meaning(c), id));
    }
    all.sort();
    all
}

/// Keeps each number for its meaning (see `ids.rs`). Entries that do not
/// parse or lie outside their space are ignored: their numbers, if the
/// maps hold them, are reserved by [`reserve`] instead.
pub(crate) fn remember(
    e: &mut Engine,
    out: &mut Output,
    entries: impl IntoIterator<Item = (Meaning, u32)>,
) {
    for (meaning, id) in entries {
        match meaning {
            Meaning::Pod {
                namespace,
                labels,
                named_ports,
            } if identity_kind(id) == IdentityKind::Pod => {
                let key = IdentityKey {
                    namespace,
                    labels: Arc::new(labels),
                    named_ports: Arc::new(named_ports.into_iter().collect()),
                };
                e.identities.alloc.remember(key, id);
            }
            Meaning::Cidr { prefix } if identity_kind(id) == IdentityKind::Cidr => {
                if let Ok(net) = prefix.parse::<IpNet>() {
                    e.ipcache.regions.alloc.remember(net.trunc(), id);
                }
            }
            Meaning::Endpoint {
                namespace,
                name,
                uid,
            } => {
                let uid = (!uid.is_empty()).then_some(uid);
                e.eps.ids.remember((PodRef::new(namespace, name), uid), id);
            }
            Meaning::Portset { ranges } => {
                out.values
                    .portsets
                    .alloc
                    .remember(PortSet::from_ranges(ranges), id);
            }
            Meaning::Tierset { segments } => {
                let codes = PortCodes::from_segment_list(
                    segments
                        .into_iter()
                        .map(|(p, admin, baseline)| (p, TierCodes { admin, baseline })),
                );
                out.values.tiersets.alloc.remember(codes, id);
            }
            _ => {}
        }
    }
}

/// Reserves every number `tables` holds that is not in use (see `ids.rs`).
pub(crate) fn reserve<K, E: EndpointEntry>(
    e: &mut Engine,
    out: &mut Output,
    tables: &Tables<K, E>,
) {
    let mut identity = |id: u32| match identity_kind(id) {
        IdentityKind::Pod => e.identities.alloc.reserve(id),
        IdentityKind::Cidr => e.ipcache.regions.alloc.reserve(id),
        _ => {}
    };
    for ep in tables.endpoints.values() {
        identity(ep.identity());
    }
    for (k, v) in &tables.policy {
        identity(k.identity);
        if v.portset != 0 {
            out.values.portsets.alloc.reserve(v.portset);
        }
        if v.tierset != 0 {
            out.values.tiersets.alloc.reserve(v.tierset);
        }
    }
    let values = tables
        .ipcache_exact4
        .values()
        .chain(tables.ipcache_exact6.values());
    let lpm = tables
        .ipcache_lpm4
        .values()
        .chain(tables.ipcache_lpm6.values());
    for v in values.chain(lpm) {
        identity(v.identity);
        identity(v.cidr_identity);
    }
    for ep in tables.endpoints.values() {
        e.eps.ids.reserve(ep.ep_id());
    }
    for k in tables.policy.keys() {
        e.eps.ids.reserve(k.ep_id);
    }
    for id in tables.portsets.keys() {
        out.values.portsets.alloc.reserve(*id);
    }
    for id in tables.tiersets.keys() {
        out.values.tiersets.alloc.reserve(*id);
    }
}

/// A count that moves whenever some number gains or loses a meaning.
pub(crate) fn generation(e: &Engine, out: &Output) -> u64 {
    e.identities.alloc.generation()
        + e.ipcache.regions.alloc.generation()
        + e.eps.ids.generation()
        + out.values.portsets.alloc.generation()
        + out.values.tiersets.alloc.generation()
}

/// Ends every reservation and forgets unclaimed meanings.
pub(crate) fn settle(e: &mut Engine, out: &mut Output) {
    e.identities.alloc.settle();
    e.ipcache.regions.alloc.settle();
    e.eps.ids.settle();
    out.values.portsets.alloc.settle();
    out.values.tiersets.alloc.settle();
}
