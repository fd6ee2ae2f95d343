//! `cargo xtask conformance`: sets the machine up, then runs the
//! NetworkPolicy and ClusterNetworkPolicy conformance suite
//! (`agent/tests/conformance/`: the upstream e2e truth tables, the cyclonus
//! generator's cases and network-policy-api's ClusterNetworkPolicy
//! conformance tests, probed over real pods against the real agent) with
//! its per-case report: with manifest files, then against a real API
//! server (Kubernetes mode).

use std::process::Command;

use crate::cmd::run as run_cmd;

pub fn run(args: &[String]) -> anyhow::Result<()> {
    crate::setup::run()?;
    crate::require_root("the conformance suite")?;
    run_cmd(
        Command::new("cargo")
            .args([
                "test",
                "--package",
                "palisade",
                "--test",
                "conformance",
                "--",
                "--nocapture",
            ])
            .args(args),
    )
}
