//! Backend-neutral SQL: one macro body instantiated for SQLite and for PostgreSQL, so both
//! run the same statements with concrete sqlx types (numbered `$n` parameters work on both).

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::types::{ServiceQuery, ServiceRow};

/// Most words of `q` that become SQL conditions; the rest are ignored (bounds query size).
pub const MAX_QUERY_WORDS: usize = 16;
/// Largest page of [`crate::Store::search_services`] and endorsement listings.
pub const MAX_PAGE: u32 = 1000;
/// Page size when the caller passes 0.
pub const DEFAULT_PAGE: u32 = 50;

/// Collections whose rows the trust graph is built from.
pub(crate) const GRAPH_COLLECTIONS: [&str; 2] =
    ["dev.guildhall.endorsement", "dev.guildhall.service"];

/// Bind parameters stay under SQLite's 32766 and PostgreSQL's 65535 limits.
const MAX_PARAMS: usize = 30_000;
/// Rows per multi-row statement; full chunks reuse one prepared statement.
const MAX_ROWS: usize = 500;

/// One bind parameter of a dynamically assembled statement.
pub(crate) enum Arg<'a> {
    Text(Cow<'a, str>),
    OptText(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
    Bool(bool),
    Bytes(&'a [u8]),
}

/// Text as stored: PostgreSQL cannot hold U+0000 in TEXT, so both backends store it as
/// U+FFFD; otherwise one such record would fail its whole batch on PostgreSQL only.
pub(crate) fn clean(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_owned()
    }
}

/// `($1,$2),($3,$4)` for `rows` rows of `cols` columns; plain `?` on SQLite, whose
/// `sqlite3_bind_parameter_name` is a linear scan, making numbered parameters quadratic in a
/// 3,000-parameter statement (it was 42% of the write path's CPU).
pub(crate) fn placeholders(rows: usize, cols: usize, numbered: bool) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            s.push(',');
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push(',');
            }
            n += 1;
            if numbered {
                s.push('$');
                s.push_str(&n.to_string());
            } else {
                s.push('?');
            }
        }
        s.push(')');
    }
    s
}

/// `$1,$2,...` (or `?,?,...` on SQLite) for an IN list of `n` keys.
pub(crate) fn key_list(n: usize, numbered: bool) -> String {
    let one = placeholders(n, 1, numbered);
    one.replace(['(', ')'], "")
}

/// Rows per statement for `cols` columns.
pub(crate) fn rows_per_statement(cols: usize) -> usize {
    (MAX_PARAMS / cols.max(1)).clamp(1, MAX_ROWS)
}

/// Unix milliseconds; a clock before 1970 reads as 0.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The lower-cased text the `q` filter searches: name, description, tags, capabilities,
/// separated by whitespace so no query word can span two fields.
pub(crate) fn search_text(s: &ServiceRow) -> String {
    let mut t = String::new();
    t.push_str(&s.name);
    t.push('\n');
    if let Some(d) = &s.description {
        t.push_str(d);
    }
    for tag in &s.tags {
        t.push('\n');
        t.push_str(tag);
    }
    for cap in &s.capabilities {
        t.push('\n');
        t.push_str(cap);
    }
    t.to_lowercase()
}

/// The distinct lower-cased words of `q` that are searched for.
pub fn query_words(q: Option<&str>) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for w in q.unwrap_or("").split_whitespace() {
        let w = w.to_lowercase();
        if !words.contains(&w) {
            words.push(w);
        }
        if words.len() == MAX_QUERY_WORDS {
            break;
        }
    }
    words
}

/// Effective page size for a requested limit.
pub(crate) fn page_size(limit: u32) -> u32 {
    match limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

/// Assembles the discovery query: `SELECT <select> FROM services s WHERE ... ORDER BY s.uri
/// LIMIT <limit>`. Only fixed fragments and placeholders enter the text; every value is bound.
pub(crate) fn build_search<'a>(
    query: &'a ServiceQuery,
    select: &str,
    is_pg: bool,
    limit: i64,
) -> (String, Vec<Arg<'a>>) {
    let (mut sql, mut args) = build_filter(query, select, is_pg);
    args.push(Arg::Int(limit));
    sql.push_str(&format!(" ORDER BY s.uri LIMIT ${}", args.len()));
    (sql, args)
}

/// Appends `AND s.did IN (...)` over `dids` to a [`build_filter`] statement.
pub(crate) fn and_did_in<'a>(sql: &mut String, args: &mut Vec<Arg<'a>>, dids: &'a [String]) {
    sql.push_str(" AND s.did IN (");
    for (i, d) in dids.iter().enumerate() {
        args.push(Arg::Text(Cow::Borrowed(d.as_str())));
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("${}", args.len()));
    }
    sql.push(')');
}

/// `SELECT {select} FROM services s WHERE` visibility and every filter of `query` (its
/// `limit` unused), without an order: parameters are numbered `$1..` in `args` order, so a
/// caller may append more.
pub(crate) fn build_filter<'a>(
    query: &'a ServiceQuery,
    select: &str,
    is_pg: bool,
) -> (String, Vec<Arg<'a>>) {
    let mut args: Vec<Arg<'a>> = Vec::new();
    let mut sql = format!(
        "SELECT {select} FROM services s WHERE {}",
        crate::ops::SVC_VISIBLE
    );
    let mut push = |sql: &mut String, fragment: &str, arg: Arg<'a>| {
        args.push(arg);
        // Fragments carry `{}` where the parameter number goes.
        sql.push_str(&fragment.replace("{}", &format!("${}", args.len())));
    };
    if let Some(after) = &query.after {
        push(&mut sql, " AND s.uri > {}", Arg::Text(Cow::Borrowed(after)));
    }
    // Repeats add nothing but a subquery each.
    let caps: std::collections::BTreeSet<&'a String> = query.capabilities.iter().collect();
    for cap in caps {
        push(
            &mut sql,
            " AND s.uri IN (SELECT c.uri FROM service_capabilities c WHERE c.capability = {})",
            Arg::Text(Cow::Borrowed(cap)),
        );
    }
    if let Some(region) = &query.region {
        push(
            &mut sql,
            " AND s.uri IN (SELECT r.uri FROM service_regions r WHERE r.region = {})",
            Arg::Text(Cow::Borrowed(region)),
        );
    }
    if query.max_price_nanos.is_some() || query.currency.is_some() || query.pricing_model.is_some()
    {
        // An IN list, not a correlated EXISTS: SQLite would otherwise probe the price index by
        // currency once per candidate row (quadratic); this way the price set is built once.
        sql.push_str(" AND s.uri IN (SELECT p.uri FROM service_prices p WHERE TRUE");
        if let Some(cur) = &query.currency {
            push(
                &mut sql,
                " AND p.currency = {}",
                Arg::Text(Cow::Borrowed(cur)),
            );
        }
        if let Some(model) = &query.pricing_model {
            push(
                &mut sql,
                " AND p.model = {}",
                Arg::Text(Cow::Borrowed(model)),
            );
        }
        if let Some(max) = query.max_price_nanos {
            push(&mut sql, " AND p.amount_nanos <= {}", Arg::Int(max));
        }
        sql.push(')');
    }
    if let Some(max) = query.max_latency_ms {
        push(&mut sql, " AND s.latency_p95_ms <= {}", Arg::Int(max));
    }
    if let Some(min) = query.min_availability_bp {
        push(&mut sql, " AND s.availability_bp >= {}", Arg::Int(min));
    }
    let contains = if is_pg {
        " AND strpos(s.search_text, {}) > 0"
    } else {
        " AND instr(s.search_text, {}) > 0"
    };
    for w in query_words(query.q.as_deref()) {
        push(&mut sql, contains, Arg::Text(Cow::Owned(w)));
    }
    (sql, args)
}

/// Visibility of a service row `s`: its operator is unknown or active.
pub(crate) const SVC_VISIBLE: &str =
    "NOT EXISTS (SELECT 1 FROM operators o WHERE o.did = s.did AND o.status <> 'active')";

/// Literal form of [`SVC_VISIBLE`] for `concat!`.
macro_rules! svc_visible {
    () => {
        "NOT EXISTS (SELECT 1 FROM operators o WHERE o.did = s.did AND o.status <> 'active')"
    };
}

/// Visibility of an endorsement row `e`: author and subject both active or unknown.
macro_rules! endo_visible {
    () => {
        "NOT EXISTS (SELECT 1 FROM operators o WHERE o.did = e.author AND o.status <> 'active') \
         AND NOT EXISTS (SELECT 1 FROM operators o2 WHERE o2.did = e.subject AND o2.status <> 'active')"
    };
}

/// Columns of an endorsement row `e`, in the order [`endorsement_from_row`]s read them.
macro_rules! endo_cols {
    () => {
        "e.id, e.uri, e.author, e.rkey, e.cid, e.subject, e.service_uri, e.service_cid, \
         e.strength, e.comment, e.created_at, e.expires_at"
    };
}

/// Columns of a service row `s` for [`crate::types::ServiceHit`].
pub(crate) const HIT_COLS: &str = "s.uri, s.did, s.cid, s.name, s.description, s.version, \
     s.created_at, s.latency_p95_ms, s.availability_bp, s.success_rate_bp, s.record_json";

/// Columns of a service row `s` for [`crate::types::ServiceCandidate`].
pub(crate) const CANDIDATE_COLS: &str =
    "s.uri, s.did, s.cid, s.created_at, s.latency_p95_ms, s.availability_bp, s.success_rate_bp";

macro_rules! backend_ops {
    ($Db:ty, $Conn:ty, $Pool:ty, $is_pg:expr) => {
        use std::borrow::Cow;
        use std::collections::{BTreeSet, HashMap, HashSet};

        use sqlx::{AssertSqlSafe, Row as _};

        use crate::error::{StoreError, q};
        use crate::ops::{
            Arg, CANDIDATE_COLS, GRAPH_COLLECTIONS, HIT_COLS, build_filter, build_search, clean, key_list, now_ms, page_size,
            placeholders, rows_per_statement, search_text,
        };
        use crate::group::{Group, Step, steps};
        use crate::types::*;

        type Db = $Db;
        type Conn = $Conn;
        type Pool = $Pool;
        type Args = <Db as sqlx::Database>::Arguments;
        type DbRow = <Db as sqlx::Database>::Row;
        const IS_PG: bool = $is_pg;

        fn bind_one<'q>(
            query: sqlx::query::Query<'q, Db, Args>,
            arg: &Arg<'_>,
        ) -> sqlx::query::Query<'q, Db, Args> {
            match arg {
                Arg::Text(s) => query.bind(clean(s)),
                Arg::OptText(s) => query.bind(s.map(clean)),
                Arg::Int(i) => query.bind(*i),
                Arg::OptInt(i) => query.bind(*i),
                Arg::Bool(b) => query.bind(*b),
                Arg::Bytes(b) => query.bind(b.to_vec()),
            }
        }

        async fn exec_dyn(c: &mut Conn, sql: String, args: &[Arg<'_>]) -> Result<u64, StoreError> {
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for a in args {
                query = bind_one(query, a);
            }
            Ok(query.execute(&mut *c).await.map_err(q)?.rows_affected())
        }

        async fn fetch_dyn(pool: &Pool, sql: String, args: &[Arg<'_>]) -> Result<Vec<DbRow>, StoreError> {
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for a in args {
                query = bind_one(query, a);
            }
            query.fetch_all(pool).await.map_err(q)
        }

        /// `head VALUES (...),(...) tail` in chunks (SQLite's bulk path, PostgreSQL's fallback).
        async fn values_insert(
            c: &mut Conn,
            head: &str,
            cols: usize,
            rows: &[Vec<Arg<'_>>],
            tail: &str,
        ) -> Result<(), StoreError> {
            for chunk in rows.chunks(rows_per_statement(cols)) {
                let sql = format!("{head} VALUES {} {tail}", placeholders(chunk.len(), cols, IS_PG));
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for row in chunk {
                    for a in row {
                        query = bind_one(query, a);
                    }
                }
                query.execute(&mut *c).await.map_err(q)?;
            }
            Ok(())
        }

        /// `head (<keys>) tail` in chunks, e.g. `DELETE FROM t WHERE uri IN`.
        async fn with_keys(c: &mut Conn, head: &str, keys: &[&str], tail: &str) -> Result<(), StoreError> {
            for chunk in keys.chunks(rows_per_statement(1)) {
                let list = key_list(chunk.len(), IS_PG);
                let sql = format!("{head} ({list}){tail}");
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for k in chunk {
                    query = query.bind(clean(k));
                }
                query.execute(&mut *c).await.map_err(q)?;
            }
            Ok(())
        }

        fn text(row: &DbRow, i: usize) -> Result<String, StoreError> {
            row.try_get::<String, _>(i).map_err(q)
        }
        fn opt_text(row: &DbRow, i: usize) -> Result<Option<String>, StoreError> {
            row.try_get::<Option<String>, _>(i).map_err(q)
        }
        fn int(row: &DbRow, i: usize) -> Result<i64, StoreError> {
            row.try_get::<i64, _>(i).map_err(q)
        }
        fn opt_int(row: &DbRow, i: usize) -> Result<Option<i64>, StoreError> {
            row.try_get::<Option<i64>, _>(i).map_err(q)
        }

        // ---------------------------------------------------------------- write path

        pub(crate) async fn apply(pool: &Pool, batch: &Batch) -> Result<Applied, StoreError> {
            let mut tx = if IS_PG {
                pool.begin().await.map_err(q)?
            } else {
                // Take the write lock up front so busy_timeout applies instead of a lock upgrade failing.
                pool.begin_with("BEGIN IMMEDIATE").await.map_err(q)?
            };
            let now = now_ms();
            // Compare-and-set of each repo's rev, against what this transaction reads: a unit
            // older than the recorded rev is dropped whole (see `revguard`).
            let recorded = recorded_revs(&mut tx, &crate::revguard::dids_to_check(&batch.changes)).await?;
            let guarded = crate::revguard::refuse_stale(&batch.changes, &recorded);
            for (did, rev, held) in &guarded.refused {
                tracing::warn!(%did, %rev, recorded = %held, "refusing a repo state older than the recorded one");
            }
            let changes: &[Change] = &guarded.changes;
            // Decided before the writes (a reactivation is told by the status they replace).
            let moved = touches_graph(&mut tx, changes).await?;
            for step in steps(changes) {
                match step {
                    Step::Group(g) => write_group(&mut tx, &g, now).await?,
                    Step::ClearRepo(did) => delete_repo_records(&mut tx, did, now).await?,
                    Step::DeleteAccount(did) => delete_account(&mut tx, did, now).await?,
                }
            }
            let mut cursors: Vec<&(String, i64)> = batch.cursors.iter().collect();
            // One row per source, the last given wins (PostgreSQL refuses to upsert a row twice
            // in one statement).
            cursors.reverse();
            let mut seen: HashSet<&str> = HashSet::new();
            cursors.retain(|(source, _)| seen.insert(source.as_str()));
            let rows: Vec<Vec<Arg<'_>>> = cursors
                .iter()
                .map(|(source, seq)| vec![Arg::Text(Cow::Borrowed(source)), Arg::Int(*seq), Arg::Int(now)])
                .collect();
            bulk_insert(
                &mut tx,
                "INSERT INTO cursors (source, seq, updated_at)",
                3,
                &rows,
                "ON CONFLICT (source) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
            )
            .await?;
            // Last, so PostgreSQL holds the version row's lock only for the commit: concurrent
            // batches (a parallel backfill) serialize on it for no longer than that.
            let version = sqlx::query_scalar::<_, i64>(if moved {
                "UPDATE graph_version SET version = version + 1 WHERE id = 1 RETURNING version"
            } else {
                "SELECT version FROM graph_version WHERE id = 1"
            })
            .fetch_one(&mut *tx)
            .await
            .map_err(q)?;
            tx.commit().await.map_err(q)?;
            Ok(Applied {
                token: ChangeToken(version),
                moved,
                refused: u32::try_from(guarded.refused.len()).unwrap_or(u32::MAX),
            })
        }

        /// The recorded rev of each of `dids` that has one, read in the batch's transaction; on
        /// PostgreSQL the rows stay locked to its end, so two processes writing one repo take
        /// turns and the second compares against the first's rev.
        async fn recorded_revs(c: &mut Conn, dids: &[&str]) -> Result<HashMap<String, Option<String>>, StoreError> {
            let mut out = read_revs(c, dids).await?;
            if IS_PG {
                // A row lock needs a row: for repos not yet recorded, insert a placeholder
                // (which waits for a concurrent insert of the same repo to commit) and read
                // again, so two first writes of one repo take turns too. The batch's own
                // `SetRepo` overwrites the placeholder.
                let missing: Vec<&str> = dids.iter().copied().filter(|d| !out.contains_key(*d)).collect();
                if !missing.is_empty() {
                    let now = now_ms();
                    let rows: Vec<Vec<Arg<'_>>> = missing
                        .iter()
                        .map(|d| {
                            vec![
                                Arg::Text(Cow::Borrowed(d)),
                                Arg::Text(Cow::Borrowed(RepoStatus::Desynchronized.as_str())),
                                Arg::Int(now),
                                Arg::Int(now),
                            ]
                        })
                        .collect();
                    values_insert(
                        c,
                        "INSERT INTO repos (did, status, tracked_at, updated_at)",
                        4,
                        &rows,
                        "ON CONFLICT (did) DO NOTHING",
                    )
                    .await?;
                    out.extend(read_revs(c, &missing).await?);
                }
            }
            Ok(out)
        }

        /// `did → rev` for those of `dids` that have a row (locked, in DID order, on PostgreSQL).
        async fn read_revs(c: &mut Conn, dids: &[&str]) -> Result<HashMap<String, Option<String>>, StoreError> {
            let mut out = HashMap::new();
            for chunk in dids.chunks(rows_per_statement(1)) {
                let sql = format!(
                    "SELECT did, rev FROM repos WHERE did IN ({}) ORDER BY did{}",
                    key_list(chunk.len(), IS_PG),
                    if IS_PG { " FOR UPDATE" } else { "" }
                );
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for d in chunk {
                    query = query.bind(clean(d));
                }
                for row in query.fetch_all(&mut *c).await.map_err(q)? {
                    out.insert(text(&row, 0)?, opt_text(&row, 1)?);
                }
            }
            Ok(out)
        }

        /// Whether `changes` may change what the trust graph is built from: endorsement and
        /// service rows, and which operators are active. Decided in the batch's transaction
        /// before it writes, so "active" is told apart from a reactivation by the stored status.
        async fn touches_graph(c: &mut Conn, changes: &[Change]) -> Result<bool, StoreError> {
            for change in changes {
                let touches = match change {
                    Change::UpsertRecord(r, _) => GRAPH_COLLECTIONS.contains(&r.collection.as_str()),
                    Change::DeleteRecord { uri } => uri
                        .strip_prefix("at://")
                        .and_then(|rest| rest.split('/').nth(1))
                        .is_some_and(|collection| GRAPH_COLLECTIONS.contains(&collection)),
                    Change::DeleteRepoRecords { .. } => true,
                    Change::Account { status, .. } if *status != OperatorStatus::Active => true,
                    Change::Account { did, .. } => operator_status_of(&mut *c, did)
                        .await?
                        .is_some_and(|s| s != OperatorStatus::Active),
                    Change::SetRepo(_) | Change::Identity { .. } | Change::Reject(_) | Change::BackfillDone { .. } => {
                        false
                    }
                };
                if touches {
                    return Ok(true);
                }
            }
            Ok(false)
        }

        /// Writes one reduced group: a constant number of statements per table, whatever its size.
        async fn write_group(c: &mut Conn, g: &Group<'_>, now: i64) -> Result<(), StoreError> {
            // Any record change gives its repo's owner an operators row, whatever the net
            // effect: otherwise whether a profile written and deleted in quick succession left
            // a row would depend on where batch boundaries fell.
            let owners: BTreeSet<&str> = g
                .upserts
                .iter()
                .map(|(r, _)| r.did.as_str())
                .chain(g.deletes.iter().filter_map(|u| u.strip_prefix("at://")?.split('/').next()))
                .collect();
            let owners: Vec<Vec<Arg<'_>>> =
                owners.into_iter().map(|d| vec![Arg::Text(Cow::Borrowed(d)), Arg::Int(now)]).collect();
            bulk_insert(c, "INSERT INTO operators (did, updated_at)", 2, &owners, "ON CONFLICT (did) DO NOTHING")
                .await?;
            if !g.deletes.is_empty() {
                delete_records(c, &g.deletes, now).await?;
            }
            write_upserts(c, &g.upserts, now).await?;
            let repos: Vec<Vec<Arg<'_>>> = g
                .repos
                .iter()
                .map(|r| {
                    vec![
                        Arg::Text(Cow::Borrowed(&r.did)),
                        Arg::OptText(r.rev.as_deref()),
                        Arg::OptText(r.data_cid.as_deref()),
                        Arg::Text(Cow::Borrowed(r.status.as_str())),
                        Arg::Int(now),
                        Arg::Int(now),
                    ]
                })
                .collect();
            bulk_insert(
                c,
                "INSERT INTO repos (did, rev, data_cid, status, tracked_at, updated_at)",
                6,
                &repos,
                "ON CONFLICT (did) DO UPDATE SET rev = excluded.rev, data_cid = excluded.data_cid, \
                 status = excluded.status, updated_at = excluded.updated_at",
            )
            .await?;
            let accounts: Vec<Vec<Arg<'_>>> = g
                .accounts
                .iter()
                .map(|(did, status)| {
                    vec![Arg::Text(Cow::Borrowed(did)), Arg::Text(Cow::Borrowed(status.as_str())), Arg::Int(now)]
                })
                .collect();
            bulk_insert(
                c,
                "INSERT INTO operators (did, status, updated_at)",
                3,
                &accounts,
                "ON CONFLICT (did) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
            )
            .await?;
            let handles: Vec<Option<String>> = g.identities.iter().map(|(_, h, _)| h.map(str::to_lowercase)).collect();
            let identities: Vec<Vec<Arg<'_>>> = g
                .identities
                .iter()
                .zip(&handles)
                .map(|((did, _, verified), handle)| {
                    vec![
                        Arg::Text(Cow::Borrowed(did)),
                        Arg::OptText(handle.as_deref()),
                        Arg::Bool(*verified),
                        Arg::Int(now),
                    ]
                })
                .collect();
            bulk_insert(
                c,
                "INSERT INTO operators (did, handle, handle_verified, updated_at)",
                4,
                &identities,
                "ON CONFLICT (did) DO UPDATE SET handle = excluded.handle, \
                 handle_verified = excluded.handle_verified, updated_at = excluded.updated_at",
            )
            .await?;
            let rejects: Vec<Vec<Arg<'_>>> = g
                .rejects
                .iter()
                .map(|r| {
                    vec![
                        Arg::Text(Cow::Borrowed(&r.uri)),
                        Arg::Text(Cow::Borrowed(r.cid.as_deref().unwrap_or(""))),
                        Arg::Text(Cow::Borrowed(&r.collection)),
                        Arg::Text(Cow::Borrowed(&r.reason)),
                        Arg::OptText(r.detail.as_deref()),
                        Arg::Int(now),
                    ]
                })
                .collect();
            bulk_insert(
                c,
                "INSERT INTO rejections (uri, cid, collection, reason, detail, rejected_at)",
                6,
                &rejects,
                "ON CONFLICT (uri, cid, reason) DO NOTHING",
            )
            .await?;
            let backfilled: Vec<Vec<Arg<'_>>> = g
                .backfilled
                .iter()
                .map(|did| vec![Arg::Text(Cow::Borrowed(did)), Arg::Text(Cow::Borrowed("done")), Arg::Int(now)])
                .collect();
            bulk_insert(
                c,
                "INSERT INTO backfill (did, status, updated_at)",
                3,
                &backfilled,
                "ON CONFLICT (did) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
            )
            .await?;
            Ok(())
        }

        /// An account deletion: the status stays (so a replayed commit cannot resurrect the
        /// account's rows), everything it owned goes.
        async fn delete_account(c: &mut Conn, did: &str, now: i64) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO operators (did, status, updated_at) VALUES ($1, 'deleted', $2) \
                 ON CONFLICT (did) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
            )
            .bind(clean(did))
            .bind(now)
            .execute(&mut *c)
            .await
            .map_err(q)?;
            delete_repo_records(c, did, now).await?;
            for sql in ["DELETE FROM repos WHERE did = $1", "DELETE FROM backfill WHERE did = $1"] {
                sqlx::query(sql).bind(clean(did)).execute(&mut *c).await.map_err(q)?;
            }
            Ok(())
        }

        const CLEAR_PROFILE: &str = "UPDATE operators SET display_name = NULL, description = NULL, \
             website = NULL, contact = NULL, profile_uri = NULL, profile_cid = NULL";

        async fn delete_records(c: &mut Conn, uris: &[&str], now: i64) -> Result<(), StoreError> {
            // Child rows go with their parents through ON DELETE CASCADE.
            for table in ["records", "services", "endorsements"] {
                with_keys(c, &format!("DELETE FROM {table} WHERE uri IN"), uris, "").await?;
            }
            with_keys(c, &format!("{CLEAR_PROFILE}, updated_at = {now} WHERE profile_uri IN"), uris, "").await
        }

        async fn delete_repo_records(c: &mut Conn, did: &str, now: i64) -> Result<(), StoreError> {
            for sql in [
                "DELETE FROM records WHERE did = $1",
                "DELETE FROM services WHERE did = $1",
                "DELETE FROM endorsements WHERE author = $1",
            ] {
                sqlx::query(sql).bind(clean(did)).execute(&mut *c).await.map_err(q)?;
            }
            exec_dyn(
                c,
                format!("{CLEAR_PROFILE}, updated_at = $2 WHERE did = $1 AND profile_uri IS NOT NULL"),
                &[Arg::Text(Cow::Borrowed(did)), Arg::Int(now)],
            )
            .await?;
            Ok(())
        }

        /// Distinct values as they will be stored: deduplicated after [`clean`], since two
        /// values that differ only by U+0000 vs U+FFFD become one row and would otherwise
        /// break the primary key and fail the whole batch, again on every replay.
        fn dedup_sorted(items: &[String]) -> BTreeSet<Cow<'_, str>> {
            items
                .iter()
                .map(|v| if v.contains('\0') { Cow::Owned(clean(v)) } else { Cow::Borrowed(v.as_str()) })
                .collect()
        }

        /// Writes upserts of distinct URIs with multi-row statements.
        async fn write_upserts(
            c: &mut Conn,
            items: &[(&RecordRow, Option<&IndexRow>)],
            now: i64,
        ) -> Result<(), StoreError> {
            if items.is_empty() {
                return Ok(());
            }
            let record_rows: Vec<Vec<Arg<'_>>> = items
                .iter()
                .map(|(r, _)| {
                    vec![
                        Arg::Text(Cow::Borrowed(&r.uri)),
                        Arg::Text(Cow::Borrowed(&r.did)),
                        Arg::Text(Cow::Borrowed(&r.collection)),
                        Arg::Text(Cow::Borrowed(&r.rkey)),
                        Arg::Text(Cow::Borrowed(&r.cid)),
                        Arg::Bytes(&r.bytes),
                        Arg::Int(now),
                    ]
                })
                .collect();
            bulk_insert(
                c,
                "INSERT INTO records (uri, did, collection, rkey, cid, bytes, indexed_at)",
                7,
                &record_rows,
                "ON CONFLICT (uri) DO UPDATE SET did = excluded.did, collection = excluded.collection, \
                 rkey = excluded.rkey, cid = excluded.cid, bytes = excluded.bytes, indexed_at = excluded.indexed_at",
            )
            .await?;

            let mut services: Vec<(&RecordRow, &ServiceRow)> = Vec::new();
            let mut endorsements: Vec<(&RecordRow, &EndorsementRow)> = Vec::new();
            let mut profiles: Vec<(&RecordRow, &OperatorProfileRow)> = Vec::new();
            let mut unindexed: Vec<&str> = Vec::new();
            for (r, idx) in items {
                match idx {
                    Some(IndexRow::Service(s)) => services.push((r, s)),
                    Some(IndexRow::Endorsement(e)) => endorsements.push((r, e)),
                    Some(IndexRow::Operator(p)) => profiles.push((r, p)),
                    None => unindexed.push(r.uri.as_str()),
                }
            }
            if !services.is_empty() {
                write_services(c, &services, now).await?;
            }
            if !endorsements.is_empty() {
                write_endorsements(c, &endorsements, now).await?;
            }
            if !profiles.is_empty() {
                // One operator row per DID, last profile wins.
                let mut seen_did: HashSet<&str> = HashSet::new();
                let mut rows: Vec<Vec<Arg<'_>>> = profiles
                    .iter()
                    .rev()
                    .filter(|(r, _)| seen_did.insert(r.did.as_str()))
                    .map(|(r, p)| {
                        vec![
                            Arg::Text(Cow::Borrowed(&r.did)),
                            Arg::Text(Cow::Borrowed(&p.display_name)),
                            Arg::OptText(p.description.as_deref()),
                            Arg::OptText(p.website.as_deref()),
                            Arg::OptText(p.contact.as_deref()),
                            Arg::Text(Cow::Borrowed(&r.uri)),
                            Arg::Text(Cow::Borrowed(&r.cid)),
                            Arg::Int(now),
                        ]
                    })
                    .collect();
                rows.reverse();
                bulk_insert(
                    c,
                    "INSERT INTO operators (did, display_name, description, website, contact, \
                     profile_uri, profile_cid, updated_at)",
                    8,
                    &rows,
                    "ON CONFLICT (did) DO UPDATE SET display_name = excluded.display_name, \
                     description = excluded.description, website = excluded.website, \
                     contact = excluded.contact, profile_uri = excluded.profile_uri, \
                     profile_cid = excluded.profile_cid, updated_at = excluded.updated_at",
                )
                .await?;
            }
            if !unindexed.is_empty() {
                with_keys(c, "DELETE FROM services WHERE uri IN", &unindexed, "").await?;
                with_keys(c, "DELETE FROM endorsements WHERE uri IN", &unindexed, "").await?;
                with_keys(
                    c,
                    &format!("{CLEAR_PROFILE}, updated_at = {now} WHERE profile_uri IN"),
                    &unindexed,
                    "",
                )
                .await?;
            }
            Ok(())
        }

        async fn write_services(
            c: &mut Conn,
            services: &[(&RecordRow, &ServiceRow)],
            now: i64,
        ) -> Result<(), StoreError> {
            // Convert every amount first: a malformed one fails the whole batch.
            let mut price_rows: Vec<Vec<Arg<'_>>> = Vec::new();
            for (r, s) in services {
                for (i, p) in s.prices.iter().enumerate() {
                    let nanos = match &p.amount {
                        Some(a) => Some(crate::amount::amount_to_nanos(a)?),
                        None => None,
                    };
                    price_rows.push(vec![
                        Arg::Text(Cow::Borrowed(&r.uri)),
                        Arg::Int(i64::try_from(i).unwrap_or(i64::MAX)),
                        Arg::Text(Cow::Borrowed(&p.model)),
                        Arg::OptText(p.currency.as_deref()),
                        Arg::OptText(p.amount.as_deref()),
                        Arg::OptInt(nanos),
                        Arg::OptText(p.unit.as_deref()),
                        Arg::OptText(p.period.as_deref()),
                    ]);
                }
            }
            let uris: Vec<&str> = services.iter().map(|(r, _)| r.uri.as_str()).collect();
            for table in ["service_capabilities", "service_regions", "service_prices", "service_tags"] {
                with_keys(c, &format!("DELETE FROM {table} WHERE uri IN"), &uris, "").await?;
            }
            let rows: Vec<Vec<Arg<'_>>> = services
                .iter()
                .map(|(r, s)| {
                    vec![
                        Arg::Text(Cow::Borrowed(&r.uri)),
                        Arg::Text(Cow::Borrowed(&r.did)),
                        Arg::Text(Cow::Borrowed(&r.rkey)),
                        Arg::Text(Cow::Borrowed(&r.cid)),
                        Arg::Text(Cow::Borrowed(&s.name)),
                        Arg::OptText(s.description.as_deref()),
                        Arg::OptText(s.version.as_deref()),
                        Arg::Text(Cow::Borrowed(&s.created_at)),
                        Arg::OptInt(s.latency_p95_ms),
                        Arg::OptInt(s.availability_bp),
                        Arg::OptInt(s.success_rate_bp),
                        Arg::Text(Cow::Borrowed(&s.record_json)),
                        Arg::Text(Cow::Owned(search_text(s))),
                        Arg::Int(now),
                    ]
                })
                .collect();
            bulk_insert(
                c,
                "INSERT INTO services (uri, did, rkey, cid, name, description, version, created_at, \
                 latency_p95_ms, availability_bp, success_rate_bp, record_json, search_text, indexed_at)",
                14,
                &rows,
                "ON CONFLICT (uri) DO UPDATE SET did = excluded.did, rkey = excluded.rkey, cid = excluded.cid, \
                 name = excluded.name, description = excluded.description, version = excluded.version, \
                 created_at = excluded.created_at, latency_p95_ms = excluded.latency_p95_ms, \
                 availability_bp = excluded.availability_bp, success_rate_bp = excluded.success_rate_bp, \
                 record_json = excluded.record_json, search_text = excluded.search_text, \
                 indexed_at = excluded.indexed_at",
            )
            .await?;
            let pairs = |f: fn(&ServiceRow) -> &[String]| -> Vec<Vec<Arg<'_>>> {
                services
                    .iter()
                    .flat_map(|(r, s)| {
                        dedup_sorted(f(s)).into_iter().map(move |v| {
                            vec![Arg::Text(Cow::Borrowed(r.uri.as_str())), Arg::Text(v)]
                        })
                    })
                    .collect()
            };
            let caps = pairs(|s| &s.capabilities);
            bulk_insert(c, "INSERT INTO service_capabilities (uri, capability)", 2, &caps, "").await?;
            let regions = pairs(|s| &s.regions);
            bulk_insert(c, "INSERT INTO service_regions (uri, region)", 2, &regions, "").await?;
            let tags = pairs(|s| &s.tags);
            bulk_insert(c, "INSERT INTO service_tags (uri, tag)", 2, &tags, "").await?;
            bulk_insert(
                c,
                "INSERT INTO service_prices (uri, idx, model, currency, amount, amount_nanos, unit, period)",
                8,
                &price_rows,
                "",
            )
            .await?;
            Ok(())
        }

        async fn write_endorsements(
            c: &mut Conn,
            endorsements: &[(&RecordRow, &EndorsementRow)],
            now: i64,
        ) -> Result<(), StoreError> {
            let uris: Vec<&str> = endorsements.iter().map(|(r, _)| r.uri.as_str()).collect();
            with_keys(c, "DELETE FROM endorsement_capabilities WHERE uri IN", &uris, "").await?;
            let rows: Vec<Vec<Arg<'_>>> = endorsements
                .iter()
                .map(|(r, e)| {
                    vec![
                        Arg::Text(Cow::Borrowed(&r.uri)),
                        Arg::Text(Cow::Borrowed(&r.did)),
                        Arg::Text(Cow::Borrowed(&r.rkey)),
                        Arg::Text(Cow::Borrowed(&r.cid)),
                        Arg::Text(Cow::Borrowed(&e.subject)),
                        Arg::OptText(e.service_uri.as_deref()),
                        Arg::OptText(e.service_cid.as_deref()),
                        Arg::OptInt(e.strength),
                        Arg::OptText(e.comment.as_deref()),
                        Arg::Text(Cow::Borrowed(&e.created_at)),
                        Arg::OptText(e.expires_at.as_deref()),
                        Arg::Int(now),
                    ]
                })
                .collect();
            bulk_insert(
                c,
                "INSERT INTO endorsements (uri, author, rkey, cid, subject, service_uri, service_cid, \
                 strength, comment, created_at, expires_at, indexed_at)",
                12,
                &rows,
                "ON CONFLICT (uri) DO UPDATE SET author = excluded.author, rkey = excluded.rkey, \
                 cid = excluded.cid, subject = excluded.subject, service_uri = excluded.service_uri, \
                 service_cid = excluded.service_cid, strength = excluded.strength, \
                 comment = excluded.comment, created_at = excluded.created_at, \
                 expires_at = excluded.expires_at, indexed_at = excluded.indexed_at",
            )
            .await?;
            let caps: Vec<Vec<Arg<'_>>> = endorsements
                .iter()
                .flat_map(|(r, e)| {
                    dedup_sorted(&e.capabilities).into_iter().map(move |v| {
                        vec![Arg::Text(Cow::Borrowed(r.uri.as_str())), Arg::Text(v)]
                    })
                })
                .collect();
            bulk_insert(c, "INSERT INTO endorsement_capabilities (uri, capability)", 2, &caps, "").await?;
            Ok(())
        }

        pub(crate) async fn enqueue_backfill(pool: &Pool, dids: &[String]) -> Result<(), StoreError> {
            let mut c = pool.acquire().await.map_err(q)?;
            let now = now_ms();
            // Distinct DIDs: one ON CONFLICT target per statement.
            let rows: Vec<Vec<Arg<'_>>> = dids
                .iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|d| vec![Arg::Text(Cow::Borrowed(d.as_str())), Arg::Text(Cow::Borrowed("pending")), Arg::Int(now)])
                .collect();
            bulk_insert(&mut c, "INSERT INTO backfill (did, status, updated_at)", 3, &rows, "ON CONFLICT (did) DO NOTHING").await
        }

        // ---------------------------------------------------------------- read path

        fn operator_status(s: &str) -> Result<OperatorStatus, StoreError> {
            OperatorStatus::parse(s).ok_or(StoreError::Corrupt { kind: "operator status" })
        }

        pub(crate) async fn cursor(pool: &Pool, source: &str) -> Result<Option<i64>, StoreError> {
            sqlx::query_scalar::<_, i64>("SELECT seq FROM cursors WHERE source = $1")
                .bind(clean(source))
                .fetch_optional(pool)
                .await
                .map_err(q)
        }

        pub(crate) async fn tracked_dids(pool: &Pool) -> Result<Vec<String>, StoreError> {
            sqlx::query_scalar::<_, String>("SELECT did FROM repos ORDER BY did")
                .fetch_all(pool)
                .await
                .map_err(q)
        }

        pub(crate) async fn backfill_done(pool: &Pool, did: &str) -> Result<bool, StoreError> {
            let status = sqlx::query_scalar::<_, String>("SELECT status FROM backfill WHERE did = $1")
                .bind(clean(did))
                .fetch_optional(pool)
                .await
                .map_err(q)?;
            Ok(status.as_deref() == Some("done"))
        }

        pub(crate) async fn repo(pool: &Pool, did: &str) -> Result<Option<RepoRow>, StoreError> {
            let row = sqlx::query("SELECT did, rev, data_cid, status FROM repos WHERE did = $1")
                .bind(clean(did))
                .fetch_optional(pool)
                .await
                .map_err(q)?;
            row.map(|r| {
                Ok(RepoRow {
                    did: text(&r, 0)?,
                    rev: opt_text(&r, 1)?,
                    data_cid: opt_text(&r, 2)?,
                    status: RepoStatus::parse(&text(&r, 3)?)
                        .ok_or(StoreError::Corrupt { kind: "repo status" })?,
                })
            })
            .transpose()
        }

        const OPERATOR_COLS: &str = "SELECT did, handle, handle_verified, status, display_name, description, \
             website, contact, profile_uri, profile_cid FROM operators";

        fn operator_from_row(r: &DbRow) -> Result<OperatorRow, StoreError> {
            Ok(OperatorRow {
                did: text(r, 0)?,
                handle: opt_text(r, 1)?,
                handle_verified: r.try_get::<bool, _>(2).map_err(q)?,
                status: operator_status(&text(r, 3)?)?,
                display_name: opt_text(r, 4)?,
                description: opt_text(r, 5)?,
                website: opt_text(r, 6)?,
                contact: opt_text(r, 7)?,
                profile_uri: opt_text(r, 8)?,
                profile_cid: opt_text(r, 9)?,
            })
        }

        pub(crate) async fn operator(pool: &Pool, did: &str) -> Result<Option<OperatorRow>, StoreError> {
            let rows = fetch_dyn(
                pool,
                format!("{OPERATOR_COLS} WHERE did = $1 AND status = 'active'"),
                &[Arg::Text(Cow::Borrowed(did))],
            )
            .await?;
            rows.first().map(operator_from_row).transpose()
        }

        /// On a pool, or inside a batch's transaction (see `touches_graph`).
        pub(crate) async fn operator_status_of<'e, E>(ex: E, did: &str) -> Result<Option<OperatorStatus>, StoreError>
        where
            E: sqlx::Executor<'e, Database = Db>,
        {
            let s = sqlx::query_scalar::<_, String>("SELECT status FROM operators WHERE did = $1")
                .bind(clean(did))
                .fetch_optional(ex)
                .await
                .map_err(q)?;
            s.as_deref().map(operator_status).transpose()
        }

        pub(crate) async fn operator_by_handle(pool: &Pool, handle: &str) -> Result<Option<OperatorRow>, StoreError> {
            // Several DIDs may claim a handle; only a verified claim counts.
            let rows = fetch_dyn(
                pool,
                format!(
                    "{OPERATOR_COLS} WHERE handle = $1 AND handle_verified = $2 AND status = 'active' \
                     ORDER BY updated_at DESC, did LIMIT 1"
                ),
                &[Arg::Text(Cow::Owned(handle.to_lowercase())), Arg::Bool(true)],
            )
            .await?;
            rows.first().map(operator_from_row).transpose()
        }

        pub(crate) async fn record(pool: &Pool, uri: &str) -> Result<Option<RecordRow>, StoreError> {
            let row = sqlx::query("SELECT uri, did, collection, rkey, cid, bytes FROM records WHERE uri = $1")
                .bind(clean(uri))
                .fetch_optional(pool)
                .await
                .map_err(q)?;
            row.map(|r| {
                Ok(RecordRow {
                    uri: text(&r, 0)?,
                    did: text(&r, 1)?,
                    collection: text(&r, 2)?,
                    rkey: text(&r, 3)?,
                    cid: text(&r, 4)?,
                    bytes: r.try_get::<Vec<u8>, _>(5).map_err(q)?,
                })
            })
            .transpose()
        }

        pub(crate) async fn list_records(
            pool: &Pool,
            did: &str,
            collection: &str,
        ) -> Result<Vec<(String, String)>, StoreError> {
            sqlx::query_as::<_, (String, String)>(
                "SELECT uri, cid FROM records WHERE did = $1 AND collection = $2 ORDER BY rkey",
            )
            .bind(clean(did))
            .bind(clean(collection))
            .fetch_all(pool)
            .await
            .map_err(q)
        }

        fn hit_from_row(r: &DbRow) -> Result<ServiceHit, StoreError> {
            Ok(ServiceHit {
                uri: text(r, 0)?,
                did: text(r, 1)?,
                cid: text(r, 2)?,
                name: text(r, 3)?,
                description: opt_text(r, 4)?,
                version: opt_text(r, 5)?,
                created_at: text(r, 6)?,
                latency_p95_ms: opt_int(r, 7)?,
                availability_bp: opt_int(r, 8)?,
                success_rate_bp: opt_int(r, 9)?,
                record_json: text(r, 10)?,
            })
        }

        pub(crate) async fn search_services(pool: &Pool, query: &ServiceQuery) -> Result<Vec<ServiceHit>, StoreError> {
            let limit = i64::from(page_size(query.limit));
            let (sql, args) = build_search(query, HIT_COLS, IS_PG, limit);
            fetch_dyn(pool, sql, &args).await?.iter().map(hit_from_row).collect()
        }

        fn candidate_from_row(r: &DbRow) -> Result<ServiceCandidate, StoreError> {
            Ok(ServiceCandidate {
                uri: text(r, 0)?,
                did: text(r, 1)?,
                cid: text(r, 2)?,
                created_at: text(r, 3)?,
                latency_p95_ms: opt_int(r, 4)?,
                availability_bp: opt_int(r, 5)?,
                success_rate_bp: opt_int(r, 6)?,
            })
        }

        pub(crate) async fn search_candidates(
            pool: &Pool,
            query: &ServiceQuery,
            cap: usize,
            per_operator: usize,
        ) -> Result<CandidateSet, StoreError> {
            let per_op = per_operator.max(1);
            let per_op_i = i64::try_from(per_op).unwrap_or(i64::MAX - 1);
            let cap_i = i64::try_from(cap).unwrap_or(i64::MAX - 1);
            // One row past each operator's share tells that it was cut; one candidate past
            // the cap tells where the total cap cut. Operators in DID order: no operator can
            // take another's place by the order of its record keys.
            let (inner, mut args) = build_filter(
                query,
                &format!("{CANDIDATE_COLS}, ROW_NUMBER() OVER (PARTITION BY s.did ORDER BY s.uri) AS rn"),
                IS_PG,
            );
            args.push(Arg::Int(per_op_i.saturating_add(1)));
            let rn_arg = args.len();
            // Room for cap + 1 candidate rows and the marker row that follows every full
            // share among them.
            let per_share = i64::try_from(per_op).unwrap_or(i64::MAX);
            args.push(Arg::Int(cap_i.saturating_add(cap_i / per_share).saturating_add(2)));
            let limit_arg = args.len();
            let sql = format!(
                "SELECT t.uri, t.did, t.cid, t.created_at, t.latency_p95_ms, t.availability_bp, t.success_rate_bp, t.rn \
                 FROM ({inner}) t WHERE t.rn <= ${rn_arg} ORDER BY t.did, t.uri LIMIT ${limit_arg}"
            );
            let rows = fetch_dyn(pool, sql, &args).await?;
            let mut candidates: Vec<ServiceCandidate> = Vec::with_capacity(rows.len().min(cap));
            let mut crowded: Vec<String> = Vec::new();
            let mut missing_from = None;
            for r in &rows {
                let c = candidate_from_row(r)?;
                if int(r, 7)? > per_op_i {
                    crowded.push(c.did);
                    continue;
                }
                if candidates.len() == cap {
                    // The total cap cut inside or after this operator: it and every later
                    // one are left out whole (never a partial share of an operator).
                    while candidates.last().is_some_and(|l| l.did == c.did) {
                        candidates.pop();
                    }
                    missing_from = Some(c.did);
                    break;
                }
                candidates.push(c);
            }
            let truncated = missing_from.is_some() || !crowded.is_empty();
            Ok(CandidateSet { candidates, truncated, crowded, missing_from })
        }

        pub(crate) async fn candidates_of(
            pool: &Pool,
            query: &ServiceQuery,
            dids: &[&str],
            per_operator: usize,
        ) -> Result<(Vec<ServiceCandidate>, bool), StoreError> {
            let keys = distinct_keys(dids);
            let per_op_i = i64::try_from(per_operator.max(1)).unwrap_or(i64::MAX - 1);
            let mut out = Vec::new();
            let mut crowded = false;
            // The filters take a few parameters of their own.
            for chunk in keys.chunks(rows_per_statement(1)) {
                let (mut inner, mut args) = build_filter(
                    query,
                    &format!("{CANDIDATE_COLS}, ROW_NUMBER() OVER (PARTITION BY s.did ORDER BY s.uri) AS rn"),
                    IS_PG,
                );
                crate::ops::and_did_in(&mut inner, &mut args, chunk);
                args.push(Arg::Int(per_op_i.saturating_add(1)));
                let sql = format!(
                    "SELECT t.uri, t.did, t.cid, t.created_at, t.latency_p95_ms, t.availability_bp, t.success_rate_bp, t.rn \
                     FROM ({inner}) t WHERE t.rn <= ${} ORDER BY t.uri",
                    args.len()
                );
                for r in &fetch_dyn(pool, sql, &args).await? {
                    if int(r, 7)? > per_op_i {
                        crowded = true;
                    } else {
                        out.push(candidate_from_row(r)?);
                    }
                }
            }
            out.sort_by(|a, b| a.uri.cmp(&b.uri));
            Ok((out, crowded))
        }

        /// Columns of a full service row `s`, in the order [`service_from_row`] reads them.
        const SERVICE_COLS: &str = "s.uri, s.did, s.rkey, s.cid, s.name, s.description, s.version, \
             s.created_at, s.latency_p95_ms, s.availability_bp, s.success_rate_bp, s.record_json";

        /// A service row without its children (capabilities, regions, prices, tags).
        fn service_from_row(r: &DbRow) -> Result<ServiceRow, StoreError> {
            Ok(ServiceRow {
                uri: text(r, 0)?,
                did: text(r, 1)?,
                rkey: text(r, 2)?,
                cid: text(r, 3)?,
                name: text(r, 4)?,
                description: opt_text(r, 5)?,
                version: opt_text(r, 6)?,
                created_at: text(r, 7)?,
                latency_p95_ms: opt_int(r, 8)?,
                availability_bp: opt_int(r, 9)?,
                success_rate_bp: opt_int(r, 10)?,
                record_json: text(r, 11)?,
                capabilities: Vec::new(),
                regions: Vec::new(),
                prices: Vec::new(),
                tags: Vec::new(),
            })
        }

        /// Fills the children of `out` from the child rows whose URI is `IN <in_list>` (a
        /// subquery or a placeholder list bound by `args`): four queries, whatever `out` holds.
        async fn attach_service_children(
            pool: &Pool,
            out: &mut [ServiceRow],
            in_list: &str,
            args: &[Arg<'_>],
        ) -> Result<(), StoreError> {
            let pos: HashMap<String, usize> = out.iter().enumerate().map(|(i, s)| (s.uri.clone(), i)).collect();
            for (table, col) in [("service_capabilities", "capability"), ("service_regions", "region"), ("service_tags", "tag")] {
                let rows = fetch_dyn(
                    pool,
                    format!("SELECT uri, {col} FROM {table} WHERE uri IN {in_list} ORDER BY uri, {col}"),
                    args,
                )
                .await?;
                for r in &rows {
                    if let Some(&i) = pos.get(&text(r, 0)?) {
                        let v = text(r, 1)?;
                        match col {
                            "capability" => out[i].capabilities.push(v),
                            "region" => out[i].regions.push(v),
                            _ => out[i].tags.push(v),
                        }
                    }
                }
            }
            let rows = fetch_dyn(
                pool,
                format!(
                    "SELECT uri, model, currency, amount, unit, period FROM service_prices \
                     WHERE uri IN {in_list} ORDER BY uri, idx"
                ),
                args,
            )
            .await?;
            for r in &rows {
                if let Some(&i) = pos.get(&text(r, 0)?) {
                    out[i].prices.push(PriceRow {
                        model: text(r, 1)?,
                        currency: opt_text(r, 2)?,
                        amount: opt_text(r, 3)?,
                        unit: opt_text(r, 4)?,
                        period: opt_text(r, 5)?,
                    });
                }
            }
            Ok(())
        }

        /// Full service rows (children included) for the visible services selected by `filter`
        /// (`s.uri = $1` or `s.did = $1`).
        async fn services_where(pool: &Pool, filter: &str, key: &str) -> Result<Vec<ServiceRow>, StoreError> {
            let sel = format!(
                "SELECT {SERVICE_COLS} FROM services s WHERE {filter} AND {} ORDER BY s.uri",
                crate::ops::SVC_VISIBLE
            );
            let args = [Arg::Text(Cow::Borrowed(key))];
            let rows = fetch_dyn(pool, sel, &args).await?;
            let mut out: Vec<ServiceRow> = rows.iter().map(service_from_row).collect::<Result<_, StoreError>>()?;
            if out.is_empty() {
                return Ok(out);
            }
            let sub = format!("(SELECT s.uri FROM services s WHERE {filter})");
            attach_service_children(pool, &mut out, &sub, &args).await?;
            Ok(out)
        }

        pub(crate) async fn service(pool: &Pool, uri: &str) -> Result<Option<ServiceRow>, StoreError> {
            Ok(services_where(pool, "s.uri = $1", uri).await?.into_iter().next())
        }

        pub(crate) async fn services_of(pool: &Pool, did: &str) -> Result<Vec<ServiceRow>, StoreError> {
            services_where(pool, "s.did = $1", did).await
        }

        fn endorsement_from_row(r: &DbRow) -> Result<(i64, EndorsementRow), StoreError> {
            Ok((
                int(r, 0)?,
                EndorsementRow {
                    uri: text(r, 1)?,
                    author: text(r, 2)?,
                    rkey: text(r, 3)?,
                    cid: text(r, 4)?,
                    subject: text(r, 5)?,
                    service_uri: opt_text(r, 6)?,
                    service_cid: opt_text(r, 7)?,
                    strength: opt_int(r, 8)?,
                    comment: opt_text(r, 9)?,
                    created_at: text(r, 10)?,
                    expires_at: opt_text(r, 11)?,
                    capabilities: Vec::new(),
                },
            ))
        }

        /// Fills `capabilities` of the given endorsements.
        async fn attach_endorsement_caps(pool: &Pool, items: &mut [EndorsementRow]) -> Result<(), StoreError> {
            let pos: HashMap<String, usize> = items.iter().enumerate().map(|(i, e)| (e.uri.clone(), i)).collect();
            let uris: Vec<String> = items.iter().map(|e| e.uri.clone()).collect();
            for chunk in uris.chunks(rows_per_statement(1)) {
                let list = key_list(chunk.len(), IS_PG);
                let args: Vec<Arg<'_>> = chunk.iter().map(|u| Arg::Text(Cow::Borrowed(u.as_str()))).collect();
                let rows = fetch_dyn(
                    pool,
                    format!(
                        "SELECT uri, capability FROM endorsement_capabilities WHERE uri IN ({list}) \
                         ORDER BY uri, capability"
                    ),
                    &args,
                )
                .await?;
                for r in &rows {
                    if let Some(&i) = pos.get(&text(r, 0)?) {
                        items[i].capabilities.push(text(r, 1)?);
                    }
                }
            }
            Ok(())
        }

        async fn endorsement_page(
            pool: &Pool,
            sql: &'static str,
            did: &str,
            cursor: Option<i64>,
            limit: u32,
        ) -> Result<EndorsementPage, StoreError> {
            let limit = page_size(limit);
            let rows = sqlx::query(sql)
                .bind(clean(did))
                .bind(cursor.unwrap_or(i64::MAX))
                .bind(i64::from(limit) + 1)
                .fetch_all(pool)
                .await
                .map_err(q)?;
            let mut pairs = rows.iter().map(endorsement_from_row).collect::<Result<Vec<_>, _>>()?;
            let more = pairs.len() > limit as usize;
            pairs.truncate(limit as usize);
            let next = if more { pairs.last().map(|(id, _)| *id) } else { None };
            let mut items: Vec<EndorsementRow> = pairs.into_iter().map(|(_, e)| e).collect();
            attach_endorsement_caps(pool, &mut items).await?;
            Ok(EndorsementPage { items, cursor: next })
        }

        pub(crate) async fn endorsements_by_author(
            pool: &Pool,
            did: &str,
            cursor: Option<i64>,
            limit: u32,
        ) -> Result<EndorsementPage, StoreError> {
            endorsement_page(
                pool,
                concat!(
                    "SELECT ", endo_cols!(), " FROM endorsements e WHERE e.author = $1 AND e.id < $2 AND ",
                    endo_visible!(), " ORDER BY e.id DESC LIMIT $3"
                ),
                did,
                cursor,
                limit,
            )
            .await
        }

        pub(crate) async fn endorsements_of_subject(
            pool: &Pool,
            did: &str,
            cursor: Option<i64>,
            limit: u32,
        ) -> Result<EndorsementPage, StoreError> {
            endorsement_page(
                pool,
                concat!(
                    "SELECT ", endo_cols!(), " FROM endorsements e WHERE e.subject = $1 AND e.id < $2 AND ",
                    endo_visible!(), " ORDER BY e.id DESC LIMIT $3"
                ),
                did,
                cursor,
                limit,
            )
            .await
        }

        pub(crate) async fn endorsement_counts(pool: &Pool, did: &str) -> Result<EndorsementCounts, StoreError> {
            let given = sqlx::query_scalar::<_, i64>(concat!(
                "SELECT COUNT(*) FROM endorsements e WHERE e.author = $1 AND ", endo_visible!()
            ))
            .bind(clean(did))
            .fetch_one(pool)
            .await
            .map_err(q)?;
            let received = sqlx::query_scalar::<_, i64>(concat!(
                "SELECT COUNT(*) FROM endorsements e WHERE e.subject = $1 AND ", endo_visible!()
            ))
            .bind(clean(did))
            .fetch_one(pool)
            .await
            .map_err(q)?;
            Ok(EndorsementCounts { given, received })
        }

        pub(crate) async fn all_endorsements(pool: &Pool) -> Result<Vec<EndorsementRow>, StoreError> {
            let rows = sqlx::query(concat!(
                "SELECT ", endo_cols!(), " FROM endorsements e WHERE ", endo_visible!(), " ORDER BY e.id"
            ))
            .fetch_all(pool)
            .await
            .map_err(q)?;
            let mut items: Vec<EndorsementRow> = rows
                .iter()
                .map(|r| endorsement_from_row(r).map(|(_, e)| e))
                .collect::<Result<_, _>>()?;
            let pos: HashMap<String, usize> = items.iter().enumerate().map(|(i, e)| (e.uri.clone(), i)).collect();
            // One pass over all scope rows beats thousands of IN lists at start-up.
            let caps = sqlx::query_as::<_, (String, String)>(
                "SELECT uri, capability FROM endorsement_capabilities ORDER BY uri, capability",
            )
            .fetch_all(pool)
            .await
            .map_err(q)?;
            for (uri, cap) in caps {
                if let Some(&i) = pos.get(&uri) {
                    items[i].capabilities.push(cap);
                }
            }
            Ok(items)
        }

        pub(crate) async fn endorsements_after(pool: &Pool, after: Option<i64>, limit: u32) -> Result<EndorsementPage, StoreError> {
            let limit = limit.clamp(1, crate::MAX_BULK_PAGE);
            let after = after.unwrap_or(i64::MIN);
            let rows = sqlx::query(concat!(
                "SELECT ", endo_cols!(), " FROM endorsements e WHERE e.id > $1 AND ", endo_visible!(),
                " ORDER BY e.id LIMIT $2"
            ))
            .bind(after)
            .bind(i64::from(limit) + 1)
            .fetch_all(pool)
            .await
            .map_err(q)?;
            let mut pairs = rows.iter().map(endorsement_from_row).collect::<Result<Vec<_>, _>>()?;
            let more = pairs.len() > limit as usize;
            pairs.truncate(limit as usize);
            let Some(&(last, _)) = pairs.last() else {
                return Ok(EndorsementPage { items: Vec::new(), cursor: None });
            };
            let mut items: Vec<EndorsementRow> = pairs.into_iter().map(|(_, e)| e).collect();
            let pos: HashMap<String, usize> = items.iter().enumerate().map(|(i, e)| (e.uri.clone(), i)).collect();
            // The scope rows of the page's id range in one query (hidden ones are skipped below).
            let caps = sqlx::query_as::<_, (String, String)>(
                "SELECT c.uri, c.capability FROM endorsement_capabilities c \
                 JOIN endorsements e ON e.uri = c.uri WHERE e.id > $1 AND e.id <= $2 \
                 ORDER BY c.uri, c.capability",
            )
            .bind(after)
            .bind(last)
            .fetch_all(pool)
            .await
            .map_err(q)?;
            for (uri, cap) in caps {
                if let Some(&i) = pos.get(&uri) {
                    items[i].capabilities.push(cap);
                }
            }
            Ok(EndorsementPage { items, cursor: more.then_some(last) })
        }

        pub(crate) async fn capabilities(pool: &Pool) -> Result<Vec<(String, i64)>, StoreError> {
            sqlx::query_as::<_, (String, i64)>(concat!(
                "SELECT c.capability, COUNT(*) AS n FROM service_capabilities c JOIN services s ON s.uri = c.uri \
                 WHERE ", svc_visible!(), " GROUP BY c.capability ORDER BY n DESC, c.capability"
            ))
            .fetch_all(pool)
            .await
            .map_err(q)
        }

        pub(crate) async fn capabilities_page(
            pool: &Pool,
            prefix: &str,
            after: Option<&str>,
            limit: u32,
        ) -> Result<Vec<(String, i64)>, StoreError> {
            let prefix = clean(prefix);
            // Bytes compare the same in both databases (the PostgreSQL columns use the "C"
            // collation); the range start lets the
            // (capability, uri) index walk from the prefix or the cursor, in order.
            let start = match after {
                Some(a) if clean(a) > prefix => clean(a),
                _ => prefix.clone(),
            };
            let strict = after.is_some_and(|a| clean(a) >= prefix);
            let rows = sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(format!(
                "SELECT c.capability, COUNT(*) AS n FROM service_capabilities c JOIN services s ON s.uri = c.uri \
                 WHERE c.capability {} $1 AND substr(c.capability, 1, $2) = $3 AND {} \
                 GROUP BY c.capability ORDER BY c.capability LIMIT $4",
                if strict { ">" } else { ">=" },
                crate::ops::SVC_VISIBLE
            )))
            .bind(&start)
            .bind(i32::try_from(prefix.len()).unwrap_or(i32::MAX))
            .bind(&prefix)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(q)?;
            Ok(rows)
        }

        pub(crate) async fn instance_secret(pool: &Pool, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError> {
            sqlx::query("INSERT INTO instance_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(clean(name))
                .bind(fresh.to_vec())
                .execute(pool)
                .await
                .map_err(q)?;
            sqlx::query_scalar::<_, Vec<u8>>("SELECT value FROM instance_secrets WHERE name = $1")
                .bind(clean(name))
                .fetch_one(pool)
                .await
                .map_err(q)
        }

        pub(crate) async fn service_cids(pool: &Pool) -> Result<Vec<(String, String)>, StoreError> {
            sqlx::query_as::<_, (String, String)>(concat!(
                "SELECT s.uri, s.cid FROM services s WHERE ", svc_visible!(), " ORDER BY s.uri"
            ))
            .fetch_all(pool)
            .await
            .map_err(q)
        }

        pub(crate) async fn inactive_operators(pool: &Pool) -> Result<Vec<String>, StoreError> {
            sqlx::query_as::<_, (String,)>("SELECT did FROM operators WHERE status <> 'active' ORDER BY did")
                .fetch_all(pool)
                .await
                .map(|rows| rows.into_iter().map(|(d,)| d).collect())
                .map_err(q)
        }

        pub(crate) async fn service_capabilities(pool: &Pool) -> Result<Vec<(String, String)>, StoreError> {
            sqlx::query_as::<_, (String, String)>(concat!(
                "SELECT c.uri, c.capability FROM service_capabilities c JOIN services s ON s.uri = c.uri \
                 WHERE ", svc_visible!(), " ORDER BY c.uri, c.capability"
            ))
            .fetch_all(pool)
            .await
            .map_err(q)
        }

        pub(crate) async fn rejections(pool: &Pool, limit: u32) -> Result<Vec<Rejection>, StoreError> {
            let rows = sqlx::query(
                "SELECT id, uri, cid, collection, reason, detail, rejected_at FROM rejections \
                 ORDER BY id DESC LIMIT $1",
            )
            .bind(i64::from(page_size(limit)))
            .fetch_all(pool)
            .await
            .map_err(q)?;
            rows.iter()
                .map(|r| {
                    let cid = text(r, 2)?;
                    Ok(Rejection {
                        id: int(r, 0)?,
                        row: RejectionRow {
                            uri: text(r, 1)?,
                            cid: (!cid.is_empty()).then_some(cid),
                            collection: text(r, 3)?,
                            reason: text(r, 4)?,
                            detail: opt_text(r, 5)?,
                        },
                        rejected_at: int(r, 6)?,
                    })
                })
                .collect()
        }

        pub(crate) async fn rejection_counts(pool: &Pool) -> Result<Vec<(String, i64)>, StoreError> {
            sqlx::query_as::<_, (String, i64)>(
                "SELECT reason, COUNT(*) AS n FROM rejections GROUP BY reason ORDER BY n DESC, reason",
            )
            .fetch_all(pool)
            .await
            .map_err(q)
        }

        pub(crate) async fn backfill_pending(pool: &Pool, limit: u32) -> Result<Vec<String>, StoreError> {
            sqlx::query_scalar::<_, String>(
                "SELECT did FROM backfill WHERE status = 'pending' ORDER BY did LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(q)
        }

        pub(crate) async fn stats(pool: &Pool) -> Result<Stats, StoreError> {
            let row = sqlx::query(concat!(
                "SELECT (SELECT COUNT(*) FROM operators), \
                 (SELECT COUNT(*) FROM operators WHERE status <> 'active'), \
                 (SELECT COUNT(*) FROM repos), \
                 (SELECT COUNT(*) FROM records), \
                 (SELECT COUNT(*) FROM services s WHERE ", svc_visible!(), "), \
                 (SELECT COUNT(*) FROM endorsements e WHERE ", endo_visible!(), "), \
                 (SELECT COUNT(*) FROM rejections), \
                 (SELECT COUNT(*) FROM backfill WHERE status = 'pending')"
            ))
            .fetch_one(pool)
            .await
            .map_err(q)?;
            Ok(Stats {
                operators: int(&row, 0)?,
                inactive_operators: int(&row, 1)?,
                repos: int(&row, 2)?,
                records: int(&row, 3)?,
                services: int(&row, 4)?,
                endorsements: int(&row, 5)?,
                rejections: int(&row, 6)?,
                backfill_pending: int(&row, 7)?,
            })
        }

        // ------------------------------------------------ batched reads (page hydration)

        /// The distinct keys of `keys` as stored (after [`clean`]), sorted.
        fn distinct_keys(keys: &[&str]) -> Vec<String> {
            keys.iter().map(|k| clean(k)).collect::<BTreeSet<String>>().into_iter().collect()
        }

        /// Placeholder list and bind arguments for one chunk of keys.
        fn in_list(chunk: &[String]) -> (String, Vec<Arg<'_>>) {
            let list = format!("({})", key_list(chunk.len(), IS_PG));
            let args = chunk.iter().map(|k| Arg::Text(Cow::Borrowed(k.as_str()))).collect();
            (list, args)
        }

        /// Answers aligned with `keys` (repeats answered again, misses `None`) from rows found
        /// by their stored key.
        fn aligned<T: Clone>(keys: &[&str], found: &HashMap<String, T>) -> Vec<Option<T>> {
            keys.iter()
                .map(|k| if k.contains('\0') { found.get(&clean(k)) } else { found.get(*k) }.cloned())
                .collect()
        }

        pub(crate) async fn service_records(pool: &Pool, uris: &[&str]) -> Result<Vec<Option<ServiceRecordRow>>, StoreError> {
            let keys = distinct_keys(uris);
            let mut found: HashMap<String, ServiceRecordRow> = HashMap::with_capacity(keys.len());
            for chunk in keys.chunks(rows_per_statement(1)) {
                let (list, args) = in_list(chunk);
                let rows = fetch_dyn(
                    pool,
                    format!(
                        "SELECT s.uri, s.did, s.cid, s.record_json FROM services s WHERE s.uri IN {list} AND {}",
                        crate::ops::SVC_VISIBLE
                    ),
                    &args,
                )
                .await?;
                for r in &rows {
                    let row = ServiceRecordRow { uri: text(r, 0)?, did: text(r, 1)?, cid: text(r, 2)?, record_json: text(r, 3)? };
                    found.insert(row.uri.clone(), row);
                }
            }
            Ok(aligned(uris, &found))
        }

        pub(crate) async fn operators_by_dids(pool: &Pool, dids: &[&str]) -> Result<Vec<Option<OperatorRow>>, StoreError> {
            let keys = distinct_keys(dids);
            let mut found: HashMap<String, OperatorRow> = HashMap::with_capacity(keys.len());
            for chunk in keys.chunks(rows_per_statement(1)) {
                let (list, args) = in_list(chunk);
                let rows = fetch_dyn(pool, format!("{OPERATOR_COLS} WHERE did IN {list} AND status = 'active'"), &args).await?;
                for r in &rows {
                    let op = operator_from_row(r)?;
                    found.insert(op.did.clone(), op);
                }
            }
            Ok(aligned(dids, &found))
        }

        pub(crate) async fn record_cids(pool: &Pool, uris: &[&str]) -> Result<Vec<Option<String>>, StoreError> {
            let keys = distinct_keys(uris);
            let mut found: HashMap<String, String> = HashMap::with_capacity(keys.len());
            for chunk in keys.chunks(rows_per_statement(1)) {
                let (list, args) = in_list(chunk);
                let rows = fetch_dyn(pool, format!("SELECT uri, cid FROM records WHERE uri IN {list}"), &args).await?;
                for r in &rows {
                    found.insert(text(r, 0)?, text(r, 1)?);
                }
            }
            Ok(aligned(uris, &found))
        }

        pub(crate) async fn change_token(pool: &Pool) -> Result<ChangeToken, StoreError> {
            let version = sqlx::query_scalar::<_, i64>("SELECT version FROM graph_version WHERE id = 1")
                .fetch_one(pool)
                .await
                .map_err(q)?;
            Ok(ChangeToken(version))
        }
    };
}

pub(crate) mod sqlite {
    backend_ops!(
        sqlx::Sqlite,
        sqlx::SqliteConnection,
        sqlx::SqlitePool,
        false
    );
    crate::ledger_sql::ledger_ops!();

    /// Multi-row inserts: multi-row VALUES statements.
    async fn bulk_insert(
        c: &mut Conn,
        head: &str,
        cols: usize,
        rows: &[Vec<Arg<'_>>],
        tail: &str,
    ) -> Result<(), StoreError> {
        values_insert(c, head, cols, rows, tail).await
    }
}

pub(crate) mod pg {
    backend_ops!(sqlx::Postgres, sqlx::PgConnection, sqlx::PgPool, true);
    crate::ledger_sql::ledger_ops!();

    /// One column of a bulk insert, bound as a PostgreSQL array.
    enum Column {
        Text(Vec<Option<String>>),
        Int(Vec<Option<i64>>),
        Bool(Vec<bool>),
        Bytes(Vec<Vec<u8>>),
    }

    /// Rows to per-column arrays; `None` if the rows disagree on a column's type.
    fn columns(rows: &[Vec<Arg<'_>>]) -> Option<Vec<Column>> {
        let first = rows.first()?;
        let n = rows.len();
        let mut cols: Vec<Column> = first
            .iter()
            .map(|a| match a {
                Arg::Text(_) | Arg::OptText(_) => Column::Text(Vec::with_capacity(n)),
                Arg::Int(_) | Arg::OptInt(_) => Column::Int(Vec::with_capacity(n)),
                Arg::Bool(_) => Column::Bool(Vec::with_capacity(n)),
                Arg::Bytes(_) => Column::Bytes(Vec::with_capacity(n)),
            })
            .collect();
        for row in rows {
            if row.len() != cols.len() {
                return None;
            }
            for (col, a) in cols.iter_mut().zip(row) {
                match (col, a) {
                    (Column::Text(v), Arg::Text(s)) => v.push(Some(clean(s))),
                    (Column::Text(v), Arg::OptText(s)) => v.push(s.map(clean)),
                    (Column::Int(v), Arg::Int(i)) => v.push(Some(*i)),
                    (Column::Int(v), Arg::OptInt(i)) => v.push(*i),
                    (Column::Bool(v), Arg::Bool(b)) => v.push(*b),
                    (Column::Bytes(v), Arg::Bytes(b)) => v.push(b.to_vec()),
                    _ => return None,
                }
            }
        }
        Some(cols)
    }

    /// Multi-row inserts as `INSERT ... SELECT * FROM UNNEST($1::text[], ...)`: one short
    /// statement whatever the row count, so PostgreSQL parses and plans it once.
    async fn bulk_insert(
        c: &mut Conn,
        head: &str,
        cols: usize,
        rows: &[Vec<Arg<'_>>],
        tail: &str,
    ) -> Result<(), StoreError> {
        for chunk in rows.chunks(10_000) {
            let Some(columns) = columns(chunk) else {
                return values_insert(c, head, cols, chunk, tail).await;
            };
            let types: Vec<String> = columns
                .iter()
                .enumerate()
                .map(|(i, col)| {
                    let t = match col {
                        Column::Text(_) => "text",
                        Column::Int(_) => "int8",
                        Column::Bool(_) => "bool",
                        Column::Bytes(_) => "bytea",
                    };
                    format!("${}::{t}[]", i + 1)
                })
                .collect();
            let sql = format!("{head} SELECT * FROM UNNEST({}) {tail}", types.join(", "));
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for col in columns {
                query = match col {
                    Column::Text(v) => query.bind(v),
                    Column::Int(v) => query.bind(v),
                    Column::Bool(v) => query.bind(v),
                    Column::Bytes(v) => query.bind(v),
                };
            }
            query.execute(&mut *c).await.map_err(q)?;
        }
        Ok(())
    }
}
