//! The `palisade` command: parses arguments and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use palisade::cli;
use palisade::config::{self, ConfigInput};
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

#[derive(Args)]
struct NodeArgs {
    /// This node's name (`spec.nodeName` of its pods). Default: $NODE_NAME,
    /// else the hostname.
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Runtime state (allocation table, control socket). Default:
    /// /run/palisade/<node-name>.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Where maps are pinned (links under `links/`); must be on bpffs.
    /// Default: /sys/fs/bpf/palisade/<node-name>.
    #[arg(long)]
    bpffs_dir: Option<PathBuf>,
    /// The control socket. Default: <state-dir>/agent.sock.
    #[arg(long)]
    socket: Option<PathBuf>,
}

#[derive(Args)]
struct AgentArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Read Namespaces, Pods and NetworkPolicies from the YAML files of this
    /// directory (watched) instead of the Kubernetes API.
    #[arg(long)]
    manifests: Option<PathBuf>,
    /// Serve /healthz and /readyz here (`none` to disable).
    #[arg(long, default_value = config::DEFAULT_HEALTH_ADDR)]
    health_addr: String,
    /// Pods announced by the CNI plugin whose policy is not known yet drop
    /// new flows (policy-pending) instead of passing them.
    #[arg(long)]
    default_deny_until_synced: bool,
    /// Judge traffic from this node to its pods by policy too (default:
    /// allowed, so kubelet probes work under default deny).
    #[arg(long)]
    enforce_host: bool,
    /// Re-judge established connections after every policy change.
    #[arg(long)]
    ct_revalidate: bool,
    /// How long a CNI ADD waits for the sources to report its pod before
    /// the interface is attached as pending.
    #[arg(long, default_value_t = 5000)]
    cni_wait_ms: u64,
    /// Remove everything Palisade attached and pinned for this node, then
    /// exit.
    #[arg(long)]
    cleanup: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node agent.
    Agent(Box<AgentArgs>),
    /// Ask the running agent to re-read its sources; prints the policy
    /// revision once it is in the datapath.
    Sync {
        #[command(flatten)]
        node: NodeArgs,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
    /// Remove everything Palisade attached and pinned for a node.
    Cleanup {
        #[command(flatten)]
        node: NodeArgs,
    },
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

fn node_paths(node: NodeArgs) -> Result<cli::cleanup::Target, config::ConfigError> {
    let name = config::resolve_node_name(node.node_name)?;
    let state_dir = node
        .state_dir
        .unwrap_or_else(|| config::default_state_dir(&name));
    Ok(cli::cleanup::Target {
        bpffs_dir: node
            .bpffs_dir
            .unwrap_or_else(|| config::default_bpffs_dir(&name)),
        socket: node.socket.unwrap_or_else(|| state_dir.join("agent.sock")),
        state_dir,
    })
}

fn cleanup(node: NodeArgs) -> anyhow::Result<()> {
    let target = node_paths(node)?;
    let removed = cli::cleanup::run(&target)?;
    println!("removed {} pins and files", removed.len());
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Agent(a) => {
            let a = *a;
            if a.cleanup {
                return cleanup(a.node);
            }
            init_logging();
            cli::agent::run(ConfigInput {
                node_name: a.node.node_name,
                manifests: a.manifests,
                state_dir: a.node.state_dir,
                bpffs_dir: a.node.bpffs_dir,
                socket: a.node.socket,
                health_addr: Some(a.health_addr),
                default_deny_until_synced: a.default_deny_until_synced,
                enforce_host: a.enforce_host,
                ct_revalidate: a.ct_revalidate,
                cni_wait_ms: Some(a.cni_wait_ms),
            })?;
            Ok(())
        }
        Command::Sync { node, timeout_secs } => {
            let target = node_paths(node)?;
            let revision = cli::sync::run(&target.socket, Duration::from_secs(timeout_secs))?;
            println!("{revision}");
            Ok(())
        }
        Command::Cleanup { node } => cleanup(node),
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

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            eprintln!("palisade: {e:#}");
            ExitCode::FAILURE
        }
    }
}
