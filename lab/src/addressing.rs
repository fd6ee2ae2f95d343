//! The lab's address plan, all from documentation/benchmarking ranges:
//!
//! | what                       | IPv4                | IPv6                      |
//! |----------------------------|---------------------|---------------------------|
//! | node `i` on the fabric     | `198.19.0.i/24`     | `2001:db8:fab::i/64`      |
//! | pods of node `i` (CIDR)    | `198.18.i.0/24`     | `2001:db8:i::/64` (`i` hex) |
//! | pod `k` of node `i`        | `198.18.i.k/32`     | `2001:db8:i::k/128`       |
//! | pod gateway (host veth)    | `169.254.1.1` (proxy ARP) | `fe80::1`           |
//!
//! Node indices run 1..=[`MAX_NODES`], pod indices [`FIRST_POD`]..=[`LAST_POD`].
//! Every lab has its own namespaces, so addresses repeat across labs.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Pods' IPv4 next hop, answered by proxy ARP on the host veth (as Calico).
pub const POD_GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// Pods' IPv6 next hop, a link-local address on every host veth.
pub const POD_GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// Most nodes one lab can hold.
pub const MAX_NODES: u8 = 250;
/// Index of the first pod on a node (lower host numbers stay free).
pub const FIRST_POD: u8 = 10;
/// Index of the last pod on a node.
pub const LAST_POD: u8 = 250;

/// Node `i`'s fabric (host) IPv4 address.
pub fn node_v4(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, i)
}

/// Node `i`'s fabric (host) IPv6 address.
pub fn node_v6(i: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xfab, 0, 0, 0, 0, u16::from(i))
}

/// Node `i`'s IPv4 pod CIDR, as `ip` writes it.
pub fn pod_cidr_v4(i: u8) -> String {
    format!("198.18.{i}.0/24")
}

/// Node `i`'s IPv6 pod CIDR, as `ip` writes it.
pub fn pod_cidr_v6(i: u8) -> String {
    format!("2001:db8:{i:x}::/64")
}

/// Pod `k`'s IPv4 address on node `i`.
pub fn pod_v4(i: u8, k: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, i, k)
}

/// Pod `k`'s IPv6 address on node `i`.
pub fn pod_v6(i: u8, k: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, u16::from(i), 0, 0, 0, 0, u16::from(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_fall_in_their_node_cidr() {
        assert_eq!(pod_v4(3, 10).to_string(), "198.18.3.10");
        assert_eq!(pod_cidr_v4(3), "198.18.3.0/24");
        assert_eq!(pod_v6(12, 10).to_string(), "2001:db8:c::a");
        assert_eq!(pod_cidr_v6(12), "2001:db8:c::/64");
        assert_eq!(node_v6(2).to_string(), "2001:db8:fab::2");
    }
}
