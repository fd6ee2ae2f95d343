//! The registry of local endpoints: each local pod's endpoint id (never 0,
//! stable while the pod keeps its UID, quarantined when freed like every
//! id, see `ids.rs`), the pod owning each id, and the valid policies of the
//! pod's namespace that select it (and the cluster policies whose subject
//! does). The engine decides which pods are endpoints and keeps `selecting`
//! and `tiers` in step with the policies.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::ids::Numbers;
use crate::model::PolicyRef;
use crate::state::PodRef;

/// A local endpoint.
#[derive(Clone, Debug)]
pub(crate) struct EpState {
    pub(crate) ep_id: u32,
    pub(crate) uid: Option<String>,
    /// Valid policies of the pod's namespace whose podSelector selects it.
    pub(crate) selecting: BTreeSet<PolicyRef>,
    /// The ClusterNetworkPolicies whose subject selects the pod.
    pub(crate) tiers: BTreeSet<PolicyRef>,
}

/// Local endpoints by pod and by id.
#[derive(Debug)]
pub(crate) struct Endpoints {
    by_pod: BTreeMap<PodRef, EpState>,
    owner: HashMap<u32, PodRef>,
    /// Keyed by the pod's life: its name and UID.
    pub(crate) ids: Numbers<(PodRef, Option<String>)>,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            by_pod: BTreeMap::new(),
            owner: HashMap::new(),
            ids: Numbers::new(1, u32::MAX),
        }
    }
}

impl Endpoints {
    /// The endpoint of `pod`.
    pub(crate) fn get(&self, pod: &PodRef) -> Option<&EpState> {
        self.by_pod.get(pod)
    }

    pub(crate) fn get_mut(&mut self, pod: &PodRef) -> Option<&mut EpState> {
        self.by_pod.get_mut(pod)
    }

    pub(crate) fn contains(&self, pod: &PodRef) -> bool {
        self.by_pod.contains_key(pod)
    }

    /// Every endpoint, by pod.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&PodRef, &EpState)> {
        self.by_pod.iter()
    }

    /// The pod whose endpoint has id `ep_id`.
    pub(crate) fn owner(&self, ep_id: u32) -> Option<&PodRef> {
        self.owner.get(&ep_id)
    }

    /// Makes `pod` an endpoint with a new id; `None` (and no endpoint) if
    /// no id is left.
    pub(crate) fn add(
        &mut self,
        pod: &PodRef,
        uid: Option<String>,
        selecting: BTreeSet<PolicyRef>,
    ) -> Option<u32> {
        let ep_id = self.ids.number_with(|| (pod.clone(), uid.clone()))?;
        self.by_pod.insert(
            pod.clone(),
            EpState {
                ep_id,
                uid,
                selecting,
                tiers: BTreeSet::new(),
            },
        );
        self.owner.insert(ep_id, pod.clone());
        Some(ep_id)
    }

    /// Removes `pod`'s endpoint; its id becomes reusable after
    /// [`Endpoints::flush`].
    pub(crate) fn remove(&mut self, pod: &PodRef) -> Option<EpState> {
        let ep = self.by_pod.remove(pod)?;
        self.owner.remove(&ep.ep_id);
        self.ids.release_later(ep.ep_id);
        Some(ep)
    }

    /// Makes removed ids reusable.
    pub(crate) fn flush(&mut self) {
        self.ids.flush();
    }
}
