//! Event-stream frames of `com.atproto.sync.subscribeRepos`: a DAG-CBOR header then a body.
//!
//! Two decoders share one header parser: [`decode_frame`] decodes a whole event, and [`route`]
//! reads only what the indexer needs to decide whether to look further (the repo, the seq, the
//! op paths), skipping the CAR slice without copying it. Unknown message types are not errors:
//! the stream is an open union and new types must pass through old consumers.

use cid::Cid;
use serde::Deserialize;

use crate::cbor::{self, CborError};
use crate::syntax::{Did, Tid};

/// Largest frame we accept: the event-stream spec caps frames at 5 MB.
pub const MAX_FRAME_BYTES: usize = 5_000_000;
/// Most ops a `#commit` may carry (the lexicon's `maxLength`).
pub const MAX_OPS: usize = 200;

/// Why a frame could not be decoded. Each is a property of the bytes alone.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The frame is over [`MAX_FRAME_BYTES`].
    #[error("frame of {0} bytes is over the 5 MB limit")]
    TooLarge(usize),
    /// The header is not valid DAG-CBOR.
    #[error("malformed frame header: {0}")]
    Header(CborError),
    /// The header's `op` is neither 1 nor -1.
    #[error("unknown frame op {0}")]
    UnknownOp(i64),
    /// A message header without its `t`.
    #[error("message frame without a type")]
    MissingType,
    /// The body is not valid DAG-CBOR or not the shape its type requires.
    #[error("malformed {kind} body: {source}")]
    Body {
        /// The message type, such as `#commit`.
        kind: &'static str,
        /// What was wrong.
        source: CborError,
    },
    /// A `#commit` with more ops than the lexicon allows.
    #[error("commit with {0} ops (at most {MAX_OPS})")]
    TooManyOps(usize),
}

#[derive(Deserialize)]
struct Header<'a> {
    op: i64,
    #[serde(borrow, default)]
    t: Option<&'a str>,
}

/// One operation of a `#commit`, as sent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RepoOp {
    /// `create`, `update` or `delete`.
    pub action: String,
    /// `<collection>/<rkey>`.
    pub path: String,
    /// The new record's CID; `null` for deletes.
    pub cid: Option<Cid>,
    /// The previous record's CID (sync 1.1), for updates and deletes.
    #[serde(default)]
    pub prev: Option<Cid>,
}

/// A `#commit` event: one signed repo commit with its CAR slice.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitEvent {
    /// Stream sequence number.
    pub seq: i64,
    /// The repo's DID.
    pub repo: Did,
    /// CID of the commit object, the CAR's root.
    pub commit: Cid,
    /// The commit's revision.
    pub rev: Tid,
    /// The rev of the previous commit of this repo, if any.
    #[serde(default)]
    pub since: Option<Tid>,
    /// CAR v1 slice: the commit, new records and changed MST nodes.
    #[serde(with = "serde_bytes")]
    pub blocks: Vec<u8>,
    /// The record operations.
    pub ops: Vec<RepoOp>,
    /// MST root of the previous commit (sync 1.1); absent on a repo's first commit.
    #[serde(default)]
    pub prev_data: Option<Cid>,
    /// Deprecated; a `true` here means the event cannot be verified inductively.
    #[serde(default)]
    pub too_big: bool,
    /// When the event was first broadcast.
    pub time: String,
}

/// A `#sync` event: the repo's current signed commit, declaring its state from now on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SyncEvent {
    /// Stream sequence number.
    pub seq: i64,
    /// The repo's DID.
    pub did: Did,
    /// CAR holding just the commit block.
    #[serde(with = "serde_bytes")]
    pub blocks: Vec<u8>,
    /// The commit's rev.
    pub rev: Tid,
    /// When the event was first broadcast.
    pub time: String,
}

/// An `#identity` event: the DID document or handle may have changed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IdentityEvent {
    /// Stream sequence number.
    pub seq: i64,
    /// The account's DID.
    pub did: Did,
    /// The handle the host believes current, unverified.
    #[serde(default)]
    pub handle: Option<String>,
    /// When the event was first broadcast.
    pub time: String,
}

/// An `#account` event: hosting status changed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AccountEvent {
    /// Stream sequence number.
    pub seq: i64,
    /// The account's DID.
    pub did: Did,
    /// Whether the host serves the account's data.
    pub active: bool,
    /// Why not, when inactive: takendown, suspended, deleted, deactivated, desynchronized, throttled.
    #[serde(default)]
    pub status: Option<String>,
    /// When the event was first broadcast.
    pub time: String,
}

/// An `#info` message from the server, such as `OutdatedCursor`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InfoEvent {
    /// The condition's name.
    pub name: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: Option<String>,
}

/// An error frame (`op: -1`); the server closes the connection after it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorFrame {
    /// The error's name, such as `FutureCursor` or `ConsumerTooSlow`.
    pub error: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: Option<String>,
}

/// A decoded frame: the closed set of things a subscriber can receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `#commit`.
    Commit(Box<CommitEvent>),
    /// `#sync`.
    Sync(SyncEvent),
    /// `#identity`.
    Identity(IdentityEvent),
    /// `#account`.
    Account(AccountEvent),
    /// `#info`.
    Info(InfoEvent),
    /// An error frame.
    Error(ErrorFrame),
    /// A message type this version does not know; to be skipped.
    Unknown(String),
}

impl Frame {
    /// The sequence number, for events that carry one.
    pub fn seq(&self) -> Option<i64> {
        match self {
            Frame::Commit(e) => Some(e.seq),
            Frame::Sync(e) => Some(e.seq),
            Frame::Identity(e) => Some(e.seq),
            Frame::Account(e) => Some(e.seq),
            Frame::Info(_) | Frame::Error(_) | Frame::Unknown(_) => None,
        }
    }
}

enum Kind<'a> {
    Message(&'a str),
    Error,
}

fn header(bytes: &[u8]) -> Result<(Kind<'_>, &[u8]), FrameError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(bytes.len()));
    }
    let len = cbor::item_len(bytes, &cbor::Limits::default()).map_err(FrameError::Header)?;
    let (head, body) = bytes.split_at(len);
    let h: Header<'_> = borrowed(head).map_err(FrameError::Header)?;
    match h.op {
        1 => Ok((Kind::Message(h.t.ok_or(FrameError::MissingType)?), body)),
        -1 => Ok((Kind::Error, body)),
        other => Err(FrameError::UnknownOp(other)),
    }
}

/// Decodes one already-scanned item into a type that may borrow from it.
fn borrowed<'a, T: Deserialize<'a>>(item: &'a [u8]) -> Result<T, CborError> {
    serde_ipld_dagcbor::from_slice(item).map_err(|e| CborError::Decode(e.to_string()))
}

/// Scans the body strictly (depth, canonical form, exactly one item), then decodes it.
fn body<'a, T: Deserialize<'a>>(kind: &'static str, bytes: &'a [u8]) -> Result<T, FrameError> {
    let err = |source| FrameError::Body { kind, source };
    let len = cbor::item_len(bytes, &cbor::Limits::default()).map_err(err)?;
    if len != bytes.len() {
        return Err(err(CborError::Trailing {
            len,
            extra: bytes.len() - len,
        }));
    }
    borrowed(bytes).map_err(err)
}

/// Decodes a whole frame.
pub fn decode_frame(bytes: &[u8]) -> Result<Frame, FrameError> {
    let (kind, rest) = header(bytes)?;
    let t = match kind {
        Kind::Error => return Ok(Frame::Error(body("error", rest)?)),
        Kind::Message(t) => t,
    };
    Ok(match t {
        "#commit" => {
            let c: CommitEvent = body("#commit", rest)?;
            if c.ops.len() > MAX_OPS {
                return Err(FrameError::TooManyOps(c.ops.len()));
            }
            Frame::Commit(Box::new(c))
        }
        "#sync" => Frame::Sync(body("#sync", rest)?),
        "#identity" => Frame::Identity(body("#identity", rest)?),
        "#account" => Frame::Account(body("#account", rest)?),
        "#info" => Frame::Info(body("#info", rest)?),
        other => Frame::Unknown(other.to_owned()),
    })
}

#[derive(Deserialize)]
struct SeqOnly {
    #[serde(default)]
    seq: Option<i64>,
}

/// The `seq` of a well-framed message whose body does not otherwise decode, so a consumer can
/// skip past it; `None` when the bytes are not even two DAG-CBOR items.
pub fn peek_seq(bytes: &[u8]) -> Option<i64> {
    let (kind, rest) = header(bytes).ok()?;
    match kind {
        Kind::Message(_) => body::<SeqOnly>("message", rest).ok()?.seq,
        Kind::Error => None,
    }
}

#[derive(Deserialize)]
struct RouteOp<'a> {
    #[serde(borrow)]
    path: &'a str,
}

#[derive(Deserialize)]
struct RouteCommit<'a> {
    seq: i64,
    #[serde(borrow)]
    repo: &'a str,
    #[serde(borrow)]
    ops: Vec<RouteOp<'a>>,
}

#[derive(Deserialize)]
struct RouteOther<'a> {
    #[serde(default)]
    seq: Option<i64>,
    #[serde(borrow, default)]
    did: Option<&'a str>,
}

/// What the cheap pass over a frame learns: enough to route it or drop it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    /// The message type (`#commit`, …), or `"error"` for an error frame.
    pub kind: &'a str,
    /// Stream sequence number, when the message has one.
    pub seq: Option<i64>,
    /// The repo or account DID, unvalidated (the full decode validates it).
    pub did: Option<&'a str>,
    /// Op paths of a `#commit`, borrowed from the frame.
    pub paths: Vec<&'a str>,
}

impl Route<'_> {
    /// Whether any op path lies in a collection under `prefix` (such as `dev.guildhall.`).
    pub fn touches(&self, prefix: &str) -> bool {
        self.paths.iter().any(|p| p.starts_with(prefix))
    }
}

/// Decodes only the header, repo/DID, seq and op paths; the CAR slice is skipped, not copied.
pub fn route(bytes: &[u8]) -> Result<Route<'_>, FrameError> {
    let (kind, rest) = header(bytes)?;
    match kind {
        Kind::Error => Ok(Route {
            kind: "error",
            seq: None,
            did: None,
            paths: Vec::new(),
        }),
        Kind::Message("#commit") => {
            let c: RouteCommit<'_> = body("#commit", rest)?;
            if c.ops.len() > MAX_OPS {
                return Err(FrameError::TooManyOps(c.ops.len()));
            }
            Ok(Route {
                kind: "#commit",
                seq: Some(c.seq),
                did: Some(c.repo),
                paths: c.ops.into_iter().map(|o| o.path).collect(),
            })
        }
        Kind::Message(t) => {
            let (seq, did) = match t {
                "#sync" | "#identity" | "#account" => {
                    let o: RouteOther<'_> = body("message", rest)?;
                    (o.seq, o.did)
                }
                _ => (None, None),
            };
            Ok(Route {
                kind: t,
                seq,
                did,
                paths: Vec::new(),
            })
        }
    }
}
