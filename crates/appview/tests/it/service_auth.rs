//! Service auth through the AppView's router, with real tokens from the reference PDS
//! (`getServiceAuth`, K-256 accounts) and P-256 tokens the test signs for a did:plc it owns in
//! the reference PLC: every way of being wrong is a 401 with its own name; a token for one
//! method cannot be spent on another, nor twice; a rotated key is picked up after one refetch
//! and the old key no longer works; an issuer that does not resolve is a 401, counted.

use axum::http::StatusCode;
use guildhall_proto::crypto::SigningKey;
use guildhall_testkit::plc::{PlcDid, PlcState};
use serde_json::{Value, json};

use crate::harness::{Ctx, both};

use crate::peer_support::{
    AUD, GET_BALANCE, K256_ORDER, P256_ORDER, TRANSFER, assert_error, claims, high_s, now, sign,
    world,
};

both!(service_auth_refusals, rotated_keys_and_unknown_issuers);

const UNAUTHORIZED: StatusCode = StatusCode::UNAUTHORIZED;

fn with(mut c: Value, change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    if let Value::Object(m) = &mut c {
        change(m);
    }
    c
}

async fn service_auth_refusals(ctx: Ctx) {
    let w = world(&ctx.store, 1).await;
    let alice = w.account(0).clone();

    // A real token verifies once, for its method and this AppView only.
    let token = w.token(0, GET_BALANCE).await;
    let ok = w.probe(Some(&token)).await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
    assert_eq!(ok.1["did"], alice.did);
    assert_error(&w.probe(Some(&token)).await, UNAUTHORIZED, "JwtReplayed");
    // Its high-S twin is the same signature mathematically; refused all the same.
    let fresh = w.token(0, GET_BALANCE).await;
    let r = w.probe(Some(&high_s(&fresh, K256_ORDER))).await;
    assert_error(&r, UNAUTHORIZED, "BadJwtSignature");
    assert!(
        r.1["message"].as_str().unwrap_or("").contains("high S"),
        "{}",
        r.1
    );
    // The refused twin did not spend the real token's jti.
    assert_eq!(w.probe(Some(&fresh)).await.0, StatusCode::OK);
    // A token minted for transfer is no good for getBalance.
    let for_transfer = w.token(0, TRANSFER).await;
    assert_error(
        &w.probe(Some(&for_transfer)).await,
        UNAUTHORIZED,
        "BadJwtLexiconMethod",
    );
    // A token for another service is no good here.
    let elsewhere = w
        .pds_token(&alice, "did:web:elsewhere.test", GET_BALANCE)
        .await;
    assert_error(
        &w.probe(Some(&elsewhere)).await,
        UNAUTHORIZED,
        "BadJwtAudience",
    );
    assert_error(&w.probe(None).await, UNAUTHORIZED, "AuthMissing");
    assert_error(&w.probe(Some("not-a-jwt")).await, UNAUTHORIZED, "BadJwt");

    // A did:plc with a P-256 #atproto key, signed by the test.
    let key = SigningKey::generate_p256_from_seed(&rand::random::<[u8; 32]>());
    let plc = PlcDid::create(
        &w.peer.info().plc_url,
        SigningKey::generate_from_seed(&rand::random::<[u8; 32]>()),
        &PlcState {
            signing_key: key.public_key(),
            handle: "p256.test".to_owned(),
            pds: w.peer.pds().url.clone(),
        },
    )
    .await
    .expect("did:plc");
    let me = plc.did.as_str();
    let good = sign(&key, &claims(me, GET_BALANCE));
    let r = w.probe(Some(&good)).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    assert_eq!(r.1["did"], me);
    assert_error(&w.probe(Some(&good)).await, UNAUTHORIZED, "JwtReplayed");

    let stranger = SigningKey::generate_p256_from_seed(&rand::random::<[u8; 32]>());
    let cases: Vec<(&str, String)> = vec![
        (
            "JwtExpired",
            sign(
                &key,
                &with(claims(me, GET_BALANCE), |m| {
                    m.insert("exp".into(), json!(now() - 120));
                    m.insert("iat".into(), json!(now() - 180));
                }),
            ),
        ),
        (
            "BadJwtAudience",
            sign(
                &key,
                &with(claims(me, GET_BALANCE), |m| {
                    m.insert("aud".into(), json!("did:web:elsewhere.test"));
                }),
            ),
        ),
        (
            "BadJwtLexiconMethod",
            sign(
                &key,
                &with(claims(me, GET_BALANCE), |m| {
                    m.remove("lxm");
                }),
            ),
        ),
        ("BadJwtLexiconMethod", sign(&key, &claims(me, TRANSFER))),
        ("BadJwtSignature", sign(&stranger, &claims(me, GET_BALANCE))),
        (
            "BadJwtSignature",
            high_s(&sign(&key, &claims(me, GET_BALANCE)), P256_ORDER),
        ),
        (
            // The other curve's algorithm for a P-256 key.
            "BadJwtSignature",
            sign(
                &SigningKey::generate_from_seed(&[5; 32]),
                &claims(me, GET_BALANCE),
            ),
        ),
        (
            "BadJwt",
            sign(
                &key,
                &with(claims(me, GET_BALANCE), |m| {
                    m.remove("jti");
                }),
            ),
        ),
    ];
    for (name, token) in cases {
        assert_error(&w.probe(Some(&token)).await, UNAUTHORIZED, name);
    }
    let m = w.metrics().await;
    assert!(
        m.contains("guildhall_service_auth_failures_total{reason=\"BadJwtSignature\"} 4"),
        "{m}"
    );
    // The audience the AppView checks is the DID it serves.
    let (st, doc) = {
        let r = w.call("/.well-known/did.json", None, None).await;
        (r.0, r.1)
    };
    assert_eq!(st, StatusCode::OK);
    assert_eq!(doc["id"], AUD);
}

async fn rotated_keys_and_unknown_issuers(ctx: Ctx) {
    let w = world(&ctx.store, 1).await;
    let old = SigningKey::generate_p256_from_seed(&rand::random::<[u8; 32]>());
    let rotation = SigningKey::generate_from_seed(&rand::random::<[u8; 32]>());
    let state = |k: &SigningKey| PlcState {
        signing_key: k.public_key(),
        handle: "rotating.test".to_owned(),
        pds: w.peer.pds().url.clone(),
    };
    let mut plc = PlcDid::create(&w.peer.info().plc_url, rotation, &state(&old))
        .await
        .expect("did:plc");
    let me = plc.did.clone();
    // The AppView caches the old key.
    let r = w.probe(Some(&sign(&old, &claims(&me, GET_BALANCE)))).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);

    let new = SigningKey::generate_p256_from_seed(&rand::random::<[u8; 32]>());
    plc.update(&state(&new)).await.expect("rotate");
    // The new key's token fails against the cached key, the document is fetched once more,
    // and it passes.
    let r = w.probe(Some(&sign(&new, &claims(&me, GET_BALANCE)))).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    // The old key no longer speaks for the DID.
    assert_error(
        &w.probe(Some(&sign(&old, &claims(&me, GET_BALANCE)))).await,
        UNAUTHORIZED,
        "BadJwtSignature",
    );

    // An issuer the PLC does not know: 401 BadJwt with a clear message, counted apart.
    let ghost = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
    let r = w
        .probe(Some(&sign(&new, &claims(ghost, GET_BALANCE))))
        .await;
    assert_error(&r, UNAUTHORIZED, "BadJwt");
    assert!(
        r.1["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot resolve") && m.contains(ghost)),
        "{}",
        r.1
    );
    let m = w.metrics().await;
    assert!(
        m.contains("guildhall_service_auth_failures_total{reason=\"IssuerUnresolved\"} 1"),
        "{m}"
    );
}
