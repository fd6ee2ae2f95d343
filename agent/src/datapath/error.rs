//! Errors of loading, map access and attachment, naming what failed.

use std::path::PathBuf;

/// A datapath operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// The object could not be loaded (verifier rejection included).
    #[error("failed to load the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program is missing from the object or failed to load.
    #[error("program {name}: {source}")]
    Program {
        /// Program name.
        name: &'static str,
        /// Cause.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A program is missing from the object.
    #[error("program {0} is not in the eBPF object")]
    MissingProgram(&'static str),
    /// A map is missing from the object.
    #[error("map {0} is not in the eBPF object")]
    MissingMap(&'static str),
    /// A map operation failed.
    #[error("map {name}: {source}")]
    Map {
        /// Map name.
        name: &'static str,
        /// Cause.
        #[source]
        source: aya::maps::MapError,
    },
    /// Per-CPU values could not be built (the CPU count is unknown).
    #[error("map {name}: per-CPU values: {source}")]
    PerCpu {
        /// Map name.
        name: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The pin directory could not be created.
    #[error("pin directory {path}: {source}")]
    PinDir {
        /// Directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Attaching to or detaching from an interface failed.
    #[error("interface {iface}: {what}: {source}")]
    Attach {
        /// Interface name.
        iface: String,
        /// What was being done.
        what: &'static str,
        /// Cause.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// The datapath log's ring could not be read.
    #[error("map {name}: {source}")]
    Log {
        /// Map name.
        name: &'static str,
        /// Cause.
        #[source]
        source: aya_log::Error,
    },
    /// A link pin could not be created or removed.
    #[error("link pin {path}: {message}")]
    LinkPin {
        /// Pin path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}
