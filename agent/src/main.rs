//! The `palisade` command: parses arguments and calls the library.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use palisade::datapath::{Datapath, LoadOptions};

#[derive(Parser)]
#[command(
    name = "palisade",
    version,
    about = "Kubernetes NetworkPolicy enforcement with eBPF"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect the embedded datapath.
    Datapath {
        #[command(subcommand)]
        command: DatapathCommand,
    },
}

#[derive(Subcommand)]
enum DatapathCommand {
    /// Load the embedded programs into this kernel (verifier included),
    /// report what loaded and unload them again. Needs root.
    Check,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Datapath {
            command: DatapathCommand::Check,
        } => {
            let dp = Datapath::load(&LoadOptions::default())
                .context("loading the datapath (are you root, with BPF and BTF support?)")?;
            for name in palisade_common::program_names::ALL {
                let prog = dp.program(name)?;
                let info = prog.info().context("reading program info")?;
                println!("program {name}: loaded, id {}", info.id());
            }
            println!(
                "attach mode: {:?}",
                palisade::datapath::AttachMode::detect()
            );
            Ok(())
        }
    }
}
