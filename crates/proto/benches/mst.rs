//! Sync 1.1 inversion cost on a realistic commit: one op against a 10,000-record repo, with the
//! slice holding only what inversion needs (the changed nodes plus the covering proof).

use std::hint::black_box;

use cid::Cid;
use criterion::{Criterion, criterion_group, criterion_main};
use guildhall_proto::car::BlockMap;
use guildhall_proto::cbor;
use guildhall_proto::mst::{self, Mst, MstError, RecordOp};

const RECORDS: usize = 10_000;

fn key(i: usize) -> String {
    // TID-like record keys spread over two collections, as a busy repo would have.
    let collection = if i.is_multiple_of(3) {
        "app.bsky.feed.like"
    } else {
        "app.bsky.feed.post"
    };
    format!(
        "{collection}/3l{:011x}",
        i.wrapping_mul(2_654_435_761) % (1 << 44)
    )
}

fn value(i: usize) -> Cid {
    cbor::cid_for_cbor(&i.to_be_bytes())
}

/// The commit's slice: the nodes the edit re-encoded, plus whatever else inversion reaches
/// (found by retrying on `MissingBlock` against the full new tree).
fn slice_for(after: Cid, ops: &[RecordOp], changed: BlockMap, full_after: &BlockMap) -> BlockMap {
    let mut slice = changed;
    loop {
        match mst::invert(after, ops, &slice) {
            Err(MstError::MissingBlock(c)) => {
                let bytes = full_after.get(&c).expect("node of the new tree");
                slice.insert(c, bytes.to_vec());
            }
            Ok(_) => return slice,
            Err(e) => panic!("inversion failed: {e}"),
        }
    }
}

struct Commit {
    before: Cid,
    after: Cid,
    ops: Vec<RecordOp>,
    slice: BlockMap,
}

fn commit(before: Cid, blocks: &BlockMap, op: &RecordOp, entries: &[(String, Cid)]) -> Commit {
    let mut tree = Mst::load(before, blocks).expect("loads");
    let mut final_entries: Vec<(String, Cid)> = entries.to_vec();
    match op {
        RecordOp::Create { path, cid } => {
            tree.insert(path, *cid).expect("insert");
            final_entries.push((path.clone(), *cid));
        }
        RecordOp::Update { path, cid, .. } => {
            tree.insert(path, *cid).expect("update");
            final_entries.retain(|(k, _)| k != path);
            final_entries.push((path.clone(), *cid));
        }
        RecordOp::Delete { path, .. } => {
            tree.remove(path).expect("remove");
            final_entries.retain(|(k, _)| k != path);
        }
    }
    let mut changed = BlockMap::new();
    let after = tree.root_with_blocks(&mut changed).expect("root");
    let (rebuilt, full_after) = mst::compute_root(final_entries).expect("builds");
    assert_eq!(rebuilt, after);
    let ops = vec![op.clone()];
    let slice = slice_for(after, &ops, changed, &full_after);
    Commit {
        before,
        after,
        ops,
        slice,
    }
}

fn inversion(c: &mut Criterion) {
    let entries: Vec<(String, Cid)> = (0..RECORDS).map(|i| (key(i), value(i))).collect();
    let (before, blocks) = mst::compute_root(entries.clone()).expect("builds");
    let mid = &entries[RECORDS / 2].0;
    let cases = [
        (
            "create",
            RecordOp::Create {
                path: key(RECORDS + 1),
                cid: value(RECORDS + 1),
            },
        ),
        (
            "update",
            RecordOp::Update {
                path: mid.clone(),
                cid: value(RECORDS + 2),
                prev: value(RECORDS / 2),
            },
        ),
        (
            "delete",
            RecordOp::Delete {
                path: mid.clone(),
                prev: value(RECORDS / 2),
            },
        ),
    ];
    let mut g = c.benchmark_group("invert_10k_records");
    for (name, op) in &cases {
        let commit = commit(before, &blocks, op, &entries);
        assert_eq!(
            mst::invert(commit.after, &commit.ops, &commit.slice),
            Ok(commit.before)
        );
        eprintln!(
            "{name}: slice of {} MST nodes (tree has {})",
            commit.slice.len(),
            blocks.len()
        );
        g.bench_function(*name, |b| {
            b.iter(|| mst::invert(black_box(commit.after), &commit.ops, &commit.slice))
        });
    }
    g.finish();
}

criterion_group!(benches, inversion);
criterion_main!(benches);
