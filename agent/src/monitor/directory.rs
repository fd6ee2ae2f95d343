//! What the numbers in a drop event mean, as of the last commit: endpoint
//! ids → local pods (with the policies selecting them), addresses → pods,
//! CIDR identities → prefixes, this node's addresses, and the pods
//! announced by CNI whose policy is not known yet (pending: no endpoint
//! id, named by interface and by the addresses CNI reported), and the
//! ClusterNetworkPolicy rules by the code the datapath reports.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use palisade_compiler::{PodRef, PolicyName};

/// A local endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPod {
    /// The pod.
    pub pod: PodRef,
    /// `EndpointInfo::flags` as written.
    pub flags: u32,
    /// Enforced policies selecting the pod, per direction.
    pub selecting: [Vec<PolicyName>; 2],
    /// Audited policies selecting the pod, per direction.
    pub audited: [Vec<PolicyName>; 2],
}

/// The snapshot the event reader names things with. The cluster-wide
/// parts (`addresses`, `pods`) are shared between successive snapshots
/// while the pods do not change.
#[derive(Clone, Debug, Default)]
pub struct Directory {
    /// Datapath endpoint id → local pod.
    pub endpoints: HashMap<u32, LocalPod>,
    /// Pod addresses (cluster-wide) → pod.
    pub addresses: Arc<HashMap<IpAddr, PodRef>>,
    /// Datapath CIDR identity → prefix.
    pub cidrs: HashMap<u32, String>,
    /// This node's addresses.
    pub host: BTreeSet<IpAddr>,
    /// Known namespaces.
    pub namespaces: BTreeSet<String>,
    /// Known pods.
    pub pods: Arc<BTreeSet<PodRef>>,
    /// Pending local pods by interface index.
    pub pending: HashMap<u32, LocalPod>,
    /// Addresses of pending local pods (CNI's).
    pub pending_addresses: HashMap<IpAddr, PodRef>,
    /// ClusterNetworkPolicy rules by (direction, `tier_code`), named.
    pub tier_rules: HashMap<(u8, u32), String>,
}

impl Directory {
    /// The local pod of an event: by datapath endpoint id, or for a
    /// pending pod (endpoint id 0) by interface.
    pub fn local(&self, ep_id: u32, ifindex: u32) -> Option<&LocalPod> {
        match ep_id {
            0 => self.pending.get(&ifindex),
            id => self.endpoints.get(&id),
        }
    }

    /// The pod that has address `addr`.
    pub fn pod_at(&self, addr: &IpAddr) -> Option<&PodRef> {
        self.addresses
            .get(addr)
            .or_else(|| self.pending_addresses.get(addr))
    }

    /// Checks monitor filters against known names: a clear error for a
    /// typo instead of a silent, empty stream.
    pub fn check_filter(&self, namespace: Option<&str>, pod: Option<&str>) -> Result<(), String> {
        if let Some(ns) = namespace
            && !self.namespaces.contains(ns)
            && !self.pending.values().any(|l| l.pod.namespace == ns)
        {
            return Err(format!("unknown namespace {ns:?}"));
        }
        if let Some(name) = pod {
            let found = self
                .pods
                .iter()
                .chain(self.pending.values().map(|l| &l.pod))
                .any(|p| p.name == name && namespace.is_none_or(|ns| p.namespace == ns));
            if !found {
                return Err(match namespace {
                    Some(ns) => format!("unknown pod {ns}/{name}"),
                    None => format!("unknown pod {name:?} (in no namespace)"),
                });
            }
        }
        Ok(())
    }
}
