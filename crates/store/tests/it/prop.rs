//! Property: search equals a naive in-memory filter over random services and account states.

use std::collections::{BTreeMap, BTreeSet};

use guildhall_store::*;
use proptest::prelude::*;

use crate::data::{account, batch, upsert_service};
use crate::harness::fresh;

const DIDS: [&str; 4] = ["did:plc:p0", "did:plc:p1", "did:plc:p2", "did:plc:p3"];
const CAPS: [&str; 4] = ["a.x", "a.y", "b.x", "c.z"];
const REGIONS: [&str; 3] = ["DE", "US", "JP"];
const CURRENCIES: [&str; 2] = ["USD", "EUR"];
const MODELS: [&str; 2] = ["per_call", "subscription"];
const WORDS: [&str; 6] = ["Fast", "sms", "Voice", "ünï", "50%", "x_y"];

fn pick<T: Clone + std::fmt::Debug + 'static>(xs: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(xs)
}

// Small value sets so bounds often fall exactly on stored values (inclusive edges get tested).
const AMOUNTS: [&str; 5] = ["0", "0.0075", "0.01", "1", "2.5"];
const AMOUNT_BOUNDS: [i64; 6] = [
    0,
    7_499_999,
    7_500_000,
    10_000_000,
    1_000_000_000,
    2_500_000_000,
];
const LATENCIES: [i64; 4] = [0, 100, 250, 999];
const AVAILABILITIES: [i64; 4] = [9_000, 9_500, 9_990, 10_000];

fn amount() -> impl Strategy<Value = String> {
    pick(&AMOUNTS).prop_map(str::to_owned)
}

fn price_row() -> impl Strategy<Value = PriceRow> {
    (pick(&MODELS), pick(&CURRENCIES), amount()).prop_map(|(m, c, a)| PriceRow {
        model: m.to_owned(),
        currency: Some(c.to_owned()),
        amount: Some(a),
        unit: None,
        period: None,
    })
}

fn service_row() -> impl Strategy<Value = ServiceRow> {
    (
        0usize..4,
        0u32..8,
        proptest::collection::vec(pick(&WORDS), 1..3),
        proptest::option::of(proptest::collection::vec(pick(&WORDS), 0..3)),
        proptest::collection::btree_set(pick(&CAPS), 1..4),
        proptest::collection::btree_set(pick(&REGIONS), 0..3),
        proptest::collection::vec(price_row(), 0..3),
        proptest::option::of(pick(&LATENCIES)),
        proptest::option::of(pick(&AVAILABILITIES)),
        proptest::collection::btree_set(pick(&WORDS), 0..2),
    )
        .prop_map(
            |(d, k, name, desc, caps, regions, prices, lat, avail, tags)| {
                let did = DIDS[d].to_owned();
                let rkey = format!("s{k}");
                ServiceRow {
                    uri: format!("at://{did}/dev.guildhall.service/{rkey}"),
                    did,
                    rkey,
                    cid: format!("c{k}"),
                    name: name.join(" "),
                    description: desc.map(|w| w.join(" ")),
                    version: None,
                    created_at: "2026-01-01T00:00:00Z".into(),
                    latency_p95_ms: lat,
                    availability_bp: avail,
                    success_rate_bp: None,
                    record_json: "{}".into(),
                    capabilities: caps.into_iter().map(str::to_owned).collect(),
                    regions: regions.into_iter().map(str::to_owned).collect(),
                    prices,
                    tags: tags.into_iter().map(str::to_owned).collect(),
                }
            },
        )
}

fn query() -> impl Strategy<Value = ServiceQuery> {
    (
        proptest::option::of(proptest::collection::vec(pick(&WORDS), 1..3)),
        proptest::collection::vec(pick(&CAPS), 0..3),
        proptest::option::of(pick(&REGIONS)),
        proptest::option::of(pick(&AMOUNT_BOUNDS)),
        proptest::option::of(pick(&CURRENCIES)),
        proptest::option::of(pick(&MODELS)),
        proptest::option::of(pick(&LATENCIES)),
        proptest::option::of(pick(&AVAILABILITIES)),
        proptest::option::of(0usize..4),
    )
        .prop_map(
            |(q, caps, region, max, cur, model, lat, avail, after)| ServiceQuery {
                // Mixed case: matching is case-insensitive.
                q: q.map(|w| w.join(" ").to_uppercase()),
                capabilities: caps.into_iter().map(str::to_owned).collect(),
                region: region.map(str::to_owned),
                max_price_nanos: max,
                currency: cur.map(str::to_owned),
                pricing_model: model.map(str::to_owned),
                max_latency_ms: lat,
                min_availability_bp: avail,
                limit: 0,
                after: after.map(|d| format!("at://{}/dev.guildhall.service/s2", DIDS[d])),
            },
        )
}

/// The specification of search, written plainly.
fn naive(
    services: &BTreeMap<String, ServiceRow>,
    active: &[bool; 4],
    q: &ServiceQuery,
) -> Vec<String> {
    let words = query_words(q.q.as_deref());
    services
        .values()
        .filter(|s| active[DIDS.iter().position(|d| *d == s.did).unwrap_or(0)])
        .filter(|s| q.after.as_ref().is_none_or(|a| s.uri.as_str() > a.as_str()))
        .filter(|s| q.capabilities.iter().all(|c| s.capabilities.contains(c)))
        .filter(|s| q.region.as_ref().is_none_or(|r| s.regions.contains(r)))
        .filter(|s| {
            if q.max_price_nanos.is_none() && q.currency.is_none() && q.pricing_model.is_none() {
                return true;
            }
            s.prices.iter().any(|p| {
                q.currency
                    .as_ref()
                    .is_none_or(|c| p.currency.as_ref() == Some(c))
                    && q.pricing_model.as_ref().is_none_or(|m| &p.model == m)
                    && q.max_price_nanos.is_none_or(|max| {
                        p.amount
                            .as_deref()
                            .and_then(|a| amount_to_nanos(a).ok())
                            .is_some_and(|n| n <= max)
                    })
            })
        })
        .filter(|s| {
            q.max_latency_ms
                .is_none_or(|m| s.latency_p95_ms.is_some_and(|l| l <= m))
        })
        .filter(|s| {
            q.min_availability_bp
                .is_none_or(|m| s.availability_bp.is_some_and(|a| a >= m))
        })
        .filter(|s| {
            let fields: Vec<String> = std::iter::once(s.name.clone())
                .chain(s.description.clone())
                .chain(s.tags.iter().cloned())
                .chain(s.capabilities.iter().cloned())
                .map(|f| f.to_lowercase())
                .collect();
            words
                .iter()
                .all(|w| fields.iter().any(|f| f.contains(w.as_str())))
        })
        .map(|s| s.uri.clone())
        .collect()
}

fn check(pg: bool, cases: u32) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let db = rt.block_on(fresh(pg));
    let location = db.location.clone();
    let store = rt.block_on(Store::open(&location)).expect("open");
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let result = proptest::test_runner::TestRunner::new(config).run(
        &(
            proptest::collection::vec(service_row(), 0..25),
            proptest::array::uniform4(proptest::bool::weighted(0.8)),
            proptest::collection::vec(query(), 1..6),
        ),
        |(rows, active, queries)| {
            rt.block_on(async {
                // Reset the few DIDs the strategy uses, then load this case.
                let mut changes: Vec<Change> = DIDS
                    .iter()
                    .map(|d| Change::DeleteRepoRecords {
                        did: (*d).to_owned(),
                    })
                    .collect();
                changes.extend(rows.iter().map(upsert_service));
                store.apply(&batch(changes)).await.expect("load");
                for (d, on) in DIDS.iter().zip(active) {
                    let status = if on {
                        OperatorStatus::Active
                    } else {
                        OperatorStatus::Suspended
                    };
                    store.apply(&account(d, status)).await.expect("status");
                }
            });
            // Later duplicates of a URI replace earlier ones, as in the store.
            let model: BTreeMap<String, ServiceRow> =
                rows.into_iter().map(|s| (s.uri.clone(), s)).collect();
            for q in &queries {
                let got = rt
                    .block_on(store.search_candidates(q, 10_000, usize::MAX))
                    .expect("search")
                    .candidates
                    .into_iter()
                    .map(|c| c.uri)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>();
                let want = naive(&model, &active, q);
                prop_assert_eq!(&got, &want, "query {:?}", q);
                let page = rt
                    .block_on(store.search_services(&ServiceQuery {
                        limit: 3,
                        ..q.clone()
                    }))
                    .expect("page");
                let first: Vec<String> = want.iter().take(3).cloned().collect();
                prop_assert_eq!(page.into_iter().map(|h| h.uri).collect::<Vec<_>>(), first);
            }
            Ok(())
        },
    );
    rt.block_on(async {
        store.close().await;
        db.cleanup().await;
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn search_matches_naive_filter_sqlite() {
    check(false, 96);
}

#[test]
fn search_matches_naive_filter_postgres() {
    check(true, 48);
}
