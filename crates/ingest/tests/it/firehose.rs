//! The real pipeline (`indexer::run`, websocket and all) against our own loopback firehose:
//! valid commits interleaved with forgeries, replays, broken socket input and a future cursor.
//! What reaches the index must be exactly what the forged repos hold.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use guildhall_ingest::firehose::SubscribeConfig;
use guildhall_ingest::indexer::{self, Context, IndexerConfig};
use guildhall_proto::cbor;
use guildhall_proto::forge::{Forged, WireCommit};
use guildhall_store::{Batch, RepoStatus, Store};
use tokio::sync::watch;
use url::Url;

use crate::forged::{Account, delete, endorsement, path_of, post, service};
use crate::harness::{self, both};
use crate::net::{Net, Step};

/// A context whose resolver, handle resolver and PDS are all `net`.
pub fn context(store: Store, net: &Net) -> Arc<Context> {
    harness::context(store, harness::resolver(&net.http, Some(&net.http), true))
}

/// A Prometheus counter's value from the exposition text (0 when absent).
pub fn counter(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Builds the firehose script: events with their seqs and the PDS state after each.
#[derive(Default)]
struct Script {
    steps: Vec<Step>,
    seq: i64,
    get_repo: HashMap<String, u64>,
}

impl Script {
    fn push(&mut self, mut f: Forged, export: Option<(String, Vec<u8>)>) -> WireCommit {
        self.seq += 1;
        f.wire.seq = self.seq;
        self.steps.push(Step::Event {
            seq: self.seq,
            bytes: f.wire.frame(),
            export,
        });
        f.wire
    }

    /// A valid commit of `a`.
    fn valid(&mut self, a: &mut Account, writes: Vec<guildhall_proto::forge::Write>) -> WireCommit {
        let f = a.commit(writes);
        let export = a.export();
        self.push(f, Some(export))
    }

    /// A forged commit: the PDS's state does not change.
    fn forged(&mut self, f: Forged) {
        self.push(f, None);
    }

    /// An earlier commit sent again under a new seq.
    fn replay(&mut self, wire: &WireCommit) {
        self.seq += 1;
        let mut w = wire.clone();
        w.seq = self.seq;
        self.steps.push(Step::Event {
            seq: self.seq,
            bytes: w.frame(),
            export: None,
        });
    }

    /// Holds the stream until `a` has been fetched with `getRepo` once more.
    fn await_resync(&mut self, a: &Account) {
        let calls = self.get_repo.entry(a.did.to_string()).or_default();
        *calls += 1;
        self.steps.push(Step::AwaitGetRepo {
            did: a.did.to_string(),
            calls: *calls,
        });
    }

    fn once(&mut self, bytes: Vec<u8>) {
        self.steps.push(Step::Once(bytes));
    }
}

async fn forged_firehose(store: Store) {
    let net = Net::start().await.expect("start servers");
    let mut alice = Account::new("alice", 1);
    let mut bob = Account::new("bob", 2);
    let mut carol = Account::new("carol", 3);
    let mut dave = Account::new("dave", 4);
    for a in [&alice, &bob, &carol, &dave] {
        net.add_account(a.did.as_str(), &a.handle, &a.key());
    }

    let mut s = Script::default();
    // Account creation: genesis commits without ops, and a record outside our collections.
    s.valid(&mut alice, vec![]);
    s.valid(&mut dave, vec![]);
    s.valid(&mut dave, vec![post("3kaaaaaaaaa22")]);
    s.valid(&mut bob, vec![]);
    // First sight of alice and bob: prevData is the empty tree, so the commit proves the whole
    // repo and no getRepo is needed.
    s.valid(
        &mut alice,
        vec![
            service("translate", "Translate", &["text.translate"]),
            service("ocr", "OCR", &["vision.ocr"]),
        ],
    );
    s.valid(&mut bob, vec![service("sms", "SMS gateway", &["sms.send"])]);
    // First sight of carol (no prevData: a first commit with ops) and dave (a tree we have not
    // seen): both are fetched whole.
    s.valid(
        &mut carol,
        vec![
            service("pay", "Payments", &["payments.card.charge"]),
            endorsement(1, &alice.did, 80),
        ],
    );
    s.await_resync(&carol);
    s.valid(&mut dave, vec![service("geo", "Geocoder", &["geo.lookup"])]);
    s.await_resync(&dave);
    let replay_me = s.valid(&mut alice, vec![endorsement(2, &bob.did, 90)]);
    let bob_e4 = endorsement(4, &carol.did, 40);
    let bob_e4_path = path_of(&bob_e4).to_owned();
    s.valid(&mut bob, vec![endorsement(3, &alice.did, 70), bob_e4]);
    s.once(b"\xff\x00 this is not a frame".to_vec());
    s.valid(
        &mut carol,
        vec![service(
            "pay",
            "Payments v2",
            &["payments.card.charge", "payments.card.refund"],
        )],
    );
    s.valid(
        &mut alice,
        vec![service("translate", "Translate Pro", &["text.translate"])],
    );

    // Forgery 1: alice's next commit signed with another key. Its chain fits what we hold,
    // so it is junk, not a sign that our copy is behind: dropped, and no getRepo.
    let evil_sig = service("evil-sig", "Evil", &["sms.send"]);
    let evil_sig_path = path_of(&evil_sig).to_owned();
    let f = alice.replica(99).commit(&[evil_sig]).expect("forge");
    s.forged(f);
    // Forgery 2: an old commit of alice again.
    s.replay(&replay_me);
    s.valid(&mut dave, vec![endorsement(5, &alice.did, 60)]);
    // Forgery 3: bob's key signs, but prevData claims a tree we never held.
    let evil_prev = endorsement(6, &dave.did, 100);
    let evil_prev_path = path_of(&evil_prev).to_owned();
    let mut f = bob
        .replica(bob.seed_byte())
        .commit(&[evil_prev])
        .expect("forge");
    f.wire.prev_data = Some(cbor::cid_for_cbor(b"\xa0"));
    s.forged(f);
    s.await_resync(&bob);
    // After a barrier, so the connection the garbage above closed has stopped sending (it
    // waits at the barrier until a newer connection exists) and this reaches the live one.
    s.once(vec![0x5a; 5_300_000]);
    // Life goes on.
    s.valid(&mut bob, vec![delete(&bob_e4_path)]);
    s.valid(
        &mut alice,
        vec![
            delete("dev.guildhall.service/ocr"),
            service("summarize", "Summarize", &["text.summarize"]),
        ],
    );
    s.valid(&mut carol, vec![endorsement(7, &dave.did, 55)]);
    s.valid(
        &mut dave,
        vec![service("geo", "Geocoder 2", &["geo.lookup", "geo.reverse"])],
    );
    let last_seq = s.seq;
    net.set_script(s.steps);

    // The stored cursor is ahead of this server: it must answer FutureCursor, and we go live.
    let source = Url::parse(&net.ws).expect("ws url");
    store
        .apply(&Batch {
            cursors: vec![(source.to_string(), 1_000_000)],
            changes: Vec::new(),
        })
        .await
        .expect("seed cursor");

    let ctx = context(store.clone(), &net);
    let config = IndexerConfig {
        sources: vec![source.clone()],
        shards: 2,
        queue: 64,
        batch_max: 100,
        batch_delay: Duration::from_millis(5),
        subscribe: SubscribeConfig {
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(20),
        },
        recheck_at_start: false,
        resync: Default::default(),
    };
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(indexer::run(ctx.clone(), config, shutdown));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let cursor = store.cursor(source.as_str()).await.expect("cursor");
        if cursor == Some(last_seq) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingestion stalled at cursor {cursor:?} of {last_seq}; metrics:\n{}",
            ctx.metrics.render()
        );
        assert!(!running.is_finished(), "indexer stopped early");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    running.await.expect("join").expect("indexer run");

    let m = &ctx.metrics;
    let text = m.render();
    let failures = m.verify_failures();
    let expected: std::collections::BTreeMap<String, u64> = [
        ("bad_signature", 1),
        ("prev_data_mismatch", 1),
        ("rev_not_increasing", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(failures, expected, "verify failures by kind\n{text}");
    assert_eq!(
        net.barrier_timeouts(),
        0,
        "a resync the script waited for never came"
    );
    // carol and dave at first sight, bob after prevData; never alice (first seen from the
    // empty tree, and her forgery fits the chain).
    let calls = net.get_repo_calls();
    assert_eq!(calls.get(alice.did.as_str()), None, "getRepo of alice");
    for a in [&bob, &carol, &dave] {
        assert_eq!(
            calls.get(a.did.as_str()),
            Some(&1),
            "getRepo of {}",
            a.handle
        );
    }
    assert_eq!(counter(&text, "guildhall_resyncs_total"), 3, "{text}");
    assert_eq!(
        counter(&text, "guildhall_commits_refused_total"),
        1,
        "{text}"
    );
    assert_eq!(counter(&text, "guildhall_resync_failures_total"), 0);
    // Verified commits: alice 4, bob 3, carol 2, dave 2 (first-sight fetches and forgeries
    // are not verified commits).
    assert_eq!(
        counter(&text, "guildhall_commits_verified_total"),
        11,
        "{text}"
    );
    // Three genesis commits and dave's post never left the dispatcher.
    assert_eq!(
        counter(&text, "guildhall_commits_skipped_total"),
        4,
        "{text}"
    );
    assert_eq!(counter(&text, "guildhall_records_rejected_total"), 0);
    assert_eq!(counter(&text, "guildhall_identity_failures_total"), 0);

    // The socket: FutureCursor, then garbage and an oversized message, each survived.
    assert_eq!(
        counter(
            &text,
            "guildhall_server_messages_total{name=\"FutureCursor\"}"
        ),
        1,
        "{text}"
    );
    assert_eq!(
        counter(&text, "guildhall_frame_errors_total{error=\"undecodable\"}"),
        1,
        "{text}"
    );
    assert!(
        counter(&text, "guildhall_frame_errors_total{error=\"socket\"}") >= 1,
        "{text}"
    );
    let conns = net.connections();
    assert_eq!(conns.first(), Some(&Some(1_000_000)), "{conns:?}");
    assert_eq!(
        conns.get(1),
        Some(&None),
        "went live after FutureCursor: {conns:?}"
    );
    assert!(
        conns.len() >= 4,
        "reconnected after each disruption: {conns:?}"
    );
    assert!(
        conns[2..]
            .iter()
            .all(|c| c.is_some_and(|c| c > 0 && c <= last_seq)),
        "resumed from its cursor: {conns:?}"
    );

    // The index is exactly the forged repos, and each repo's state is its head.
    let mut total = 0;
    for a in [&alice, &bob, &carol, &dave] {
        for collection in ["dev.guildhall.service", "dev.guildhall.endorsement"] {
            let want = a.expected(collection);
            total += want.len();
            let got = store
                .list_records(a.did.as_str(), collection)
                .await
                .expect("list");
            assert_eq!(got, want, "{} {collection}", a.handle);
        }
        let (rev, data) = a.repo.head().expect("head").clone();
        let row = store
            .repo(a.did.as_str())
            .await
            .expect("repo")
            .expect("row");
        assert_eq!(row.status, RepoStatus::Synced, "{}", a.handle);
        assert_eq!(row.rev.as_deref(), Some(rev.as_str()), "{}", a.handle);
        assert_eq!(row.data_cid, Some(data.to_string()), "{}", a.handle);
        let op = store.operator(a.did.as_str()).await.expect("operator");
        let op = op.expect("operator row");
        assert_eq!(op.handle.as_deref(), Some(a.handle.as_str()));
        assert!(op.handle_verified, "{} handle verified both ways", a.handle);
    }
    let stats = store.stats().await.expect("stats");
    assert_eq!(
        stats.records as usize, total,
        "no other record in the index"
    );
    assert_eq!(stats.rejections, 0);
    for (a, path) in [
        (&alice, &evil_sig_path),
        (&bob, &evil_prev_path),
        (&bob, &bob_e4_path),
    ] {
        assert_eq!(
            store.record(&a.uri(path)).await.expect("record"),
            None,
            "{path}"
        );
    }
    assert!(alice.model.contains_key("dev.guildhall.service/summarize"));
}

both!(forged_firehose);
