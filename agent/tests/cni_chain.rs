//! Palisade behind a real CNI chain, driven as a container runtime drives
//! it: Debian's reference plugins `ptp` + `host-local` wire each pod, then
//! `palisade-cni` hands it to the agent, all called through libcni (the
//! project's small driver). The pods are known to the agent only through
//! CNI: one has no `status.podIPs` yet (the kubelet has not reported it),
//! one has stale ones (a previous sandbox's). Probes run continuously
//! through agent restarts (SIGTERM and SIGKILL) and a sandbox re-creation;
//! no verdict may be wrong at any time. Needs root; everything it creates
//! is removed, also on failure.

mod support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use palisade_lab::cni_runtime::{Chain, DEBIAN_PLUGIN_DIR, Driver, Sandbox};
use palisade_lab::{
    ANSWER_TIMEOUT, DEFAULT_TIMEOUT, Endpoint, LabSpec, Node, Pod, ProbeSpec, Services, probe_all,
    serve,
};
use serde_json::{Value, json};
use support::*;

const CNI: &str = env!("CARGO_BIN_EXE_palisade-cni");
const AGENT_ARGS: &[&str] = &["--cni-wait-ms", "300"];

/// One expectation over any endpoints: from, to, TCP port, reachable.
type Flow<'a> = (&'a (dyn Endpoint + Sync), IpAddr, u16, bool, &'static str);

fn spec(f: &Flow<'_>) -> ProbeSpec {
    let (from, to, port, reach, _) = *f;
    ProbeSpec::tcp(&Ep(from), to, port).timeout(if reach {
        ANSWER_TIMEOUT
    } else {
        DEFAULT_TIMEOUT
    })
}

/// `&dyn Endpoint` as an `impl Endpoint`.
struct Ep<'a>(&'a (dyn Endpoint + Sync));

impl Endpoint for Ep<'_> {
    fn netns(&self) -> &str {
        self.0.netns()
    }
    fn label(&self) -> String {
        self.0.label()
    }
    fn addrs(&self) -> Vec<IpAddr> {
        self.0.addrs()
    }
}

/// Probes every flow once (in parallel); the wrong verdicts.
fn wrong(flows: &[Flow<'_>]) -> Vec<String> {
    let results = probe_all(&flows.iter().map(spec).collect::<Vec<_>>());
    flows
        .iter()
        .zip(results)
        .filter(|(f, got)| got.reached() != f.3)
        .map(|(f, got)| {
            format!(
                "{} {} -> {} tcp/{}: want {}, got {got:?}",
                f.4,
                f.0.label(),
                f.1,
                f.2,
                if f.3 { "reach" } else { "blocked" }
            )
        })
        .collect()
}

fn expect_flows(step: &str, agent: &Agent, flows: &[Flow<'_>]) {
    let bad = wrong(flows);
    assert!(
        bad.is_empty(),
        "{step}: {} of {} probes wrong:\n  {}\n{}",
        bad.len(),
        flows.len(),
        bad.join("\n  "),
        agent.log_text()
    );
}

/// The chain a kind-like node runs: ptp + host-local, then palisade-cni.
fn conflist(socket: &Path, ipam: &Path) -> Value {
    json!({"cniVersion": "1.0.0", "name": "k8s-pod-network", "plugins": [
        {"type": "ptp", "ipMasq": false, "mtu": 1500,
         "ipam": {"type": "host-local", "dataDir": ipam,
                  "ranges": [[{"subnet": "198.18.200.0/24"}], [{"subnet": "2001:db8:200::/64"}]],
                  "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}},
        {"type": "palisade-cni", "agentSocket": socket, "agentTimeoutMs": 10000}]})
}

/// The `CNI_ARGS` a kubelet's runtime passes for a pod sandbox.
fn kubelet_args<'a>(
    ns: &'a str,
    name: &'a str,
    sandbox: &'a str,
    uid: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", ns),
        ("K8S_POD_NAME", name),
        ("K8S_POD_INFRA_CONTAINER_ID", sandbox),
        ("K8S_POD_UID", uid),
    ]
}

/// A Pod object for a sandbox, with `status.podIPs` as given (none: the
/// kubelet has not reported addresses yet).
fn cni_pod(ns: &str, name: &str, uid: &str, app: &str, pod_ips: &[IpAddr]) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": uid, "labels": {"app": app}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Pending"}});
    if !pod_ips.is_empty() {
        p["status"] = json!({"phase": "Running", "podIP": pod_ips[0].to_string(),
            "podIPs": pod_ips.iter().map(|a| json!({"ip": a.to_string()})).collect::<Vec<_>>()});
    }
    p
}

fn assert_enforced(agent: &Agent, pod: &str, sandbox: &Sandbox) {
    assert_eq!(
        endpoint_state(agent, pod),
        Some((sandbox.host_ifname().map(str::to_owned), "enforced".into())),
        "{pod}\n{}",
        agent.log_text()
    );
}

/// How the agent goes down.
#[derive(Clone, Copy)]
enum Stop {
    /// SIGTERM: a clean stop.
    Term,
    /// SIGKILL: a crash, nothing runs on the way out.
    Kill,
}

/// Stops the agent, lets the probes run against the pinned programs,
/// starts a new agent with the same arguments and checks it enforces
/// `pods` on their sandboxes' interfaces.
fn restart(
    agent: &mut Agent,
    how: Stop,
    node: &Node,
    d: &NodeDirs,
    wait_rounds: &dyn Fn(usize),
    pods: &[(&str, &Sandbox)],
) {
    wait_rounds(2);
    match how {
        Stop::Term => assert!(agent.stop(), "clean stop"),
        Stop::Kill => {
            agent.crash();
        }
    }
    wait_rounds(2);
    *agent = Agent::start(node, d, AGENT_ARGS);
    agent.sync_ok();
    for (pod, sandbox) in pods {
        assert_enforced(agent, pod, sandbox);
    }
    wait_rounds(3);
}

/// Restarts the agent once per entry of `order` (see [`restart`]) while
/// probing `flows` continuously; returns (rounds, wrong verdicts).
fn restarts_while_probing(
    agent: &mut Agent,
    order: [Stop; 2],
    (node, d): (&Node, &NodeDirs),
    flows: &[Flow<'_>],
    pods: &[(&str, &Sandbox)],
) -> (usize, Vec<String>) {
    let stop = AtomicBool::new(false);
    let rounds = AtomicUsize::new(0);
    let bad: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            // Bounded: stops when told, or after 5 minutes at most.
            let deadline = Instant::now() + Duration::from_secs(300);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let w = wrong(flows);
                bad.lock().unwrap().extend(w);
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        });
        let wait_rounds = |n: usize| {
            let target = rounds.load(Ordering::Relaxed) + n;
            let deadline = Instant::now() + Duration::from_secs(120);
            while rounds.load(Ordering::Relaxed) < target {
                assert!(Instant::now() < deadline, "probe rounds stalled");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        for how in order {
            restart(agent, how, node, d, &wait_rounds, pods);
        }
        stop.store(true, Ordering::Relaxed);
    });
    (rounds.into_inner(), bad.into_inner().unwrap())
}

/// What may and may not reach what, both families, for db's current
/// sandbox.
fn flows<'a>(client: &'a Pod, web: &'a Sandbox, db: &'a Sandbox) -> Vec<Flow<'a>> {
    let mut f: Vec<Flow<'a>> = Vec::new();
    for v6 in [false, true] {
        let (w, b) = (web.ip(v6).unwrap(), db.ip(v6).unwrap());
        f.extend([
            (
                client as &(dyn Endpoint + Sync),
                w,
                80,
                true,
                "client->web allowed",
            ),
            (client, w, 81, false, "client->web denied port"),
            // db is judged by the address CNI gave it, not its stale status.
            (db, w, 80, true, "db->web allowed"),
            (client, b, 81, true, "client->db allowed"),
            (client, b, 80, false, "client->db denied port"),
            (web, b, 81, false, "web->db not admitted"),
        ]);
    }
    f
}

#[test]
fn pods_known_only_through_cni_stay_enforced_across_restarts() {
    let lab = LabSpec::new(&format!("pcc{}", std::process::id() % 100_000))
        .node("n1")
        .pod("client", "dev", "n1")
        .up()
        .expect("lab up");
    let node: &Node = lab.node("n1");
    let client = lab.pod("client");
    let bpffs = Bpffs::mount();
    let tmp = tempfile::tempdir().unwrap();
    let d = NodeDirs::new(tmp.path(), &bpffs, "n1");

    // The runtime's side: the driver, palisade-cni beside Debian's plugins.
    let driver = Driver::build(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cni-runtime"))
        .expect("build the libcni driver");
    let bin = tmp.path().join("cni-bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(CNI, bin.join("palisade-cni")).unwrap();
    let chain = Chain::new(
        driver,
        &tmp.path().join("cni"),
        &conflist(&d.socket, &tmp.path().join("ipam")),
        &[&bin, Path::new(DEBIAN_PLUGIN_DIR)],
    )
    .unwrap();
    let web_args = kubelet_args("prod", "web", "sandbox-web-1", "uid-web");
    let db1_args = kubelet_args("prod", "db", "sandbox-db-1", "uid-db");
    let db2_args = kubelet_args("prod", "db", "sandbox-db-2", "uid-db");

    // web has no addresses in its status; db has a previous sandbox's.
    let stale: Vec<IpAddr> = vec![
        "198.18.200.250".parse().unwrap(),
        "2001:db8:200::fa".parse().unwrap(),
    ];
    let objects = |db_ips: &[IpAddr]| {
        vec![
            namespace("dev", json!({})),
            namespace("prod", json!({})),
            pod(
                client,
                "dev",
                "client",
                "uid-client",
                json!({"app": "client"}),
            ),
            cni_pod("prod", "web", "uid-web", "web", &[]),
            cni_pod("prod", "db", "uid-db", "db", db_ips),
            policy(
                "prod",
                "web-ingress",
                json!({"podSelector": {"matchLabels": {"app": "web"}},
                       "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "client"}}},
                                             {"podSelector": {"matchLabels": {"app": "db"}}}],
                                    "ports": [{"protocol": "TCP", "port": 80}]}]}),
            ),
            policy(
                "prod",
                "db-ingress",
                json!({"podSelector": {"matchLabels": {"app": "db"}},
                       "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "client"}}}],
                                    "ports": [{"protocol": "TCP", "port": 81}]}]}),
            ),
        ]
    };
    d.write("all.yaml", &objects(&stale));
    let mut agent = Agent::start(node, &d, AGENT_ARGS);
    agent.sync_ok();

    let mut web = Sandbox::create(&lab, "sandbox-web-1", "prod/web").unwrap();
    let mut db = Sandbox::create(&lab, "sandbox-db-1", "prod/db").unwrap();
    let added = chain.add(node, &mut web, &web_args).expect("ADD web");
    assert_eq!(added["ips"].as_array().map(Vec::len), Some(2), "{added}");
    chain.add(node, &mut db, &db1_args).expect("ADD db");
    assert!(!db.ips().iter().any(|a| stale.contains(a)));
    let tcp = Services::new().tcp(80).tcp(81);
    let _web_servers = serve(&web, &tcp).expect("web servers");
    let mut db_servers = serve(&db, &tcp).expect("db servers");
    assert_enforced(&agent, "prod/web", &web);
    assert_enforced(&agent, "prod/db", &db);

    expect_flows("after ADD", &agent, &flows(client, &web, &db));
    chain.check(node, &web, &web_args).expect("CHECK web");
    chain.check(node, &db, &db1_args).expect("CHECK db");
    assert!(
        agent.log_text().contains("disagree"),
        "db's stale status.podIPs against its CNI addresses is logged:\n{}",
        agent.log_text()
    );

    // Restarts while probing: SIGTERM, then SIGKILL. The new agents read
    // the CNI records and never let go of either pod.
    let mut total_rounds = 0;
    let mut all_wrong = Vec::new();
    let current = flows(client, &web, &db);
    let (rounds, bad) = restarts_while_probing(
        &mut agent,
        [Stop::Term, Stop::Kill],
        (node, &d),
        &current,
        &[("prod/web", &web), ("prod/db", &db)],
    );
    total_rounds += rounds;
    all_wrong.extend(bad);
    chain
        .check(node, &web, &web_args)
        .expect("CHECK web after restarts");
    chain
        .check(node, &db, &db1_args)
        .expect("CHECK db after restarts");

    // The kubelet catches up with db's addresses; then db's sandbox is
    // re-created (new container id, new address), so the status is stale
    // again, and the agent restarts once more while probing.
    let first_db_ips = db.ips().to_vec();
    d.write("all.yaml", &objects(&first_db_ips));
    agent.sync_ok();
    expect_flows("status caught up", &agent, &flows(client, &web, &db));
    chain.del(node, &db, &db1_args).expect("DEL db");
    drop(db_servers);
    drop(db);
    let mut db = Sandbox::create(&lab, "sandbox-db-2", "prod/db").unwrap();
    chain
        .add(node, &mut db, &db2_args)
        .expect("ADD re-created db");
    assert!(
        db.ips().iter().all(|a| !first_db_ips.contains(a)),
        "host-local gave the new sandbox new addresses: {:?} vs {first_db_ips:?}",
        db.ips()
    );
    db_servers = serve(&db, &tcp).expect("db servers");
    assert_enforced(&agent, "prod/db", &db);
    expect_flows("sandbox re-created", &agent, &flows(client, &web, &db));
    let current = flows(client, &web, &db);
    let (rounds, bad) = restarts_while_probing(
        &mut agent,
        [Stop::Kill, Stop::Term],
        (node, &d),
        &current,
        &[("prod/web", &web), ("prod/db", &db)],
    );
    total_rounds += rounds;
    all_wrong.extend(bad);
    chain
        .check(node, &db, &db2_args)
        .expect("CHECK re-created db");
    let probes = total_rounds * current.len();
    eprintln!(
        "cni chain: {probes} probes in {total_rounds} rounds across 4 restarts, {} wrong",
        all_wrong.len()
    );
    assert!(
        all_wrong.is_empty(),
        "{} wrong verdicts of {probes}:\n{}\n{}",
        all_wrong.len(),
        all_wrong.join("\n"),
        agent.log_text()
    );
    assert!(total_rounds >= 20, "{total_rounds} rounds");

    // DEL through the chain: the agent lets go of both sandboxes, and a
    // restart does not bring them back.
    chain.del(node, &web, &web_args).expect("DEL web");
    chain.del(node, &db, &db2_args).expect("DEL db");
    drop(db_servers);
    agent.sync_ok();
    for pod in ["prod/web", "prod/db"] {
        assert_ne!(
            endpoint_state(&agent, pod).map(|e| e.1),
            Some("enforced".into()),
            "{pod}"
        );
    }
    assert!(agent.stop());
    let records = std::fs::read_to_string(d.state.join("cni.json")).unwrap();
    assert!(
        !records.contains("sandbox-"),
        "DEL forgets the sandboxes: {records}"
    );
    let agent = Agent::start(node, &d, AGENT_ARGS);
    agent.sync_ok();
    for pod in ["prod/web", "prod/db"] {
        assert_ne!(
            endpoint_state(&agent, pod).map(|e| e.1),
            Some("enforced".into()),
            "{pod}\n{}",
            agent.log_text()
        );
    }
}

/// What a primary CNI writes: `ptp` + `host-local`, no palisade-cni.
fn primary_conflist(ipam: &Path, mtu: u32) -> Value {
    json!({"cniVersion": "1.0.0", "name": "k8s-pod-network", "plugins": [
        {"type": "ptp", "ipMasq": false, "mtu": mtu,
         "ipam": {"type": "host-local", "dataDir": ipam,
                  "ranges": [[{"subnet": "198.18.201.0/24"}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}}]})
}

/// The plugin types of the conflist at `path`, in order.
fn plugin_types(path: &Path) -> Vec<String> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(path).unwrap_or_default()).unwrap_or_default();
    v["plugins"]
        .as_array()
        .map(|p| {
            p.iter()
                .map(|e| e["type"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (bounded) until `f` holds; the time it took.
fn within(what: &str, limit: Duration, f: impl Fn() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    t0.elapsed()
}

/// `palisade-cni install --watch` kills its child on drop.
struct Installer(std::process::Child);

impl Drop for Installer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The chain as a node gets it: the primary CNI's conflist (real `ptp` +
/// `host-local`), and `palisade-cni install --watch` adding itself at the
/// end. ADD through libcni gives the pod its interface and address from
/// the real plugins and palisade-cni has it enforced from the first
/// packet; CHECK passes; the primary CNI then rewrites its conflist
/// without palisade-cni (as its installer does on restart): the watch puts
/// the entry back, once, and a pod added afterwards is enforced too; DEL
/// lets go of both.
#[test]
fn install_watch_keeps_a_rewritten_chain_enforced() {
    let lab = LabSpec::new(&format!("pci{}", std::process::id() % 100_000))
        .node("n1")
        .pod("client", "dev", "n1")
        .up()
        .expect("lab up");
    let node: &Node = lab.node("n1");
    let client = lab.pod("client");
    let bpffs = Bpffs::mount();
    let tmp = tempfile::tempdir().unwrap();
    let d = NodeDirs::new(tmp.path(), &bpffs, "n1");
    d.write(
        "all.yaml",
        &[
            namespace("dev", json!({})),
            namespace("prod", json!({})),
            pod(
                client,
                "dev",
                "client",
                "uid-client",
                json!({"app": "client"}),
            ),
            cni_pod("prod", "web1", "uid-web1", "web", &[]),
            cni_pod("prod", "web2", "uid-web2", "web", &[]),
            policy(
                "prod",
                "web-ingress",
                json!({"podSelector": {"matchLabels": {"app": "web"}},
                       "ingress": [{"from": [{"namespaceSelector": {},
                                               "podSelector": {"matchLabels": {"app": "client"}}}],
                                    "ports": [{"protocol": "TCP", "port": 80}]}]}),
            ),
        ],
    );
    let agent = Agent::start(node, &d, AGENT_ARGS);

    // The node's CNI directories: the primary CNI's configuration only.
    let (bin, conf, ipam) = (
        tmp.path().join("cni-bin"),
        tmp.path().join("net.d"),
        tmp.path().join("ipam"),
    );
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&conf).unwrap();
    let file = conf.join("10-ptp.conflist");
    std::fs::write(&file, primary_conflist(&ipam, 1500).to_string()).unwrap();
    let installer = Installer(
        std::process::Command::new(CNI)
            .args(["install", "--watch", "--bin-dir"])
            .arg(&bin)
            .arg("--conf-dir")
            .arg(&conf)
            .arg("--agent-socket")
            .arg(&d.socket)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("palisade-cni install --watch"),
    );
    let chained = ["ptp", "palisade-cni"].map(String::from).to_vec();
    within("installed", Duration::from_secs(10), || {
        plugin_types(&file) == chained
    });
    assert!(bin.join("palisade-cni").exists());

    let driver = Driver::build(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cni-runtime"))
        .expect("build the libcni driver");
    let chain = Chain::at(
        driver,
        &file,
        &tmp.path().join("cni-cache"),
        &[&bin, Path::new(DEBIAN_PLUGIN_DIR)],
    );
    let tcp = Services::new().tcp(80).tcp(81);
    let add = |id: &'static str, name: &'static str, uid: &'static str| {
        let mut sb = Sandbox::create(&lab, id, &format!("prod/{name}")).unwrap();
        let args = kubelet_args("prod", name, id, uid);
        let result = chain.add(node, &mut sb, &args).expect("ADD");
        // The address and interface come from host-local and ptp.
        let v4 = sb.ip(false).expect("an IPv4 address");
        assert!(v4.to_string().starts_with("198.18.201."), "{result}");
        assert!(sb.host_ifname().is_some(), "{result}");
        let servers = serve(&sb, &tcp).expect("servers");
        (sb, args, servers)
    };
    let first_packets = |sb: &Sandbox| {
        let w = sb.ip(false).unwrap();
        let flows: Vec<Flow<'_>> = vec![
            (client, w, 81, false, "client->web:81 denied"),
            (client, w, 80, true, "client->web:80 allowed"),
        ];
        expect_flows("first packets after ADD", &agent, &flows);
    };
    let (web1, web1_args, _s1) = add("sandbox-web1", "web1", "uid-web1");
    first_packets(&web1);
    assert_enforced(&agent, "prod/web1", &web1);
    chain.check(node, &web1, &web1_args).expect("CHECK web1");

    // The primary CNI restarts and writes its configuration afresh.
    std::fs::write(&file, primary_conflist(&ipam, 1400).to_string()).unwrap();
    let t = within("repaired", Duration::from_secs(5), || {
        plugin_types(&file) == chained
    });
    let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        v["plugins"][0]["mtu"], 1400,
        "the primary's new content kept"
    );
    eprintln!("conflist rewritten without palisade-cni: repaired {t:?} later");
    // Repaired once: the watch's own write sets off nothing more.
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        std::fs::metadata(&file).unwrap().modified().unwrap(),
        modified
    );

    let (web2, web2_args, _s2) = add("sandbox-web2", "web2", "uid-web2");
    first_packets(&web2);
    assert_enforced(&agent, "prod/web2", &web2);
    chain.check(node, &web2, &web2_args).expect("CHECK web2");
    // web1's CHECK still passes through the repaired chain.
    chain
        .check(node, &web1, &web1_args)
        .expect("CHECK web1 after the repair");

    chain.del(node, &web1, &web1_args).expect("DEL web1");
    chain.del(node, &web2, &web2_args).expect("DEL web2");
    agent.sync_ok();
    for p in ["prod/web1", "prod/web2"] {
        assert_ne!(
            endpoint_state(&agent, p).map(|e| e.1),
            Some("enforced".into()),
            "{p}\n{}",
            agent.log_text()
        );
    }
    // The installer said what it did.
    let mut installer = installer;
    let _ = installer.0.kill();
    let mut out = String::new();
    if let Some(mut o) = installer.0.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut o, &mut out);
    }
    assert_eq!(out.matches("repaired").count(), 1, "{out}");
    assert!(out.contains("re-inserted"), "{out}");
}
