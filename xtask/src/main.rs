//! Project tasks: `cargo xtask <setup|test|bench>`. Each subcommand lives in
//! its own module; errors carry the command that failed.

mod bench;
mod cmd;
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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup => setup::run(),
        Command::Test { no_lint, args } => test::run(no_lint, &args),
        Command::Bench { which, repeat } => bench::run(which, repeat),
    }
}
