//! `palisade monitor`: prints the agent's drop (and audit) events as they
//! happen, one line each (or one JSON object each with `-o json`), and
//! what was lost to the datapath's rate limit, a full ring or a slow
//! terminal, now and then and on exit.

use std::io::{BufRead as _, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::control::Request;
use crate::monitor::{MonitorFilter, StreamLine, StreamStats};

/// How to print events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// One line of text per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// `palisade monitor` failed.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// Nothing listens on the socket.
    #[error("no agent is listening on {path}; is `palisade agent` running?")]
    NotRunning {
        /// The socket.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The agent refused the subscription.
    #[error("{0}")]
    Refused(String),
    /// The connection failed.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The agent went away.
    #[error("the agent closed the connection (stopped?)")]
    Closed,
    /// The agent sent something unreadable.
    #[error("bad line from the agent {0:?}")]
    BadLine(String),
}

/// What the session saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Events printed.
    pub events: u64,
    /// Events suppressed by the datapath's rate limit while watching.
    pub rate_limited: u64,
    /// Events lost to a full ring while watching.
    pub ring_full: u64,
    /// Events this monitor read too slowly to get.
    pub lost: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events shown; not shown: {} rate-limited, {} ring full, {} too slow to read",
            self.events, self.rate_limited, self.ring_full, self.lost
        )
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn install_handlers() {
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Options.
#[derive(Clone, Debug)]
pub struct Options {
    /// The agent's socket.
    pub socket: PathBuf,
    /// Filters.
    pub filter: MonitorFilter,
    /// Text or JSON.
    pub output: Output,
    /// Stop after this many events.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> MonitorError + '_ {
    move |source| MonitorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Runs until Ctrl-C, `count` events or `duration`; events go to `out`,
/// status and loss reports to `err`.
pub fn run(o: &Options, out: &mut dyn Write, err: &mut dyn Write) -> Result<Summary, MonitorError> {
    o.filter.check().map_err(MonitorError::Refused)?;
    let mut stream = UnixStream::connect(&o.socket).map_err(|source| MonitorError::NotRunning {
        path: o.socket.clone(),
        source,
    })?;
    install_handlers();
    let mut line =
        serde_json::to_string(&Request::Monitor(o.filter.clone())).expect("requests serialize");
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io(&o.socket))?;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(io(&o.socket))?;
    let mut reader = BufReader::new(&stream);
    let start = Instant::now();
    let mut summary = Summary::default();
    let mut base: Option<StreamStats> = None;
    let mut reported = Summary::default();
    let mut buf = String::new();
    let mut subscribed = false;
    loop {
        if STOP.load(Ordering::Relaxed)
            || o.count.is_some_and(|c| summary.events >= c)
            || o.duration.is_some_and(|d| start.elapsed() >= d)
        {
            break;
        }
        match reader.read_line(&mut buf) {
            Ok(0) => return Err(MonitorError::Closed),
            Ok(_) if !buf.ends_with('\n') => continue,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(io(&o.socket)(e)),
        }
        let parsed: StreamLine = serde_json::from_str(buf.trim())
            .map_err(|_| MonitorError::BadLine(buf.trim().to_string()))?;
        buf.clear();
        match parsed {
            StreamLine::Status { ok: false, error } => {
                return Err(MonitorError::Refused(
                    error.unwrap_or_else(|| "refused".into()),
                ));
            }
            StreamLine::Status { ok: true, .. } => {
                subscribed = true;
                let _ = writeln!(err, "monitoring; Ctrl-C to stop");
                let _ = err.flush();
            }
            StreamLine::Event { event } => {
                summary.events += 1;
                let _ = match o.output {
                    Output::Text => writeln!(out, "{event}"),
                    Output::Json => writeln!(
                        out,
                        "{}",
                        serde_json::to_string(&event).expect("events serialize")
                    ),
                };
                let _ = out.flush();
            }
            StreamLine::Stats { stats } => {
                let b = *base.get_or_insert(stats);
                summary.rate_limited = stats.rate_limited.saturating_sub(b.rate_limited);
                summary.ring_full = stats.ring_full.saturating_sub(b.ring_full);
                summary.lost = stats.lost;
                if (summary.rate_limited, summary.ring_full, summary.lost)
                    != (reported.rate_limited, reported.ring_full, reported.lost)
                {
                    let _ = writeln!(
                        err,
                        "-- not shown so far: {} rate-limited, {} ring full, {} too slow to read",
                        summary.rate_limited, summary.ring_full, summary.lost
                    );
                    let _ = err.flush();
                    reported = summary;
                }
            }
        }
    }
    let _ = subscribed;
    let _ = writeln!(err, "{summary}");
    Ok(summary)
}
