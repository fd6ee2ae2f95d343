//! `cargo xtask demo`: the seeds' three-tier application on one machine.
//!
//! Sets the machine up (`cargo xtask setup`), builds the agent, brings up
//! the lab of `examples/three-tier/lab.yaml` (two nodes, the app's pods
//! serving their ports, external hosts for 169.254.169.254 and
//! 203.0.113.10), starts one agent per node inside the node's namespace
//! (`--manifests`, pins on a private bpffs), then applies the policies of
//! `examples/three-tier/` step by step as `kubectl apply` would, runs
//! `palisade sync` after each step and probes the flows the seeds test.
//! Each step prints expected vs observed verdicts and the drops the agents
//! reported; the run ends with a summary, exits non-zero on any mismatch,
//! and removes everything (also on failure and Ctrl-C).

use std::ffi::CString;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use palisade_lab::{
    ANSWER_TIMEOUT, AppLab, DEFAULT_TIMEOUT, LabDescription, Node, ProbeResult, ProbeSpec,
    cleanup_stale, probe_all,
};

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

/// One probed flow of the seeds.
struct Flow {
    what: &'static str,
    from: (&'static str, &'static str),
    to: Target,
    proto: Proto,
    port: u16,
}

enum Target {
    Pod(&'static str, &'static str),
    External(&'static str),
}

#[derive(Clone, Copy)]
enum Proto {
    Tcp,
    Udp,
}

/// The policy files each step applies (cumulative) and the expected verdict
/// of each flow after it, in [`flows`] order (`A` allowed, `B` blocked).
const STEPS: [(&str, &[&str], &str); 6] = [
    (
        "no policies: Kubernetes' default is allow-all",
        &[],
        "AAAAAAAAAAAA",
    ),
    (
        "default-deny-all (production, ingress and egress)",
        &["1-default-deny-all.yaml"],
        "BBBBBBBBBBBB",
    ),
    (
        "allow-dns (egress to kube-system, 53)",
        &["2-allow-dns.yaml"],
        "BBBBBAABBBBB",
    ),
    (
        "frontend/backend/database policies + restrict-egress",
        &[
            "3-frontend-policy.yaml",
            "3-backend-policy.yaml",
            "3-database-policy.yaml",
            "3-restrict-egress.yaml",
        ],
        "AAABBAABABBB",
    ),
    (
        "allow-monitoring-scrape (9090 from purpose=monitoring)",
        &["4-allow-monitoring-scrape.yaml"],
        "AAABBAAAABBB",
    ),
    (
        "block-metadata (egress 0.0.0.0/0 except 169.254.169.254/32)",
        &["5-block-metadata.yaml"],
        "AAABBAAAAABB",
    ),
];

fn flows() -> Vec<Flow> {
    use Proto::*;
    use Target::*;
    let f = |what, from, to, proto, port| Flow {
        what,
        from,
        to,
        proto,
        port,
    };
    vec![
        f(
            "ingress controller -> frontend",
            ("ingress-nginx", "controller"),
            Pod("production", "frontend"),
            Tcp,
            80,
        ),
        f(
            "frontend -> backend",
            ("production", "frontend"),
            Pod("production", "backend"),
            Tcp,
            8080,
        ),
        f(
            "backend -> database",
            ("production", "backend"),
            Pod("production", "database"),
            Tcp,
            5432,
        ),
        f(
            "frontend -> database (skips a tier)",
            ("production", "frontend"),
            Pod("production", "database"),
            Tcp,
            5432,
        ),
        f(
            "test-pod -> database (seed's kubectl run)",
            ("production", "test-pod"),
            Pod("production", "database"),
            Tcp,
            5432,
        ),
        f(
            "frontend -> kube-dns",
            ("production", "frontend"),
            Pod("kube-system", "kube-dns"),
            Udp,
            53,
        ),
        f(
            "backend -> kube-dns",
            ("production", "backend"),
            Pod("kube-system", "kube-dns"),
            Tcp,
            53,
        ),
        f(
            "prometheus -> backend metrics",
            ("monitoring", "prometheus"),
            Pod("production", "backend"),
            Tcp,
            9090,
        ),
        f(
            "backend -> external API 203.0.113.10",
            ("production", "backend"),
            External("external-api"),
            Tcp,
            443,
        ),
        f(
            "frontend -> external API 203.0.113.10",
            ("production", "frontend"),
            External("external-api"),
            Tcp,
            443,
        ),
        f(
            "frontend -> metadata 169.254.169.254",
            ("production", "frontend"),
            External("metadata"),
            Tcp,
            80,
        ),
        f(
            "ingress controller -> backend (skips a tier)",
            ("ingress-nginx", "controller"),
            Pod("production", "backend"),
            Tcp,
            8080,
        ),
    ]
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
            umount(&entry.path().join("bpffs"));
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn umount(dir: &Path) {
    if let Ok(c) = CString::new(dir.as_os_str().as_encoded_bytes()) {
        // SAFETY: valid path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// The temp dir with a private bpffs at `bpffs/`; unmounted and removed on
/// drop (pins released: maps freed, links detached).
struct Scratch {
    dir: PathBuf,
    mounted: bool,
}

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("{TMP_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bpffs"))?;
        let mut s = Scratch {
            dir,
            mounted: false,
        };
        let c = CString::new(s.bpffs().as_os_str().as_encoded_bytes())?;
        // SAFETY: valid NUL-terminated strings.
        let rc = unsafe {
            libc::mount(
                c"bpf".as_ptr(),
                c.as_ptr(),
                c"bpf".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            bail!(
                "mount bpffs on {}: {}",
                s.bpffs().display(),
                std::io::Error::last_os_error()
            );
        }
        s.mounted = true;
        Ok(s)
    }
    fn bpffs(&self) -> PathBuf {
        self.dir.join("bpffs")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.mounted {
            umount(&self.bpffs());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One agent in a node's namespace; stopped (SIGTERM, then SIGKILL) on drop.
struct Agent {
    node: String,
    bin: PathBuf,
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
    manifests: PathBuf,
    monitor: Option<Monitor>,
}

impl Agent {
    fn start(bin: &Path, node: &Node, scratch: &Scratch) -> anyhow::Result<Agent> {
        let root = scratch.dir.join(node.name());
        let manifests = root.join("manifests");
        std::fs::create_dir_all(&manifests)?;
        let a = Agent {
            node: node.name().to_owned(),
            bin: bin.to_owned(),
            child: None,
            socket: root.join("agent.sock"),
            log: root.join("agent.log"),
            manifests,
            monitor: None,
        };
        Ok(a)
    }

    fn node_args(&self, scratch: &Scratch) -> Vec<String> {
        let root = scratch.dir.join(&self.node);
        vec![
            "--node-name".into(),
            self.node.clone(),
            "--state-dir".into(),
            root.join("state").display().to_string(),
            "--bpffs-dir".into(),
            scratch.bpffs().join(&self.node).display().to_string(),
            "--socket".into(),
            self.socket.display().to_string(),
        ]
    }

    fn spawn(&mut self, node: &Node, scratch: &Scratch) -> anyhow::Result<()> {
        let log = std::fs::File::create(&self.log)?;
        let mut cmd = node.command(&self.bin.display().to_string());
        cmd.arg("agent")
            .args(self.node_args(scratch))
            .arg("--manifests")
            .arg(&self.manifests)
            // New flows after each step are judged by that step's policies
            // even if a probe reuses a tracked 5-tuple.
            .arg("--ct-revalidate")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // Its own process group: the terminal's Ctrl-C reaches the demo,
        // which stops the agent itself.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        self.child = Some(
            cmd.spawn()
                .with_context(|| format!("failed to run {cmd:?}"))?,
        );
        Ok(())
    }

    /// `palisade sync`, retried (bounded) while the agent starts.
    fn sync(&mut self, within: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + within;
        loop {
            let out = Command::new(&self.bin)
                .args(["sync", "--timeout-secs", "30", "--socket"])
                .arg(&self.socket)
                .output()?;
            if out.status.success() {
                return Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?);
            }
            let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("agent on {} exited ({st}):\n{}", self.node, self.log_tail());
            }
            if Instant::now() > deadline {
                bail!(
                    "palisade sync on {}: {err}\nagent log:\n{}",
                    self.node,
                    self.log_tail()
                );
            }
            check_stop()?;
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.monitor = None;
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        // Bounded by the deadline.
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// `palisade monitor` output of one node, collected on a thread.
struct Monitor {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Monitor {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the demo learns about drops.
enum Drops {
    /// `palisade monitor` runs per node.
    Monitor,
    /// `/metrics` on each agent's health address (drop counters).
    Metrics(Vec<f64>),
    /// Neither is available in this build.
    Unavailable(String),
}

fn has_subcommand(bin: &Path, name: &str) -> bool {
    Command::new(bin)
        .args([name, "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn start_monitor(agent: &Agent, node: &Node, scratch: &Scratch) -> anyhow::Result<Monitor> {
    let mut cmd = node.command(&agent.bin.display().to_string());
    cmd.arg("monitor")
        .args(agent.node_args(scratch))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("failed to run {cmd:?}"))?;
    let out = child.stdout.take().expect("piped");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    });
    Ok(Monitor { child, lines })
}

/// Sum of `palisade_datapath_drops_total` samples from the agent's
/// `/metrics` (inside the node's namespace), if it serves them.
fn drop_counter(node: &Node) -> Option<f64> {
    let body = node
        .run(|| -> Option<String> {
            let mut s = std::net::TcpStream::connect_timeout(
                &"127.0.0.1:9890".parse().ok()?,
                Duration::from_secs(2),
            )
            .ok()?;
            s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .ok()?;
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            Some(out)
        })
        .ok()??;
    if !body.starts_with("HTTP/1.1 200") && !body.starts_with("HTTP/1.0 200") {
        return None;
    }
    let mut found = false;
    let mut sum = 0.0;
    for line in body.lines() {
        if line.starts_with("palisade_datapath_drops_total") {
            found = true;
            sum += line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    found.then_some(sum)
}

struct Paint {
    on: bool,
}

impl Paint {
    fn new() -> Paint {
        // SAFETY: isatty has no preconditions.
        let tty = unsafe { libc::isatty(1) } == 1;
        Paint {
            on: tty && std::env::var_os("NO_COLOR").is_none(),
        }
    }
    fn c(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("examples/three-tier")
}

/// The demo proper; returns the number of wrong verdicts.
fn demo(bin: &Path) -> anyhow::Result<usize> {
    let paint = Paint::new();
    let examples = examples_dir();
    let desc = LabDescription::from_file(&examples.join("lab.yaml"))?;
    let lab_started = Instant::now();
    let app = AppLab::up(&desc, PREFIX)?;
    let scratch = Scratch::new()?;
    check_stop()?;
    let nodes = app.lab().nodes();
    let mut agents = Vec::new();
    for node in nodes {
        let mut a = Agent::start(bin, node, &scratch)?;
        app.write_manifests(&a.manifests)?;
        a.spawn(node, &scratch)?;
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

    let mut drops = if has_subcommand(bin, "monitor") {
        let mut ok = true;
        for (a, node) in agents.iter_mut().zip(nodes) {
            match start_monitor(a, node, &scratch) {
                Ok(m) => a.monitor = Some(m),
                Err(e) => {
                    ok = false;
                    eprintln!("palisade monitor on {}: {e:#}", a.node);
                }
            }
        }
        if ok {
            Drops::Monitor
        } else {
            Drops::Unavailable("`palisade monitor` did not start".into())
        }
    } else {
        let counters: Option<Vec<f64>> = nodes.iter().map(drop_counter).collect();
        match counters {
            Some(c) => Drops::Metrics(c),
            None => Drops::Unavailable(
                "this build has no `palisade monitor` and its agent serves no drop metrics".into(),
            ),
        }
    };
    if let Drops::Unavailable(why) = &drops {
        println!("    drops: not shown: {why}");
    }

    let flows = flows();
    let mut wrong_total = 0;
    let mut summary = Vec::new();
    for (i, (title, files, expected)) in STEPS.iter().enumerate() {
        check_stop()?;
        let t = Instant::now();
        for file in *files {
            let text = std::fs::read_to_string(examples.join(file))
                .with_context(|| format!("read {file}"))?;
            for a in &agents {
                let tmp = a.manifests.join(format!(".{file}.tmp"));
                std::fs::write(&tmp, &text)?;
                std::fs::rename(&tmp, a.manifests.join(file))?;
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
            if files.is_empty() {
                String::new()
            } else {
                format!("\n    kubectl apply -f {}", files.join(" -f "))
            }
        );
        println!(
            "    palisade sync: revision {}",
            revisions
                .iter()
                .zip(&agents)
                .map(|(r, a)| format!("{r} ({})", a.node))
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
        report_drops(&mut drops, &agents, nodes, &paint);
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
        summary.push((i, *title, flows.len() - wrong, wrong));
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

/// Probes every flow in parallel; blocked-expected probes use the short
/// timeout, allowed-expected ones the long one.
fn probe_flows(app: &AppLab, flows: &[Flow], expected: &str) -> anyhow::Result<Vec<ProbeResult>> {
    let specs: Vec<ProbeSpec> = flows
        .iter()
        .zip(expected.chars())
        .map(|(f, e)| {
            let from = app.pod(f.from.0, f.from.1);
            let dst: IpAddr = match f.to {
                Target::Pod(ns, name) => app.pod(ns, name).ipv4().into(),
                Target::External(h) => app.external(h).addrs()[0],
            };
            let spec = match f.proto {
                Proto::Tcp => ProbeSpec::tcp(from, dst, f.port),
                Proto::Udp => ProbeSpec::udp(from, dst, f.port),
            };
            spec.timeout(if e == 'A' {
                ANSWER_TIMEOUT
            } else {
                DEFAULT_TIMEOUT
            })
        })
        .collect();
    let results = probe_all(&specs);
    if let Some(ProbeResult::Failed(e)) =
        results.iter().find(|r| matches!(r, ProbeResult::Failed(_)))
    {
        bail!("a probe could not run: {e}");
    }
    Ok(results)
}

fn report_drops(drops: &mut Drops, agents: &[Agent], nodes: &[Node], paint: &Paint) {
    match drops {
        Drops::Monitor => {
            // Give the monitors' readers a moment to catch up with events
            // of probes that just timed out (bounded, short).
            let deadline = Instant::now() + Duration::from_millis(200);
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut lines = Vec::new();
            for a in agents {
                if let Some(m) = &a.monitor {
                    lines.extend(m.take().into_iter().map(|l| format!("{}: {l}", a.node)));
                }
            }
            println!("    drops reported by palisade monitor: {}", lines.len());
            for l in lines.iter().take(8) {
                println!("      {}", paint.c("2", l));
            }
            if lines.len() > 8 {
                println!("      … {} more", lines.len() - 8);
            }
        }
        Drops::Metrics(last) => {
            let mut out = String::new();
            for (i, node) in nodes.iter().enumerate() {
                if let Some(now) = drop_counter(node) {
                    let _ = write!(out, " {}: +{}", node.name(), now - last[i]);
                    last[i] = now;
                }
            }
            println!("    drops counted by the agents (metrics):{out}");
        }
        Drops::Unavailable(_) => {}
    }
}
