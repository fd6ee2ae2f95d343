//! `palisade sync`: asks the running agent to re-read its sources and
//! waits until the result is in the datapath.

use std::path::Path;
use std::time::Duration;

use crate::control::{ControlError, Request, request};

/// `palisade sync` failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The agent could not be asked.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// No answer in time: the agent is waiting for its source.
    #[error(
        "no answer from the agent within {:?}: it answers once its sources are current, so \
         it may be waiting for the Kubernetes API (unreachable, or forbidden: see the agent's \
         log: it names what it waits for); the last synced policies stay enforced meanwhile",
        .0
    )]
    TimedOut(Duration),
    /// The agent answered with an error.
    #[error("sync failed (revision {revision}): {message}")]
    Failed {
        /// The revision in the datapath.
        revision: u64,
        /// The agent's error.
        message: String,
    },
}

/// Runs one sync; returns the revision now in the datapath.
pub fn run(socket: &Path, timeout: Duration) -> Result<u64, SyncError> {
    let r = match request(socket, &Request::Sync, timeout) {
        Ok(r) => r,
        Err(ControlError::Io { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            return Err(SyncError::TimedOut(timeout));
        }
        Err(e) => return Err(e.into()),
    };
    if r.ok {
        Ok(r.revision.unwrap_or(0))
    } else {
        Err(SyncError::Failed {
            revision: r.revision.unwrap_or(0),
            message: r.error.unwrap_or_else(|| "unknown error".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent that takes the request but never answers (its source not
    /// current): the CLI gives up after the timeout and says why.
    #[test]
    fn a_silent_agent_times_out_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let held = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
        let t0 = std::time::Instant::now();
        let err = run(&socket, Duration::from_millis(300)).unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(matches!(err, SyncError::TimedOut(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("within 300ms") && text.contains("Kubernetes API"),
            "{text}"
        );
        drop(held.join());
    }
}
