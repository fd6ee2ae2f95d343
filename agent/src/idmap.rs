//! Datapath numbering: the agent's own allocation of the identity,
//! endpoint-id and portset-id numbers written to the maps, keyed by what
//! each number *means*, and persisted in the state directory.
//!
//! The compiler numbers identities, endpoints and port sets from scratch
//! in every process, so after a restart its numbers would differ from
//! those in the pinned maps; reconciling naively could give a number two
//! meanings for a moment (an identity allowed by an old entry matching a
//! new peer: over-allow). So every compiler number is translated to a
//! datapath number through its meaning:
//!
//! | space          | meaning                                      | range |
//! |----------------|----------------------------------------------|-------|
//! | pod identity   | namespace, labels, named ports               | `256..2^24` |
//! | CIDR identity  | the prefix                                   | `2^24..` |
//! | endpoint id    | pod namespace/name and UID                   | `1..` |
//! | portset id     | the set of ports                             | `1..` |
//!
//! The table is written to `<state-dir>/allocations.json` *before* a
//! commit's writes reach the maps (so every number the maps can hold has a
//! recorded meaning, also after a crash mid-way) and after the numbers
//! freed by the commit are released. A restarted agent loads it before its
//! first compile, so unchanged objects get their old numbers back and the
//! first reconcile is a diff between states that agree on every number's
//! meaning. Numbers found in the maps but not in the table (a lost state
//! directory) are never handed out again before they are gone from the
//! maps: new allocations start above the largest number seen.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use palisade_common::{CIDR_IDENTITY_BASE, EndpointInfo, IpcacheValue, POD_IDENTITY_BASE};
use palisade_compiler::{Compiler, IdentityInfo, MapOp, PodRef, PortSet};
use serde::{Deserialize, Serialize};

use crate::maps::{DpOp, DpState};

/// What a datapath number stands for.
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Space {
    Pod,
    Cidr,
    Endpoint,
    Portset,
}

impl Meaning {
    fn space(&self) -> Space {
        match self {
            Meaning::Pod { .. } => Space::Pod,
            Meaning::Cidr { .. } => Space::Cidr,
            Meaning::Endpoint { .. } => Space::Endpoint,
            Meaning::Portset { .. } => Space::Portset,
        }
    }
}

const fn range(space: Space) -> (u32, u32) {
    match space {
        Space::Pod => (POD_IDENTITY_BASE, CIDR_IDENTITY_BASE),
        Space::Cidr => (CIDR_IDENTITY_BASE, u32::MAX),
        Space::Endpoint | Space::Portset => (1, u32::MAX),
    }
}

fn space_of_identity(id: u32) -> Option<Space> {
    if id < POD_IDENTITY_BASE {
        None
    } else if id < CIDR_IDENTITY_BASE {
        Some(Space::Pod)
    } else {
        Some(Space::Cidr)
    }
}

/// Lowest free number, else the next never used one.
#[derive(Clone, Debug)]
struct Alloc {
    next: u32,
    end: u32,
    free: BTreeSet<u32>,
}

impl Alloc {
    fn new(space: Space) -> Self {
        let (next, end) = range(space);
        Alloc {
            next,
            end,
            free: BTreeSet::new(),
        }
    }
    fn alloc(&mut self) -> Option<u32> {
        if let Some(id) = self.free.pop_first() {
            return Some(id);
        }
        (self.next < self.end).then(|| {
            self.next += 1;
            self.next - 1
        })
    }
    fn reserve(&mut self, id: u32) {
        if id >= self.next && id < self.end {
            self.next = id + 1;
        }
        self.free.remove(&id);
    }
}

/// A translation failed.
#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    /// A number space is exhausted.
    #[error("no {0} number left")]
    Exhausted(&'static str),
    /// The compiler used a number whose meaning is unknown (a bug).
    #[error("compiler {space} {id} has no known meaning")]
    Unknown {
        /// Which numbers.
        space: &'static str,
        /// The compiler's number.
        id: u32,
    },
    /// The table could not be read or written.
    #[error("allocation table {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// What the translation needs from the agent beside the compiler: the
/// owner of each compiler endpoint id.
pub struct Context<'a> {
    /// The compiler, right after its commit.
    pub compiler: &'a Compiler,
    /// Compiler endpoint id → (pod, uid).
    pub ep_owner: &'a HashMap<u32, (PodRef, String)>,
}

/// A compiler operation in datapath numbering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Translated {
    /// A write to a map other than `ENDPOINTS`.
    Map(DpOp),
    /// A pod's endpoint entry (its interface is the agent's business).
    Endpoint {
        /// The pod.
        pod: PodRef,
        /// The entry.
        info: EndpointInfo,
        /// Its addresses.
        ips: Vec<std::net::IpAddr>,
    },
    /// A pod is no longer a local endpoint.
    EndpointRemove {
        /// The pod.
        pod: PodRef,
    },
}

#[derive(Serialize, Deserialize)]
struct Entry {
    id: u32,
    meaning: Meaning,
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    revision: u64,
    entries: Vec<Entry>,
}

const FILE_VERSION: u32 = 1;

/// The table.
#[derive(Debug)]
pub struct IdMap {
    by_meaning: HashMap<Meaning, u32>,
    allocs: BTreeMap<Space, Alloc>,
    /// Compiler number → datapath number, for numbers live in the compiler.
    cid: HashMap<(Space, u32), u32>,
    dirty: bool,
    /// The agent's policy revision, persisted with the table.
    pub revision: u64,
}

impl Default for IdMap {
    fn default() -> Self {
        IdMap {
            by_meaning: HashMap::new(),
            allocs: [Space::Pod, Space::Cidr, Space::Endpoint, Space::Portset]
                .into_iter()
                .map(|s| (s, Alloc::new(s)))
                .collect(),
            cid: HashMap::new(),
            dirty: false,
            revision: 0,
        }
    }
}

fn space_name(s: Space) -> &'static str {
    match s {
        Space::Pod => "pod identity",
        Space::Cidr => "CIDR identity",
        Space::Endpoint => "endpoint id",
        Space::Portset => "portset id",
    }
}

impl IdMap {
    /// Path of the table in a state directory.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("allocations.json")
    }

    /// Loads the table (an absent file is an empty table).
    pub fn load(path: &Path) -> Result<Self, IdMapError> {
        let err = |message: String| IdMapError::File {
            path: path.to_path_buf(),
            message,
        };
        let mut m = IdMap::default();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(m),
            Err(e) => return Err(err(e.to_string())),
        };
        let f: File = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if f.version != FILE_VERSION {
            return Err(err(format!("unsupported version {}", f.version)));
        }
        m.revision = f.revision;
        for e in f.entries {
            let space = e.meaning.space();
            if let Some(a) = m.allocs.get_mut(&space) {
                a.reserve(e.id);
            }
            m.by_meaning.insert(e.meaning, e.id);
        }
        Ok(m)
    }

    /// Writes the table if it changed (atomically: temp file, fsync,
    /// rename).
    pub fn save(&mut self, path: &Path) -> Result<(), IdMapError> {
        if !self.dirty {
            return Ok(());
        }
        let err = |message: String| IdMapError::File {
            path: path.to_path_buf(),
            message,
        };
        let mut entries: Vec<Entry> = self
            .by_meaning
            .iter()
            .map(|(m, id)| Entry {
                id: *id,
                meaning: m.clone(),
            })
            .collect();
        entries.sort_by(|a, b| a.meaning.cmp(&b.meaning));
        let f = File {
            version: FILE_VERSION,
            revision: self.revision,
            entries,
        };
        let text = serde_json::to_vec(&f).map_err(|e| err(e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(|e| err(e.to_string()))?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))?;
        self.dirty = false;
        Ok(())
    }

    /// Every recorded number with its meaning (for tools naming numbers
    /// found in events and maps).
    pub fn entries(&self) -> impl Iterator<Item = (&Meaning, u32)> {
        self.by_meaning.iter().map(|(m, id)| (m, *id))
    }

    /// Marks the table changed (e.g. the revision moved).
    pub fn touch(&mut self) {
        self.dirty = true;
    }

    /// Keeps every number present in the maps from being handed out while
    /// it may still be there.
    pub fn reserve_observed(&mut self, state: &DpState) {
        let mut seen: Vec<(Space, u32)> = Vec::new();
        let ident = |id: u32, seen: &mut Vec<(Space, u32)>| {
            if let Some(s) = space_of_identity(id) {
                seen.push((s, id));
            }
        };
        for info in state.endpoints.values() {
            seen.push((Space::Endpoint, info.ep_id));
            ident(info.identity, &mut seen);
        }
        for (k, v) in &state.policy {
            seen.push((Space::Endpoint, k.ep_id));
            ident(k.identity, &mut seen);
            if v.portset != 0 {
                seen.push((Space::Portset, v.portset));
            }
        }
        for id in state.portsets.keys() {
            seen.push((Space::Portset, *id));
        }
        let values = state.exact_entries().map(|(_, v)| v);
        for v in values.chain(state.lpm_entries().map(|(_, v)| v)) {
            ident(v.identity, &mut seen);
            ident(v.cidr_identity, &mut seen);
        }
        for (space, id) in seen {
            if let Some(a) = self.allocs.get_mut(&space) {
                a.reserve(id);
            }
        }
    }

    fn number(&mut self, space: Space, cid: u32, meaning: Meaning) -> Result<u32, IdMapError> {
        let id = match self.by_meaning.get(&meaning) {
            Some(id) => *id,
            None => {
                let id = self
                    .allocs
                    .get_mut(&space)
                    .and_then(Alloc::alloc)
                    .ok_or(IdMapError::Exhausted(space_name(space)))?;
                self.by_meaning.insert(meaning, id);
                self.dirty = true;
                id
            }
        };
        self.cid.insert((space, cid), id);
        Ok(id)
    }

    /// Translates an identity.
    pub fn identity(&mut self, cx: &Context<'_>, cid: u32) -> Result<u32, IdMapError> {
        let Some(space) = space_of_identity(cid) else {
            return Ok(cid); // ANY, HOST, WORLD, reserved: fixed meanings
        };
        if let Some(id) = self.cid.get(&(space, cid)) {
            return Ok(*id);
        }
        let meaning = match cx.compiler.identity(cid) {
            Some(IdentityInfo::Pod {
                namespace,
                labels,
                named_ports,
            }) => Meaning::Pod {
                namespace,
                labels,
                named_ports: named_ports.into_iter().collect(),
            },
            Some(IdentityInfo::Cidr(net)) => Meaning::Cidr {
                prefix: net.to_string(),
            },
            _ => {
                return Err(IdMapError::Unknown {
                    space: space_name(space),
                    id: cid,
                });
            }
        };
        self.number(space, cid, meaning)
    }

    /// Translates an endpoint id.
    pub fn endpoint(&mut self, cx: &Context<'_>, cid: u32) -> Result<u32, IdMapError> {
        if let Some(id) = self.cid.get(&(Space::Endpoint, cid)) {
            return Ok(*id);
        }
        let (pod, uid) = cx.ep_owner.get(&cid).ok_or(IdMapError::Unknown {
            space: "endpoint id",
            id: cid,
        })?;
        let meaning = Meaning::Endpoint {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: uid.clone(),
        };
        self.number(Space::Endpoint, cid, meaning)
    }

    fn portset_with(&mut self, cid: u32, ports: &PortSet) -> Result<u32, IdMapError> {
        if let Some(id) = self.cid.get(&(Space::Portset, cid)) {
            return Ok(*id);
        }
        let meaning = Meaning::Portset {
            ranges: ports.ranges().to_vec(),
        };
        self.number(Space::Portset, cid, meaning)
    }

    /// Translates a portset id (0: inline value).
    pub fn portset(&mut self, cx: &Context<'_>, cid: u32) -> Result<u32, IdMapError> {
        if cid == 0 {
            return Ok(0);
        }
        if let Some(id) = self.cid.get(&(Space::Portset, cid)) {
            return Ok(*id);
        }
        let ports = cx
            .compiler
            .state()
            .portsets
            .get(&cid)
            .cloned()
            .ok_or(IdMapError::Unknown {
                space: "portset id",
                id: cid,
            })?;
        self.portset_with(cid, &ports)
    }

    fn value(&mut self, cx: &Context<'_>, v: IpcacheValue) -> Result<IpcacheValue, IdMapError> {
        Ok(IpcacheValue {
            identity: self.identity(cx, v.identity)?,
            cidr_identity: self.identity(cx, v.cidr_identity)?,
        })
    }

    /// Translates one compiler operation (operations must be translated in
    /// the order of the diff).
    pub fn translate(&mut self, cx: &Context<'_>, op: &MapOp) -> Result<Translated, IdMapError> {
        Ok(match op {
            MapOp::EndpointUpsert { at: pod, endpoint } => Translated::Endpoint {
                pod: pod.clone(),
                info: EndpointInfo {
                    ep_id: self.endpoint(cx, endpoint.ep_id)?,
                    identity: self.identity(cx, endpoint.identity)?,
                    flags: endpoint.flags,
                    _pad: 0,
                },
                ips: endpoint.ips.clone(),
            },
            MapOp::EndpointRemove { at: pod } => Translated::EndpointRemove { pod: pod.clone() },
            MapOp::PolicyUpsert { key, value } => {
                let mut k = *key;
                k.ep_id = self.endpoint(cx, key.ep_id)?;
                k.identity = self.identity(cx, key.identity)?;
                let mut v = *value;
                v.portset = self.portset(cx, value.portset)?;
                Translated::Map(DpOp::PolicyUpsert { key: k, value: v })
            }
            MapOp::PolicyRemove { key } => {
                let mut k = *key;
                k.ep_id = self.endpoint(cx, key.ep_id)?;
                k.identity = self.identity(cx, key.identity)?;
                Translated::Map(DpOp::PolicyRemove { key: k })
            }
            MapOp::PortsetUpsert { id, ports } => Translated::Map(DpOp::PortsetUpsert {
                id: self.portset_with(*id, ports)?,
                ports: ports.clone(),
            }),
            MapOp::PortsetRemove { id } => Translated::Map(DpOp::PortsetRemove {
                id: self.portset(cx, *id)?,
            }),
            MapOp::IpcacheExactUpsert { addr, value } => {
                Translated::Map(DpOp::IpcacheExactUpsert {
                    addr: *addr,
                    value: self.value(cx, *value)?,
                })
            }
            MapOp::IpcacheExactRemove { addr } => {
                Translated::Map(DpOp::IpcacheExactRemove { addr: *addr })
            }
            MapOp::IpcacheLpmUpsert { prefix, value } => Translated::Map(DpOp::IpcacheLpmUpsert {
                prefix: *prefix,
                value: self.value(cx, *value)?,
            }),
            MapOp::IpcacheLpmRemove { prefix } => {
                Translated::Map(DpOp::IpcacheLpmRemove { prefix: *prefix })
            }
        })
    }

    /// After a commit's writes are in the maps: forgets compiler numbers
    /// the compiler no longer uses and releases datapath numbers no live
    /// compiler number maps to (reusable from the next commit on).
    pub fn prune(&mut self, cx: &Context<'_>) {
        let portsets = &cx.compiler.state().portsets;
        self.cid.retain(|(space, cid), _| match space {
            Space::Pod | Space::Cidr => cx.compiler.identity(*cid).is_some(),
            Space::Endpoint => cx.ep_owner.contains_key(cid),
            Space::Portset => portsets.contains_key(cid),
        });
        let live: BTreeSet<(Space, u32)> = self.cid.iter().map(|((s, _), id)| (*s, *id)).collect();
        let allocs = &mut self.allocs;
        let before = self.by_meaning.len();
        self.by_meaning.retain(|m, id| {
            let space = m.space();
            let keep = live.contains(&(space, *id));
            if !keep && let Some(a) = allocs.get_mut(&space) {
                a.free.insert(*id);
            }
            keep
        });
        if self.by_meaning.len() != before {
            self.dirty = true;
        }
    }

    /// Number of meanings recorded.
    pub fn len(&self) -> usize {
        self.by_meaning.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.by_meaning.is_empty()
    }
}
