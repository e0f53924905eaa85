//! The background side of ingestion: resyncs (`getRepo`), rechecks (`getLatestCommit`),
//! `getRepoStatus` confirmations and handle checks, run off the shards under the limits of
//! the pure [`Scheduler`], so no host can hold up the stream.
//!
//! ```text
//! shard ─Request─▶ driver (Scheduler) ─spawn─▶ task (HTTP, with a deadline)
//!   ▲                  │ ◀──────── outcome ───────┘
//!   └──── Report ──────┘ (when the scheduler says finished or given up)
//! ```
//! The driver is the only place that reads the clock for the scheduler and the only place
//! that spawns these calls. A shard parks a repo's later frames while its task runs (see
//! `indexer`), so per-repo order holds while every other repo moves on.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use guildhall_proto::syntax::Did;
use guildhall_store::{Change, OperatorStatus};
use tokio::sync::{mpsc, watch};

use crate::indexer::{Context, account_status, identity_change, shard_of};
use crate::repo::{FetchError, Snapshot};
use crate::schedule::{Limits, Outcome, Scheduler, Verdict};

/// How background work is bounded.
#[derive(Debug, Clone)]
pub struct ResyncConfig {
    /// The scheduler's limits (concurrency, breaker, backoff, per-DID rate).
    pub limits: Limits,
    /// Longest one task may take, whatever the host does (a hung `getRepo` is a host failure).
    pub task_timeout: Duration,
    /// Longest a handle check may take.
    pub identity_timeout: Duration,
    /// How often repos left unsynced (given up, or from before a restart) are retried.
    pub sweep_interval: Duration,
    /// Most frames parked for one repo while its task runs; later ones are dropped (the repo's
    /// next commit then does not chain, and it is resynced again).
    pub park_frames: usize,
    /// Most bytes of parked frames per shard.
    pub park_bytes: usize,
    /// How long a stopping pipeline waits for running tasks before it leaves them to the next
    /// start's sweep.
    pub drain: Duration,
}

impl Default for ResyncConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            task_timeout: Duration::from_secs(150),
            identity_timeout: Duration::from_secs(15),
            sweep_interval: Duration::from_secs(300),
            park_frames: 512,
            park_bytes: 64 << 20,
            drain: Duration::from_secs(10),
        }
    }
}

/// What a shard asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Replace the repo with its host's current state.
    Resync,
    /// Compare the repo's head with its host's (after a gap in the stream).
    Recheck,
    /// Ask the host for the account's status (an `#account` from another source).
    Status,
    /// Check the declared handle both ways; does not hold the repo's frames.
    Identity,
    /// Fetch the DID document the shard does not have yet.
    Resolve,
    /// Fetch the DID document again: a signature did not verify, and the key may have rotated.
    Refresh,
}

/// A request from a shard.
#[derive(Debug)]
pub(crate) struct Request {
    pub did: Did,
    /// The scheduling key of the host the work talks to.
    pub host: String,
    pub kind: Kind,
}

/// What comes back to the shard that owns the DID.
#[derive(Debug)]
pub(crate) enum Report {
    /// A resync's verified snapshot and the account's identity change, or why it was given up.
    Resynced {
        did: Did,
        result: Result<(Snapshot, Option<Change>), String>,
    },
    /// The host's head rev; `None` when it could not be asked.
    Rechecked { did: Did, rev: Option<String> },
    /// The host's word on the account; `None` when it could not be asked.
    Status {
        did: Did,
        status: Option<OperatorStatus>,
    },
    /// A handle check's result, to write as is.
    Identity(Change),
    /// The sweep found this repo unsynced: resync it unless something already runs for it.
    Retry(Did),
    /// A handle check that found no answer: nothing to write.
    Nothing,
    /// The DID document was fetched (or failed to be; the resolver caches either): the
    /// repo's frames can be looked at again.
    Resolved { did: Did },
}

/// A task's result, held until the scheduler decides whether it stands.
enum Payload {
    Resync(Result<(Snapshot, Option<Change>), FetchError>),
    Recheck(Result<String, FetchError>),
    Status(Result<(bool, Option<String>), FetchError>),
    Identity(Option<Change>),
    /// A resolution or refresh ran; its result is in the resolver's cache.
    Resolved,
    /// The deadline passed.
    TimedOut,
}

/// The scheduler's key: one task per DID and kind, so the per-DID rate limit spaces out
/// resyncs (what a forger could make us repeat) without delaying the resync that a recheck
/// found necessary. A shard never has two kinds running for one repo but a handle check.
fn key(did: &Did, kind: Kind) -> String {
    format!("{kind:?} {did}")
}

/// How a fetch error counts against whom.
fn outcome_of(e: &FetchError) -> Outcome {
    match e {
        FetchError::Http(_) => Outcome::HostFailed,
        FetchError::RateLimited(wait) => Outcome::RateLimited(*wait),
        FetchError::Resolve(_) | FetchError::NoPds | FetchError::Verify(_) => Outcome::Failed,
        // A definitive answer (the repo is gone, too big, or its host is refused): retrying
        // soon would not change it; the sweep tries again later.
        _ => Outcome::Done,
    }
}

/// The scheduling key of the server holding `did`'s document: the PLC directory, or the
/// did:web host.
fn document_host(did: &Did) -> String {
    match did.as_str().strip_prefix("did:web:") {
        Some(host) => format!("web {}", host.to_ascii_lowercase()),
        None => "plc".to_owned(),
    }
}

/// The scheduling key of the host serving `did`: its PDS's `host:port`, or `""` when the DID
/// is not resolved (those share one bucket, bounded like a host). Reads the resolver's cache
/// only: a shard calls this and must not wait on a host.
pub(crate) async fn host_of(ctx: &Context, did: &Did) -> String {
    match ctx.resolver.cached(did).await {
        Some(Ok(ident)) => ident
            .pds
            .as_deref()
            .and_then(|p| url::Url::parse(p).ok())
            .map(|u| {
                format!(
                    "{}:{}",
                    u.host_str().unwrap_or_default().to_ascii_lowercase(),
                    u.port_or_known_default().unwrap_or(0)
                )
            })
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Runs requests from `requests` until every sender is gone and nothing is running, reporting
/// results to the owning shard's channel in `reports`.
pub(crate) async fn drive(
    ctx: Arc<Context>,
    config: ResyncConfig,
    mut requests: mpsc::UnboundedReceiver<Request>,
    reports: Vec<mpsc::UnboundedSender<Report>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut sched = Scheduler::new(config.limits.clone());
    let mut waiting: HashMap<String, (Did, Kind)> = HashMap::new();
    let mut unresolvable: HashSet<String> = HashSet::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, Payload)>();
    // Dropped on return: tasks still running are cancelled, not left holding the context.
    let mut tasks = tokio::task::JoinSet::new();
    let mut open = true;
    loop {
        let now = Instant::now();
        while let Some(start) = sched.poll(now) {
            let Some((did, kind)) = waiting.get(&start.did).cloned() else {
                sched.finished(&start.did, Outcome::Done, now);
                continue;
            };
            if start.attempt > 1 {
                ctx.metrics.resync_retries.fetch_add(1, Ordering::Relaxed);
            }
            if unresolvable.contains(did.as_str()) {
                // Its failure is cached by the resolver; this attempt must really ask again.
                ctx.resolver.invalidate(&did).await;
            }
            let ctx = ctx.clone();
            let done = done_tx.clone();
            let (timeout, identity_timeout) = (config.task_timeout, config.identity_timeout);
            tasks.spawn(async move {
                let payload = run_task(&ctx, &did, kind, timeout, identity_timeout).await;
                let _ = done.send((start.did, payload));
            });
        }
        while tasks.try_join_next().is_some() {}
        publish(&ctx, &sched, &unresolvable, now);
        if !open && sched.running() == 0 && sched.queued() == 0 {
            return;
        }
        let wake = sched.next_wakeup(now).map(tokio::time::Instant::from_std);
        tokio::select! {
            req = requests.recv(), if open => match req {
                Some(r) => {
                    let k = key(&r.did, r.kind);
                    let host = match r.kind {
                        Kind::Resolve | Kind::Refresh => document_host(&r.did),
                        _ => r.host,
                    };
                    if sched.request(&k, &host, Instant::now()) {
                        waiting.insert(k, (r.did, r.kind));
                    }
                }
                None => open = false,
            },
            Some((k, payload)) = done_rx.recv() => {
                let Some((did, kind)) = waiting.get(&k).cloned() else { continue };
                let outcome = match &payload {
                    Payload::Resync(Err(e)) | Payload::Recheck(Err(e)) | Payload::Status(Err(e)) => {
                        if matches!(e, FetchError::Resolve(_)) {
                            unresolvable.insert(did.to_string());
                        } else {
                            unresolvable.remove(did.as_str());
                        }
                        outcome_of(e)
                    }
                    // A document host that hangs is charged, but the frames do not wait for
                    // retries: the shard sees the cached failure and queues a resync, which has
                    // the retry schedule.
                    Payload::TimedOut if matches!(kind, Kind::Resolve | Kind::Refresh) => {
                        Outcome::Done
                    }
                    Payload::TimedOut => Outcome::HostFailed,
                    Payload::Identity(None) => Outcome::Failed,
                    _ => {
                        unresolvable.remove(did.as_str());
                        Outcome::Done
                    }
                };
                let verdict = sched.finished(&k, outcome, Instant::now());
                if let Verdict::Retry(_) = verdict {
                    continue;
                }
                waiting.remove(&k);
                if verdict == Verdict::GaveUp {
                    ctx.metrics.resync_given_up.fetch_add(1, Ordering::Relaxed);
                }
                let report = report(&ctx, did.clone(), kind, payload);
                if let Some(tx) = reports.get(shard_of(did.as_str(), reports.len())) {
                    let _ = tx.send(report);
                }
            }
            _ = sleep_until(wake) => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    // The pipeline is gone without saying so.
                    return;
                }
            }
        }
        if *stop.borrow() {
            // Shutting down: what is not done is left marked in the store for the next start.
            return;
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn publish(ctx: &Context, sched: &Scheduler, unresolvable: &HashSet<String>, now: Instant) {
    let m = &ctx.metrics;
    let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
    m.resync_queued.store(n(sched.queued()), Ordering::Relaxed);
    m.resync_running
        .store(n(sched.running()), Ordering::Relaxed);
    m.hosts_blocked
        .store(n(sched.hosts_blocked(now)), Ordering::Relaxed);
    m.dids_unresolvable
        .store(n(unresolvable.len()), Ordering::Relaxed);
}

async fn run_task(
    ctx: &Context,
    did: &Did,
    kind: Kind,
    timeout: Duration,
    identity_timeout: Duration,
) -> Payload {
    let work = async {
        match kind {
            Kind::Resync => {
                ctx.metrics.resyncs.fetch_add(1, Ordering::Relaxed);
                Payload::Resync(match ctx.fetcher.fetch_once(did).await {
                    Ok(snapshot) => {
                        // The handle check is bounded on its own: a slow handle host must not
                        // turn a good snapshot into a failed resync.
                        let ident = tokio::time::timeout(
                            identity_timeout,
                            identity_change(&ctx.resolver, did),
                        )
                        .await
                        .ok()
                        .flatten();
                        Ok((snapshot, ident))
                    }
                    Err(e) => Err(e),
                })
            }
            Kind::Recheck => {
                ctx.metrics.rechecks.fetch_add(1, Ordering::Relaxed);
                Payload::Recheck(ctx.fetcher.latest_rev(did).await)
            }
            Kind::Status => Payload::Status(ctx.fetcher.repo_status(did).await),
            Kind::Identity => Payload::Identity(identity_change(&ctx.resolver, did).await),
            Kind::Resolve => {
                let _ = ctx.resolver.resolve(did).await;
                Payload::Resolved
            }
            Kind::Refresh => {
                let _ = ctx.resolver.refresh(did).await;
                Payload::Resolved
            }
        }
    };
    let limit = if kind == Kind::Identity {
        identity_timeout
    } else {
        timeout
    };
    match tokio::time::timeout(limit, work).await {
        Ok(p) => p,
        Err(_) => {
            tracing::warn!(%did, ?kind, "background task timed out; its host is charged");
            Payload::TimedOut
        }
    }
}

fn report(ctx: &Context, did: Did, kind: Kind, payload: Payload) -> Report {
    let failed = |what: String| {
        tracing::warn!(%did, ?kind, error = %what, "background task gave up");
        what
    };
    match (kind, payload) {
        (_, Payload::Resync(Ok(r))) => Report::Resynced { did, result: Ok(r) },
        (_, Payload::Resync(Err(e))) => {
            ctx.metrics.resync_failures.fetch_add(1, Ordering::Relaxed);
            let result = Err(failed(e.to_string()));
            Report::Resynced { did, result }
        }
        (_, Payload::Recheck(r)) => Report::Rechecked {
            rev: r.map_err(|e| failed(e.to_string())).ok(),
            did,
        },
        (_, Payload::Status(r)) => {
            let status = match r {
                Ok((active, status)) => {
                    ctx.metrics
                        .account_confirmed
                        .fetch_add(1, Ordering::Relaxed);
                    Some(account_status(active, status.as_deref()))
                }
                Err(e) => {
                    failed(e.to_string());
                    ctx.metrics
                        .account_unconfirmed
                        .fetch_add(1, Ordering::Relaxed);
                    None
                }
            };
            Report::Status { did, status }
        }
        (_, Payload::Identity(Some(change))) => Report::Identity(change),
        // Whatever came of it, the shard looks again: a failure is cached and handled there.
        (_, Payload::Resolved) | (Kind::Resolve | Kind::Refresh, Payload::TimedOut) => {
            Report::Resolved { did }
        }
        (Kind::Resync, Payload::TimedOut) => {
            ctx.metrics.resync_failures.fetch_add(1, Ordering::Relaxed);
            Report::Resynced {
                did,
                result: Err("timed out".to_owned()),
            }
        }
        (Kind::Recheck, Payload::TimedOut) => Report::Rechecked { did, rev: None },
        (Kind::Status, Payload::TimedOut) => {
            ctx.metrics
                .account_unconfirmed
                .fetch_add(1, Ordering::Relaxed);
            Report::Status { did, status: None }
        }
        (Kind::Identity, _) | (_, Payload::Identity(None)) => {
            // No handle answer: nothing to write (the stored one stays until a check succeeds).
            Report::Nothing
        }
    }
}
