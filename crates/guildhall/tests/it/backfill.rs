//! Backfill: after the writes, a fresh database with no cursor reaches the same index through
//! `guildhall backfill --from <pds>` alone; a second run is a no-op.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::json;

use crate::both;
use crate::harness::{
    Backend, Db, Index, check_integrity, diff, indexed_records, ingest_args, peer, repo_records,
};

/// Runs `guildhall backfill` to completion; returns its log.
async fn run_backfill(db: &Db, peer: &guildhall_testkit::Peer) -> Result<String> {
    let mut args = vec!["backfill".to_owned()];
    args.extend(ingest_args(db, peer));
    args.extend(["--from".to_owned(), peer.pds().url.clone()]);
    let t = Instant::now();
    let mut child = tokio::process::Command::from(Command::new(env!("CARGO_BIN_EXE_guildhall")));
    let out = child
        .args(&args)
        .env("GUILDHALL_LOG", "info")
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .context("guildhall backfill did not finish within 120 s")??;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("guildhall backfill failed ({}):\n{log}", out.status);
    }
    eprintln!(
        "guildhall backfill took {:.2} s: {}",
        t.elapsed().as_secs_f64(),
        log.lines()
            .filter(|l| l.contains("backfill finished"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    Ok(log)
}

async fn backfill(backend: Backend) -> Result<()> {
    let t0 = Instant::now();
    let peer = peer(3).await?;
    let summary = peer
        .run_script(
            "load.mjs",
            &[
                "--count",
                "150",
                "--concurrency",
                "6",
                "--mix",
                "create=30,put=15,delete=10,apply=45",
            ],
        )
        .await?;
    let accounts = peer.accounts().to_vec();
    let (alice, bob) = (&accounts[0], &accounts[1]);
    let x = peer.xrpc();
    // A record our lexicons refuse, and a handle change, both before guildhall exists.
    let broken = x
        .create_record(
            &alice.pds_url,
            &alice.access_jwt,
            &alice.did,
            "dev.guildhall.service",
            Some("broken"),
            &json!({"$type": "dev.guildhall.service", "name": "no endpoints", "capabilities": ["sms.send"], "createdAt": "2026-11-02T10:00:00Z"}),
        )
        .await?;
    let renamed = format!("bob-renamed{}", peer.pds().handle_domain);
    x.update_handle(&bob.pds_url, &bob.access_jwt, &renamed)
        .await?;
    eprintln!(
        "[{backend:?}] wrote {} records before backfill",
        summary["writes"]
    );

    let db = Db::fresh(backend).await?;
    let log = run_backfill(&db, &peer).await?;
    let store = db.store().await?;
    let mut expected = repo_records(&peer, &accounts).await?;
    expected.remove(&broken.uri);
    let actual: Index = indexed_records(&store, &accounts).await?;
    if let Some(d) = diff(&expected, &actual) {
        bail!("after backfill the index differs from the repos: {d}\n--- backfill log ---\n{log}");
    }
    eprintln!(
        "[{backend:?}] backfill alone indexed {} records ({:.1} s since start)",
        actual.len(),
        t0.elapsed().as_secs_f64()
    );
    check_integrity(&db, &store, &actual).await?;
    ensure!(
        store.cursor(&peer.pds().firehose_url).await?.is_none(),
        "backfill stores no firehose cursor"
    );
    let rejections = store.rejections(100).await?;
    ensure!(
        rejections
            .iter()
            .any(|r| r.row.uri == broken.uri && r.row.cid.as_deref() == Some(broken.cid.as_str())),
        "the invalid record is rejected with its CID: {rejections:?}"
    );
    for a in &accounts {
        let op = store
            .operator(&a.did)
            .await?
            .with_context(|| format!("operator {} after backfill", a.did))?;
        let want = if a.did == bob.did {
            renamed.clone()
        } else {
            a.handle.clone()
        };
        ensure!(
            op.handle.as_deref() == Some(want.as_str()) && op.handle_verified,
            "{} shows handle {:?} (verified {}), expected {want} verified",
            a.did,
            op.handle,
            op.handle_verified
        );
    }
    let tracked: BTreeSet<String> = store.tracked_dids().await?.into_iter().collect();
    ensure!(
        accounts.iter().all(|a| tracked.contains(&a.did)),
        "every operator's repo is tracked after backfill: {tracked:?}"
    );

    // Resumable: a second run skips finished repos and changes nothing.
    let log = run_backfill(&db, &peer).await?;
    ensure!(
        log.contains("skipped=3") || log.contains("skipped: 3"),
        "a second backfill skips the 3 finished repos:\n{log}"
    );
    let again = indexed_records(&store, &accounts).await?;
    ensure!(again == actual, "a second backfill changed the index");
    Ok(())
}

both!(backfill);
