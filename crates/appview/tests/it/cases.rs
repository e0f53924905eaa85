//! XRPC cases; each runs on SQLite and on PostgreSQL through `both!`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use guildhall_appview::{AppConfig, TrustIndex, TrustIndexOptions};
use guildhall_ingest::indexer::{Committed, CommittedBatch};
use guildhall_store::{Batch, Change, OperatorStatus};
use guildhall_trust::BuildOptions;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::data::*;
use crate::harness::{Ctx, both};

/// viewer → p1 (1 hop); viewer → e1 → p2 (2 hops); e1 → e2 → p3 (3 hops); p4 unreachable.
/// Every p offers sms.send; p1 also email.send.
fn world() -> Vec<Change> {
    let mut c = Vec::new();
    for n in ["viewer", "e1", "e2", "p1", "p2", "p3", "p4"] {
        c.extend(operator(n));
    }
    for n in ["p1", "p2", "p3", "p4"] {
        c.push(upsert_service(&service(
            &did(n),
            &format!("{n}-sms"),
            &["sms.send"],
        )));
    }
    c.push(upsert_service(&service(
        &did("p1"),
        "p1-mail",
        &["email.send"],
    )));
    let (v, e1, e2) = (did("viewer"), did("e1"), did("e2"));
    c.push(upsert_endorsement(&endorsement(
        &v,
        "3kaaaaaaaaa2a",
        &did("p1"),
        90,
        &["sms.send"],
    )));
    c.push(upsert_endorsement(&endorsement(
        &v,
        "3kaaaaaaaaa2b",
        &e1,
        80,
        &[],
    )));
    c.push(upsert_endorsement(&endorsement(
        &e1,
        "3kaaaaaaaaa2c",
        &did("p2"),
        70,
        &["sms.send"],
    )));
    c.push(upsert_endorsement(&endorsement(
        &e1,
        "3kaaaaaaaaa2d",
        &e2,
        70,
        &[],
    )));
    c.push(upsert_endorsement(&endorsement(
        &e2,
        "3kaaaaaaaaa2e",
        &did("p3"),
        60,
        &["sms.send"],
    )));
    c
}

fn search(viewer: &str, extra: &str) -> String {
    format!(
        "/xrpc/dev.guildhall.searchServices?capability=sms.send&viewer={}{extra}",
        enc(viewer)
    )
}

async fn ranking_by_distance_with_path(ctx: Ctx) {
    apply(&ctx.store, world()).await;
    let (app, _) = app(&ctx.store, config()).await;
    let (st, v) = get(&app, &search(&did("viewer"), "")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        operators_of(&v),
        [did("p1"), did("p2"), did("p3"), did("p4")]
    );
    let s = &v["services"];
    for (i, d) in [1, 2, 3].iter().enumerate() {
        let t = &s[i]["trust"];
        assert_eq!(t["distance"], *d, "{t}");
        assert_eq!(t["basis"], "graph");
        assert_eq!(t["path"].as_array().map(Vec::len), Some(*d as usize), "{t}");
        assert!(t["score"].as_u64().is_some_and(|x| x > 0 && x <= 1_000_000));
        assert_eq!(t["path"][0]["from"], did("viewer").as_str());
        let last = &t["path"][*d as usize - 1];
        assert_eq!(last["to"], s[i]["operator"]["did"]);
        assert!(
            last["cid"]
                .as_str()
                .is_some_and(|c| c.starts_with("bafy-e-"))
        );
        assert!(
            last["uri"]
                .as_str()
                .is_some_and(|u| u.contains("/dev.guildhall.endorsement/"))
        );
        assert!(
            last["createdAt"]
                .as_str()
                .is_some_and(|c| c.starts_with("2026-02-01T"))
        );
    }
    // p2 is vouched for by e1, which the viewer reaches.
    assert_eq!(s[1]["trust"]["vouchers"]["count"], 1);
    assert_eq!(s[1]["trust"]["vouchers"]["sample"][0], did("e1").as_str());
    let p4 = &s[3];
    assert_eq!(p4["trust"]["basis"], "fallback");
    assert!(p4["trust"].get("distance").is_none(), "{p4}");
    assert_eq!(p4["trust"]["score"], 0);
    // Service view shape.
    assert_eq!(s[0]["uri"], uri(&did("p1"), SVC, "p1-sms").as_str());
    assert_eq!(s[0]["cid"], "bafy-s-p1-sms");
    assert_eq!(s[0]["operator"]["handle"], "p1.test");
    assert_eq!(s[0]["record"]["name"], "Service p1-sms");
    assert!(v.get("cursor").is_none());

    // Text filter in SQL, ranking kept.
    let (_, v) = get(&app, &search(&did("viewer"), "&q=p3")).await;
    assert_eq!(operators_of(&v), [did("p3")]);
    // A scope that does not match the capability does not count: email.send via p1 only.
    let (_, v) = get(
        &app,
        &format!(
            "/xrpc/dev.guildhall.searchServices?capability=email.send&viewer={}",
            enc(&did("viewer"))
        ),
    )
    .await;
    assert_eq!(operators_of(&v), [did("p1")]);
    assert_eq!(
        v["services"][0]["trust"]["basis"], "fallback",
        "the viewer's endorsement of p1 is scoped to sms.send: {v}"
    );
}

async fn fallback_basis(ctx: Ctx) {
    apply(&ctx.store, world()).await;
    // No viewer, no anchors: everything is fallback, ordered by operator DID.
    let (app1, _) = app(&ctx.store, config()).await;
    let (st, v) = get(
        &app1,
        "/xrpc/dev.guildhall.searchServices?capability=sms.send",
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let s = v["services"].as_array().cloned().unwrap_or_default();
    assert_eq!(s.len(), 4);
    assert!(s.iter().all(|x| x["trust"]["basis"] == "fallback"));
    assert_eq!(
        operators_of(&v),
        [did("p1"), did("p2"), did("p3"), did("p4")]
    );
    // With e2 as anchor: p3 (1 hop from the anchor) first, then the anchor-unreachable.
    let (app2, _) = app(
        &ctx.store,
        AppConfig {
            anchors: vec![did("e2")],
            ..config()
        },
    )
    .await;
    let (_, v) = get(
        &app2,
        "/xrpc/dev.guildhall.searchServices?capability=sms.send",
    )
    .await;
    assert_eq!(operators_of(&v)[0], did("p3"));
    let t = &v["services"][0]["trust"];
    assert_eq!(t["basis"], "fallback");
    assert_eq!(t["distance"], 1);
    assert_eq!(t["path"][0]["from"], did("e2").as_str());
    // A viewer with no path falls back too.
    let (_, v) = get(&app2, &search(&did("p4"), "")).await;
    assert_eq!(
        operators_of(&v)[0],
        did("p4"),
        "the viewer's own service is at distance 0"
    );
    assert_eq!(v["services"][0]["trust"]["distance"], 0);
    assert_eq!(v["services"][1]["trust"]["basis"], "fallback");
}

async fn every_method(ctx: Ctx) {
    apply(&ctx.store, world()).await;
    let (app, _) = app(&ctx.store, config()).await;

    // getService, with and without viewer.
    let u = uri(&did("p2"), SVC, "p2-sms");
    let (st, v) = get(
        &app,
        &format!(
            "/xrpc/dev.guildhall.getService?uri={}&viewer={}",
            enc(&u),
            enc(&did("viewer"))
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["service"]["uri"], u.as_str());
    assert_eq!(v["service"]["trust"]["distance"], 2);
    assert_eq!(v["service"]["trust"]["basis"], "graph");
    let (_, v) = get(
        &app,
        &format!("/xrpc/dev.guildhall.getService?uri={}", enc(&u)),
    )
    .await;
    assert_eq!(v["service"]["trust"]["basis"], "fallback");

    // getOperator by DID and by handle.
    let (st, v) = get(
        &app,
        &format!("/xrpc/dev.guildhall.getOperator?actor={}", enc(&did("p1"))),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["operator"]["did"], did("p1").as_str());
    assert_eq!(v["operator"]["handle"], "p1.test");
    assert_eq!(v["services"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["endorsementsGiven"], 0);
    assert_eq!(v["endorsementsReceived"], 1);
    let (st, v2) = get(&app, "/xrpc/dev.guildhall.getOperator?actor=p1.test").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v2["operator"], v["operator"]);
    let (_, v) = get(
        &app,
        &format!("/xrpc/dev.guildhall.getOperator?actor={}", enc(&did("e1"))),
    )
    .await;
    assert_eq!(
        (
            v["endorsementsGiven"].as_i64(),
            v["endorsementsReceived"].as_i64()
        ),
        (Some(2), Some(1))
    );

    // getTrustPath: found, with a capability, and not found.
    let (st, v) = get(
        &app,
        &format!(
            "/xrpc/dev.guildhall.getTrustPath?from={}&to={}&capability=sms.send",
            enc(&did("viewer")),
            enc(&did("p3"))
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["found"], true);
    assert_eq!(v["trust"]["distance"], 3);
    let hops: Vec<&str> = v["trust"]["path"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["to"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(hops, [did("e1"), did("e2"), did("p3")]);
    let (st, v) = get(
        &app,
        &format!(
            "/xrpc/dev.guildhall.getTrustPath?from={}&to={}",
            enc(&did("p3")),
            enc(&did("viewer"))
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["found"], false);
    assert!(v.get("trust").is_none());

    // listEndorsements by author, paged one at a time, newest first, then by subject.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!(
            "/xrpc/dev.guildhall.listEndorsements?author={}&limit=1",
            enc(&did("e1"))
        );
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (st, v) = get(&app, &path).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        for e in v["endorsements"].as_array().cloned().unwrap_or_default() {
            assert_eq!(e["author"]["did"], did("e1").as_str());
            assert_eq!(e["record"]["$type"], "dev.guildhall.endorsement");
            assert_eq!(e["lapsed"], false);
            seen.push(
                e["record"]["subject"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        match v["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(seen.len() <= 2, "cursor loops");
    }
    assert_eq!(seen, [did("e2"), did("p2")], "newest first");
    let (_, v) = get(
        &app,
        &format!(
            "/xrpc/dev.guildhall.listEndorsements?subject={}",
            enc(&did("p2"))
        ),
    )
    .await;
    assert_eq!(v["endorsements"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["endorsements"][0]["record"]["strength"], 70);
    assert_eq!(
        v["endorsements"][0]["record"]["capabilities"][0],
        "sms.send"
    );

    // listCapabilities: by id, prefix, paging.
    let (st, v) = get(&app, "/xrpc/dev.guildhall.listCapabilities").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        v["capabilities"],
        serde_json::json!([{"id": "email.send", "serviceCount": 1}, {"id": "sms.send", "serviceCount": 4}])
    );
    let (_, v) = get(&app, "/xrpc/dev.guildhall.listCapabilities?prefix=sms.").await;
    assert_eq!(v["capabilities"].as_array().map(Vec::len), Some(1));
    let (_, v) = get(&app, "/xrpc/dev.guildhall.listCapabilities?limit=1").await;
    assert_eq!(v["capabilities"][0]["id"], "email.send");
    let c = v["cursor"].as_str().unwrap_or_default().to_owned();
    let (_, v) = get(
        &app,
        &format!("/xrpc/dev.guildhall.listCapabilities?limit=1&cursor={c}"),
    )
    .await;
    assert_eq!(v["capabilities"][0]["id"], "sms.send");
    assert!(v.get("cursor").is_none());

    // Operational endpoints.
    let (st, v) = get(&app, "/xrpc/_health").await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["version"].is_string());
    let (st, v) = get(&app, "/admin/status").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["trustGraph"]["baseEdges"], 5);
    // The ingestion side's retry state (all zero: nothing ingests here).
    for key in [
        "reposUnsynced",
        "didsUnresolvable",
        "queued",
        "running",
        "hostsBlocked",
    ] {
        assert_eq!(v["resync"][key], 0, "{key}: {v}");
    }
}

async fn hostile_params(ctx: Ctx) {
    apply(&ctx.store, world()).await;
    let (app, _) = app(&ctx.store, config()).await;
    // The http crate caps URIs at 64 KiB, so this is the largest `q` a request can carry
    // in-process; 100 KiB over a socket is checked below.
    let huge_q = "a".repeat(60 * 1024);
    let q600 = "b".repeat(600);
    let search = "/xrpc/dev.guildhall.searchServices";
    let cases: Vec<(String, &str)> = vec![
        (format!("{search}?viewer=not-a-did"), "InvalidRequest"),
        (format!("{search}?viewer=did:PLC:x"), "InvalidRequest"),
        (format!("{search}?cursor=zzzz"), "InvalidCursor"),
        (
            format!("{search}?cursor=01{}", "00".repeat(36)),
            "InvalidCursor",
        ),
        (
            format!("{search}?cursor={}", "0".repeat(600)),
            "InvalidRequest",
        ),
        (format!("{search}?limit=1000"), "InvalidRequest"),
        (format!("{search}?limit=0"), "InvalidRequest"),
        (format!("{search}?limit=ten"), "InvalidRequest"),
        (format!("{search}?limit=1&limit=2"), "InvalidRequest"),
        (format!("{search}?capability=SMS.Send"), "InvalidCapability"),
        (format!("{search}?capability=sms"), "InvalidCapability"),
        (
            format!("{search}?capability=sms.send&capability=bad..id"),
            "InvalidCapability",
        ),
        (format!("{search}?q={huge_q}"), "InvalidRequest"),
        (format!("{search}?q={q600}"), "InvalidRequest"),
        (format!("{search}?maxPrice=0.01"), "InvalidPrice"),
        (
            format!("{search}?maxPrice=1e3&currency=USD"),
            "InvalidPrice",
        ),
        (format!("{search}?region=germany"), "InvalidRequest"),
        (
            format!("{search}?minAvailabilityBp=10001"),
            "InvalidRequest",
        ),
        (format!("{search}?bogus=1"), "InvalidRequest"),
        (
            format!(
                "{search}?{}",
                (0..9)
                    .map(|i| format!("capability=a.b{i}"))
                    .collect::<Vec<_>>()
                    .join("&")
            ),
            "InvalidRequest",
        ),
        ("/xrpc/dev.guildhall.getService".into(), "InvalidRequest"),
        (
            "/xrpc/dev.guildhall.getService?uri=https://x.y/z".into(),
            "InvalidRequest",
        ),
        (
            "/xrpc/dev.guildhall.getOperator?actor=-bad-".into(),
            "InvalidRequest",
        ),
        (
            "/xrpc/dev.guildhall.getTrustPath?from=did:plc:a".into(),
            "InvalidRequest",
        ),
        (
            "/xrpc/dev.guildhall.getTrustPath?from=did:plc:a&to=did:plc:b&capability=x".into(),
            "InvalidCapability",
        ),
        (
            "/xrpc/dev.guildhall.listEndorsements".into(),
            "SubjectOrAuthorRequired",
        ),
        (
            "/xrpc/dev.guildhall.listEndorsements?subject=did:plc:a&author=did:plc:b".into(),
            "SubjectOrAuthorRequired",
        ),
        (
            "/xrpc/dev.guildhall.listEndorsements?subject=did:plc:a&cursor=02ff".into(),
            "InvalidCursor",
        ),
        (
            "/xrpc/dev.guildhall.listEndorsements?subject=did:plc:a&limit=101".into(),
            "InvalidRequest",
        ),
        (
            "/xrpc/dev.guildhall.listCapabilities?prefix=%27%3B--".into(),
            "InvalidRequest",
        ),
        (
            "/xrpc/dev.guildhall.listCapabilities?limit=1001".into(),
            "InvalidRequest",
        ),
        (
            "/xrpc/dev.guildhall.listCapabilities?cursor=03ffff".into(),
            "InvalidCursor",
        ),
    ];
    for (path, name) in cases {
        let (st, v) = get(&app, &path).await;
        assert_xrpc_error(st, &v, StatusCode::BAD_REQUEST, name);
    }
    // A cursor issued for one query is refused for another.
    let (_, v) = get(&app, &format!("{search}?capability=sms.send&limit=1")).await;
    let c = v["cursor"].as_str().unwrap_or_default().to_owned();
    assert!(!c.is_empty(), "{v}");
    let (st, v) = get(
        &app,
        &format!("{search}?capability=email.send&limit=1&cursor={c}"),
    )
    .await;
    assert_xrpc_error(st, &v, StatusCode::BAD_REQUEST, "InvalidCursor");

    // 404s.
    for path in [
        "/xrpc/dev.guildhall.nope".to_owned(),
        format!(
            "/xrpc/dev.guildhall.getService?uri={}",
            enc(&uri(&did("p1"), SVC, "missing"))
        ),
        format!(
            "/xrpc/dev.guildhall.getOperator?actor={}",
            enc(&did("nobody"))
        ),
        "/xrpc/dev.guildhall.getOperator?actor=nobody.test".to_owned(),
        format!(
            "/xrpc/dev.guildhall.getTrustPath?from={}&to={}",
            enc(&did("viewer")),
            enc(&did("nobody"))
        ),
        "/.well-known/did.json".to_owned(),
    ] {
        let (st, v) = get(&app, &path).await;
        assert_xrpc_error(st, &v, StatusCode::NOT_FOUND, "NotFound");
    }
    // Wrong verb.
    let req = Request::builder()
        .method(Method::POST)
        .uri(search)
        .body(Body::empty())
        .unwrap_or_default();
    let (st, _, v) = send(&app, req).await;
    assert_xrpc_error(st, &v, StatusCode::METHOD_NOT_ALLOWED, "InvalidRequest");
    // Oversized body.
    let req = Request::builder()
        .method(Method::GET)
        .uri(search)
        .header("content-length", (1 << 20).to_string())
        .body(Body::from(vec![b'x'; 1 << 20]))
        .unwrap_or_default();
    let (st, _, v) = send(&app, req).await;
    assert_xrpc_error(st, &v, StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge");

    // A 100 KiB `q` over a real loopback connection never reaches a handler: hyper refuses
    // the URI itself.
    let status = raw_status(&app, &format!("{search}?q={}", "a".repeat(100 * 1024))).await;
    assert_eq!(status, 414);
    // And a 6 KiB one does reach it, and is refused by the parameter check.
    let status = raw_status(&app, &format!("{search}?q={}", "a".repeat(6 * 1024))).await;
    assert_eq!(status, 400);
}

/// Serves `app` on a loopback port, sends one raw GET, returns the status code.
async fn raw_status(app: &axum::Router, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let app = app.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    });
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    sock.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut buf)).await;
    server.abort();
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

async fn takedown_hides(ctx: Ctx) {
    apply(&ctx.store, world()).await;
    // No compaction, whatever the churn: the graph's state shows how changes were applied.
    let (app, trust) = app_with(
        &ctx.store,
        config(),
        TrustIndexOptions {
            build: BuildOptions {
                rebuild_churn_ppm: u32::MAX,
                ..BuildOptions::default()
            },
            rebuild_debounce: Duration::from_millis(20),
            ..TrustIndexOptions::default()
        },
    )
    .await;
    let (tx, rx) = broadcast::channel(16);
    let _task = trust.spawn_updates(rx, ctx.store.clone(), Duration::ZERO);
    // e1 is taken down: its services (none) vanish, and so do paths through it.
    let changes = vec![
        Change::Account {
            did: did("e1"),
            status: OperatorStatus::Takendown,
        },
        Change::Account {
            did: did("p1"),
            status: OperatorStatus::Takendown,
        },
    ];
    let (before, _) = commit_live(&ctx, &trust, &tx, changes).await;
    let (_, v) = get(&app, &search(&did("viewer"), "")).await;
    assert_eq!(
        operators_of(&v),
        [did("p2"), did("p3"), did("p4")],
        "p1 hidden"
    );
    assert!(
        v["services"]
            .as_array()
            .is_some_and(|a| a.iter().all(|s| s["trust"]["basis"] == "fallback")),
        "every path ran through e1 or to p1: {v}"
    );
    let (st, v) = get(
        &app,
        &format!(
            "/xrpc/dev.guildhall.getService?uri={}",
            enc(&uri(&did("p1"), SVC, "p1-sms"))
        ),
    )
    .await;
    assert_xrpc_error(st, &v, StatusCode::NOT_FOUND, "NotFound");
    let (st, v) = get(
        &app,
        &format!("/xrpc/dev.guildhall.getOperator?actor={}", enc(&did("p1"))),
    )
    .await;
    assert_xrpc_error(st, &v, StatusCode::NOT_FOUND, "NotFound");
    let (_, v) = get(
        &app,
        &format!(
            "/xrpc/dev.guildhall.listEndorsements?author={}",
            enc(&did("e1"))
        ),
    )
    .await;
    assert_eq!(v["endorsements"].as_array().map(Vec::len), Some(0));
    let (_, v) = get(&app, "/xrpc/dev.guildhall.listCapabilities").await;
    assert_eq!(
        v["capabilities"],
        serde_json::json!([{"id": "sms.send", "serviceCount": 3}])
    );
    // Applied in place, not by a rebuild from the store (which would leave one base edge and
    // no tombstones): the four edges from or to e1 and p1 are tombstoned in the graph loaded
    // at start, in one update.
    let (_, v) = get(&app, "/admin/status").await;
    assert_eq!(v["trustGraph"]["baseEdges"], 5, "{v}");
    assert_eq!(v["trustGraph"]["tombstoned"], 4, "{v}");
    assert_eq!(v["trustGraph"]["generation"], before + 1, "{v}");

    // Reactivation brings everything back, again without a rebuild.
    let changes: Vec<Change> = ["e1", "p1"]
        .iter()
        .map(|n| Change::Account {
            did: did(n),
            status: OperatorStatus::Active,
        })
        .collect();
    let (before, _) = commit_live(&ctx, &trust, &tx, changes).await;
    let (_, v) = get(&app, &search(&did("viewer"), "")).await;
    assert_eq!(
        operators_of(&v),
        [did("p1"), did("p2"), did("p3"), did("p4")]
    );
    let distances: Vec<&Value> = (0..4)
        .map(|i| &v["services"][i]["trust"]["distance"])
        .collect();
    assert_eq!(
        distances,
        [
            &serde_json::json!(1),
            &serde_json::json!(2),
            &serde_json::json!(3),
            &Value::Null
        ]
    );
    let (_, v) = get(&app, "/admin/status").await;
    assert_eq!(v["trustGraph"]["tombstoned"], 4, "{v}");
    assert_eq!(v["trustGraph"]["overlayEdges"], 4, "{v}");
    assert_eq!(v["trustGraph"]["generation"], before + 1, "{v}");
}

/// Commits `changes` and broadcasts them as ingestion does, then waits until the trust index
/// has applied them. Returns the generation before and how long applying took.
async fn commit_live(
    ctx: &Ctx,
    trust: &TrustIndex,
    tx: &broadcast::Sender<Committed>,
    changes: Vec<Change>,
) -> (u64, Duration) {
    let applied = ctx
        .store
        .apply(&Batch {
            cursors: Vec::new(),
            changes: changes.clone(),
        })
        .await
        .expect("apply");
    let before = trust.generation();
    let started = std::time::Instant::now();
    let _ = tx.send(Arc::new(CommittedBatch { changes, applied }));
    eventually("the batch reaches the graph", || {
        trust.generation() > before
    })
    .await;
    (before, started.elapsed())
}

async fn live_delete_changes_ranking(ctx: Ctx) {
    apply(&ctx.store, world()).await;
    let (app, trust) = app(&ctx.store, config()).await;
    let (tx, rx) = broadcast::channel(16);
    let _task = trust.spawn_updates(rx, ctx.store.clone(), Duration::ZERO);
    let cache = |app: axum::Router| async move {
        (
            counter(&app, "guildhall_candidate_cache_hits_total").await,
            counter(&app, "guildhall_candidate_cache_misses_total").await,
        )
    };
    let (_, v) = get(&app, &search(&did("viewer"), "")).await;
    assert_eq!(v["services"][1]["trust"]["distance"], 2);
    assert_eq!(
        cache(app.clone()).await,
        (0, 1),
        "first sight of the filters"
    );

    // Delete e1 → p2: p2 loses its path.
    let gone = uri(&did("e1"), END, "3kaaaaaaaaa2c");
    let changes = vec![Change::DeleteRecord { uri: gone.clone() }];
    let (_, took) = commit_live(&ctx, &trust, &tx, changes).await;
    assert!(took < Duration::from_secs(1), "applied within 1 s");
    let (_, v) = get(&app, &search(&did("viewer"), "")).await;
    assert_eq!(
        operators_of(&v),
        [did("p1"), did("p3"), did("p2"), did("p4")]
    );
    assert_eq!(v["services"][2]["trust"]["basis"], "fallback");
    assert_eq!(
        cache(app.clone()).await,
        (1, 1),
        "an endorsement change keeps the candidate set"
    );

    // A new endorsement viewer → p4 makes p4 one hop away, right behind p1.
    let e = endorsement(
        &did("viewer"),
        "3kaaaaaaaaa2z",
        &did("p4"),
        50,
        &["sms.send"],
    );
    let changes = vec![upsert_endorsement(&e)];
    // Endorsements move the graph, not what the filters admit: the cached candidate set
    // stays, and its prepared nodes (p4 had none) are refreshed for the new graph.
    let services_before = trust.services_generation();
    commit_live(&ctx, &trust, &tx, changes).await;
    assert_eq!(trust.services_generation(), services_before);
    let (_, v) = get(&app, &search(&did("viewer"), "")).await;
    assert_eq!(
        operators_of(&v),
        [did("p1"), did("p4"), did("p3"), did("p2")]
    );
    assert_eq!(v["services"][1]["trust"]["path"][0]["uri"], e.uri.as_str());

    // A new service appears although the same filters were just answered (and cached).
    let svc = service(&did("p5"), "p5-sms", &["sms.send"]);
    let changes = vec![upsert_service(&svc)];
    commit_live(&ctx, &trust, &tx, changes).await;
    assert!(trust.services_generation() > services_before);
    let (_, v) = get(&app, &search(&did("viewer"), "")).await;
    assert_eq!(operators_of(&v).len(), 5, "{v}");
    assert!(operators_of(&v).contains(&did("p5")));
    assert_eq!(
        cache(app.clone()).await,
        (2, 2),
        "a service change reads the set again"
    );

    // A lagged receiver rebuilds from the store and still converges.
    let (tx2, rx2) = broadcast::channel(1);
    let (_app2, trust2) = crate::data::app(&ctx.store, config()).await;
    for _ in 0..3 {
        let _ = tx2.send(std::sync::Arc::new(CommittedBatch::default()));
    }
    let before = trust2.generation();
    let _task2 = trust2.spawn_updates(rx2, ctx.store.clone(), Duration::ZERO);
    eventually("a rebuild after the lag", || trust2.generation() > before).await;
    drop(tx);
    drop(tx2);
}

async fn pagination_is_stable(ctx: Ctx) {
    let mut c = world();
    // Nine more unreachable providers so there are several pages.
    for i in 0..9 {
        let n = format!("q{i}");
        c.extend(operator(&n));
        c.push(upsert_service(&service(
            &did(&n),
            &format!("{n}-sms"),
            &["sms.send"],
        )));
    }
    apply(&ctx.store, c).await;
    let (app, trust) = app(&ctx.store, config()).await;
    let (tx, rx) = broadcast::channel(16);
    let _task = trust.spawn_updates(rx, ctx.store.clone(), Duration::ZERO);
    let all = {
        let (_, v) = get(&app, &search(&did("viewer"), "&limit=100")).await;
        operators_of(&v)
    };
    assert_eq!(all.len(), 13);
    let (_, v) = get(&app, &search(&did("viewer"), "&limit=5")).await;
    let mut paged = operators_of(&v);
    let mut cursor = v["cursor"].as_str().map(str::to_owned);
    // Between pages, a write that would reorder the ranking: viewer endorses q8 directly.
    let e = endorsement(
        &did("viewer"),
        "3kaaaaaaaaa3z",
        &did("q8"),
        100,
        &["sms.send"],
    );
    let changes = vec![upsert_endorsement(&e)];
    commit_live(&ctx, &trust, &tx, changes).await;
    while let Some(c) = cursor {
        let (st, v) = get(
            &app,
            &search(&did("viewer"), &format!("&limit=5&cursor={c}")),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        paged.extend(operators_of(&v));
        cursor = v["cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(
        paged, all,
        "pages continue the snapshot: no duplicates, no gaps"
    );
    // A fresh query sees the write.
    let (_, v) = get(&app, &search(&did("viewer"), "&limit=2")).await;
    assert_eq!(operators_of(&v), [did("q8"), did("p1")]);
}

/// A viewer with 5 honest 2-hop paths; 1,000 sybil operators offering the same capability,
/// all endorsed (at full strength) by one compromised endorser the viewer trusts.
async fn sybil_cap(ctx: Ctx) {
    let v = did("viewer");
    let mut c = operator("viewer");
    let cap = ["sms.send"];
    for i in 0..5 {
        let (e, p) = (did(&format!("he{i}")), did(&format!("hp{i}")));
        c.push(upsert_endorsement(&endorsement(
            &v,
            &format!("3kh{i:010}"),
            &e,
            80,
            &[],
        )));
        c.push(upsert_endorsement(&endorsement(
            &e,
            &format!("3kh{i:010}"),
            &p,
            80,
            &cap,
        )));
        c.push(upsert_service(&service(&p, "sms", &cap)));
    }
    // Honest providers the viewer has no path to (the rest of the market).
    for i in 0..10 {
        c.push(upsert_service(&service(
            &did(&format!("other{i}")),
            "sms",
            &cap,
        )));
    }
    let bad = did("compromised");
    c.push(upsert_endorsement(&endorsement(
        &v,
        "3kcompromise",
        &bad,
        100,
        &[],
    )));
    for i in 0..1000 {
        let s = did(&format!("sybil{i:04}"));
        c.push(upsert_endorsement(&endorsement(
            &bad,
            &format!("3ks{i:010}"),
            &s,
            100,
            &cap,
        )));
        c.push(upsert_service(&service(&s, "sms", &cap)));
    }
    apply(&ctx.store, c).await;
    let (app, _) = app(&ctx.store, config()).await;
    let (st, body) = get(&app, &search(&v, "&limit=10")).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let ops = operators_of(&body);
    assert_eq!(ops.len(), 10);
    let sybils = ops.iter().filter(|d| d.contains("sybil")).count();
    assert!(sybils <= 2, "{sybils} sybils in the top 10: {ops:?}");
    let honest: Vec<&Value> = body["services"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| {
                    s["operator"]["did"]
                        .as_str()
                        .is_some_and(|d| d.contains(":hp"))
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        honest.len(),
        5,
        "every honest provider makes the top 10: {ops:?}"
    );
    for h in honest {
        assert_eq!(h["trust"]["distance"], 2);
        assert_eq!(h["trust"]["basis"], "graph");
        assert_eq!(h["trust"]["path"].as_array().map(Vec::len), Some(2));
    }
    // The demoted sybils are still there, below every provider that is not over the cap:
    // 2 sybils, the 5 honest, the 10 the viewer has no path to, then the other 998 sybils.
    let (_, body) = get(&app, &search(&v, "&limit=100")).await;
    let ops = operators_of(&body);
    assert_eq!(ops.len(), 100);
    assert!(ops[..2].iter().all(|d| d.contains("sybil")), "{ops:?}");
    assert!(ops[2..7].iter().all(|d| d.contains(":hp")), "{ops:?}");
    assert!(ops[7..17].iter().all(|d| d.contains(":other")), "{ops:?}");
    assert!(ops[17..].iter().all(|d| d.contains("sybil")), "{ops:?}");
    assert!(
        body["services"]
            .as_array()
            .is_some_and(|a| a[7..17].iter().all(|s| s["trust"]["basis"] == "fallback"))
    );

    // A tree behind a second compromised node: it endorses 100 intermediates, each of which
    // endorses two sybils, so every sybil has its own last-hop endorser. The root is on
    // every path to all 200, so they too hold at most two places of the top 10.
    let root = did("treeroot");
    let mut c = vec![upsert_endorsement(&endorsement(
        &v,
        "3ktreeroot",
        &root,
        100,
        &[],
    ))];
    for k in 0..100 {
        let i = did(&format!("inter{k:03}"));
        c.push(upsert_endorsement(&endorsement(
            &root,
            &format!("3kti{k:09}"),
            &i,
            100,
            &[],
        )));
        for j in 0..2 {
            let s = did(&format!("tsybil{k:03}{j}"));
            c.push(upsert_endorsement(&endorsement(
                &i,
                &format!("3kts{k:08}{j}"),
                &s,
                100,
                &cap,
            )));
            c.push(upsert_service(&service(&s, "sms", &cap)));
        }
    }
    apply(&ctx.store, c).await;
    let (app2, _) = crate::data::app(&ctx.store, config()).await;
    let (st, body) = get(&app2, &search(&v, "&limit=10")).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let ops = operators_of(&body);
    let tree = ops.iter().filter(|d| d.contains("tsybil")).count();
    let star = ops.iter().filter(|d| d.contains(":sybil")).count();
    assert!(
        tree <= 2 && star <= 2,
        "{tree} tree and {star} star sybils: {ops:?}"
    );
    assert_eq!(
        ops.iter().filter(|d| d.contains(":hp")).count(),
        5,
        "{ops:?}"
    );
}

/// Scope is weighed the same everywhere: with no capability queried, against what the
/// service offers (search, getService, getOperator agree); with several, by best match in
/// any order. viewer → op scoped to email (100); viewer → friend → op unscoped (50).
async fn capability_scope_everywhere(ctx: Ctx) {
    let (v, op, friend) = (did("viewer"), did("op"), did("friend"));
    let mut c = Vec::new();
    for n in ["viewer", "op", "friend"] {
        c.extend(operator(n));
    }
    let mail = service(&op, "mail", &["email.send"]);
    let sms = service(&op, "sms", &["sms.send"]);
    let both_svc = service(&op, "both", &["email.send", "sms.send"]);
    for s in [&mail, &sms, &both_svc] {
        c.push(upsert_service(s));
    }
    c.push(upsert_endorsement(&endorsement(
        &v,
        "3kscope00001",
        &op,
        100,
        &["email"],
    )));
    c.push(upsert_endorsement(&endorsement(
        &v,
        "3kscope00002",
        &friend,
        100,
        &[],
    )));
    c.push(upsert_endorsement(&endorsement(
        &friend,
        "3kscope00003",
        &op,
        50,
        &[],
    )));
    apply(&ctx.store, c).await;
    let (app, trust) = app(&ctx.store, config()).await;
    let trust_of = |body: &Value, uri: &str| -> (Value, Value) {
        let s = body["services"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["uri"] == uri).cloned())
            .unwrap_or_default();
        (s["trust"]["distance"].clone(), s["trust"]["score"].clone())
    };
    let (st, all) = get(
        &app,
        &format!(
            "/xrpc/dev.guildhall.searchServices?viewer={}&limit=50",
            enc(&v)
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{all}");
    // The email-scoped endorsement vouches for the mail service directly, not for sms.
    assert_eq!(trust_of(&all, &mail.uri).0, 1, "{all}");
    assert_eq!(trust_of(&all, &sms.uri).0, 2, "{all}");
    assert_eq!(trust_of(&all, &both_svc.uri).0, 1, "{all}");
    let (_, operator_view) = get(
        &app,
        &format!(
            "/xrpc/dev.guildhall.getOperator?actor={}&viewer={}",
            enc(&op),
            enc(&v)
        ),
    )
    .await;
    for s in [&mail, &sms, &both_svc] {
        let (_, one) = get(
            &app,
            &format!(
                "/xrpc/dev.guildhall.getService?uri={}&viewer={}",
                enc(&s.uri),
                enc(&v)
            ),
        )
        .await;
        let via_get = (
            one["service"]["trust"]["distance"].clone(),
            one["service"]["trust"]["score"].clone(),
        );
        assert_eq!(
            via_get,
            trust_of(&all, &s.uri),
            "getService {}: {one}",
            s.uri
        );
        assert_eq!(
            trust_of(&operator_view, &s.uri),
            via_get,
            "getOperator {}",
            s.uri
        );
    }
    // Several capabilities: best match per edge, whatever their order (only the first
    // scoped before, so sms.send first left the email endorsement out).
    let q = |caps: &str| {
        format!(
            "/xrpc/dev.guildhall.searchServices?viewer={}{caps}",
            enc(&v)
        )
    };
    let (_, ab) = get(&app, &q("&capability=sms.send&capability=email.send")).await;
    let (_, ba) = get(&app, &q("&capability=email.send&capability=sms.send")).await;
    assert_eq!(operators_of(&ab), [op.as_str()]);
    assert_eq!(trust_of(&ab, &both_svc.uri), trust_of(&ba, &both_svc.uri));
    assert_eq!(trust_of(&ab, &both_svc.uri).0, 1, "{ab}");
    // A live service update reaches the graph: sms now also offers email.send, and the
    // email endorsement covers it.
    let sms2 = with_caps(&sms, &["sms.send", "email.send"]);
    let change = vec![upsert_service(&sms2)];
    apply(&ctx.store, change.clone()).await;
    trust
        .apply_changes(&change, &ctx.store)
        .await
        .expect("apply");
    let (_, one) = get(
        &app,
        &format!(
            "/xrpc/dev.guildhall.getService?uri={}&viewer={}",
            enc(&sms.uri),
            enc(&v)
        ),
    )
    .await;
    assert_eq!(one["service"]["trust"]["distance"], 1, "{one}");
}

/// A resync (`DeleteRepoRecords`, then the repo's records) and status changes that move
/// nothing are applied in place: no rebuild from the store, no re-adding of edges.
async fn incremental_resync_and_noop_status(ctx: Ctx) {
    apply(&ctx.store, world()).await;
    let opts = || TrustIndexOptions {
        build: BuildOptions {
            rebuild_churn_ppm: u32::MAX,
            ..BuildOptions::default()
        },
        ..TrustIndexOptions::default()
    };
    let (app, trust) = app_with(&ctx.store, config(), opts()).await;
    let (v, e1) = (did("viewer"), did("e1"));
    let step = |changes: Vec<Change>| {
        let (store, trust) = (ctx.store.clone(), Arc::clone(&trust));
        async move {
            apply(&store, changes.clone()).await;
            trust.apply_changes(&changes, &store).await.expect("apply")
        }
    };
    // Active → Active: nothing moves (it re-added every edge of the account before).
    let (s0, g0) = (trust.stats(), trust.generation());
    let rebuild = step(vec![Change::Account {
        did: did("p2"),
        status: OperatorStatus::Active,
    }])
    .await;
    assert!(!rebuild);
    assert_eq!((trust.stats(), trust.generation()), (s0, g0));
    // Suspended, then Takendown: only the first hides anything.
    for (status, tombs) in [
        (OperatorStatus::Suspended, 1),
        (OperatorStatus::Takendown, 1),
    ] {
        step(vec![Change::Account {
            did: did("p3"),
            status,
        }])
        .await;
        assert_eq!(trust.stats().tombstoned, tombs);
    }
    step(vec![Change::Account {
        did: did("p3"),
        status: OperatorStatus::Active,
    }])
    .await;
    // A resync of e1 whose repo now endorses p3 directly, and neither p2 nor e2: its two
    // old edges go, the new one comes, and no rebuild is asked for (one was, before).
    let s1 = trust.stats();
    let rebuild = step(vec![
        Change::DeleteRepoRecords { did: e1.clone() },
        upsert_endorsement(&endorsement(
            &e1,
            "3kresync0001",
            &did("p3"),
            70,
            &["sms.send"],
        )),
    ])
    .await;
    assert!(!rebuild, "a resync is applied in place");
    let s2 = trust.stats();
    assert_eq!(s2.base_edges, s1.base_edges, "no rebuild");
    assert_eq!(s2.tombstoned, s1.tombstoned + 2);
    assert_eq!(s2.overlay_edges, s1.overlay_edges + 1);
    // The same answer as a graph loaded from the store afterwards.
    let (fresh, _) = app_with(&ctx.store, config(), opts()).await;
    let (_, live) = get(&app, &search(&v, "")).await;
    let (_, loaded) = get(&fresh, &search(&v, "")).await;
    assert_eq!(live["services"], loaded["services"]);
    assert_eq!(
        operators_of(&live),
        [did("p1"), did("p3"), did("p2"), did("p4")],
        "{live}"
    );
    // An account hidden when the index loaded comes back on its reactivation.
    step(vec![Change::Account {
        did: e1.clone(),
        status: OperatorStatus::Takendown,
    }])
    .await;
    let (app3, trust3) = app_with(&ctx.store, config(), opts()).await;
    apply(
        &ctx.store,
        vec![Change::Account {
            did: e1.clone(),
            status: OperatorStatus::Active,
        }],
    )
    .await;
    trust3
        .apply_changes(
            &[Change::Account {
                did: e1,
                status: OperatorStatus::Active,
            }],
            &ctx.store,
        )
        .await
        .expect("apply");
    let (_, back) = get(&app3, &search(&v, "")).await;
    assert_eq!(back["services"], loaded["services"]);
    // Endorsements written while their author or subject is hidden stay out of the graph
    // (the index's own set of hidden accounts decides, as the store would).
    step(vec![Change::Account {
        did: did("p4"),
        status: OperatorStatus::Takendown,
    }])
    .await;
    let before = trust.stats().overlay_edges;
    step(vec![
        upsert_endorsement(&endorsement(
            &did("p4"),
            "3khidden0001",
            &did("p1"),
            90,
            &["sms.send"],
        )),
        upsert_endorsement(&endorsement(
            &v,
            "3khidden0002",
            &did("p4"),
            90,
            &["sms.send"],
        )),
    ])
    .await;
    assert_eq!(
        trust.stats().overlay_edges,
        before,
        "an endorsement of a hidden account entered the graph"
    );
}

/// A service row with other capabilities (and a new CID, as a new version would have).
fn with_caps(s: &guildhall_store::ServiceRow, caps: &[&str]) -> guildhall_store::ServiceRow {
    let mut s = s.clone();
    s.capabilities = caps.iter().map(|c| c.to_string()).collect();
    s.cid = format!("{}2", s.cid);
    s
}

async fn limits_cors_and_did_web(ctx: Ctx) {
    apply(&ctx.store, world()).await;
    let (app, _) = app(
        &ctx.store,
        AppConfig {
            rate_limit_per_minute: 3,
            hostname_for_did_web: Some("appview.example.com".into()),
            ..config()
        },
    )
    .await;
    let (st, v) = get(&app, "/.well-known/did.json").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["id"], "did:web:appview.example.com");
    assert_eq!(
        v["service"][0]["serviceEndpoint"],
        "https://appview.example.com"
    );
    let req = Request::get("/xrpc/dev.guildhall.listCapabilities")
        .header("origin", "https://elsewhere.example")
        .body(Body::empty())
        .unwrap_or_default();
    let (st, h, _) = send(&app, req).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        h.get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("*")
    );
    // did.json and the CORS request were the first two of this minute; the fourth is refused.
    let (st, v) = get(&app, "/xrpc/dev.guildhall.listCapabilities").await;
    assert_eq!(st, StatusCode::OK);
    let (st, v2) = get(&app, "/xrpc/dev.guildhall.listCapabilities").await;
    assert_xrpc_error(st, &v2, StatusCode::TOO_MANY_REQUESTS, "RateLimitExceeded");
    drop(v);
    // Health stays reachable while throttled.
    let (st, _) = get(&app, "/xrpc/_health").await;
    assert_eq!(st, StatusCode::OK);
}

both!(
    ranking_by_distance_with_path,
    fallback_basis,
    every_method,
    hostile_params,
    takedown_hides,
    live_delete_changes_ranking,
    pagination_is_stable,
    sybil_cap,
    capability_scope_everywhere,
    incremental_resync_and_noop_status,
    limits_cors_and_did_web,
    loads_in_pages,
);

/// The graph streams in from the store a page at a time; the page size changes nothing, and
/// a hidden author's endorsement stays out on every page.
async fn loads_in_pages(ctx: Ctx) {
    let mut c = world();
    c.extend(operator("e3"));
    c.push(upsert_endorsement(&endorsement(
        &did("e3"),
        "3kaaaaaaaaa2f",
        &did("p4"),
        90,
        &[],
    )));
    c.push(upsert_endorsement(&endorsement(
        &did("viewer"),
        "3kaaaaaaaaa2g",
        &did("e3"),
        90,
        &[],
    )));
    c.push(Change::Account {
        did: did("e3"),
        status: OperatorStatus::Takendown,
    });
    apply(&ctx.store, c).await;
    let mut answers = Vec::new();
    for load_page in [1, 2, 5_000] {
        let opts = TrustIndexOptions {
            load_page,
            ..TrustIndexOptions::default()
        };
        let (app, trust) = app_with(&ctx.store, config(), opts).await;
        assert_eq!(trust.stats().base_edges, 5, "page size {load_page}");
        let (st, v) = get(&app, &search(&did("viewer"), "")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        answers.push(v);
    }
    assert_eq!(
        operators_of(&answers[0]),
        [did("p1"), did("p2"), did("p3"), did("p4")]
    );
    assert!(answers.iter().all(|v| v == &answers[0]), "{answers:?}");
}
