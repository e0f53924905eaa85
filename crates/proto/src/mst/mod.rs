//! The ATProto Merkle Search Tree (fanout 4): key heights, node blocks, a lazily loaded tree
//! that edits partial trees (missing subtrees stay CID stubs), full walks, inclusion checks, and
//! the sync 1.1 commit inversion that proves a `#commit`'s ops against its `prevData`.
//!
//! Every tree shape comes from untrusted blocks, so loading checks each node against its place:
//! keys of exactly the layer's height, strictly inside the parent's key range, no empty inner
//! nodes, no subtrees below layer 0. Layers strictly decrease on the way down and a key's height
//! is at most 128, so recursion depth is bounded by 129 whatever the blocks say.

mod node;
mod tree;

use std::collections::HashSet;

use cid::Cid;
use sha2::{Digest, Sha256};

use crate::car::BlockMap;
use crate::cbor::CborError;

pub use node::{Entry, Node, decode_node, encode_node};
pub use tree::Mst;

/// Longest key accepted in a node (a repo path is far shorter).
pub const MAX_KEY_LEN: usize = 1024;

/// Why a tree, node or proof is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MstError {
    /// A node the operation needs is not among the blocks.
    #[error("MST block {0} is missing")]
    MissingBlock(Cid),
    /// A node block is not strict DAG-CBOR of the node shape.
    #[error("MST node does not decode: {0}")]
    NodeDecode(CborError),
    /// A prefix length longer than the previous key or not the exact shared prefix.
    #[error("MST node has a non-canonical key prefix")]
    BadPrefix,
    /// An empty, over-long or non-UTF-8 key.
    #[error("MST key is empty, longer than {MAX_KEY_LEN} bytes or not UTF-8")]
    InvalidKey,
    /// Keys in a node not strictly ascending.
    #[error("MST node keys are not strictly ascending")]
    UnsortedKeys,
    /// Keys of different heights in one node.
    #[error("MST node mixes keys of different heights")]
    MixedHeights,
    /// A node whose keys' height is not its layer.
    #[error("MST node {cid} holds keys of height {found} at layer {expected}")]
    WrongHeight { cid: Cid, expected: u8, found: u8 },
    /// A node below the root with neither entries nor a subtree.
    #[error("MST node {0} is empty")]
    EmptyNode(Cid),
    /// A root with no entries but a subtree (a canonical tree is trimmed).
    #[error("MST root {0} has no entries but a subtree")]
    NonCanonicalRoot(Cid),
    /// A subtree pointer in a layer-0 node.
    #[error("MST node {0:?} has a subtree below layer 0")]
    TooDeep(Option<Cid>),
    /// A key outside the range its parent assigns to the subtree.
    #[error("MST node {0} holds a key outside its parent's range")]
    KeyOutOfRange(Cid),
    /// The same node reached twice in one walk.
    #[error("MST node {0} is referenced twice")]
    RevisitedNode(Cid),
    /// The same key given twice to build a tree.
    #[error("duplicate MST key {0:?}")]
    DuplicateKey(String),
    /// The same path in two ops of one commit.
    #[error("path {0:?} appears in more than one op")]
    DuplicateOp(String),
    /// An op that does not hold in the tree it claims to have produced.
    #[error("{0}")]
    OpMismatch(Box<OpMismatch>),
    /// An earlier operation on this tree failed part-way; it can no longer be trusted.
    #[error("MST is unusable after an earlier error")]
    Poisoned,
}

/// Details of [`MstError::OpMismatch`] (boxed: two CIDs would make every `Result` large).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("op on {path:?} expects {expected:?} in the new tree, found {found:?}")]
pub struct OpMismatch {
    /// The op's path.
    pub path: String,
    /// What the op says the new tree holds at the path (`None` for a delete).
    pub expected: Option<Cid>,
    /// What the new tree actually holds there.
    pub found: Option<Cid>,
}

/// The MST height of a key: leading zero bits of its SHA-256, halved (fanout 4).
pub fn key_height(key: impl AsRef<[u8]>) -> u8 {
    let digest = Sha256::digest(key.as_ref());
    let mut zeros = 0u32;
    for b in digest.iter() {
        zeros += b.leading_zeros();
        if *b != 0 {
            break;
        }
    }
    // At most 256 / 2 = 128.
    (zeros / 2) as u8
}

/// Length of the common byte prefix of two keys.
pub fn common_prefix_len(a: impl AsRef<[u8]>, b: impl AsRef<[u8]>) -> usize {
    a.as_ref()
        .iter()
        .zip(b.as_ref())
        .take_while(|(x, y)| x == y)
        .count()
}

/// Builds a whole tree from entries (any order, no duplicate keys) and returns its root with
/// every node block.
pub fn compute_root(
    entries: impl IntoIterator<Item = (String, Cid)>,
) -> Result<(Cid, BlockMap), MstError> {
    let mut entries: Vec<(String, Cid)> = entries.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(MstError::DuplicateKey(w[0].0.clone()));
    }
    let mut tree = Mst::new();
    for (key, value) in &entries {
        tree.insert(key, *value)?;
    }
    let mut blocks = BlockMap::new();
    let root = tree.root_with_blocks(&mut blocks)?;
    Ok((root, blocks))
}

/// One record operation of a commit, as the firehose states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOp {
    Create { path: String, cid: Cid },
    Update { path: String, cid: Cid, prev: Cid },
    Delete { path: String, prev: Cid },
}

impl RecordOp {
    /// The record path (`collection/rkey`) the op touches.
    pub fn path(&self) -> &str {
        match self {
            RecordOp::Create { path, .. }
            | RecordOp::Update { path, .. }
            | RecordOp::Delete { path, .. } => path,
        }
    }
}

/// Sync 1.1 inversion: loads the tree at `new_root` from `blocks` (a `#commit` slice), checks
/// that every op holds in it (create/update: the path maps to the op's CID; delete: the path is
/// absent), undoes the ops and returns the root of the tree before the commit. The caller
/// compares it with the commit's `prevData`. Needs only the blocks a sync 1.1 PDS sends: the
/// changed nodes plus the covering proof of each touched key.
pub fn invert(new_root: Cid, ops: &[RecordOp], blocks: &BlockMap) -> Result<Cid, MstError> {
    let mut seen = HashSet::with_capacity(ops.len());
    for op in ops {
        if !seen.insert(op.path()) {
            return Err(MstError::DuplicateOp(op.path().to_owned()));
        }
    }
    let mut tree = Mst::load(new_root, blocks)?;
    for op in ops {
        let (expected, found) = match op {
            RecordOp::Create { path, cid } => (Some(*cid), tree.remove(path)?),
            RecordOp::Update { path, cid, prev } => (Some(*cid), tree.insert(path, *prev)?),
            RecordOp::Delete { path, prev } => (None, tree.insert(path, *prev)?),
        };
        if expected != found {
            return Err(MstError::OpMismatch(Box::new(OpMismatch {
                path: op.path().to_owned(),
                expected,
                found,
            })));
        }
    }
    tree.root()
}

/// Every `(key, value)` of the tree at `root`, in key order (a whole repo from `getRepo`).
/// Each node is visited at most once, so the work is bounded by the number of blocks.
pub fn walk(root: Cid, blocks: &BlockMap) -> Result<Vec<(String, Cid)>, MstError> {
    let mut out = Vec::new();
    let Some(layer) = tree::root_layer(root, blocks)? else {
        return Ok(out);
    };
    let mut seen = HashSet::new();
    walk_node(root, layer, None, None, blocks, &mut seen, &mut out)?;
    Ok(out)
}

fn walk_node(
    cid: Cid,
    layer: u8,
    lo: Option<&str>,
    hi: Option<&str>,
    blocks: &BlockMap,
    seen: &mut HashSet<Cid>,
    out: &mut Vec<(String, Cid)>,
) -> Result<(), MstError> {
    if !seen.insert(cid) {
        return Err(MstError::RevisitedNode(cid));
    }
    let node = tree::load_checked(blocks, cid, layer, lo, hi)?;
    let below = layer.wrapping_sub(1);
    if let Some(l) = node.left {
        let hi = node.entries.first().map(|e| e.key.as_str()).or(hi);
        walk_node(l, below, lo, hi, blocks, seen, out)?;
    }
    for (i, e) in node.entries.iter().enumerate() {
        out.push((e.key.clone(), e.value));
        if let Some(r) = e.right {
            let hi = node.entries.get(i + 1).map(|n| n.key.as_str()).or(hi);
            walk_node(r, below, Some(&e.key), hi, blocks, seen, out)?;
        }
    }
    Ok(())
}

/// The value of `key` in the tree at `root`, or `None` when the blocks prove it absent. Only
/// the nodes on the key's path are read: an inclusion (or exclusion) proof check.
pub fn get(root: Cid, key: &str, blocks: &BlockMap) -> Result<Option<Cid>, MstError> {
    let Some(mut layer) = tree::root_layer(root, blocks)? else {
        return Ok(None);
    };
    let h = key_height(key);
    let mut cid = root;
    let (mut lo, mut hi): (Option<String>, Option<String>) = (None, None);
    loop {
        let node = tree::load_checked(blocks, cid, layer, lo.as_deref(), hi.as_deref())?;
        if h > layer {
            return Ok(None);
        }
        let i = match node.entries.binary_search_by(|e| e.key.as_str().cmp(key)) {
            Ok(i) => return Ok(Some(node.entries[i].value)),
            Err(i) => i,
        };
        if h == layer {
            return Ok(None);
        }
        let next = if i == 0 {
            node.left
        } else {
            node.entries[i - 1].right
        };
        let Some(next) = next else {
            return Ok(None);
        };
        if i > 0 {
            lo = Some(node.entries[i - 1].key.clone());
        }
        if let Some(e) = node.entries.get(i) {
            hi = Some(e.key.clone());
        }
        cid = next;
        layer -= 1;
    }
}
