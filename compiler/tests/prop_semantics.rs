//! The compiled maps, read the way the datapath reads them, give the same
//! verdict as a naive evaluator of the NetworkPolicy API on random
//! clusters, for every local pod, both directions, every interesting peer
//! address (pods, node, block edges, outsiders; v4 and v6), protocol and
//! port.

mod common;

use common::Cluster;
use common::generate::{PROBE_PORTS, arb_cluster, arb_cluster_with};
use common::*;
use palisade_common::{direction, proto};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn compiled_verdicts_equal_naive_semantics(cluster in arb_cluster()) {
        check_cluster(&cluster)?;
    }

    #[test]
    fn egress_named_ports_towards_ip_blocks(cluster in arb_cluster_with(true)) {
        check_cluster(&cluster)?;
    }
}

fn check_cluster(cluster: &Cluster) -> Result<(), TestCaseError> {
    let c = cluster.compile();
    check_invariants(&c);
    let state = c.state();
    prop_assert_eq!(
        state.endpoints.keys().cloned().collect::<Vec<_>>(),
        cluster.endpoints()
    );
    let addrs = cluster.probe_addresses();
    for pod in cluster.endpoints() {
        for dir in [direction::INGRESS, direction::EGRESS] {
            for &a in &addrs {
                for (pr, ports) in [
                    (proto::TCP, &PROBE_PORTS[..]),
                    (proto::UDP, &PROBE_PORTS[..]),
                    (proto::SCTP, &PROBE_PORTS[..]),
                    (ICMP, &[0u16][..]),
                ] {
                    for &port in ports {
                        let got = sim(state, &pod, dir, a, pr, port).unwrap();
                        let (exact, conservative) = cluster.naive(&pod, dir, a, pr, port);
                        prop_assert!(
                            !conservative || exact,
                            "the conservative reading never allows more"
                        );
                        prop_assert_eq!(
                            got,
                            conservative,
                            "{} {} peer {} proto {} port {}",
                            pod,
                            direction::as_str(dir),
                            a,
                            pr,
                            port
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
