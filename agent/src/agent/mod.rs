//! The node agent: one task owning the compiler, the datapath and the
//! local endpoints, driven by source updates, netlink events and control
//! requests. At startup it adopts pinned maps and links, compiles once the
//! source is in sync, reconciles the maps by diff (never a flush), and then
//! applies every later commit's ordered diff. Each round that commits logs
//! the time of its phases at debug level (target `palisade::round`).

mod allowed_sources;
mod bpffs;
mod cni;
mod cni_records;
mod commit;
mod endpoints;
mod error;
mod feed;
mod graph;
mod observe;
mod sources;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use palisade_common::{Config, config_flags};
use palisade_compiler::Compiler;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

pub use allowed_sources::ALLOWED_SOURCES_ANNOTATION;
pub use bpffs::{explain_not_bpffs, is_bpffs};
pub use error::AgentError;

use crate::config::{AgentConfig, SourceConfig};
use crate::control::{self, Call, Request, Response};
use crate::datapath::{AttachMode, Datapath, DatapathLog, LoadOptions};
use crate::dirs;
use crate::maps::{Mirror, read_state};
use crate::net::{self, NetSnapshot};
use crate::numbering::NumberRecord;
use crate::source::{self, SourceHandle, SourceProblem, SourceUpdate};
use allowed_sources::AllowedSources;
use cni_records::Records;
use endpoints::{Endpoints, Io};
use feed::Feed;

/// The agent's state.
pub struct Agent {
    cfg: AgentConfig,
    dp: Datapath,
    compiler: Compiler,
    /// The record of the compiler's numbering (and the revision).
    numbers: NumberRecord,
    /// What the maps hold (read at startup, then kept by every write).
    mirror: Mirror,
    feed: Feed,
    /// The namespaces' allowed source prefixes, as of this round.
    allowed_sources: AllowedSources,
    endpoints: Endpoints,
    net: NetSnapshot,
    nl: rtnetlink::Handle,
    net_dirty: bool,
    host: BTreeSet<IpAddr>,
    /// The source has been read completely at least once.
    synced: bool,
    /// The next commit must reconcile the whole state against the maps
    /// (first sync, or after a failed write).
    needs_full: bool,
    config: Config,
    ready: Arc<AtomicBool>,
    problems: Vec<SourceProblem>,
    rescan: mpsc::UnboundedSender<u64>,
    next_token: u64,
    applied_token: u64,
    sync_waiters: Vec<(u64, oneshot::Sender<Response>)>,
    cni_waiters: Vec<cni::Waiter>,
    replies: Vec<(oneshot::Sender<Response>, Response)>,
    last_error: Option<String>,
    obs: observe::Observe,
    /// Time spent feeding source changes to the compiler since the last
    /// round (reported with the round's phases).
    fed: std::time::Duration,
    /// Rounds that changed nothing since the last reported one, and
    /// their time.
    idle: (u64, std::time::Duration),
}

fn state_path(cfg: &AgentConfig) -> std::path::PathBuf {
    NumberRecord::path(&cfg.state_dir)
}

/// Starts the agent and runs it until SIGTERM/SIGINT. Enforcement stays in
/// place when it stops (maps and links are pinned).
pub async fn run(cfg: AgentConfig) -> Result<(), AgentError> {
    let dir_err = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| AgentError::Dir { path, source }
    };
    // Fail closed: nothing is read from, or bound in, a directory others
    // could write (`crate::dirs`).
    let as_root = dirs::running_as_root();
    if let SourceConfig::Manifests(dir) = &cfg.source {
        dirs::check("--manifests", dir, as_root)?;
    }
    dirs::ensure_private("--state-dir", &cfg.state_dir, as_root)?;
    if let Some(dir) = cfg.socket.parent() {
        dirs::ensure_private("--socket", dir, as_root)?;
    }
    if !is_bpffs(&cfg.bpffs_dir) {
        return Err(AgentError::NotBpffs {
            dir: cfg.bpffs_dir.clone(),
            found: bpffs::explain_not_bpffs(&cfg.bpffs_dir),
        });
    }
    let listener = control::bind(&cfg.socket)?;
    let health = match cfg.health_addr {
        Some(addr) => Some(
            crate::health::bind(addr)
                .await
                .map_err(|source| AgentError::Health { addr, source })?,
        ),
        None => None,
    };

    let mut dp = Datapath::load(&LoadOptions {
        pin_dir: Some(cfg.bpffs_dir.clone()),
        datapath_log: cfg.datapath_log,
        ..Default::default()
    })?;
    let datapath_log = if cfg.datapath_log == DatapathLog::Off {
        None
    } else {
        Some(tokio::spawn(dp.take_logger()?.run()))
    };
    let links_dir = cfg.links_dir();
    std::fs::create_dir_all(&links_dir).map_err(dir_err(&links_dir))?;
    let mirror = read_state(&dp.maps)?;
    let (numbers, recorded) = NumberRecord::load(&state_path(&cfg))?;
    let records = Records::load(&Records::path(&cfg.state_dir))?;
    info!(
        node = %cfg.node_name,
        pins = %cfg.bpffs_dir.display(),
        endpoints = mirror.tables.endpoints.len(),
        policy_entries = mirror.tables.policy.len(),
        known_numbers = recorded.len(),
        revision = numbers.revision,
        cni_sandboxes = records.iter().count(),
        "datapath loaded; pinned maps adopted"
    );
    let mut config = dp.maps.config.get(&0, 0).unwrap_or_default();
    config.flags = 0;
    if cfg.enforce_host {
        config.flags |= config_flags::ENFORCE_HOST;
    }
    if cfg.ct_revalidate {
        config.flags |= config_flags::CT_REVALIDATE;
    }
    config.flags |= cfg.source_verification.config_flags();
    dp.maps.set_config(&config)?;

    let (nl, mut net_rx) = net::monitor()?;
    let snap = net::snapshot(&nl).await?;
    let mut compiler = Compiler::new(cfg.node_name.clone());
    // One numbering: the pinned maps' numbers keep their meanings, and
    // numbers they hold without a recorded meaning are never reused while
    // they may still be there.
    compiler.remember_numbering(recorded);
    compiler.reserve_numbers(&mirror.tables);
    compiler.set_host_addresses(snap.addresses.iter().copied().collect());
    compiler.set_audit_all(cfg.audit);
    let obs = observe::Observe::start(&cfg);

    let SourceHandle {
        updates: mut src,
        rescan,
    } = match &cfg.source {
        SourceConfig::Manifests(dir) => {
            source::manifests::spawn(dir.clone()).map_err(|source| AgentError::Watch {
                path: dir.clone(),
                source,
            })?
        }
        SourceConfig::Kubernetes => {
            let client = kube::Client::try_default()
                .await
                .map_err(AgentError::Kube)?;
            source::kube::spawn_observed(client, cfg.kube, Some(obs.metrics.agent.source.clone()))
        }
    };
    let (calls_tx, mut calls) = mpsc::channel::<Call>(64);
    let server = tokio::spawn(control::serve(listener, calls_tx, Some(obs.hub.clone())));
    let ready = Arc::new(AtomicBool::new(false));
    let health_task = health.map(|l| {
        tokio::spawn(crate::health::serve(
            l,
            ready.clone(),
            Some(obs.metrics.clone()),
        ))
    });

    let mut agent = Agent {
        endpoints: Endpoints::new(links_dir, AttachMode::detect()),
        cfg,
        dp,
        compiler,
        numbers,
        mirror,
        feed: Feed::new(records),
        allowed_sources: AllowedSources::default(),
        host: snap.addresses.clone(),
        net: snap,
        nl,
        net_dirty: false,
        synced: false,
        needs_full: true,
        config,
        ready,
        problems: Vec::new(),
        rescan,
        next_token: 1,
        applied_token: 0,
        sync_waiters: Vec::new(),
        cni_waiters: Vec::new(),
        replies: Vec::new(),
        last_error: None,
        obs,
        fed: std::time::Duration::ZERO,
        idle: (0, std::time::Duration::ZERO),
    };

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(dir_err(std::path::Path::new("SIGTERM handler")))?;
    let result = loop {
        let wake = agent.next_deadline();
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: stopping; enforcement stays in place"); break Ok(()) }
            _ = tokio::signal::ctrl_c() => { info!("SIGINT: stopping; enforcement stays in place"); break Ok(()) }
            u = src.recv() => match u {
                Some(u) => agent.on_source(u),
                None => break Err(AgentError::SourceEnded),
            },
            t = net_rx.recv() => if t.is_some() { agent.net_dirty = true },
            c = calls.recv() => if let Some((req, reply)) = c { agent.on_call(req, reply) },
            _ = tokio::time::sleep_until(wake) => {}
        }
        // Fold whatever else is already queued into the same step.
        while let Ok(u) = src.try_recv() {
            agent.on_source(u);
        }
        while let Ok((req, reply)) = calls.try_recv() {
            agent.on_call(req, reply);
        }
        agent.step().await;
    };
    server.abort();
    if let Some(h) = datapath_log {
        h.abort();
    }
    if let Some(h) = health_task {
        h.abort();
    }
    let _ = std::fs::remove_file(&agent.cfg.socket);
    if let Err(e) = agent.numbers.save(&state_path(&agent.cfg), &agent.compiler) {
        error!(error = %e, "saving the allocation table");
    }
    result
}

impl Agent {
    /// The endpoints and what they work on, borrowed apart.
    fn parts(&mut self) -> (&mut Endpoints, Io<'_>) {
        (
            &mut self.endpoints,
            Io {
                dp: &mut self.dp,
                mirror: &mut self.mirror,
                net: &self.net,
                records: self.feed.records(),
                allowed: &self.allowed_sources,
            },
        )
    }

    fn on_source(&mut self, u: SourceUpdate) {
        if !u.changes.is_empty() {
            self.obs.note_change();
        }
        let t = std::time::Instant::now();
        for change in u.changes {
            self.feed.apply(&mut self.compiler, change);
        }
        self.fed += t.elapsed();
        if u.synced && !self.synced {
            info!("source in sync");
        }
        self.synced |= u.synced;
        if let Some(p) = u.problems {
            self.problems = p;
        }
        if let Some(t) = u.token {
            self.applied_token = self.applied_token.max(t);
        }
    }

    fn on_call(&mut self, req: Request, reply: oneshot::Sender<Response>) {
        match req {
            Request::Sync => {
                // Re-read links and routes too: a pod created just before
                // the sync must find its interface in this round.
                self.net_dirty = true;
                let token = self.next_token;
                self.next_token += 1;
                if self.rescan.send(token).is_err() {
                    let _ = reply.send(Response::error("the object source stopped"));
                    return;
                }
                self.sync_waiters.push((token, reply));
            }
            Request::Status => {
                let r = self.status();
                let _ = reply.send(r);
            }
            Request::CniAdd(a) => self.cni_add(a, reply),
            Request::CniDel(a) => self.cni_del(a, reply),
            Request::CniCheck(a) => self.cni_check(a, reply),
            Request::Endpoints => {
                let _ = reply.send(self.endpoints_answer());
            }
            Request::PolicyGet { namespace, name } => {
                let _ = reply.send(self.policy_answer(&namespace, &name));
            }
            Request::ClusterPolicyGet { name } => {
                let _ = reply.send(self.cluster_policy_answer(&name));
            }
            Request::Explain(r) => {
                let _ = reply.send(self.explain_answer(&r));
            }
            Request::Graph(r) => {
                let _ = reply.send(self.graph_answer(&r));
            }
            // Served by the control socket itself (streams).
            Request::Monitor(_) => {
                let _ = reply.send(Response::error("monitor is a stream"));
            }
        }
    }

    fn all_problems(&self) -> Vec<String> {
        let mut p: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        p.extend(self.compiler.rejections().values().map(ToString::to_string));
        p
    }

    fn status(&self) -> Response {
        Response {
            ok: true,
            revision: Some(self.numbers.revision),
            synced: Some(self.synced && !self.needs_full),
            endpoints: self.endpoints.status(),
            problems: self.all_problems(),
            error: self.last_error.clone(),
            ..Default::default()
        }
    }

    async fn refresh_net(&mut self) {
        if !self.net_dirty {
            return;
        }
        self.net_dirty = false;
        match net::snapshot(&self.nl).await {
            Ok(s) => {
                if s.addresses != self.host {
                    info!(addresses = ?s.addresses, "node addresses changed");
                    self.host = s.addresses.clone();
                    self.compiler
                        .set_host_addresses(s.addresses.iter().copied().collect());
                }
                self.net = s;
            }
            Err(error) => {
                warn!(%error, "reading links and routes failed; retrying on the next event");
                self.net_dirty = true;
            }
        }
    }

    /// One round: read the kernel's view if it changed, commit and apply,
    /// place endpoints, answer whoever waits.
    async fn step(&mut self) {
        let t0 = std::time::Instant::now();
        self.refresh_net().await;
        self.expire_cni_records();
        self.allowed_sources.update(self.feed.namespaces());
        let t_pre = t0.elapsed();
        let mut committed = None;
        if self.synced {
            let (t, before) = (std::time::Instant::now(), self.numbers.revision);
            match self.commit() {
                Ok(()) => {
                    self.last_error = None;
                    committed = Some((true, t.elapsed(), before));
                }
                Err(e) => {
                    error!(error = %e, "applying the policy to the maps failed; will reconcile fully");
                    self.last_error = Some(e.to_string());
                    self.needs_full = true;
                    committed = Some((false, t.elapsed(), before));
                }
            }
            if !self.needs_full {
                // Not ready while a source cannot follow changes (a role
                // that lists but may not watch): what is enforced may be
                // out of date. `palisade status` names the resource.
                let stale = self.problems.iter().any(|p| p.stale);
                self.ready.store(!stale, Ordering::Relaxed);
            }
        }
        let t1 = std::time::Instant::now();
        self.cni_progress();
        self.sync_sources();
        let t2 = std::time::Instant::now();
        self.observe_round(committed);
        let t3 = std::time::Instant::now();
        self.answer_syncs();
        for (tx, r) in self.replies.drain(..) {
            let _ = tx.send(r);
        }
        let fed = std::mem::take(&mut self.fed);
        if let Some((_, took, before)) = committed
            && before != self.numbers.revision
        {
            tracing::debug!(
                target: "palisade::round",
                fed_us = fed.as_micros() as u64,
                pre_us = t_pre.as_micros() as u64,
                commit_us = took.as_micros() as u64,
                sources_us = (t2 - t1).as_micros() as u64,
                observe_us = (t3 - t2).as_micros() as u64,
                total_us = (t0.elapsed() + fed).as_micros() as u64,
                idle_rounds = self.idle.0,
                idle_us = self.idle.1.as_micros() as u64,
                "round"
            );
            self.idle = (0, std::time::Duration::ZERO);
        } else {
            self.idle.0 += 1;
            self.idle.1 += t0.elapsed();
        }
    }

    fn answer_syncs(&mut self) {
        if !self.synced || self.needs_full && self.last_error.is_none() {
            return;
        }
        let applied = self.applied_token;
        let problems = self.all_problems();
        let mut keep = Vec::new();
        for (t, tx) in self.sync_waiters.drain(..) {
            if t > applied {
                keep.push((t, tx));
                continue;
            }
            let r = if let Some(e) = &self.last_error {
                Response {
                    revision: Some(self.numbers.revision),
                    ..Response::error(e.clone())
                }
            } else if !problems.is_empty() {
                Response {
                    revision: Some(self.numbers.revision),
                    problems: problems.clone(),
                    ..Response::error(format!(
                        "{} problem(s), the rest is enforced: {}",
                        problems.len(),
                        problems.join("; ")
                    ))
                }
            } else {
                Response {
                    ok: true,
                    revision: Some(self.numbers.revision),
                    ..Default::default()
                }
            };
            let _ = tx.send(r);
        }
        self.sync_waiters = keep;
    }

    fn next_deadline(&self) -> tokio::time::Instant {
        let far = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
        self.cni_waiters
            .iter()
            .map(|w| w.deadline)
            .min()
            .unwrap_or(far)
            .min(if self.net_dirty || self.last_error.is_some() {
                // Retry soon after a failed netlink read or map write.
                tokio::time::Instant::now() + std::time::Duration::from_millis(500)
            } else {
                far
            })
    }
}
