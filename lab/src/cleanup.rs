//! Removing leftovers of crashed runs: namespaces whose name carries a lab
//! prefix and the pid of a process that no longer exists.

use std::io;

use crate::names::creator_pid;
use crate::netns::{NETNS_DIR, NetnsError, ip, netns_path};

/// Deletes every namespace named `<prefix>-<pid>-…` whose creating process is
/// gone; returns the names it deleted. Namespaces of live processes (running
/// labs, including this process's) are left alone.
///
/// A reused pid makes a leftover look alive; it is then removed by a later
/// call once that process exits.
pub fn cleanup_stale(prefix: &str) -> Result<Vec<String>, NetnsError> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NetnsError::io("-", format!("read_dir {NETNS_DIR}"), e)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| NetnsError::io("-", format!("read_dir {NETNS_DIR}"), e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some(pid) = creator_pid(prefix, &name) else {
            continue;
        };
        if process_alive(pid) {
            continue;
        }
        match ip(&["netns", "delete", &name]) {
            Ok(_) => removed.push(name),
            // Another process cleaning up at the same time got there first.
            Err(_) if !netns_path(&name).exists() => {}
            Err(e) => return Err(e),
        }
    }
    removed.sort();
    Ok(removed)
}

/// Namespaces currently named `<prefix>-…` (any pid): for tests that assert
/// a lab left nothing behind.
pub fn namespaces_with_prefix(prefix: &str) -> Vec<String> {
    let want = format!("{prefix}-");
    let mut names: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(&want))
        .collect();
    names.sort();
    names
}

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
