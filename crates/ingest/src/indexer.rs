//! The ingestion pipeline: frames in, verified index changes out, committed with the cursor.
//!
//! ```text
//! sockets ─▶ dispatcher ─(hash of DID)─▶ shard workers ─▶ writer ─▶ store (one transaction)
//! ```
//! The dispatcher routes each frame on its header, repo and op paths alone, and numbers it.
//! Frames of repos we neither track nor need are finished right there. The rest go to the
//! shard that owns their DID, so one repo's events stay in order while different repos verify
//! in parallel. The writer puts finished frames back in arrival order and commits contiguous
//! runs as one batch with the cursor of the last frame in the run: a crash replays exactly the
//! frames whose effects were not committed. Every channel is bounded.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use guildhall_proto::frame::{self, Frame};
use guildhall_proto::syntax::{Did, Tid};
use guildhall_proto::verify::{self, RepoState, VerifyError};
use guildhall_store::{Applied, Batch, Change, OperatorStatus, RepoRow, RepoStatus, Store};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, watch};
use url::Url;

use crate::IngestError;
use crate::firehose::{self, RawFrame, SubscribeConfig};
use crate::identity::Resolver;
use crate::metrics::Metrics;
use crate::plan::{self, PREFIX};
use crate::repo::{RepoFetcher, to_store_changes};
use crate::resync::{self, Kind, Report, Request, ResyncConfig};

/// How the pipeline is sized.
#[derive(Debug, Clone)]
pub struct IndexerConfig {
    /// Firehose endpoints (a relay, or PDSes directly).
    pub sources: Vec<Url>,
    /// Parallel verification workers; one DID always goes to the same one.
    pub shards: usize,
    /// Capacity of each channel between stages.
    pub queue: usize,
    /// Most changes in one batch.
    pub batch_max: usize,
    /// Longest a finished frame waits for its batch.
    pub batch_delay: Duration,
    /// Socket behaviour.
    pub subscribe: SubscribeConfig,
    /// Recheck every tracked repo against its host before the first frame. [`run`] sets it
    /// when a source has no stored cursor: after a `backfill`, the events between its
    /// `getRepo`s and the live stream were never seen.
    pub recheck_at_start: bool,
    /// Background resyncs and host queries: their limits, and how long frames wait for them.
    pub resync: ResyncConfig,
}

impl Default for IndexerConfig {
    fn default() -> Self {
        Self {
            sources: Vec::new(),
            shards: 2,
            queue: 1024,
            batch_max: 2000,
            batch_delay: Duration::from_millis(20),
            subscribe: SubscribeConfig::default(),
            recheck_at_start: false,
            resync: ResyncConfig::default(),
        }
    }
}

/// What the writer committed, announced to listeners (the AppView's trust graph) afterwards.
pub type Committed = Arc<CommittedBatch>;

/// One committed batch's changes, and the graph version its transaction left.
#[derive(Debug, Clone, Default)]
pub struct CommittedBatch {
    /// The changes, in order.
    pub changes: Vec<Change>,
    /// The store's answer: the graph version after the batch, and whether the batch moved it.
    pub applied: Applied,
}

/// The parts every stage shares.
pub struct Context {
    /// The index.
    pub store: Store,
    /// DID resolution.
    pub resolver: Arc<Resolver>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Fetches and verifies whole repos.
    pub fetcher: RepoFetcher,
    /// Committed changes, for live consumers.
    pub committed: broadcast::Sender<Committed>,
}

struct Job {
    ticket: u64,
    source: usize,
    seq: Option<i64>,
    work: Work,
    permit: OwnedSemaphorePermit,
}

/// What a shard is asked to do, in stream order with the repo's other events.
enum Work {
    /// A frame to decode and apply.
    Frame(Vec<u8>),
    /// Events may have been missed (`OutdatedCursor`, or a start with no cursor): compare the
    /// repo's head with its host and resync it if it moved meanwhile.
    Recheck(Did),
}

struct Done {
    /// The frame's place in the stream; `None` for a background task's result, which belongs
    /// to no frame and is committed with the next batch.
    ticket: Option<u64>,
    /// For a background result: the last ticket its shard had finished when it was sent. It
    /// is committed only after every frame up to that ticket, so it lands after the changes
    /// of the frame that asked for it (a resync's "resyncing" mark, say), never before.
    after: u64,
    source: usize,
    seq: Option<i64>,
    changes: Vec<Change>,
    /// Held until the writer takes this frame out of its reorder buffer: the bound on frames
    /// in flight, so a shard stalled on one repo cannot make the buffer grow without limit.
    _permit: Option<OwnedSemaphorePermit>,
}

/// The current Unix time in microseconds, for the rev clock check.
fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Runs ingestion from the configured firehoses until `shutdown` flips to true or a store
/// write fails.
pub async fn run(
    ctx: Arc<Context>,
    mut config: IndexerConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    let (raw_tx, raw_rx) = mpsc::channel::<RawFrame>(config.queue);
    let mut sockets = Vec::new();
    for (i, url) in config.sources.iter().enumerate() {
        let cursor = ctx.store.cursor(url.as_str()).await?;
        config.recheck_at_start |= cursor.is_none();
        sockets.push(tokio::spawn(firehose::subscribe(
            i,
            url.clone(),
            cursor,
            config.subscribe.clone(),
            raw_tx.clone(),
            ctx.metrics.clone(),
            shutdown.clone(),
        )));
    }
    drop(raw_tx);
    let sources = config.sources.iter().map(|u| u.to_string()).collect();
    let result = run_frames(ctx, config, sources, raw_rx).await;
    for s in sockets {
        s.abort();
    }
    result
}

/// Runs the pipeline on frames from any producer (sockets, or a recording being replayed)
/// until the channel closes and every frame is committed. `sources[i]` names the cursor of
/// frames whose `source` is `i`.
pub async fn run_frames(
    ctx: Arc<Context>,
    config: IndexerConfig,
    sources: Vec<String>,
    mut raw_rx: mpsc::Receiver<RawFrame>,
) -> Result<(), IngestError> {
    let tracked: Arc<RwLock<HashSet<String>>> = Arc::new(RwLock::new(
        ctx.store.tracked_dids().await?.into_iter().collect(),
    ));

    let (done_tx, done_rx) = mpsc::channel::<Done>(config.queue);
    let source_urls: Arc<Vec<Option<Url>>> =
        Arc::new(sources.iter().map(|s| Url::parse(s).ok()).collect());
    let (request_tx, request_rx) = mpsc::unbounded_channel::<Request>();
    let mut report_txs = Vec::new();
    let mut shard_txs = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..config.shards.max(1) {
        let (tx, rx) = mpsc::channel::<Job>(config.queue / config.shards.max(1) + 1);
        let (report_tx, report_rx) = mpsc::unbounded_channel::<Report>();
        shard_txs.push(tx);
        report_txs.push(report_tx);
        let mut shard = Shard::new(
            ctx.clone(),
            source_urls.clone(),
            request_tx.clone(),
            config.resync.clone(),
        );
        let done = done_tx.clone();
        workers.push(tokio::spawn(async move {
            shard.run(rx, report_rx, done).await;
        }));
    }
    drop(request_tx);
    let (stop_driver, driver_stop) = watch::channel(false);
    let driver = tokio::spawn(resync::drive(
        ctx.clone(),
        config.resync.clone(),
        request_rx,
        report_txs.clone(),
        driver_stop,
    ));
    let sweeper = tokio::spawn(sweep(ctx.clone(), config.resync.sweep_interval, report_txs));
    let writer = tokio::spawn(write_loop(ctx.clone(), sources, config.clone(), done_rx));
    let window = Arc::new(Semaphore::new(config.queue.saturating_mul(4).max(1)));

    let mut ticket: u64 = 0;
    let mut gap = false;
    let rechecks = Rechecks {
        ctx: &ctx,
        tracked: &tracked,
        window: &window,
        shards: &shard_txs,
    };
    // A false return means the shards are gone; the loop below then stops at its first send.
    if config.recheck_at_start {
        rechecks.enqueue(&mut ticket, 0, Gap::NoCursor).await;
    }
    while let Some(raw) = raw_rx.recv().await {
        let raw_source = raw.source;
        let Ok(permit) = window.clone().acquire_owned().await else {
            break;
        };
        ticket += 1;
        let (seq, target) = match frame::route(&raw.bytes) {
            Ok(r) => {
                ctx.metrics.frame(known_kind(r.kind));
                let did = r.did.unwrap_or_default();
                let is_tracked = tracked.read().map(|t| t.contains(did)).unwrap_or(false);
                let wanted = match r.kind {
                    "#commit" => {
                        if !is_tracked && r.touches(PREFIX) {
                            if let Ok(mut t) = tracked.write() {
                                t.insert(did.to_owned());
                            }
                            true
                        } else {
                            if !is_tracked {
                                ctx.metrics.commits_skipped.fetch_add(1, Ordering::Relaxed);
                            }
                            is_tracked
                        }
                    }
                    // Rare, and the repo may have become tracked elsewhere (a backfill): the
                    // shard asks the store before acting.
                    "#sync" | "#identity" | "#account" => true,
                    "#info" => {
                        if is_outdated_cursor(&raw.bytes) {
                            gap = true;
                        }
                        false
                    }
                    _ => false,
                };
                (r.seq, wanted.then(|| shard_of(did, shard_txs.len())))
            }
            Err(e) => {
                ctx.metrics.frame_error(error_kind(&e));
                tracing::warn!(error = %e, "dropping undecodable frame");
                (None, None)
            }
        };
        let sent = match target {
            Some(i) => shard_txs[i]
                .send(Job {
                    ticket,
                    source: raw.source,
                    seq,
                    work: Work::Frame(raw.bytes),
                    permit,
                })
                .await
                .is_ok(),
            None => done_tx
                .send(Done {
                    ticket: Some(ticket),
                    after: 0,
                    source: raw.source,
                    seq,
                    changes: Vec::new(),
                    _permit: Some(permit),
                })
                .await
                .is_ok(),
        };
        if !sent {
            break;
        }
        if std::mem::take(&mut gap)
            && !rechecks
                .enqueue(&mut ticket, raw_source, Gap::OutdatedCursor)
                .await
        {
            break;
        }
    }
    drop(shard_txs);
    drop(done_tx);
    let mut failed = None;
    for w in workers {
        if let Err(e) = w.await {
            failed = Some(IngestError::Task(format!("shard: {e}")));
        }
    }
    sweeper.abort();
    let _ = stop_driver.send(true);
    let _ = driver.await;
    let written = match writer.await {
        Ok(r) => r,
        Err(e) => Err(IngestError::Task(format!("writer: {e}"))),
    };
    match failed {
        Some(e) => Err(e),
        None => written,
    }
}

/// Every `sweep_interval` (and once at start): counts the repos not in sync for `/status`
/// and `/metrics`, and asks their shards to resync them. This is the slow retry schedule of
/// repos whose resync was given up (an unresolvable DID, a host that stayed down) and of
/// those a restart interrupted.
async fn sweep(ctx: Arc<Context>, interval: Duration, shards: Vec<mpsc::UnboundedSender<Report>>) {
    const PAGE: u32 = 1000;
    loop {
        match ctx.store.unsynced_count().await {
            Ok(n) => ctx
                .metrics
                .repos_unsynced
                .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed),
            Err(e) => tracing::warn!(error = %e, "counting unsynced repos failed"),
        }
        let mut after = String::new();
        loop {
            match ctx.store.unsynced_repos(&after, PAGE).await {
                Ok(page) => {
                    for did in page.iter().filter_map(|d| Did::parse(d).ok()) {
                        if let Some(tx) = shards.get(shard_of(did.as_str(), shards.len())) {
                            let _ = tx.send(Report::Retry(did));
                        }
                    }
                    match page.last() {
                        Some(last) if page.len() == PAGE as usize => after.clone_from(last),
                        _ => break,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listing unsynced repos failed; next sweep retries");
                    break;
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// Why events may have been missed.
#[derive(Debug, Clone, Copy)]
enum Gap {
    /// The server no longer holds the events after our cursor.
    OutdatedCursor,
    /// A source has no stored cursor, so it starts live (e.g. the first start after a
    /// backfill): whatever happened before is unseen.
    NoCursor,
}

/// Queues a recheck of every tracked repo, each in its shard in order with the repo's later
/// events: used when events may have been missed and any tracked repo may have changed
/// unseen.
struct Rechecks<'a> {
    ctx: &'a Context,
    tracked: &'a RwLock<HashSet<String>>,
    window: &'a Arc<Semaphore>,
    shards: &'a [mpsc::Sender<Job>],
}

impl Rechecks<'_> {
    /// Returns false when the pipeline is shutting down.
    async fn enqueue(&self, ticket: &mut u64, source: usize, gap: Gap) -> bool {
        let dids: Vec<String> = self
            .tracked
            .read()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        if dids.is_empty() {
            return true;
        }
        match gap {
            // Expected after a backfill, and on each start while a source has never sent a
            // frame: not a fault.
            Gap::NoCursor => tracing::info!(
                repos = dids.len(),
                "a source has no stored cursor; rechecking tracked repos"
            ),
            Gap::OutdatedCursor => tracing::warn!(
                repos = dids.len(),
                "events were missed (OutdatedCursor); rechecking tracked repos"
            ),
        }
        for did in dids.into_iter().filter_map(|d| Did::parse(&d).ok()) {
            let Ok(permit) = self.window.clone().acquire_owned().await else {
                return false;
            };
            *ticket += 1;
            self.ctx.metrics.queued.fetch_add(1, Ordering::Relaxed);
            let shard = &self.shards[shard_of(did.as_str(), self.shards.len())];
            let job = Job {
                ticket: *ticket,
                source,
                seq: None,
                work: Work::Recheck(did),
                permit,
            };
            if shard.send(job).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// Frame types as metric labels: a fixed set, so hostile input cannot grow the label space.
fn known_kind(kind: &str) -> &'static str {
    match kind {
        "#commit" => "#commit",
        "#sync" => "#sync",
        "#identity" => "#identity",
        "#account" => "#account",
        "#info" => "#info",
        "error" => "error",
        _ => "other",
    }
}

/// Whether an `#info` frame says our cursor was older than anything the server keeps.
fn is_outdated_cursor(bytes: &[u8]) -> bool {
    matches!(frame::decode_frame(bytes), Ok(Frame::Info(i)) if i.name == "OutdatedCursor")
}

fn error_kind(e: &frame::FrameError) -> &'static str {
    match e {
        frame::FrameError::TooLarge(_) => "too_large",
        frame::FrameError::Header(_) => "header",
        frame::FrameError::UnknownOp(_) => "unknown_op",
        frame::FrameError::MissingType => "missing_type",
        frame::FrameError::Body { .. } => "body",
        frame::FrameError::TooManyOps(_) => "too_many_ops",
    }
}

pub(crate) fn shard_of(did: &str, n: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    did.hash(&mut h);
    usize::try_from(h.finish() % n.max(1) as u64).unwrap_or(0)
}

/// Puts finished frames back in order and commits contiguous runs with their cursors.
async fn write_loop(
    ctx: Arc<Context>,
    sources: Vec<String>,
    config: IndexerConfig,
    mut rx: mpsc::Receiver<Done>,
) -> Result<(), IngestError> {
    let mut next: u64 = 1;
    let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
    let mut changes: Vec<Change> = Vec::new();
    let mut cursors: HashMap<usize, i64> = HashMap::new();
    let mut frames_in_batch: i64 = 0;
    // Background results by the ticket they must follow, and whether some are released into
    // `changes` for the next batch.
    let mut extras: BTreeMap<u64, Vec<Change>> = BTreeMap::new();
    let mut unticketed = false;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let received = match deadline {
            Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                Ok(r) => r.map(Some),
                Err(_) => Some(None),
            },
            None => rx.recv().await.map(Some),
        };
        let closed = received.is_none();
        if let Some(Some(done)) = received {
            match done.ticket {
                Some(t) => {
                    pending.insert(t, done);
                }
                None => extras.entry(done.after).or_default().extend(done.changes),
            }
            while let Some(d) = pending.remove(&next) {
                next += 1;
                frames_in_batch += 1;
                if let Some(seq) = d.seq {
                    cursors.insert(d.source, seq);
                }
                changes.extend(d.changes);
            }
        }
        // Background results whose frames are all in (all of them once the stream ended).
        while let Some(entry) = extras.first_entry() {
            if *entry.key() >= next && !closed {
                break;
            }
            changes.extend(entry.remove());
            unticketed = true;
        }
        if (frames_in_batch > 0 || unticketed) && deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + config.batch_delay);
        }
        let due = deadline.is_some_and(|d| d <= tokio::time::Instant::now());
        if (frames_in_batch > 0 || unticketed)
            && (closed || due || changes.len() >= config.batch_max)
        {
            flush(&ctx, &sources, &mut cursors, &mut changes, frames_in_batch).await?;
            frames_in_batch = 0;
            unticketed = false;
            deadline = None;
        }
        if closed {
            return Ok(());
        }
    }
}

async fn flush(
    ctx: &Context,
    sources: &[String],
    cursors: &mut HashMap<usize, i64>,
    changes: &mut Vec<Change>,
    frames: i64,
) -> Result<(), IngestError> {
    // Every source's cursor commits with the changes it led to: a crash replays nothing
    // that was applied and loses nothing that was not.
    let mut cursors: Vec<(String, i64)> = cursors
        .drain()
        .filter_map(|(i, seq)| sources.get(i).map(|s| (s.clone(), seq)))
        .collect();
    cursors.sort();
    let batch = Batch {
        cursors,
        changes: std::mem::take(changes),
    };
    let applied = apply_with_retry(ctx, &batch).await?;
    ctx.metrics.batches.fetch_add(1, Ordering::Relaxed);
    ctx.metrics.queued.fetch_sub(frames, Ordering::Relaxed);
    for (source, seq) in &batch.cursors {
        ctx.metrics.set_cursor(source, *seq);
    }
    let changes = batch.changes;
    if !changes.is_empty() {
        // Nobody listening is fine: the AppView may not run in this process.
        let _ = ctx
            .committed
            .send(Arc::new(CommittedBatch { changes, applied }));
    }
    Ok(())
}

/// Applies a batch, retrying transient failures (a dropped connection, a busy SQLite file):
/// a batch is one transaction, so a retry cannot half-apply it. Anything else stops ingestion
/// with the cursor where it was.
async fn apply_with_retry(ctx: &Context, batch: &Batch) -> Result<Applied, IngestError> {
    let mut wait = Duration::from_millis(100);
    loop {
        match ctx.store.apply(batch).await {
            Ok(applied) => return Ok(applied),
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, ?wait, "store write failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Per-repo state of one shard: what we hold, and whether the account is active.
#[derive(Clone)]
struct Held {
    /// The verified state to chain the next commit on; `None` when unknown or desynchronized.
    state: Option<RepoState>,
    /// The newest rev ever verified, kept through a desync: nothing older may be accepted.
    floor: Option<Tid>,
    /// Whether the account's data may be shown.
    active: bool,
    /// Whether we track this repo or know this account at all.
    known: bool,
}

impl Held {
    fn unknown() -> Self {
        Self {
            state: None,
            floor: None,
            active: true,
            known: false,
        }
    }
}

/// The frames of a repo waiting for its background task (resync, recheck, status query):
/// they are replayed in order when the task reports, so per-repo order holds while the
/// cursor and every other repo move on.
struct Parked {
    frames: VecDeque<Parkable>,
    /// Whether the frame being handled when the task started goes first in the queue: yes
    /// when it could not be judged without the task (a repo first seen, an author that did
    /// not resolve); not when it was judged (a commit that does not chain is covered by the
    /// resync it caused, and re-checking it would only cause another) or asked for the task
    /// (an `#account`).
    replay_current: bool,
}

/// What waits behind a repo's task, in stream order.
enum Parkable {
    /// A frame, its source, and whether it is the frame that started the task (checked once
    /// more after it; never queued for that again, so no frame can cause a loop of tasks).
    Frame(usize, Vec<u8>, bool),
    /// A gap in the stream was seen here: the repo's head is rechecked at this point.
    Recheck,
}

/// One verification worker; owns the state of the DIDs that hash to it.
struct Shard {
    ctx: Arc<Context>,
    /// Firehose URLs by source index (`None` for names that are not URLs, e.g. a replay).
    sources: Arc<Vec<Option<Url>>>,
    held: HashMap<String, Held>,
    /// Repos with a background task running, and their frames meanwhile.
    parked: HashMap<String, Parked>,
    parked_bytes: usize,
    /// Handle checks asked for and not yet reported (a stopping shard waits for them too).
    identities: usize,
    /// The last ticket this shard finished (see [`Done::after`]).
    last_ticket: u64,
    /// Set while a frame that started a task is checked once more after it.
    retrying: bool,
    /// Set while frames parked behind a resync are replayed: those the resync covered are
    /// expected, not counted as replays.
    covered: bool,
    requests: mpsc::UnboundedSender<Request>,
    config: ResyncConfig,
}

/// Most repo states a shard keeps in memory before it forgets and reloads from the store.
const HELD_CAPACITY: usize = 100_000;

/// The DID a frame is about, if any.
fn frame_did(f: &Frame) -> Option<&Did> {
    match f {
        Frame::Commit(ev) => Some(&ev.repo),
        Frame::Sync(ev) => Some(&ev.did),
        Frame::Identity(ev) => Some(&ev.did),
        Frame::Account(ev) => Some(&ev.did),
        Frame::Info(_) | Frame::Error(_) | Frame::Unknown(_) => None,
    }
}

/// What an `#account` event leads to.
enum Believed {
    /// Its own host said it: apply.
    Now(OperatorStatus),
    /// Another source said it: ask the host (in the background).
    Ask,
    /// Nobody can vouch for it.
    Ignore,
    /// The account's document is not known yet: fetch it (in the background), then look again.
    Resolve,
}

impl Shard {
    fn new(
        ctx: Arc<Context>,
        sources: Arc<Vec<Option<Url>>>,
        requests: mpsc::UnboundedSender<Request>,
        config: ResyncConfig,
    ) -> Self {
        Self {
            ctx,
            sources,
            held: HashMap::new(),
            parked: HashMap::new(),
            parked_bytes: 0,
            identities: 0,
            last_ticket: 0,
            retrying: false,
            covered: false,
            requests,
            config,
        }
    }

    async fn run(
        &mut self,
        mut rx: mpsc::Receiver<Job>,
        mut reports: mpsc::UnboundedReceiver<Report>,
        done: mpsc::Sender<Done>,
    ) {
        loop {
            tokio::select! {
                // Reports first: they release parked repos.
                biased;
                Some(report) = reports.recv() => {
                    let changes = self.report(report).await;
                    if !changes.is_empty() && !send_unticketed(&done, self.last_ticket, changes).await {
                        return;
                    }
                }
                job = rx.recv() => {
                    let Some(job) = job else { break };
                    let changes = match job.work {
                        Work::Frame(bytes) => self.frame(job.source, bytes, false).await,
                        Work::Recheck(did) => self.recheck(&did).await,
                    };
                    self.last_ticket = job.ticket;
                    let out = Done {
                        ticket: Some(job.ticket),
                        after: 0,
                        source: job.source,
                        seq: job.seq,
                        changes,
                        _permit: Some(job.permit),
                    };
                    if done.send(out).await.is_err() {
                        return;
                    }
                }
            }
        }
        // The stream ended: give running tasks a moment to land. What does not is still
        // marked in the store, and the next start's sweep resyncs it.
        let deadline = tokio::time::Instant::now() + self.config.drain;
        while !self.parked.is_empty() || self.identities > 0 {
            match tokio::time::timeout_at(deadline, reports.recv()).await {
                Ok(Some(report)) => {
                    let changes = self.report(report).await;
                    if !changes.is_empty()
                        && !send_unticketed(&done, self.last_ticket, changes).await
                    {
                        return;
                    }
                }
                _ => break,
            }
        }
    }

    /// Decodes and handles one frame, or parks it behind its repo's running task.
    async fn frame(&mut self, source: usize, bytes: Vec<u8>, retried: bool) -> Vec<Change> {
        let f = match frame::decode_frame(&bytes) {
            Ok(f) => f,
            Err(e) => {
                self.ctx.metrics.frame_error(error_kind(&e));
                tracing::warn!(error = %e, "dropping malformed frame");
                return Vec::new();
            }
        };
        let Some(did) = frame_did(&f).map(|d| d.as_str().to_owned()) else {
            return self.handle(source, f).await;
        };
        if self.parked.contains_key(&did) {
            self.park(&did, source, bytes);
            return Vec::new();
        }
        self.retrying = retried;
        let changes = self.handle(source, f).await;
        self.retrying = false;
        if let Some(p) = self.parked.get_mut(&did)
            && std::mem::take(&mut p.replay_current)
            && !retried
        {
            self.parked_bytes += bytes.len();
            p.frames.push_front(Parkable::Frame(source, bytes, true));
        }
        changes
    }

    /// Queues a frame behind its repo's task; over the bounds it is dropped and counted (the
    /// repo's next commit then does not chain on what the task brings, and resyncs it again).
    fn park(&mut self, did: &str, source: usize, bytes: Vec<u8>) {
        let Some(p) = self.parked.get_mut(did) else {
            return;
        };
        if p.frames.len() >= self.config.park_frames
            || self.parked_bytes + bytes.len() > self.config.park_bytes
        {
            self.ctx
                .metrics
                .parked_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.ctx.metrics.parked.fetch_add(1, Ordering::Relaxed);
        self.parked_bytes += bytes.len();
        p.frames.push_back(Parkable::Frame(source, bytes, false));
    }

    /// Replays a repo's parked frames, in order, once its task has reported.
    async fn unpark(&mut self, did: &Did, covered: bool) -> Vec<Change> {
        let Some(p) = self.parked.remove(did.as_str()) else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        self.covered = covered;
        for item in p.frames {
            // An earlier item may have started a task again: the rest park behind it.
            match item {
                Parkable::Frame(source, bytes, retried) => {
                    self.parked_bytes = self.parked_bytes.saturating_sub(bytes.len());
                    changes.extend(Box::pin(self.frame(source, bytes, retried)).await);
                }
                Parkable::Recheck => changes.extend(Box::pin(self.recheck(did)).await),
            }
        }
        self.covered = false;
        changes
    }

    /// Hands `did` to the background queue. Every kind but a handle check parks the repo's
    /// later frames until it reports; a resync also marks the repo in the store, so a crash
    /// meanwhile leaves it for the next start's sweep.
    async fn start(&mut self, did: &Did, kind: Kind, why: &str, replay: bool) -> Vec<Change> {
        let host = resync::host_of(&self.ctx, did).await;
        if kind == Kind::Identity {
            self.identities += 1;
        } else {
            self.parked
                .entry(did.as_str().to_owned())
                .or_insert_with(|| Parked {
                    frames: VecDeque::new(),
                    replay_current: replay,
                });
        }
        let _ = self.requests.send(Request {
            did: did.clone(),
            host,
            kind,
        });
        if kind == Kind::Resync {
            tracing::info!(%did, reason = why, "repo queued for resync");
            self.ctx
                .metrics
                .resyncs_queued
                .fetch_add(1, Ordering::Relaxed);
            return self.mark(did, RepoStatus::Resyncing);
        }
        Vec::new()
    }

    /// What a background task's report changes.
    async fn report(&mut self, report: Report) -> Vec<Change> {
        // A snapshot older than what we verified is refused here (the store's rev guard would
        // refuse its write too, but our chain state must not move back either).
        let report = match report {
            Report::Resynced {
                did,
                result: Ok((snapshot, ident)),
            } => {
                let floor = self.held(&did).await.floor;
                match floor {
                    Some(floor) if snapshot.state.rev.as_str() < floor.as_str() => {
                        self.ctx.metrics.verify_failure("stale_snapshot");
                        Report::Resynced {
                            did,
                            result: Err(crate::repo::FetchError::Stale {
                                got: snapshot.state.rev.to_string(),
                                held: floor.to_string(),
                            }
                            .to_string()),
                        }
                    }
                    _ => Report::Resynced {
                        did,
                        result: Ok((snapshot, ident)),
                    },
                }
            }
            other => other,
        };
        match report {
            Report::Resynced {
                did,
                result: Ok((snapshot, ident)),
            } => {
                self.set_state(&did, Some(snapshot.state.clone()));
                let mut changes = snapshot.changes;
                changes.extend(ident);
                changes.extend(self.unpark(&did, true).await);
                changes
            }
            Report::Resynced {
                did,
                result: Err(e),
            } => {
                tracing::warn!(%did, error = %e, "resync failed; repo stays desynchronized");
                self.set_state(&did, None);
                if let Some(p) = self.parked.remove(did.as_str()) {
                    // Without a verified state they cannot be checked; the next resync
                    // brings whatever they held.
                    for item in &p.frames {
                        if let Parkable::Frame(_, bytes, _) = item {
                            self.parked_bytes = self.parked_bytes.saturating_sub(bytes.len());
                        }
                    }
                    self.ctx
                        .metrics
                        .parked_dropped
                        .fetch_add(p.frames.len() as u64, Ordering::Relaxed);
                }
                self.mark(&did, RepoStatus::Desynchronized)
            }
            Report::Rechecked {
                did,
                rev: Some(rev),
            } => {
                let held = self.held(&did).await;
                if held.state.as_ref().is_some_and(|s| s.rev.as_str() == rev) {
                    self.unpark(&did, false).await
                } else {
                    // Its frames stay parked, now behind the resync.
                    self.start(
                        &did,
                        Kind::Resync,
                        "moved during a gap in the stream",
                        false,
                    )
                    .await
                }
            }
            // Unreachable now: the repo's next commit will not chain and resync it then.
            Report::Rechecked { did, rev: None } => self.unpark(&did, false).await,
            Report::Status { did, status } => {
                let mut changes = match status {
                    Some(s) => self.account(&did, s),
                    None => Vec::new(),
                };
                changes.extend(self.unpark(&did, false).await);
                changes
            }
            Report::Resolved { did } => self.unpark(&did, false).await,
            Report::Identity(change) => {
                self.identities = self.identities.saturating_sub(1);
                vec![change]
            }
            Report::Retry(did) => {
                if self.parked.contains_key(did.as_str()) {
                    return Vec::new();
                }
                let held = self.held(&did).await;
                if !held.active || held.state.is_some() {
                    return Vec::new();
                }
                self.start(
                    &did,
                    Kind::Resync,
                    "scheduled retry of an unsynced repo",
                    false,
                )
                .await
            }
            Report::Nothing => {
                self.identities = self.identities.saturating_sub(1);
                Vec::new()
            }
        }
    }

    async fn held(&mut self, did: &Did) -> Held {
        if let Some(h) = self.held.get(did.as_str()) {
            return h.clone();
        }
        // A store error is not an answer: reading it as "unknown, active" would drop an
        // `#account` takedown or resurrect an inactive account. Retry until the store answers;
        // the frame's ticket (and so the cursor) waits meanwhile.
        let mut wait = Duration::from_millis(50);
        let (row, status) = loop {
            let read = async {
                let row = self.ctx.store.repo(did.as_str()).await?;
                let status = self.ctx.store.operator_status(did.as_str()).await?;
                Ok::<_, guildhall_store::StoreError>((row, status))
            };
            match read.await {
                Ok(v) => break v,
                Err(e) => {
                    self.ctx
                        .metrics
                        .store_retries
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%did, error = %e, ?wait, "store read failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        };
        let h = Held {
            state: row.as_ref().and_then(repo_state),
            floor: row
                .as_ref()
                .and_then(|r| r.rev.as_deref())
                .and_then(|r| Tid::parse(r).ok()),
            active: status.is_none_or(|s| s == OperatorStatus::Active),
            known: row.is_some() || status.is_some(),
        };
        if self.held.len() >= HELD_CAPACITY {
            self.held.clear();
        }
        self.held.insert(did.as_str().to_owned(), h.clone());
        h
    }

    fn set_state(&mut self, did: &Did, state: Option<RepoState>) {
        let e = self
            .held
            .entry(did.as_str().to_owned())
            .or_insert_with(Held::unknown);
        e.known = true;
        if let Some(s) = &state
            && e.floor.as_ref().is_none_or(|f| &s.rev > f)
        {
            e.floor = Some(s.rev.clone());
        }
        e.state = state;
    }

    async fn handle(&mut self, source: usize, f: Frame) -> Vec<Change> {
        match f {
            Frame::Commit(ev) => self.commit(*ev).await,
            // Account-level events matter only for repos and accounts we know.
            Frame::Sync(ev) if self.held(&ev.did).await.known => self.sync(ev).await,
            Frame::Identity(ev) if self.held(&ev.did).await.known => self.identity(&ev.did).await,
            Frame::Account(ev) if self.held(&ev.did).await.known => {
                match self.believed_status(source, &ev).await {
                    Believed::Now(status) => self.account(&ev.did, status),
                    Believed::Ask => self.start(&ev.did, Kind::Status, "#account", false).await,
                    Believed::Ignore => Vec::new(),
                    Believed::Resolve => self.start(&ev.did, Kind::Resolve, "#account", true).await,
                }
            }
            Frame::Sync(_) | Frame::Identity(_) | Frame::Account(_) => Vec::new(),
            Frame::Info(_) | Frame::Error(_) | Frame::Unknown(_) => Vec::new(),
        }
    }

    async fn commit(&mut self, ev: frame::CommitEvent) -> Vec<Change> {
        let did = ev.repo.clone();
        let held = self.held(&did).await;
        if !held.active {
            // The host should not emit these; if it does, an inactive account's data stays hidden.
            return Vec::new();
        }
        let Some(state) = held.state else {
            // First sight of a repo whose previous tree was empty: inverting the ops gives back
            // the empty tree, so this signed commit alone proves everything the repo holds. No
            // getRepo needed (none is possible when replaying a recording).
            // Only forward of anything we verified before: a replayed first commit must not
            // roll a desynchronized repo back.
            if ev.prev_data.is_some()
                && ev.prev_data == empty_tree()
                && held.floor.as_ref().is_none_or(|f| &ev.rev > f)
            {
                return self.verify_and_plan(&ev, None).await;
            }
            // Otherwise take its whole current state, which includes this commit or a later
            // one; this frame is replayed on top of it (and ignored if the state is newer).
            return self.start(&did, Kind::Resync, "first seen", true).await;
        };
        self.verify_and_plan(&ev, Some(state)).await
    }

    /// Verifies a commit against `state` and plans its changes. `None` is only for a commit
    /// whose `prevData` is the empty tree: it then replaces the whole repo, as a resync would.
    async fn verify_and_plan(
        &mut self,
        ev: &frame::CommitEvent,
        state: Option<RepoState>,
    ) -> Vec<Change> {
        let did = &ev.repo;
        let ident = match self.ctx.resolver.cached(did).await {
            Some(Ok(i)) => i,
            // Not known yet: the document is fetched in the background; the frame waits.
            None => {
                return self
                    .start(did, Kind::Resolve, "author not resolved yet", true)
                    .await;
            }
            Some(Err(e)) => {
                self.ctx
                    .metrics
                    .identity_failures
                    .fetch_add(1, Ordering::Relaxed);
                // The resync queue retries the resolution on its schedule; the frame waits.
                tracing::warn!(%did, error = %e, "cannot resolve author; repo queued for resync");
                return self
                    .start(did, Kind::Resync, "unresolvable author", true)
                    .await;
            }
        };
        let result = verify::verify_commit(ev, &ident.key, state.as_ref(), now_micros());
        if matches!(result, Err(VerifyError::Signature(_)))
            && !self.retrying
            && self.ctx.resolver.refresh_due(did).await
        {
            // The key may have rotated since we cached it: the document is fetched again (in
            // the background), and the frame is checked once more after it; that second look
            // does not refresh again. At most once per `REFRESH_INTERVAL` per DID, so frames
            // forged in someone's name cannot keep their repo waiting.
            return self.start(did, Kind::Refresh, "signature", true).await;
        }
        match result {
            Ok(vc) => {
                self.ctx
                    .metrics
                    .commits_verified
                    .fetch_add(1, Ordering::Relaxed);
                let whole = state.is_none();
                let mut changes = Vec::new();
                if whole {
                    // Records left from an earlier, desynchronized life of the repo go.
                    changes.push(Change::DeleteRepoRecords {
                        did: did.to_string(),
                    });
                }
                changes.extend(to_store_changes(
                    &self.ctx.metrics,
                    plan::plan_ops(did, &vc.ops),
                ));
                changes.push(Change::SetRepo(RepoRow {
                    did: did.to_string(),
                    rev: Some(vc.state.rev.to_string()),
                    data_cid: Some(vc.state.data.to_string()),
                    status: RepoStatus::Synced,
                }));
                self.set_state(did, Some(vc.state));
                if whole {
                    changes.push(Change::BackfillDone {
                        did: did.to_string(),
                    });
                    // The handle check talks to hosts the account chose: off the shard.
                    changes.extend(self.start(did, Kind::Identity, "first commit", false).await);
                }
                changes
            }
            Err(VerifyError::RevNotIncreasing { .. }) => {
                // A replay of something we already hold: harmless, and nothing to redo. (A
                // parked frame the resync already covered is expected, not counted.)
                if !self.covered {
                    self.ctx.metrics.verify_failure("rev_not_increasing");
                    tracing::info!(%did, rev = %ev.rev, "ignoring replayed commit");
                }
                Vec::new()
            }
            Err(e) if e.breaks_chain() => {
                // Signed by the account, but not on top of what we hold: our copy is behind.
                self.ctx.metrics.verify_failure(e.kind());
                tracing::warn!(%did, seq = ev.seq, rev = %ev.rev, error = %e, "commit does not chain; resyncing repo");
                self.start(did, Kind::Resync, e.kind(), false).await
            }
            Err(e) => {
                // The frame itself is junk (a forgery, a broken proof): what we hold is still
                // the repo's last verified state, so nothing is fetched. Counted and dropped.
                self.ctx.metrics.verify_failure(e.kind());
                self.ctx
                    .metrics
                    .commits_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%did, seq = ev.seq, rev = %ev.rev, error = %e, "commit refused and dropped");
                Vec::new()
            }
        }
    }

    async fn sync(&mut self, ev: frame::SyncEvent) -> Vec<Change> {
        let did = ev.did.clone();
        let held = self.held(&did).await;
        let ident = match self.ctx.resolver.cached(&did).await {
            Some(Ok(i)) => i,
            None => {
                return self
                    .start(&did, Kind::Resolve, "author not resolved yet", true)
                    .await;
            }
            Some(Err(_)) => {
                return self
                    .start(&did, Kind::Resync, "unresolvable author", true)
                    .await;
            }
        };
        match verify::verify_sync(&ev, &ident.key, held.state.as_ref(), now_micros()) {
            Ok(vs) if held.state.as_ref().map(|s| s.data) == Some(vs.state.data) => {
                self.set_state(&did, Some(vs.state.clone()));
                vec![Change::SetRepo(RepoRow {
                    did: did.to_string(),
                    rev: Some(vs.state.rev.to_string()),
                    data_cid: Some(vs.state.data.to_string()),
                    status: RepoStatus::Synced,
                })]
            }
            Ok(_) => self.start(&did, Kind::Resync, "sync", false).await,
            Err(VerifyError::RevNotIncreasing { .. }) => Vec::new(),
            Err(e) => {
                self.ctx.metrics.verify_failure(e.kind());
                tracing::warn!(%did, error = %e, "sync event refused");
                Vec::new()
            }
        }
    }

    async fn identity(&mut self, did: &Did) -> Vec<Change> {
        self.ctx.resolver.invalidate(did).await;
        self.start(did, Kind::Identity, "#identity", false).await
    }

    /// The status an `#account` event may set. The event is unsigned, so only the account's
    /// own host speaks for it: from that host it is taken as is; from any other source (a
    /// relay, or a PDS talking about an account it does not host) the host is asked with
    /// `getRepoStatus` (in the background) and its answer is used instead. No answer, no
    /// change.
    async fn believed_status(&self, source: usize, ev: &frame::AccountEvent) -> Believed {
        let host = match self.ctx.resolver.cached(&ev.did).await {
            Some(Ok(ident)) => ident.pds.as_deref().and_then(|p| Url::parse(p).ok()),
            None => return Believed::Resolve,
            Some(Err(e)) => {
                tracing::warn!(did = %ev.did, error = %e, "#account of an unresolvable DID ignored");
                self.ctx
                    .metrics
                    .account_unconfirmed
                    .fetch_add(1, Ordering::Relaxed);
                return Believed::Ignore;
            }
        };
        let from_host = match (self.sources.get(source).and_then(Option::as_ref), &host) {
            (Some(src), Some(host)) => same_host(src, host),
            _ => false,
        };
        if from_host {
            return Believed::Now(account_status(ev.active, ev.status.as_deref()));
        }
        Believed::Ask
    }

    fn account(&mut self, did: &Did, status: OperatorStatus) -> Vec<Change> {
        let e = self
            .held
            .entry(did.as_str().to_owned())
            .or_insert_with(Held::unknown);
        e.known = true;
        e.active = status == OperatorStatus::Active;
        if status == OperatorStatus::Deleted {
            // The store drops the records and sync state; a later commit starts from scratch.
            e.state = None;
        }
        vec![Change::Account {
            did: did.to_string(),
            status,
        }]
    }

    /// After a gap in the stream: ask (in the background) whether the host's head is the one
    /// we hold; the report resyncs the repo if not.
    async fn recheck(&mut self, did: &Did) -> Vec<Change> {
        let held = self.held(did).await;
        if !held.active {
            return Vec::new();
        }
        if let Some(p) = self.parked.get_mut(did.as_str()) {
            // Busy: the recheck runs in stream order, after the frames parked before it.
            p.frames.push_back(Parkable::Recheck);
            return Vec::new();
        }
        self.start(did, Kind::Recheck, "gap in the stream", false)
            .await
    }

    /// The repo row that marks `did` as `status`, keeping its newest verified rev as a floor
    /// (nothing older is accepted later) and its last data root.
    fn mark(&mut self, did: &Did, status: RepoStatus) -> Vec<Change> {
        let held = self.held.get(did.as_str());
        let data = held
            .and_then(|h| h.state.as_ref())
            .map(|s| s.data.to_string());
        let rev = held.and_then(|h| h.floor.as_ref()).map(ToString::to_string);
        vec![Change::SetRepo(RepoRow {
            did: did.to_string(),
            rev,
            data_cid: data,
            status,
        })]
    }
}

/// Sends changes that belong to no frame (a background task's result) to the writer, which
/// commits them with its next batch. Returns false when the writer is gone.
async fn send_unticketed(done: &mpsc::Sender<Done>, after: u64, changes: Vec<Change>) -> bool {
    done.send(Done {
        ticket: None,
        after,
        source: 0,
        seq: None,
        changes,
        _permit: None,
    })
    .await
    .is_ok()
}

/// An account status from the `active` flag and `status` string of `#account` or
/// `getRepoStatus`; an inactive account with an unknown status counts as deactivated.
pub(crate) fn account_status(active: bool, status: Option<&str>) -> OperatorStatus {
    if active {
        OperatorStatus::Active
    } else {
        status
            .and_then(OperatorStatus::parse)
            .unwrap_or(OperatorStatus::Deactivated)
    }
}

/// Whether a firehose URL and a PDS endpoint name the same server: same host and port,
/// `ws`/`wss` counting as `http`/`https`, and any loopback name as any other.
fn same_host(source: &Url, pds: &Url) -> bool {
    fn host(u: &Url) -> Option<String> {
        let h = u
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let loopback = h == "localhost"
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        Some(if loopback { "loopback".to_owned() } else { h })
    }
    host(source).is_some()
        && host(source) == host(pds)
        && source.port_or_known_default() == pds.port_or_known_default()
}

/// The handle change for a DID: its declared handle, and whether it resolves back.
pub async fn identity_change(resolver: &Resolver, did: &Did) -> Option<Change> {
    let ident = resolver.resolve(did).await.ok()?;
    let handle = ident.declared_handle.clone();
    let verified = match &handle {
        Some(h) => resolver.verify_handle(did, h).await,
        None => false,
    };
    Some(Change::Identity {
        did: did.to_string(),
        handle: handle.map(|h| h.to_string()),
        verified,
    })
}

/// The CID of the empty MST, computed once.
fn empty_tree() -> Option<cid::Cid> {
    static EMPTY: std::sync::OnceLock<Option<cid::Cid>> = std::sync::OnceLock::new();
    *EMPTY.get_or_init(|| {
        guildhall_proto::mst::compute_root(std::iter::empty())
            .ok()
            .map(|(root, _)| root)
    })
}

fn repo_state(row: &RepoRow) -> Option<RepoState> {
    if row.status != RepoStatus::Synced {
        return None;
    }
    Some(RepoState {
        rev: Tid::parse(row.rev.as_deref()?).ok()?,
        data: row.data_cid.as_deref()?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    #[test]
    fn a_firehose_is_its_pds_only_on_the_same_host_and_port() {
        let pds = url("https://pds.example.com");
        assert!(same_host(&url("wss://pds.example.com/xrpc/x"), &pds));
        assert!(same_host(&url("wss://PDS.example.com:443"), &pds));
        assert!(!same_host(&url("wss://bsky.network"), &pds));
        assert!(
            !same_host(&url("ws://pds.example.com"), &pds),
            "port 80 is not 443"
        );
        assert!(!same_host(&url("wss://pds.example.com.evil.net"), &pds));
        let local = url("http://localhost:2583");
        assert!(same_host(&url("ws://127.0.0.1:2583"), &local));
        assert!(same_host(&url("ws://[::1]:2583"), &local));
        assert!(!same_host(&url("ws://127.0.0.1:2584"), &local));
    }

    #[test]
    fn account_status_from_flags() {
        assert_eq!(
            account_status(true, Some("takendown")),
            OperatorStatus::Active
        );
        assert_eq!(
            account_status(false, Some("takendown")),
            OperatorStatus::Takendown
        );
        assert_eq!(
            account_status(false, Some("bogus")),
            OperatorStatus::Deactivated
        );
        assert_eq!(account_status(false, None), OperatorStatus::Deactivated);
    }
}
