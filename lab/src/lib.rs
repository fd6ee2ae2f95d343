//! Routed pods in network namespaces on one Linux machine: the topology,
//! servers and probes that Palisade's privileged tests, the demo and the
//! conformance suite use.
//!
//! # Topology
//!
//! Pods are wired the way Calico (or the `ptp` CNI) wires them: each pod is a
//! namespace whose `eth0` is one end of a veth pair; the other end, `cali…`,
//! sits in the node namespace, which routes `/32` and `/128` host routes to
//! it. Pods reach everything through `169.254.1.1` (answered by proxy ARP on
//! the host veth) and `fe80::1` (an address on every host veth). Palisade's
//! TC programs attach to the `cali…` interfaces inside the node namespace.
//!
//! ```text
//!                      fabric netns: bridge br0
//!                  fab1 |                 | fab2
//!   ┌─────────────── eth0 ──────┐   ┌──── eth0 ───────────────────┐
//!   │ node n1  198.19.0.1       │   │ node n2  198.19.0.2         │
//!   │ forwarding, routes:       │   │ 198.18.1.0/24 via 198.19.0.1│
//!   │ 198.18.1.10/32 dev caliA  │   │ 198.18.2.10/32 dev caliC    │
//!   │ 198.18.2.0/24 via .0.2    │   │ 203.0.113.10/32 dev ext0    │
//!   │ sink0: default (drops)    │   │ sink0: default (drops)      │
//!   └─ caliA ──────── caliB ────┘   └─ caliC ──────────── ext0 ───┘
//!       │ veth          │               │                   │
//!     eth0            eth0            eth0                eth0
//!   pod a           pod b           pod c            external host
//!   198.18.1.10     198.18.1.11     198.18.2.10      203.0.113.10,
//!   2001:db8:1::a   2001:db8:1::b   2001:db8:2::a    169.254.169.254, …
//!   default via 169.254.1.1 onlink / fe80::1 dev eth0
//! ```
//!
//! Every lab lives in its own namespaces (`<prefix>-<pid>-<n><rand>-<role>-
//! <name>`), so addresses (see [`addressing`]) repeat across labs and
//! parallel tests never collide. Nothing is routed out of the lab: unknown
//! destinations end in each node's `sink0`. Dropping the [`Lab`] deletes its
//! namespaces, also while a test panics; [`cleanup_stale`] removes those of
//! crashed runs.
//!
//! # Servers and probes
//!
//! [`serve`] starts TCP banner servers, UDP echo servers and an SCTP
//! responder (raw sockets: the kernel here has no SCTP module) in a pod,
//! node or external host; they stop when the returned [`Servers`] drops.
//! Probes ([`tcp_connect`], [`udp_echo`], [`icmp_echo`], [`sctp_probe`], or
//! many at once with [`probe_all`]) run on threads that entered the source
//! namespace, and wait at most their timeout ([`DEFAULT_TIMEOUT`]). The
//! [`raw`] module injects crafted frames and captures what arrives.
//!
//! # A real API server
//!
//! [`apiserver`] runs etcd and the kube-apiserver that `cargo xtask setup`
//! builds, on loopback with token authentication and RBAC, for the tests of
//! the agent's Kubernetes mode; [`apiserver::Forward`] brings it into a lab
//! node's namespace.
//!
//! # Real CNI plugins
//!
//! [`cni_runtime`] plays a container runtime: it builds the project's
//! libcni driver and runs a plugin chain (Debian's reference plugins, then
//! `palisade-cni`) inside a lab node for pod sandboxes, which serve and
//! probe like lab pods.
//!
//! ```no_run
//! use palisade_lab::{LabSpec, ProbeSpec, Services, probe_all, serve};
//!
//! let lab = LabSpec::new("demo")
//!     .node("n1")
//!     .node("n2")
//!     .pod("web", "prod", "n1")
//!     .pod("client", "dev", "n2")
//!     .external_host("world", "n1", &["203.0.113.10".parse().unwrap()])
//!     .up()
//!     .expect("lab up");
//! let (web, client) = (lab.pod("web"), lab.pod("client"));
//! let _servers = serve(web, &Services::new().tcp(80).udp(53).sctp(9000)).expect("serve");
//!
//! let results = probe_all(&[
//!     ProbeSpec::tcp(client, web.ipv4(), 80),
//!     ProbeSpec::udp(client, web.ipv6(), 53),
//!     ProbeSpec::sctp(client, web.ipv4(), 9000),
//!     ProbeSpec::icmp(client, "203.0.113.10".parse::<std::net::IpAddr>().unwrap()),
//! ]);
//! assert!(results.iter().all(|r| r.reached()));
//! assert_eq!(results[0].text(), Some("palisade-lab prod/web tcp/80"));
//!
//! // Attach TC programs from a thread inside the node namespace:
//! lab.node("n1").run(|| { /* aya attach to web.host_veth() */ }).expect("netns");
//! ```
#![deny(missing_docs)]

pub mod addressing;
pub mod agent_process;
pub mod apiserver;
pub mod app;
pub mod cleanup;
pub mod cni_runtime;
pub mod description;
mod names;
pub mod netns;
pub mod probes;
pub mod raw;
pub mod scale;
pub mod sctp;
pub mod servers;
mod sock;
pub mod topology;
pub mod wire;

pub use app::{AppLab, AppPod};
pub use cleanup::{cleanup_stale, namespaces_with_prefix};
pub use description::{LabDescription, PortSpec, Protocol};
pub use netns::{Netns, NetnsError, run_in};
pub use probes::{
    ANSWER_TIMEOUT, DEFAULT_TIMEOUT, ProbeKind, ProbeResult, ProbeSpec, icmp_echo, probe,
    probe_all, sctp_probe, tcp_connect, udp_echo,
};
pub use raw::{Capture, Frame, inject_frame, inject_ip};
pub use servers::{Servers, Services, sctp_responder, serve};
pub use topology::{Endpoint, ExternalHost, Lab, LabError, LabSpec, Node, Pod};
