//! Seeing what Palisade does, against real traffic: the agent binary in a
//! lab node with `--manifests`, real TCP/UDP probes between routed pods,
//! and the observability commands run as an operator would:
//!
//! * `palisade monitor` (two at once, JSON and a filtered one) receives the
//!   drop, naming both pods and the policies, default deny included;
//! * `/metrics`, parsed with a Prometheus text parser, moves with the drops
//!   (per direction/reason and per namespace);
//! * `palisade explain --live` and offline on the same manifests agree with
//!   the probes for every case;
//! * `endpoint list`, `policy get`, and their errors;
//! * audit mode per policy and per namespace: traffic passes, audit events
//!   and metrics name the audited policies.
//!
//! Needs root. Everything is removed at the end, also on failure.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use palisade_lab::{LabSpec, Node, Services, serve};
use serde_json::{Value, json};
use support::*;

fn lab_prefix(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 100_000)
}

/// A `palisade monitor` child; killed when dropped.
struct Monitor {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line received so far (searched by each wait).
    seen: std::cell::RefCell<Vec<String>>,
}

impl Monitor {
    fn start(socket: &std::path::Path, args: &[&str]) -> Monitor {
        let mut child = Command::new(BIN)
            .arg("monitor")
            .arg("--socket")
            .arg(socket)
            .args(["--stats-interval-ms", "200"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn monitor");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if l.starts_with("monitoring") {
                    let _ = ready_tx.send(());
                }
                let _ = tx2.send(format!("stderr: {l}"));
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("monitor subscribed");
        Monitor {
            child,
            lines,
            seen: Default::default(),
        }
    }

    /// The first stdout line (so far or arriving within `within`) for
    /// which `pred` holds; else every line seen.
    fn wait_for(
        &self,
        within: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, Vec<String>> {
        let ok = |l: &str| !l.starts_with("stderr: ") && pred(l);
        if let Some(l) = self.seen.borrow().iter().find(|l| ok(l)) {
            return Ok(l.clone());
        }
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.borrow_mut().push(l.clone());
                    if ok(&l) {
                        return Ok(l);
                    }
                }
                Err(_) => break,
            }
        }
        Err(self.seen.borrow().clone())
    }

    /// Every line so far.
    fn drain(&self) -> Vec<String> {
        let new: Vec<String> = self.lines.try_iter().collect();
        self.seen.borrow_mut().extend(new);
        self.seen.borrow().clone()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/metrics` of the agent in `node`, parsed.
fn scrape(node: &Node) -> prometheus_parse::Scrape {
    let text = node
        .run(|| {
            use std::io::{Read as _, Write as _};
            let mut s = std::net::TcpStream::connect("127.0.0.1:9890").expect("health");
            s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        })
        .unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("openmetrics-text"), "{head}");
    let lines = body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("valid exposition text")
}

/// The value of a sample by name and labels (absent: None).
fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run palisade");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

fn annotated(mut doc: Value, mode: &str) -> Value {
    doc["metadata"]["annotations"] = json!({"policy.palisade.dev/mode": mode});
    doc
}

#[test]
fn monitor_metrics_explain_and_audit_against_real_traffic() {
    let lab = LabSpec::new(&lab_prefix("pob"))
        .node("n1")
        .pod("client", "dev", "n1")
        .pod("other", "dev", "n1")
        .pod("web", "prod", "n1")
        .up()
        .expect("lab up");
    let bpffs = Bpffs::mount();
    let tmp = tempfile::tempdir().unwrap();
    let d = NodeDirs::new(tmp.path(), &bpffs, "n1");
    let (client, other, web) = (lab.pod("client"), lab.pod("other"), lab.pod("web"));
    let _s: Vec<_> = [client, other, web]
        .iter()
        .map(|p| serve(*p, &Services::new().tcp(80).tcp(81).udp(53)).expect("servers"))
        .collect();
    let base = vec![
        namespace("dev", json!({})),
        namespace("prod", json!({})),
        pod(client, "dev", "client", "uid-c", json!({"app": "client"})),
        pod(other, "dev", "other", "uid-o", json!({"app": "other"})),
        pod(web, "prod", "web", "uid-w", json!({"app": "web"})),
    ];
    let deny_all = policy(
        "prod",
        "default-deny-all",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    );
    let allow_client = policy(
        "prod",
        "allow-client",
        json!({"podSelector": {"matchLabels": {"app": "web"}},
               "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "client"}}}],
                            "ports": [{"protocol": "TCP", "port": 80}, {"protocol": "UDP", "port": 53}]}]}),
    );
    d.write("00-base.yaml", &base);
    d.write(
        "10-policies.yaml",
        &[deny_all.clone(), allow_client.clone()],
    );
    let agent = Agent::start(lab.node("n1"), &d, &[]);
    agent.sync_ok();
    let socket = d.socket.to_str().unwrap().to_string();
    let node = lab.node("n1");

    // Two monitors at once; a third one filtering on a reason that will not
    // occur. Subscribed before the traffic.
    let all = Monitor::start(&d.socket, &["-o", "json", "--type", "all"]);
    let prod_text = Monitor::start(&d.socket, &["-n", "prod", "--pod", "web"]);
    let malformed = Monitor::start(&d.socket, &["--reason", "malformed"]);

    let before = scrape(node);
    let drops = |s: &prometheus_parse::Scrape| {
        value(
            s,
            "palisade_datapath_drops_total",
            &[("direction", "ingress"), ("reason", "policy-denied")],
        )
        .expect("drops series")
    };
    let ns_drops = |s: &prometheus_parse::Scrape| {
        value(
            s,
            "palisade_datapath_namespace_drops_total",
            &[
                ("namespace", "prod"),
                ("direction", "ingress"),
                ("verdict", "dropped"),
            ],
        )
        .unwrap_or(0.0)
    };

    // Traffic: allowed and denied.
    let web4 = std::net::IpAddr::from(web.ipv4());
    let cases = vec![
        (client, web4, P::Tcp(80), true),
        (client, web4, P::Udp(53), true),
        (client, web4, P::Tcp(81), false),
        (other, web4, P::Tcp(80), false),
        (other, web4, P::Udp(53), false),
        (web, client.ipv4().into(), P::Tcp(81), true),
    ];
    expect("enforced", &[&agent], &cases);

    // The JSON monitor names both pods and the policies, default deny
    // included.
    let line = all
        .wait_for(Duration::from_secs(10), |l| {
            l.contains("\"dev/other\"") && l.contains("\"port\":80")
        })
        .unwrap_or_else(|seen| {
            panic!(
                "no drop event for other->web:80; saw {seen:#?}\n{}",
                agent.log_text()
            )
        });
    let ev: Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(ev["type"], "drop", "{ev}");
    assert_eq!(ev["reason"], "policy-denied", "{ev}");
    assert_eq!(ev["direction"], "ingress", "{ev}");
    assert_eq!(ev["protocol"], "TCP", "{ev}");
    assert_eq!(ev["src"]["name"], "dev/other", "{ev}");
    assert_eq!(ev["dst"]["name"], "prod/web", "{ev}");
    assert_eq!(ev["dst"]["addr"], web.ipv4().to_string(), "{ev}");
    assert_eq!(
        ev["policies"],
        json!(["prod/allow-client", "prod/default-deny-all"]),
        "{ev}"
    );
    assert_eq!(
        ev["explanation"],
        "prod/web isolated for ingress by allow-client, default-deny-all; no rule allows dev/other on TCP/80",
        "{ev}"
    );
    // The text monitor, filtered on prod/web, prints the line form.
    let text = prod_text
        .wait_for(Duration::from_secs(10), |l| {
            l.contains("dev/other") && l.contains(":80:")
        })
        .unwrap_or_else(|seen| panic!("text monitor: {seen:#?}"));
    assert!(
        text.starts_with(&format!(
            "xx drop (policy-denied) ingress prod/web <- dev/other TCP {}:",
            other.ipv4()
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "-> {}:80: prod/web isolated for ingress by allow-client, default-deny-all",
            web.ipv4()
        )),
        "{text}"
    );
    // client -> web:81 is a drop as well; allowed flows are no events.
    // Match the destination port exactly: a source port such as 8123 or 53232
    // also contains the digits.
    let dst_port = |l: &str| {
        serde_json::from_str::<serde_json::Value>(l)
            .ok()
            .and_then(|v| v["dst"]["port"].as_u64())
    };
    all.wait_for(Duration::from_secs(10), |l| {
        l.contains("\"dev/client\"") && dst_port(l) == Some(81)
    })
    .unwrap_or_else(|seen| panic!("no drop for client->web:81: {seen:#?}"));
    std::thread::sleep(Duration::from_millis(500));
    let rest = all.drain();
    assert!(
        !rest
            .iter()
            .any(|l| dst_port(l) == Some(53) && l.contains("dev/client")),
        "an allowed flow was reported: {rest:#?}"
    );
    // The filtered-out monitor saw nothing but its counters.
    let m = malformed.drain();
    assert!(m.iter().all(|l| l.starts_with("stderr: ")), "{m:#?}");

    // Metrics moved with the drops (TCP SYN retries count too: >=).
    let after = scrape(node);
    assert!(
        drops(&after) >= drops(&before) + 3.0,
        "drops {} -> {}",
        drops(&before),
        drops(&after)
    );
    assert!(
        ns_drops(&after) >= ns_drops(&before) + 3.0,
        "namespace drops {} -> {}",
        ns_drops(&before),
        ns_drops(&after)
    );
    assert!(
        value(
            &after,
            "palisade_datapath_forwarded_total",
            &[("direction", "ingress"), ("reason", "policy-allowed")]
        )
        .unwrap()
            >= 2.0
    );
    assert!(
        value(
            &after,
            "palisade_datapath_drop_bytes_total",
            &[("direction", "ingress"), ("reason", "policy-denied")]
        )
        .unwrap()
            > 0.0
    );
    assert!(
        value(
            &after,
            "palisade_datapath_events_total",
            &[("outcome", "emitted")]
        )
        .unwrap()
            >= 3.0
    );
    assert_eq!(
        value(&after, "palisade_endpoints", &[("state", "enforced")]),
        Some(3.0)
    );
    assert_eq!(
        value(&after, "palisade_policies", &[("mode", "enforce")]),
        Some(2.0)
    );
    assert_eq!(
        value(&after, "palisade_policies", &[("mode", "audit")]),
        Some(0.0)
    );
    assert!(value(&after, "palisade_bpf_map_capacity", &[("map", "POLICY")]).unwrap() >= 1024.0);
    assert!(value(&after, "palisade_bpf_map_entries", &[("map", "POLICY")]).unwrap() >= 1.0);
    assert!(value(&after, "palisade_identities", &[("kind", "pod")]).unwrap() >= 3.0);
    assert!(value(&after, "palisade_policy_last_sync_timestamp_seconds", &[]).unwrap() > 1.6e9);
    assert!(
        value(&after, "palisade_policy_sync_duration_seconds_count", &[]).unwrap_or(0.0) >= 1.0
            || after
                .samples
                .iter()
                .any(|s| s.metric == "palisade_policy_sync_duration_seconds")
    );
    assert_eq!(
        value(&after, "palisade_monitor_subscribers", &[]),
        Some(3.0)
    );
    assert!(value(&after, "palisade_build_info", &[]).is_some());
    // Every series the Grafana dashboard queries exists.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/grafana-dashboard.json"
        ))
        .unwrap(),
    )
    .expect("dashboard is JSON");
    let exprs: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 15);
    let exposed: std::collections::BTreeSet<&str> =
        after.samples.iter().map(|s| s.metric.as_str()).collect();
    for e in &exprs {
        for word in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !word.starts_with("palisade_") {
                continue;
            }
            let base = word.trim_end_matches("_bucket");
            assert!(
                exposed.contains(base) || exposed.contains(word),
                "dashboard queries {word}, not exposed: {exposed:?}"
            );
        }
    }
    // No per-pod series without the opt-in flag.
    assert!(!after.samples.iter().any(|s| s.labels.get("pod").is_some()));

    // explain agrees with the probes, live and offline, for every case.
    let manifests = d.manifests.to_str().unwrap().to_string();
    let pods = [
        ("dev/client", client),
        ("dev/other", other),
        ("prod/web", web),
    ];
    let mut probe_cases = Vec::new();
    let mut asked = Vec::new();
    for (fname, from) in pods {
        for (tname, to) in pods {
            if fname == tname {
                continue;
            }
            for (port, p) in [
                ("80/TCP", P::Tcp(80)),
                ("81/TCP", P::Tcp(81)),
                ("53/UDP", P::Udp(53)),
            ] {
                let (live, out, err) = cli(&[
                    "explain", "--live", "--socket", &socket, "--from", fname, "--to", tname,
                    "--port", port,
                ]);
                assert!(
                    live == 0 || live == 1,
                    "explain --live {fname} {tname} {port}: {live} {err}"
                );
                let (offline, out2, _) = cli(&[
                    "explain",
                    "--manifests",
                    &manifests,
                    "--from",
                    fname,
                    "--to",
                    tname,
                    "--port",
                    port,
                ]);
                assert_eq!(
                    live, offline,
                    "live vs offline {fname} -> {tname} {port}:\n{out}\n{out2}"
                );
                probe_cases.push((from, std::net::IpAddr::from(to.ipv4()), p, live == 0));
                asked.push(format!(
                    "{fname} -> {tname} {port}: {}",
                    out.lines().next().unwrap_or("")
                ));
            }
        }
    }
    let bad = mismatches(&probe_cases);
    assert!(
        bad.is_empty(),
        "explain disagrees with the datapath:\n{}\n---\n{}",
        bad.join("\n"),
        asked.join("\n")
    );
    assert!(probe_cases.iter().any(|c| c.3) && probe_cases.iter().any(|c| !c.3));
    // Rule-level attribution, and the denial's reason.
    let (rc, out, _) = cli(&[
        "explain",
        "--live",
        "--socket",
        &socket,
        "--from",
        "dev/client",
        "--to",
        "prod/web",
        "--port",
        "53/UDP",
        "-o",
        "json",
    ]);
    assert_eq!(rc, 0, "{out}");
    let rep: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        rep["ingress"]["allowed_by"],
        json!([{"policy": "prod/allow-client", "direction": "ingress", "rule": 0, "peer": 0, "port_index": 1, "port": "UDP 53"}]),
        "{rep}"
    );
    assert_eq!(
        rep["ingress"]["selecting"],
        json!(["prod/allow-client", "prod/default-deny-all"])
    );
    assert!(
        rep["egress"]["isolated"] == false && rep["egress"]["allowed"] == true,
        "{rep}"
    );
    let (rc, out, _) = cli(&[
        "explain",
        "--live",
        "--socket",
        &socket,
        "--from",
        "dev/other",
        "--to",
        "prod/web",
        "--port",
        "80/TCP",
    ]);
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains("DENIED")
            && out.contains("isolated by prod/allow-client, prod/default-deny-all")
            && out.contains("denied: no rule allows dev/other on 80/TCP"),
        "{out}"
    );

    // endpoint list and policy get.
    let (rc, out, err) = cli(&["endpoint", "list", "--socket", &socket, "-o", "json"]);
    assert_eq!(rc, 0, "{err}");
    let eps: Value = serde_json::from_str(&out).unwrap();
    let eps: BTreeMap<String, Value> = eps
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["pod"].as_str().unwrap().to_string(), e.clone()))
        .collect();
    assert_eq!(eps.len(), 3, "{eps:#?}");
    let w = &eps["prod/web"];
    assert_eq!(w["interface"], web.host_veth(), "{w}");
    assert_eq!(
        w["isolated"],
        json!({"ingress": true, "egress": false}),
        "{w}"
    );
    assert_eq!(w["attached"], true, "{w}");
    assert_eq!(w["labels"], json!({"app": "web"}), "{w}");
    assert_eq!(
        eps["dev/client"]["isolated"],
        json!({"ingress": false, "egress": false})
    );
    let (rc, out, _) = cli(&["endpoint", "list", "--socket", &socket]);
    assert_eq!(rc, 0);
    assert!(
        out.starts_with("POD") && out.contains("prod/web") && out.contains("isolated"),
        "{out}"
    );
    let (rc, out, _) = cli(&["endpoint", "list", "--socket", &socket, "-o", "yaml"]);
    assert_eq!(rc, 0);
    assert!(out.contains("pod: prod/web"), "{out}");
    let (rc, out, err) = cli(&[
        "policy",
        "get",
        "prod/allow-client",
        "--socket",
        &socket,
        "-o",
        "json",
    ]);
    assert_eq!(rc, 0, "{err}");
    let p: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(p["mode"], "enforce");
    assert_eq!(p["selects"], json!(["prod/web"]));
    assert!(
        p["isolates"]["egress"].is_null() && p["isolates"]["ingress"]["rules"] == 1,
        "{p}"
    );
    let entries = p["endpoints"][0]["entries"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["protocol"] == "TCP"
            && e["ports"] == "80"
            && e["peer"] == "dev{app=client}"),
        "{entries:#?}"
    );

    // Bad input: one line, non-zero, no panic.
    for (args, want) in [
        (
            vec!["policy", "get", "prod/nope", "--socket", &socket],
            "palisade: policy prod/nope not found",
        ),
        (
            vec!["policy", "get", "nope/x", "--socket", &socket],
            "palisade: unknown namespace \"nope\"",
        ),
        (
            vec!["policy", "get", "no-slash", "--socket", &socket],
            "palisade: ClusterNetworkPolicy \"no-slash\" not found (a NetworkPolicy is NAMESPACE/NAME)",
        ),
        (
            vec!["policy", "get", "a/b/c", "--socket", &socket],
            "palisade: policy \"a/b/c\": expected NAMESPACE/NAME (a NetworkPolicy) or NAME (a ClusterNetworkPolicy)",
        ),
        (
            vec![
                "explain",
                "--live",
                "--socket",
                &socket,
                "--from",
                "dev/ghost",
                "--to",
                "prod/web",
                "--port",
                "80",
            ],
            "palisade: pod dev/ghost not found",
        ),
        (
            vec![
                "explain",
                "--live",
                "--socket",
                &socket,
                "--from",
                "dev/client",
                "--to",
                "prod/web",
                "--port",
                "http",
            ],
            "palisade: malformed port \"http\"",
        ),
        (
            vec!["monitor", "--socket", &socket, "-n", "nope"],
            "palisade: unknown namespace \"nope\"",
        ),
        (
            vec!["monitor", "--socket", &socket, "--reason", "bogus"],
            "palisade: unknown reason \"bogus\"",
        ),
    ] {
        let (rc, out, err) = cli(&args);
        assert_ne!(rc, 0, "{args:?}: {out}");
        assert!(
            err.starts_with(want) && err.lines().count() == 1 && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }

    // Audit per policy: an audited egress lockdown of dev lets traffic pass
    // and reports what it would drop, naming the policy.
    let lockdown = annotated(
        policy(
            "dev",
            "lockdown",
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        ),
        "audit",
    );
    d.write("20-audit.yaml", &[lockdown]);
    agent.sync_ok();
    expect(
        "audited egress lockdown passes",
        &[&agent],
        &[
            (client, web4, P::Tcp(80), true),
            (client, web4, P::Udp(53), true),
        ],
    );
    let line = all
        .wait_for(Duration::from_secs(10), |l| {
            l.contains("\"type\":\"audit\"") && l.contains("dev/lockdown")
        })
        .unwrap_or_else(|seen| panic!("no audit event: {seen:#?}\n{}", agent.log_text()));
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["direction"], "egress", "{ev}");
    assert_eq!(ev["audited_policies"], json!(["dev/lockdown"]), "{ev}");
    assert!(
        ev["explanation"]
            .as_str()
            .unwrap()
            .starts_with("audited policy lockdown would isolate dev/"),
        "{ev}"
    );
    let s = scrape(node);
    assert_eq!(
        value(&s, "palisade_policies", &[("mode", "audit")]),
        Some(1.0)
    );
    assert!(
        value(
            &s,
            "palisade_datapath_audits_total",
            &[("direction", "egress"), ("reason", "policy-denied")]
        )
        .unwrap()
            >= 2.0
    );
    assert!(
        value(
            &s,
            "palisade_datapath_namespace_drops_total",
            &[("namespace", "dev"), ("verdict", "audit")]
        )
        .unwrap()
            >= 2.0
    );
    let (rc, out, _) = cli(&["endpoint", "list", "--socket", &socket, "-o", "json"]);
    assert_eq!(rc, 0);
    assert!(out.contains("\"egress\": true"), "audit shown: {out}");
    let (_, out, _) = cli(&[
        "explain",
        "--live",
        "--socket",
        &socket,
        "--from",
        "dev/client",
        "--to",
        "prod/web",
        "--port",
        "80/TCP",
    ]);
    assert!(
        out.contains("audit: dev/lockdown (audit mode) would deny it"),
        "{out}"
    );

    // Audit per namespace: prod annotated, its default deny stops dropping.
    std::fs::remove_file(d.manifests.join("20-audit.yaml")).unwrap();
    let mut base2 = base.clone();
    base2[1] = annotated(namespace("prod", json!({})), "audit");
    d.write("00-base.yaml", &base2);
    agent.sync_ok();
    expect(
        "namespace audit passes",
        &[&agent],
        &[
            (other, web4, P::Tcp(80), true),
            (client, web4, P::Tcp(80), true),
        ],
    );
    let line = all
        .wait_for(Duration::from_secs(10), |l| {
            l.contains("\"type\":\"audit\"")
                && l.contains("\"dev/other\"")
                && l.contains("\"ingress\"")
        })
        .unwrap_or_else(|seen| panic!("no namespace audit event: {seen:#?}"));
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        ev["audited_policies"],
        json!(["prod/allow-client", "prod/default-deny-all"]),
        "{ev}"
    );
    assert!(
        ev["policies"].as_array().is_none_or(|a| a.is_empty()),
        "{ev}"
    );
    drop((all, prod_text, malformed));
    drop(tmp);
}

#[test]
fn global_audit_passes_would_drops_and_reports_them() {
    let lab = LabSpec::new(&lab_prefix("pog"))
        .node("n1")
        .pod("client", "dev", "n1")
        .pod("web", "prod", "n1")
        .up()
        .expect("lab up");
    let bpffs = Bpffs::mount();
    let tmp = tempfile::tempdir().unwrap();
    let d = NodeDirs::new(tmp.path(), &bpffs, "n1");
    let (client, web) = (lab.pod("client"), lab.pod("web"));
    let _s = serve(web, &Services::new().tcp(80)).expect("servers");
    d.write(
        "all.yaml",
        &[
            namespace("dev", json!({})),
            namespace("prod", json!({})),
            pod(client, "dev", "client", "uid-c", json!({"app": "client"})),
            pod(web, "prod", "web", "uid-w", json!({"app": "web"})),
            policy("prod", "default-deny-all", json!({"podSelector": {}})),
        ],
    );
    let agent = Agent::start(lab.node("n1"), &d, &["--audit", "--metrics-pod-labels"]);
    agent.sync_ok();
    let mon = Monitor::start(&d.socket, &["-o", "json", "--type", "audit"]);
    let web4 = std::net::IpAddr::from(web.ipv4());
    expect(
        "global audit",
        &[&agent],
        &[(client, web4, P::Tcp(80), true)],
    );
    let line = mon
        .wait_for(Duration::from_secs(10), |l| l.contains("\"dev/client\""))
        .unwrap_or_else(|seen| panic!("no audit event: {seen:#?}\n{}", agent.log_text()));
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["type"], "audit", "{ev}");
    assert_eq!(ev["policies"], json!(["prod/default-deny-all"]), "{ev}");
    assert_eq!(
        ev["explanation"],
        "prod/web isolated for ingress by default-deny-all (audit mode: passed); no rule allows dev/client on TCP/80",
        "{ev}"
    );
    let s = scrape(lab.node("n1"));
    assert!(
        value(
            &s,
            "palisade_datapath_pod_drops_total",
            &[("namespace", "prod"), ("pod", "web"), ("verdict", "audit")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "per-pod series with --metrics-pod-labels"
    );
    assert_eq!(
        value(
            &s,
            "palisade_datapath_drops_total",
            &[("direction", "ingress"), ("reason", "policy-denied")]
        ),
        Some(0.0)
    );
    let (rc, out, _) = cli(&[
        "endpoint",
        "list",
        "--socket",
        d.socket.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(rc, 0);
    let eps: Value = serde_json::from_str(&out).unwrap();
    let w = eps
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["pod"] == "prod/web")
        .unwrap();
    assert_eq!(w["audit"], json!({"ingress": true, "egress": true}), "{w}");
    assert_eq!(w["isolated"]["ingress"], true, "{w}");
    drop(mon);
    drop(tmp);
}

fn cluster_policy(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// A ClusterNetworkPolicy seen the way an operator sees NetworkPolicies:
/// the monitor and the drop metrics name its tier and rule, `policy get
/// NAME` shows its subjects and entries on this node, and a second policy
/// of the same priority acting differently on the same traffic is
/// reported (log, metric, `policy get`, `explain`) until it goes.
#[test]
fn cluster_policies_in_monitor_metrics_and_policy_get() {
    let lab = LabSpec::new(&lab_prefix("pcn"))
        .node("n1")
        .pod("client", "dev", "n1")
        .pod("web", "prod", "n1")
        .up()
        .expect("lab up");
    let bpffs = Bpffs::mount();
    let tmp = tempfile::tempdir().unwrap();
    let d = NodeDirs::new(tmp.path(), &bpffs, "n1");
    let (client, web) = (lab.pod("client"), lab.pod("web"));
    let _s: Vec<_> = [client, web]
        .iter()
        .map(|p| serve(*p, &Services::new().tcp(80).tcp(81)).expect("servers"))
        .collect();
    d.write(
        "00-base.yaml",
        &[
            namespace("dev", json!({})),
            namespace("prod", json!({})),
            pod(client, "dev", "client", "uid-c", json!({"app": "client"})),
            pod(web, "prod", "web", "uid-w", json!({"app": "web"})),
        ],
    );
    let from_dev = json!([{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "dev"}}}]);
    let deny = cluster_policy(
        "deny-dev",
        json!({"tier": "Admin", "priority": 20,
               "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "prod"}}},
               "ingress": [{"name": "no-dev-81", "action": "Deny", "from": from_dev,
                            "protocols": [{"tcp": {"destinationPort": {"number": 81}}}]}]}),
    );
    d.write("10-cluster.yaml", &[deny]);
    let agent = Agent::start(lab.node("n1"), &d, &[]);
    agent.sync_ok();
    let socket = d.socket.to_str().unwrap().to_string();
    let node = lab.node("n1");
    let all = Monitor::start(&d.socket, &["-o", "json"]);
    let text = Monitor::start(&d.socket, &["-n", "prod"]);
    let web4 = std::net::IpAddr::from(web.ipv4());
    expect(
        "admin deny",
        &[&agent],
        &[
            (client, web4, P::Tcp(80), true),
            (client, web4, P::Tcp(81), false),
        ],
    );

    // The monitor names the tier, the policy, the rule and its priority.
    let rule = "ClusterNetworkPolicy admin/deny-dev ingress[0] \"no-dev-81\" (priority 20, Deny)";
    let line = text
        .wait_for(Duration::from_secs(10), |l| l.contains(rule))
        .unwrap_or_else(|seen| panic!("no drop naming {rule}: {seen:#?}"));
    assert!(
        line.contains("dev/client") && line.contains("prod/web"),
        "{line}"
    );
    let line = all
        .wait_for(Duration::from_secs(10), |l| l.contains("\"port\":81"))
        .unwrap_or_else(|seen| panic!("no JSON drop: {seen:#?}"));
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["reason"], "admin-denied", "{ev}");
    let s = scrape(node);
    assert!(
        value(
            &s,
            "palisade_datapath_drops_total",
            &[("direction", "ingress"), ("reason", "admin-denied")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(
        value(
            &s,
            "palisade_cluster_policy_priority_overlaps",
            &[("tier", "admin")]
        ),
        Some(0.0)
    );

    // policy get NAME: tier, rules, subjects on this node, entries.
    let (rc, out, err) = cli(&[
        "policy", "get", "deny-dev", "--socket", &socket, "-o", "json",
    ]);
    assert_eq!(rc, 0, "{err}");
    let p: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(p["kind"], "ClusterNetworkPolicy");
    assert_eq!((&p["tier"], &p["priority"]), (&json!("admin"), &json!(20)));
    assert_eq!(p["mode"], "enforce");
    assert_eq!(p["selects"], json!(["prod/web"]));
    assert_eq!(p["rules"][0]["rule"], rule);
    let entries = p["endpoints"][0]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(entries[0]["direction"], "ingress");
    assert_eq!(entries[0]["protocol"], "TCP");
    assert_eq!(entries[0]["ports"], "81");
    assert_eq!(entries[0]["peer"], "dev{app=client}");
    assert_eq!(entries[0]["rule"], rule);
    let (rc, out, _) = cli(&["policy", "get", "deny-dev", "--socket", &socket]);
    assert_eq!(rc, 0);
    assert!(
        out.starts_with("ClusterNetworkPolicy deny-dev (tier admin, priority 20, enforce)\n")
            && out.contains("  subject on this node: prod/web\n")
            && out.contains(&format!("ingress TCP   dev{{app=client}} ports 81: {rule}")),
        "{out}"
    );

    // A policy of the same priority accepting the same traffic: the order
    // by name decides (allow-dev first), and that is reported.
    let accept = cluster_policy(
        "allow-dev",
        json!({"tier": "Admin", "priority": 20,
               "subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}},
               "ingress": [{"action": "Accept", "from": from_dev,
                            "protocols": [{"tcp": {"destinationPort": {"range": {"start": 80, "end": 81}}}}]}]}),
    );
    d.write("20-tie.yaml", &[accept]);
    agent.sync_ok();
    expect(
        "allow-dev first",
        &[&agent],
        &[(client, web4, P::Tcp(81), true)],
    );
    let s = scrape(node);
    assert_eq!(
        value(
            &s,
            "palisade_cluster_policy_priority_overlaps",
            &[("tier", "admin")]
        ),
        Some(1.0)
    );
    let log = agent.log_text();
    assert!(
        log.contains("ClusterNetworkPolicies of the same priority act differently")
            && log.contains("allow-dev")
            && log.contains("deny-dev"),
        "{log}"
    );
    let (_, out, _) = cli(&["policy", "get", "deny-dev", "--socket", &socket]);
    assert!(out.contains("  same priority as: allow-dev"), "{out}");
    assert!(
        out.contains("    none (earlier rules of the tier decide)"),
        "allow-dev is first on every port deny-dev names: {out}"
    );
    let (rc, out, _) = cli(&[
        "explain",
        "--live",
        "--socket",
        &socket,
        "--from",
        "dev/client",
        "--to",
        "prod/web",
        "--port",
        "81/TCP",
    ]);
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains(&format!("same priority: {rule} matches too")),
        "{out}"
    );

    // Gone with the policy.
    std::fs::remove_file(d.manifests.join("20-tie.yaml")).unwrap();
    agent.sync_ok();
    expect(
        "deny again",
        &[&agent],
        &[(client, web4, P::Tcp(81), false)],
    );
    let s = scrape(node);
    assert_eq!(
        value(
            &s,
            "palisade_cluster_policy_priority_overlaps",
            &[("tier", "admin")]
        ),
        Some(0.0)
    );
    assert!(agent.log_text().contains("same-priority overlap resolved"));
    let (rc, _, err) = cli(&["policy", "get", "allow-dev", "--socket", &socket]);
    assert_eq!(rc, 1);
    assert_eq!(
        err,
        "palisade: ClusterNetworkPolicy \"allow-dev\" not found (a NetworkPolicy is NAMESPACE/NAME)"
    );

    // Rules on more distinct ports than a tier table holds: the entry
    // denies every port (fail closed), and that is said.
    let per_port: Vec<Value> = (0..palisade_common::TIER_SEGMENTS / 2 + 1)
        .map(|i| {
            json!({"action": "Accept", "from": [{"namespaces": {}}],
                   "protocols": [{"tcp": {"destinationPort": {"number": 1000 + 2 * i}}}]})
        })
        .collect();
    let many: Vec<Value> = per_port
        .chunks(25)
        .enumerate()
        .map(|(p, rules)| {
            cluster_policy(
                &format!("ports-{p:02}"),
                json!({"tier": "Admin", "priority": 50, "subject": {"namespaces": {}},
                       "ingress": rules}),
            )
        })
        .collect();
    d.write("30-many-ports.yaml", &many);
    agent.sync_ok();
    expect(
        "beyond a tier table: fail closed",
        &[&agent],
        &[(client, web4, P::Tcp(80), false)],
    );
    let overflows = |s: &prometheus_parse::Scrape| {
        value(s, "palisade_tier_table_overflows", &[]).expect("overflow gauge")
    };
    assert!(overflows(&scrape(node)) >= 1.0);
    assert!(
        agent
            .log_text()
            .contains("need more port segments than a tier table holds"),
        "{}",
        agent.log_text()
    );
    std::fs::remove_file(d.manifests.join("30-many-ports.yaml")).unwrap();
    agent.sync_ok();
    expect("fits again", &[&agent], &[(client, web4, P::Tcp(80), true)]);
    assert_eq!(overflows(&scrape(node)), 0.0);

    // Audit mode: an audited Admin Deny ahead of everything passes what
    // it would deny, reports it naming the rule, counts it, and explain
    // walks the tiers with it enforced.
    let audits = Monitor::start(&d.socket, &["--type", "audit"]);
    let audited = annotated(
        cluster_policy(
            "audit-dev",
            json!({"tier": "Admin", "priority": 5, "subject": {"namespaces": {}},
                   "ingress": [{"action": "Deny", "from": from_dev,
                                "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]}]}),
        ),
        "audit",
    );
    d.write("40-audit.yaml", &[audited]);
    agent.sync_ok();
    expect(
        "audited deny: passed",
        &[&agent],
        &[
            (client, web4, P::Tcp(80), true),
            (client, web4, P::Tcp(81), false),
        ],
    );
    let audit_rule =
        "ClusterNetworkPolicy admin/audit-dev ingress[0] (priority 5, Deny, audit mode)";
    let line = audits
        .wait_for(Duration::from_secs(10), |l| l.contains(audit_rule))
        .unwrap_or_else(|seen| panic!("no audit event naming {audit_rule}: {seen:#?}"));
    assert!(
        line.contains("would be denied (audit mode: passed)") && line.contains("TCP/80"),
        "{line}"
    );
    assert!(
        value(
            &scrape(node),
            "palisade_datapath_audits_total",
            &[("direction", "ingress"), ("reason", "admin-denied")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    let (rc, out, _) = cli(&[
        "explain",
        "--live",
        "--socket",
        &socket,
        "--from",
        "dev/client",
        "--to",
        "prod/web",
        "--port",
        "80/TCP",
    ]);
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains(&format!(
            "audit: ClusterNetworkPolicy audit-dev (audit mode) would deny it: {audit_rule}"
        )),
        "{out}"
    );
    let (_, out, _) = cli(&[
        "policy",
        "get",
        "audit-dev",
        "--socket",
        &socket,
        "-o",
        "json",
    ]);
    let p: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(p["mode"], "audit");
    drop((all, text, audits));
    drop(tmp);
}
