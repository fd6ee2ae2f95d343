//! A pure-Rust model of how the datapath judges the first packet of a flow,
//! written from the map contract in `palisade-common` and deliberately not
//! from the eBPF code: longest-prefix match by scanning every prefix, port
//! sets as plain ranges and bitmaps, and every candidate identity tried.
//! The differential test holds the real programs to it. [`conntrack`]
//! models which later packets of a flow pass without policy.
//!
//! Source verification, from the rule as the issue states it: a packet the
//! pod sends (egress) whose source address lies in none of the prefixes
//! listed for its interface is `invalid-source` — dropped, or with
//! `SOURCE_VERIFY_AUDIT` passed and reported unless something else drops
//! it — and `SOURCE_VERIFY_OFF` skips the rule. An interface without an
//! endpoint keeps its own rule.
//!
//! ClusterNetworkPolicy tiers, from the API's order: for an endpoint
//! whose flags mark a direction tiered, the Admin tier's first matching
//! rule (the largest code of the flow's entries) accepts or denies; on
//! Pass or no match NetworkPolicy decides a pod it isolates; any other pod
//! is denied only by a Baseline Deny. A tier table that is not there
//! denies ahead of every rule.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use palisade_common::{
    DropReason, EndpointInfo, IDENTITY_ANY, IDENTITY_HOST, IDENTITY_WORLD, IpcacheValue, PolicyKey,
    PolicyValue, PortBitmap, TierCodes, TierTable, config_flags, direction, endpoint_flags,
    tier_code,
};

use crate::packet::{L4, PacketSpec};

pub mod conntrack;

/// What the model expects for a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Passed, nothing reported.
    Pass,
    /// Dropped with this reason.
    Drop(DropReason),
    /// Passed, reported as a would-drop with this reason.
    Audited(DropReason),
}

/// The map contents the model judges with.
#[derive(Clone, Debug, Default)]
pub struct Contents {
    /// The endpoint under test, if any.
    pub endpoint: Option<EndpointInfo>,
    /// `Config::flags`.
    pub config_flags: u32,
    /// `POLICY`.
    pub policy: BTreeMap<PolicyKey, PolicyValue>,
    /// `PORTSETS`.
    pub portsets: BTreeMap<u32, PortBitmap>,
    /// `TIERSETS`.
    pub tiersets: BTreeMap<u32, TierTable>,
    /// Exact ipcache entries.
    pub exact: BTreeMap<IpAddr, IpcacheValue>,
    /// CIDR regions: prefix → identity.
    pub prefixes: Vec<(IpNet, u32)>,
    /// `SOURCES_V4/V6` of the test interface: what the pod may send from.
    pub sources: Vec<IpNet>,
}

impl Contents {
    /// The endpoint under test with these flags, and nothing else.
    pub fn endpoint(ep_id: u32, identity: u32, flags: u32) -> Self {
        Contents {
            endpoint: Some(EndpointInfo {
                ep_id,
                identity,
                flags,
                _pad: 0,
            }),
            ..Default::default()
        }
    }

    /// (identity, CIDR identity) of an address.
    pub fn identities(&self, addr: IpAddr) -> (u32, u32) {
        if let Some(v) = self.exact.get(&addr) {
            return (v.identity, v.cidr_identity);
        }
        let best = self
            .prefixes
            .iter()
            .filter(|(net, _)| net.contains(&addr))
            .max_by_key(|(net, _)| net.prefix_len());
        match best {
            Some((_, id)) => (*id, *id),
            None => (IDENTITY_WORLD, IDENTITY_WORLD),
        }
    }

    fn port_ok(&self, v: &PolicyValue, port: u16) -> bool {
        if v.portset == 0 {
            (v.port_lo..=v.port_hi).contains(&port)
        } else {
            self.portsets.get(&v.portset).is_some_and(|b| {
                let word = b.words[usize::from(port) / 64];
                word & (1u64 << (port % 64)) != 0
            })
        }
    }

    /// The tier codes an entry gives `port`.
    fn codes(&self, v: &PolicyValue, port: u16) -> TierCodes {
        if v.tierset == 0 {
            return if (v.tier_lo..=v.tier_hi).contains(&port) {
                v.codes
            } else {
                TierCodes::NONE
            };
        }
        match self.tiersets.get(&v.tierset) {
            Some(table) => {
                // The segment holding `port`: the last one starting at or
                // before it (scanned, not searched).
                let i = (0..table.starts.len())
                    .rev()
                    .find(|&i| table.starts[i] <= port)
                    .unwrap_or(0);
                table.codes[i]
            }
            None => TierCodes {
                admin: tier_code::BOTTOM,
                baseline: tier_code::BOTTOM,
            },
        }
    }

    /// The entries of a flow: (NetworkPolicy allows, Admin code, Baseline
    /// code), over the peer's identity, its CIDR identity and any peer.
    fn says(
        &self,
        ep_id: u32,
        dir: u8,
        view: u8,
        peer: IpAddr,
        spec: &PacketSpec,
    ) -> (bool, u32, u32) {
        let (class, port) = match &spec.l4 {
            L4::Tcp { dport, .. } => (6, *dport),
            L4::Udp { dport, .. } => (17, *dport),
            L4::Sctp { dport, .. } => (132, *dport),
            _ => (255, 0),
        };
        let (id, cidr) = self.identities(peer);
        let mut said = (false, tier_code::NONE, tier_code::NONE);
        for identity in [id, cidr, IDENTITY_ANY] {
            let key = PolicyKey {
                ep_id,
                identity,
                direction: dir,
                proto: class,
                view,
                _pad: 0,
            };
            if let Some(v) = self.policy.get(&key) {
                said.0 |= self.port_ok(v, port);
                let codes = self.codes(v, port);
                said.1 = said.1.max(codes.admin);
                said.2 = said.2.max(codes.baseline);
            }
        }
        said
    }

    fn allowed(&self, ep_id: u32, dir: u8, view: u8, peer: IpAddr, spec: &PacketSpec) -> bool {
        self.says(ep_id, dir, view, peer, spec).0
    }

    /// The verdict on the first packet of a flow (no connection state).
    pub fn decide(&self, dir: u8, spec: &PacketSpec) -> Expect {
        let spoofed = dir == direction::EGRESS
            && self.config_flags & config_flags::SOURCE_VERIFY_OFF == 0
            && self.endpoint.is_some()
            && !self.sources.iter().any(|n| n.contains(&spec.src));
        if !spoofed {
            return self.decide_policy(dir, spec);
        }
        if self.config_flags & config_flags::SOURCE_VERIFY_AUDIT == 0 {
            return Expect::Drop(DropReason::InvalidSource);
        }
        match self.decide_policy(dir, spec) {
            Expect::Drop(r) => Expect::Drop(r),
            _ => Expect::Audited(DropReason::InvalidSource),
        }
    }

    /// The verdict of endpoint state and policy alone.
    fn decide_policy(&self, dir: u8, spec: &PacketSpec) -> Expect {
        let Some(ep) = self.endpoint else {
            return if self.config_flags & config_flags::UNKNOWN_ENDPOINT_PASS != 0 {
                Expect::Pass
            } else {
                Expect::Drop(DropReason::UnknownEndpoint)
            };
        };
        if ep.flags & endpoint_flags::POLICY_PENDING != 0 {
            return Expect::Drop(DropReason::PolicyPending);
        }
        let peer = if dir == direction::INGRESS {
            spec.src
        } else {
            spec.dst
        };
        let host_exempt = dir == direction::INGRESS
            && self.identities(peer).0 == IDENTITY_HOST
            && self.config_flags & config_flags::ENFORCE_HOST == 0;
        let flags = ep.flags;
        let isolated = flags & endpoint_flags::isolated(dir) != 0;
        let tiered = flags & endpoint_flags::tiered(dir) != 0;
        let deny = |reason| {
            if flags & endpoint_flags::audit(dir) != 0 {
                Expect::Audited(reason)
            } else {
                Expect::Drop(reason)
            }
        };
        // What the audit view says of a flow policy lets through.
        let view = || {
            if host_exempt {
                return Expect::Pass;
            }
            let view_isolated = flags & endpoint_flags::view_isolated(dir) != 0;
            if flags & endpoint_flags::view_tiered(dir) != 0 {
                let said = self.says(ep.ep_id, dir, 1, peer, spec);
                return match walk(said, isolated || view_isolated) {
                    Walk::Denied(reason) => Expect::Audited(reason),
                    _ => Expect::Pass,
                };
            }
            if view_isolated && !self.allowed(ep.ep_id, dir, 1, peer, spec) {
                return Expect::Audited(DropReason::PolicyDenied);
            }
            Expect::Pass
        };
        if tiered {
            if host_exempt {
                return Expect::Pass;
            }
            return match walk(self.says(ep.ep_id, dir, 0, peer, spec), isolated) {
                Walk::Denied(reason) => deny(reason),
                _ => view(),
            };
        }
        if !isolated {
            return view();
        }
        if host_exempt {
            return Expect::Pass;
        }
        if self.allowed(ep.ep_id, dir, 0, peer, spec) {
            return view();
        }
        deny(DropReason::PolicyDenied)
    }
}

/// What one view's entries say of a flow, walked as the API orders the
/// tiers.
enum Walk {
    /// No policy decides.
    Open,
    /// A rule allows it.
    Allowed,
    /// Denied, and why.
    Denied(DropReason),
}

/// The tiers' walk over `(NetworkPolicy allows, Admin code, Baseline
/// code)`; `isolated`: some NetworkPolicy of the view isolates the pod.
fn walk((allowed, admin, baseline): (bool, u32, u32), isolated: bool) -> Walk {
    match tier_code::action(admin) {
        tier_code::ACCEPT => return Walk::Allowed,
        tier_code::DENY => return Walk::Denied(DropReason::AdminDenied),
        _ => {}
    }
    if isolated {
        return if allowed {
            Walk::Allowed
        } else {
            Walk::Denied(DropReason::PolicyDenied)
        };
    }
    match tier_code::action(baseline) {
        tier_code::DENY => Walk::Denied(DropReason::BaselineDenied),
        tier_code::ACCEPT | tier_code::PASS => Walk::Allowed,
        _ => Walk::Open,
    }
}
