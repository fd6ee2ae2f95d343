//! The test world most datapath tests start from: one pod and one peer (a
//! documented test address of each family), and the pod's endpoint
//! isolated in both directions with both addresses in the ipcache and the
//! pod's own addresses as the sources it may send from.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use palisade_common::{EndpointInfo, IDENTITY_WORLD, IpcacheValue, endpoint_flags as ef};

use crate::bpf::{TEST_IFINDEX, TestDatapath};

/// The pod's address (198.18.0.0/15, RFC 2544 benchmarking range).
pub fn pod4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10))
}
/// The peer's address.
pub fn peer4() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, 20))
}
/// The pod's IPv6 address (2001:db8::/32, documentation range).
pub fn pod6() -> IpAddr {
    IpAddr::V6("2001:db8::10".parse::<Ipv6Addr>().unwrap())
}
/// The peer's IPv6 address.
pub fn peer6() -> IpAddr {
    IpAddr::V6("2001:db8::20".parse::<Ipv6Addr>().unwrap())
}
/// The pod's address of the family.
pub fn pod(v6: bool) -> IpAddr {
    if v6 { pod6() } else { pod4() }
}
/// The peer's address of the family.
pub fn peer(v6: bool) -> IpAddr {
    if v6 { peer6() } else { peer4() }
}

/// A datapath whose endpoint `ep_id` (identity `pod_id`) is isolated in
/// both directions, with the pod and the peer (identity `peer_id`) in the
/// ipcache in both families.
pub fn isolated(ep_id: u32, pod_id: u32, peer_id: u32) -> TestDatapath {
    let mut t = TestDatapath::new();
    t.set_endpoint(EndpointInfo {
        ep_id,
        identity: pod_id,
        flags: ef::ISOLATED_INGRESS | ef::ISOLATED_EGRESS,
        _pad: 0,
    });
    for (a, id) in [
        (pod4(), pod_id),
        (peer4(), peer_id),
        (pod6(), pod_id),
        (peer6(), peer_id),
    ] {
        t.ipcache_exact(
            a,
            IpcacheValue {
                identity: id,
                cidr_identity: IDENTITY_WORLD,
            },
        );
    }
    for a in [pod4(), pod6()] {
        t.allow_source(TEST_IFINDEX, a.into());
    }
    t
}
