//! `palisade-cni`: the CNI chained plugin. Called by a container runtime
//! (no arguments) it reads the request from the environment and stdin and
//! prints the result (or CNI error) on stdout; `palisade-cni install …`
//! installs it on a node. The logic is in `palisade::cni`.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use palisade::cni::install::{self, InstallOptions};
use palisade::cni::{CniError, Outcome, netconf};

#[derive(Parser)]
#[command(
    name = "palisade-cni",
    version,
    about = "Palisade's CNI chained plugin"
)]
enum Cli {
    /// Copy this binary into the CNI bin directory and append (or update)
    /// its entry in the node's CNI configuration (the first file by name).
    Install {
        /// The CNI bin directory.
        #[arg(long, default_value = "/opt/cni/bin")]
        bin_dir: PathBuf,
        /// The CNI configuration directory.
        #[arg(long, default_value = "/etc/cni/net.d")]
        conf_dir: PathBuf,
        /// `agentSocket` of the entry.
        #[arg(long, default_value = netconf::DEFAULT_AGENT_SOCKET)]
        agent_socket: String,
        /// `agentTimeoutMs` of the entry.
        #[arg(long, default_value_t = 10_000)]
        agent_timeout_ms: u64,
        /// Remove the entry instead.
        #[arg(long)]
        uninstall: bool,
        /// Then keep running: put the entry back whenever the primary CNI
        /// rewrites its configuration (each repair is logged).
        #[arg(long, conflicts_with = "uninstall")]
        watch: bool,
    },
}

fn install_cmd(cli: Cli) -> ExitCode {
    let Cli::Install {
        bin_dir,
        conf_dir,
        agent_socket,
        agent_timeout_ms,
        uninstall,
        watch,
    } = cli;
    let opts = InstallOptions {
        bin_dir,
        conf_dir,
        agent_socket,
        agent_timeout_ms,
        uninstall,
    };
    let result = std::env::current_exe()
        .map_err(|e| e.to_string())
        .and_then(|exe| install::install(&opts, &exe).map_err(|e| e.to_string()));
    if watch {
        return watch_cmd(&opts, result);
    }
    match result {
        Ok(r) => {
            if let Some(b) = r.binary {
                println!("installed {}", b.display());
            }
            let what = if r.changed { "updated" } else { "unchanged" };
            println!("{what} {}", r.config.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("palisade-cni install: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `install --watch`: the first install (its configuration may not be
/// there yet: the watch installs it once it is), then repairs forever.
fn watch_cmd(opts: &InstallOptions, first: Result<install::Installed, String>) -> ExitCode {
    match first {
        Ok(r) => println!("installed; watching {}", r.config.display()),
        Err(e) => eprintln!(
            "palisade-cni install: {e}; watching {}",
            opts.conf_dir.display()
        ),
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut repairs = 0u64;
    let result = install::watch(opts, &stop, &mut |r| match r {
        Ok(path) => {
            repairs += 1;
            println!(
                "repaired {}: {} was missing from its plugins (rewritten by the primary CNI?), \
                 re-inserted ({repairs} repairs so far)",
                path.display(),
                install::PLUGIN_TYPE
            );
        }
        Err(e) => eprintln!("palisade-cni install --watch: {e}"),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palisade-cni install --watch: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    if std::env::args_os().len() > 1 {
        return install_cmd(Cli::parse());
    }
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => palisade::cni::run(&|k| std::env::var(k).ok(), &stdin),
        Err(e) => {
            let err = CniError::Stdin(e);
            Outcome {
                stdout: serde_json::to_string(&err.to_result("1.0.0")).expect("serializes"),
                stderr: format!("palisade-cni: {err}"),
                success: false,
            }
        }
    };
    if !outcome.stderr.is_empty() {
        eprintln!("{}", outcome.stderr);
    }
    if !outcome.stdout.is_empty() {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", outcome.stdout);
        let _ = out.flush();
    }
    if outcome.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
