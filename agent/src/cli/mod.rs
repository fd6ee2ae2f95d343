//! The subcommands' behaviour; `main.rs` only parses arguments.

pub mod agent;
pub mod cleanup;
pub mod explain;
pub mod inspect;
pub mod monitor;
pub mod sync;
