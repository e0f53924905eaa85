//! Latency: how long a record takes from the PDS acknowledging the write to its row being
//! readable in the index, over ~200 writes (reported; only a generous sanity bound is checked).

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use serde_json::json;

use crate::both;
use crate::harness::{Backend, Db, Guildhall, peer, percentile};

const WRITES: usize = 200;

async fn latency(backend: Backend) -> Result<()> {
    let peer = peer(1).await?;
    let db = Db::fresh(backend).await?;
    let mut gh = Guildhall::serve(&db, &peer)?;
    gh.wait_ready(Duration::from_secs(60)).await?;
    gh.wait_connected(Duration::from_secs(30)).await?;
    let store = db.store().await?;
    let a = &peer.accounts()[0];
    let x = peer.xrpc();

    // One write first, so the repo is tracked and its first-sight handling is not measured.
    let mut from_ack = Vec::with_capacity(WRITES);
    let mut from_send = Vec::with_capacity(WRITES);
    for i in 0..=WRITES {
        let record = json!({
            "$type": "dev.guildhall.service",
            "name": format!("Latency {i}"),
            "capabilities": ["sms.send"],
            "endpoints": [{"protocol": "http", "url": "https://lat.example.test"}],
            "createdAt": "2026-11-02T10:00:00Z",
        });
        let sent = Instant::now();
        let w = x
            .create_record(
                &a.pds_url,
                &a.access_jwt,
                &a.did,
                "dev.guildhall.service",
                Some(&format!("lat-{i}")),
                &record,
            )
            .await?;
        let acked = Instant::now();
        loop {
            if store.record(&w.uri).await?.is_some_and(|r| r.cid == w.cid) {
                break;
            }
            if acked.elapsed() > Duration::from_secs(20) {
                gh.check_alive()?;
                bail!(
                    "{} not indexed 20 s after the write\n--- guildhall log ---\n{}",
                    w.uri,
                    gh.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if i > 0 {
            from_ack.push(acked.elapsed());
            from_send.push(sent.elapsed());
        }
    }
    from_ack.sort();
    from_send.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    // The binary is built with the test's profile (debug under a plain `cargo test`).
    let profile = if cfg!(debug_assertions) {
        "debug build"
    } else {
        "release build"
    };
    eprintln!(
        "[{backend:?}] ({profile}) PDS write acknowledged → row indexed, {WRITES} writes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
         (from request sent: p50 {:.1} ms, p99 {:.1} ms)",
        ms(percentile(&from_ack, 50)),
        ms(percentile(&from_ack, 99)),
        ms(percentile(&from_ack, 100)),
        ms(percentile(&from_send, 50)),
        ms(percentile(&from_send, 99)),
    );
    ensure!(
        percentile(&from_ack, 99) < Duration::from_secs(5),
        "p99 write → indexed latency is {:?}",
        percentile(&from_ack, 99)
    );
    Ok(())
}

both!(latency);
