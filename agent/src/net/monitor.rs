//! Link, address and route change notifications: an rtnetlink socket bound
//! to the multicast groups, turned into "something changed" ticks (the
//! agent re-reads a [`super::NetSnapshot`] on each tick, so lost or
//! coalesced messages cannot leave it stale).

use futures::StreamExt as _;
use rtnetlink::{Handle, MulticastGroup, new_connection, new_multicast_connection};
use tokio::sync::mpsc;

use super::NetError;

/// Opens a request connection (for dumps) and a multicast subscription.
/// Ticks arrive on the receiver; at most one is buffered.
pub fn monitor() -> Result<(Handle, mpsc::Receiver<()>), NetError> {
    let (conn, handle, _) = new_connection().map_err(NetError::Socket)?;
    tokio::spawn(conn);
    let (mconn, _mhandle, mut messages) = new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
    ])
    .map_err(NetError::Socket)?;
    tokio::spawn(mconn);
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while messages.next().await.is_some() {
            // Full: a tick is already pending, which covers this message.
            if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(()) {
                return;
            }
        }
    });
    Ok((handle, rx))
}
