//! The `dev.guildhall.ledger.*` methods through the router, as real reference-PDS accounts
//! (their own `getServiceAuth` tokens), on SQLite and PostgreSQL: balances, a transfer and its
//! retry (one movement, the first answer), refusals with their lexicon names, ids namespaced
//! per caller, and the history paged newest first.

use axum::http::StatusCode;
use guildhall_store::ledger_core::{Owner, TransferId};
use serde_json::{Value, json};

use crate::harness::{Ctx, both};
use crate::peer_support::{
    GET_BALANCE, LIST_TRANSFERS, TRANSFER, World, assert_error, call, world,
};

both!(balances_transfers_and_history);

const USD: u64 = 1_000_000_000;

async fn balance(w: &World, i: usize) -> Value {
    let t = w.token(i, GET_BALANCE).await;
    let r = w
        .call("/xrpc/dev.guildhall.ledger.getBalance", Some(&t), None)
        .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    r.1
}

fn available(b: &Value) -> &str {
    b["accounts"][0]["available"].as_str().unwrap_or("none")
}

async fn send(w: &World, i: usize, body: Value) -> (StatusCode, Value) {
    let t = w.token(i, TRANSFER).await;
    w.call("/xrpc/dev.guildhall.ledger.transfer", Some(&t), Some(&body))
        .await
}

async fn balances_transfers_and_history(ctx: Ctx) {
    let w = world(&ctx.store, 2).await;
    let (alice, bob) = (w.account(0).did.clone(), w.account(1).did.clone());
    assert_eq!(balance(&w, 0).await["accounts"], json!([]));
    w.ledger
        .grant(
            TransferId("grant:g1".into()),
            Owner::Did(alice.clone()),
            "USD",
            10 * USD as i64,
            Some("top-up".into()),
        )
        .await
        .expect("grant");
    let b = balance(&w, 0).await;
    assert_eq!(b["did"], alice);
    assert_eq!(
        b["accounts"],
        json!([{"currency": "USD", "available": "10", "creditsPosted": "10", "debitsPosted": "0",
                "creditsPending": "0", "debitsPending": "0"}])
    );

    let pay = json!({"to": bob, "amount": "2.5", "currency": "USD", "id": "t1", "memo": "lunch"});
    let first = send(&w, 0, pay.clone()).await;
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    assert_eq!(first.1["id"], "t1");
    assert_eq!(first.1["from"], alice);
    assert_eq!(first.1["to"], bob);
    assert_eq!(first.1["amount"], "2.5");
    assert_eq!(first.1["direction"], "out");
    // A retry (a fresh token, the same id and parameters) answers the first result.
    let again = send(&w, 0, pay.clone()).await;
    assert_eq!(again, first);
    assert_eq!(available(&balance(&w, 0).await), "7.5");
    assert_eq!(available(&balance(&w, 1).await), "2.5");

    // Refusals, each with its name; none moves anything.
    let refusals = [
        (
            json!({"to": bob, "amount": "3", "currency": "USD", "id": "t1", "memo": "lunch"}),
            "IdReused",
        ),
        (
            json!({"to": bob, "amount": "100", "currency": "USD", "id": "t2"}),
            "InsufficientFunds",
        ),
        (
            json!({"to": alice, "amount": "1", "currency": "USD", "id": "t3"}),
            "SameAccount",
        ),
        (
            json!({"to": bob, "amount": "0", "currency": "USD", "id": "t4"}),
            "InvalidAmount",
        ),
        (
            json!({"to": bob, "amount": "1.0000000001", "currency": "USD", "id": "t5"}),
            "InvalidAmount",
        ),
        (
            json!({"to": bob, "amount": "1", "currency": "usd", "id": "t6"}),
            "InvalidCurrency",
        ),
        (
            json!({"to": bob, "amount": "1", "currency": "USD", "id": "has space"}),
            "InvalidId",
        ),
        (
            json!({"to": bob, "amount": "1", "currency": "USD", "id": "t7", "memo": "a\u{7}b"}),
            "InvalidMemo",
        ),
        (
            json!({"to": "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "amount": "1", "currency": "USD", "id": "t8"}),
            "UnknownRecipient",
        ),
    ];
    for (body, name) in refusals {
        assert_error(&send(&w, 0, body).await, StatusCode::BAD_REQUEST, name);
    }
    assert_error(
        &send(&w, 0, json!({"to": bob})).await,
        StatusCode::BAD_REQUEST,
        "InvalidRequest",
    );
    assert_eq!(available(&balance(&w, 0).await), "7.5");

    // bob's "t1" is his own, not alice's.
    let back = send(
        &w,
        1,
        json!({"to": alice, "amount": "0.5", "currency": "USD", "id": "t1"}),
    )
    .await;
    assert_eq!(back.0, StatusCode::OK, "{}", back.1);
    assert_eq!(back.1["id"], "t1");

    // alice's history: newest first, two pages of two and one.
    let page = |cursor: Option<String>| {
        let w = &w;
        async move {
            let t = w.token(0, LIST_TRANSFERS).await;
            let path = match cursor {
                Some(c) => format!("/xrpc/dev.guildhall.ledger.listTransfers?limit=2&cursor={c}"),
                None => "/xrpc/dev.guildhall.ledger.listTransfers?limit=2".to_owned(),
            };
            let r = call(&w.app, &path, Some(&t), None).await;
            assert_eq!(r.0, StatusCode::OK, "{}", r.1);
            r.1
        }
    };
    let p1 = page(None).await;
    let seen: Vec<(&str, &str, &str)> = p1["transfers"]
        .as_array()
        .expect("transfers")
        .iter()
        .map(|t| {
            (
                t["direction"].as_str().unwrap_or(""),
                t["amount"].as_str().unwrap_or(""),
                t["id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    // bob's id is shown to alice as the ledger's (namespaced by bob), never as hers.
    let bobs = format!("xrpc:{bob}:t1");
    assert_eq!(
        seen,
        vec![("in", "0.5", bobs.as_str()), ("out", "2.5", "t1")]
    );
    let cursor = p1["cursor"].as_str().expect("cursor").to_owned();
    let p2 = page(Some(cursor)).await;
    assert_eq!(p2["transfers"].as_array().map(Vec::len), Some(1), "{p2}");
    assert_eq!(p2["transfers"][0]["from"], "issuance");
    assert_eq!(p2["transfers"][0]["memo"], "top-up");
    let bad = {
        let t = w.token(0, LIST_TRANSFERS).await;
        call(
            &w.app,
            "/xrpc/dev.guildhall.ledger.listTransfers?cursor=x",
            Some(&t),
            None,
        )
        .await
    };
    assert_error(&bad, StatusCode::BAD_REQUEST, "InvalidCursor");

    // Unauthenticated calls never reach the ledger.
    assert_error(
        &w.call(
            "/xrpc/dev.guildhall.ledger.transfer",
            None,
            Some(&json!({"to": bob, "amount": "1", "currency": "USD", "id": "t9"})),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "AuthMissing",
    );
    // The ledger's own conservation: everything granted is somewhere.
    let accounts = ctx.store.ledger_accounts().await.expect("accounts");
    let net: i64 = accounts
        .iter()
        .map(|(_, b)| b.credits_posted - b.debits_posted)
        .sum();
    assert_eq!(net, 0);
    // The writer's work is on the admin /metrics page.
    let metrics = w.metrics().await;
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    };
    assert!(value("guildhall_ledger_batches_total") >= 1, "{metrics}");
    assert!(value("guildhall_ledger_ops_total") >= 3);
    assert!(
        value("guildhall_ledger_refused_total") >= 1,
        "refusals are counted"
    );
}
