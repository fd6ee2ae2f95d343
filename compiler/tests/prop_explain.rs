//! `Compiler::explain` and audit mode, held to the compiled maps and to the
//! naive NetworkPolicy evaluator on random clusters:
//!
//! * explain's verdict for each side equals the datapath's reading of the
//!   maps (same lookups as `sim`), for every local pod, direction, peer
//!   address, protocol and port; an allowed side names at least one rule
//!   and a denied one none;
//! * with a random subset of policies annotated `policy.palisade.dev/mode:
//!   audit`, view 0 equals the naive verdict of the enforced policies
//!   alone, `VIEW_ISOLATED_*` is set exactly where audited policies isolate
//!   and enforced ones do not, and there view 1 equals the naive verdict of
//!   all policies (enforced ∪ audited).

mod common;

use std::net::IpAddr;

use common::Cluster;
use common::generate::{PROBE_PORTS, arb_cluster};
use common::*;
use palisade_common::{IDENTITY_ANY, PolicyKey, direction, endpoint_flags, proto};
use palisade_compiler::{DesiredState, PodRef, Query, Side};
use proptest::prelude::*;

/// The datapath's lookups in one view (as `sim`, with `view`).
fn sim_view(
    state: &DesiredState,
    pod: &PodRef,
    dir: u8,
    peer: IpAddr,
    ip_proto: u8,
    port: u16,
    view: u8,
) -> bool {
    let Some(ep) = state.endpoints.get(pod) else {
        return false;
    };
    let v = lookup(state, peer);
    let class = proto::policy_class(ip_proto);
    let port = if proto::has_ports(ip_proto) { port } else { 0 };
    let mut ids = vec![v.identity];
    if v.cidr_identity != v.identity {
        ids.push(v.cidr_identity);
    }
    ids.push(IDENTITY_ANY);
    ids.into_iter().any(|id| {
        let key = PolicyKey {
            ep_id: ep.ep_id,
            identity: id,
            direction: dir,
            proto: class,
            view,
            _pad: 0,
        };
        state
            .policy
            .get(&key)
            .and_then(|val| state.value_says(val))
            .is_some_and(|p| p.allow.contains(port))
    })
}

fn cases() -> Vec<(u8, u16)> {
    let mut v = Vec::new();
    for pr in [proto::TCP, proto::UDP, proto::SCTP] {
        v.extend(PROBE_PORTS.iter().map(|p| (pr, *p)));
    }
    v.push((ICMP, 0));
    v
}

fn check_explain(cluster: &Cluster) -> Result<(), TestCaseError> {
    let c = cluster.compile();
    let state = c.state();
    for pod in cluster.endpoints() {
        for dir in [direction::INGRESS, direction::EGRESS] {
            for a in cluster.probe_addresses() {
                for (pr, port) in cases() {
                    let want = sim(state, &pod, dir, a, pr, port).unwrap();
                    let q = if dir == direction::INGRESS {
                        Query {
                            from: Side::Addr(a),
                            to: Side::Pod(pod.clone()),
                            protocol: pr,
                            port,
                            enforce_host: true,
                        }
                    } else {
                        Query {
                            from: Side::Pod(pod.clone()),
                            to: Side::Addr(a),
                            protocol: pr,
                            port,
                            enforce_host: true,
                        }
                    };
                    let e = match c.explain(&q) {
                        Ok(e) => e,
                        // The pod has no address of the peer's family.
                        Err(palisade_compiler::ExplainError::NoAddress { .. }) => continue,
                        Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
                    };
                    let side = if dir == direction::INGRESS {
                        e.ingress.clone()
                    } else {
                        e.egress.clone()
                    };
                    let side = side.expect("a pod side is judged");
                    prop_assert_eq!(
                        side.allowed(),
                        want,
                        "{} {} peer {} proto {} port {}: {:?}",
                        pod,
                        direction::as_str(dir),
                        a,
                        pr,
                        port,
                        side
                    );
                    prop_assert_eq!(
                        side.isolated(),
                        state.endpoints[&pod].flags & endpoint_flags::isolated(dir) != 0
                    );
                    if side.isolated() {
                        prop_assert_eq!(!side.allowed_by.is_empty(), want);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The cluster with the policies of `audited` (by index) annotated.
fn with_audit(cluster: &Cluster, audited: &[bool]) -> (Cluster, Cluster) {
    let mut all = cluster.clone();
    let mut enforced = cluster.clone();
    for (i, (k, p)) in cluster.policies.iter().enumerate() {
        if audited.get(i).copied().unwrap_or(false) {
            let mut p = p.clone();
            p.metadata.annotations = Some(
                [(
                    palisade_compiler::MODE_ANNOTATION.to_string(),
                    palisade_compiler::MODE_AUDIT.to_string(),
                )]
                .into(),
            );
            all.policies.insert(k.clone(), p);
            enforced.policies.remove(k);
        }
    }
    (all, enforced)
}

fn check_audit(cluster: &Cluster, audited: &[bool]) -> Result<(), TestCaseError> {
    let (annotated, enforced) = with_audit(cluster, audited);
    let c = annotated.compile();
    let state = c.state();
    let fully = cluster.compile();
    let enforced_only = enforced.compile();
    for pod in cluster.endpoints() {
        let flags = state.endpoints[&pod].flags;
        for dir in [direction::INGRESS, direction::EGRESS] {
            let iso_enf =
                enforced_only.state().endpoints[&pod].flags & endpoint_flags::isolated(dir) != 0;
            let iso_all = fully.state().endpoints[&pod].flags & endpoint_flags::isolated(dir) != 0;
            prop_assert_eq!(flags & endpoint_flags::isolated(dir) != 0, iso_enf);
            let view = flags & endpoint_flags::view_isolated(dir) != 0;
            prop_assert_eq!(
                view,
                iso_all && !iso_enf,
                "{} {}",
                pod,
                direction::as_str(dir)
            );
            for a in cluster.probe_addresses() {
                for (pr, port) in cases() {
                    let v0 = !iso_enf || sim_view(state, &pod, dir, a, pr, port, 0);
                    let (_, naive_enf) = enforced.naive(&pod, dir, a, pr, port);
                    prop_assert_eq!(
                        v0,
                        naive_enf,
                        "view 0 {} {} {} {} {}",
                        pod,
                        dir,
                        a,
                        pr,
                        port
                    );
                    if view {
                        let v1 = sim_view(state, &pod, dir, a, pr, port, 1);
                        let (_, naive_all) = cluster.naive(&pod, dir, a, pr, port);
                        prop_assert_eq!(
                            v1,
                            naive_all,
                            "view 1 {} {} {} {} {}",
                            pod,
                            dir,
                            a,
                            pr,
                            port
                        );
                    }
                }
            }
        }
    }
    // No view-1 entry outside view-isolated directions.
    for k in state.policy.keys().filter(|k| k.view == 1) {
        let ep = state.endpoints.values().find(|e| e.ep_id == k.ep_id);
        prop_assert!(ep.is_some_and(|e| e.flags & endpoint_flags::view_isolated(k.direction) != 0));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn explain_agrees_with_the_compiled_maps(cluster in arb_cluster()) {
        check_explain(&cluster)?;
    }

    #[test]
    fn audited_policies_fill_the_audit_view(
        cluster in arb_cluster(),
        audited in prop::collection::vec(any::<bool>(), 8),
    ) {
        check_audit(&cluster, &audited)?;
    }
}
