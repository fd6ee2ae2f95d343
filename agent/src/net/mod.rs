//! The kernel's view of this network namespace, read over rtnetlink:
//! interfaces, host routes (which interface a local pod's address is
//! routed to), this node's own addresses; and a monitor that reports
//! link, address and route changes as they happen (multicast groups, no
//! polling).
//!
//! A local pod's host-side interface is the output interface of the host
//! route (`/32`, `/128`, no gateway, main table) to its address, as routed
//! CNIs (Calico, `ptp`, ...) install them. Bridged CNIs, where pods share a
//! bridge and no per-pod route exists, are not supported.

mod monitor;
mod snapshot;

pub use monitor::monitor;
pub use snapshot::{NetSnapshot, Resolution, snapshot};

/// A netlink operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The netlink socket could not be opened or bound.
    #[error("netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    /// A dump failed.
    #[error("netlink dump of {what}: {source}")]
    Dump {
        /// `links`, `routes`, `addresses`.
        what: &'static str,
        /// Cause.
        #[source]
        source: rtnetlink::Error,
    },
}
