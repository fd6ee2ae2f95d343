//! Two pods on one node reach each other by TCP, UDP, ICMP and raw SCTP over
//! IPv4 and IPv6, and the node reaches its pods (kubelet-probe traffic).

use std::net::IpAddr;

use palisade_lab::{
    ANSWER_TIMEOUT, LabSpec, ProbeKind, ProbeResult, ProbeSpec, Services, probe_all, serve,
};

#[test]
fn pods_on_one_node_reach_each_other_on_every_protocol() {
    let lab = LabSpec::new("pltest-one")
        .node("n1")
        .pod("web", "prod", "n1")
        .pod("client", "dev", "n1")
        .up()
        .expect("lab up");
    let (web, client) = (lab.pod("web"), lab.pod("client"));
    assert_ne!(web.host_veth(), client.host_veth());
    assert!(web.host_veth().starts_with("cali") && web.host_veth().len() <= 15);
    let _servers = serve(web, &Services::new().tcp(80).udp(53).sctp(9000)).expect("serve");

    let mut specs = Vec::new();
    for dst in [IpAddr::from(web.ipv4()), IpAddr::from(web.ipv6())] {
        specs.push(ProbeSpec::tcp(client, dst, 80));
        specs.push(ProbeSpec::udp(client, dst, 53));
        specs.push(ProbeSpec::icmp(client, dst));
        specs.push(ProbeSpec::sctp(client, dst, 9000));
    }
    let specs: Vec<ProbeSpec> = specs
        .into_iter()
        .map(|s| s.timeout(ANSWER_TIMEOUT))
        .collect();
    let results = probe_all(&specs);
    for (spec, result) in specs.iter().zip(&results) {
        assert!(result.reached(), "{spec:?} -> {result:?}");
    }
    assert_eq!(results[0].text(), Some("palisade-lab prod/web tcp/80"));
    assert_eq!(results[1].text(), Some("palisade-lab prod/web udp/53"));
    assert_eq!(results[2].text(), Some(web.ipv4().to_string().as_str()));
    assert_eq!(results[3].text(), Some("palisade-lab prod/web sctp/9000"));
    assert_eq!(results[4].text(), Some("palisade-lab prod/web tcp/80"));
    assert_eq!(results[7].text(), Some("palisade-lab prod/web sctp/9000"));
}

#[test]
fn closed_ports_are_refused_or_time_out_and_node_reaches_pods() {
    let lab = LabSpec::new("pltest-one-neg")
        .node("n1")
        .pod("web", "prod", "n1")
        .pod("client", "dev", "n1")
        .up()
        .expect("lab up");
    let (web, client, node) = (lab.pod("web"), lab.pod("client"), lab.node("n1"));
    let _servers = serve(web, &Services::new().tcp(80).sctp(9000)).expect("serve");
    let specs = [
        ProbeSpec::tcp(client, web.ipv4(), 81),
        ProbeSpec::tcp(client, web.ipv6(), 81),
        ProbeSpec::udp(client, web.ipv4(), 54),
        // Expected to time out: keep the short default timeout.
        ProbeSpec::sctp(client, web.ipv6(), 9001),
        // The node's own address is the source of host traffic (probes).
        ProbeSpec::tcp(node, web.ipv4(), 80),
        ProbeSpec::tcp(node, web.ipv6(), 80),
    ];
    let specs: Vec<ProbeSpec> = specs
        .into_iter()
        .map(|s| match s.kind {
            ProbeKind::Sctp { .. } => s,
            _ => s.timeout(ANSWER_TIMEOUT),
        })
        .collect();
    let results = probe_all(&specs);
    assert_eq!(results[0], ProbeResult::Refused);
    assert_eq!(results[1], ProbeResult::Refused);
    assert_eq!(results[2], ProbeResult::Refused, "ICMP port unreachable");
    assert_eq!(results[3], ProbeResult::TimedOut, "unserved SCTP port");
    assert_eq!(results[4].text(), Some("palisade-lab prod/web tcp/80"));
    assert_eq!(results[5].text(), Some("palisade-lab prod/web tcp/80"));
    assert_eq!(node.ipv4().to_string(), "198.19.0.1");
}

#[test]
fn sctp_without_responder_is_not_answered() {
    let lab = LabSpec::new("pltest-one-sctp")
        .node("n1")
        .pod("a", "default", "n1")
        .pod("b", "default", "n1")
        .up()
        .expect("lab up");
    let (a, b) = (lab.pod("a"), lab.pod("b"));
    // No raw SCTP socket in b: its kernel answers protocol unreachable.
    let result = palisade_lab::sctp_probe(a, b.ipv4(), 40_000, 9000, ANSWER_TIMEOUT);
    assert_eq!(result, ProbeResult::Refused, "ICMP protocol unreachable");
}

#[test]
fn host_veths_are_visible_inside_the_node_namespace_only() {
    let lab = LabSpec::new("pltest-one-veth")
        .node("n1")
        .pod("web", "prod", "n1")
        .up()
        .expect("lab up");
    let (node, web) = (lab.node("n1"), lab.pod("web"));
    let index_of = |name: &str| {
        let name = std::ffi::CString::new(name).expect("ifname");
        // SAFETY: `name` is a valid C string.
        unsafe { libc::if_nametoindex(name.as_ptr()) }
    };
    // What a TC attach thread sees after entering the node namespace.
    assert_ne!(node.run(|| index_of(web.host_veth())).expect("netns"), 0);
    assert_eq!(web.run(|| index_of(web.host_veth())).expect("netns"), 0);
    // `ip netns exec <node> …`, as the agent is started.
    let out = node
        .command("ip")
        .args(["-o", "route", "show", &format!("{}/32", web.ipv4())])
        .output()
        .expect("ip netns exec");
    let route = String::from_utf8_lossy(&out.stdout);
    assert!(route.contains(web.host_veth()), "{route}");
}
