//! One monitor connection on the control socket: subscribe, then write
//! the stream's JSON lines until the client goes away.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::{Hub, MonitorFilter, StreamLine, StreamStats};

const DEFAULT_STATS_MS: u64 = 2000;

async fn send<W: AsyncWrite + Unpin>(w: &mut W, line: &StreamLine) -> std::io::Result<()> {
    let mut s = serde_json::to_string(line).expect("stream lines serialize");
    s.push('\n');
    w.write_all(s.as_bytes()).await
}

/// Serves one monitor until the client closes its end or stops reading
/// for good (a write fails).
pub async fn serve<R, W>(hub: Arc<Hub>, filter: MonitorFilter, mut reader: R, mut w: W)
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let checked = filter.check().and_then(|()| {
        hub.directory()
            .check_filter(filter.namespace.as_deref(), filter.pod.as_deref())
    });
    if let Err(e) = checked {
        let _ = send(
            &mut w,
            &StreamLine::Status {
                ok: false,
                error: Some(e),
            },
        )
        .await;
        return;
    }
    let every = Duration::from_millis(
        filter
            .stats_interval_ms
            .unwrap_or(DEFAULT_STATS_MS)
            .max(100),
    );
    let mut sub = hub.subscribe(filter);
    let mut stats = hub.stats();
    if send(
        &mut w,
        &StreamLine::Status {
            ok: true,
            error: None,
        },
    )
    .await
    .is_err()
    {
        return;
    }
    // The counters as of the subscription, so the client reports what is
    // lost while it watches.
    let first = *stats.borrow_and_update();
    let initial = StreamLine::Stats {
        stats: StreamStats {
            emitted: first.emitted,
            rate_limited: first.rate_limited,
            ring_full: first.ring_full,
            lost: 0,
        },
    };
    if send(&mut w, &initial).await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut scratch = String::new();
    loop {
        let line = tokio::select! {
            ev = sub.events.recv() => match ev {
                Some(ev) => StreamLine::Event { event: Box::new((*ev).clone()) },
                None => return,
            },
            _ = tick.tick() => {
                let s = *stats.borrow_and_update();
                StreamLine::Stats { stats: StreamStats {
                    emitted: s.emitted,
                    rate_limited: s.rate_limited,
                    ring_full: s.ring_full,
                    lost: sub.lost.load(Ordering::Relaxed),
                }}
            }
            r = reader.read_line(&mut scratch) => match r {
                // The client closed its end (or sent junk): done.
                Ok(0) | Err(_) => return,
                Ok(_) => { scratch.clear(); continue; }
            },
        };
        if send(&mut w, &line).await.is_err() {
            return;
        }
    }
}
