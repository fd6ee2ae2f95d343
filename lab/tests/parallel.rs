//! Many blocked probes run concurrently: a matrix costs about one timeout.

use std::time::{Duration, Instant};

use palisade_lab::{LabSpec, ProbeResult, ProbeSpec, probe_all};

#[test]
fn a_matrix_of_blocked_probes_finishes_in_about_one_timeout() {
    let lab = LabSpec::new("pltest-par")
        .node("n1")
        .pod("a", "default", "n1")
        .up()
        .expect("lab up");
    let a = lab.pod("a");
    // 198.18.1.99 is in the node's pod CIDR but no pod has it: the node
    // routes it into sink0 (nothing answers, nothing leaves the lab).
    let timeout = Duration::from_millis(200);
    let specs: Vec<ProbeSpec> = (0..48)
        .map(|i| {
            let dst = std::net::Ipv4Addr::new(198, 18, 1, 99);
            match i % 3 {
                0 => ProbeSpec::tcp(a, dst, 1000 + i),
                1 => ProbeSpec::udp(a, dst, 1000 + i),
                _ => ProbeSpec::sctp(a, dst, 1000 + i),
            }
            .timeout(timeout)
        })
        .collect();
    let started = Instant::now();
    let results = probe_all(&specs);
    let elapsed = started.elapsed();
    assert!(
        results.iter().all(|r| *r == ProbeResult::TimedOut),
        "{results:?}"
    );
    assert!(elapsed < timeout * 4, "took {elapsed:?}");
}
