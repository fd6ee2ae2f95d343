//! Drains the pinned `EVENTS` ring (epoll through tokio's `AsyncFd`), counts
//! each drop in the hub's recent drops, names each record and hands it to
//! the [`Hub`]; polls `EVENT_STATS` once a second. Opens its own handles on the pins, so it never contends with the
//! agent's map writer.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aya::maps::{Map, MapData, MapError, PerCpuArray, RingBuf};
use palisade_common::{DropEvent, EventStats, map_names};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tracing::warn;

use super::{Hub, event::enrich};

/// Opening a pinned map failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The pin could not be opened or has another type.
    #[error("opening pinned map {path}: {source}")]
    Map {
        /// The pin.
        path: String,
        /// Cause.
        #[source]
        source: MapError,
    },
    /// The ring cannot be polled.
    #[error("polling the event ring: {0}")]
    Poll(#[source] std::io::Error),
}

/// Opens a pinned map by name under `dir`.
pub fn open_pinned(dir: &Path, name: &str) -> Result<Map, OpenError> {
    let path = dir.join(name);
    let err = |source| OpenError::Map {
        path: path.display().to_string(),
        source,
    };
    let data = MapData::from_pin(&path).map_err(err)?;
    Map::from_map_data(data).map_err(err)
}

fn decode(bytes: &[u8]) -> Option<DropEvent> {
    if bytes.len() < std::mem::size_of::<DropEvent>() {
        return None;
    }
    // SAFETY: DropEvent is plain old data and the slice holds enough bytes;
    // the read is unaligned-safe.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<DropEvent>()) })
}

/// Sums `EVENT_STATS` over CPUs.
pub fn sum_stats(m: &PerCpuArray<MapData, EventStats>) -> Option<EventStats> {
    let v = m.get(&0, 0).ok()?;
    Some(crate::datapath::sum_cpus(&v))
}

/// Starts the reader on the maps pinned under `pin_dir`.
pub fn spawn(pin_dir: &Path, hub: Arc<Hub>) -> Result<tokio::task::JoinHandle<()>, OpenError> {
    let ring: RingBuf<MapData> = open_pinned(pin_dir, map_names::EVENTS)?
        .try_into()
        .map_err(|source| OpenError::Map {
            path: map_names::EVENTS.into(),
            source,
        })?;
    let stats: PerCpuArray<MapData, EventStats> = open_pinned(pin_dir, map_names::EVENT_STATS)?
        .try_into()
        .map_err(|source| OpenError::Map {
            path: map_names::EVENT_STATS.into(),
            source,
        })?;
    // SAFETY: the ring owns its map fd, which stays open and the same for
    // as long as the AsyncFd owns the ring.
    let afd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| OpenError::Poll(e.into()))?;
    Ok(tokio::spawn(run(afd, stats, hub)))
}

async fn run(
    mut afd: AsyncFd<RingBuf<MapData>>,
    stats: PerCpuArray<MapData, EventStats>,
    hub: Arc<Hub>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // Events the datapath did not report, as of the last tick.
    let mut unreported: Option<u64> = None;
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = afd.readable_mut() => {
                let mut guard = match r {
                    Ok(g) => g,
                    Err(error) => {
                        warn!(%error, "event ring: poll failed; monitor stops");
                        return;
                    }
                };
                let ring = guard.get_inner_mut();
                let dir = hub.has_subscribers().then(|| hub.directory());
                // Bounded batch, so the stats tick and other tasks get turns.
                let mut drained = false;
                for _ in 0..4096 {
                    let Some(item) = ring.next() else {
                        drained = true;
                        break;
                    };
                    hub.read_total.fetch_add(1, Ordering::Relaxed);
                    let Some(raw) = decode(&item) else { continue };
                    hub.record_drop(&raw);
                    if let Some(d) = &dir
                        && let Some(ev) = enrich(&raw, d)
                    {
                        hub.publish(ev);
                    }
                }
                // Readiness is edge-triggered: clear it only once the ring
                // is empty, or records left behind would wait for the next.
                if drained {
                    guard.clear_ready();
                }
            }
            _ = tick.tick() => {
                if let Some(s) = sum_stats(&stats) {
                    let now = s.rate_limited + s.ring_full;
                    if let Some(before) = unreported {
                        hub.note_suppressed(now.saturating_sub(before));
                    }
                    unreported = Some(now);
                    hub.set_stats(s);
                }
            }
        }
    }
}
