//! How the demo shows drops: `palisade monitor` per node when the build has
//! it, else the agents' drop counters from `/metrics`.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use palisade_lab::Node;

use super::DemoAgent;
use super::paint::Paint;

/// `palisade monitor` output of one node, collected on a thread.
pub(super) struct Monitor {
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
pub(super) enum Drops {
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

fn start_monitor(bin: &Path, agent: &DemoAgent, node: &Node) -> anyhow::Result<Monitor> {
    let mut cmd = node.command(&bin.display().to_string());
    cmd.arg("monitor")
        .args(agent.dirs.node_args())
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

impl Drops {
    /// Starts a monitor on each node, else reads the drop counters.
    pub(super) fn start(bin: &Path, agents: &mut [DemoAgent], nodes: &[Node]) -> Drops {
        if has_subcommand(bin, "monitor") {
            let mut ok = true;
            for (a, node) in agents.iter_mut().zip(nodes) {
                match start_monitor(bin, a, node) {
                    Ok(m) => a.monitor = Some(m),
                    Err(e) => {
                        ok = false;
                        eprintln!("palisade monitor on {}: {e:#}", a.node());
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
                    "this build has no `palisade monitor` and its agent serves no drop metrics"
                        .into(),
                ),
            }
        }
    }

    /// Prints the drops since the last report.
    pub(super) fn report(&mut self, agents: &[DemoAgent], nodes: &[Node], paint: &Paint) {
        match self {
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
                        lines.extend(m.take().into_iter().map(|l| format!("{}: {l}", a.node())));
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
}
