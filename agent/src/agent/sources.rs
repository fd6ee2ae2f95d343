//! The source verification entries (`SOURCES_V4`, `SOURCES_V6`): for every
//! interface carrying a local pod, compiled or pending, the pod's own
//! addresses (as `/32` and `/128`; the endpoint model's: `status.podIPs`
//! or the CNI result, whichever `feed` chose) and the prefixes its
//! namespace may send from (`allowed_sources`). This module owns deriving
//! them and writing them; the datapath drops what a pod sends from
//! anything else (`ebpf/src/source.rs`).
//!
//! Make before break: a pod's entries are written before its programs are
//! attached or its `ENDPOINTS` entry changes interface (`add`, called by
//! `endpoints`), and each round's `sync` writes every missing entry before
//! it removes stale ones, so an address a pod keeps is never missing.
//! Nothing is removed before the first full reconcile (or after a failed
//! write, until the next one succeeds): until then the agent does not know
//! every interface its pinned programs are on.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use tracing::{debug, error};

use super::Agent;
use super::endpoints::Io;
use crate::datapath::DatapathError;
use crate::maps::{MapWriteError, SourceOp};

/// The entries of a pod with addresses `ips` and its namespace's `extra`
/// prefixes, on `ifindex`.
pub fn entries<'a>(
    ifindex: u32,
    ips: &'a [IpAddr],
    extra: &'a [IpNet],
) -> impl Iterator<Item = (u32, IpNet)> + 'a {
    ips.iter()
        .map(|a| IpNet::from(*a))
        .chain(extra.iter().copied())
        .map(move |n| (ifindex, n.trunc()))
}

/// Writes the entries of one pod that the maps do not hold yet (before
/// its programs attach, or before its entry moves to `ifindex`).
pub fn add(
    io: &mut Io<'_>,
    ifindex: u32,
    namespace: &str,
    ips: &[IpAddr],
) -> Result<(), MapWriteError> {
    let extra = io.allowed.get(namespace).to_vec();
    for (ifindex, prefix) in entries(ifindex, ips, &extra) {
        if !io.mirror.sources.contains(&(ifindex, prefix)) {
            io.write_source(SourceOp::Upsert { ifindex, prefix })?;
        }
    }
    Ok(())
}

/// Brings the maps to exactly `want`: every missing entry first, then the
/// stale ones removed. After a removal the established-flow cache is
/// emptied: a slot filled while the source was allowed must not keep
/// passing it (the fast path does not look at `SOURCES`, see
/// `ebpf/src/source.rs`). A packet judged while the removal lands can
/// still fill a slot, for at most about a second.
pub fn sync(io: &mut Io<'_>, want: &BTreeSet<(u32, IpNet)>) -> Result<(), SourceSyncError> {
    for &(ifindex, prefix) in want.difference(&io.mirror.sources.clone()) {
        io.write_source(SourceOp::Upsert { ifindex, prefix })?;
    }
    let stale: Vec<(u32, IpNet)> = io.mirror.sources.difference(want).copied().collect();
    for &(ifindex, prefix) in &stale {
        io.write_source(SourceOp::Remove { ifindex, prefix })?;
    }
    if !stale.is_empty() {
        io.dp.maps.clear_flow_cache()?;
    }
    Ok(())
}

/// Syncing the source entries failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceSyncError {
    /// A map write failed.
    #[error(transparent)]
    Write(#[from] MapWriteError),
    /// Emptying the flow cache after a removal failed.
    #[error("emptying the flow cache after removing source entries: {0}")]
    FlowCache(#[from] DatapathError),
}

impl Agent {
    /// One round's sync of the source entries (see the module doc). A
    /// failed write makes the next commit a full reconcile, like a failed
    /// policy write.
    pub(super) fn sync_sources(&mut self) {
        if !self.synced || self.needs_full {
            return;
        }
        let (endpoints, mut io) = self.parts();
        let mut want = BTreeSet::new();
        for (ifindex, pod, ips) in endpoints.interfaces() {
            want.extend(entries(ifindex, &ips, io.allowed.get(&pod.namespace)));
        }
        if want == io.mirror.sources {
            return;
        }
        debug!(entries = want.len(), "syncing source entries");
        if let Err(e) = sync(&mut io, &want) {
            error!(error = %e, "writing source entries failed; will reconcile fully");
            self.last_error = Some(e.to_string());
            self.needs_full = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_gets_its_addresses_and_its_namespace_prefixes() {
        let ips: Vec<IpAddr> = vec![
            "198.18.1.10".parse().unwrap(),
            "2001:db8::a".parse().unwrap(),
        ];
        let extra: Vec<IpNet> = vec!["198.51.100.0/24".parse().unwrap()];
        let got: Vec<(u32, IpNet)> = entries(7, &ips, &extra).collect();
        assert_eq!(
            got,
            [
                (7, "198.18.1.10/32".parse().unwrap()),
                (7, "2001:db8::a/128".parse().unwrap()),
                (7, "198.51.100.0/24".parse().unwrap()),
            ]
        );
    }
}
