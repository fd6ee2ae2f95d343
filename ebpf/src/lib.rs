#![no_std]
//! The eBPF programs are in the `palisade` binary target (src/main.rs); this
//! library target only lets the agent declare a build dependency on the crate.
