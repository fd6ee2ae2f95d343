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
use tracing::warn;

use super::Agent;
use super::endpoints::Io;
use super::feed::CniInfo;
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
        self.endpoints.set_hint(&pod, args.host_ifname.clone());
        let info = CniInfo {
            container_id: args.container_id.clone(),
            ips,
            host_ifname: args.host_ifname.clone(),
        };
        self.feed.set_cni(&mut self.compiler, &pod, Some(info));
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
            .cni(&pod)
            .is_some_and(|c| c.container_id == args.container_id)
        {
            self.feed.set_cni(&mut self.compiler, &pod, None);
            self.endpoints.set_hint(&pod, None);
            let mut io = Io {
                dp: &mut self.dp,
                mirror: &mut self.mirror,
                net: &self.net,
            };
            if let Err(e) = self.endpoints.remove_pending(&mut io, &pod) {
                let _ = reply.send(Response::error(e.to_string()));
                return;
            }
        }
        self.replies.push((
            reply,
            Response {
                ok: true,
                revision: Some(self.idmap.revision),
                ..Default::default()
            },
        ));
    }

    pub(super) fn cni_check(&mut self, args: CniArgs, reply: oneshot::Sender<Response>) {
        let r = match pod_of(&args) {
            Err(e) => Response::error(e),
            Ok(pod) => match self.endpoints.enforced(&pod) {
                Some((ifindex, policy)) => Response {
                    ok: true,
                    revision: Some(self.idmap.revision),
                    policy: Some(policy.into()),
                    ifindex: Some(ifindex),
                    ..Default::default()
                },
                None => Response::error(format!("pod {pod}: not enforced on any interface")),
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
                    revision: Some(self.idmap.revision),
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
                let mut io = Io {
                    dp: &mut self.dp,
                    mirror: &mut self.mirror,
                    net: &self.net,
                };
                warn!(pod = %w.pod, known = self.feed.knows_pod(&w.pod),
                      "pod's policy not known in time; attaching as pending");
                match self.endpoints.attach_pending(
                    &mut io,
                    &w.pod,
                    &ips,
                    self.cfg.default_deny_until_synced,
                ) {
                    Ok(ifindex) => Response {
                        ok: true,
                        revision: Some(self.idmap.revision),
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
    }
}
