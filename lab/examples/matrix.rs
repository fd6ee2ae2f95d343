//! Builds a two-node lab with an external host, starts servers everywhere and
//! prints a full probe matrix. Run as root:
//! `cargo run -p palisade-lab --example matrix`.

use std::net::IpAddr;
use std::time::Instant;

use palisade_lab::{Endpoint, LabSpec, ProbeSpec, Services, probe_all, serve};

fn main() {
    let world: [IpAddr; 3] = [
        "203.0.113.10".parse().expect("addr"),
        "169.254.169.254".parse().expect("addr"),
        "2001:db8:ffff::10".parse().expect("addr"),
    ];
    let lab = LabSpec::new("plexample")
        .node("n1")
        .node("n2")
        .pod("web", "prod", "n1")
        .pod("db", "prod", "n1")
        .pod("client", "dev", "n2")
        .external_host("world", "n2", &world)
        .up()
        .expect("lab up");
    let services = Services::new().tcp(80).udp(53).sctp(9000);
    let _servers: Vec<_> = lab
        .pods()
        .iter()
        .map(|p| serve(p, &services).expect("serve pod"))
        .chain([serve(lab.external_host("world"), &services).expect("serve world")])
        .collect();

    let mut targets: Vec<(String, IpAddr)> = Vec::new();
    for pod in lab.pods() {
        targets.push((pod.label(), pod.ipv4().into()));
        targets.push((pod.label(), pod.ipv6().into()));
    }
    targets.extend(world.iter().map(|a| ("external/world".to_owned(), *a)));

    let mut specs = Vec::new();
    for from in lab.pods() {
        for (_, dst) in &targets {
            specs.push(ProbeSpec::tcp(from, *dst, 80));
            specs.push(ProbeSpec::udp(from, *dst, 53));
            specs.push(ProbeSpec::icmp(from, *dst));
            specs.push(ProbeSpec::sctp(from, *dst, 9000));
        }
    }
    let started = Instant::now();
    let results = probe_all(&specs);
    println!("{} probes in {:?}", specs.len(), started.elapsed());
    for (spec, result) in specs.iter().zip(&results) {
        println!(
            "{:<40} -> {:<22} {:?}: {:?}",
            spec.from, spec.dst, spec.kind, result
        );
    }
}
