//! The Kubernetes side of policy kinds Palisade does not enforce
//! ([`UnenforcedPolicy`]): AdminNetworkPolicy and
//! BaselineAdminNetworkPolicy (`policy.networking.k8s.io/v1alpha1`, which
//! ClusterNetworkPolicy replaced) and the policy CRDs of other
//! implementations ([`RESOURCES`]). Owns their metadata-only watchers.
//!
//! These objects are only reported (the agent logs each once, counts them
//! in `palisade_unenforced_policy_objects` and `explain` names them), so
//! their watchers never hold enforcement back: a resource that is not
//! served (its CRD not installed: the usual case) is rechecked every
//! [`RECHECK`] without a word; one the agent may not read (its role
//! trimmed) is said once at info and rechecked likewise. Their objects
//! reach the agent as upserts and deletes: a relist compares with what the
//! watcher reported before and deletes what is gone.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta};
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::kube::{forbidden, not_served};
use super::{Change, Object, UnenforcedPolicy};

/// A policy resource of another implementation: `(group, version,
/// plural, kind)`.
pub type PolicyResource = (&'static str, &'static str, &'static str, &'static str);

/// The policy kinds watched to be reported (not enforced).
pub const RESOURCES: [PolicyResource; 9] = [
    (
        "policy.networking.k8s.io",
        "v1alpha1",
        "adminnetworkpolicies",
        "AdminNetworkPolicy",
    ),
    (
        "policy.networking.k8s.io",
        "v1alpha1",
        "baselineadminnetworkpolicies",
        "BaselineAdminNetworkPolicy",
    ),
    (
        "cilium.io",
        "v2",
        "ciliumnetworkpolicies",
        "CiliumNetworkPolicy",
    ),
    (
        "cilium.io",
        "v2",
        "ciliumclusterwidenetworkpolicies",
        "CiliumClusterwideNetworkPolicy",
    ),
    (
        "crd.projectcalico.org",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
    ),
    (
        "crd.projectcalico.org",
        "v1",
        "globalnetworkpolicies",
        "GlobalNetworkPolicy",
    ),
    (
        "crd.antrea.io",
        "v1beta1",
        "networkpolicies",
        "NetworkPolicy",
    ),
    (
        "crd.antrea.io",
        "v1beta1",
        "clusternetworkpolicies",
        "ClusterNetworkPolicy",
    ),
    (
        "k8s.cni.cncf.io",
        "v1beta1",
        "multi-networkpolicies",
        "MultiNetworkPolicy",
    ),
];

/// How often a resource that is not served, or not readable, is tried
/// again; and the wait after any other failure.
pub const RECHECK: Duration = Duration::from_secs(30);

/// Starts one watcher per [`RESOURCES`] entry, listing and watching as
/// `config` says (the enforced kinds' paging, bookmarks and timeout); their
/// changes go to `tx`.
pub fn spawn(client: Client, config: watcher::Config, tx: mpsc::UnboundedSender<Change>) {
    for r in RESOURCES {
        tokio::spawn(watch(client.clone(), r, config.clone(), tx.clone()));
    }
}

fn report(r: PolicyResource, meta: &kube::api::ObjectMeta) -> UnenforcedPolicy {
    UnenforcedPolicy {
        api_version: format!("{}/{}", r.0, r.1),
        kind: r.3.to_string(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
    }
}

fn upsert(u: UnenforcedPolicy) -> Change {
    Change::Upsert(Object::Unenforced(Arc::new(u)))
}

fn delete(u: UnenforcedPolicy) -> Change {
    Change::Delete(Object::Unenforced(Arc::new(u)).key())
}

async fn watch(
    client: Client,
    r: PolicyResource,
    config: watcher::Config,
    tx: mpsc::UnboundedSender<Change>,
) {
    let (group, version, plural, kind) = r;
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &ar);
    // What this watcher has reported present.
    let mut known: BTreeSet<UnenforcedPolicy> = BTreeSet::new();
    let mut said_forbidden = false;
    loop {
        let mut events = watcher(api.clone(), config.clone()).boxed();
        let mut listing: Option<BTreeSet<UnenforcedPolicy>> = None;
        let failure = loop {
            let ev = match events.next().await {
                Some(Ok(ev)) => ev,
                Some(Err(e)) => break Some(e),
                None => break None,
            };
            let send = |c: Change| tx.send(c).is_ok();
            let ok = match ev {
                watcher::Event::Apply(o) => {
                    let u = report(r, &o.metadata);
                    known.insert(u.clone());
                    send(upsert(u))
                }
                watcher::Event::Delete(o) => {
                    let u = report(r, &o.metadata);
                    known.remove(&u);
                    send(delete(u))
                }
                watcher::Event::Init => {
                    listing = Some(BTreeSet::new());
                    true
                }
                watcher::Event::InitApply(o) => {
                    listing
                        .get_or_insert_with(BTreeSet::new)
                        .insert(report(r, &o.metadata));
                    true
                }
                watcher::Event::InitDone => {
                    let now = listing.take().unwrap_or_default();
                    let gone: Vec<_> = known.difference(&now).cloned().collect();
                    let new: Vec<_> = now.difference(&known).cloned().collect();
                    known = now;
                    gone.into_iter().all(|u| send(delete(u)))
                        && new.into_iter().all(|u| send(upsert(u)))
                }
            };
            if !ok {
                return;
            }
        };
        if let Some(error) = failure {
            if not_served(&error) {
                debug!(resource = plural, group, "not served: rechecked later");
                // A resource no longer served took its objects with it.
                for u in std::mem::take(&mut known) {
                    if tx.send(delete(u)).is_err() {
                        return;
                    }
                }
            } else if forbidden(&error).is_some() {
                if !std::mem::replace(&mut said_forbidden, true) {
                    info!(
                        resource = plural,
                        group,
                        "may not list and watch {plural}.{group}: its objects (policies \
                         Palisade does not enforce) are not reported"
                    );
                }
            } else {
                debug!(resource = plural, group, %error, "watch failed: retried later");
            }
        }
        tokio::time::sleep(RECHECK).await;
    }
}
