//! The agent side of the CNI plugin's calls.
//!
//! `cni_add` answers once the pod's interface has its `ENDPOINTS` entry and
//! both programs attached. The pod's addresses from the plugin are fed to
//! the compiler with the pod object (the API reports `status.podIPs` only
//! after CNI ADD returns), so a pod the sources know is compiled with its
//! real policy before the answer: Kubernetes requires filtering from the
//! first instant a container runs. If the sources do not report the pod
//! within `--cni-wait-ms` (a lagging watch, or the agent still starting),
//! the interface is attached as *pending* — with
//! `--default-deny-until-synced` new flows are dropped (`policy-pending`)
//! until the policy is known, otherwise they pass — and the answer says
//! `"policy":"pending"`. `cni_del` detaches a pending pod and drops the
//! plugin's addresses; `cni_check` reports whether the pod is enforced.

use palisade_compiler::PodRef;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::Agent;
use super::cni_records::{CniRecord, now_ms};
use crate::control::{CniArgs, Response};

/// A `cni_add` waiting for its pod to be enforced.
pub(super) struct Waiter {
    pod: PodRef,
    args: CniArgs,
    pub(super) deadline: tokio::time::Instant,
    reply: oneshot::Sender<Response>,
}

fn pod_of(a: &CniArgs) -> Result<PodRef, String> {
    if a.pod_namespace.is_empty() || a.pod_name.is_empty() {
        return Err("pod_namespace and pod_name are required".into());
    }
    Ok(PodRef::new(a.pod_namespace.clone(), a.pod_name.clone()))
}

impl Agent {
    pub(super) fn cni_add(&mut self, args: CniArgs, reply: oneshot::Sender<Response>) {
        let (pod, ips) = match pod_of(&args).and_then(|p| Ok((p, args.addresses()?))) {
            Ok(x) => x,
            Err(e) => {
                let _ = reply.send(Response::error(e));
                return;
            }
        };
        let rec = CniRecord {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: args.pod_uid.clone().filter(|u| !u.is_empty()),
            container_id: args.container_id.clone(),
            ips,
            host_ifname: args.host_ifname.clone(),
            host_ifindex: None,
            added_at_ms: now_ms(),
        };
        if let Err(e) = self.feed.cni_add(&mut self.compiler, rec) {
            // Not durable: a restart would forget the pod. Refuse, so the
            // runtime retries (and no pod runs on an unrecorded sandbox).
            let _ = reply.send(Response::error(format!("pod {pod}: {e}")));
            return;
        }
        self.net_dirty = true; // the plugin just created links and routes
        self.cni_waiters.push(Waiter {
            pod,
            args,
            deadline: tokio::time::Instant::now() + self.cfg.cni_wait,
            reply,
        });
    }

    pub(super) fn cni_del(&mut self, args: CniArgs, reply: oneshot::Sender<Response>) {
        let pod = match pod_of(&args) {
            Ok(p) => p,
            Err(e) => {
                let _ = reply.send(Response::error(e));
                return;
            }
        };
        // A DEL for an older sandbox must not undo a newer ADD.
        if self
            .feed
            .cni_del(&mut self.compiler, &pod, &args.container_id)
        {
            info!(%pod, sandbox = %args.container_id, "CNI DEL: sandbox record forgotten");
            let (endpoints, mut io) = self.parts();
            if let Err(e) = endpoints.remove_pending(&mut io, &pod, "CNI DEL of its sandbox") {
                let _ = reply.send(Response::error(e.to_string()));
                return;
            }
        }
        self.replies.push((
            reply,
            Response {
                ok: true,
                revision: Some(self.numbers.revision),
                ..Default::default()
            },
        ));
    }

    /// Why a pod is not enforced, for CHECK.
    fn not_enforced_reason(&self, pod: &PodRef) -> String {
        let known = self.feed.knows_pod(pod);
        match (self.feed.cni(pod), self.endpoints.is_desired(pod)) {
            (None, false) if known => format!(
                "no CNI ADD is recorded for {pod} and the pod is not a local endpoint of node {}",
                self.cfg.node_name
            ),
            (None, false) => {
                format!("no CNI ADD is recorded for {pod} and the cluster does not report the pod")
            }
            (_, true) => format!("{pod} is compiled, but no host interface carries it yet"),
            (Some(r), false) => format!(
                "{pod} (sandbox {}) is recorded but not attached yet",
                r.container_id
            ),
        }
    }

    pub(super) fn cni_check(&mut self, args: CniArgs, reply: oneshot::Sender<Response>) {
        let r = match pod_of(&args) {
            Err(e) => Response::error(e),
            Ok(pod) => match self.endpoints.enforced(&pod) {
                Some((ifindex, policy)) => Response {
                    ok: true,
                    revision: Some(self.numbers.revision),
                    policy: Some(policy.into()),
                    ifindex: Some(ifindex),
                    ..Default::default()
                },
                None => Response::error(self.not_enforced_reason(&pod)),
            },
        };
        let _ = reply.send(r);
    }

    /// Answers the `cni_add`s whose pod is now enforced, or whose wait is
    /// over.
    pub(super) fn cni_progress(&mut self) {
        let now = tokio::time::Instant::now();
        let mut keep = Vec::new();
        for w in std::mem::take(&mut self.cni_waiters) {
            let compiled = self.synced && !self.needs_full;
            if compiled && let Some((ifindex, "enforced")) = self.endpoints.enforced(&w.pod) {
                let _ = w.reply.send(Response {
                    ok: true,
                    revision: Some(self.numbers.revision),
                    policy: Some("enforced".into()),
                    ifindex: Some(ifindex),
                    ..Default::default()
                });
                continue;
            }
            if now < w.deadline {
                keep.push(w);
                continue;
            }
            let r = if compiled && self.endpoints.is_desired(&w.pod) {
                Response::error(format!(
                    "pod {}: compiled, but no host interface found for {:?}",
                    w.pod, w.args.ips
                ))
            } else {
                let ips = w.args.addresses().unwrap_or_default();
                warn!(pod = %w.pod, known = self.feed.knows_pod(&w.pod),
                      "pod's policy not known in time; attaching as pending");
                match self.attach_pending(&w.pod, &ips) {
                    Ok(ifindex) => Response {
                        ok: true,
                        revision: Some(self.numbers.revision),
                        policy: Some("pending".into()),
                        ifindex: Some(ifindex),
                        ..Default::default()
                    },
                    Err(e) => Response::error(e),
                }
            };
            let _ = w.reply.send(r);
        }
        self.cni_waiters = keep;
        self.note_cni_placements();
    }

    /// Attaches a pod the CNI plugin announced whose policy is not
    /// compiled (see `--default-deny-until-synced`).
    fn attach_pending(&mut self, pod: &PodRef, ips: &[std::net::IpAddr]) -> Result<u32, String> {
        let deny = self.cfg.default_deny_until_synced;
        let (endpoints, mut io) = self.parts();
        endpoints.attach_pending(&mut io, pod, ips, deny)
    }

    /// Restores every recorded sandbox whose pod is neither compiled nor
    /// pending as a pending endpoint: after a restart, a pod known only
    /// through CNI keeps its programs (and, with
    /// `--default-deny-until-synced`, its default deny) until its policy is
    /// known, its sandbox is deleted or its interface goes.
    pub(super) fn restore_recorded<V>(&mut self, compiled: &std::collections::BTreeMap<PodRef, V>) {
        let orphans: Vec<(PodRef, Vec<std::net::IpAddr>)> = self
            .feed
            .cni_records()
            .map(|r| (r.pod(), r.ips.clone()))
            .filter(|(pod, _)| !compiled.contains_key(pod) && !self.endpoints.is_pending(pod))
            .collect();
        for (pod, ips) in orphans {
            match self.attach_pending(&pod, &ips) {
                Ok(ifindex) => {
                    info!(%pod, ifindex, "recorded sandbox kept enforced as pending (its policy is not known)")
                }
                Err(e) => warn!(%pod, error = %e, "recorded sandbox cannot be attached yet"),
            }
        }
    }

    /// Forgets the records whose interface is gone (logging which pod and
    /// why) and detaches them if they were pending.
    pub(super) fn expire_cni_records(&mut self) {
        for (r, why) in self.feed.cni_expire(&mut self.compiler, &self.net) {
            let pod = r.pod();
            info!(%pod, sandbox = %r.container_id, reason = %why, "CNI record forgotten");
            let (endpoints, mut io) = self.parts();
            if let Err(e) = endpoints.remove_pending(&mut io, &pod, &why) {
                warn!(%pod, error = %e, "removing the pending endpoint failed");
            }
        }
    }

    /// Records the interface each recorded pod is enforced on (so that its
    /// record expires when that interface goes).
    fn note_cni_placements(&mut self) {
        let placed: Vec<(PodRef, u32)> = self
            .feed
            .cni_records()
            .filter_map(|r| {
                let pod = r.pod();
                self.endpoints.enforced(&pod).map(|(i, _)| (pod, i))
            })
            .collect();
        for (pod, ifindex) in placed {
            self.feed.cni_placed(&pod, ifindex);
        }
    }
}
