//! What the service-auth and ledger tests share: an AppView whose DID is
//! `did:web:guildhall.test`, resolving issuers from a real reference PLC, with a ledger writer
//! on the test's store; tokens from the reference PDS's `getServiceAuth` and tokens the tests
//! sign themselves; and one XRPC call helper.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use guildhall_appview::auth::{AuthConfig, Caller};
use guildhall_appview::{AppConfig, AppState, TrustIndex, TrustIndexOptions, admin_router, router};
use guildhall_ingest::identity::{Resolver, ResolverConfig};
use guildhall_ingest::metrics::Metrics;
use guildhall_ingest::net::FetchPolicy;
use guildhall_proto::crypto::SigningKey;
use guildhall_proto::service_auth;
use guildhall_store::{LedgerConfig, LedgerHandle, Store};
use guildhall_testkit::{Account, Peer, PeerOptions};
use serde_json::{Value, json};
use tower::ServiceExt;

/// The AppView's hostname, and so its DID.
pub const HOST: &str = "guildhall.test";
/// `did:web:guildhall.test`: what tokens must be addressed to.
pub const AUD: &str = "did:web:guildhall.test";
pub const GET_BALANCE: &str = "dev.guildhall.ledger.getBalance";
pub const LIST_TRANSFERS: &str = "dev.guildhall.ledger.listTransfers";
pub const TRANSFER: &str = "dev.guildhall.ledger.transfer";

/// A reference peer and an AppView in front of the test's store.
pub struct World {
    pub peer: Peer,
    /// The public router.
    pub app: Router,
    /// One route, `/xrpc/dev.guildhall.ledger.getBalance`, answering the [`Caller`]'s DID:
    /// the extractor alone, over the same state.
    pub probe: Router,
    pub admin: Router,
    /// The ledger writer the AppView's transfers go through (tests grant with it).
    pub ledger: LedgerHandle,
    http: reqwest::Client,
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Starts the peer (`accounts` K-256 accounts) and builds the AppView over `store`. Keys
/// are refetched on every signature failure (no least interval), so a rotation is seen at once.
pub async fn world(store: &Store, accounts: usize) -> World {
    let peer = Peer::start(PeerOptions {
        accounts,
        ..PeerOptions::default()
    })
    .await
    .expect("peer");
    let resolver = Arc::new(
        Resolver::new(ResolverConfig {
            plc: url::Url::parse(&peer.info().plc_url).expect("plc url"),
            handle_resolver: None,
            dns: None,
            capacity: 1000,
            timeout: Duration::from_secs(10),
            // The peer's PDS is on loopback.
            policy: FetchPolicy {
                allow_private: true,
            },
        })
        .expect("resolver"),
    );
    let trust = TrustIndex::load_with(store, TrustIndexOptions::default())
        .await
        .expect("trust");
    let ledger = LedgerHandle::start(store.clone(), LedgerConfig::default());
    let state = AppState::new(
        store.clone(),
        Arc::new(Metrics::default()),
        trust,
        AppConfig {
            hostname_for_did_web: Some(HOST.to_owned()),
            rate_limit_per_minute: 0,
            ..AppConfig::default()
        },
    )
    .with_service_auth(
        resolver,
        AuthConfig {
            key_refresh_interval: Duration::ZERO,
            ..AuthConfig::default()
        },
    )
    .with_ledger(ledger.clone());
    let probe = Router::new()
        .route(
            "/xrpc/dev.guildhall.ledger.getBalance",
            get(|c: Caller| async move { Json(json!({ "did": c.did.as_str() })) }),
        )
        .with_state(state.clone());
    World {
        peer,
        app: router(state.clone()),
        probe,
        admin: admin_router(state),
        ledger,
        http: reqwest::Client::new(),
    }
}

impl World {
    pub fn account(&self, i: usize) -> &Account {
        &self.peer.accounts()[i]
    }

    /// A real token from the account's PDS (`getServiceAuth`), for `aud` and `lxm`.
    pub async fn pds_token(&self, a: &Account, aud: &str, lxm: &str) -> String {
        let resp = self
            .http
            .get(format!(
                "{}/xrpc/com.atproto.server.getServiceAuth",
                a.pds_url.trim_end_matches('/')
            ))
            .query(&[("aud", aud), ("lxm", lxm)])
            .bearer_auth(&a.access_jwt)
            .send()
            .await
            .expect("getServiceAuth");
        assert!(
            resp.status().is_success(),
            "getServiceAuth: {}",
            resp.status()
        );
        let body: Value = resp.json().await.expect("json");
        body["token"].as_str().expect("token").to_owned()
    }

    /// A token for `account`'s own method call here.
    pub async fn token(&self, i: usize, lxm: &str) -> String {
        self.pds_token(self.account(i), AUD, lxm).await
    }

    /// An XRPC call to the AppView: GET for queries (`body` `None`), POST otherwise.
    pub async fn call(
        &self,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        call(&self.app, path, token, body).await
    }

    /// The same call to the extractor alone.
    pub async fn probe(&self, token: Option<&str>) -> (StatusCode, Value) {
        call(
            &self.probe,
            "/xrpc/dev.guildhall.ledger.getBalance",
            token,
            None,
        )
        .await
    }

    /// `/metrics` of the admin router.
    pub async fn metrics(&self) -> String {
        let resp = self
            .admin
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty()).expect("req"))
            .await
            .expect("answer");
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// An XRPC call to `app`: GET for queries (`body` `None`), POST otherwise.
pub async fn call(
    app: &Router,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut b = match body {
        None => Request::get(path),
        Some(_) => Request::post(path).header("content-type", "application/json"),
    };
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let req = b
        .body(body.map_or_else(Body::empty, |v| Body::from(v.to_string())))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("answer");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Claims of a good token by `iss` for `lxm`, with a fresh `jti`.
pub fn claims(iss: &str, lxm: &str) -> Value {
    json!({
        "iss": iss,
        "aud": AUD,
        "exp": now() + 60,
        "iat": now(),
        "lxm": lxm,
        "jti": format!("{:032x}", rand::random::<u128>()),
    })
}

/// Signs `claims` (ES256K or ES256, by the key's curve).
pub fn sign(key: &SigningKey, claims: &Value) -> String {
    service_auth::sign(key, claims)
}

/// The same token with its signature's S replaced by n − S (mathematically valid, high-S).
pub fn high_s(token: &str, order: [u8; 32]) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (body, sig) = token.rsplit_once('.').expect("three parts");
    let mut raw = URL_SAFE_NO_PAD.decode(sig).expect("b64");
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(order[i]) - i16::from(raw[32 + i]) - borrow;
        raw[32 + i] = d.rem_euclid(256) as u8;
        borrow = i16::from(d < 0);
    }
    format!("{body}.{}", URL_SAFE_NO_PAD.encode(&raw))
}

pub const K256_ORDER: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE,
    0xBA, 0xAE, 0xDC, 0xE6, 0xAF, 0x48, 0xA0, 0x3B, 0xBF, 0xD2, 0x5E, 0x8C, 0xD0, 0x36, 0x41, 0x41,
];
pub const P256_ORDER: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
];

/// Asserts an XRPC error answer.
#[track_caller]
pub fn assert_error(got: &(StatusCode, Value), status: StatusCode, name: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"], name, "{}", got.1);
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
}
