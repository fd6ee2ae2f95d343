//! Local endpoints: which host-side interface each local pod has, its
//! `ENDPOINTS` entry and the programs attached to it. The entry is always
//! written before the programs are attached (an interface with our
//! programs and no entry drops new flows), and programs are detached
//! before the entry is removed. A pod whose interface cannot be found yet
//! is reported once and placed when a link or route event brings it.
//! Every removal of programs or of an entry from an interface is logged
//! with the pod and the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use palisade_common::{EndpointInfo, endpoint_flags};
use palisade_compiler::PodRef;
use tracing::{info, instrument, warn};

use super::allowed_sources::AllowedSources;
use super::cni_records::Records;
use super::sources;
use crate::control::EndpointStatus;
use crate::datapath::{
    AttachMode, Attachment, Datapath, DatapathError, attach_endpoint, detach_endpoint,
    pinned_interfaces, remove_link_pins,
};
use crate::maps::{DpOp, MapWriteError, Mirror, SourceOp, apply, apply_source};
use crate::net::{NetSnapshot, Resolution};

/// What the endpoint code works on.
pub struct Io<'a> {
    /// The loaded datapath.
    pub dp: &'a mut Datapath,
    /// What the maps hold.
    pub mirror: &'a mut Mirror,
    /// The current links and routes.
    pub net: &'a NetSnapshot,
    /// What CNI reported (host interface names).
    pub records: &'a Records,
    /// The prefixes each namespace's pods may send from.
    pub allowed: &'a AllowedSources,
}

impl Io<'_> {
    /// Writes one entry to the maps and the mirror.
    pub fn write(&mut self, op: DpOp) -> Result<(), MapWriteError> {
        apply(&mut self.dp.maps, &op)?;
        self.mirror.tables.apply(&op);
        Ok(())
    }

    /// Writes one source entry to the maps and the mirror.
    pub fn write_source(&mut self, op: SourceOp) -> Result<(), MapWriteError> {
        apply_source(&mut self.dp.maps, &op)?;
        self.mirror.apply_source(&op);
        Ok(())
    }
}

/// An interface carrying an endpoint.
struct Placed {
    ifindex: u32,
    name: String,
    info: EndpointInfo,
    attached: Option<Attachment>,
    /// The addresses it was placed with (a pending pod's are CNI's).
    ips: Vec<IpAddr>,
}

/// The local endpoints.
pub struct Endpoints {
    links_dir: PathBuf,
    mode: AttachMode,
    /// Compiled endpoints (datapath numbering) and their addresses.
    desired: BTreeMap<PodRef, (EndpointInfo, Vec<IpAddr>)>,
    /// Compiled endpoints with their interface.
    placed: BTreeMap<PodRef, Placed>,
    /// CNI-announced pods whose policy is not compiled yet.
    pending: BTreeMap<PodRef, Placed>,
    /// Pods reported as waiting for their interface.
    waiting: BTreeSet<PodRef>,
}

impl Endpoints {
    /// No endpoints yet; links are pinned in `links_dir`.
    pub fn new(links_dir: PathBuf, mode: AttachMode) -> Self {
        Endpoints {
            links_dir,
            mode,
            desired: BTreeMap::new(),
            placed: BTreeMap::new(),
            pending: BTreeMap::new(),
            waiting: BTreeSet::new(),
        }
    }

    #[instrument(skip_all, fields(iface = %name))]
    fn attach(&self, dp: &mut Datapath, name: &str) -> Result<Attachment, DatapathError> {
        match attach_endpoint(dp, name, self.mode, Some(&self.links_dir)) {
            Ok(a) => Ok(a),
            Err(e @ (DatapathError::LinkPin { .. } | DatapathError::Attach { .. })) => {
                // A pin left by a deleted interface of the same name cannot
                // take a program: drop it and attach afresh.
                warn!(error = %e, "attach failed; retrying without the old link pin");
                remove_link_pins(&self.links_dir, name);
                attach_endpoint(dp, name, self.mode, Some(&self.links_dir))
            }
            Err(e) => Err(e),
        }
    }

    fn detach(&self, dp: &mut Datapath, p: Placed) {
        match p.attached {
            Some(a) => {
                if let Err(error) = detach_endpoint(dp, a) {
                    warn!(iface = %p.name, %error, "detach failed");
                    remove_link_pins(&self.links_dir, &p.name);
                }
            }
            None => remove_link_pins(&self.links_dir, &p.name),
        }
    }

    /// The pod's host interface: the one the CNI plugin named, else the
    /// one its addresses are routed to.
    fn resolve(net: &NetSnapshot, records: &Records, pod: &PodRef, ips: &[IpAddr]) -> Resolution {
        if let Some(name) = records.get(pod).and_then(|r| r.host_ifname.as_ref())
            && let Some(ifindex) = net.ifindex(name)
        {
            return Resolution::Found {
                ifindex,
                name: name.clone(),
            };
        }
        net.resolve(ips)
    }

    fn owner_of(&self, ifindex: u32) -> Option<&PodRef> {
        self.placed
            .iter()
            .find(|(_, p)| p.ifindex == ifindex)
            .map(|(pod, _)| pod)
    }

    /// A compiled endpoint (new or changed): written at once if its
    /// interface is known.
    pub fn upsert(
        &mut self,
        io: &mut Io<'_>,
        pod: PodRef,
        info: EndpointInfo,
        ips: Vec<IpAddr>,
    ) -> Result<(), MapWriteError> {
        self.desired.insert(pod.clone(), (info, ips));
        self.place(io, &pod)
    }

    /// A pod is no longer a local endpoint: detach, then remove its entry.
    pub fn remove(
        &mut self,
        io: &mut Io<'_>,
        pod: &PodRef,
        why: &str,
    ) -> Result<(), MapWriteError> {
        self.desired.remove(pod);
        self.waiting.remove(pod);
        if let Some(p) = self.placed.remove(pod) {
            let ifindex = p.ifindex;
            warn!(%pod, iface = %p.name, ifindex, reason = why, "enforcement removed from the interface");
            self.detach(io.dp, p);
            io.write(DpOp::EndpointRemove { at: ifindex })?;
        }
        Ok(())
    }

    /// Places (or re-places) one compiled endpoint.
    fn place(&mut self, io: &mut Io<'_>, pod: &PodRef) -> Result<(), MapWriteError> {
        let Some((info, ips)) = self.desired.get(pod).cloned() else {
            return Ok(());
        };
        match Self::resolve(io.net, io.records, pod, &ips) {
            Resolution::Found { ifindex, name } => {
                if let Some(p) = self.placed.get_mut(pod)
                    && p.ifindex == ifindex
                {
                    p.ips = ips.clone();
                    if p.info != info {
                        io.write(DpOp::EndpointUpsert {
                            at: ifindex,
                            endpoint: info,
                        })?;
                        p.info = info;
                    }
                    if p.attached.is_none() {
                        let name = p.name.clone();
                        let a = self.attach(io.dp, &name);
                        self.finish_attach(pod, a);
                    }
                    return Ok(());
                }
                if let Some(other) = self.owner_of(ifindex)
                    && other != pod
                {
                    warn!(%pod, other = %other, iface = %name, "interface already carries another pod's endpoint");
                    return Ok(());
                }
                // Its sources before anything on the interface judges it.
                sources::add(io, ifindex, &pod.namespace, &ips)?;
                if let Some(old) = self.placed.remove(pod) {
                    let old_if = old.ifindex;
                    warn!(%pod, iface = %old.name, ifindex = old_if, reason = %format!("the pod moved to {name}"),
                          "enforcement removed from the interface");
                    self.detach(io.dp, old);
                    io.write(DpOp::EndpointRemove { at: old_if })?;
                }
                io.write(DpOp::EndpointUpsert {
                    at: ifindex,
                    endpoint: info,
                })?;
                let attached = match self.pending.remove(pod) {
                    Some(p) if p.ifindex == ifindex && p.attached.is_some() => p.attached,
                    other => {
                        if let Some(p) = other {
                            self.detach(io.dp, p);
                        }
                        None
                    }
                };
                self.placed.insert(
                    pod.clone(),
                    Placed {
                        ifindex,
                        name: name.clone(),
                        info,
                        attached,
                        ips: ips.clone(),
                    },
                );
                if self.placed[pod].attached.is_none() {
                    let a = self.attach(io.dp, &name);
                    self.finish_attach(pod, a);
                }
                self.waiting.remove(pod);
                info!(%pod, iface = %name, ifindex, ep_id = info.ep_id, "endpoint enforced");
            }
            Resolution::NotFound | Resolution::Conflict(_) => {
                if let Some(p) = self.placed.get(pod)
                    && !io.net.links.contains_key(&p.ifindex)
                {
                    // The interface is gone (its TCX links went with it).
                    let p = self.placed.remove(pod).expect("checked");
                    info!(%pod, iface = %p.name, ifindex = p.ifindex, "interface deleted; its endpoint entry goes");
                    remove_link_pins(&self.links_dir, &p.name);
                    io.write(DpOp::EndpointRemove { at: p.ifindex })?;
                }
                if !self.placed.contains_key(pod) && self.waiting.insert(pod.clone()) {
                    warn!(%pod, ?ips, "no host interface routes to the pod yet; waiting for link and route events");
                }
            }
        }
        Ok(())
    }

    fn finish_attach(&mut self, pod: &PodRef, a: Result<Attachment, DatapathError>) {
        let Some(p) = self.placed.get_mut(pod) else {
            return;
        };
        match a {
            Ok(a) => p.attached = Some(a),
            Err(error) => {
                warn!(%pod, iface = %p.name, %error, "attach failed; retrying on the next event")
            }
        }
    }

    /// Re-places every endpoint after links or routes changed.
    pub fn place_all(&mut self, io: &mut Io<'_>) -> Result<(), MapWriteError> {
        let pods: Vec<PodRef> = self.desired.keys().cloned().collect();
        for pod in pods {
            self.place(io, &pod)?;
        }
        let gone: Vec<PodRef> = self
            .pending
            .iter()
            .filter(|(_, p)| !io.net.links.contains_key(&p.ifindex))
            .map(|(pod, _)| pod.clone())
            .collect();
        for pod in gone {
            self.remove_pending(io, &pod, "its interface was deleted")?;
        }
        Ok(())
    }

    /// The interface a compiled or pending endpoint is enforced on.
    pub fn enforced(&self, pod: &PodRef) -> Option<(u32, &'static str)> {
        if let Some(p) = self.placed.get(pod).filter(|p| p.attached.is_some()) {
            return Some((p.ifindex, "enforced"));
        }
        self.pending
            .get(pod)
            .filter(|p| p.attached.is_some())
            .map(|p| (p.ifindex, "pending"))
    }

    /// Whether the pod is a compiled endpoint.
    pub fn is_desired(&self, pod: &PodRef) -> bool {
        self.desired.contains_key(pod)
    }

    /// Whether the pod is attached as pending.
    pub fn is_pending(&self, pod: &PodRef) -> bool {
        self.pending.contains_key(pod)
    }

    /// Every interface carrying a placed or pending pod, with the pod and
    /// its addresses.
    pub fn interfaces(&self) -> impl Iterator<Item = (u32, &PodRef, Vec<IpAddr>)> {
        self.placed
            .iter()
            .chain(self.pending.iter())
            .map(|(pod, p)| (p.ifindex, pod, p.ips.clone()))
    }

    /// Pending pods by interface index (for naming them in events).
    pub fn pending_by_ifindex(&self) -> impl Iterator<Item = (u32, &PodRef)> {
        self.pending.iter().map(|(pod, p)| (p.ifindex, pod))
    }

    /// Attaches a CNI-announced pod whose policy is not compiled: new flows
    /// are dropped (`policy-pending`) with `deny`, else pass.
    pub fn attach_pending(
        &mut self,
        io: &mut Io<'_>,
        pod: &PodRef,
        ips: &[IpAddr],
        deny: bool,
    ) -> Result<u32, String> {
        let (ifindex, name) = match Self::resolve(io.net, io.records, pod, ips) {
            Resolution::Found { ifindex, name } => (ifindex, name),
            Resolution::NotFound => {
                return Err(format!(
                    "pod {pod}: no host interface found (no host route to {ips:?})"
                ));
            }
            Resolution::Conflict(c) => {
                return Err(format!(
                    "pod {pod}: addresses routed to different interfaces: {c:?}"
                ));
            }
        };
        if let Some(other) = self.owner_of(ifindex) {
            return Err(format!("pod {pod}: interface {name} carries pod {other}"));
        }
        sources::add(io, ifindex, &pod.namespace, ips).map_err(|e| e.to_string())?;
        let info = EndpointInfo {
            ep_id: 0,
            identity: 0,
            flags: if deny {
                endpoint_flags::POLICY_PENDING
            } else {
                0
            },
            _pad: 0,
        };
        io.write(DpOp::EndpointUpsert {
            at: ifindex,
            endpoint: info,
        })
        .map_err(|e| e.to_string())?;
        let attached = self.attach(io.dp, &name).map_err(|e| e.to_string())?;
        self.pending.insert(
            pod.clone(),
            Placed {
                ifindex,
                name: name.clone(),
                info,
                attached: Some(attached),
                ips: ips.to_vec(),
            },
        );
        info!(%pod, iface = %name, deny, "pending endpoint attached (policy not known yet)");
        Ok(ifindex)
    }

    /// Detaches a pending (CNI-announced, uncompiled) pod.
    pub fn remove_pending(
        &mut self,
        io: &mut Io<'_>,
        pod: &PodRef,
        why: &str,
    ) -> Result<(), MapWriteError> {
        if let Some(p) = self.pending.remove(pod) {
            let ifindex = p.ifindex;
            warn!(%pod, iface = %p.name, ifindex, reason = why, "enforcement removed from the interface (pending pod)");
            self.detach(io.dp, p);
            if io.mirror.tables.endpoints.contains_key(&ifindex) {
                io.write(DpOp::EndpointRemove { at: ifindex })?;
            }
        }
        Ok(())
    }

    /// For a full reconcile: where each compiled endpoint goes
    /// (ifindex → entry), and records the desired endpoints.
    pub fn plan(
        &mut self,
        net: &NetSnapshot,
        records: &Records,
        desired: BTreeMap<PodRef, (EndpointInfo, Vec<IpAddr>)>,
    ) -> BTreeMap<u32, EndpointInfo> {
        self.desired = desired;
        let mut out = BTreeMap::new();
        for (pod, (info, ips)) in &self.desired {
            if let Resolution::Found { ifindex, .. } = Self::resolve(net, records, pod, ips) {
                out.entry(ifindex).or_insert(*info);
            }
        }
        // Pending endpoints keep their entries.
        for p in self.pending.values() {
            out.entry(p.ifindex).or_insert(p.info);
        }
        out
    }

    /// After a full reconcile wrote the planned entries: attaches (or
    /// swaps the programs of) every placed endpoint, and removes link pins
    /// of interfaces that carry no endpoint.
    pub fn adopt(&mut self, io: &mut Io<'_>) -> Result<(), MapWriteError> {
        for old in std::mem::take(&mut self.placed).into_values() {
            // Keep the attachment handles; `place` re-registers them.
            if !io.net.links.contains_key(&old.ifindex) {
                remove_link_pins(&self.links_dir, &old.name);
            } else if let Some(a) = old.attached {
                drop(a); // pinned: stays attached
            }
        }
        let pods: Vec<PodRef> = self.desired.keys().cloned().collect();
        for pod in pods {
            self.place(io, &pod)?;
        }
        let keep: BTreeSet<String> = self
            .placed
            .values()
            .chain(self.pending.values())
            .map(|p| p.name.clone())
            .collect();
        for name in pinned_interfaces(&self.links_dir) {
            if !keep.contains(&name) {
                warn!(iface = %name, reason = "no local pod (compiled or announced by CNI) is on it",
                      "enforcement removed from the interface");
                remove_link_pins(&self.links_dir, &name);
            }
        }
        Ok(())
    }

    /// Status of every endpoint.
    pub fn status(&self) -> Vec<EndpointStatus> {
        let mut out: Vec<EndpointStatus> = self
            .desired
            .keys()
            .map(|pod| match self.placed.get(pod) {
                Some(p) => EndpointStatus {
                    pod: pod.to_string(),
                    interface: Some(p.name.clone()),
                    state: if p.attached.is_some() {
                        "enforced"
                    } else {
                        "attach-failed"
                    }
                    .into(),
                },
                None => EndpointStatus {
                    pod: pod.to_string(),
                    interface: None,
                    state: "no-interface".into(),
                },
            })
            .collect();
        out.extend(self.pending.iter().map(|(pod, p)| EndpointStatus {
            pod: pod.to_string(),
            interface: Some(p.name.clone()),
            state: "pending".into(),
        }));
        out
    }
}
