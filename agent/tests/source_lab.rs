//! Source verification with the real agent and real pods (issue 18): a pod
//! sending TCP, UDP and SCTP over IPv4 and IPv6 from another pod's address
//! (raw packets from its `eth0`, captured at the destination pod) under
//! `--source-verification enforce`, `audit` and `off`; the drops and audits
//! in `palisade monitor` and `/metrics`; the pod's own flows judged by
//! policy as before; neighbour discovery still working; the namespace's
//! `policy.palisade.dev/allowed-source-prefixes`. Needs root; everything is
//! removed at the end, also on failure.

mod support;

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use palisade_lab::{Capture, LabSpec, Node, Pod, Services, inject_ip, serve, wire};
use serde_json::json;
use support::*;

fn lab_prefix(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 100_000)
}

/// A TCP SYN carrying `marker` as payload (checksum left zero: nothing on
/// the way checks it, and the capture sees the frame either way).
fn tcp_syn(sport: u16, dport: u16, marker: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&1u32.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes());
    h.extend_from_slice(&[5 << 4, 0x02, 0x04, 0x00, 0, 0, 0, 0]);
    h.extend_from_slice(marker);
    h
}

/// An IP packet of `proto` from `src` to `dst`.
fn ip(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => wire::ipv4_packet(s, d, proto, 1, 0, l4),
        (IpAddr::V6(s), IpAddr::V6(d)) => wire::ipv6_packet(s, d, proto, l4),
        _ => panic!("mixed families"),
    }
}

/// TCP SYN, UDP datagram and SCTP INIT from `src` to `dst`, each with its
/// own marker.
fn packets(src: IpAddr, dst: IpAddr, tag: &str) -> Vec<(String, Vec<u8>)> {
    let marker = |proto: &str| format!("srcv-{tag}-{proto}-{src}").into_bytes();
    let mut sctp = palisade_lab::sctp::init(40_002, 9000, 0x5eed);
    sctp.extend_from_slice(&marker("sctp"));
    vec![
        (
            "tcp".to_string(),
            ip(src, dst, 6, &tcp_syn(40_000, 80, &marker("tcp"))),
        ),
        (
            "udp".to_string(),
            ip(
                src,
                dst,
                17,
                &wire::udp_datagram(src, dst, 40_001, 53, &marker("udp")),
            ),
        ),
        ("sctp".to_string(), ip(src, dst, 132, &sctp)),
    ]
    .into_iter()
    .map(|(p, pkt)| (String::from_utf8(marker(&p)).unwrap(), pkt))
    .collect()
}

/// Sends each packet from `from`'s `eth0` and returns the markers that
/// reached `to`'s `eth0`.
fn delivered(from: &Pod, to: &Pod, pkts: &[(String, Vec<u8>)]) -> Vec<String> {
    let cap = Capture::start(to.netns(), "eth0").expect("capture");
    for (_, p) in pkts {
        inject_ip(from, p).expect("inject");
    }
    pkts.iter()
        .filter(|(m, _)| {
            cap.wait_for_incoming(m.as_bytes(), Duration::from_millis(700))
                .is_some()
        })
        .map(|(m, _)| m.clone())
        .collect()
}

/// A value of `/metrics` of the agent in `node` (0 when absent).
fn metric(node: &Node, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = node
        .run(|| {
            use std::io::Write as _;
            let mut s = std::net::TcpStream::connect("127.0.0.1:9890").expect("health");
            s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        })
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `palisade monitor` lines while `act` runs (the monitor is subscribed
/// before, and stopped a bounded while after).
fn monitored(agent: &Agent, args: &[&str], act: impl FnOnce()) -> Vec<String> {
    let mut child = Command::new(BIN)
        .arg("monitor")
        .arg("--socket")
        .arg(&agent.socket)
        .args(["--duration-secs", "300"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn monitor");
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if l.starts_with("monitoring") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("monitor subscribed");
    act();
    std::thread::sleep(Duration::from_secs(1));
    let _ = child.kill();
    let mut out = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    let _ = child.wait();
    out.lines().map(str::to_string).collect()
}

#[test]
fn a_pod_cannot_borrow_another_pods_address() {
    let lab = LabSpec::new(&lab_prefix("psv"))
        .node("n1")
        .pod("web", "prod", "n1")
        .pod("db", "prod", "n1")
        .pod("client", "dev", "n1")
        .up()
        .expect("lab up");
    let bpffs = Bpffs::mount();
    let tmp = tempfile::tempdir().unwrap();
    let d = NodeDirs::new(tmp.path(), &bpffs, "n1");
    let services = Services::new().tcp(80).tcp(81).udp(53).sctp(9000);
    let _s: Vec<_> = ["web", "db", "client"]
        .iter()
        .map(|p| serve(lab.pod(p), &services).expect("servers"))
        .collect();
    let (web, db, client) = (lab.pod("web"), lab.pod("db"), lab.pod("client"));
    let mut prod = namespace("prod", json!({}));
    prod["metadata"]["annotations"] = json!({
        "policy.palisade.dev/allowed-source-prefixes": "198.51.100.0/24, 2001:db8:7::/48, not-a-prefix"
    });
    d.write("00-namespaces.yaml", &[prod, namespace("dev", json!({}))]);
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
    // web may reach TCP/80, UDP/53 and SCTP/9000 only: its own flows are
    // judged by this policy whatever the source verification mode.
    d.write(
        "20-policy.yaml",
        &[policy(
            "prod",
            "web-egress",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
                   "egress": [{"ports": [{"protocol": "TCP", "port": 80},
                                         {"protocol": "UDP", "port": 53},
                                         {"protocol": "SCTP", "port": 9000}]}]}),
        )],
    );
    let invalid = [("reason", "invalid-source"), ("direction", "egress")];
    let unknown: [IpAddr; 2] = [
        "198.18.200.1".parse().unwrap(),
        "2001:db8:ffff::1".parse().unwrap(),
    ];

    for mode in ["enforce", "audit", "off"] {
        let agent = Agent::start(lab.node("n1"), &d, &["--source-verification", mode]);
        let a = [&agent];
        agent.sync_ok();
        let step = |what: &str| format!("{mode}: {what}");

        // The pod's own flows: policy as before, neighbours resolved
        // (the caches flushed, so IPv6 needs neighbour discovery through
        // the programs; IPv4 needs ARP).
        for p in [web, client] {
            let out = p
                .command("ip")
                .args(["neigh", "flush", "dev", "eth0"])
                .output()
                .expect("ip neigh flush");
            assert!(out.status.success(), "{out:?}");
        }
        let mut cases = Vec::new();
        for dst in both(client) {
            cases.extend([
                (web, dst, P::Tcp(80), true),
                (web, dst, P::Udp(53), true),
                (web, dst, P::Sctp(9000), true),
                (web, dst, P::Tcp(81), false),
            ]);
        }
        for dst in both(web) {
            cases.push((client, dst, P::Tcp(80), true));
        }
        expect(&step("own addresses"), &a, &cases);

        // The same packets, raw: from web's own address they arrive (to
        // the allowed ports); from db's, or an address no pod has, only
        // when verification does not enforce.
        let drops_before = metric(lab.node("n1"), "palisade_datapath_drops_total", &invalid);
        let audits_before = metric(lab.node("n1"), "palisade_datapath_audits_total", &invalid);
        let mut sent_spoofed = 0;
        let lines = monitored(&agent, &["--type", "all", "-n", "prod"], || {
            for (i, to) in both(client).into_iter().enumerate() {
                let own = packets(both(web)[i], to, &format!("{mode}-own"));
                let got = delivered(web, client, &own);
                assert_eq!(got.len(), own.len(), "{}: {got:?}", step("own raw"));
                for borrowed in [both(db)[i], unknown[i]] {
                    let spoofed = packets(borrowed, to, &format!("{mode}-spoof"));
                    sent_spoofed += spoofed.len();
                    let got = delivered(web, client, &spoofed);
                    let want = if mode == "enforce" { 0 } else { spoofed.len() };
                    assert_eq!(
                        got.len(),
                        want,
                        "{}: {got:?}",
                        step(&format!("from {borrowed}"))
                    );
                }
                // A prefix the namespace may send from.
                let allowed: IpAddr = if i == 0 {
                    "198.51.100.7".parse().unwrap()
                } else {
                    "2001:db8:7::7".parse().unwrap()
                };
                let pkts: Vec<_> = packets(allowed, to, &format!("{mode}-ns"))
                    .into_iter()
                    .filter(|(m, _)| m.contains("-udp-"))
                    .collect();
                assert_eq!(
                    delivered(web, client, &pkts).len(),
                    1,
                    "{}",
                    step("namespace prefix")
                );
            }
        });
        let drops =
            metric(lab.node("n1"), "palisade_datapath_drops_total", &invalid) - drops_before;
        let audits =
            metric(lab.node("n1"), "palisade_datapath_audits_total", &invalid) - audits_before;
        let (want_drops, want_audits) = match mode {
            "enforce" => (sent_spoofed as f64, 0.0),
            "audit" => (0.0, sent_spoofed as f64),
            _ => (0.0, 0.0),
        };
        assert_eq!(
            (drops, audits),
            (want_drops, want_audits),
            "{}",
            step("metrics")
        );
        let tagged: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("invalid-source"))
            .collect();
        if mode == "off" {
            assert!(tagged.is_empty(), "{}: {lines:#?}", step("monitor"));
        } else {
            let mark = if mode == "enforce" {
                "xx drop (invalid-source) egress prod/web"
            } else {
                "~~ audit (invalid-source) egress prod/web"
            };
            for (borrowed, owner) in [
                (both(db)[0], "that address belongs to prod/db"),
                (both(db)[1], "that address belongs to prod/db"),
                (unknown[0], "that address belongs to no known pod"),
                (unknown[1], "that address belongs to no known pod"),
            ] {
                let want =
                    format!("prod/web sent from {borrowed}, which is not its address; {owner}");
                assert!(
                    tagged
                        .iter()
                        .any(|l| l.starts_with(mark) && l.ends_with(&want)),
                    "{}: no line {mark:?} … {want:?} in {lines:#?}",
                    step("monitor")
                );
            }
        }
        assert!(
            agent.log_text().contains("not-a-prefix")
                && agent.log_text().contains("allowed-source-prefixes"),
            "the bad annotation entry is logged:\n{}",
            agent.log_text()
        );
        drop(agent);
    }
}
