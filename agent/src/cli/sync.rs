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
        "no answer from the agent within {}s: it answers once its sources are current, so \
         it may be waiting for the Kubernetes API (unreachable, or forbidden: see the agent's \
         log: it names what it waits for); the last synced policies stay enforced meanwhile",
        .0.as_secs()
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
