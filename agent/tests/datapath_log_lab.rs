//! `palisade agent --datapath-log` against real packets: a pod whose egress
//! policy isolates it sends, from its `eth0`, an IPv4 packet cut short in
//! its TCP header and a later fragment whose first fragment never came.
//! With `--datapath-log debug` the agent's log names both (target
//! `palisade::datapath`: the reason, the drop, the direction, the host
//! veth's ifindex and, for the fragment, the addresses); with logging off
//! (the default) it says nothing of them. Needs root; everything is
//! removed at the end, also on failure.

mod support;

use std::time::{Duration, Instant};

use palisade_lab::{LabSpec, inject_ip, wire};
use serde_json::json;
use support::*;

fn lab_prefix(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 100_000)
}

/// The agent's datapath records so far.
fn datapath_lines(agent: &Agent) -> Vec<String> {
    agent
        .log_text()
        .lines()
        .filter(|l| l.contains("palisade::datapath:"))
        .map(str::to_string)
        .collect()
}

/// Waits (bounded) until a datapath record satisfies `pred`.
fn wait_line(agent: &Agent, within: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(l) = datapath_lines(agent).into_iter().find(|l| pred(l)) {
            return Some(l);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn datapath_log_names_rare_drops_only_when_asked() {
    let lab = LabSpec::new(&lab_prefix("pdl"))
        .node("n1")
        .pod("web", "prod", "n1")
        .pod("client", "dev", "n1")
        .up()
        .expect("lab up");
    let bpffs = Bpffs::mount();
    let tmp = tempfile::tempdir().unwrap();
    let d = NodeDirs::new(tmp.path(), &bpffs, "n1");
    let (web, client) = (lab.pod("web"), lab.pod("client"));
    d.write(
        "00-namespaces.yaml",
        &[namespace("prod", json!({})), namespace("dev", json!({}))],
    );
    d.write(
        "10-pods.yaml",
        &[
            pod(web, "prod", "web", "uid-web", json!({"app": "web"})),
            pod(
                client,
                "dev",
                "client",
                "uid-client",
                json!({"app": "client"}),
            ),
        ],
    );
    // web's egress is isolated: what it sends that cannot be judged drops.
    d.write(
        "20-policy.yaml",
        &[policy(
            "prod",
            "web-egress",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
                   "egress": [{"ports": [{"protocol": "TCP", "port": 80}]}]}),
        )],
    );
    let out = lab
        .node("n1")
        .command("ip")
        .args(["-o", "link", "show", "dev", web.host_veth()])
        .output()
        .expect("ip link show");
    let ifindex: u32 = String::from_utf8_lossy(&out.stdout)
        .split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("ifindex of {}: {out:?}", web.host_veth()));
    let (src, dst) = (web.ipv4(), client.ipv4());
    // A TCP header of 3 bytes.
    let truncated = wire::ipv4_packet(src, dst, 6, 1, 0, &[0, 80, 0]);
    // Offset 800 bytes, more fragments: no first fragment was ever sent.
    let later_fragment = wire::ipv4_packet(src, dst, 17, 4242, wire::IPV4_MF | 100, &[7; 16]);

    // Off first: the node's log file is kept across agents.
    for mode in ["off", "debug"] {
        let agent = Agent::start(lab.node("n1"), &d, &["--datapath-log", mode]);
        agent.sync_ok();
        inject_ip(web, &truncated).expect("inject truncated");
        inject_ip(web, &later_fragment).expect("inject later fragment");
        let on_iface = format!("ifindex {ifindex}");
        let truncated_line = wait_line(
            &agent,
            Duration::from_secs(if mode == "off" { 2 } else { 10 }),
            |l| l.contains("truncated") && l.contains(&on_iface),
        );
        let fragment_line = wait_line(&agent, Duration::from_secs(1), |l| {
            l.contains("fragment-no-state") && l.contains(&on_iface)
        });
        if mode == "off" {
            assert_eq!(
                datapath_lines(&agent),
                Vec::<String>::new(),
                "datapath records without --datapath-log\n{}",
                agent.log_text()
            );
            continue;
        }
        let line = truncated_line
            .unwrap_or_else(|| panic!("no truncated record in the log:\n{}", agent.log_text()));
        assert!(line.contains("DEBUG"), "{line}");
        assert!(line.contains("drop from pod: truncated"), "{line}");
        let line = fragment_line.unwrap_or_else(|| {
            panic!(
                "no fragment-no-state record in the log:\n{}",
                agent.log_text()
            )
        });
        assert!(
            line.contains(&format!(
                "proto 17 {src}:0 -> {dst}:0: drop from pod: fragment-no-state"
            )),
            "{line}"
        );
        println!("{}", datapath_lines(&agent).join("\n"));
        assert!(
            line.ends_with("fragment-no-state"),
            "padding not trimmed: {line:?}"
        );
    }
}
