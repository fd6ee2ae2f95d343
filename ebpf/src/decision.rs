//! The policy decision on a flow: given the endpoint's state, the peer's
//! identities and the flow as its opener's packet carried it (direction,
//! protocol, destination port), what NetworkPolicy says. It owns the order
//! of the questions: policy not yet known, isolation in that direction, the
//! node's exemption, the policy lookups (`policy`), audit mode.
//!
//! Both the new-flow path and the revalidation of tracked flows ask it
//! (`datapath`); what follows from the answer (drop, pass and report, what
//! conntrack keeps) is theirs.

use palisade_common::{
    Config, EndpointInfo, IDENTITY_HOST, IpcacheValue, config_flags, direction, endpoint_flags,
};

use crate::policy;

/// What policy says of a flow opened in one direction.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The endpoint's policy is not known yet (`POLICY_PENDING`): nothing
    /// is allowed until it is (fail closed).
    Pending,
    /// The endpoint is not isolated in that direction: everything is
    /// allowed, as Kubernetes specifies. `view_denied`: policies in audit
    /// mode would isolate it and none of them allows the flow (asked only
    /// when the caller wants to report it).
    NotIsolated { view_denied: bool },
    /// Isolated, and the peer is the node on the pod's ingress, which is
    /// exempt unless `ENFORCE_HOST` is set.
    Host,
    /// Isolated, and a policy allows the flow.
    Allowed,
    /// Isolated, and no policy allows the flow. `audit`: the endpoint
    /// audits that direction (the flow passes and is reported).
    Denied { audit: bool },
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
    if ep.flags & endpoint_flags::isolated(dir) == 0 {
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
            audit: ep.flags & endpoint_flags::audit(dir) != 0,
        }
    }
}
