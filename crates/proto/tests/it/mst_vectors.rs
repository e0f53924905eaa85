//! MST against the interop vectors (key heights, common prefixes, example keys), the reference
//! implementation's known roots, the reference PDS's repo, hostile trees, and a property test
//! that incremental edits on a lazily loaded tree always equal a full rebuild.

use std::collections::BTreeMap;

use cid::Cid;
use guildhall_proto::car::{BlockMap, CarLimits, read_car};
use guildhall_proto::cbor;
use guildhall_proto::mst::{self, Entry, Mst, MstError, Node, encode_node};
use ipld_core::ipld::Ipld;
use proptest::prelude::*;
use serde::Deserialize;

use crate::vectors::{interop, peer_fixture, read};

/// The leaf value the reference tests use.
const CID1: &str = "bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454";

fn cid1() -> Cid {
    Cid::try_from(CID1).expect("valid CID")
}

fn example_keys() -> Vec<String> {
    let text = String::from_utf8(read(&interop("mst/example_keys.txt"))).expect("UTF-8");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn key_heights_vectors() {
    #[derive(Deserialize)]
    struct Case {
        key: String,
        height: u8,
    }
    let cases: Vec<Case> =
        serde_json::from_slice(&read(&interop("mst/key_heights.json"))).expect("JSON");
    for c in &cases {
        assert_eq!(mst::key_height(&c.key), c.height, "{:?}", c.key);
        assert_eq!(mst::key_height(c.key.as_bytes()), c.height);
    }
    println!("key heights: {} cases", cases.len());
    assert!(!cases.is_empty());
}

#[test]
fn common_prefix_vectors() {
    #[derive(Deserialize)]
    struct Case {
        left: String,
        right: String,
        len: usize,
    }
    let cases: Vec<Case> =
        serde_json::from_slice(&read(&interop("mst/common_prefix.json"))).expect("JSON");
    for c in &cases {
        assert_eq!(
            mst::common_prefix_len(&c.left, &c.right),
            c.len,
            "{:?} {:?}",
            c.left,
            c.right
        );
    }
    println!("common prefix: {} cases", cases.len());
    assert!(!cases.is_empty());
}

/// The example keys are named `<letter><height>/<digits>`: the digit is the key's height.
#[test]
fn example_keys_heights_and_tree() {
    let keys = example_keys();
    for k in &keys {
        let want: u8 = k[1..2].parse().expect("height digit");
        assert_eq!(mst::key_height(k), want, "{k}");
    }
    let entries: Vec<(String, Cid)> = keys.iter().map(|k| (k.clone(), cid1())).collect();
    let (root, blocks) = mst::compute_root(entries.clone()).expect("builds");

    // The whole tree walks back in order, and each key is provable from the blocks.
    let mut sorted = entries.clone();
    sorted.sort();
    assert_eq!(mst::walk(root, &blocks).expect("walks"), sorted);
    for k in &keys {
        assert_eq!(mst::get(root, k, &blocks), Ok(Some(cid1())), "{k}");
    }
    assert_eq!(mst::get(root, "A9/missing", &blocks), Ok(None));

    // Insertion order does not matter: reversed inserts give the same root.
    let mut t = Mst::new();
    for k in keys.iter().rev() {
        t.insert(k, cid1()).expect("inserts");
    }
    assert_eq!(t.root(), Ok(root));

    // Removing every key from the loaded tree (lazily) ends at the empty tree.
    let mut t = Mst::load(root, &blocks).expect("loads");
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(t.remove(k), Ok(Some(cid1())), "{k}");
        if i % 37 == 0 {
            let rest = entries[i + 1..].to_vec();
            assert_eq!(t.root(), Ok(mst::compute_root(rest).expect("builds").0));
        }
    }
    assert_eq!(
        t.root(),
        Ok(mst::compute_root(Vec::new()).expect("empty").0)
    );
    println!("example keys: {} keys, {} nodes", keys.len(), blocks.len());
    assert!(keys.len() > 100);
}

/// Roots from the reference implementation's MST tests ("known maps").
#[test]
fn reference_known_roots() {
    let cases: [(&[&str], &str); 4] = [
        (
            &[],
            "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
        ),
        (
            &["com.example.record/3jqfcqzm3fo2j"],
            "bafyreibj4lsc3aqnrvphp5xmrnfoorvru4wynt6lwidqbm2623a6tatzdu",
        ),
        (
            &["com.example.record/3jqfcqzm3fx2j"],
            "bafyreih7wfei65pxzhauoibu3ls7jgmkju4bspy4t2ha2qdjnzqvoy33ai",
        ),
        (
            &[
                "com.example.record/3jqfcqzm3fp2j",
                "com.example.record/3jqfcqzm3fr2j",
                "com.example.record/3jqfcqzm3fs2j",
                "com.example.record/3jqfcqzm3ft2j",
                "com.example.record/3jqfcqzm4fc2j",
            ],
            "bafyreicmahysq4n6wfuxo522m6dpiy7z7qzym3dzs756t5n7nfdgccwq7m",
        ),
    ];
    for (keys, want) in &cases {
        let (root, _) =
            mst::compute_root(keys.iter().map(|k| ((*k).to_owned(), cid1()))).expect("builds");
        assert_eq!(root.to_string(), *want, "{keys:?}");
    }
    println!("reference known roots: {} cases", cases.len());
}

/// alice's repo from the reference PDS: the commit's `data` walks to the record the fixture
/// index lists.
#[test]
fn reference_repo_walks() {
    let car = read_car(
        &read(&peer_fixture("repo-alice.car")),
        &CarLimits::repo(10_000_000),
    )
    .expect("reads");
    let commit: BTreeMap<String, Ipld> =
        cbor::decode(car.blocks.get(&car.roots[0]).expect("commit block")).expect("commit");
    let Some(Ipld::Link(data)) = commit.get("data") else {
        panic!("commit has no data link");
    };
    let records = mst::walk(*data, &car.blocks).expect("walks");

    let index: serde_json::Value =
        serde_json::from_slice(&read(&peer_fixture("index.json"))).expect("index");
    let entry = index["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["file"] == "repo-alice.car")
        .expect("listed");
    let mut want = Vec::new();
    for b in entry["decoded"]["blocks"].as_array().expect("blocks") {
        if b["kind"] == "mst-node" {
            for e in b["value"]["e"].as_array().expect("entries") {
                let key = e["kUtf8"].as_str().expect("key").to_owned();
                let v = Cid::try_from(e["v"]["$link"].as_str().expect("link")).expect("cid");
                want.push((key, v));
            }
        }
    }
    assert_eq!(records, want);
    // Each walked record's block is in the CAR and re-rooting the records gives `data` back.
    for (_, v) in &records {
        assert!(car.blocks.contains(v));
    }
    assert_eq!(mst::compute_root(records.clone()).expect("builds").0, *data);
    println!("repo-alice: {} records", records.len());
    assert!(!records.is_empty());
}

/// Stores a hand-built node and returns its CID.
fn put(blocks: &mut BlockMap, node: &Node) -> Cid {
    let bytes = encode_node(node);
    let cid = cbor::cid_for_cbor(&bytes);
    blocks.insert(cid, bytes);
    cid
}

fn entry(key: &str, right: Option<Cid>) -> Entry {
    Entry {
        key: key.to_owned(),
        value: cid1(),
        right,
    }
}

/// Keys of a given height from the example keys (named by height).
fn keys_of_height(h: char) -> Vec<String> {
    let mut keys: Vec<String> = example_keys()
        .into_iter()
        .filter(|k| k.as_bytes()[1] == h as u8)
        .collect();
    keys.sort();
    keys
}

#[test]
fn hostile_trees_are_typed_errors() {
    let h0 = keys_of_height('0');
    let h1 = keys_of_height('1');
    let mut ran = 0;

    // Unsorted keys in a node.
    let mut b = BlockMap::new();
    let root = put(
        &mut b,
        &Node {
            left: None,
            entries: vec![entry(&h0[1], None), entry(&h0[0], None)],
        },
    );
    assert_eq!(mst::walk(root, &b), Err(MstError::UnsortedKeys));
    ran += 1;

    // Keys of two heights in one node.
    let mut b = BlockMap::new();
    let mut pair = [h0[0].clone(), h1[0].clone()];
    pair.sort();
    let root = put(
        &mut b,
        &Node {
            left: None,
            entries: pair.iter().map(|k| entry(k, None)).collect(),
        },
    );
    assert_eq!(mst::walk(root, &b), Err(MstError::MixedHeights));
    ran += 1;

    // A child at the wrong layer: a height-1 node under a height-1 root.
    let mut b = BlockMap::new();
    let (lo, hi) = (&h1[0], &h1[1]);
    let child = put(
        &mut b,
        &Node {
            left: None,
            entries: vec![entry(lo, None)],
        },
    );
    let root = put(
        &mut b,
        &Node {
            left: Some(child),
            entries: vec![entry(hi, None)],
        },
    );
    assert!(matches!(
        mst::walk(root, &b),
        Err(MstError::WrongHeight { .. })
    ));
    ran += 1;

    // A child whose key lies outside the gap it hangs in.
    let mut b = BlockMap::new();
    let mut zeros = h0.clone();
    zeros.sort();
    let ones: Vec<&String> = h1.iter().filter(|k| **k < zeros[zeros.len() - 1]).collect();
    let child = put(
        &mut b,
        &Node {
            left: None,
            entries: vec![entry(&zeros[zeros.len() - 1], None)],
        },
    );
    let root = put(
        &mut b,
        &Node {
            left: Some(child),
            entries: vec![entry(ones[0], None)],
        },
    );
    assert!(matches!(
        mst::walk(root, &b),
        Err(MstError::KeyOutOfRange(_))
    ));
    assert!(matches!(
        mst::get(root, &zeros[zeros.len() - 1], &b),
        Ok(None) | Err(MstError::KeyOutOfRange(_))
    ));
    ran += 1;

    // A subtree below layer 0.
    let mut b = BlockMap::new();
    let leafy = put(
        &mut b,
        &Node {
            left: None,
            entries: vec![entry(&zeros[0], None)],
        },
    );
    let root = put(
        &mut b,
        &Node {
            left: None,
            entries: vec![entry(&zeros[1], Some(leafy))],
        },
    );
    assert!(matches!(mst::walk(root, &b), Err(MstError::TooDeep(_))));
    assert!(matches!(Mst::load(root, &b), Err(MstError::TooDeep(_))));
    let left_root = put(
        &mut b,
        &Node {
            left: Some(leafy),
            entries: vec![entry(&zeros[1], None)],
        },
    );
    assert!(matches!(
        Mst::load(left_root, &b),
        Err(MstError::TooDeep(_))
    ));
    assert!(matches!(
        mst::invert(
            left_root,
            &[mst::RecordOp::Create {
                path: zeros[1].clone(),
                cid: cid1()
            }],
            &b
        ),
        Err(MstError::TooDeep(_))
    ));
    ran += 1;

    // The same subtree referenced twice (a DAG, not a tree).
    let mut b = BlockMap::new();
    let mid: Vec<&String> = h1
        .iter()
        .filter(|k| zeros.iter().any(|z| z < *k) && zeros.iter().any(|z| z > *k))
        .collect();
    let shared = put(
        &mut b,
        &Node {
            left: None,
            entries: vec![entry(&zeros[0], None)],
        },
    );
    let root = put(
        &mut b,
        &Node {
            left: Some(shared),
            entries: vec![entry(mid[0], Some(shared))],
        },
    );
    assert!(matches!(
        mst::walk(root, &b),
        Err(MstError::RevisitedNode(_) | MstError::KeyOutOfRange(_))
    ));
    ran += 1;

    // An empty inner node, and a root with nothing but a subtree.
    let mut b = BlockMap::new();
    let empty = put(
        &mut b,
        &Node {
            left: None,
            entries: vec![],
        },
    );
    let root = put(
        &mut b,
        &Node {
            left: Some(empty),
            entries: vec![entry(&h1[0], None)],
        },
    );
    assert_eq!(mst::walk(root, &b), Err(MstError::EmptyNode(empty)));
    let hollow = put(
        &mut b,
        &Node {
            left: Some(root),
            entries: vec![],
        },
    );
    assert_eq!(
        mst::walk(hollow, &b),
        Err(MstError::NonCanonicalRoot(hollow))
    );
    ran += 1;

    // A missing block, for walk, get and the editable tree.
    let (full_root, mut full) =
        mst::compute_root(example_keys().into_iter().map(|k| (k, cid1()))).expect("builds");
    let some_child = full
        .iter()
        .map(|(c, _)| *c)
        .find(|c| *c != full_root)
        .expect("a non-root node");
    full.remove(&some_child);
    assert_eq!(
        mst::walk(full_root, &full),
        Err(MstError::MissingBlock(some_child))
    );
    assert_eq!(
        mst::get(full_root, "A0/374913", &BlockMap::new()),
        Err(MstError::MissingBlock(full_root))
    );
    ran += 1;

    // Non-canonical prefix compression: a node that re-spells the shared prefix, or claims
    // a longer prefix than the previous key has.
    let same: Vec<String> = (0..1000)
        .map(|i| format!("app.bsky.feed.post/{i:04}"))
        .filter(|k| mst::key_height(k) == 0)
        .take(2)
        .collect();
    let good = encode_node(&Node {
        left: None,
        entries: vec![entry(&same[0], None), entry(&same[1], None)],
    });
    assert_eq!(
        mst::decode_node(&good).expect("decodes").entries[1].key,
        same[1]
    );
    let respell = |p: i128, k: &[u8]| {
        let mut raw: BTreeMap<String, Ipld> = cbor::decode(&good).expect("map");
        if let Some(Ipld::List(es)) = raw.get_mut("e")
            && let Some(Ipld::Map(e1)) = es.get_mut(1)
        {
            e1.insert("p".into(), Ipld::Integer(p));
            e1.insert("k".into(), Ipld::Bytes(k.to_vec()));
        }
        cbor::encode(&raw).expect("encodes")
    };
    let full = respell(0, same[1].as_bytes());
    assert_eq!(mst::decode_node(&full), Err(MstError::BadPrefix));
    let overlong = respell(100, b"x");
    assert_eq!(mst::decode_node(&overlong), Err(MstError::BadPrefix));
    ran += 1;

    println!("hostile trees: {ran} cases");
}

/// A key pool: the example keys plus generated record paths of assorted heights.
fn pool() -> Vec<String> {
    let mut keys = example_keys();
    keys.truncate(60);
    keys.extend((0..60).map(|i| format!("app.bsky.feed.post/{i:04}x")));
    keys
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random inserts and deletes applied to a tree loaded lazily from a built tree's blocks
    /// reach the same root as rebuilding the final set from scratch.
    #[test]
    fn incremental_edits_equal_full_rebuild(
        initial in proptest::collection::btree_set(0usize..120, 0..60),
        ops in proptest::collection::vec((0usize..120, any::<bool>(), 0u8..4), 1..40),
    ) {
        let keys = pool();
        let value = |n: u8| cbor::cid_for_cbor(&[n]);
        let mut model: BTreeMap<String, Cid> =
            initial.iter().map(|i| (keys[*i].clone(), value(0))).collect();
        let (root, blocks) = mst::compute_root(model.clone()).expect("builds");
        let mut tree = Mst::load(root, &blocks).expect("loads");
        for (i, insert, v) in ops {
            let k = &keys[i];
            if insert {
                let old = tree.insert(k, value(v)).expect("inserts");
                prop_assert_eq!(old, model.insert(k.clone(), value(v)));
            } else {
                let old = tree.remove(k).expect("removes");
                prop_assert_eq!(old, model.remove(k));
            }
        }
        let (want, _) = mst::compute_root(model.clone()).expect("builds");
        prop_assert_eq!(tree.root().expect("root"), want);
        for (k, v) in &model {
            prop_assert_eq!(tree.get(k).expect("get"), Some(*v));
        }
    }
}
