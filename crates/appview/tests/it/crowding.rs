//! Candidates that cannot be crowded out: an operator whose DID sorts first and who
//! publishes thousands of services neither pushes the viewer's providers out of a search nor
//! fills its first page.

use axum::http::StatusCode;
use guildhall_appview::AppConfig;
use guildhall_store::Change;

use crate::data::*;
use crate::harness::{Ctx, both};

/// Services the flooding operator publishes (more than the default candidate cap of 5,000).
const FLOOD: usize = 6_000;

/// `did:plc:aaaa-flood` (sorts before every other DID) with [`FLOOD`] sms.send services;
/// the viewer endorses p1 and p2 directly and p3 through e1; `other` is unreached.
fn world() -> Vec<Change> {
    let mut c = Vec::new();
    for n in ["aaaa-flood", "viewer", "e1", "p1", "p2", "p3", "zz-other"] {
        c.extend(operator(n));
    }
    let flood = did("aaaa-flood");
    for i in 0..FLOOD {
        c.push(upsert_service(&service(
            &flood,
            &format!("f{i:05}"),
            &["sms.send"],
        )));
    }
    for n in ["p1", "p2", "p3", "zz-other"] {
        c.push(upsert_service(&service(
            &did(n),
            &format!("{n}-sms"),
            &["sms.send"],
        )));
    }
    let v = did("viewer");
    for (rkey, to) in [
        ("3kaaaaaaaaa2a", did("p1")),
        ("3kaaaaaaaaa2b", did("p2")),
        ("3kaaaaaaaaa2c", did("e1")),
    ] {
        c.push(upsert_endorsement(&endorsement(&v, rkey, &to, 80, &[])));
    }
    c.push(upsert_endorsement(&endorsement(
        &did("e1"),
        "3kaaaaaaaaa2d",
        &did("p3"),
        80,
        &[],
    )));
    c
}

fn search(viewer: Option<&str>, limit: u32) -> String {
    let mut s = format!("/xrpc/dev.guildhall.searchServices?capability=sms.send&limit={limit}");
    if let Some(v) = viewer {
        s.push_str(&format!("&viewer={}", enc(v)));
    }
    s
}

async fn flood_cannot_crowd_out(ctx: Ctx) {
    apply(&ctx.store, world()).await;
    let per_op = AppConfig::default().candidates_per_operator;
    assert_eq!(per_op, 5, "the documented handful");
    for cfg in [
        config(),
        // A cap smaller than the world: the viewer's providers lie past it, and are still
        // ranked.
        AppConfig {
            candidate_cap: 3,
            ..config()
        },
    ] {
        let cap = cfg.candidate_cap;
        let (app, _) = app(&ctx.store, cfg).await;
        let (st, v) = get(&app, &search(Some(&did("viewer")), 25)).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let ops = operators_of(&v);
        assert_eq!(
            ops[..3],
            [did("p1"), did("p2"), did("p3")],
            "cap {cap}: the viewer's providers come first: {ops:?}"
        );
        let flood = ops.iter().filter(|d| **d == did("aaaa-flood")).count();
        assert!(
            flood <= per_op,
            "cap {cap}: the flood holds {flood} places of the first page"
        );
        assert_eq!(v["candidatesOmitted"], true, "{v}");
        if cap > per_op {
            // An unreached honest operator is not pushed out either.
            assert!(ops.contains(&did("zz-other")), "{ops:?}");
            assert_eq!(flood, per_op);
        }
        // Without a viewer the flood still holds at most its share.
        let (_, v) = get(&app, &search(None, 100)).await;
        let ops = operators_of(&v);
        assert!(ops.iter().filter(|d| **d == did("aaaa-flood")).count() <= per_op);
        assert_eq!(v["candidatesOmitted"], true);
        // A query nothing crowds answers exactly and says so.
        let (_, v) = get(
            &app,
            &format!(
                "/xrpc/dev.guildhall.searchServices?q=p1-sms&viewer={}",
                enc(&did("viewer"))
            ),
        )
        .await;
        assert_eq!(operators_of(&v), [did("p1")]);
        assert_eq!(v["candidatesOmitted"], false);
    }
}

/// The cached candidate set is shared by viewers; what each one reaches is added per
/// request, so a second viewer answered from the cache still gets its own providers, and the
/// first viewer's never leak into its answer as reached.
async fn reach_is_per_viewer_over_a_shared_cache(ctx: Ctx) {
    let mut c = world();
    c.extend(operator("viewer2"));
    c.push(upsert_endorsement(&endorsement(
        &did("viewer2"),
        "3kaaaaaaaaa2e",
        &did("zz-other"),
        80,
        &[],
    )));
    apply(&ctx.store, c).await;
    // A cap of 3 rows: not even the flood's share fits (operators are kept whole), so every
    // operator lies past the cap.
    let (capped, _) = app(
        &ctx.store,
        AppConfig {
            candidate_cap: 3,
            ..config()
        },
    )
    .await;
    let (_, v1) = get(&capped, &search(Some(&did("viewer")), 25)).await;
    let misses = counter(&capped, "guildhall_candidate_cache_misses_total").await;
    let (_, v2) = get(&capped, &search(Some(&did("viewer2")), 25)).await;
    assert_eq!(
        counter(&capped, "guildhall_candidate_cache_misses_total").await,
        misses,
        "the second viewer is answered from the cached set"
    );
    assert!(counter(&capped, "guildhall_candidate_cache_hits_total").await >= 1);
    let ops1 = operators_of(&v1);
    let ops2 = operators_of(&v2);
    assert_eq!(ops1[..3], [did("p1"), did("p2"), did("p3")], "{ops1:?}");
    assert!(
        !ops1.contains(&did("zz-other")),
        "viewer does not reach it: {ops1:?}"
    );
    assert_eq!(ops2[0], did("zz-other"), "{ops2:?}");
    assert_eq!(v2["services"][0]["trust"]["basis"], "graph");
    for p in ["p1", "p2", "p3"] {
        assert!(
            !ops2.contains(&did(p)),
            "viewer2 does not reach {p}: {ops2:?}"
        );
    }
    // And the first viewer again, from the cache: unchanged.
    let (_, again) = get(&capped, &search(Some(&did("viewer")), 25)).await;
    assert_eq!(operators_of(&again), ops1);

    // A viewer who endorses the flood itself gets its services ranked on the graph, up to
    // the bound for operators within reach, and is told the rest were left out.
    apply(
        &ctx.store,
        [
            operator("fan"),
            vec![upsert_endorsement(&endorsement(
                &did("fan"),
                "3kaaaaaaaaa2f",
                &did("aaaa-flood"),
                80,
                &[],
            ))],
        ]
        .concat(),
    )
    .await;
    let (fan_app, _) = app(&ctx.store, config()).await;
    let bound = AppConfig::default().reach_per_operator;
    let mut flood = 0;
    let mut path = search(Some(&did("fan")), 100);
    for _ in 0..100 {
        let (st, v) = get(&fan_app, &path).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["candidatesOmitted"], true);
        for s in v["services"].as_array().into_iter().flatten() {
            if s["operator"]["did"] == did("aaaa-flood").as_str() {
                flood += 1;
                assert_eq!(s["trust"]["distance"], 1, "{s}");
            }
        }
        match v["cursor"].as_str() {
            Some(c) => path = format!("{}&cursor={c}", search(Some(&did("fan")), 100)),
            None => break,
        }
    }
    assert_eq!(flood, bound, "a reached operator keeps its first {bound}");
}

both!(
    flood_cannot_crowd_out,
    reach_is_per_viewer_over_a_shared_cache
);
