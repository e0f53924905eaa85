//! One MST node block: `{l, e: [{p, k, v, t}]}` with mandatory key prefix compression.
//!
//! Decoding checks everything a node can get wrong on its own: strict DAG-CBOR, canonical
//! prefix compression, keys strictly ascending, non-empty UTF-8 keys of bounded length, and all
//! keys of one height. Whether that height fits the node's place in the tree is the tree's check.

use cid::Cid;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::{MAX_KEY_LEN, MstError, common_prefix_len, key_height};
use crate::cbor;

/// A decoded node: left subtree, then entries, each followed by the subtree right of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Subtree of keys below the first entry.
    pub left: Option<Cid>,
    /// Entries in ascending key order.
    pub entries: Vec<Entry>,
}

/// One key of a node, its value and the subtree between it and the next key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The full (decompressed) key.
    pub key: String,
    /// The record CID.
    pub value: Cid,
    /// Subtree of keys between this entry and the next.
    pub right: Option<Cid>,
}

impl Node {
    /// The height of the node's keys, or `None` for a node without entries.
    pub fn height(&self) -> Option<u8> {
        self.entries.first().map(|e| key_height(&e.key))
    }
}

/// The wire form of a node.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeData {
    l: Option<Cid>,
    e: Vec<EntryData>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryData {
    p: u64,
    k: ByteBuf,
    v: Cid,
    t: Option<Cid>,
}

/// Decodes and checks one node block.
pub fn decode_node(bytes: &[u8]) -> Result<Node, MstError> {
    let data: NodeData = cbor::decode_with(
        bytes,
        &cbor::Limits {
            max_depth: 8,
            max_bytes: bytes.len(),
        },
    )
    .map_err(MstError::NodeDecode)?;
    let mut entries: Vec<Entry> = Vec::with_capacity(data.e.len());
    let mut height = None;
    for e in data.e {
        let prev = entries.last().map_or("", |p: &Entry| p.key.as_str());
        let p = usize::try_from(e.p).map_err(|_| MstError::BadPrefix)?;
        if p > prev.len() {
            return Err(MstError::BadPrefix);
        }
        let mut key = prev.as_bytes()[..p].to_vec();
        key.extend_from_slice(&e.k);
        let key = String::from_utf8(key).map_err(|_| MstError::InvalidKey)?;
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(MstError::InvalidKey);
        }
        // Prefix compression is mandatory and canonical: exactly the shared prefix.
        if common_prefix_len(prev, &key) != p {
            return Err(MstError::BadPrefix);
        }
        if !entries.is_empty() && key.as_str() <= prev {
            return Err(MstError::UnsortedKeys);
        }
        let h = key_height(&key);
        if *height.get_or_insert(h) != h {
            return Err(MstError::MixedHeights);
        }
        entries.push(Entry {
            key,
            value: e.v,
            right: e.t,
        });
    }
    Ok(Node {
        left: data.l,
        entries,
    })
}

/// Encodes a node canonically (prefix compression against the previous key).
pub fn encode_node(node: &Node) -> Result<Vec<u8>, MstError> {
    let parts: Vec<(&str, Cid, Option<Cid>)> = node
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.value, e.right))
        .collect();
    encode_parts(node.left, &parts)
}

/// Encodes node parts canonically from borrowed keys.
pub(super) fn encode_parts(
    left: Option<Cid>,
    entries: &[(&str, Cid, Option<Cid>)],
) -> Result<Vec<u8>, MstError> {
    #[derive(serde::Serialize)]
    struct E<'a> {
        p: u64,
        #[serde(with = "serde_bytes")]
        k: &'a [u8],
        v: Cid,
        t: Option<Cid>,
    }
    #[derive(serde::Serialize)]
    struct N<'a> {
        l: Option<Cid>,
        e: Vec<E<'a>>,
    }
    let mut prev = "";
    let mut e = Vec::with_capacity(entries.len());
    for (key, v, t) in entries {
        let p = common_prefix_len(prev, key);
        e.push(E {
            p: p as u64,
            k: &key.as_bytes()[p..],
            v: *v,
            t: *t,
        });
        prev = key;
    }
    cbor::encode(&N { l: left, e }).map_err(MstError::Encode)
}
