//! A commit's diff: the changed entries the commit pipeline found, given
//! values (port sets acquired from the registry) and put in order by
//! `order.rs`, the one owner of make-before-break.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use palisade_common::{IpcacheValue, PolicyKey};

use crate::order::{Changes as OrderChanges, PolicyChange, order};
use crate::portsets::Values;
use crate::state::{DesiredState, Endpoint, MapOp, PodRef};
use crate::verdicts::Verdicts;

/// The ordered operations of one commit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// [`crate::Compiler::revision`] after this diff (unchanged if `ops`
    /// is empty).
    pub revision: u64,
    /// Operations, to be applied in order.
    pub ops: Vec<MapOp>,
}

/// The changed entries of a commit, `(key, old, new)`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Changes {
    pub(crate) endpoints: Vec<(PodRef, Option<Endpoint>, Option<Endpoint>)>,
    pub(crate) policy: Vec<(PolicyKey, Option<Verdicts>, Option<Verdicts>)>,
    pub(crate) exact: Vec<(IpAddr, Option<IpcacheValue>, Option<IpcacheValue>)>,
    pub(crate) lpm: Vec<(IpNet, Option<IpcacheValue>, Option<IpcacheValue>)>,
}

/// Values the changes, orders them (`order.rs`), adds the port and tier
/// table writes around them, applies them to `state`, and maintains the
/// table registries.
pub(crate) fn build(changes: Changes, state: &mut DesiredState, values: &mut Values) -> Vec<MapOp> {
    let mut released = Vec::new();
    let policy: Vec<PolicyChange> = changes
        .policy
        .into_iter()
        .map(|(key, old_says, new_says)| {
            // An exhausted id space leaves the entry out (fail closed).
            let new = new_says.as_ref().and_then(|s| values.acquire(s));
            let old = state.policy.get(&key).copied();
            released.extend(old);
            PolicyChange {
                key,
                old,
                new,
                old_says,
                new_says,
            }
        })
        .collect();
    let mut placed: BTreeMap<&PodRef, u32> =
        state.endpoints.iter().map(|(p, e)| (p, e.ep_id)).collect();
    for (pod, _, new) in &changes.endpoints {
        match new {
            Some(e) => placed.insert(pod, e.ep_id),
            None => placed.remove(pod),
        };
    }
    let placed_new: HashSet<u32> = placed.into_values().collect();
    let mut transient = Vec::new();
    let mut narrowed = |says: &Verdicts| {
        let v = values.acquire(says);
        transient.extend(v);
        v
    };
    let middle = order(
        OrderChanges {
            endpoints: changes.endpoints,
            policy,
            exact: changes.exact,
            lpm: changes.lpm,
        },
        state,
        &placed_new,
        &mut narrowed,
    );
    for v in released.iter().chain(transient.iter()) {
        values.release(v);
    }
    let mut ops: Vec<MapOp> = values
        .portsets
        .take_created()
        .into_iter()
        .map(|(id, ports)| MapOp::PortsetUpsert { id, ports })
        .collect();
    ops.extend(
        values
            .tiersets
            .take_created()
            .into_iter()
            .map(|(id, codes)| MapOp::TiersetUpsert { id, codes }),
    );
    ops.extend(middle);
    ops.extend(
        values
            .portsets
            .sweep()
            .into_iter()
            .map(|id| MapOp::PortsetRemove { id }),
    );
    ops.extend(
        values
            .tiersets
            .sweep()
            .into_iter()
            .map(|id| MapOp::TiersetRemove { id }),
    );
    values.flush();
    for op in &ops {
        state.apply(op);
    }
    ops
}
