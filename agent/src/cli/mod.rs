//! The subcommands' behaviour; `main.rs` only parses arguments.

pub mod agent;
pub mod cleanup;
pub mod diff;
pub mod explain;
pub mod graph;
pub mod inspect;
pub mod monitor;
pub mod sync;
