//! `cargo xtask bench <datapath|compiler|agent>`: runs a benchmark binary in
//! release mode and prints its table (figures go to BENCHMARKS.md by hand,
//! with the command and the machine).

use std::process::Command;

use crate::cmd::run as run_cmd;

/// Benchmarks.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Which {
    /// Per-packet cost through BPF_PROG_TEST_RUN vs an empty program, by table
    /// size; then TCP throughput and connection rate over real veths.
    Datapath,
    /// Full and incremental policy compilation at cluster scale.
    Compiler,
    /// The agent binary at 10k pods / 2k policies: policy change to
    /// enforced through the manifests and (mock) Kubernetes sources, RSS.
    Agent,
}

pub fn run(which: Which, repeat: u32) -> anyhow::Result<()> {
    match which {
        Which::Datapath => {
            crate::setup::run()?;
            run_cmd(
                Command::new("cargo")
                    .args(["bench", "-p", "palisade-tests", "--bench", "datapath", "--"])
                    .arg(format!("--repeat={repeat}")),
            )?;
            run_cmd(Command::new("cargo").args([
                "bench",
                "-p",
                "palisade-tests",
                "--bench",
                "veth",
            ]))
        }
        Which::Agent => {
            run_cmd(Command::new("cargo").args(["bench", "-p", "palisade", "--bench", "agent"]))
        }
        Which::Compiler => run_cmd(Command::new("cargo").args([
            "bench",
            "-p",
            "palisade-compiler",
            "--bench",
            "compiler",
        ])),
    }
}
