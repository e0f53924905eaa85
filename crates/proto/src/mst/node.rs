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
pub fn encode_node(node: &Node) -> Vec<u8> {
    let parts: Vec<(&str, Cid, Option<Cid>)> = node
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.value, e.right))
        .collect();
    encode_parts(node.left, &parts)
}

/// Encodes node parts canonically from borrowed keys. Written by hand rather than through
/// serde: the shape is fixed, the key order is known (`e` < `l`; `k` < `p` < `t` < `v`), and
/// re-encoding edited nodes is most of the cost of an inversion. A unit test checks it against
/// the serde encoder.
pub(super) fn encode_parts(left: Option<Cid>, entries: &[(&str, Cid, Option<Cid>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + entries.len() * 96);
    out.extend_from_slice(&[0xa2, 0x61, b'e']);
    cbor::write_head(&mut out, 4, entries.len() as u64);
    let mut prev = "";
    for (key, v, t) in entries {
        let p = common_prefix_len(prev, key);
        let suffix = &key.as_bytes()[p..];
        out.extend_from_slice(&[0xa4, 0x61, b'k']);
        cbor::write_head(&mut out, 2, suffix.len() as u64);
        out.extend_from_slice(suffix);
        out.extend_from_slice(&[0x61, b'p']);
        cbor::write_head(&mut out, 0, p as u64);
        out.extend_from_slice(&[0x61, b't']);
        write_link(&mut out, t.as_ref());
        out.extend_from_slice(&[0x61, b'v']);
        write_link(&mut out, Some(v));
        prev = key;
    }
    out.extend_from_slice(&[0x61, b'l']);
    write_link(&mut out, left.as_ref());
    out
}

fn write_link(out: &mut Vec<u8>, cid: Option<&Cid>) {
    match cid {
        Some(c) => cbor::write_cid(out, c),
        None => out.push(0xf6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The serde form of a node, to check the hand encoder against.
    fn serde_encode(left: Option<Cid>, entries: &[(&str, Cid, Option<Cid>)]) -> Vec<u8> {
        let mut prev = "";
        let mut e = Vec::new();
        for (key, v, t) in entries {
            let p = common_prefix_len(prev, key);
            e.push(EntryData {
                p: p as u64,
                k: ByteBuf::from(key.as_bytes()[p..].to_vec()),
                v: *v,
                t: *t,
            });
            prev = key;
        }
        cbor::encode(&NodeData { l: left, e }).unwrap()
    }

    #[test]
    fn hand_encoder_matches_serde() {
        let a = cbor::cid_for_cbor(b"a");
        let b = cbor::cid_for_cbor(b"b");
        let long = "x".repeat(300);
        let keys = [
            "app.bsky.feed.post/1",
            "app.bsky.feed.post/2",
            long.as_str(),
        ];
        type Parts<'a> = Vec<(&'a str, Cid, Option<Cid>)>;
        let cases: Vec<(Option<Cid>, Parts<'_>)> = vec![
            (None, vec![]),
            (Some(a), vec![]),
            (None, vec![(keys[0], a, None)]),
            (
                Some(b),
                vec![
                    (keys[0], a, Some(b)),
                    (keys[1], b, None),
                    (keys[2], a, Some(a)),
                ],
            ),
        ];
        for (left, entries) in &cases {
            let bytes = encode_parts(*left, entries);
            assert_eq!(bytes, serde_encode(*left, entries));
        }
    }
}
