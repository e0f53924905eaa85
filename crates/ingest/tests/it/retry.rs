//! The slow retry schedule: a repo whose DID does not resolve is marked, counted in the
//! resync gauges, and retried until the DID resolves, when it catches up on its own.

use std::sync::atomic::Ordering;
use std::time::Duration;

use guildhall_ingest::indexer::{self, IndexerConfig};
use guildhall_store::{RepoStatus, Store};
use tokio::sync::watch;
use url::Url;

use crate::firehose::context;
use crate::forged::{Account, post, service};
use crate::harness::{both, both_at};
use crate::hostile::{eventually, resync_config};
use crate::net::{Net, Step};
use guildhall_ingest::firehose::RawFrame;

both!(an_unresolvable_did_is_retried_until_it_resolves);

async fn an_unresolvable_did_is_retried_until_it_resolves(store: Store) {
    let net = Net::start().await.expect("servers");
    // carol's DID is not in the directory yet.
    let mut carol = Account::new("carol", 3);
    let mut first = carol.commit(vec![service("c1", "Carol", &["sms.send"])]);
    first.wire.seq = 1;
    net.set_script(vec![Step::Event {
        seq: 1,
        bytes: first.wire.frame(),
        export: Some(carol.export()),
    }]);
    let ctx = context(store.clone(), &net);
    let config = IndexerConfig {
        sources: vec![Url::parse(&net.ws).expect("ws url")],
        batch_delay: Duration::from_millis(5),
        resync: resync_config(),
        ..IndexerConfig::default()
    };
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(indexer::run(ctx.clone(), config, shutdown));

    // Marked, counted as unresolvable and as unsynced, and its retries given up at least once.
    eventually(
        "carol is counted unresolvable and unsynced",
        Duration::from_secs(30),
        &ctx,
        || {
            let store = store.clone();
            let did = carol.did.clone();
            let status = ctx.metrics.resync_status();
            let given_up = ctx.metrics.resync_given_up.load(Ordering::Relaxed);
            async move {
                let marked = store
                    .repo(did.as_str())
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|r| r.status == RepoStatus::Desynchronized);
                marked
                    && given_up >= 1
                    && status.get("didsUnresolvable") >= Some(&1)
                    && status.get("reposUnsynced") >= Some(&1)
            }
        },
    )
    .await;
    assert!(
        ctx.metrics
            .render()
            .contains("guildhall_dids_unresolvable 1")
    );

    // The DID starts resolving: the schedule retries it, and it catches up with no new frame.
    net.add_account(carol.did.as_str(), &carol.handle, &carol.key());
    let uri = carol.uri("dev.guildhall.service/c1");
    eventually(
        "carol catches up once her DID resolves",
        Duration::from_secs(30),
        &ctx,
        || {
            let store = store.clone();
            let uri = uri.clone();
            let did = carol.did.clone();
            async move {
                store.record(&uri).await.ok().flatten().is_some()
                    && store
                        .repo(did.as_str())
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|r| r.status == RepoStatus::Synced)
            }
        },
    )
    .await;
    eventually("the gauges clear", Duration::from_secs(10), &ctx, || {
        let status = ctx.metrics.resync_status();
        async move {
            status.get("didsUnresolvable") == Some(&0) && status.get("reposUnsynced") == Some(&0)
        }
    })
    .await;
    let _ = stop.send(true);
    running.await.expect("join").expect("indexer");
}

both_at!(a_store_error_does_not_lose_a_takedown);

/// Runs `sql` on the test database behind the store's back.
async fn exec(location: &str, sql: &str) {
    use sqlx::Connection as _;
    if location.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(location)
            .await
            .expect("connect");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut c)
            .await
            .expect("exec");
    } else {
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{location}"))
            .await
            .expect("connect");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut c)
            .await
            .expect("exec");
    }
}

/// A store read that fails while an `#account` takedown from the account's own host is
/// handled: the read is retried until the store answers, and the takedown applies. (Read as
/// "unknown account", the event would be dropped and the account left visible.)
async fn a_store_error_does_not_lose_a_takedown(store: Store, location: String) {
    let net = Net::start().await.expect("servers");
    let mut dana = Account::new("dana", 4);
    net.add_account(dana.did.as_str(), &dana.handle, &dana.key());
    // dana is tracked: her repo holds a service, from the empty tree (no getRepo needed).
    let _genesis = dana.commit(vec![]);
    let mut first = dana.commit(vec![service("d1", "Dana", &["sms.send"])]);
    first.wire.seq = 1;
    let host = net.http.replacen("http://", "ws://", 1);
    let ctx = context(store.clone(), &net);
    let config = IndexerConfig {
        batch_delay: Duration::from_millis(5),
        resync: resync_config(),
        ..IndexerConfig::default()
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let running = tokio::spawn(indexer::run_frames(
        ctx.clone(),
        config,
        vec![host.clone()],
        rx,
    ));
    tx.send(RawFrame {
        source: 0,
        bytes: first.wire.frame(),
    })
    .await
    .expect("send");
    let uri = dana.uri("dev.guildhall.service/d1");
    eventually(
        "dana's first commit is indexed",
        Duration::from_secs(20),
        &ctx,
        || {
            let store = store.clone();
            let uri = uri.clone();
            async move { store.record(&uri).await.ok().flatten().is_some() }
        },
    )
    .await;

    // The store's repo table goes away for a while; the shard has to read dana's sync
    // state afresh (it forgets what it held when a repo's state is reloaded: here, we
    // make it reload by sending the event to a pipeline restarted on the same store).
    drop(tx);
    running.await.expect("join").expect("first run");
    let ctx = context(store.clone(), &net);
    let config = IndexerConfig {
        batch_delay: Duration::from_millis(5),
        resync: resync_config(),
        ..IndexerConfig::default()
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let running = tokio::spawn(indexer::run_frames(
        ctx.clone(),
        config,
        vec![host.clone()],
        rx,
    ));
    // A commit of an untracked repo, to know the pipeline has finished its start-up reads
    // once the cursor moves past it.
    let mut erin = Account::new("erin", 5);
    let mut other = erin.commit(vec![post("3kaaaaaaaaa22")]);
    other.wire.seq = 2;
    tx.send(RawFrame {
        source: 0,
        bytes: other.wire.frame(),
    })
    .await
    .expect("send");
    eventually("the pipeline is up", Duration::from_secs(20), &ctx, || {
        let store = store.clone();
        let host = host.clone();
        async move { store.cursor(&host).await.ok().flatten() == Some(2) }
    })
    .await;
    // Both reads that say whether dana is known fail from now on.
    exec(
        &location,
        "ALTER TABLE repos RENAME TO repos_away; ALTER TABLE operators RENAME TO operators_away",
    )
    .await;
    let account = guildhall_proto::forge::frame_of(
        "#account",
        &serde_json::json!({
            "seq": 3,
            "did": dana.did.as_str(),
            "time": "2026-12-04T00:00:00.000Z",
            "active": false,
            "status": "takendown",
        }),
    );
    tx.send(RawFrame {
        source: 0,
        bytes: account,
    })
    .await
    .expect("send");
    // Give the shard time to meet the failing read (it retries; code that took the error for
    // "unknown account" has dropped the event by then), then bring the tables back.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while ctx.metrics.store_retries.load(Ordering::Relaxed) < 2
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    exec(
        &location,
        "ALTER TABLE repos_away RENAME TO repos; ALTER TABLE operators_away RENAME TO operators",
    )
    .await;
    drop(tx);
    running.await.expect("join").expect("second run");
    assert_eq!(
        store
            .operator_status(dana.did.as_str())
            .await
            .expect("status"),
        Some(guildhall_store::OperatorStatus::Takendown),
        "the takedown survived the store error"
    );
    assert!(store.record(&uri).await.expect("record").is_some());
    assert!(ctx.metrics.store_retries.load(Ordering::Relaxed) >= 1);
}
