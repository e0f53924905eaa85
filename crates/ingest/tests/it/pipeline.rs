//! `run_frames` fed straight from memory, as a recording is replayed: lexicon-invalid records
//! and a forged first commit never reach the index, and the cursor ends at the last frame.

use std::sync::Arc;
use std::time::Duration;

use guildhall_ingest::firehose::RawFrame;
use guildhall_ingest::indexer::{self, Context, IndexerConfig};
use guildhall_proto::forge::Forged;
use guildhall_store::{OperatorStatus, Store};
use tokio::sync::mpsc;

use crate::firehose::{context, counter};
use crate::forged::{Account, bad_service, delete, service};
use crate::harness::both;
use crate::net::{Net, RepoStatusAnswer};

/// Runs the pipeline over `(source, frame)` pairs fed from memory until all are committed.
pub(crate) async fn replay(
    ctx: &Arc<Context>,
    sources: Vec<String>,
    frames: Vec<(usize, Vec<u8>)>,
) {
    let config = IndexerConfig {
        batch_delay: Duration::from_millis(5),
        resync: crate::hostile::resync_config(),
        ..IndexerConfig::default()
    };
    let (tx, rx) = mpsc::channel(4);
    let feeder = tokio::spawn(async move {
        for (source, bytes) in frames {
            tx.send(RawFrame { source, bytes }).await.expect("send");
        }
    });
    indexer::run_frames(ctx.clone(), config, sources, rx)
        .await
        .expect("run_frames");
    feeder.await.expect("feeder");
}

pub(crate) fn frame(seq: &mut i64, mut f: Forged) -> Vec<u8> {
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
    // shortcut that skips getRepo must not skip the signature. A forgery is dropped, not a
    // reason to fetch the repo: bob stays unknown with nothing indexed.
    let forged = bob
        .replica(77)
        .commit(&[service("evil", "Evil", &["sms.send"])])
        .expect("forge");
    frames.push(frame(&mut seq, forged));

    let ctx = context(store.clone(), &net);
    replay(
        &ctx,
        vec!["memory".to_owned()],
        frames.into_iter().map(|f| (0, f)).collect(),
    )
    .await;

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
    assert_eq!(counter(&text, "guildhall_resyncs_total"), 0, "{text}");
    assert_eq!(
        counter(&text, "guildhall_commits_refused_total"),
        1,
        "{text}"
    );
    assert_eq!(net.get_repo_calls().get(bob.did.as_str()), None);
    let row = store.repo(bob.did.as_str()).await.expect("repo");
    assert_eq!(row, None);
    assert_eq!(
        store
            .record(&bob.uri("dev.guildhall.service/evil"))
            .await
            .expect("record"),
        None
    );
}

/// The body of a `#account` event.
#[derive(serde::Serialize)]
struct AccountBody<'a> {
    seq: i64,
    did: &'a str,
    active: bool,
    status: Option<&'a str>,
    time: &'a str,
}

fn account_frame(seq: &mut i64, did: &str, active: bool, status: Option<&str>) -> Vec<u8> {
    *seq += 1;
    guildhall_proto::forge::frame_of(
        "#account",
        &AccountBody {
            seq: *seq,
            did,
            active,
            status,
            time: "2026-11-26T00:00:00.000Z",
        },
    )
}

/// `#account` is unsigned: only the account's own host may change its status. From any
/// other source the host is asked with `getRepoStatus`, and its answer wins.
async fn account_events_need_the_accounts_host(store: Store) {
    let net = Net::start().await.expect("servers");
    let mut alice = Account::new("alice", 1);
    let mut bob = Account::new("bob", 2);
    let mut carol = Account::new("carol", 3);
    for a in [&alice, &bob, &carol] {
        net.add_account(a.did.as_str(), &a.handle, &a.key());
    }
    // Source 0 names the accounts' PDS (the DID documents point at net.http); source 1 is
    // some other server, e.g. a relay.
    let host = net.http.replacen("http://", "ws://", 1);
    let sources = vec![host, "wss://relay.example".to_owned()];
    net.set_repo_status(
        alice.did.as_str(),
        RepoStatusAnswer::Status {
            active: true,
            status: None,
        },
    );
    net.set_repo_status(
        bob.did.as_str(),
        RepoStatusAnswer::Status {
            active: false,
            status: Some("takendown".to_owned()),
        },
    );
    net.set_repo_status(carol.did.as_str(), RepoStatusAnswer::Fail);

    let mut seq = 0;
    let mut frames: Vec<(usize, Vec<u8>)> = Vec::new();
    for a in [&mut alice, &mut bob, &mut carol] {
        // Genesis, then a service: the consumer follows the repo from its empty tree.
        frames.push((0, frame(&mut seq, a.commit(vec![]))));
        let svc = a.commit(vec![service("svc", "Svc", &["sms.send"])]);
        frames.push((0, frame(&mut seq, svc)));
    }
    // From the relay: alice's host says she is active (ignored), bob's confirms the
    // takedown (applied), carol's host fails every attempt (ignored, once given up).
    frames.push((
        1,
        account_frame(&mut seq, alice.did.as_str(), false, Some("takendown")),
    ));
    frames.push((
        1,
        account_frame(&mut seq, bob.did.as_str(), false, Some("takendown")),
    ));
    frames.push((
        1,
        account_frame(&mut seq, carol.did.as_str(), false, Some("deactivated")),
    ));
    // alice and bob once each; carol's failing host on every attempt the queue allows.
    let calls_before_host_event =
        2 + u64::from(crate::hostile::resync_config().limits.max_attempts);
    // From carol's own host: applied as is, without asking.
    frames.push((
        0,
        account_frame(&mut seq, carol.did.as_str(), false, Some("deactivated")),
    ));

    let ctx = context(store.clone(), &net);
    replay(&ctx, sources, frames).await;

    let status = |d: &guildhall_proto::syntax::Did| {
        let store = store.clone();
        let d = d.to_string();
        async move { store.operator_status(&d).await.expect("status") }
    };
    assert_eq!(status(&alice.did).await, Some(OperatorStatus::Active));
    assert_eq!(status(&bob.did).await, Some(OperatorStatus::Takendown));
    assert_eq!(status(&carol.did).await, Some(OperatorStatus::Deactivated));
    assert_eq!(net.repo_status_calls(), calls_before_host_event);
    let text = ctx.metrics.render();
    assert_eq!(
        counter(&text, "guildhall_account_events_confirmed_total"),
        2,
        "{text}"
    );
    assert_eq!(
        counter(&text, "guildhall_account_events_unconfirmed_total"),
        1,
        "{text}"
    );
    // Hidden means hidden: bob's and carol's services are gone from search, alice's is not.
    let hits = store
        .search_services(&guildhall_store::ServiceQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("search");
    let owners: Vec<String> = hits.into_iter().map(|h| h.did).collect();
    let stats = store.stats().await.expect("stats");
    // All three services are held; only alice's is visible.
    assert_eq!((stats.records, stats.services), (3, 1), "{stats:?}");
    assert_eq!(owners, vec![alice.did.to_string()]);
}

/// `OutdatedCursor`: events were lost, so every tracked repo is compared with its host's head
/// and resynced only if it moved meanwhile, in order with its later events.
async fn a_gap_in_the_stream_rechecks_tracked_repos(store: Store) {
    let net = Net::start().await.expect("servers");
    let mut alice = Account::new("alice", 1);
    let mut bob = Account::new("bob", 2);
    let mut carol = Account::new("carol", 3);
    for a in [&alice, &bob, &carol] {
        net.add_account(a.did.as_str(), &a.handle, &a.key());
    }
    let mut seq = 0;
    let mut frames = Vec::new();
    for a in [&mut alice, &mut bob, &mut carol] {
        frames.push(frame(&mut seq, a.commit(vec![])));
        let svc = a.commit(vec![service("one", "One", &["sms.send"])]);
        frames.push(frame(&mut seq, svc));
    }
    // Unseen: alice replaces her service while the consumer is away.
    let lost = alice.commit(vec![
        delete("dev.guildhall.service/one"),
        service("two", "Two", &["sms.send"]),
    ]);
    let (did, car) = alice.export();
    net.set_head(&did, &lost.wire.rev, car);
    // Unseen too, and carol writes nothing afterwards: only the recheck can find it.
    let quiet = carol.commit(vec![delete("dev.guildhall.service/one")]);
    let (did, car) = carol.export();
    net.set_head(&did, &quiet.wire.rev, car);
    let (did, car) = bob.export();
    let bob_rev = bob
        .repo
        .head()
        .map(|(rev, _)| rev.to_string())
        .expect("bob has a head");
    net.set_head(&did, &bob_rev, car);
    frames.push(guildhall_proto::forge::frame_of(
        "#info",
        &InfoBody {
            name: "OutdatedCursor",
            message: Some("cursor too old"),
        },
    ));
    // Live again: alice's next commit chains on the state the recheck fetched.
    let three = alice.commit(vec![service("three", "Three", &["sms.send"])]);
    frames.push(frame(&mut seq, three));

    let ctx = context(store.clone(), &net);
    replay(
        &ctx,
        vec!["memory".to_owned()],
        frames.into_iter().map(|f| (0, f)).collect(),
    )
    .await;

    for a in [&alice, &bob, &carol] {
        let held = store
            .list_records(a.did.as_str(), "dev.guildhall.service")
            .await
            .expect("list");
        assert_eq!(held, a.expected("dev.guildhall.service"), "{}", a.handle);
    }
    let calls = net.get_repo_calls();
    assert_eq!(calls.get(alice.did.as_str()), Some(&1), "{calls:?}");
    assert_eq!(calls.get(carol.did.as_str()), Some(&1), "{calls:?}");
    assert_eq!(
        calls.get(bob.did.as_str()),
        None,
        "bob did not move: {calls:?}"
    );
    let text = ctx.metrics.render();
    assert_eq!(counter(&text, "guildhall_rechecks_total"), 3, "{text}");
    assert_eq!(counter(&text, "guildhall_resyncs_total"), 2, "{text}");
    assert_eq!(ctx.metrics.verify_failures(), Default::default());
}

#[derive(serde::Serialize)]
struct InfoBody<'a> {
    name: &'a str,
    message: Option<&'a str>,
}

both!(
    invalid_input_never_reaches_the_index,
    account_events_need_the_accounts_host,
    a_gap_in_the_stream_rechecks_tracked_repos
);
