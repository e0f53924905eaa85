//! Service-auth tokens as a PDS signs them, on both curves: accepted when everything holds, and
//! each way of being wrong refused with its own error — expiry, age, audience, method, a token
//! for another method reused, a foreign or high-S signature, a rotated key, a replayed `jti`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use guildhall_proto::crypto::SigningKey;
use guildhall_proto::service_auth::{self, AuthError, Expect, ReplayCache};
use serde_json::{Value, json};

use crate::forged::{K256_ORDER, P256_ORDER, negate_s};

const AUD: &str = "did:web:guildhall.example";
const METHOD: &str = "dev.guildhall.ledger.getBalance";
const NOW: i64 = 1_800_000_000;

fn claims() -> Value {
    json!({
        "iss": "did:plc:caller",
        "aud": AUD,
        "exp": NOW + 60,
        "iat": NOW - 1,
        "lxm": METHOD,
        "jti": "0123456789abcdef",
    })
}

fn expect(method: &str) -> Expect<'_> {
    Expect {
        audience: AUD,
        method,
        now_s: NOW,
        leeway_s: 5,
        max_age_s: 3600,
    }
}

fn keys() -> [SigningKey; 2] {
    [
        SigningKey::generate_from_seed(&[3; 32]),
        SigningKey::generate_p256_from_seed(&[4; 32]),
    ]
}

/// Parses, checks the claims for `method`, then the signature against `key`.
fn verify(token: &str, key: &SigningKey, method: &str) -> Result<service_auth::Claims, AuthError> {
    let t = service_auth::parse(token)?;
    service_auth::check_claims(&t, &expect(method))?;
    service_auth::check_signature(&t, &key.public_key())?;
    Ok(t.claims)
}

fn with(change: impl Fn(&mut serde_json::Map<String, Value>)) -> Value {
    let mut c = claims();
    if let Value::Object(m) = &mut c {
        change(m);
    }
    c
}

#[test]
fn a_good_token_verifies_on_both_curves() {
    for key in keys() {
        let token = service_auth::sign(&key, &claims());
        let c = verify(&token, &key, METHOD).expect("valid");
        assert_eq!(c.issuer_did(), "did:plc:caller");
    }
}

/// A token, the method it is presented for, and the error expected.
type Case<'a> = (String, &'a str, fn(&AuthError) -> bool);

#[test]
fn each_failure_has_its_own_error() {
    for key in keys() {
        let sign = |c: &Value| service_auth::sign(&key, c);
        let cases: Vec<Case<'_>> = vec![
            (
                sign(&with(|m| drop(m.insert("exp".into(), json!(NOW - 10))))),
                METHOD,
                |e| matches!(e, AuthError::JwtExpired),
            ),
            (
                sign(&with(|m| drop(m.insert("iat".into(), json!(NOW - 7200))))),
                METHOD,
                |e| matches!(e, AuthError::JwtExpired),
            ),
            (
                sign(&with(|m| drop(m.insert("iat".into(), json!(NOW + 600))))),
                METHOD,
                |e| matches!(e, AuthError::BadJwt(_)),
            ),
            (
                sign(&with(|m| {
                    drop(m.insert("aud".into(), json!("did:web:other.example")))
                })),
                METHOD,
                |e| matches!(e, AuthError::BadJwtAudience(_)),
            ),
            (sign(&with(|m| drop(m.remove("lxm")))), METHOD, |e| {
                matches!(e, AuthError::BadJwtLexiconMethod(_))
            }),
            // A token for one method cannot be spent on another.
            (sign(&claims()), "dev.guildhall.ledger.transfer", |e| {
                matches!(e, AuthError::BadJwtLexiconMethod(_))
            }),
            (sign(&with(|m| drop(m.remove("jti")))), METHOD, |e| {
                matches!(e, AuthError::BadJwt(_))
            }),
            ("not.a-token".to_owned(), METHOD, |e| {
                matches!(e, AuthError::BadJwt(_))
            }),
            ("a.b.c.d".to_owned(), METHOD, |e| {
                matches!(e, AuthError::BadJwt(_))
            }),
        ];
        for (token, method, ok) in cases {
            let err = verify(&token, &key, method).expect_err(&token);
            assert!(ok(&err), "{token}: {err:?}");
        }
    }
}

#[test]
fn foreign_rotated_and_high_s_signatures_are_refused() {
    for (key, order) in keys().into_iter().zip([K256_ORDER, P256_ORDER]) {
        let token = service_auth::sign(&key, &claims());
        // Verified against another key of the same curve: as after a rotation, until the
        // caller refetches the document.
        let rotated = match key.public_key().curve() {
            guildhall_proto::crypto::Curve::K256 => SigningKey::generate_from_seed(&[9; 32]),
            guildhall_proto::crypto::Curve::P256 => SigningKey::generate_p256_from_seed(&[9; 32]),
        };
        assert!(matches!(
            verify(&token, &rotated, METHOD),
            Err(AuthError::BadJwtSignature(_))
        ));
        // The other curve's key: the alg does not match.
        let other = if matches!(
            key.public_key().curve(),
            guildhall_proto::crypto::Curve::K256
        ) {
            SigningKey::generate_p256_from_seed(&[4; 32])
        } else {
            SigningKey::generate_from_seed(&[3; 32])
        };
        assert!(matches!(
            verify(&token, &other, METHOD),
            Err(AuthError::BadJwtSignature(_))
        ));
        // (r, n - s): the same signature mathematically, refused by the low-S rule.
        let (body, sig) = token.rsplit_once('.').expect("three parts");
        let mut raw = URL_SAFE_NO_PAD.decode(sig).expect("b64");
        negate_s(&mut raw, order);
        let high = format!("{body}.{}", URL_SAFE_NO_PAD.encode(&raw));
        match verify(&high, &key, METHOD) {
            Err(AuthError::BadJwtSignature(m)) => assert!(m.contains("high S"), "{m}"),
            other => panic!("high-S accepted or misreported: {other:?}"),
        }
    }
}

#[test]
fn a_jti_is_used_once_until_its_token_expires() {
    let mut cache = ReplayCache::new(2);
    cache
        .check_and_insert("did:plc:a", "n1", NOW + 60, NOW, 5)
        .expect("first use");
    assert_eq!(
        cache.check_and_insert("did:plc:a", "n1", NOW + 60, NOW + 1, 5),
        Err(AuthError::JwtReplayed)
    );
    // Another issuer's nonce is its own.
    cache
        .check_and_insert("did:plc:b", "n1", NOW + 60, NOW + 1, 5)
        .expect("other issuer");
    // Full: a third live token waits rather than evicting a live one.
    assert!(matches!(
        cache.check_and_insert("did:plc:c", "n2", NOW + 60, NOW + 2, 5),
        Err(AuthError::BadJwt(_))
    ));
    // Past expiry (and leeway) the entries are forgotten.
    cache
        .check_and_insert("did:plc:c", "n2", NOW + 200, NOW + 66, 5)
        .expect("room again");
    assert_eq!(cache.len(), 1);
}
