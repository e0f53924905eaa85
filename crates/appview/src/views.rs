//! Output shapes of the query lexicons (`dev.guildhall.defs`), serialised in camelCase.

use guildhall_store::{EndorsementRow, OperatorRow};
use guildhall_trust::{Basis, EdgeRef, Ranked, TrustPath, Vouchers};
use serde::Serialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `#operatorBasic`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OperatorBasic {
    pub did: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

impl OperatorBasic {
    /// From a stored operator; an unverified handle is withheld (anyone can claim one).
    pub fn from_row(did: &str, row: Option<&OperatorRow>) -> Self {
        Self {
            did: did.to_owned(),
            handle: row
                .filter(|r| r.handle_verified)
                .and_then(|r| r.handle.clone()),
            display_name: row.and_then(|r| r.display_name.clone()),
        }
    }
}

/// `#operatorView`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorView {
    pub did: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
}

impl From<&OperatorRow> for OperatorView {
    fn from(r: &OperatorRow) -> Self {
        Self {
            did: r.did.clone(),
            handle: r.handle.clone().filter(|_| r.handle_verified),
            display_name: r.display_name.clone(),
            description: r.description.clone(),
            website: r.website.clone(),
            contact: r.contact.clone(),
        }
    }
}

/// `#pathEdge`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PathEdge {
    pub from: String,
    pub to: String,
    pub uri: String,
    /// Empty only while unresolved (graphs built without CIDs); filled from the store
    /// before a response leaves.
    pub cid: String,
    pub capabilities: Vec<String>,
    pub created_at: String,
}

/// `#vouchers`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VouchersView {
    pub count: u32,
    pub sample: Vec<String>,
}

/// `#trustInfo`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TrustInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance: Option<u8>,
    pub score: u32,
    pub path: Vec<PathEdge>,
    pub vouchers: VouchersView,
    pub basis: &'static str,
}

/// `#serviceView`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceView {
    pub uri: String,
    pub cid: String,
    pub operator: OperatorBasic,
    pub record: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustInfo>,
}

/// `#endorsementView`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndorsementView {
    pub uri: String,
    pub cid: String,
    pub author: OperatorBasic,
    pub record: Value,
    pub lapsed: bool,
}

/// `#capabilityCount`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityCount {
    pub id: String,
    pub service_count: i64,
}

/// RFC 3339 UTC form of Unix microseconds (what `createdAt` fields carry).
pub fn datetime_from_us(us: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn edge(e: &EdgeRef) -> PathEdge {
    PathEdge {
        from: e.from.clone(),
        to: e.to.clone(),
        uri: e.uri.clone(),
        cid: e.cid.clone().unwrap_or_default(),
        capabilities: e.capabilities.clone(),
        created_at: datetime_from_us(e.created_at_us),
    }
}

fn vouchers(v: &Vouchers) -> VouchersView {
    VouchersView {
        count: v.count,
        sample: v.sample.clone(),
    }
}

fn basis(b: Basis) -> &'static str {
    match b {
        Basis::Graph => "graph",
        Basis::Fallback => "fallback",
    }
}

impl TrustInfo {
    /// From one ranked candidate.
    pub fn from_ranked(r: &Ranked) -> Self {
        Self {
            distance: r.distance,
            score: r.score_ppm,
            path: r.path.iter().map(edge).collect(),
            vouchers: vouchers(&r.vouchers),
            basis: basis(r.basis),
        }
    }

    /// From a getTrustPath answer (always graph-based: it starts at `from`).
    pub fn from_path(p: &TrustPath) -> Self {
        Self {
            distance: Some(p.distance),
            score: p.score_ppm,
            path: p.edges.iter().map(edge).collect(),
            vouchers: vouchers(&p.vouchers),
            basis: "graph",
        }
    }
}

/// The `dev.guildhall.endorsement` record rebuilt from its indexed fields (the index keeps
/// every field of the record, in their lexicon spelling).
pub fn endorsement_record(e: &EndorsementRow) -> Value {
    let mut m = Map::new();
    m.insert("$type".into(), json!("dev.guildhall.endorsement"));
    m.insert("subject".into(), json!(e.subject));
    if let (Some(uri), Some(cid)) = (&e.service_uri, &e.service_cid) {
        m.insert("service".into(), json!({"uri": uri, "cid": cid}));
    }
    if !e.capabilities.is_empty() {
        m.insert("capabilities".into(), json!(e.capabilities));
    }
    if let Some(s) = e.strength {
        m.insert("strength".into(), json!(s));
    }
    if let Some(c) = &e.comment {
        m.insert("comment".into(), json!(c));
    }
    m.insert("createdAt".into(), json!(e.created_at));
    if let Some(x) = &e.expires_at {
        m.insert("expiresAt".into(), json!(x));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes() {
        assert_eq!(
            datetime_from_us(1_767_225_600_000_000),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            datetime_from_us(1_767_225_600_500_000),
            "2026-01-01T00:00:00.5Z"
        );
    }

    #[test]
    fn trust_info_shape() {
        let t = TrustInfo {
            distance: None,
            score: 0,
            path: vec![],
            vouchers: VouchersView {
                count: 0,
                sample: vec![],
            },
            basis: "fallback",
        };
        let v = serde_json::to_value(&t).ok();
        assert_eq!(
            v,
            Some(
                json!({"score": 0, "path": [], "vouchers": {"count": 0, "sample": []}, "basis": "fallback"})
            )
        );
    }
}
