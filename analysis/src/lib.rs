//! Offline analyses of the compiler's model: what policy allows between
//! workloads (`graph`) and, later, how a change moves it (`diff`) and why one
//! flow is decided the way it is (`explain`). Everything here is a pure
//! function of a [`palisade_compiler::Compiler`] (fed from manifests by the
//! CLI, or the agent's own model for `--live`), so the daemon does not carry
//! renderers and the analyses agree with the maps by construction.

pub mod diff;
pub mod graph;
