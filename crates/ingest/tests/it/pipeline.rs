//! `run_frames` fed straight from memory, as a recording is replayed: lexicon-invalid records
//! and a forged first commit never reach the index, and the cursor ends at the last frame.

use std::time::Duration;

use guildhall_ingest::firehose::RawFrame;
use guildhall_ingest::indexer::{self, IndexerConfig};
use guildhall_proto::forge::Forged;
use guildhall_store::{RepoStatus, Store};
use tokio::sync::mpsc;

use crate::firehose::{context, counter};
use crate::forged::{Account, bad_service, service};
use crate::harness::both;
use crate::net::Net;

fn frame(seq: &mut i64, mut f: Forged) -> Vec<u8> {
    *seq += 1;
    f.wire.seq = *seq;
    f.wire.frame()
}

async fn invalid_input_never_reaches_the_index(store: Store) {
    let net = Net::start().await.expect("servers");
    let mut alice = Account::new("alice", 1);
    let mut bob = Account::new("bob", 2);
    for a in [&alice, &bob] {
        net.add_account(a.did.as_str(), &a.handle, &a.key());
    }
    let mut seq = 0;
    let mut frames = vec![
        frame(&mut seq, alice.commit(vec![])),
        frame(&mut seq, bob.commit(vec![])),
        frame(
            &mut seq,
            alice.commit(vec![
                service("good", "Good", &["sms.send"]),
                bad_service("bad"),
            ]),
        ),
        // A valid record replaced by an invalid version must leave the index.
        frame(&mut seq, alice.commit(vec![bad_service("good")])),
        frame(
            &mut seq,
            alice.commit(vec![service("fixed", "Fixed", &["sms.send"])]),
        ),
    ];
    // bob's first commit with records, from the empty tree, but signed by another key: the
    // shortcut that skips getRepo must not skip the signature. The resync that follows finds
    // no repo to fetch, so bob stays desynchronized with nothing indexed.
    let forged = bob
        .replica(77)
        .commit(&[service("evil", "Evil", &["sms.send"])])
        .expect("forge");
    frames.push(frame(&mut seq, forged));

    let ctx = context(store.clone(), &net);
    let config = IndexerConfig {
        batch_delay: Duration::from_millis(5),
        ..IndexerConfig::default()
    };
    let (tx, rx) = mpsc::channel(4);
    let feeder = tokio::spawn(async move {
        for bytes in frames {
            tx.send(RawFrame { source: 0, bytes }).await.expect("send");
        }
    });
    indexer::run_frames(ctx.clone(), config, vec!["memory".to_owned()], rx)
        .await
        .expect("run_frames");
    feeder.await.expect("feeder");

    assert_eq!(store.cursor("memory").await.expect("cursor"), Some(seq));
    let services = store
        .list_records(alice.did.as_str(), "dev.guildhall.service")
        .await
        .expect("list");
    assert_eq!(
        services,
        vec![(
            alice.uri("dev.guildhall.service/fixed"),
            alice.model["dev.guildhall.service/fixed"].to_string()
        )]
    );
    let text = ctx.metrics.render();
    assert_eq!(
        counter(&text, "guildhall_records_rejected_total"),
        2,
        "{text}"
    );
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.rejections, 2);
    assert_eq!(stats.records, 1);
    let rejected: Vec<String> = store
        .rejections(10)
        .await
        .expect("rejections")
        .into_iter()
        .map(|r| r.row.uri)
        .collect();
    for path in ["dev.guildhall.service/bad", "dev.guildhall.service/good"] {
        assert!(rejected.contains(&alice.uri(path)), "{path}: {rejected:?}");
    }

    let failures = ctx.metrics.verify_failures();
    assert_eq!(failures.get("bad_signature"), Some(&1), "{failures:?}");
    assert_eq!(
        counter(&text, "guildhall_resync_failures_total"),
        1,
        "{text}"
    );
    let row = store.repo(bob.did.as_str()).await.expect("repo");
    assert_eq!(row.map(|r| r.status), Some(RepoStatus::Desynchronized));
    assert_eq!(
        store
            .record(&bob.uri("dev.guildhall.service/evil"))
            .await
            .expect("record"),
        None
    );
}

both!(invalid_input_never_reaches_the_index);
