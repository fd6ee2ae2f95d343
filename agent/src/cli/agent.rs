//! `palisade agent`: resolves the configuration, then runs the agent on a
//! tokio runtime until SIGTERM/SIGINT.

use crate::agent::{self, AgentError};
use crate::config::{AgentConfig, ConfigError, ConfigInput};

/// `palisade agent` failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentCmdError {
    /// Bad configuration (nothing was started).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The runtime could not start.
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The agent failed.
    #[error(transparent)]
    Agent(Box<AgentError>),
}

/// Runs the agent.
pub fn run(input: ConfigInput) -> Result<(), AgentCmdError> {
    let cfg = AgentConfig::resolve(input)?;
    // Whatever the agent creates (state files, the control socket before
    // its chmod, directories) is private to it from the first instant. Set
    // before the runtime's threads exist: the mask is per process.
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0o077) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(AgentCmdError::Runtime)?;
    rt.block_on(agent::run(cfg))
        .map_err(|e| AgentCmdError::Agent(Box::new(e)))?;
    Ok(())
}
