//! Loading the trust graph from the store: time and peak memory of `TrustIndex::load_with`
//! (endorsements streamed a page at a time) against reading every row first, as one query
//! (`Store::all_endorsements`, then `TrustGraph::build`).
//!
//! Seed once, then load in fresh processes (peak RSS is per process):
//! `cargo run --release -p guildhall-appview --example load_from_store -- seed --edges 1000000`
//! `cargo run --release -p guildhall-appview --example load_from_store -- load`
//! `cargo run --release -p guildhall-appview --example load_from_store -- load --all-at-once`

#[path = "../benches/common/mod.rs"]
mod common;

use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use common::*;
use guildhall_appview::trust_index::to_endorsement;
use guildhall_appview::views::datetime_from_us as datetime;
use guildhall_appview::{TrustIndex, TrustIndexOptions};
use guildhall_store::{Batch, Change, EndorsementRow, IndexRow, RecordRow, Store};
use guildhall_trust::TrustGraph;

#[derive(Parser)]
struct Args {
    /// Store location (SQLite path or `postgres://` URL).
    #[arg(long, default_value = "/tmp/gh_load_bench.db")]
    db: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Writes synthetic endorsements into the store (up to `--edges` in all).
    Seed {
        /// Operators of the synthetic world.
        #[arg(long, default_value_t = 100_000)]
        nodes: usize,
        /// Endorsements to hold.
        #[arg(long, default_value_t = 1_000_000)]
        edges: usize,
    },
    /// Builds the graph from the store and reports time, size and peak RSS.
    Load {
        /// Read every endorsement row before building (the former way).
        #[arg(long)]
        all_at_once: bool,
    },
}

fn row(n: usize, j: usize) -> EndorsementRow {
    let e = endorsement(n, j);
    let rkey = e.uri.rsplit('/').next().unwrap_or_default().to_owned();
    EndorsementRow {
        uri: e.uri,
        author: e.author,
        rkey,
        cid: e.cid,
        subject: e.subject,
        service_uri: None,
        service_cid: None,
        strength: Some(e.strength),
        comment: None,
        created_at: datetime(e.created_at_us),
        expires_at: e.expires_at_us.map(datetime),
        capabilities: e.capabilities,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let store = Store::open(&args.db).await.context("open store")?;
    match args.cmd {
        Cmd::Seed { nodes, edges } => {
            let have = usize::try_from(store.stats().await?.endorsements).unwrap_or(0);
            let t = Instant::now();
            for start in (have..edges).step_by(5_000) {
                let changes = (start..(start + 5_000).min(edges))
                    .map(|j| {
                        let r = row(nodes, j);
                        Change::UpsertRecord(
                            RecordRow {
                                uri: r.uri.clone(),
                                did: r.author.clone(),
                                collection: "dev.guildhall.endorsement".to_owned(),
                                rkey: r.rkey.clone(),
                                cid: r.cid.clone(),
                                bytes: Vec::new(),
                            },
                            Some(IndexRow::Endorsement(r)),
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
            eprintln!(
                "seeded {} endorsements in {:.1} s",
                edges.saturating_sub(have),
                t.elapsed().as_secs_f64()
            );
        }
        Cmd::Load { all_at_once } => {
            let (rss0, _) = rss_mib();
            let t = Instant::now();
            let stats = if all_at_once {
                let rows = store.all_endorsements().await?;
                let list: Vec<_> = rows.iter().filter_map(to_endorsement).collect();
                drop(rows);
                TrustGraph::build(list, &TrustIndexOptions::default().build)?.stats()
            } else {
                TrustIndex::load_with(&store, TrustIndexOptions::default())
                    .await?
                    .stats()
            };
            let (rss, hwm) = rss_mib();
            eprintln!(
                "{}: {} edges, {} nodes in {:.1} s; graph heap {:.0} MiB; RSS {rss:.0} MiB, \
                 peak {hwm:.0} MiB (before {rss0:.0} MiB)",
                if all_at_once {
                    "all rows, then build"
                } else {
                    "streamed pages"
                },
                stats.base_edges,
                stats.nodes,
                t.elapsed().as_secs_f64(),
                stats.heap_bytes as f64 / 1_048_576.0
            );
        }
    }
    Ok(())
}
