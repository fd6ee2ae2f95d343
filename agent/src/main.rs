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
    /// Serve /healthz, /readyz and /metrics here (`none` to disable). The
    /// last occurrence wins, so extra arguments can override a default.
    #[arg(long, default_value = config::DEFAULT_HEALTH_ADDR, overrides_with = "health_addr")]
    health_addr: String,
    /// Pods announced by the CNI plugin whose policy is not known yet drop
    /// new flows (policy-pending) instead of passing them.
    #[arg(long)]
    default_deny_until_synced: bool,
    /// Judge traffic from this node to its pods by policy too (default:
    /// allowed, so kubelet probes work under default deny).
    #[arg(long)]
    enforce_host: bool,
    /// Re-judge existing connections by the new policy after every policy
    /// change (the default); `--ct-revalidate=false` lets connections the
    /// other end has answered live on under the policy that opened them.
    #[arg(
        long,
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    ct_revalidate: bool,
    /// What happens to a packet a pod sends from an address that is not
    /// its own (nor in its namespace's
    /// policy.palisade.dev/allowed-source-prefixes): dropped
    /// (invalid-source), passed and reported (audit), or not checked.
    #[arg(long, value_enum, default_value_t = SourceVerificationArg::Enforce)]
    source_verification: SourceVerificationArg,
    /// How long a CNI ADD waits for the sources to report its pod before
    /// the interface is attached as pending.
    #[arg(long, default_value_t = 5000)]
    cni_wait_ms: u64,
    /// Remove everything Palisade attached and pinned for this node, then
    /// exit.
    #[arg(long)]
    cleanup: bool,
    /// Audit mode for every endpoint: would-drops pass and are reported
    /// (`palisade monitor --type audit`, `palisade_datapath_audits_total`).
    #[arg(long)]
    audit: bool,
    /// Add per-pod drop series (`palisade_datapath_pod_drops_total`) to
    /// /metrics; off by default to bound cardinality.
    #[arg(long)]
    metrics_pod_labels: bool,
    /// Write the datapath's rare-path records to this log (target
    /// palisade::datapath): `info` packets on an interface with no
    /// endpoint and new flows of policy-pending pods; `debug` also packets
    /// whose headers do not parse and later fragments without their first
    /// fragment. At most 20 records a second per CPU (bursts of 50); the
    /// agent warns about the ones it suppressed. Off: no cost.
    #[arg(long, value_enum, default_value_t = DatapathLogArg::Off)]
    datapath_log: DatapathLogArg,
    /// Kubernetes lists fetch at most this many objects per request
    /// (`limit`, then `continue`).
    #[arg(long, hide = true, default_value_t = config::DEFAULT_KUBE_PAGE_SIZE)]
    kube_page_size: u32,
    /// Each Kubernetes watch request lasts this long, then is renewed
    /// from its last resourceVersion.
    #[arg(long, hide = true, default_value_t = config::DEFAULT_KUBE_WATCH_TIMEOUT_SECS)]
    kube_watch_timeout_secs: u32,
}

/// `--source-verification`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum SourceVerificationArg {
    Enforce,
    Audit,
    Off,
}

impl From<SourceVerificationArg> for config::SourceVerification {
    fn from(a: SourceVerificationArg) -> Self {
        match a {
            SourceVerificationArg::Enforce => config::SourceVerification::Enforce,
            SourceVerificationArg::Audit => config::SourceVerification::Audit,
            SourceVerificationArg::Off => config::SourceVerification::Off,
        }
    }
}

/// `--datapath-log`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DatapathLogArg {
    Off,
    Info,
    Debug,
}

impl From<DatapathLogArg> for config::DatapathLog {
    fn from(a: DatapathLogArg) -> Self {
        match a {
            DatapathLogArg::Off => config::DatapathLog::Off,
            DatapathLogArg::Info => config::DatapathLog::Info,
            DatapathLogArg::Debug => config::DatapathLog::Debug,
        }
    }
}

/// `-o` of the inspection commands.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum OutputFormat {
    Text,
    Json,
    Yaml,
}

impl From<OutputFormat> for cli::inspect::Format {
    fn from(f: OutputFormat) -> Self {
        match f {
            OutputFormat::Text => cli::inspect::Format::Text,
            OutputFormat::Json => cli::inspect::Format::Json,
            OutputFormat::Yaml => cli::inspect::Format::Yaml,
        }
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum MonitorOutput {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum EventTypeArg {
    Drop,
    Audit,
    All,
}

#[derive(Args)]
struct MonitorArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Only events with a pod of this namespace at either end.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Only events with a pod of this name at either end.
    #[arg(long)]
    pod: Option<String>,
    /// Only this drop reason (policy-denied, malformed, ...).
    #[arg(long)]
    reason: Option<String>,
    /// Drops, audit (would-drop) events, or both.
    #[arg(long = "type", value_enum, default_value = "drop")]
    kind: EventTypeArg,
    /// Output: text lines or one JSON object per line.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: MonitorOutput,
    /// Stop after this many events.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration_secs: Option<u64>,
    /// How often the agent reports lost-event counters (ms).
    #[arg(long, default_value_t = 2000)]
    stats_interval_ms: u64,
}

#[derive(Args)]
struct ExplainArgs {
    /// Sender: NAMESPACE/POD, an IP address or a CIDR.
    #[arg(long)]
    from: String,
    /// Receiver: NAMESPACE/POD, an IP address or a CIDR.
    #[arg(long)]
    to: String,
    /// PORT/PROTOCOL (5432/TCP), PORT (TCP), or ICMP.
    #[arg(long)]
    port: String,
    /// Read the cluster from the YAML manifests of this directory.
    #[arg(long, conflicts_with_all = ["files", "live"])]
    manifests: Option<PathBuf>,
    /// Read the cluster from these manifest files.
    #[arg(short = 'f', long = "file", num_args = 1.., conflicts_with = "live")]
    files: Vec<PathBuf>,
    /// Ask the running agent (its compiled model).
    #[arg(long)]
    live: bool,
    #[command(flatten)]
    node: NodeArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: OutputFormat,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum GraphFormat {
    Json,
    Dot,
    Table,
    Svg,
    Html,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["namespace", "all_namespaces", "pod"])))]
#[command(group(clap::ArgGroup::new("input").required(true).args(["manifests", "files", "live"])))]
struct GraphArgs {
    /// The pods of this namespace and every peer they reach or are
    /// reached by.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Every namespace, aggregated by namespace.
    #[arg(long)]
    all_namespaces: bool,
    /// One pod (NAMESPACE/NAME) and its peers.
    #[arg(long)]
    pod: Option<String>,
    /// Read the cluster from the YAML manifests of this directory.
    #[arg(long)]
    manifests: Option<PathBuf>,
    /// Read the cluster from these manifest files.
    #[arg(short = 'f', long = "file", num_args = 1..)]
    files: Vec<PathBuf>,
    /// Ask the running agent (its compiled model), with the drops it saw
    /// and the connections it tracks laid over the graph.
    #[arg(long)]
    live: bool,
    /// With --live: how far back drops count (300, 90s, 5m, 1h; default
    /// 5m, at most what the agent keeps: 15m).
    #[arg(long, requires = "live")]
    window: Option<String>,
    #[command(flatten)]
    node: NodeArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: GraphFormat,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("new").required(true).args(["after", "files"])))]
struct DiffArgs {
    /// The manifests before the change (a directory).
    #[arg(long)]
    before: PathBuf,
    /// The manifests after the change (a directory).
    #[arg(long)]
    after: Option<PathBuf>,
    /// Or: the changed files (each replaces the file of the same name in
    /// --before, or is added).
    #[arg(short = 'f', long = "file", num_args = 1..)]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: DiffFormat,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum DiffFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum EndpointCommand {
    /// Local pods: interface, identity, isolation per direction, attached.
    List {
        #[command(flatten)]
        node: NodeArgs,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// What a NetworkPolicy (NAMESPACE/NAME) or a ClusterNetworkPolicy
    /// (NAME) compiled to on this node.
    Get {
        /// NAMESPACE/NAME of a NetworkPolicy, or NAME of a
        /// ClusterNetworkPolicy.
        name: String,
        #[command(flatten)]
        node: NodeArgs,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: OutputFormat,
    },
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
    /// Stream drop (and audit) events from the running agent.
    Monitor(Box<MonitorArgs>),
    /// Is a flow allowed, and why (offline on manifests, or --live).
    /// Exit status: 0 allowed, 1 denied, 2 error.
    Explain(Box<ExplainArgs>),
    /// What policy allows between workloads, computed offline from
    /// manifests (no agent, no root): nodes are workloads, CIDR regions
    /// policies name, node addresses and the world; edges the allowed
    /// ports with the rules behind them. Rejected objects are named and
    /// left out (the output says the picture is partial).
    Graph(Box<GraphArgs>),
    /// Which connections a change of manifests opens and closes, per pod
    /// pair and port/protocol, offline. Warns about egress allow-all-except
    /// rules that open egress other policies had isolated. Exit status:
    /// 0 no change in connectivity, 1 something opens, 3 only closes,
    /// 2 error.
    Diff(Box<DiffArgs>),
    /// Local endpoints of the running agent.
    Endpoint {
        #[command(subcommand)]
        command: EndpointCommand,
    },
    /// Policies as the running agent compiled them.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
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

fn init_logging(datapath_log: config::DatapathLog) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // kube's client logs every failed connection attempt at ERROR (three a
    // second while the API is away); the Kubernetes source logs each
    // failure itself, bounded and with what it means. Unless RUST_LOG asks
    // for kube_client explicitly, keep its connection errors out.
    let asked = std::env::var("RUST_LOG").is_ok_and(|v| v.contains("kube_client"));
    if !asked && let Ok(d) = "kube_client::client::builder=off".parse() {
        filter = filter.add_directive(d);
    }
    // The datapath's records are asked for by --datapath-log; RUST_LOG
    // naming their target still decides.
    let named = std::env::var("RUST_LOG").is_ok_and(|v| v.contains("palisade::datapath"));
    if !named
        && let Some(d) = datapath_log.filter_directive()
        && let Ok(d) = d.parse()
    {
        filter = filter.add_directive(d);
    }
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
            init_logging(a.datapath_log.into());
            cli::agent::run(ConfigInput {
                node_name: a.node.node_name,
                manifests: a.manifests,
                state_dir: a.node.state_dir,
                bpffs_dir: a.node.bpffs_dir,
                socket: a.node.socket,
                health_addr: Some(a.health_addr),
                default_deny_until_synced: a.default_deny_until_synced,
                enforce_host: a.enforce_host,
                ct_revalidate: Some(a.ct_revalidate),
                source_verification: a.source_verification.into(),
                cni_wait_ms: Some(a.cni_wait_ms),
                audit: a.audit,
                metrics_pod_labels: a.metrics_pod_labels,
                datapath_log: a.datapath_log.into(),
                kube_page_size: Some(a.kube_page_size),
                kube_watch_timeout_secs: Some(a.kube_watch_timeout_secs),
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
        Command::Monitor(m) => {
            let m = *m;
            let target = node_paths(m.node)?;
            let opts = cli::monitor::Options {
                socket: target.socket,
                filter: palisade::monitor::MonitorFilter {
                    namespace: m.namespace,
                    pod: m.pod,
                    reason: m.reason,
                    kind: match m.kind {
                        EventTypeArg::Drop => palisade::monitor::EventType::Drop,
                        EventTypeArg::Audit => palisade::monitor::EventType::Audit,
                        EventTypeArg::All => palisade::monitor::EventType::All,
                    },
                    stats_interval_ms: Some(m.stats_interval_ms),
                },
                output: match m.output {
                    MonitorOutput::Text => cli::monitor::Output::Text,
                    MonitorOutput::Json => cli::monitor::Output::Json,
                },
                count: m.count,
                duration: m.duration_secs.map(Duration::from_secs),
            };
            cli::monitor::run(&opts, &mut std::io::stdout(), &mut std::io::stderr())?;
            Ok(())
        }
        Command::Explain(_) | Command::Diff(_) => unreachable!("handled in main"),
        Command::Graph(a) => {
            let req = palisade::control::GraphRequest {
                namespace: a.namespace,
                pod: a.pod,
                all_namespaces: a.all_namespaces,
                window_seconds: None,
            };
            let scope = req.scope().map_err(anyhow::Error::msg)?;
            let input = if a.live {
                cli::graph::Input::Live {
                    socket: node_paths(a.node)?.socket,
                    window_seconds: a
                        .window
                        .as_deref()
                        .map(cli::graph::parse_window)
                        .transpose()?,
                }
            } else if let Some(d) = a.manifests {
                cli::graph::Input::Dir(d)
            } else {
                cli::graph::Input::Files(a.files)
            };
            let (g, warnings) = cli::graph::compute(&input, &req)?;
            for w in warnings {
                eprintln!("palisade: warning: {w}");
            }
            if g.partial() {
                eprintln!(
                    "palisade: warning: the picture is partial: {} object(s) left out",
                    g.rejected.len()
                );
            }
            for p in &g.overlay_partial {
                eprintln!("palisade: warning: the live overlay is partial: {p}");
            }
            let format = match a.output {
                GraphFormat::Json => cli::graph::Format::Json,
                GraphFormat::Dot => cli::graph::Format::Dot,
                GraphFormat::Table => cli::graph::Format::Table,
                GraphFormat::Svg => cli::graph::Format::Svg,
                GraphFormat::Html => cli::graph::Format::Html,
            };
            print!("{}", cli::graph::render(&g, &scope, format));
            Ok(())
        }
        Command::Endpoint {
            command: EndpointCommand::List { node, output },
        } => {
            let target = node_paths(node)?;
            print!(
                "{}",
                cli::inspect::endpoint_list(&target.socket, output.into())?
            );
            Ok(())
        }
        Command::Policy {
            command: PolicyCommand::Get { name, node, output },
        } => {
            let target = node_paths(node)?;
            print!(
                "{}",
                cli::inspect::policy_get(&target.socket, &name, output.into())?
            );
            Ok(())
        }
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

/// `palisade explain`: 0 allowed, 1 denied, 2 error.
fn explain(a: ExplainArgs) -> ExitCode {
    let input = if a.live {
        match node_paths(a.node) {
            Ok(t) => cli::explain::Input::Live(t.socket),
            Err(e) => {
                eprintln!("palisade: {e}");
                return ExitCode::from(2);
            }
        }
    } else if let Some(d) = a.manifests {
        cli::explain::Input::Dir(d)
    } else if !a.files.is_empty() {
        cli::explain::Input::Files(a.files)
    } else {
        eprintln!("palisade: explain needs --manifests DIR, -f FILE... or --live");
        return ExitCode::from(2);
    };
    let req = palisade::explain::ExplainRequest {
        from: a.from,
        to: a.to,
        port: a.port,
    };
    match cli::explain::run(&input, &req) {
        Ok((rep, warnings)) => {
            for w in warnings {
                eprintln!("palisade: warning: {w}");
            }
            match a.output {
                OutputFormat::Text => print!("{rep}"),
                OutputFormat::Json => {
                    println!("{}", serde_json::to_string_pretty(&rep).unwrap_or_default())
                }
                OutputFormat::Yaml => {
                    print!("{}", serde_yaml_ng::to_string(&rep).unwrap_or_default())
                }
            }
            if rep.allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("palisade: {e}");
            ExitCode::from(2)
        }
    }
}

/// `palisade diff`: 0 no change, 1 something opens, 3 only closes,
/// 2 error.
fn diff(a: DiffArgs) -> ExitCode {
    let after = match a.after {
        Some(d) => cli::diff::After::Dir(d),
        None => cli::diff::After::Changed(a.files),
    };
    match cli::diff::run(&a.before, &after) {
        Ok((rep, warnings)) => {
            for w in warnings {
                eprintln!("palisade: warning: {w}");
            }
            match a.output {
                DiffFormat::Text => print!("{rep}"),
                DiffFormat::Json => {
                    println!("{}", serde_json::to_string_pretty(&rep).unwrap_or_default())
                }
            }
            ExitCode::from(rep.exit_status())
        }
        Err(e) => {
            eprintln!("palisade: {e}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cmd = Cli::parse().command;
    match cmd {
        Command::Explain(a) => return explain(*a),
        Command::Diff(a) => return diff(*a),
        _ => {}
    }
    match run(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            eprintln!("palisade: {e:#}");
            ExitCode::FAILURE
        }
    }
}
