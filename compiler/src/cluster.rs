//! ClusterNetworkPolicies in the engine: which local endpoints each one's
//! subject selects, the rank of every rule (the order in which a tier
//! consults them), the endpoint flags they set and the tier codes of an
//! endpoint's entries.
//!
//! A ClusterNetworkPolicy lives in the policy store (`policies.rs`) under
//! a cluster-scoped [`PolicyRef`] (empty namespace), with its rules in
//! NetworkPolicy shape, so that the machinery that keeps every rule's
//! matched identities and regions current (`membership.rs`, `rules.rs`)
//! serves both kinds; what only a ClusterNetworkPolicy has (tier,
//! priority, subject, actions) is kept here beside it. Endpoints keep the
//! cluster policies whose subject selects them in `EpState::tiers`, apart
//! from the NetworkPolicies of `selecting` (which isolate).
//!
//! # Nodes peers
//!
//! A `nodes` peer selects Node objects by label and matches "the IPs
//! present in the node.Status.Addresses field" of each. The shape of a
//! rule ([`shape_rule`]) adds every address of every node a `nodes`
//! selector of the rule selects to its blocks as a `/32` or `/128`, so a
//! nodes peer is compiled exactly as a `networks` peer of those prefixes:
//! each becomes a region (`cidr.rs`) in the ipcache's LPM maps, and this
//! node's own addresses, whose exact entries carry their region beside
//! `IDENTITY_HOST`, match it too (the node's exemption is for ingress
//! only, so pod → node egress is judged by these entries like any other
//! flow). [`Engine::set_node`] re-shapes every policy whose shape a node
//! change alters; the commit's ordering then applies to the change as to
//! any other policy edit.
//!
//! # Ranks
//!
//! A tier consults its policies by ascending `priority`, then (for equal
//! priorities, which the API leaves undefined) by ascending name, and the
//! rules of one policy in written order. A rule's rank is
//! `priority · 2^17 + position · 2^5 + index + 1`, where `position` is the
//! policy's place among the policies of its tier with the same priority
//! (so adding a policy renumbers only those) and `index` the rule's place
//! in its direction (at most 25). Ranks become `tier_code`s; Pass in the
//! Baseline tier leads to the default, allowed, so it is coded as Accept.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ipnet::IpNet;
use palisade_common::{IDENTITY_ANY, TierCodes, direction, endpoint_flags, tier_code};

use crate::engine::Engine;
use crate::error::Reason;
use crate::identity::Identities;
use crate::model::{
    Action, ClusterPolicyObj, IpBlock, NamedPorts, NodeObj, Peers, PodObj, PolicyObj, PolicyRef,
    Rule, Tier, TierRule, resolve_named,
};
use crate::ports::CLASSES;
use crate::rules::{PolicyState, RowDirt};
use crate::selector::Selector;
use crate::state::PodRef;
use crate::verdicts::PortCodes;

/// The tier codes of one endpoint's cells: `(peer identity, direction,
/// class) → codes`.
pub(crate) type TierRow = BTreeMap<(u32, u8, u8), PortCodes>;

/// Positions beyond this share the last one (their order among
/// themselves is then by action, see `tier_code`).
const MAX_POSITION: u32 = (1 << 12) - 1;

impl PolicyRef {
    /// The reference of a cluster-scoped policy.
    pub(crate) fn cluster(name: &str) -> PolicyRef {
        PolicyRef {
            namespace: String::new(),
            name: name.to_string(),
        }
    }

    /// Whether this is a ClusterNetworkPolicy.
    pub(crate) fn is_cluster(&self) -> bool {
        self.namespace.is_empty()
    }
}

/// The NetworkPolicy-shaped rule of a cluster policy rule: its `nodes`
/// peers become blocks of their nodes' addresses, after the `networks`
/// blocks (see the module documentation).
pub(crate) fn shape_rule(r: &TierRule, nodes: &BTreeMap<String, NodeObj>) -> Rule {
    let mut rule = r.rule.clone();
    if r.nodes.is_empty() {
        return rule;
    }
    if let Peers::Listed { blocks, .. } = &mut rule.peers {
        let mut seen: BTreeSet<IpNet> = blocks.iter().map(|b| b.cidr).collect();
        for sel in &r.nodes {
            for node in nodes.values().filter(|n| sel.matches(&n.labels)) {
                for addr in &node.addrs {
                    let cidr = IpNet::from(*addr);
                    if seen.insert(cidr) {
                        blocks.push(IpBlock {
                            cidr,
                            except: Vec::new(),
                        });
                    }
                }
            }
        }
    }
    rule
}

/// The NetworkPolicy-shaped rules of a cluster policy (for the shared
/// matching machinery), with the nodes `nodes` peers select: a direction
/// without rules is `None`.
pub(crate) fn shape(obj: &ClusterPolicyObj, nodes: &BTreeMap<String, NodeObj>) -> PolicyObj {
    let rules = |dir: usize| {
        let rs: Vec<_> = obj.rules[dir]
            .iter()
            .map(|r| shape_rule(r, nodes))
            .collect();
        (!rs.is_empty()).then_some(rs)
    };
    PolicyObj {
        pod_selector: Selector::everything(),
        rules: [
            rules(direction::INGRESS as usize),
            rules(direction::EGRESS as usize),
        ],
        audit: obj.audit,
    }
}

/// The position of every cluster policy among those of its tier with the
/// same priority (see the module documentation).
pub(crate) fn positions(cluster: &BTreeMap<String, Arc<ClusterPolicyObj>>) -> HashMap<&str, u32> {
    let mut next: HashMap<(Tier, u16), u32> = HashMap::new();
    // Names ascend in the map, so each group's positions follow them.
    cluster
        .iter()
        .map(|(name, p)| {
            let n = next.entry((p.tier, p.priority)).or_default();
            let pos = (*n).min(MAX_POSITION);
            *n += 1;
            (name.as_str(), pos)
        })
        .collect()
}

/// The rank of rule `index` of a policy (see the module documentation).
pub(crate) fn rank(priority: u16, position: u32, index: usize) -> u32 {
    ((priority as u32) << 17 | position << 5 | index as u32) + 1
}

/// The codes a rule puts on the ports it matches, in its tier's field.
pub(crate) fn rule_codes(tier: Tier, rank: u32, action: Action) -> TierCodes {
    let act = match (tier, action) {
        (_, Action::Accept) | (Tier::Baseline, Action::Pass) => tier_code::ACCEPT,
        (_, Action::Deny) => tier_code::DENY,
        (Tier::Admin, Action::Pass) => tier_code::PASS,
    };
    let code = tier_code::of(rank, act);
    match tier {
        Tier::Admin => TierCodes {
            admin: code,
            baseline: tier_code::NONE,
        },
        Tier::Baseline => TierCodes {
            admin: tier_code::NONE,
            baseline: code,
        },
    }
}

/// The `TIERED_*` flags of an endpoint selected by the cluster policies
/// `tiers`: a direction in which an enforced one has rules.
pub(crate) fn tier_flags<'a>(
    tiers: impl Iterator<Item = &'a PolicyRef>,
    cluster: &BTreeMap<String, Arc<ClusterPolicyObj>>,
) -> u32 {
    let mut flags = 0;
    for r in tiers {
        let Some(p) = cluster.get(&r.name).filter(|p| !p.audit) else {
            continue;
        };
        for dir in [direction::INGRESS, direction::EGRESS] {
            if !p.rules[dir as usize].is_empty() {
                flags |= endpoint_flags::tiered(dir);
            }
        }
    }
    flags
}

/// The `VIEW_TIERED_*` flags of an endpoint selected by the cluster
/// policies `tiers` whose NetworkPolicy flags are `np_flags`: a direction
/// in which some audited policy applies (an audited cluster policy with
/// rules there, or audited NetworkPolicies that isolate where enforced
/// ones do not: `VIEW_ISOLATED`) and some cluster policy, enforced or
/// audited, has rules (see `endpoint_flags::VIEW_TIERED_INGRESS`).
pub(crate) fn view_tier_flags<'a>(
    tiers: impl Iterator<Item = &'a PolicyRef>,
    cluster: &BTreeMap<String, Arc<ClusterPolicyObj>>,
    np_flags: u32,
) -> u32 {
    let (mut tiered, mut audited) = (0u32, 0u32);
    for r in tiers {
        let Some(p) = cluster.get(&r.name) else {
            continue;
        };
        for dir in [direction::INGRESS, direction::EGRESS] {
            if !p.rules[dir as usize].is_empty() {
                tiered |= endpoint_flags::view_tiered(dir);
                if p.audit {
                    audited |= endpoint_flags::view_tiered(dir);
                }
            }
        }
    }
    for dir in [direction::INGRESS, direction::EGRESS] {
        if np_flags & endpoint_flags::view_isolated(dir) != 0 {
            audited |= endpoint_flags::view_tiered(dir);
        }
    }
    tiered & audited
}

fn raise_numeric(row: &mut TierRow, id: u32, dir: u8, rule: &TierRule, codes: TierCodes) {
    for (i, class) in CLASSES.iter().enumerate() {
        for &(lo, hi) in rule.rule.ports.numeric[i].ranges() {
            row.entry((id, dir, *class))
                .or_default()
                .raise(lo, hi, codes);
        }
    }
}

fn raise_named(
    row: &mut TierRow,
    id: u32,
    dir: u8,
    rule: &TierRule,
    on: &NamedPorts,
    codes: TierCodes,
) {
    for (name, class) in &rule.rule.ports.named {
        for p in resolve_named(on, name, *class) {
            row.entry((id, dir, *class)).or_default().raise(p, p, codes);
        }
    }
}

/// Computes the tier codes of endpoint `ep` (a local pod) for the cells
/// of `filter` (all if `None` or full), from the cluster policies among
/// `tiers` (materialised ones; `positions` from [`positions`]): the
/// enforced ones, and with `with_audited` the audited ones too (the audit
/// view's codes).
pub(crate) fn compute_tier_row(
    ep: &PodObj,
    tiers: &[(&PolicyState, &ClusterPolicyObj)],
    positions: &HashMap<&str, u32>,
    names: &[&str],
    identities: &Identities,
    filter: Option<&RowDirt>,
    with_audited: bool,
) -> TierRow {
    let mut row = TierRow::new();
    let filter = filter.filter(|f| !f.full);
    for (i, (st, obj)) in tiers.iter().enumerate() {
        if (obj.audit && !with_audited) || !st.materialized {
            continue;
        }
        let position = positions.get(names[i]).copied().unwrap_or(MAX_POSITION);
        for (dir, rules) in obj.rules.iter().enumerate() {
            let d = dir as u8;
            let ingress = dir == direction::INGRESS as usize;
            let cells = filter.map(|f| &f.cells[dir]);
            let wants = |id: u32| cells.is_none_or(|c| c.contains(&id));
            for (ri, rule) in rules.iter().enumerate() {
                let Some(rs) = st.rules[dir].get(ri) else {
                    continue;
                };
                let codes = rule_codes(obj.tier, rank(obj.priority, position, ri), rule.action);
                if rule.rule.peers == Peers::All {
                    if wants(IDENTITY_ANY) {
                        raise_numeric(&mut row, IDENTITY_ANY, d, rule, codes);
                        if ingress {
                            raise_named(&mut row, IDENTITY_ANY, d, rule, &ep.named_ports, codes);
                        }
                    }
                    if !ingress {
                        for k in &rule.rule.ports.named {
                            for id in identities
                                .by_named_port
                                .get(k)
                                .into_iter()
                                .flat_map(|s| s.iter())
                            {
                                if let (true, Some(ident)) = (wants(id), identities.by_id.get(&id))
                                {
                                    raise_named(
                                        &mut row,
                                        id,
                                        d,
                                        rule,
                                        &ident.key.named_ports,
                                        codes,
                                    );
                                }
                            }
                        }
                    }
                }
                for id in rs.pod_ids.iter().filter(|&id| wants(id)) {
                    raise_numeric(&mut row, id, d, rule, codes);
                    let on = if ingress {
                        Some(ep.named_ports.as_ref())
                    } else {
                        identities
                            .by_id
                            .get(&id)
                            .map(|i| i.key.named_ports.as_ref())
                    };
                    if let Some(on) = on {
                        raise_named(&mut row, id, d, rule, on, codes);
                    }
                }
                for id in rs.regions.iter().filter(|&id| wants(id)) {
                    // Named ports never come with networks (validation).
                    raise_numeric(&mut row, id, d, rule, codes);
                }
            }
        }
    }
    row.retain(|_, c| !c.is_none());
    row
}

impl Engine {
    /// The cluster policies whose subject selects local pod `key`.
    pub(crate) fn cluster_selecting(&self, key: &PodRef) -> BTreeSet<PolicyRef> {
        let Some(pod) = self.pods.get(key) else {
            return BTreeSet::new();
        };
        let ns = self.world().ns_labels(&key.namespace).into_owned();
        self.cluster_policies
            .iter()
            .filter(|(_, p)| p.subject.matches(&ns, &pod.obj.labels))
            .map(|(name, _)| PolicyRef::cluster(name))
            .collect()
    }

    /// Brings the cluster side of endpoint `key` up to date with its
    /// labels and its namespace's; marks what changes.
    pub(crate) fn reselect_cluster(&mut self, key: &PodRef) {
        let now = self.cluster_selecting(key);
        let Some(ep) = self.eps.get_mut(key) else {
            return;
        };
        if ep.tiers == now {
            return;
        }
        let before = std::mem::replace(&mut ep.tiers, now.clone());
        let ep_id = ep.ep_id;
        for r in before.difference(&now) {
            if let Some(p) = self.policies.get_mut(r) {
                p.selected.remove(key);
            }
        }
        for r in now.difference(&before) {
            if let Some(p) = self.policies.get_mut(r) {
                p.selected.insert(key.clone());
            }
        }
        self.dirty.mark_row(ep_id);
        self.dirty.endpoints.insert(key.clone());
    }

    /// Every local endpoint's rows whose codes depend on the position of
    /// a policy of `tier` with `priority`.
    fn mark_peers_of(&mut self, tier: Tier, priority: u16) {
        let peers: Vec<PolicyRef> = self
            .cluster_policies
            .iter()
            .filter(|(_, p)| p.tier == tier && p.priority == priority)
            .map(|(n, _)| PolicyRef::cluster(n))
            .collect();
        for r in peers {
            let selected: Vec<PodRef> = self
                .policies
                .get(&r)
                .map(|p| p.selected.iter().cloned().collect())
                .unwrap_or_default();
            for pod in selected {
                if let Some(ep) = self.eps.get(&pod) {
                    self.dirty.mark_row(ep.ep_id);
                }
            }
        }
    }

    /// Sets (or with `None` removes) a ClusterNetworkPolicy. Fails only if
    /// a new prefix cannot get an identity; the previous version then
    /// stays.
    pub(crate) fn set_cluster_policy(
        &mut self,
        name: String,
        new: Option<ClusterPolicyObj>,
    ) -> Result<(), Reason> {
        if let (Some(o), Some(n)) = (self.cluster_policies.get(&name), &new)
            && **o == *n
        {
            return Ok(());
        }
        self.put_cluster_policy(name, new)
    }

    /// Sets (or with `None` removes) a Node: re-shapes every cluster
    /// policy whose `nodes` peers now match other addresses. Fails only
    /// if a new address cannot get a region identity; the previous
    /// version of the node then stays, for every policy.
    pub(crate) fn set_node(&mut self, name: &str, new: Option<NodeObj>) -> Result<(), Reason> {
        let old = self.nodes.get(name).cloned();
        if old == new {
            return Ok(());
        }
        let put = |nodes: &mut BTreeMap<String, NodeObj>, n: Option<NodeObj>| match n {
            Some(n) => {
                nodes.insert(name.to_string(), n);
            }
            None => {
                nodes.remove(name);
            }
        };
        put(&mut self.nodes, new);
        let affected: Vec<String> = self
            .cluster_policies
            .iter()
            .filter(|(_, p)| p.has_nodes())
            .map(|(n, _)| n.clone())
            .collect();
        let mut done = Vec::new();
        for pname in affected {
            let Some(obj) = self.cluster_policies.get(&pname).cloned() else {
                continue;
            };
            let shaped = shape(&obj, &self.nodes);
            let current = self.policies.get(&PolicyRef::cluster(&pname));
            if current.is_some_and(|st| *st.obj == shaped) {
                continue;
            }
            if let Err(e) = self.put_cluster_policy(pname.clone(), Some((*obj).clone())) {
                // Back to the old node everywhere: the prefixes just
                // released are still registered, so acquiring them again
                // cannot fail.
                put(&mut self.nodes, old);
                for d in done {
                    if let Some(obj) = self.cluster_policies.get(&d).cloned() {
                        let _ = self.put_cluster_policy(d, Some((*obj).clone()));
                    }
                }
                return Err(e);
            }
            done.push(pname);
        }
        Ok(())
    }

    /// Sets (or with `None` removes) a ClusterNetworkPolicy, shaped with
    /// the current nodes, even if it is unchanged.
    fn put_cluster_policy(
        &mut self,
        name: String,
        new: Option<ClusterPolicyObj>,
    ) -> Result<(), Reason> {
        let key = PolicyRef::cluster(&name);
        let old = self.cluster_policies.get(&name).cloned();
        // A new version with the same tier, priority and subject selects
        // the same endpoints and leaves every rank as it was: only the
        // cells its old and new rules match can change (marked by
        // `mark_policy` here and when the new version is materialised),
        // not whole rows, and no other policy's codes.
        let in_place = matches!((&old, &new), (Some(o), Some(n))
            if o.tier == n.tier && o.priority == n.priority && o.subject == n.subject);
        let shaped = new.as_ref().map(|n| shape(n, &self.nodes));
        let new_prefixes = shaped.as_ref().map(|s| s.prefixes()).unwrap_or_default();
        self.acquire_prefixes(&new_prefixes)?;
        if let Some(o) = &old
            && !in_place
        {
            self.mark_peers_of(o.tier, o.priority);
        }
        if let Some(state) = self.policies.remove(&key) {
            self.dirty.mark_policy(&self.eps, &self.identities, &state);
            for pod in &state.selected {
                if let Some(ep) = self.eps.get_mut(pod) {
                    ep.tiers.remove(&key);
                    let ep_id = ep.ep_id;
                    if !in_place {
                        self.dirty.mark_row(ep_id);
                    }
                }
            }
            for net in state.obj.prefixes() {
                self.ipcache.regions.release(&net);
            }
        }
        self.cluster_policies.remove(&name);
        let (Some(obj), Some(shaped)) = (new, shaped) else {
            return Ok(());
        };
        let subject = obj.subject.clone();
        let (tier, priority) = (obj.tier, obj.priority);
        self.cluster_policies.insert(name, Arc::new(obj));
        let world = self.world();
        let selected: BTreeSet<PodRef> = self
            .eps
            .iter()
            .map(|(p, _)| p)
            .filter(|p| {
                self.pods
                    .get(*p)
                    .is_some_and(|s| subject.matches(&world.ns_labels(&p.namespace), &s.obj.labels))
            })
            .cloned()
            .collect();
        for pod in &selected {
            if let Some(ep) = self.eps.get_mut(pod) {
                ep.tiers.insert(key.clone());
                let ep_id = ep.ep_id;
                if !in_place {
                    self.dirty.mark_row(ep_id);
                }
            }
        }
        self.dirty.endpoints.extend(selected.iter().cloned());
        self.policies.insert(
            key.clone(),
            PolicyState {
                namespace: String::new(),
                obj: Arc::new(shaped),
                selected,
                rules: [Vec::new(), Vec::new()],
                materialized: false,
            },
        );
        if !in_place {
            self.mark_peers_of(tier, priority);
        }
        Ok(())
    }
}

/// A ClusterNetworkPolicy rule as reports name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierRuleName {
    /// The policy's name.
    pub policy: String,
    /// `admin` or `baseline`.
    pub tier: &'static str,
    /// The policy's priority.
    pub priority: u16,
    /// [`palisade_common::direction`] of the rule.
    pub direction: u8,
    /// The rule's place in its direction.
    pub index: usize,
    /// The rule's `name`, if any.
    pub name: Option<String>,
    /// `Accept`, `Deny` or `Pass`.
    pub action: &'static str,
    /// The rule's `tier_code` (what the datapath reports).
    pub code: u32,
    /// The policy is in audit mode (its rules are only reported).
    pub audit: bool,
}

impl std::fmt::Display for TierRuleName {
    /// `ClusterNetworkPolicy admin/deny-metadata egress[0] "imds" (priority 10, Deny)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClusterNetworkPolicy {}/{} {}[{}]",
            self.tier,
            self.policy,
            direction::as_str(self.direction),
            self.index
        )?;
        if let Some(n) = &self.name {
            write!(f, " {n:?}")?;
        }
        write!(f, " (priority {}, {}", self.priority, self.action)?;
        if self.audit {
            f.write_str(", audit mode")?;
        }
        f.write_str(")")
    }
}

/// How reports name rule `index` of direction `dir` of policy `name`, at
/// `position` among its tier's policies of the same priority.
pub(crate) fn rule_name(
    name: &str,
    p: &ClusterPolicyObj,
    position: u32,
    dir: u8,
    index: usize,
) -> TierRuleName {
    let r = &p.rules[dir as usize][index];
    let codes = rule_codes(p.tier, rank(p.priority, position, index), r.action);
    TierRuleName {
        policy: name.to_string(),
        tier: p.tier.as_str(),
        priority: p.priority,
        direction: dir,
        index,
        name: r.name.clone(),
        action: match r.action {
            Action::Accept => "Accept",
            Action::Deny => "Deny",
            Action::Pass => "Pass",
        },
        code: codes.admin.max(codes.baseline),
        audit: p.audit,
    }
}

/// The enforced cluster policies (with `with_audited`, the audited ones
/// too) of `tier` with rules in `dir` whose subject selects `pod`, in the
/// order the tier consults them, each with its position (see the module
/// documentation).
pub(crate) fn consulted<'a>(
    e: &'a Engine,
    tier: Tier,
    dir: u8,
    pod: &PodRef,
    with_audited: bool,
) -> Vec<(&'a str, &'a ClusterPolicyObj, u32)> {
    let selecting = e.cluster_selecting(pod);
    let positions = positions(&e.cluster_policies);
    let mut out: Vec<_> = e
        .cluster_policies
        .iter()
        .filter(|(name, p)| {
            p.tier == tier
                && (with_audited || !p.audit)
                && !p.rules[dir as usize].is_empty()
                && selecting.contains(&PolicyRef::cluster(name))
        })
        .map(|(name, p)| {
            let position = positions
                .get(name.as_str())
                .copied()
                .unwrap_or(MAX_POSITION);
            (name.as_str(), &**p, position)
        })
        .collect();
    out.sort_by_key(|(name, p, position)| (p.priority, *position, *name));
    out
}

/// Every cluster policy rule with its code, audited ones too (audit
/// events name them).
pub(crate) fn tier_rules(e: &Engine) -> Vec<TierRuleName> {
    let positions = positions(&e.cluster_policies);
    let mut out = Vec::new();
    for (name, p) in &e.cluster_policies {
        let position = positions
            .get(name.as_str())
            .copied()
            .unwrap_or(MAX_POSITION);
        for (dir, rules) in p.rules.iter().enumerate() {
            for i in 0..rules.len() {
                out.push(rule_name(name, p, position, dir as u8, i));
            }
        }
    }
    out
}
