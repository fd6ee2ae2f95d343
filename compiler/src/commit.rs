//! The commit pipeline: turns the engine's dirty sets into the changed
//! entries of every map ([`Changes`]), then into ordered operations
//! ([`crate::diff::build`]).
//!
//! 1. Sweep identities and regions that lost their last user (and update
//!    the rules that matched them).
//! 2. Materialise policies changed since the last commit.
//! 3. Recompute the dirty addresses, prefixes, endpoints and policy cells,
//!    and compare them with the committed state: only entries whose value
//!    differs become changes.

use std::collections::BTreeMap;

use palisade_common::{PolicyKey, direction, endpoint_flags};

use crate::audit::ViewRow;
use crate::diff::{Changes, build};
use crate::engine::Engine;
use crate::ports::CLASSES;
use crate::portsets::Values;
use crate::state::{DesiredState, Endpoint, MapOp, PodRef};
use crate::verdicts::Verdicts;

/// The committed maps and the registries of their tables.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub(crate) state: DesiredState,
    pub(crate) values: Values,
}

fn key(ep_id: u32, identity: u32, dir: u8, class: u8) -> PolicyKey {
    view_key(ep_id, identity, dir, class, 0)
}

fn view_key(ep_id: u32, identity: u32, dir: u8, class: u8, view: u8) -> PolicyKey {
    PolicyKey {
        ep_id,
        identity,
        direction: dir,
        proto: class,
        view,
        _pad: 0,
    }
}

/// The flags of local endpoint `ep`: isolation, audit, tiers and views.
fn endpoint_flags(e: &Engine, ep: &crate::endpoints::EpState) -> u32 {
    let np = crate::audit::endpoint_flags(
        ep.selecting.iter().filter_map(|r| e.policies.get(r)),
        &e.audit,
    );
    np | crate::cluster::tier_flags(ep.tiers.iter(), &e.cluster_policies)
        | crate::cluster::view_tier_flags(ep.tiers.iter(), &e.cluster_policies, np)
}

fn endpoint_value(e: &Engine, pod: &PodRef) -> Option<Endpoint> {
    let ep = e.eps.get(pod)?;
    let state = e.pods.get(pod)?;
    let flags = endpoint_flags(e, ep);
    Some(Endpoint {
        ep_id: ep.ep_id,
        identity: state.identity?,
        flags,
        ips: state.obj.ips.clone(),
    })
}

/// Runs the pipeline; returns the ordered operations (already applied
/// to `out`).
pub(crate) fn commit(e: &mut Engine, out: &mut Output) -> Vec<MapOp> {
    for (id, key) in e.identities.sweep() {
        e.on_identity_removed(id, &key);
    }
    for (net, id) in e.ipcache.regions.sweep() {
        e.on_region_removed(net, id);
    }
    e.materialize_stale();

    let mut dirty = std::mem::take(&mut e.dirty);
    let mut changes = Changes::default();
    for ip in std::mem::take(&mut dirty.ips) {
        let (old, new) = (out.state.exact(&ip), e.ipcache.exact_value(&ip, &e.pods));
        if old != new {
            changes.exact.push((ip, old, new));
        }
    }
    for net in std::mem::take(&mut dirty.lpm) {
        let old = out.state.lpm(&net);
        let new = e.ipcache.lpm_value(&net);
        if old != new {
            changes.lpm.push((net, old, new));
        }
    }
    for pod in std::mem::take(&mut dirty.endpoints) {
        let old = out.state.endpoints.get(&pod).cloned();
        let new = endpoint_value(e, &pod);
        // The audit view appears or goes: every entry of the row may change.
        let view = |e: &Option<Endpoint>| e.as_ref().map(|e| e.flags & crate::audit::VIEW_BITS);
        if view(&old) != view(&new)
            && let Some(ep) = new.as_ref().or(old.as_ref())
        {
            dirty.mark_row(ep.ep_id);
        }
        if old != new {
            changes.endpoints.push((pod, old, new));
        }
    }
    let positions = crate::cluster::positions(&e.cluster_policies);
    for (ep_id, dirt) in dirty.rows {
        let owner = e
            .eps
            .owner(ep_id)
            .and_then(|p| Some((p, e.eps.get(p)?, e.pods.get(p)?)));
        let mut row: BTreeMap<(u32, u8, u8, u8), Verdicts> = BTreeMap::new();
        if let Some((_, ep, pod)) = owner {
            let pols: Vec<_> = ep
                .selecting
                .iter()
                .filter_map(|r| e.policies.get(r))
                .collect();
            let flags = endpoint_flags(e, ep);
            let view: ViewRow = crate::audit::compute_rows(
                &pod.obj,
                &pols,
                &e.identities,
                Some(&dirt),
                &e.audit,
                flags,
            );
            row.extend(
                view.into_iter()
                    .map(|(k, ports)| (k, Verdicts::allowing(ports))),
            );
            let tiers: Vec<_> = ep
                .tiers
                .iter()
                .filter_map(|r| {
                    Some((
                        r.name.as_str(),
                        e.policies.get(r)?,
                        e.cluster_policies.get(&r.name)?,
                    ))
                })
                .collect();
            let names: Vec<&str> = tiers.iter().map(|t| t.0).collect();
            let tiers: Vec<_> = tiers.iter().map(|t| (t.1, t.2.as_ref())).collect();
            let codes = crate::cluster::compute_tier_row(
                &pod.obj,
                &tiers,
                &positions,
                &names,
                &e.identities,
                Some(&dirt),
                false,
            );
            for ((id, dir, class), c) in codes {
                row.entry((id, dir, class, 0)).or_default().codes = c;
            }
            // The audit view's codes: every cluster policy's.
            let view_tiered = endpoint_flags::view_tiered;
            if flags & (view_tiered(direction::INGRESS) | view_tiered(direction::EGRESS)) != 0 {
                let codes = crate::cluster::compute_tier_row(
                    &pod.obj,
                    &tiers,
                    &positions,
                    &names,
                    &e.identities,
                    Some(&dirt),
                    true,
                );
                for ((id, dir, class), c) in codes {
                    if flags & view_tiered(dir) != 0 {
                        row.entry((id, dir, class, 1)).or_default().codes = c;
                    }
                }
            }
        }
        let full = dirt.full || owner.is_none();
        let mut old: BTreeMap<PolicyKey, Verdicts> = BTreeMap::new();
        let mut note = |k: &PolicyKey, v| {
            if let Some(says) = out.state.value_says(v) {
                old.insert(*k, says);
            }
        };
        if full {
            let lo = key(ep_id, 0, 0, 0);
            let hi = PolicyKey {
                ep_id,
                identity: u32::MAX,
                direction: u8::MAX,
                proto: u8::MAX,
                view: u8::MAX,
                _pad: u8::MAX,
            };
            for (k, v) in out.state.policy.range(lo..=hi) {
                note(k, v);
            }
        } else {
            for (dir, ids) in dirt.cells.iter().enumerate() {
                for &id in ids {
                    for class in CLASSES {
                        for view in [0, 1] {
                            let k = view_key(ep_id, id, dir as u8, class, view);
                            if let Some(v) = out.state.policy.get(&k) {
                                note(&k, v);
                            }
                        }
                    }
                }
            }
        }
        for ((id, dir, class, view), ports) in row {
            let k = view_key(ep_id, id, dir, class, view);
            match old.remove(&k) {
                Some(o) if o == ports => {}
                o => changes.policy.push((k, o, Some(ports))),
            }
        }
        for (k, o) in old {
            changes.policy.push((k, Some(o), None));
        }
    }
    let ops = build(changes, &mut out.state, &mut out.values);
    e.identities.flush();
    e.ipcache.regions.flush();
    e.eps.flush();
    ops
}
