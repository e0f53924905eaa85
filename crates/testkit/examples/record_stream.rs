//! Makes a firehose recording for the ingestion benchmark: starts a fresh
//! reference peer, writes dev.guildhall.* records while capturing the
//! firehose from cursor 0, and leaves `OUT` (frames) and `OUT.keys.json`
//! (did -> did:key, to verify without the peer) behind.
//!
//! `cargo run -p guildhall-testkit --example record_stream -- OUT [OPS] [ACCOUNTS] [CONCURRENCY]`
//! (defaults: 10000 operations, 4 accounts, 8 in flight; ~100 s here).

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use guildhall_testkit::{Peer, PeerOptions};

fn arg(args: &[String], i: usize, default: usize) -> Result<usize> {
    match args.get(i) {
        Some(s) => s
            .parse()
            .with_context(|| format!("argument {i} ({s}) is not a number")),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(out) = args.get(1).map(PathBuf::from) else {
        bail!("usage: record_stream OUT [OPS] [ACCOUNTS] [CONCURRENCY]");
    };
    let (ops, accounts, concurrency) =
        (arg(&args, 2, 10_000)?, arg(&args, 3, 4)?, arg(&args, 4, 8)?);

    let t0 = Instant::now();
    let peer = Peer::start(PeerOptions {
        accounts,
        ..Default::default()
    })
    .await?;
    let started = t0.elapsed();
    let summary = peer.record_stream(&out, ops, concurrency).await?;
    let recorded = t0.elapsed() - started;
    let clean = peer.shutdown(Duration::from_secs(20)).await?;

    let report = serde_json::json!({
        "peerStartSeconds": started.as_secs_f64(),
        "recordSeconds": recorded.as_secs_f64(),
        "peerExitedCleanly": clean,
        "recording": summary,
    });
    writeln!(
        std::io::stdout(),
        "{}",
        serde_json::to_string_pretty(&report)?
    )?;
    Ok(())
}
