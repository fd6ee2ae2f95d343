//! Compiler benchmark on a realistic large cluster: 500 namespaces, 10 000
//! pods (20 per namespace, 4 workloads each, a quarter dual-stack) spread
//! over 100 nodes, and 2 000 policies (4 per namespace) mixing default
//! deny, pod and namespace selectors with matchExpressions, ipBlocks with
//! excepts, named ports and endPort ranges; and 200 ClusterNetworkPolicies
//! (both tiers, namespace and pod subjects, namespace, pod and CIDR
//! peers, numbers and ranges, priorities spread with ties).
//!
//! Measures the full compile (apply everything, one commit), single
//! incremental changes (apply + commit; median and p99 over 50 runs, and
//! the operations each produces), and peak memory: `VmHWM` (the resident
//! set's high-water mark) from `/proc/self/status`, read after the run —
//! it covers the whole process, the generated Kubernetes objects included.
//!
//! Run: `cargo bench -p palisade-compiler --bench compiler`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use palisade_compiler::Compiler;
use palisade_compiler::api::ClusterNetworkPolicy;
use serde_json::{Value, json};

const NAMESPACES: usize = 500;
const PODS_PER_NS: usize = 20;
const NODES: usize = 100;
const NODE: &str = "node-0";
const RUNS: usize = 50;
const TIERS: [&str; 4] = ["web", "api", "db", "cache"];
const CLUSTER_POLICIES: usize = 200;

/// ClusterNetworkPolicy `i`: every fifth in the Baseline tier; a team's
/// namespaces or a workload's pods as subject; an ingress rule from
/// another team's pods of one workload on `port`; every third an egress
/// rule towards a /24 on a port range, every seventh an Accept for the
/// environment's namespaces on a named port.
fn cluster_policy(i: usize, port: u16) -> ClusterNetworkPolicy {
    let tier = if i % 5 == 4 { "Baseline" } else { "Admin" };
    let action = ["Deny", "Pass", "Accept"][i % 3];
    let subject = if i.is_multiple_of(2) {
        json!({"namespaces": {"matchLabels": {"team": format!("t{}", i % 20)}}})
    } else {
        json!({"pods": {"namespaceSelector": {"matchLabels": {"env": env_of(i)}},
                        "podSelector": {"matchLabels": {"tier": TIERS[i % 4]}}}})
    };
    let mut ingress = vec![json!({"action": action,
        "from": [{"pods": {"namespaceSelector": {"matchLabels": {"team": format!("t{}", (i + 1) % 20)}},
                           "podSelector": {"matchLabels": {"tier": TIERS[(i + 1) % 4]}}}}],
        "protocols": [{"tcp": {"destinationPort": {"number": port}}}]})];
    if i.is_multiple_of(7) {
        ingress.push(json!({"action": "Accept",
            "from": [{"namespaces": {"matchLabels": {"env": env_of(i)}}}],
            "protocols": [{"destinationNamedPort": "http"}]}));
    }
    let mut spec = json!({"tier": tier, "priority": (i * 37) % 1000 / 2 * 2,
                          "subject": subject, "ingress": ingress});
    if i.is_multiple_of(3) {
        spec["egress"] = json!([{"action": "Deny",
            "to": [{"networks": [format!("10.{}.{}.0/24", i % 256, i / 256)]}],
            "protocols": [{"tcp": {"destinationPort": {"range": {"start": 1000, "end": 2000}}}}]}]);
    }
    serde_json::from_value(json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": format!("cnp-{i:03}")}, "spec": spec}))
    .unwrap()
}

fn namespace(i: usize, env: &str) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": format!("ns-{i}"), "labels": {
        "team": format!("t{}", i % 20), "env": env
    }}}))
    .unwrap()
}

fn env_of(i: usize) -> &'static str {
    ["prod", "staging", "dev"][i % 3]
}

fn ports_of(tier: &str) -> Value {
    match tier {
        "web" => {
            json!([{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9100}])
        }
        "api" => {
            json!([{"name": "grpc", "containerPort": 9090}, {"name": "metrics", "containerPort": 9100}])
        }
        "db" => {
            json!([{"name": "postgres", "containerPort": 5432}, {"name": "metrics", "containerPort": 9187}])
        }
        _ => json!([{"name": "redis", "containerPort": 6379}]),
    }
}

/// Spreads the pods of a namespace over several nodes.
fn node_of(ns: usize, j: usize) -> String {
    format!("node-{}", (ns * (PODS_PER_NS + 1) + j) % NODES)
}

fn pod(ns: usize, j: usize, app: usize) -> Pod {
    let k = ns * PODS_PER_NS + j;
    let tier = TIERS[app % 4];
    let mut ips = vec![json!({"ip": format!("10.{}.{}.{}", k / 65536, (k / 256) % 256, k % 256)})];
    if k.is_multiple_of(4) {
        ips.push(json!({"ip": format!("fd00::{:x}", k)}));
    }
    serde_json::from_value(json!({
        "metadata": {"namespace": format!("ns-{ns}"), "name": format!("pod-{j}"), "uid": format!("u-{k}"),
                     "labels": {"app": format!("app-{app}"), "tier": tier, "pod-template-hash": format!("h{app}")}},
        "spec": {"nodeName": node_of(ns, j), "containers": [{"name": "c", "ports": ports_of(tier)}]},
        "status": {"phase": "Running", "podIPs": ips}
    }))
    .unwrap()
}

fn policies(i: usize, db_port: u16) -> Vec<NetworkPolicy> {
    let ns = format!("ns-{i}");
    let specs = [
        (
            "default-deny",
            json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
        ),
        (
            "web-from-ingress",
            json!({
                "podSelector": {"matchLabels": {"tier": "web"}},
                "ingress": [
                    {"from": [{"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["t0", "t1"]}]},
                               "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}},
                              {"ipBlock": {"cidr": format!("192.168.{}.0/24", i % 256), "except": [format!("192.168.{}.128/25", i % 256)]}}],
                     "ports": [{"port": "http"}, {"port": 443}]},
                    {"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}, "podSelector": {"matchLabels": {"app": "app-3"}}}],
                     "ports": [{"port": 9100, "endPort": 9102}]}
                ]
            }),
        ),
        (
            "api",
            json!({
                "podSelector": {"matchLabels": {"tier": "api"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "web"}}}], "ports": [{"port": "grpc"}, {"port": 9100}]}],
                "egress": [
                    {"to": [{"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db", "cache"]}]}}],
                     "ports": [{"port": "postgres"}, {"port": "redis"}]},
                    {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ns-0"}}}],
                     "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53}]},
                    {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.169.254/32"]}}],
                     "ports": [{"port": 443}, {"port": 30000, "endPort": 32767}]}
                ]
            }),
        ),
        (
            "db",
            json!({
                "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}, {"key": "app", "operator": "Exists"}]},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "api"}}}], "ports": [{"port": db_port}]},
                            {"from": [{"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]},
                                       "podSelector": {"matchLabels": {"tier": "web"}}}], "ports": [{"port": "metrics"}]}]
            }),
        ),
    ];
    specs
        .into_iter()
        .map(|(name, spec)| {
            serde_json::from_value(
                json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}),
            )
            .unwrap()
        })
        .collect()
}

/// A `/proc/self/status` field in KiB (`VmHWM`: peak resident set;
/// `VmRSS`: current resident set).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .map(|l| l.to_string())
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

struct Sample {
    time: Duration,
    ops: usize,
}

fn stats(name: &str, mut s: Vec<Sample>) {
    s.sort_by_key(|x| x.time);
    let median = s[s.len() / 2].time;
    let p99 = s[(s.len() * 99 / 100).min(s.len() - 1)].time;
    let mut ops: Vec<usize> = s.iter().map(|x| x.ops).collect();
    ops.sort_unstable();
    println!(
        "| {name:<34} | {:>10.3} | {:>10.3} | {:>6} | {:>6} |",
        median.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        ops[ops.len() / 2],
        ops[ops.len() - 1]
    );
}

fn measure(
    c: &mut Compiler,
    runs: usize,
    mut change: impl FnMut(&mut Compiler, usize),
) -> Vec<Sample> {
    (0..runs)
        .map(|r| {
            let t = Instant::now();
            change(c, r);
            let d = c.commit();
            let time = t.elapsed();
            assert!(!d.ops.is_empty(), "every run changes something");
            Sample {
                time,
                ops: black_box(d.ops).len(),
            }
        })
        .collect()
}

fn main() {
    let namespaces: Vec<Namespace> = (0..NAMESPACES).map(|i| namespace(i, env_of(i))).collect();
    let pods: Vec<Pod> = (0..NAMESPACES)
        .flat_map(|i| (0..PODS_PER_NS).map(move |j| pod(i, j, j % 4)))
        .collect();
    let pols: Vec<NetworkPolicy> = (0..NAMESPACES).flat_map(|i| policies(i, 5432)).collect();
    let cnps: Vec<ClusterNetworkPolicy> = (0..CLUSTER_POLICIES)
        .map(|i| cluster_policy(i, 9000 + (i % 30) as u16))
        .collect();

    let inputs_rss = status_kib("VmRSS:");
    let t = Instant::now();
    let mut c = Compiler::new(NODE);
    for n in &namespaces {
        c.apply_namespace(n).unwrap();
    }
    for p in &pods {
        c.apply_pod(p).unwrap();
    }
    for p in &pols {
        c.apply_policy(p).unwrap();
    }
    for p in &cnps {
        c.apply_cluster_policy(p).unwrap();
    }
    assert!(c.rejections().is_empty(), "{:?}", c.rejections());
    c.set_host_addresses(vec!["192.0.2.10".parse().unwrap()]);
    let full = c.commit();
    let full_time = t.elapsed();
    let s = c.state();
    let hwm_full = status_kib("VmHWM:");

    println!(
        "cluster: {NAMESPACES} namespaces, {} pods over {NODES} nodes, {} policies, {} ClusterNetworkPolicies",
        pods.len(),
        pols.len(),
        cnps.len()
    );
    println!(
        "compiled for {NODE}: {} endpoints, {} policy entries, {} portsets, {} tier tables, {} exact ipcache (v4 {} + v6 {}), {} LPM",
        s.endpoints.len(),
        s.policy.len(),
        s.portsets.len(),
        s.tiersets.len(),
        s.ipcache_exact4.len() + s.ipcache_exact6.len(),
        s.ipcache_exact4.len(),
        s.ipcache_exact6.len(),
        s.ipcache_lpm4.len() + s.ipcache_lpm6.len()
    );
    println!();
    println!(
        "| {:<34} | {:>10} | {:>10} | {:>6} | {:>6} |",
        "operation", "median ms", "p99 ms", "ops", "max ops"
    );
    println!(
        "|{:-<36}|{:-<12}|{:-<12}|{:-<8}|{:-<8}|",
        "", "", "", "", ""
    );
    println!(
        "| {:<34} | {:>10.3} | {:>10} | {:>6} | {:>6} |",
        "full compile (apply all + commit)",
        full_time.as_secs_f64() * 1e3,
        "-",
        full.ops.len(),
        "-"
    );

    // The same-priority overlap report the agent computes after commits.
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            black_box(c.priority_overlaps());
            t.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "| {:<34} | {:>10.3} | {:>10.3} | {:>6} | {:>6} |",
        "priority_overlaps() (agent report)",
        times[RUNS / 2].as_secs_f64() * 1e3,
        times[RUNS - 1].as_secs_f64() * 1e3,
        c.priority_overlaps().len(),
        "-"
    );

    let locals: Vec<(usize, usize)> = (0..NAMESPACES)
        .flat_map(|i| (0..PODS_PER_NS).map(move |j| (i, j)))
        .filter(|&(i, j)| node_of(i, j) == NODE)
        .collect();
    // A local web pod relabelled to another workload of its namespace: new
    // identity, new selection, new row.
    let (lns, lj) = *locals
        .iter()
        .find(|&&(_, j)| j % 4 == 0)
        .expect("a local web pod");
    let local = |r: usize| pod(lns, lj, if r.is_multiple_of(2) { 1 } else { 0 });
    stats(
        "local pod relabel",
        measure(&mut c, RUNS, |c, r| c.apply_pod(&local(r)).unwrap()),
    );
    // A remote pod relabelled: its address switches identity cluster-wide.
    let (rns, rj) = (
        9,
        (0..PODS_PER_NS)
            .find(|&j| node_of(9, j) != NODE && j % 4 == 3)
            .unwrap_or(3),
    );
    let remote = |r: usize| pod(rns, rj, if r.is_multiple_of(2) { 1 } else { 3 });
    stats(
        "remote pod relabel",
        measure(&mut c, RUNS, |c, r| c.apply_pod(&remote(r)).unwrap()),
    );
    // A remote pod relabelled to a label set of its own and back: an
    // identity created, then released by the commit's sweep.
    let fresh = |r: usize| {
        let mut p = pod(rns, rj, 3);
        if r.is_multiple_of(2) {
            p.metadata
                .labels
                .as_mut()
                .unwrap()
                .insert("canary".into(), "true".into());
        }
        p
    };
    stats(
        "remote pod relabel, new identity",
        measure(&mut c, RUNS, |c, r| c.apply_pod(&fresh(r)).unwrap()),
    );
    // A remote pod created then deleted.
    stats(
        "remote pod create/delete",
        measure(&mut c, RUNS, |c, r| {
            if r.is_multiple_of(2) {
                c.apply_pod(&pod(11, PODS_PER_NS + 1, 2)).unwrap();
            } else {
                c.delete_pod("ns-11", &format!("pod-{}", PODS_PER_NS + 1));
            }
        }),
    );
    // The db policy of a namespace with a local db pod, updated (its port).
    let (dns, _) = *locals
        .iter()
        .find(|&&(_, j)| j % 4 == 2)
        .expect("a local db pod");
    let pol = |r: usize| policies(dns, if r.is_multiple_of(2) { 5433 } else { 5432 }).remove(3);
    stats(
        "policy update",
        measure(&mut c, RUNS, |c, r| c.apply_policy(&pol(r)).unwrap()),
    );
    // The first ClusterNetworkPolicy whose subject selects a local pod,
    // updated (its port), then moved across the priorities of others
    // (which re-ranks codes).
    let ci = (0..CLUSTER_POLICIES)
        .find(|&i| {
            c.cluster_policy_summary(&format!("cnp-{i:03}"))
                .is_some_and(|s| !s.selected_local.is_empty())
        })
        .expect("a cluster policy selecting a local pod");
    let cnp = |r: usize| cluster_policy(ci, if r.is_multiple_of(2) { 9101 } else { 9001 });
    stats(
        "cluster policy update",
        measure(&mut c, RUNS, |c, r| {
            c.apply_cluster_policy(&cnp(r)).unwrap()
        }),
    );
    let moved = |r: usize| {
        let mut p = cluster_policy(ci, 9001);
        p.spec.priority = Some(if r.is_multiple_of(2) { 999 } else { 0 });
        p
    };
    stats(
        "cluster policy priority change",
        measure(&mut c, RUNS, |c, r| {
            c.apply_cluster_policy(&moved(r)).unwrap()
        }),
    );
    // A namespace relabelled (env prod <-> dev): namespaceSelectors of
    // every namespace's policies re-evaluate it.
    let nsr = |r: usize| namespace(3, if r.is_multiple_of(2) { "dev" } else { "prod" });
    stats(
        "namespace relabel",
        measure(&mut c, RUNS, |c, r| c.apply_namespace(&nsr(r)).unwrap()),
    );
    // Host addresses changed.
    stats(
        "host addresses change",
        measure(&mut c, RUNS, |c, r| {
            c.set_host_addresses(vec![format!("192.0.2.{}", 11 - r % 2).parse().unwrap()])
        }),
    );
    println!();
    println!(
        "memory: VmRSS with only the generated Kubernetes objects {:.1} MiB; VmHWM after the full compile {:.1} MiB, at the end {:.1} MiB; compiler share (VmHWM - inputs) {:.1} MiB",
        mib(inputs_rss),
        mib(hwm_full),
        mib(status_kib("VmHWM:")),
        mib(status_kib("VmHWM:").saturating_sub(inputs_rss))
    );
}
