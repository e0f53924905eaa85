//! The slow retry schedule: a repo whose DID does not resolve is marked, counted in the
//! resync gauges, and retried until the DID resolves, when it catches up on its own.

use std::sync::atomic::Ordering;
use std::time::Duration;

use guildhall_ingest::indexer::{self, IndexerConfig};
use guildhall_store::{RepoStatus, Store};
use tokio::sync::watch;
use url::Url;

use crate::firehose::context;
use crate::forged::{Account, service};
use crate::harness::both;
use crate::hostile::{eventually, resync_config};
use crate::net::{Net, Step};

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
