//! Compiled rules: the engine's state of a pod ([`PodState`]) and of a
//! policy ([`PolicyState`]), which identities each rule of a policy matches
//! ([`RuleState`], computed from scratch through the read-only [`World`]),
//! and the per-endpoint computation of policy entries from the rules of the
//! policies selecting the endpoint ([`compute_row`]).
//!
//! Entry semantics, for a local endpoint `ep` and a rule of direction `d`:
//!
//! * `from`/`to` empty: key `IDENTITY_ANY` gets the numeric ports; for
//!   ingress also the named ports resolved on `ep` (the destination).
//! * pod identity `X` matched by a podSelector/namespaceSelector peer: the
//!   numeric ports, plus the named ports resolved on the destination — `ep`
//!   for ingress, `X` for egress (exact thanks to the named-port signature
//!   in the identity, see [`crate::identity`]).
//! * region `R` allowed by an ipBlock peer: the numeric ports; for ingress
//!   also the named ports resolved on `ep`.
//! * Egress named ports towards destinations that are not matched by a
//!   selector (`to` empty, or an ipBlock): named ports only exist on pods,
//!   so they can only ever match pod destinations; they are resolved per
//!   destination identity:
//!   - `to` empty: every identity `X` serving the name gets `(X, port)`.
//!     Exact: every pod is a destination of the rule.
//!   - ipBlock: identity `X` gets `(X, port)` only if *every* address of
//!     every pod of `X` lies in one of the rule's blocks. The datapath cannot
//!     express "identity X and inside the block" (its lookups are ORed), so
//!     when some pod of `X` is outside, no entry is written: conservative,
//!     never over-allowing (a pod inside the block may then be denied on
//!     that named port). Non-pod addresses never match a named port.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use palisade_common::{IDENTITY_ANY, direction};

use crate::cidr::Regions;
use crate::identity::{Identities, IdentityKey};
use crate::idset::IdSet;
use crate::model::{
    NamedPorts, PeerSelector, Peers, PodObj, PolicyObj, Rule, default_namespace_labels,
    resolve_named,
};
use crate::ports::{CLASSES, PortSet};
use crate::selector::Labels;
use crate::state::PodRef;

/// What one rule of a policy currently matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RuleState {
    /// Pod identities matched by a selector peer.
    pub(crate) pod_ids: IdSet,
    /// Regions allowed by an ipBlock peer.
    pub(crate) regions: IdSet,
    /// Egress named-port rules with ipBlocks: identities whose every
    /// address is inside the rule's blocks.
    pub(crate) named_block_ids: IdSet,
}

/// Which of a [`RuleState`]'s sets an update concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SetKind {
    PodIds,
    Regions,
    NamedBlocks,
}

impl RuleState {
    pub(crate) fn set_mut(&mut self, kind: SetKind) -> &mut IdSet {
        match kind {
            SetKind::PodIds => &mut self.pod_ids,
            SetKind::Regions => &mut self.regions,
            SetKind::NamedBlocks => &mut self.named_block_ids,
        }
    }
}

/// A live pod as the engine keeps it.
#[derive(Clone, Debug)]
pub(crate) struct PodState {
    pub(crate) obj: PodObj,
    /// Set iff the pod is live (has addresses in the ipcache).
    pub(crate) identity: Option<u32>,
}

/// A valid policy as the engine keeps it.
#[derive(Clone, Debug)]
pub(crate) struct PolicyState {
    pub(crate) namespace: String,
    pub(crate) obj: Arc<PolicyObj>,
    /// Local endpoints the policy selects.
    pub(crate) selected: BTreeSet<PodRef>,
    /// Per direction, per rule (empty until materialised).
    pub(crate) rules: [Vec<RuleState>; 2],
    pub(crate) materialized: bool,
}

/// Read-only view of the cluster used for matching.
pub(crate) struct World<'a> {
    pub(crate) namespaces: &'a BTreeMap<String, Arc<Labels>>,
    pub(crate) identities: &'a Identities,
    pub(crate) regions: &'a Regions,
    pub(crate) pods: &'a BTreeMap<PodRef, PodState>,
}

impl World<'_> {
    /// Effective labels of a namespace (defaults if the object is unknown).
    pub(crate) fn ns_labels(&self, ns: &str) -> Cow<'_, Labels> {
        match self.namespaces.get(ns) {
            Some(l) => Cow::Borrowed(l.as_ref()),
            None => Cow::Owned(default_namespace_labels(ns)),
        }
    }

    /// Whether a selector peer of `rule` (of a policy in `policy_ns`)
    /// matches pods with identity `key`.
    pub(crate) fn selector_matches(&self, policy_ns: &str, rule: &Rule, key: &IdentityKey) -> bool {
        let Peers::Listed { selectors, .. } = &rule.peers else {
            return false;
        };
        selectors
            .iter()
            .any(|s| self.peer_selector_matches(policy_ns, s, key))
    }

    /// Whether one selector peer (of a policy in `policy_ns`) matches pods
    /// with identity `key`.
    pub(crate) fn peer_selector_matches(
        &self,
        policy_ns: &str,
        s: &PeerSelector,
        key: &IdentityKey,
    ) -> bool {
        let ns_ok = match &s.namespaces {
            None => key.namespace == policy_ns,
            Some(nsel) => nsel.matches(&self.ns_labels(&key.namespace)),
        };
        ns_ok && s.pods.matches(&key.labels)
    }

    /// Whether identity `id` belongs to `named_block_ids` of `rule`: it
    /// serves one of the rule's names and every address of every pod of it
    /// is inside one of the rule's blocks.
    pub(crate) fn named_block_matches(&self, rule: &Rule, id: u32) -> bool {
        let Some(ident) = self.identities.by_id.get(&id) else {
            return false;
        };
        if ident.members.is_empty() || !self.identities.serves_any(id, &rule.ports.named) {
            return false;
        }
        ident.members.iter().all(|m| {
            self.pods.get(m).is_some_and(|p| {
                p.obj
                    .ips
                    .iter()
                    .all(|a| rule.blocks().any(|b| b.contains_addr(a)))
            })
        })
    }

    /// Computes what `rule` matches from scratch.
    pub(crate) fn materialize(&self, policy_ns: &str, rule: &Rule, dir: usize) -> RuleState {
        let mut st = RuleState::default();
        if let Peers::Listed { selectors, blocks } = &rule.peers {
            let mut pods = Vec::new();
            for s in selectors {
                let mut consider = |ids: &IdSet| {
                    for id in ids.iter() {
                        if let Some(i) = self.identities.by_id.get(&id)
                            && s.pods.matches(&i.key.labels)
                        {
                            pods.push(id);
                        }
                    }
                };
                match &s.namespaces {
                    None => {
                        if let Some(ids) = self.identities.by_ns.get(policy_ns) {
                            consider(ids);
                        }
                    }
                    Some(nsel) => {
                        for (ns, ids) in &self.identities.by_ns {
                            if nsel.matches(&self.ns_labels(ns)) {
                                consider(ids);
                            }
                        }
                    }
                }
            }
            st.pod_ids = pods.into_iter().collect();
            st.regions = blocks
                .iter()
                .flat_map(|b| {
                    self.regions
                        .within(b.cidr)
                        .filter(|(n, _)| b.allows_region(n))
                })
                .map(|(_, id)| id)
                .collect();
        }
        if rule.is_named_block_rule(dir) {
            let candidates: BTreeSet<u32> = rule
                .ports
                .named
                .iter()
                .filter_map(|k| self.identities.by_named_port.get(k))
                .flat_map(|s| s.iter())
                .collect();
            st.named_block_ids = candidates
                .into_iter()
                .filter(|&id| self.named_block_matches(rule, id))
                .collect();
        }
        st
    }
}

/// The identities whose entries a rule contributes to: what must be
/// recomputed when the rule appears or disappears.
pub(crate) fn rule_ids(
    rule: &Rule,
    st: &RuleState,
    dir: usize,
    identities: &Identities,
    out: &mut Vec<u32>,
) {
    if rule.peers == Peers::All {
        out.push(IDENTITY_ANY);
        if dir == direction::EGRESS as usize {
            for k in &rule.ports.named {
                if let Some(s) = identities.by_named_port.get(k) {
                    out.extend(s.iter());
                }
            }
        }
    }
    out.extend(st.pod_ids.iter());
    out.extend(st.regions.iter());
    out.extend(st.named_block_ids.iter());
}

/// Which cells of an endpoint's row need recomputing.
#[derive(Clone, Debug, Default)]
pub(crate) struct RowDirt {
    /// Every cell.
    pub(crate) full: bool,
    /// Per direction: the peer identities whose entries may change.
    pub(crate) cells: [BTreeSet<u32>; 2],
}

/// Entries of one endpoint: `(peer identity, direction, class) → ports`.
pub(crate) type Row = BTreeMap<(u32, u8, u8), PortSet>;

fn each_in(set: &IdSet, cells: Option<&BTreeSet<u32>>, mut f: impl FnMut(u32)) {
    match cells {
        None => set.iter().for_each(f),
        Some(c) if c.len() < set.len() => {
            for &id in c {
                if set.contains(id) {
                    f(id);
                }
            }
        }
        Some(c) => {
            for id in set.iter() {
                if c.contains(&id) {
                    f(id);
                }
            }
        }
    }
}

fn add_numeric(row: &mut Row, id: u32, dir: u8, rule: &Rule) {
    for (i, class) in CLASSES.iter().enumerate() {
        let ports = &rule.ports.numeric[i];
        if !ports.is_empty() {
            row.entry((id, dir, *class)).or_default().union_with(ports);
        }
    }
}

fn add_named(row: &mut Row, id: u32, dir: u8, names: &[(String, u8)], on: &NamedPorts) {
    for (name, class) in names {
        for p in resolve_named(on, name, *class) {
            row.entry((id, dir, *class)).or_default().insert(p, p);
        }
    }
}

/// Computes the entries of endpoint `ep` (a local pod) for the cells of
/// `filter` (all cells if `None` or full), from the rules of `policies`, the
/// policies selecting the endpoint.
pub(crate) fn compute_row(
    ep: &PodObj,
    policies: &[&PolicyState],
    identities: &Identities,
    filter: Option<&RowDirt>,
) -> Row {
    let mut row = Row::new();
    let filter = filter.filter(|f| !f.full);
    for pol in policies {
        for (dir, rules) in pol.obj.rules.iter().enumerate() {
            let Some(rules) = rules else { continue };
            let d = dir as u8;
            let cells = filter.map(|f| &f.cells[dir]);
            let wants = |id: u32| cells.is_none_or(|c| c.contains(&id));
            for (ri, rule) in rules.iter().enumerate() {
                let Some(st) = pol.rules[dir].get(ri) else {
                    continue;
                };
                let ingress = dir == direction::INGRESS as usize;
                if rule.peers == Peers::All && wants(IDENTITY_ANY) {
                    add_numeric(&mut row, IDENTITY_ANY, d, rule);
                    if ingress {
                        add_named(
                            &mut row,
                            IDENTITY_ANY,
                            d,
                            &rule.ports.named,
                            &ep.named_ports,
                        );
                    }
                }
                each_in(&st.pod_ids, cells, |id| {
                    add_numeric(&mut row, id, d, rule);
                    let on = if ingress {
                        Some(&ep.named_ports)
                    } else {
                        identities.by_id.get(&id).map(|i| &i.key.named_ports)
                    };
                    if let Some(on) = on {
                        add_named(&mut row, id, d, &rule.ports.named, on);
                    }
                });
                each_in(&st.regions, cells, |id| {
                    add_numeric(&mut row, id, d, rule);
                    if ingress {
                        add_named(&mut row, id, d, &rule.ports.named, &ep.named_ports);
                    }
                });
                if !ingress && !rule.ports.named.is_empty() {
                    let mut named_on_peer = |id: u32| {
                        if let Some(i) = identities.by_id.get(&id) {
                            add_named(&mut row, id, d, &rule.ports.named, &i.key.named_ports);
                        }
                    };
                    each_in(&st.named_block_ids, cells, &mut named_on_peer);
                    if rule.peers == Peers::All {
                        for k in &rule.ports.named {
                            if let Some(s) = identities.by_named_port.get(k) {
                                each_in(s, cells, &mut named_on_peer);
                            }
                        }
                    }
                }
            }
        }
    }
    row.retain(|_, p| !p.is_empty());
    row
}
