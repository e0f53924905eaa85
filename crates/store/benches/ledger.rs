//! Settled calls per second through the ledger: `cargo bench -p guildhall-store --bench ledger`.
//!
//! One settlement is what the broker does per paid call: a hold of the payer's credits for the
//! provider, then a capture of part of it linked with the platform fee (both or neither).
//! Measured on SQLite (a temp file) and PostgreSQL (a fresh database on `GUILDHALL_TEST_PG`,
//! default postgres://postgres@127.0.0.1:5432/test, dropped afterwards), in two shapes:
//! `spread` (PAYERS payers paying 100 providers) and `hot` (the same payers paying 1
//! provider), and in two modes:
//!
//! - `group`: through [`LedgerHandle`], which batches concurrent callers into one transaction
//!   (group commit) — what the broker uses.
//! - `single`: the baseline without group commit — the same requests, each hold and each
//!   capture+fee its own `Store::ledger_commit(&[op], now)` transaction, from the same
//!   concurrent clients. Same SQL, same rules, same row locks; only the batching differs.
//!
//! Every payer is funded with a grant first (not timed). Then CLIENTS tasks settle in a loop
//! until SETTLEMENTS are done; latency is hold sent → capture answered. After each run the
//! database is audited against the model (conservation per currency, each provider, the fee
//! account, each payer, every hold captured, no settlement failed); any mismatch is printed
//! and the process exits non-zero.
//!
//! Knobs (env, or the same names as `--flag value` after `--`): `LEDGER_BENCH_CLIENTS` (64),
//! `LEDGER_BENCH_SETTLEMENTS` (20,000 per run), `LEDGER_BENCH_PAYERS` (10,000),
//! `LEDGER_BENCH_BACKENDS` (`sqlite,postgres`), `LEDGER_BENCH_MODES` (`group,single`),
//! `LEDGER_BENCH_SHAPES` (`spread,hot`). `LEDGER_BENCH_QUICK=1` (or running without
//! `--bench`, as `cargo test --benches` does) uses small counts for a smoke check.
//! Output: a table on stdout, then one line starting `{"bench":"ledger"` with every figure.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)] // a bench reports on stdout and may abort

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use guildhall_store::ledger_core::{
    AccountKey, Balance, HoldState, Kind, Owner, Request, Transfer, TransferId,
};
use guildhall_store::*;
use sqlx::Connection;

const CURRENCY: &str = "USD";
/// Each payer's grant: far more than it will spend, so no hold is refused for funds (a
/// refusal would be a failed settlement, which the audit counts).
const GRANT: i64 = 1_000_000_000_000;
/// Held per call (the quoted maximum), captured (the actual price) and the platform's cut, in
/// 10⁻⁹ units. Capturing less than held exercises the release of the remainder too.
const HOLD: i64 = 1_000_000;
const CAPTURE: i64 = 800_000;
const FEE: i64 = 80_000;

#[derive(Clone, Copy, Debug)]
enum Mode {
    Group,
    Single,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Group => "group",
            Mode::Single => "single",
        }
    }
}

#[derive(Clone, Debug)]
struct Config {
    clients: usize,
    settlements: usize,
    payers: usize,
    backends: Vec<String>,
    modes: Vec<Mode>,
    shapes: Vec<(&'static str, usize)>,
}

/// `--name value` after `--`, else the env var `NAME`, else the default.
fn knob(args: &[String], name: &str, default: &str) -> String {
    let flag = format!("--{}", name.to_lowercase().replace('_', "-"));
    let short = flag.replace("--ledger-bench-", "--");
    args.iter()
        .position(|a| *a == flag || *a == short)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(name).ok())
        .unwrap_or_else(|| default.to_owned())
}

fn config() -> Config {
    let args: Vec<String> = std::env::args().collect();
    let quick = std::env::var("LEDGER_BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty())
        || args.iter().any(|a| a == "--quick")
        || !args.iter().any(|a| a == "--bench");
    let num = |name: &str, full: usize, small: usize| -> usize {
        let d = if quick { small } else { full };
        knob(&args, name, &d.to_string())
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number"))
    };
    let list = |name: &str, default: &str| -> Vec<String> {
        knob(&args, name, default)
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let payers = num("LEDGER_BENCH_PAYERS", 10_000, 500);
    let shapes = list("LEDGER_BENCH_SHAPES", "spread,hot")
        .iter()
        .map(|s| match s.as_str() {
            "spread" => ("spread", if quick { 10 } else { 100 }),
            "hot" => ("hot", 1),
            other => panic!("unknown shape {other} (spread, hot)"),
        })
        .collect();
    let modes = list("LEDGER_BENCH_MODES", "group,single")
        .iter()
        .map(|s| match s.as_str() {
            "group" => Mode::Group,
            "single" => Mode::Single,
            other => panic!("unknown mode {other} (group, single)"),
        })
        .collect();
    Config {
        clients: num("LEDGER_BENCH_CLIENTS", 64, 16).max(1),
        settlements: num("LEDGER_BENCH_SETTLEMENTS", 20_000, 1_000),
        payers: payers.max(1),
        backends: list("LEDGER_BENCH_BACKENDS", "sqlite,postgres"),
        modes,
        shapes,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap()
}

fn account(owner: Owner) -> AccountKey {
    AccountKey {
        owner,
        currency: CURRENCY.to_owned(),
    }
}

fn payer(i: usize) -> Owner {
    Owner::Did(format!("did:plc:payer{i:05}"))
}

fn provider(i: usize) -> Owner {
    Owner::Did(format!("did:plc:provider{i:03}"))
}

/// Settlement `k`'s payer and provider. Consecutive settlements go to different payers, so
/// the concurrent clients spread over the payers (each pays SETTLEMENTS / PAYERS times).
fn parties(k: usize, payers: usize, providers: usize) -> (usize, usize) {
    (k % payers, k % providers)
}

/// A database for one run, removed afterwards.
enum Db {
    Sqlite(std::path::PathBuf),
    Postgres { admin: String, name: String },
}

impl Db {
    async fn create(backend: &str, tag: &str) -> (Db, String) {
        let name = format!("gh_ledger_bench_{}_{tag}", std::process::id());
        match backend {
            "sqlite" => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                let location = path.to_string_lossy().into_owned();
                (Db::Sqlite(path), location)
            }
            "postgres" => {
                let admin = std::env::var("GUILDHALL_TEST_PG")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let base = admin.rsplit_once('/').unwrap().0.to_owned();
                let location = format!("{base}/{name}");
                (Db::Postgres { admin, name }, location)
            }
            other => panic!("unknown backend {other} (sqlite, postgres)"),
        }
    }

    async fn remove(self) {
        match self {
            Db::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Db::Postgres { admin, name } => {
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
            }
        }
    }
}

/// The two ledger steps of a settlement, by either path.
#[derive(Clone)]
enum Path {
    Group(LedgerHandle),
    Single(Store),
}

/// Why a settlement did not complete (the audit reports these).
type Failure = String;

impl Path {
    async fn hold(
        &self,
        id: &str,
        from: Owner,
        to: Owner,
        timeout: i64,
    ) -> Result<Transfer, Failure> {
        match self {
            Path::Group(h) => h
                .hold(TransferId(id.to_owned()), from, to, CURRENCY, HOLD, timeout)
                .await
                .map_err(|e| format!("hold {id}: {e:?}")),
            Path::Single(store) => {
                let req = Request {
                    id: TransferId(id.to_owned()),
                    debit: account(from),
                    credit: account(to),
                    amount: HOLD,
                    kind: Kind::Hold {
                        timeout_ms: timeout,
                    },
                    memo: None,
                };
                let mut ts = single(store, LedgerOp::Chain(vec![req]), id).await?;
                ts.pop().ok_or_else(|| format!("hold {id}: no transfer"))
            }
        }
    }

    async fn capture(&self, id: &str, fee_id: &str, hold: &Transfer) -> Result<(), Failure> {
        let ts = match self {
            Path::Group(h) => h
                .capture(
                    TransferId(id.to_owned()),
                    hold,
                    CAPTURE,
                    Some((TransferId(fee_id.to_owned()), FEE)),
                )
                .await
                .map_err(|e| format!("capture {id}: {e:?}"))?,
            Path::Single(store) => {
                // The chain LedgerHandle::capture builds, committed on its own.
                let chain = vec![
                    Request {
                        id: TransferId(id.to_owned()),
                        debit: hold.debit.clone(),
                        credit: hold.credit.clone(),
                        amount: CAPTURE,
                        kind: Kind::Capture {
                            hold: hold.request.id.clone(),
                        },
                        memo: None,
                    },
                    Request {
                        id: TransferId(fee_id.to_owned()),
                        debit: hold.credit.clone(),
                        credit: account(Owner::Fees),
                        amount: FEE,
                        kind: Kind::Post,
                        memo: None,
                    },
                ];
                single(store, LedgerOp::Chain(chain), id).await?
            }
        };
        if ts.len() == 2 {
            Ok(())
        } else {
            Err(format!("capture {id}: {} transfers, not 2", ts.len()))
        }
    }
}

/// One op in one transaction. Transient database failures (lock timeouts, serialization) are
/// retried as LedgerHandle retries them, so the baseline is not penalised for lacking that.
async fn single(store: &Store, op: LedgerOp, id: &str) -> Result<Vec<Transfer>, Failure> {
    let ops = [op];
    let mut attempt = 0u32;
    loop {
        match store.ledger_commit(&ops, now_ms()).await {
            Ok(mut outcomes) => {
                return match outcomes.pop() {
                    Some(Ok(ts)) => Ok(ts),
                    Some(Err(e)) => Err(format!("{id}: refused: {e:?}")),
                    None => Err(format!("{id}: no outcome")),
                };
            }
            Err(e) if attempt < 5 && (e.is_transient() || e.is_unique_violation()) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
            }
            Err(e) => return Err(format!("{id}: {e} ({:?})", std::error::Error::source(&e))),
        }
    }
}

struct Outcome {
    backend: String,
    shape: &'static str,
    mode: Mode,
    providers: usize,
    wall: Duration,
    done: usize,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    /// Transactions committed by the batcher and ops in them (group mode only).
    batches: u64,
    ops: u64,
    mismatches: Vec<String>,
}

impl Outcome {
    fn per_sec(&self) -> f64 {
        self.done as f64 / self.wall.as_secs_f64()
    }
}

async fn run(
    cfg: &Config,
    backend: &str,
    shape: &'static str,
    providers: usize,
    mode: Mode,
) -> Outcome {
    let tag = format!("{shape}_{}", mode.name());
    let (db, location) = Db::create(backend, &tag).await;
    let store = Store::open(&location).await.unwrap();
    // Funding goes through the batcher in both modes: it is setup, not what is measured.
    let funder = LedgerHandle::start(store.clone(), LedgerConfig::default());
    let mut grants = tokio::task::JoinSet::new();
    for c in 0..cfg.clients {
        let h = funder.clone();
        let (clients, payers) = (cfg.clients, cfg.payers);
        grants.spawn(async move {
            for i in (c..payers).step_by(clients) {
                h.grant(
                    TransferId(format!("grant-{i}")),
                    payer(i),
                    CURRENCY,
                    GRANT,
                    None,
                )
                .await
                .unwrap();
            }
        });
    }
    grants.join_all().await;
    drop(funder);

    let path = match mode {
        Mode::Group => Path::Group(LedgerHandle::start(store.clone(), LedgerConfig::default())),
        Mode::Single => Path::Single(store.clone()),
    };
    // Long enough that the sweeper never releases a hold mid-run.
    let timeout = now_ms() + 3_600_000;
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..cfg.clients {
        let (path, next) = (path.clone(), next.clone());
        let (total, payers) = (cfg.settlements, cfg.payers);
        tasks.spawn(async move {
            let mut lat: Vec<u64> = Vec::new();
            let mut failed: Vec<Failure> = Vec::new();
            // Settlement numbers come from a shared counter, so a slow client does not leave
            // the run waiting on its fixed share.
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= total {
                    break;
                }
                let (p, q) = parties(k, payers, providers);
                let t0 = Instant::now();
                let settled = async {
                    let hold = path
                        .hold(&format!("h{k}"), payer(p), provider(q), timeout)
                        .await?;
                    path.capture(&format!("c{k}"), &format!("f{k}"), &hold)
                        .await
                }
                .await;
                match settled {
                    Ok(()) => lat.push(t0.elapsed().as_micros() as u64),
                    Err(e) => failed.push(e),
                }
            }
            (lat, failed)
        });
    }
    let mut lat = Vec::with_capacity(cfg.settlements);
    let mut failed = Vec::new();
    for (l, f) in tasks.join_all().await {
        lat.extend(l);
        failed.extend(f);
    }
    let wall = start.elapsed();
    let (batches, ops) = match &path {
        Path::Group(h) => (
            h.stats().batches.load(Ordering::Relaxed),
            h.stats().ops.load(Ordering::Relaxed),
        ),
        Path::Single(_) => (0, 0),
    };
    drop(path);
    lat.sort_unstable();
    let pct = |p: f64| -> u64 {
        if lat.is_empty() {
            0
        } else {
            lat[((lat.len() - 1) as f64 * p).round() as usize]
        }
    };
    let mut mismatches: Vec<String> = failed.iter().take(20).cloned().collect();
    if !failed.is_empty() {
        mismatches.push(format!("{} settlements failed", failed.len()));
    }
    mismatches.extend(audit(&store, cfg, providers).await);
    store.close().await;
    db.remove().await;
    Outcome {
        backend: backend.to_owned(),
        shape,
        mode,
        providers,
        wall,
        done: lat.len(),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        max_us: lat.last().copied().unwrap_or(0),
        batches,
        ops,
        mismatches,
    }
}

/// Reads every account and transfer back and compares them with what the workload must have
/// produced if every settlement happened exactly once.
async fn audit(store: &Store, cfg: &Config, providers: usize) -> Vec<String> {
    let mut bad = Vec::new();
    let n = cfg.settlements as i64;
    let accounts: BTreeMap<AccountKey, Balance> =
        store.ledger_accounts().await.unwrap().into_iter().collect();

    // Conservation: per currency, Σ debits = Σ credits, pending and posted (in i128, so a sum
    // cannot wrap).
    let mut sums: BTreeMap<&str, [i128; 4]> = BTreeMap::new();
    for (k, b) in &accounts {
        let s = sums.entry(k.currency.as_str()).or_default();
        s[0] += i128::from(b.debits_pending);
        s[1] += i128::from(b.debits_posted);
        s[2] += i128::from(b.credits_pending);
        s[3] += i128::from(b.credits_posted);
    }
    for (c, s) in &sums {
        if s[0] != s[2] || s[1] != s[3] {
            bad.push(format!(
                "{c}: debits pending/posted {}/{} != credits {}/{}",
                s[0], s[1], s[2], s[3]
            ));
        }
    }

    // The model: settlement k moves CAPTURE from payer k % P to provider k % Q, then FEE from
    // that provider to the fee account; nothing stays pending.
    let mut expect: BTreeMap<AccountKey, Balance> = BTreeMap::new();
    let total_grants = GRANT * cfg.payers as i64;
    expect.insert(
        account(Owner::Issuance),
        Balance {
            debits_posted: total_grants,
            ..Balance::default()
        },
    );
    for i in 0..cfg.payers {
        expect.insert(
            account(payer(i)),
            Balance {
                credits_posted: GRANT,
                ..Balance::default()
            },
        );
    }
    for k in 0..cfg.settlements {
        let (p, q) = parties(k, cfg.payers, providers);
        expect.get_mut(&account(payer(p))).unwrap().debits_posted += CAPTURE;
        let prov = expect.entry(account(provider(q))).or_default();
        prov.credits_posted += CAPTURE;
        prov.debits_posted += FEE;
    }
    expect.insert(
        account(Owner::Fees),
        Balance {
            credits_posted: n * FEE,
            ..Balance::default()
        },
    );
    let mut wrong = 0usize;
    for (k, want) in &expect {
        let got = accounts.get(k).copied().unwrap_or_default();
        if got != *want {
            // Name a few; the count below says how many (one broken run can touch them all).
            if wrong < 10 {
                bad.push(format!("{k:?}: got {got:?}, model {want:?}"));
            }
            wrong += 1;
        }
    }
    if wrong > 0 {
        bad.push(format!("{wrong} accounts differ from the model"));
    }
    for k in accounts.keys().filter(|k| !expect.contains_key(*k)) {
        bad.push(format!("{k:?}: an account the model does not have"));
    }
    // Spelled out as the issue states it: each provider nets count × (capture − fee).
    for q in 0..providers {
        let count = (0..cfg.settlements).filter(|k| k % providers == q).count() as i64;
        let b = accounts
            .get(&account(provider(q)))
            .copied()
            .unwrap_or_default();
        if b.credits_posted - b.debits_posted != count * (CAPTURE - FEE) {
            bad.push(format!(
                "provider {q}: net {} != {count} × ({CAPTURE} − {FEE})",
                b.credits_posted - b.debits_posted
            ));
        }
    }

    // Transfers: each id once, one captured hold, one capture and one fee per settlement.
    let transfers = store.ledger_transfers().await.unwrap();
    let mut kinds: BTreeMap<&str, i64> = BTreeMap::new();
    let mut ids = std::collections::HashSet::with_capacity(transfers.len());
    let mut uncaptured = 0usize;
    for t in &transfers {
        if !ids.insert(&t.request.id) {
            bad.push(format!("transfer {} recorded twice", t.request.id));
        }
        let kind = match &t.request.kind {
            Kind::Post if t.credit.owner == Owner::Fees => "fee",
            Kind::Post => "grant",
            Kind::Hold { .. } => {
                if t.hold != Some(HoldState::Captured) {
                    // Name a few; the count below says how many.
                    if uncaptured < 10 {
                        bad.push(format!(
                            "hold {} is {:?}, not captured",
                            t.request.id, t.hold
                        ));
                    }
                    uncaptured += 1;
                }
                "hold"
            }
            Kind::Capture { .. } => "capture",
            Kind::Void { .. } => "void",
            Kind::Refund { .. } => "refund",
        };
        *kinds.entry(kind).or_default() += 1;
    }
    if uncaptured > 0 {
        bad.push(format!("{uncaptured} holds not captured"));
    }
    let want_kinds: BTreeMap<&str, i64> = [
        ("capture", n),
        ("fee", n),
        ("grant", cfg.payers as i64),
        ("hold", n),
    ]
    .into_iter()
    .collect();
    if kinds != want_kinds {
        bad.push(format!("transfers by kind {kinds:?}, model {want_kinds:?}"));
    }
    bad
}

fn main() {
    let cfg = config();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "ledger bench: {} settlements per run (hold {HOLD}, capture {CAPTURE}, fee {FEE}), \
         {} clients, {} payers; group = LedgerHandle (group commit), single = one \
         Store::ledger_commit per hold and per capture+fee",
        cfg.settlements, cfg.clients, cfg.payers
    );
    let results: Vec<Outcome> = rt.block_on(async {
        let mut out = Vec::new();
        for backend in &cfg.backends {
            for &(shape, providers) in &cfg.shapes {
                for &mode in &cfg.modes {
                    let o = run(&cfg, backend, shape, providers, mode).await;
                    println!(
                        "  done {backend} {shape} {}: {:.0}/s{}",
                        mode.name(),
                        o.per_sec(),
                        if o.mismatches.is_empty() {
                            ""
                        } else {
                            " — MISMATCHES"
                        }
                    );
                    out.push(o);
                }
            }
        }
        out
    });

    println!();
    println!(
        "{:<9} {:<7} {:>9} {:<7} {:>8} {:>8} {:>13} {:>9} {:>9} {:>9} {:>9}  audit",
        "backend",
        "shape",
        "providers",
        "mode",
        "settled",
        "wall s",
        "settled/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "ops/batch"
    );
    for o in &results {
        let per_batch = if o.batches == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}", o.ops as f64 / o.batches as f64)
        };
        println!(
            "{:<9} {:<7} {:>9} {:<7} {:>8} {:>8.2} {:>13.0} {:>9.2} {:>9.2} {:>9.2} {:>9}  {}",
            o.backend,
            o.shape,
            o.providers,
            o.mode.name(),
            o.done,
            o.wall.as_secs_f64(),
            o.per_sec(),
            o.p50_us as f64 / 1000.0,
            o.p99_us as f64 / 1000.0,
            o.max_us as f64 / 1000.0,
            per_batch,
            if o.mismatches.is_empty() {
                "ok"
            } else {
                "FAILED"
            }
        );
    }
    let runs: Vec<String> = results
        .iter()
        .map(|o| {
            format!(
                "{{\"backend\":\"{}\",\"shape\":\"{}\",\"providers\":{},\"mode\":\"{}\",\
                 \"settled\":{},\"wall_s\":{:.3},\"settled_per_s\":{:.1},\"p50_ms\":{:.3},\
                 \"p99_ms\":{:.3},\"max_ms\":{:.3},\"batches\":{},\"ops\":{},\"audit_ok\":{}}}",
                o.backend,
                o.shape,
                o.providers,
                o.mode.name(),
                o.done,
                o.wall.as_secs_f64(),
                o.per_sec(),
                o.p50_us as f64 / 1000.0,
                o.p99_us as f64 / 1000.0,
                o.max_us as f64 / 1000.0,
                o.batches,
                o.ops,
                o.mismatches.is_empty()
            )
        })
        .collect();
    println!(
        "{{\"bench\":\"ledger\",\"settlements\":{},\"clients\":{},\"payers\":{},\"hold\":{HOLD},\
         \"capture\":{CAPTURE},\"fee\":{FEE},\"runs\":[{}]}}",
        cfg.settlements,
        cfg.clients,
        cfg.payers,
        runs.join(",")
    );

    let mut failed = false;
    for o in &results {
        for m in &o.mismatches {
            failed = true;
            eprintln!("MISMATCH {} {} {}: {m}", o.backend, o.shape, o.mode.name());
        }
    }
    if failed {
        std::process::exit(1);
    }
}
