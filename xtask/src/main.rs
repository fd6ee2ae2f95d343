//! Project tasks: `cargo xtask <setup|test|bench|lab|demo|conformance|fuzz>`. Each subcommand lives in
//! its own module; errors carry the command that failed.

mod bench;
mod cmd;
mod conformance;
mod demo;
mod fuzz;
mod lab;
mod setup;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Palisade project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what this machine lacks to build and test Palisade
    /// (nightly rust-src, bpf-linker, Debian packages). Idempotent.
    Setup,
    /// Set up, then run the whole test suite (needs root), fmt and clippy.
    Test {
        /// Skip `cargo fmt --check` and clippy.
        #[arg(long)]
        no_lint: bool,
        /// Extra arguments for `cargo test`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run a benchmark and print its table.
    Bench {
        /// Which benchmark.
        #[arg(value_enum)]
        which: bench::Which,
        /// Runs per measurement (BPF_PROG_TEST_RUN repeat).
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
    },
    /// Routed pods in network namespaces from a description file, left
    /// running (`up`), shown (`status`), removed (`down`).
    Lab {
        #[command(subcommand)]
        command: lab::LabCommand,
    },
    /// Set up, build, and run the seeds' three-tier application under the
    /// agent, applying its policies step by step (needs root).
    Demo(demo::DemoArgs),
    /// Set up, then run the NetworkPolicy and ClusterNetworkPolicy
    /// conformance suite against the real agent (needs root).
    Conformance {
        /// Extra arguments for the test binary (e.g. `--nocapture`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Random frames through both programs against the reference
    /// classifier and the policy model, optimised build (needs root).
    Fuzz {
        /// How many frames.
        #[arg(long, default_value_t = 10_000_000)]
        frames: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::run(),
        Command::Test { no_lint, args } => test::run(no_lint, &args),
        Command::Bench { which, repeat } => bench::run(which, repeat),
        Command::Lab { command } => lab::run(command),
        Command::Demo(args) => demo::run(&args),
        Command::Conformance { args } => conformance::run(&args),
        Command::Fuzz { frames } => fuzz::run(frames),
    }
}

/// Fails unless running as root (namespaces, eBPF).
fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("{what} creates network namespaces and loads eBPF programs: run it as root");
    }
    Ok(())
}
