//! `palisade explain`: allowed or denied, and why — offline on manifest
//! files (no agent, no root) or live against the agent.

use std::path::PathBuf;
use std::time::Duration;

use crate::control::{ControlError, Request, request};
use crate::explain::{ExplainCmdError, ExplainReport, ExplainRequest, LoadError};

/// Where the cluster comes from.
#[derive(Clone, Debug)]
pub enum Input {
    /// Every manifest of a directory.
    Dir(PathBuf),
    /// These files.
    Files(Vec<PathBuf>),
    /// The running agent's model.
    Live(PathBuf),
}

/// `palisade explain` failed.
#[derive(Debug, thiserror::Error)]
pub enum ExplainRunError {
    /// Loading manifests failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The question is malformed or names unknown things.
    #[error(transparent)]
    Query(#[from] ExplainCmdError),
    /// The agent could not be asked.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The agent answered with an error.
    #[error("{0}")]
    Agent(String),
}

/// Answers the question; warnings (rejected objects) are returned beside.
pub fn run(
    input: &Input,
    req: &ExplainRequest,
) -> Result<(ExplainReport, Vec<String>), ExplainRunError> {
    match input {
        Input::Live(socket) => {
            // Parse locally first: malformed input never reaches the agent.
            crate::explain::parse_request(req, false)?;
            let r = request(
                socket,
                &Request::Explain(req.clone()),
                Duration::from_secs(30),
            )?;
            if !r.ok {
                return Err(ExplainRunError::Agent(
                    r.error.unwrap_or_else(|| "unknown error".into()),
                ));
            }
            let v = r.data.unwrap_or_default();
            let rep: ExplainReport = serde_json::from_value(v)
                .map_err(|e| ExplainRunError::Agent(format!("bad answer: {e}")))?;
            Ok((rep, Vec::new()))
        }
        Input::Dir(d) => {
            let files = crate::explain::manifest_files(d)?;
            run(&Input::Files(files), req)
        }
        Input::Files(files) => {
            crate::explain::parse_request(req, false)?;
            let (c, raw, warnings) = crate::explain::load_files(files)?;
            let rep = crate::explain::explain(&c, req, false, &|n| raw.get(n).cloned())?;
            Ok((rep, warnings))
        }
    }
}
