//! `cargo xtask conformance`: sets the machine up, then runs the
//! NetworkPolicy conformance suite (`agent/tests/conformance/`: the
//! upstream e2e truth tables and the cyclonus generator's cases, probed
//! over real pods against the real agent) with its per-case report.

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
