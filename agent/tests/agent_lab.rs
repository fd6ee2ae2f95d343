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
    let _ = Duration::ZERO;
}
