//! The objects the sources reported, and feeding them to the compiler:
//! unchanged objects are skipped, relists become deletions of what is no
//! longer listed, and a pod with a CNI record ([`super::cni_records`]) is
//! fed with the addresses the newer of two facts gives:
//!
//! * the record's addresses while the API reports none (the kubelet
//!   reports `status.podIPs` only after CNI ADD returns);
//! * when both report addresses and they differ, the record's, unless this
//!   agent saw `status.podIPs` change after the ADD. A status that was
//!   already there when the ADD came (or when a restarted agent first read
//!   it) is older than the sandbox the ADD created: a re-created sandbox
//!   has a new address before the kubelet reports it. Each disagreement is
//!   logged once and counted.
//!
//! The feed owns the CNI records: every change to them goes through here,
//! is saved before it takes effect, and re-feeds the pod.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use palisade_compiler::{Compiler, PodRef};
use tracing::{info, warn};

use super::cni_records::{CniRecord, Records, RecordsError};
use crate::net::NetSnapshot;
use crate::source::{Change, Kind, Object, ObjectKey, PodInfo, UnenforcedPolicy};

/// The source objects and CNI records.
#[derive(Debug, Default)]
pub struct Feed {
    objects: BTreeMap<ObjectKey, Object>,
    records: Records,
    /// When this agent saw a pod's `status.podIPs` change to what it is
    /// now (absent: as first read, of unknown age).
    status_changed: BTreeMap<PodRef, SystemTime>,
    /// The last disagreement logged per pod.
    disagreements: BTreeMap<PodRef, Disagreement>,
    /// Disagreements between CNI and `status.podIPs` seen so far.
    disagreements_total: u64,
    /// Counts the changes fed to the compiler.
    generation: u64,
    /// Counts the pod changes (and CNI records) fed to the compiler.
    pods_generation: u64,
}

fn pod_key(pod: &PodRef) -> ObjectKey {
    ObjectKey {
        kind: Kind::Pod,
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
    }
}

fn pod_ref(p: &PodInfo) -> PodRef {
    PodRef::new(
        p.namespace.clone().unwrap_or_default(),
        p.name.clone().unwrap_or_default(),
    )
}

/// The addresses `status.podIPs` (or `podIP`) gives, sorted; `None` when a
/// value is not an address (the compiler then rejects the pod by name).
fn status_ips(p: &PodInfo) -> Option<Vec<IpAddr>> {
    let mut v: Vec<IpAddr> = if p.pod_ips.is_empty() {
        p.pod_ip
            .iter()
            .map(|s| s.parse().ok())
            .collect::<Option<_>>()?
    } else {
        p.pod_ips
            .iter()
            .map(|s| s.parse().ok())
            .collect::<Option<_>>()?
    };
    v.sort();
    v.dedup();
    Some(v)
}

/// Which addresses a pod is fed with.
#[derive(Debug, PartialEq, Eq)]
enum Addresses {
    /// As the source reports them.
    Status,
    /// The CNI record's.
    Cni(Vec<IpAddr>),
}

/// The addresses CNI and `status.podIPs` gave when they differ: (record's,
/// status's), each sorted.
type Disagreement = (Vec<IpAddr>, Vec<IpAddr>);

/// The rule of the module doc: the newer fact wins.
fn choose(
    p: &PodInfo,
    rec: Option<&CniRecord>,
    status_changed: Option<SystemTime>,
) -> (Addresses, Option<Disagreement>) {
    let Some(rec) = rec.filter(|r| !r.ips.is_empty()) else {
        return (Addresses::Status, None);
    };
    if !p.has_ips() {
        return (Addresses::Cni(rec.ips.clone()), None);
    }
    let Some(status) = status_ips(p) else {
        return (Addresses::Status, None);
    };
    let mut cni = rec.ips.clone();
    cni.sort();
    cni.dedup();
    if cni == status {
        return (Addresses::Status, None);
    }
    let status_newer = status_changed.is_some_and(|t| t > rec.added_at());
    let chosen = if status_newer {
        Addresses::Status
    } else {
        Addresses::Cni(rec.ips.clone())
    };
    (chosen, Some((cni, status)))
}

impl Feed {
    /// No objects yet; the CNI records loaded from the state directory.
    pub fn new(records: Records) -> Self {
        Feed {
            records,
            ..Default::default()
        }
    }

    /// The pod as fed to the compiler (see the module doc).
    fn pod_to_feed(&mut self, p: &PodInfo) -> k8s_openapi::api::core::v1::Pod {
        let pod = pod_ref(p);
        let (chosen, disagreement) = choose(
            p,
            self.records.get(&pod),
            self.status_changed.get(&pod).copied(),
        );
        match disagreement {
            Some(d) if self.disagreements.get(&pod) != Some(&d) => {
                self.disagreements_total += 1;
                let winner = match chosen {
                    Addresses::Status => "status.podIPs (changed after the CNI ADD)",
                    Addresses::Cni(_) => "CNI ADD (newer than status.podIPs)",
                };
                warn!(%pod, cni = ?d.0, status = ?d.1, using = winner,
                      "CNI and status.podIPs disagree on the pod's addresses");
                self.disagreements.insert(pod, d);
            }
            Some(_) => {}
            None => {
                self.disagreements.remove(&pod);
            }
        }
        match chosen {
            Addresses::Status => p.to_pod(),
            Addresses::Cni(ips) => {
                let mut p = p.clone();
                p.set_ips(ips.iter().map(ToString::to_string));
                p.to_pod()
            }
        }
    }

    fn feed(&mut self, c: &mut Compiler, obj: &Object) {
        self.changed(obj.kind());
        let r = match obj {
            Object::Namespace(ns) => c.apply_namespace(ns),
            Object::Pod(p) => {
                let pod = self.pod_to_feed(p);
                c.apply_pod(&pod)
            }
            Object::NetworkPolicy(np) => c.apply_policy(np),
            Object::ClusterNetworkPolicy(cnp) => c.apply_cluster_policy(cnp),
            Object::Node(n) => c.apply_node(n),
            Object::Unenforced(u) => {
                // Said once per object: an unchanged object is not fed again.
                warn!(object = %u, "network policy NOT ENFORCED: Palisade enforces NetworkPolicy \
                      (networking.k8s.io/v1) and ClusterNetworkPolicy \
                      (policy.networking.k8s.io/v1alpha2) only");
                Ok(())
            }
        };
        if let Err(e) = r {
            // The last valid version (if any) stays in force: fail closed.
            warn!(object = %e.object, field = %e.field, error = %e.reason, "object rejected");
        }
    }

    fn changed(&mut self, kind: Kind) {
        self.generation += 1;
        if kind == Kind::Pod {
            self.pods_generation += 1;
        }
    }

    fn unfeed(&mut self, c: &mut Compiler, key: &ObjectKey, old: &Object) {
        self.changed(key.kind);
        match key.kind {
            Kind::Namespace => c.delete_namespace(&key.name),
            Kind::Pod => {
                c.delete_pod(&key.namespace, &key.name);
                let pod = PodRef::new(key.namespace.clone(), key.name.clone());
                self.status_changed.remove(&pod);
                self.disagreements.remove(&pod);
                let uid = match old {
                    Object::Pod(p) => p.uid.as_deref(),
                    _ => None,
                };
                if let Some(r) = self.records.forget_deleted(&pod, uid) {
                    info!(%pod, sandbox = %r.container_id,
                          "CNI record forgotten: the sources report the pod deleted");
                    self.save_records();
                }
            }
            Kind::NetworkPolicy => c.delete_policy(&key.namespace, &key.name),
            Kind::ClusterNetworkPolicy => c.delete_cluster_policy(&key.name),
            Kind::Node => c.delete_node(&key.name),
            Kind::Unenforced => info!(object = %key.name, "unenforced network policy removed"),
        }
    }

    /// The policy objects of kinds Palisade does not enforce.
    pub fn unenforced(&self) -> impl Iterator<Item = &UnenforcedPolicy> {
        self.of_kind(Kind::Unenforced).filter_map(|o| match o {
            Object::Unenforced(u) => Some(&**u),
            _ => None,
        })
    }

    fn upsert(&mut self, c: &mut Compiler, obj: Object) {
        let key = obj.key();
        let old = self.objects.get(&key);
        if old == Some(&obj) {
            return;
        }
        let relabel = if let (Some(Object::Pod(old)), Object::Pod(new)) = (old, &obj) {
            if status_ips(old) != status_ips(new) {
                // An observed change: the kubelet reported new addresses now.
                self.status_changed.insert(pod_ref(new), SystemTime::now());
            }
            old.labels != new.labels
                && **old
                    == PodInfo {
                        labels: old.labels.clone(),
                        ..(**new).clone()
                    }
        } else {
            false
        };
        let pods_generation = self.pods_generation;
        self.feed(c, &obj);
        if relabel {
            // Labels alone change no pod's name or addresses.
            self.pods_generation = pods_generation;
        }
        self.objects.insert(key, obj);
    }

    /// Applies a source change.
    pub fn apply(&mut self, c: &mut Compiler, change: Change) {
        match change {
            Change::Upsert(o) => self.upsert(c, o),
            Change::Delete(k) => {
                if let Some(old) = self.objects.remove(&k) {
                    self.unfeed(c, &k, &old);
                }
            }
            Change::Replace { kind, objects } => {
                let listed: std::collections::BTreeSet<ObjectKey> =
                    objects.iter().map(Object::key).collect();
                let gone: Vec<ObjectKey> = self
                    .objects
                    .keys()
                    .filter(|k| k.kind == kind && !listed.contains(*k))
                    .cloned()
                    .collect();
                for k in gone {
                    if let Some(old) = self.objects.remove(&k) {
                        self.unfeed(c, &k, &old);
                    }
                }
                for o in objects {
                    self.upsert(c, o);
                }
            }
        }
    }

    fn save_records(&self) {
        if let Err(e) = self.records.save() {
            // The in-memory records stay right; the next save retries.
            warn!(error = %e, "saving the CNI records failed");
        }
    }

    /// Re-feeds a pod after its record changed.
    fn refeed(&mut self, c: &mut Compiler, pod: &PodRef) {
        self.pods_generation += 1;
        if let Some(obj) = self.objects.get(&pod_key(pod)).cloned() {
            self.feed(c, &obj);
        }
    }

    /// A CNI ADD: recorded durably (saved before it takes effect: an
    /// answered ADD survives a restart), then the pod is re-fed.
    pub fn cni_add(&mut self, c: &mut Compiler, rec: CniRecord) -> Result<(), RecordsError> {
        let pod = rec.pod();
        let previous = self.records.add(rec);
        if let Err(e) = self.records.save() {
            self.records.restore(&pod, previous);
            return Err(e);
        }
        self.refeed(c, &pod);
        Ok(())
    }

    /// A CNI DEL: forgets the record if it is of that sandbox; whether it
    /// did.
    pub fn cni_del(&mut self, c: &mut Compiler, pod: &PodRef, container_id: &str) -> bool {
        if !self.records.remove_sandbox(pod, container_id) {
            return false;
        }
        self.save_records();
        self.refeed(c, pod);
        true
    }

    /// Notes the interface a pod with a record is enforced on.
    pub fn cni_placed(&mut self, pod: &PodRef, ifindex: u32) {
        if self.records.placed(pod, ifindex) {
            self.save_records();
        }
    }

    /// Forgets the records whose sandbox's interface is gone; returns them
    /// with the reason.
    pub fn cni_expire(&mut self, c: &mut Compiler, net: &NetSnapshot) -> Vec<(CniRecord, String)> {
        let gone = self.records.expire(net);
        if !gone.is_empty() {
            self.save_records();
            for (r, _) in &gone {
                self.refeed(c, &r.pod());
            }
        }
        gone
    }

    /// Counts the changes fed to the compiler: equal values mean nothing
    /// was fed in between.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Like [`Feed::generation`], for the pods' names and addresses only
    /// (a change of labels alone leaves it).
    pub fn pods_generation(&self) -> u64 {
        self.pods_generation
    }

    /// The CNI record of a pod.
    pub fn cni(&self, pod: &PodRef) -> Option<&CniRecord> {
        self.records.get(pod)
    }

    /// Every CNI record.
    pub fn cni_records(&self) -> impl Iterator<Item = &CniRecord> {
        self.records.iter()
    }

    /// The CNI records.
    pub fn records(&self) -> &Records {
        &self.records
    }

    /// How many times CNI and `status.podIPs` were seen to disagree.
    pub fn address_disagreements(&self) -> u64 {
        self.disagreements_total
    }

    /// Whether the sources reported the pod.
    pub fn knows_pod(&self, pod: &PodRef) -> bool {
        self.objects.contains_key(&pod_key(pod))
    }

    /// A source object as reported.
    pub fn object(&self, key: &ObjectKey) -> Option<&Object> {
        self.objects.get(key)
    }

    /// The objects of one kind (a range of the map, not a walk of every
    /// object: the agent asks after each round).
    fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Object> {
        let from = ObjectKey {
            kind,
            namespace: String::new(),
            name: String::new(),
        };
        self.objects
            .range(from..)
            .take_while(move |(k, _)| k.kind == kind)
            .map(|(_, o)| o)
    }

    /// Every namespace with the value of an annotation (`None`: not set).
    pub fn namespace_annotations<'a>(
        &'a self,
        key: &'a str,
    ) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
        self.of_kind(Kind::Namespace).filter_map(move |o| match o {
            Object::Namespace(ns) => Some((
                ns.metadata.name.as_deref().unwrap_or_default(),
                ns.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(key))
                    .map(String::as_str),
            )),
            _ => None,
        })
    }

    /// Every namespace with its allowed source prefixes annotation.
    pub fn namespaces(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.namespace_annotations(super::ALLOWED_SOURCES_ANNOTATION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ips: &[&str]) -> PodInfo {
        let mut p = PodInfo {
            name: Some("web".into()),
            namespace: Some("prod".into()),
            ..Default::default()
        };
        p.set_ips(ips.iter().map(|s| s.to_string()));
        p
    }

    fn rec(ips: &[&str], added_at_ms: u64) -> CniRecord {
        CniRecord {
            namespace: "prod".into(),
            name: "web".into(),
            uid: None,
            container_id: "c1".into(),
            ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            host_ifname: None,
            host_ifindex: None,
            added_at_ms,
        }
    }

    fn at(ms: u64) -> SystemTime {
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
    }

    #[test]
    fn the_newer_fact_gives_the_addresses() {
        let cni = rec(&["198.18.1.9", "2001:db8::9"], 1_000);
        // No status addresses yet: the record's.
        assert_eq!(
            choose(&pod(&[]), Some(&cni), None).0,
            Addresses::Cni(cni.ips.clone())
        );
        // Agreement (any order): the status, nothing to report.
        let same = pod(&["2001:db8::9", "198.18.1.9"]);
        assert_eq!(choose(&same, Some(&cni), None), (Addresses::Status, None));
        // A stale status (there before the ADD, or first read after a
        // restart): the record's, reported.
        let stale = pod(&["198.18.1.3"]);
        for seen in [None, Some(at(999))] {
            let (a, d) = choose(&stale, Some(&cni), seen);
            assert_eq!(a, Addresses::Cni(cni.ips.clone()));
            assert!(d.is_some());
        }
        // The kubelet changed the status after the ADD: the status.
        let (a, d) = choose(&stale, Some(&cni), Some(at(1_001)));
        assert_eq!(a, Addresses::Status);
        assert!(d.is_some());
        // No record, or one without addresses: the status.
        assert_eq!(choose(&stale, None, None).0, Addresses::Status);
        assert_eq!(
            choose(&stale, Some(&rec(&[], 5)), None).0,
            Addresses::Status
        );
    }
}
