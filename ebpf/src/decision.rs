//! The policy decision on a flow: given the endpoint's state, the peer's
//! identities and the flow as its opener's packet carried it (direction,
//! protocol, destination port), what policy says. It owns the order of
//! the questions: policy not yet known, the node's exemption, the Admin
//! tier, NetworkPolicy isolation, the Baseline tier, audit mode.
//!
//! For an endpoint no ClusterNetworkPolicy applies to (no `TIERED` bit in
//! that direction) this is NetworkPolicy alone: isolated or not, and if
//! isolated the first entry that allows. Otherwise the three entries of
//! the flow are all read (`policy::said`) and the tiers are walked as the
//! API specifies: the Admin tier's first matching rule decides if it
//! accepts or denies; if it passes or none matches, a pod some
//! NetworkPolicy isolates is decided by NetworkPolicy; any other pod by
//! the Baseline tier's first matching rule (Deny denies; Accept and Pass
//! leave the default, allowed).
//!
//! Both the new-flow path and the revalidation of tracked flows ask it
//! (`datapath`); what follows from the answer (drop, pass and report, what
//! conntrack keeps) is theirs.

use palisade_common::{
    Config, DropReason, EndpointInfo, IDENTITY_HOST, IpcacheValue, config_flags, direction,
    endpoint_flags, tier_code,
};

use crate::policy;

/// What policy says of a flow opened in one direction.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The endpoint's policy is not known yet (`POLICY_PENDING`): nothing
    /// is allowed until it is (fail closed).
    Pending,
    /// No policy decides: the default, allowed, as Kubernetes specifies.
    /// `view_denied`: policies in audit mode would isolate the endpoint
    /// and none of them allows the flow (asked only when the caller wants
    /// to report it).
    NotIsolated { view_denied: bool },
    /// The peer is the node on the pod's ingress, which is exempt unless
    /// `ENFORCE_HOST` is set.
    Host,
    /// A rule allows the flow.
    Allowed,
    /// A rule denies the flow, or the endpoint is isolated and nothing
    /// allows it. `reason`: `PolicyDenied` (NetworkPolicy isolation),
    /// `AdminDenied` or `BaselineDenied`; `rule`: the deciding tier rule's
    /// code (0 for NetworkPolicy). `audit`: the endpoint audits that
    /// direction (the flow passes and is reported).
    Denied {
        audit: bool,
        reason: DropReason,
        rule: u32,
    },
}

/// The decision on a flow of IP protocol `ip_proto` to destination port
/// `port` (0 for protocols without ports) opened in `dir` between endpoint
/// `ep` and `peer`. With `report_view`, a flow that passes only because
/// the endpoint is not isolated is also looked up in the audited policies'
/// view (one to three more lookups).
#[inline(always)]
pub fn decide(
    ep: &EndpointInfo,
    dir: u8,
    peer: &IpcacheValue,
    ip_proto: u8,
    port: u16,
    cfg: &Config,
    report_view: bool,
) -> Decision {
    // Fail closed: the agent has not written this endpoint's policy yet.
    if ep.flags & endpoint_flags::POLICY_PENDING != 0 {
        return Decision::Pending;
    }
    let host_exempt = dir == direction::INGRESS
        && peer.identity == IDENTITY_HOST
        && cfg.flags & config_flags::ENFORCE_HOST == 0;
    let audit = ep.flags & endpoint_flags::audit(dir) != 0;
    let isolated = ep.flags & endpoint_flags::isolated(dir) != 0;
    if ep.flags & endpoint_flags::tiered(dir) != 0 {
        if host_exempt {
            return Decision::Host;
        }
        return tiered(ep, dir, peer, ip_proto, port, isolated, audit);
    }
    if !isolated {
        let view_denied = report_view
            && ep.flags & endpoint_flags::view_isolated(dir) != 0
            && !host_exempt
            && !policy::allows(ep.ep_id, dir, 1, peer, ip_proto, port);
        return Decision::NotIsolated { view_denied };
    }
    if host_exempt {
        Decision::Host
    } else if policy::allows(ep.ep_id, dir, 0, peer, ip_proto, port) {
        Decision::Allowed
    } else {
        Decision::Denied {
            audit,
            reason: DropReason::PolicyDenied,
            rule: 0,
        }
    }
}

/// The tiers' walk for an endpoint some ClusterNetworkPolicy applies to.
#[inline(always)]
fn tiered(
    ep: &EndpointInfo,
    dir: u8,
    peer: &IpcacheValue,
    ip_proto: u8,
    port: u16,
    isolated: bool,
    audit: bool,
) -> Decision {
    let said = policy::said(ep.ep_id, dir, 0, peer, ip_proto, port);
    match tier_code::action(said.admin) {
        tier_code::ACCEPT => return Decision::Allowed,
        tier_code::DENY => {
            return Decision::Denied {
                audit,
                reason: DropReason::AdminDenied,
                rule: said.admin,
            };
        }
        // Pass, or no Admin rule: NetworkPolicy, then Baseline.
        _ => {}
    }
    if isolated {
        return if said.allowed {
            Decision::Allowed
        } else {
            Decision::Denied {
                audit,
                reason: DropReason::PolicyDenied,
                rule: 0,
            }
        };
    }
    match tier_code::action(said.baseline) {
        tier_code::DENY => Decision::Denied {
            audit,
            reason: DropReason::BaselineDenied,
            rule: said.baseline,
        },
        tier_code::ACCEPT | tier_code::PASS => Decision::Allowed,
        _ => Decision::NotIsolated { view_denied: false },
    }
}
