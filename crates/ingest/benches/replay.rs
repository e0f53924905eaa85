//! Replay benchmark: a recorded firehose through the whole ingestion pipeline (`run_frames`:
//! routing, DID resolution, sync 1.1 verification, lexicon validation, batched writes with the
//! cursor) into SQLite and into PostgreSQL, next to Bluesky's reference TypeScript consumer
//! (`tests/peer/bench-verify.mjs`, `@atproto/sync`) on the same file.
//!
//! ```text
//! cargo bench -p guildhall-ingest --bench replay
//! ```
//! Environment:
//! - `GUILDHALL_REPLAY_FRAMES`: a frames file (`<u32 BE len><frame>`…). Unset: a fresh
//!   recording is made once with `cargo run -p guildhall-testkit --example record_stream`
//!   (`GUILDHALL_REPLAY_OPS` operations, default 10000; needs `tests/peer/install.sh`) and kept
//!   in the temp directory for later runs.
//! - `GUILDHALL_REPLAY_KEYS`: DID → did:key map, either `{did: "did:key:…"}` or a peer-info
//!   file with `accounts[].signingKey`. Default: `<frames>.keys.json`.
//! - `GUILDHALL_TEST_PG`: PostgreSQL server (a database is made and dropped); unreachable
//!   means SQLite only.
//! - `GUILDHALL_REPLAY_REFERENCE`: reference modes to run, comma-separated (`direct`,
//!   `firehose`, `none`); default `direct,firehose`.
//!
//! The recording's DIDs are resolved through a loopback PLC built from the key map: the PLC
//! that served them when they were recorded is gone. Repos are first seen at commits whose
//! `prevData` is the empty tree, so no `getRepo` is needed (and none is served).

#[path = "../tests/it/net.rs"]
mod net;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use guildhall_ingest::firehose::RawFrame;
use guildhall_ingest::identity::{Resolver, ResolverConfig};
use guildhall_ingest::indexer::{self, Context, IndexerConfig};
use guildhall_ingest::metrics::Metrics;
use guildhall_ingest::plan::PREFIX;
use guildhall_ingest::repo::RepoFetcher;
use guildhall_proto::crypto::PublicKey;
use guildhall_proto::frame;
use guildhall_store::Store;
use sqlx::Connection;
use tokio::sync::{broadcast, mpsc};

/// CPU seconds (user + system) this process has used so far, from `/proc/self/stat`; NaN
/// elsewhere. On a shared, loaded machine wall time mostly measures the neighbours; CPU time
/// measures us (the PostgreSQL server's own CPU is not included).
fn cpu_seconds() -> f64 {
    proc_stat_seconds(11, 12)
}

/// CPU seconds used by waited-for child processes (the reference verifier).
fn children_cpu_seconds() -> f64 {
    proc_stat_seconds(13, 14)
}

fn proc_stat_seconds(user: usize, system: usize) -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name: utime, stime, cutime, cstime are the
    // 12th to 15th.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(user), ticks(system)) {
        // The kernel reports in USER_HZ, 100 on Linux.
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Splits a frames file into its messages.
fn parse_frames(bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            bail!("truncated length prefix");
        };
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            bail!("frame claims {len} bytes, {} left", tail.len());
        }
        let (f, next) = tail.split_at(len);
        out.push(f.to_vec());
        rest = next;
    }
    Ok(out)
}

/// The recording to replay: the given file, or a fresh one made once.
fn recording() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("GUILDHALL_REPLAY_FRAMES") {
        return Ok(PathBuf::from(p));
    }
    let ops: usize = std::env::var("GUILDHALL_REPLAY_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let out = std::env::temp_dir().join(format!("guildhall-replay-{ops}.frames"));
    let keys = keys_path(&out);
    if out.exists() && keys.exists() {
        return Ok(out);
    }
    eprintln!(
        "recording {ops} operations into {} (a fresh peer)…",
        out.display()
    );
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .current_dir(workspace_root())
        .args([
            "run",
            "--release",
            "-p",
            "guildhall-testkit",
            "--example",
            "record_stream",
            "--",
        ])
        .arg(&out)
        .args([ops.to_string(), "4".to_owned(), "8".to_owned()])
        .status()
        .context("running record_stream")?;
    if !status.success() {
        bail!("record_stream failed ({status}); is tests/peer installed (tests/peer/install.sh)?");
    }
    Ok(out)
}

fn keys_path(frames: &Path) -> PathBuf {
    if let Ok(k) = std::env::var("GUILDHALL_REPLAY_KEYS") {
        return PathBuf::from(k);
    }
    let mut p = frames.as_os_str().to_owned();
    p.push(".keys.json");
    PathBuf::from(p)
}

/// DID → (did:key, handle) from a key map or a peer-info file.
fn read_keys(path: &Path) -> Result<BTreeMap<String, (String, Option<String>)>> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_slice(&text)?;
    let mut out = BTreeMap::new();
    if let Some(accounts) = json.get("accounts").and_then(|a| a.as_array()) {
        for a in accounts {
            let (Some(did), Some(key)) = (
                a.get("did").and_then(|v| v.as_str()),
                a.get("signingKey").and_then(|v| v.as_str()),
            ) else {
                continue;
            };
            let handle = a.get("handle").and_then(|v| v.as_str()).map(str::to_owned);
            out.insert(did.to_owned(), (key.to_owned(), handle));
        }
    } else if let Some(map) = json.as_object() {
        for (did, key) in map {
            if let Some(key) = key.as_str() {
                out.insert(did.clone(), (key.to_owned(), None));
            }
        }
    }
    if out.is_empty() {
        bail!("{}: no DID keys found", path.display());
    }
    Ok(out)
}

/// What one replay measured.
struct Run {
    backend: &'static str,
    seconds: f64,
    cpu: f64,
    frames: usize,
    commits: usize,
    verified: u64,
    records: u64,
    rows: i64,
    failures: BTreeMap<String, u64>,
    resyncs: u64,
}

/// What the recording holds.
struct Shape {
    frames: usize,
    commits: usize,
    ours: usize,
}

fn shape(frames: &[Vec<u8>]) -> Shape {
    let mut commits = 0;
    let mut ours = 0;
    for f in frames {
        if let Ok(r) = frame::route(f)
            && r.kind == "#commit"
        {
            commits += 1;
            if r.touches(PREFIX) {
                ours += 1;
            }
        }
    }
    Shape {
        frames: frames.len(),
        commits,
        ours,
    }
}

async fn replay(
    backend: &'static str,
    location: &str,
    net: &net::Net,
    frames: &[Vec<u8>],
    shape: &Shape,
) -> Result<Run> {
    let store = Store::open(location).await?;
    let base = url::Url::parse(&net.http)?;
    let metrics = Arc::new(Metrics::default());
    let resolver = Arc::new(Resolver::new(ResolverConfig {
        plc: base.clone(),
        handle_resolver: Some(base),
        dns: None,
        capacity: 100_000,
        timeout: Duration::from_secs(10),
        policy: guildhall_ingest::net::FetchPolicy {
            allow_private: true,
        },
    })?);
    let fetcher = RepoFetcher::new(resolver.clone(), metrics.clone(), 256 << 20);
    let (committed, _) = broadcast::channel(16);
    let ctx = Arc::new(Context {
        store: store.clone(),
        resolver,
        metrics: metrics.clone(),
        fetcher,
        committed,
    });
    let config = IndexerConfig::default();
    let (tx, rx) = mpsc::channel(config.queue);
    // The frames are copied up front so the clock measures the pipeline, not the copies.
    let owned: Vec<Vec<u8>> = frames.to_vec();
    let t0 = Instant::now();
    let c0 = cpu_seconds();
    let feeder = tokio::spawn(async move {
        for bytes in owned {
            if tx.send(RawFrame { source: 0, bytes }).await.is_err() {
                break;
            }
        }
    });
    indexer::run_frames(ctx, config, vec!["replay".to_owned()], rx).await?;
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - c0;
    feeder.await?;
    let rows = store.stats().await?.records;
    store.close().await;
    Ok(Run {
        backend,
        seconds,
        cpu,
        frames: shape.frames,
        commits: shape.commits,
        verified: metrics.commits_verified.load(Ordering::Relaxed),
        records: metrics.records_indexed.load(Ordering::Relaxed),
        rows,
        failures: metrics.verify_failures(),
        resyncs: metrics.resyncs.load(Ordering::Relaxed),
    })
}

/// Our verification alone, on one core: decode every `#commit` and verify it against the state
/// the previous one left (signature, continuity, MST inversion) — what `@atproto/sync`'s
/// direct mode measures on its side. Returns (seconds, CPU seconds, commits verified,
/// failures).
fn verify_only(frames: &[Vec<u8>], keys: &BTreeMap<String, PublicKey>) -> (f64, f64, u64, u64) {
    use guildhall_proto::verify::{self, RepoState};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let mut states: BTreeMap<String, RepoState> = BTreeMap::new();
    let (mut ok, mut failed) = (0, 0);
    let t0 = Instant::now();
    let c0 = cpu_seconds();
    for f in frames {
        let Ok(frame::Frame::Commit(ev)) = frame::decode_frame(f) else {
            continue;
        };
        let Some(key) = keys.get(ev.repo.as_str()) else {
            failed += 1;
            continue;
        };
        match verify::verify_commit(&ev, key, states.get(ev.repo.as_str()), now) {
            Ok(vc) => {
                ok += 1;
                states.insert(ev.repo.to_string(), vc.state);
            }
            Err(_) => failed += 1,
        }
    }
    (t0.elapsed().as_secs_f64(), cpu_seconds() - c0, ok, failed)
}

fn admin_url() -> String {
    std::env::var("GUILDHALL_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

async fn pg_exec(sql: String) -> Result<()> {
    let mut conn = sqlx::PgConnection::connect(&admin_url()).await?;
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// The reference verifier on the same file; its JSON report.
fn reference(frames: &Path, keys: &Path, mode: &str) -> Result<serde_json::Value> {
    let peer = workspace_root().join("tests/peer");
    let node = peer.join("node_modules/.bin/node");
    if !node.exists() {
        bail!("tests/peer is not installed (tests/peer/install.sh)");
    }
    let c0 = children_cpu_seconds();
    let out = Command::new(node)
        .current_dir(&peer)
        .arg("bench-verify.mjs")
        .arg("--frames")
        .arg(frames)
        .arg("--keys")
        .arg(keys)
        .args(["--mode", mode])
        .output()
        .context("running bench-verify.mjs")?;
    let cpu = children_cpu_seconds() - c0;
    let mut report: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "bench-verify.mjs ({}) printed no report: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    report["cpuSeconds"] = serde_json::json!(cpu);
    Ok(report)
}

fn main() -> Result<()> {
    let frames_path = recording()?;
    let keys_file = keys_path(&frames_path);
    let keys = read_keys(&keys_file)?;
    let bytes = std::fs::read(&frames_path)
        .with_context(|| format!("reading {}", frames_path.display()))?;
    let frames = parse_frames(&bytes)?;
    let shape = shape(&frames);
    let parsed_keys: BTreeMap<String, PublicKey> = keys
        .iter()
        .filter_map(|(did, (k, _))| Some((did.clone(), PublicKey::from_did_key(k).ok()?)))
        .collect();
    let (verify_seconds, verify_cpu, verify_ok, verify_failed) = verify_only(&frames, &parsed_keys);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    let runs = rt.block_on(async {
        let net = net::Net::start().await?;
        for (i, (did, (key, handle))) in keys.iter().enumerate() {
            let key =
                PublicKey::from_did_key(key).map_err(|e| anyhow::anyhow!("key of {did}: {e}"))?;
            let handle = handle.clone().unwrap_or_else(|| format!("account{i}.test"));
            net.add_account(did, &handle, &key);
        }
        let mut runs = Vec::new();
        let path = std::env::temp_dir().join(format!("gh_replay_{}.db", std::process::id()));
        let location = path.to_string_lossy().into_owned();
        let sqlite = replay("sqlite", &location, &net, &frames, &shape).await;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
        runs.push(sqlite?);

        let name = format!("gh_replay_{}", std::process::id());
        match pg_exec(format!("CREATE DATABASE {name}")).await {
            Ok(()) => {
                let admin = admin_url();
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
                let pg = replay("postgres", &format!("{base}/{name}"), &net, &frames, &shape).await;
                let _ = pg_exec(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                runs.push(pg?);
            }
            Err(e) => eprintln!("PostgreSQL unavailable ({e}); SQLite only"),
        }
        anyhow::Ok(runs)
    })?;

    let modes = std::env::var("GUILDHALL_REPLAY_REFERENCE")
        .unwrap_or_else(|_| "direct,firehose".to_owned());
    let mut refs = Vec::new();
    for mode in modes
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty() && *m != "none")
    {
        match reference(&frames_path, &keys_file, mode) {
            Ok(report) => refs.push((mode.to_owned(), report)),
            Err(e) => eprintln!("reference {mode}: {e:#}"),
        }
    }

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\nreplay of {} ({} frames, {} #commit, {} touching {PREFIX}*, {} DIDs)\n",
        frames_path.display(),
        shape.frames,
        shape.commits,
        shape.ours,
        keys.len()
    )?;
    writeln!(
        out,
        "| consumer | wall s | CPU s | events/s | commits/s | records/s | commits per CPU s | verified commits | records indexed | rows | verify failures | resyncs |"
    )?;
    writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
    )?;
    for r in &runs {
        writeln!(
            out,
            "| guildhall run_frames → {} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {:?} | {} |",
            r.backend,
            r.seconds,
            r.cpu,
            r.frames as f64 / r.seconds,
            r.commits as f64 / r.seconds,
            r.records as f64 / r.seconds,
            r.commits as f64 / r.cpu,
            r.verified,
            r.records,
            r.rows,
            r.failures,
            r.resyncs
        )?;
    }
    writeln!(
        out,
        "| guildhall verify only (decode + verify_commit, one core, no store) | {:.2} | {:.2} | — | {:.0} | — | {:.0} | {} | — | — | {} | — |",
        verify_seconds,
        verify_cpu,
        shape.commits as f64 / verify_seconds,
        shape.commits as f64 / verify_cpu,
        verify_ok,
        verify_failed
    )?;
    for (mode, j) in &refs {
        let seconds = j["seconds"].as_f64().unwrap_or(f64::NAN);
        writeln!(
            out,
            "| {} {} (verify only, no store; CPU includes loading the file) | {:.2} | {:.2} | — | {:.0} | {:.0} ops | {:.0} | {} | — | — | {} | — |",
            j["verifier"].as_str().unwrap_or("@atproto/sync"),
            mode,
            seconds,
            j["cpuSeconds"].as_f64().unwrap_or(f64::NAN),
            j["commitsPerSecond"].as_f64().unwrap_or(f64::NAN),
            j["opsPerSecond"].as_f64().unwrap_or(f64::NAN),
            j["commits"].as_f64().unwrap_or(f64::NAN)
                / j["cpuSeconds"].as_f64().unwrap_or(f64::NAN),
            j["commits"],
            j["failures"]
        )?;
    }
    if !refs.is_empty() {
        writeln!(out)?;
        for (mode, j) in &refs {
            let their = j["seconds"].as_f64().unwrap_or(f64::NAN);
            writeln!(
                out,
                "commits/s ratio guildhall verify only / @atproto/sync {mode}: {:.1}×",
                their / verify_seconds
            )?;
        }
        for r in &runs {
            for (mode, j) in &refs {
                let their = j["seconds"].as_f64().unwrap_or(f64::NAN);
                writeln!(
                    out,
                    "commits/s ratio guildhall→{} / @atproto/sync {mode}: {:.1}×",
                    r.backend,
                    their / r.seconds
                )?;
            }
        }
    }
    for r in &runs {
        let ok = r.failures.is_empty() && r.resyncs == 0 && r.verified == shape.ours as u64;
        writeln!(
            out,
            "{}: {}",
            r.backend,
            if ok {
                "every commit touching our collections verified; no failure, no resync".to_owned()
            } else {
                format!(
                    "CHECK: {} of {} commits verified, failures {:?}, resyncs {}",
                    r.verified, shape.ours, r.failures, r.resyncs
                )
            }
        )?;
    }
    Ok(())
}
