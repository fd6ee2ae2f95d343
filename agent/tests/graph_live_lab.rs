//! `palisade graph --live` against real packets: an agent enforces a few
//! policies on three lab pods in two namespaces; every ordered pod pair is
//! probed on three TCP ports (a real connect, bounded), and the live graph
//! (the CLI asking the agent over its control socket, `-o json`) must
//! have an allowed edge exactly where the probe connected, a denied-attempt
//! edge with at least one drop on the pair and port of every probe that did
//! not, and must mark an allowed edge carrying an open connection as used
//! (and one whose connections have closed and expired as unused). Needs
//! root; the lab, the bpffs and the agent are removed at the end, also on
//! failure.

mod support;

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use palisade_analysis::graph::{EdgeKind, Graph};
use palisade_common::proto;
use palisade_lab::{LabSpec, Pod, ProbeSpec, Services, probe_all, serve};
use serde_json::json;
use support::*;

fn lab_prefix(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 100_000)
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run palisade");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// `palisade graph --live -n NS -o json`, parsed.
fn live_graph(socket: &str, ns: &str) -> Graph {
    let (rc, out, err) = cli(&[
        "graph", "--live", "--socket", socket, "-n", ns, "--window", "5m", "-o", "json",
    ]);
    assert_eq!(rc, 0, "graph --live -n {ns}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("graph JSON: {e}\n{out}"))
}

const PORTS: [u16; 3] = [80, 5432, 8080];

#[test]
fn live_graph_matches_probes_drops_and_connections() {
    let started = Instant::now();
    let lab = LabSpec::new(&lab_prefix("pgl"))
        .node("n1")
        .pod("web", "prod", "n1")
        .pod("db", "prod", "n1")
        .pod("client", "dev", "n1")
        .up()
        .expect("lab up");
    let bpffs = Bpffs::mount();
    let tmp = tempfile::tempdir().unwrap();
    let d = NodeDirs::new(tmp.path(), &bpffs, "n1");
    let (web, db, client) = (lab.pod("web"), lab.pod("db"), lab.pod("client"));
    let pods: [(&str, &Pod); 3] = [("prod/web", web), ("prod/db", db), ("dev/client", client)];
    let _servers: Vec<_> = pods
        .iter()
        .map(|(_, p)| serve(*p, &Services::new().tcp(80).tcp(5432).tcp(8080)).expect("servers"))
        .collect();
    d.write(
        "00-namespaces.yaml",
        &[
            namespace("prod", json!({})),
            namespace("dev", json!({"team": "dev"})),
        ],
    );
    d.write(
        "10-pods.yaml",
        &[
            pod(web, "prod", "web", "uid-web", json!({"app": "web"})),
            pod(db, "prod", "db", "uid-db", json!({"app": "db"})),
            pod(
                client,
                "dev",
                "client",
                "uid-client",
                json!({"app": "client"}),
            ),
        ],
    );
    d.write(
        "20-policies.yaml",
        &[
            // db: only web, on 5432.
            policy(
                "prod",
                "db",
                json!({"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                                    "ports": [{"protocol": "TCP", "port": 5432}]}]}),
            ),
            // web: the dev namespace, on 80.
            policy(
                "prod",
                "web",
                json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                       "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "dev"}}}],
                                    "ports": [{"protocol": "TCP", "port": 80}]}]}),
            ),
            // client: out on 80 and 5432 only.
            policy(
                "dev",
                "client",
                json!({"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
                       "egress": [{"ports": [{"protocol": "TCP", "port": 80},
                                             {"protocol": "TCP", "port": 5432}]}]}),
            ),
        ],
    );
    let agent = Agent::start(lab.node("n1"), &d, &[]);
    agent.sync_ok();
    let socket = agent.socket.to_str().unwrap().to_string();

    // A malformed or unknown scope is refused, clearly.
    let (rc, _, err) = cli(&["graph", "--live", "--socket", &socket, "-n", "nosuch"]);
    assert!(
        rc != 0 && err.contains("namespace nosuch not found"),
        "{rc} {err}"
    );
    let (rc, _, err) = cli(&["graph", "--live", "--socket", &socket, "--pod", "web"]);
    assert!(rc != 0 && err.contains("NAMESPACE/NAME"), "{rc} {err}");

    // Every ordered pair, every port, for real.
    let mut cases = Vec::new();
    for (fname, from) in pods {
        for (tname, to) in pods {
            if fname != tname {
                for port in PORTS {
                    cases.push((fname, from, tname, to, port));
                }
            }
        }
    }
    let specs: Vec<ProbeSpec> = cases
        .iter()
        .map(|(_, f, _, t, port)| {
            ProbeSpec::tcp(*f, t.ipv4(), *port).timeout(Duration::from_secs(1))
        })
        .collect();
    let results = probe_all(&specs);
    let reached: Vec<bool> = results.iter().map(|r| r.reached()).collect();
    assert!(
        reached.iter().any(|r| *r) && reached.iter().any(|r| !*r),
        "the policies allow some and deny some: {results:?}"
    );

    // The overlay follows the ring within moments; wait (bounded) until
    // every denied probe is counted, then judge.
    let graphs = || [live_graph(&socket, "prod"), live_graph(&socket, "dev")];
    // Each pair is judged in the graph of its sender's namespace.
    let of = |pod: &str| usize::from(pod.starts_with("dev/"));
    let node = |g: &Graph, pod: &str| {
        g.node_of_pod(pod)
            .unwrap_or_else(|| panic!("{pod} not drawn: {g:#?}"))
            .id
            .clone()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let gs = loop {
        let gs = graphs();
        let counted = cases.iter().zip(&reached).all(|((f, _, t, _, port), ok)| {
            let g = &gs[of(f)];
            *ok || g
                .denied_edge(&node(g, f), &node(g, t))
                .is_some_and(|e| e.ports.iter().any(|p| p.allows(proto::TCP, *port)))
        });
        if counted || Instant::now() > deadline {
            break gs;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut wrong = Vec::new();
    for ((f, _, t, _, port), ok) in cases.iter().zip(&reached) {
        let g = &gs[of(f)];
        let (nf, nt) = (node(g, f), node(g, t));
        let allowed = g
            .allowed_edge(&nf, &nt)
            .is_some_and(|e| e.ports.iter().any(|p| p.allows(proto::TCP, *port)));
        if allowed != *ok {
            wrong.push(format!(
                "{f} -> {t} TCP {port}: probe {}, graph {}",
                if *ok { "connected" } else { "blocked" },
                if allowed { "allows" } else { "denies" }
            ));
        }
        let denied = g
            .denied_edge(&nf, &nt)
            .filter(|e| e.ports.iter().any(|p| p.allows(proto::TCP, *port)));
        match (ok, denied) {
            (false, None) => {
                wrong.push(format!("{f} -> {t} TCP {port}: blocked, no denied attempt"))
            }
            (false, Some(e)) if e.drops.unwrap_or(0) < 1 || e.causes.is_empty() => wrong.push(
                format!("{f} -> {t} TCP {port}: denied attempt without drops: {e:?}"),
            ),
            (true, Some(e)) => wrong.push(format!("{f} -> {t} TCP {port}: connected, yet {e:?}")),
            _ => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "the live graph disagrees with the probes:\n{}\n{:#?}\nagent log:\n{}",
        wrong.join("\n"),
        gs,
        agent.log_text()
    );
    assert!(gs.iter().all(|g| g.window_seconds == Some(300)));
    assert!(
        gs.iter().all(|g| g.overlay_partial.is_empty()),
        "{:?}",
        gs.iter().map(|g| &g.overlay_partial).collect::<Vec<_>>()
    );

    // Used and unused: the probes' connections closed (their conntrack
    // entries live 10 s after the close); then one connection, web to
    // client (client's ingress is open), stays open.
    std::thread::sleep(Duration::from_secs(11));
    let listener = client
        .run(|| TcpListener::bind("0.0.0.0:9000"))
        .unwrap()
        .expect("listen in client");
    let to = SocketAddr::new(IpAddr::V4(client.ipv4()), 9000);
    let _held = web
        .run(|| TcpStream::connect_timeout(&to, Duration::from_secs(2)))
        .unwrap()
        .expect("web connects to client:9000");
    let (_accepted, _) = listener.accept().expect("client accepts");
    let g = live_graph(&socket, "prod");
    let (nw, nc) = (node(&g, "prod/web"), node(&g, "dev/client"));
    let held = g.allowed_edge(&nw, &nc).expect("web -> client allowed");
    assert_eq!(held.used, Some(true), "{held:?}");
    let closed = g.allowed_edge(&nc, &nw).expect("client -> web allowed");
    assert_eq!(closed.used, Some(false), "{closed:?}");
    assert!(
        g.edges
            .iter()
            .all(|e| (e.kind == EdgeKind::Allowed) == e.used.is_some()),
        "every allowed edge, and only those, says whether it is used"
    );

    // The other renderers draw the overlay.
    let (rc, dot, err) = cli(&[
        "graph", "--live", "--socket", &socket, "-n", "prod", "-o", "dot",
    ]);
    assert_eq!(rc, 0, "{err}");
    assert!(
        dot.contains("color=red") && dot.contains("drop(s)"),
        "{dot}"
    );
    let (rc, table, err) = cli(&["graph", "--live", "--socket", &socket, "-n", "prod"]);
    assert_eq!(rc, 0, "{err}");
    let line = table
        .lines()
        .find(|l| l.contains("denied, attempted: dev/client -> prod/web on"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.contains("TCP 8080") && line.contains("policy-denied"),
        "{line}"
    );
    println!("{table}");
    println!("took {:?}", started.elapsed());
}
