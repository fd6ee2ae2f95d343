//! CIDR regions: every prefix some valid policy mentions (a `cidr` or an
//! `except`), refcounted by the policies mentioning it, with a stable
//! identity `>= CIDR_IDENTITY_BASE` while mentioned.
//!
//! An address belongs to the region of its longest containing prefix
//! ([`Regions::longest`]); an ipBlock allows exactly the regions it
//! contains and no except contains ([`crate::model::IpBlock::allows_region`]).
//! Regions that lose their last reference stay registered (with their id)
//! until the commit sweeps them, so a prefix dropped and re-added within one
//! batch keeps its identity.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use palisade_common::CIDR_IDENTITY_BASE;

use crate::ids::Numbers;

#[derive(Clone, Debug)]
struct Region {
    id: u32,
    refs: u32,
}

/// The registry of CIDR regions.
#[derive(Clone, Debug)]
pub(crate) struct Regions {
    by_net: BTreeMap<IpNet, Region>,
    by_id: HashMap<u32, IpNet>,
    /// Per family (0 = v4, 1 = v6): prefix length → number of regions.
    lens: [BTreeMap<u8, u32>; 2],
    pub(crate) alloc: Numbers<IpNet>,
}

fn family(net: &IpNet) -> usize {
    match net {
        IpNet::V4(_) => 0,
        IpNet::V6(_) => 1,
    }
}

fn prefix_of(addr: IpAddr, len: u8) -> Option<IpNet> {
    IpNet::new(addr, len).ok().map(|n| n.trunc())
}

impl Default for Regions {
    fn default() -> Self {
        Regions {
            by_net: BTreeMap::new(),
            by_id: HashMap::new(),
            lens: [BTreeMap::new(), BTreeMap::new()],
            alloc: Numbers::new(CIDR_IDENTITY_BASE, u32::MAX),
        }
    }
}

impl Regions {
    /// Adds a reference to `net` (already truncated). Returns its id and
    /// whether the region is new; `None` if no id is left.
    pub(crate) fn acquire(&mut self, net: IpNet) -> Option<(u32, bool)> {
        if let Some(r) = self.by_net.get_mut(&net) {
            r.refs += 1;
            return Some((r.id, false));
        }
        let id = self.alloc.number_for(&net)?;
        self.by_net.insert(net, Region { id, refs: 1 });
        self.by_id.insert(id, net);
        *self.lens[family(&net)].entry(net.prefix_len()).or_default() += 1;
        Some((id, true))
    }

    /// Drops a reference to `net`.
    pub(crate) fn release(&mut self, net: &IpNet) {
        if let Some(r) = self.by_net.get_mut(net) {
            r.refs = r.refs.saturating_sub(1);
        }
    }

    /// Removes the regions without references; their ids become reusable
    /// after [`Regions::flush`].
    pub(crate) fn sweep(&mut self) -> Vec<(IpNet, u32)> {
        let dead: Vec<(IpNet, u32)> = self
            .by_net
            .iter()
            .filter(|(_, r)| r.refs == 0)
            .map(|(n, r)| (*n, r.id))
            .collect();
        for (net, id) in &dead {
            self.by_net.remove(net);
            self.by_id.remove(id);
            let lens = &mut self.lens[family(net)];
            if let Some(c) = lens.get_mut(&net.prefix_len()) {
                *c -= 1;
                if *c == 0 {
                    lens.remove(&net.prefix_len());
                }
            }
            self.alloc.release_later(*id);
        }
        dead
    }

    /// Makes swept ids reusable.
    pub(crate) fn flush(&mut self) {
        self.alloc.flush();
    }

    /// The id of the region `net`, if registered.
    pub(crate) fn id(&self, net: &IpNet) -> Option<u32> {
        self.by_net.get(net).map(|r| r.id)
    }

    /// Every region: (id, prefix).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, IpNet)> + '_ {
        self.by_id.iter().map(|(id, net)| (*id, *net))
    }

    /// The prefix of region `id`.
    pub(crate) fn net(&self, id: u32) -> Option<IpNet> {
        self.by_id.get(&id).copied()
    }

    /// The most specific region containing `addr`.
    pub(crate) fn longest(&self, addr: IpAddr) -> Option<(IpNet, u32)> {
        let fam = if addr.is_ipv4() { 0 } else { 1 };
        for &len in self.lens[fam].keys().rev() {
            if let Some(net) = prefix_of(addr, len)
                && let Some(r) = self.by_net.get(&net)
            {
                return Some((net, r.id));
            }
        }
        None
    }

    /// Every region inside `net` (`net` itself included).
    pub(crate) fn within(&self, net: IpNet) -> impl Iterator<Item = (IpNet, u32)> + '_ {
        let (lo, hi) = match net {
            IpNet::V4(n) => (
                IpNet::V4(Ipv4Net::new_assert(n.network(), n.prefix_len())),
                IpNet::V4(Ipv4Net::new_assert(n.broadcast(), 32)),
            ),
            IpNet::V6(n) => (
                IpNet::V6(Ipv6Net::new_assert(n.network(), n.prefix_len())),
                IpNet::V6(Ipv6Net::new_assert(n.broadcast(), 128)),
            ),
        };
        self.by_net
            .range(lo..=hi)
            .filter(move |(n, _)| net.contains(*n))
            .map(|(n, r)| (*n, r.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn longest_and_within() {
        let mut r = Regions::default();
        let (a, new_a) = r.acquire(n("10.0.0.0/8")).unwrap();
        let (b, _) = r.acquire(n("10.1.0.0/16")).unwrap();
        let (c, _) = r.acquire(n("2001:db8::/32")).unwrap();
        assert!(new_a && a >= CIDR_IDENTITY_BASE && a != b && b != c);
        assert_eq!(r.acquire(n("10.0.0.0/8")).unwrap(), (a, false));
        assert_eq!(r.longest("10.1.2.3".parse().unwrap()).map(|x| x.1), Some(b));
        assert_eq!(r.longest("10.2.2.3".parse().unwrap()).map(|x| x.1), Some(a));
        assert_eq!(r.longest("11.0.0.1".parse().unwrap()), None);
        assert_eq!(
            r.longest("2001:db8::1".parse().unwrap()).map(|x| x.1),
            Some(c)
        );
        let inside: Vec<u32> = r.within(n("10.0.0.0/8")).map(|x| x.1).collect();
        assert_eq!(inside, vec![a, b]);
        let inside: Vec<u32> = r.within(n("10.1.0.0/16")).map(|x| x.1).collect();
        assert_eq!(inside, vec![b]);
        // refcounted: released twice before the sweep removes it
        r.release(&n("10.0.0.0/8"));
        assert!(r.sweep().is_empty());
        r.release(&n("10.0.0.0/8"));
        assert_eq!(r.sweep(), vec![(n("10.0.0.0/8"), a)]);
        assert_eq!(r.longest("10.2.2.3".parse().unwrap()), None);
    }
}
