//! Typed forms of Guildhall's three record types, for the indexer and the CLI.
//!
//! `parse_*` validate first (lexicon and Guildhall rules), then deserialize, so a parsed value
//! always satisfies every rule. Integers are `i64` and money stays a decimal `String` (see
//! [`crate::grammar::parse_amount`]); datetimes stay strings so records re-serialize unchanged.

use ipld_core::ipld::Ipld;
use serde::{Deserialize, Serialize};

use crate::{
    Catalog, ENDORSEMENT_NSID, LexiconError, OPERATOR_NSID, SERVICE_NSID, ValidationIssue,
};

/// Why a record could not be turned into its typed form.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecordError {
    #[error("record is invalid: {}", join_issues(.0))]
    Invalid(Vec<ValidationIssue>),
    #[error("record is valid but does not decode: {0}")]
    Decode(String),
    #[error(transparent)]
    Catalog(#[from] LexiconError),
}

fn join_issues(issues: &[ValidationIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// `dev.guildhall.service`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRecord {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<Operation>,
    pub endpoints: Vec<Endpoint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pricing: Vec<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla: Option<Sla>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Links>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_handling: Option<DataHandling>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema object, kept in the data model as published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Ipld>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Ipld>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// `mcp`, `a2a`, `http`, `xrpc`, or a value this version does not know.
    pub protocol: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Price {
    /// `free`, `per_call`, `per_token`, `subscription`, or a value this version does not know.
    pub model: String,
    /// Decimal string; parse with [`crate::grammar::parse_amount`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sla {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p95_ms: Option<i64>,
    /// Basis points, 0..=10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_bp: Option<i64>,
    /// Basis points, 0..=10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate_bp: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Links {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_registry_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_card_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataHandling {
    pub retains_content: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<i64>,
}

/// `dev.guildhall.endorsement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndorsementRecord {
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<StrongRef>,
    /// Empty: the endorsement covers everything the subject offers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// 1..=100; `None` reads as [`DEFAULT_STRENGTH`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strength: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// Strength of an endorsement that states none: a neutral vouch, the lexicon's default.
pub const DEFAULT_STRENGTH: i64 = 50;

impl EndorsementRecord {
    /// The stated strength, or [`DEFAULT_STRENGTH`].
    pub fn strength_or_default(&self) -> i64 {
        self.strength.unwrap_or(DEFAULT_STRENGTH)
    }
}

/// `com.atproto.repo.strongRef`: a record URI pinned to one CID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrongRef {
    pub uri: String,
    pub cid: String,
}

/// `dev.guildhall.operator` (record key `self`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorRecord {
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    pub created_at: String,
}

fn parse<T: serde::de::DeserializeOwned>(nsid: &str, record: &Ipld) -> Result<T, RecordError> {
    Catalog::guildhall()?
        .validate_record(nsid, record)
        .map_err(RecordError::Invalid)?;
    ipld_core::serde::from_ipld(record.clone()).map_err(|e| RecordError::Decode(e.to_string()))
}

/// Validates and decodes a `dev.guildhall.service` record.
pub fn parse_service(record: &Ipld) -> Result<ServiceRecord, RecordError> {
    parse(SERVICE_NSID, record)
}

/// Validates and decodes a `dev.guildhall.endorsement` record.
pub fn parse_endorsement(record: &Ipld) -> Result<EndorsementRecord, RecordError> {
    parse(ENDORSEMENT_NSID, record)
}

/// Validates and decodes a `dev.guildhall.operator` record.
pub fn parse_operator(record: &Ipld) -> Result<OperatorRecord, RecordError> {
    parse(OPERATOR_NSID, record)
}
