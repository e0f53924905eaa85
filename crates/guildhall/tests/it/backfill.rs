//! Backfill: after the writes, a fresh database with no cursor reaches the same index through
//! `guildhall backfill --from <pds>` alone; a second run is a no-op; the first `serve` after
//! it finds what was written in between.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use guildhall_ingest::firehose::{self, RawFrame, SubscribeConfig};
use guildhall_ingest::metrics::Metrics;
use guildhall_proto::frame;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use url::Url;

use crate::both;
use crate::harness::{
    Backend, Db, Guildhall, Index, await_index, check_integrity, diff, indexed_records,
    ingest_args, metric, peer, repo_records,
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

/// A cursorless subscriber of a PDS firehose, as `serve` is at its first start.
struct Listener {
    frames: mpsc::Receiver<RawFrame>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Subscribes and waits until the socket is open.
    async fn start(firehose: &str) -> Result<Listener> {
        let (tx, frames) = mpsc::channel(256);
        let (stop, stopped) = watch::channel(false);
        let metrics = Arc::new(Metrics::default());
        let task = tokio::spawn(firehose::subscribe(
            0,
            Url::parse(firehose)?,
            None,
            SubscribeConfig::default(),
            tx,
            metrics.clone(),
            stopped,
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while metrics.connects.load(Ordering::Relaxed) == 0 {
            ensure!(Instant::now() < deadline, "no firehose connection in 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Listener { frames, stop, task })
    }

    /// Waits for one `#commit` of each of `dids`, in any order.
    async fn wait_for_commits(&mut self, dids: &[&str]) -> Result<()> {
        let mut waiting: BTreeSet<&str> = dids.iter().copied().collect();
        while !waiting.is_empty() {
            let raw = tokio::time::timeout(Duration::from_secs(10), self.frames.recv())
                .await
                .with_context(|| format!("no live #commit from {waiting:?} in 10 s"))?
                .context("the listener stopped")?;
            if let Ok(r) = frame::route(&raw.bytes)
                && r.kind == "#commit"
                && let Some(did) = r.did
            {
                waiting.remove(did);
            }
        }
        Ok(())
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        drop(self.frames);
        let _ = self.task.await;
    }
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

    // Writes after the backfill and before the first `serve`, which has no cursor to resume
    // from: alice adds a service, bob loses a record, carol writes nothing. A listener sees
    // the PDS emit them live first, so serve cannot receive them live; nobody writes once it
    // runs, so only its start-up recheck of tracked repos can find them.
    let carol = &accounts[2];
    let mut listener = Listener::start(&peer.pds().firehose_url).await?;
    let added = x
        .create_record(
            &alice.pds_url,
            &alice.access_jwt,
            &alice.did,
            "dev.guildhall.service",
            None,
            &json!({
                "$type": "dev.guildhall.service",
                "name": "written in the gap",
                "capabilities": ["sms.send"],
                "endpoints": [{"protocol": "mcp", "url": "https://gap.example.test/mcp"}],
                "createdAt": "2026-11-02T10:00:00Z"
            }),
        )
        .await?;
    let gone = actual
        .keys()
        .find(|u| u.starts_with(&format!("at://{}/", bob.did)))
        .context("bob has an indexed record")?
        .clone();
    let (collection, rkey) = gone
        .rsplit_once('/')
        .and_then(|(rest, rkey)| Some((rest.rsplit_once('/')?.1, rkey)))
        .context("a record URI")?;
    x.delete_record(&bob.pds_url, &bob.access_jwt, &bob.did, collection, rkey)
        .await?;
    listener
        .wait_for_commits(&[alice.did.as_str(), bob.did.as_str()])
        .await?;
    listener.stop().await;
    ensure!(
        store.record(&added.uri).await?.is_none(),
        "nothing indexes between runs"
    );

    let mut gh = Guildhall::serve(&db, &peer)?;
    gh.wait_ready(Duration::from_secs(60)).await?;
    let excluded = BTreeSet::from([broken.uri.clone()]);
    let index = await_index(
        &store,
        &peer,
        &accounts,
        &excluded,
        Duration::from_secs(30),
        Some(&mut gh),
    )
    .await?;
    ensure!(
        index.contains_key(&added.uri) && !index.contains_key(&gone),
        "the gap's writes are indexed"
    );
    check_integrity(&db, &store, &index).await?;
    // Every tracked repo was rechecked, and exactly the two that moved were fetched again;
    // carol cost one getLatestCommit.
    let metrics = gh.metrics().await?;
    ensure!(
        metric(&metrics, "guildhall_rechecks_total") == Some(3.0),
        "rechecks at start: {:?}",
        metric(&metrics, "guildhall_rechecks_total")
    );
    ensure!(
        metric(&metrics, "guildhall_resyncs_total") == Some(2.0),
        "resyncs after the recheck: {:?} (carol {} did not move)\n{}",
        metric(&metrics, "guildhall_resyncs_total"),
        carol.did,
        gh.log_tail(30)
    );
    Ok(())
}

both!(backfill);
