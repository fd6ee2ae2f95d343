//! `palisade graph` at the agent benchmark's cluster shape
//! (`palisade_lab::scale`: 10 000 pods, 100 namespaces, 2 000
//! NetworkPolicies, 200 ClusterNetworkPolicies): the time to compute one
//! namespace's view and, with `--all`, the whole-cluster view aggregated
//! by namespace; with `--every`, the view of every namespace (the slowest
//! and the median). Run with
//! `cargo bench -p palisade-analysis --bench graph [-- --all] [--every]`.

use std::time::Instant;

use palisade_analysis::graph::{Scope, compute};
use palisade_compiler::Compiler;
use palisade_lab::scale::{
    CLUSTER_POLICIES, NAMESPACES, PODS, POLICIES, base_port, cluster_policy, cluster_port,
    namespace, pod, policy,
};
use serde::de::DeserializeOwned;

fn obj<T: DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

fn cluster() -> Compiler {
    let mut c = Compiler::new("n1");
    for n in 0..NAMESPACES {
        c.apply_namespace(&obj(namespace(n))).unwrap();
    }
    for p in 0..PODS {
        c.apply_pod(&obj(pod(p))).unwrap();
    }
    for i in 0..POLICIES {
        c.apply_policy(&obj(policy(i, base_port(i), 1))).unwrap();
    }
    for i in 0..CLUSTER_POLICIES {
        c.apply_cluster_policy(&obj(cluster_policy(i, cluster_port(i), 1)))
            .unwrap();
    }
    c.commit();
    c
}

fn main() {
    let all = std::env::args().any(|a| a == "--all");
    let every = std::env::args().any(|a| a == "--every");
    let t = Instant::now();
    let c = cluster();
    println!(
        "compiled {PODS} pods, {NAMESPACES} namespaces, {POLICIES} NetworkPolicies, \
         {CLUSTER_POLICIES} ClusterNetworkPolicies in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let mut scopes = vec![
        Scope::Namespace("ns-0".into()),
        Scope::Namespace("ns-1".into()),
    ];
    if all {
        scopes.push(Scope::AllNamespaces);
    }
    for scope in scopes {
        let t = Instant::now();
        let g = compute(&c, &scope, Vec::new()).expect("a known scope");
        println!(
            "graph {scope}: {:.2} s, {} nodes, {} edges",
            t.elapsed().as_secs_f64(),
            g.nodes.len(),
            g.edges.len()
        );
    }
    if every {
        let mut times: Vec<(f64, usize)> = (0..NAMESPACES)
            .map(|n| {
                let t = Instant::now();
                compute(&c, &Scope::Namespace(format!("ns-{n}")), Vec::new())
                    .expect("a known namespace");
                (t.elapsed().as_secs_f64(), n)
            })
            .collect();
        times.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (slowest, n) = times[times.len() - 1];
        println!(
            "graph of every namespace ({NAMESPACES}): median {:.2} s, slowest ns-{n} {slowest:.2} s, \
             total {:.1} s",
            times[times.len() / 2].0,
            times.iter().map(|t| t.0).sum::<f64>()
        );
    }
}
