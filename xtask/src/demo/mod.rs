//! `cargo xtask demo`: the seeds' three-tier application on one machine.
//!
//! Sets the machine up (`cargo xtask setup`), builds the agent, brings up
//! the lab of `examples/three-tier/lab.yaml` (two nodes, the app's pods
//! serving their ports, external hosts for 169.254.169.254 and
//! 203.0.113.10), starts one agent per node inside the node's namespace
//! (`--manifests`, pins on a private bpffs), then applies the policies of
//! `examples/three-tier/` step by step as `kubectl apply` would (then the
//! cluster operator's ClusterNetworkPolicy of `examples/cluster/` in their
//! place, and a namespace's allow-all egress it withstands), runs
//! `palisade sync` after each step and probes the flows the seeds test.
//! Each step prints expected vs observed verdicts and the drops the agents
//! reported, and writes `palisade graph -o html` of namespace production
//! to `target/demo/graph-step-N.html`; the run ends with a summary, exits
//! non-zero on any mismatch, and removes everything but the graphs (also on
//! failure and Ctrl-C).

mod drops;
mod flows;
mod paint;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use palisade_lab::agent_process::{AgentProcess, Bpffs, NodeDirs, unmount_bpffs};
use palisade_lab::{AppLab, LabDescription, Node, cleanup_stale};

use drops::Drops;
use flows::{Proto, STEPS, Target, flows, probe_flows};
use paint::Paint;

/// Namespace prefix of the demo's lab.
const PREFIX: &str = "pdemo";
/// Temporary directories: `/tmp/palisade-demo-<pid>`.
const TMP_PREFIX: &str = "palisade-demo-";

static STOP: AtomicBool = AtomicBool::new(false);

#[derive(Args)]
pub struct DemoArgs {
    /// Skip `cargo xtask setup` (when the machine is known to be set up).
    #[arg(long)]
    skip_setup: bool,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    crate::require_root("the demo")?;
    let started = Instant::now();
    if !args.skip_setup {
        crate::setup::run()?;
    }
    let bin = build_agent()?;
    let build_done = Instant::now();
    install_stop_handler();
    remove_leftovers();
    let result = demo(&bin);
    let secs = build_done.elapsed().as_secs_f64();
    match &result {
        Ok(wrong) => eprintln!(
            "demo: {} after the build ({secs:.1} s; {:.1} s in all); nothing left behind",
            if *wrong == 0 {
                "every verdict as expected".to_string()
            } else {
                format!("{wrong} verdicts differ from the expected ones")
            },
            started.elapsed().as_secs_f64()
        ),
        Err(e) => eprintln!("demo: failed after {secs:.1} s: {e:#}; cleaned up"),
    }
    match result? {
        0 => Ok(()),
        n => bail!("{n} observed verdicts differ from the expected ones"),
    }
}

/// Where the demo leaves the graphs it draws: `target/demo/`.
fn graphs_dir() -> PathBuf {
    examples_dir()
        .parent()
        .expect("examples/ is inside the workspace")
        .join("target/demo")
}

/// `palisade graph -o html` of what the manifests allow around namespace
/// `production` after step `step`, written to `target/demo/`; returns the
/// file's path. The same offline analysis a user runs on their manifests.
fn write_graph(bin: &Path, manifests: &Path, step: usize) -> anyhow::Result<PathBuf> {
    let dir = graphs_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let out = Command::new(bin)
        .args(["graph", "-n", "production", "-o", "html", "--manifests"])
        .arg(manifests)
        .stderr(Stdio::inherit())
        .output()
        .context("run palisade graph")?;
    if !out.status.success() {
        bail!("palisade graph after step {step} failed: {}", out.status);
    }
    let path = dir.join(format!("graph-step-{step}.html"));
    std::fs::write(&path, &out.stdout).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// `cargo build` of the agent; returns the binary's path.
fn build_agent() -> anyhow::Result<PathBuf> {
    let mut cmd = Command::new("cargo");
    cmd.args([
        "build",
        "--package",
        "palisade",
        "--bin",
        "palisade",
        "--message-format=json-render-diagnostics",
    ])
    .stdout(Stdio::piped());
    eprintln!("+ {cmd:?}");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("failed to run {cmd:?}"))?;
    let mut exe = None;
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let v: serde_json::Value = serde_json::from_str(&line?).unwrap_or_default();
        if v["reason"] == "compiler-artifact"
            && v["target"]["name"] == "palisade"
            && let Some(e) = v["executable"].as_str()
        {
            exe = Some(PathBuf::from(e));
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    exe.context("cargo build reported no palisade executable")
}

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Ctrl-C and SIGTERM set [`STOP`]; the demo checks it between steps and
/// unwinds through its guards. Children do not inherit the handler.
fn install_stop_handler() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_stop as *const () as libc::sighandler_t) };
    }
}

fn check_stop() -> anyhow::Result<()> {
    if STOP.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

/// Removes what a killed demo left: namespaces, bpffs mounts, temp dirs.
fn remove_leftovers() {
    if let Ok(removed) = cleanup_stale(PREFIX)
        && !removed.is_empty()
    {
        eprintln!(
            "removed {} namespaces of an earlier, killed demo",
            removed.len()
        );
    }
    let tmp = std::env::temp_dir();
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(TMP_PREFIX) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            unmount_bpffs(&entry.path().join("bpffs"));
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The demo's temporary directory (`/tmp/palisade-demo-<pid>`) with a
/// private bpffs at `bpffs/`; unmounted and removed on drop (pins
/// released: maps freed, links detached).
struct Scratch {
    bpffs: Option<Bpffs>,
    dir: PathBuf,
}

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("{TMP_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let bpffs = Bpffs::mount(dir.join("bpffs"))?;
        Ok(Scratch {
            bpffs: Some(bpffs),
            dir,
        })
    }

    fn bpffs(&self) -> &Bpffs {
        self.bpffs.as_ref().expect("mounted until dropped")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.bpffs = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One node's agent, with its `palisade monitor` when one runs.
pub(crate) struct DemoAgent {
    dirs: NodeDirs,
    process: Option<AgentProcess>,
    monitor: Option<drops::Monitor>,
}

impl DemoAgent {
    fn new(node: &Node, scratch: &Scratch) -> anyhow::Result<DemoAgent> {
        Ok(DemoAgent {
            dirs: NodeDirs::new(&scratch.dir, scratch.bpffs(), node.name())?,
            process: None,
            monitor: None,
        })
    }

    fn node(&self) -> &str {
        &self.dirs.node
    }

    fn spawn(&mut self, bin: &Path, node: &Node) -> anyhow::Result<()> {
        // New flows after each step are judged by that step's policies even
        // if a probe reuses a tracked 5-tuple.
        self.process = Some(AgentProcess::spawn(
            bin,
            node,
            &self.dirs,
            &["--ct-revalidate"],
            "info",
        )?);
        Ok(())
    }

    /// `palisade sync`, retried (bounded) while the agent starts.
    fn sync(&mut self, within: Duration) -> anyhow::Result<u64> {
        let process = self.process.as_mut().context("agent not started")?;
        let mut revision = None;
        process
            .wait_until(within, |p| {
                revision = p.sync().ok();
                revision.is_some() || STOP.load(Ordering::Relaxed)
            })
            .map_err(|e| anyhow::anyhow!("palisade sync: {e}"))?;
        check_stop()?;
        revision.context("palisade sync gave no revision")
    }
}

impl Drop for DemoAgent {
    fn drop(&mut self) {
        // The monitor first: it reads the agent's maps.
        self.monitor = None;
        self.process = None;
    }
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("examples")
}

/// The name a file of `examples/` has in an agent's manifests directory.
fn manifest_name(file: &str) -> String {
    file.replace('/', "-")
}

/// The `kubectl` commands a step stands for.
fn kubectl_lines(apply: &[&str], delete: &[&str]) -> String {
    let mut s = String::new();
    if !apply.is_empty() {
        s += &format!("\n    kubectl apply -f {}", apply.join(" -f "));
    }
    if !delete.is_empty() {
        s += &format!("\n    kubectl delete -f {}", delete.join(" -f "));
    }
    s
}

/// The demo proper; returns the number of wrong verdicts.
fn demo(bin: &Path) -> anyhow::Result<usize> {
    let paint = Paint::new();
    let examples = examples_dir();
    let desc = LabDescription::from_file(&examples.join("three-tier/lab.yaml"))?;
    let lab_started = Instant::now();
    let app = AppLab::up(&desc, PREFIX)?;
    let scratch = Scratch::new()?;
    check_stop()?;
    let nodes = app.lab().nodes();
    let mut agents = Vec::new();
    for node in nodes {
        let mut a = DemoAgent::new(node, &scratch)?;
        app.write_manifests(&a.dirs.manifests)?;
        a.spawn(bin, node)?;
        agents.push(a);
    }
    for a in &mut agents {
        a.sync(Duration::from_secs(60))?;
    }
    println!(
        "{} lab {} up in {:.1} s: {} nodes, {} pods, {} external hosts; one agent per node",
        paint.c("1", "==>"),
        app.lab().id(),
        lab_started.elapsed().as_secs_f64(),
        nodes.len(),
        app.pods().len(),
        app.lab().external_hosts().len()
    );
    for (who, addrs, ports) in app.summary() {
        println!("    {who:<42} {addrs:<32} {ports}");
    }

    let mut drops = Drops::start(bin, &mut agents, nodes);
    if let Drops::Unavailable(why) = &drops {
        println!("    drops: not shown: {why}");
    }

    let flows = flows();
    let mut wrong_total = 0;
    let mut summary = Vec::new();
    for (i, step) in STEPS.iter().enumerate() {
        let (title, expected) = (step.title, step.expected);
        check_stop()?;
        let t = Instant::now();
        for file in step.apply {
            let text = std::fs::read_to_string(examples.join(file))
                .with_context(|| format!("read {file}"))?;
            for a in &agents {
                a.dirs.write_raw(&manifest_name(file), &text)?;
            }
        }
        for file in step.delete {
            for a in &agents {
                let path = a.dirs.manifests.join(manifest_name(file));
                std::fs::remove_file(&path)
                    .with_context(|| format!("remove {}", path.display()))?;
            }
        }
        let mut revisions = Vec::new();
        for a in &mut agents {
            revisions.push(a.sync(Duration::from_secs(30))?);
        }
        let observed = probe_flows(&app, &flows, expected)?;
        println!();
        println!(
            "{} step {i}: {title}{}",
            paint.c("1", "==>"),
            kubectl_lines(step.apply, step.delete)
        );
        println!(
            "    palisade sync: revision {}",
            revisions
                .iter()
                .zip(&agents)
                .map(|(r, a)| format!("{r} ({})", a.node()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "    {:<46} {:<30} {:<9} {:<9}",
            "flow", "to", "expected", "observed"
        );
        let mut wrong = 0;
        for ((flow, want), got) in flows.iter().zip(expected.chars()).zip(&observed) {
            let want = want == 'A';
            let verdict = |allowed: bool| if allowed { "allowed" } else { "blocked" };
            let colour = |allowed: bool| if allowed { "32" } else { "31" };
            let got_reached = got.reached();
            let mark = if got_reached == want {
                " ".to_string()
            } else {
                wrong += 1;
                paint.c("1;33", "  <-- MISMATCH")
            };
            let dst = match flow.to {
                Target::Pod(ns, name) => format!("{ns}/{name}"),
                Target::External(h) => format!("external/{h}"),
            };
            let proto = match flow.proto {
                Proto::Tcp => "tcp",
                Proto::Udp => "udp",
            };
            println!(
                "    {:<46} {:<30} {} {}{}",
                flow.what,
                format!("{dst} {proto}/{}", flow.port),
                paint.c(colour(want), &format!("{:<9}", verdict(want))),
                paint.c(colour(got_reached), &format!("{:<9}", verdict(got_reached))),
                mark
            );
        }
        drops.report(&agents, nodes, &paint);
        let graph = write_graph(bin, &agents[0].dirs.manifests, i)?;
        println!("    graph of namespace production: {}", graph.display());
        println!(
            "    {} in {:.2} s",
            if wrong == 0 {
                paint.c("32", "all verdicts as expected")
            } else {
                paint.c("1;31", &format!("{wrong} verdicts differ"))
            },
            t.elapsed().as_secs_f64()
        );
        wrong_total += wrong;
        summary.push((i, title, flows.len() - wrong, wrong));
    }

    println!();
    println!("{} summary", paint.c("1", "==>"));
    for (i, title, ok, wrong) in &summary {
        let status = if *wrong == 0 {
            paint.c("32", "ok  ")
        } else {
            paint.c("31", "FAIL")
        };
        println!("    {status} step {i}: {title}: {ok} as expected, {wrong} differ");
    }
    let total = summary.len() * flows.len();
    println!(
        "    {} of {total} verdicts as expected across {} steps",
        total - wrong_total,
        summary.len()
    );
    drop(agents);
    drop(scratch);
    drop(app);
    Ok(wrong_total)
}
