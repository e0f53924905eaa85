//! Guildhall's HTTP face: the XRPC AppView and the operational endpoints beside it.
//!
//! # Methods
//! `GET /xrpc/dev.guildhall.{searchServices, getService, getOperator, getTrustPath,
//! listEndorsements, listCapabilities}` as the lexicons under `lexicons/dev/guildhall/`
//! define them, plus `/xrpc/_health` and `/.well-known/did.json`: the public [`router`].
//! `/status` and `/metrics` are on a separate [`admin_router`], served on its own address
//! (`serve --admin-listen`, off by default), never on the public one.
//!
//! Invariant: the public router serves nothing that costs more than a page of the index
//! per call or that reveals operational state.
//!
//! # Errors
//! XRPC errors follow the spec: a JSON body `{"error", "message"}` with a fitting status
//! (400 `InvalidRequest` or the lexicon's own name such as `InvalidCursor`, 404 `NotFound`,
//! 429 `RateLimitExceeded`, 500 `InternalServerError`), and nothing internal (SQL, paths,
//! stack traces) ever reaches a client; those go to the log.
//!
//! # Ranking
//! Filters run in SQL ([`guildhall_store::Store::search_candidates`]); ranking runs in memory
//! on the [`TrustIndex`], which `serve` loads at start and keeps current from ingestion:
//!
//! ```text
//! let trust = TrustIndex::load(&store).await?;
//! trust.spawn_updates(indexer.committed.subscribe(), store.clone(), check_every);
//! let state = AppState::new(store, metrics, trust, AppConfig { anchors, ..AppConfig::default() });
//! let app = guildhall_appview::router(state);
//! // The per-IP rate limit reads the peer address from `ConnectInfo`: serve with it.
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
//! ```
//! Without `ConnectInfo` (e.g. in-process tests) every request shares one rate-limit bucket.
//! Behind a reverse proxy, name it in [`AppConfig::trusted_proxies`] so the limit keys on the
//! client it forwards for (see [`client`]).

pub mod auth;
pub mod client;
pub mod cursor;
mod error;
pub mod handlers;
pub mod http_metrics;
pub mod ledger;
pub mod params;
pub mod ratelimit;
pub mod search;
pub mod trust_index;
pub mod views;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use guildhall_ingest::metrics::Metrics;
use guildhall_store::Store;
use guildhall_trust::RankOptions;
use serde_json::json;
use tower_http::cors::{Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;

pub use cursor::CursorKey;
pub use error::XrpcError;
pub use http_metrics::HttpMetrics;
pub use trust_index::{TrustIndex, TrustIndexError, TrustIndexOptions};

/// Settings of the AppView.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Operators trusted by configuration: seeds of the fallback ranking when there is no
    /// viewer or no path from it.
    pub anchors: Vec<String>,
    /// Requests per minute per client (an IPv4 address or an IPv6 /64; burst of the same
    /// size); 0 turns limiting off.
    pub rate_limit_per_minute: u32,
    /// Networks of reverse proxies whose `X-Forwarded-For` is believed (right-most hop not
    /// in them is the client); empty: the header is ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The secret search cursors are signed with.
    pub cursor_key: CursorKey,
    /// Longest a request may run before it is answered with 503 `RequestTimeout`.
    pub request_timeout: Duration,
    /// Largest request body accepted (queries are GETs; this bounds abuse).
    pub max_body: usize,
    /// Hostname (and optional port) of the AppView's did:web identity; `None` serves no
    /// `/.well-known/did.json`.
    pub hostname_for_did_web: Option<String>,
    /// Most services one search ranks from operators outside the viewer's and anchors'
    /// reach (whole operators in DID order); filters narrower than this rank exactly.
    pub candidate_cap: usize,
    /// Most services of one operator outside the viewer's and anchors' reach that a search
    /// ranks, so one account cannot fill the candidate set: also the most places such an
    /// operator can take on any page. Answers say `candidatesOmitted` when this or the cap
    /// left something out.
    pub candidates_per_operator: usize,
    /// Most operators of the viewer's and anchors' reach (within three hops, nearest first)
    /// whose services are always ranked.
    pub reach_budget: usize,
    /// Most services of one operator within that reach that a search ranks: a far larger
    /// share than `candidates_per_operator`, but still a bound, since an anchor's three-hop
    /// reach is wide and every anonymous search would otherwise read all of a hostile
    /// operator's services.
    pub reach_per_operator: usize,
    /// Ranked services kept in all for cursor pagination: 8 bytes each, plus the path and
    /// vouchers of those reached from the viewer, plus their candidate rows (about 250
    /// bytes each) while no longer shared with the candidate cache.
    pub snapshot_entries: usize,
    /// How long a ranked list stays available to cursors.
    pub snapshot_ttl: Duration,
    /// How long a candidate set read from SQL may be reused while no service has changed
    /// (zero turns the cache off). Freshness does not rest on it: every service change the
    /// trust index sees (the ingest broadcast, or a refresh that reloads it from the store)
    /// moves the services generation and drops the cached sets at once. It lets go of
    /// filter sets nobody asks for any more.
    pub candidate_cache_ttl: Duration,
    /// Candidate rows (about 300 bytes each) the cache holds in all, over at most 256 sets;
    /// the oldest sets go first, and a set larger than this is not kept.
    pub candidate_cache_rows: usize,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            anchors: Vec::new(),
            rate_limit_per_minute: 600,
            trusted_proxies: Vec::new(),
            cursor_key: CursorKey::random(),
            request_timeout: Duration::from_secs(10),
            max_body: 64 * 1024,
            hostname_for_did_web: None,
            candidate_cap: guildhall_store::DEFAULT_CANDIDATE_CAP,
            candidates_per_operator: guildhall_store::DEFAULT_CANDIDATES_PER_OPERATOR,
            reach_budget: 20_000,
            reach_per_operator: 200,
            snapshot_entries: 200_000,
            snapshot_ttl: Duration::from_secs(600),
            candidate_cache_ttl: Duration::from_secs(300),
            candidate_cache_rows: 250_000,
        }
    }
}

/// Per-process state behind the handlers that callers do not configure directly.
#[derive(Debug)]
pub struct Inner {
    limiter: ratelimit::RateLimiter,
    snapshots: search::SnapshotCache,
    candidates: search::CandidateCache,
    rank_opts: RankOptions,
    http: Arc<HttpMetrics>,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The index.
    pub store: Store,
    /// Ingestion counters (also served at `/metrics`).
    pub metrics: Arc<Metrics>,
    /// The in-memory trust graph.
    pub trust: Arc<TrustIndex>,
    /// Settings.
    pub config: Arc<AppConfig>,
    /// Service auth for the authenticated methods; `None` (no `--hostname`, so no DID to be
    /// the audience) answers them 501.
    pub auth: Option<Arc<auth::ServiceAuth>>,
    /// The ledger writer behind `dev.guildhall.ledger.transfer`; `None` answers it 501
    /// (reads go to the store directly).
    pub ledger: Option<guildhall_store::LedgerHandle>,
    inner: Arc<Inner>,
}

impl AppState {
    /// Assembles the state; the rate limiter and pagination cache start empty.
    pub fn new(
        store: Store,
        metrics: Arc<Metrics>,
        trust: Arc<TrustIndex>,
        config: AppConfig,
    ) -> Self {
        let inner = Inner {
            limiter: ratelimit::RateLimiter::new(config.rate_limit_per_minute),
            snapshots: search::SnapshotCache::new(config.snapshot_entries, config.snapshot_ttl),
            candidates: search::CandidateCache::new(
                256,
                config.candidate_cache_rows,
                config.candidate_cache_ttl,
            ),
            rank_opts: RankOptions {
                anchors: config.anchors.clone(),
                ..RankOptions::default()
            },
            http: Arc::new(HttpMetrics::new()),
        };
        Self {
            store,
            metrics,
            trust,
            config: Arc::new(config),
            auth: None,
            ledger: None,
            inner: Arc::new(inner),
        }
    }

    /// Serves the ledger methods' writes through `ledger` (`serve` starts one on the store).
    pub fn with_ledger(mut self, ledger: guildhall_store::LedgerHandle) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Turns on service auth: tokens must be addressed to this AppView's did:web (from
    /// [`AppConfig::hostname_for_did_web`], the DID `/.well-known/did.json` serves), and
    /// issuers' keys are resolved through `resolver` (give it the ingestion's: one cache, the
    /// same SSRF-guarded clients). Without a hostname there is no DID and this does nothing.
    pub fn with_service_auth(
        mut self,
        resolver: Arc<guildhall_ingest::identity::Resolver>,
        config: auth::AuthConfig,
    ) -> Self {
        match self.config.hostname_for_did_web.as_deref() {
            Some(host) => {
                self.auth = Some(Arc::new(auth::ServiceAuth::new(
                    handlers::did_web(host),
                    resolver,
                    config,
                )));
            }
            None => tracing::info!(
                "no --hostname: this AppView has no DID, so the authenticated methods (the ledger) answer 501"
            ),
        }
        self
    }

    /// Ranking options in force (anchors from the configuration).
    pub fn rank_options(&self) -> &RankOptions {
        &self.inner.rank_opts
    }
}

/// The public router: every XRPC method, CORS, body and time limits, the per-client rate
/// limit and the HTTP metrics. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` (see the crate docs).
pub fn router(state: AppState) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::OPTIONS])
        .allow_headers(Any)
        .max_age(Duration::from_secs(86_400));
    Router::new()
        .route("/xrpc/_health", get(health))
        .route("/.well-known/did.json", get(handlers::did_document))
        .route(
            "/xrpc/dev.guildhall.searchServices",
            get(handlers::search_services),
        )
        .route("/xrpc/dev.guildhall.getService", get(handlers::get_service))
        .route(
            "/xrpc/dev.guildhall.getOperator",
            get(handlers::get_operator),
        )
        .route(
            "/xrpc/dev.guildhall.getTrustPath",
            get(handlers::get_trust_path),
        )
        .route(
            "/xrpc/dev.guildhall.listEndorsements",
            get(handlers::list_endorsements),
        )
        .route(
            "/xrpc/dev.guildhall.listCapabilities",
            get(handlers::list_capabilities),
        )
        .route(
            "/xrpc/dev.guildhall.ledger.getBalance",
            get(ledger::get_balance),
        )
        .route(
            "/xrpc/dev.guildhall.ledger.listTransfers",
            get(ledger::list_transfers),
        )
        .route(
            "/xrpc/dev.guildhall.ledger.transfer",
            post(ledger::transfer),
        )
        .fallback(not_found)
        .layer(RequestBodyLimitLayer::new(state.config.max_body))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(cors)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.inner.http),
            http_metrics::track,
        ))
        .with_state(state)
}

/// The admin router: `/status` (index counts, trust graph, recent rejections) and `/metrics`
/// (Prometheus text: ingestion counters, trust graph gauges, the public listener's HTTP
/// metrics). No rate limit and no CORS: serve it on a loopback or otherwise private address
/// only (`serve --admin-listen`).
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .fallback(not_found)
        .with_state(state)
}

/// Rate limit, time limit, and XRPC bodies for the errors produced outside handlers.
async fn guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    // Probes must keep working while a client is being throttled.
    let exempt = path == "/xrpc/_health";
    if !exempt {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        let ip = client::client_ip(peer, req.headers(), &s.config.trusted_proxies);
        if !s.inner.limiter.check(client::bucket_key(ip)) {
            let mut r = XrpcError::RateLimitExceeded.into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
    }
    match tokio::time::timeout(s.config.request_timeout, next.run(req)).await {
        Ok(r) => match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => XrpcError::PayloadTooLarge.into_response(),
            StatusCode::METHOD_NOT_ALLOWED => XrpcError::MethodNotAllowed.into_response(),
            _ => r,
        },
        Err(_) => XrpcError::Timeout.into_response(),
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let g = s.trust.stats();
    let (hits, misses) = s.inner.candidates.hits_and_misses();
    let mut body = s.metrics.render();
    body.push_str(&s.inner.http.render());
    body.push_str(&format!(
        "# TYPE guildhall_trust_graph_nodes gauge\nguildhall_trust_graph_nodes {}\n\
         # TYPE guildhall_trust_graph_edges gauge\nguildhall_trust_graph_edges {}\n\
         # TYPE guildhall_trust_graph_overlay_edges gauge\nguildhall_trust_graph_overlay_edges {}\n\
         # TYPE guildhall_trust_graph_heap_bytes gauge\nguildhall_trust_graph_heap_bytes {}\n\
         # TYPE guildhall_trust_graph_generation counter\nguildhall_trust_graph_generation {}\n\
         # HELP guildhall_candidate_cache_hits_total searchServices filter sets answered from the candidate cache.\n\
         # TYPE guildhall_candidate_cache_hits_total counter\nguildhall_candidate_cache_hits_total {hits}\n\
         # HELP guildhall_candidate_cache_misses_total searchServices filter sets read from SQL.\n\
         # TYPE guildhall_candidate_cache_misses_total counter\nguildhall_candidate_cache_misses_total {misses}\n",
        g.nodes,
        g.base_edges - g.tombstoned,
        g.overlay_edges,
        g.heap_bytes,
        s.trust.generation(),
    ));
    if let Some(ledger) = &s.ledger {
        let st = ledger.stats();
        let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        body.push_str(&format!(
            "# HELP guildhall_ledger_batches_total Ledger transactions committed (each holds a batch of requests).\n\
             # TYPE guildhall_ledger_batches_total counter\nguildhall_ledger_batches_total {}\n\
             # HELP guildhall_ledger_ops_total Ledger requests and expiries decided in committed batches.\n\
             # TYPE guildhall_ledger_ops_total counter\nguildhall_ledger_ops_total {}\n\
             # HELP guildhall_ledger_refused_total Ledger requests the rules refused.\n\
             # TYPE guildhall_ledger_refused_total counter\nguildhall_ledger_refused_total {}\n\
             # HELP guildhall_ledger_expired_total Holds the sweeper released at their timeout.\n\
             # TYPE guildhall_ledger_expired_total counter\nguildhall_ledger_expired_total {}\n\
             # HELP guildhall_ledger_db_failures_total Ledger batches the database failed (before retries).\n\
             # TYPE guildhall_ledger_db_failures_total counter\nguildhall_ledger_db_failures_total {}\n",
            n(&st.batches),
            n(&st.ops),
            n(&st.refused),
            n(&st.expired),
            n(&st.failures),
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

async fn status(State(s): State<AppState>) -> Result<Json<serde_json::Value>, XrpcError> {
    let stats = s.store.stats().await?;
    let counts = s.store.rejection_counts().await?;
    let recent = s.store.rejections(20).await?;
    let g = s.trust.stats();
    Ok(Json(json!({
        "stats": {
            "operators": stats.operators,
            "services": stats.services,
            "endorsements": stats.endorsements,
            "records": stats.records,
            "repos": stats.repos,
            "rejections": stats.rejections,
        },
        "trustGraph": {
            "nodes": g.nodes,
            "baseEdges": g.base_edges,
            "tombstoned": g.tombstoned,
            "overlayEdges": g.overlay_edges,
            "heapBytes": g.heap_bytes,
            "generation": s.trust.generation(),
        },
        "rejectionsByReason": counts.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "recentRejections": recent.into_iter().map(|r| json!({
            "uri": r.row.uri,
            "cid": r.row.cid,
            "collection": r.row.collection,
            "reason": r.row.reason,
            "detail": r.row.detail,
            "rejectedAt": r.rejected_at,
        })).collect::<Vec<_>>(),
        "verifyFailures": s.metrics.verify_failures(),
        // Repos not in sync, DIDs that do not resolve, the resync queue and blocked hosts.
        "resync": s.metrics.resync_status(),
    })))
}

async fn not_found() -> XrpcError {
    XrpcError::NotFound("no such method".to_owned())
}
