//! Guildhall's trust graph and ranking. Pure: no I/O, no async, no clock — `now` is an input.
//!
//! Who can do X for me, ranked by how close they stand to me in the endorsement graph, with
//! the path that explains it:
//! - [`TrustGraph`] holds endorsements between operator DIDs in compact CSR arrays (forward
//!   and reverse), plus an overlay for live changes ([`TrustGraph::add`],
//!   [`TrustGraph::remove`], [`TrustGraph::set_service_cid`]) and a rebuild past ~5% churn.
//! - [`TrustGraph::rank`] orders candidate providers by hops from the viewer, then the best
//!   product of edge weights at that many hops, then the number of independent vouchers, with
//!   a sybil cap per dominating node (results past it follow every other result) and an
//!   anchor/quality fallback. [`TrustGraph::path`] answers getTrustPath with the same numbers.
//! - [`PreparedCandidates`] lets a caller that ranks one candidate set for many viewers
//!   resolve the operators to nodes and order the unreachable ones once;
//!   [`TrustGraph::rank_prepared`] then costs the viewer's frontier plus the few candidates
//!   it reaches, and returns a compact [`Ranking`] that explains candidates on demand.
//! - Edge weight = strength/100 · 2^(−age/τ) · κ, κ = 1 if the endorsement covers the queried
//!   capability (exact, or a `.`-namespace prefix: `sms` covers `sms.send`), 0.5 if unscoped,
//!   0 otherwise; with several queried capabilities, the best of them per edge (so their
//!   order never matters). With none queried, edges count fully, except that the final
//!   edge of a path into a service whose capabilities the graph knows
//!   ([`TrustGraph::set_service_capabilities`]) counts only if unscoped or covering one of
//!   them: an endorsement scoped to email does not vouch for the same operator's SMS
//!   service. Zero when expired, deleted, pinned to a service CID that is no longer
//!   current, a self-endorsement, or dated more than five minutes after `now` (see
//!   [`weight::base_weight`]). See [`weight`].
//!
//! Decisions worth knowing:
//! - Distance is the fewest hops (≤ 3) of a path with every weight positive; the score is the
//!   best product among paths of exactly that many hops, so the returned path always
//!   explains both. A stronger but longer path does not raise the score.
//! - Vouchers are the distinct last-hop endorsers over all simple paths of ≤ 3 hops; an
//!   endorser reachable only through the candidate itself does not count.
//! - A node X *dominates* a result when every path of at most three hops (positive weights)
//!   from the viewer — or from the anchors, for a result reached only from them — to it
//!   passes through X. Invariant: for any single node X other than the viewer and the
//!   anchors, at most `RankOptions::sybil_per_dominator` (2) of the top 10 results are ones
//!   X dominates, unless fewer than 10 results are under the cap; a result with a path
//!   avoiding X is not capped by X. Dominators cost nothing extra: a path has at most two
//!   inner nodes, and the intersection over a candidate's in-edges is kept while it is
//!   evaluated, from the frontier's record of up to three routes to each two-hop node.
//! - Ties on equal products go to the smaller record URI; the output never depends on input
//!   order.
//! - Creation times are kept to the second (weights decay by the second; `EdgeRef` carries
//!   whole seconds in microseconds).
//! - Scores leave the crate as integers (parts per million).
//!
//! Memory per edge: 8 B of adjacency (forward subject, reverse author; the reverse edge is
//! found by binary search in the author's subject-sorted range), 7 B of weight inputs,
//! 8 B of record key (a TID, so the record URI can be rebuilt) and, unless
//! `BuildOptions::keep_cids` is off, the 32-byte digest of the record CID.

mod compact;
mod error;
mod graph;
mod intern;
mod model;
mod rank;
mod reach;
pub mod weight;

pub use error::TrustError;
pub use graph::TrustGraph;
pub use model::{
    Basis, BuildOptions, CandidateProvider, EdgeRef, Endorsement, GraphStats, RankOptions, Ranked,
    TrustPath, Vouchers, YEAR_US,
};
pub use rank::{MAX_HOPS, PreparedCandidates, Ranking};
