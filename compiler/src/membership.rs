//! Rule membership: keeps what each materialised rule matches (the sets of
//! its [`crate::rules::RuleState`]: pod identities, regions, named-port identities behind
//! ipBlocks) in step with the model between materialisations, and marks
//! the policy cells each change touches. This is the identity and region
//! lifecycle as the rules see it: an identity or region appears or goes
//! (`identity.rs` and `cidr.rs` own the registries), a namespace is
//! relabelled, or the addresses of an identity's pods move.
//!
//! Each event first collects [`Update`]s from a read-only view, then
//! [`apply`] writes them.

use ipnet::IpNet;
use palisade_common::direction;

use crate::dirty::Dirty;
use crate::endpoints::Endpoints;
use crate::identity::IdentityKey;
use crate::model::{Peers, PolicyRef};
use crate::policies::Policies;
use crate::rules::{SetKind, World};
use crate::selector::Labels;

/// A change to one rule set of one policy (`kind: None`: no set changes,
/// but the identity's entries of the rule do).
pub(crate) struct Update {
    policy: PolicyRef,
    dir: usize,
    rule: usize,
    kind: Option<SetKind>,
    id: u32,
    insert: bool,
}

/// Applies `updates` to the rules of `policies` and marks the cells of
/// every set that changed, for the endpoints the policy selects.
pub(crate) fn apply(
    updates: Vec<Update>,
    policies: &mut Policies,
    eps: &Endpoints,
    dirty: &mut Dirty,
) {
    for u in updates {
        let Some(pol) = policies.get_mut(&u.policy) else {
            continue;
        };
        let changed = match u.kind {
            None => true,
            Some(kind) => {
                let Some(st) = pol.rules[u.dir].get_mut(u.rule) else {
                    continue;
                };
                let set = st.set_mut(kind);
                if u.insert {
                    set.insert(u.id)
                } else {
                    set.remove(u.id)
                }
            }
        };
        if changed {
            dirty.mark_cells(eps, &pol.selected, u.dir, &[u.id]);
        }
    }
}

/// Namespace relabelled from `old` to `new`: the selector memberships of
/// its identities `ids`.
pub(crate) fn namespace_relabelled(
    policies: &Policies,
    world: &World<'_>,
    old: &Labels,
    new: &Labels,
    ids: &[u32],
) -> Vec<Update> {
    // A rule listed under two changed selectors is visited twice; the
    // second visit finds nothing left to change.
    let affected = policies.ns_selector_users(old, new);
    let mut updates = Vec::new();
    for (pref, dir, ri) in affected {
        let Some(pol) = policies.get(pref).filter(|p| p.materialized) else {
            continue;
        };
        let (Some(rule), Some(st)) = (
            pol.obj.rules[*dir].as_ref().and_then(|r| r.get(*ri)),
            pol.rules[*dir].get(*ri),
        ) else {
            continue;
        };
        for &id in ids {
            let Some(ident) = world.identities.by_id.get(&id) else {
                continue;
            };
            let now = world.selector_matches(&pol.namespace, rule, &ident.key);
            if now != st.pod_ids.contains(id) {
                updates.push(Update {
                    policy: pref.clone(),
                    dir: *dir,
                    rule: *ri,
                    kind: Some(SetKind::PodIds),
                    id,
                    insert: now,
                });
            }
        }
    }
    updates
}

/// Pod identity `id` was created: every rule it now belongs to.
pub(crate) fn identity_created(policies: &Policies, world: &World<'_>, id: u32) -> Vec<Update> {
    let Some(ident) = world.identities.by_id.get(&id) else {
        return Vec::new();
    };
    let key = ident.key.clone();
    let mut updates = Vec::new();
    for (pref, pol) in policies.live(policies.candidates_for_namespace(&key.namespace)) {
        for (dir, rules) in pol.obj.rules.iter().enumerate() {
            for (ri, rule) in rules.iter().flatten().enumerate() {
                let mk = |kind| Update {
                    policy: pref.clone(),
                    dir,
                    rule: ri,
                    kind,
                    id,
                    insert: true,
                };
                if world.selector_matches(&pol.namespace, rule, &key) {
                    updates.push(mk(Some(SetKind::PodIds)));
                }
                if rule.is_named_block_rule(dir) && world.named_block_matches(rule, id) {
                    updates.push(mk(Some(SetKind::NamedBlocks)));
                }
                if dir == direction::EGRESS as usize
                    && rule.peers == Peers::All
                    && world.identities.serves_any(id, &rule.ports.named)
                {
                    updates.push(mk(None));
                }
            }
        }
    }
    updates
}

/// Pod identity `id` (of `key`) was swept: every rule it belonged to.
pub(crate) fn identity_removed(policies: &Policies, id: u32, key: &IdentityKey) -> Vec<Update> {
    let mut updates = Vec::new();
    for (pref, pol) in policies.live(policies.candidates_for_namespace(&key.namespace)) {
        for (dir, rules) in pol.obj.rules.iter().enumerate() {
            for (ri, rule) in rules.iter().flatten().enumerate() {
                let Some(st) = pol.rules[dir].get(ri) else {
                    continue;
                };
                let mk = |kind| Update {
                    policy: pref.clone(),
                    dir,
                    rule: ri,
                    kind,
                    id,
                    insert: false,
                };
                if st.pod_ids.contains(id) {
                    updates.push(mk(Some(SetKind::PodIds)));
                }
                if st.named_block_ids.contains(id) {
                    updates.push(mk(Some(SetKind::NamedBlocks)));
                }
                let serves = key
                    .named_ports
                    .iter()
                    .any(|(n, c, _)| rule.ports.named.iter().any(|(m, d)| m == n && d == c));
                if dir == direction::EGRESS as usize && rule.peers == Peers::All && serves {
                    updates.push(mk(None));
                }
            }
        }
    }
    updates
}

/// The pods of identity `id` or their addresses changed: its ipBlock +
/// named-port memberships.
pub(crate) fn addresses_moved(policies: &Policies, world: &World<'_>, id: u32) -> Vec<Update> {
    let mut updates = Vec::new();
    for (pref, pol) in policies.live(policies.named_blocks()) {
        for (dir, rules) in pol.obj.rules.iter().enumerate() {
            for (ri, rule) in rules.iter().flatten().enumerate() {
                if !rule.is_named_block_rule(dir) {
                    continue;
                }
                let Some(st) = pol.rules[dir].get(ri) else {
                    continue;
                };
                let now = world.named_block_matches(rule, id);
                if now != st.named_block_ids.contains(id) {
                    updates.push(Update {
                        policy: pref.clone(),
                        dir,
                        rule: ri,
                        kind: Some(SetKind::NamedBlocks),
                        id,
                        insert: now,
                    });
                }
            }
        }
    }
    updates
}

/// Region `net` (identity `id`) was created (`insert`) or swept: the
/// ipBlock rules allowing it.
pub(crate) fn region_changed(
    policies: &Policies,
    net: IpNet,
    id: u32,
    insert: bool,
) -> Vec<Update> {
    let mut updates = Vec::new();
    for (pref, pol) in policies.live(policies.with_blocks()) {
        for (dir, rules) in pol.obj.rules.iter().enumerate() {
            for (ri, rule) in rules.iter().flatten().enumerate() {
                if !insert || rule.blocks().any(|b| b.allows_region(&net)) {
                    updates.push(Update {
                        policy: pref.clone(),
                        dir,
                        rule: ri,
                        kind: Some(SetKind::Regions),
                        id,
                        insert,
                    });
                }
            }
        }
    }
    updates
}
