//! The store of valid policies ([`PolicyState`] by name; ClusterNetworkPolicies
//! too, under cluster-scoped names, see `cluster.rs`) and its indexes:
//! policies by namespace, those whose rules can match pods of other
//! namespaces, those with ipBlock peers, those with egress rules combining
//! ipBlocks and named ports, those not materialised yet, and the distinct
//! namespaceSelectors with the rules using them. Inserting or removing a
//! policy keeps every index in step.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::{Peers, PolicyObj, PolicyRef};
use crate::rules::PolicyState;
use crate::selector::{Labels, Selector};

/// A rule of a policy: `(policy, direction, index in the direction)`.
pub(crate) type RuleRef = (PolicyRef, usize, usize);

/// Valid policies and their indexes.
#[derive(Debug, Default)]
pub(crate) struct Policies {
    by_ref: BTreeMap<PolicyRef, PolicyState>,
    by_ns: BTreeMap<String, BTreeSet<PolicyRef>>,
    /// Policies with rules that can match pods of other namespaces.
    cross_ns: BTreeSet<PolicyRef>,
    /// Policies with ipBlock peers.
    with_blocks: BTreeSet<PolicyRef>,
    /// Policies with egress rules combining ipBlocks and named ports.
    named_blocks: BTreeSet<PolicyRef>,
    /// Policies not materialised yet.
    stale: BTreeSet<PolicyRef>,
    /// Distinct namespaceSelectors → the rules using them, so a namespace
    /// relabel evaluates each selector once.
    ns_selectors: HashMap<Selector, BTreeSet<RuleRef>>,
}

impl Policies {
    pub(crate) fn get(&self, key: &PolicyRef) -> Option<&PolicyState> {
        self.by_ref.get(key)
    }

    pub(crate) fn get_mut(&mut self, key: &PolicyRef) -> Option<&mut PolicyState> {
        self.by_ref.get_mut(key)
    }

    /// Every policy, by name.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&PolicyRef, &PolicyState)> {
        self.by_ref.iter()
    }

    /// The number of NetworkPolicies (cluster policies not counted).
    pub(crate) fn len(&self) -> usize {
        self.by_ns.values().map(BTreeSet::len).sum()
    }

    /// The policies of namespace `ns`.
    pub(crate) fn of_namespace(&self, ns: &str) -> Option<&BTreeSet<PolicyRef>> {
        self.by_ns.get(ns)
    }

    /// The namespaces that have policies.
    pub(crate) fn namespaces(&self) -> impl Iterator<Item = &String> {
        self.by_ns.keys()
    }

    /// Materialised policies among `refs`.
    pub(crate) fn live<'a>(
        &'a self,
        refs: impl Iterator<Item = &'a PolicyRef>,
    ) -> impl Iterator<Item = (&'a PolicyRef, &'a PolicyState)> {
        refs.filter_map(|r| {
            self.by_ref
                .get(r)
                .filter(|p| p.materialized)
                .map(|p| (r, p))
        })
    }

    /// Policies whose rules can match pods of namespace `ns`: those of the
    /// namespace and those with cross-namespace rules, each once.
    pub(crate) fn candidates_for_namespace<'a>(
        &'a self,
        ns: &str,
    ) -> impl Iterator<Item = &'a PolicyRef> {
        let own = self.by_ns.get(ns).into_iter().flatten();
        own.filter(|r| !self.cross_ns.contains(*r))
            .chain(self.cross_ns.iter())
    }

    /// Policies with ipBlock peers.
    pub(crate) fn with_blocks(&self) -> impl Iterator<Item = &PolicyRef> {
        self.with_blocks.iter()
    }

    /// Policies with egress rules combining ipBlocks and named ports.
    pub(crate) fn named_blocks(&self) -> impl Iterator<Item = &PolicyRef> {
        self.named_blocks.iter()
    }

    pub(crate) fn has_named_blocks(&self) -> bool {
        !self.named_blocks.is_empty()
    }

    /// The rules using a namespaceSelector that matches exactly one of the
    /// label sets `old` and `new`. A rule listed under two such selectors
    /// comes twice.
    pub(crate) fn ns_selector_users(&self, old: &Labels, new: &Labels) -> Vec<&RuleRef> {
        self.ns_selectors
            .iter()
            .filter(|(sel, _)| sel.matches(old) != sel.matches(new))
            .flat_map(|(_, users)| users.iter())
            .collect()
    }

    /// The policies of namespace `ns` whose podSelector matches `labels`.
    pub(crate) fn selecting(&self, ns: &str, labels: &Labels) -> BTreeSet<PolicyRef> {
        self.by_ns
            .get(ns)
            .into_iter()
            .flatten()
            .filter(|r| {
                self.by_ref
                    .get(*r)
                    .is_some_and(|p| p.obj.pod_selector.matches(labels))
            })
            .cloned()
            .collect()
    }

    /// Adds a policy (not materialised yet: it becomes stale).
    pub(crate) fn insert(&mut self, key: PolicyRef, pol: PolicyState) {
        // Cluster policies belong to no namespace.
        if !key.is_cluster() {
            self.by_ns
                .entry(key.namespace.clone())
                .or_default()
                .insert(key.clone());
        }
        self.index_ns_selectors(&key, &pol.obj, true);
        if pol.obj.cross_namespace() {
            self.cross_ns.insert(key.clone());
        }
        if pol.obj.has_blocks() {
            self.with_blocks.insert(key.clone());
        }
        if pol.obj.has_named_blocks() {
            self.named_blocks.insert(key.clone());
        }
        self.stale.insert(key.clone());
        self.by_ref.insert(key, pol);
    }

    /// Removes a policy from the store and every index.
    pub(crate) fn remove(&mut self, key: &PolicyRef) -> Option<PolicyState> {
        let old = self.by_ref.remove(key)?;
        if let Some(s) = self.by_ns.get_mut(&key.namespace) {
            s.remove(key);
            if s.is_empty() {
                self.by_ns.remove(&key.namespace);
            }
        }
        self.index_ns_selectors(key, &old.obj, false);
        self.cross_ns.remove(key);
        self.with_blocks.remove(key);
        self.named_blocks.remove(key);
        self.stale.remove(key);
        Some(old)
    }

    /// The policies not materialised yet; none is stale afterwards.
    pub(crate) fn take_stale(&mut self) -> BTreeSet<PolicyRef> {
        std::mem::take(&mut self.stale)
    }

    fn index_ns_selectors(&mut self, key: &PolicyRef, obj: &PolicyObj, add: bool) {
        for (dir, rules) in obj.rules.iter().enumerate() {
            for (ri, rule) in rules.iter().flatten().enumerate() {
                let Peers::Listed { selectors, .. } = &rule.peers else {
                    continue;
                };
                for sel in selectors.iter().filter_map(|s| s.namespaces.as_ref()) {
                    let user = (key.clone(), dir, ri);
                    if add {
                        self.ns_selectors
                            .entry(sel.clone())
                            .or_default()
                            .insert(user);
                    } else if let Some(users) = self.ns_selectors.get_mut(sel) {
                        users.remove(&user);
                        if users.is_empty() {
                            self.ns_selectors.remove(sel);
                        }
                    }
                }
            }
        }
    }
}
