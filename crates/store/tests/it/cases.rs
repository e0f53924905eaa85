//! The behaviour suite, each case run on SQLite and on PostgreSQL.

use std::collections::BTreeSet;

use guildhall_store::*;
use sqlx::SqlSafeStr as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::SqliteConnectOptions;

use crate::data::*;
use crate::harness::{Ctx, both, fresh};

both!(
    migrations_idempotent,
    upgrade_from_version_1,
    apply_and_read_back,
    upsert_replaces,
    unindexed_upsert_removes_index_row,
    delete_record_and_repo,
    takedown_hides_and_reactivation_restores,
    deleted_account_removes_records,
    replaying_a_batch_changes_nothing,
    failing_change_rolls_back_batch,
    duplicate_uris_in_one_batch_last_wins,
    values_equal_once_stored_are_one_row,
    filters,
    search_pagination_is_stable,
    endorsement_pagination_is_stable,
    hostile_query_strings_are_parameters,
    backfill_queue,
    large_batch,
);

async fn migrations_idempotent(ctx: Ctx) {
    let store = &ctx.store;
    store
        .apply(&batch(vec![upsert_service(&service(&did("a"), "x", "c1"))]))
        .await
        .expect("apply");
    store.migrate().await.expect("second migrate");
    store.migrate().await.expect("third migrate");
    // Reopening runs the migrations again and keeps the data.
    let again = Store::open(&ctx.location).await.expect("reopen");
    assert_eq!(again.stats().await.expect("stats").services, 1);
    again.close().await;
}

/// A database left at schema version 1 by an earlier release opens, keeps its rows and
/// gains the graph version, starting at zero.
async fn upgrade_from_version_1(ctx: Ctx) {
    let pg = ctx.store.backend_name() == "postgres";
    let old = fresh(pg).await;
    let init = if pg {
        include_str!("../../../../migrations/postgres/0001_init.sql")
    } else {
        include_str!("../../../../migrations/sqlite/0001_init.sql")
    };
    let v1 = Migrator::with_migrations(vec![Migration::new(
        1,
        "init".into(),
        MigrationType::Simple,
        init.into_sql_str(),
        false,
    )]);
    let insert =
        "INSERT INTO operators (did, status, updated_at) VALUES ('did:plc:old', 'takendown', 1)";
    if pg {
        let pool = sqlx::PgPool::connect(&old.location).await.expect("connect");
        v1.run(&pool).await.expect("version 1");
        sqlx::query(insert).execute(&pool).await.expect("row");
        pool.close().await;
    } else {
        let opts = SqliteConnectOptions::new()
            .filename(&old.location)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.expect("connect");
        v1.run(&pool).await.expect("version 1");
        sqlx::query(insert).execute(&pool).await.expect("row");
        pool.close().await;
    }
    let store = Store::open(&old.location).await.expect("open upgrades");
    assert_eq!(
        store.operator_status("did:plc:old").await.expect("status"),
        Some(OperatorStatus::Takendown),
        "rows survive"
    );
    assert_eq!(store.change_token().await.expect("token"), ChangeToken(0));
    store
        .apply(&batch(vec![upsert_endorsement(&endorsement(
            &did("a"),
            "3kaaa",
            &did("b"),
        ))]))
        .await
        .expect("apply");
    assert_eq!(store.change_token().await.expect("token"), ChangeToken(1));
    store.close().await;
    old.cleanup().await;
}

async fn apply_and_read_back(ctx: Ctx) {
    let store = &ctx.store;
    let (a, b) = (did("alice"), did("bob"));
    let mut s = service(&a, "sms", "bafy-s1");
    s.capabilities = vec!["sms.send".into(), "sms.receive".into()];
    s.regions = vec!["US".into(), "DE".into()];
    s.tags = vec!["texting".into()];
    s.prices = vec![
        price("per_call", "USD", "0.0075"),
        price("subscription", "EUR", "10"),
    ];
    let mut e = endorsement(&b, "3kabc", &a);
    e.service_uri = Some(s.uri.clone());
    e.service_cid = Some(s.cid.clone());
    e.capabilities = vec!["sms.send".into()];
    let rejection = RejectionRow {
        uri: uri(&b, SVC, "bad"),
        cid: Some("bafy-bad".into()),
        collection: SVC.into(),
        reason: "invalid_record".into(),
        detail: Some("missing name".into()),
    };
    let b1 = Batch {
        cursors: vec![("wss://relay.test".into(), 42)],
        changes: vec![
            Change::Account {
                did: a.clone(),
                status: OperatorStatus::Active,
            },
            Change::Identity {
                did: a.clone(),
                handle: Some("Alice.Test".into()),
                verified: true,
            },
            profile(&a, "Alice Ops"),
            upsert_service(&s),
            upsert_endorsement(&e),
            Change::SetRepo(RepoRow {
                did: a.clone(),
                rev: Some("3kaaa".into()),
                data_cid: Some("bafy-root".into()),
                status: RepoStatus::Synced,
            }),
            Change::Reject(rejection.clone()),
        ],
    };
    store.apply(&b1).await.expect("apply");

    assert_eq!(
        store.cursor("wss://relay.test").await.expect("cursor"),
        Some(42)
    );
    assert_eq!(store.cursor("wss://other").await.expect("cursor"), None);
    let mut want = s.clone();
    want.capabilities.sort();
    want.regions.sort();
    assert_eq!(
        store.service(&s.uri).await.expect("service"),
        Some(want.clone())
    );
    assert_eq!(
        store.services_of(&a).await.expect("services_of"),
        vec![want]
    );
    let rec = store
        .record(&s.uri)
        .await
        .expect("record")
        .expect("present");
    assert_eq!(rec, record(&a, SVC, "sms", "bafy-s1"));
    assert_eq!(
        store.list_records(&a, SVC).await.expect("list"),
        vec![(s.uri.clone(), "bafy-s1".to_owned())]
    );
    let op = store
        .operator(&a)
        .await
        .expect("operator")
        .expect("present");
    assert_eq!(op.handle.as_deref(), Some("alice.test"));
    assert!(op.handle_verified);
    assert_eq!(op.status, OperatorStatus::Active);
    assert_eq!(op.display_name.as_deref(), Some("Alice Ops"));
    assert_eq!(op.profile_uri, Some(uri(&a, OPR, "self")));
    assert_eq!(
        store
            .operator_by_handle("ALICE.test")
            .await
            .expect("by handle"),
        Some(op)
    );
    assert_eq!(
        store
            .operator_by_handle("nobody.test")
            .await
            .expect("by handle"),
        None
    );
    assert_eq!(
        store.repo(&a).await.expect("repo"),
        Some(RepoRow {
            did: a.clone(),
            rev: Some("3kaaa".into()),
            data_cid: Some("bafy-root".into()),
            status: RepoStatus::Synced
        })
    );
    let by_b = store
        .endorsements_by_author(&b, None, 10)
        .await
        .expect("by author");
    assert_eq!(by_b.items, vec![e.clone()]);
    assert_eq!(by_b.cursor, None);
    assert_eq!(
        store
            .endorsements_of_subject(&a, None, 10)
            .await
            .expect("of")
            .items,
        vec![e.clone()]
    );
    assert_eq!(
        store.endorsement_counts(&a).await.expect("counts"),
        EndorsementCounts {
            given: 0,
            received: 1
        }
    );
    assert_eq!(
        store.endorsement_counts(&b).await.expect("counts"),
        EndorsementCounts {
            given: 1,
            received: 0
        }
    );
    assert_eq!(store.all_endorsements().await.expect("all"), vec![e]);
    assert_eq!(
        store.capabilities().await.expect("caps"),
        vec![("sms.receive".to_owned(), 1), ("sms.send".to_owned(), 1)]
    );
    assert_eq!(
        store.service_cids().await.expect("cids"),
        vec![(s.uri.clone(), s.cid.clone())]
    );
    assert_eq!(
        store.service_capabilities().await.expect("service caps"),
        vec![
            (s.uri.clone(), "sms.receive".to_owned()),
            (s.uri.clone(), "sms.send".to_owned())
        ]
    );
    let rej = store.rejections(10).await.expect("rejections");
    assert_eq!(rej.len(), 1);
    assert_eq!(rej[0].row, rejection);
    assert_eq!(
        store.rejection_counts().await.expect("counts"),
        vec![("invalid_record".to_owned(), 1)]
    );
    let stats = store.stats().await.expect("stats");
    assert_eq!(
        stats,
        Stats {
            // Alice, and the endorsement's author: every repo owner with records is known.
            operators: 2,
            inactive_operators: 0,
            repos: 1,
            records: 3,
            services: 1,
            endorsements: 1,
            rejections: 1,
            backfill_pending: 0
        }
    );
    assert_eq!(
        store.operator_status(&a).await.expect("status"),
        Some(OperatorStatus::Active)
    );
    // Known from its endorsement record, with no account event: active.
    assert_eq!(
        store.operator_status(&b).await.expect("status"),
        Some(OperatorStatus::Active)
    );
    assert_eq!(
        store
            .operator_status(&did("never-seen"))
            .await
            .expect("status"),
        None
    );
}

async fn upsert_replaces(ctx: Ctx) {
    let store = &ctx.store;
    let a = did("a");
    let mut s = service(&a, "svc", "c1");
    s.capabilities = vec!["old.cap".into(), "shared.cap".into()];
    s.regions = vec!["FR".into()];
    store
        .apply(&batch(vec![upsert_service(&s)]))
        .await
        .expect("apply");
    let mut s2 = service(&a, "svc", "c2");
    s2.name = "Renamed".into();
    s2.capabilities = vec!["shared.cap".into(), "new.cap".into()];
    s2.regions = vec![];
    s2.prices = vec![];
    s2.tags = vec![];
    s2.latency_p95_ms = None;
    store
        .apply(&batch(vec![upsert_service(&s2)]))
        .await
        .expect("apply");
    let mut want = s2.clone();
    want.capabilities.sort();
    assert_eq!(store.service(&s.uri).await.expect("service"), Some(want));
    assert_eq!(
        store.record(&s.uri).await.expect("record").map(|r| r.cid),
        Some("c2".into())
    );
    let old = ServiceQuery {
        capabilities: vec!["old.cap".into()],
        ..Default::default()
    };
    assert!(
        store
            .search_services(&old)
            .await
            .expect("search")
            .is_empty()
    );
    let region = ServiceQuery {
        region: Some("FR".into()),
        ..Default::default()
    };
    assert!(
        store
            .search_services(&region)
            .await
            .expect("search")
            .is_empty()
    );
    let new = ServiceQuery {
        capabilities: vec!["new.cap".into()],
        ..Default::default()
    };
    assert_eq!(store.search_services(&new).await.expect("search").len(), 1);
    assert_eq!(store.stats().await.expect("stats").services, 1);

    let e = endorsement(&did("b"), "t1", &a);
    let mut e2 = e.clone();
    e2.subject = did("c");
    e2.capabilities = vec!["x.y".into()];
    e2.cid = "bafy-e2".into();
    store
        .apply(&batch(vec![upsert_endorsement(&e)]))
        .await
        .expect("apply");
    store
        .apply(&batch(vec![upsert_endorsement(&e2)]))
        .await
        .expect("apply");
    assert!(
        store
            .endorsements_of_subject(&a, None, 10)
            .await
            .expect("of")
            .items
            .is_empty()
    );
    assert_eq!(
        store
            .endorsements_of_subject(&did("c"), None, 10)
            .await
            .expect("of")
            .items,
        vec![e2]
    );
}

async fn unindexed_upsert_removes_index_row(ctx: Ctx) {
    let store = &ctx.store;
    let a = did("a");
    let s = service(&a, "svc", "c1");
    let e = endorsement(&a, "t1", &did("b"));
    store
        .apply(&batch(vec![
            upsert_service(&s),
            upsert_endorsement(&e),
            profile(&a, "A"),
        ]))
        .await
        .expect("apply");
    // New versions that failed validation: raw bytes kept, index rows gone.
    store
        .apply(&batch(vec![
            Change::UpsertRecord(record(&a, SVC, "svc", "c2"), None),
            Change::UpsertRecord(record(&a, END, "t1", "c3"), None),
            Change::UpsertRecord(record(&a, OPR, "self", "c4"), None),
        ]))
        .await
        .expect("apply");
    assert_eq!(store.service(&s.uri).await.expect("service"), None);
    assert!(store.all_endorsements().await.expect("all").is_empty());
    let op = store.operator(&a).await.expect("op").expect("present");
    assert_eq!((op.display_name, op.profile_uri), (None, None));
    assert_eq!(
        store.record(&s.uri).await.expect("record").map(|r| r.cid),
        Some("c2".into())
    );
    assert_eq!(store.stats().await.expect("stats").records, 3);
}

async fn delete_record_and_repo(ctx: Ctx) {
    let store = &ctx.store;
    let a = did("a");
    let s1 = service(&a, "one", "c1");
    let s2 = service(&a, "two", "c2");
    let e = endorsement(&a, "t1", &did("b"));
    store
        .apply(&batch(vec![
            upsert_service(&s1),
            upsert_service(&s2),
            upsert_endorsement(&e),
            profile(&a, "A"),
        ]))
        .await
        .expect("apply");
    store
        .apply(&batch(vec![
            Change::DeleteRecord {
                uri: s1.uri.clone(),
            },
            Change::DeleteRecord { uri: e.uri.clone() },
            Change::DeleteRecord {
                uri: uri(&a, OPR, "self"),
            },
            Change::DeleteRecord {
                uri: uri(&a, SVC, "never-existed"),
            },
        ]))
        .await
        .expect("apply");
    assert_eq!(store.service(&s1.uri).await.expect("svc"), None);
    assert_eq!(store.record(&s1.uri).await.expect("rec"), None);
    assert!(store.service(&s2.uri).await.expect("svc").is_some());
    assert!(store.all_endorsements().await.expect("all").is_empty());
    let op = store.operator(&a).await.expect("op").expect("row stays");
    assert_eq!(op.display_name, None);
    assert_eq!(store.list_records(&a, SVC).await.expect("list").len(), 1);
    let caps = ServiceQuery {
        capabilities: vec!["sms.send".into()],
        ..Default::default()
    };
    assert_eq!(store.search_services(&caps).await.expect("search").len(), 1);

    store
        .apply(&batch(vec![Change::DeleteRepoRecords { did: a.clone() }]))
        .await
        .expect("apply");
    assert!(store.services_of(&a).await.expect("svcs").is_empty());
    assert!(store.list_records(&a, SVC).await.expect("list").is_empty());
    assert_eq!(store.stats().await.expect("stats").records, 0);
    assert!(store.capabilities().await.expect("caps").is_empty());
}

/// Two operators endorsing each other, each with a service.
async fn two_operators(store: &Store) -> (String, String) {
    let (a, b) = (did("a"), did("b"));
    let mut e_ab = endorsement(&a, "t1", &b);
    e_ab.capabilities = vec!["sms.send".into()];
    store
        .apply(&batch(vec![
            Change::Identity {
                did: a.clone(),
                handle: Some("a.test".into()),
                verified: true,
            },
            Change::Identity {
                did: b.clone(),
                handle: Some("b.test".into()),
                verified: true,
            },
            profile(&a, "A"),
            profile(&b, "B"),
            upsert_service(&service(&a, "a-svc", "ca")),
            upsert_service(&service(&b, "b-svc", "cb")),
            upsert_endorsement(&e_ab),
            upsert_endorsement(&endorsement(&b, "t2", &a)),
            upsert_endorsement(&endorsement(&b, "t3", &did("c"))),
        ]))
        .await
        .expect("apply");
    (a, b)
}

async fn takedown_hides_and_reactivation_restores(ctx: Ctx) {
    let store = &ctx.store;
    let (a, b) = two_operators(store).await;
    let dids = [a.clone(), b.clone(), did("c")];
    let before = snapshot(store, &dids).await;
    assert_eq!(before.stats.services, 2);
    assert_eq!(before.all_endorsements.len(), 3);
    for status in [
        OperatorStatus::Takendown,
        OperatorStatus::Suspended,
        OperatorStatus::Deactivated,
        OperatorStatus::Desynchronized,
        OperatorStatus::Throttled,
    ] {
        store.apply(&account(&a, status)).await.expect("status");
        let hidden = snapshot(store, &dids).await;
        assert_eq!(hidden.operators[0], None, "{status:?}");
        assert!(hidden.services[0].is_empty());
        assert!(hidden.by_author[0].items.is_empty());
        assert!(hidden.of_subject[0].items.is_empty());
        assert_eq!(hidden.counts[0], EndorsementCounts::default());
        // b's endorsement of a is hidden too, b's other one stays.
        assert_eq!(hidden.by_author[1].items.len(), 1);
        assert_eq!(
            hidden.counts[1],
            EndorsementCounts {
                given: 1,
                received: 0
            }
        );
        assert!(hidden.search.iter().all(|h| h.did != a));
        assert_eq!(hidden.search.len(), 1);
        assert!(hidden.candidates.candidates.iter().all(|h| h.did != a));
        assert_eq!(hidden.all_endorsements.len(), 1);
        assert_eq!(hidden.service_cids.len(), 1);
        assert_eq!(
            store.inactive_operators().await.expect("inactive"),
            [a.as_str()]
        );
        let offered = store.service_capabilities().await.expect("service caps");
        assert!(!offered.is_empty() && offered.iter().all(|(u, _)| !u.contains(a.as_str())));
        assert_eq!(hidden.capabilities, vec![("sms.send".to_owned(), 1)]);
        assert_eq!(hidden.stats.services, 1);
        assert_eq!(hidden.stats.inactive_operators, 1);
        assert_eq!(
            store.service(&uri(&a, SVC, "a-svc")).await.expect("svc"),
            None
        );
        assert_eq!(
            store.operator_by_handle("a.test").await.expect("handle"),
            None
        );
        let q = ServiceQuery {
            q: Some("a-svc".into()),
            ..Default::default()
        };
        assert!(store.search_services(&q).await.expect("search").is_empty());
        // Rows stay: the sync-state view still has them.
        assert_eq!(
            store.operator_status(&a).await.expect("status"),
            Some(status)
        );
        assert_eq!(store.list_records(&a, SVC).await.expect("list").len(), 1);

        store
            .apply(&account(&a, OperatorStatus::Active))
            .await
            .expect("reactivate");
        assert_eq!(snapshot(store, &dids).await, before, "{status:?}");
    }
}

async fn deleted_account_removes_records(ctx: Ctx) {
    let store = &ctx.store;
    let (a, b) = two_operators(store).await;
    store
        .apply(&batch(vec![
            Change::SetRepo(RepoRow {
                did: a.clone(),
                rev: Some("r1".into()),
                data_cid: None,
                status: RepoStatus::Synced,
            }),
            Change::BackfillDone { did: a.clone() },
        ]))
        .await
        .expect("apply");
    store
        .apply(&account(&a, OperatorStatus::Deleted))
        .await
        .expect("delete");
    assert!(store.list_records(&a, SVC).await.expect("list").is_empty());
    assert!(store.list_records(&a, END).await.expect("list").is_empty());
    assert_eq!(store.repo(&a).await.expect("repo"), None);
    assert_eq!(
        store.operator_status(&a).await.expect("status"),
        Some(OperatorStatus::Deleted)
    );
    // Coming back does not resurrect anything: the records are gone.
    store
        .apply(&account(&a, OperatorStatus::Active))
        .await
        .expect("reactivate");
    assert!(store.services_of(&a).await.expect("svcs").is_empty());
    assert!(
        store
            .endorsements_by_author(&a, None, 10)
            .await
            .expect("by")
            .items
            .is_empty()
    );
    // b's endorsement of a reappears (b's record), a's of b does not.
    assert_eq!(
        store
            .endorsements_of_subject(&a, None, 10)
            .await
            .expect("of")
            .items
            .len(),
        1
    );
    assert!(
        store
            .endorsements_of_subject(&b, None, 10)
            .await
            .expect("of")
            .items
            .is_empty()
    );
    assert_eq!(
        store
            .operator(&a)
            .await
            .expect("op")
            .and_then(|o| o.display_name),
        None
    );
}

async fn replaying_a_batch_changes_nothing(ctx: Ctx) {
    let store = &ctx.store;
    let (a, b) = (did("a"), did("b"));
    let mut e = endorsement(&b, "t1", &a);
    e.capabilities = vec!["z.z".into(), "a.a".into()];
    let full = Batch {
        cursors: vec![("src".into(), 7)],
        changes: vec![
            Change::Identity {
                did: a.clone(),
                handle: Some("a.test".into()),
                verified: true,
            },
            profile(&a, "A"),
            upsert_service(&service(&a, "s1", "c1")),
            upsert_endorsement(&e),
            Change::DeleteRecord {
                uri: uri(&a, SVC, "gone"),
            },
            upsert_service(&service(&a, "s2", "c2")),
            Change::Reject(RejectionRow {
                uri: uri(&a, SVC, "bad"),
                cid: None,
                collection: SVC.into(),
                reason: "schema".into(),
                detail: None,
            }),
            Change::SetRepo(RepoRow {
                did: a.clone(),
                rev: Some("r".into()),
                data_cid: Some("d".into()),
                status: RepoStatus::Synced,
            }),
            Change::BackfillDone { did: a.clone() },
        ],
    };
    store.apply(&full).await.expect("first");
    let dids = [a.clone(), b.clone()];
    let first = snapshot(store, &dids).await;
    let first_rej = store.rejections(100).await.expect("rej");
    let first_records = (
        store.list_records(&a, SVC).await.expect("l"),
        store.record(&e.uri).await.expect("r"),
    );
    store.apply(&full).await.expect("second");
    assert_eq!(snapshot(store, &dids).await, first);
    assert_eq!(store.rejections(100).await.expect("rej"), first_rej);
    assert_eq!(
        (
            store.list_records(&a, SVC).await.expect("l"),
            store.record(&e.uri).await.expect("r")
        ),
        first_records
    );
    assert_eq!(store.cursor("src").await.expect("cursor"), Some(7));
    assert_eq!(
        store.repo(&a).await.expect("repo").map(|r| r.rev),
        Some(Some("r".into()))
    );
}

async fn failing_change_rolls_back_batch(ctx: Ctx) {
    let store = &ctx.store;
    let a = did("a");
    store
        .apply(&Batch {
            cursors: vec![("src".into(), 1)],
            changes: vec![upsert_service(&service(&a, "keep", "c0"))],
        })
        .await
        .expect("seed");
    let before = snapshot(store, std::slice::from_ref(&a)).await;

    // A malformed amount, detected after earlier changes were written in the transaction.
    let mut bad = service(&a, "bad", "c2");
    bad.prices = vec![price("per_call", "USD", "1.2.3")];
    let failing = Batch {
        cursors: vec![("src".into(), 2)],
        changes: vec![
            upsert_service(&service(&a, "new", "c1")),
            Change::DeleteRecord {
                uri: uri(&a, SVC, "keep"),
            },
            Change::Account {
                did: a.clone(),
                status: OperatorStatus::Takendown,
            },
            upsert_service(&bad),
        ],
    };
    assert!(matches!(
        store.apply(&failing).await,
        Err(StoreError::InvalidAmount(_))
    ));
    assert_eq!(store.cursor("src").await.expect("cursor"), Some(1));
    assert_eq!(snapshot(store, std::slice::from_ref(&a)).await, before);
    assert_eq!(store.record(&uri(&a, SVC, "new")).await.expect("rec"), None);

    // A constraint violation inside the database: same (did, collection, rkey) under another URI.
    let mut clash = record(&a, SVC, "keep", "c9");
    clash.uri = "at://someone-else/clash".into();
    let failing = Batch {
        cursors: vec![("src".into(), 3)],
        changes: vec![
            upsert_service(&service(&a, "new", "c1")),
            Change::Reject(RejectionRow {
                uri: "at://x/y/z".into(),
                cid: None,
                collection: SVC.into(),
                reason: "r".into(),
                detail: None,
            }),
            Change::UpsertRecord(clash, None),
        ],
    };
    let err = store.apply(&failing).await.expect_err("must fail");
    assert!(matches!(err, StoreError::Query(_)), "{err:?}");
    assert!(
        !err.to_string().to_lowercase().contains("insert"),
        "SQL leaked: {err}"
    );
    assert_eq!(store.cursor("src").await.expect("cursor"), Some(1));
    assert_eq!(snapshot(store, std::slice::from_ref(&a)).await, before);
    assert!(store.rejections(10).await.expect("rej").is_empty());
}

async fn duplicate_uris_in_one_batch_last_wins(ctx: Ctx) {
    let store = &ctx.store;
    let a = did("a");
    let mut v1 = service(&a, "s", "c1");
    v1.capabilities = vec!["one.cap".into()];
    let mut v2 = service(&a, "s", "c2");
    v2.capabilities = vec!["two.cap".into()];
    let e1 = endorsement(&a, "t", &did("b"));
    let mut e2 = e1.clone();
    e2.strength = Some(10);
    store
        .apply(&batch(vec![
            upsert_service(&v1),
            upsert_endorsement(&e1),
            upsert_service(&v2),
            upsert_endorsement(&e2),
            profile(&a, "First"),
            profile(&a, "Second"),
        ]))
        .await
        .expect("apply");
    assert_eq!(store.service(&v1.uri).await.expect("svc"), Some(v2));
    assert_eq!(store.all_endorsements().await.expect("all"), vec![e2]);
    assert_eq!(
        store
            .operator(&a)
            .await
            .expect("op")
            .and_then(|o| o.display_name),
        Some("Second".into())
    );
    // Upsert, delete, upsert again in one batch: order is respected.
    let v3 = service(&a, "s", "c3");
    store
        .apply(&batch(vec![
            upsert_service(&v3),
            Change::DeleteRecord {
                uri: v3.uri.clone(),
            },
        ]))
        .await
        .expect("apply");
    assert_eq!(store.service(&v3.uri).await.expect("svc"), None);
    store
        .apply(&batch(vec![
            Change::DeleteRecord {
                uri: v3.uri.clone(),
            },
            upsert_service(&v3),
        ]))
        .await
        .expect("apply");
    assert_eq!(
        store.service(&v3.uri).await.expect("svc").map(|s| s.cid),
        Some("c3".into())
    );
}

/// Tags, capabilities and regions that differ only by U+0000 vs U+FFFD are one value once
/// stored; a record holding both must still index (it once broke the primary key and failed
/// its batch on every replay, stopping ingestion).
async fn values_equal_once_stored_are_one_row(ctx: Ctx) {
    let store = &ctx.store;
    let a = did("a");
    let mut v = service(&a, "nul", "c1");
    v.tags = vec!["x\u{0}".into(), "x\u{FFFD}".into()];
    v.capabilities = vec!["cap\u{0}".into(), "cap\u{FFFD}".into()];
    let mut e = endorsement(&a, "t", &did("b"));
    e.capabilities = vec!["e\u{0}".into(), "e\u{FFFD}".into()];
    store
        .apply(&batch(vec![upsert_service(&v), upsert_endorsement(&e)]))
        .await
        .expect("a record with both spellings indexes");
    let got = store.service(&v.uri).await.expect("svc").expect("present");
    assert_eq!(got.tags, vec!["x\u{FFFD}".to_owned()]);
    assert_eq!(got.capabilities, vec!["cap\u{FFFD}".to_owned()]);
    let all = store.all_endorsements().await.expect("all");
    assert_eq!(all[0].capabilities, vec!["e\u{FFFD}".to_owned()]);
}

fn uris(hits: &[ServiceHit]) -> BTreeSet<String> {
    hits.iter()
        .map(|h| h.uri.rsplit('/').next().unwrap_or_default().to_owned())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

async fn filters(ctx: Ctx) {
    let store = &ctx.store;
    let a = did("a");
    let mut cheap = service(&a, "cheap", "c1");
    cheap.name = "Cheap SMS Gateway".into();
    cheap.capabilities = vec!["sms.send".into(), "sms.receive".into()];
    cheap.regions = vec!["DE".into(), "FR".into()];
    cheap.prices = vec![price("per_call", "USD", "0.0075")];
    cheap.latency_p95_ms = Some(120);
    cheap.availability_bp = Some(9_900);
    let mut pricey = service(&a, "pricey", "c2");
    pricey.name = "Premium Voice".into();
    pricey.description = Some("Crystal clear calls".into());
    pricey.capabilities = vec!["voice.call".into(), "sms.send".into()];
    pricey.regions = vec!["US".into()];
    pricey.prices = vec![
        price("per_call", "USD", "0.05"),
        price("subscription", "EUR", "0.002"),
    ];
    pricey.tags = vec!["Telephony".into()];
    pricey.latency_p95_ms = Some(800);
    pricey.availability_bp = Some(9_999);
    let mut bare = service(&a, "bare", "c3");
    bare.name = "Bare".into();
    bare.description = None;
    bare.capabilities = vec!["data.lookup".into()];
    bare.regions = vec![];
    bare.prices = vec![PriceRow {
        model: "free".into(),
        currency: None,
        amount: None,
        unit: None,
        period: None,
    }];
    bare.tags = vec![];
    bare.latency_p95_ms = None;
    bare.availability_bp = None;
    store
        .apply(&batch(vec![
            upsert_service(&cheap),
            upsert_service(&pricey),
            upsert_service(&bare),
        ]))
        .await
        .expect("apply");

    let run = |q: ServiceQuery| async move {
        let hits = store.search_services(&q).await.expect("search");
        let cands = store
            .search_candidates(&q, 100, 100)
            .await
            .expect("candidates");
        assert_eq!(
            hits.iter().map(|h| &h.uri).collect::<Vec<_>>(),
            cands.candidates.iter().map(|c| &c.uri).collect::<Vec<_>>()
        );
        uris(&hits)
    };
    let all = ServiceQuery::default;
    assert_eq!(run(all()).await, set(&["bare", "cheap", "pricey"]));
    assert_eq!(
        run(ServiceQuery {
            capabilities: vec!["sms.send".into()],
            ..all()
        })
        .await,
        set(&["cheap", "pricey"])
    );
    assert_eq!(
        run(ServiceQuery {
            capabilities: vec!["sms.send".into(), "voice.call".into()],
            ..all()
        })
        .await,
        set(&["pricey"])
    );
    assert_eq!(
        run(ServiceQuery {
            capabilities: vec!["sms.receive".into(), "voice.call".into()],
            ..all()
        })
        .await,
        set(&[])
    );
    assert_eq!(
        run(ServiceQuery {
            region: Some("FR".into()),
            ..all()
        })
        .await,
        set(&["cheap"])
    );
    assert_eq!(
        run(ServiceQuery {
            region: Some("fr".into()),
            ..all()
        })
        .await,
        set(&[])
    );
    // Price: "0.0075" is 7_500_000 nano-units; the bound is inclusive.
    let usd = |max: i64| ServiceQuery {
        max_price_nanos: Some(max),
        currency: Some("USD".into()),
        ..all()
    };
    assert_eq!(run(usd(7_500_000)).await, set(&["cheap"]));
    assert_eq!(run(usd(7_499_999)).await, set(&[]));
    assert_eq!(run(usd(50_000_000)).await, set(&["cheap", "pricey"]));
    let eur = ServiceQuery {
        max_price_nanos: Some(2_000_000),
        currency: Some("EUR".into()),
        ..all()
    };
    assert_eq!(run(eur.clone()).await, set(&["pricey"]));
    // Currency and model must hold for the same price point.
    let eur_per_call = ServiceQuery {
        pricing_model: Some("per_call".into()),
        ..eur
    };
    assert_eq!(run(eur_per_call).await, set(&[]));
    assert_eq!(
        run(ServiceQuery {
            pricing_model: Some("free".into()),
            ..all()
        })
        .await,
        set(&["bare"])
    );
    assert_eq!(
        run(ServiceQuery {
            max_latency_ms: Some(120),
            ..all()
        })
        .await,
        set(&["cheap"])
    );
    assert_eq!(
        run(ServiceQuery {
            max_latency_ms: Some(10_000),
            ..all()
        })
        .await,
        set(&["cheap", "pricey"])
    );
    assert_eq!(
        run(ServiceQuery {
            min_availability_bp: Some(9_950),
            ..all()
        })
        .await,
        set(&["pricey"])
    );
    assert_eq!(
        run(ServiceQuery {
            min_availability_bp: Some(0),
            ..all()
        })
        .await,
        set(&["cheap", "pricey"])
    );
    // Text: case-insensitive words over name, description, tags, capabilities; all must match.
    let q = |s: &str| ServiceQuery {
        q: Some(s.into()),
        ..all()
    };
    assert_eq!(run(q("sms")).await, set(&["cheap", "pricey"]));
    assert_eq!(run(q("GATEWAY")).await, set(&["cheap"]));
    assert_eq!(run(q("crystal")).await, set(&["pricey"]));
    assert_eq!(run(q("telephony")).await, set(&["pricey"]));
    assert_eq!(run(q("voice.call premium")).await, set(&["pricey"]));
    assert_eq!(run(q("gateway premium")).await, set(&[]));
    assert_eq!(run(q("   ")).await, set(&["bare", "cheap", "pricey"]));
    // Combined.
    let combo = ServiceQuery {
        q: Some("sms".into()),
        capabilities: vec!["sms.send".into()],
        region: Some("US".into()),
        max_price_nanos: Some(60_000_000),
        currency: Some("USD".into()),
        pricing_model: Some("per_call".into()),
        max_latency_ms: Some(1000),
        min_availability_bp: Some(9_000),
        ..all()
    };
    assert_eq!(run(combo).await, set(&["pricey"]));
    // Limits and caps.
    assert_eq!(
        store
            .search_services(&ServiceQuery { limit: 2, ..all() })
            .await
            .expect("s")
            .len(),
        2
    );
    // Caps: one operator's services are kept or left out whole by the total cap.
    let capped = store.search_candidates(&all(), 2, 100).await.expect("c");
    assert!(capped.candidates.is_empty(), "{capped:?}");
    assert!(capped.truncated);
    assert!(
        !store
            .search_candidates(&all(), 3, 100)
            .await
            .expect("c")
            .truncated
    );
}

async fn search_pagination_is_stable(ctx: Ctx) {
    let store = &ctx.store;
    let a = did("a");
    let originals: Vec<ServiceRow> = (0..30)
        .map(|i| service(&a, &format!("s{i:03}"), "c"))
        .collect();
    store
        .apply(&batch(originals.iter().map(upsert_service).collect()))
        .await
        .expect("apply");
    let mut seen: Vec<String> = Vec::new();
    let mut after = None;
    let mut round = 0;
    loop {
        let page = store
            .search_services(&ServiceQuery {
                limit: 7,
                after: after.clone(),
                ..Default::default()
            })
            .await
            .expect("page");
        if page.is_empty() {
            break;
        }
        seen.extend(page.iter().map(|h| h.uri.clone()));
        after = page.last().map(|h| h.uri.clone());
        // Concurrent writes between pages: new rows before and after the cursor, an update.
        round += 1;
        store
            .apply(&batch(vec![
                upsert_service(&service(&a, &format!("s{:03}a", round), "new")),
                upsert_service(&service(&a, "s000", &format!("c{round}"))),
                upsert_service(&service(&a, &format!("a{round}"), "new")),
            ]))
            .await
            .expect("concurrent");
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "duplicates across pages");
    for s in &originals {
        assert!(unique.contains(&s.uri), "missed {}", s.uri);
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen, "pages out of order");
}

async fn endorsement_pagination_is_stable(ctx: Ctx) {
    let store = &ctx.store;
    let subject = did("s");
    let originals: Vec<EndorsementRow> = (0..25)
        .map(|i| {
            endorsement(
                &did(&format!("author{}", i % 4)),
                &format!("t{i:03}"),
                &subject,
            )
        })
        .collect();
    for chunk in originals.chunks(5) {
        store
            .apply(&batch(chunk.iter().map(upsert_endorsement).collect()))
            .await
            .expect("apply");
    }
    let mut seen: Vec<String> = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store
            .endorsements_of_subject(&subject, cursor, 10)
            .await
            .expect("page");
        seen.extend(page.items.iter().map(|e| e.uri.clone()));
        pages += 1;
        // New endorsements and an update of one already listed, between pages.
        let mut updated = originals[24].clone();
        updated.strength = Some(pages);
        store
            .apply(&batch(vec![
                upsert_endorsement(&endorsement(&did("late"), &format!("n{pages}"), &subject)),
                upsert_endorsement(&updated),
            ]))
            .await
            .expect("concurrent");
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = originals.iter().rev().map(|e| e.uri.clone()).collect();
    assert_eq!(seen, want, "newest first, each exactly once");

    let by_author = store
        .endorsements_by_author(&did("author1"), None, 2)
        .await
        .expect("by");
    assert_eq!(by_author.items.len(), 2);
    let rest = store
        .endorsements_by_author(&did("author1"), by_author.cursor, 100)
        .await
        .expect("rest");
    assert_eq!(
        rest.items.len() + 2,
        originals
            .iter()
            .filter(|e| e.author == did("author1"))
            .count()
    );
    assert_eq!(rest.cursor, None);
}

async fn hostile_query_strings_are_parameters(ctx: Ctx) {
    let store = &ctx.store;
    let a = did("a");
    let mut odd = service(&a, "odd", "c1");
    odd.name = "100% _real_ 'quoted' \"svc\" \\ back".into();
    odd.description = Some("Ünïcødé ΣΊΣΥΦΟΣ 日本語 and a NUL \0 here".into());
    let plain = service(&a, "plain", "c2");
    store
        .apply(&batch(vec![upsert_service(&odd), upsert_service(&plain)]))
        .await
        .expect("apply");
    let q = |s: &str| ServiceQuery {
        q: Some(s.to_owned()),
        ..Default::default()
    };
    for (query, want) in [
        ("%", set(&["odd"])),
        ("_", set(&["odd"])),
        ("'", set(&["odd"])),
        ("\"", set(&["odd"])),
        ("\\", set(&["odd"])),
        ("ünïcødé", set(&["odd"])),
        ("日本語", set(&["odd"])),
        ("x' OR '1'='1", set(&[])),
        ("'); DROP TABLE services; --", set(&[])),
        ("%%", set(&[])),
        // NUL is stored and searched as U+FFFD on both backends, so it finds the NUL it stored.
        ("\0", set(&["odd"])),
    ] {
        let hits = store.search_services(&q(query)).await.expect("hostile q");
        assert_eq!(uris(&hits), want, "{query:?}");
    }
    let huge = "x%_'\"\\".repeat(2048);
    assert!(
        store
            .search_services(&q(&huge))
            .await
            .expect("10 KB q")
            .is_empty()
    );
    let many_words = (0..500)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        store
            .search_services(&q(&many_words))
            .await
            .expect("many words")
            .is_empty()
    );
    let hostile_filters = ServiceQuery {
        capabilities: vec!["' OR 1=1 --".into(), "%".into()],
        region: Some("_".into()),
        currency: Some("'".into()),
        pricing_model: Some("%".into()),
        after: Some("' OR ''='".into()),
        ..Default::default()
    };
    assert!(
        store
            .search_services(&hostile_filters)
            .await
            .expect("hostile filters")
            .is_empty()
    );
    assert_eq!(
        store
            .operator_by_handle("' OR 1=1 --")
            .await
            .expect("handle"),
        None
    );
    assert_eq!(
        store
            .service("'; DELETE FROM services; --")
            .await
            .expect("svc"),
        None
    );
    assert_eq!(store.stats().await.expect("stats").services, 2);
    let back = store
        .service(&odd.uri)
        .await
        .expect("svc")
        .expect("present");
    assert_eq!(back.name, odd.name);
    assert_eq!(
        back.description.as_deref(),
        Some("Ünïcødé ΣΊΣΥΦΟΣ 日本語 and a NUL \u{FFFD} here")
    );
}

async fn backfill_queue(ctx: Ctx) {
    let store = &ctx.store;
    let dids: Vec<String> = ["c", "a", "b", "a"].iter().map(|n| did(n)).collect();
    store.enqueue_backfill(&dids).await.expect("enqueue");
    assert_eq!(
        store.backfill_pending(10).await.expect("pending"),
        vec![did("a"), did("b"), did("c")]
    );
    store
        .apply(&batch(vec![Change::BackfillDone { did: did("b") }]))
        .await
        .expect("done");
    assert_eq!(
        store.backfill_pending(10).await.expect("pending"),
        vec![did("a"), did("c")]
    );
    // Re-enqueueing keeps finished ones finished.
    store.enqueue_backfill(&dids).await.expect("enqueue");
    assert_eq!(
        store.backfill_pending(1).await.expect("pending"),
        vec![did("a")]
    );
    assert_eq!(store.stats().await.expect("stats").backfill_pending, 2);
    assert!(store.backfill_done(&did("b")).await.expect("done?"));
    assert!(!store.backfill_done(&did("a")).await.expect("done?"));
    assert!(!store.backfill_done(&did("unknown")).await.expect("done?"));

    assert!(store.tracked_dids().await.expect("tracked").is_empty());
    let repo = |n: &str| {
        Change::SetRepo(RepoRow {
            did: did(n),
            rev: None,
            data_cid: None,
            status: RepoStatus::Resyncing,
        })
    };
    store
        .apply(&batch(vec![repo("z"), repo("b"), repo("z")]))
        .await
        .expect("repos");
    assert_eq!(
        store.tracked_dids().await.expect("tracked"),
        vec![did("b"), did("z")]
    );
}

async fn large_batch(ctx: Ctx) {
    let store = &ctx.store;
    // Bigger than one multi-row statement for every table, to cross chunk boundaries.
    let mut changes = Vec::new();
    for i in 0..1_200 {
        let d = did(&format!("op{}", i % 50));
        let mut s = service(&d, &format!("s{i}"), "c");
        s.capabilities = vec![format!("cap.n{}", i % 7), "common.cap".into()];
        changes.push(upsert_service(&s));
        let mut e = endorsement(&d, &format!("t{i}"), &did(&format!("op{}", (i + 1) % 50)));
        e.capabilities = vec!["common.cap".into()];
        changes.push(upsert_endorsement(&e));
    }
    store
        .apply(&Batch {
            cursors: vec![("src".into(), 1_200)],
            changes,
        })
        .await
        .expect("apply");
    let stats = store.stats().await.expect("stats");
    assert_eq!(
        (stats.services, stats.endorsements, stats.records),
        (1_200, 1_200, 2_400)
    );
    assert_eq!(
        store.capabilities().await.expect("caps")[0],
        ("common.cap".to_owned(), 1_200)
    );
    let all = store
        .search_candidates(&ServiceQuery::default(), 5_000, 5_000)
        .await
        .expect("c");
    assert_eq!(all.candidates.len(), 1_200);
    assert!(!all.truncated);
    assert_eq!(store.all_endorsements().await.expect("all").len(), 1_200);
}

#[tokio::test]
async fn opens_in_memory_sqlite_and_sqlite_urls() {
    let mem = Store::open("sqlite::memory:").await.expect("memory");
    assert_eq!(mem.backend_name(), "sqlite");
    mem.apply(&batch(vec![upsert_service(&service(&did("m"), "s", "c"))]))
        .await
        .expect("apply");
    // One connection only, so the data is visible to the next call.
    assert_eq!(mem.stats().await.expect("stats").services, 1);
    mem.close().await;

    let path = std::env::temp_dir().join(format!("gh_store_url_{}.db", std::process::id()));
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url)
        .await
        .expect("sqlite url creates the file");
    assert!(path.exists());
    store.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

#[tokio::test]
async fn open_errors_are_typed() {
    let bad = Store::open("postgres://postgres@127.0.0.1:1/nothing").await;
    assert!(matches!(bad, Err(StoreError::Connect(_))), "{bad:?}");
    let bad = Store::open("postgres://[not a url").await;
    assert!(
        matches!(bad, Err(StoreError::InvalidLocation(_))),
        "{bad:?}"
    );
    let bad = Store::open("/nonexistent-dir/sub/x.db").await;
    assert!(matches!(bad, Err(StoreError::Connect(_))), "{bad:?}");
}
