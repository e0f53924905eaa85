//! Row builders and a whole-store snapshot for comparisons.

use guildhall_store::*;

pub const SVC: &str = "dev.guildhall.service";
pub const END: &str = "dev.guildhall.endorsement";
pub const OPR: &str = "dev.guildhall.operator";

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

pub fn price(model: &str, currency: &str, amount: &str) -> PriceRow {
    PriceRow {
        model: model.to_owned(),
        currency: Some(currency.to_owned()),
        amount: Some(amount.to_owned()),
        unit: Some("call".to_owned()),
        period: None,
    }
}

/// A service with sensible defaults; tweak the returned row.
pub fn service(did: &str, rkey: &str, cid: &str) -> ServiceRow {
    ServiceRow {
        uri: uri(did, SVC, rkey),
        did: did.to_owned(),
        rkey: rkey.to_owned(),
        cid: cid.to_owned(),
        name: format!("Service {rkey}"),
        description: Some(format!("The {rkey} service")),
        version: Some("1.0.0".to_owned()),
        created_at: "2026-01-01T00:00:00Z".to_owned(),
        latency_p95_ms: Some(200),
        availability_bp: Some(9_990),
        success_rate_bp: Some(9_950),
        record_json: format!("{{\"name\":\"Service {rkey}\"}}"),
        capabilities: vec!["sms.send".to_owned()],
        regions: vec!["DE".to_owned()],
        prices: vec![price("per_call", "USD", "0.01")],
        tags: vec!["messaging".to_owned()],
    }
}

pub fn upsert_service(s: &ServiceRow) -> Change {
    Change::UpsertRecord(
        record(&s.did, SVC, &s.rkey, &s.cid),
        Some(IndexRow::Service(s.clone())),
    )
}

pub fn endorsement(author: &str, rkey: &str, subject: &str) -> EndorsementRow {
    EndorsementRow {
        uri: uri(author, END, rkey),
        author: author.to_owned(),
        rkey: rkey.to_owned(),
        cid: format!("bafy-e-{rkey}"),
        subject: subject.to_owned(),
        service_uri: None,
        service_cid: None,
        strength: Some(80),
        comment: Some("solid".to_owned()),
        created_at: "2026-02-01T00:00:00Z".to_owned(),
        expires_at: None,
        capabilities: vec![],
    }
}

pub fn upsert_endorsement(e: &EndorsementRow) -> Change {
    Change::UpsertRecord(
        record(&e.author, END, &e.rkey, &e.cid),
        Some(IndexRow::Endorsement(e.clone())),
    )
}

pub fn profile(did: &str, name: &str) -> Change {
    Change::UpsertRecord(
        record(did, OPR, "self", &format!("bafy-p-{name}")),
        Some(IndexRow::Operator(OperatorProfileRow {
            did: did.to_owned(),
            display_name: name.to_owned(),
            description: Some(format!("{name} runs things")),
            website: Some("https://example.com".to_owned()),
            contact: None,
        })),
    )
}

pub fn batch(changes: Vec<Change>) -> Batch {
    Batch {
        cursors: Vec::new(),
        changes,
    }
}

pub fn account(did: &str, status: OperatorStatus) -> Batch {
    batch(vec![Change::Account {
        did: did.to_owned(),
        status,
    }])
}

/// Everything a read path can show about some operators.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub operators: Vec<Option<OperatorRow>>,
    pub services: Vec<Vec<ServiceRow>>,
    pub by_author: Vec<EndorsementPage>,
    pub of_subject: Vec<EndorsementPage>,
    pub counts: Vec<EndorsementCounts>,
    pub search: Vec<ServiceHit>,
    pub candidates: CandidateSet,
    pub all_endorsements: Vec<EndorsementRow>,
    pub capabilities: Vec<(String, i64)>,
    pub service_cids: Vec<(String, String)>,
    pub stats: Stats,
}

pub async fn snapshot(store: &Store, dids: &[String]) -> Snapshot {
    let mut s = Snapshot {
        operators: vec![],
        services: vec![],
        by_author: vec![],
        of_subject: vec![],
        counts: vec![],
        search: store
            .search_services(&ServiceQuery {
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("search"),
        candidates: store
            .search_candidates(&ServiceQuery::default(), 5000, 5000)
            .await
            .expect("candidates"),
        all_endorsements: store.all_endorsements().await.expect("all endorsements"),
        capabilities: store.capabilities().await.expect("capabilities"),
        service_cids: store.service_cids().await.expect("cids"),
        stats: store.stats().await.expect("stats"),
    };
    for d in dids {
        s.operators.push(store.operator(d).await.expect("operator"));
        s.services
            .push(store.services_of(d).await.expect("services_of"));
        s.by_author.push(
            store
                .endorsements_by_author(d, None, 1000)
                .await
                .expect("by author"),
        );
        s.of_subject.push(
            store
                .endorsements_of_subject(d, None, 1000)
                .await
                .expect("of subject"),
        );
        s.counts
            .push(store.endorsement_counts(d).await.expect("counts"));
    }
    s
}
