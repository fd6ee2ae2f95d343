//! The Kubernetes source: one watcher each for NetworkPolicies,
//! ClusterNetworkPolicies, Namespaces, Pods (cluster-wide: remote pods
//! feed the ipcache) and Nodes (what ClusterNetworkPolicy `nodes` peers
//! select: labels and `status.addresses`, the rest of a Node dropped as it
//! arrives, so status heartbeats change nothing). Owns the
//! watchers' retry policy, their log while the API is away, and the rule
//! that the agent only ever sees a consistent snapshot.
//!
//! * Each watcher lists, then watches. Lists are paged
//!   ([`KubeOptions::page_size`] objects per request, then `continue`) and
//!   read the most recent state (a quorum read, not the API server's
//!   cache). Watches ask for bookmarks (`allowWatchBookmarks`), so the
//!   resourceVersion a watch resumes from advances while its kind is
//!   quiet, and each watch request ends after
//!   [`KubeOptions::watch_timeout_secs`] and is renewed from that
//!   resourceVersion.
//! * When a watcher fails (the API server unreachable or restarting, a
//!   403), it is started again from a fresh list after a short backoff
//!   (doubling from [`RETRY_MIN`], capped at [`RETRY_MAX`], reset once it
//!   has run [`STABLE_AFTER`]; each wait drawn from its upper half, so
//!   agents cut off together do not relist in step), so a change made
//!   during an outage is enforced soon after the server is back. A
//!   `410 Gone` (the resourceVersion a watch resumes from, or a list's
//!   `continue` token, was compacted away) is no outage: the kind relists
//!   at once (logged at info).
//! * Updates go to the agent only while every kind has completed its
//!   (re)list: changes arriving while any kind is still relisting are held
//!   and sent together once all are current. After a reconnect the agent
//!   therefore never compiles new policies against old pod labels (a mixed
//!   snapshot no state ever had). The first update, marked `synced`, is
//!   sent once every kind has listed (`InitDone`).
//! * While disconnected nothing is sent, so the last compiled state stays
//!   enforced: the agent never flushes maps because the API is away. The
//!   log says so once per kind, then at most every [`REMIND_EVERY`] (or when
//!   the error changes), and once more when the kind is back; a 403 names
//!   the resource and verb the agent's identity lacks, in the log and in
//!   the agent's status problems.
//! * ClusterNetworkPolicy is a CRD a cluster may not have installed: while
//!   its list answers `404 Not Found` the kind counts as current with no
//!   objects (the agent enforces NetworkPolicy alone and says so once) and
//!   the list is retried every [`ABSENT_RECHECK`], so tiers are enforced
//!   soon after the CRD is installed, without a restart. A CRD removed
//!   takes its objects with it, which the same rule follows.
//! * Policy kinds Palisade does not enforce (AdminNetworkPolicy, other
//!   implementations' CRDs) are watched to be reported only
//!   (`kube_unenforced.rs`): they never hold the others back.
//! * `palisade sync` (a rescan request) relists every kind: it is answered
//!   once each kind has completed a list started after the request (a
//!   quorum read), so a change the API server accepted before `sync` is
//!   in the answer's maps. A watch alone gives no such point: its events
//!   may still be on the way.

use std::time::{Duration, Instant};

use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use palisade_compiler::api::ClusterNetworkPolicy;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::{Change, Kind, Object, SourceHandle, SourceProblem, SourceUpdate};
use crate::config::KubeOptions;
use crate::metrics::SourceMetrics;

/// Most watch events folded into one update.
const MAX_BATCH: usize = 1024;
/// First wait before a failed watcher starts again.
pub const RETRY_MIN: Duration = Duration::from_millis(200);
/// Longest wait between attempts: an outage ends at most this long before
/// the agent notices.
pub const RETRY_MAX: Duration = Duration::from_secs(1);
/// While a kind stays disconnected with the same error, how often the log
/// repeats it (other attempts log at debug).
pub const REMIND_EVERY: Duration = Duration::from_secs(10);
/// A watcher counts as working again (backoff reset, "back" logged, its
/// problem cleared) once it has run this long without failing. Not at its
/// list: a role that allows `list` but not `watch` lists fine every time,
/// and must neither reset the backoff (a list storm) nor flap the problem.
pub const STABLE_AFTER: Duration = Duration::from_secs(2);
/// While a kind's resource is not served (its CRD is not installed), how
/// often its list is tried again.
pub const ABSENT_RECHECK: Duration = Duration::from_secs(5);

enum Ev {
    Apply(Object),
    Delete(Object),
    Init,
    InitApply(Object),
    /// The list is complete; it started at relist `generation` (see
    /// [`spawn_observed`]).
    InitDone {
        generation: u64,
    },
    /// The API server does not serve the kind (`404`: its CRD is not
    /// installed) as of relist `generation`; listed again after
    /// [`ABSENT_RECHECK`] or at the next relist request.
    Absent {
        generation: u64,
    },
    /// The watcher failed and is started again after `retry_in`.
    Failed {
        error: watcher::Error,
        retry_in: Duration,
    },
}

type Item = (Kind, Ev);

/// Runs one kind's watcher until the receiver goes: each failure ends the
/// watcher, and a new one (a fresh list) starts after the backoff, so the
/// receiver sees `InitDone` once the kind is current again. A new value of
/// `relist` (a rescan request) ends the watcher too and lists afresh at
/// once.
async fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: Kind,
    wrap: fn(K) -> Object,
    tx: mpsc::Sender<Item>,
    mut relist: tokio::sync::watch::Receiver<u64>,
) where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut delay = RETRY_MIN;
    'restart: loop {
        let generation = *relist.borrow_and_update();
        let started = Instant::now();
        let mut listed = false;
        let mut events = watcher(api.clone(), config.clone()).boxed();
        let error = loop {
            let next = tokio::select! {
                next = events.next() => next,
                changed = relist.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue 'restart;
                }
            };
            let ev = match next {
                Some(Ok(e)) => match e {
                    watcher::Event::Apply(o) => Ev::Apply(wrap(o)),
                    watcher::Event::Delete(o) => Ev::Delete(wrap(o)),
                    watcher::Event::Init => Ev::Init,
                    watcher::Event::InitApply(o) => Ev::InitApply(wrap(o)),
                    watcher::Event::InitDone => {
                        listed = true;
                        Ev::InitDone { generation }
                    }
                },
                Some(Err(e)) if not_served(&e) => {
                    if tx.send((kind, Ev::Absent { generation })).await.is_err() {
                        return;
                    }
                    delay = RETRY_MIN;
                    tokio::select! {
                        _ = tokio::time::sleep(ABSENT_RECHECK) => {}
                        changed = relist.changed() => if changed.is_err() { return },
                    }
                    continue 'restart;
                }
                Some(Err(e)) => {
                    if started.elapsed() >= STABLE_AFTER {
                        delay = RETRY_MIN;
                    }
                    break e;
                }
                // A watcher stream does not end; if it did, list afresh
                // (its `InitDone` replaces the kind's objects).
                None => {
                    tokio::time::sleep(delay).await;
                    continue 'restart;
                }
            };
            if tx.send((kind, ev)).await.is_err() {
                return;
            }
        };
        // A watch that outlived the compaction of its resourceVersion
        // relists at once; a list whose `continue` expired (or a 410 right
        // after a list) backs off, so constant compaction cannot make a
        // list storm.
        let wait = if gone(&error) && listed {
            Duration::ZERO
        } else {
            jittered(delay)
        };
        let failed = Ev::Failed {
            error,
            retry_in: wait,
        };
        if tx.send((kind, failed)).await.is_err() {
            return;
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(RETRY_MAX);
        }
    }
}

/// A wait drawn uniformly from `[d/2, d]`: retries of many agents (or
/// kinds) that failed together spread out instead of hitting the API
/// server in step, and none waits longer than `d`.
fn jittered(d: Duration) -> Duration {
    use std::hash::{BuildHasher as _, Hasher as _};
    // A fresh randomly keyed hasher per call: random enough to spread
    // retries, without a dependency.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    let frac = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    d / 2 + d.mul_f64(frac / 2.0)
}

/// The API server answered `410 Gone`: a watch's resourceVersion or a
/// list's `continue` token is older than the oldest it still has
/// (compacted). Only a fresh list helps.
fn gone(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::WatchError(s) => s.code == 410,
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => s.code == 410,
        _ => false,
    }
}

/// The RBAC resource name of a kind.
fn resource(kind: Kind) -> String {
    match kind {
        Kind::NetworkPolicy => NetworkPolicy::plural(&()).into_owned(),
        Kind::ClusterNetworkPolicy => ClusterNetworkPolicy::plural(&()).into_owned(),
        Kind::Namespace => Namespace::plural(&()).into_owned(),
        Kind::Pod => Pod::plural(&()).into_owned(),
        Kind::Node => Node::plural(&()).into_owned(),
        Kind::Unenforced => "unenforced policies".into(),
    }
}

/// The list failed because the API server does not serve the resource at
/// all (`404` on the list: a CRD not installed).
pub(super) fn not_served(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 404)
}

/// A 403 from the API server: the agent's identity may not list or watch.
pub(super) fn forbidden(error: &watcher::Error) -> Option<&str> {
    let e = match error {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => e,
        watcher::Error::WatchError(s) if s.code == 403 => return Some(&s.message),
        _ => return None,
    };
    match e {
        kube::Error::Api(s) if s.code == 403 => Some(&s.message),
        _ => None,
    }
}

/// Per-kind watcher state.
#[derive(Default)]
struct KindState {
    /// Objects listed since the current `Init`.
    buffer: Option<Vec<Object>>,
    /// Its last list completed and no failure came since.
    ready: bool,
    /// Since when it has been failing, attempts, the last error logged at
    /// warn and when.
    down: Option<Down>,
    /// Its current 403, as a status problem.
    problem: Option<SourceProblem>,
    /// When it last failed.
    last_failure: Option<Instant>,
    /// Its resource is not served (the CRD is not installed).
    absent: bool,
    /// The relist generation of its last completed list (or "not served"
    /// answer).
    generation: u64,
}

struct Down {
    since: Instant,
    attempts: u32,
    logged: String,
    logged_at: Instant,
}

/// Folds watcher events into changes; owns the readiness bookkeeping.
struct Folder {
    /// The state of each kind of [`WATCHED`].
    kinds: std::collections::BTreeMap<Kind, KindState>,
    metrics: Option<SourceMetrics>,
    /// The problems last sent.
    problems_sent: Vec<String>,
}

impl Default for Folder {
    fn default() -> Self {
        Folder {
            kinds: WATCHED.iter().map(|k| (*k, KindState::default())).collect(),
            metrics: None,
            problems_sent: Vec::new(),
        }
    }
}

impl Folder {
    fn fold(&mut self, kind: Kind, ev: Ev, out: &mut Vec<Change>) {
        let metrics = self.metrics.clone();
        let st = self.kinds.entry(kind).or_default();
        match ev {
            Ev::Apply(o) => out.push(Change::Upsert(o)),
            Ev::Delete(o) => out.push(Change::Delete(o.key())),
            Ev::Init => {
                debug!(%kind, "list started");
                st.buffer = Some(Vec::new());
            }
            Ev::InitApply(o) => st.buffer.get_or_insert_with(Vec::new).push(o),
            Ev::Absent { generation } => {
                st.generation = generation;
                if !st.absent {
                    warn!(%kind, resource = %resource(kind),
                          "{kind} is not served by the API server (its CRD is not installed): \
                           enforcing NetworkPolicy only; {kind} objects are enforced as soon \
                           as the CRD is installed");
                }
                st.buffer = None;
                st.ready = true;
                // Rechecked every few seconds: only the first answer
                // empties the kind (later ones would change nothing).
                if !std::mem::replace(&mut st.absent, true) {
                    out.push(Change::Replace {
                        kind,
                        objects: Vec::new(),
                    });
                }
            }
            Ev::InitDone { generation } => {
                st.generation = generation;
                let objects = st.buffer.take().unwrap_or_default();
                if std::mem::take(&mut st.absent) {
                    info!(%kind, objects = objects.len(), "{kind} is served now: enforcing it");
                }
                if st.down.is_some() {
                    // "Back" is logged once it stays up (see `settle`).
                    debug!(%kind, objects = objects.len(), "relisted after a failure");
                } else {
                    info!(%kind, objects = objects.len(), "list complete");
                }
                if let Some(m) = &metrics {
                    m.relisted(kind);
                }
                st.ready = true;
                out.push(Change::Replace { kind, objects });
            }
            Ev::Failed { error, retry_in } => {
                st.ready = false;
                st.buffer = None;
                if let Some(m) = &metrics {
                    m.failed(kind);
                }
                if gone(&error) {
                    // Compaction overtook this watch or list: no outage,
                    // the kind relists and is current again.
                    info!(%kind, resource = %resource(kind),
                          retry_in_ms = retry_in.as_millis() as u64, %error,
                          "resourceVersion expired (410 Gone): relisting {kind}");
                    return;
                }
                st.last_failure = Some(Instant::now());
                let text = error.to_string();
                let now = Instant::now();
                let first = st.down.is_none();
                let d = st.down.get_or_insert_with(|| Down {
                    since: now,
                    attempts: 0,
                    logged: String::new(),
                    logged_at: now,
                });
                d.attempts += 1;
                let log = first || d.logged != text || d.logged_at.elapsed() >= REMIND_EVERY;
                if let Some(message) = forbidden(&error) {
                    let res = resource(kind);
                    let p = SourceProblem {
                        stale: true,
                        origin: format!("Kubernetes {res}"),
                        message: format!(
                            "forbidden: this agent may not list and watch {res} cluster-wide \
                             (its ClusterRole needs verbs {WATCH_VERBS:?} on {res}; see \
                             deploy/rbac.yaml): {message}"
                        ),
                    };
                    if log {
                        error!(%kind, resource = %res, attempts = d.attempts,
                               retry_in_ms = retry_in.as_millis() as u64,
                               "cannot watch {res}: {}", p.message);
                    }
                    st.problem = Some(p);
                } else if log {
                    warn!(%kind, resource = %resource(kind), attempts = d.attempts,
                          down_ms = d.since.elapsed().as_millis() as u64,
                          retry_in_ms = retry_in.as_millis() as u64, %error,
                          "Kubernetes watch failed; the last state stays enforced, retrying");
                } else {
                    debug!(%kind, attempts = d.attempts, %error, "Kubernetes watch failed again");
                }
                if log {
                    d.logged = text;
                    d.logged_at = now;
                }
            }
        }
    }

    /// Kinds that have run [`STABLE_AFTER`] without failing since they
    /// were down: logged as back, their problem cleared.
    fn settle(&mut self) {
        for (kind, st) in self.kinds.iter_mut() {
            let stable = st.ready && st.last_failure.is_some_and(|t| t.elapsed() >= STABLE_AFTER);
            if !stable {
                continue;
            }
            if let Some(d) = st.down.take() {
                info!(
                    %kind,
                    attempts = d.attempts,
                    down_ms = d.since.elapsed().saturating_sub(STABLE_AFTER).as_millis() as u64,
                    "Kubernetes watch back"
                );
            }
            st.problem = None;
        }
    }

    fn ready(&self) -> bool {
        self.kinds.values().all(|k| k.ready)
    }

    /// The relist generation every kind has completed.
    fn generation(&self) -> u64 {
        self.kinds.values().map(|k| k.generation).min().unwrap_or(0)
    }

    /// The current problems, if they changed since last sent.
    fn problems(&mut self) -> Option<Vec<SourceProblem>> {
        let now: Vec<SourceProblem> = self
            .kinds
            .values()
            .filter_map(|k| k.problem.clone())
            .collect();
        let text: Vec<String> = now.iter().map(ToString::to_string).collect();
        if text == self.problems_sent {
            return None;
        }
        self.problems_sent = text;
        Some(now)
    }
}

/// The kinds the watchers follow, cluster-wide.
pub const WATCHED: [Kind; 5] = [
    Kind::NetworkPolicy,
    Kind::ClusterNetworkPolicy,
    Kind::Namespace,
    Kind::Pod,
    Kind::Node,
];
/// The API verbs a watcher uses: its (re)list and its watch. With
/// [`WATCHED`] this is all the agent asks of the API server; the
/// deployment's RBAC rules are tested against [`api_access`].
pub const WATCH_VERBS: [&str; 2] = ["list", "watch"];

/// Every (API group, resource, verb) the watchers request, as RBAC names
/// them (the core group is `""`).
pub fn api_access() -> Vec<(String, String, &'static str)> {
    fn names<K: Resource<DynamicType = ()>>() -> (String, String) {
        (K::group(&()).into_owned(), K::plural(&()).into_owned())
    }
    WATCHED
        .iter()
        .flat_map(|kind| {
            let (group, resource) = match kind {
                Kind::NetworkPolicy => names::<NetworkPolicy>(),
                Kind::ClusterNetworkPolicy => names::<ClusterNetworkPolicy>(),
                Kind::Namespace => names::<Namespace>(),
                Kind::Pod => names::<Pod>(),
                Kind::Node => names::<Node>(),
                Kind::Unenforced => return None,
            };
            Some(WATCH_VERBS.map(|verb| (group.clone(), resource.clone(), verb)))
        })
        .flatten()
        .chain(
            super::kube_unenforced::RESOURCES
                .iter()
                .flat_map(|(group, _, plural, _)| {
                    WATCH_VERBS.map(|verb| (group.to_string(), plural.to_string(), verb))
                }),
        )
        .collect()
}

/// The watcher configuration of `opts`: most recent (quorum) paged lists,
/// bookmarks, the watch timeout.
fn watcher_config(opts: KubeOptions) -> watcher::Config {
    let mut c = watcher::Config::default()
        .page_size(opts.page_size)
        .timeout(opts.watch_timeout_secs);
    c.list_semantic = watcher::ListSemantic::MostRecent;
    c.bookmarks = true;
    c
}

fn watch_kind(
    client: Client,
    opts: KubeOptions,
    kind: Kind,
    tx: mpsc::Sender<Item>,
    relist: tokio::sync::watch::Receiver<u64>,
) {
    let config = watcher_config(opts);
    match kind {
        Kind::NetworkPolicy => tokio::spawn(watch(
            Api::<NetworkPolicy>::all(client),
            config,
            kind,
            Object::policy,
            tx,
            relist,
        )),
        Kind::Namespace => tokio::spawn(watch(
            Api::<Namespace>::all(client),
            config,
            kind,
            Object::namespace,
            tx,
            relist,
        )),
        Kind::ClusterNetworkPolicy => tokio::spawn(watch(
            Api::<ClusterNetworkPolicy>::all(client),
            config,
            kind,
            Object::cluster_policy,
            tx,
            relist,
        )),
        Kind::Pod => tokio::spawn(watch(
            Api::<Pod>::all(client),
            config,
            kind,
            Object::pod,
            tx,
            relist,
        )),
        Kind::Node => tokio::spawn(watch(
            Api::<Node>::all(client),
            config,
            kind,
            Object::node,
            tx,
            relist,
        )),
        // Not watched (see `WATCHED`).
        Kind::Unenforced => return,
    };
}

/// Starts the watchers of [`WATCHED`] on `client` (default options).
pub fn spawn(client: Client) -> SourceHandle {
    spawn_observed(client, KubeOptions::default(), None)
}

/// [`spawn`] with `opts`, counting failures and relists in `metrics`.
pub fn spawn_observed(
    client: Client,
    opts: KubeOptions,
    metrics: Option<SourceMetrics>,
) -> SourceHandle {
    let (events_tx, mut events) = mpsc::channel::<Item>(256);
    // Policy kinds only reported: their changes never wait for a relist.
    let (unenforced_tx, mut unenforced) = mpsc::unbounded_channel::<Change>();
    super::kube_unenforced::spawn(client.clone(), watcher_config(opts), unenforced_tx.clone());
    // Each rescan request bumps the generation: every kind lists afresh.
    let (relist_tx, relist) = tokio::sync::watch::channel(0u64);
    for kind in WATCHED {
        watch_kind(
            client.clone(),
            opts,
            kind,
            events_tx.clone(),
            relist.clone(),
        );
    }
    drop(events_tx);
    let (tx, updates) = mpsc::channel(16);
    let (rescan, mut rescan_rx) = mpsc::unbounded_channel::<u64>();
    tokio::spawn(async move {
        // Keeps the channel open (a closed one would always be ready).
        let _unenforced_tx = unenforced_tx;
        let mut folder = Folder {
            metrics,
            ..Folder::default()
        };
        // Rescan tokens with the relist generation that answers them.
        let mut waiting: Vec<(u64, u64)> = Vec::new();
        let mut generation = 0u64;
        // Changes not sent yet because some kind is (re)listing.
        let mut held: Vec<Change> = Vec::new();
        let mut sent_synced = false;
        let mut tick = tokio::time::interval(STABLE_AFTER / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => folder.settle(),
                item = events.recv() => {
                    let Some(first) = item else { return };
                    let mut n = 0;
                    let mut next = Some(first);
                    while let Some((kind, ev)) = next.take() {
                        folder.fold(kind, ev, &mut held);
                        n += 1;
                        if n < MAX_BATCH {
                            next = events.recv().now_or_never().flatten();
                        }
                    }
                }
                c = unenforced.recv() => held.extend(c),
                t = rescan_rx.recv() => match t {
                    Some(t) => {
                        generation += 1;
                        let _ = relist_tx.send(generation);
                        waiting.push((t, generation));
                    }
                    None => return,
                },
            }
            let synced = folder.ready();
            let problems = folder.problems();
            if !synced {
                // Hold every change until all kinds are current: never a
                // mixed snapshot. Problems (a 403) are reported at once.
                if problems.is_some() {
                    let update = SourceUpdate {
                        problems,
                        ..SourceUpdate::default()
                    };
                    if tx.send(update).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            // The requests every kind has relisted for are answered.
            let listed = folder.generation();
            let answered = waiting
                .iter()
                .filter(|(_, g)| *g <= listed)
                .map(|(t, _)| *t)
                .max();
            waiting.retain(|(_, g)| *g > listed);
            if held.is_empty() && answered.is_none() && problems.is_none() && sent_synced {
                continue;
            }
            if sent_synced && held.iter().any(|c| matches!(c, Change::Replace { .. })) {
                info!(
                    changes = held.len(),
                    "all Kubernetes watchers current again; applying"
                );
            }
            if let Some(m) = &folder.metrics {
                m.synced();
            }
            let update = SourceUpdate {
                changes: std::mem::take(&mut held),
                synced,
                token: answered,
                problems,
            };
            sent_synced = true;
            if tx.send(update).await.is_err() {
                return;
            }
        }
    });
    SourceHandle { updates, rescan }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_jittered_within_the_upper_half() {
        for d in [RETRY_MIN, RETRY_MAX, Duration::from_millis(400)] {
            let waits: Vec<Duration> = (0..64).map(|_| jittered(d)).collect();
            assert!(
                waits.iter().all(|w| *w >= d / 2 && *w <= d),
                "{d:?}: {waits:?}"
            );
            let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
            assert!(distinct.len() > 32, "{d:?}: barely random: {waits:?}");
            // Spread over the range, not bunched at one end.
            let low = waits.iter().filter(|w| **w < d * 3 / 4).count();
            assert!(
                (8..=56).contains(&low),
                "{d:?}: {low} of 64 in the lower quarter"
            );
        }
    }

    fn status(code: u16) -> Box<kube::core::Status> {
        Box::new(kube::core::Status {
            code,
            message: "too old resource version: 5 (9)".into(),
            ..Default::default()
        })
    }

    #[test]
    fn gone_is_told_from_other_failures() {
        assert!(gone(&watcher::Error::WatchError(status(410))));
        assert!(gone(&watcher::Error::InitialListFailed(kube::Error::Api(
            status(410)
        ))));
        assert!(!gone(&watcher::Error::WatchError(status(500))));
        assert!(!gone(&watcher::Error::InitialListFailed(kube::Error::Api(
            status(403)
        ))));
    }

    #[test]
    fn the_watcher_pages_asks_for_bookmarks_and_reads_the_latest() {
        let c = watcher_config(KubeOptions {
            page_size: 2,
            watch_timeout_secs: 7,
        });
        assert_eq!(c.page_size, Some(2));
        assert_eq!(c.timeout, Some(7));
        assert!(c.bookmarks);
        assert_eq!(c.list_semantic, watcher::ListSemantic::MostRecent);
    }

    /// A rescan is answered once every kind has listed since: the
    /// generation is the least any kind has completed; a kind not served
    /// counts as listed.
    #[test]
    fn the_relist_generation_is_the_slowest_kinds() {
        let mut f = Folder::default();
        let mut out = Vec::new();
        for kind in WATCHED {
            f.fold(kind, Ev::InitDone { generation: 0 }, &mut out);
        }
        assert_eq!(f.generation(), 0);
        for kind in [Kind::NetworkPolicy, Kind::Namespace] {
            f.fold(kind, Ev::Init, &mut out);
            f.fold(kind, Ev::InitDone { generation: 1 }, &mut out);
        }
        assert_eq!(f.generation(), 0, "pods have not listed again");
        f.fold(
            Kind::ClusterNetworkPolicy,
            Ev::Absent { generation: 2 },
            &mut out,
        );
        f.fold(Kind::Pod, Ev::InitDone { generation: 2 }, &mut out);
        assert_eq!(f.generation(), 0, "nodes have not listed again");
        f.fold(Kind::Node, Ev::InitDone { generation: 1 }, &mut out);
        assert_eq!(f.generation(), 1);
        assert!(f.ready());
    }

    /// A 410 is no outage: the kind is not current until it has relisted,
    /// but it is not reported down and its relist is not delayed.
    #[test]
    fn gone_relists_without_an_outage() {
        let mut f = Folder::default();
        let mut out = Vec::new();
        for kind in WATCHED {
            f.fold(kind, Ev::Init, &mut out);
            f.fold(kind, Ev::InitDone { generation: 0 }, &mut out);
        }
        assert!(f.ready());
        f.fold(
            Kind::Pod,
            Ev::Failed {
                error: watcher::Error::WatchError(status(410)),
                retry_in: Duration::ZERO,
            },
            &mut out,
        );
        assert!(!f.ready(), "held until the relist completes");
        assert!(f.kinds[&Kind::Pod].down.is_none());
        assert!(f.problems().is_none());
        f.fold(Kind::Pod, Ev::Init, &mut out);
        f.fold(Kind::Pod, Ev::InitDone { generation: 0 }, &mut out);
        assert!(f.ready());
    }
}
