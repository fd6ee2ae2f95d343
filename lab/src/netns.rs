//! Named network namespaces: creating and deleting them (`ip netns`), running
//! code inside one on a dedicated thread, `ip` command batches and sysctls.
//!
//! Nothing here ever changes the namespace of a thread it did not spawn: code
//! that must run "inside" a namespace goes through [`run_in`], which enters it
//! on a fresh thread. Sockets created there stay in that namespace after the
//! thread ends.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Where `ip netns` keeps the bind mounts that name namespaces.
pub const NETNS_DIR: &str = "/var/run/netns";

/// What failed while creating, configuring or entering a network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A command could not be started at all.
    #[error("failed to run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        #[source]
        source: io::Error,
    },
    /// A command ran and reported failure.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line (with the batch input, for `ip -batch`).
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A system call or file operation inside a namespace failed.
    #[error("netns {netns}: {op}: {source}")]
    Io {
        /// The namespace.
        netns: String,
        /// The operation, naming the object (e.g. `bind udp 198.18.1.10:53`).
        op: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A worker thread did not answer in time.
    #[error("netns {netns}: {what} did not become ready within {timeout_ms} ms")]
    NotReady {
        /// The namespace.
        netns: String,
        /// What was being waited for.
        what: String,
        /// How long we waited.
        timeout_ms: u128,
    },
}

impl NetnsError {
    pub(crate) fn io(netns: &str, op: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            netns: netns.to_owned(),
            op: op.into(),
            source,
        }
    }
}

/// Path of the bind mount naming `netns`.
pub fn netns_path(netns: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(netns)
}

/// Moves the **calling thread** into the named network namespace.
///
/// Only call this on a thread you spawned for that purpose (as [`run_in`],
/// the servers and the probes do): the thread never comes back.
pub fn enter_on_this_thread(netns: &str) -> Result<(), NetnsError> {
    let file = File::open(netns_path(netns))
        .map_err(|e| NetnsError::io(netns, format!("open {}", netns_path(netns).display()), e))?;
    // SAFETY: `file` is an open namespace file; setns only reads the fd.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(NetnsError::io(
            netns,
            "setns(CLONE_NEWNET)",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Runs `f` on a new thread inside the named namespace and returns its value.
///
/// A panic inside `f` is resumed on the caller's thread, so test assertions
/// inside the closure behave as usual.
pub fn run_in<T, F>(netns: &str, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            enter_on_this_thread(netns)?;
            Ok(f())
        });
        match handle.join() {
            Ok(result) => result,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    })
}

/// Runs `ip` with `args`, returning stdout.
pub fn ip(args: &[&str]) -> Result<String, NetnsError> {
    run_command("ip", args, None)
}

/// Runs `ip -n <netns> -batch -` feeding it `lines`; stops at the first error.
pub fn ip_batch(netns: &str, lines: &[String]) -> Result<(), NetnsError> {
    if lines.is_empty() {
        return Ok(());
    }
    let input = lines.join("\n") + "\n";
    run_command("ip", &["-n", netns, "-batch", "-"], Some(&input)).map(drop)
}

fn run_command(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NetnsError> {
    let mut command_line = format!("{program} {}", args.join(" "));
    if let Some(input) = stdin {
        command_line.push_str(&format!(" <<< {input:?}"));
    }
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetnsError::Spawn {
            command: command_line.clone(),
            source,
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|source| NetnsError::Spawn {
                command: command_line.clone(),
                source,
            })?;
    }
    let output = child
        .wait_with_output()
        .map_err(|source| NetnsError::Spawn {
            command: command_line.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(NetnsError::Command {
            command: command_line,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Writes `/proc/sys/<key>` for each `(key, value)` from inside `netns`.
///
/// Keys are paths below `/proc/sys`, e.g. `net/ipv4/conf/cali0/proxy_arp`
/// (slashes, so interface names may contain dots).
pub fn sysctls(netns: &str, settings: &[(String, &str)]) -> Result<(), NetnsError> {
    run_in(netns, || {
        for (key, value) in settings {
            let path = format!("/proc/sys/{key}");
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|mut f| f.write_all(value.as_bytes()))
                .map_err(|e| NetnsError::io(netns, format!("write {value} to {path}"), e))?;
        }
        Ok(())
    })?
}

/// A named network namespace, deleted when dropped (also while unwinding).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name` (`ip netns add`) with `lo` up.
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        ip(&["netns", "add", name])?;
        let ns = Self {
            name: name.to_owned(),
        };
        ip_batch(name, &["link set lo up".to_owned()])?;
        Ok(ns)
    }

    /// The namespace's name, as `ip netns` and [`netns_path`] know it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` inside this namespace (see [`run_in`]).
    pub fn run<T, F>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        run_in(&self.name, f)
    }

    /// A [`Command`] that runs `program` inside this namespace
    /// (`ip netns exec <name> <program>`); add arguments and spawn it.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Runs one `ip -n <name> ...` command, returning stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String, NetnsError> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Runs `lines` through `ip -n <name> -batch -`.
    pub fn ip_batch(&self, lines: &[String]) -> Result<(), NetnsError> {
        ip_batch(&self.name, lines)
    }

    /// Waits until `ifname` is operationally up and has its real qdisc.
    ///
    /// After `ip link set up` the kernel brings carrier up asynchronously
    /// (linkwatch, under the RTNL lock, so it lags when other tests churn
    /// namespaces); until then the device drops every packet it sends, and
    /// the first ARP/ND of a probe is lost. Polls `ip link show` every 2 ms,
    /// at most `timeout`.
    pub fn wait_link_up(&self, ifname: &str, timeout: Duration) -> Result<(), NetnsError> {
        let deadline = Instant::now() + timeout;
        // Bounded by the deadline; each round spawns one `ip`.
        loop {
            let line = self.ip(&["-o", "link", "show", "dev", ifname])?;
            if line.contains("state UP") && !line.contains("qdisc noop") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(NetnsError::NotReady {
                    netns: self.name.clone(),
                    what: format!("link {ifname} (last seen: {})", line.trim()),
                    timeout_ms: timeout.as_millis(),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Writes sysctls inside this namespace (see [`sysctls`]).
    pub fn sysctls(&self, settings: &[(String, &str)]) -> Result<(), NetnsError> {
        sysctls(&self.name, settings)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Best effort: a failure here must not turn an unwinding test into an
        // abort. `cleanup_stale` removes whatever is left.
        let _ = ip(&["netns", "delete", &self.name]);
    }
}
