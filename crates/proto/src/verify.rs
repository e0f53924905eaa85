//! Sync v1.1 verification: from a `#commit`, the author's key and the repo's previous state to a
//! verified commit, or one typed reason why not.
//!
//! The checks, in order: bounds, the CAR slice (every block hashed), the commit block, the DID,
//! the signature, rev ordering, `since`/`prevData` continuity, then MST inversion, which proves
//! the ops are exactly the difference between the previous tree and the new one. A caller that
//! gets `Ok` may index the ops' records as the author's own words.

use cid::Cid;

use crate::car::{self, BlockMap, CarError, CarLimits};
use crate::commit::{Commit, CommitError};
use crate::crypto::{PublicKey, SignatureError};
use crate::frame::{CommitEvent, MAX_OPS, SyncEvent};
use crate::mst::{self, MstError, RecordOp};
use crate::syntax::{Did, Nsid, RecordKey, Tid};

/// How far in the future a rev's clock may run before we refuse it (the sync spec suggests
/// minutes, for clock skew between hosts).
pub const MAX_REV_SKEW_MICROS: u64 = 5 * 60 * 1_000_000;

/// What we hold about a repo from its last verified commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoState {
    /// The last verified rev.
    pub rev: Tid,
    /// The MST root of that commit.
    pub data: Cid,
}

/// What a record op does, after verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new record.
    Create,
    /// A replaced record.
    Update,
    /// A removed record.
    Delete,
}

/// One op of a verified commit, with its record block when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedOp {
    /// What happened.
    pub action: Action,
    /// The record's collection.
    pub collection: Nsid,
    /// The record's key.
    pub rkey: RecordKey,
    /// The new record's CID (create, update).
    pub cid: Option<Cid>,
    /// The new record's DAG-CBOR bytes, hash-checked against `cid` (create, update).
    pub record: Option<Vec<u8>>,
}

/// A commit whose signature, continuity and MST proof all check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCommit {
    /// The repo.
    pub did: Did,
    /// Stream sequence number.
    pub seq: i64,
    /// The commit's CID.
    pub commit_cid: Cid,
    /// The repo's state after this commit: store it for the next one.
    pub state: RepoState,
    /// The ops, in the order sent.
    pub ops: Vec<VerifiedOp>,
}

/// Why a commit (or sync event, or repo CAR) was refused. Closed: every path out of
/// verification ends in exactly one of these.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// More ops than allowed.
    #[error("commit carries {0} ops (at most {MAX_OPS})")]
    TooManyOps(usize),
    /// `tooBig` events cannot be verified inductively.
    #[error("tooBig commit cannot be verified")]
    TooBig,
    /// The CAR slice is malformed, oversized or has a block whose hash is wrong.
    #[error("CAR slice: {0}")]
    Car(#[from] CarError),
    /// The CAR names no root.
    #[error("CAR slice has no root")]
    NoRoot,
    /// The CAR's root is not the event's commit CID.
    #[error("CAR root {found} is not the commit {expected}")]
    WrongRoot {
        /// The event's `commit`.
        expected: Cid,
        /// The CAR header's first root.
        found: Cid,
    },
    /// A block the proof needs is not in the slice.
    #[error("block {0} is missing from the CAR slice")]
    MissingBlock(Cid),
    /// The commit block does not decode as a version-3 commit.
    #[error("commit object: {0}")]
    Commit(#[from] CommitError),
    /// The commit is signed for another repo than the event names.
    #[error("commit is for {found}, event is for {expected}")]
    WrongDid {
        /// The event's repo.
        expected: Did,
        /// The commit object's did.
        found: Did,
    },
    /// The event's rev differs from the signed commit's.
    #[error("event rev {event} differs from the commit's {commit}")]
    RevMismatch {
        /// From the event.
        event: Tid,
        /// From the commit object.
        commit: Tid,
    },
    /// The signature does not verify against the author's current key.
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
    /// The rev does not move forward from the one we hold.
    #[error("rev {got} does not follow {last}")]
    RevNotIncreasing {
        /// What we hold.
        last: Tid,
        /// What arrived.
        got: Tid,
    },
    /// The rev's clock is too far ahead of `now`.
    #[error("rev {0} is too far in the future")]
    RevInFuture(Tid),
    /// `since` is not the rev we hold: events were missed.
    #[error("since {got:?} does not match the last rev {last}")]
    SinceMismatch {
        /// What we hold.
        last: Tid,
        /// The event's `since`.
        got: Option<Tid>,
    },
    /// `prevData` is not the tree we hold: the chain is broken.
    #[error("prevData {got:?} does not match the held root {held}")]
    PrevDataMismatch {
        /// What we hold.
        held: Cid,
        /// The event's `prevData`.
        got: Option<Cid>,
    },
    /// A commit with ops but no `prevData` (a pre-1.1 host): its ops cannot be proven complete.
    #[error("commit has ops but no prevData: cannot prove it (sync 1.0 host?)")]
    MissingPrevData,
    /// Inverting the ops on the new tree does not give back `prevData`.
    #[error("inverted tree {computed} is not prevData {claimed}")]
    InversionMismatch {
        /// The root we computed by inverting the ops.
        computed: Cid,
        /// The event's `prevData`.
        claimed: Cid,
    },
    /// An op is malformed: bad action, path, or missing CID.
    #[error("op {index}: {reason}")]
    BadOp {
        /// The op's position.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The MST in the slice is malformed, or the ops do not hold in it.
    #[error("MST: {0}")]
    Mst(MstError),
}

impl From<MstError> for VerifyError {
    fn from(e: MstError) -> Self {
        match e {
            MstError::MissingBlock(cid) => VerifyError::MissingBlock(cid),
            other => VerifyError::Mst(other),
        }
    }
}

impl VerifyError {
    /// A short, stable name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyError::TooManyOps(_) => "too_many_ops",
            VerifyError::TooBig => "too_big",
            VerifyError::Car(_) => "car",
            VerifyError::NoRoot => "no_root",
            VerifyError::WrongRoot { .. } => "wrong_root",
            VerifyError::MissingBlock(_) => "missing_block",
            VerifyError::Commit(_) => "commit",
            VerifyError::WrongDid { .. } => "wrong_did",
            VerifyError::RevMismatch { .. } => "rev_mismatch",
            VerifyError::Signature(SignatureError::HighS) => "high_s",
            VerifyError::Signature(_) => "bad_signature",
            VerifyError::RevNotIncreasing { .. } => "rev_not_increasing",
            VerifyError::RevInFuture(_) => "rev_in_future",
            VerifyError::SinceMismatch { .. } => "since_mismatch",
            VerifyError::PrevDataMismatch { .. } => "prev_data_mismatch",
            VerifyError::MissingPrevData => "missing_prev_data",
            VerifyError::InversionMismatch { .. } => "inversion_mismatch",
            VerifyError::BadOp { .. } => "bad_op",
            VerifyError::Mst(_) => "mst",
        }
    }

    /// Whether the repo's chain is broken here, so it should be resynced from `getRepo`,
    /// rather than the event being merely unusable (or forged) on its own.
    pub fn breaks_chain(&self) -> bool {
        matches!(
            self,
            VerifyError::SinceMismatch { .. }
                | VerifyError::PrevDataMismatch { .. }
                | VerifyError::MissingPrevData
                | VerifyError::TooBig
        )
    }
}

/// Reads a CAR slice and returns its blocks and verified commit, checking the root and DID.
fn signed_commit(
    blocks: &[u8],
    limits: &CarLimits,
    did: &Did,
    rev: &Tid,
    key: &PublicKey,
) -> Result<(Cid, Commit, BlockMap), VerifyError> {
    let car = car::read_car(blocks, limits)?;
    let root = *car.roots.first().ok_or(VerifyError::NoRoot)?;
    let bytes = car
        .blocks
        .get(&root)
        .ok_or(VerifyError::MissingBlock(root))?;
    let commit = Commit::decode(bytes)?;
    if &commit.did != did {
        return Err(VerifyError::WrongDid {
            expected: did.clone(),
            found: commit.did,
        });
    }
    if &commit.rev != rev {
        return Err(VerifyError::RevMismatch {
            event: rev.clone(),
            commit: commit.rev,
        });
    }
    commit.verify_signature(key)?;
    Ok((root, commit, car.blocks))
}

fn check_rev(rev: &Tid, prev: Option<&RepoState>, now_micros: u64) -> Result<(), VerifyError> {
    if let Some(p) = prev
        && rev <= &p.rev
    {
        return Err(VerifyError::RevNotIncreasing {
            last: p.rev.clone(),
            got: rev.clone(),
        });
    }
    if rev.timestamp_micros() > now_micros.saturating_add(MAX_REV_SKEW_MICROS) {
        return Err(VerifyError::RevInFuture(rev.clone()));
    }
    Ok(())
}

fn record_op(index: usize, op: &crate::frame::RepoOp) -> Result<RecordOp, VerifyError> {
    let bad = |reason: &str| VerifyError::BadOp {
        index,
        reason: reason.to_owned(),
    };
    let path = op.path.clone();
    Ok(match op.action.as_str() {
        "create" => RecordOp::Create {
            path,
            cid: op.cid.ok_or_else(|| bad("create without cid"))?,
        },
        "update" => RecordOp::Update {
            path,
            cid: op.cid.ok_or_else(|| bad("update without cid"))?,
            prev: op.prev.ok_or_else(|| bad("update without prev"))?,
        },
        "delete" => {
            if op.cid.is_some() {
                return Err(bad("delete with a cid"));
            }
            RecordOp::Delete {
                path,
                prev: op.prev.ok_or_else(|| bad("delete without prev"))?,
            }
        }
        other => return Err(bad(&format!("unknown action {other:?}"))),
    })
}

/// Splits `collection/rkey`, validating both.
pub fn split_path(path: &str) -> Option<(Nsid, RecordKey)> {
    let (c, k) = path.split_once('/')?;
    Some((Nsid::parse(c).ok()?, RecordKey::parse(k).ok()?))
}

/// Verifies one `#commit` of a repo whose last verified state is `prev` (`None` for a repo we
/// have not seen). `now_micros` is the current Unix time, for the rev clock check.
pub fn verify_commit(
    ev: &CommitEvent,
    key: &PublicKey,
    prev: Option<&RepoState>,
    now_micros: u64,
) -> Result<VerifiedCommit, VerifyError> {
    if ev.ops.len() > MAX_OPS {
        return Err(VerifyError::TooManyOps(ev.ops.len()));
    }
    if ev.too_big {
        return Err(VerifyError::TooBig);
    }
    let (commit_cid, commit, blocks) =
        signed_commit(&ev.blocks, &CarLimits::FIREHOSE, &ev.repo, &ev.rev, key)?;
    if commit_cid != ev.commit {
        return Err(VerifyError::WrongRoot {
            expected: ev.commit,
            found: commit_cid,
        });
    }
    check_rev(&ev.rev, prev, now_micros)?;

    // Continuity: the event must build on exactly the state we hold.
    if let Some(p) = prev {
        if ev.since.as_ref() != Some(&p.rev) {
            return Err(VerifyError::SinceMismatch {
                last: p.rev.clone(),
                got: ev.since.clone(),
            });
        }
        if ev.prev_data != Some(p.data) {
            return Err(VerifyError::PrevDataMismatch {
                held: p.data,
                got: ev.prev_data,
            });
        }
    }

    let mut ops = Vec::with_capacity(ev.ops.len());
    let mut record_ops = Vec::with_capacity(ev.ops.len());
    for (index, op) in ev.ops.iter().enumerate() {
        let rop = record_op(index, op)?;
        let (collection, rkey) = split_path(&op.path).ok_or_else(|| VerifyError::BadOp {
            index,
            reason: format!("bad path {:?}", op.path),
        })?;
        let (action, record) = match &rop {
            RecordOp::Create { cid, .. } | RecordOp::Update { cid, .. } => {
                let bytes = blocks.get(cid).ok_or(VerifyError::MissingBlock(*cid))?;
                let action = if matches!(rop, RecordOp::Create { .. }) {
                    Action::Create
                } else {
                    Action::Update
                };
                (action, Some(bytes.to_vec()))
            }
            RecordOp::Delete { .. } => (Action::Delete, None),
        };
        ops.push(VerifiedOp {
            action,
            collection,
            rkey,
            cid: op.cid,
            record,
        });
        record_ops.push(rop);
    }

    // The proof: undoing the ops on the new tree must give back the previous tree exactly.
    match ev.prev_data {
        Some(claimed) => {
            let computed = mst::invert(commit.data, &record_ops, &blocks)?;
            if computed != claimed {
                return Err(VerifyError::InversionMismatch { computed, claimed });
            }
        }
        // A repo's genesis commit has no previous tree and no ops to prove.
        None if record_ops.is_empty() && prev.is_none() => {}
        None => return Err(VerifyError::MissingPrevData),
    }

    Ok(VerifiedCommit {
        did: ev.repo.clone(),
        seq: ev.seq,
        commit_cid,
        state: RepoState {
            rev: commit.rev,
            data: commit.data,
        },
        ops,
    })
}

/// A verified `#sync` event: the repo's new declared state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSync {
    /// The repo.
    pub did: Did,
    /// Stream sequence number.
    pub seq: i64,
    /// The declared state; if its `data` differs from ours, the repo must be resynced.
    pub state: RepoState,
}

/// Verifies a `#sync` event: signature, DID, and that the rev moves forward.
pub fn verify_sync(
    ev: &SyncEvent,
    key: &PublicKey,
    prev: Option<&RepoState>,
    now_micros: u64,
) -> Result<VerifiedSync, VerifyError> {
    let (_, commit, _) = signed_commit(&ev.blocks, &CarLimits::FIREHOSE, &ev.did, &ev.rev, key)?;
    check_rev(&ev.rev, prev, now_micros)?;
    Ok(VerifiedSync {
        did: ev.did.clone(),
        seq: ev.seq,
        state: RepoState {
            rev: commit.rev,
            data: commit.data,
        },
    })
}

/// One record of a verified repo export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRecord {
    /// The record's collection.
    pub collection: Nsid,
    /// The record's key.
    pub rkey: RecordKey,
    /// The record's CID, proven by the MST.
    pub cid: Cid,
    /// The record's DAG-CBOR bytes, hash-checked against `cid`.
    pub bytes: Vec<u8>,
}

/// A verified full repo (from `com.atproto.sync.getRepo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRepo {
    /// The repo's state at export.
    pub state: RepoState,
    /// Records whose collection passed the filter, in key order.
    pub records: Vec<RepoRecord>,
}

/// Verifies a repo CAR: the signed commit, then every record under collections that `want`
/// accepts, each proven included by walking the MST from the signed root.
pub fn verify_repo(
    car_bytes: &[u8],
    limits: &CarLimits,
    did: &Did,
    key: &PublicKey,
    want: impl Fn(&str) -> bool,
) -> Result<VerifiedRepo, VerifyError> {
    let car = car::read_car(car_bytes, limits)?;
    let root = *car.roots.first().ok_or(VerifyError::NoRoot)?;
    let bytes = car
        .blocks
        .get(&root)
        .ok_or(VerifyError::MissingBlock(root))?;
    let commit = Commit::decode(bytes)?;
    if &commit.did != did {
        return Err(VerifyError::WrongDid {
            expected: did.clone(),
            found: commit.did,
        });
    }
    commit.verify_signature(key)?;
    let mut records = Vec::new();
    for (index, (path, cid)) in mst::walk(commit.data, &car.blocks)?.into_iter().enumerate() {
        let Some((collection, rkey)) = split_path(&path) else {
            return Err(VerifyError::BadOp {
                index,
                reason: format!("bad MST key {path:?}"),
            });
        };
        if !want(collection.as_str()) {
            continue;
        }
        let bytes = car.blocks.get(&cid).ok_or(VerifyError::MissingBlock(cid))?;
        records.push(RepoRecord {
            collection,
            rkey,
            cid,
            bytes: bytes.to_vec(),
        });
    }
    Ok(VerifiedRepo {
        state: RepoState {
            rev: commit.rev,
            data: commit.data,
        },
        records,
    })
}
