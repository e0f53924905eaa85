//! The forged-frame corpus: each way a commit can lie yields its own typed error, never a panic.

use guildhall_proto::car::{self, CarError};
use guildhall_proto::cbor::{self, CborError};
use guildhall_proto::commit::{Commit, UnsignedCommit};
use guildhall_proto::crypto::{SignatureError, SigningKey};
use guildhall_proto::forge::{ForgeRepo, Forged, Write};
use guildhall_proto::frame::{self, FrameError};
use guildhall_proto::syntax::Did;
use guildhall_proto::verify::{self, RepoState, VerifyError};
use proptest::prelude::*;

/// 2027-01-01 in microseconds: after every forged rev.
const NOW: u64 = 1_798_761_600_000_000;

fn record(n: u32) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Svc {
        #[serde(rename = "$type")]
        t: &'static str,
        name: String,
        #[serde(rename = "createdAt")]
        created_at: &'static str,
    }
    cbor::encode(&Svc {
        t: "dev.guildhall.service",
        name: format!("service {n}"),
        created_at: "2026-01-01T00:00:00.000Z",
    })
    .expect("encode")
}

fn put(n: u32) -> Write {
    Write::Put {
        path: format!("dev.guildhall.service/svc-{n}"),
        record: record(n),
    }
}

struct Scene {
    repo: ForgeRepo,
    key: SigningKey,
    state: RepoState,
    forged: Forged,
}

/// A repo with 40 records, then one commit that updates, creates and deletes.
fn scene(key: SigningKey) -> Scene {
    let did = Did::parse("did:plc:forgedrepoaaaaaaaaaaaaaa").expect("did");
    let mut repo = ForgeRepo::new(did, key.clone());
    repo.commit(&[]).expect("genesis");
    repo.commit(&(0..40).map(put).collect::<Vec<_>>())
        .expect("fill");
    let (rev, data) = repo.head().expect("head").clone();
    let state = RepoState { rev, data };
    let forged = repo
        .commit(&[
            Write::Put {
                path: "dev.guildhall.service/svc-3".to_owned(),
                record: record(1003),
            },
            put(77),
            Write::Delete {
                path: "dev.guildhall.service/svc-9".to_owned(),
            },
        ])
        .expect("target commit");
    Scene {
        repo,
        key,
        state,
        forged,
    }
}

fn k256() -> SigningKey {
    SigningKey::generate_from_seed(&[7; 32])
}

fn verify_forged(
    f: &Forged,
    key: &SigningKey,
    state: Option<&RepoState>,
) -> Result<(), VerifyError> {
    let ev = f.wire.decoded().expect("forged frame decodes");
    verify::verify_commit(&ev, &key.public_key(), state, NOW).map(|_| ())
}

/// Replaces the commit block with `commit` and re-roots the slice.
fn replace_commit(f: &mut Forged, commit: &Commit) {
    let bytes = commit.encode().expect("encode");
    let cid = cbor::cid_for_cbor(&bytes);
    f.blocks.remove(&f.root);
    f.blocks.insert(cid, bytes);
    f.root = cid;
    f.wire.commit = cid;
    f.repack();
}

fn signed_commit(f: &Forged) -> Commit {
    Commit::decode(f.blocks.get(&f.root).expect("commit block")).expect("commit")
}

#[test]
fn valid_commits_verify_on_both_curves() {
    for key in [k256(), SigningKey::generate_p256_from_seed(&[9; 32])] {
        let s = scene(key);
        let ev = s.forged.wire.decoded().expect("decodes");
        let v = verify::verify_commit(&ev, &s.key.public_key(), Some(&s.state), NOW)
            .expect("valid commit verifies");
        assert_eq!(v.ops.len(), 3);
        assert_eq!(Some(&(v.state.rev.clone(), v.state.data)), s.repo.head());
    }
}

#[test]
fn flipped_signature_byte_is_a_bad_signature() {
    let s = scene(k256());
    let mut f = s.forged.clone();
    let mut c = signed_commit(&f);
    c.sig[10] ^= 0x01;
    replace_commit(&mut f, &c);
    assert_eq!(
        verify_forged(&f, &s.key, Some(&s.state)),
        Err(VerifyError::Signature(SignatureError::Invalid))
    );
}

/// `n - s` on 32-byte big-endian numbers.
pub(crate) fn negate_s(sig: &mut [u8], order: [u8; 32]) {
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(order[i]) - i16::from(sig[32 + i]) - borrow;
        sig[32 + i] = d.rem_euclid(256) as u8;
        borrow = i16::from(d < 0);
    }
}

pub(crate) const K256_ORDER: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE,
    0xBA, 0xAE, 0xDC, 0xE6, 0xAF, 0x48, 0xA0, 0x3B, 0xBF, 0xD2, 0x5E, 0x8C, 0xD0, 0x36, 0x41, 0x41,
];
pub(crate) const P256_ORDER: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
];

#[test]
fn high_s_signature_is_refused_on_both_curves() {
    for (key, order) in [
        (k256(), K256_ORDER),
        (SigningKey::generate_p256_from_seed(&[9; 32]), P256_ORDER),
    ] {
        let s = scene(key);
        let mut f = s.forged.clone();
        let mut c = signed_commit(&f);
        // (r, n - s) is the same signature mathematically: only the low-S rule refuses it.
        negate_s(&mut c.sig, order);
        replace_commit(&mut f, &c);
        assert_eq!(
            verify_forged(&f, &s.key, Some(&s.state)),
            Err(VerifyError::Signature(SignatureError::HighS))
        );
    }
}

#[test]
fn der_signature_is_refused() {
    let s = scene(k256());
    let mut f = s.forged.clone();
    let mut c = signed_commit(&f);
    // A DER encoding: SEQUENCE { INTEGER r, INTEGER s } — 70 or so bytes, never 64.
    let (r, sv) = c.sig.split_at(32);
    let mut der = vec![0x30, 68, 0x02, 32];
    der.extend_from_slice(r);
    der.extend_from_slice(&[0x02, 32]);
    der.extend_from_slice(sv);
    c.sig = der;
    replace_commit(&mut f, &c);
    assert!(matches!(
        verify_forged(&f, &s.key, Some(&s.state)),
        Err(VerifyError::Signature(SignatureError::BadLength))
    ));
}

#[test]
fn wrong_key_is_a_bad_signature() {
    let s = scene(k256());
    let other = SigningKey::generate_from_seed(&[8; 32]);
    assert_eq!(
        verify_forged(&s.forged, &other, Some(&s.state)),
        Err(VerifyError::Signature(SignatureError::Invalid))
    );
}

#[test]
fn commit_for_another_did_is_refused() {
    let s = scene(k256());
    let mut f = s.forged.clone();
    let c = signed_commit(&f);
    let forged = s.repo.sign(UnsignedCommit {
        did: Did::parse("did:plc:someoneelseaaaaaaaaaaaaa").expect("did"),
        version: 3,
        data: c.data,
        rev: c.rev.clone(),
        prev: None,
    });
    replace_commit(&mut f, &forged);
    assert!(matches!(
        verify_forged(&f, &s.key, Some(&s.state)),
        Err(VerifyError::WrongDid { .. })
    ));
}

#[test]
fn dropped_op_breaks_the_inversion() {
    let s = scene(k256());
    let mut f = s.forged.clone();
    f.wire.ops.remove(1);
    assert!(matches!(
        verify_forged(&f, &s.key, Some(&s.state)),
        Err(VerifyError::InversionMismatch { .. })
    ));
}

#[test]
fn extra_op_is_refused() {
    let s = scene(k256());
    let mut f = s.forged.clone();
    // Claim an untouched record as newly created: inverting it removes a key the old tree had.
    let (path, cid) = ("dev.guildhall.service/svc-20".to_owned(), {
        cbor::cid_for_cbor(&record(20))
    });
    f.wire.ops.push(guildhall_proto::forge::WireOp {
        action: "create".to_owned(),
        path,
        cid: Some(cid),
        prev: None,
    });
    f.blocks.insert(cid, record(20));
    f.repack();
    let err = verify_forged(&f, &s.key, Some(&s.state)).expect_err("extra op");
    assert!(
        matches!(
            err,
            VerifyError::InversionMismatch { .. } | VerifyError::MissingBlock(_)
        ),
        "{err:?}"
    );
}

#[test]
fn missing_record_block_and_missing_node_are_named() {
    let s = scene(k256());
    let mut f = s.forged.clone();
    let cid = f.wire.ops[1].cid.expect("create cid");
    f.blocks.remove(&cid);
    f.repack();
    assert_eq!(
        verify_forged(&f, &s.key, Some(&s.state)),
        Err(VerifyError::MissingBlock(cid))
    );

    // Take out the MST root node: the proof cannot even start.
    let mut f = s.forged.clone();
    let data = signed_commit(&f).data;
    f.blocks.remove(&data);
    f.repack();
    assert_eq!(
        verify_forged(&f, &s.key, Some(&s.state)),
        Err(VerifyError::MissingBlock(data))
    );
}

#[test]
fn altered_prev_data_is_caught_with_and_without_held_state() {
    let s = scene(k256());
    let mut f = s.forged.clone();
    let bogus = cbor::cid_for_cbor(&record(999));
    f.wire.prev_data = Some(bogus);
    assert!(matches!(
        verify_forged(&f, &s.key, Some(&s.state)),
        Err(VerifyError::PrevDataMismatch { .. })
    ));
    // A consumer holding nothing still catches it: the inversion does not land on it.
    assert!(matches!(
        verify_forged(&f, &s.key, None),
        Err(VerifyError::InversionMismatch { .. })
    ));
}

#[test]
fn replayed_and_out_of_order_revs_are_refused() {
    let s = scene(k256());
    let ev = s.forged.wire.decoded().expect("decodes");
    let v = verify::verify_commit(&ev, &s.key.public_key(), Some(&s.state), NOW).expect("ok");
    // The same commit again, against the state it produced.
    assert!(matches!(
        verify::verify_commit(&ev, &s.key.public_key(), Some(&v.state), NOW),
        Err(VerifyError::RevNotIncreasing { .. })
    ));
    // `since` that is not the rev we hold: events were missed.
    let mut f = s.forged.clone();
    f.wire.since = Some("2222222222222".to_owned());
    assert!(matches!(
        verify_forged(&f, &s.key, Some(&s.state)),
        Err(VerifyError::SinceMismatch { .. })
    ));
    // A rev from the far future.
    assert!(matches!(
        verify::verify_commit(&ev, &s.key.public_key(), Some(&s.state), 1_000_000),
        Err(VerifyError::RevInFuture(_))
    ));
}

#[test]
fn oversized_car_slice_is_refused_before_use() {
    let s = scene(k256());
    let mut f = s.forged.clone();
    // Pad the slice past 2,000,000 bytes with a large (valid) raw block.
    let big = vec![0u8; 900_000];
    for i in 0..3u8 {
        let mut b = big.clone();
        b[0] = i;
        f.blocks.insert(cbor::cid_for(cbor::RAW, &b), b);
    }
    f.repack();
    assert!(f.wire.blocks.len() > 2_000_000);
    assert!(matches!(
        verify_forged(&f, &s.key, Some(&s.state)),
        Err(VerifyError::Car(CarError::TooLarge { .. }))
    ));
}

#[test]
fn truncated_and_deeply_nested_frames_are_frame_errors() {
    let s = scene(k256());
    let frame_bytes = s.forged.wire.frame();
    for cut in [1, 5, frame_bytes.len() / 2, frame_bytes.len() - 1] {
        let err = frame::decode_frame(&frame_bytes[..cut]).expect_err("truncated");
        assert!(
            matches!(
                err,
                FrameError::Header(CborError::Truncated { .. })
                    | FrameError::Body {
                        source: CborError::Truncated { .. },
                        ..
                    }
            ),
            "cut at {cut}: {err:?}"
        );
        assert!(frame::route(&frame_bytes[..cut]).is_err());
    }
    // A header then 100,000 nested arrays.
    let mut deep = cbor::encode(&serde_json::json!({"op": 1, "t": "#commit"})).expect("header");
    deep.extend(std::iter::repeat_n(0x81u8, 100_000));
    deep.push(0x00);
    assert!(matches!(
        frame::decode_frame(&deep),
        Err(FrameError::Body {
            source: CborError::TooDeep { .. },
            ..
        })
    ));
    // Over 5 MB, refused before any decoding.
    let huge = vec![0u8; 5_000_001];
    assert_eq!(frame::route(&huge), Err(FrameError::TooLarge(5_000_001)));
}

#[test]
fn each_forgery_has_its_own_error_kind() {
    // The kinds the corpus above produces, gathered: distinct names for distinct lies.
    let kinds = [
        VerifyError::Signature(SignatureError::Invalid).kind(),
        VerifyError::Signature(SignatureError::HighS).kind(),
        VerifyError::InversionMismatch {
            computed: cbor::cid_for_cbor(&[0x80]),
            claimed: cbor::cid_for_cbor(&[0x80]),
        }
        .kind(),
        VerifyError::MissingBlock(cbor::cid_for_cbor(&[0x80])).kind(),
        VerifyError::MissingPrevData.kind(),
    ];
    let unique: std::collections::HashSet<_> = kinds.iter().collect();
    assert_eq!(unique.len(), kinds.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn frame_decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = frame::decode_frame(&bytes);
        let _ = frame::route(&bytes);
    }

    #[test]
    fn frame_decoders_never_panic_on_mutated_frames(idx in any::<usize>(), val in any::<u8>(), cut in any::<usize>()) {
        thread_local! {
            static FRAME: Vec<u8> = scene(k256()).forged.wire.frame();
        }
        let mut bytes = FRAME.with(Clone::clone);
        let i = idx % bytes.len();
        bytes[i] = val;
        bytes.truncate(1 + cut % bytes.len());
        if let Ok(frame::Frame::Commit(c)) = frame::decode_frame(&bytes) {
            let _ = verify::verify_commit(&c, &k256().public_key(), None, NOW);
        }
        let _ = frame::route(&bytes);
    }
}

#[test]
fn car_writer_and_reader_agree_on_forged_slices() {
    let s = scene(k256());
    let car = car::read_car(&s.forged.wire.blocks, &car::CarLimits::FIREHOSE).expect("reads");
    assert_eq!(car.roots, vec![s.forged.root]);
    assert_eq!(car.blocks.len(), s.forged.blocks.len());
}
