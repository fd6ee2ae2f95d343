//! Audit mode: policies annotated `policy.palisade.dev/mode: audit` are
//! evaluated beside the enforced ones and never enforced.
//!
//! * **Endpoint flags.** `ISOLATED_*` come from enforced policies only.
//!   `VIEW_ISOLATED_*` is set for a direction in which some audited policy
//!   selects the pod and no enforced one does: the datapath then consults
//!   the audit view for new flows the pod lets through (it is not isolated
//!   there) and reports the ones the view would drop as audit events.
//! * **Entries.** View 0 (`PolicyKey::view == 0`) holds the allows of the
//!   enforced policies, as before. View 1 holds, for each `VIEW_ISOLATED`
//!   direction, the allows of every selecting policy, enforced or audited
//!   (NetworkPolicy is additive, so "enforced ∪ audited").
//!
//! When enforced policies already isolate a direction, audited policies can
//! only add allows there, so there is nothing to report and no view.
//!
//! The same annotation on a Namespace puts every policy of the namespace in
//! audit mode. [`crate::Compiler::set_audit_all`] (the agent's `--audit`) instead
//! keeps every policy enforced in the maps and sets `AUDIT_INGRESS` and
//! `AUDIT_EGRESS` on every endpoint: the datapath then passes would-drops
//! and reports them.
//!
//! This module owns the audit scope ([`AuditScope`]: annotated namespaces,
//! `--audit`), which policies are audited, the endpoint flags and the
//! entries of both views. `validate.rs` reads the annotation; the engine
//! sets the scope.

use std::collections::{BTreeMap, BTreeSet};

use palisade_common::{direction, endpoint_flags};

use crate::identity::Identities;
use crate::model::PodObj;
use crate::rules::{PolicyState, RowDirt, compute_row};

/// Audit mode set on namespaces or globally.
#[derive(Clone, Debug, Default)]
pub(crate) struct AuditScope {
    /// Namespaces annotated for audit.
    pub(crate) namespaces: BTreeSet<String>,
    /// Every endpoint audits (`AUDIT_*` flags).
    pub(crate) all: bool,
}

/// Whether a policy is in audit mode (its own annotation or its
/// namespace's).
pub(crate) fn is_audited(p: &PolicyState, scope: &AuditScope) -> bool {
    p.obj.audit || scope.namespaces.contains(&p.namespace)
}

/// Isolation and audit flags of an endpoint selected by `policies`.
pub(crate) fn endpoint_flags<'a>(
    policies: impl Iterator<Item = &'a PolicyState>,
    scope: &AuditScope,
) -> u32 {
    let (mut enforced, mut audited) = (0u32, 0u32);
    for p in policies {
        for dir in [direction::INGRESS, direction::EGRESS] {
            if p.obj.rules[dir as usize].is_some() {
                if is_audited(p, scope) {
                    audited |= endpoint_flags::isolated(dir);
                } else {
                    enforced |= endpoint_flags::isolated(dir);
                }
            }
        }
    }
    let mut flags = enforced;
    if scope.all {
        flags |= endpoint_flags::AUDIT_INGRESS | endpoint_flags::AUDIT_EGRESS;
    }
    for dir in [direction::INGRESS, direction::EGRESS] {
        let bit = endpoint_flags::isolated(dir);
        if audited & bit != 0 && enforced & bit == 0 {
            flags |= endpoint_flags::view_isolated(dir);
        }
    }
    flags
}

/// The view bits of a flags word.
pub(crate) const VIEW_BITS: u32 = endpoint_flags::VIEW_ISOLATED_INGRESS
    | endpoint_flags::VIEW_ISOLATED_EGRESS
    | endpoint_flags::VIEW_TIERED_INGRESS
    | endpoint_flags::VIEW_TIERED_EGRESS;

/// Whether the endpoint with `flags` has an audit view in `dir`.
pub(crate) fn has_view(flags: u32, dir: u8) -> bool {
    flags & (endpoint_flags::view_isolated(dir) | endpoint_flags::view_tiered(dir)) != 0
}

/// Entries of one endpoint in both views: `(peer identity, direction,
/// class, view) → ports`.
pub(crate) type ViewRow = BTreeMap<(u32, u8, u8, u8), crate::ports::PortSet>;

/// Computes the endpoint's NetworkPolicy entries (see the module docs)
/// for the cells of `filter`; `flags` are the endpoint's (its views).
pub(crate) fn compute_rows(
    ep: &PodObj,
    policies: &[&PolicyState],
    identities: &Identities,
    filter: Option<&RowDirt>,
    scope: &AuditScope,
    flags: u32,
) -> ViewRow {
    let enforced: Vec<&PolicyState> = policies
        .iter()
        .copied()
        .filter(|p| !is_audited(p, scope))
        .collect();
    let mut out = ViewRow::new();
    for ((id, dir, class), ports) in compute_row(ep, &enforced, identities, filter) {
        out.insert((id, dir, class, 0), ports);
    }
    if flags & VIEW_BITS != 0 {
        for ((id, dir, class), ports) in compute_row(ep, policies, identities, filter) {
            if has_view(flags, dir) {
                out.insert((id, dir, class, 1), ports);
            }
        }
    }
    out
}
