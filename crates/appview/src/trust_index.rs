//! The live trust graph: built from the store at start, kept current from the ingest
//! pipeline's broadcast of committed changes, rebuilt when churn or a lost message calls
//! for it. The same task checks the store's change token now and then, and rebuilds when it
//! moved beyond the versions the broadcast batches reached: another process wrote (`guildhall
//! ingest` beside `serve --no-ingest`, whose broadcast carries nothing, or a `guildhall
//! backfill` beside `serve`). See [`TrustIndex::spawn_updates`].
//!
//! Consistency argument: every graph update is idempotent (adding an endorsement replaces
//! one with the same URI, removing an absent one is a no-op, setting a service CID
//! overwrites). A rebuild reads the store *after* the broadcast it follows, and the
//! messages still queued behind it are applied afterwards in order, so the graph converges
//! to the store's state without a lock across the two.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use guildhall_ingest::indexer::{Committed, CommittedBatch};
use guildhall_proto::syntax::Datetime;
use guildhall_store::{
    Change, ChangeToken, EndorsementRow, IndexRow, OperatorStatus, Store, StoreError,
};
use guildhall_trust::{
    BuildOptions, CandidateProvider, Endorsement, GraphStats, PreparedCandidates, RankOptions,
    Ranked, Ranking, TrustError, TrustGraph, TrustPath, weight::Capabilities,
};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

/// Collection of endorsement records.
pub const ENDORSEMENT_COLLECTION: &str = "dev.guildhall.endorsement";
/// Collection of service records.
pub const SERVICE_COLLECTION: &str = "dev.guildhall.service";

/// A strength the lexicon reads for an endorsement that states none.
const DEFAULT_STRENGTH: i64 = 50;

/// Why the index could not be loaded or refreshed.
#[derive(Debug, thiserror::Error)]
pub enum TrustIndexError {
    /// Reading endorsements or service versions failed.
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
    /// The graph rejected its input.
    #[error("building the trust graph: {0}")]
    Graph(#[from] TrustError),
    /// The blocking build task panicked or was cancelled.
    #[error("trust graph build task failed: {0}")]
    Task(String),
}

/// Tuning of the index.
#[derive(Debug, Clone)]
pub struct TrustIndexOptions {
    /// Graph build options (CIDs kept, churn threshold).
    pub build: BuildOptions,
    /// Shortest time between two rebuilds from the store caused by repo resets or a lost
    /// broadcast; bursts of them are coalesced into one rebuild.
    pub rebuild_debounce: Duration,
    /// Endorsements read per query while building from the store: the build holds about
    /// two pages besides the graph, however many endorsements there are.
    pub load_page: u32,
}

impl Default for TrustIndexOptions {
    fn default() -> Self {
        Self {
            build: BuildOptions::default(),
            rebuild_debounce: Duration::from_millis(500),
            load_page: 5_000,
        }
    }
}

/// The trust graph shared by all requests.
///
/// Readers hold a read lock for the duration of one ranking (milliseconds); the single
/// updater task takes the write lock only to apply a batch to the overlay or to swap in a
/// rebuilt graph, which is built without holding it.
#[derive(Debug)]
pub struct TrustIndex {
    graph: RwLock<TrustGraph>,
    generation: AtomicU64,
    /// Moves whenever what the store would answer to a service search may have changed
    /// (a service written or deleted, an account's visibility, a reload from the store), and
    /// only then: cached candidate sets stay valid while endorsements come and go.
    services_generation: AtomicU64,
    opts: TrustIndexOptions,
    /// The graph version the graph reflects: read just before it was last built from the
    /// store, then moved along by broadcast batches that continue it; `None` for a graph
    /// that did not come from the store.
    token: Mutex<Option<ChangeToken>>,
    /// Accounts whose records the graph leaves out (status not active), as of the last
    /// load plus the status changes applied since: a status change that does not move an
    /// account in or out of this set changes nothing in the graph, and a batch's endorsements
    /// are shown or not by it, with no store read.
    hidden: Mutex<HashSet<String>>,
}

/// An endorsement row in the trust crate's form; `None` when a date does not parse or the
/// strength is out of range (the record validator rejects both, so this is defensive).
pub fn to_endorsement(row: &EndorsementRow) -> Option<Endorsement> {
    let created_at_us = Datetime::parse(&row.created_at).ok()?.unix_micros();
    let expires_at_us = match &row.expires_at {
        Some(s) => Some(Datetime::parse(s).ok()?.unix_micros()),
        None => None,
    };
    let strength = row.strength.unwrap_or(DEFAULT_STRENGTH);
    if !(1..=100).contains(&strength) {
        return None;
    }
    Some(Endorsement {
        uri: row.uri.clone(),
        cid: row.cid.clone(),
        author: row.author.clone(),
        subject: row.subject.clone(),
        capabilities: row.capabilities.clone(),
        strength,
        created_at_us,
        expires_at_us,
        pinned: match (&row.service_uri, &row.service_cid) {
            (Some(u), Some(c)) => Some((u.clone(), c.clone())),
            _ => None,
        },
    })
}

/// One graph update derived from a committed change.
#[derive(Debug)]
enum Op {
    Add(Endorsement),
    Remove(String),
    /// A service's current CID and the capabilities it offers.
    SetService(String, String, Vec<String>),
    ClearService(String),
    /// An account stopped being active: everything the store now hides of it goes.
    RemoveOperator(String),
    /// A repo is about to be written again from a full resync: what it wrote goes, and
    /// the batch's records add the new state.
    DropRepo(String),
}

/// Builds a graph from the store's current state: endorsements stream in pages from an
/// async reader into the builder running off the runtime, so memory holds the graph and
/// about two pages, never every row at once.
async fn build_from_store(
    store: &Store,
    opts: &TrustIndexOptions,
) -> Result<(TrustGraph, HashSet<String>), TrustIndexError> {
    let hidden: HashSet<String> = store.inactive_operators().await?.into_iter().collect();
    let cids = store.service_cids().await?;
    let offered = store.service_capabilities().await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<EndorsementRow>>(1);
    let build = opts.build.clone();
    let builder = tokio::task::spawn_blocking(move || {
        let mut skipped = 0usize;
        let list = std::iter::from_fn(|| rx.blocking_recv())
            .flatten()
            .filter_map(|r| {
                let e = to_endorsement(&r);
                skipped += usize::from(e.is_none());
                e
            });
        let mut g = TrustGraph::build(list, &build)?;
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "endorsements with unreadable dates or strength left out of the trust graph"
            );
        }
        for (uri, cid) in &cids {
            g.set_service_cid(uri, cid)?;
        }
        // Rows come by URI: one service's capabilities are contiguous.
        for group in offered.chunk_by(|a, b| a.0 == b.0) {
            let caps: Vec<&str> = group.iter().map(|(_, c)| c.as_str()).collect();
            if let Some((uri, _)) = group.first() {
                g.set_service_capabilities(uri, &caps)?;
            }
        }
        Ok::<_, TrustIndexError>(g)
    });
    let mut after = None;
    loop {
        // On a read error the sender drops here, the builder finishes early, and its graph
        // (incomplete) is never used.
        let page = store.endorsements_after(after, opts.load_page).await?;
        after = page.cursor;
        if tx.send(page.items).await.is_err() || after.is_none() {
            // The builder stopped early (an invalid endorsement) or every page is sent.
            break;
        }
    }
    drop(tx);
    let g = builder
        .await
        .map_err(|e| TrustIndexError::Task(e.to_string()))??;
    Ok((g, hidden))
}

impl TrustIndex {
    /// Builds the index from the store with default options.
    pub async fn load(store: &Store) -> Result<Arc<TrustIndex>, TrustIndexError> {
        Self::load_with(store, TrustIndexOptions::default()).await
    }

    /// Builds the index from the store.
    pub async fn load_with(
        store: &Store,
        opts: TrustIndexOptions,
    ) -> Result<Arc<TrustIndex>, TrustIndexError> {
        let started = std::time::Instant::now();
        // Read before the build: a write that lands during it moves the token again, so a
        // refresh can only rebuild once too often, never miss it.
        let token = store.change_token().await?;
        let (g, hidden) = build_from_store(store, &opts).await?;
        let s = g.stats();
        tracing::info!(
            nodes = s.nodes,
            edges = s.base_edges,
            heap_mib = s.heap_bytes >> 20,
            ms = started.elapsed().as_millis() as u64,
            "trust graph loaded"
        );
        let me = Self::from_graph(g, opts);
        me.set_token(Some(token));
        *me.hidden.lock().unwrap_or_else(PoisonError::into_inner) = hidden;
        Ok(me)
    }

    /// Wraps an already built graph (benchmarks and tests that bypass the store).
    pub fn from_graph(graph: TrustGraph, opts: TrustIndexOptions) -> Arc<TrustIndex> {
        Arc::new(TrustIndex {
            graph: RwLock::new(graph),
            generation: AtomicU64::new(1),
            services_generation: AtomicU64::new(1),
            opts,
            token: Mutex::new(None),
            hidden: Mutex::new(HashSet::new()),
        })
    }

    fn set_token(&self, token: Option<ChangeToken>) {
        *self.token.lock().unwrap_or_else(PoisonError::into_inner) = token;
    }

    /// Changes whenever the graph changes; part of search cursors.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Changes whenever a service search's SQL answer may have changed; keys the AppView's
    /// cache of candidate sets.
    pub fn services_generation(&self) -> u64 {
        self.services_generation.load(Ordering::Acquire)
    }

    /// Size and churn of the current graph.
    pub fn stats(&self) -> GraphStats {
        self.graph
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .stats()
    }

    /// Ranks candidates against the current graph; returns the generation it used.
    pub fn rank<S: AsRef<str>, C: Capabilities>(
        &self,
        viewer: Option<&str>,
        capability: C,
        candidates: &[CandidateProvider<S>],
        now_us: i64,
        opts: &RankOptions,
    ) -> (Vec<Ranked>, u64) {
        let g = self.graph.read().unwrap_or_else(PoisonError::into_inner);
        // Read under the lock: the updater bumps the generation while holding the write lock.
        let generation = self.generation();
        (
            g.rank(viewer, capability, candidates, now_us, opts),
            generation,
        )
    }

    /// [`rank`](Self::rank) with the candidates' preparation kept in `slot` (see
    /// [`PreparedCandidates`]): refreshed there first when the graph moved on, so the many
    /// rankings of one cached candidate set share the work.
    pub fn rank_prepared<S: AsRef<str>, C: Capabilities>(
        &self,
        viewer: Option<&str>,
        capability: C,
        candidates: &[CandidateProvider<S>],
        slot: &Mutex<Arc<PreparedCandidates>>,
        now_us: i64,
        opts: &RankOptions,
    ) -> (Ranking, u64) {
        let g = self.graph.read().unwrap_or_else(PoisonError::into_inner);
        let generation = self.generation();
        let prepared = {
            let mut p = slot.lock().unwrap_or_else(PoisonError::into_inner);
            if !p.is_current_for(&g) || p.len() != candidates.len() {
                let mut q = if p.len() == candidates.len() {
                    (**p).clone()
                } else {
                    PreparedCandidates::new(candidates)
                };
                g.refresh_prepared(&mut q, candidates);
                *p = Arc::new(q);
            }
            Arc::clone(&p)
        };
        (
            g.rank_prepared(viewer, capability, candidates, &prepared, now_us, opts),
            generation,
        )
    }

    /// The best path from `from` to `to` (getTrustPath).
    pub fn path<C: Capabilities>(
        &self,
        from: &str,
        to: &str,
        capability: C,
        now_us: i64,
        opts: &RankOptions,
    ) -> Option<TrustPath> {
        self.graph
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .path(from, to, capability, now_us, opts)
    }

    /// Operators within `hops` endorsements of `seeds`, nearest first, at most `budget`
    /// (see [`TrustGraph::reach`]); `true` when the budget cut it short.
    pub fn reach(&self, seeds: &[&str], hops: u8, budget: usize) -> (Vec<String>, bool) {
        self.graph
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .reach(seeds, hops, budget)
    }

    /// Swaps in `g`; `reloaded` says it was read from the store (whose services may have
    /// changed too) rather than compacted from the current graph.
    fn swap(&self, g: TrustGraph, reloaded: bool) {
        let mut w = self.graph.write().unwrap_or_else(PoisonError::into_inner);
        *w = g;
        self.generation.fetch_add(1, Ordering::AcqRel);
        if reloaded {
            self.services_generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Replaces the graph with one built from the store's current state.
    pub async fn rebuild_from_store(&self, store: &Store) -> Result<(), TrustIndexError> {
        let token = store.change_token().await?;
        self.rebuild_at(store, token).await
    }

    /// Rebuilds from the store, whose change token was `token` just before.
    async fn rebuild_at(&self, store: &Store, token: ChangeToken) -> Result<(), TrustIndexError> {
        let (g, hidden) = build_from_store(store, &self.opts).await?;
        self.swap(g, true);
        *self.hidden.lock().unwrap_or_else(PoisonError::into_inner) = hidden;
        self.set_token(Some(token));
        tracing::info!(
            generation = self.generation(),
            "trust graph rebuilt from the store"
        );
        Ok(())
    }

    /// Rebuilds from the store if its change token is beyond the version the graph reflects
    /// (always, for a graph that did not come from the store). Returns whether it rebuilt.
    /// One row read when nothing changed. The one-shot form of the check
    /// [`spawn_updates`](Self::spawn_updates) runs, for callers with no broadcast to follow.
    pub async fn refresh_if_changed(&self, store: &Store) -> Result<bool, TrustIndexError> {
        let token = store.change_token().await?;
        if self.covers(token) {
            return Ok(false);
        }
        self.rebuild_at(store, token).await?;
        Ok(true)
    }

    /// Compacts the overlay into a fresh graph if churn has passed the threshold.
    async fn compact_if_needed(self: &Arc<Self>) -> Result<(), TrustIndexError> {
        let needed = self
            .graph
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .needs_rebuild();
        if !needed {
            return Ok(());
        }
        let me = Arc::clone(self);
        // Only the updater task writes, so nothing changes between this copy and the swap.
        let g = tokio::task::spawn_blocking(move || {
            me.graph
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .rebuilt()
        })
        .await
        .map_err(|e| TrustIndexError::Task(e.to_string()))??;
        self.swap(g, false);
        tracing::info!(generation = self.generation(), "trust graph compacted");
        Ok(())
    }

    /// Applies one committed batch, in place. Returns whether a rebuild from the store is
    /// needed (no change needs one now; the answer stays for callers that act on it).
    /// A repo reset (`DeleteRepoRecords`, before a full resync) drops what the repo wrote
    /// and the batch's records add the new state: the cost is the repo's, not the graph's.
    /// Account status changes are applied in place: a hidden account's endorsements and
    /// services leave the graph, and a reactivated one's come back from the store (a read
    /// of that account's endorsements, not of the whole graph); a change that does not move
    /// the account between shown and hidden (Active→Active, Suspended→Takendown) does
    /// nothing.
    pub async fn apply_changes(
        &self,
        changes: &[Change],
        store: &Store,
    ) -> Result<bool, TrustIndexError> {
        let mut ops = Vec::new();
        let rebuild = false;
        let mut services = false;
        for c in changes {
            match c {
                Change::UpsertRecord(rec, Some(IndexRow::Endorsement(e))) => {
                    let mut e = e.clone();
                    // The store fills these from the record row on write; mirror that.
                    e.uri.clone_from(&rec.uri);
                    e.author.clone_from(&rec.did);
                    e.cid.clone_from(&rec.cid);
                    // The index tracks hidden accounts itself (loaded with the graph, moved by
                    // this loop's account changes in order): no store read per endorsement.
                    let shown = {
                        let hidden = self.hidden.lock().unwrap_or_else(PoisonError::into_inner);
                        !hidden.contains(&e.author) && !hidden.contains(&e.subject)
                    };
                    match to_endorsement(&e).filter(|_| shown) {
                        Some(x) => ops.push(Op::Add(x)),
                        None => ops.push(Op::Remove(rec.uri.clone())),
                    }
                }
                Change::UpsertRecord(rec, Some(IndexRow::Service(svc))) => {
                    services = true;
                    ops.push(Op::SetService(
                        rec.uri.clone(),
                        rec.cid.clone(),
                        svc.capabilities.clone(),
                    ));
                }
                Change::UpsertRecord(rec, _) => {
                    // A new version without an index row replaces (and so retracts) the old.
                    if rec.collection == ENDORSEMENT_COLLECTION {
                        ops.push(Op::Remove(rec.uri.clone()));
                    } else if rec.collection == SERVICE_COLLECTION {
                        services = true;
                        ops.push(Op::ClearService(rec.uri.clone()));
                    }
                }
                Change::DeleteRecord { uri } => {
                    if uri_collection(uri) == Some(ENDORSEMENT_COLLECTION) {
                        ops.push(Op::Remove(uri.clone()));
                    } else if uri_collection(uri) == Some(SERVICE_COLLECTION) {
                        services = true;
                        ops.push(Op::ClearService(uri.clone()));
                    }
                }
                Change::Account { did, status } => {
                    let hide = *status != OperatorStatus::Active;
                    let moved = {
                        let mut hidden = self.hidden.lock().unwrap_or_else(PoisonError::into_inner);
                        if hide {
                            hidden.insert(did.clone())
                        } else {
                            hidden.remove(did)
                        }
                    };
                    if !moved {
                        continue;
                    }
                    services = true;
                    if hide {
                        ops.push(Op::RemoveOperator(did.clone()));
                    } else {
                        restore_operator(store, did, &mut ops).await?;
                    }
                }
                Change::DeleteRepoRecords { did } => {
                    services = true;
                    ops.push(Op::DropRepo(did.clone()));
                }
                Change::SetRepo(_)
                | Change::Identity { .. }
                | Change::Reject(_)
                | Change::BackfillDone { .. } => {}
            }
        }
        if !ops.is_empty() {
            let mut g = self.graph.write().unwrap_or_else(PoisonError::into_inner);
            for op in ops {
                match op {
                    Op::Add(e) => {
                        g.add(&e)?;
                    }
                    Op::Remove(uri) => {
                        g.remove(&uri);
                    }
                    Op::SetService(uri, cid, caps) => {
                        g.set_service_cid(&uri, &cid)?;
                        g.set_service_capabilities(&uri, &caps)?;
                    }
                    Op::ClearService(uri) => g.clear_service(&uri),
                    Op::RemoveOperator(did) => {
                        g.remove_operator(&did);
                    }
                    Op::DropRepo(did) => {
                        g.remove_repo(&did);
                    }
                }
            }
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        if services {
            self.services_generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(rebuild)
    }

    /// Starts the task that keeps the graph current from the ingest broadcast. It ends when
    /// the sender is dropped.
    ///
    /// Every `check_every` (zero: never) it also reads the store's change token: versions
    /// this process's own batches reached are known from the broadcast, so a token beyond
    /// them means another process wrote (e.g. a `guildhall backfill` run beside `serve`),
    /// and the graph is rebuilt. The check runs in this task, between batches, so a rebuild
    /// never races the batches applied around it.
    pub fn spawn_updates(
        self: &Arc<Self>,
        mut rx: broadcast::Receiver<Committed>,
        store: Store,
        check_every: Duration,
    ) -> JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut pending_rebuild: Option<tokio::time::Instant> = None;
            let mut check = (!check_every.is_zero()).then(|| {
                let mut i = tokio::time::interval_at(
                    tokio::time::Instant::now() + check_every,
                    check_every,
                );
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i
            });
            loop {
                // A due rebuild goes first: a fresh timer is not ready on its first poll, so
                // in the select below it would lose to a check tick every time.
                if pending_rebuild.is_some_and(|at| at <= tokio::time::Instant::now()) {
                    pending_rebuild = None;
                    if let Err(e) = me.rebuild_from_store(&store).await {
                        tracing::error!(error = %e, "trust graph rebuild failed; retrying");
                        pending_rebuild =
                            Some(tokio::time::Instant::now() + Duration::from_secs(5));
                    }
                    continue;
                }
                let rebuild_due = async {
                    match pending_rebuild {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                let check_due = async {
                    match check.as_mut() {
                        Some(i) => {
                            i.tick().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                let event = tokio::select! {
                    m = rx.recv() => Event::Message(m),
                    () = rebuild_due => Event::Rebuild,
                    () = check_due => Event::Check,
                };
                match event {
                    Event::Message(Ok(batch)) => {
                        me.follow(&batch, &store, &mut pending_rebuild).await;
                    }
                    Event::Message(Err(RecvError::Lagged(n))) => {
                        tracing::warn!(
                            missed = n,
                            "trust index lagged behind ingestion; rebuilding"
                        );
                        pending_rebuild = Some(tokio::time::Instant::now());
                    }
                    Event::Message(Err(RecvError::Closed)) => break,
                    Event::Check => {
                        match me
                            .caught_up_with_store(&mut rx, &store, &mut pending_rebuild)
                            .await
                        {
                            Ok(true) => {}
                            Ok(false) => {
                                tracing::info!(
                                    "the store changed beyond this process's writes; rebuilding"
                                );
                                pending_rebuild = Some(tokio::time::Instant::now());
                            }
                            Err(e) => tracing::error!(error = %e, "trust graph check failed"),
                        }
                    }
                    // Handled at the top of the loop.
                    Event::Rebuild => {}
                }
            }
            tracing::info!("trust index updates stopped: the ingest broadcast closed");
        })
    }

    /// Applies one broadcast batch, and moves the known version along when the batch
    /// continues it.
    async fn follow(
        self: &Arc<Self>,
        batch: &CommittedBatch,
        store: &Store,
        pending_rebuild: &mut Option<tokio::time::Instant>,
    ) {
        match self.apply_changes(&batch.changes, store).await {
            Ok(true) => {
                pending_rebuild.get_or_insert_with(|| {
                    tokio::time::Instant::now() + self.opts.rebuild_debounce
                });
            }
            Ok(false) => {
                if let Err(e) = self.compact_if_needed().await {
                    tracing::error!(error = %e, "trust graph compaction failed");
                }
            }
            Err(e) => {
                // The overlay may now differ from the store: resync from it.
                tracing::error!(error = %e, "applying changes to the trust graph failed");
                pending_rebuild.get_or_insert_with(tokio::time::Instant::now);
                return;
            }
        }
        let mut known = self.token.lock().unwrap_or_else(PoisonError::into_inner);
        if *known == Some(batch.applied.before()) {
            *known = Some(batch.applied.token);
        }
    }

    /// Whether the graph reflects every version up to the store's current one. Batches
    /// this process committed a moment ago may still be queued: they are applied first,
    /// waiting at most [`BROADCAST_GRACE`] for one still being sent.
    async fn caught_up_with_store(
        self: &Arc<Self>,
        rx: &mut broadcast::Receiver<Committed>,
        store: &Store,
        pending_rebuild: &mut Option<tokio::time::Instant>,
    ) -> Result<bool, TrustIndexError> {
        let token = store.change_token().await?;
        let deadline = tokio::time::Instant::now() + BROADCAST_GRACE;
        while !self.covers(token) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Ok(batch)) => self.follow(&batch, store, pending_rebuild).await,
                // Lagged, closed or nothing more in time: not caught up.
                Ok(Err(_)) | Err(_) => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Whether every version up to `token` is reflected in the graph.
    fn covers(&self, token: ChangeToken) -> bool {
        self.token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|known| known >= token)
    }
}

/// How long a check waits for this process's own batch to arrive on the broadcast after
/// reading a version it committed (the writer commits, then sends).
const BROADCAST_GRACE: Duration = Duration::from_millis(250);

/// What the updater task wakes up for.
enum Event {
    Message(Result<Committed, RecvError>),
    Rebuild,
    Check,
}

/// Queues the re-adding of what the store shows again of a reactivated `did`: the visible
/// endorsements it wrote or received and its visible services. Reads the store as it is now
/// (at or after the batch that reactivated it); a later change is applied after this one.
async fn restore_operator(store: &Store, did: &str, ops: &mut Vec<Op>) -> Result<(), StoreError> {
    for by_author in [true, false] {
        let mut cursor = None;
        loop {
            let page = if by_author {
                store
                    .endorsements_by_author(did, cursor, guildhall_store::MAX_PAGE)
                    .await?
            } else {
                store
                    .endorsements_of_subject(did, cursor, guildhall_store::MAX_PAGE)
                    .await?
            };
            // Rows that do not convert were left out of the graph by a rebuild too.
            ops.extend(page.items.iter().filter_map(to_endorsement).map(Op::Add));
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    for svc in store.services_of(did).await? {
        ops.push(Op::SetService(svc.uri, svc.cid, svc.capabilities));
    }
    Ok(())
}

/// The collection segment of `at://<authority>/<collection>/<rkey>`.
fn uri_collection(uri: &str) -> Option<&str> {
    uri.strip_prefix("at://")?.split('/').nth(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_of_uri() {
        assert_eq!(
            uri_collection("at://did:plc:a/dev.guildhall.endorsement/3k"),
            Some(ENDORSEMENT_COLLECTION)
        );
        assert_eq!(uri_collection("https://x/y/z"), None);
    }

    #[test]
    fn endorsement_conversion() {
        let row = EndorsementRow {
            uri: "at://did:plc:a/dev.guildhall.endorsement/3k".into(),
            author: "did:plc:a".into(),
            rkey: "3k".into(),
            cid: "bafy".into(),
            subject: "did:plc:b".into(),
            service_uri: Some("at://did:plc:b/dev.guildhall.service/x".into()),
            service_cid: Some("bafys".into()),
            strength: None,
            comment: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            expires_at: Some("2027-01-01T00:00:00.5Z".into()),
            capabilities: vec!["sms.send".into()],
        };
        let Some(e) = to_endorsement(&row) else {
            panic!("converts")
        };
        assert_eq!(e.strength, 50);
        assert_eq!(e.created_at_us, 1_767_225_600_000_000);
        assert_eq!(e.expires_at_us, Some(1_798_761_600_500_000));
        assert!(e.pinned.is_some());
        let bad = EndorsementRow {
            created_at: "yesterday".into(),
            ..row.clone()
        };
        assert!(to_endorsement(&bad).is_none());
        let weak = EndorsementRow {
            strength: Some(0),
            ..row
        };
        assert!(to_endorsement(&weak).is_none());
    }
}
