//! DAG-CBOR against the interop data-model vectors, hand-made malformed encodings, and
//! no-panic property tests for every decoder that faces network bytes (CBOR, CAR, MST nodes).

use std::collections::BTreeMap;

use cid::Cid;
use guildhall_proto::car::{BlockMap, CarError, CarLimits, read_car, write_car};
use guildhall_proto::cbor::{self, CborError, Limits};
use ipld_core::ipld::Ipld;
use proptest::prelude::*;
use serde_json::Value;

use crate::vectors::{interop, peer_fixture, read};

/// ATProto JSON → IPLD: `{"$link"}` is a CID, `{"$bytes"}` is base64 bytes, integer-like
/// numbers are integers. Returns `None` for JSON the data model cannot hold.
fn json_to_ipld(v: &Value) -> Option<Ipld> {
    Some(match v {
        Value::Null => Ipld::Null,
        Value::Bool(b) => Ipld::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ipld::Integer(i.into())
            } else {
                let f = n.as_f64()?;
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    #[allow(clippy::cast_possible_truncation)]
                    Ipld::Integer((f as i64).into())
                } else {
                    Ipld::Float(f)
                }
            }
        }
        Value::String(s) => Ipld::String(s.clone()),
        Value::Array(a) => Ipld::List(a.iter().map(json_to_ipld).collect::<Option<_>>()?),
        Value::Object(o) => {
            if let Some(link) = o.get("$link") {
                if o.len() != 1 {
                    return None;
                }
                return Some(Ipld::Link(Cid::try_from(link.as_str()?).ok()?));
            }
            if let Some(b) = o.get("$bytes") {
                if o.len() != 1 {
                    return None;
                }
                return Some(Ipld::Bytes(b64(b.as_str()?)?));
            }
            let mut m = BTreeMap::new();
            for (k, v) in o {
                m.insert(k.clone(), json_to_ipld(v)?);
            }
            Ipld::Map(m)
        }
    })
}

/// IPLD → ATProto JSON, the inverse of [`json_to_ipld`].
fn ipld_to_json(v: &Ipld) -> Value {
    match v {
        Ipld::Null => Value::Null,
        Ipld::Bool(b) => Value::Bool(*b),
        Ipld::Integer(i) => Value::from(i64::try_from(*i).expect("integer in i64 range")),
        Ipld::Float(f) => Value::from(*f),
        Ipld::String(s) => Value::String(s.clone()),
        Ipld::Bytes(b) => serde_json::json!({ "$bytes": multibase::Base::Base64.encode(b) }),
        Ipld::List(l) => Value::Array(l.iter().map(ipld_to_json).collect()),
        Ipld::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), ipld_to_json(v)))
                .collect(),
        ),
        Ipld::Link(c) => serde_json::json!({ "$link": c.to_string() }),
    }
}

/// Standard-alphabet base64, padded or not, as the vectors write it.
fn b64(s: &str) -> Option<Vec<u8>> {
    multibase::Base::Base64.decode(s.trim_end_matches('=')).ok()
}

fn load_json(rel: &str) -> Value {
    serde_json::from_slice(&read(&interop(rel))).expect("vector file is JSON")
}

#[test]
fn data_model_fixtures_encode_decode_and_cid() {
    let cases = load_json("data-model/data-model-fixtures.json");
    let cases = cases.as_array().expect("array of cases");
    let mut ran = 0;
    for case in cases {
        let json = &case["json"];
        let want_bytes = b64(case["cbor_base64"].as_str().expect("cbor_base64")).expect("base64");
        let want_cid = case["cid"].as_str().expect("cid");

        // JSON → CBOR: byte-exact canonical encoding and the same CID.
        let ipld = json_to_ipld(json).expect("fixture JSON is in the data model");
        let bytes = cbor::encode(&ipld).expect("encodes");
        assert_eq!(bytes, want_bytes, "encoding of {json}");
        assert_eq!(cbor::cid_for_cbor(&bytes).to_string(), want_cid);

        // CBOR → JSON: the strict decoder accepts the vector and gives back the same JSON.
        assert_eq!(
            cbor::item_len(&want_bytes, &Limits::default()),
            Ok(want_bytes.len())
        );
        let back: Ipld = cbor::decode(&want_bytes).expect("strict decode of the vector");
        assert_eq!(&ipld_to_json(&back), json);
        assert!(!cbor::contains_float(&want_bytes));
        ran += 1;
    }
    println!("data-model fixtures: {ran} cases");
    assert!(ran > 0);
}

#[test]
fn data_model_valid_round_trips_without_floats() {
    let cases = load_json("data-model/data-model-valid.json");
    let mut ran = 0;
    for case in cases.as_array().expect("array") {
        let ipld = json_to_ipld(&case["json"]).expect("valid JSON maps to IPLD");
        let bytes = cbor::encode(&ipld).expect("encodes");
        let back: Ipld = cbor::decode(&bytes).expect("decodes");
        assert_eq!(back, ipld, "{}", case["note"]);
        assert!(!cbor::contains_float(&bytes), "{}", case["note"]);
        ran += 1;
    }
    println!("data-model valid: {ran} cases");
    assert!(ran > 0);
}

/// Of the invalid data-model cases, the ones the CBOR layer owns: floats (which ATProto
/// forbids and `contains_float` must flag) and malformed `$link`/`$bytes` objects (which have
/// no IPLD form). `$type`/blob-shape cases belong to lexicon validation.
#[test]
fn data_model_invalid_floats_and_links_are_caught() {
    let cases = load_json("data-model/data-model-invalid.json");
    let mut ran = 0;
    for case in cases.as_array().expect("array") {
        let note = case["note"].as_str().unwrap_or_default();
        if note == "float" {
            let ipld = json_to_ipld(&case["json"]).expect("floats are IPLD");
            let bytes = cbor::encode(&ipld).expect("encodes");
            assert!(cbor::contains_float(&bytes), "{note}");
            ran += 1;
        } else if note.starts_with("link") || note.starts_with("bytes") {
            assert!(json_to_ipld(&case["json"]).is_none(), "{note}");
            ran += 1;
        }
    }
    println!("data-model invalid (CBOR-level): {ran} cases");
    assert!(ran >= 5);
}

/// Hand-made encodings that are valid CBOR but not DAG-CBOR (or not CBOR at all), each with
/// the error it must produce.
#[test]
fn malformed_encodings_get_specific_errors() {
    let cid = cbor::cid_for_cbor(b"x").to_bytes();
    let mut link = vec![0xd8, 0x2a, 0x58, u8::try_from(cid.len() + 1).unwrap(), 0x00];
    link.extend_from_slice(&cid);
    let mut bad_link = link.clone();
    bad_link[4] = 0x01;

    type Check = fn(&CborError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("truncated array", vec![0x82, 0x01], |e| {
            matches!(e, CborError::Truncated { .. })
        }),
        ("truncated string", vec![0x63, b'a'], |e| {
            matches!(e, CborError::Truncated { .. })
        }),
        ("empty input", vec![], |e| {
            matches!(e, CborError::Truncated { .. })
        }),
        ("non-minimal uint", vec![0x19, 0x00, 0x10], |e| {
            matches!(e, CborError::NonCanonical { .. })
        }),
        ("non-minimal length", vec![0x78, 0x01, b'a'], |e| {
            matches!(e, CborError::NonCanonical { .. })
        }),
        ("indefinite map", vec![0xbf, 0xff], |e| {
            matches!(e, CborError::IndefiniteLength { .. })
        }),
        ("indefinite bytes", vec![0x5f, 0xff], |e| {
            matches!(e, CborError::IndefiniteLength { .. })
        }),
        ("stray break", vec![0xff], |e| {
            matches!(e, CborError::IndefiniteLength { .. })
        }),
        ("tag 0", vec![0xc0, 0x60], |e| {
            matches!(e, CborError::BadTag { tag: 0, .. })
        }),
        ("tag 42 on text", vec![0xd8, 0x2a, 0x61, b'a'], |e| {
            matches!(e, CborError::BadCid { .. })
        }),
        ("tag 42 without 0x00 prefix", bad_link, |e| {
            matches!(e, CborError::BadCid { .. })
        }),
        ("integer map key", vec![0xa1, 0x01, 0x02], |e| {
            matches!(e, CborError::NonStringKey { .. })
        }),
        (
            "longer key first",
            vec![0xa2, 0x62, b'a', b'a', 0x01, 0x61, b'b', 0x02],
            |e| matches!(e, CborError::NonCanonical { .. }),
        ),
        (
            "duplicate key",
            vec![0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02],
            |e| matches!(e, CborError::DuplicateKey { .. }),
        ),
        ("invalid utf-8", vec![0x62, 0xc3, 0x28], |e| {
            matches!(e, CborError::InvalidUtf8 { .. })
        }),
        ("half float", vec![0xf9, 0x3c, 0x00], |e| {
            matches!(e, CborError::NonCanonical { .. })
        }),
        ("NaN", vec![0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0], |e| {
            matches!(e, CborError::InvalidFloat { .. })
        }),
        ("undefined", vec![0xf7], |e| {
            matches!(e, CborError::Unsupported { .. })
        }),
        ("simple 16", vec![0xf0], |e| {
            matches!(e, CborError::Unsupported { .. })
        }),
        ("reserved info 28", vec![0x1c], |e| {
            matches!(e, CborError::Unsupported { .. })
        }),
    ];
    let mut ran = 0;
    for (name, bytes, check) in &cases {
        let err = cbor::item_len(bytes, &Limits::default()).expect_err(name);
        assert!(check(&err), "{name}: got {err:?}");
        // The serde path goes through the same scan.
        assert!(cbor::decode::<Ipld>(bytes).is_err(), "{name}");
        ran += 1;
    }
    // The well-formed link scans.
    assert_eq!(cbor::item_len(&link, &Limits::default()), Ok(link.len()));
    println!("malformed encodings: {ran} cases");
    assert!(ran > 0);
}

#[test]
fn deep_nesting_is_too_deep_not_a_stack_overflow() {
    let mut bytes = vec![0x81; 100_000];
    bytes.push(0x00);
    assert_eq!(
        cbor::item_len(&bytes, &Limits::default()),
        Err(CborError::TooDeep { max: 64 })
    );
    assert!(matches!(
        cbor::decode::<Ipld>(&bytes),
        Err(CborError::TooDeep { .. })
    ));
    // Maps nest the same way: {"a": {"a": ...}}.
    let mut maps = [0xa1, 0x61, b'a'].repeat(100_000);
    maps.push(0x00);
    assert!(matches!(
        cbor::item_len(&maps, &Limits::default()),
        Err(CborError::TooDeep { .. })
    ));
    // Exactly at the limit is fine.
    let mut ok = vec![0x81; 63];
    ok.push(0x80);
    assert_eq!(cbor::item_len(&ok, &Limits::default()), Ok(64));
}

#[test]
fn size_limit_trailing_and_prefix() {
    let big = cbor::encode(&Ipld::Bytes(vec![7; 1000])).unwrap();
    let small = Limits {
        max_depth: 64,
        max_bytes: 100,
    };
    assert_eq!(
        cbor::item_len(&big, &small),
        Err(CborError::TooLarge { max: 100 })
    );
    assert!(cbor::decode_with::<Ipld>(&big, &small).is_err());

    let mut two = cbor::encode(&"header").unwrap();
    let body = cbor::encode(&42u64).unwrap();
    two.extend_from_slice(&body);
    assert!(matches!(
        cbor::decode::<Ipld>(&two),
        Err(CborError::Trailing { extra: 2, .. })
    ));
    let (head, rest): (String, &[u8]) = cbor::decode_prefix(&two).unwrap();
    assert_eq!(head, "header");
    assert_eq!(cbor::decode::<u64>(rest), Ok(42));
}

/// Sample valid encodings to mutate: the interop vectors plus a typical record.
fn seeds() -> Vec<Vec<u8>> {
    let cases = load_json("data-model/data-model-fixtures.json");
    let mut out: Vec<Vec<u8>> = cases
        .as_array()
        .expect("array")
        .iter()
        .map(|c| b64(c["cbor_base64"].as_str().expect("string")).expect("base64"))
        .collect();
    out.push(sample_car());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = cbor::item_len(&bytes, &Limits::default());
        let _ = cbor::decode::<Ipld>(&bytes);
        let _ = cbor::decode_prefix::<Ipld>(&bytes);
        let _ = cbor::contains_float(&bytes);
        let _ = read_car(&bytes, &CarLimits::FIREHOSE);
        let _ = guildhall_proto::mst::decode_node(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_mutated_valid_inputs(
        which in 0usize..8,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let seeds = seeds();
        let mut bytes = seeds[which % seeds.len()].clone();
        for (idx, byte, kind) in edits {
            if bytes.is_empty() {
                bytes.push(byte);
                continue;
            }
            let i = idx.index(bytes.len());
            match kind {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => { bytes.truncate(i); }
            }
        }
        if let Ok(len) = cbor::item_len(&bytes, &Limits::default()) {
            // Whatever the scan accepts is inside the buffer.
            prop_assert!(len <= bytes.len());
        }
        let _ = cbor::decode::<Ipld>(&bytes);
        let _ = read_car(&bytes, &CarLimits::FIREHOSE);
        let _ = guildhall_proto::mst::decode_node(&bytes);
    }

    #[test]
    fn encode_then_scan_agrees(v in arb_ipld()) {
        let bytes = cbor::encode(&v).unwrap();
        prop_assert_eq!(cbor::item_len(&bytes, &Limits::default()), Ok(bytes.len()));
        let back: Ipld = cbor::decode(&bytes).unwrap();
        prop_assert_eq!(back, v);
    }
}

/// Arbitrary IPLD values without floats (whose NaN breaks equality) and with small nesting.
fn arb_ipld() -> impl Strategy<Value = Ipld> {
    let leaf = prop_oneof![
        Just(Ipld::Null),
        any::<bool>().prop_map(Ipld::Bool),
        any::<i64>().prop_map(|i| Ipld::Integer(i.into())),
        ".{0,12}".prop_map(Ipld::String),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Ipld::Bytes),
        proptest::collection::vec(any::<u8>(), 0..20)
            .prop_map(|b| Ipld::Link(cbor::cid_for_cbor(&b))),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Ipld::List),
            proptest::collection::btree_map(".{0,8}", inner, 0..6).prop_map(Ipld::Map),
        ]
    })
}

/// The reference PDS's `getRepo` output for alice reads, with the roots and blocks its index
/// describes.
#[test]
fn reference_repo_car_reads() {
    let bytes = read(&peer_fixture("repo-alice.car"));
    let index: Value =
        serde_json::from_slice(&read(&peer_fixture("index.json"))).expect("index.json");
    let entry = index["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["file"] == "repo-alice.car")
        .expect("repo-alice.car in index");
    let car = read_car(&bytes, &CarLimits::repo(10_000_000)).expect("reads");
    let roots: Vec<String> = car.roots.iter().map(ToString::to_string).collect();
    assert_eq!(Value::from(roots), entry["decoded"]["roots"]);
    let want = entry["decoded"]["blocks"].as_array().expect("blocks");
    assert_eq!(car.blocks.len(), want.len());
    for b in want {
        let cid = Cid::try_from(b["cid"].as_str().expect("cid")).expect("parses");
        let block = car.blocks.get(&cid).expect("block present");
        assert_eq!(Some(block.len() as u64), b["size"].as_u64());
    }
    println!("repo-alice.car: {} blocks", car.blocks.len());
    // Writing it back gives a CAR that reads to the same content.
    let again = read_car(&write_car(&car.roots, &car.blocks), &CarLimits::FIREHOSE).expect("reads");
    assert_eq!(again, car);
}

/// A small valid CAR: one root, three DAG-CBOR blocks and a raw one.
pub fn sample_car() -> Vec<u8> {
    let mut blocks = BlockMap::new();
    let mut root = None;
    for v in ["a", "bb", "ccc"] {
        let b = cbor::encode(&Ipld::List(vec![Ipld::String(v.into())])).expect("encodes");
        let c = cbor::cid_for_cbor(&b);
        root.get_or_insert(c);
        blocks.insert(c, b);
    }
    blocks.insert(cbor::cid_for(cbor::RAW, b"blob"), b"blob".to_vec());
    write_car(&[root.expect("a root")], &blocks)
}

#[test]
fn car_limits_and_forgeries_are_typed_errors() {
    let good = sample_car();
    let car = read_car(&good, &CarLimits::FIREHOSE).expect("reads");
    assert_eq!(car.blocks.len(), 4);

    let tight = CarLimits {
        max_bytes: good.len() - 1,
        ..CarLimits::FIREHOSE
    };
    assert!(matches!(
        read_car(&good, &tight),
        Err(CarError::TooLarge { .. })
    ));
    let few = CarLimits {
        max_blocks: 3,
        ..CarLimits::FIREHOSE
    };
    assert!(matches!(
        read_car(&good, &few),
        Err(CarError::TooManyBlocks { max: 3 })
    ));
    let small_blocks = CarLimits {
        max_block_bytes: 4,
        ..CarLimits::FIREHOSE
    };
    assert!(matches!(
        read_car(&good, &small_blocks),
        Err(CarError::BlockTooLarge { .. })
    ));

    // Truncated anywhere: a typed error, or (cut exactly between sections) fewer blocks.
    let mut errors = 0;
    for cut in 0..good.len() {
        match read_car(&good[..cut], &CarLimits::FIREHOSE) {
            Err(_) => errors += 1,
            Ok(partial) => assert!(partial.blocks.len() < 4, "cut at {cut}"),
        }
    }
    assert!(errors >= good.len() - 4);

    // A section claiming a terabyte is refused from its length alone.
    let header_end = {
        let mut pos = 0;
        while good[pos] & 0x80 != 0 {
            pos += 1;
        }
        pos + 1 + usize::from(good[0])
    };
    let mut huge = good[..header_end].to_vec();
    huge.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x20]);
    assert!(matches!(
        read_car(&huge, &CarLimits::FIREHOSE),
        Err(CarError::BlockTooLarge { .. })
    ));

    // A block that does not hash to its CID.
    let block = cbor::encode(&"real").expect("encodes");
    let cid = cbor::cid_for_cbor(&block);
    let mut forged = BlockMap::new();
    forged.insert(cid, cbor::encode(&"fake").expect("encodes"));
    assert_eq!(
        read_car(&write_car(&[cid], &forged), &CarLimits::FIREHOSE),
        Err(CarError::HashMismatch { cid })
    );

    // Header problems: wrong version, not a map.
    let mut v2 = write_car(&[cid], &BlockMap::new());
    let last = v2.len() - 1;
    v2[last] = 0x02;
    assert_eq!(
        read_car(&v2, &CarLimits::FIREHOSE),
        Err(CarError::Version(2))
    );
    assert!(matches!(
        read_car(&[0x01, 0x01], &CarLimits::FIREHOSE),
        Err(CarError::Header(_))
    ));
}
