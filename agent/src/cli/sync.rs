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
    let r = request(socket, &Request::Sync, timeout)?;
    if r.ok {
        Ok(r.revision.unwrap_or(0))
    } else {
        Err(SyncError::Failed {
            revision: r.revision.unwrap_or(0),
            message: r.error.unwrap_or_else(|| "unknown error".into()),
        })
    }
}
