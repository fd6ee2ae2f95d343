//! The datapath as userspace sees it: the embedded eBPF object, loading it
//! (optionally with every map pinned so a restarted agent adopts them),
//! typed handles to its maps, attaching its programs to interfaces, and
//! reading its log records.

mod attach;
mod error;
mod loader;
mod log;
mod maps;
mod object;
mod per_cpu;

pub use attach::{
    AttachMode, Attachment, attach_endpoint, detach_endpoint, pinned_interfaces, remove_link_pins,
};
pub use error::DatapathError;
pub use loader::{Datapath, LoadOptions};
pub use log::{DatapathLog, DatapathLogger, SUPPRESSED_REPORT_INTERVAL, TARGET as LOG_TARGET};
pub use maps::Maps;
pub use object::OBJECT;
pub use per_cpu::{CpuSum, sum_cpus};
