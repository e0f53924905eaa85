//! Batched reads (`service_records`, `operators_by_dids`, `record_cids`): each answer lines up
//! with the keys asked, hides exactly what the single-item reads hide, and spans chunks; and
//! the change token an AppView apart from ingestion polls.

use guildhall_store::*;

use crate::data::*;
use crate::harness::{Ctx, both};

both!(
    batched_reads_line_up_with_keys,
    batched_reads_hide_inactive_operators,
    batched_reads_span_chunks,
    change_token_moves_with_the_trust_inputs,
    endorsements_stream_in_pages,
);

/// Each batched answer must equal the single-item read of the same key.
async fn assert_same_as_single_reads(store: &Store, uris: &[&str], dids: &[&str]) {
    let services = store.service_records(uris).await.expect("service_records");
    let cids = store.record_cids(uris).await.expect("record_cids");
    assert_eq!((services.len(), cids.len()), (uris.len(), uris.len()));
    for ((u, s), c) in uris.iter().zip(&services).zip(&cids) {
        let single = store.service(u).await.expect("service");
        assert_eq!(s, &single.map(ServiceRecordRow::from), "{u}");
        let rec = store.record(u).await.expect("record");
        assert_eq!(c, &rec.map(|r| r.cid), "{u}");
    }
    let ops = store
        .operators_by_dids(dids)
        .await
        .expect("operators_by_dids");
    assert_eq!(ops.len(), dids.len());
    for (d, o) in dids.iter().zip(&ops) {
        assert_eq!(o, &store.operator(d).await.expect("operator"), "{d}");
    }
}

fn active(d: &str, handle: &str) -> Vec<Change> {
    vec![
        Change::Account {
            did: d.to_owned(),
            status: OperatorStatus::Active,
        },
        Change::Identity {
            did: d.to_owned(),
            handle: Some(handle.to_owned()),
            verified: true,
        },
    ]
}

async fn batched_reads_line_up_with_keys(ctx: Ctx) {
    let store = &ctx.store;
    let (a, b) = (did("a"), did("b"));
    let mut x = service(&a, "x", "c-x");
    x.capabilities = vec!["sms.send".into(), "email.send".into()];
    x.prices = vec![price("per_call", "USD", "0.01"), price("free", "USD", "0")];
    let y = service(&b, "y", "c-y");
    // A key holding U+0000 is stored as U+FFFD; the batched read must find it as `service` does.
    let nul = service(&b, "nul\0key", "c-nul");
    let mut changes = active(&a, "a.test");
    changes.extend(active(&b, "b.test"));
    changes.extend([upsert_service(&x), upsert_service(&y), upsert_service(&nul)]);
    changes.push(upsert_endorsement(&endorsement(&a, "3kaaa", &b)));
    store.apply(&batch(changes)).await.expect("apply");

    let missing = uri(&a, SVC, "nope");
    let e_uri = uri(&a, END, "3kaaa");
    let uris = [
        y.uri.as_str(),
        missing.as_str(),
        x.uri.as_str(),
        y.uri.as_str(),
        nul.uri.as_str(),
        e_uri.as_str(),
    ];
    let got = store.service_records(&uris).await.expect("service_records");
    let records: Vec<Option<(&str, &str)>> = got
        .iter()
        .map(|s| s.as_ref().map(|s| (s.cid.as_str(), s.record_json.as_str())))
        .collect();
    assert_eq!(
        records,
        [
            Some(("c-y", "{\"name\":\"Service y\"}")),
            None,
            Some(("c-x", "{\"name\":\"Service x\"}")),
            Some(("c-y", "{\"name\":\"Service y\"}")),
            Some(("c-nul", "{\"name\":\"Service nul\u{FFFD}key\"}")),
            None
        ]
    );
    // Record CIDs cover every collection, not just services.
    assert_eq!(
        store.record_cids(&uris).await.expect("record_cids"),
        [
            Some("c-y".to_owned()),
            None,
            Some("c-x".to_owned()),
            Some("c-y".to_owned()),
            Some("c-nul".to_owned()),
            Some("bafy-e-3kaaa".to_owned()),
        ]
    );
    let unknown = did("nobody");
    let dids = [b.as_str(), unknown.as_str(), a.as_str(), b.as_str()];
    let ops = store.operators_by_dids(&dids).await.expect("operators");
    assert_eq!(
        ops.iter()
            .map(|o| o.as_ref().and_then(|o| o.handle.clone()))
            .collect::<Vec<_>>(),
        [
            Some("b.test".to_owned()),
            None,
            Some("a.test".to_owned()),
            Some("b.test".to_owned())
        ]
    );
    assert_same_as_single_reads(store, &uris, &dids).await;
    // Nothing asked, nothing read.
    assert!(store.service_records(&[]).await.expect("empty").is_empty());
    assert!(
        store
            .operators_by_dids(&[])
            .await
            .expect("empty")
            .is_empty()
    );
    assert!(store.record_cids(&[]).await.expect("empty").is_empty());
}

async fn batched_reads_hide_inactive_operators(ctx: Ctx) {
    let store = &ctx.store;
    let (a, b) = (did("a"), did("b"));
    let (sa, sb) = (service(&a, "sa", "c-a"), service(&b, "sb", "c-b"));
    let mut changes = active(&a, "a.test");
    changes.extend(active(&b, "b.test"));
    changes.extend([upsert_service(&sa), upsert_service(&sb)]);
    store.apply(&batch(changes)).await.expect("apply");
    let uris = [sa.uri.as_str(), sb.uri.as_str()];
    let dids = [a.as_str(), b.as_str()];

    for status in [
        OperatorStatus::Takendown,
        OperatorStatus::Suspended,
        OperatorStatus::Deactivated,
        OperatorStatus::Desynchronized,
        OperatorStatus::Throttled,
    ] {
        store.apply(&account(&b, status)).await.expect("hide");
        let s = store.service_records(&uris).await.expect("services");
        assert!(s[0].is_some() && s[1].is_none(), "{status:?}: {s:?}");
        let o = store.operators_by_dids(&dids).await.expect("operators");
        assert!(o[0].is_some() && o[1].is_none(), "{status:?}: {o:?}");
        // Raw records are sync state: still there.
        let c = store.record_cids(&uris).await.expect("cids");
        assert_eq!(c, [Some("c-a".to_owned()), Some("c-b".to_owned())]);
        assert_same_as_single_reads(store, &uris, &dids).await;
    }
    store
        .apply(&account(&b, OperatorStatus::Active))
        .await
        .expect("reactivate");
    let s = store.service_records(&uris).await.expect("services");
    assert!(s.iter().all(Option::is_some), "restored: {s:?}");
    assert_same_as_single_reads(store, &uris, &dids).await;
}

async fn batched_reads_span_chunks(ctx: Ctx) {
    let store = &ctx.store;
    // More distinct keys than one IN list holds (500), so every call needs three chunks.
    const N: usize = 1_203;
    let mut changes = Vec::new();
    let mut services = Vec::new();
    for i in 0..N {
        let d = did(&format!("op{i:05}"));
        changes.extend(active(&d, &format!("op{i:05}.test")));
        let s = service(&d, &format!("s{i:05}"), &format!("c{i:05}"));
        changes.push(upsert_service(&s));
        services.push(s);
    }
    // One operator in the middle of a chunk is hidden.
    let hidden = N / 2;
    changes.push(Change::Account {
        did: services[hidden].did.clone(),
        status: OperatorStatus::Takendown,
    });
    for c in changes.chunks(1000) {
        store.apply(&batch(c.to_vec())).await.expect("apply");
    }
    // Reversed, every seventh repeated, a miss every hundredth.
    let misses: Vec<String> = (0..N / 100)
        .map(|i| uri(&did("ghost"), SVC, &format!("g{i}")))
        .collect();
    let mut uris: Vec<&str> = Vec::new();
    let mut dids: Vec<&str> = Vec::new();
    for (i, s) in services.iter().enumerate().rev() {
        uris.push(&s.uri);
        dids.push(&s.did);
        if i % 7 == 0 {
            uris.push(&s.uri);
            dids.push(&s.did);
        }
        if i % 100 == 0 {
            uris.push(&misses[i / 100 % misses.len()]);
        }
    }
    let got = store.service_records(&uris).await.expect("services");
    assert_eq!(got.len(), uris.len());
    for (u, s) in uris.iter().zip(&got) {
        let want_some = !u.contains("ghost") && !u.ends_with(&format!("s{hidden:05}"));
        assert_eq!(s.is_some(), want_some, "{u}");
        if let Some(s) = s {
            assert_eq!(&s.uri, u);
            assert!(s.record_json.contains("Service s"), "{s:?}");
        }
    }
    let ops = store.operators_by_dids(&dids).await.expect("operators");
    assert_eq!(ops.len(), dids.len());
    for (d, o) in dids.iter().zip(&ops) {
        assert_eq!(o.is_some(), *d != services[hidden].did, "{d}");
        if let Some(o) = o {
            assert_eq!(&o.did, d);
        }
    }
    let cids = store.record_cids(&uris).await.expect("cids");
    for (u, c) in uris.iter().zip(&cids) {
        assert_eq!(c.is_some(), !u.contains("ghost"), "{u}");
    }
    // Spot checks against the single reads, across the chunk boundaries.
    let sample: Vec<&str> = [0, 499, 500, 501, hidden, 999, 1000, N - 1]
        .iter()
        .map(|&i| services[i].uri.as_str())
        .collect();
    let sample_dids: Vec<&str> = [0, 499, 500, hidden, N - 1]
        .iter()
        .map(|&i| services[i].did.as_str())
        .collect();
    assert_same_as_single_reads(store, &sample, &sample_dids).await;
}

async fn change_token_moves_with_the_trust_inputs(ctx: Ctx) {
    let store = &ctx.store;
    let (a, b) = (did("a"), did("b"));
    let empty = store.change_token().await.expect("token");
    assert_eq!(empty, ChangeToken::default());
    // No pause between writes: the token is a counter, so even rewrites within one
    // millisecond (which row timestamps could not tell apart) move it.
    let step = |changes: Vec<Change>| async move {
        let before = store.change_token().await.expect("token");
        store.apply(&batch(changes)).await.expect("apply");
        let after = store.change_token().await.expect("token");
        assert_eq!(after, store.change_token().await.expect("token"), "stable");
        (before, after)
    };
    let e = endorsement(&a, "3kaaa", &b);
    let s = service(&b, "s", "c1");
    let moved = |(x, y): (ChangeToken, ChangeToken)| x != y;
    assert!(
        moved(step(vec![upsert_endorsement(&e)]).await),
        "endorsement written"
    );
    assert!(
        moved(step(vec![upsert_service(&s)]).await),
        "service written"
    );
    let mut e2 = e.clone();
    e2.strength = Some(10);
    assert!(
        moved(step(vec![upsert_endorsement(&e2)]).await),
        "endorsement rewritten"
    );
    assert!(
        moved(step(vec![upsert_service(&service(&b, "s", "c2"))]).await),
        "service rewritten"
    );
    let gone = uri(&a, END, "3kaaa");
    assert!(
        moved(step(vec![Change::DeleteRecord { uri: gone }]).await),
        "endorsement deleted"
    );
    assert!(
        moved(step(vec![Change::DeleteRecord { uri: s.uri.clone() }]).await),
        "service deleted"
    );
    // Delete one and write another in one batch: the counts stay, the token still moves.
    assert!(moved(step(vec![upsert_endorsement(&e)]).await));
    let other = endorsement(&b, "3kbbb", &a);
    assert!(
        moved(
            step(vec![
                Change::DeleteRecord { uri: e.uri.clone() },
                upsert_endorsement(&other)
            ])
            .await
        ),
        "replaced"
    );
    for status in [
        OperatorStatus::Takendown,
        OperatorStatus::Suspended,
        OperatorStatus::Active,
    ] {
        let c = vec![Change::Account {
            did: b.clone(),
            status,
        }];
        assert!(moved(step(c).await), "{status:?}");
    }
    // The same rewrite twice in a row, as fast as the store takes it.
    for _ in 0..3 {
        assert!(
            moved(step(vec![upsert_endorsement(&e2)]).await),
            "endorsement rewritten at once"
        );
    }
    assert!(
        moved(step(vec![Change::DeleteRepoRecords { did: b.clone() }]).await),
        "a repo's records cleared for a resync"
    );
    // What the graph does not read leaves the token alone.
    let unrelated = vec![
        Change::Reject(RejectionRow {
            uri: uri(&a, SVC, "bad"),
            cid: None,
            collection: SVC.into(),
            reason: "invalid_record".into(),
            detail: None,
        }),
        Change::SetRepo(RepoRow {
            did: a.clone(),
            rev: Some("3kzzz".into()),
            data_cid: Some("bafy-root".into()),
            status: RepoStatus::Synced,
        }),
        Change::Identity {
            did: a.clone(),
            handle: Some("a.test".into()),
            verified: true,
        },
        profile(&a, "A"),
        Change::Account {
            did: a.clone(),
            status: OperatorStatus::Active,
        },
    ];
    assert!(!moved(step(unrelated).await), "unrelated writes");
    let before = store.change_token().await.expect("token");
    store
        .apply(&Batch {
            cursors: vec![("wss://relay.test".into(), 7)],
            changes: vec![],
        })
        .await
        .expect("cursor only");
    assert_eq!(
        store.change_token().await.expect("token"),
        before,
        "cursor only"
    );
}

/// `endorsements_after` is `all_endorsements` in pages: same rows, same order, scopes
/// attached, hidden authors and subjects left out, whatever the page size.
async fn endorsements_stream_in_pages(ctx: Ctx) {
    let store = &ctx.store;
    let (a, b, hidden) = (did("a"), did("b"), did("hidden"));
    let mut changes = Vec::new();
    for i in 0..7 {
        let (from, to) = match i {
            2 => (&hidden, &b),
            5 => (&a, &hidden),
            _ if i % 2 == 0 => (&a, &b),
            _ => (&b, &a),
        };
        let mut e = endorsement(from, &format!("3kaaaaaaaaa{i}a"), to);
        e.capabilities = match i {
            1 | 4 => vec!["sms.send".to_owned()],
            3 | 5 | 6 => vec!["email.send".to_owned(), "sms".to_owned()],
            _ => vec![],
        };
        changes.push(upsert_endorsement(&e));
    }
    store.apply(&batch(changes)).await.expect("apply");
    store
        .apply(&account(&hidden, OperatorStatus::Takendown))
        .await
        .expect("hide");
    let all = store.all_endorsements().await.expect("all");
    assert_eq!(all.len(), 5);
    assert!(all.iter().any(|e| e.capabilities.len() == 2));
    for limit in [0, 1, 2, 3, 100] {
        let (mut got, mut after, mut pages) = (Vec::new(), None, 0);
        loop {
            let page = store.endorsements_after(after, limit).await.expect("page");
            pages += 1;
            got.extend(page.items);
            match page.cursor {
                Some(c) => after = Some(c),
                None => break,
            }
            assert!(pages <= all.len(), "page size {limit} makes progress");
        }
        assert_eq!(got, all, "page size {limit}");
    }
    let empty = store
        .endorsements_after(Some(i64::MAX), 10)
        .await
        .expect("past the end");
    assert!(empty.items.is_empty() && empty.cursor.is_none());
}
