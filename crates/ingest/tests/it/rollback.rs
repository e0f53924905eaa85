//! No rollback: a repo snapshot older than the rev the store records is refused whole, inside
//! the store's transaction. Snapshots are real `getRepo` exports of the reference PDS, taken
//! before and after a revocation, as a `guildhall backfill` and a `serve` beside it (or a
//! lagging host answering a resync) would apply them — in either order, and racing.

use std::sync::Arc;

use guildhall_ingest::metrics::Metrics;
use guildhall_ingest::repo::{RepoFetcher, Snapshot};
use guildhall_proto::syntax::Did;
use guildhall_store::{Batch, Store};
use guildhall_testkit::{Peer, PeerOptions};
use serde_json::json;

use crate::harness::both;

const ENDORSEMENT: &str = "dev.guildhall.endorsement";

/// Alice's repo before and after she revokes her endorsement of Bob, and the URI revoked.
async fn before_and_after(peer: &Peer) -> (Did, Snapshot, Snapshot, String) {
    let resolver = crate::harness::resolver(&peer.info().plc_url, None, true);
    let fetcher = RepoFetcher::new(resolver, Arc::new(Metrics::default()), 64 << 20);
    let [alice, bob] = [&peer.accounts()[0], &peer.accounts()[1]];
    let endorsement = json!({
        "$type": ENDORSEMENT,
        "subject": bob.did,
        "strength": 80,
        "createdAt": "2026-12-01T00:00:00.000Z",
    });
    let x = peer.xrpc();
    let written = x
        .create_record(
            &alice.pds_url,
            &alice.access_jwt,
            &alice.did,
            ENDORSEMENT,
            Some("bob"),
            &endorsement,
        )
        .await
        .expect("endorse");
    let did = Did::parse(&alice.did).expect("did");
    let old = fetcher
        .fetch(&did)
        .await
        .expect("snapshot with the endorsement");
    x.delete_record(
        &alice.pds_url,
        &alice.access_jwt,
        &alice.did,
        ENDORSEMENT,
        "bob",
    )
    .await
    .expect("revoke");
    let new = fetcher
        .fetch(&did)
        .await
        .expect("snapshot after the revocation");
    assert!(old.state.rev.as_str() < new.state.rev.as_str());
    (did, old, new, written.uri)
}

fn batch(s: &Snapshot) -> Batch {
    Batch {
        cursors: Vec::new(),
        changes: s.changes.clone(),
    }
}

/// The index holds the state after the revocation: no endorsement, the newer rev.
async fn assert_after_revocation(store: &Store, did: &Did, uri: &str, new: &Snapshot, when: &str) {
    assert!(
        !endorsement_held(store, did, uri).await,
        "{when}: the revoked endorsement came back"
    );
    let repo = store
        .repo(did.as_str())
        .await
        .expect("repo")
        .expect("tracked");
    assert_eq!(repo.rev.as_deref(), Some(new.state.rev.as_str()), "{when}");
}

async fn endorsement_held(store: &Store, did: &Did, uri: &str) -> bool {
    store
        .endorsements_by_author(did.as_str(), None, 100)
        .await
        .expect("read")
        .items
        .iter()
        .any(|e| e.uri == uri)
}

async fn older_snapshot_after_newer_is_refused(store: Store) {
    let peer = Peer::start(PeerOptions {
        accounts: 2,
        ..PeerOptions::default()
    })
    .await
    .expect("peer");
    let (did, old, new, uri) = before_and_after(&peer).await;

    let applied = store.apply(&batch(&new)).await.expect("newer");
    assert_eq!(applied.refused, 0);
    let applied = store.apply(&batch(&old)).await.expect("older");
    assert_eq!(
        applied.refused, 1,
        "the older snapshot was written over the newer one"
    );
    assert_after_revocation(&store, &did, &uri, &new, "older after newer").await;
}

async fn racing_snapshots_end_at_the_newer(store: Store) {
    let peer = Peer::start(PeerOptions {
        accounts: 2,
        ..PeerOptions::default()
    })
    .await
    .expect("peer");
    let (did, old, new, uri) = before_and_after(&peer).await;
    // Each round starts from nothing recorded, then a backfill (old) and a serve (new) write at
    // once. Whichever commits first, the newer state must be what stays.
    for round in 0..10 {
        store
            .apply(&Batch {
                cursors: Vec::new(),
                changes: vec![guildhall_store::Change::Account {
                    did: did.to_string(),
                    status: guildhall_store::OperatorStatus::Deleted,
                }],
            })
            .await
            .expect("reset");
        let (older, newer) = (batch(&old), batch(&new));
        // Alternate which is started first, so a backend that runs them one after the other
        // (SQLite's single writer) sees both orders.
        let (a, b) = if round % 2 == 0 {
            tokio::join!(store.apply(&older), store.apply(&newer))
        } else {
            let (b, a) = tokio::join!(store.apply(&newer), store.apply(&older));
            (a, b)
        };
        let refused = a.expect("old").refused + b.expect("new").refused;
        assert!(refused <= 1, "round {round}");
        assert_after_revocation(&store, &did, &uri, &new, &format!("round {round}")).await;
    }
}

both!(
    older_snapshot_after_newer_is_refused,
    racing_snapshots_end_at_the_newer
);

/// A resync answered with an export older than what the pipeline verified (a lagging or
/// hostile host) is refused: the revoked endorsement stays revoked, the repo keeps its rev.
async fn resync_answered_with_an_older_repo(store: Store) {
    use crate::forged::{Account, delete, endorsement};
    use crate::pipeline::{frame, replay};

    let net = crate::net::Net::start().await.expect("servers");
    let mut alice = Account::new("alice", 1);
    let bob = Account::new("bob", 2);
    net.add_account(alice.did.as_str(), &alice.handle, &alice.key());
    let mut seq = 0;
    let mut frames = vec![frame(&mut seq, alice.commit(vec![]))];
    let endorse = endorsement(1, &bob.did, 80);
    let path = match &endorse {
        guildhall_proto::forge::Write::Put { path, .. } => path.clone(),
        guildhall_proto::forge::Write::Delete { path } => path.clone(),
    };
    let c1 = alice.commit(vec![endorse]);
    let old_rev = c1.wire.rev.clone();
    let (did, old_car) = alice.export();
    frames.push(frame(&mut seq, c1));
    let revoke = alice.commit(vec![delete(&path)]);
    let new_rev = revoke.wire.rev.clone();
    frames.push(frame(&mut seq, revoke));
    // A commit we never see, then one chained on it: the chain breaks and the repo resyncs,
    // from a host that answers with the export from before the revocation.
    let _unseen = alice.commit(vec![]);
    let after = alice.commit(vec![]);
    frames.push(frame(&mut seq, after));
    net.set_head(&did, &old_rev, old_car);

    let ctx = crate::firehose::context(store.clone(), &net);
    replay(
        &ctx,
        vec!["memory".to_owned()],
        frames.into_iter().map(|f| (0, f)).collect(),
    )
    .await;

    let calls = net.get_repo_calls();
    assert!(
        calls.get(alice.did.as_str()).is_some_and(|n| *n >= 1),
        "no resync was tried: {calls:?}"
    );
    let held = store
        .endorsements_by_author(alice.did.as_str(), None, 100)
        .await
        .expect("read")
        .items;
    assert!(
        held.is_empty(),
        "the revoked endorsement came back: {held:?}"
    );
    let repo = store
        .repo(alice.did.as_str())
        .await
        .expect("repo")
        .expect("tracked");
    assert_eq!(
        repo.rev.as_deref(),
        Some(new_rev.as_str()),
        "the repo's rev went back"
    );
    assert_eq!(
        ctx.metrics.verify_failures().get("stale_snapshot"),
        Some(&1)
    );
}

both!(resync_answered_with_an_older_repo);
