//! Guildhall's lexicons and record validation against them. Pure.
//!
//! - [`Catalog`]: parsed lexicon documents ([`Catalog::guildhall`] embeds ours); validates records
//!   in the ATProto data model (`Ipld`, what DAG-CBOR decodes to, or JSON via
//!   [`Catalog::validate_record_json`]) against the schema, then against Guildhall's own rules.
//! - [`records`]: typed `ServiceRecord`, `EndorsementRecord`, `OperatorRecord` and their parsers.
//! - [`grammar`]: capability ids, decimal amounts, currencies, regions, versions.

mod catalog;
pub mod grammar;
mod json;
pub mod records;
mod schema;
mod semantic;
mod validate;

pub use catalog::Catalog;
pub use json::{JsonDataError, json_to_ipld};
pub use records::{
    DEFAULT_STRENGTH, DataHandling, EndorsementRecord, Endpoint, Links, Operation, OperatorRecord,
    Price, RecordError, ServiceRecord, Sla, StrongRef, parse_endorsement, parse_operator,
    parse_service,
};

/// Collection of service listings (record key: an operator-chosen slug).
pub const SERVICE_NSID: &str = "dev.guildhall.service";
/// Collection of endorsements (record key: TID).
pub const ENDORSEMENT_NSID: &str = "dev.guildhall.endorsement";
/// Collection of the operator profile (record key: `self`).
pub const OPERATOR_NSID: &str = "dev.guildhall.operator";
/// Shared view definitions of the AppView queries.
pub const DEFS_NSID: &str = "dev.guildhall.defs";
pub const SEARCH_SERVICES_NSID: &str = "dev.guildhall.searchServices";
pub const GET_SERVICE_NSID: &str = "dev.guildhall.getService";
pub const GET_OPERATOR_NSID: &str = "dev.guildhall.getOperator";
pub const GET_TRUST_PATH_NSID: &str = "dev.guildhall.getTrustPath";
pub const LIST_ENDORSEMENTS_NSID: &str = "dev.guildhall.listEndorsements";
pub const LIST_CAPABILITIES_NSID: &str = "dev.guildhall.listCapabilities";
/// Shared views of the ledger methods (accounts, transfers, amounts).
pub const LEDGER_DEFS_NSID: &str = "dev.guildhall.ledger.defs";
/// The caller's balances (service auth).
pub const GET_BALANCE_NSID: &str = "dev.guildhall.ledger.getBalance";
/// The caller's transfers, newest first (service auth).
pub const LIST_TRANSFERS_NSID: &str = "dev.guildhall.ledger.listTransfers";
/// Moves credits from the caller to another DID (service auth).
pub const TRANSFER_NSID: &str = "dev.guildhall.ledger.transfer";

/// A lexicon document that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LexiconError {
    #[error("lexicon document is not JSON: {0}")]
    Json(String),
    #[error("lexicon {id}: {path}: {message}")]
    Invalid {
        id: String,
        path: String,
        message: String,
    },
    #[error("lexicon {0} given twice")]
    Duplicate(String),
}

/// One reason a record is invalid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValidationIssue {
    /// Where, e.g. `operations[0].inputSchema`; empty for the record itself.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ValidationIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}
