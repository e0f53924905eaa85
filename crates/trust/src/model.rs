//! Plain input and output values of the trust crate.

/// One endorsement record, as the store hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endorsement {
    /// `at://{author}/{collection}/{rkey}`; unique per endorsement.
    pub uri: String,
    /// CID of this record version.
    pub cid: String,
    /// DID of the endorser.
    pub author: String,
    /// DID of the endorsed operator.
    pub subject: String,
    /// Capabilities the endorsement vouches for; empty means unscoped.
    pub capabilities: Vec<String>,
    /// 1..=100.
    pub strength: i64,
    /// Unix microseconds.
    pub created_at_us: i64,
    /// Unix microseconds; the endorsement counts only while `now < expires_at_us`.
    pub expires_at_us: Option<i64>,
    /// `(service uri, service cid)`: counts only while that CID is the service's current one.
    pub pinned: Option<(String, String)>,
}

/// One provider that passed the caller's SQL filters. Generic over the string type so a
/// caller ranking rows it already holds can lend them (`CandidateProvider<&str>`) instead of
/// copying two strings per candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CandidateProvider<S = String> {
    /// Operator DID (the node that endorsements point at).
    pub operator: S,
    /// Service record URI (several services may share one operator).
    pub service: S,
    /// Caller-supplied quality (e.g. measured availability), parts per million; used only to
    /// order candidates that no trust path reaches.
    pub quality_ppm: u32,
}

/// Where a ranking came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Basis {
    /// A path from the viewer.
    Graph,
    /// No viewer or no path from it: a path from the configured anchors, or quality alone.
    Fallback,
}

/// One edge of an explaining path: a strong reference to the endorsement record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeRef {
    pub uri: String,
    /// `None` only when the graph was built with `BuildOptions::keep_cids = false`.
    pub cid: Option<String>,
    pub from: String,
    pub to: String,
    pub capabilities: Vec<String>,
    pub created_at_us: i64,
}

/// Who vouches for a provider: distinct last-hop endorsers on a simple path of at most three
/// hops from the viewer (or the anchors).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Vouchers {
    pub count: u32,
    /// At most `RankOptions::voucher_sample` DIDs, in ascending order.
    pub sample: Vec<String>,
}

/// One ranked candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranked {
    /// Index into the `candidates` slice given to `rank`.
    pub candidate: usize,
    /// Hops of the explaining path (0 when the operator is the viewer or an anchor); `None`
    /// when no path of at most three hops exists.
    pub distance: Option<u8>,
    /// Product of the path's edge weights, parts per million.
    pub score_ppm: u32,
    pub path: Vec<EdgeRef>,
    pub vouchers: Vouchers,
    pub basis: Basis,
}

/// Answer of `TrustGraph::path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPath {
    pub distance: u8,
    pub score_ppm: u32,
    pub edges: Vec<EdgeRef>,
    pub vouchers: Vouchers,
}

/// Options for building a graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// Keep each edge's record CID (32 bytes per edge) so paths can cite strong references.
    pub keep_cids: bool,
    /// Churn (tombstoned base edges + overlay edges, relative to base edges) above which
    /// `needs_rebuild` says yes, in parts per million.
    pub rebuild_churn_ppm: u32,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            keep_cids: true,
            rebuild_churn_ppm: 50_000,
        }
    }
}

/// One year of 365 days, in microseconds.
pub const YEAR_US: i64 = 365 * 24 * 3600 * 1_000_000;

/// Options for one ranking query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankOptions {
    /// τ: an endorsement's weight halves every `half_life_us` of age.
    pub half_life_us: i64,
    /// Operators trusted by configuration; seeds of the fallback ranking.
    pub anchors: Vec<String>,
    /// Sybil cap: per dominating node (one on every path to a result; the viewer and anchors
    /// exempt), only this many results rank on their trust; the rest follow every other
    /// result (see `TrustGraph::rank`). `None` turns the cap off.
    pub sybil_per_dominator: Option<usize>,
    /// How many voucher DIDs to name.
    pub voucher_sample: usize,
    /// Work budget of one frontier, in edges: the out-edges of hop-1 nodes scanned for the
    /// second hop. Past it only the most trusted hop-1 nodes are expanded (those whose
    /// out-edges fit, best first); the others still end paths (`seed → x → candidate`) but
    /// lead no further, and [`Ranking::frontier_cut`](crate::Ranking::frontier_cut) says so.
    /// The first hop costs the seeds' own out-degree, and evaluating candidates at most their
    /// in-degree, neither of which a viewer's neighbourhood can inflate.
    pub frontier_budget: usize,
}

impl Default for RankOptions {
    fn default() -> Self {
        Self {
            half_life_us: YEAR_US,
            anchors: Vec::new(),
            sybil_per_dominator: Some(2),
            voucher_sample: 5,
            frontier_budget: 1_000_000,
        }
    }
}

/// Size and churn of a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphStats {
    pub nodes: usize,
    /// Edges in the compacted arrays (including tombstoned ones).
    pub base_edges: usize,
    pub tombstoned: usize,
    /// Live edges added since the last build.
    pub overlay_edges: usize,
    /// Self-endorsements dropped (they never count).
    pub self_endorsements_dropped: usize,
    /// Approximate heap bytes held by the graph.
    pub heap_bytes: usize,
}
