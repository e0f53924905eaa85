//! Guildhall's trust graph and ranking. Pure: no I/O, no async, no clock — `now` is an input.
//!
//! Who can do X for me, ranked by how close they stand to me in the endorsement graph, with
//! the path that explains it:
//! - [`TrustGraph`] holds endorsements between operator DIDs in compact CSR arrays (forward
//!   and reverse), plus an overlay for live changes.
//! - [`TrustGraph::rank`] orders candidate providers by hops from the viewer, then the best
//!   product of edge weights at that many hops, then the number of independent vouchers, with
//!   a sybil cap per last-hop endorser and an anchor/quality fallback.
//! - Edge weight = strength/100 · 2^(−age/τ) · κ, κ = 1 if the endorsement covers the queried
//!   capability (exact, or a `.`-namespace prefix: `sms` covers `sms.send`), 0.5 if unscoped,
//!   0 otherwise; see [`weight`].
//!
//! Scores leave the crate as integers (parts per million).

mod compact;
mod error;
mod graph;
mod intern;
mod model;
mod rank;
pub mod weight;

pub use error::TrustError;
pub use graph::TrustGraph;
pub use model::{
    Basis, BuildOptions, CandidateProvider, EdgeRef, Endorsement, GraphStats, RankOptions, Ranked,
    TrustPath, Vouchers, YEAR_US,
};
pub use rank::MAX_HOPS;
