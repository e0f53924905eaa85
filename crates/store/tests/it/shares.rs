//! Candidate shares (`search_candidates` with a per-operator share and a total cap, and
//! `candidates_of` for the operators a caller must not lose) and `capabilities_page`.

use guildhall_store::*;

use crate::data::*;
use crate::harness::{Ctx, both};

both!(candidate_shares_and_cut, capabilities_in_pages);

fn uris(c: &[ServiceCandidate]) -> Vec<String> {
    c.iter().map(|c| c.uri.clone()).collect()
}

async fn candidate_shares_and_cut(ctx: Ctx) {
    let store = &ctx.store;
    // "a" has 30 services (sorting first), b 2, c 1, d 3; one of d's has another capability.
    let mut changes = Vec::new();
    for i in 0..30 {
        changes.push(upsert_service(&service(
            &did("a"),
            &format!("s{i:02}"),
            "c",
        )));
    }
    for (n, k) in [("b", 2), ("c", 1), ("d", 3)] {
        for i in 0..k {
            changes.push(upsert_service(&service(&did(n), &format!("s{i:02}"), "c")));
        }
    }
    let mut other = service(&did("d"), "zz", "c");
    other.capabilities = vec!["email.send".into()];
    changes.push(upsert_service(&other));
    store.apply(&batch(changes)).await.expect("apply");
    let sms = ServiceQuery {
        capabilities: vec!["sms.send".into()],
        ..ServiceQuery::default()
    };

    // A share of 2: a and d are crowded, nothing is cut by the cap, DID order.
    let set = store.search_candidates(&sms, 100, 2).await.expect("c");
    let want: Vec<String> = [
        ("a", 0),
        ("a", 1),
        ("b", 0),
        ("b", 1),
        ("c", 0),
        ("d", 0),
        ("d", 1),
    ]
    .iter()
    .map(|(n, i)| uri(&did(n), SVC, &format!("s{i:02}")))
    .collect();
    assert_eq!(uris(&set.candidates), want);
    assert!(set.truncated);
    assert_eq!(set.crowded, [did("a"), did("d")]);
    assert_eq!(set.missing_from, None);
    assert!(set.cut(&did("a")) && set.cut(&did("d")) && !set.cut(&did("b")));

    // A cap of 5 rows: a (2) and b (2) fit, c's row is the fifth, d's first row is past the
    // cap: d is left out whole and named.
    let set = store.search_candidates(&sms, 5, 2).await.expect("c");
    assert_eq!(set.candidates.len(), 5, "{set:?}");
    assert_eq!(set.missing_from, Some(did("d")));
    assert!(set.cut(&did("d")) && set.cut(&did("zz")) && !set.cut(&did("c")));
    // A cap that falls inside an operator's share drops that operator whole.
    let set = store.search_candidates(&sms, 3, 2).await.expect("c");
    assert_eq!(
        uris(&set.candidates),
        [uri(&did("a"), SVC, "s00"), uri(&did("a"), SVC, "s01")]
    );
    assert_eq!(set.missing_from, Some(did("b")));
    // Without any cut: everything, not truncated.
    let set = store
        .search_candidates(&sms, 1_000, 1_000)
        .await
        .expect("c");
    assert_eq!(set.candidates.len(), 36);
    assert!(!set.truncated && set.crowded.is_empty());

    // What a caller fetches for the operators it must not lose: every match, filters kept.
    let (all_d, cut) = store
        .candidates_of(&sms, &[did("d").as_str(), did("nobody").as_str()], 100)
        .await
        .expect("of");
    assert!(!cut);
    assert_eq!(
        uris(&all_d),
        (0..3)
            .map(|i| uri(&did("d"), SVC, &format!("s{i:02}")))
            .collect::<Vec<_>>()
    );
    let (all_a, cut) = store
        .candidates_of(&sms, &[did("a").as_str()], 100)
        .await
        .expect("of");
    assert_eq!((all_a.len(), cut), (30, false));
    // Even for these, one operator holds at most its bound.
    let (some_a, cut) = store
        .candidates_of(&sms, &[did("a").as_str(), did("b").as_str()], 10)
        .await
        .expect("of");
    assert!(cut);
    assert_eq!(some_a.len(), 12);
    assert_eq!(some_a[9].uri, uri(&did("a"), SVC, "s09"));
    // Hidden operators stay hidden.
    store
        .apply(&account(&did("d"), OperatorStatus::Takendown))
        .await
        .expect("takedown");
    assert!(
        store
            .candidates_of(&sms, &[did("d").as_str()], 100)
            .await
            .expect("of")
            .0
            .is_empty()
    );
    let set = store.search_candidates(&sms, 100, 2).await.expect("c");
    assert_eq!(set.crowded, [did("a")]);
}

async fn capabilities_in_pages(ctx: Ctx) {
    let store = &ctx.store;
    let caps = ["a.x", "a.y", "ab.z", "b.one", "b.two", "sms.send"];
    let mut changes = Vec::new();
    for (i, c) in caps.iter().enumerate() {
        let mut s = service(&did("p"), &format!("s{i}"), "c");
        s.capabilities = vec![(*c).to_owned(), "sms.send".into()];
        changes.push(upsert_service(&s));
    }
    // A hidden operator's capabilities are not counted.
    let mut h = service(&did("hidden"), "h", "c");
    h.capabilities = vec!["a.x".into(), "zz.hidden".into()];
    changes.push(upsert_service(&h));
    store.apply(&batch(changes)).await.expect("apply");
    store
        .apply(&account(&did("hidden"), OperatorStatus::Suspended))
        .await
        .expect("suspend");

    let page = |prefix: &'static str, after: Option<&'static str>, limit| async move {
        store
            .capabilities_page(prefix, after, limit)
            .await
            .expect("page")
    };
    let ids = |v: Vec<(String, i64)>| v.into_iter().map(|(c, _)| c).collect::<Vec<_>>();
    assert_eq!(
        page("", None, 100).await,
        [
            ("a.x".to_owned(), 1),
            ("a.y".to_owned(), 1),
            ("ab.z".to_owned(), 1),
            ("b.one".to_owned(), 1),
            ("b.two".to_owned(), 1),
            ("sms.send".to_owned(), 6),
        ]
    );
    assert_eq!(ids(page("", None, 2).await), ["a.x", "a.y"]);
    assert_eq!(ids(page("", Some("a.y"), 2).await), ["ab.z", "b.one"]);
    assert_eq!(ids(page("a", None, 10).await), ["a.x", "a.y", "ab.z"]);
    assert_eq!(ids(page("a.", None, 10).await), ["a.x", "a.y"]);
    assert_eq!(ids(page("a", Some("a.x"), 10).await), ["a.y", "ab.z"]);
    // A cursor before the prefix starts at the prefix; one past it ends the listing.
    assert_eq!(ids(page("b", Some("a.x"), 10).await), ["b.one", "b.two"]);
    assert!(page("a", Some("b"), 10).await.is_empty());
    assert!(page("zz", None, 10).await.is_empty());
    // Hostile prefixes are parameters, not patterns.
    assert!(page("%", None, 10).await.is_empty());
    assert!(page("_", None, 10).await.is_empty());
    assert!(
        page("'; DROP TABLE services; --", None, 10)
            .await
            .is_empty()
    );
    assert_eq!(store.stats().await.expect("stats").services, 6);
}
