//! Plain rows and queries the store reads and writes; no lexicon or protocol types here.

/// Account status of an operator, as carried by `#account` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperatorStatus {
    /// Visible everywhere.
    Active,
    /// Hidden from every read; restored on reactivation.
    Takendown,
    /// Hidden from every read; restored on reactivation.
    Suspended,
    /// Hidden from every read; restored on reactivation.
    Deactivated,
    /// Hidden, and the account's records are removed.
    Deleted,
    /// Hidden while the host cannot vouch for the repo.
    Desynchronized,
    /// Hidden while the host throttles the account.
    Throttled,
}

impl OperatorStatus {
    /// The wire/database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Takendown => "takendown",
            Self::Suspended => "suspended",
            Self::Deactivated => "deactivated",
            Self::Deleted => "deleted",
            Self::Desynchronized => "desynchronized",
            Self::Throttled => "throttled",
        }
    }

    /// Parses the wire/database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "takendown" => Self::Takendown,
            "suspended" => Self::Suspended,
            "deactivated" => Self::Deactivated,
            "deleted" => Self::Deleted,
            "desynchronized" => Self::Desynchronized,
            "throttled" => Self::Throttled,
            _ => return None,
        })
    }
}

/// Sync state of a tracked repo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RepoStatus {
    /// Our copy follows the repo's commit chain.
    Synced,
    /// A gap or mismatch was seen; a resync is needed.
    Desynchronized,
    /// A full resync (getRepo) is in progress.
    Resyncing,
}

impl RepoStatus {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Synced => "synced",
            Self::Desynchronized => "desynchronized",
            Self::Resyncing => "resyncing",
        }
    }

    /// Parses the database spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "synced" => Self::Synced,
            "desynchronized" => Self::Desynchronized,
            "resyncing" => Self::Resyncing,
            _ => return None,
        })
    }
}

/// A raw record as received, kept so every index can be rebuilt from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRow {
    /// `at://<did>/<collection>/<rkey>`.
    pub uri: String,
    /// Repo owner.
    pub did: String,
    /// NSID of the collection.
    pub collection: String,
    /// Record key.
    pub rkey: String,
    /// CID of the record block, as a string.
    pub cid: String,
    /// The DAG-CBOR block exactly as received.
    pub bytes: Vec<u8>,
}

/// The decoded, indexed form of a record, written beside its [`RecordRow`].
#[derive(Debug, Clone, PartialEq)]
pub enum IndexRow {
    /// A `dev.guildhall.service` record.
    Service(ServiceRow),
    /// A `dev.guildhall.endorsement` record.
    Endorsement(EndorsementRow),
    /// A `dev.guildhall.operator` record (key `self`).
    Operator(OperatorProfileRow),
}

/// One price point of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceRow {
    /// Pricing model, e.g. `per_call`, `free`.
    pub model: String,
    /// Currency code or token symbol.
    pub currency: Option<String>,
    /// Decimal amount string as in the record (e.g. `"0.0075"`); converted with
    /// [`crate::amount_to_nanos`] on write, and a malformed one fails the batch.
    pub amount: Option<String>,
    /// What the amount buys.
    pub unit: Option<String>,
    /// Billing period.
    pub period: Option<String>,
}

/// An indexed service listing.
///
/// On write, `uri`, `did`, `rkey` and `cid` are taken from the accompanying [`RecordRow`].
/// On read, `capabilities`, `regions` and `tags` come back as sorted sets and `prices` in
/// record order.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRow {
    /// Record URI.
    pub uri: String,
    /// Operator DID.
    pub did: String,
    /// Slug.
    pub rkey: String,
    /// Current record CID.
    pub cid: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Operator's semver version.
    pub version: Option<String>,
    /// `createdAt` as written by the operator.
    pub created_at: String,
    /// Declared p95 latency.
    pub latency_p95_ms: Option<i64>,
    /// Declared availability in basis points.
    pub availability_bp: Option<i64>,
    /// Declared success rate in basis points.
    pub success_rate_bp: Option<i64>,
    /// The record as JSON text, served by the API as-is.
    pub record_json: String,
    /// Capability ids.
    pub capabilities: Vec<String>,
    /// ISO 3166-1 alpha-2 region codes.
    pub regions: Vec<String>,
    /// Price points.
    pub prices: Vec<PriceRow>,
    /// Free-form tags.
    pub tags: Vec<String>,
}

/// A visible service's current version as the API shows it: the record itself, without
/// the index rows derived from it (one row to read instead of five tables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecordRow {
    /// Record URI.
    pub uri: String,
    /// Operator DID.
    pub did: String,
    /// Current record CID.
    pub cid: String,
    /// The record as JSON text, served by the API as-is.
    pub record_json: String,
}

impl From<ServiceRow> for ServiceRecordRow {
    fn from(r: ServiceRow) -> Self {
        Self {
            uri: r.uri,
            did: r.did,
            cid: r.cid,
            record_json: r.record_json,
        }
    }
}

/// An indexed endorsement.
///
/// On write, `uri`, `author`, `rkey` and `cid` are taken from the accompanying [`RecordRow`].
/// On read, `capabilities` is a sorted set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndorsementRow {
    /// Record URI.
    pub uri: String,
    /// Author DID (the repo owner).
    pub author: String,
    /// TID record key.
    pub rkey: String,
    /// Record CID.
    pub cid: String,
    /// Endorsed operator DID.
    pub subject: String,
    /// Pinned service record URI.
    pub service_uri: Option<String>,
    /// Pinned service record CID.
    pub service_cid: Option<String>,
    /// 1..=100 as written; `None` when absent (the lexicon reads that as 50).
    pub strength: Option<i64>,
    /// Free text.
    pub comment: Option<String>,
    /// `createdAt` as written.
    pub created_at: String,
    /// `expiresAt` as written.
    pub expires_at: Option<String>,
    /// Scope; empty means everything the subject offers.
    pub capabilities: Vec<String>,
}

/// The operator profile record's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorProfileRow {
    /// Operator DID (taken from the [`RecordRow`] on write).
    pub did: String,
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: Option<String>,
    /// Website URI.
    pub website: Option<String>,
    /// Contact address or URI.
    pub contact: Option<String>,
}

/// An operator as read back: account state, identity and profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRow {
    /// DID.
    pub did: String,
    /// Handle, lower-cased.
    pub handle: Option<String>,
    /// Whether the handle resolved back to this DID.
    pub handle_verified: bool,
    /// Account status.
    pub status: OperatorStatus,
    /// Profile display name.
    pub display_name: Option<String>,
    /// Profile description.
    pub description: Option<String>,
    /// Profile website.
    pub website: Option<String>,
    /// Profile contact.
    pub contact: Option<String>,
    /// URI of the profile record.
    pub profile_uri: Option<String>,
    /// CID of the profile record.
    pub profile_cid: Option<String>,
}

/// Sync state of one tracked repo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRow {
    /// Repo DID.
    pub did: String,
    /// Last applied commit rev (TID).
    pub rev: Option<String>,
    /// MST root CID of that commit.
    pub data_cid: Option<String>,
    /// Sync status.
    pub status: RepoStatus,
}

/// A record or event the indexer refused, kept for the status endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionRow {
    /// What was rejected.
    pub uri: String,
    /// Its CID when known.
    pub cid: Option<String>,
    /// Collection NSID.
    pub collection: String,
    /// Short machine-readable reason (grouped by in counts).
    pub reason: String,
    /// Human-readable detail.
    pub detail: Option<String>,
}

/// A stored rejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Insertion order.
    pub id: i64,
    /// What was rejected and why.
    pub row: RejectionRow,
    /// Unix milliseconds.
    pub rejected_at: i64,
}

/// One change of a [`Batch`].
// Upserts dominate real batches, so the big variant is the common one; boxing it would
// only add an allocation per change.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Create or replace a record and its index row. `None` as index removes any index row
    /// the record had (e.g. its new version failed validation).
    UpsertRecord(RecordRow, Option<IndexRow>),
    /// Remove a record and its index row.
    DeleteRecord {
        /// Record URI.
        uri: String,
    },
    /// Remove every record of a repo (before a full resync).
    DeleteRepoRecords {
        /// Repo DID.
        did: String,
    },
    /// Set a repo's sync state.
    SetRepo(RepoRow),
    /// Set an account's status; `Deleted` also removes its records and sync state.
    Account {
        /// Account DID.
        did: String,
        /// New status.
        status: OperatorStatus,
    },
    /// Set an account's handle.
    Identity {
        /// Account DID.
        did: String,
        /// Handle, if any.
        handle: Option<String>,
        /// Whether it verified bidirectionally.
        verified: bool,
    },
    /// Record a rejection (replays are deduplicated on uri, cid and reason).
    Reject(RejectionRow),
    /// Mark a repo's backfill finished.
    BackfillDone {
        /// Repo DID.
        did: String,
    },
}

/// Changes applied in one transaction together with the firehose cursors they lead to.
///
/// The result is that of applying `changes` one by one in order; the store writes it
/// set-wise (see the `group` module), so batching many frames costs few statements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// `(source, seq)` per firehose source: the cursors to store with these changes (the
    /// last one given per source wins).
    pub cursors: Vec<(String, i64)>,
    /// Applied in order.
    pub changes: Vec<Change>,
}

/// Discovery filters; all given filters must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceQuery {
    /// Whitespace-separated words; each must occur (case-insensitively) in the name,
    /// description, tags or capabilities. At most [`crate::MAX_QUERY_WORDS`] words are used.
    pub q: Option<String>,
    /// Every one of these capabilities must be offered (each distinct one adds a subquery:
    /// callers should bound the list, e.g. to the lexicon's 32).
    pub capabilities: Vec<String>,
    /// Region code that must be served.
    pub region: Option<String>,
    /// Some price point must cost at most this many nano-units (with `currency` and
    /// `pricing_model`, when given, holding for that same price point).
    pub max_price_nanos: Option<i64>,
    /// Currency of the price point.
    pub currency: Option<String>,
    /// Pricing model of the price point.
    pub pricing_model: Option<String>,
    /// Declared p95 latency at most this (services that declare none are excluded).
    pub max_latency_ms: Option<i64>,
    /// Declared availability at least this (services that declare none are excluded).
    pub min_availability_bp: Option<i64>,
    /// Page size; 0 means the default, values above the maximum are clamped.
    pub limit: u32,
    /// Keyset cursor: the last URI of the previous page.
    pub after: Option<String>,
}

/// A search result (one page of [`crate::Store::search_services`]), ordered by URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHit {
    /// Record URI (also the keyset cursor).
    pub uri: String,
    /// Operator DID.
    pub did: String,
    /// Current CID.
    pub cid: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Version.
    pub version: Option<String>,
    /// `createdAt`.
    pub created_at: String,
    /// Declared p95 latency.
    pub latency_p95_ms: Option<i64>,
    /// Declared availability.
    pub availability_bp: Option<i64>,
    /// Declared success rate.
    pub success_rate_bp: Option<i64>,
    /// Record JSON for API output.
    pub record_json: String,
}

/// A ranking candidate: identity and quality fields only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCandidate {
    /// Record URI.
    pub uri: String,
    /// Operator DID.
    pub did: String,
    /// Current CID.
    pub cid: String,
    /// `createdAt`.
    pub created_at: String,
    /// Declared p95 latency.
    pub latency_p95_ms: Option<i64>,
    /// Declared availability.
    pub availability_bp: Option<i64>,
    /// Declared success rate.
    pub success_rate_bp: Option<i64>,
}

/// The candidates matching a query, at most a share per operator and a total cap (see
/// [`crate::Store::search_candidates`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CandidateSet {
    /// Ordered by operator DID, then URI.
    pub candidates: Vec<ServiceCandidate>,
    /// Something that matched was left out (`crowded` or `missing_from` says what).
    pub truncated: bool,
    /// Operators with more matching services than their share, ascending: only the first
    /// share of each (by URI) is in `candidates`.
    pub crowded: Vec<String>,
    /// When the total cap cut: no operator with a DID at or after this one is in
    /// `candidates`.
    pub missing_from: Option<String>,
}

impl CandidateSet {
    /// Whether some matching services of `did` were left out.
    pub fn cut(&self, did: &str) -> bool {
        self.missing_from.as_deref().is_some_and(|m| did >= m)
            || self
                .crowded
                .binary_search_by(|c| c.as_str().cmp(did))
                .is_ok()
    }
}

/// A page of endorsements, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndorsementPage {
    /// The endorsements.
    pub items: Vec<EndorsementRow>,
    /// Pass back to get the next page; `None` on the last page.
    pub cursor: Option<i64>,
}

/// Endorsement counts of one operator (active authors and subjects only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndorsementCounts {
    /// Endorsements this operator wrote.
    pub given: i64,
    /// Endorsements naming this operator as subject.
    pub received: i64,
}

/// Counts for the status endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Known operators, any status: every DID with an account or identity event or a
    /// record change.
    pub operators: i64,
    /// Operators whose status is not active.
    pub inactive_operators: i64,
    /// Tracked repos.
    pub repos: i64,
    /// Raw records.
    pub records: i64,
    /// Visible services.
    pub services: i64,
    /// Visible endorsements.
    pub endorsements: i64,
    /// Stored rejections.
    pub rejections: i64,
    /// Repos whose backfill is pending.
    pub backfill_pending: i64,
}

/// The version of what the trust graph is built from (endorsements, services, operators'
/// account status); equal tokens mean nothing the graph depends on changed in between (see
/// [`crate::Store::change_token`]).
///
/// Versions only grow, so a reader that has seen every version up to `t` is current for any
/// token `<= t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ChangeToken(pub i64);

/// What [`crate::Store::apply`] did to the graph version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// The version the batch's transaction left.
    pub token: ChangeToken,
    /// Whether the batch raised it (by exactly one); if not, it changed nothing the trust
    /// graph reads.
    pub moved: bool,
    /// Repo units refused because their rev was older than the recorded one (nothing of
    /// them was written).
    pub refused: u32,
}

impl Applied {
    /// The version just before the batch.
    pub fn before(&self) -> ChangeToken {
        ChangeToken(self.token.0 - i64::from(self.moved))
    }
}
