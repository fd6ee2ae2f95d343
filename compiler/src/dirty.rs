//! What the next commit must recompute (the dirty sets), marked at the
//! finest useful grain: single addresses, single prefixes, endpoints, and
//! `(endpoint, direction, peer identity)` policy cells, or whole endpoint
//! rows. The engine marks; the commit (`commit.rs`) takes the sets.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::endpoints::Endpoints;
use crate::identity::Identities;
use crate::ipcache::Ipcache;
use crate::rules::{PolicyState, RowDirt, rule_ids};
use crate::state::PodRef;

/// What the next commit must recompute.
#[derive(Clone, Debug, Default)]
pub(crate) struct Dirty {
    pub(crate) ips: BTreeSet<IpAddr>,
    pub(crate) lpm: BTreeSet<IpNet>,
    pub(crate) endpoints: BTreeSet<PodRef>,
    pub(crate) rows: BTreeMap<u32, RowDirt>,
}

impl Dirty {
    /// The cells `(ep, dir, id)` for `ids` of every endpoint among
    /// `selected`.
    pub(crate) fn mark_cells(
        &mut self,
        eps: &Endpoints,
        selected: &BTreeSet<PodRef>,
        dir: usize,
        ids: &[u32],
    ) {
        if ids.is_empty() {
            return;
        }
        for pod in selected {
            if let Some(ep) = eps.get(pod) {
                let row = self.rows.entry(ep.ep_id).or_default();
                if !row.full {
                    row.cells[dir].extend(ids.iter().copied());
                }
            }
        }
    }

    /// Every cell of endpoint `ep_id`.
    pub(crate) fn mark_row(&mut self, ep_id: u32) {
        let row = self.rows.entry(ep_id).or_default();
        row.full = true;
        row.cells = Default::default();
    }

    /// Every endpoint of `ns` (all if `None`): entries and flags.
    pub(crate) fn mark_all(&mut self, eps: &Endpoints, ns: Option<&str>) {
        for (pod, ep) in eps.iter() {
            if ns.is_some_and(|n| pod.namespace != n) {
                continue;
            }
            self.mark_row(ep.ep_id);
            self.endpoints.insert(pod.clone());
        }
    }

    /// The LPM entry of `net` and the exact entries of the claimed
    /// addresses inside it (their region may change).
    pub(crate) fn mark_region(&mut self, ipcache: &Ipcache, net: IpNet) {
        self.ips.extend(ipcache.addresses_in(net));
        self.lpm.insert(net);
    }

    /// Every cell a (materialised) policy contributes to, for every
    /// endpoint it selects, and their flags.
    pub(crate) fn mark_policy(
        &mut self,
        eps: &Endpoints,
        identities: &Identities,
        pol: &PolicyState,
    ) {
        if pol.materialized {
            let mut ids = Vec::new();
            for (dir, rules) in pol.obj.rules.iter().enumerate() {
                ids.clear();
                for (ri, rule) in rules.iter().flatten().enumerate() {
                    if let Some(st) = pol.rules[dir].get(ri) {
                        rule_ids(rule, st, dir, identities, &mut ids);
                    }
                }
                ids.sort_unstable();
                ids.dedup();
                self.mark_cells(eps, &pol.selected, dir, &ids);
            }
        }
        self.endpoints.extend(pol.selected.iter().cloned());
    }
}
