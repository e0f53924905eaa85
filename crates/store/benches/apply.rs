//! Write-path throughput on both backends: `cargo bench -p guildhall-store --bench apply`.
//!
//! Loads N upserts (half services with capabilities/regions/prices/tags, half endorsements)
//! in batches of 500 with a cursor each, then replays them as updates, then times a few
//! discovery queries. Without `--bench` (i.e. under `cargo test`) it runs a small smoke size.
//! PostgreSQL: `GUILDHALL_TEST_PG` (default postgres://postgres@127.0.0.1:5432/test); a fresh
//! database is created and dropped. Set `GUILDHALL_BENCH_N` to change N.

#![allow(clippy::print_stdout, clippy::unwrap_used)] // a bench reports on stdout and may abort

use std::time::{Duration, Instant};

use guildhall_store::*;
use sqlx::Connection;

const BATCH: usize = 500;

fn changes(n: usize, generation: u32) -> Vec<Change> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let did = format!("did:plc:bench{:04}", i % 1000);
        if i % 2 == 0 {
            let rkey = format!("svc{i}");
            let uri = format!("at://{did}/dev.guildhall.service/{rkey}");
            let cid = format!("bafyservice{i}g{generation}");
            let row = ServiceRow {
                uri: uri.clone(),
                did: did.clone(),
                rkey: rkey.clone(),
                cid: cid.clone(),
                name: format!("Bench service {i}"),
                description: Some(format!("Sends messages quickly, variant {}", i % 97)),
                version: Some("1.0.0".into()),
                created_at: "2026-01-01T00:00:00Z".into(),
                latency_p95_ms: Some((i % 1000) as i64),
                availability_bp: Some(9_000 + (i % 1000) as i64),
                success_rate_bp: Some(9_900),
                record_json: format!(
                    "{{\"name\":\"Bench service {i}\",\"capabilities\":[\"sms.send\"]}}"
                ),
                capabilities: vec!["sms.send".into(), format!("cap.c{}", i % 50)],
                regions: vec!["DE".into(), ["US", "FR", "JP"][i % 3].into()],
                prices: vec![PriceRow {
                    model: "per_call".into(),
                    currency: Some("USD".into()),
                    amount: Some(format!("0.{:04}", i % 10_000)),
                    unit: Some("call".into()),
                    period: None,
                }],
                tags: vec!["bench".into(), format!("t{}", i % 20)],
            };
            let record = RecordRow {
                uri,
                did,
                collection: "dev.guildhall.service".into(),
                rkey,
                cid,
                bytes: vec![0xa1; 600],
            };
            out.push(Change::UpsertRecord(record, Some(IndexRow::Service(row))));
        } else {
            let rkey = format!("3kbench{i:09}");
            let uri = format!("at://{did}/dev.guildhall.endorsement/{rkey}");
            let cid = format!("bafyendorse{i}g{generation}");
            let row = EndorsementRow {
                uri: uri.clone(),
                author: did.clone(),
                rkey: rkey.clone(),
                cid: cid.clone(),
                subject: format!("did:plc:bench{:04}", (i * 7 + 1) % 1000),
                service_uri: None,
                service_cid: None,
                strength: Some((i % 100) as i64 + 1),
                comment: Some("reliable".into()),
                created_at: "2026-02-01T00:00:00Z".into(),
                expires_at: None,
                capabilities: vec!["sms.send".into()],
            };
            let record = RecordRow {
                uri,
                did,
                collection: "dev.guildhall.endorsement".into(),
                rkey,
                cid,
                bytes: vec![0xa2; 200],
            };
            out.push(Change::UpsertRecord(
                record,
                Some(IndexRow::Endorsement(row)),
            ));
        }
    }
    out
}

/// CPU seconds this process has used (user + system), from /proc; 0 where unavailable.
/// The machine is shared, so wall time alone overstates the cost; for SQLite all the work is
/// in this process, for PostgreSQL the server's share is not counted.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

async fn load(store: &Store, all: Vec<Change>, seq0: i64) -> (Duration, f64) {
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut seq = seq0;
    let mut it = all.into_iter().peekable();
    while it.peek().is_some() {
        let changes: Vec<Change> = it.by_ref().take(BATCH).collect();
        seq += 1;
        store
            .apply(&Batch {
                cursors: vec![("bench".into(), seq)],
                changes,
            })
            .await
            .unwrap();
    }
    (start.elapsed(), cpu_seconds() - cpu0)
}

async fn bench(name: &str, location: &str, n: usize) {
    let store = Store::open(location).await.unwrap();
    let insert = load(&store, changes(n, 0), 0).await;
    let update = load(&store, changes(n, 1), 1_000_000).await;
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.services + stats.endorsements, n as i64);
    // Child rows per upsert on average: services add 2 caps + 2 regions + 1 price + 2 tags,
    // endorsements 1 scope row; plus the raw record and the index row.
    let rows = n as f64 * (2.0 + (7.0 + 1.0) / 2.0);
    for (phase, (wall, cpu)) in [("insert", insert), ("update", update)] {
        println!(
            "{name:8} {phase} {n} upserts: wall {:>6.2}s = {:>7.0} upserts/s ({:>7.0} rows/s); \
             client CPU {cpu:>6.2}s = {:>7.0} upserts/CPU-s",
            wall.as_secs_f64(),
            n as f64 / wall.as_secs_f64(),
            rows / wall.as_secs_f64(),
            n as f64 / cpu.max(0.01),
        );
    }
    let queries = [
        ServiceQuery {
            capabilities: vec!["cap.c7".into()],
            ..Default::default()
        },
        ServiceQuery {
            capabilities: vec!["sms.send".into()],
            region: Some("JP".into()),
            max_price_nanos: Some(100_000_000),
            currency: Some("USD".into()),
            max_latency_ms: Some(500),
            ..Default::default()
        },
        ServiceQuery {
            q: Some("variant 42".into()),
            ..Default::default()
        },
    ];
    for q in &queries {
        let start = Instant::now();
        let mut found = 0;
        for _ in 0..20 {
            found = store
                .search_candidates(q, DEFAULT_CANDIDATE_CAP, DEFAULT_CANDIDATES_PER_OPERATOR)
                .await
                .unwrap()
                .candidates
                .len();
        }
        println!(
            "{name:8} candidates {found:>5} in {:>7.2} ms/query for {q:?}",
            start.elapsed().as_secs_f64() * 1000.0 / 20.0
        );
    }
    let start = Instant::now();
    let all = store.all_endorsements().await.unwrap();
    println!(
        "{name:8} all_endorsements {} in {:.0} ms",
        all.len(),
        start.elapsed().as_secs_f64() * 1000.0
    );
    store.close().await;
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("GUILDHALL_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 100_000 } else { 2_000 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let path = std::env::temp_dir().join(format!("gh_store_bench_{}.db", std::process::id()));
        bench("sqlite", &path.to_string_lossy(), n).await;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }

        let admin = std::env::var("GUILDHALL_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let name = format!("gh_store_bench_{}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').unwrap().0;
        bench("postgres", &format!("{base}/{name}"), n).await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    });
}
