//! `cargo xtask lab up|down|status`: a long-lived lab on this machine,
//! built from a description file (see `palisade_lab::description`).
//!
//! `up` starts one detached supervisor process (this binary, hidden
//! subcommand `lab supervise`) that builds the lab, runs every pod's
//! TCP/UDP servers and SCTP responder on its threads, writes the
//! Namespace/Pod manifests and `state.json` under `/run/palisade-lab/<name>/`,
//! and waits for SIGTERM/SIGINT/SIGHUP; then it stops the servers and
//! deletes its namespaces. Namespaces are named `plab-<name>-<pid>-…` after
//! the supervisor, so `down` (which signals it) also removes what a crashed
//! supervisor left (`cleanup_stale`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use palisade_lab::{AppLab, LabDescription, cleanup_stale, namespaces_with_prefix};
use serde_json::{Value, json};

/// Where labs keep their state.
pub const STATE_ROOT: &str = "/run/palisade-lab";
/// How long `up` waits for the supervisor to report the lab ready.
const UP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `down` waits for the supervisor to exit after SIGTERM.
const DOWN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Subcommand)]
pub enum LabCommand {
    /// Build the lab of a description file and leave it running.
    Up {
        /// The description file (YAML).
        file: PathBuf,
    },
    /// Stop a lab (all labs if no name) and remove leftovers of crashed runs.
    Down {
        /// The lab's name (`name:` in its description).
        name: Option<String>,
    },
    /// Show running labs: pods, addresses, ports, manifests directory.
    Status {
        /// The lab's name.
        name: Option<String>,
    },
    /// (internal) The supervisor process `up` starts.
    #[command(hide = true)]
    Supervise {
        file: PathBuf,
        #[arg(long)]
        state_dir: PathBuf,
    },
}

pub fn run(cmd: LabCommand) -> anyhow::Result<()> {
    match cmd {
        LabCommand::Up { file } => up(&file),
        LabCommand::Down { name } => down(name.as_deref()),
        LabCommand::Status { name } => status(name.as_deref()),
        LabCommand::Supervise { file, state_dir } => supervise(&file, &state_dir),
    }
}

/// The namespace prefix of lab `name`.
pub fn prefix(name: &str) -> String {
    format!("plab-{name}")
}

fn state_dir(name: &str) -> PathBuf {
    Path::new(STATE_ROOT).join(name)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 32
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        bail!("lab name {name:?}: must be 1..=32 bytes of [a-z0-9-]");
    }
    Ok(())
}

fn up(file: &Path) -> anyhow::Result<()> {
    crate::require_root("lab up")?;
    let desc = LabDescription::from_file(file)?;
    check_name(&desc.name)?;
    let dir = state_dir(&desc.name);
    if let Some(pid) = supervisor_pid(&dir)
        && alive(pid)
    {
        bail!(
            "lab {:?} is already up (supervisor pid {pid}); `cargo xtask lab down {}` first",
            desc.name,
            desc.name
        );
    }
    // Leftovers of a crashed supervisor of this name.
    let removed = cleanup_stale(&prefix(&desc.name))?;
    if !removed.is_empty() {
        eprintln!("removed {} namespaces of a crashed run", removed.len());
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("manifests"))
        .with_context(|| format!("failed to create {}", dir.display()))?;
    let log = std::fs::File::create(dir.join("supervisor.log"))?;
    let file = std::fs::canonicalize(file)?;
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(["lab", "supervise"])
        .arg(&file)
        .arg("--state-dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own session: a Ctrl-C in this terminal must not stop the lab.
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt as _;
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("failed to run {cmd:?}"))?;
    let deadline = Instant::now() + UP_TIMEOUT;
    // Bounded by UP_TIMEOUT; polls the state file the supervisor writes.
    loop {
        if dir.join("state.json").exists() {
            break;
        }
        if let Some(st) = child.try_wait()? {
            let log = std::fs::read_to_string(dir.join("supervisor.log")).unwrap_or_default();
            bail!("lab supervisor exited ({st}):\n{log}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = cleanup_stale(&prefix(&desc.name));
            bail!("lab not ready within {UP_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    print_state(&desc.name)
}

/// The hidden supervisor: builds the lab, reports, waits for a signal.
fn supervise(file: &Path, dir: &Path) -> anyhow::Result<()> {
    // Block the stop signals before any thread exists (threads inherit the
    // mask), then wait for one with sigwait.
    let set = stop_signals();
    // SAFETY: valid sigset.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    let desc = LabDescription::from_file(file)?;
    let lab = AppLab::up(&desc, &prefix(&desc.name))?;
    let manifests = dir.join("manifests");
    lab.write_manifests(&manifests)?;
    let state = state_json(&desc, &lab, &manifests);
    let tmp = dir.join(".state.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&state)?)?;
    std::fs::rename(&tmp, dir.join("state.json"))?;
    eprintln!("lab {} up (pid {})", desc.name, std::process::id());
    let mut sig: libc::c_int = 0;
    // SAFETY: valid sigset and out pointer.
    unsafe { libc::sigwait(&set, &mut sig) };
    eprintln!("signal {sig}: tearing down");
    drop(lab);
    let _ = std::fs::remove_file(dir.join("state.json"));
    Ok(())
}

fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill the set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn state_json(desc: &LabDescription, lab: &AppLab, manifests: &Path) -> Value {
    let l = lab.lab();
    let nodes: Vec<Value> = l
        .nodes()
        .iter()
        .map(|n| json!({"name": n.name(), "netns": n.netns(), "ipv4": n.ipv4(), "ipv6": n.ipv6()}))
        .collect();
    let pods: Vec<Value> = lab
        .pods()
        .iter()
        .map(|p| {
            let lp = lab.pod(&p.namespace, &p.name);
            let ports: Vec<String> = p
                .ports
                .iter()
                .map(|s| format!("{}/{}", s.protocol, s.port))
                .collect();
            json!({"pod": format!("{}/{}", p.namespace, p.name), "node": p.node,
                   "netns": lp.netns(), "interface": lp.host_veth(),
                   "ipv4": lp.ipv4(), "ipv6": lp.ipv6(), "labels": p.labels, "ports": ports})
        })
        .collect();
    let externals: Vec<Value> = l
        .external_hosts()
        .iter()
        .map(|h| json!({"name": h.name(), "node": h.node(), "netns": h.netns(), "addresses": h.addrs()}))
        .collect();
    json!({"name": desc.name, "pid": std::process::id(), "lab_id": l.id(),
           "manifests": manifests, "nodes": nodes, "pods": pods, "external_hosts": externals})
}

fn supervisor_pid(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("state.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["pid"].as_u64().and_then(|p| u32::try_from(p).ok())
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Lab names with a state directory or namespaces on this machine.
fn known_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(STATE_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    for ns in namespaces_with_prefix("plab") {
        // plab-<name>-<pid>-…: the name ends before the first all-digit part.
        let parts: Vec<&str> = ns.split('-').skip(1).collect();
        if let Some(i) = parts
            .iter()
            .position(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && i > 0
        {
            names.push(parts[..i].join("-"));
        }
    }
    names.sort();
    names.dedup();
    names
}

fn down(name: Option<&str>) -> anyhow::Result<()> {
    crate::require_root("lab down")?;
    let names = match name {
        Some(n) => {
            check_name(n)?;
            vec![n.to_owned()]
        }
        None => known_names(),
    };
    if names.is_empty() {
        println!("no labs");
    }
    for name in names {
        let dir = state_dir(&name);
        if let Some(pid) = supervisor_pid(&dir)
            && alive(pid)
        {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            let deadline = Instant::now() + DOWN_TIMEOUT;
            // Bounded by DOWN_TIMEOUT.
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if alive(pid) {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let removed = cleanup_stale(&prefix(&name))?;
        let _ = std::fs::remove_dir_all(&dir);
        let left = namespaces_with_prefix(&prefix(&name));
        if !left.is_empty() {
            bail!("lab {name}: namespaces remain: {left:?}");
        }
        println!(
            "lab {name}: down{}",
            if removed.is_empty() {
                String::new()
            } else {
                format!(" ({} leftover namespaces removed)", removed.len())
            }
        );
    }
    Ok(())
}

fn status(name: Option<&str>) -> anyhow::Result<()> {
    let names = match name {
        Some(n) => vec![n.to_owned()],
        None => known_names(),
    };
    if names.is_empty() {
        println!("no labs");
    }
    for n in names {
        print_state(&n)?;
    }
    Ok(())
}

fn print_state(name: &str) -> anyhow::Result<()> {
    let dir = state_dir(name);
    let Ok(text) = std::fs::read_to_string(dir.join("state.json")) else {
        let left = namespaces_with_prefix(&prefix(name));
        println!(
            "lab {name}: not running ({} leftover namespaces; `cargo xtask lab down {name}` removes them)",
            left.len()
        );
        return Ok(());
    };
    let v: Value = serde_json::from_str(&text)?;
    let pid = v["pid"].as_u64().unwrap_or(0) as u32;
    let state = if alive(pid) {
        "up"
    } else {
        "supervisor gone (run `lab down`)"
    };
    println!(
        "lab {name}: {state}, supervisor pid {pid}, {} namespaces",
        namespaces_with_prefix(&prefix(name)).len()
    );
    println!("  manifests: {}", v["manifests"].as_str().unwrap_or("?"));
    for n in v["nodes"].as_array().into_iter().flatten() {
        println!(
            "  node {:<12} {} {}  netns {}",
            n["name"].as_str().unwrap_or("?"),
            n["ipv4"].as_str().unwrap_or("?"),
            n["ipv6"].as_str().unwrap_or("?"),
            n["netns"].as_str().unwrap_or("?")
        );
    }
    for p in v["pods"].as_array().into_iter().flatten() {
        let ports: Vec<&str> = p["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .collect();
        println!(
            "  pod {:<28} {:<8} {:<14} {:<18} {}",
            p["pod"].as_str().unwrap_or("?"),
            p["node"].as_str().unwrap_or("?"),
            p["ipv4"].as_str().unwrap_or("?"),
            p["ipv6"].as_str().unwrap_or("?"),
            ports.join(" ")
        );
    }
    for h in v["external_hosts"].as_array().into_iter().flatten() {
        let addrs: Vec<&str> = h["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .collect();
        println!(
            "  external {:<23} via {}: {}",
            h["name"].as_str().unwrap_or("?"),
            h["node"].as_str().unwrap_or("?"),
            addrs.join(" ")
        );
    }
    if let Some(n) = v["nodes"].as_array().and_then(|a| a.first()) {
        println!(
            "  run an agent: ip netns exec {} palisade agent --node-name {} --manifests {} --bpffs-dir <dir on bpffs>",
            n["netns"].as_str().unwrap_or("?"),
            n["name"].as_str().unwrap_or("?"),
            v["manifests"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}
