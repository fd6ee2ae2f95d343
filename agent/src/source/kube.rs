//! The Kubernetes source: one watcher each for NetworkPolicies, Namespaces
//! and Pods (cluster-wide: remote pods feed the ipcache), with kube's
//! default backoff. The first update marked `synced` is sent once all three
//! have finished their initial list (`InitDone`); a relist (watch restart
//! after `410 Gone` or a reconnection) replaces that kind's objects
//! atomically at its `InitDone`. While the API is unreachable nothing is
//! sent, so the last compiled state stays enforced: the agent never
//! flushes maps because the API is away.

use futures::stream::{BoxStream, SelectAll};
use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, Resource};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{Change, Kind, Object, SourceHandle, SourceUpdate};

/// Most watch events folded into one update.
const MAX_BATCH: usize = 1024;

enum Ev {
    Apply(Object),
    Delete(Object),
    Init,
    InitApply(Object),
    InitDone,
}

type Item = (Kind, Result<Ev, watcher::Error>);

fn watch<K>(api: Api<K>, kind: Kind, wrap: fn(K) -> Object) -> BoxStream<'static, Item>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .map(move |r| {
            let ev = r.map(|e| match e {
                watcher::Event::Apply(o) => Ev::Apply(wrap(o)),
                watcher::Event::Delete(o) => Ev::Delete(wrap(o)),
                watcher::Event::Init => Ev::Init,
                watcher::Event::InitApply(o) => Ev::InitApply(wrap(o)),
                watcher::Event::InitDone => Ev::InitDone,
            });
            (kind, ev)
        })
        .boxed()
}

/// Per-kind watcher state.
#[derive(Default)]
struct KindState {
    /// Objects listed since the current `Init`.
    buffer: Option<Vec<Object>>,
    /// An `InitDone` was seen.
    ready: bool,
}

/// Folds watcher events into changes; owns the readiness bookkeeping.
#[derive(Default)]
struct Folder {
    kinds: [KindState; 3],
}

fn index(kind: Kind) -> usize {
    match kind {
        Kind::Namespace => 0,
        Kind::Pod => 1,
        Kind::NetworkPolicy => 2,
    }
}

impl Folder {
    fn fold(&mut self, kind: Kind, ev: Ev, out: &mut Vec<Change>) {
        let st = &mut self.kinds[index(kind)];
        match ev {
            Ev::Apply(o) => out.push(Change::Upsert(o)),
            Ev::Delete(o) => out.push(Change::Delete(o.key())),
            Ev::Init => {
                debug!(%kind, "list started");
                st.buffer = Some(Vec::new());
            }
            Ev::InitApply(o) => st.buffer.get_or_insert_with(Vec::new).push(o),
            Ev::InitDone => {
                let objects = st.buffer.take().unwrap_or_default();
                info!(%kind, objects = objects.len(), "list complete");
                st.ready = true;
                out.push(Change::Replace { kind, objects });
            }
        }
    }

    fn ready(&self) -> bool {
        self.kinds.iter().all(|k| k.ready)
    }
}

/// The kinds the watchers follow, cluster-wide.
pub const WATCHED: [Kind; 3] = [Kind::NetworkPolicy, Kind::Namespace, Kind::Pod];
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
                Kind::Namespace => names::<Namespace>(),
                Kind::Pod => names::<Pod>(),
            };
            WATCH_VERBS.map(|verb| (group.clone(), resource.clone(), verb))
        })
        .collect()
}

fn watch_kind(client: Client, kind: Kind) -> BoxStream<'static, Item> {
    match kind {
        Kind::NetworkPolicy => watch(Api::<NetworkPolicy>::all(client), kind, Object::policy),
        Kind::Namespace => watch(Api::<Namespace>::all(client), kind, Object::namespace),
        Kind::Pod => watch(Api::<Pod>::all(client), kind, Object::pod),
    }
}

/// Starts the watchers of [`WATCHED`] on `client`.
pub fn spawn(client: Client) -> SourceHandle {
    let mut streams: SelectAll<BoxStream<'static, Item>> = SelectAll::new();
    for kind in WATCHED {
        streams.push(watch_kind(client.clone(), kind));
    }
    let (tx, updates) = mpsc::channel(16);
    let (rescan, mut rescan_rx) = mpsc::unbounded_channel::<u64>();
    tokio::spawn(async move {
        let mut folder = Folder::default();
        let mut waiting: Vec<u64> = Vec::new();
        loop {
            let mut changes = Vec::new();
            tokio::select! {
                item = streams.next() => {
                    let Some(first) = item else { return };
                    let mut n = 0;
                    let mut next = Some(first);
                    while let Some((kind, r)) = next.take() {
                        match r {
                            Ok(ev) => folder.fold(kind, ev, &mut changes),
                            Err(error) => {
                                // The watcher retries with backoff (and relists
                                // after 410 Gone); the last state stays in force.
                                warn!(%kind, %error, "Kubernetes watch error; retrying");
                            }
                        }
                        n += 1;
                        if n < MAX_BATCH {
                            next = streams.next().now_or_never().flatten();
                        }
                    }
                }
                t = rescan_rx.recv() => match t {
                    Some(t) => waiting.push(t),
                    None => return,
                },
            }
            let synced = folder.ready();
            if changes.is_empty() && (!synced || waiting.is_empty()) {
                continue;
            }
            // Every rescan request waiting is answered by the first update
            // sent once synced (the watch already delivers current state).
            let token = if synced {
                waiting.drain(..).max()
            } else {
                None
            };
            let update = SourceUpdate {
                changes,
                synced,
                token,
                problems: None,
            };
            if tx.send(update).await.is_err() {
                return;
            }
        }
    });
    SourceHandle { updates, rescan }
}
