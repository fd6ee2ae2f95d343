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
use tracing::{debug, info, instrument};

use super::endpoints::{Io, remove_pins};
use super::{Agent, state_path};
use crate::datapath::{Datapath, DatapathError};
use crate::idmap::{Context, IdMapError, Translated};
use crate::maps::transition::transition;
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
            let mut io = Io {
                dp: &mut self.dp,
                mirror: &mut self.mirror,
                net: &self.net,
            };
            return Ok(self.endpoints.place_all(&mut io)?);
        }
        let owner = self.ep_owner();
        let mut io = Io {
            dp: &mut self.dp,
            mirror: &mut self.mirror,
            net: &self.net,
        };
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
        let endpoints = &mut self.endpoints;
        let written = translated
            .into_iter()
            .try_for_each(|t| match t {
                Translated::Map(op) => io.write(op),
                Translated::Endpoint { pod, info, ips } => {
                    endpoints.upsert(&mut io, pod, info, ips)
                }
                Translated::EndpointRemove { pod } => endpoints.remove(&mut io, &pod),
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
        let cx = Context {
            compiler: &self.compiler,
            ep_owner: &owner,
        };
        let mut target = DpState::default();
        let mut desired: BTreeMap<PodRef, (EndpointInfo, Vec<IpAddr>)> = BTreeMap::new();
        for op in self.compiler.state().full_sync_ops() {
            match self.idmap.translate(&cx, &op)? {
                Translated::Map(op) => target.apply(&op),
                Translated::Endpoint { pod, info, ips } => {
                    desired.insert(pod, (info, ips));
                }
                Translated::EndpointRemove { .. } => {}
            }
        }
        target.endpoints = self.endpoints.plan(&self.net, desired);
        self.idmap.touch();
        self.idmap.save(&state_path(&self.cfg))?;
        let ops = transition(&self.mirror, &target);
        let n = ops.len();
        let mut io = Io {
            dp: &mut self.dp,
            mirror: &mut self.mirror,
            net: &self.net,
        };
        let links_dir = self.cfg.links_dir();
        let written = ops.into_iter().try_for_each(|op| {
            if let DpOp::EndpointRemove { ifindex } = &op
                && let Some(name) = io.net.links.get(ifindex)
            {
                // Programs off before the entry goes (no fail-closed drops
                // on an interface that stays).
                remove_pins(&links_dir, name);
            }
            debug!(?op, "reconcile");
            io.write(op)
        });
        if n > 0 {
            publish(&mut self.config, self.cfg.ct_revalidate, io.dp)?;
        }
        written?;
        self.endpoints.adopt(&mut io)?;
        self.idmap.prune(&cx);
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
