//! What can stop the agent (configuration problems are `ConfigError`).

use std::path::PathBuf;

/// The agent could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The bpffs directory is not on a bpf filesystem.
    #[error(
        "--bpffs-dir {dir}: not on a bpf filesystem, so pins would not outlive the agent: {found}"
    )]
    NotBpffs {
        /// The directory.
        dir: PathBuf,
        /// What is there instead, and what to do.
        found: String,
    },
    /// A directory could not be created or read.
    #[error("{path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A directory the agent trusts is writable by others.
    #[error(transparent)]
    UntrustedDir(#[from] crate::dirs::DirError),
    /// Loading the datapath failed.
    #[error("loading the datapath: {0}")]
    Datapath(#[from] crate::datapath::DatapathError),
    /// Reading or writing the maps failed.
    #[error(transparent)]
    Maps(#[from] crate::maps::MapWriteError),
    /// The allocation table is unusable.
    #[error(transparent)]
    Numbering(#[from] crate::numbering::NumberingError),
    /// The CNI sandbox records are unusable (starting without them would
    /// remove enforcement from the pods they name).
    #[error(transparent)]
    CniRecords(#[from] super::cni_records::RecordsError),
    /// Netlink failed.
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    /// The control socket could not be bound.
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    /// The health listener could not be bound.
    #[error("--health-addr {addr}: {source}")]
    Health {
        /// The address.
        addr: std::net::SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The manifests directory cannot be watched.
    #[error("--manifests {path}: cannot watch: {source}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: notify::Error,
    },
    /// No Kubernetes client configuration.
    #[error(
        "Kubernetes client (in-cluster or kubeconfig; use --manifests DIR without a cluster): {0}"
    )]
    Kube(#[source] kube::Error),
    /// A source stopped.
    #[error("the object source stopped")]
    SourceEnded,
}
