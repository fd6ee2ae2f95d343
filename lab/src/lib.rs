//! Placeholder doc (rewritten below).
pub mod addressing;
pub mod cleanup;
mod names;
pub mod netns;
pub mod probes;
pub mod sctp;
pub mod servers;
mod sock;
pub mod topology;
pub mod wire;

pub use cleanup::{cleanup_stale, namespaces_with_prefix};
pub use netns::{Netns, NetnsError, run_in};
pub use probes::{ProbeKind, ProbeResult, ProbeSpec, probe, probe_all, tcp_connect, udp_echo, icmp_echo, sctp_probe, DEFAULT_TIMEOUT};
pub use servers::{Servers, Services, serve};
pub use topology::{Endpoint, ExternalHost, Lab, LabError, LabSpec, Node, Pod};
