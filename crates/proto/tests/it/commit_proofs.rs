//! Sync 1.1 commit inversion: every case of the interop commit-proof fixtures (roots before and
//! after, then inversion from the proof blocks alone, in every op order), the reference PDS's
//! real `#commit` frames, and ops that lie about the tree.

use std::collections::BTreeMap;

use cid::Cid;
use guildhall_proto::car::{BlockMap, CarLimits, read_car};
use guildhall_proto::cbor;
use guildhall_proto::mst::{self, Mst, MstError, RecordOp};
use ipld_core::ipld::Ipld;
use serde::Deserialize;

use crate::vectors::{interop, peer_fixture, read};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fixture {
    comment: String,
    leaf_value: String,
    keys: Vec<String>,
    adds: Vec<String>,
    dels: Vec<String>,
    root_before_commit: String,
    root_after_commit: String,
    blocks_in_proof: Vec<String>,
}

fn fixtures() -> Vec<Fixture> {
    serde_json::from_slice(&read(&interop("firehose/commit-proof-fixtures.json"))).expect("JSON")
}

fn parse(c: &str) -> Cid {
    Cid::try_from(c).expect("valid CID")
}

/// Every ordering of `items` (the fixtures have at most a handful of ops).
fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first.clone());
            out.push(tail);
        }
    }
    out
}

struct Case {
    ops: Vec<RecordOp>,
    before: Cid,
    after: Cid,
    proof: BlockMap,
}

/// Builds a fixture's trees, checks both roots, and returns its ops and proof blocks.
fn prepare(f: &Fixture) -> Case {
    let leaf = parse(&f.leaf_value);
    let (before, before_blocks) =
        mst::compute_root(f.keys.iter().map(|k| (k.clone(), leaf))).expect("builds");
    assert_eq!(before.to_string(), f.root_before_commit, "{}", f.comment);

    // Forward, incrementally on the loaded tree...
    let mut tree = Mst::load(before, &before_blocks).expect("loads");
    for k in &f.adds {
        assert_eq!(tree.insert(k, leaf), Ok(None), "{}: add {k}", f.comment);
    }
    for k in &f.dels {
        assert_eq!(tree.remove(k), Ok(Some(leaf)), "{}: del {k}", f.comment);
    }
    let mut after_blocks = BlockMap::new();
    let after = tree.root_with_blocks(&mut after_blocks).expect("root");
    assert_eq!(after.to_string(), f.root_after_commit, "{}", f.comment);

    // ...and from scratch, which also yields every node of the new tree.
    let mut final_keys: Vec<String> = f
        .keys
        .iter()
        .filter(|k| !f.dels.contains(k))
        .cloned()
        .collect();
    final_keys.extend(f.adds.iter().cloned());
    let (rebuilt, all_after) =
        mst::compute_root(final_keys.into_iter().map(|k| (k, leaf))).expect("builds");
    assert_eq!(rebuilt, after, "{}", f.comment);

    // The proof is exactly the fixture's blocks, each a node of the new tree.
    let mut proof = BlockMap::new();
    for c in &f.blocks_in_proof {
        let cid = parse(c);
        let bytes = all_after
            .get(&cid)
            .unwrap_or_else(|| panic!("{}: proof block {c} is not in the new tree", f.comment));
        proof.insert(cid, bytes.to_vec());
    }
    let mut ops: Vec<RecordOp> = f
        .adds
        .iter()
        .map(|k| RecordOp::Create {
            path: k.clone(),
            cid: leaf,
        })
        .collect();
    ops.extend(f.dels.iter().map(|k| RecordOp::Delete {
        path: k.clone(),
        prev: leaf,
    }));
    Case {
        ops,
        before,
        after,
        proof,
    }
}

#[test]
fn interop_commit_proofs_invert_from_proof_blocks_alone() {
    let mut ran = 0;
    let mut orders = 0;
    for f in &fixtures() {
        let case = prepare(f);
        for order in permutations(&case.ops) {
            assert_eq!(
                mst::invert(case.after, &order, &case.proof),
                Ok(case.before),
                "{}: order {order:?}",
                f.comment
            );
            orders += 1;
        }
        // Without the new root nothing can be proven.
        let mut no_root = case.proof.clone();
        no_root.remove(&case.after);
        assert_eq!(
            mst::invert(case.after, &case.ops, &no_root),
            Err(MstError::MissingBlock(case.after)),
            "{}",
            f.comment
        );
        ran += 1;
    }
    println!("commit-proof fixtures: {ran} cases, {orders} op orders");
    assert!(ran > 0);
}

/// Ops that do not describe the commit are caught, either as an op that does not hold in the
/// new tree or as a previous root that cannot match `prevData`.
#[test]
fn lying_ops_do_not_invert_to_the_previous_root() {
    let mut ran = 0;
    for f in &fixtures() {
        let case = prepare(f);
        let leaf = parse(&f.leaf_value);
        let other = cbor::cid_for_cbor(b"not the record");

        // Dropping an op gives another previous root (or needs blocks the proof lacks).
        for skip in 0..case.ops.len() {
            let mut fewer = case.ops.clone();
            fewer.remove(skip);
            let r = mst::invert(case.after, &fewer, &case.proof);
            assert_ne!(r, Ok(case.before), "{}: without op {skip}", f.comment);
        }

        for op in &case.ops {
            let lie = match op {
                // A create of a different record than the tree holds.
                RecordOp::Create { path, .. } => RecordOp::Create {
                    path: path.clone(),
                    cid: other,
                },
                // A delete of a key the tree still holds: claim a kept key was deleted.
                RecordOp::Delete { .. } => RecordOp::Delete {
                    path: f
                        .keys
                        .iter()
                        .find(|k| !f.dels.contains(k))
                        .expect("a kept key")
                        .clone(),
                    prev: leaf,
                },
                RecordOp::Update { .. } => continue,
            };
            let r = mst::invert(case.after, &[lie], &case.proof);
            assert!(
                matches!(r, Err(MstError::OpMismatch(_) | MstError::MissingBlock(_))),
                "{}: {r:?}",
                f.comment
            );
        }

        // The same path twice is refused outright.
        if let Some(op) = case.ops.first() {
            let twice = [op.clone(), op.clone()];
            assert_eq!(
                mst::invert(case.after, &twice, &case.proof),
                Err(MstError::DuplicateOp(op.path().to_owned()))
            );
        }
        ran += 1;
    }
    println!("lying-op fixtures: {ran} cases");
    assert!(ran > 0);
}

/// The reference PDS's own `#commit` frames: each non-genesis commit's slice inverts to its
/// `prevData`.
#[test]
fn reference_pds_commits_invert_to_prev_data() {
    let stream = read(&peer_fixture("stream.bin"));
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos + 4 <= stream.len() {
        let len = u32::from_be_bytes(stream[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        frames.push(&stream[pos + 4..pos + 4 + len]);
        pos += 4 + len;
    }
    for name in [
        "frame-commit-create.cbor",
        "frame-commit-update.cbor",
        "frame-commit-delete.cbor",
    ] {
        frames.push(Box::leak(read(&peer_fixture(name)).into_boxed_slice()));
    }

    let mut ran = 0;
    for frame in frames {
        let (header, body): (BTreeMap<String, Ipld>, &[u8]) =
            cbor::decode_prefix(frame).expect("header");
        if header.get("t") != Some(&Ipld::String("#commit".into())) {
            continue;
        }
        let body: BTreeMap<String, Ipld> = cbor::decode(body).expect("body");
        let Some(Ipld::Link(prev_data)) = body.get("prevData") else {
            continue; // genesis: nothing to invert to
        };
        let Some(Ipld::Bytes(slice)) = body.get("blocks") else {
            panic!("commit without blocks");
        };
        let car = read_car(slice, &CarLimits::FIREHOSE).expect("slice reads");
        let commit: BTreeMap<String, Ipld> =
            cbor::decode(car.blocks.get(&car.roots[0]).expect("commit block")).expect("commit");
        let Some(Ipld::Link(data)) = commit.get("data") else {
            panic!("commit without data");
        };
        let Some(Ipld::List(raw_ops)) = body.get("ops") else {
            panic!("commit without ops");
        };
        let ops: Vec<RecordOp> = raw_ops.iter().map(to_op).collect();
        assert_eq!(mst::invert(*data, &ops, &car.blocks), Ok(*prev_data));
        ran += 1;
    }
    println!("reference PDS commits inverted: {ran}");
    assert!(ran >= 3);
}

fn to_op(raw: &Ipld) -> RecordOp {
    let Ipld::Map(m) = raw else {
        panic!("op is not a map");
    };
    let path = match m.get("path") {
        Some(Ipld::String(p)) => p.clone(),
        _ => panic!("op without path"),
    };
    let link = |k: &str| match m.get(k) {
        Some(Ipld::Link(c)) => Some(*c),
        _ => None,
    };
    match m.get("action") {
        Some(Ipld::String(a)) if a == "create" => RecordOp::Create {
            path,
            cid: link("cid").expect("cid"),
        },
        Some(Ipld::String(a)) if a == "update" => RecordOp::Update {
            path,
            cid: link("cid").expect("cid"),
            prev: link("prev").expect("prev"),
        },
        Some(Ipld::String(a)) if a == "delete" => RecordOp::Delete {
            path,
            prev: link("prev").expect("prev"),
        },
        other => panic!("unknown action {other:?}"),
    }
}

/// Updates invert too (the fixtures have none): change values on a built tree and check the
/// slice of changed nodes alone proves them.
#[test]
fn updates_invert_from_changed_nodes() {
    let keys: Vec<String> = (0..500)
        .map(|i| format!("app.bsky.feed.post/{i:05}"))
        .collect();
    let v0 = cbor::cid_for_cbor(b"v0");
    let v1 = cbor::cid_for_cbor(b"v1");
    let (before, blocks) = mst::compute_root(keys.iter().map(|k| (k.clone(), v0))).expect("builds");
    let mut tree = Mst::load(before, &blocks).expect("loads");
    let changed = [&keys[3], &keys[250], &keys[499]];
    for k in changed {
        assert_eq!(tree.insert(k, v1), Ok(Some(v0)));
    }
    // Only the nodes re-encoded by the edit: the slice a PDS would send for pure updates.
    let mut slice = BlockMap::new();
    let after = tree.root_with_blocks(&mut slice).expect("root");
    let ops: Vec<RecordOp> = changed
        .iter()
        .map(|k| RecordOp::Update {
            path: (*k).clone(),
            cid: v1,
            prev: v0,
        })
        .collect();
    assert_eq!(mst::invert(after, &ops, &slice), Ok(before));
    println!(
        "updates: {} ops proven by {} of {} nodes",
        ops.len(),
        slice.len(),
        blocks.len()
    );
    assert!(slice.len() < blocks.len());
}

/// The slice a PDS would send: the nodes the commit re-encoded, plus any node of the new tree
/// that inversion asks for (found by retrying on `MissingBlock`).
fn minimal_slice(
    after: Cid,
    ops: &[RecordOp],
    changed: BlockMap,
    full_after: &BlockMap,
) -> Result<BlockMap, MstError> {
    let mut slice = changed;
    loop {
        match mst::invert(after, ops, &slice) {
            Err(MstError::MissingBlock(c)) => {
                let bytes = full_after.get(&c).ok_or(MstError::MissingBlock(c))?;
                slice.insert(c, bytes.to_vec());
            }
            Err(e) => return Err(e),
            Ok(_) => return Ok(slice),
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]

    /// Random multi-op commits (creates, updates, deletes) on random repos invert to the
    /// previous root, from the full new tree and from a minimal slice alike.
    #[test]
    fn random_commits_invert(
        initial in proptest::collection::btree_set(0usize..300, 1..150),
        touched in proptest::collection::btree_map(0usize..300, 0u8..3, 1..12),
    ) {
        let key = |i: usize| format!("app.bsky.feed.post/3k{i:05}");
        let v = |i: usize, n: u8| cbor::cid_for_cbor(&[(i % 251) as u8, n]);
        let before_entries: BTreeMap<String, Cid> =
            initial.iter().map(|i| (key(*i), v(*i, 0))).collect();
        let (before, before_blocks) = mst::compute_root(before_entries.clone()).expect("builds");

        let mut tree = Mst::load(before, &before_blocks).expect("loads");
        let mut after_entries = before_entries.clone();
        let mut ops = Vec::new();
        for (i, kind) in &touched {
            let path = key(*i);
            match (before_entries.get(&path), kind) {
                (None, _) => {
                    tree.insert(&path, v(*i, 1)).expect("insert");
                    after_entries.insert(path.clone(), v(*i, 1));
                    ops.push(RecordOp::Create { path, cid: v(*i, 1) });
                }
                (Some(prev), 0) => {
                    tree.remove(&path).expect("remove");
                    after_entries.remove(&path);
                    ops.push(RecordOp::Delete { path, prev: *prev });
                }
                (Some(prev), _) => {
                    tree.insert(&path, v(*i, 2)).expect("update");
                    after_entries.insert(path.clone(), v(*i, 2));
                    ops.push(RecordOp::Update { path, cid: v(*i, 2), prev: *prev });
                }
            }
        }
        let mut changed = BlockMap::new();
        let after = tree.root_with_blocks(&mut changed).expect("root");
        let (rebuilt, full_after) = mst::compute_root(after_entries).expect("builds");
        proptest::prop_assert_eq!(rebuilt, after);
        proptest::prop_assert_eq!(mst::invert(after, &ops, &full_after), Ok(before));
        let slice = minimal_slice(after, &ops, changed, &full_after).expect("slice");
        proptest::prop_assert_eq!(mst::invert(after, &ops, &slice), Ok(before));
        // Reversed op order proves the same thing.
        let reversed: Vec<RecordOp> = ops.iter().rev().cloned().collect();
        proptest::prop_assert_eq!(mst::invert(after, &reversed, &slice), Ok(before));
    }
}
