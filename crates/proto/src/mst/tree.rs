//! The editable, lazily loaded MST: nodes are decoded only when an operation reaches them, and
//! untouched subtrees stay CID stubs, so a `#commit` slice (changed nodes plus covering proofs)
//! is enough to edit the tree and recompute its root.
//!
//! Edits keep the tree canonical the way the reference implementations do: inserting a key
//! splits the subtree of the gap it lands in, removing one merges the subtrees on its two sides,
//! the root grows a layer at a time to the new key's height and is trimmed back after removals.

use cid::Cid;

use super::node::{Node, decode_node, encode_parts as encode};
use super::{MAX_KEY_LEN, MstError, key_height};
use crate::car::BlockMap;
use crate::cbor;

/// A subtree pointer: not yet loaded, or loaded (and maybe edited).
enum Sub {
    Stub(Cid),
    Loaded(Box<TNode>),
}

/// A loaded node. `cid` is its CID while it is unchanged since it was loaded or sealed.
struct TNode {
    layer: u8,
    cid: Option<Cid>,
    left: Option<Sub>,
    entries: Vec<TEntry>,
}

struct TEntry {
    key: String,
    value: Cid,
    right: Option<Sub>,
}

type Bound = Option<String>;

impl TNode {
    fn empty(layer: u8) -> Box<TNode> {
        Box::new(TNode {
            layer,
            cid: None,
            left: None,
            entries: Vec::new(),
        })
    }

    /// The subtree slot before entry `i` (`left` for 0, else the right of entry `i - 1`).
    fn gap_mut(&mut self, i: usize) -> &mut Option<Sub> {
        match i.checked_sub(1).and_then(|j| self.entries.get_mut(j)) {
            Some(e) => &mut e.right,
            None => &mut self.left,
        }
    }

    /// The exclusive key range of gap `i`, given the node's own range.
    fn gap_bounds(&self, i: usize, lo: Option<&str>, hi: Option<&str>) -> (Bound, Bound) {
        let glo = match i.checked_sub(1) {
            Some(j) => self.entries.get(j).map(|e| e.key.clone()),
            None => lo.map(str::to_owned),
        };
        let ghi = match self.entries.get(i) {
            Some(e) => Some(e.key.clone()),
            None => hi.map(str::to_owned),
        };
        (glo, ghi)
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|e| e.key.as_str().cmp(key))
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.left.is_none()
    }
}

/// An MST being read or edited. Built empty ([`Mst::new`]) or over blocks ([`Mst::load`]).
pub struct Mst<'b> {
    blocks: Option<&'b BlockMap>,
    root: Option<Box<TNode>>,
    poisoned: bool,
}

impl Default for Mst<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'b> Mst<'b> {
    /// An empty tree with no backing blocks.
    pub fn new() -> Self {
        Mst {
            blocks: None,
            root: None,
            poisoned: false,
        }
    }

    /// The tree at `root`, reading nodes from `blocks` only as operations reach them. The root
    /// block itself must be present.
    pub fn load(root: Cid, blocks: &'b BlockMap) -> Result<Self, MstError> {
        let mut tree = Mst {
            blocks: Some(blocks),
            root: None,
            poisoned: false,
        };
        if let Some((layer, node)) = load_root(root, blocks)? {
            tree.root = Some(to_tnode(root, layer, node));
        }
        Ok(tree)
    }

    /// The value of `key`, loading the nodes on its path.
    pub fn get(&mut self, key: &str) -> Result<Option<Cid>, MstError> {
        let blocks = self.blocks;
        let h = key_height(key);
        self.guard(|root| match root {
            None => Ok(None),
            Some(node) => get_in(blocks, node, key, h, None, None),
        })
    }

    /// Sets `key` to `value`; returns the previous value, if any.
    pub fn insert(&mut self, key: &str, value: Cid) -> Result<Option<Cid>, MstError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(MstError::InvalidKey);
        }
        let blocks = self.blocks;
        let h = key_height(key);
        self.guard(|root| {
            let mut node = match root.take() {
                None => TNode::empty(h),
                Some(n) => n,
            };
            // Grow the root one empty layer at a time up to the key's height.
            while node.layer < h {
                let layer = node.layer + 1;
                let below = Some(Sub::Loaded(node));
                node = TNode::empty(layer);
                node.left = below;
            }
            let r = insert_in(blocks, &mut node, key, h, value, None, None);
            *root = Some(node);
            r
        })
    }

    /// Removes `key`; returns its value, or `None` when it was absent.
    pub fn remove(&mut self, key: &str) -> Result<Option<Cid>, MstError> {
        let blocks = self.blocks;
        let h = key_height(key);
        self.guard(|root| {
            let Some(node) = root.as_mut() else {
                return Ok(None);
            };
            let r = remove_in(blocks, node, key, h, None, None)?;
            if r.is_some() {
                trim_top(blocks, root)?;
            }
            Ok(r)
        })
    }

    /// The root CID (re-encoding only edited nodes).
    pub fn root(&mut self) -> Result<Cid, MstError> {
        self.seal(None)
    }

    /// The root CID; every node encoded anew (all of them for a tree built from scratch) is
    /// added to `out`.
    pub fn root_with_blocks(&mut self, out: &mut BlockMap) -> Result<Cid, MstError> {
        self.seal(Some(out))
    }

    fn seal(&mut self, mut out: Option<&mut BlockMap>) -> Result<Cid, MstError> {
        self.guard(|root| match root {
            Some(node) => seal(node, &mut out),
            None => {
                let bytes = encode(None, &[]);
                let cid = cbor::cid_for_cbor(&bytes);
                if let Some(out) = out.as_mut() {
                    out.insert(cid, bytes);
                }
                Ok(cid)
            }
        })
    }

    /// Runs an edit; a failure part-way may leave the tree half-edited, so it poisons it.
    fn guard<T>(
        &mut self,
        f: impl FnOnce(&mut Option<Box<TNode>>) -> Result<T, MstError>,
    ) -> Result<T, MstError> {
        if self.poisoned {
            return Err(MstError::Poisoned);
        }
        let r = f(&mut self.root);
        if r.is_err() {
            self.poisoned = true;
            self.root = None;
        }
        r
    }
}

/// The layer of the tree at `root`, or `None` for the empty tree.
pub(super) fn root_layer(root: Cid, blocks: &BlockMap) -> Result<Option<u8>, MstError> {
    Ok(load_root(root, blocks)?.map(|(layer, _)| layer))
}

/// The root node with its layer (its keys' height), or `None` for the empty tree. A root
/// without entries but with a subtree is not canonical: its layer would be unknowable.
fn load_root(root: Cid, blocks: &BlockMap) -> Result<Option<(u8, Node)>, MstError> {
    let bytes = blocks.get(&root).ok_or(MstError::MissingBlock(root))?;
    let node = decode_node(bytes)?;
    let layer = match node.height() {
        Some(h) => h,
        None if node.left.is_none() => return Ok(None),
        None => return Err(MstError::NonCanonicalRoot(root)),
    };
    if layer == 0 && (node.left.is_some() || node.entries.iter().any(|e| e.right.is_some())) {
        return Err(MstError::TooDeep(Some(root)));
    }
    Ok(Some((layer, node)))
}

/// Decodes the node `cid` and checks it against its place: layer `layer`, keys strictly inside
/// `(lo, hi)`, not empty (unless it is the empty root), no subtrees at layer 0.
pub(super) fn load_checked(
    blocks: &BlockMap,
    cid: Cid,
    layer: u8,
    lo: Option<&str>,
    hi: Option<&str>,
) -> Result<Node, MstError> {
    let bytes = blocks.get(&cid).ok_or(MstError::MissingBlock(cid))?;
    let node = decode_node(bytes)?;
    match node.height() {
        Some(h) if h != layer => {
            return Err(MstError::WrongHeight {
                cid,
                expected: layer,
                found: h,
            });
        }
        // A node without entries exists only to hold a lower subtree (the empty tree's root
        // is handled by `root_layer` and never loaded).
        None if node.left.is_none() => {
            return Err(MstError::EmptyNode(cid));
        }
        _ => {}
    }
    if layer == 0 && (node.left.is_some() || node.entries.iter().any(|e| e.right.is_some())) {
        return Err(MstError::TooDeep(Some(cid)));
    }
    if let (Some(first), Some(last)) = (node.entries.first(), node.entries.last())
        && (lo.is_some_and(|lo| first.key.as_str() <= lo)
            || hi.is_some_and(|hi| last.key.as_str() >= hi))
    {
        return Err(MstError::KeyOutOfRange(cid));
    }
    Ok(node)
}

fn load(
    blocks: Option<&BlockMap>,
    cid: Cid,
    layer: u8,
    lo: Option<&str>,
    hi: Option<&str>,
) -> Result<Box<TNode>, MstError> {
    let blocks = blocks.ok_or(MstError::MissingBlock(cid))?;
    let node = load_checked(blocks, cid, layer, lo, hi)?;
    Ok(to_tnode(cid, layer, node))
}

/// A decoded node as an editable one, its subtrees as stubs.
fn to_tnode(cid: Cid, layer: u8, node: Node) -> Box<TNode> {
    Box::new(TNode {
        layer,
        cid: Some(cid),
        left: node.left.map(Sub::Stub),
        entries: node
            .entries
            .into_iter()
            .map(|e| TEntry {
                key: e.key,
                value: e.value,
                right: e.right.map(Sub::Stub),
            })
            .collect(),
    })
}

/// A subtree as a loaded node (loading it if it is a stub).
fn materialize(
    blocks: Option<&BlockMap>,
    sub: Sub,
    layer: u8,
    lo: Option<&str>,
    hi: Option<&str>,
) -> Result<Box<TNode>, MstError> {
    match sub {
        Sub::Loaded(n) => Ok(n),
        Sub::Stub(cid) => load(blocks, cid, layer, lo, hi),
    }
}

/// The layer below `layer`; a subtree under layer 0 is malformed.
fn below(node: &TNode) -> Result<u8, MstError> {
    node.layer.checked_sub(1).ok_or(MstError::TooDeep(node.cid))
}

fn get_in(
    blocks: Option<&BlockMap>,
    node: &mut TNode,
    key: &str,
    h: u8,
    lo: Option<&str>,
    hi: Option<&str>,
) -> Result<Option<Cid>, MstError> {
    if h > node.layer {
        return Ok(None);
    }
    let i = match node.find(key) {
        Ok(i) => return Ok(Some(node.entries[i].value)),
        Err(i) => i,
    };
    if h == node.layer {
        return Ok(None);
    }
    let (glo, ghi) = node.gap_bounds(i, lo, hi);
    let layer = below(node)?;
    let slot = node.gap_mut(i);
    let Some(sub) = slot.take() else {
        return Ok(None);
    };
    let mut child = materialize(blocks, sub, layer, glo.as_deref(), ghi.as_deref())?;
    let r = get_in(blocks, &mut child, key, h, glo.as_deref(), ghi.as_deref());
    *slot = Some(Sub::Loaded(child));
    r
}

fn insert_in(
    blocks: Option<&BlockMap>,
    node: &mut TNode,
    key: &str,
    h: u8,
    value: Cid,
    lo: Option<&str>,
    hi: Option<&str>,
) -> Result<Option<Cid>, MstError> {
    let i = match node.find(key) {
        Ok(i) => {
            let old = node.entries[i].value;
            if old != value {
                node.entries[i].value = value;
                node.cid = None;
            }
            return Ok(Some(old));
        }
        Err(i) => i,
    };
    let (glo, ghi) = node.gap_bounds(i, lo, hi);
    if h == node.layer {
        // The key lands in gap i: split that gap's subtree around it.
        let gap = node.gap_mut(i).take();
        let (a, b) = match gap {
            None => (None, None),
            Some(sub) => {
                let layer = below(node)?;
                split(blocks, sub, layer, key, glo.as_deref(), ghi.as_deref())?
            }
        };
        *node.gap_mut(i) = a;
        node.entries.insert(
            i,
            TEntry {
                key: key.to_owned(),
                value,
                right: b,
            },
        );
        node.cid = None;
        return Ok(None);
    }
    // h < layer: descend into gap i, creating empty intermediate nodes as needed.
    let layer = below(node)?;
    let slot = node.gap_mut(i);
    let mut child = match slot.take() {
        None => TNode::empty(layer),
        Some(sub) => materialize(blocks, sub, layer, glo.as_deref(), ghi.as_deref())?,
    };
    let r = insert_in(
        blocks,
        &mut child,
        key,
        h,
        value,
        glo.as_deref(),
        ghi.as_deref(),
    );
    let changed = child.cid.is_none();
    *slot = Some(Sub::Loaded(child));
    if changed {
        node.cid = None;
    }
    r
}

/// Splits a subtree around `key` (which is not in it) into the parts below and above it.
fn split(
    blocks: Option<&BlockMap>,
    sub: Sub,
    layer: u8,
    key: &str,
    lo: Option<&str>,
    hi: Option<&str>,
) -> Result<(Option<Sub>, Option<Sub>), MstError> {
    let mut node = materialize(blocks, sub, layer, lo, hi)?;
    // Keys here have the layer's height, below the key's: the key cannot be among them.
    let i = match node.find(key) {
        Ok(_) => return Err(MstError::UnsortedKeys),
        Err(i) => i,
    };
    let (glo, ghi) = node.gap_bounds(i, lo, hi);
    let (a, b) = match node.gap_mut(i).take() {
        None => (None, None),
        Some(child) => {
            let below = below(&node)?;
            split(blocks, child, below, key, glo.as_deref(), ghi.as_deref())?
        }
    };
    let upper = node.entries.split_off(i);
    *node.gap_mut(i) = a;
    node.cid = None;
    let right = Box::new(TNode {
        layer,
        cid: None,
        left: b,
        entries: upper,
    });
    Ok((prune(node), prune(right)))
}

/// A node as a subtree pointer, or nothing when it holds nothing.
fn prune(node: Box<TNode>) -> Option<Sub> {
    if node.is_empty() {
        None
    } else {
        Some(Sub::Loaded(node))
    }
}

fn remove_in(
    blocks: Option<&BlockMap>,
    node: &mut TNode,
    key: &str,
    h: u8,
    lo: Option<&str>,
    hi: Option<&str>,
) -> Result<Option<Cid>, MstError> {
    if h > node.layer {
        return Ok(None);
    }
    match node.find(key) {
        Ok(i) => {
            // Joining the subtrees on both sides of the removed key.
            let removed = node.entries.remove(i);
            let (glo, ghi) = node.gap_bounds(i, lo, hi);
            let left = node.gap_mut(i).take();
            let merged = match (left, removed.right) {
                (None, r) => r,
                (l, None) => l,
                (Some(l), Some(r)) => {
                    let layer = below(node)?;
                    Some(merge(
                        blocks,
                        l,
                        r,
                        layer,
                        glo.as_deref(),
                        &removed.key,
                        ghi.as_deref(),
                    )?)
                }
            };
            *node.gap_mut(i) = merged;
            node.cid = None;
            Ok(Some(removed.value))
        }
        Err(_) if h == node.layer => Ok(None),
        Err(i) => {
            let (glo, ghi) = node.gap_bounds(i, lo, hi);
            let layer = below(node)?;
            let slot = node.gap_mut(i);
            let Some(sub) = slot.take() else {
                return Ok(None);
            };
            let mut child = materialize(blocks, sub, layer, glo.as_deref(), ghi.as_deref())?;
            let r = remove_in(blocks, &mut child, key, h, glo.as_deref(), ghi.as_deref())?;
            let emptied = child.is_empty();
            *slot = if emptied {
                None
            } else {
                Some(Sub::Loaded(child))
            };
            if r.is_some() {
                node.cid = None;
            }
            Ok(r)
        }
    }
}

/// Joins two adjacent subtrees of one layer: `a` holds keys in `(lo, mid)`, `b` in `(mid, hi)`.
/// Only the facing spines (right edge of `a`, left edge of `b`) are loaded.
fn merge(
    blocks: Option<&BlockMap>,
    a: Sub,
    b: Sub,
    layer: u8,
    lo: Option<&str>,
    mid: &str,
    hi: Option<&str>,
) -> Result<Sub, MstError> {
    let mut an = materialize(blocks, a, layer, lo, Some(mid))?;
    let mut bn = materialize(blocks, b, layer, Some(mid), hi)?;
    let last = an.entries.len();
    let inner_lo = an
        .entries
        .last()
        .map(|e| e.key.clone())
        .or(lo.map(str::to_owned));
    let inner_hi = bn
        .entries
        .first()
        .map(|e| e.key.clone())
        .or(hi.map(str::to_owned));
    let joined = match (an.gap_mut(last).take(), bn.left.take()) {
        (None, r) => r,
        (l, None) => l,
        (Some(l), Some(r)) => {
            let below = below(&an)?;
            Some(merge(
                blocks,
                l,
                r,
                below,
                inner_lo.as_deref(),
                mid,
                inner_hi.as_deref(),
            )?)
        }
    };
    *an.gap_mut(last) = joined;
    an.entries.append(&mut bn.entries);
    an.cid = None;
    Ok(Sub::Loaded(an))
}

/// After removals, drops root layers that hold no entries (a canonical root has entries).
fn trim_top(blocks: Option<&BlockMap>, root: &mut Option<Box<TNode>>) -> Result<(), MstError> {
    while let Some(node) = root.as_mut() {
        if !node.entries.is_empty() {
            break;
        }
        match node.left.take() {
            None => *root = None,
            Some(sub) => {
                let layer = below(node)?;
                *root = Some(materialize(blocks, sub, layer, None, None)?);
            }
        }
    }
    Ok(())
}

/// Encodes every edited node under (and including) `node`, returning its CID.
fn seal(node: &mut TNode, out: &mut Option<&mut BlockMap>) -> Result<Cid, MstError> {
    if let Some(cid) = node.cid {
        return Ok(cid);
    }
    let left = seal_sub(&mut node.left, out)?;
    let mut rights = Vec::with_capacity(node.entries.len());
    for e in &mut node.entries {
        rights.push(seal_sub(&mut e.right, out)?);
    }
    let parts: Vec<(&str, Cid, Option<Cid>)> = node
        .entries
        .iter()
        .zip(rights)
        .map(|(e, r)| (e.key.as_str(), e.value, r))
        .collect();
    let bytes = encode(left, &parts);
    let cid = cbor::cid_for_cbor(&bytes);
    if let Some(out) = out.as_deref_mut() {
        out.insert(cid, bytes);
    }
    node.cid = Some(cid);
    Ok(cid)
}

fn seal_sub(
    slot: &mut Option<Sub>,
    out: &mut Option<&mut BlockMap>,
) -> Result<Option<Cid>, MstError> {
    match slot {
        None => Ok(None),
        Some(Sub::Stub(cid)) => Ok(Some(*cid)),
        Some(Sub::Loaded(n)) => seal(n, out).map(Some),
    }
}
