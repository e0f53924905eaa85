//! Typed Guildhall records to the store's index rows: a pure, field-by-field mapping.

use guildhall_lexicon::{EndorsementRecord, OperatorRecord, ServiceRecord};
use guildhall_store::{
    EndorsementRow, IndexRow, OperatorProfileRow, PriceRow, RecordRow, ServiceRow,
};

/// The index row of a service listing.
pub fn service(raw: &RecordRow, s: &ServiceRecord, json: &serde_json::Value) -> IndexRow {
    let sla = s.sla.as_ref();
    IndexRow::Service(ServiceRow {
        uri: raw.uri.clone(),
        did: raw.did.clone(),
        rkey: raw.rkey.clone(),
        cid: raw.cid.clone(),
        name: s.name.clone(),
        description: s.description.clone(),
        version: s.version.clone(),
        created_at: s.created_at.clone(),
        latency_p95_ms: sla.and_then(|x| x.latency_p95_ms),
        availability_bp: sla.and_then(|x| x.availability_bp),
        success_rate_bp: sla.and_then(|x| x.success_rate_bp),
        record_json: json.to_string(),
        capabilities: s.capabilities.clone(),
        regions: s.regions.clone(),
        prices: s
            .pricing
            .iter()
            .map(|p| PriceRow {
                model: p.model.clone(),
                currency: p.currency.clone(),
                amount: p.amount.clone(),
                unit: p.unit.clone(),
                period: p.period.clone(),
            })
            .collect(),
        tags: s.tags.clone(),
    })
}

/// The index row of an endorsement.
pub fn endorsement(raw: &RecordRow, e: &EndorsementRecord) -> IndexRow {
    IndexRow::Endorsement(EndorsementRow {
        uri: raw.uri.clone(),
        author: raw.did.clone(),
        rkey: raw.rkey.clone(),
        cid: raw.cid.clone(),
        subject: e.subject.clone(),
        service_uri: e.service.as_ref().map(|r| r.uri.clone()),
        service_cid: e.service.as_ref().map(|r| r.cid.clone()),
        strength: e.strength,
        comment: e.comment.clone(),
        created_at: e.created_at.clone(),
        expires_at: e.expires_at.clone(),
        capabilities: e.capabilities.clone(),
    })
}

/// The index row of an operator profile.
pub fn operator(raw: &RecordRow, o: &OperatorRecord) -> IndexRow {
    IndexRow::Operator(OperatorProfileRow {
        did: raw.did.clone(),
        display_name: o.display_name.clone(),
        description: o.description.clone(),
        website: o.website.clone(),
        contact: o.contact.clone(),
    })
}
