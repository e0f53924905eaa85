//! searchServices: filters in SQL, ranking in memory, deterministic pages of the ranked list.
//!
//! Candidates: see [`Candidates`] and [`with_reach`]; one operator can hold at most
//! `candidates_per_operator` places of an answer unless the viewer or an anchor reaches it.
//!
//! Pagination: the first page ranks every candidate the filters admit (up to the configured
//! cap) and, when more than one page results, keeps the ranked list in a small snapshot
//! cache; the cursor names that snapshot, the query's hash, the index generation, the
//! ranking instant and an offset. Later pages slice the snapshot, so writes between pages
//! neither duplicate nor skip results (entries deleted meanwhile are dropped at hydration).
//! When the snapshot has been evicted the list is ranked again at the cursor's instant; that
//! reproduces it exactly unless the index generation moved, in which case the offset is
//! applied to the new ranking (best effort, logged).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use guildhall_store::{CandidateSet, ServiceCandidate, ServiceQuery};
use guildhall_trust::{CandidateProvider, MAX_HOPS, PreparedCandidates, RankOptions, Ranking};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::cursor::SearchCursor;
use crate::error::XrpcError;
use crate::trust_index::TrustIndex;
use crate::views::TrustInfo;

/// Longest a cursor's ranking instant may lie in the past (older cursors are refused:
/// their decay weights would be stale).
const MAX_CURSOR_AGE: Duration = Duration::from_secs(24 * 3600);

/// One ranked service, before hydration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankedService {
    pub uri: String,
    pub did: String,
    pub cid: String,
    pub trust: TrustInfo,
}

/// A searchServices request after validation.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    /// The SQL filters (`limit` and `after` unused).
    pub filters: ServiceQuery,
    /// Whose graph ranks the results.
    pub viewer: Option<String>,
    /// Page size, 1..=100.
    pub limit: u32,
    /// Where to continue.
    pub cursor: Option<SearchCursor>,
}

/// One page of ranked services.
#[derive(Debug, Clone)]
pub struct SearchPage {
    pub services: Vec<RankedService>,
    pub cursor: Option<String>,
    /// Some services the filters admit were not ranked (see [`Candidates`]).
    pub omitted: bool,
}

/// Unix microseconds now.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Stable hash of everything that defines the ranked list (not `limit`, not `cursor`).
pub fn query_hash(req: &SearchRequest) -> u64 {
    let f = &req.filters;
    let mut h = Sha256::new();
    let mut put = |name: &str, v: Option<&str>| {
        h.update(name.as_bytes());
        match v {
            Some(v) => {
                h.update([1]);
                h.update((v.len() as u64).to_be_bytes());
                h.update(v.as_bytes());
            }
            None => h.update([0]),
        }
    };
    put("q", f.q.as_deref());
    for c in &f.capabilities {
        put("capability", Some(c));
    }
    put("region", f.region.as_deref());
    put(
        "maxPrice",
        f.max_price_nanos.map(|n| n.to_string()).as_deref(),
    );
    put("currency", f.currency.as_deref());
    put("pricingModel", f.pricing_model.as_deref());
    put(
        "maxLatencyMs",
        f.max_latency_ms.map(|n| n.to_string()).as_deref(),
    );
    put(
        "minAvailabilityBp",
        f.min_availability_bp.map(|n| n.to_string()).as_deref(),
    );
    put("viewer", req.viewer.as_deref());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// Quality of a candidate for the no-path fallback, parts per million.
///
/// No measured quality exists yet and self-declared SLAs are free for a sybil to inflate, so
/// every candidate gets 0 and the fallback orders unreachable candidates by operator DID and
/// service URI (deterministic, ungameable by claims). Measured success rates plug in here.
pub fn quality_ppm(_c: &ServiceCandidate) -> u32 {
    0
}

/// The services one set of filters admits, as the candidate cache keeps them: the SQL rows
/// and their preparation for ranking (operator nodes, fallback order), which every viewer's
/// ranking of the set shares and which is refreshed when the trust graph moves on.
///
/// The cached set is the same for every viewer: a share of each operator's services
/// ([`AppConfig::candidates_per_operator`](crate::AppConfig)) up to a total cap, whole
/// operators in DID order. What depends on the viewer is added per request ([`with_reach`]):
/// every matching service of the operators within the viewer's and the anchors' reach that
/// the shares or the cap left out.
#[derive(Debug, Default)]
pub struct Candidates {
    rows: Vec<ServiceCandidate>,
    prepared: Mutex<Arc<PreparedCandidates>>,
    /// What SQL left out of `rows` (empty when nothing was).
    cut: CandidateSet,
}

impl Candidates {
    /// Wraps SQL rows; their graph-independent preparation (the fallback order) is done here.
    pub fn new(rows: Vec<ServiceCandidate>) -> Self {
        Self::from_set(CandidateSet {
            candidates: rows,
            ..CandidateSet::default()
        })
    }

    /// Wraps a store answer, remembering what it left out.
    pub fn from_set(mut set: CandidateSet) -> Self {
        let rows = std::mem::take(&mut set.candidates);
        let prepared = PreparedCandidates::new(&providers(&rows));
        Self {
            rows,
            prepared: Mutex::new(Arc::new(prepared)),
            cut: set,
        }
    }

    /// The rows, in SQL order.
    pub fn rows(&self) -> &[ServiceCandidate] {
        &self.rows
    }

    /// Whether SQL left some matching services out.
    pub fn truncated(&self) -> bool {
        self.cut.truncated
    }
}

/// The ranker's view of candidate rows (borrowed strings).
fn providers(rows: &[ServiceCandidate]) -> Vec<CandidateProvider<&str>> {
    rows.iter()
        .map(|c| CandidateProvider {
            operator: c.did.as_str(),
            service: c.uri.as_str(),
            quality_ppm: quality_ppm(c),
        })
        .collect()
}

/// A ranked candidate list: the SQL candidates and the ranker's answer, converted to views
/// only for the page shown (formatting paths of every candidate would cost more than
/// ranking them).
#[derive(Debug, Clone, Default)]
pub struct RankedList {
    candidates: Arc<Candidates>,
    ranked: Ranking,
    /// Some matching services were not ranked.
    pub omitted: bool,
}

impl RankedList {
    /// Ranked entries.
    pub fn len(&self) -> usize {
        self.ranked.len()
    }

    /// Whether nothing matched.
    pub fn is_empty(&self) -> bool {
        self.ranked.is_empty()
    }

    /// Entries `offset..offset + limit` as ranked services.
    pub fn page(&self, offset: usize, limit: usize) -> Vec<RankedService> {
        self.ranked
            .range(offset, limit)
            .filter_map(|r| {
                let c = self.candidates.rows.get(r.candidate)?;
                Some(RankedService {
                    uri: c.uri.clone(),
                    did: c.did.clone(),
                    cid: c.cid.clone(),
                    trust: TrustInfo::from_ranked(&r),
                })
            })
            .collect()
    }
}

/// Ranks SQL candidates with the trust index: the in-memory half of searchServices.
/// Edge weights are scoped to the best match among `capabilities` (any order); with none,
/// to what each candidate service offers (getService and getOperator rank that way too).
pub fn rank_candidates(
    index: &TrustIndex,
    viewer: Option<&str>,
    capabilities: &[String],
    candidates: Arc<Candidates>,
    now_us: i64,
    opts: &RankOptions,
) -> (RankedList, u64) {
    let (ranked, generation) = index.rank_prepared(
        viewer,
        capabilities,
        &providers(&candidates.rows),
        &candidates.prepared,
        now_us,
        opts,
    );
    (
        RankedList {
            candidates,
            ranked,
            omitted: false,
        },
        generation,
    )
}

/// A cached ranked list.
#[derive(Debug)]
struct Snapshot {
    id: u64,
    query_hash: u64,
    created: Instant,
    list: Arc<RankedList>,
}

/// Recently ranked lists, bounded by total entries and age.
#[derive(Debug)]
pub struct SnapshotCache {
    inner: Mutex<CacheInner>,
    max_entries: usize,
    ttl: Duration,
}

#[derive(Debug, Default)]
struct CacheInner {
    next_id: u64,
    total: usize,
    items: VecDeque<Snapshot>,
}

impl SnapshotCache {
    /// A cache holding at most `max_entries` ranked services in all, each list for `ttl`.
    pub fn new(max_entries: usize, ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(CacheInner {
                next_id: 1,
                ..CacheInner::default()
            }),
            max_entries,
            ttl,
        }
    }

    fn insert(&self, query_hash: u64, list: Arc<RankedList>) -> u64 {
        let mut c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let id = c.next_id;
        c.next_id += 1;
        if list.len() > self.max_entries {
            // Too big to keep: later pages fall back to re-ranking.
            return id;
        }
        c.total += list.len();
        c.items.push_back(Snapshot {
            id,
            query_hash,
            created: Instant::now(),
            list,
        });
        while c.total > self.max_entries
            || c.items
                .front()
                .is_some_and(|s| s.created.elapsed() > self.ttl)
        {
            match c.items.pop_front() {
                Some(s) => c.total -= s.list.len(),
                None => break,
            }
        }
        id
    }

    fn get(&self, id: u64, query_hash: u64) -> Option<Arc<RankedList>> {
        let c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        c.items
            .iter()
            .find(|s| s.id == id && s.query_hash == query_hash && s.created.elapsed() <= self.ttl)
            .map(|s| Arc::clone(&s.list))
    }
}

/// Answers one searchServices request (without hydration).
pub async fn search(state: &AppState, req: &SearchRequest) -> Result<SearchPage, XrpcError> {
    let qh = query_hash(req);
    let limit = req.limit.clamp(1, 100) as usize;
    let (list, snapshot, generation, now, offset) = match req.cursor {
        Some(c) => {
            if c.query_hash != qh {
                return Err(XrpcError::invalid(
                    "InvalidCursor",
                    "cursor was issued for a different query",
                ));
            }
            let now = now_us();
            let age = now.saturating_sub(c.now_us);
            if age < -60_000_000 || age > MAX_CURSOR_AGE.as_micros() as i64 {
                return Err(XrpcError::invalid("InvalidCursor", "cursor has expired"));
            }
            match state.inner.snapshots.get(c.snapshot, qh) {
                Some(list) => (list, c.snapshot, c.generation, c.now_us, c.offset as usize),
                None => {
                    let (list, generation) = rank_all(state, req, c.now_us).await?;
                    if generation != c.generation {
                        tracing::debug!(
                            "search snapshot evicted and index moved; paging by offset"
                        );
                    }
                    let list = Arc::new(list);
                    let id = state.inner.snapshots.insert(qh, Arc::clone(&list));
                    (list, id, generation, c.now_us, c.offset as usize)
                }
            }
        }
        None => {
            let now = now_us();
            let (list, generation) = rank_all(state, req, now).await?;
            let list = Arc::new(list);
            let id = if list.len() > limit {
                state.inner.snapshots.insert(qh, Arc::clone(&list))
            } else {
                0
            };
            (list, id, generation, now, 0)
        }
    };
    let end = offset.saturating_add(limit).min(list.len());
    let services = list.page(offset, limit);
    let cursor = (end < list.len()).then(|| {
        SearchCursor {
            snapshot,
            query_hash: qh,
            generation,
            now_us: now,
            offset: u32::try_from(end).unwrap_or(u32::MAX),
        }
        .encode(&state.config.cursor_key)
    });
    Ok(SearchPage {
        services,
        cursor,
        omitted: list.omitted,
    })
}

async fn rank_all(
    state: &AppState,
    req: &SearchRequest,
    now: i64,
) -> Result<(RankedList, u64), XrpcError> {
    let shared = candidates(state, &req.filters).await?;
    let (candidates, omitted) = with_reach(state, req, shared).await?;
    let (mut list, generation) = rank_candidates(
        &state.trust,
        req.viewer.as_deref(),
        &req.filters.capabilities,
        candidates,
        now,
        &state.inner.rank_opts,
    );
    list.omitted = omitted;
    Ok((list, generation))
}

/// The shared candidate set of a request's filters plus what its viewer must not lose: the
/// matching services of the operators within [`MAX_HOPS`] of the viewer or an anchor (at most
/// [`AppConfig::reach_budget`](crate::AppConfig) operators, nearest first, and at most
/// [`AppConfig::reach_per_operator`](crate::AppConfig) services of each) whose services SQL
/// cut. Returns the set to rank and whether anything matching is still left out.
///
/// Invariant: the first `reach_per_operator` matching services (by URI) of the viewer, an
/// anchor, or an operator within their reach (inside the budget) are ranked, whatever any
/// other operator publishes.
pub async fn with_reach(
    state: &AppState,
    req: &SearchRequest,
    shared: Arc<Candidates>,
) -> Result<(Arc<Candidates>, bool), XrpcError> {
    if !shared.truncated() {
        return Ok((shared, false));
    }
    let mut seeds: Vec<&str> = req.viewer.iter().map(String::as_str).collect();
    seeds.extend(state.config.anchors.iter().map(String::as_str));
    let (reach, reach_cut) = state
        .trust
        .reach(&seeds, MAX_HOPS, state.config.reach_budget);
    // Seeds unknown to the graph still own their services.
    let mut need: Vec<&str> = seeds
        .iter()
        .copied()
        .chain(reach.iter().map(String::as_str))
        .filter(|d| shared.cut.cut(d))
        .collect();
    need.sort_unstable();
    need.dedup();
    let still_cut = reach_cut
        || shared.cut.missing_from.is_some()
        || shared
            .cut
            .crowded
            .iter()
            .any(|d| need.binary_search(&d.as_str()).is_err());
    if need.is_empty() {
        return Ok((shared, still_cut));
    }
    let (extra, reach_crowded) = state
        .store
        .candidates_of(&req.filters, &need, state.config.reach_per_operator)
        .await?;
    let still_cut = still_cut || reach_crowded;
    let rows: Vec<ServiceCandidate> = shared
        .rows
        .iter()
        .filter(|r| need.binary_search(&r.did.as_str()).is_err())
        .cloned()
        .chain(extra)
        .collect();
    Ok((Arc::new(Candidates::new(rows)), still_cut))
}

/// The SQL candidates of `filters`, from a short-lived cache when no service has changed
/// since they were read. Every service write, deletion or visibility change reaches the
/// trust index through the same broadcast and moves its services generation, so a cached
/// set is never older than the index it is ranked against; the TTL bounds staleness when
/// no broadcast arrives at all (an AppView running apart from ingestion).
async fn candidates(
    state: &AppState,
    filters: &ServiceQuery,
) -> Result<Arc<Candidates>, XrpcError> {
    let key = query_hash(&SearchRequest {
        filters: filters.clone(),
        ..SearchRequest::default()
    });
    // Read before the query: a change landing meanwhile files the set under a generation
    // that is already stale, never the reverse.
    let generation = state.trust.services_generation();
    if let Some(hit) = state.inner.candidates.get(key, generation) {
        return Ok(hit);
    }
    let set = state
        .store
        .search_candidates(
            filters,
            state.config.candidate_cap,
            state.config.candidates_per_operator,
        )
        .await?;
    if set.truncated {
        tracing::info!(
            cap = state.config.candidate_cap,
            per_operator = state.config.candidates_per_operator,
            crowded_operators = set.crowded.len(),
            cut_at = set.missing_from.as_deref().unwrap_or(""),
            "search candidates cut; the viewer's reach is added per request"
        );
    }
    let list = Arc::new(Candidates::from_set(set));
    state
        .inner
        .candidates
        .put(key, generation, Arc::clone(&list));
    Ok(list)
}

/// One cached set: filter hash, services generation, when it was read, the candidates.
type CachedSet = (u64, u64, Instant, Arc<Candidates>);

/// Recently read candidate sets, keyed by filter hash and services generation.
#[derive(Debug)]
pub struct CandidateCache {
    inner: Mutex<VecDeque<CachedSet>>,
    max_sets: usize,
    max_rows: usize,
    ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CandidateCache {
    /// At most `max_sets` sets holding `max_rows` candidate rows in all, each for at most
    /// `ttl`; a zero TTL disables caching.
    pub fn new(max_sets: usize, max_rows: usize, ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(VecDeque::new()),
            max_sets,
            max_rows,
            ttl,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Lookups answered from the cache and lookups that went to SQL, since start.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn get(&self, key: u64, generation: u64) -> Option<Arc<Candidates>> {
        let c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let found = c
            .iter()
            .find(|(k, g, t, _)| *k == key && *g == generation && t.elapsed() < self.ttl)
            .map(|(_, _, _, v)| Arc::clone(v));
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn put(&self, key: u64, generation: u64, list: Arc<Candidates>) {
        let rows = list.rows().len();
        if self.ttl.is_zero() || self.max_sets == 0 || rows > self.max_rows {
            return;
        }
        let mut c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        c.retain(|(k, g, t, _)| *k != key && *g == generation && t.elapsed() < self.ttl);
        let mut held: usize = c.iter().map(|(_, _, _, v)| v.rows().len()).sum();
        while c.len() >= self.max_sets || held + rows > self.max_rows {
            match c.pop_front() {
                Some((_, _, _, v)) => held -= v.rows().len(),
                None => break,
            }
        }
        c.push_back((key, generation, Instant::now(), list));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize) -> Arc<Candidates> {
        Arc::new(Candidates::new(
            (0..n)
                .map(|i| ServiceCandidate {
                    uri: format!("at://did:plc:o{i}/dev.guildhall.service/s"),
                    did: format!("did:plc:o{i}"),
                    cid: "bafy".into(),
                    created_at: "2026-11-01T00:00:00Z".into(),
                    latency_p95_ms: None,
                    availability_bp: None,
                    success_rate_bp: None,
                })
                .collect(),
        ))
    }

    fn keys(c: &CandidateCache) -> Vec<u64> {
        let inner = c.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.iter().map(|(k, _, _, _)| *k).collect()
    }

    #[test]
    fn the_row_budget_evicts_the_oldest_sets() {
        let c = CandidateCache::new(256, 10, Duration::from_secs(60));
        c.put(1, 7, set(4));
        c.put(2, 7, set(4));
        assert_eq!(keys(&c), [1, 2]);
        // 4 + 4 + 3 > 10: the oldest goes.
        c.put(3, 7, set(3));
        assert_eq!(keys(&c), [2, 3]);
        // Larger than the whole budget: never kept, nothing evicted for it.
        c.put(4, 7, set(11));
        assert_eq!(keys(&c), [2, 3]);
        // Exactly the budget: everything else goes.
        c.put(5, 7, set(10));
        assert_eq!(keys(&c), [5]);
    }

    #[test]
    fn the_set_cap_holds_for_empty_sets() {
        let c = CandidateCache::new(3, 1_000, Duration::from_secs(60));
        for k in 0..5 {
            c.put(k, 7, set(0));
        }
        assert_eq!(keys(&c), [2, 3, 4]);
    }

    #[test]
    fn hits_need_the_same_generation() {
        let c = CandidateCache::new(8, 100, Duration::from_secs(60));
        assert!(c.get(1, 7).is_none());
        c.put(1, 7, set(2));
        assert!(c.get(1, 7).is_some());
        assert!(c.get(1, 8).is_none(), "a service changed since");
        assert!(c.get(2, 7).is_none());
        assert_eq!(c.hits_and_misses(), (1, 3));
        // A set filed under a newer generation drops the older ones.
        c.put(2, 8, set(2));
        assert_eq!(keys(&c), [2]);
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let c = CandidateCache::new(8, 100, Duration::ZERO);
        c.put(1, 7, set(2));
        assert!(c.get(1, 7).is_none());
    }
}
