//! Shared fixtures of Palisade's privileged tests: a packet builder, a
//! BPF_PROG_TEST_RUN harness around the real programs, and a pure-Rust model
//! of the datapath's decision (written independently of the eBPF code) for
//! differential testing. The tests need root.

pub mod bpf;
pub mod fixture;
pub mod load;
pub mod model;
pub mod packet;
