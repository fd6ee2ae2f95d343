//! The agent binary against real pods: lab nodes and routed pods in
//! network namespaces, the agent started from the built binary inside a
//! node's namespace with `--manifests`, policies changed step by step with
//! `palisade sync` after each, and real TCP/UDP/SCTP probes over IPv4 and
//! IPv6. Needs root. Everything (namespaces, the private bpffs holding the
//! pins, temp dirs, the agent process) is removed at the end, also on
//! failure.

mod support;

use std::time::Duration;

use palisade_lab::{LabSpec, Services, serve};
use serde_json::json;
use support::*;

fn services() -> Services {
    Services::new().tcp(80).tcp(81).udp(53).sctp(9000)
}

fn lab_prefix(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 100_000)
}

#[test]
fn policies_follow_manifest_changes() {
    let mut lab = LabSpec::new(&lab_prefix("pae"))
        .node("n1")
        .pod("client", "dev", "n1")
        .pod("web", "prod", "n1")
        .pod("db", "prod", "n1")
        .up()
        .expect("lab up");
    let bpffs = Bpffs::mount();
    let tmp = tempfile::tempdir().unwrap();
    let d = NodeDirs::new(tmp.path(), &bpffs, "n1");
    let _s: Vec<_> = ["client", "web", "db"]
        .iter()
        .map(|p| serve(lab.pod(p), &services()).expect("servers"))
        .collect();

    let (client, web, db) = (lab.pod("client"), lab.pod("web"), lab.pod("db"));
    let ns = |dev: serde_json::Value| vec![namespace("dev", dev), namespace("prod", json!({}))];
    let pods = |client_app: &str, db_app: &str| {
        vec![
            pod(
                client,
                "dev",
                "client",
                "uid-client",
                json!({"app": client_app}),
            ),
            pod(web, "prod", "web", "uid-web-1", json!({"app": "web"})),
            pod(db, "prod", "db", "uid-db", json!({"app": db_app})),
        ]
    };
    d.write("00-namespaces.yaml", &ns(json!({})));
    d.write("10-pods.yaml", &pods("client", "db"));
    let agent = Agent::start(lab.node("n1"), &d, &[]);
    let a = [&agent];

    // Ready, and /readyz says so (inside the node's namespace).
    let ready = lab
        .node("n1")
        .run(|| {
            use std::io::{Read as _, Write as _};
            let mut s = std::net::TcpStream::connect("127.0.0.1:9890").expect("health");
            s.write_all(b"GET /readyz HTTP/1.1\r\n\r\n").unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        })
        .unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let st = agent.status();
    assert_eq!(st.endpoints.len(), 3, "{st:?}");
    assert!(st.endpoints.iter().all(|e| e.state == "enforced"), "{st:?}");

    // 0. No policy: everything reaches everything.
    let r0 = agent.sync_ok();
    let mut cases = Vec::new();
    for dst in both(web) {
        cases.extend([
            (client, dst, P::Tcp(80), true),
            (client, dst, P::Udp(53), true),
            (client, dst, P::Sctp(9000), true),
            (db, dst, P::Tcp(80), true),
        ]);
    }
    expect("no policy", &a, &cases);

    // 1. Ingress to web from app=client pods (any namespace), TCP/80 and UDP/53.
    let web_ingress = |ports: serde_json::Value, from: serde_json::Value| {
        policy(
            "prod",
            "web-ingress",
            json!({"podSelector": {"matchLabels": {"app": "web"}},
                   "ingress": [{"from": from, "ports": ports}]}),
        )
    };
    let from_clients =
        json!([{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "client"}}}]);
    d.write(
        "20-policy.yaml",
        &[web_ingress(
            json!([{"protocol": "TCP", "port": 80}, {"protocol": "UDP", "port": 53}]),
            from_clients.clone(),
        )],
    );
    let r1 = agent.sync_ok();
    assert!(r1 > r0, "revision moves: {r0} -> {r1}");
    let mut cases = Vec::new();
    for dst in both(web) {
        cases.extend([
            (client, dst, P::Tcp(80), true),
            (client, dst, P::Udp(53), true),
            (client, dst, P::Sctp(9000), false),
            (client, dst, P::Tcp(81), false),
            (db, dst, P::Tcp(80), false),
        ]);
    }
    for dst in both(db) {
        cases.push((client, dst, P::Tcp(81), true)); // db is not isolated
    }
    expect("create", &a, &cases);

    // 2. Replace: TCP/80 and SCTP/9000.
    d.write(
        "20-policy.yaml",
        &[web_ingress(
            json!([{"protocol": "TCP", "port": 80}, {"protocol": "SCTP", "port": 9000}]),
            from_clients.clone(),
        )],
    );
    agent.sync_ok();
    let mut cases = Vec::new();
    for dst in both(web) {
        cases.extend([
            (client, dst, P::Tcp(80), true),
            (client, dst, P::Udp(53), false),
            (client, dst, P::Sctp(9000), true),
        ]);
    }
    expect("replace", &a, &cases);

    // 3. Relabel pods: client stops being app=client, db becomes one.
    d.write("10-pods.yaml", &pods("other", "client"));
    agent.sync_ok();
    let mut cases = Vec::new();
    for dst in both(web) {
        cases.extend([
            (client, dst, P::Tcp(80), false),
            (db, dst, P::Tcp(80), true),
            (db, dst, P::Sctp(9000), true),
        ]);
    }
    expect("relabel pod", &a, &cases);

    // 4. Namespace selector, then relabel the namespace.
    let from_frontend = json!([{"namespaceSelector": {"matchLabels": {"team": "frontend"}}}]);
    d.write(
        "20-policy.yaml",
        &[web_ingress(
            json!([{"protocol": "TCP", "port": 80}]),
            from_frontend,
        )],
    );
    agent.sync_ok();
    let mut cases = Vec::new();
    for dst in both(web) {
        cases.extend([
            (client, dst, P::Tcp(80), false),
            (db, dst, P::Tcp(80), false),
        ]);
    }
    expect("namespace selector", &a, &cases);
    d.write("00-namespaces.yaml", &ns(json!({"team": "frontend"})));
    agent.sync_ok();
    let mut cases = Vec::new();
    for dst in both(web) {
        cases.extend([
            (client, dst, P::Tcp(80), true),
            (db, dst, P::Tcp(80), false),
        ]);
    }
    expect("relabel namespace", &a, &cases);

    // 5. Delete the ingress policy; egress policy on dev: only web TCP/80.
    std::fs::remove_file(d.manifests.join("20-policy.yaml")).unwrap();
    d.write(
        "30-egress.yaml",
        &[policy(
            "dev",
            "client-egress",
            json!({"podSelector": {}, "policyTypes": ["Egress"],
                   "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prod"}},
                                       "podSelector": {"matchLabels": {"app": "web"}}}],
                               "ports": [{"protocol": "TCP", "port": 80}]}]}),
        )],
    );
    agent.sync_ok();
    let mut cases = Vec::new();
    for dst in both(web) {
        cases.extend([
            (client, dst, P::Tcp(80), true),
            (client, dst, P::Tcp(81), false),
            (client, dst, P::Udp(53), false),
            (db, dst, P::Tcp(81), true),
        ]);
    }
    for dst in both(db) {
        cases.push((client, dst, P::Tcp(80), false));
    }
    expect("delete + egress", &a, &cases);

    // 6. Pod web deleted, then recreated (new UID, new interface, new IP).
    let old_web = both(web);
    let mut without_web = pods("other", "client");
    without_web.remove(1);
    d.write("10-pods.yaml", &without_web);
    agent.sync_ok();
    let mut cases = Vec::new();
    for dst in old_web {
        cases.extend([
            (client, dst, P::Tcp(80), false),
            (db, dst, P::Tcp(81), true),
        ]);
    }
    expect("pod deleted", &a, &cases);
    assert_eq!(agent.status().endpoints.len(), 2);

    lab.add_pod("web2", "prod", "n1").expect("new pod");
    let web2 = lab.pod("web2");
    let _s2 = serve(web2, &services()).expect("servers");
    let (client, db) = (lab.pod("client"), lab.pod("db"));
    // Its host routes appear only after the manifest (as when the API is
    // faster than the CNI): reported, then placed on the route events.
    let node = lab.node("n1");
    let routes = [
        format!("{}/32", web2.ipv4()),
        format!("{}/128", web2.ipv6()),
    ];
    for r in &routes {
        palisade_lab::netns::ip(&["-n", node.netns(), "route", "del", r]).unwrap();
    }
    d.write(
        "10-pods.yaml",
        &[
            pod(
                client,
                "dev",
                "client",
                "uid-client",
                json!({"app": "other"}),
            ),
            pod(web2, "prod", "web", "uid-web-2", json!({"app": "web"})),
            pod(db, "prod", "db", "uid-db", json!({"app": "client"})),
        ],
    );
    agent.sync_ok();
    let web_state = || {
        agent
            .status()
            .endpoints
            .into_iter()
            .find(|e| e.pod == "prod/web")
            .map(|e| e.state)
    };
    assert_eq!(web_state().as_deref(), Some("no-interface"));
    for r in &routes {
        palisade_lab::netns::ip(&[
            "-n",
            node.netns(),
            "route",
            "add",
            r,
            "dev",
            web2.host_veth(),
        ])
        .unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while web_state().as_deref() != Some("enforced") {
        assert!(
            std::time::Instant::now() < deadline,
            "not placed on route events:\n{}",
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let a = [&agent];
    let mut cases = Vec::new();
    for dst in both(web2) {
        cases.extend([
            (client, dst, P::Tcp(80), true),
            (client, dst, P::Tcp(81), false),
        ]);
    }
    for dst in old_web {
        cases.push((client, dst, P::Tcp(80), false));
    }
    expect("pod recreated", &a, &cases);
    let st = agent.status();
    assert!(
        st.endpoints
            .iter()
            .any(|e| e.pod == "prod/web" && e.interface.as_deref() == Some(web2.host_veth())),
        "{st:?}"
    );

    // SIGTERM: clean exit, enforcement stays (pins, programs).
    let mut agent = agent;
    assert!(agent.stop(), "clean exit on SIGTERM:\n{}", agent.log_text());
    assert!(
        std::fs::read_dir(d.bpffs.join("links")).unwrap().count() >= 4,
        "link pins stay"
    );
    let mut cases = Vec::new();
    for dst in both(web2) {
        cases.extend([
            (client, dst, P::Tcp(80), true),
            (client, dst, P::Tcp(81), false),
        ]);
    }
    expect("after stop", &[&agent], &cases);

    // cleanup: pins gone, programs detached.
    let out = std::process::Command::new(BIN)
        .args(["cleanup", "--node-name", "n1", "--bpffs-dir"])
        .arg(&d.bpffs)
        .arg("--state-dir")
        .arg(&d.state)
        .arg("--socket")
        .arg(&d.socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!d.bpffs.exists());
    let mut cases = Vec::new();
    for dst in both(web2) {
        cases.push((client, dst, P::Tcp(81), true));
    }
    expect("after cleanup", &[&agent], &cases);
    drop(tmp);
}

fn web_policy() -> serde_json::Value {
    policy(
        "prod",
        "web",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "client"}}}],
                            "ports": [{"protocol": "TCP", "port": 80}, {"protocol": "UDP", "port": 53}]}]}),
    )
}

/// An Admin ClusterNetworkPolicy of one ingress rule on `prod/web` from
/// pods labelled `app: FROM` in any namespace.
fn admin_rule(
    name: &str,
    priority: u32,
    action: &str,
    from: &str,
    protocol: serde_json::Value,
) -> serde_json::Value {
    json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name},
        "spec": {
            "tier": "Admin",
            "priority": priority,
            "subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}},
            "ingress": [{
                "action": action,
                "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": from}}}}],
                "protocols": [protocol],
            }],
        },
    })
}

/// Clean restarts and crashes never change a verdict, NetworkPolicy's or
/// the Admin tier's, while probes run throughout.
#[test]
fn restart_keeps_enforcing_without_wrong_verdicts() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let lab = LabSpec::new(&lab_prefix("par"))
        .node("n1")
        .pod("client", "dev", "n1")
        .pod("web", "prod", "n1")
        .pod("other", "dev", "n1")
        .up()
        .expect("lab up");
    let bpffs = Bpffs::mount();
    let tmp = tempfile::tempdir().unwrap();
    let d = NodeDirs::new(tmp.path(), &bpffs, "n1");
    let (client, web, other) = (lab.pod("client"), lab.pod("web"), lab.pod("other"));
    let _s = serve(web, &services()).expect("servers");
    let base = vec![
        namespace("dev", json!({})),
        namespace("prod", json!({})),
        pod(client, "dev", "client", "uid-c", json!({"app": "client"})),
        pod(web, "prod", "web", "uid-w", json!({"app": "web"})),
        pod(other, "dev", "other", "uid-o", json!({"app": "other"})),
        web_policy(),
        // The Admin tier over the NetworkPolicy, both ways: a Deny of
        // what it allows and an Accept of what it does not.
        admin_rule(
            "no-client-80",
            10,
            "Deny",
            "client",
            json!({"tcp": {"destinationPort": {"number": 80}}}),
        ),
        admin_rule(
            "other-dns",
            20,
            "Accept",
            "other",
            json!({"udp": {"destinationPort": {"number": 53}}}),
        ),
        // A second coded range on the same entry: its codes need a tier
        // table (TIERSETS), which a restart must find pinned.
        admin_rule(
            "other-mdns",
            21,
            "Accept",
            "other",
            json!({"udp": {"destinationPort": {"number": 5353}}}),
        ),
    ];
    d.write("all.yaml", &base);
    let mut agent = Agent::start(lab.node("n1"), &d, &[]);
    agent.sync_ok();

    let mut cases = Vec::new();
    for dst in both(web) {
        cases.extend([
            (client, dst, P::Tcp(80), false),
            (client, dst, P::Udp(53), true),
            (client, dst, P::Tcp(81), false),
            (other, dst, P::Tcp(80), false),
            (other, dst, P::Udp(53), true),
        ]);
    }
    expect("before restart", &[&agent], &cases);

    let stop = AtomicBool::new(false);
    let rounds = AtomicUsize::new(0);
    let wrong: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            // Bounded: stops when told, or after 5 minutes at most.
            let deadline = std::time::Instant::now() + Duration::from_secs(300);
            while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                let bad = mismatches(&cases);
                wrong.lock().unwrap().extend(bad);
                rounds.fetch_add(1, Ordering::Relaxed);
            }
        });
        let wait_rounds = |n: usize| {
            let target = rounds.load(Ordering::Relaxed) + n;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while rounds.load(Ordering::Relaxed) < target {
                assert!(std::time::Instant::now() < deadline, "probe rounds stalled");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        wait_rounds(2);
        // 1. Clean restart. While the agent is down, the cluster changes so
        //    that a fresh compiler would number identities differently: a
        //    namespace and pod sorting first appear (a remote pod).
        assert!(agent.stop(), "clean stop");
        wait_rounds(2);
        let mut changed = base.clone();
        changed.insert(0, namespace("aaa", json!({})));
        changed.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "early", "namespace": "aaa", "uid": "uid-e", "labels": {"app": "client"}},
            "spec": {"nodeName": "n9", "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running", "podIPs": [{"ip": "198.18.9.10"}]}}));
        d.write("all.yaml", &changed);
        agent = Agent::start(lab.node("n1"), &d, &[]);
        agent.sync_ok();
        wait_rounds(3);
        // 2. Crash (SIGKILL) and restart.
        agent.crash();
        wait_rounds(2);
        agent = Agent::start(lab.node("n1"), &d, &[]);
        agent.sync_ok();
        wait_rounds(3);
        stop.store(true, Ordering::Relaxed);
    });
    let wrong = wrong.into_inner().unwrap();
    assert!(
        wrong.is_empty(),
        "{} wrong verdicts in {} rounds across restarts:\n{}\n{}",
        wrong.len(),
        rounds.load(Ordering::Relaxed),
        wrong.join("\n"),
        agent.log_text()
    );
    assert!(rounds.load(Ordering::Relaxed) >= 12);
    // The restarted agents adopted the pinned maps and reconciled by diff:
    // with the allocation table every unchanged object kept its numbers, so
    // the first restart wrote only what changed while it was down (the new
    // pod's ipcache entry and web's two rows for its identity, the TCP one
    // twice: its Admin Deny before the NetworkPolicy's allow, as
    // make-before-break orders them) and the second wrote nothing.
    let log = agent.log_text();
    let writes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("maps reconciled"))
        .filter_map(|l| l.split("writes=").nth(1))
        .map(|w| w.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(writes.len(), 3, "{log}");
    assert_eq!(&writes[1..], ["4", "0"], "{log}");
    assert_eq!(log.matches("pinned maps adopted").count(), 3, "{log}");
    expect("after restarts", &[&agent], &cases);
}

#[test]
fn malformed_manifest_keeps_previous_content() {
    let lab = LabSpec::new(&lab_prefix("pam"))
        .node("n1")
        .pod("client", "dev", "n1")
        .pod("web", "prod", "n1")
        .up()
        .expect("lab up");
    let bpffs = Bpffs::mount();
    let tmp = tempfile::tempdir().unwrap();
    let d = NodeDirs::new(tmp.path(), &bpffs, "n1");
    let (client, web) = (lab.pod("client"), lab.pod("web"));
    let _s = serve(web, &services()).expect("servers");
    d.write(
        "00-base.yaml",
        &[
            namespace("dev", json!({})),
            namespace("prod", json!({})),
            pod(client, "dev", "client", "uid-c", json!({"app": "client"})),
            pod(web, "prod", "web", "uid-w", json!({"app": "web"})),
        ],
    );
    d.write("20-policy.yaml", &[web_policy()]);
    let agent = Agent::start(lab.node("n1"), &d, &[]);
    agent.sync_ok();
    let check = |step: &str, tcp80: bool| {
        let mut cases = Vec::new();
        for dst in both(web) {
            cases.extend([
                (client, dst, P::Tcp(80), tcp80),
                (client, dst, P::Tcp(81), !tcp80),
            ]);
        }
        expect(step, &[&agent], &cases);
    };
    check("valid", true);

    // A field of the wrong type: the file is rejected, its previous content
    // stays in force, and `palisade sync` says where.
    let bad = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: web\n  namespace: prod\nspec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - protocol: TCP\n      port: 81\n      endPort: eighty-two\n";
    d.write_raw("20-policy.yaml", bad);
    let err = agent.sync().expect_err("sync reports the bad file");
    assert!(
        err.contains("20-policy.yaml: line 12: document 1 (NetworkPolicy prod/web): spec.ingress[0].ports[0].endPort: invalid type"),
        "{err}"
    );
    check("unparsable file", true);

    // Parses, but the API would reject it (endPort < port): named too.
    d.write_raw("20-policy.yaml", &bad.replace("eighty-two", "79"));
    let err = agent.sync().expect_err("sync reports the rejected object");
    assert!(
        err.contains("NetworkPolicy prod/web") && err.contains("endPort"),
        "{err}"
    );
    check("rejected object", true);

    // Fixed: applied (TCP/81 only now, from anywhere).
    d.write_raw("20-policy.yaml", &bad.replace("eighty-two", "81"));
    agent.sync_ok();
    check("fixed", false);
    assert!(agent.status().problems.is_empty());
}

#[test]
fn two_agents_on_one_machine_judge_their_own_pods() {
    let lab = LabSpec::new(&lab_prefix("pa2"))
        .node("n1")
        .node("n2")
        .pod("a", "dev", "n1")
        .pod("c", "prod", "n1")
        .pod("b", "prod", "n2")
        .up()
        .expect("lab up");
    let bpffs = Bpffs::mount();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (lab.pod("a"), lab.pod("b"), lab.pod("c"));
    let _s = serve(b, &services()).expect("servers");
    let docs = vec![
        namespace("dev", json!({})),
        namespace("prod", json!({})),
        pod(a, "dev", "a", "uid-a", json!({"app": "a"})),
        pod(b, "prod", "b", "uid-b", json!({"app": "b"})),
        pod(c, "prod", "c", "uid-c", json!({"app": "c"})),
        // b (on n2) admits a on TCP/80 and /81.
        policy(
            "prod",
            "b-in",
            json!({"podSelector": {"matchLabels": {"app": "b"}},
                   "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "a"}}}],
                                "ports": [{"protocol": "TCP", "port": 80}, {"protocol": "TCP", "port": 81}]}]}),
        ),
        // a (on n1) may only send TCP/80 (anywhere).
        policy(
            "dev",
            "a-out",
            json!({"podSelector": {}, "policyTypes": ["Egress"],
                   "egress": [{"ports": [{"protocol": "TCP", "port": 80}]}]}),
        ),
    ];
    let d1 = NodeDirs::new(tmp.path(), &bpffs, "n1");
    let d2 = NodeDirs::new(tmp.path(), &bpffs, "n2");
    d1.write("all.yaml", &docs);
    d2.write("all.yaml", &docs);
    let mut a1 = Agent::start(lab.node("n1"), &d1, &[]);
    let a2 = Agent::start(lab.node("n2"), &d2, &[]);
    a1.sync_ok();
    a2.sync_ok();

    let mut cases = Vec::new();
    for dst in both(b) {
        cases.extend([
            (a, dst, P::Tcp(80), true),  // a's egress (n1) and b's ingress (n2) allow
            (a, dst, P::Tcp(81), false), // a's egress denies (n1's agent)
            (c, dst, P::Tcp(80), false), // b's ingress denies (n2's agent)
            (c, dst, P::Udp(53), false),
        ]);
    }
    expect("two agents", &[&a1, &a2], &cases);

    // Each agent only touched its own node: endpoints and link pins.
    let names = |d: &NodeDirs| palisade::datapath::pinned_interfaces(&d.bpffs.join("links"));
    let (p1, p2) = (names(&d1), names(&d2));
    assert_eq!(
        p1,
        [a.host_veth(), c.host_veth()]
            .map(String::from)
            .into_iter()
            .collect()
    );
    assert_eq!(p2, [b.host_veth().to_string()].into_iter().collect());
    let s1: Vec<String> = a1.status().endpoints.into_iter().map(|e| e.pod).collect();
    let s2: Vec<String> = a2.status().endpoints.into_iter().map(|e| e.pod).collect();
    assert_eq!(
        (s1, s2),
        (
            vec!["dev/a".to_string(), "prod/c".to_string()],
            vec!["prod/b".to_string()]
        )
    );

    // Stopping and cleaning up n1 leaves n2's enforcement alone.
    assert!(a1.stop());
    let out = std::process::Command::new(BIN)
        .args(["cleanup", "--node-name", "n1", "--bpffs-dir"])
        .arg(&d1.bpffs)
        .arg("--state-dir")
        .arg(&d1.state)
        .arg("--socket")
        .arg(&d1.socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(names(&d2), p2);
    let mut cases = Vec::new();
    for dst in both(b) {
        cases.extend([
            (a, dst, P::Tcp(81), true),  // n1 no longer judges a's egress
            (c, dst, P::Tcp(80), false), // n2 still judges b's ingress
        ]);
    }
    expect("after n1 cleanup", &[&a2], &cases);
}

#[test]
fn cni_add_attaches_pending_then_compiled() {
    use palisade::control::{CniArgs, Request, request};

    let lab = LabSpec::new(&lab_prefix("pac"))
        .node("n1")
        .pod("client", "dev", "n1")
        .pod("web", "prod", "n1")
        .up()
        .expect("lab up");
    let bpffs = Bpffs::mount();
    let tmp = tempfile::tempdir().unwrap();
    let d = NodeDirs::new(tmp.path(), &bpffs, "n1");
    let (client, web) = (lab.pod("client"), lab.pod("web"));
    let _s = serve(web, &services()).expect("servers");
    let base = vec![
        namespace("dev", json!({})),
        namespace("prod", json!({})),
        pod(client, "dev", "client", "uid-c", json!({"app": "client"})),
        web_policy(),
        // An Admin Accept never opens a pending pod.
        admin_rule(
            "client-81",
            10,
            "Accept",
            "client",
            json!({"tcp": {"destinationPort": {"number": 81}}}),
        ),
    ];
    d.write("all.yaml", &base);
    let agent = Agent::start(
        lab.node("n1"),
        &d,
        &["--default-deny-until-synced", "--cni-wait-ms", "300"],
    );
    agent.sync_ok();
    let args = CniArgs {
        container_id: "sandbox-1".into(),
        netns: Some(format!("/var/run/netns/{}", web.netns())),
        ifname: Some("eth0".into()),
        host_ifname: Some(web.host_veth().into()),
        ips: vec![format!("{}/32", web.ipv4()), format!("{}/128", web.ipv6())],
        pod_namespace: "prod".into(),
        pod_name: "web".into(),
        pod_uid: None,
    };
    let call = |r: Request| request(&agent.socket, &r, Duration::from_secs(20)).unwrap();

    // The sources do not know the pod: attached as pending, new flows drop.
    let r = call(Request::CniAdd(args.clone()));
    assert!(r.ok, "{r:?}\n{}", agent.log_text());
    assert_eq!(r.policy.as_deref(), Some("pending"));
    let mut cases = Vec::new();
    for dst in both(web) {
        cases.extend([
            (client, dst, P::Tcp(80), false),
            (client, dst, P::Tcp(81), false),
        ]);
    }
    expect("pending", &[&agent], &cases);
    let r = call(Request::CniCheck(args.clone()));
    assert_eq!(
        (r.ok, r.policy.as_deref()),
        (true, Some("pending")),
        "{r:?}"
    );

    // The pod appears, without addresses yet (the API reports them after
    // CNI ADD): compiled with the plugin's addresses.
    let mut web_pod = pod(web, "prod", "web", "uid-w", json!({"app": "web"}));
    web_pod["status"] = json!({"phase": "Pending"});
    let mut docs = base.clone();
    docs.push(web_pod);
    d.write("all.yaml", &docs);
    agent.sync_ok();
    let mut cases = Vec::new();
    for dst in both(web) {
        cases.extend([
            (client, dst, P::Tcp(80), true),
            (client, dst, P::Tcp(81), true),
            (client, dst, P::Sctp(9000), false),
        ]);
    }
    expect("compiled", &[&agent], &cases);
    let r = call(Request::CniCheck(args.clone()));
    assert_eq!(
        (r.ok, r.policy.as_deref()),
        (true, Some("enforced")),
        "{r:?}"
    );

    // A second ADD for a known pod answers once enforced.
    let r = call(Request::CniAdd(args.clone()));
    assert_eq!(
        (r.ok, r.policy.as_deref()),
        (true, Some("enforced")),
        "{r:?}"
    );

    // DEL of an older sandbox changes nothing; DEL of this one drops the
    // plugin's addresses: the pod (no addresses in the API) is no longer an
    // endpoint and its interface is detached.
    let mut old = args.clone();
    old.container_id = "sandbox-0".into();
    assert!(call(Request::CniDel(old)).ok);
    assert!(call(Request::CniCheck(args.clone())).ok);
    assert!(call(Request::CniDel(args.clone())).ok);
    agent.sync_ok();
    assert!(!call(Request::CniCheck(args.clone())).ok);
    let mut cases = Vec::new();
    for dst in both(web) {
        cases.push((client, dst, P::Tcp(81), true));
    }
    expect("deleted", &[&agent], &cases);
}

/// The node's own surfaces: the control socket is root-only (0600) in a
/// directory the agent created 0700, its state directory and files are
/// private, and health and `/metrics` answer on loopback only by default
/// (not on the node's own address).
#[test]
fn the_agents_own_surfaces_are_private() {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let lab = LabSpec::new(&lab_prefix("pas"))
        .node("n1")
        .pod("web", "prod", "n1")
        .up()
        .expect("lab up");
    let bpffs = Bpffs::mount();
    let tmp = tempfile::tempdir().unwrap();
    let mut d = NodeDirs::new(tmp.path(), &bpffs, "n1");
    // Directories the agent must create itself.
    d.socket = tmp.path().join("run/palisade/agent.sock");
    d.state = tmp.path().join("var/state");
    let web = lab.pod("web");
    d.write(
        "00-base.yaml",
        &[
            namespace("prod", json!({})),
            pod(web, "prod", "web", "uid-w", json!({"app": "web"})),
        ],
    );
    let agent = Agent::start(lab.node("n1"), &d, &[]);
    agent.sync_ok();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(mode(&d.socket), 0o600, "control socket");
    assert_eq!(mode(d.socket.parent().unwrap()), 0o700, "socket directory");
    assert_eq!(mode(&d.state), 0o700, "state directory");
    let files: Vec<_> = std::fs::read_dir(&d.state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty(), "the agent wrote its state");
    for f in files {
        assert_eq!(mode(&f) & 0o077, 0, "{} is private", f.display());
    }
    let node = lab.node("n1");
    let (on_loopback, on_node_address) = node
        .run(|| {
            let timeout = Duration::from_secs(2);
            let connect =
                |a: std::net::SocketAddr| std::net::TcpStream::connect_timeout(&a, timeout).is_ok();
            (
                connect(([127, 0, 0, 1], 9890).into()),
                connect((node.ipv4(), 9890).into()),
            )
        })
        .unwrap();
    assert!(on_loopback, "health and /metrics on 127.0.0.1:9890");
    assert!(
        !on_node_address,
        "not on the node's address {}",
        node.ipv4()
    );
}
