//! Palisade agents as processes on lab nodes, for the privileged tests and
//! the demo: a private bpf filesystem, each node's directories and
//! manifests, the agent started inside the node's namespace, and stopping
//! it cleanly (SIGTERM, bounded) or crashing it (SIGKILL).

use std::ffi::{CString, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::topology::Node;

/// How long a stopped agent may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A bpf filesystem mounted on a directory of its own; unmounting releases
/// every pin under it (maps freed, links detached), also on panic.
#[derive(Debug)]
pub struct Bpffs {
    dir: PathBuf,
}

impl Bpffs {
    /// Creates `dir` and mounts a bpffs on it.
    pub fn mount(dir: PathBuf) -> std::io::Result<Bpffs> {
        std::fs::create_dir_all(&dir)?;
        let c = CString::new(dir.as_os_str().as_encoded_bytes())?;
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
            let e = std::io::Error::last_os_error();
            let _ = std::fs::remove_dir(&dir);
            return Err(std::io::Error::new(
                e.kind(),
                format!("mount bpffs on {}: {e}", dir.display()),
            ));
        }
        Ok(Bpffs { dir })
    }

    /// The mount point.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Unmounts (lazily) whatever bpffs is mounted on `dir`.
pub fn unmount_bpffs(dir: &Path) {
    if let Ok(c) = CString::new(dir.as_os_str().as_encoded_bytes()) {
        // SAFETY: valid path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        unmount_bpffs(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One node's agent directories.
#[derive(Clone, Debug)]
pub struct NodeDirs {
    /// The node's name (`--node-name`).
    pub node: String,
    /// `--manifests`.
    pub manifests: PathBuf,
    /// `--state-dir`.
    pub state: PathBuf,
    /// `--bpffs-dir`: the node's directory on the shared bpffs.
    pub bpffs: PathBuf,
    /// `--socket`.
    pub socket: PathBuf,
    /// The agent's log (stderr).
    pub log: PathBuf,
}

impl NodeDirs {
    /// Directories of node `node` under `root`, pins under `bpffs`; creates
    /// the manifests directory.
    pub fn new(root: &Path, bpffs: &Bpffs, node: &str) -> std::io::Result<NodeDirs> {
        let d = NodeDirs {
            node: node.into(),
            manifests: root.join(format!("{node}-manifests")),
            state: root.join(format!("{node}-state")),
            bpffs: bpffs.dir().join(node),
            socket: root.join(format!("{node}.sock")),
            log: root.join(format!("{node}.log")),
        };
        std::fs::create_dir_all(&d.manifests)?;
        Ok(d)
    }

    /// The arguments every command addressing this node's agent takes
    /// (`agent`, `monitor`): node name, state, pins, socket.
    pub fn node_args(&self) -> Vec<OsString> {
        vec![
            "--node-name".into(),
            self.node.clone().into(),
            "--state-dir".into(),
            self.state.clone().into(),
            "--bpffs-dir".into(),
            self.bpffs.clone().into(),
            "--socket".into(),
            self.socket.clone().into(),
        ]
    }

    /// Replaces manifest file `file` with `text`, written beside it and
    /// renamed over it, as `kubectl apply` and config management tools make
    /// a change appear at once.
    pub fn write_raw(&self, file: &str, text: &str) -> std::io::Result<()> {
        let tmp = self.manifests.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.manifests.join(file))
    }

    /// Replaces manifest file `file` with `docs` (JSON documents, which
    /// YAML 1.2 reads as they are).
    pub fn write(&self, file: &str, docs: &[Value]) -> std::io::Result<()> {
        let text: Vec<String> = docs
            .iter()
            .map(|d| serde_json::to_string_pretty(d).unwrap_or_default())
            .collect();
        self.write_raw(file, &text.join("\n---\n"))
    }
}

/// A running `palisade agent` in a node's namespace; stopped (SIGTERM, then
/// SIGKILL) when dropped.
#[derive(Debug)]
pub struct AgentProcess {
    bin: PathBuf,
    node: String,
    socket: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl AgentProcess {
    /// `bin agent` for `dirs` inside `node`'s namespace, without a source:
    /// add `--manifests DIR` (see [`AgentProcess::spawn`]) or a kubeconfig.
    pub fn command(bin: &Path, node: &Node, dirs: &NodeDirs) -> Command {
        let mut cmd = node.command(&bin.display().to_string());
        cmd.arg("agent").args(dirs.node_args());
        cmd
    }

    /// Starts `bin agent` for `dirs` inside `node`'s namespace on its
    /// manifests directory, with the extra arguments, logging at `rust_log`.
    pub fn spawn(
        bin: &Path,
        node: &Node,
        dirs: &NodeDirs,
        extra: &[&str],
        rust_log: &str,
    ) -> std::io::Result<AgentProcess> {
        let mut cmd = Self::command(bin, node, dirs);
        cmd.arg("--manifests").arg(&dirs.manifests).args(extra);
        Self::spawn_command(bin, cmd, dirs, rust_log)
    }

    /// Starts `cmd` (from [`AgentProcess::command`]), logging at `rust_log`
    /// to `dirs.log` (appended, so a restarted agent's log follows its
    /// predecessor's). It runs in its own process group: a terminal's
    /// Ctrl-C reaches the caller, which stops it.
    pub fn spawn_command(
        bin: &Path,
        mut cmd: Command,
        dirs: &NodeDirs,
        rust_log: &str,
    ) -> std::io::Result<AgentProcess> {
        let log = File::options().create(true).append(true).open(&dirs.log)?;
        cmd.env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("failed to run {cmd:?}: {e}")))?;
        Ok(AgentProcess {
            bin: bin.into(),
            node: dirs.node.clone(),
            socket: dirs.socket.clone(),
            log: dirs.log.clone(),
            child: Some(child),
        })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The binary it runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// How it exited, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Polls `ready` every 50 ms until it is true; an error when the agent
    /// exits first or `within` passes, with the log's tail.
    pub fn wait_until(
        &mut self,
        within: Duration,
        mut ready: impl FnMut(&Self) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + within;
        // Bounded by the deadline.
        loop {
            if let Some(st) = self.exited() {
                return Err(format!(
                    "agent on {} exited ({st}):\n{}",
                    self.node,
                    self.log_tail(40)
                ));
            }
            if ready(self) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "agent on {} not ready within {within:?}:\n{}",
                    self.node,
                    self.log_tail(40)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `palisade sync --socket …`: the revision once the re-read sources
    /// are in the maps, or the command's error output.
    pub fn sync(&self) -> Result<u64, String> {
        let out = Command::new(&self.bin)
            .args(["sync", "--timeout-secs", "30", "--socket"])
            .arg(&self.socket)
            .output()
            .map_err(|e| format!("run {} sync: {e}", self.bin.display()))?;
        if out.status.success() {
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .map_err(|e| format!("palisade sync printed no revision: {e}"))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// Everything the agent (and its predecessors on this log) wrote.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// SIGTERM, then waits (bounded) for the exit; SIGKILL after
    /// [`STOP_TIMEOUT`]. True when it exited successfully in time.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        // Bounded by the deadline.
        loop {
            if let Ok(Some(st)) = c.try_wait() {
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

    /// SIGKILL: a crash, nothing of the agent runs on the way out.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
