//! Pod identities: one per (namespace, label set, named-port signature),
//! refcounted by the live pods that carry it, stable while used.
//!
//! The named-port signature — the sorted set of `(name, protocol,
//! containerPort)` of a pod's named container ports — is part of the
//! identity so that egress rules with named ports stay exact. Egress entries
//! are keyed by the *peer's* identity, and a named port resolves on the
//! destination pod: if two pods with equal labels served `http` on 80 and
//! 8080 and shared an identity, the entry `(identity, TCP, {80, 8080})`
//! would let traffic reach either pod on either port. Splitting identities
//! by signature makes every pod of an identity resolve every name to the
//! same ports.
//!
//! Identities whose last pod leaves stay registered until the commit's
//! sweep, so a pod relabelled back and forth within one batch keeps its
//! identity.
//!
//! Also what any identity number stands for ([`IdentityInfo`]): reserved,
//! pod or CIDR region.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ipnet::IpNet;
use palisade_common::{
    CIDR_IDENTITY_BASE, IDENTITY_ANY, IDENTITY_HOST, IDENTITY_WORLD, IdentityKind,
    POD_IDENTITY_BASE, identity_kind,
};

use crate::cidr::Regions;
use crate::ids::Numbers;
use crate::idset::IdSet;
use crate::model::NamedPorts;
use crate::selector::Labels;
use crate::state::PodRef;

/// What defines a pod identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct IdentityKey {
    pub(crate) namespace: String,
    pub(crate) labels: Arc<Labels>,
    pub(crate) named_ports: Arc<NamedPorts>,
}

/// A registered pod identity.
#[derive(Clone, Debug)]
pub(crate) struct PodIdentity {
    pub(crate) key: IdentityKey,
    /// Live pods carrying the identity.
    pub(crate) members: BTreeSet<PodRef>,
}

/// The registry of pod identities.
#[derive(Clone, Debug)]
pub(crate) struct Identities {
    by_key: HashMap<IdentityKey, u32>,
    pub(crate) by_id: BTreeMap<u32, PodIdentity>,
    /// Namespace → identities of its pods.
    pub(crate) by_ns: BTreeMap<String, IdSet>,
    /// `(port name, protocol class)` → identities serving it.
    pub(crate) by_named_port: BTreeMap<(String, u8), IdSet>,
    pub(crate) alloc: Numbers<IdentityKey>,
}

impl Default for Identities {
    fn default() -> Self {
        Identities {
            by_key: HashMap::new(),
            by_id: BTreeMap::new(),
            by_ns: BTreeMap::new(),
            by_named_port: BTreeMap::new(),
            alloc: Numbers::new(POD_IDENTITY_BASE, CIDR_IDENTITY_BASE),
        }
    }
}

impl Identities {
    /// Adds `pod` to the identity of `key`. Returns the id and whether the
    /// identity is new; `None` if the identity space is exhausted.
    fn join(&mut self, key: IdentityKey, pod: &PodRef) -> Option<(u32, bool)> {
        if let Some(&id) = self.by_key.get(&key) {
            if let Some(ident) = self.by_id.get_mut(&id) {
                ident.members.insert(pod.clone());
            }
            return Some((id, false));
        }
        let id = self.alloc.number_for(&key)?;
        self.by_ns
            .entry(key.namespace.clone())
            .or_default()
            .insert(id);
        for (name, class, _) in key.named_ports.iter() {
            self.by_named_port
                .entry((name.clone(), *class))
                .or_default()
                .insert(id);
        }
        self.by_key.insert(key.clone(), id);
        self.by_id.insert(
            id,
            PodIdentity {
                key,
                members: BTreeSet::from([pod.clone()]),
            },
        );
        Some((id, true))
    }

    /// Moves `pod` from identity `old` to the identity of `new` (none if
    /// `None`), joining before leaving so that an unchanged key keeps its
    /// identity. Returns the pod's identity (`None` also if the identity
    /// space is exhausted) and the identity created for it, if any.
    pub(crate) fn switch(
        &mut self,
        pod: &PodRef,
        old: Option<u32>,
        new: Option<IdentityKey>,
    ) -> (Option<u32>, Option<u32>) {
        let mut created = None;
        let new_id = match new {
            None => None,
            Some(k) => match old {
                Some(oid) if self.by_id.get(&oid).is_some_and(|i| i.key == k) => Some(oid),
                _ => match self.join(k, pod) {
                    Some((id, c)) => {
                        if c {
                            created = Some(id);
                        }
                        Some(id)
                    }
                    None => None,
                },
            },
        };
        if let Some(oid) = old
            && new_id != Some(oid)
        {
            self.leave(oid, pod);
        }
        (new_id, created)
    }

    /// Removes `pod` from identity `id`.
    fn leave(&mut self, id: u32, pod: &PodRef) {
        if let Some(ident) = self.by_id.get_mut(&id) {
            ident.members.remove(pod);
        }
    }

    /// Removes identities without members; their ids become reusable after
    /// [`Identities::flush`].
    pub(crate) fn sweep(&mut self) -> Vec<(u32, IdentityKey)> {
        let dead: Vec<u32> = self
            .by_id
            .iter()
            .filter(|(_, i)| i.members.is_empty())
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::new();
        for id in dead {
            let Some(ident) = self.by_id.remove(&id) else {
                continue;
            };
            self.by_key.remove(&ident.key);
            if let Some(s) = self.by_ns.get_mut(&ident.key.namespace) {
                s.remove(id);
                if s.is_empty() {
                    self.by_ns.remove(&ident.key.namespace);
                }
            }
            for (name, class, _) in ident.key.named_ports.iter() {
                let k = (name.clone(), *class);
                if let Some(s) = self.by_named_port.get_mut(&k) {
                    s.remove(id);
                    if s.is_empty() {
                        self.by_named_port.remove(&k);
                    }
                }
            }
            self.alloc.release_later(id);
            out.push((id, ident.key));
        }
        out
    }

    /// Makes swept ids reusable.
    pub(crate) fn flush(&mut self) {
        self.alloc.flush();
    }

    /// Whether identity `id` serves some of `names`.
    pub(crate) fn serves_any(&self, id: u32, names: &[(String, u8)]) -> bool {
        self.by_id.get(&id).is_some_and(|i| {
            i.key
                .named_ports
                .iter()
                .any(|(n, c, _)| names.iter().any(|(m, d)| m == n && d == c))
        })
    }
}

/// What an identity stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityInfo {
    /// `IDENTITY_ANY`.
    Any,
    /// `IDENTITY_HOST`.
    Host,
    /// `IDENTITY_WORLD`.
    World,
    /// Pods of a namespace with a label set and named-port signature.
    Pod {
        /// Namespace.
        namespace: String,
        /// Labels.
        labels: BTreeMap<String, String>,
        /// Named ports: `(name, protocol class, port)`.
        named_ports: BTreeSet<(String, u8, u16)>,
    },
    /// A CIDR region.
    Cidr(IpNet),
}

/// What identity `id` stands for, given the registered pod identities and
/// regions.
pub(crate) fn describe(
    id: u32,
    identities: &Identities,
    regions: &Regions,
) -> Option<IdentityInfo> {
    match identity_kind(id) {
        IdentityKind::Any => Some(IdentityInfo::Any),
        IdentityKind::Host => Some(IdentityInfo::Host),
        IdentityKind::World => Some(IdentityInfo::World),
        IdentityKind::Reserved => None,
        IdentityKind::Pod => identities.by_id.get(&id).map(|i| IdentityInfo::Pod {
            namespace: i.key.namespace.clone(),
            labels: i.key.labels.as_ref().clone(),
            named_ports: i.key.named_ports.as_ref().clone(),
        }),
        IdentityKind::Cidr => regions.net(id).map(IdentityInfo::Cidr),
    }
}

const _: () = assert!(IDENTITY_ANY == 0 && IDENTITY_HOST == 1 && IDENTITY_WORLD == 2);
