//! The plugin's errors and their CNI error result: the well-known codes
//! of the CNI specification, then Palisade's own (100 and up).

use serde::Serialize;

/// CNI 1.0 well-known error codes (CNI spec, "Error").
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO: u32 = 5;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later: a transient condition (the agent not running yet,
    /// or not answering in time).
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// Palisade: the agent answered with an error.
    pub const AGENT_REFUSED: u32 = 100;
    /// Palisade: CHECK found the pod enforced on another interface than
    /// the one in `prevResult`.
    pub const WRONG_INTERFACE: u32 = 101;
}

/// What went wrong; each variant maps to one CNI error code.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The runtime asked for a version we do not speak.
    #[error("CNI version {requested:?} is not supported (supported: {supported})")]
    IncompatibleVersion {
        /// The version in the network configuration.
        requested: String,
        /// What we support, comma separated.
        supported: String,
    },
    /// A required environment variable is missing or malformed.
    #[error("{var}: {reason}")]
    InvalidEnv {
        /// The variable.
        var: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading stdin failed.
    #[error("reading the network configuration from stdin: {0}")]
    Stdin(#[source] std::io::Error),
    /// Stdin is not a JSON network configuration.
    #[error("network configuration on stdin: {0}")]
    Decode(String),
    /// The configuration parsed but cannot be used.
    #[error("network configuration: {field}: {reason}")]
    InvalidConfig {
        /// The offending field (`prevResult.ips[1].address`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The agent is not listening, or did not answer within the timeout.
    #[error("palisade agent at {socket}: {reason}")]
    AgentUnavailable {
        /// The control socket.
        socket: String,
        /// Why.
        reason: String,
    },
    /// The agent answered, with an error.
    #[error("palisade agent refused {op} for pod {pod}: {reason}")]
    AgentRefused {
        /// `cni_add`, `cni_check` or `cni_del`.
        op: &'static str,
        /// `namespace/name`.
        pod: String,
        /// The agent's error.
        reason: String,
    },
    /// CHECK: the agent does not enforce the pod.
    #[error("pod {pod} is not enforced by the palisade agent on this node: {reason}")]
    NotEnforced {
        /// `namespace/name`.
        pod: String,
        /// Why, as the agent says.
        reason: String,
    },
    /// CHECK: the agent enforces the pod on an unexpected interface.
    #[error(
        "pod {pod}: enforced on ifindex {agent}, but prevResult's host interface {ifname} is ifindex {expected}"
    )]
    WrongInterface {
        /// `namespace/name`.
        pod: String,
        /// The agent's interface index.
        agent: u32,
        /// The host interface named in `prevResult`.
        ifname: String,
        /// Its index here.
        expected: u32,
    },
}

impl CniError {
    /// The CNI error code.
    pub fn code(&self) -> u32 {
        match self {
            CniError::IncompatibleVersion { .. } => code::INCOMPATIBLE_VERSION,
            CniError::InvalidEnv { .. } => code::INVALID_ENV,
            CniError::Stdin(_) => code::IO,
            CniError::Decode(_) => code::DECODE,
            CniError::InvalidConfig { .. } => code::INVALID_CONFIG,
            CniError::AgentUnavailable { .. } => code::TRY_AGAIN_LATER,
            CniError::AgentRefused { .. } | CniError::NotEnforced { .. } => code::AGENT_REFUSED,
            CniError::WrongInterface { .. } => code::WRONG_INTERFACE,
        }
    }

    /// A short message (`msg`); the full text goes in `details`.
    fn msg(&self) -> &'static str {
        match self {
            CniError::IncompatibleVersion { .. } => "incompatible CNI version",
            CniError::InvalidEnv { .. } => "invalid environment variables",
            CniError::Stdin(_) => "I/O failure",
            CniError::Decode(_) => "failed to decode network configuration",
            CniError::InvalidConfig { .. } => "invalid network configuration",
            CniError::AgentUnavailable { .. } => "palisade agent unavailable",
            CniError::AgentRefused { .. } => "palisade agent refused the request",
            CniError::NotEnforced { .. } => "pod not enforced",
            CniError::WrongInterface { .. } => "pod enforced on another interface",
        }
    }

    /// The CNI error result (`{"cniVersion","code","msg","details"}`).
    pub fn to_result(&self, cni_version: &str) -> ErrorResult {
        ErrorResult {
            cni_version: cni_version.to_string(),
            code: self.code(),
            msg: format!("palisade-cni: {}", self.msg()),
            details: self.to_string(),
        }
    }
}

/// The JSON a plugin prints on stdout when it fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ErrorResult {
    /// The version of the request (or our newest, if it was unreadable).
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// The error code.
    pub code: u32,
    /// A short message.
    pub msg: String,
    /// The full error.
    pub details: String,
}
