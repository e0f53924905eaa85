//! Row builders, the in-process app, and a GET helper that returns status and JSON.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use guildhall_appview::{AppConfig, AppState, TrustIndex, TrustIndexOptions, admin_router, router};
use guildhall_ingest::metrics::Metrics;
use guildhall_store::*;
use serde_json::Value;
use tower::ServiceExt;

pub const SVC: &str = "dev.guildhall.service";
pub const END: &str = "dev.guildhall.endorsement";

pub fn did(n: &str) -> String {
    format!("did:plc:{n}")
}

pub fn uri(did: &str, collection: &str, rkey: &str) -> String {
    format!("at://{did}/{collection}/{rkey}")
}

pub fn record(did: &str, collection: &str, rkey: &str, cid: &str) -> RecordRow {
    RecordRow {
        uri: uri(did, collection, rkey),
        did: did.to_owned(),
        collection: collection.to_owned(),
        rkey: rkey.to_owned(),
        cid: cid.to_owned(),
        bytes: format!("cbor:{did}/{collection}/{rkey}/{cid}").into_bytes(),
    }
}

/// A service offering `caps`; its record JSON names it.
pub fn service(did: &str, rkey: &str, caps: &[&str]) -> ServiceRow {
    ServiceRow {
        uri: uri(did, SVC, rkey),
        did: did.to_owned(),
        rkey: rkey.to_owned(),
        cid: format!("bafy-s-{rkey}"),
        name: format!("Service {rkey}"),
        description: Some(format!("The {rkey} service")),
        version: Some("1.0.0".to_owned()),
        created_at: "2026-01-01T00:00:00Z".to_owned(),
        latency_p95_ms: Some(200),
        availability_bp: Some(9_990),
        success_rate_bp: Some(9_950),
        record_json: format!(
            "{{\"$type\":\"dev.guildhall.service\",\"name\":\"Service {rkey}\",\"capabilities\":{}}}",
            serde_json::to_string(caps).unwrap_or_default()
        ),
        capabilities: caps.iter().map(|s| s.to_string()).collect(),
        regions: vec!["DE".to_owned()],
        prices: vec![PriceRow {
            model: "per_call".to_owned(),
            currency: Some("USD".to_owned()),
            amount: Some("0.01".to_owned()),
            unit: Some("call".to_owned()),
            period: None,
        }],
        tags: vec!["messaging".to_owned()],
    }
}

pub fn upsert_service(s: &ServiceRow) -> Change {
    Change::UpsertRecord(
        record(&s.did, SVC, &s.rkey, &s.cid),
        Some(IndexRow::Service(s.clone())),
    )
}

/// An endorsement `author → subject` with strength and scope.
pub fn endorsement(
    author: &str,
    rkey: &str,
    subject: &str,
    strength: i64,
    caps: &[&str],
) -> EndorsementRow {
    EndorsementRow {
        uri: uri(author, END, rkey),
        author: author.to_owned(),
        rkey: rkey.to_owned(),
        cid: format!("bafy-e-{rkey}"),
        subject: subject.to_owned(),
        service_uri: None,
        service_cid: None,
        strength: Some(strength),
        comment: None,
        created_at: "2026-02-01T00:00:00Z".to_owned(),
        expires_at: None,
        capabilities: caps.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn upsert_endorsement(e: &EndorsementRow) -> Change {
    Change::UpsertRecord(
        record(&e.author, END, &e.rkey, &e.cid),
        Some(IndexRow::Endorsement(e.clone())),
    )
}

/// An active operator with a verified handle `<n>.test`.
pub fn operator(n: &str) -> Vec<Change> {
    vec![
        Change::Account {
            did: did(n),
            status: OperatorStatus::Active,
        },
        Change::Identity {
            did: did(n),
            handle: Some(format!("{n}.test")),
            verified: true,
        },
    ]
}

pub async fn apply(store: &Store, changes: Vec<Change>) {
    for chunk in changes.chunks(500) {
        store
            .apply(&Batch {
                cursors: Vec::new(),
                changes: chunk.to_vec(),
            })
            .await
            .expect("apply batch");
    }
}

/// The app over `store` with a freshly loaded trust index.
pub async fn app(store: &Store, config: AppConfig) -> (Router, Arc<TrustIndex>) {
    app_with(
        store,
        config,
        TrustIndexOptions {
            rebuild_debounce: std::time::Duration::from_millis(20),
            ..TrustIndexOptions::default()
        },
    )
    .await
}

/// The app over `store` with a trust index loaded with `opts`.
pub async fn app_with(
    store: &Store,
    config: AppConfig,
    opts: TrustIndexOptions,
) -> (Router, Arc<TrustIndex>) {
    let trust = TrustIndex::load_with(store, opts)
        .await
        .expect("load trust index");
    let state = AppState::new(
        store.clone(),
        Arc::new(Metrics::default()),
        Arc::clone(&trust),
        config,
    );
    // The admin endpoints under /admin of the same router, for tests only: `serve` puts them
    // on their own listener.
    let app = router(state.clone()).nest("/admin", admin_router(state));
    (app, trust)
}

pub fn config() -> AppConfig {
    AppConfig {
        rate_limit_per_minute: 0,
        ..AppConfig::default()
    }
}

/// Sends a request as if from `127.0.0.1`; returns status, headers and the JSON body
/// (`Null` when the body is not JSON).
pub async fn send(app: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = req;
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
    let resp = app.clone().oneshot(req).await.expect("router answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, json)
}

pub async fn get(app: &Router, path: &str) -> (StatusCode, Value) {
    let req = Request::get(path).body(Body::empty()).expect("request");
    let (s, _, v) = send(app, req).await;
    (s, v)
}

/// Waits until `f` holds, for at most 10 s; `what` names it in the failure.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not in 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The value of counter `name` on the admin router's `/metrics` page (0 when absent).
pub async fn counter(app: &Router, name: &str) -> u64 {
    let resp = app
        .clone()
        .oneshot(
            Request::get("/admin/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("router answers");
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    String::from_utf8_lossy(&bytes)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The operator DIDs of a searchServices answer, in order.
pub fn operators_of(v: &Value) -> Vec<String> {
    v["services"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["operator"]["did"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts an XRPC error answer.
#[track_caller]
pub fn assert_xrpc_error(status: StatusCode, body: &Value, want: StatusCode, name: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"].as_str(), Some(name), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{body}");
}
