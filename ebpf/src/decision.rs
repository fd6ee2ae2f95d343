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
//! Where the endpoint has an audit view in that direction (policies in
//! audit mode beside the enforced ones, `audit.rs` in the compiler), a flow
//! policy lets through is judged again by the view: NetworkPolicy alone
//! (`VIEW_ISOLATED`) or the same tier walk on the view's entries
//! (`VIEW_TIERED`), and what it would deny is reported.
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
    /// `view`: what the audit view would deny (asked only when the caller
    /// wants to report it).
    NotIsolated { view: ViewDenied },
    /// The peer is the node on the pod's ingress, which is exempt unless
    /// `ENFORCE_HOST` is set.
    Host,
    /// A rule allows the flow. `view`: as for [`Decision::NotIsolated`].
    Allowed { view: ViewDenied },
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

/// What the audit view (policies in audit mode beside the enforced ones)
/// would do to a flow policy lets through: `rule` is the deciding tier
/// rule's code (0 for NetworkPolicy); `reason` is meaningful only when
/// `denied`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ViewDenied {
    /// The view would deny the flow.
    pub denied: bool,
    /// Why (`PolicyDenied`, `AdminDenied` or `BaselineDenied`).
    pub reason: DropReason,
    /// The deciding tier rule's code, 0 for NetworkPolicy.
    pub rule: u32,
}

impl ViewDenied {
    const NO: ViewDenied = ViewDenied {
        denied: false,
        reason: DropReason::PolicyDenied,
        rule: 0,
    };
}

/// The decision on a flow of IP protocol `ip_proto` to destination port
/// `port` (0 for protocols without ports) opened in `dir` between endpoint
/// `ep` and `peer`. With `report_view`, a flow policy lets through is also
/// judged by the audit view where the endpoint has one in `dir` (one to
/// three more lookups).
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
    let tiered = ep.flags & endpoint_flags::tiered(dir) != 0;
    // The node's exemption: ahead of every tier; for NetworkPolicy alone,
    // only where it isolates (a pod it does not isolate is open anyway).
    if host_exempt && (tiered || isolated) {
        return Decision::Host;
    }
    let verdict = if tiered {
        walk(ep.ep_id, dir, 0, peer, ip_proto, port, isolated)
    } else if !isolated {
        Walked::NotIsolated
    } else if policy::allows(ep.ep_id, dir, 0, peer, ip_proto, port) {
        Walked::Allowed
    } else {
        Walked::Denied {
            reason: DropReason::PolicyDenied,
            rule: 0,
        }
    };
    match verdict {
        Walked::Denied { reason, rule } => Decision::Denied {
            audit,
            reason,
            rule,
        },
        Walked::Allowed => Decision::Allowed {
            view: view(ep, dir, peer, ip_proto, port, report_view && !host_exempt),
        },
        Walked::NotIsolated => Decision::NotIsolated {
            view: view(ep, dir, peer, ip_proto, port, report_view && !host_exempt),
        },
    }
}

/// What the endpoint's audit view in `dir`, if it has one, would deny of a
/// flow policy lets through (asked only with `report`).
#[inline(always)]
fn view(
    ep: &EndpointInfo,
    dir: u8,
    peer: &IpcacheValue,
    ip_proto: u8,
    port: u16,
    report: bool,
) -> ViewDenied {
    if !report {
        return ViewDenied::NO;
    }
    let isolated = ep.flags & endpoint_flags::isolated(dir) != 0;
    let view_isolated = ep.flags & endpoint_flags::view_isolated(dir) != 0;
    if ep.flags & endpoint_flags::view_tiered(dir) != 0 {
        match walk(
            ep.ep_id,
            dir,
            1,
            peer,
            ip_proto,
            port,
            isolated || view_isolated,
        ) {
            Walked::Denied { reason, rule } => ViewDenied {
                denied: true,
                reason,
                rule,
            },
            _ => ViewDenied::NO,
        }
    } else if view_isolated && !policy::allows(ep.ep_id, dir, 1, peer, ip_proto, port) {
        ViewDenied {
            denied: true,
            reason: DropReason::PolicyDenied,
            rule: 0,
        }
    } else {
        ViewDenied::NO
    }
}

/// What one view's policies say of a flow.
#[derive(Clone, Copy)]
enum Walked {
    /// No policy decides (the default, allowed).
    NotIsolated,
    /// A rule allows it.
    Allowed,
    /// A rule denies it, or isolation with nothing allowing it.
    Denied { reason: DropReason, rule: u32 },
}

/// [`palisade_tier_walk`]'s answer kinds.
const WALK_NOT_ISOLATED: u64 = 0;
const WALK_ALLOWED: u64 = 1;
const WALK_DENIED: u64 = 2;

/// The tiers' walk in `view` for an endpoint some ClusterNetworkPolicy
/// applies to (`isolated`: some NetworkPolicy of the view isolates it).
#[inline(always)]
fn walk(
    ep_id: u32,
    dir: u8,
    view: u8,
    peer: &IpcacheValue,
    ip_proto: u8,
    port: u16,
    isolated: bool,
) -> Walked {
    let flow = port as u32 | (ip_proto as u32) << 16 | (dir as u32) << 24;
    let how = view as u32 | (isolated as u32) << 8;
    let w = palisade_tier_walk(ep_id, peer.identity, peer.cidr_identity, flow, how);
    let rule = w as u32;
    let reason = match (w >> 32) & 0xff {
        1 => DropReason::AdminDenied,
        2 => DropReason::BaselineDenied,
        _ => DropReason::PolicyDenied,
    };
    match w >> 40 {
        WALK_ALLOWED => Walked::Allowed,
        WALK_DENIED => Walked::Denied { reason, rule },
        _ => Walked::NotIsolated,
    }
}

/// The tiers' walk as the API specifies it: the Admin tier's first
/// matching rule decides if it accepts or denies; if it passes or none
/// matches, a pod some NetworkPolicy isolates (`how >> 8 & 1`) is decided
/// by NetworkPolicy; any other pod by the Baseline tier's first matching
/// rule (Deny denies; Accept and Pass leave the default, allowed).
///
/// `flow` is `port | ip_proto << 16 | direction << 24`, `how` is
/// `view | isolated << 8` (a BPF function takes at most five arguments).
/// Returns `kind << 40 | reason << 32 | rule`: kind 0 not isolated, 1
/// allowed, 2 denied; reason 0 NetworkPolicy, 1 Admin, 2 Baseline; rule
/// the deciding tier rule's code.
///
/// A global function: the verifier checks it once, on its own, instead of
/// once per place that walks a view (the enforced walk and the audit view
/// on the new-flow path, the revalidation).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn palisade_tier_walk(
    ep_id: u32,
    identity: u32,
    cidr_identity: u32,
    flow: u32,
    how: u32,
) -> u64 {
    let port = flow as u16;
    let isolated = (how >> 8) & 1 != 0;
    let said = policy::said(
        ep_id,
        (flow >> 24) as u8,
        how as u8,
        identity,
        cidr_identity,
        (flow >> 16) as u8,
        port,
    );
    let denied = |reason: u64, rule: u32| WALK_DENIED << 40 | reason << 32 | rule as u64;
    match tier_code::action(said.admin) {
        tier_code::ACCEPT => return WALK_ALLOWED << 40,
        tier_code::DENY => return denied(1, said.admin),
        // Pass, or no Admin rule: NetworkPolicy, then Baseline.
        _ => {}
    }
    if isolated {
        return if said.allowed {
            WALK_ALLOWED << 40
        } else {
            denied(0, 0)
        };
    }
    match tier_code::action(said.baseline) {
        tier_code::DENY => denied(2, said.baseline),
        tier_code::ACCEPT | tier_code::PASS => WALK_ALLOWED << 40,
        _ => WALK_NOT_ISOLATED << 40,
    }
}
