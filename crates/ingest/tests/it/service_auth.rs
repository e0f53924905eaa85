//! Service-auth tokens from the real reference PDS (`com.atproto.server.getServiceAuth`, a
//! K-256 account), verified against the issuer's key as resolved from the reference PLC: the
//! token verifies for the method it names and no other, and its `jti` is spent once.

use std::time::{SystemTime, UNIX_EPOCH};

use guildhall_proto::service_auth::{self, AuthError, Expect, ReplayCache};
use guildhall_proto::syntax::Did;
use guildhall_testkit::{Peer, PeerOptions};

const AUD: &str = "did:web:guildhall.test";
const METHOD: &str = "dev.guildhall.ledger.getBalance";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_the_reference_pds_verify_once_for_their_method() {
    let peer = Peer::start(PeerOptions {
        accounts: 1,
        ..PeerOptions::default()
    })
    .await
    .expect("peer");
    let alice = &peer.accounts()[0];
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/xrpc/com.atproto.server.getServiceAuth",
            alice.pds_url.trim_end_matches('/')
        ))
        .query(&[("aud", AUD), ("lxm", METHOD)])
        .bearer_auth(&alice.access_jwt)
        .send()
        .await
        .expect("getServiceAuth");
    assert!(
        resp.status().is_success(),
        "getServiceAuth: {}",
        resp.status()
    );
    let body: serde_json::Value = resp.json().await.expect("json");
    let token = body["token"].as_str().expect("token").to_owned();

    let resolver = crate::harness::resolver(&peer.info().plc_url, None, true);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let expect = |method| Expect {
        audience: AUD,
        method,
        now_s: now,
        leeway_s: 5,
        max_age_s: 3600,
    };

    let t = service_auth::parse(&token).expect("a compact JWT");
    assert_eq!(t.claims.issuer_did(), alice.did);
    service_auth::check_claims(&t, &expect(METHOD)).expect("claims");
    let key = resolver
        .resolve(&Did::parse(t.claims.issuer_did()).expect("did"))
        .await
        .expect("issuer resolves")
        .key
        .clone();
    assert_eq!(key.curve(), guildhall_proto::crypto::Curve::K256);
    service_auth::check_signature(&t, &key).expect("signed by the account's #atproto key");

    // Not for another method, nor another audience.
    assert!(matches!(
        service_auth::check_claims(&t, &expect("dev.guildhall.ledger.transfer")),
        Err(AuthError::BadJwtLexiconMethod(_))
    ));
    let elsewhere = Expect {
        audience: "did:web:other.test",
        ..expect(METHOD)
    };
    assert!(matches!(
        service_auth::check_claims(&t, &elsewhere),
        Err(AuthError::BadJwtAudience(_))
    ));
    // A tampered payload no longer verifies.
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_claims = t.claims.clone();
    let payload = serde_json::json!({
        "iss": forged_claims.iss, "aud": AUD, "exp": forged_claims.exp + 3600,
        "iat": forged_claims.iat, "lxm": METHOD, "jti": forged_claims.jti,
    });
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string());
    parts[1] = &encoded;
    let tampered = service_auth::parse(&parts.join(".")).expect("still parses");
    assert!(matches!(
        service_auth::check_signature(&tampered, &key),
        Err(AuthError::BadJwtSignature(_))
    ));
    // Spent once.
    let mut cache = ReplayCache::new(1024);
    let jti = t.claims.jti.clone().expect("the PDS sets a jti");
    cache
        .check_and_insert(&t.claims.iss, &jti, t.claims.exp, now, 5)
        .expect("first use");
    assert_eq!(
        cache.check_and_insert(&t.claims.iss, &jti, t.claims.exp, now, 5),
        Err(AuthError::JwtReplayed)
    );
}
