//! Palisade: per-node Kubernetes NetworkPolicy enforcement with eBPF.
//!
//! The binary (`main.rs`) only parses arguments and calls into this library.
pub mod agent;
pub mod cli;
pub mod cni;
pub mod config;
pub mod control;
pub mod datapath;
pub mod dirs;
pub mod explain;
pub mod health;
pub mod maps;
pub mod metrics;
pub mod monitor;
pub mod net;
pub mod numbering;
pub mod source;
