//! Map sync: commits the compiler and writes the result to the maps. In
//! steady state each commit's ordered operations are translated to
//! datapath numbering and applied one by one, in the compiler's order
//! (`PortsetUpsert` writes `ports.to_bitmap()`; endpoint entries go where
//! the pod's interface is, or wait for it). The first commit after a start
//! (and any commit after a failed write) instead reconciles the whole
//! state against what the maps hold, by a safely ordered diff: pinned maps
//! are never flushed.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use palisade_common::{Config, EndpointInfo};
use palisade_compiler::PodRef;
use tracing::{debug, info, instrument, warn};

use super::endpoints::Io;
use super::{Agent, state_path};
use crate::datapath::remove_link_pins;
use crate::datapath::{Datapath, DatapathError};
use crate::idmap::Meaning;
use crate::idmap::{Context, IdMapError, Translated};
use crate::maps::{DpOp, DpState, MapWriteError};

/// Applying a commit failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Translating to datapath numbering failed.
    #[error("translating the commit: {0}")]
    Translate(#[from] IdMapError),
    /// A map write failed.
    #[error(transparent)]
    Write(#[from] MapWriteError),
    /// Writing `CONFIG` failed.
    #[error("writing CONFIG: {0}")]
    Config(#[from] DatapathError),
}

impl Agent {
    /// Datapath endpoint id → pod, from the allocation table (names the
    /// pods of pinned entries, also those the sources no longer report).
    fn endpoint_pods(&self) -> HashMap<u32, PodRef> {
        self.idmap
            .entries()
            .filter_map(|(m, id)| match m {
                Meaning::Endpoint {
                    namespace, name, ..
                } => Some((id, PodRef::new(namespace.clone(), name.clone()))),
                _ => None,
            })
            .collect()
    }

    /// Why a pod stopped being a local endpoint, for the log.
    fn why_not_local(&self, pod: &PodRef) -> String {
        if !self.feed.knows_pod(pod) {
            "the sources report the pod deleted".into()
        } else {
            format!(
                "the pod is no longer a local endpoint of node {} (node, host network or addresses changed)",
                self.cfg.node_name
            )
        }
    }

    /// Compiler endpoint id → (pod, uid), as of the last commit.
    fn ep_owner(&self) -> HashMap<u32, (PodRef, String)> {
        self.compiler
            .state()
            .endpoints
            .iter()
            .map(|(pod, ep)| (ep.ep_id, (pod.clone(), self.feed.uid(pod))))
            .collect()
    }

    /// Commits and applies.
    #[instrument(skip_all, fields(node = %self.cfg.node_name))]
    pub(super) fn commit(&mut self) -> Result<(), CommitError> {
        let diff = self.compiler.commit();
        if self.needs_full {
            return self.full_reconcile();
        }
        if diff.ops.is_empty() {
            // Links or routes may have changed: place what waits.
            let (endpoints, mut io) = self.parts();
            return Ok(endpoints.place_all(&mut io)?);
        }
        let owner = self.ep_owner();
        let cx = Context {
            compiler: &self.compiler,
            ep_owner: &owner,
        };
        let translated = diff
            .ops
            .iter()
            .map(|op| self.idmap.translate(&cx, op))
            .collect::<Result<Vec<_>, _>>()?;
        self.idmap.revision += 1;
        self.idmap.touch();
        // Write-ahead: every number the maps will hold has a recorded meaning.
        self.idmap.save(&state_path(&self.cfg))?;
        let n = translated.len();
        let removal_reasons: HashMap<PodRef, String> = translated
            .iter()
            .filter_map(|t| match t {
                Translated::EndpointRemove { pod } => Some((pod.clone(), self.why_not_local(pod))),
                _ => None,
            })
            .collect();
        let (endpoints, mut io) = (
            &mut self.endpoints,
            Io {
                dp: &mut self.dp,
                mirror: &mut self.mirror,
                net: &self.net,
                records: self.feed.records(),
                allowed: &self.allowed_sources,
            },
        );
        let written = translated
            .into_iter()
            .try_for_each(|t| match t {
                Translated::Map(op) => io.write(op),
                Translated::Endpoint { pod, info, ips } => {
                    endpoints.upsert(&mut io, pod, info, ips)
                }
                Translated::EndpointRemove { pod } => {
                    endpoints.remove(&mut io, &pod, &removal_reasons[&pod])
                }
            })
            .and_then(|()| endpoints.place_all(&mut io));
        publish(&mut self.config, self.cfg.ct_revalidate, io.dp)?;
        written?;
        self.idmap.prune(&cx);
        self.idmap.save(&state_path(&self.cfg))?;
        info!(revision = self.idmap.revision, ops = n, "policy applied");
        Ok(())
    }

    /// Brings the maps from what they hold to the compiled state.
    #[instrument(skip_all, fields(node = %self.cfg.node_name))]
    fn full_reconcile(&mut self) -> Result<(), CommitError> {
        let owner = self.ep_owner();
        let mut target = DpState::default();
        let mut desired: BTreeMap<PodRef, (EndpointInfo, Vec<IpAddr>)> = BTreeMap::new();
        {
            let cx = Context {
                compiler: &self.compiler,
                ep_owner: &owner,
            };
            for op in self.compiler.state().full_sync_ops() {
                match self.idmap.translate(&cx, &op)? {
                    Translated::Map(op) => target.apply(&op),
                    Translated::Endpoint { pod, info, ips } => {
                        desired.insert(pod, (info, ips));
                    }
                    Translated::EndpointRemove { .. } => {}
                }
            }
        }
        // Recorded sandboxes whose policy is not compiled stay attached
        // (pending) before the plan decides what each interface keeps.
        self.restore_recorded(&desired);
        target.endpoints = self.endpoints.plan(&self.net, self.feed.records(), desired);
        self.idmap.touch();
        self.idmap.save(&state_path(&self.cfg))?;
        let ops = palisade_compiler::reconcile(&self.mirror.tables, &target);
        let n = ops.len();
        let pods_by_ep = self.endpoint_pods();
        let links_dir = self.cfg.links_dir();
        let mut io = Io {
            dp: &mut self.dp,
            mirror: &mut self.mirror,
            net: &self.net,
            records: self.feed.records(),
            allowed: &self.allowed_sources,
        };
        let written = ops.into_iter().try_for_each(|op| {
            if let DpOp::EndpointRemove { at: ifindex } = &op {
                let pod = io
                    .mirror
                    .tables
                    .endpoints
                    .get(ifindex)
                    .and_then(|e| pods_by_ep.get(&e.ep_id));
                let iface = io.net.links.get(ifindex);
                warn!(pod = %pod.map_or_else(|| "(unknown)".into(), ToString::to_string),
                      iface = %iface.map_or("(deleted)", String::as_str), ifindex,
                      reason = "not a local pod of the compiled state, and no CNI record names it",
                      "reconcile: enforcement removed from the interface");
                if let Some(name) = iface {
                    // Programs off before the entry goes (no fail-closed
                    // drops on an interface that stays).
                    remove_link_pins(&links_dir, name);
                }
            }
            debug!(?op, "reconcile");
            io.write(op)
        });
        if n > 0 {
            publish(&mut self.config, self.cfg.ct_revalidate, io.dp)?;
        }
        written?;
        self.endpoints.adopt(&mut io)?;
        self.idmap.prune(&Context {
            compiler: &self.compiler,
            ep_owner: &owner,
        });
        if n > 0 {
            self.idmap.revision += 1;
        }
        self.idmap.touch();
        self.idmap.save(&state_path(&self.cfg))?;
        self.needs_full = false;
        info!(
            revision = self.idmap.revision,
            writes = n,
            "maps reconciled with the compiled state"
        );
        Ok(())
    }
}

/// Tells the datapath that the maps changed: a new ipcache generation
/// (each CPU's cache of resolved addresses stops answering, see
/// `IpcacheCacheEntry`) and, with `--ct-revalidate`, a new policy epoch.
/// Called after the writes, also after writes that failed part way: the
/// maps hold some of the change, and a cached answer must not outlive what
/// it was resolved from.
fn publish(
    config: &mut Config,
    ct_revalidate: bool,
    dp: &mut Datapath,
) -> Result<(), DatapathError> {
    config.ipcache_generation = config.ipcache_generation.wrapping_add(1);
    if ct_revalidate {
        config.policy_epoch = config.policy_epoch.wrapping_add(1);
    }
    dp.maps.set_config(config)
}
