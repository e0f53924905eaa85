//! Crash safety: `kill -9` the indexer at random points while the PDS takes over a thousand
//! writes, restart it on the same database each time; the final index must equal the repos
//! with nothing lost and nothing doubled.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};

use crate::both;
use crate::harness::{
    Backend, Db, Guildhall, Rng, await_index, check_integrity, metric, peer_with,
};

/// load.mjs operations, mostly applyWrites (2 to 4 writes each): over 1,000 record writes in
/// fewer PDS round trips, which keeps the test short on a loaded machine.
const OPS: usize = 480;
const MIX: &str = "create=20,put=15,delete=10,apply=55";
const MIN_KILLS: u32 = 5;

async fn crash(backend: Backend) -> Result<()> {
    let t0 = Instant::now();
    let mut rng = Rng::from_env();
    // Two PDSes, so the indexer follows two firehoses and commits two cursors.
    let peer = peer_with(4, 2).await?;
    let db = Db::fresh(backend).await?;
    let mut gh = Guildhall::serve(&db, &peer)?;
    gh.wait_ready(Duration::from_secs(60)).await?;
    gh.wait_connected(Duration::from_secs(30)).await?;

    let store = db.store().await?;
    let sources: Vec<String> = peer
        .info()
        .pdses
        .iter()
        .map(|p| p.firehose_url.clone())
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let load = async {
        let r = peer
            .run_script(
                "load.mjs",
                &[
                    "--count",
                    &OPS.to_string(),
                    "--concurrency",
                    "6",
                    "--mix",
                    MIX,
                ],
            )
            .await;
        done.store(true, Ordering::SeqCst);
        r
    };
    let killer = async {
        let mut kills = 0u32;
        let mut points = Vec::new();
        // Keep killing while the load runs, and at least MIN_KILLS times.
        while kills < MIN_KILLS || !done.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(rng.range(300, 2_500))).await;
            gh.check_alive()?;
            gh.kill9()?;
            kills += 1;
            // Where it died, and the cursors it had committed by then.
            let mut cursors = Vec::new();
            for s in &sources {
                cursors.push(
                    store
                        .cursor(s)
                        .await?
                        .map_or("-".to_owned(), |c| c.to_string()),
                );
            }
            points.push(format!(
                "{:.1}s@{}",
                t0.elapsed().as_secs_f64(),
                cursors.join("/")
            ));
            // Sometimes restart at once, sometimes let the PDS run ahead.
            tokio::time::sleep(Duration::from_millis(rng.range(0, 1_500))).await;
            gh.start()?;
            gh.wait_ready(Duration::from_secs(60)).await?;
        }
        anyhow::Ok((kills, points))
    };
    let (summary, kills) = tokio::join!(load, killer);
    let summary = summary.context("load.mjs")?;
    let (kills, points) = kills?;
    let writes = summary["writes"].as_u64().unwrap_or(0);
    eprintln!(
        "[{backend:?}] load: {OPS} ops ({MIX}), {writes} record writes in {:.1} s; {kills} kill -9 at (time@stored cursor) {points:?}",
        summary["seconds"].as_f64().unwrap_or(0.0)
    );
    ensure!(writes >= 1000, "at least 1,000 writes: {summary}");
    ensure!(kills >= MIN_KILLS, "killed {kills} times");

    let accounts = peer.accounts().to_vec();
    let index = await_index(
        &store,
        &peer,
        &accounts,
        &BTreeSet::new(),
        Duration::from_secs(60),
        Some(&mut gh),
    )
    .await?;
    check_integrity(&db, &store, &index).await?;
    let stats = store.stats().await?;
    ensure!(
        stats.records == index.len() as i64,
        "the store holds {} records, the repos {}",
        stats.records,
        index.len()
    );
    let m = gh.metrics().await?;
    eprintln!(
        "[{backend:?}] crash test done in {:.1} s: {} records, {} starts; last process: {} commits verified, {} resyncs, {} batches",
        t0.elapsed().as_secs_f64(),
        index.len(),
        gh.starts,
        metric(&m, "guildhall_commits_verified_total").unwrap_or(0.0),
        metric(&m, "guildhall_resyncs_total").unwrap_or(0.0),
        metric(&m, "guildhall_batches_total").unwrap_or(0.0),
    );
    Ok(())
}

both!(crash);
