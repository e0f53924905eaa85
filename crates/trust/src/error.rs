//! Errors at the boundary of the trust crate: rejected endorsement inputs and capacity limits.

use thiserror::Error;

/// Why an endorsement (or a whole build) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TrustError {
    #[error("endorsement {uri}: strength {strength} is outside 1..=100")]
    InvalidStrength { uri: String, strength: i64 },
    #[error(
        "endorsement {uri}: not an at://{{author}}/{{collection}}/{{rkey}} URI of its author {author}"
    )]
    BadUri { uri: String, author: String },
    #[error("endorsement {uri} appears twice in one build")]
    DuplicateUri { uri: String },
    #[error("{what} of {len} bytes is longer than the 65,535 the graph stores")]
    TooLong { what: &'static str, len: usize },
    #[error("capacity exceeded: more than {limit} {what}")]
    Capacity { what: &'static str, limit: u64 },
}
