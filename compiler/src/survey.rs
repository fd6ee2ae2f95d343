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
//! flows that way, with explain's own walk. Likewise most peers are alike
//! for a side: the walk reads of a peer only which peers of the rules
//! consulted match it (and a few facts beside: see `explain::PeerView`),
//! so the side judges each class of peers with one view once.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ipnet::IpNet;
use palisade_common::{direction, proto};

use crate::cluster;
use crate::engine::Engine;
use crate::explain::{End, Judgement, PeerView, SideContext};
use crate::inspect::{self, PolicyName};
use crate::model::{NamedPorts, Rule, Tier, resolve_named};
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
///
/// Peers that no rule of the side tells apart (the same peers of the same
/// rules match them, the same nodes peers hold them, both or neither are
/// this node, and egress, they serve the same named ports) form one class
/// of the side and are judged once: [`SideSurvey::class_of`].
pub struct SideSurvey<'c> {
    ctx: SideContext<'c>,
    bounds: [Vec<u16>; 3],
    enforce_host: bool,
    key: SideKey,
    classes: HashMap<PeerView, usize>,
    judged: Vec<SidePorts>,
}

/// What a side's judgements depend on besides the peer: two sides with
/// equal keys judge every peer alike, their judgements differing only in
/// the pod they name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SideKey {
    dir: u8,
    enforce_host: bool,
    selecting: Vec<PolicyName>,
    audited: Vec<PolicyName>,
    admin: Vec<String>,
    baseline: Vec<String>,
    audited_cluster: Vec<String>,
    /// Ingress named ports resolve on the pod.
    named: Option<Arc<NamedPorts>>,
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

impl SidePorts {
    /// Nothing allowed.
    pub fn is_empty(&self) -> bool {
        self.other.is_none() && self.ports.iter().all(Vec::is_empty)
    }
}

impl<'c> SideSurvey<'c> {
    pub(crate) fn new(e: &'c Engine, pod: &PodRef, dir: u8, enforce_host: bool) -> Self {
        let ctx = SideContext::new(e, pod, dir);
        let key = SideKey {
            dir,
            enforce_host,
            selecting: ctx.selecting.clone(),
            audited: ctx.audited.clone(),
            admin: ctx.admin_names().to_vec(),
            baseline: ctx.baseline_names().to_vec(),
            audited_cluster: ctx.audited_cluster.clone(),
            named: (dir == direction::INGRESS)
                .then(|| e.pods.get(pod).map(|s| s.obj.named_ports.clone()))
                .flatten(),
        };
        SideSurvey {
            ctx,
            bounds: port_boundaries(e, pod, dir),
            enforce_host,
            key,
            classes: HashMap::new(),
            judged: Vec::new(),
        }
    }

    /// Whether enforced policies isolate the pod in this direction.
    pub fn isolated(&self) -> bool {
        self.ctx.isolated()
    }

    /// What the side's judgements depend on besides the peer.
    pub fn key(&self) -> &SideKey {
        &self.key
    }

    /// The class of `peer` (the other end of the flow, as
    /// `Compiler::resolve_flow` gives it): peers of one class are judged
    /// alike, and each class is judged once, on first sight.
    pub fn class_of(&mut self, peer: &End) -> usize {
        let view = self.ctx.view(peer);
        if let Some(&i) = self.classes.get(&view) {
            return i;
        }
        let judged = self.judge(&view);
        self.judged.push(judged);
        let i = self.judged.len() - 1;
        self.classes.insert(view, i);
        i
    }

    /// What this side allows with the peers of class `class`.
    pub fn class(&self, class: usize) -> &SidePorts {
        &self.judged[class]
    }

    /// What this side allows with `peer`, every port judged.
    pub fn allowed(&mut self, peer: &End) -> &SidePorts {
        let i = self.class_of(peer);
        self.class(i)
    }

    fn judge(&self, view: &PeerView) -> SidePorts {
        let judge =
            |protocol: u8, port: u16| self.ctx.judge_view(view, protocol, port, self.enforce_host);
        let mut out = SidePorts::default();
        let j = judge(proto::ICMP, 0);
        if j.allowed() {
            out.other = Some(j);
        }
        for (i, class) in CLASSES[..3].iter().enumerate() {
            let starts = &self.bounds[i];
            for (k, &lo) in starts.iter().enumerate() {
                let hi = starts.get(k + 1).map_or(u16::MAX, |n| n - 1);
                let j = judge(*class, lo);
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
