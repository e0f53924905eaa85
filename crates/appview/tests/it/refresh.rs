//! Writes the ingest broadcast does not carry: an AppView apart from ingestion (`serve
//! --no-ingest`) follows the store's change token alone; one that follows its own
//! ingestion's broadcast also notices another process's writes (a `guildhall backfill`).

use std::time::Duration;

use axum::http::StatusCode;
use guildhall_ingest::indexer::{Committed, CommittedBatch};
use guildhall_store::{Batch, Change, EndorsementRow, OperatorStatus, RejectionRow, Store};
use tokio::sync::broadcast;

use crate::data::*;
use crate::harness::{Ctx, both};

both!(
    refresh_follows_another_writer,
    periodic_refresh_task,
    broadcast_follower_notices_another_writer
);

/// viewer → e1 → p1; p2 unreachable. Both offer sms.send.
fn small_world() -> Vec<Change> {
    let mut c = Vec::new();
    for n in ["viewer", "e1", "p1", "p2"] {
        c.extend(operator(n));
    }
    for n in ["p1", "p2"] {
        c.push(upsert_service(&service(
            &did(n),
            &format!("{n}-sms"),
            &["sms.send"],
        )));
    }
    c.push(upsert_endorsement(&endorsement(
        &did("viewer"),
        "3kaaaaaaaaa2a",
        &did("e1"),
        80,
        &[],
    )));
    c.push(upsert_endorsement(&endorsement(
        &did("e1"),
        "3kaaaaaaaaa2b",
        &did("p1"),
        70,
        &["sms.send"],
    )));
    c
}

/// `(operator DID, distance)` of a searchServices answer for the viewer, in order.
async fn ranking(app: &axum::Router) -> Vec<(String, Option<u64>)> {
    let (st, v) = get(
        app,
        &format!(
            "/xrpc/dev.guildhall.searchServices?capability=sms.send&viewer={}",
            enc(&did("viewer"))
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["services"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["operator"]["did"].as_str().unwrap_or_default().to_owned(),
                        s["trust"]["distance"].as_u64(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn write(store: &Store, changes: Vec<Change>) {
    // Writes stamp rows with the clock in milliseconds: keep successive writes apart.
    tokio::time::sleep(Duration::from_millis(3)).await;
    store
        .apply(&Batch {
            cursors: Vec::new(),
            changes,
        })
        .await
        .expect("apply");
}

/// A direct endorsement viewer → p2, which puts p2 first.
fn viewer_to_p2() -> EndorsementRow {
    endorsement(
        &did("viewer"),
        "3kaaaaaaaaa2c",
        &did("p2"),
        90,
        &["sms.send"],
    )
}

async fn refresh_follows_another_writer(ctx: Ctx) {
    apply(&ctx.store, small_world()).await;
    let (app, trust) = app(&ctx.store, config()).await;
    // The other process: its own connections to the same database.
    let writer = Store::open(&ctx.location).await.expect("second handle");
    let (p1, p2) = (did("p1"), did("p2"));
    assert_eq!(
        ranking(&app).await,
        [(p1.clone(), Some(2)), (p2.clone(), None)]
    );
    let g0 = trust.generation();
    assert!(!trust.refresh_if_changed(&ctx.store).await.expect("check"));
    assert_eq!(trust.generation(), g0, "nothing changed, nothing rebuilt");

    // A new endorsement: viewer → p2.
    let direct = viewer_to_p2();
    write(&writer, vec![upsert_endorsement(&direct)]).await;
    assert!(trust.refresh_if_changed(&ctx.store).await.expect("check"));
    assert!(trust.generation() > g0);
    assert_eq!(
        ranking(&app).await,
        [(p2.clone(), Some(1)), (p1.clone(), Some(2))]
    );
    assert!(
        !trust.refresh_if_changed(&ctx.store).await.expect("check"),
        "once rebuilt, quiet again"
    );

    // A deletion: e1 → p1 goes, so p1 loses its path.
    write(
        &writer,
        vec![Change::DeleteRecord {
            uri: uri(&did("e1"), END, "3kaaaaaaaaa2b"),
        }],
    )
    .await;
    assert!(trust.refresh_if_changed(&ctx.store).await.expect("check"));
    assert_eq!(
        ranking(&app).await,
        [(p2.clone(), Some(1)), (p1.clone(), None)]
    );

    // An endorsement rewritten in place (same URI, now scoped elsewhere): no count changes.
    let mut rescoped = direct.clone();
    rescoped.capabilities = vec!["email.send".into()];
    rescoped.cid = "bafy-e-rescoped".into();
    write(&writer, vec![upsert_endorsement(&rescoped)]).await;
    assert!(trust.refresh_if_changed(&ctx.store).await.expect("check"));
    assert_eq!(
        ranking(&app).await,
        [(p1.clone(), None), (p2.clone(), None)]
    );
    write(&writer, vec![upsert_endorsement(&direct)]).await;
    assert!(trust.refresh_if_changed(&ctx.store).await.expect("check"));

    // Account status: a takedown of the viewer's only endorsee hides p2 and its path ...
    let status = |s| {
        vec![Change::Account {
            did: p2.clone(),
            status: s,
        }]
    };
    write(&writer, status(OperatorStatus::Takendown)).await;
    assert!(trust.refresh_if_changed(&ctx.store).await.expect("check"));
    assert_eq!(ranking(&app).await, [(p1.clone(), None)]);
    // ... one hidden status for another is still a change ...
    write(&writer, status(OperatorStatus::Suspended)).await;
    assert!(trust.refresh_if_changed(&ctx.store).await.expect("check"));
    // ... and reactivation restores both.
    write(&writer, status(OperatorStatus::Active)).await;
    assert!(trust.refresh_if_changed(&ctx.store).await.expect("check"));
    assert_eq!(
        ranking(&app).await,
        [(p2.clone(), Some(1)), (p1.clone(), None)]
    );

    // A service deleted and another created in one batch: counts stay, the graph's inputs
    // (service CIDs for pinned endorsements) do not.
    write(
        &writer,
        vec![
            Change::DeleteRecord {
                uri: uri(&p1, SVC, "p1-sms"),
            },
            upsert_service(&service(&p1, "p1-sms-v2", &["sms.send"])),
        ],
    )
    .await;
    assert!(trust.refresh_if_changed(&ctx.store).await.expect("check"));

    // Writes the graph does not depend on do not rebuild it.
    let g = trust.generation();
    write(
        &writer,
        vec![Change::Reject(RejectionRow {
            uri: uri(&p1, SVC, "bad"),
            cid: None,
            collection: SVC.into(),
            reason: "invalid_record".into(),
            detail: None,
        })],
    )
    .await;
    assert!(!trust.refresh_if_changed(&ctx.store).await.expect("check"));
    assert_eq!(trust.generation(), g);
    writer.close().await;
}

/// `serve --no-ingest`: the updater task with a broadcast nothing is ever sent on.
async fn periodic_refresh_task(ctx: Ctx) {
    apply(&ctx.store, small_world()).await;
    let (app, trust) = app(&ctx.store, config()).await;
    let writer = Store::open(&ctx.location).await.expect("second handle");
    let (_silent, rx) = broadcast::channel::<Committed>(1);
    let task = trust.spawn_updates(rx, ctx.store.clone(), Duration::from_millis(50));
    let before = trust.generation();
    // Idle ticks rebuild nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(trust.generation(), before);
    write(&writer, vec![upsert_endorsement(&viewer_to_p2())]).await;
    eventually("the refresh task picks up the write", || {
        trust.generation() > before
    })
    .await;
    assert_eq!(ranking(&app).await[0], (did("p2"), Some(1)));
    task.abort();
    writer.close().await;
}

/// An endorsement e1 → `subject` written as this process's ingestion would: applied, then
/// broadcast with the version it reached.
async fn own_batch(store: &Store, tx: &broadcast::Sender<Committed>, rkey: &str, subject: &str) {
    let changes = vec![upsert_endorsement(&endorsement(
        &did("e1"),
        rkey,
        &did(subject),
        60,
        &["sms.send"],
    ))];
    let applied = store
        .apply(&Batch {
            cursors: Vec::new(),
            changes: changes.clone(),
        })
        .await
        .expect("apply");
    assert!(applied.moved);
    let _ = tx.send(std::sync::Arc::new(CommittedBatch { changes, applied }));
    tokio::time::sleep(Duration::from_millis(5)).await;
}

/// `serve` with ingestion: its own batches arrive on the broadcast and never cost a rebuild,
/// however often the store is checked; a write by another process does, at the next check.
async fn broadcast_follower_notices_another_writer(ctx: Ctx) {
    apply(&ctx.store, small_world()).await;
    let (app, trust) = app(&ctx.store, config()).await;
    let writer = Store::open(&ctx.location).await.expect("second handle");
    let (tx, rx) = broadcast::channel(64);
    let task = trust.spawn_updates(rx, ctx.store.clone(), Duration::from_millis(20));
    // A rebuild moves the services generation; endorsement batches applied from the
    // broadcast do not. So while only this process writes endorsements, it must stay put.
    let services = trust.services_generation();
    for i in 0..30 {
        own_batch(&ctx.store, &tx, &format!("3kaaaaaaab{i:03}"), "p1").await;
    }
    // Several checks after the last own batch.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        trust.services_generation(),
        services,
        "own batches, seen on the broadcast, never rebuild"
    );

    // Another process: viewer → p2, with no broadcast.
    write(&writer, vec![upsert_endorsement(&viewer_to_p2())]).await;
    eventually("a rebuild after the foreign write", || {
        trust.services_generation() > services
    })
    .await;
    assert_eq!(ranking(&app).await[0], (did("p2"), Some(1)));

    // Caught up again: own batches are followed without another rebuild.
    let services = trust.services_generation();
    for i in 0..10 {
        own_batch(&ctx.store, &tx, &format!("3kaaaaaaac{i:03}"), "p2").await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(trust.services_generation(), services);
    task.abort();
    writer.close().await;
}
