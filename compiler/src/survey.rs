//! What a survey of the allowed connectivity (`palisade graph`, `palisade
//! diff`) needs to judge a few flows instead of every port: the port
//! boundaries the rules that can decide a pod's traffic mention, and the
//! CIDR prefixes policies name (the regions external peers fall into).
//!
//! Between two consecutive boundaries of a protocol every port is judged
//! alike for that pod and direction: every rule of every policy that
//! selects the pod (NetworkPolicies, enforced or audited, and the
//! ClusterNetworkPolicies consulted for it) either covers the whole
//! interval or none of it. So one judgement per interval and protocol
//! answers for all of its ports: [`SideSurvey`] judges one side of a pod's
//! flows that way, peer by peer, with explain's own walk.

use std::collections::BTreeSet;

use ipnet::IpNet;
use palisade_common::{direction, proto};

use crate::cluster;
use crate::engine::Engine;
use crate::explain::{End, Judgement, Query, Side, SideContext};
use crate::inspect;
use crate::model::{Rule, Tier, resolve_named};
use crate::ports::{CLASSES, class_index};
use crate::state::PodRef;

/// The first port of every interval in which the verdict of `pod`'s
/// traffic in `dir` can change, per port-carrying protocol class (TCP,
/// UDP, SCTP, in that order). Each list is sorted and starts with 0.
/// Named ports resolve on the destination: on `pod` for ingress, on every
/// pod identity serving the name for egress (a superset, still exact).
pub(crate) fn port_boundaries(e: &Engine, pod: &PodRef, dir: u8) -> [Vec<u16>; 3] {
    let mut sets: [BTreeSet<u16>; 3] = std::array::from_fn(|_| BTreeSet::from([0]));
    let own_named = e.pods.get(pod).map(|s| s.obj.named_ports.clone());
    let mut add_rule = |rule: &Rule| {
        for (i, class) in CLASSES[..3].iter().enumerate() {
            for &(lo, hi) in rule.ports.numeric[class_index(*class)].ranges() {
                sets[i].insert(lo);
                if let Some(next) = hi.checked_add(1) {
                    sets[i].insert(next);
                }
            }
        }
        for (name, class) in &rule.ports.named {
            let Some(i) = CLASSES[..3].iter().position(|c| c == class) else {
                continue;
            };
            let mut add = |p: u16| {
                sets[i].insert(p);
                if let Some(next) = p.checked_add(1) {
                    sets[i].insert(next);
                }
            };
            if dir == direction::INGRESS {
                if let Some(named) = &own_named {
                    resolve_named(named, name, *class).for_each(&mut add);
                }
            } else {
                for ident in e.identities.by_id.values() {
                    resolve_named(&ident.key.named_ports, name, *class).for_each(&mut add);
                }
            }
        }
    };
    let (enforced, audited) = inspect::selecting(e, pod, dir);
    for name in enforced.iter().chain(&audited) {
        let key = crate::model::PolicyRef {
            namespace: name.namespace.clone(),
            name: name.name.clone(),
        };
        if let Some(p) = e.policies.get(&key) {
            p.obj.rules[dir as usize]
                .iter()
                .flatten()
                .for_each(&mut add_rule);
        }
    }
    for tier in [Tier::Admin, Tier::Baseline] {
        for (_, p, _) in cluster::consulted(e, tier, dir, pod, true) {
            p.rules[dir as usize].iter().for_each(|r| add_rule(&r.rule));
        }
    }
    sets.map(|s| s.into_iter().collect())
}

/// One side of every flow of a pod in one direction (its egress as the
/// sender, its ingress as the receiver), judged over whole port ranges:
/// the policies and tiers consulted are found once, and each peer is
/// judged once per interval of [`port_boundaries`] and protocol, by the
/// same walk as `Compiler::explain`. A flow is allowed when both
/// of its sides allow it, so a survey judges each side once per peer
/// instead of each flow once per port.
pub struct SideSurvey<'c> {
    ctx: SideContext<'c>,
    bounds: [Vec<u16>; 3],
    enforce_host: bool,
}

/// What one side allows with one peer.
#[derive(Clone, Debug, Default)]
pub struct SidePorts {
    /// Per TCP, UDP and SCTP: the allowed port intervals `(first, last)`,
    /// ascending, each with the judgement of its ports.
    pub ports: [Vec<(u16, u16, Judgement)>; 3],
    /// Protocols without ports (ICMP, ...): the judgement, if allowed.
    pub other: Option<Judgement>,
}

impl<'c> SideSurvey<'c> {
    pub(crate) fn new(e: &'c Engine, pod: &PodRef, dir: u8, enforce_host: bool) -> Self {
        SideSurvey {
            ctx: SideContext::new(e, pod, dir),
            bounds: port_boundaries(e, pod, dir),
            enforce_host,
        }
    }

    /// Whether enforced policies isolate the pod in this direction.
    pub fn isolated(&self) -> bool {
        self.ctx.isolated()
    }

    /// What this side allows with `peer` (the other end of the flow, as
    /// `Compiler::resolve_flow` gives it), every port judged.
    pub fn allowed(&self, peer: &End) -> SidePorts {
        let query = |protocol: u8, port: u16| Query {
            from: Side::Addr(peer.addr),
            to: Side::Addr(peer.addr),
            protocol,
            port,
            enforce_host: self.enforce_host,
        };
        let mut out = SidePorts::default();
        let j = self.ctx.judge(peer, &query(proto::ICMP, 0));
        if j.allowed() {
            out.other = Some(j);
        }
        for (i, class) in CLASSES[..3].iter().enumerate() {
            let starts = &self.bounds[i];
            for (k, &lo) in starts.iter().enumerate() {
                let hi = starts.get(k + 1).map_or(u16::MAX, |n| n - 1);
                let j = self.ctx.judge(peer, &query(*class, lo));
                if j.allowed() {
                    out.ports[i].push((lo, hi, j));
                }
            }
        }
        out
    }
}

/// Every CIDR prefix a valid policy names (ipBlock `cidr` and `except`,
/// ClusterNetworkPolicy `networks`, the addresses `nodes` peers select),
/// sorted: the regions the ipcache gives external addresses.
pub(crate) fn region_prefixes(e: &Engine) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = e.ipcache.regions.iter().map(|(_, n)| n).collect();
    v.sort();
    v
}
