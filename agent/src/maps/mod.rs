//! The BPF maps as the agent manages them: [`DpState`], the contents in
//! datapath numbering; [`DpOp`], one write; [`writer`], the sole writer of
//! the maps; [`transition`], the safe order of writes from whatever the
//! pinned maps hold to a new desired state (used after a restart).

mod state;
pub mod transition;
pub mod writer;

pub use state::{DpOp, DpState, bitmap_ports};
pub use writer::{MapWriteError, apply, read_state};
