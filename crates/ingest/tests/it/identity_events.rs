//! `#identity` and `#sync` through the real pipeline: an account's DID lives in the reference
//! PLC directory (created and rotated here with signed operations), its repo and firehose are
//! the loopback `Net`. After a key rotation and `#identity`, commits signed with the new key are
//! indexed and commits signed with the old one are refused; `#sync` moves the repo's state,
//! resyncs it when the data differs, and is refused when badly signed. A lost `#identity` costs
//! at most the resolver's refresh interval.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use guildhall_ingest::firehose::SubscribeConfig;
use guildhall_ingest::identity::REFRESH_INTERVAL;
use guildhall_ingest::indexer::{self, Context, IndexerConfig};
use guildhall_proto::car::{self, BlockMap};
use guildhall_proto::cbor;
use guildhall_proto::crypto::{PublicKey, SigningKey};
use guildhall_proto::forge::{ForgeRepo, Forged, Write, frame_of};
use guildhall_proto::identity::DidDocument;
use guildhall_proto::syntax::Did;
use guildhall_store::{RepoStatus, Store};
use guildhall_testkit::plc::{PlcDid, PlcState};
use guildhall_testkit::{Peer, PeerOptions};
use ipld_core::ipld::Ipld;
use tokio::sync::watch;
use url::Url;

use crate::firehose::counter;
use crate::forged::{endorsement, path_of, service};
use crate::harness::{self, both};
use crate::net::{Net, Step};

const SERVICES: &str = "dev.guildhall.service";
const ENDORSEMENTS: &str = "dev.guildhall.endorsement";

/// An account whose signing key can change: its repo is rebuilt under the new key from the
/// same writes, so revs and trees stay and only the signatures change.
struct Author {
    did: Did,
    key_seed: u8,
    repo: ForgeRepo,
    history: Vec<Vec<Write>>,
    /// `collection/rkey` → CID, as the repo holds it now.
    model: BTreeMap<String, Cid>,
}

fn key(seed: u8) -> SigningKey {
    SigningKey::generate_from_seed(&[seed; 32])
}

impl Author {
    fn new(did: &str, key_seed: u8) -> Self {
        let did = Did::parse(did).expect("did");
        Self {
            repo: ForgeRepo::new(did.clone(), key(key_seed)),
            did,
            key_seed,
            history: Vec::new(),
            model: BTreeMap::new(),
        }
    }

    /// The same repo signing with the key of `seed`; commits on it never reach the real repo.
    fn replica(&self, seed: u8) -> ForgeRepo {
        let mut r = ForgeRepo::new(self.did.clone(), key(seed));
        for w in &self.history {
            r.commit(w).expect("replay");
        }
        r
    }

    /// The PDS now signs with the key of `seed`.
    fn rotate(&mut self, seed: u8) {
        self.repo = self.replica(seed);
        self.key_seed = seed;
    }

    fn commit(&mut self, writes: Vec<Write>) -> Forged {
        let f = self.repo.commit(&writes).expect("commit");
        for w in &writes {
            match w {
                Write::Put { path, record } => {
                    self.model.insert(path.clone(), cbor::cid_for_cbor(record));
                }
                Write::Delete { path } => {
                    self.model.remove(path);
                }
            }
        }
        self.history.push(writes);
        f
    }

    fn export(&self) -> (String, Vec<u8>) {
        (
            self.did.to_string(),
            self.repo.export_car().expect("export"),
        )
    }

    fn head(&self) -> (String, String) {
        let (rev, data) = self.repo.head().expect("head");
        (rev.to_string(), data.to_string())
    }

    fn uri(&self, path: &str) -> String {
        format!("at://{}/{path}", self.did)
    }

    fn expected(&self, collection: &str) -> Vec<(String, String)> {
        self.model
            .iter()
            .filter(|(p, _)| p.split_once('/').is_some_and(|(c, _)| c == collection))
            .map(|(p, c)| (self.uri(p), c.to_string()))
            .collect()
    }
}

/// The firehose script, with the PDS's state after each event.
#[derive(Default)]
struct Script {
    steps: Vec<Step>,
    seq: i64,
}

impl Script {
    fn event(&mut self, bytes: impl FnOnce(i64) -> Vec<u8>, export: Option<(String, Vec<u8>)>) {
        self.seq += 1;
        self.steps.push(Step::Event {
            seq: self.seq,
            bytes: bytes(self.seq),
            export,
        });
    }

    /// A commit the PDS made: its frame, and the repo it serves from then on.
    fn valid(&mut self, a: &mut Author, writes: Vec<Write>) {
        let mut f = a.commit(writes);
        let export = a.export();
        self.event(
            |seq| {
                f.wire.seq = seq;
                f.wire.frame()
            },
            Some(export),
        );
    }

    /// A commit the PDS never made (the repo it serves does not change).
    fn forged(&mut self, mut f: Forged) {
        self.event(
            |seq| {
                f.wire.seq = seq;
                f.wire.frame()
            },
            None,
        );
    }

    /// An `#identity` event; `export` is the PDS's repo from then on.
    fn identity(&mut self, did: &Did, handle: &str, export: Option<(String, Vec<u8>)>) {
        self.event(
            |seq| {
                frame_of(
                    "#identity",
                    &Ipld::Map(BTreeMap::from([
                        ("seq".to_owned(), Ipld::Integer(seq.into())),
                        ("did".to_owned(), Ipld::String(did.to_string())),
                        ("handle".to_owned(), Ipld::String(handle.to_owned())),
                        ("time".to_owned(), Ipld::String(NOW.to_owned())),
                    ])),
                )
            },
            export,
        );
    }

    /// A `#sync` carrying the commit of `f` alone; `export` is the PDS's repo from then on.
    fn sync(&mut self, did: &Did, f: &Forged, export: Option<(String, Vec<u8>)>) {
        let mut only_commit = BlockMap::new();
        let commit = f.blocks.get(&f.root).expect("commit block").to_vec();
        only_commit.insert(f.root, commit);
        let blocks = car::write_car(&[f.root], &only_commit);
        let rev = f.wire.rev.clone();
        self.event(
            |seq| {
                frame_of(
                    "#sync",
                    &Ipld::Map(BTreeMap::from([
                        ("seq".to_owned(), Ipld::Integer(seq.into())),
                        ("did".to_owned(), Ipld::String(did.to_string())),
                        ("blocks".to_owned(), Ipld::Bytes(blocks)),
                        ("rev".to_owned(), Ipld::String(rev)),
                        ("time".to_owned(), Ipld::String(NOW.to_owned())),
                    ])),
                )
            },
            export,
        );
    }
}

const NOW: &str = "2026-01-01T00:00:00.000Z";

/// The pipeline's context: DID documents from the reference PLC, handles and repos from `net`.
fn context(store: Store, plc: &str, net: &Net) -> Arc<Context> {
    harness::context(store, harness::resolver(plc, Some(&net.http), true))
}

/// Runs `indexer::run` on `net`'s firehose until the stored cursor reaches `last_seq` and
/// `a`'s repo row names its head (a resync may finish after the cursor moved), then stops it.
async fn follow(ctx: &Arc<Context>, net: &Net, last_seq: i64, a: &Author) {
    let source = Url::parse(&net.ws).expect("ws url");
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
        // Quick retries: a test must not wait out production back-off.
        resync: crate::hostile::resync_config(),
    };
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(indexer::run(ctx.clone(), config, shutdown));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let cursor = ctx.store.cursor(source.as_str()).await.expect("cursor");
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
    // Give a background resync a little time to land; the assertions say what is missing.
    let (rev, _) = a.head();
    let settle = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < settle {
        let row = ctx.store.repo(a.did.as_str()).await.expect("repo");
        if row.is_some_and(|r| r.status == RepoStatus::Synced && r.rev.as_deref() == Some(&rev)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    running.await.expect("join").expect("indexer run");
}

/// The index holds exactly what `a`'s repo holds, and the repo row names its head.
async fn assert_index_is_repo(store: &Store, a: &Author, when: &str) {
    for collection in [SERVICES, ENDORSEMENTS] {
        let got = store
            .list_records(a.did.as_str(), collection)
            .await
            .expect("list");
        assert_eq!(got, a.expected(collection), "{when}: {collection}");
    }
    let (rev, data) = a.head();
    let row = store
        .repo(a.did.as_str())
        .await
        .expect("repo")
        .expect("repo row");
    assert_eq!(row.status, RepoStatus::Synced, "{when}");
    assert_eq!(row.rev.as_deref(), Some(rev.as_str()), "{when}: rev");
    assert_eq!(row.data_cid.as_deref(), Some(data.as_str()), "{when}: data");
}

/// The `#atproto` key of the DID document the reference PLC serves now.
async fn served_key(peer: &Peer, did: &Did) -> PublicKey {
    let doc = peer.did_document(did.as_str()).await.expect("document");
    let bytes = serde_json::to_vec(&doc).expect("json");
    DidDocument::from_json(&bytes)
        .expect("did document")
        .atproto_key()
        .expect("#atproto key")
}

async fn start_peer() -> Peer {
    Peer::start(PeerOptions {
        accounts: 0,
        ..PeerOptions::default()
    })
    .await
    .expect("reference PLC")
}

fn verify_failures(ctx: &Context) -> BTreeMap<String, u64> {
    ctx.metrics.verify_failures()
}

fn failures(kinds: &[(&str, u64)]) -> BTreeMap<String, u64> {
    kinds.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

/// K1 signs, the PLC rotates `#atproto` to K2, `#identity` follows: from then on K2's commits
/// are indexed and K1's — well-formed, chained on the real head, even reusing the rev the next
/// real commit takes — are refused as bad signatures and leave no trace in the index.
async fn rotated_key_after_identity_event(store: Store) {
    const K1: u8 = 11;
    const K2: u8 = 12;
    let peer = start_peer().await;
    let plc = peer.info().plc_url.clone();
    let net = Net::start().await.expect("servers");
    let pds = net.http.trim_end_matches('/').to_owned();
    let mut state = PlcState {
        signing_key: key(K1).public_key(),
        handle: "rot.test".to_owned(),
        pds: pds.clone(),
    };
    let mut did = PlcDid::create(&plc, key(200), &state)
        .await
        .expect("create did:plc");
    let mut a = Author::new(&did.did, K1);
    assert_eq!(served_key(&peer, &a.did).await, key(K1).public_key());
    // Handles resolve through `net`; its own copy of the document is not what the resolver reads.
    net.add_account(a.did.as_str(), &state.handle, &key(K1).public_key());

    // Phase 1: signed with K1, the key the PLC names.
    let mut s = Script::default();
    s.valid(&mut a, vec![]);
    s.valid(&mut a, vec![service("one", "One", &["sms.send"])]);
    let other = Did::parse("did:plc:otheraaaaaaaaaaaaaaaaaaa").expect("did");
    s.valid(&mut a, vec![endorsement(1, &other, 70)]);
    net.set_script(s.steps.clone());
    let ctx = context(store.clone(), &plc, &net);
    follow(&ctx, &net, s.seq, &a).await;
    assert_index_is_repo(&store, &a, "signed with K1").await;
    assert_eq!(verify_failures(&ctx), BTreeMap::new());
    let op = store
        .operator(a.did.as_str())
        .await
        .expect("operator")
        .expect("operator row");
    assert_eq!(op.handle.as_deref(), Some("rot.test"));
    assert!(op.handle_verified);

    // Someone without the rotation key cannot do the same: the directory refuses the operation
    // and keeps serving K1 (so the rotation below is accepted for its signature, not by luck).
    let hijack = PlcState {
        signing_key: key(66).public_key(),
        ..state.clone()
    };
    let refused = did.update_signed_by(&hijack, &key(66)).await;
    assert!(
        refused.is_err(),
        "PLC accepted an update not signed by the rotation key"
    );
    assert_eq!(served_key(&peer, &a.did).await, key(K1).public_key());

    // The rotation: a signed update operation (prev = the genesis op's CID) naming K2, and a
    // new handle, so the document's other fields visibly move too.
    state.signing_key = key(K2).public_key();
    state.handle = "rot2.test".to_owned();
    did.update(&state).await.expect("rotate #atproto");
    assert_eq!(served_key(&peer, &a.did).await, key(K2).public_key());
    net.add_account(a.did.as_str(), &state.handle, &key(K2).public_key());
    // The PDS re-signs its head with K2 (same rev, same tree): what getRepo serves from now.
    a.rotate(K2);

    // Phase 2, on the same resolver (it still holds K1 from phase 1). Each later phase ends at
    // a forgery or just after it: the firehose sends eagerly, and if the indexer answers a
    // refusal with a resync, getRepo must show the real head as of that event, not the
    // commits the stream has queued behind it (those are what this test wants verified).
    s.identity(&a.did, &state.handle, Some(a.export()));
    // First after the event, before any K2 commit could make the resolver look again: K1 on
    // the exact next commit (chained, same rev as the next real one). Only a resolver that
    // dropped K1 on `#identity` refuses it.
    let stale_one = service("stale-one", "Stale", &["sms.send"]);
    let stale_one_path = path_of(&stale_one).to_owned();
    s.forged(a.replica(K1).commit(&[stale_one]).expect("forge"));
    net.set_script(s.steps.clone());
    follow(&ctx, &net, s.seq, &a).await;
    assert_eq!(
        verify_failures(&ctx),
        failures(&[("bad_signature", 1)]),
        "{}",
        ctx.metrics.render()
    );
    assert_index_is_repo(&store, &a, "K1 right after #identity").await;
    let op = store
        .operator(a.did.as_str())
        .await
        .expect("operator")
        .expect("operator row");
    assert_eq!(op.handle.as_deref(), Some("rot2.test"), "#identity re-read");
    assert!(op.handle_verified);

    // Phase 3: K2 commits verify; K1 again, between them, does not.
    s.valid(&mut a, vec![service("two", "Two", &["sms.send"])]);
    s.valid(
        &mut a,
        vec![
            service("one", "One v2", &["sms.send", "sms.receive"]),
            endorsement(2, &other, 40),
        ],
    );
    let stale_two = endorsement(3, &other, 100);
    let stale_two_path = path_of(&stale_two).to_owned();
    s.forged(a.replica(K1).commit(&[stale_two]).expect("forge"));
    net.set_script(s.steps.clone());
    follow(&ctx, &net, s.seq, &a).await;
    // Phase 4: the next K2 commit still chains on the real head.
    s.valid(&mut a, vec![service("three", "Three", &["sms.send"])]);
    net.set_script(s.steps.clone());
    follow(&ctx, &net, s.seq, &a).await;

    let text = ctx.metrics.render();
    assert_eq!(
        verify_failures(&ctx),
        failures(&[("bad_signature", 2)]),
        "{text}"
    );
    // Phase 1: the first commit with records (from the empty tree) and the endorsement;
    // phases 3 and 4: the three K2 commits.
    assert_eq!(
        counter(&text, "guildhall_commits_verified_total"),
        5,
        "{text}"
    );
    assert_eq!(counter(&text, "guildhall_identity_failures_total"), 0);
    assert_index_is_repo(&store, &a, "after the rotation").await;
    for path in [&stale_one_path, &stale_two_path] {
        assert_eq!(
            store.record(&a.uri(path)).await.expect("record"),
            None,
            "{path} signed with the old key"
        );
    }
}

/// `#sync` declaring the state we hold moves the rev (the next commit chains on it, no
/// `getRepo`); one declaring other data (commits we never saw) resyncs the repo to exactly its
/// content; one signed with a key the DID document does not name changes nothing.
async fn sync_events(store: Store) {
    const K: u8 = 21;
    let peer = start_peer().await;
    let plc = peer.info().plc_url.clone();
    let net = Net::start().await.expect("servers");
    let state = PlcState {
        signing_key: key(K).public_key(),
        handle: "syncer.test".to_owned(),
        pds: net.http.trim_end_matches('/').to_owned(),
    };
    let did = PlcDid::create(&plc, key(201), &state)
        .await
        .expect("create did:plc");
    let mut a = Author::new(&did.did, K);
    net.add_account(a.did.as_str(), &state.handle, &key(K).public_key());
    let other = Did::parse("did:plc:otheraaaaaaaaaaaaaaaaaaa").expect("did");

    let mut s = Script::default();
    s.valid(&mut a, vec![]);
    s.valid(&mut a, vec![service("one", "One", &["sms.send"])]);
    s.valid(&mut a, vec![endorsement(1, &other, 70)]);
    // 1. Same data, new rev (a PDS re-signing its head, e.g. after a migration).
    let resigned = a.commit(vec![]);
    s.sync(&a.did, &resigned, Some(a.export()));
    let synced_rev = resigned.wire.rev.clone();
    // Chains on the #sync's rev: it verifies only if the #sync moved our state.
    s.valid(&mut a, vec![service("two", "Two", &["sms.send"])]);
    let ctx = context(store.clone(), &plc, &net);
    net.set_script(s.steps.clone());
    follow(&ctx, &net, s.seq, &a).await;
    assert_eq!(
        verify_failures(&ctx),
        BTreeMap::new(),
        "{}",
        ctx.metrics.render()
    );
    assert_eq!(net.get_repo_calls().get(a.did.as_str()), None, "no resync");
    assert_index_is_repo(&store, &a, "after a matching #sync").await;
    let (head_rev, _) = a.head();
    assert!(head_rev > synced_rev);

    // 2. Commits we never saw, then a #sync of the new head: the data differs, so resync.
    a.commit(vec![
        crate::forged::delete("dev.guildhall.service/one"),
        service("lost", "Lost", &["sms.send"]),
    ]);
    let head = a.commit(vec![endorsement(2, &other, 30)]);
    s.sync(&a.did, &head, Some(a.export()));
    net.set_script(s.steps.clone());
    follow(&ctx, &net, s.seq, &a).await;
    assert_eq!(
        net.get_repo_calls().get(a.did.as_str()),
        Some(&1),
        "one resync"
    );
    assert_eq!(verify_failures(&ctx), BTreeMap::new());
    assert_index_is_repo(&store, &a, "after a #sync with other data").await;

    // 3. A #sync signed by another key, declaring a tree the repo never had: refused, nothing
    // fetched, nothing moved; the next real commit (same rev as the forgery) still chains.
    let evil = service("evil", "Evil", &["sms.send"]);
    let evil_path = path_of(&evil).to_owned();
    let forged = a.replica(99).commit(&[evil]).expect("forge");
    s.sync(&a.did, &forged, None);
    s.valid(&mut a, vec![service("after", "After", &["sms.send"])]);
    net.set_script(s.steps.clone());
    follow(&ctx, &net, s.seq, &a).await;
    let text = ctx.metrics.render();
    assert_eq!(
        verify_failures(&ctx),
        failures(&[("bad_signature", 1)]),
        "{text}"
    );
    assert_eq!(
        net.get_repo_calls().get(a.did.as_str()),
        Some(&1),
        "a badly signed #sync costs no getRepo"
    );
    assert_eq!(
        store.record(&a.uri(&evil_path)).await.expect("record"),
        None
    );
    assert_index_is_repo(&store, &a, "after a badly signed #sync").await;
}

/// A lost `#identity` (a relay dropped it) costs at most [`REFRESH_INTERVAL`]: a commit signed
/// with the new key arriving within it may be refused (refreshes are rate-limited) and leave
/// the repo desynchronized, but once the interval has passed the next commit's resync looks
/// the key up again and the repo is indexed whole.
async fn missed_identity_event_costs_at_most_the_refresh_interval(store: Store) {
    const K1: u8 = 31;
    const K2: u8 = 32;
    let peer = start_peer().await;
    let plc = peer.info().plc_url.clone();
    let net = Net::start().await.expect("servers");
    let mut state = PlcState {
        signing_key: key(K1).public_key(),
        handle: "missed.test".to_owned(),
        pds: net.http.trim_end_matches('/').to_owned(),
    };
    let mut did = PlcDid::create(&plc, key(202), &state)
        .await
        .expect("create did:plc");
    let mut a = Author::new(&did.did, K1);
    net.add_account(a.did.as_str(), &state.handle, &key(K1).public_key());

    let mut s = Script::default();
    s.valid(&mut a, vec![]);
    s.valid(&mut a, vec![service("one", "One", &["sms.send"])]);
    net.set_script(s.steps.clone());
    let ctx = context(store.clone(), &plc, &net);
    follow(&ctx, &net, s.seq, &a).await;
    assert_index_is_repo(&store, &a, "signed with K1").await;
    let fetched_k1 = tokio::time::Instant::now();

    // Rotated, and the #identity never arrives.
    state.signing_key = key(K2).public_key();
    did.update(&state).await.expect("rotate #atproto");
    a.rotate(K2);
    s.valid(&mut a, vec![service("two", "Two", &["sms.send"])]);
    net.set_script(s.steps.clone());
    follow(&ctx, &net, s.seq, &a).await;

    tokio::time::sleep_until(fetched_k1 + REFRESH_INTERVAL + Duration::from_secs(1)).await;
    s.valid(&mut a, vec![service("three", "Three", &["sms.send"])]);
    net.set_script(s.steps.clone());
    follow(&ctx, &net, s.seq, &a).await;
    assert_index_is_repo(&store, &a, "a refresh interval after the missed #identity").await;
}

both!(
    rotated_key_after_identity_event,
    sync_events,
    missed_identity_event_costs_at_most_the_refresh_interval
);
