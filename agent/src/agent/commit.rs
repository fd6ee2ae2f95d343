//! Map sync: commits the compiler and writes the result to the maps. In
//! steady state each commit's ordered writes are applied one by one, in
//! the compiler's order and numbering (`PortsetUpsert` writes
//! `ports.to_bitmap()`; endpoint entries go where the pod's interface is,
//! or wait for it). The first commit after a start (and any commit after a
//! failed write) instead reconciles the whole state against what the maps
//! hold (`palisade_compiler::reconcile`): pinned maps are never flushed.
//! Before any write the numbering is recorded (`numbering.rs`).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use palisade_common::{Config, EndpointInfo};
use palisade_compiler::{Endpoint, Meaning, PodRef, reconcile};
use tracing::{debug, info, instrument, warn};

use super::endpoints::Io;
use super::{Agent, state_path};
use crate::datapath::remove_link_pins;
use crate::datapath::{Datapath, DatapathError};
use crate::maps::{DpOp, DpState, MapWriteError};
use crate::numbering::NumberingError;

/// Applying a commit failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Recording the numbering failed (nothing was written).
    #[error("recording the numbering: {0}")]
    Numbering(#[from] NumberingError),
    /// A map write failed.
    #[error(transparent)]
    Write(#[from] MapWriteError),
    /// Writing `CONFIG` failed.
    #[error("writing CONFIG: {0}")]
    Config(#[from] DatapathError),
}

/// The `ENDPOINTS` value of a compiled endpoint.
fn endpoint_info(e: &Endpoint) -> EndpointInfo {
    EndpointInfo {
        ep_id: e.ep_id,
        identity: e.identity,
        flags: e.flags,
        _pad: 0,
    }
}

impl Agent {
    /// Endpoint id → pod, from the numbering (names the pods of pinned
    /// entries, also those the sources no longer report).
    fn endpoint_pods(&self) -> HashMap<u32, PodRef> {
        self.compiler
            .numbering()
            .into_iter()
            .filter_map(|(m, id)| match m {
                Meaning::Endpoint {
                    namespace, name, ..
                } => Some((id, PodRef::new(namespace, name))),
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

    /// Records the numbering (write-ahead: every number the maps will
    /// hold has a recorded meaning).
    fn record_numbering(&mut self) -> Result<(), NumberingError> {
        self.numbers.save(&state_path(&self.cfg), &self.compiler)
    }

    /// After a failed write: the maps may still hold numbers the commit
    /// freed; none of them is handed out again while they may be there.
    fn keep_written_numbers(&mut self) {
        self.compiler.reserve_numbers(&self.mirror.tables);
    }

    /// Commits and applies.
    #[instrument(skip_all, fields(node = %self.cfg.node_name))]
    pub(super) fn commit(&mut self) -> Result<(), CommitError> {
        let t0 = std::time::Instant::now();
        let diff = self.compiler.commit();
        let t_compile = t0.elapsed();
        if self.needs_full {
            return self.full_reconcile();
        }
        if diff.ops.is_empty() {
            // Links or routes may have changed: place what waits.
            let (endpoints, mut io) = self.parts();
            return Ok(endpoints.place_all(&mut io)?);
        }
        self.numbers.revision += 1;
        let t1 = std::time::Instant::now();
        self.record_numbering()?;
        let t_record = t1.elapsed();
        let t2 = std::time::Instant::now();
        let n = diff.ops.len();
        let removal_reasons: HashMap<PodRef, String> = diff
            .ops
            .iter()
            .filter_map(|op| match op {
                DiffOp::EndpointRemove { at } => Some((at.clone(), self.why_not_local(at))),
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
        let written = diff
            .ops
            .into_iter()
            .try_for_each(|op| match op.split_endpoint() {
                Ok(write) => io.write(write),
                Err((pod, Some(e))) => endpoints.upsert(&mut io, pod, endpoint_info(&e), e.ips),
                Err((pod, None)) => endpoints.remove(&mut io, &pod, &removal_reasons[&pod]),
            })
            .and_then(|()| endpoints.place_all(&mut io));
        publish(&mut self.config, self.cfg.ct_revalidate, io.dp)?;
        if let Err(e) = written {
            self.keep_written_numbers();
            return Err(e.into());
        }
        tracing::debug!(target: "palisade::round", compile_us = t_compile.as_micros() as u64,
            record_us = t_record.as_micros() as u64, write_us = t2.elapsed().as_micros() as u64,
            ops = n, "commit");
        info!(revision = self.numbers.revision, ops = n, "policy applied");
        Ok(())
    }

    /// Brings the maps from what they hold to the compiled state.
    #[instrument(skip_all, fields(node = %self.cfg.node_name))]
    fn full_reconcile(&mut self) -> Result<(), CommitError> {
        let desired: BTreeMap<PodRef, (EndpointInfo, Vec<IpAddr>)> = self
            .compiler
            .state()
            .endpoints
            .iter()
            .map(|(pod, e)| (pod.clone(), (endpoint_info(e), e.ips.clone())))
            .collect();
        // Recorded sandboxes whose policy is not compiled stay attached
        // (pending) before the plan decides what each interface keeps.
        self.restore_recorded(&desired);
        let mut target: DpState = self.compiler.state().rekeyed(|_, _| None);
        target.endpoints = self.endpoints.plan(&self.net, self.feed.records(), desired);
        self.record_numbering()?;
        let ops = reconcile(&self.mirror.tables, &target);
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
        if let Err(e) = written.and_then(|()| self.endpoints.adopt(&mut io)) {
            self.keep_written_numbers();
            return Err(e.into());
        }
        // The maps hold the compiled state and nothing else: numbers kept
        // for meanings nobody claimed, or reserved, are free again.
        self.compiler.settle_numbering();
        if n > 0 {
            self.numbers.revision += 1;
        }
        self.record_numbering()?;
        self.needs_full = false;
        info!(
            revision = self.numbers.revision,
            writes = n,
            "maps reconciled with the compiled state"
        );
        Ok(())
    }
}

type DiffOp = palisade_compiler::MapOp;

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
