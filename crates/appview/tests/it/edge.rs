//! The public edge: admin endpoints only on the admin router, rate-limit keys (trusted
//! proxies, IPv6 /64), authenticated search cursors, and the HTTP metrics.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use guildhall_appview::{
    AppConfig, AppState, CursorKey, TrustIndex, TrustIndexOptions, admin_router, router,
};
use guildhall_ingest::metrics::Metrics;
use guildhall_store::{Change, Store};
use serde_json::Value;
use tower::ServiceExt;

use crate::data::*;
use crate::harness::{Ctx, both};

both!(
    admin_endpoints_are_not_public,
    forwarded_for_and_ipv6_buckets,
    hostile_cursors,
    instance_secret_is_kept,
    http_metrics_per_method,
);

/// The public and the admin router over one state.
async fn routers(store: &Store, config: AppConfig) -> (Router, Router) {
    let trust = TrustIndex::load_with(store, TrustIndexOptions::default())
        .await
        .expect("trust");
    let state = AppState::new(store.clone(), Arc::new(Metrics::default()), trust, config);
    (router(state.clone()), admin_router(state))
}

async fn send_from(app: &Router, peer: &str, xff: Option<&str>, path: &str) -> (StatusCode, Value) {
    let mut b = Request::get(path);
    if let Some(x) = xff {
        b = b.header("x-forwarded-for", x);
    }
    let mut req = b.body(Body::empty()).expect("request");
    let peer: SocketAddr = peer.parse().expect("peer");
    req.extensions_mut().insert(ConnectInfo(peer));
    let resp = app.clone().oneshot(req).await.expect("answer");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn text(app: &Router, path: &str) -> (StatusCode, String) {
    let resp = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("answer");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn small_world() -> Vec<Change> {
    let mut c = Vec::new();
    for n in ["viewer", "p1", "p2", "p3"] {
        c.extend(operator(n));
        if n != "viewer" {
            c.push(upsert_service(&service(
                &did(n),
                &format!("{n}-sms"),
                &["sms.send"],
            )));
        }
    }
    c.push(upsert_endorsement(&endorsement(
        &did("viewer"),
        "3kaaaaaaaaa2a",
        &did("p2"),
        80,
        &[],
    )));
    c
}

async fn admin_endpoints_are_not_public(ctx: Ctx) {
    apply(&ctx.store, small_world()).await;
    let (public, admin) = routers(&ctx.store, config()).await;
    for path in ["/status", "/metrics"] {
        let (st, v) = send_from(&public, "127.0.0.1:1", None, path).await;
        assert_xrpc_error(st, &v, StatusCode::NOT_FOUND, "NotFound");
    }
    let (st, v) = send_from(&admin, "127.0.0.1:1", None, "/status").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["stats"]["services"], 3);
    let (st, body) = text(&admin, "/metrics").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        body.contains("guildhall_commits_verified_total 0"),
        "{body}"
    );
    assert!(body.contains("guildhall_trust_graph_edges 1"), "{body}");
    // And the XRPC methods are not on the admin router.
    let (st, _) = send_from(
        &admin,
        "127.0.0.1:1",
        None,
        "/xrpc/dev.guildhall.listCapabilities",
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

async fn forwarded_for_and_ipv6_buckets(ctx: Ctx) {
    let (app, _) = routers(
        &ctx.store,
        AppConfig {
            rate_limit_per_minute: 2,
            trusted_proxies: vec!["10.0.0.0/8".parse().expect("net")],
            ..AppConfig::default()
        },
    )
    .await;
    let m = "/xrpc/dev.guildhall.listCapabilities";
    // An untrusted peer cannot pick a fresh bucket per request with a spoofed header.
    for (i, fake) in ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
        .iter()
        .enumerate()
    {
        let (st, _) = send_from(&app, "198.51.100.7:5000", Some(fake), m).await;
        let want = if i < 2 {
            StatusCode::OK
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(st, want, "request {i} with X-Forwarded-For {fake}");
    }
    // Behind a trusted proxy each client has its own bucket: the right-most hop outside
    // the proxies, whatever the client wrote to its left.
    for i in 0..2 {
        let xff = format!("192.0.2.{i}, 203.0.113.50");
        let (st, _) = send_from(&app, "10.1.2.3:443", Some(&xff), m).await;
        assert_eq!(st, StatusCode::OK, "{i}");
    }
    let (st, _) = send_from(&app, "10.1.2.3:443", Some("192.0.2.99, 203.0.113.50"), m).await;
    assert_eq!(
        st,
        StatusCode::TOO_MANY_REQUESTS,
        "same client, spoofed left part"
    );
    let (st, _) = send_from(&app, "10.1.2.3:443", Some("203.0.113.51"), m).await;
    assert_eq!(st, StatusCode::OK, "another client behind the same proxy");
    // Two addresses of one IPv6 /64 share a bucket; the next /64 does not.
    for peer in ["[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff::9]:2"] {
        let (st, _) = send_from(&app, peer, None, m).await;
        assert_eq!(st, StatusCode::OK, "{peer}");
    }
    let (st, _) = send_from(&app, "[2001:db8:1:2:abcd::7]:3", None, m).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    let (st, _) = send_from(&app, "[2001:db8:1:3::1]:4", None, m).await;
    assert_eq!(st, StatusCode::OK);
}

fn hex_flip(cursor: &str, at: usize) -> String {
    let mut b: Vec<u8> = cursor.bytes().collect();
    b[at] = if b[at] == b'0' { b'1' } else { b'0' };
    String::from_utf8(b).unwrap_or_default()
}

async fn hostile_cursors(ctx: Ctx) {
    apply(&ctx.store, small_world()).await;
    let key = CursorKey::random();
    let cfg = || AppConfig {
        cursor_key: key.clone(),
        ..config()
    };
    let (app, _) = routers(&ctx.store, cfg()).await;
    let q = format!(
        "/xrpc/dev.guildhall.searchServices?capability=sms.send&limit=1&viewer={}",
        enc(&did("viewer"))
    );
    let (st, v) = send_from(&app, "127.0.0.1:1", None, &q).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let cursor = v["cursor"].as_str().expect("a cursor").to_owned();
    let (st, v2) = send_from(&app, "127.0.0.1:1", None, &format!("{q}&cursor={cursor}")).await;
    assert_eq!(st, StatusCode::OK, "{v2}");
    // Any altered digit: the ranking instant (bytes 25..33 of the payload), the offset, the tag.
    for at in [
        2 + 2 * 24 + 1,
        2 + 2 * 24 + 15,
        2 + 2 * 33,
        cursor.len() - 1,
    ] {
        let forged = hex_flip(&cursor, at);
        let (st, v) = send_from(&app, "127.0.0.1:1", None, &format!("{q}&cursor={forged}")).await;
        assert_xrpc_error(st, &v, StatusCode::BAD_REQUEST, "InvalidCursor");
    }
    // The same cursor at another instance with its own key is refused; with the shared key
    // it is accepted (every AppView of one index shares the key).
    let (other, _) = routers(&ctx.store, config()).await;
    let (st, v) = send_from(&other, "127.0.0.1:1", None, &format!("{q}&cursor={cursor}")).await;
    assert_xrpc_error(st, &v, StatusCode::BAD_REQUEST, "InvalidCursor");
    let (twin, _) = routers(&ctx.store, cfg()).await;
    let (st, v) = send_from(&twin, "127.0.0.1:1", None, &format!("{q}&cursor={cursor}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["services"], v2["services"]);
    // A cursor in the old unsigned layout (kind byte and 36 bytes) is refused.
    let unsigned = &cursor[..2 + 72];
    let (st, v) = send_from(&app, "127.0.0.1:1", None, &format!("{q}&cursor={unsigned}")).await;
    assert_xrpc_error(st, &v, StatusCode::BAD_REQUEST, "InvalidCursor");
}

async fn instance_secret_is_kept(ctx: Ctx) {
    let first = ctx
        .store
        .instance_secret("cursor-hmac", &[1; 32])
        .await
        .expect("secret");
    assert_eq!(first, [1; 32]);
    // Later callers (a restart, a second process) get the stored one, not their own.
    let again = ctx
        .store
        .instance_secret("cursor-hmac", &[2; 32])
        .await
        .expect("secret");
    assert_eq!(again, [1; 32]);
    let reopened = Store::open(&ctx.location).await.expect("reopen");
    assert_eq!(
        reopened
            .instance_secret("cursor-hmac", &[3; 32])
            .await
            .expect("secret"),
        [1; 32]
    );
    reopened.close().await;
    assert_eq!(
        ctx.store
            .instance_secret("other", &[4; 32])
            .await
            .expect("secret"),
        [4; 32]
    );
}

async fn http_metrics_per_method(ctx: Ctx) {
    apply(&ctx.store, small_world()).await;
    let (app, admin) = routers(&ctx.store, config()).await;
    let search = "/xrpc/dev.guildhall.searchServices?capability=sms.send";
    for _ in 0..2 {
        let (st, _) = send_from(&app, "127.0.0.1:1", None, search).await;
        assert_eq!(st, StatusCode::OK);
    }
    let (st, _) = send_from(
        &app,
        "127.0.0.1:1",
        None,
        "/xrpc/dev.guildhall.searchServices?capability=NOT+VALID",
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Made-up methods all count as one label.
    for i in 0..50 {
        let (st, _) = send_from(&app, "127.0.0.1:1", None, &format!("/xrpc/evil.method{i}")).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
    let (st, body) = text(&admin, "/metrics").await;
    assert_eq!(st, StatusCode::OK);
    let line = |needle: &str| -> Option<f64> {
        body.lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    let m = "method=\"dev.guildhall.searchServices\"";
    assert_eq!(
        line(&format!(
            "guildhall_http_requests_total{{{m},status=\"200\"}}"
        )),
        Some(2.0),
        "{body}"
    );
    assert_eq!(
        line(&format!(
            "guildhall_http_requests_total{{{m},status=\"400\"}}"
        )),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        line("guildhall_http_requests_total{method=\"other\",status=\"404\"}"),
        Some(50.0),
        "{body}"
    );
    assert_eq!(
        line(&format!(
            "guildhall_http_request_duration_seconds_count{{{m}}}"
        )),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        line(&format!(
            "guildhall_http_request_duration_seconds_bucket{{{m},le=\"+Inf\"}}"
        )),
        Some(3.0),
        "{body}"
    );
    assert!(body.contains("# TYPE guildhall_http_request_duration_seconds histogram"));
    assert!(!body.contains("evil"), "no label per made-up path: {body}");
    // The ingestion counters are on the same page.
    assert!(body.contains("guildhall_records_indexed_total"));
}
