//! The datapath log (`palisade agent --datapath-log`): which records the
//! programs write (fixed when the object loads, see `ebpf/src/rare.rs`),
//! and the reader that writes them to the agent's log as events of target
//! [`TARGET`], with how many the datapath suppressed.

use std::time::Duration;

use aya::maps::{MapData, PerCpuArray};
use aya_log::EbpfLogger;
use palisade_common::{EventStats, map_names};
use tokio::io::{Interest, unix::AsyncFd};
use tracing::{info, warn};

use super::{DatapathError, sum_cpus};

/// The tracing target of the datapath's records (and of the reader's own
/// reports about them).
pub const TARGET: &str = "palisade::datapath";

/// How often the reader reports records the datapath suppressed.
pub const SUPPRESSED_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// What the datapath logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DatapathLog {
    /// Nothing (the default): the verifier removes the logging code.
    #[default]
    Off,
    /// The agent's own trouble: packets on an interface with no endpoint
    /// entry (`unknown-endpoint`) and new flows of pods whose policy is
    /// pending (`policy-pending`).
    Info,
    /// Also every packet whose headers do not parse (`truncated`,
    /// `malformed`, `ipv6-extension-header-limit`, `unsupported-l3`) and
    /// every later fragment without its first fragment's state
    /// (`fragment-no-state`), dropped or passed.
    Debug,
}

impl DatapathLog {
    /// The value of `aya-log`'s level global (`AYA_LOG_LEVEL`) in the
    /// object: records at this level and more severe ones are written.
    pub fn object_level(self) -> u8 {
        match self {
            DatapathLog::Off => 0,
            DatapathLog::Info => aya_log::Level::Info as u8,
            DatapathLog::Debug => aya_log::Level::Debug as u8,
        }
    }

    /// The log filter directive that lets the records through, if any.
    pub fn filter_directive(self) -> Option<String> {
        match self {
            DatapathLog::Off => None,
            DatapathLog::Info => Some(format!("{TARGET}=info")),
            DatapathLog::Debug => Some(format!("{TARGET}=debug")),
        }
    }
}

/// Forwards `aya-log`'s records (the `log` crate's) to tracing, under
/// [`TARGET`] and at the record's level.
struct ToTracing;

impl log::Log for ToTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, r: &log::Record<'_>) {
        // The datapath pads the record's last words to one length.
        let line = r.args().to_string();
        let line = line.trim_end();
        match r.level() {
            log::Level::Error => tracing::error!(target: TARGET, "{line}"),
            log::Level::Warn => tracing::warn!(target: TARGET, "{line}"),
            log::Level::Info => tracing::info!(target: TARGET, "{line}"),
            log::Level::Debug => tracing::debug!(target: TARGET, "{line}"),
            log::Level::Trace => tracing::trace!(target: TARGET, "{line}"),
        }
    }

    fn flush(&self) {}
}

/// The reader of one loaded object's log records.
pub struct DatapathLogger {
    records: EbpfLogger<ToTracing>,
    stats: PerCpuArray<MapData, EventStats>,
}

impl DatapathLogger {
    /// Takes the object's log ring and statistics.
    pub(super) fn take(ebpf: &mut aya::Ebpf) -> Result<Self, DatapathError> {
        let records =
            EbpfLogger::init_with_logger(ebpf, ToTracing).map_err(|source| DatapathError::Log {
                name: map_names::AYA_LOGS,
                source,
            })?;
        let stats = ebpf
            .take_map(map_names::LOG_STATS)
            .ok_or(DatapathError::MissingMap(map_names::LOG_STATS))?
            .try_into()
            .map_err(|source| DatapathError::Map {
                name: map_names::LOG_STATS,
                source,
            })?;
        Ok(DatapathLogger { records, stats })
    }

    /// What happened to records so far, summed over CPUs.
    pub fn stats(&self) -> Result<EventStats, DatapathError> {
        read_stats(&self.stats)
    }

    /// Writes every record waiting in the ring to the log.
    pub fn flush(&mut self) {
        self.records.flush();
    }

    /// Runs the reader until the task is dropped: records as they arrive,
    /// and every [`SUPPRESSED_REPORT_INTERVAL`] a warning if the datapath
    /// suppressed any since the last one (rate limit, ring without room).
    pub async fn run(self) {
        let DatapathLogger { records, stats } = self;
        // SAFETY: the logger owns the ring's map fd, which stays open and
        // the same for as long as the AsyncFd owns the logger.
        let mut ring = match unsafe { AsyncFd::register_with_interest(records, Interest::READABLE) }
        {
            Ok(fd) => fd,
            Err(e) => {
                let error = std::io::Error::from(e);
                warn!(target: TARGET, %error, "cannot wait on the datapath log ring; datapath records are not read");
                return;
            }
        };
        info!(target: TARGET, "reading datapath log records");
        let mut tick = tokio::time::interval(SUPPRESSED_REPORT_INTERVAL);
        let mut reported = EventStats::default();
        loop {
            tokio::select! {
                ready = ring.readable_mut() => match ready {
                    Ok(mut guard) => {
                        guard.get_inner_mut().flush();
                        guard.clear_ready();
                    }
                    Err(error) => {
                        warn!(target: TARGET, %error, "datapath log ring failed; datapath records are no longer read");
                        return;
                    }
                },
                _ = tick.tick() => {
                    if let Ok(now) = read_stats(&stats) {
                        report_suppressed(&reported, &now);
                        reported = now;
                    }
                }
            }
        }
    }
}

/// `LOG_STATS` summed over CPUs.
fn read_stats(stats: &PerCpuArray<MapData, EventStats>) -> Result<EventStats, DatapathError> {
    let per_cpu = stats.get(&0, 0).map_err(|source| DatapathError::Map {
        name: map_names::LOG_STATS,
        source,
    })?;
    Ok(sum_cpus(&per_cpu))
}

/// Warns about records suppressed between two readings.
fn report_suppressed(before: &EventStats, now: &EventStats) {
    let rate_limited = now.rate_limited.saturating_sub(before.rate_limited);
    let no_room = now.ring_full.saturating_sub(before.ring_full);
    if rate_limited + no_room > 0 {
        warn!(
            target: TARGET,
            rate_limited,
            no_room,
            written = now.emitted.saturating_sub(before.emitted),
            "datapath log records suppressed (per-CPU rate limit, or no room in the ring)"
        );
    }
}
