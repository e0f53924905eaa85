//! Frames and a repo captured from Bluesky's reference PDS: they decode, and they verify.

use std::collections::HashMap;

use guildhall_proto::car::CarLimits;
use guildhall_proto::crypto::PublicKey;
use guildhall_proto::frame::{self, Frame};
use guildhall_proto::identity::DidDocument;
use guildhall_proto::syntax::Did;
use guildhall_proto::verify::{self, RepoState};
use serde_json::Value;

use crate::vectors::{peer_fixture, read};

fn index() -> Value {
    serde_json::from_slice(&read(&peer_fixture("index.json"))).expect("index.json")
}

/// DID → key, from the fixture index (each account's did:key).
fn keys() -> HashMap<String, PublicKey> {
    index()["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|a| {
            let did = a["did"].as_str().expect("did").to_owned();
            let key = PublicKey::from_did_key(a["signingKey"].as_str().expect("key"))
                .expect("did:key parses");
            (did, key)
        })
        .collect()
}

#[test]
fn single_frames_decode_to_their_types() {
    let idx = index();
    let mut checked = 0;
    for f in idx["files"].as_array().expect("files") {
        let name = f["file"].as_str().expect("file");
        if !name.starts_with("frame-") {
            continue;
        }
        let bytes = read(&peer_fixture(name));
        let decoded = frame::decode_frame(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let route = frame::route(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want_seq = f["seq"].as_i64();
        assert_eq!(decoded.seq(), want_seq, "{name}: seq");
        assert_eq!(route.seq, want_seq, "{name}: routed seq");
        let kind = f["kind"].as_str().expect("kind");
        match &decoded {
            Frame::Commit(c) => {
                assert!(kind.ends_with("#commit"), "{name}");
                assert_eq!(route.did, Some(c.repo.as_str()));
                let paths: Vec<&str> = c.ops.iter().map(|o| o.path.as_str()).collect();
                assert_eq!(route.paths, paths, "{name}: routed paths");
            }
            Frame::Identity(i) => {
                assert!(kind.ends_with("#identity"), "{name}");
                assert_eq!(i.handle.as_deref(), Some("bob-renamed.test"));
            }
            Frame::Account(a) => {
                assert!(kind.ends_with("#account"), "{name}");
                assert!(!a.active);
                assert_eq!(a.status.as_deref(), Some("deactivated"));
            }
            Frame::Sync(_) => assert!(kind.ends_with("#sync"), "{name}"),
            Frame::Error(e) => {
                assert!(kind.contains("error"), "{name}");
                assert_eq!(e.error, "FutureCursor");
                assert_eq!(route.kind, "error");
            }
            other => panic!("{name}: unexpected {other:?}"),
        }
        checked += 1;
    }
    eprintln!("fixtures: {checked} single frames decoded");
    assert_eq!(checked, 7);
}

/// Splits `stream.bin` (`<u32 BE length><frame>`…).
fn stream_frames() -> Vec<Vec<u8>> {
    let bytes = read(&peer_fixture("stream.bin"));
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 4 {
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        out.push(rest[4..4 + n].to_vec());
        rest = &rest[4 + n..];
    }
    assert!(rest.is_empty(), "stream.bin has a torn frame");
    out
}

#[test]
fn captured_stream_verifies_commit_by_commit() {
    let keys = keys();
    let mut state: HashMap<Did, RepoState> = HashMap::new();
    let (mut commits, mut syncs, mut others) = (0, 0, 0);
    // The fixtures were captured on 2026-11-26; "now" a day later keeps the rev clock check honest.
    let now = 1_764_201_600_000_000 + 366 * 86_400_000_000;
    for (i, bytes) in stream_frames().iter().enumerate() {
        match frame::decode_frame(bytes).unwrap_or_else(|e| panic!("frame {i}: {e}")) {
            Frame::Commit(c) => {
                let key = &keys[c.repo.as_str()];
                let prev = state.get(&c.repo);
                let v = verify::verify_commit(&c, key, prev, now)
                    .unwrap_or_else(|e| panic!("frame {i} (seq {}): {e}", c.seq));
                assert_eq!(v.ops.len(), c.ops.len());
                for op in v.ops.iter().filter(|o| o.record.is_some()) {
                    let bytes = op.record.as_ref().expect("record");
                    assert_eq!(
                        Some(guildhall_proto::cbor::cid_for_cbor(bytes)),
                        op.cid,
                        "record block hash"
                    );
                }
                state.insert(c.repo.clone(), v.state);
                commits += 1;
            }
            Frame::Sync(s) => {
                let key = &keys[s.did.as_str()];
                let v = verify::verify_sync(&s, key, None, now)
                    .unwrap_or_else(|e| panic!("frame {i}: {e}"));
                // A #sync after reactivation declares the state the chain already reached.
                if let Some(held) = state.get(&s.did) {
                    assert_eq!(held.data, v.state.data, "sync declares the held tree");
                }
                syncs += 1;
            }
            _ => others += 1,
        }
    }
    eprintln!(
        "fixtures: stream.bin: {commits} commits and {syncs} syncs verified, {others} other frames"
    );
    assert!(
        commits >= 6,
        "expected the scenario's commits, got {commits}"
    );
    assert!(syncs >= 1);
}

#[test]
fn reference_repo_car_verifies_and_yields_its_record() {
    let idx = index();
    let alice = &idx["accounts"][0];
    let did = Did::parse(alice["did"].as_str().expect("did")).expect("did");
    let key = PublicKey::from_did_key(alice["signingKey"].as_str().expect("key")).expect("key");
    let car = read(&peer_fixture("repo-alice.car"));
    let repo = verify::verify_repo(&car, &CarLimits::repo(10_000_000), &did, &key, |_| true)
        .expect("repo verifies");
    assert_eq!(repo.records.len(), 1);
    let rec = &repo.records[0];
    assert_eq!(rec.collection.as_str(), "dev.example.agent.capability");
    // The record is the one the captured update frame wrote.
    let update = idx["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["file"] == "frame-commit-update.cbor")
        .expect("update frame");
    assert_eq!(
        rec.cid.to_string(),
        update["decoded"]["body"]["ops"][0]["cid"]["$link"]
            .as_str()
            .expect("cid")
    );
    let latest: Value =
        serde_json::from_slice(&read(&peer_fixture("latest-commit-alice.json"))).expect("json");
    assert_eq!(
        repo.state.rev.as_str(),
        latest["rev"].as_str().expect("rev")
    );

    // The same export under another DID, or checked with another key, is refused.
    let bob = Did::parse(idx["accounts"][1]["did"].as_str().expect("did")).expect("did");
    let err = verify::verify_repo(&car, &CarLimits::repo(10_000_000), &bob, &key, |_| true)
        .expect_err("wrong DID");
    assert_eq!(err.kind(), "wrong_did");
    let bob_key = &keys()[bob.as_str()];
    let err = verify::verify_repo(&car, &CarLimits::repo(10_000_000), &did, bob_key, |_| true)
        .expect_err("wrong key");
    assert_eq!(err.kind(), "bad_signature");
    eprintln!("fixtures: repo-alice.car verified, 1 record");
}

#[test]
fn did_document_and_plc_data_give_the_signing_key() {
    let idx = index();
    let want = idx["accounts"][0]["signingKey"].as_str().expect("key");
    let doc: DidDocument =
        serde_json::from_slice(&read(&peer_fixture("did-doc-alice.json"))).expect("doc");
    assert_eq!(doc.atproto_key().expect("key").to_did_key(), want);
    let data: DidDocument =
        serde_json::from_slice(&read(&peer_fixture("plc-data-alice.json"))).expect("plc data");
    assert_eq!(data.atproto_key().expect("key").to_did_key(), want);
}
