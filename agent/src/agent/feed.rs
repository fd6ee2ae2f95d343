//! The objects the sources reported, and feeding them to the compiler:
//! unchanged objects are skipped, relists become deletions of what is no
//! longer listed, and a pod the CNI plugin announced is fed with the
//! addresses the plugin gave until the API reports its own.

use std::collections::BTreeMap;
use std::net::IpAddr;

use palisade_compiler::{Compiler, PodRef};
use tracing::warn;

use crate::source::{Change, Kind, Object, ObjectKey, PodInfo};

/// What a CNI plugin told about a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniInfo {
    /// The sandbox container.
    pub container_id: String,
    /// The pod's addresses.
    pub ips: Vec<IpAddr>,
    /// The host-side interface, if the plugin named it.
    pub host_ifname: Option<String>,
}

/// The source objects and CNI overlays.
#[derive(Debug, Default)]
pub struct Feed {
    objects: BTreeMap<ObjectKey, Object>,
    cni: BTreeMap<PodRef, CniInfo>,
    /// Counts the changes fed to the compiler.
    generation: u64,
    /// Counts the pod changes (and CNI overlays) fed to the compiler.
    pods_generation: u64,
}

fn obj_kind(obj: &Object) -> Kind {
    match obj {
        Object::Namespace(_) => Kind::Namespace,
        Object::Pod(_) => Kind::Pod,
        Object::NetworkPolicy(_) => Kind::NetworkPolicy,
    }
}

fn pod_key(pod: &PodRef) -> ObjectKey {
    ObjectKey {
        kind: Kind::Pod,
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
    }
}

/// The pod as fed to the compiler: with the CNI plugin's addresses while
/// the source reports none.
fn with_overlay(p: &PodInfo, cni: Option<&CniInfo>) -> k8s_openapi::api::core::v1::Pod {
    match cni {
        Some(cni) if !p.has_ips() && !cni.ips.is_empty() => {
            let mut p = p.clone();
            p.set_ips(cni.ips.iter().map(ToString::to_string));
            p.to_pod()
        }
        _ => p.to_pod(),
    }
}

impl Feed {
    fn feed(&mut self, c: &mut Compiler, obj: &Object) {
        self.changed(obj_kind(obj));
        let r = match obj {
            Object::Namespace(ns) => c.apply_namespace(ns),
            Object::Pod(p) => {
                let pref = PodRef::new(
                    p.namespace.clone().unwrap_or_default(),
                    p.name.clone().unwrap_or_default(),
                );
                c.apply_pod(&with_overlay(p, self.cni.get(&pref)))
            }
            Object::NetworkPolicy(np) => c.apply_policy(np),
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

    fn unfeed(&mut self, c: &mut Compiler, key: &ObjectKey) {
        self.changed(key.kind);
        match key.kind {
            Kind::Namespace => c.delete_namespace(&key.name),
            Kind::Pod => c.delete_pod(&key.namespace, &key.name),
            Kind::NetworkPolicy => c.delete_policy(&key.namespace, &key.name),
        }
    }

    fn upsert(&mut self, c: &mut Compiler, obj: Object) {
        let key = obj.key();
        if self.objects.get(&key) == Some(&obj) {
            return;
        }
        self.feed(c, &obj);
        self.objects.insert(key, obj);
    }

    /// Applies a source change.
    pub fn apply(&mut self, c: &mut Compiler, change: Change) {
        match change {
            Change::Upsert(o) => self.upsert(c, o),
            Change::Delete(k) => {
                if self.objects.remove(&k).is_some() {
                    self.unfeed(c, &k);
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
                    self.objects.remove(&k);
                    self.unfeed(c, &k);
                }
                for o in objects {
                    self.upsert(c, o);
                }
            }
        }
    }

    /// Sets (or clears) the CNI overlay of a pod and re-feeds it.
    pub fn set_cni(&mut self, c: &mut Compiler, pod: &PodRef, info: Option<CniInfo>) {
        match info {
            Some(i) => self.cni.insert(pod.clone(), i),
            None => self.cni.remove(pod),
        };
        if let Some(obj) = self.objects.get(&pod_key(pod)).cloned() {
            self.feed(c, &obj);
        }
    }

    /// Counts the changes fed to the compiler: equal values mean nothing
    /// was fed in between.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Like [`Feed::generation`], for pods only.
    pub fn pods_generation(&self) -> u64 {
        self.pods_generation
    }

    /// The CNI overlay of a pod.
    pub fn cni(&self, pod: &PodRef) -> Option<&CniInfo> {
        self.cni.get(pod)
    }

    /// Whether the sources reported the pod.
    pub fn knows_pod(&self, pod: &PodRef) -> bool {
        self.objects.contains_key(&pod_key(pod))
    }

    /// A source object as reported.
    pub fn object(&self, key: &ObjectKey) -> Option<&Object> {
        self.objects.get(key)
    }

    /// The pod's `metadata.uid` (empty if none).
    pub fn uid(&self, pod: &PodRef) -> String {
        match self.objects.get(&pod_key(pod)) {
            Some(Object::Pod(p)) => p.uid.clone().unwrap_or_default(),
            _ => String::new(),
        }
    }
}
