//! The BPF maps as the agent manages them: [`Mirror`], what they hold
//! (the compiler's tables with endpoint entries by host interface, and the
//! source entries); [`writer`], the sole writer of the maps. The order of
//! writes between two contents is the compiler's (`palisade_compiler::
//! order`, `reconcile` after a restart).

mod state;
pub mod writer;

pub use state::{DpOp, DpState, Mirror, SourceOp, bitmap_ports};
pub use writer::{MapWriteError, apply, apply_source, read_state};
