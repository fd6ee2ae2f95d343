//! Fan-out of events to monitors. Publishing never waits: each subscriber
//! has a bounded queue, and an event that does not fit is counted as lost
//! for that subscriber (and in `palisade_monitor_events_lost_total`). The
//! hub also holds the recent drops' [`Aggregate`] (`graph --live`), fed by
//! the reader whether or not a monitor listens.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use palisade_common::{DROP_EVENT_VERSION, DropEvent, EventStats, event_kind};
use tokio::sync::{mpsc, watch};

use super::aggregate::{Aggregate, Counts, DropKey};
use super::{Directory, MonitorEvent, MonitorFilter};

/// Events a subscriber may have queued before it loses some.
pub const QUEUE: usize = 1024;

struct Subscriber {
    id: u64,
    filter: MonitorFilter,
    tx: mpsc::Sender<Arc<MonitorEvent>>,
    lost: Arc<AtomicU64>,
}

/// A monitor's end.
pub struct Subscription {
    /// Its events.
    pub events: mpsc::Receiver<Arc<MonitorEvent>>,
    /// Events it lost.
    pub lost: Arc<AtomicU64>,
    id: u64,
    hub: Arc<Hub>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id);
    }
}

/// The hub (shared by the reader, the agent and the control socket).
pub struct Hub {
    subs: Mutex<Vec<Subscriber>>,
    next_id: AtomicU64,
    directory: RwLock<Arc<Directory>>,
    stats_tx: watch::Sender<EventStats>,
    /// Events lost by slow monitors, in total.
    pub lost_total: AtomicU64,
    /// Events read from the ring, in total.
    pub read_total: AtomicU64,
    /// The recent drops.
    drops: Mutex<Aggregate>,
    /// The aggregate's clock starts here.
    started: Instant,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            subs: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            directory: RwLock::new(Arc::new(Directory::default())),
            stats_tx: watch::channel(EventStats::default()).0,
            lost_total: AtomicU64::new(0),
            read_total: AtomicU64::new(0),
            drops: Mutex::new(Aggregate::default()),
            started: Instant::now(),
        }
    }
}

impl Hub {
    /// A new hub.
    pub fn new() -> Arc<Self> {
        Arc::new(Hub::default())
    }

    /// Replaces the directory events are named with.
    pub fn set_directory(&self, d: Directory) {
        *self.directory.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(d);
    }

    /// The current directory.
    pub fn directory(&self) -> Arc<Directory> {
        self.directory
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Publishes the datapath's event counters.
    pub fn set_stats(&self, s: EventStats) {
        self.stats_tx.send_replace(s);
    }

    /// The datapath's event counters, as last read.
    pub fn stats(&self) -> watch::Receiver<EventStats> {
        self.stats_tx.subscribe()
    }

    /// Seconds since the hub started (the aggregate's clock).
    fn now(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Counts a raw event in the recent drops, if it is a drop of this
    /// layout with IP addresses.
    pub fn record_drop(&self, raw: &DropEvent) {
        if raw.version != DROP_EVENT_VERSION || raw.kind != event_kind::DROP {
            return;
        }
        let addr = |a| super::event::address(raw.family, a);
        let (Some(src), Some(dst)) = (addr(raw.saddr), addr(raw.daddr)) else {
            return;
        };
        let key = DropKey {
            src,
            dst,
            protocol: raw.proto,
            port: if palisade_common::proto::has_ports(raw.proto) {
                raw.dport
            } else {
                0
            },
            reason: raw.reason,
        };
        let now = self.now();
        self.drops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(key, now);
    }

    /// Counts events the datapath did not report.
    pub fn note_suppressed(&self, n: u64) {
        let now = self.now();
        self.drops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .note_suppressed(n, now);
    }

    /// The drops of the last `window` seconds.
    pub fn drop_counts(&self, window: u64) -> Counts {
        let now = self.now();
        let mut d = self.drops.lock().unwrap_or_else(|e| e.into_inner());
        d.expire(now);
        d.counts(window, now)
    }

    /// Number of monitors connected.
    pub fn subscribers(&self) -> usize {
        self.subs.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Adds a subscriber.
    pub fn subscribe(self: &Arc<Self>, filter: MonitorFilter) -> Subscription {
        self.subscribe_with(filter, QUEUE)
    }

    /// Adds a subscriber with a queue of `queue` events.
    pub fn subscribe_with(self: &Arc<Self>, filter: MonitorFilter, queue: usize) -> Subscription {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let lost = Arc::new(AtomicU64::new(0));
        self.subs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Subscriber {
                id,
                filter,
                tx,
                lost: lost.clone(),
            });
        Subscription {
            events: rx,
            lost,
            id,
            hub: self.clone(),
        }
    }

    fn unsubscribe(&self, id: u64) {
        self.subs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| s.id != id);
    }

    /// Whether anyone listens (the reader skips naming events otherwise).
    pub fn has_subscribers(&self) -> bool {
        self.subscribers() > 0
    }

    /// Offers an event to every subscriber whose filter it passes; never
    /// waits.
    pub fn publish(&self, ev: MonitorEvent) {
        let ev = Arc::new(ev);
        let subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        for s in subs.iter() {
            if !s.filter.matches(&ev) {
                continue;
            }
            if let Err(mpsc::error::TrySendError::Full(_)) = s.tx.try_send(ev.clone()) {
                s.lost.fetch_add(1, Ordering::Relaxed);
                self.lost_total.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(reason: &str) -> MonitorEvent {
        MonitorEvent {
            kind: "drop".into(),
            reason: reason.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn slow_subscriber_loses_and_others_do_not() {
        let hub = Hub::new();
        let mut fast = hub.subscribe(MonitorFilter::default());
        let slow = hub.subscribe_with(MonitorFilter::default(), 2);
        let picky = hub.subscribe(MonitorFilter {
            reason: Some("malformed".into()),
            ..Default::default()
        });
        for _ in 0..10 {
            hub.publish(ev("policy-denied"));
        }
        hub.publish(ev("malformed"));
        let mut got = 0;
        while fast.events.try_recv().is_ok() {
            got += 1;
        }
        assert_eq!(got, 11);
        assert_eq!(slow.lost.load(Ordering::Relaxed), 9);
        assert_eq!(picky.lost.load(Ordering::Relaxed), 0);
        assert_eq!(hub.lost_total.load(Ordering::Relaxed), 9);
        assert_eq!(hub.subscribers(), 3);
        drop(slow);
        drop(picky);
        assert_eq!(hub.subscribers(), 1);
    }
}
