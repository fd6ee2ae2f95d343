//! The subcommands' behaviour; `main.rs` only parses arguments.

pub mod agent;
pub mod cleanup;
pub mod sync;
