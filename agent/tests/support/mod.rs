//! Shared by the privileged agent tests: a private bpffs mount, the agent
//! binary started inside a lab node's network namespace, manifests as JSON
//! documents (YAML 1.2 is a superset of JSON), and reachability checks.
#![allow(dead_code)]

use std::ffi::CString;
use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use palisade::control::{Request, Response, request};
use palisade_lab::{ANSWER_TIMEOUT, DEFAULT_TIMEOUT, Node, Pod, ProbeResult, ProbeSpec, probe_all};
use serde_json::{Value, json};

/// The agent binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_palisade");

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A private bpf filesystem mounted on a temporary directory; unmounting
/// releases every pin (maps freed, links detached), also on panic.
pub struct Bpffs {
    pub dir: PathBuf,
}

impl Bpffs {
    pub fn mount() -> Bpffs {
        let dir = std::env::temp_dir().join(format!(
            "palisade-bpffs-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let c = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
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
        assert_eq!(rc, 0, "mount bpffs: {}", std::io::Error::last_os_error());
        Bpffs { dir }
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        if let Ok(c) = CString::new(self.dir.as_os_str().as_encoded_bytes()) {
            // SAFETY: valid path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Per-node agent directories.
pub struct NodeDirs {
    pub node: String,
    pub manifests: PathBuf,
    pub state: PathBuf,
    pub bpffs: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl NodeDirs {
    pub fn new(root: &Path, bpffs: &Bpffs, node: &str) -> NodeDirs {
        let d = NodeDirs {
            node: node.into(),
            manifests: root.join(format!("{node}-manifests")),
            state: root.join(format!("{node}-state")),
            bpffs: bpffs.dir.join(node),
            socket: root.join(format!("{node}.sock")),
            log: root.join(format!("{node}.log")),
        };
        std::fs::create_dir_all(&d.manifests).unwrap();
        d
    }

    /// Replaces the manifests with `docs` in one file (written then renamed,
    /// as config management tools do).
    pub fn write(&self, file: &str, docs: &[Value]) {
        let text: Vec<String> = docs
            .iter()
            .map(|d| serde_json::to_string_pretty(d).unwrap())
            .collect();
        let tmp = self.manifests.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text.join("\n---\n")).unwrap();
        std::fs::rename(&tmp, self.manifests.join(file)).unwrap();
    }

    pub fn write_raw(&self, file: &str, text: &str) {
        std::fs::write(self.manifests.join(file), text).unwrap();
    }
}

/// A running agent; stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Agent {
    pub child: Option<Child>,
    pub socket: PathBuf,
    pub log: PathBuf,
}

pub fn agent_command(node: &Node, d: &NodeDirs, extra: &[&str]) -> Command {
    let mut cmd = node.command(BIN);
    cmd.args(["agent", "--node-name", &d.node, "--manifests"])
        .arg(&d.manifests)
        .arg("--state-dir")
        .arg(&d.state)
        .arg("--bpffs-dir")
        .arg(&d.bpffs)
        .arg("--socket")
        .arg(&d.socket)
        .args(extra)
        .env("RUST_LOG", "info,palisade::agent::commit=debug");
    cmd
}

impl Agent {
    /// Starts the agent in the node's namespace and waits (bounded) until
    /// its first sync is enforced.
    pub fn start(node: &Node, d: &NodeDirs, extra: &[&str]) -> Agent {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&d.log)
            .unwrap();
        let child = agent_command(node, d, extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn agent");
        let mut a = Agent {
            child: Some(child),
            socket: d.socket.clone(),
            log: d.log.clone(),
        };
        a.wait_ready(Duration::from_secs(30));
        a
    }

    pub fn wait_ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("agent exited ({st}):\n{}", self.log_text());
            }
            if let Ok(r) = request(&self.socket, &Request::Status, Duration::from_secs(5))
                && r.synced == Some(true)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "agent not ready within {within:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn status(&self) -> Response {
        request(&self.socket, &Request::Status, Duration::from_secs(10)).expect("status")
    }

    /// `palisade sync --socket …`: the revision, or the CLI's error output.
    pub fn sync(&self) -> Result<u64, String> {
        let out = Command::new(BIN)
            .args(["sync", "--timeout-secs", "30", "--socket"])
            .arg(&self.socket)
            .output()
            .expect("run palisade sync");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    pub fn sync_ok(&self) -> u64 {
        self.sync()
            .unwrap_or_else(|e| panic!("sync failed: {e}\n{}", self.log_text()))
    }

    /// SIGTERM and wait (bounded); returns the exit status success.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The agent's (interface, state) for `pod` (`ns/name`), if it lists it.
pub fn endpoint_state(agent: &Agent, pod: &str) -> Option<(Option<String>, String)> {
    agent
        .status()
        .endpoints
        .into_iter()
        .find(|e| e.pod == pod)
        .map(|e| (e.interface, e.state))
}

pub fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "labels": labels}})
}

/// A pod manifest for a lab pod (its real addresses), with a uid.
pub fn pod(p: &Pod, k8s_ns: &str, name: &str, uid: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": k8s_ns, "uid": uid, "labels": labels},
           "spec": {"nodeName": p.node(), "containers": [{"name": "c", "image": "x",
                    "ports": [{"name": "http", "containerPort": 80}]}]},
           "status": {"phase": "Running", "podIP": p.ipv4().to_string(),
                      "podIPs": [{"ip": p.ipv4().to_string()}, {"ip": p.ipv6().to_string()}]}})
}

pub fn policy(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// A probe kind and port.
#[derive(Clone, Copy, Debug)]
pub enum P {
    Tcp(u16),
    Udp(u16),
    Sctp(u16),
}

/// One expectation: from, to (address), what, reachable.
pub type Case<'a> = (&'a Pod, IpAddr, P, bool);

fn spec(from: &Pod, to: IpAddr, p: P, reach: bool) -> ProbeSpec {
    let s = match p {
        P::Tcp(port) => ProbeSpec::tcp(from, to, port),
        P::Udp(port) => ProbeSpec::udp(from, to, port),
        P::Sctp(port) => ProbeSpec::sctp(from, to, port),
    };
    s.timeout(if reach {
        ANSWER_TIMEOUT
    } else {
        DEFAULT_TIMEOUT
    })
}

/// Probes every case (in parallel); returns the mismatches.
pub fn mismatches(cases: &[Case<'_>]) -> Vec<String> {
    let specs: Vec<ProbeSpec> = cases
        .iter()
        .map(|(f, t, p, r)| spec(f, *t, *p, *r))
        .collect();
    let results = probe_all(&specs);
    cases
        .iter()
        .zip(results)
        .filter(|((_, _, _, want), got)| got.reached() != *want)
        .map(|((f, t, p, want), got)| {
            format!(
                "{} -> {t} {p:?}: want {}, got {got:?}",
                f.name(),
                if *want { "reach" } else { "blocked" }
            )
        })
        .collect()
}

/// Asserts reachability, with the agent logs on failure.
pub fn expect(step: &str, agents: &[&Agent], cases: &[Case<'_>]) {
    let bad = mismatches(cases);
    if !bad.is_empty() {
        let logs: Vec<String> = agents.iter().map(|a| a.log_text()).collect();
        panic!(
            "{step}: {} of {} probes wrong:\n  {}\nagent logs:\n{}",
            bad.len(),
            cases.len(),
            bad.join("\n  "),
            logs.join("\n----\n")
        );
    }
}

/// Both address families of a pod.
pub fn both(p: &Pod) -> [IpAddr; 2] {
    [p.ipv4().into(), p.ipv6().into()]
}

pub fn reached(r: &ProbeResult) -> bool {
    r.reached()
}
