//! From verified ops to index changes: the pure step between verification and storage.
//!
//! Every record of ours that a verified commit (or repo export) carries becomes exactly one
//! [`IndexChange`]: an upsert with its validated, typed record, a delete, or a rejection that
//! names the lexicon issue. Records of other collections are not our business and produce
//! nothing. No I/O: the caller decides where the changes go.

use cid::Cid;
use guildhall_lexicon::{
    ENDORSEMENT_NSID, EndorsementRecord, OPERATOR_NSID, OperatorRecord, RecordError, SERVICE_NSID,
    ServiceRecord,
};
use guildhall_proto::syntax::{Did, Nsid, RecordKey};
use guildhall_proto::verify::{Action, RepoRecord, VerifiedOp};
use ipld_core::ipld::Ipld;

/// Collections under this prefix are Guildhall's.
pub const PREFIX: &str = "dev.guildhall.";

/// Whether a collection is one of ours.
pub fn is_ours(collection: &str) -> bool {
    collection.starts_with(PREFIX)
}

/// A validated record of one of our collections.
#[derive(Debug, Clone, PartialEq)]
pub enum GuildhallRecord {
    /// `dev.guildhall.service`.
    Service(Box<ServiceRecord>),
    /// `dev.guildhall.endorsement`.
    Endorsement(EndorsementRecord),
    /// `dev.guildhall.operator`.
    Operator(OperatorRecord),
}

/// Validates a record of `collection` under key `rkey`: the key rule the lexicon declares
/// (`any`, `tid`, `literal:self`), then the record itself.
pub fn parse_record(collection: &str, rkey: &str, value: &Ipld) -> Result<GuildhallRecord, String> {
    let catalog = guildhall_lexicon::Catalog::guildhall().map_err(|e| e.to_string())?;
    catalog
        .validate_record_key(collection, rkey)
        .map_err(|e| e.message)?;
    let issues = |e: RecordError| e.to_string();
    match collection {
        SERVICE_NSID => guildhall_lexicon::parse_service(value)
            .map(|r| GuildhallRecord::Service(Box::new(r)))
            .map_err(issues),
        ENDORSEMENT_NSID => guildhall_lexicon::parse_endorsement(value)
            .map(GuildhallRecord::Endorsement)
            .map_err(issues),
        OPERATOR_NSID => guildhall_lexicon::parse_operator(value)
            .map(GuildhallRecord::Operator)
            .map_err(issues),
        other => Err(format!("unknown collection {other}")),
    }
}

/// One change to the index, decided by the pure planner.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexChange {
    /// A valid record of ours, new or replaced.
    Upsert {
        /// The author.
        did: Did,
        /// Its collection.
        collection: Nsid,
        /// Its key.
        rkey: RecordKey,
        /// Its CID.
        cid: Cid,
        /// Its DAG-CBOR bytes as received.
        bytes: Vec<u8>,
        /// The validated, typed record.
        record: Box<GuildhallRecord>,
        /// The record in the ATProto JSON form (`$link`, `$bytes`), as the API serves it.
        json: serde_json::Value,
    },
    /// A record removed (or replaced by an invalid version, which must not stay visible).
    Delete {
        /// The author.
        did: Did,
        /// Its collection.
        collection: Nsid,
        /// Its key.
        rkey: RecordKey,
    },
    /// A record refused by our lexicons.
    Reject {
        /// The author.
        did: Did,
        /// Its collection.
        collection: Nsid,
        /// Its key.
        rkey: RecordKey,
        /// Its CID.
        cid: Cid,
        /// Why, with the record path of each issue.
        reason: String,
    },
}

impl IndexChange {
    /// `at://did/collection/rkey` of the record concerned.
    pub fn uri(&self) -> String {
        let (did, collection, rkey) = match self {
            IndexChange::Upsert {
                did,
                collection,
                rkey,
                ..
            }
            | IndexChange::Delete {
                did,
                collection,
                rkey,
            }
            | IndexChange::Reject {
                did,
                collection,
                rkey,
                ..
            } => (did, collection, rkey),
        };
        format!("at://{did}/{collection}/{rkey}")
    }
}

/// Plans one record's bytes: validated and typed, or rejected with the reason.
pub fn plan_record(
    did: &Did,
    collection: &Nsid,
    rkey: &RecordKey,
    cid: Cid,
    bytes: &[u8],
) -> Vec<IndexChange> {
    let reject = |reason: String| IndexChange::Reject {
        did: did.clone(),
        collection: collection.clone(),
        rkey: rkey.clone(),
        cid,
        reason,
    };
    let value: Ipld = match guildhall_proto::cbor::decode(bytes) {
        Ok(v) => v,
        Err(e) => return vec![reject(format!("record is not valid DAG-CBOR: {e}"))],
    };
    match parse_record(collection.as_str(), rkey.as_str(), &value) {
        Ok(record) => vec![IndexChange::Upsert {
            did: did.clone(),
            collection: collection.clone(),
            rkey: rkey.clone(),
            cid,
            bytes: bytes.to_vec(),
            json: ipld_to_json(&value),
            record: Box::new(record),
        }],
        // An invalid new version must also take the old valid one out of the index.
        Err(issues) => vec![
            IndexChange::Delete {
                did: did.clone(),
                collection: collection.clone(),
                rkey: rkey.clone(),
            },
            reject(issues),
        ],
    }
}

/// Plans the ops of a verified commit.
pub fn plan_ops(did: &Did, ops: &[VerifiedOp]) -> Vec<IndexChange> {
    let mut out = Vec::new();
    for op in ops.iter().filter(|o| is_ours(o.collection.as_str())) {
        match (op.action, op.cid, &op.record) {
            (Action::Create | Action::Update, Some(cid), Some(bytes)) => {
                out.extend(plan_record(did, &op.collection, &op.rkey, cid, bytes));
            }
            // Verification guarantees creates and updates carry their block; a delete has none.
            _ => out.push(IndexChange::Delete {
                did: did.clone(),
                collection: op.collection.clone(),
                rkey: op.rkey.clone(),
            }),
        }
    }
    out
}

/// Plans the records of a verified repo export (backfill, resync).
pub fn plan_repo(did: &Did, records: &[RepoRecord]) -> Vec<IndexChange> {
    records
        .iter()
        .filter(|r| is_ours(r.collection.as_str()))
        .flat_map(|r| plan_record(did, &r.collection, &r.rkey, r.cid, &r.bytes))
        .collect()
}

/// The ATProto JSON form of a data-model value: links as `{"$link"}`, bytes as `{"$bytes"}`
/// (base64, no padding).
pub fn ipld_to_json(value: &Ipld) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Ipld::Null => Value::Null,
        Ipld::Bool(b) => Value::Bool(*b),
        Ipld::Integer(i) => i64::try_from(*i)
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(i.to_string())),
        // Records cannot hold floats (validation refuses them); kept total for other callers.
        Ipld::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Ipld::String(s) => Value::String(s.clone()),
        Ipld::Bytes(b) => serde_json::json!({ "$bytes": base64(b) }),
        Ipld::List(l) => Value::Array(l.iter().map(ipld_to_json).collect()),
        Ipld::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), ipld_to_json(v)))
                .collect(),
        ),
        Ipld::Link(c) => serde_json::json!({ "$link": c.to_string() }),
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_without_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg");
        assert_eq!(base64(b"fo"), "Zm8");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn keys_are_checked_per_collection() {
        let v = Ipld::Map(Default::default());
        let err = |c: &str, k: &str| parse_record(c, k, &v).unwrap_err();
        assert!(err(ENDORSEMENT_NSID, "not-a-tid").contains(r#"key rule "tid""#));
        assert!(err(OPERATOR_NSID, "other").contains(r#"key rule "literal:self""#));
        assert!(err(SERVICE_NSID, "bad key!").contains("record key"));
        assert!(err("dev.guildhall.nope", "x").contains("not a record type"));
        // A valid key gets as far as the record's own checks.
        assert!(!err(OPERATOR_NSID, "self").contains("record key"));
    }
}
