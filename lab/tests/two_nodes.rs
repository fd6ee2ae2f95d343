//! Pods on two nodes reach each other across the fabric, and pods reach
//! external hosts, over IPv4 and IPv6.

use std::net::IpAddr;

use palisade_lab::{ANSWER_TIMEOUT, LabSpec, ProbeSpec, Services, probe_all, serve};

#[test]
fn pods_on_two_nodes_and_external_hosts_are_reachable() {
    let world: [IpAddr; 3] = [
        "203.0.113.10".parse().unwrap(),
        "169.254.169.254".parse().unwrap(),
        "2001:db8:ffff::10".parse().unwrap(),
    ];
    let lab = LabSpec::new("pltest-two")
        .node("n1")
        .node("n2")
        .pod("web", "prod", "n1")
        .pod("client", "dev", "n2")
        .external_host("world", "n1", &world)
        .up()
        .expect("lab up");
    let (web, client) = (lab.pod("web"), lab.pod("client"));
    assert_ne!(lab.node("n1").netns(), lab.node("n2").netns());
    assert_eq!(web.node(), "n1");
    let svc = Services::new().tcp(443).udp(5353).sctp(38412);
    let _web = serve(web, &svc).expect("serve web");
    let _world = serve(lab.external_host("world"), &svc).expect("serve world");

    let mut specs = Vec::new();
    for dst in [IpAddr::from(web.ipv4()), IpAddr::from(web.ipv6())] {
        specs.push(ProbeSpec::tcp(client, dst, 443));
        specs.push(ProbeSpec::udp(client, dst, 5353));
        specs.push(ProbeSpec::icmp(client, dst));
        specs.push(ProbeSpec::sctp(client, dst, 38412));
        // and back the other way
        specs.push(ProbeSpec::icmp(web, client_addr(client, dst)));
    }
    for dst in world {
        specs.push(ProbeSpec::tcp(client, dst, 443));
        specs.push(ProbeSpec::udp(web, dst, 5353));
        specs.push(ProbeSpec::icmp(client, dst));
        specs.push(ProbeSpec::sctp(web, dst, 38412));
    }
    let specs: Vec<ProbeSpec> = specs
        .into_iter()
        .map(|s| s.timeout(ANSWER_TIMEOUT))
        .collect();
    let results = probe_all(&specs);
    for (spec, result) in specs.iter().zip(&results) {
        assert!(result.reached(), "{spec:?} -> {result:?}");
        if let Some(text) = result.text().filter(|t| t.starts_with("palisade-lab")) {
            let want = if world.contains(&spec.dst) {
                "external/world"
            } else {
                "prod/web"
            };
            assert!(text.contains(want), "{spec:?} answered by {text}");
        }
    }
}

fn client_addr(client: &palisade_lab::Pod, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => client.ipv4().into(),
        IpAddr::V6(_) => client.ipv6().into(),
    }
}
