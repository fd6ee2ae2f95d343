//! What the CNI plugin told the agent about each local pod sandbox, kept
//! as durable state: `<state-dir>/cni.json`, written (temp file, fsync,
//! rename) before an ADD is answered and after every change, and loaded
//! before the first compile of a restarted agent.
//!
//! A record is the only source of a pod's addresses between CNI ADD and
//! the kubelet reporting `status.podIPs`, and of its host interface when
//! the plugin named it. Without it a restarted agent would forget every
//! pod known only through CNI and remove its programs: enforcement lost
//! while the sandbox runs. So a record is forgotten only when
//! * CNI DEL names its sandbox ([`Records::remove_sandbox`]),
//! * its host interface is gone ([`Records::expire`]: the interface the
//!   agent enforced it on no longer exists, or its name now belongs to
//!   another interface, i.e. the sandbox was re-created), or
//! * the sources report the pod deleted ([`Records::forget_deleted`]).
//!
//! The records of this file are the one owner of that state; the feed
//! overlays their addresses on the pod objects ([`super::feed`]) and the
//! endpoints use their interface names as placement hints.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use palisade_compiler::PodRef;
use serde::{Deserialize, Serialize};

use crate::net::NetSnapshot;

/// Version of the file layout.
const FILE_VERSION: u32 = 1;

/// What a CNI ADD told the agent about one pod sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniRecord {
    /// `K8S_POD_NAMESPACE`.
    pub namespace: String,
    /// `K8S_POD_NAME`.
    pub name: String,
    /// `K8S_POD_UID`, if the runtime passed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// `CNI_CONTAINERID`: the sandbox.
    pub container_id: String,
    /// The pod's addresses from `prevResult`.
    pub ips: Vec<IpAddr>,
    /// The host-side interface, if the plugin named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ifname: Option<String>,
    /// The interface the agent enforced the pod on, once it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ifindex: Option<u32>,
    /// When the ADD arrived (milliseconds since the Unix epoch).
    pub added_at_ms: u64,
}

impl CniRecord {
    /// The pod.
    pub fn pod(&self) -> PodRef {
        PodRef::new(self.namespace.clone(), self.name.clone())
    }

    /// When the ADD arrived.
    pub fn added_at(&self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_millis(self.added_at_ms)
    }

    /// Why the record's sandbox is known to be gone, if it is: the
    /// interface the pod was enforced on no longer exists, or the name the
    /// plugin gave now belongs to another interface (a re-created
    /// sandbox). A record never placed on an interface is kept: its
    /// interface may not be visible yet.
    fn gone(&self, net: &NetSnapshot) -> Option<String> {
        let ifindex = self.host_ifindex?;
        match net.links.get(&ifindex) {
            None => Some(format!("its interface (ifindex {ifindex}) was deleted")),
            Some(name) if self.host_ifname.as_ref().is_some_and(|n| n != name) => Some(format!(
                "ifindex {ifindex} is now {name}, not the sandbox's {}",
                self.host_ifname.as_deref().unwrap_or_default()
            )),
            Some(_) => None,
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("CNI sandbox records {path}: {message}")]
pub struct RecordsError {
    /// The file.
    pub path: PathBuf,
    /// What failed.
    pub message: String,
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    records: Vec<CniRecord>,
}

/// The records, one per pod (a newer ADD for a pod replaces its record).
#[derive(Debug, Default)]
pub struct Records {
    path: PathBuf,
    by_pod: BTreeMap<PodRef, CniRecord>,
}

impl Records {
    /// Path of the file in a state directory.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("cni.json")
    }

    /// Loads the records (an absent file holds none). An unreadable file
    /// is an error: starting without it would remove enforcement from the
    /// pods it names.
    pub fn load(path: &Path) -> Result<Self, RecordsError> {
        let err = |message: String| RecordsError {
            path: path.to_path_buf(),
            message,
        };
        let mut r = Records {
            path: path.to_path_buf(),
            by_pod: BTreeMap::new(),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(r),
            Err(e) => return Err(err(e.to_string())),
        };
        let f: File = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if f.version != FILE_VERSION {
            return Err(err(format!("unsupported version {}", f.version)));
        }
        for rec in f.records {
            r.by_pod.insert(rec.pod(), rec);
        }
        Ok(r)
    }

    /// Writes the records (atomically: temp file, fsync, rename).
    pub fn save(&self) -> Result<(), RecordsError> {
        let err = |message: String| RecordsError {
            path: self.path.clone(),
            message,
        };
        let f = File {
            version: FILE_VERSION,
            records: self.by_pod.values().cloned().collect(),
        };
        let text = serde_json::to_vec_pretty(&f).map_err(|e| err(e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp).map_err(|e| err(e.to_string()))?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| err(e.to_string()))
    }

    /// The record of a pod.
    pub fn get(&self, pod: &PodRef) -> Option<&CniRecord> {
        self.by_pod.get(pod)
    }

    /// Every record.
    pub fn iter(&self) -> impl Iterator<Item = &CniRecord> {
        self.by_pod.values()
    }

    /// Records an ADD (replacing the pod's older sandbox, if any); returns
    /// the record it replaced.
    pub fn add(&mut self, rec: CniRecord) -> Option<CniRecord> {
        self.by_pod.insert(rec.pod(), rec)
    }

    /// Puts back what [`Records::add`] returned (an ADD that could not be
    /// saved).
    pub fn restore(&mut self, pod: &PodRef, previous: Option<CniRecord>) {
        match previous {
            Some(r) => self.by_pod.insert(pod.clone(), r),
            None => self.by_pod.remove(pod),
        };
    }

    /// A DEL: forgets the pod's record if it is of that sandbox (a DEL for
    /// an older sandbox must not undo a newer ADD). Whether it did.
    pub fn remove_sandbox(&mut self, pod: &PodRef, container_id: &str) -> bool {
        if self
            .by_pod
            .get(pod)
            .is_some_and(|r| r.container_id == container_id)
        {
            self.by_pod.remove(pod);
            return true;
        }
        false
    }

    /// The sources reported the pod deleted: forgets its record unless the
    /// record is of another pod of the same name (another UID).
    pub fn forget_deleted(&mut self, pod: &PodRef, uid: Option<&str>) -> Option<CniRecord> {
        let same = match (self.by_pod.get(pod)?.uid.as_deref(), uid) {
            (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => a == b,
            _ => true,
        };
        if same { self.by_pod.remove(pod) } else { None }
    }

    /// Notes the interface a pod is enforced on. Whether it changed.
    pub fn placed(&mut self, pod: &PodRef, ifindex: u32) -> bool {
        match self.by_pod.get_mut(pod) {
            Some(r) if r.host_ifindex != Some(ifindex) => {
                r.host_ifindex = Some(ifindex);
                true
            }
            _ => false,
        }
    }

    /// Forgets the records whose sandbox is gone (see [`CniRecord`]);
    /// returns them with the reason.
    pub fn expire(&mut self, net: &NetSnapshot) -> Vec<(CniRecord, String)> {
        let gone: Vec<(PodRef, String)> = self
            .by_pod
            .iter()
            .filter_map(|(pod, r)| r.gone(net).map(|why| (pod.clone(), why)))
            .collect();
        gone.into_iter()
            .filter_map(|(pod, why)| self.by_pod.remove(&pod).map(|r| (r, why)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, container: &str, ifindex: Option<u32>) -> CniRecord {
        CniRecord {
            namespace: "prod".into(),
            name: name.into(),
            uid: Some(format!("uid-{name}")),
            container_id: container.into(),
            ips: vec!["198.18.1.2".parse().unwrap()],
            host_ifname: Some(format!("veth{name}")),
            host_ifindex: ifindex,
            added_at_ms: 1_000,
        }
    }

    #[test]
    fn survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = Records::path(dir.path());
        let mut r = Records::load(&path).unwrap();
        assert!(r.iter().next().is_none(), "no file: no records");
        r.add(rec("web", "c1", Some(7)));
        r.add(rec("db", "c2", None));
        r.save().unwrap();
        let back = Records::load(&path).unwrap();
        assert_eq!(
            back.iter().cloned().collect::<Vec<_>>(),
            r.iter().cloned().collect::<Vec<_>>()
        );
        std::fs::write(&path, b"{not json").unwrap();
        let e = Records::load(&path).unwrap_err();
        assert!(e.to_string().contains("cni.json"), "{e}");
    }

    #[test]
    fn forgotten_only_for_its_own_sandbox_pod_or_interface() {
        let mut r = Records::default();
        r.add(rec("web", "c2", Some(7)));
        let web = PodRef::new("prod", "web");
        assert!(!r.remove_sandbox(&web, "c1"), "an older sandbox's DEL");
        assert!(r.forget_deleted(&web, Some("uid-other")).is_none());
        let mut net = NetSnapshot::default();
        net.links.insert(7, "vethweb".into());
        assert!(r.expire(&net).is_empty());
        net.links.insert(7, "vethother".into());
        let gone = r.expire(&net);
        assert_eq!(gone.len(), 1);
        assert!(gone[0].1.contains("vethother"), "{}", gone[0].1);
        r.add(rec("web", "c2", None));
        assert!(r.expire(&NetSnapshot::default()).is_empty(), "never placed");
        assert!(r.placed(&web, 9));
        assert_eq!(r.expire(&NetSnapshot::default()).len(), 1);
        r.add(rec("web", "c3", None));
        assert!(r.forget_deleted(&web, Some("uid-web")).is_some());
        r.add(rec("web", "c3", None));
        assert!(r.remove_sandbox(&web, "c3"));
        assert!(r.get(&web).is_none());
    }
}
