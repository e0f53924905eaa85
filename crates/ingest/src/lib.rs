//! Guildhall's ingestion edge: DID resolution, the firehose consumer, the verification
//! pipeline, and backfill — the sockets and HTTP around the pure protocol core.
//!
//! The pure parts live elsewhere (`guildhall-proto` verifies, `guildhall-lexicon` validates) or
//! in [`plan`] and [`rows`] here; everything else in this crate is plumbing that moves bytes
//! between the network, those functions and the store.

pub mod backfill;
pub mod firehose;
pub mod identity;
pub mod indexer;
pub mod metrics;
pub mod net;
pub mod plan;
pub mod repo;
pub mod resync;
pub mod rows;
pub mod schedule;

/// Why ingestion stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The store failed: ingestion stops rather than skip a batch (the cursor did not move,
    /// so a restart resumes exactly there).
    #[error("store: {0}")]
    Store(#[from] guildhall_store::StoreError),
    /// Identity resolution could not be set up.
    #[error("identity: {0}")]
    Identity(#[from] identity::ResolveError),
    /// Listing repos for backfill failed.
    #[error("listing repos: {0}")]
    List(String),
    /// A pipeline task ended abnormally.
    #[error("task: {0}")]
    Task(String),
}
