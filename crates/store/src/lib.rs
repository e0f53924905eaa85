//! Guildhall's storage: SQLite and PostgreSQL through sqlx, one schema, one test suite.
//!
//! The store is the only place SQL lives. Writes arrive as a [`Batch`] applied in one
//! transaction together with the firehose cursor; reads hide everything owned by an operator
//! whose account is not active (rows stay, so reactivation restores them).
//! Sync-state reads ([`Store::cursor`], [`Store::repo`], [`Store::record`],
//! [`Store::list_records`], [`Store::operator_status`]) are not filtered by account status.

mod amount;
mod error;
mod group;
mod ledger;
mod ledger_sql;
mod ops;
mod resync;
mod revguard;
mod types;

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use amount::amount_to_nanos;
pub use error::StoreError;
pub use guildhall_ledger as ledger_core;
pub use ledger::{LedgerCallError, LedgerConfig, LedgerHandle, LedgerStats, MAX_CHAIN};
pub use ledger_sql::{LedgerOp, Outcome};
pub use ops::{DEFAULT_PAGE, MAX_PAGE, MAX_QUERY_WORDS, query_words};
pub use types::*;

/// Largest page of [`Store::endorsements_after`].
pub const MAX_BULK_PAGE: u32 = 10_000;

/// Default cap of [`Store::search_candidates`] callers are expected to use.
pub const DEFAULT_CANDIDATE_CAP: usize = 5_000;

/// Default share of one operator in [`Store::search_candidates`]: the most services of an
/// operator outside the viewer's and anchors' reach that one search ranks.
pub const DEFAULT_CANDIDATES_PER_OPERATOR: usize = 5;

/// Schema migrations in order: version, name, SQL.
type Migrations = &'static [(i64, &'static str, &'static str)];

const SQLITE_MIGRATIONS: Migrations = &[
    (
        1,
        "init",
        include_str!("../../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "graph_version",
        include_str!("../../../migrations/sqlite/0002_graph_version.sql"),
    ),
    (
        3,
        "appview",
        include_str!("../../../migrations/sqlite/0003_appview.sql"),
    ),
    (
        4,
        "ledger",
        include_str!("../../../migrations/sqlite/0004_ledger.sql"),
    ),
];
const POSTGRES_MIGRATIONS: Migrations = &[
    (
        1,
        "init",
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "graph_version",
        include_str!("../../../migrations/postgres/0002_graph_version.sql"),
    ),
    (
        3,
        "appview",
        include_str!("../../../migrations/postgres/0003_appview.sql"),
    ),
    (
        4,
        "ledger",
        include_str!("../../../migrations/postgres/0004_ledger.sql"),
    ),
];

/// Handle to the index database. Cheap to clone (pools are shared).
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

/// The two supported databases.
#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqlitePools),
    Postgres(PgPool),
}

/// SQLite allows one writer at a time: writes queue for the single writer connection (which
/// keeps a large page cache for the index pages batches touch) instead of contending for
/// the file lock, and reads run beside it on query-only connections with small caches (WAL
/// readers see every committed write). An in-memory database is one connection, so both
/// are the same pool there.
#[derive(Clone, Debug)]
struct SqlitePools {
    write: SqlitePool,
    read: SqlitePool,
}

/// Runs `ops::<backend>::$f(pool, args...)` on whichever backend the store has; `write`
/// selects SQLite's writer connection, reads go to the readers.
macro_rules! dispatch {
    ($self:ident . $f:ident ( $($arg:expr),* )) => {
        match &$self.backend {
            Backend::Sqlite(p) => ops::sqlite::$f(&p.read $(, $arg)*).await,
            Backend::Postgres(p) => ops::pg::$f(p $(, $arg)*).await,
        }
    };
    (write $self:ident . $f:ident ( $($arg:expr),* )) => {
        match &$self.backend {
            Backend::Sqlite(p) => ops::sqlite::$f(&p.write $(, $arg)*).await,
            Backend::Postgres(p) => ops::pg::$f(p $(, $arg)*).await,
        }
    };
}

fn migrator(migrations: Migrations) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|&(version, name, sql)| {
                Migration::new(
                    version,
                    name.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

impl Store {
    /// Opens (and migrates) a store.
    ///
    /// `postgres://` or `postgresql://` URLs select PostgreSQL; a `sqlite:` URL or a plain
    /// path selects SQLite, creating the file on first run (WAL, busy timeout, foreign keys).
    pub async fn open(url_or_path: &str) -> Result<Store, StoreError> {
        let backend = if url_or_path.starts_with("postgres://")
            || url_or_path.starts_with("postgresql://")
        {
            let opts =
                PgConnectOptions::from_str(url_or_path).map_err(StoreError::InvalidLocation)?;
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .map_err(StoreError::Connect)?;
            migrator(POSTGRES_MIGRATIONS)
                .run(&pool)
                .await
                .map_err(StoreError::Migrate)?;
            Backend::Postgres(pool)
        } else {
            let opts = if url_or_path.starts_with("sqlite:") {
                SqliteConnectOptions::from_str(url_or_path).map_err(StoreError::InvalidLocation)?
            } else {
                SqliteConnectOptions::new().filename(url_or_path)
            };
            let in_memory = url_or_path.contains(":memory:") || url_or_path.contains("mode=memory");
            let opts = opts
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // WAL makes NORMAL durable against application crashes; an OS crash may lose
                // the last commits, which the firehose cursor replays.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // No memory map: each connection would map the whole file, and the OS page
                // cache serves the same pages without counting them against the process.
                .pragma("mmap_size", "0")
                .pragma("temp_store", "memory");
            let pool = |opts: SqliteConnectOptions, n: u32| {
                SqlitePoolOptions::new()
                    .max_connections(n)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
            };
            // The default 2 MB page cache re-reads index pages from the OS on every batch.
            let write = pool(opts.clone().pragma("cache_size", "-32768"), 1)
                .await
                .map_err(StoreError::Connect)?;
            // The file and its schema exist before readers open it.
            migrator(SQLITE_MIGRATIONS)
                .run(&write)
                .await
                .map_err(StoreError::Migrate)?;
            let read = if in_memory {
                // Each in-memory connection would be a separate database.
                write.clone()
            } else {
                pool(
                    opts.pragma("cache_size", "-8192")
                        .pragma("query_only", "ON"),
                    4,
                )
                .await
                .map_err(StoreError::Connect)?
            };
            Backend::Sqlite(SqlitePools { write, read })
        };
        let store = Store { backend };
        if let Backend::Sqlite(p) = &store.backend {
            // Refresh planner statistics where they are stale (cheap; recommended at open).
            sqlx::query("PRAGMA optimize=0x10002")
                .execute(&p.write)
                .await
                .map_err(StoreError::Query)?;
        }
        Ok(store)
    }

    /// Applies pending schema migrations; a no-op when up to date.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => migrator(SQLITE_MIGRATIONS).run(&p.write).await,
            Backend::Postgres(p) => migrator(POSTGRES_MIGRATIONS).run(p).await,
        }
        .map_err(StoreError::Migrate)
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Closes all connections; later calls fail.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(p) => {
                p.read.close().await;
                p.write.close().await;
            }
            Backend::Postgres(p) => p.close().await,
        }
    }

    /// Applies every change and the cursor in one transaction: all or nothing.
    ///
    /// Upserts are idempotent, so replaying a batch leaves the same state. Consecutive
    /// upserts are written with multi-row statements; within such a run the last write to a
    /// URI wins. Returns the graph version the batch left (see [`Store::change_token`]), so a
    /// process that applies batches and follows them in memory can tell its own writes from
    /// another process's.
    pub async fn apply(&self, batch: &Batch) -> Result<Applied, StoreError> {
        dispatch!(write self.apply(batch))
    }

    /// Adds DIDs to the backfill queue as pending (already known DIDs are left alone).
    pub async fn enqueue_backfill(&self, dids: &[String]) -> Result<(), StoreError> {
        dispatch!(write self.enqueue_backfill(dids))
    }

    /// Up to `limit` DIDs whose backfill is pending, in DID order.
    pub async fn backfill_pending(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        dispatch!(self.backfill_pending(limit))
    }

    /// Stored firehose cursor of `source`.
    pub async fn cursor(&self, source: &str) -> Result<Option<i64>, StoreError> {
        dispatch!(self.cursor(source))
    }

    /// Every repo with sync state (tracked by the indexer), in DID order.
    pub async fn tracked_dids(&self) -> Result<Vec<String>, StoreError> {
        dispatch!(self.tracked_dids())
    }

    /// Whether a repo's backfill finished (a resumed backfill skips it).
    pub async fn backfill_done(&self, did: &str) -> Result<bool, StoreError> {
        dispatch!(self.backfill_done(did))
    }

    /// Sync state of a repo.
    pub async fn repo(&self, did: &str) -> Result<Option<RepoRow>, StoreError> {
        dispatch!(self.repo(did))
    }

    /// An active operator.
    pub async fn operator(&self, did: &str) -> Result<Option<OperatorRow>, StoreError> {
        dispatch!(self.operator(did))
    }

    /// Account status of any known DID (sync state: not filtered).
    pub async fn operator_status(&self, did: &str) -> Result<Option<OperatorStatus>, StoreError> {
        dispatch!(self.operator_status_of(did))
    }

    /// The active operator whose verified handle this is (case-insensitive).
    pub async fn operator_by_handle(
        &self,
        handle: &str,
    ) -> Result<Option<OperatorRow>, StoreError> {
        dispatch!(self.operator_by_handle(handle))
    }

    /// A raw record (sync state: not filtered).
    pub async fn record(&self, uri: &str) -> Result<Option<RecordRow>, StoreError> {
        dispatch!(self.record(uri))
    }

    /// `(uri, cid)` of a repo's records in one collection, by rkey (sync state: not filtered).
    pub async fn list_records(
        &self,
        did: &str,
        collection: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        dispatch!(self.list_records(did, collection))
    }

    /// One page of visible services matching `query`, ordered by URI.
    pub async fn search_services(
        &self,
        query: &ServiceQuery,
    ) -> Result<Vec<ServiceHit>, StoreError> {
        dispatch!(self.search_services(query))
    }

    /// Visible services matching `query` (its `limit` is ignored, `after` applies) with the
    /// fields ranking needs: at most `per_operator` of each operator (its first by URI), and
    /// operators in DID order up to `cap` rows in all, whole operators only. What was left
    /// out is named in the answer, so a caller can read the services of the operators it
    /// must not lose with [`Store::candidates_of`]. Never cut by URI order alone: one
    /// operator cannot fill the set however many services it publishes.
    ///
    /// Invariant: each operator contributes at most `per_operator` rows.
    pub async fn search_candidates(
        &self,
        query: &ServiceQuery,
        cap: usize,
        per_operator: usize,
    ) -> Result<CandidateSet, StoreError> {
        dispatch!(self.search_candidates(query, cap, per_operator))
    }

    /// The visible services of the operators `dids` matching `query` (its `limit` unused),
    /// by URI, at most `per_operator` of each (its first by URI): the candidates a search
    /// must not leave out, with a bound no single operator can make it exceed. `true` when
    /// that bound cut some operator. One query per 500 distinct DIDs.
    pub async fn candidates_of(
        &self,
        query: &ServiceQuery,
        dids: &[&str],
        per_operator: usize,
    ) -> Result<(Vec<ServiceCandidate>, bool), StoreError> {
        dispatch!(self.candidates_of(query, dids, per_operator))
    }

    /// A visible service with its capabilities, regions, prices and tags.
    pub async fn service(&self, uri: &str) -> Result<Option<ServiceRow>, StoreError> {
        dispatch!(self.service(uri))
    }

    /// An operator's visible services, by URI.
    pub async fn services_of(&self, did: &str) -> Result<Vec<ServiceRow>, StoreError> {
        dispatch!(self.services_of(did))
    }

    /// Visible endorsements written by `did`, newest first; pass the returned cursor back.
    pub async fn endorsements_by_author(
        &self,
        did: &str,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<EndorsementPage, StoreError> {
        dispatch!(self.endorsements_by_author(did, cursor, limit))
    }

    /// Visible endorsements naming `did` as subject, newest first.
    pub async fn endorsements_of_subject(
        &self,
        did: &str,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<EndorsementPage, StoreError> {
        dispatch!(self.endorsements_of_subject(did, cursor, limit))
    }

    /// Visible endorsements given and received by `did`.
    pub async fn endorsement_counts(&self, did: &str) -> Result<EndorsementCounts, StoreError> {
        dispatch!(self.endorsement_counts(did))
    }

    /// Every visible endorsement (active author and subject), oldest first: the trust graph.
    pub async fn all_endorsements(&self) -> Result<Vec<EndorsementRow>, StoreError> {
        dispatch!(self.all_endorsements())
    }

    /// Visible endorsements oldest first, `limit` (1..=[`MAX_BULK_PAGE`]) at a time after the
    /// page that returned `after` as its cursor: [`Store::all_endorsements`] in pages, so a
    /// reader of millions holds one page at a time. Two queries per page.
    pub async fn endorsements_after(
        &self,
        after: Option<i64>,
        limit: u32,
    ) -> Result<EndorsementPage, StoreError> {
        dispatch!(self.endorsements_after(after, limit))
    }

    /// Capabilities of visible services with how many services offer each, most common first.
    pub async fn capabilities(&self) -> Result<Vec<(String, i64)>, StoreError> {
        dispatch!(self.capabilities())
    }

    /// One page of [`Store::capabilities`] in capability order: ids starting with `prefix`
    /// and after `after`, at most `limit` (the caller asks one more to learn whether a next
    /// page exists). The database walks its capability index from the start of the page.
    pub async fn capabilities_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        dispatch!(self.capabilities_page(prefix, after, limit))
    }

    /// `(uri, cid)` of every visible service, by URI (for pinned-endorsement checks).
    pub async fn service_cids(&self) -> Result<Vec<(String, String)>, StoreError> {
        dispatch!(self.service_cids())
    }

    /// DIDs of every account whose status is not active (whose records the store hides), in
    /// order.
    pub async fn inactive_operators(&self) -> Result<Vec<String>, StoreError> {
        dispatch!(self.inactive_operators())
    }

    /// `(uri, capability)` of every visible service's capabilities, by URI then capability
    /// (for the trust graph: what each service offers).
    pub async fn service_capabilities(&self) -> Result<Vec<(String, String)>, StoreError> {
        dispatch!(self.service_capabilities())
    }

    /// The secret stored under `name`, storing `fresh` first if there is none: the first
    /// process to ask decides, every later one (and every restart) gets the same bytes.
    pub async fn instance_secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError> {
        dispatch!(write self.instance_secret(name, fresh))
    }

    /// The latest rejections, newest first.
    pub async fn rejections(&self, limit: u32) -> Result<Vec<Rejection>, StoreError> {
        dispatch!(self.rejections(limit))
    }

    /// Rejections per reason, most common first.
    pub async fn rejection_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        dispatch!(self.rejection_counts())
    }

    /// Counts for the status endpoint.
    pub async fn stats(&self) -> Result<Stats, StoreError> {
        dispatch!(self.stats())
    }

    /// The records of visible services by URI (what [`Store::service`] reads, less the index
    /// rows derived from the record), one answer per URI given: same order, repeats answered
    /// again, `None` for a URI not indexed or hidden. One query per 500 distinct URIs.
    pub async fn service_records(
        &self,
        uris: &[&str],
    ) -> Result<Vec<Option<ServiceRecordRow>>, StoreError> {
        dispatch!(self.service_records(uris))
    }

    /// Active operators by DID, as [`Store::operator`] reads them, one answer per DID given
    /// (same order, repeats answered again, `None` when unknown or not active). One query
    /// per 500 distinct DIDs.
    pub async fn operators_by_dids(
        &self,
        dids: &[&str],
    ) -> Result<Vec<Option<OperatorRow>>, StoreError> {
        dispatch!(self.operators_by_dids(dids))
    }

    /// A token that changes whenever the trust graph's inputs may have changed: an
    /// endorsement or a service written or deleted, a repo's records cleared, or an
    /// operator's account status changed. For a process that does not see the writes (an
    /// AppView apart from ingestion) to decide cheaply whether to rebuild. It is a counter
    /// that [`Store::apply`] raises in the batch's own transaction, so no change goes unseen
    /// and reading it is one row, however large the index.
    pub async fn change_token(&self) -> Result<ChangeToken, StoreError> {
        dispatch!(self.change_token())
    }

    /// CIDs of raw records by URI, one answer per URI given (same order, repeats answered
    /// again, `None` when absent). Sync state like [`Store::record`]: not filtered. One query
    /// per 500 distinct URIs.
    pub async fn record_cids(&self, uris: &[&str]) -> Result<Vec<Option<String>>, StoreError> {
        dispatch!(self.record_cids(uris))
    }

    /// Decides `ops` in order against the ledger at `now_ms` and commits what they change in
    /// one transaction; each op's outcome. Callers normally go through [`LedgerHandle`],
    /// which batches; this is its one database step (and the property tests' handle on it).
    pub async fn ledger_commit(
        &self,
        ops: &[LedgerOp],
        now_ms: i64,
    ) -> Result<Vec<Outcome>, StoreError> {
        dispatch!(write self.ledger_commit(ops, now_ms))
    }

    /// Ids of holds still pending at or past their timeout, oldest first.
    pub async fn ledger_due_holds(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        dispatch!(self.ledger_due_holds(now_ms, limit))
    }

    /// `owner`'s accounts, by currency.
    pub async fn ledger_balances(
        &self,
        owner: &guildhall_ledger::Owner,
    ) -> Result<Vec<(guildhall_ledger::AccountKey, guildhall_ledger::Balance)>, StoreError> {
        dispatch!(self.ledger_balances(owner))
    }

    /// Every ledger account in key order (audits, tests).
    pub async fn ledger_accounts(
        &self,
    ) -> Result<Vec<(guildhall_ledger::AccountKey, guildhall_ledger::Balance)>, StoreError> {
        dispatch!(self.ledger_accounts())
    }

    /// Transfers into or out of `owner`'s accounts, newest first, each with its sequence
    /// number; `before` (a sequence number from the last page) pages back.
    pub async fn ledger_transfers_of(
        &self,
        owner: &guildhall_ledger::Owner,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, guildhall_ledger::Transfer)>, StoreError> {
        dispatch!(self.ledger_transfers_of(owner, before, limit))
    }

    /// Every ledger account and transfer read in one transaction, so they agree with each
    /// other even while a writer commits (audits, tests).
    #[allow(clippy::type_complexity)]
    pub async fn ledger_snapshot(
        &self,
    ) -> Result<
        (
            Vec<(guildhall_ledger::AccountKey, guildhall_ledger::Balance)>,
            Vec<guildhall_ledger::Transfer>,
        ),
        StoreError,
    > {
        dispatch!(self.ledger_snapshot())
    }

    /// Every transfer in the order applied (audits, tests).
    pub async fn ledger_transfers(&self) -> Result<Vec<guildhall_ledger::Transfer>, StoreError> {
        dispatch!(self.ledger_transfers())
    }
}
