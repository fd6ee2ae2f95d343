//! One consistent-enough read of links, host routes and addresses, and the
//! lookup of a pod's host-side interface in it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt as _;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::NetError;

/// Links, host routes and addresses of this network namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetSnapshot {
    /// ifindex → interface name.
    pub links: BTreeMap<u32, String>,
    /// Address → output interface of its host route (no gateway).
    pub host_routes: BTreeMap<IpAddr, u32>,
    /// This node's addresses (loopback and link-local excluded).
    pub addresses: BTreeSet<IpAddr>,
}

/// Where a pod's addresses are routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Every address with a host route goes to this interface.
    Found {
        /// Its index.
        ifindex: u32,
        /// Its name.
        name: String,
    },
    /// No address has a host route (yet).
    NotFound,
    /// The addresses are routed to different interfaces.
    Conflict(Vec<(IpAddr, u32)>),
}

impl NetSnapshot {
    /// The host-side interface of a pod with addresses `ips`.
    pub fn resolve(&self, ips: &[IpAddr]) -> Resolution {
        let hits: Vec<(IpAddr, u32)> = ips
            .iter()
            .filter_map(|ip| self.host_routes.get(ip).map(|i| (*ip, *i)))
            .filter(|(_, i)| self.links.contains_key(i))
            .collect();
        let Some(&(_, first)) = hits.first() else {
            return Resolution::NotFound;
        };
        if hits.iter().any(|(_, i)| *i != first) {
            return Resolution::Conflict(hits);
        }
        Resolution::Found {
            ifindex: first,
            name: self.links[&first].clone(),
        }
    }

    /// The ifindex of interface `name`.
    pub fn ifindex(&self, name: &str) -> Option<u32> {
        self.links
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(i, _)| *i)
    }
}

fn is_node_address(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !a.is_loopback() && !a.is_link_local() && !a.is_unspecified(),
        IpAddr::V6(a) => {
            !a.is_loopback() && !a.is_unspecified() && (a.segments()[0] & 0xffc0) != 0xfe80
        }
    }
}

fn host_route(msg: &RouteMessage) -> Option<(IpAddr, u32)> {
    let h = &msg.header;
    let table = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(h.table));
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) || h.kind != RouteType::Unicast {
        return None;
    }
    let mut dst = None;
    let mut oif = None;
    for a in &msg.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet(d))
                if h.destination_prefix_length == 32 =>
            {
                dst = Some(IpAddr::V4(*d))
            }
            RouteAttribute::Destination(RouteAddress::Inet6(d))
                if h.destination_prefix_length == 128 =>
            {
                dst = Some(IpAddr::V6(*d))
            }
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(_) | RouteAttribute::Via(_) | RouteAttribute::MultiPath(_) => {
                return None;
            }
            _ => {}
        }
    }
    Some((dst?, oif?))
}

/// Reads links, host routes and addresses.
pub async fn snapshot(handle: &Handle) -> Result<NetSnapshot, NetError> {
    let mut snap = NetSnapshot::default();
    let mut links = handle.link().get().execute();
    while let Some(l) = links.try_next().await.map_err(|source| NetError::Dump {
        what: "links",
        source,
    })? {
        if let Some(name) = l.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        }) {
            snap.links.insert(l.header.index, name);
        }
    }
    for req in [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ] {
        let mut routes = handle.route().get(req).execute();
        while let Some(r) = routes.try_next().await.map_err(|source| NetError::Dump {
            what: "routes",
            source,
        })? {
            if let Some((ip, oif)) = host_route(&r) {
                snap.host_routes.insert(ip, oif);
            }
        }
    }
    let mut addrs = handle.address().get().execute();
    while let Some(a) = addrs.try_next().await.map_err(|source| NetError::Dump {
        what: "addresses",
        source,
    })? {
        for attr in &a.attributes {
            if let AddressAttribute::Address(ip) | AddressAttribute::Local(ip) = attr
                && is_node_address(ip)
            {
                snap.addresses.insert(*ip);
            }
        }
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution() {
        let mut s = NetSnapshot::default();
        s.links.insert(5, "caliA".into());
        s.links.insert(6, "caliB".into());
        let (a4, a6, b4): (IpAddr, IpAddr, IpAddr) = (
            "198.18.1.10".parse().unwrap(),
            "2001:db8:1::a".parse().unwrap(),
            "198.18.1.11".parse().unwrap(),
        );
        assert_eq!(s.resolve(&[a4, a6]), Resolution::NotFound);
        s.host_routes.insert(a4, 5);
        s.host_routes.insert(a6, 5);
        assert_eq!(
            s.resolve(&[a4, a6]),
            Resolution::Found {
                ifindex: 5,
                name: "caliA".into()
            }
        );
        s.host_routes.insert(b4, 6);
        assert!(matches!(s.resolve(&[a4, b4]), Resolution::Conflict(_)));
        // A route to an interface that is gone does not count.
        s.links.remove(&6);
        assert_eq!(s.resolve(&[b4]), Resolution::NotFound);
        assert_eq!(s.ifindex("caliA"), Some(5));
        assert!(!is_node_address(&"fe80::1".parse().unwrap()));
        assert!(!is_node_address(&"127.0.0.1".parse().unwrap()));
        assert!(is_node_address(&"198.19.0.1".parse().unwrap()));
    }
}
