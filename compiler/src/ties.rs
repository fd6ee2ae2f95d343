//! Same-priority overlaps of ClusterNetworkPolicies on this node.
//!
//! The API leaves the order of two policies of one tier with the same
//! `priority` undefined when their rules match the same traffic; Palisade
//! consults them by name (`cluster.rs`), which is deterministic but is a
//! choice the operator did not write. This module finds, for the local
//! endpoints, the pairs of such policies whose rules match some of the same
//! traffic with *different* actions, so that Palisade's order decides a
//! verdict: the agent logs and counts them and `explain` names them for a
//! flow. Pairs that agree on the action are not reported: their order only
//! changes which rule a report names.
//!
//! Two cells of an endpoint's tier rows can be read for one flow when they
//! have the same peer identity, when one is `IDENTITY_ANY`, or when one is
//! a pod identity and the other a CIDR region (a region may hold the pod's
//! address): a flow has one pod identity and one region, so two different
//! pod identities or two different regions never meet. Pod-region pairs
//! are reported without checking addresses, so the report may name a pair
//! whose traffic does not actually meet; it never misses one.

use std::collections::{BTreeMap, BTreeSet};

use palisade_common::{IDENTITY_ANY, IdentityKind, TierCodes, identity_kind, tier_code};

use crate::cluster::{TierRow, compute_tier_row, positions};
use crate::engine::Engine;
use crate::model::{Action, PolicyRef, Tier};
use crate::state::PodRef;
use crate::verdicts::PortCodes;

/// Two ClusterNetworkPolicies of one tier with the same priority whose
/// rules match some of the same traffic of local pods with different
/// actions.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PriorityOverlap {
    /// `admin` or `baseline`.
    pub tier: &'static str,
    /// The priority both have.
    pub priority: u16,
    /// The policy consulted first (the smaller name).
    pub first: String,
    /// The other policy.
    pub second: String,
    /// [`palisade_common::direction`] of the traffic.
    pub direction: u8,
    /// The local pods whose traffic both match.
    pub pods: Vec<PodRef>,
}

/// Every same-priority overlap on the local endpoints, ordered by tier,
/// priority, names and direction.
pub(crate) fn priority_overlaps(e: &Engine) -> Vec<PriorityOverlap> {
    let mut groups: BTreeMap<(Tier, u16), Vec<&str>> = BTreeMap::new();
    for (name, p) in &e.cluster_policies {
        if !p.audit {
            groups.entry((p.tier, p.priority)).or_default().push(name);
        }
    }
    groups.retain(|_, names| names.len() > 1);
    let positions = positions(&e.cluster_policies);
    let mut found: BTreeMap<(Tier, u16, &str, &str, u8), Vec<PodRef>> = BTreeMap::new();
    for (&(tier, priority), names) in &groups {
        // Only pairs with rules of different actions in one direction can
        // conflict; only endpoints both select.
        let mut pairs: Vec<(&str, &str, u8)> = Vec::new();
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                for dir in 0..2u8 {
                    let actions = |n: &str| -> BTreeSet<Action> {
                        e.cluster_policies[n].rules[dir as usize]
                            .iter()
                            .map(|r| r.action)
                            .collect()
                    };
                    let (x, y) = (actions(a), actions(b));
                    if !x.is_empty() && !y.is_empty() && (x.len() > 1 || x != y) {
                        pairs.push((a, b, dir));
                    }
                }
            }
        }
        if pairs.is_empty() {
            continue;
        }
        let selected = |n: &str| {
            e.policies
                .get(&PolicyRef::cluster(n))
                .map(|st| &st.selected)
        };
        // Each policy's own codes for an endpoint, computed once.
        let mut rows: BTreeMap<(&str, &PodRef), TierRow> = BTreeMap::new();
        for (a, b, dir) in pairs {
            let (Some(sa), Some(sb)) = (selected(a), selected(b)) else {
                continue;
            };
            for pod in sa.intersection(sb) {
                let Some(st) = e.pods.get(pod) else {
                    continue;
                };
                for n in [a, b] {
                    if rows.contains_key(&(n, pod)) {
                        continue;
                    }
                    let (Some(state), Some(obj)) = (
                        e.policies.get(&PolicyRef::cluster(n)),
                        e.cluster_policies.get(n),
                    ) else {
                        continue;
                    };
                    let row = compute_tier_row(
                        &st.obj,
                        &[(state, obj)],
                        &positions,
                        &[n],
                        &e.identities,
                        None,
                        false,
                    );
                    rows.insert((n, pod), row);
                }
                let (Some(ra), Some(rb)) = (rows.get(&(a, pod)), rows.get(&(b, pod))) else {
                    continue;
                };
                if conflict(ra, rb, dir, tier) {
                    found
                        .entry((tier, priority, a, b, dir))
                        .or_default()
                        .push(pod.clone());
                }
            }
        }
    }
    found
        .into_iter()
        .map(
            |((tier, priority, a, b, direction), pods)| PriorityOverlap {
                tier: tier.as_str(),
                priority,
                first: a.to_string(),
                second: b.to_string(),
                direction,
                pods,
            },
        )
        .collect()
}

/// Whether a flow in `dir` can read a cell of `a` and a cell of `b` whose
/// codes of `tier` act differently on a shared port.
fn conflict(a: &TierRow, b: &TierRow, dir: u8, tier: Tier) -> bool {
    // The peer's own identity (a pod's, or the node's) against its
    // address's region (a CIDR region, or the world).
    let own = |id: u32| matches!(identity_kind(id), IdentityKind::Pod | IdentityKind::Host);
    let meet =
        |x: u32, y: u32| x == y || x == IDENTITY_ANY || y == IDENTITY_ANY || own(x) != own(y);
    a.iter()
        .filter(|((_, d, _), _)| *d == dir)
        .any(|(&(id_a, _, class), codes_a)| {
            b.iter()
                .filter(|((id_b, d, c), _)| *d == dir && *c == class && meet(id_a, *id_b))
                .any(|(_, codes_b)| acts_differently(codes_a, codes_b, tier))
        })
}

/// Whether some port has a rule of `tier` in both with different actions.
fn acts_differently(a: &PortCodes, b: &PortCodes, tier: Tier) -> bool {
    let action = |c: TierCodes| {
        tier_code::action(match tier {
            Tier::Admin => c.admin,
            Tier::Baseline => c.baseline,
        })
    };
    a.ranges().any(|(lo_a, hi_a, ca)| {
        let act_a = action(ca);
        act_a != 0
            && b.ranges().any(|(lo_b, hi_b, cb)| {
                let act_b = action(cb);
                act_b != 0 && act_b != act_a && lo_a <= hi_b && lo_b <= hi_a
            })
    })
}
