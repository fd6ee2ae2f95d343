//! Random sequences of changes (namespaces created, relabelled, deleted;
//! pods created, relabelled, moved, re-addressed, deleted, finished; policies
//! created, replaced, deleted, and replaced by invalid versions; node
//! addresses changed), applied in random batches:
//!
//! * every diff, replayed op by op from the old state, never passes through
//!   a state that allows a flow neither the old nor the new state allows,
//!   never references a missing portset, only touches entries whose value
//!   differs between the two states, and ends exactly in the new state;
//! * committing again without changes yields no operation;
//! * the incremental result equals compiling the final cluster from scratch
//!   (compared canonically: every id replaced by what it stands for).

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use common::generate::*;
use common::*;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use palisade_compiler::{Compiler, DesiredState, MapOp, ObjectKind, ObjectRef, reconcile};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::json;

#[derive(Clone, Debug)]
enum Op {
    Ns(Box<Namespace>),
    DelNs(&'static str),
    Pod(Box<Pod>),
    DelPod(usize),
    Policy(Box<NetworkPolicy>),
    BadPolicy(Box<NetworkPolicy>),
    DelPolicy(&'static str, &'static str),
    Hosts(bool),
}

fn arb_op(slots: Vec<&'static str>) -> impl Strategy<Value = Op> {
    let pod = (0..POD_SLOTS).prop_flat_map(move |i| arb_pod(i, slots[i]));
    prop_oneof![
        2 => arb_namespace().prop_map(|n| Op::Ns(Box::new(n))),
        1 => select(&NAMESPACES[..]).prop_map(Op::DelNs),
        5 => pod.prop_map(|p| Op::Pod(Box::new(p))),
        2 => (0..POD_SLOTS).prop_map(Op::DelPod),
        4 => select(&POLICY_NAMES[..]).prop_flat_map(arb_policy).prop_map(|p| Op::Policy(Box::new(p))),
        1 => select(&POLICY_NAMES[..]).prop_flat_map(arb_policy).prop_map(|p| Op::BadPolicy(Box::new(p))),
        2 => (select(&NAMESPACES[..]), select(&POLICY_NAMES[..])).prop_map(|(n, p)| Op::DelPolicy(n, p)),
        1 => any::<bool>().prop_map(Op::Hosts),
    ]
}

fn arb_case() -> impl Strategy<Value = (Cluster, Vec<Vec<Op>>)> {
    arb_slot_namespaces()
        .prop_flat_map(|slots| {
            let pods: Vec<_> = slots
                .iter()
                .enumerate()
                .map(|(i, ns)| prop::option::weighted(0.7, arb_pod(i, ns)))
                .collect();
            let initial = (
                prop::collection::vec(arb_namespace(), 0..=3),
                pods,
                prop::sample::subsequence(POLICY_NAMES.to_vec(), 0..=3)
                    .prop_flat_map(|names| names.into_iter().map(arb_policy).collect::<Vec<_>>()),
            )
                .prop_map(|(nss, pods, pols)| {
                    let mut c = Cluster::default();
                    nss.into_iter().for_each(|n| c.add_ns(n));
                    pods.into_iter().flatten().for_each(|p| c.add_pod(p));
                    pols.into_iter().for_each(|p| c.add_policy(p));
                    c
                });
            let batches =
                prop::collection::vec(prop::collection::vec(arb_op(slots.clone()), 1..=3), 1..=8);
            (initial, batches, Just(slots))
        })
        .prop_map(|(c, b, _)| (c, b))
}

fn make_invalid(mut p: NetworkPolicy) -> NetworkPolicy {
    let spec = p.spec.get_or_insert_with(Default::default);
    spec.ingress
        .get_or_insert_with(Vec::new)
        .push(serde_json::from_value(json!({"ports": [{"port": 0}]})).unwrap());
    p
}

fn apply(c: &mut Compiler, model: &mut Cluster, slots: &[String], op: &Op) {
    match op {
        Op::Ns(n) => {
            c.apply_namespace(n).unwrap();
            model.add_ns(n.as_ref().clone());
        }
        Op::DelNs(n) => {
            c.delete_namespace(n);
            model.namespaces.remove(*n);
        }
        Op::Pod(p) => {
            c.apply_pod(p).unwrap();
            model.add_pod(p.as_ref().clone());
        }
        Op::DelPod(i) => {
            let name = format!("p{i}");
            c.delete_pod(&slots[*i], &name);
            model.pods.remove(&(slots[*i].clone(), name));
        }
        Op::Policy(p) => {
            c.apply_policy(p).unwrap();
            model.add_policy(p.as_ref().clone());
        }
        Op::BadPolicy(p) => {
            let bad = make_invalid(p.as_ref().clone());
            let err = c.apply_policy(&bad).unwrap_err();
            let obj = ObjectRef::new(
                ObjectKind::NetworkPolicy,
                p.metadata.namespace.clone().unwrap(),
                p.metadata.name.clone().unwrap(),
            );
            assert_eq!(err.object, obj);
            assert!(err.field.ends_with(".port"), "{err}");
            assert_eq!(c.rejections().get(&obj), Some(&err));
        }
        Op::DelPolicy(n, p) => {
            c.delete_policy(n, p);
            model.policies.remove(&(n.to_string(), p.to_string()));
        }
        Op::Hosts(on) => {
            let h = if *on { hosts() } else { Vec::new() };
            c.set_host_addresses(h.clone());
            model.hosts = h;
        }
    }
}

/// Every op of `ops` writes an entry whose committed value differs between
/// `old` and `new` (portsets: any id, as transient bitmaps exist).
fn check_only_changed_entries(old: &DesiredState, new: &DesiredState, ops: &[MapOp]) {
    for op in ops {
        let changed = match op {
            MapOp::PolicyUpsert { key, .. } | MapOp::PolicyRemove { key } => {
                let v = |s: &DesiredState| s.policy.get(key).and_then(|v| s.value_says(v));
                v(old) != v(new)
            }
            MapOp::EndpointUpsert { at: pod, .. } | MapOp::EndpointRemove { at: pod } => {
                old.endpoints.get(pod) != new.endpoints.get(pod)
            }
            MapOp::IpcacheExactUpsert { addr, .. } | MapOp::IpcacheExactRemove { addr } => {
                old.exact(addr) != new.exact(addr)
            }
            MapOp::IpcacheLpmUpsert { prefix, .. } | MapOp::IpcacheLpmRemove { prefix } => {
                old.lpm(prefix) != new.lpm(prefix)
            }
            MapOp::PortsetUpsert { .. }
            | MapOp::PortsetRemove { .. }
            | MapOp::TiersetUpsert { .. }
            | MapOp::TiersetRemove { .. } => true,
        };
        assert!(changed, "{op:?} writes an entry that does not change");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_scratch_and_diffs_are_safe(
        (initial, batches) in arb_case(),
        crash in any::<prop::sample::Index>(),
    ) {
        let slots: Vec<String> = {
            // slot namespaces are implied by the pods the strategy builds
            let mut s = vec![String::new(); POD_SLOTS];
            for b in &batches {
                for op in b {
                    if let Op::Pod(p) = op {
                        let i: usize = p.metadata.name.as_ref().unwrap()[1..].parse().unwrap();
                        s[i] = p.metadata.namespace.clone().unwrap();
                    }
                }
            }
            for (n, name) in initial.pods.keys() {
                let i: usize = name[1..].parse().unwrap();
                s[i] = n.clone();
            }
            s
        };
        let mut c = initial.compile();
        let mut model = initial.clone();
        check_invariants(&c);
        prop_assert_eq!(canon(&c), canon(&model.compile()));
        let ports = [9u16, 53, 80, 8080];
        for batch in &batches {
            let (numbering_before, generation_before) = (c.numbering(), c.numbering_generation());
            for op in batch {
                apply(&mut c, &mut model, &slots, op);
            }
            let old = c.state().clone();
            let rev = c.revision();
            let diff = c.commit();
            let new = c.state().clone();
            // The agent re-reads the numbering only when the generation
            // moved: it must move whenever the numbering changed.
            prop_assert!(
                c.numbering() == numbering_before || c.numbering_generation() != generation_before,
                "the numbering changed but its generation did not"
            );
            prop_assert_eq!(diff.revision, if diff.ops.is_empty() { rev } else { rev + 1 });
            check_invariants(&c);
            check_only_changed_entries(&old, &new, &diff.ops);
            let mut extra: BTreeSet<IpAddr> = model.probe_addresses();
            extra.extend(hosts());
            let probes = probes(&old, &new, &extra, &ports);
            let replayed = replay_checked(&old, &new, &diff.ops, &probes);
            prop_assert_eq!(&replayed, &new);
            // A crash part way through the diff pins what its first `k`
            // writes made; a restarted agent reconciles from there to the
            // new state. Every step stays within what the pinned or the new
            // state allows (and the pinned state within old or new).
            let k = crash.index(diff.ops.len() + 1);
            let mut pinned = old.clone();
            for op in &diff.ops[..k] {
                pinned.apply(op);
            }
            // The restarted compiler gets the numbering recorded before the
            // writes began back, and whatever else the maps hold reserved:
            // every number keeps its meaning, so it compiles to exactly the
            // state the diff was heading for.
            let recorded = c.numbering();
            let mut restarted = model.compile_after(|r| {
                r.remember_numbering(recorded);
                r.reserve_numbers(&pinned);
            });
            prop_assert_eq!(restarted.state(), &new);
            let writes = reconcile(&pinned, restarted.state());
            let reconciled = replay_checked(&pinned, &new, &writes, &probes);
            prop_assert_eq!(&reconciled, &new);
            restarted.settle_numbering();
            prop_assert_eq!(restarted.numbering(), c.numbering());
            prop_assert!(c.commit().ops.is_empty(), "a second commit has nothing to do");
        }
        prop_assert_eq!(canon(&c), canon(&model.compile()));
    }
}
