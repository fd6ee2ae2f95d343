//! The compiler's connectivity survey helpers (`Compiler::port_boundaries`,
//! `Compiler::region_prefixes`), through the public API: the points where a
//! pod's verdict can change with the port, and the prefixes policies name.

use palisade_common::direction;
use serde_json::json;

use palisade_compiler::{Compiler, PodRef};

fn compiler() -> Compiler {
    let mut c = Compiler::new("n");
    let pod = |name: &str, app: &str, http: u16| {
        serde_json::from_value(json!({
            "metadata": {"namespace": "a", "name": name, "labels": {"app": app}},
            "spec": {"nodeName": "n", "containers": [{"name": "c",
                "ports": [{"name": "http", "containerPort": http}]}]},
            "status": {"podIPs": [{"ip": format!("10.0.0.{http}")}]}
        }))
        .unwrap()
    };
    c.apply_pod(&pod("web", "web", 80)).unwrap();
    c.apply_pod(&pod("api", "api", 81)).unwrap();
    let np = serde_json::from_value(json!({
        "metadata": {"namespace": "a", "name": "p"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"port": 1000, "endPort": 2000}, {"port": "http"},
                {"protocol": "UDP", "port": 53}]}],
            "egress": [{"ports": [{"port": "http"}], "to": [{"ipBlock": {
                "cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}]}
    }))
    .unwrap();
    c.apply_policy(&np).unwrap();
    c.commit();
    c
}

#[test]
fn boundaries_cover_ranges_and_named_ports_on_the_destination() {
    let c = compiler();
    let web = PodRef::new("a", "web");
    let [tcp, udp, sctp] = c.port_boundaries(&web, direction::INGRESS);
    // The range, and `http` resolved on web itself (80), not on api.
    assert_eq!(tcp, vec![0, 80, 81, 1000, 2001]);
    assert_eq!(udp, vec![0, 53, 54]);
    assert_eq!(sctp, vec![0]);
    // Egress: `http` of every destination that serves it.
    let [tcp, _, _] = c.port_boundaries(&web, direction::EGRESS);
    assert_eq!(tcp, vec![0, 80, 81, 82]);
    // Nothing selects api: one interval per protocol.
    let api = PodRef::new("a", "api");
    assert_eq!(
        c.port_boundaries(&api, direction::INGRESS),
        [vec![0], vec![0], vec![0]]
    );
    let prefixes: Vec<String> = c.region_prefixes().iter().map(|p| p.to_string()).collect();
    assert_eq!(prefixes, ["10.0.0.0/8", "10.1.0.0/16"]);
}
