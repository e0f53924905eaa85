//! A loopback AppView over the synthetic benchmark world, for HTTP load generators.
//!
//! Services go into a SQLite store (seeded once, reused on later runs); the trust graph is
//! built in memory from the synthetic endorsements (the store would take hours to hold 10M
//! of them on this machine). Then it serves on 127.0.0.1 only, with rate limiting off.
//!
//! `cargo run --release -p guildhall-appview --example bench_server -- --port 3901`, then
//! e.g. `wrk -t2 -c16 -d20s -s crates/appview/examples/search.lua http://127.0.0.1:3901`
//! (with a smaller `--nodes`, pass it to the script too: `... http://127.0.0.1:3901 -- 100000`).

#[path = "../benches/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;
use common::*;
use guildhall_appview::{AppConfig, AppState, TrustIndex, TrustIndexOptions, router};
use guildhall_ingest::metrics::Metrics;
use guildhall_store::{Batch, Change, IndexRow, PriceRow, RecordRow, ServiceRow, Store};
use guildhall_trust::{BuildOptions, TrustGraph};

#[derive(Parser)]
struct Args {
    /// Operators.
    #[arg(long, default_value_t = 1_000_000)]
    nodes: usize,
    /// Endorsements.
    #[arg(long, default_value_t = 10_000_000)]
    edges: usize,
    /// Services.
    #[arg(long, default_value_t = 100_000)]
    services: usize,
    /// Loopback port.
    #[arg(long, default_value_t = 3901)]
    port: u16,
    /// SQLite file holding the services.
    #[arg(long, default_value = "/tmp/gh_appview_bench.db")]
    db: String,
}

fn service_row(s: &Service) -> ServiceRow {
    let cap = capability(s.cap);
    ServiceRow {
        uri: s.uri.clone(),
        did: did(s.operator),
        rkey: s.rkey.clone(),
        cid: format!("bafyreis{}", s.rkey),
        name: format!("Service {}", s.rkey),
        description: Some(format!("Synthetic {cap} provider")),
        version: Some("1.0.0".to_owned()),
        created_at: "2026-01-01T00:00:00Z".to_owned(),
        latency_p95_ms: Some(200),
        availability_bp: Some(9_990),
        success_rate_bp: Some(9_950),
        record_json: format!(
            "{{\"$type\":\"dev.guildhall.service\",\"name\":\"Service {}\",\"capabilities\":[\"{cap}\"]}}",
            s.rkey
        ),
        capabilities: vec![cap],
        regions: vec!["US".to_owned()],
        prices: vec![PriceRow {
            model: "per_call".to_owned(),
            currency: Some("USD".to_owned()),
            amount: Some("0.01".to_owned()),
            unit: Some("call".to_owned()),
            period: None,
        }],
        tags: vec!["synthetic".to_owned()],
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let store = Store::open(&args.db).await.context("open store")?;
    let services = services(args.nodes, args.services);
    if store.stats().await?.services < services.len() as i64 {
        let t = Instant::now();
        for chunk in services.chunks(1000) {
            let changes = chunk
                .iter()
                .map(|s| {
                    let row = service_row(s);
                    Change::UpsertRecord(
                        RecordRow {
                            uri: row.uri.clone(),
                            did: row.did.clone(),
                            collection: "dev.guildhall.service".to_owned(),
                            rkey: row.rkey.clone(),
                            cid: row.cid.clone(),
                            bytes: Vec::new(),
                        },
                        Some(IndexRow::Service(row)),
                    )
                })
                .collect();
            store
                .apply(&Batch {
                    cursors: Vec::new(),
                    changes,
                })
                .await?;
        }
        tracing::info!(secs = t.elapsed().as_secs_f64(), "services seeded");
    }
    let t = Instant::now();
    let (n, m) = (args.nodes, args.edges);
    let graph = tokio::task::spawn_blocking(move || {
        TrustGraph::build(
            (0..m).map(|j| endorsement(n, j)),
            &BuildOptions {
                keep_cids: false,
                ..BuildOptions::default()
            },
        )
    })
    .await??;
    let (rss, _) = rss_mib();
    tracing::info!(
        secs = t.elapsed().as_secs_f64(),
        edges = graph.stats().base_edges,
        rss_mib = rss,
        "trust graph built"
    );
    let trust = TrustIndex::from_graph(graph, TrustIndexOptions::default());
    let state = AppState::new(
        store,
        Arc::new(Metrics::default()),
        trust,
        AppConfig {
            rate_limit_per_minute: 0,
            ..AppConfig::default()
        },
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, pid = std::process::id(), "bench server listening");
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
