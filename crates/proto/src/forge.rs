//! A repo that writes its own signed commits and `#commit` frames: test and benchmark input.
//!
//! It builds what a PDS would send — a version-3 commit signed with a real key, a CAR slice
//! holding exactly the blocks a sync v1.1 consumer needs to invert the ops, and the frame
//! around it — so tests can mutate one field at a time and see which error comes out.
//! Compiled only with the `forge` feature; pure like the rest of the crate.

use std::collections::BTreeMap;

use cid::Cid;
use serde::Serialize;

use crate::car::{self, BlockMap};
use crate::cbor;
use crate::commit::{Commit, UnsignedCommit};
use crate::crypto::SigningKey;
use crate::frame::{CommitEvent, RepoOp};
use crate::mst::{self, MstError, RecordOp};
use crate::syntax::{Did, Tid};

/// One write to apply.
#[derive(Debug, Clone)]
pub enum Write {
    /// Create or replace the record at `path` with these DAG-CBOR bytes.
    Put {
        /// `collection/rkey`.
        path: String,
        /// The record, DAG-CBOR encoded.
        record: Vec<u8>,
    },
    /// Delete the record at `path`.
    Delete {
        /// `collection/rkey`.
        path: String,
    },
}

/// A repo under test: its key, its records and its last commit.
pub struct ForgeRepo {
    /// The repo's DID.
    pub did: Did,
    key: SigningKey,
    records: BTreeMap<String, (Cid, Vec<u8>)>,
    clock: u64,
    head: Option<(Tid, Cid)>,
    seq: i64,
    last_commit: Option<(Cid, Vec<u8>)>,
}

/// Why forging failed (only on internal inconsistencies: forging valid input cannot fail).
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// Building or inverting the tree failed.
    #[error("MST: {0}")]
    Mst(#[from] MstError),
    /// Encoding failed.
    #[error("CBOR: {0}")]
    Cbor(#[from] cbor::CborError),
    /// Writing the commit failed.
    #[error("commit: {0}")]
    Commit(#[from] crate::commit::CommitError),
}

/// The commit event as sent on the wire (the decoder's type only deserializes).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireCommit {
    /// Stream sequence number.
    pub seq: i64,
    /// Deprecated; always false.
    pub rebase: bool,
    /// Deprecated; false unless a test says otherwise.
    pub too_big: bool,
    /// The repo.
    pub repo: String,
    /// The commit CID.
    pub commit: Cid,
    /// The commit rev.
    pub rev: String,
    /// The previous rev.
    pub since: Option<String>,
    /// The CAR slice.
    #[serde(with = "serde_bytes")]
    pub blocks: Vec<u8>,
    /// The ops.
    pub ops: Vec<WireOp>,
    /// Blob CIDs; always empty here.
    pub blobs: Vec<Cid>,
    /// The previous MST root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_data: Option<Cid>,
    /// Broadcast time.
    pub time: String,
}

/// One op on the wire.
#[derive(Debug, Clone, Serialize)]
pub struct WireOp {
    /// create, update, delete.
    pub action: String,
    /// `collection/rkey`.
    pub path: String,
    /// New CID, or null.
    pub cid: Option<Cid>,
    /// Old CID, for updates and deletes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev: Option<Cid>,
}

#[derive(Serialize)]
struct Header<'a> {
    op: i64,
    t: &'a str,
}

impl WireCommit {
    /// The frame: header then body.
    pub fn frame(&self) -> Vec<u8> {
        frame_of("#commit", self)
    }

    /// The event as the decoder sees it: a round trip through the wire form, exactly what a
    /// consumer would get. `None` only if the forge wrote something the decoder refuses.
    pub fn decoded(&self) -> Option<CommitEvent> {
        match crate::frame::decode_frame(&self.frame()) {
            Ok(crate::frame::Frame::Commit(c)) => Some(*c),
            _ => None,
        }
    }
}

/// Encodes `{op: 1, t}` + body.
pub fn frame_of<T: Serialize>(t: &str, body: &T) -> Vec<u8> {
    let mut out = cbor::encode(&Header { op: 1, t }).unwrap_or_default();
    out.extend(cbor::encode(body).unwrap_or_default());
    out
}

/// A forged commit with everything a test may want to tamper with.
#[derive(Debug, Clone)]
pub struct Forged {
    /// The event as sent.
    pub wire: WireCommit,
    /// Every block of the slice, for building variants.
    pub blocks: BlockMap,
    /// The slice's root.
    pub root: Cid,
}

impl Forged {
    /// Re-packs the slice from `blocks` (after a test removed or replaced some).
    pub fn repack(&mut self) {
        self.wire.blocks = car::write_car(&[self.root], &self.blocks);
    }
}

impl ForgeRepo {
    /// An empty repo owned by `did`, signing with `key`.
    pub fn new(did: Did, key: SigningKey) -> Self {
        Self {
            did,
            key,
            records: BTreeMap::new(),
            // 2026-01-01T00:00:00Z in microseconds: revs in the past, so "now" checks pass.
            clock: 1_767_225_600_000_000,
            head: None,
            seq: 0,
            last_commit: None,
        }
    }

    /// The current head (rev, data root), if any commit was made.
    pub fn head(&self) -> Option<&(Tid, Cid)> {
        self.head.as_ref()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn next_rev(&mut self) -> Tid {
        self.clock += 1_000;
        Tid::from_parts(self.clock, 7)
    }

    fn tree(&self) -> Result<(Cid, BlockMap), MstError> {
        mst::compute_root(self.records.iter().map(|(k, (c, _))| (k.clone(), *c)))
    }

    /// Applies writes and returns the commit a PDS would emit for them.
    pub fn commit(&mut self, writes: &[Write]) -> Result<Forged, ForgeError> {
        let prev_data = match self.head {
            Some(_) => Some(self.tree()?.0),
            None => None,
        };
        let since = self.head.as_ref().map(|(r, _)| r.to_string());
        let mut ops = Vec::new();
        let mut rops = Vec::new();
        let mut record_blocks = BlockMap::new();
        for w in writes {
            match w {
                Write::Put { path, record } => {
                    let cid = cbor::cid_for_cbor(record);
                    record_blocks.insert(cid, record.clone());
                    let prev = self
                        .records
                        .insert(path.clone(), (cid, record.clone()))
                        .map(|(c, _)| c);
                    ops.push(WireOp {
                        action: if prev.is_some() { "update" } else { "create" }.to_owned(),
                        path: path.clone(),
                        cid: Some(cid),
                        prev,
                    });
                    rops.push(match prev {
                        Some(prev) => RecordOp::Update {
                            path: path.clone(),
                            cid,
                            prev,
                        },
                        None => RecordOp::Create {
                            path: path.clone(),
                            cid,
                        },
                    });
                }
                Write::Delete { path } => {
                    if let Some((prev, _)) = self.records.remove(path) {
                        ops.push(WireOp {
                            action: "delete".to_owned(),
                            path: path.clone(),
                            cid: None,
                            prev: Some(prev),
                        });
                        rops.push(RecordOp::Delete {
                            path: path.clone(),
                            prev,
                        });
                    }
                }
            }
        }
        let (data, all_nodes) = self.tree()?;
        let rev = self.next_rev();
        let commit = UnsignedCommit {
            did: self.did.clone(),
            version: 3,
            data,
            rev: rev.clone(),
            prev: None,
        }
        .sign(&self.key);
        let commit_bytes = commit.encode()?;
        let commit_cid = cbor::cid_for_cbor(&commit_bytes);

        // The slice: the commit, the new records, and the MST nodes inversion reads. Start with
        // the nodes that are new in this tree and add any other node inversion asks for.
        let old_nodes = match prev_data {
            Some(_) => self.previous_nodes(&rops)?,
            None => BlockMap::new(),
        };
        let mut blocks = BlockMap::new();
        blocks.insert(commit_cid, commit_bytes.clone());
        for (cid, bytes) in record_blocks.iter() {
            blocks.insert(*cid, bytes.to_vec());
        }
        for (cid, bytes) in all_nodes.iter() {
            if old_nodes.get(cid).is_none() {
                blocks.insert(*cid, bytes.to_vec());
            }
        }
        if prev_data.is_some() {
            loop {
                match mst::invert(data, &rops, &blocks) {
                    Err(MstError::MissingBlock(cid)) => match all_nodes.get(&cid) {
                        Some(b) => blocks.insert(cid, b.to_vec()),
                        None => return Err(MstError::MissingBlock(cid).into()),
                    },
                    Err(e) => return Err(e.into()),
                    Ok(_) => break,
                }
            }
        }
        self.seq += 1;
        self.head = Some((rev.clone(), data));
        self.last_commit = Some((commit_cid, commit_bytes));
        let wire = WireCommit {
            seq: self.seq,
            rebase: false,
            too_big: false,
            repo: self.did.to_string(),
            commit: commit_cid,
            rev: rev.to_string(),
            since,
            blocks: car::write_car(&[commit_cid], &blocks),
            ops,
            blobs: Vec::new(),
            prev_data,
            time: "2026-01-01T00:00:00.000Z".to_owned(),
        };
        Ok(Forged {
            wire,
            blocks,
            root: commit_cid,
        })
    }

    /// The node blocks of the tree as it was before `rops` (undo them on a copy).
    fn previous_nodes(&self, rops: &[RecordOp]) -> Result<BlockMap, MstError> {
        let mut before: BTreeMap<String, Cid> = self
            .records
            .iter()
            .map(|(k, (c, _))| (k.clone(), *c))
            .collect();
        for op in rops.iter().rev() {
            match op {
                RecordOp::Create { path, .. } => {
                    before.remove(path);
                }
                RecordOp::Update { path, prev, .. } | RecordOp::Delete { path, prev } => {
                    before.insert(path.clone(), *prev);
                }
            }
        }
        Ok(mst::compute_root(before)?.1)
    }

    /// The whole repo as `getRepo` would serve it: the last commit, every node, every record.
    pub fn export_car(&self) -> Result<Vec<u8>, ForgeError> {
        let (_, nodes) = self.tree()?;
        let mut blocks = BlockMap::new();
        let Some((commit_cid, commit_bytes)) = &self.last_commit else {
            return Ok(car::write_car(&[], &blocks));
        };
        blocks.insert(*commit_cid, commit_bytes.clone());
        for (cid, bytes) in nodes.iter() {
            blocks.insert(*cid, bytes.to_vec());
        }
        for (cid, bytes) in self.records.values() {
            blocks.insert(*cid, bytes.clone());
        }
        Ok(car::write_car(&[*commit_cid], &blocks))
    }

    /// Signs an arbitrary commit with this repo's key (for forgeries that need a valid signature).
    pub fn sign(&self, unsigned: UnsignedCommit) -> Commit {
        unsigned.sign(&self.key)
    }
}

/// Converts a wire op to the decoder's form (for tests comparing the two).
pub fn to_repo_op(op: &WireOp) -> RepoOp {
    RepoOp {
        action: op.action.clone(),
        path: op.path.clone(),
        cid: op.cid,
        prev: op.prev,
    }
}
