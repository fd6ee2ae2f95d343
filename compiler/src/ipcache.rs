//! The sources of the ipcache maps: who claims each address of the exact
//! maps (this node, pods) and which claim wins, the CIDR regions of the LPM
//! maps ([`Regions`]), and the value each entry gets from them.
//!
//! An address claimed by several objects goes to the node if it is one of
//! its addresses, else to the pod with the smallest namespace/name. Its
//! exact entry carries the winner's identity and the region of the address
//! (its longest containing region prefix, else `IDENTITY_WORLD`); every
//! region prefix maps to its own identity in the LPM maps.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use palisade_common::{IDENTITY_HOST, IDENTITY_WORLD, IpcacheValue};

use crate::cidr::Regions;
use crate::rules::PodState;
use crate::state::PodRef;

/// Who claims an address in the exact ipcache. Ordered by precedence: the
/// node's own addresses win, then the pod with the smallest
/// namespace/name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Claim {
    Host,
    Pod(PodRef),
}

/// The claims on one address, in precedence order: a sorted vector without
/// duplicates. Nearly every address has a single claim, and a one-element
/// `BTreeSet` would allocate a whole node (~0.5 KiB) per address.
#[derive(Clone, Debug, Default)]
struct Claims(Vec<Claim>);

impl Claims {
    fn insert(&mut self, c: Claim) {
        if let Err(i) = self.0.binary_search(&c) {
            // Exactly one more: a growing `Vec` would allocate room for four.
            self.0.reserve_exact(1);
            self.0.insert(i, c);
        }
    }

    fn remove(&mut self, c: &Claim) {
        if let Ok(i) = self.0.binary_search(c) {
            self.0.remove(i);
        }
    }

    /// The claim in force.
    fn first(&self) -> Option<&Claim> {
        self.0.first()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Address claims, this node's addresses and the CIDR regions.
#[derive(Debug, Default)]
pub(crate) struct Ipcache {
    host: BTreeSet<IpAddr>,
    claims: BTreeMap<IpAddr, Claims>,
    /// The regions: every prefix a valid policy mentions.
    pub(crate) regions: Regions,
}

impl Ipcache {
    /// This node's addresses as last set.
    pub(crate) fn host(&self) -> &BTreeSet<IpAddr> {
        &self.host
    }

    fn unclaim(&mut self, addr: &IpAddr, claim: &Claim) {
        if let Some(c) = self.claims.get_mut(addr) {
            c.remove(claim);
            if c.is_empty() {
                self.claims.remove(addr);
            }
        }
    }

    /// Sets this node's addresses; adds every address gained or lost to
    /// `changed`.
    pub(crate) fn set_host(&mut self, addrs: BTreeSet<IpAddr>, changed: &mut BTreeSet<IpAddr>) {
        let old = std::mem::take(&mut self.host);
        for a in old.difference(&addrs) {
            self.unclaim(a, &Claim::Host);
            changed.insert(*a);
        }
        for a in addrs.difference(&old) {
            self.claims.entry(*a).or_default().insert(Claim::Host);
            changed.insert(*a);
        }
        self.host = addrs;
    }

    /// Moves `pod`'s claims from the addresses `old` to `new`; adds all of
    /// them to `changed`.
    pub(crate) fn move_pod(
        &mut self,
        pod: &PodRef,
        old: &[IpAddr],
        new: &[IpAddr],
        changed: &mut BTreeSet<IpAddr>,
    ) {
        let claim = Claim::Pod(pod.clone());
        for ip in old {
            self.unclaim(ip, &claim);
            changed.insert(*ip);
        }
        for ip in new {
            self.claims.entry(*ip).or_default().insert(claim.clone());
            changed.insert(*ip);
        }
    }

    /// The claimed addresses inside `net`.
    pub(crate) fn addresses_in(&self, net: IpNet) -> impl Iterator<Item = IpAddr> + '_ {
        self.claims
            .range(net.network()..=net.broadcast())
            .map(|(a, _)| *a)
    }

    /// The claim in force on `addr`.
    pub(crate) fn claim(&self, addr: &IpAddr) -> Option<&Claim> {
        self.claims.get(addr)?.first()
    }

    /// Every claimed address with the claim in force.
    pub(crate) fn claimed(&self) -> impl Iterator<Item = (&IpAddr, &Claim)> {
        self.claims
            .iter()
            .filter_map(|(a, c)| Some((a, c.first()?)))
    }

    /// The exact entry of `addr` (`None`: no live claim).
    pub(crate) fn exact_value(
        &self,
        addr: &IpAddr,
        pods: &BTreeMap<PodRef, PodState>,
    ) -> Option<IpcacheValue> {
        let identity = match self.claim(addr)? {
            Claim::Host => IDENTITY_HOST,
            Claim::Pod(p) => pods.get(p)?.identity?,
        };
        let cidr_identity = self
            .regions
            .longest(*addr)
            .map_or(IDENTITY_WORLD, |(_, id)| id);
        Some(IpcacheValue {
            identity,
            cidr_identity,
        })
    }

    /// The LPM entry of exactly `prefix` (`None`: not a region).
    pub(crate) fn lpm_value(&self, prefix: &IpNet) -> Option<IpcacheValue> {
        self.regions.id(prefix).map(|id| IpcacheValue {
            identity: id,
            cidr_identity: id,
        })
    }
}
