//! The incremental engine: owns the cluster model (this node's name,
//! namespaces, pods, Nodes) and the registries derived from it — valid policies
//! (`policies.rs`), pod identities (`identity.rs`), address claims and
//! regions (`ipcache.rs`), local endpoints (`endpoints.rs`), the audit
//! scope (`audit.rs`) — and the record of what the next commit must
//! recompute (`dirty.rs`). Its setters (`set_namespace`, `set_pod`,
//! `set_policy`, `set_host_addresses`, `set_audit_all`) are the only
//! writers of the model (with `set_cluster_policy` and `set_node` of
//! `cluster.rs`); each updates the registries eagerly and marks the
//! affected outputs dirty. Which local endpoints each policy selects is
//! kept here, on both sides (`EpState::selecting`, `PolicyState::selected`).
//!
//! Rule sets follow created and swept identities and regions through
//! `membership.rs`. Policies are materialised (their rules matched against
//! every identity and region) lazily at commit ([`Engine::materialize_stale`]),
//! so a batch that applies many objects pays for each policy once.
//! [`crate::commit`] turns the dirty sets into map operations.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::dirty::Dirty;
use crate::endpoints::Endpoints;
use crate::error::Reason;
use crate::identity::{Identities, IdentityKey};
use crate::ipcache::Ipcache;
use crate::membership::{self, Update};
use crate::model::{
    ClusterPolicyObj, NamespaceObj, NodeObj, PodObj, PolicyObj, PolicyRef, default_namespace_labels,
};
use crate::policies::Policies;
use crate::rules::{PodState, PolicyState, RuleState, World};
use crate::selector::Labels;
use crate::state::PodRef;

/// The cluster model and its derived registries.
#[derive(Debug)]
pub(crate) struct Engine {
    pub(crate) node: String,
    pub(crate) namespaces: BTreeMap<String, Arc<Labels>>,
    pub(crate) pods: BTreeMap<PodRef, PodState>,
    pub(crate) policies: Policies,
    /// Valid ClusterNetworkPolicies by name.
    pub(crate) cluster_policies: BTreeMap<String, Arc<ClusterPolicyObj>>,
    /// Valid Nodes by name (what `nodes` peers select, see `cluster.rs`).
    pub(crate) nodes: BTreeMap<String, NodeObj>,
    pub(crate) identities: Identities,
    pub(crate) ipcache: Ipcache,
    pub(crate) eps: Endpoints,
    pub(crate) dirty: Dirty,
    /// Audit mode beyond single policies (see `audit.rs`).
    pub(crate) audit: crate::audit::AuditScope,
}

impl Engine {
    pub(crate) fn new(node: String) -> Self {
        Engine {
            node,
            namespaces: BTreeMap::new(),
            pods: BTreeMap::new(),
            policies: Policies::default(),
            cluster_policies: BTreeMap::new(),
            nodes: BTreeMap::new(),
            identities: Identities::default(),
            ipcache: Ipcache::default(),
            eps: Endpoints::default(),
            dirty: Dirty::default(),
            audit: Default::default(),
        }
    }

    pub(crate) fn world(&self) -> World<'_> {
        World {
            namespaces: &self.namespaces,
            identities: &self.identities,
            regions: &self.ipcache.regions,
            pods: &self.pods,
        }
    }

    fn apply_updates(&mut self, updates: Vec<Update>) {
        membership::apply(updates, &mut self.policies, &self.eps, &mut self.dirty);
    }

    // ----- namespaces -----------------------------------------------------

    /// Sets (or with `None` removes) a namespace: its labels, then its
    /// audit mode.
    pub(crate) fn set_namespace(&mut self, name: &str, ns: Option<NamespaceObj>) {
        let audit = ns.as_ref().is_some_and(|n| n.audit);
        self.set_namespace_labels(name, ns.map(|n| n.labels));
        self.set_namespace_audit(name, audit);
    }

    fn set_namespace_labels(&mut self, name: &str, labels: Option<Labels>) {
        let old = self
            .namespaces
            .get(name)
            .cloned()
            .unwrap_or_else(|| Arc::new(default_namespace_labels(name)));
        match labels {
            Some(l) => {
                self.namespaces.insert(name.to_string(), Arc::new(l));
            }
            None => {
                self.namespaces.remove(name);
            }
        }
        let new = self.world().ns_labels(name).into_owned();
        if *old == new {
            return;
        }
        // Subjects of cluster policies select by namespace labels.
        if !self.cluster_policies.is_empty() {
            let local: Vec<PodRef> = self
                .eps
                .iter()
                .map(|(p, _)| p)
                .filter(|p| p.namespace == name)
                .cloned()
                .collect();
            for pod in local {
                self.reselect_cluster(&pod);
            }
        }
        let Some(ids) = self.identities.by_ns.get(name) else {
            return;
        };
        let ids: Vec<u32> = ids.iter().collect();
        let updates =
            membership::namespace_relabelled(&self.policies, &self.world(), &old, &new, &ids);
        self.apply_updates(updates);
    }

    // ----- audit ----------------------------------------------------------

    /// Sets whether namespace `ns` is annotated for audit.
    fn set_namespace_audit(&mut self, ns: &str, on: bool) {
        let changed = if on {
            self.audit.namespaces.insert(ns.to_string())
        } else {
            self.audit.namespaces.remove(ns)
        };
        if changed {
            self.dirty.mark_all(&self.eps, Some(ns));
        }
    }

    /// Sets whether every endpoint audits.
    pub(crate) fn set_audit_all(&mut self, on: bool) {
        if self.audit.all != on {
            self.audit.all = on;
            self.dirty.mark_all(&self.eps, None);
        }
    }

    // ----- identities -----------------------------------------------------

    fn on_identity_created(&mut self, id: u32) {
        let updates = membership::identity_created(&self.policies, &self.world(), id);
        self.apply_updates(updates);
    }

    /// Called by the commit for every identity its sweep removed.
    pub(crate) fn on_identity_removed(&mut self, id: u32, key: &IdentityKey) {
        let updates = membership::identity_removed(&self.policies, id, key);
        self.apply_updates(updates);
    }

    /// Re-checks the ipBlock + named-port membership of identity `id`
    /// after its pods or their addresses changed.
    fn reeval_named_blocks(&mut self, id: u32) {
        let updates = membership::addresses_moved(&self.policies, &self.world(), id);
        self.apply_updates(updates);
    }

    // ----- regions --------------------------------------------------------

    fn region_updates(&mut self, net: IpNet, id: u32, insert: bool) {
        self.dirty.mark_region(&self.ipcache, net);
        let updates = membership::region_changed(&self.policies, net, id, insert);
        self.apply_updates(updates);
    }

    /// Called by the commit for every region its sweep removed.
    pub(crate) fn on_region_removed(&mut self, net: IpNet, id: u32) {
        self.region_updates(net, id, false);
    }

    // ----- host addresses -------------------------------------------------

    pub(crate) fn set_host_addresses(&mut self, addrs: BTreeSet<IpAddr>) {
        self.ipcache.set_host(addrs, &mut self.dirty.ips);
    }

    // ----- pods -----------------------------------------------------------

    /// Sets (or with `None` removes) a pod.
    pub(crate) fn set_pod(&mut self, key: PodRef, new: Option<PodObj>) {
        let old = self.pods.remove(&key);
        if let (Some(o), Some(n)) = (&old, &new)
            && o.obj == *n
        {
            self.pods.insert(key, o.clone());
            return;
        }
        let old_id = old.as_ref().and_then(|s| s.identity);
        let old_ips: Vec<IpAddr> = match (&old, old_id) {
            (Some(o), Some(_)) => o.obj.ips.clone(),
            _ => Vec::new(),
        };
        let new_key = new.as_ref().filter(|o| o.live()).map(|o| IdentityKey {
            namespace: key.namespace.clone(),
            labels: o.labels.clone(),
            named_ports: o.named_ports.clone(),
        });
        // No identity left: the pod is kept out of the ipcache and gets no
        // endpoint (fail closed).
        let (new_id, created) = self.identities.switch(&key, old_id, new_key);
        let new_ips: Vec<IpAddr> = match (&new, new_id) {
            (Some(n), Some(_)) => n.ips.clone(),
            _ => Vec::new(),
        };
        let addresses_changed = old_id != new_id || old_ips != new_ips;
        if addresses_changed {
            self.ipcache
                .move_pod(&key, &old_ips, &new_ips, &mut self.dirty.ips);
        }
        let old_obj = old.map(|s| s.obj);
        if let Some(mut obj) = new {
            // Pods of one identity share its label set and named ports
            // (equal by definition): one copy each, not one per pod.
            if let Some(ident) = new_id.and_then(|id| self.identities.by_id.get(&id)) {
                obj.labels = ident.key.labels.clone();
                obj.named_ports = ident.key.named_ports.clone();
            }
            self.pods.insert(
                key.clone(),
                PodState {
                    obj,
                    identity: new_id,
                },
            );
        }
        if let Some(id) = created {
            self.on_identity_created(id);
        }
        if addresses_changed && self.policies.has_named_blocks() {
            let ids: BTreeSet<u32> = [old_id, new_id].into_iter().flatten().collect();
            for id in ids {
                self.reeval_named_blocks(id);
            }
        }
        self.update_endpoint(&key, old_obj.as_ref());
    }

    fn update_endpoint(&mut self, key: &PodRef, old: Option<&PodObj>) {
        let pod = self.pods.get(key);
        let should = pod.is_some_and(|p| {
            p.identity.is_some() && p.obj.node.as_deref() == Some(self.node.as_str())
        });
        let uid = pod.and_then(|p| p.obj.uid.clone());
        if let Some(ep) = self.eps.get(key)
            && (!should || ep.uid != uid)
        {
            self.remove_endpoint(key);
        }
        if !should {
            return;
        }
        if !self.eps.contains(key) {
            self.add_endpoint(key, uid);
            return;
        }
        let (Some(pod), Some(old)) = (self.pods.get(key), old) else {
            return;
        };
        let relabelled = pod.obj.labels != old.labels;
        let reported = pod.obj.named_ports != old.named_ports;
        if relabelled {
            self.reselect(key);
            self.reselect_cluster(key);
        }
        if (relabelled || reported)
            && let Some(ep) = self.eps.get(key)
        {
            self.dirty.mark_row(ep.ep_id);
        }
        self.dirty.endpoints.insert(key.clone());
    }

    fn selecting_policies(&self, key: &PodRef) -> BTreeSet<PolicyRef> {
        let Some(pod) = self.pods.get(key) else {
            return BTreeSet::new();
        };
        self.policies.selecting(&key.namespace, &pod.obj.labels)
    }

    fn add_endpoint(&mut self, key: &PodRef, uid: Option<String>) {
        // No id left (never with 2^32 ids): no endpoint, so the agent has no
        // ENDPOINTS entry and the datapath fails closed.
        let selecting = self.selecting_policies(key);
        let Some(ep_id) = self.eps.add(key, uid, selecting) else {
            return;
        };
        if let Some(ep) = self.eps.get(key) {
            for r in &ep.selecting {
                if let Some(p) = self.policies.get_mut(r) {
                    p.selected.insert(key.clone());
                }
            }
        }
        self.reselect_cluster(key);
        self.dirty.mark_row(ep_id);
        self.dirty.endpoints.insert(key.clone());
    }

    fn remove_endpoint(&mut self, key: &PodRef) {
        let Some(ep) = self.eps.remove(key) else {
            return;
        };
        for r in ep.selecting.iter().chain(ep.tiers.iter()) {
            if let Some(p) = self.policies.get_mut(r) {
                p.selected.remove(key);
            }
        }
        self.dirty.mark_row(ep.ep_id);
        self.dirty.endpoints.insert(key.clone());
    }

    fn reselect(&mut self, key: &PodRef) {
        let now = self.selecting_policies(key);
        let Some(ep) = self.eps.get_mut(key) else {
            return;
        };
        let before = std::mem::replace(&mut ep.selecting, now.clone());
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
    }

    // ----- policies -------------------------------------------------------

    /// Sets (or with `None` removes) a policy. Fails only if a new prefix
    /// cannot get an identity; the previous version then stays.
    pub(crate) fn set_policy(
        &mut self,
        key: PolicyRef,
        new: Option<PolicyObj>,
    ) -> Result<(), Reason> {
        if let (Some(old), Some(n)) = (self.policies.get(&key), &new)
            && *old.obj == *n
        {
            return Ok(());
        }
        let new_prefixes = new.as_ref().map(|n| n.prefixes()).unwrap_or_default();
        self.acquire_prefixes(&new_prefixes)?;
        if let Some(old) = self.policies.remove(&key) {
            self.dirty.mark_policy(&self.eps, &self.identities, &old);
            for pod in &old.selected {
                if let Some(ep) = self.eps.get_mut(pod) {
                    ep.selecting.remove(&key);
                }
            }
            for net in old.obj.prefixes() {
                self.ipcache.regions.release(&net);
            }
        }
        let Some(obj) = new else { return Ok(()) };
        let selected: BTreeSet<PodRef> = self
            .eps
            .iter()
            .map(|(p, _)| p)
            .filter(|p| p.namespace == key.namespace)
            .filter(|p| {
                self.pods
                    .get(*p)
                    .is_some_and(|s| obj.pod_selector.matches(&s.obj.labels))
            })
            .cloned()
            .collect();
        for pod in &selected {
            if let Some(ep) = self.eps.get_mut(pod) {
                ep.selecting.insert(key.clone());
            }
        }
        self.dirty.endpoints.extend(selected.iter().cloned());
        self.policies.insert(
            key.clone(),
            PolicyState {
                namespace: key.namespace.clone(),
                obj: Arc::new(obj),
                selected,
                rules: [Vec::new(), Vec::new()],
                materialized: false,
            },
        );
        Ok(())
    }

    /// Acquires the regions of `prefixes` (before the caller releases the
    /// old ones, so shared prefixes keep their identity); acquires none if
    /// one cannot get an identity.
    pub(crate) fn acquire_prefixes(&mut self, prefixes: &BTreeSet<IpNet>) -> Result<(), Reason> {
        let mut acquired = Vec::new();
        for net in prefixes {
            match self.ipcache.regions.acquire(*net) {
                Some((id, created)) => {
                    acquired.push(*net);
                    if created {
                        self.region_updates(*net, id, true);
                    }
                }
                None => {
                    for a in &acquired {
                        self.ipcache.regions.release(a);
                    }
                    return Err(Reason::IdentitiesExhausted);
                }
            }
        }
        Ok(())
    }

    /// Materialises every stale policy (called by the commit after the
    /// sweeps) and marks the cells its rules contribute to.
    pub(crate) fn materialize_stale(&mut self) {
        let stale = self.policies.take_stale();
        for key in stale {
            let Some(pol) = self.policies.get(&key) else {
                continue;
            };
            let world = self.world();
            let mut rules: [Vec<RuleState>; 2] = [Vec::new(), Vec::new()];
            for (dir, rs) in pol.obj.rules.iter().enumerate() {
                for rule in rs.iter().flatten() {
                    rules[dir].push(world.materialize(&pol.namespace, rule, dir));
                }
            }
            let Some(pol) = self.policies.get_mut(&key) else {
                continue;
            };
            pol.rules = rules;
            pol.materialized = true;
            self.dirty.mark_policy(&self.eps, &self.identities, pol);
        }
    }
}
