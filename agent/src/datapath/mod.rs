//! The datapath as userspace sees it: the embedded eBPF object, loading it
//! (optionally with every map pinned so a restarted agent adopts them),
//! typed handles to its maps, and attaching its programs to interfaces.

mod attach;
mod error;
mod loader;
mod maps;
mod object;
mod per_cpu;

pub use attach::{
    AttachMode, Attachment, attach_endpoint, detach_endpoint, pinned_interfaces, remove_link_pins,
};
pub use error::DatapathError;
pub use loader::{Datapath, LoadOptions};
pub use maps::Maps;
pub use object::OBJECT;
pub use per_cpu::{CpuSum, sum_cpus};
