//! The shared `crypto/` interop vectors (signature fixtures, W3C did:key vectors) and the
//! reference PDS/PLC identity fixtures, run against `guildhall_proto::crypto`/`identity`.

use crate::vectors::{interop, read};
use guildhall_proto::crypto::{Curve, PublicKey, SignatureError, SigningKey};

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Unpadded standard base64, as the fixtures write it (decoded via multibase's `m` prefix).
fn b64(s: &str) -> Vec<u8> {
    match multibase::decode(format!("m{}", s.trim_end_matches('='))) {
        Ok((_, bytes)) => bytes,
        Err(e) => panic!("bad base64 {s:?}: {e}"),
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|e| panic!("hex {s}: {e}")))
        .collect()
}

fn field<'a>(case: &'a serde_json::Value, name: &str) -> &'a str {
    case[name]
        .as_str()
        .unwrap_or_else(|| panic!("case lacks string field {name}: {case}"))
}

#[test]
fn signature_fixtures() {
    let cases = json(&interop("crypto/signature-fixtures.json"));
    let cases = cases.as_array().expect("fixture file is an array");
    let mut n = 0;
    for case in cases {
        let comment = field(case, "comment");
        let did_key = field(case, "publicKeyDid");
        let key = PublicKey::from_did_key(did_key).unwrap_or_else(|e| panic!("{comment}: {e}"));
        assert_eq!(
            key.to_did_key(),
            did_key,
            "{comment}: did:key must round-trip"
        );
        // The same key in the DID-document form (legacy suite, raw point, no codec).
        let from_doc = PublicKey::from_verification_method(
            field(case, "didDocSuite"),
            field(case, "publicKeyMultibase"),
        )
        .unwrap_or_else(|e| panic!("{comment}: {e}"));
        assert_eq!(from_doc, key, "{comment}: both key encodings must agree");
        let expected_curve = match field(case, "algorithm") {
            "ES256K" => Curve::K256,
            "ES256" => Curve::P256,
            other => panic!("{comment}: unknown algorithm {other}"),
        };
        assert_eq!(key.curve(), expected_curve, "{comment}");

        let msg = b64(field(case, "messageBase64"));
        let sig = b64(field(case, "signatureBase64"));
        let result = key.verify(&msg, &sig);
        let valid = case["validSignature"]
            .as_bool()
            .expect("validSignature is a bool");
        assert_eq!(result.is_ok(), valid, "{comment}: got {result:?}");
        let tags: Vec<&str> = case["tags"]
            .as_array()
            .map(|t| t.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if tags.contains(&"high-s") {
            assert_eq!(result, Err(SignatureError::HighS), "{comment}");
        }
        if tags.contains(&"der-encoded") {
            assert_ne!(sig.len(), 64, "{comment}: a DER signature is not 64 bytes");
            assert_eq!(result, Err(SignatureError::BadLength), "{comment}");
        }
        n += 1;
    }
    assert!(n > 0, "no signature fixtures loaded");
    eprintln!("crypto signature-fixtures: {n} cases");
}

/// Each W3C vector: the private key must derive the listed did:key, the did:key must parse to
/// the same public key, and the key must sign and verify.
fn w3c_vectors(file: &str, curve: Curve) -> usize {
    let cases = json(&interop(file));
    let mut n = 0;
    for case in cases.as_array().expect("array") {
        let did_key = field(case, "publicDidKey");
        let private = if let Some(h) = case["privateKeyBytesHex"].as_str() {
            hex(h)
        } else {
            let b58 = field(case, "privateKeyBytesBase58");
            multibase::decode(format!("z{b58}"))
                .map(|(_, b)| b)
                .expect("base58 private key")
        };
        let sk =
            SigningKey::from_bytes(curve, &private).unwrap_or_else(|e| panic!("{did_key}: {e}"));
        let pk = sk.public_key();
        assert_eq!(pk.to_did_key(), did_key);
        assert_eq!(PublicKey::from_did_key(did_key), Ok(pk.clone()));
        let sig = sk.sign(did_key.as_bytes());
        assert_eq!(pk.verify(did_key.as_bytes(), &sig), Ok(()));
        n += 1;
    }
    assert!(n > 0, "{file}: no cases");
    eprintln!("crypto {file}: {n} cases");
    n
}

#[test]
fn w3c_didkey_k256() {
    w3c_vectors("crypto/w3c_didkey_K256.json", Curve::K256);
}

#[test]
fn w3c_didkey_p256() {
    w3c_vectors("crypto/w3c_didkey_P256.json", Curve::P256);
}

/// The reference PLC serves alice's key twice: the DID document (`GET /<did>`, legacy
/// `EcdsaSecp256k1VerificationKey2019` with an uncompressed point that starts `zQ…`) and the
/// `/data` form (a `did:key`). Both must give the key the PDS reported at account creation.
#[test]
fn peer_identity_fixtures_agree() {
    use crate::vectors::peer_fixture;
    use guildhall_proto::identity::DidDocument;

    let index = json(&peer_fixture("index.json"));
    let alice = index["accounts"]
        .as_array()
        .and_then(|a| a.iter().find(|acc| acc["name"] == "alice"))
        .expect("alice in index.json");
    let expected = PublicKey::from_did_key(field(alice, "signingKey")).expect("index signingKey");

    let doc: DidDocument =
        serde_json::from_slice(&read(&peer_fixture("did-doc-alice.json"))).expect("did doc");
    let data: DidDocument =
        serde_json::from_slice(&read(&peer_fixture("plc-data-alice.json"))).expect("plc data");
    for (form, d) in [("did-doc", &doc), ("plc-data", &data)] {
        assert_eq!(d.id.as_str(), field(alice, "did"), "{form}");
        assert_eq!(d.atproto_key().as_ref(), Ok(&expected), "{form}");
        assert_eq!(
            d.handle().map(|h| h.to_string()).as_deref(),
            Some(field(alice, "handle")),
            "{form}"
        );
        assert_eq!(d.pds_endpoint(), Some("http://localhost:2583"), "{form}");
    }
    assert_eq!(expected.to_did_key(), field(alice, "signingKey"));
    eprintln!("crypto peer identity: 2 forms agree");
}

/// End to end on real bytes: the signed commit at the root of alice's repository CAR decodes,
/// re-encodes to the identical block, and verifies with her `#atproto` key, and only with it.
#[test]
fn peer_repo_commit_verifies() {
    use crate::vectors::peer_fixture;
    use guildhall_proto::car::{CarLimits, read_car};
    use guildhall_proto::commit::Commit;
    use guildhall_proto::identity::DidDocument;

    let doc: DidDocument =
        serde_json::from_slice(&read(&peer_fixture("did-doc-alice.json"))).expect("did doc");
    let key = doc.atproto_key().expect("alice key");
    let car = read_car(
        &read(&peer_fixture("repo-alice.car")),
        &CarLimits::repo(50_000_000),
    )
    .expect("car");
    let root = car.roots.first().expect("a root");
    let block = car.blocks.get(root).expect("root block present");
    let commit = Commit::decode(block).expect("root is a v3 commit");
    assert_eq!(commit.did, doc.id);
    assert_eq!(
        commit.encode().expect("encodes"),
        block,
        "re-encoding must reproduce the signed block"
    );
    assert_eq!(commit.cid().expect("cid"), *root);
    assert_eq!(commit.verify_signature(&key), Ok(()));

    let latest = json(&peer_fixture("latest-commit-alice.json"));
    assert_eq!(commit.rev.as_str(), field(&latest, "rev"));

    let stranger = SigningKey::generate_from_seed(&[42; 32]).public_key();
    assert_eq!(
        commit.verify_signature(&stranger),
        Err(SignatureError::Invalid)
    );
    let mut tampered = commit.clone();
    tampered.sig[40] ^= 1;
    assert!(tampered.verify_signature(&key).is_err());
    eprintln!("crypto peer commit: rev {} verified", commit.rev);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary key strings never panic the parsers.
        #[test]
        fn key_parsers_are_total(s in "z[1-9A-HJ-NP-Za-km-z]{0,100}|\\PC{0,60}") {
            let _ = PublicKey::from_multikey(&s);
            let _ = PublicKey::from_did_key(&format!("did:key:{s}"));
            for t in ["Multikey", "EcdsaSecp256k1VerificationKey2019", "EcdsaSecp256r1VerificationKey2019"] {
                let _ = PublicKey::from_verification_method(t, &s);
            }
        }

        /// Random 64-byte signatures never verify and never panic; a real signature verifies
        /// only for its own message.
        #[test]
        fn random_signatures_fail_typed(seed in any::<[u8; 32]>(), sig in proptest::collection::vec(any::<u8>(), 0..80), p256 in any::<bool>()) {
            let sk = if p256 { SigningKey::generate_p256_from_seed(&seed) } else { SigningKey::generate_from_seed(&seed) };
            let pk = sk.public_key();
            let result = pk.verify(b"msg", &sig);
            prop_assert!(result.is_err());
            if sig.len() != 64 {
                prop_assert_eq!(result, Err(SignatureError::BadLength));
            }
            let good = sk.sign(b"msg");
            prop_assert_eq!(pk.verify(b"msg", &good), Ok(()));
            prop_assert_eq!(pk.verify(b"msh", &good), Err(SignatureError::Invalid));
            prop_assert_eq!(PublicKey::from_did_key(&pk.to_did_key()), Ok(pk));
        }
    }
}
