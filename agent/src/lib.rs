//! Palisade: per-node Kubernetes NetworkPolicy enforcement with eBPF.
//!
//! The binary (`main.rs`) only parses arguments and calls into this library.
pub mod datapath;
