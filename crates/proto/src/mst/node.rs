//! One MST node block: `{l, e: [{p, k, v, t}]}` with mandatory key prefix compression.
//!
//! Decoding checks everything a node can get wrong on its own: strict DAG-CBOR, canonical
//! prefix compression, keys strictly ascending, non-empty UTF-8 keys of bounded length, and all
//! keys of one height. Whether that height fits the node's place in the tree is the tree's check.

use super::{MAX_KEY_LEN, MstError, common_prefix_len, key_height};
use crate::cbor::{self, CborError};
use cid::Cid;

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

/// One entry as it sits in the block: prefix length, key suffix, value, right subtree.
struct RawEntry<'a> {
    p: u64,
    k: &'a [u8],
    v: Cid,
    t: Option<Cid>,
}

/// Reads the node shape straight off bytes that the strict scanner has already accepted (so
/// heads are minimal and keys canonical; the only question left is the shape). This replaces a
/// serde pass that was half the cost of an inversion; a test checks the two agree.
struct ShapeReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// Why a scanned block is not the node shape.
fn shape(what: &str) -> MstError {
    MstError::NodeDecode(CborError::Decode(format!("not an MST node: {what}")))
}

impl<'a> ShapeReader<'a> {
    fn byte(&mut self) -> Result<u8, MstError> {
        let b = *self.bytes.get(self.pos).ok_or_else(|| shape("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], MstError> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| shape("truncated"))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// A head of the given major type; returns its argument.
    fn head(&mut self, major: u8, what: &str) -> Result<u64, MstError> {
        let ib = self.byte()?;
        if ib >> 5 != major {
            return Err(shape(what));
        }
        let n = match ib & 0x1f {
            i @ 0..=23 => u64::from(i),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => return Err(shape(what)),
        };
        if n == u64::from(ib & 0x1f) {
            return Ok(n);
        }
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// A one-letter text key.
    fn key(&mut self, k: u8) -> Result<(), MstError> {
        if self.take(2)? != [0x61, k] {
            return Err(shape("unexpected map key"));
        }
        Ok(())
    }

    fn link(&mut self) -> Result<Cid, MstError> {
        if self.head(6, "expected a CID link")? != 42 {
            return Err(shape("expected a CID link"));
        }
        let n = self.head(2, "expected CID bytes")?;
        let raw = self.take(n)?;
        let (prefix, body) = raw.split_first().ok_or_else(|| shape("empty CID"))?;
        if *prefix != 0 {
            return Err(shape("CID without the 0x00 prefix"));
        }
        cbor::read_cid_exact(body).ok_or_else(|| shape("malformed CID"))
    }

    fn link_or_null(&mut self) -> Result<Option<Cid>, MstError> {
        if self.bytes.get(self.pos) == Some(&0xf6) {
            self.pos += 1;
            return Ok(None);
        }
        self.link().map(Some)
    }
}

/// `{e: [{k, p, t, v}], l}` in exactly that (canonical) key order.
fn parse_shape(bytes: &[u8]) -> Result<(Option<Cid>, Vec<RawEntry<'_>>), MstError> {
    let mut r = ShapeReader { bytes, pos: 0 };
    if r.head(5, "expected a map")? != 2 {
        return Err(shape("node map must have exactly e and l"));
    }
    r.key(b'e')?;
    let n = r.head(4, "e must be an array")?;
    // Each entry takes well over one byte, so a count the buffer cannot hold is refused.
    let n = usize::try_from(n)
        .ok()
        .filter(|n| *n <= bytes.len())
        .ok_or_else(|| shape("entry count"))?;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        if r.head(5, "entry must be a map")? != 4 {
            return Err(shape("entry must have exactly k, p, t and v"));
        }
        r.key(b'k')?;
        let klen = r.head(2, "k must be bytes")?;
        let k = r.take(klen)?;
        r.key(b'p')?;
        let p = r.head(0, "p must be an unsigned integer")?;
        r.key(b't')?;
        let t = r.link_or_null()?;
        r.key(b'v')?;
        let v = r.link()?;
        entries.push(RawEntry { p, k, v, t });
    }
    r.key(b'l')?;
    let l = r.link_or_null()?;
    if r.pos != bytes.len() {
        return Err(shape("trailing bytes"));
    }
    Ok((l, entries))
}

/// Decodes and checks one node block.
pub fn decode_node(bytes: &[u8]) -> Result<Node, MstError> {
    // Strictness first (canonical CBOR, no hostile lengths), then the fixed shape.
    cbor::item_len(
        bytes,
        &cbor::Limits {
            max_depth: 8,
            max_bytes: bytes.len(),
        },
    )
    .map_err(MstError::NodeDecode)
    .and_then(|len| {
        if len == bytes.len() {
            Ok(())
        } else {
            Err(MstError::NodeDecode(CborError::Trailing {
                len,
                extra: bytes.len() - len,
            }))
        }
    })?;
    let (left, raw) = parse_shape(bytes)?;
    let mut entries: Vec<Entry> = Vec::with_capacity(raw.len());
    let mut height = None;
    for e in raw {
        let prev = entries.last().map_or("", |p: &Entry| p.key.as_str());
        let p = usize::try_from(e.p).map_err(|_| MstError::BadPrefix)?;
        if p > prev.len() {
            return Err(MstError::BadPrefix);
        }
        let mut key = prev.as_bytes()[..p].to_vec();
        key.extend_from_slice(e.k);
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
    Ok(Node { left, entries })
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
    use serde::{Deserialize, Serialize};
    use serde_bytes::ByteBuf;

    /// The wire form of a node, as serde sees it.
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

    /// A node as plain parts: left link and (p, k, v, t) per entry.
    type Flat = (Option<Cid>, Vec<(u64, Vec<u8>, Cid, Option<Cid>)>);

    /// The serde decoding of a node, to check the shape reader against.
    fn serde_decode(bytes: &[u8]) -> Option<Flat> {
        let data: NodeData = cbor::decode(bytes).ok()?;
        Some((
            data.l,
            data.e
                .into_iter()
                .map(|e| (e.p, e.k.into_vec(), e.v, e.t))
                .collect(),
        ))
    }

    #[test]
    fn shape_reader_matches_serde_on_mutations() {
        let a = cbor::cid_for_cbor(b"a");
        let b = cbor::cid_for_cbor(b"b");
        let good = encode_parts(
            Some(a),
            &[
                ("app.bsky.feed.post/1", a, Some(b)),
                ("app.bsky.feed.post/2", b, None),
            ],
        );
        let mut agreed = 0;
        for i in 0..good.len() {
            for delta in [1u8, 0x20, 0x80] {
                let mut m = good.clone();
                m[i] = m[i].wrapping_add(delta);
                if cbor::item_len(&m, &cbor::Limits::default()) != Ok(m.len()) {
                    continue;
                }
                let ours = parse_shape(&m).ok().map(|(l, es)| {
                    (
                        l,
                        es.into_iter()
                            .map(|e| (e.p, e.k.to_vec(), e.v, e.t))
                            .collect(),
                    )
                });
                assert_eq!(ours, serde_decode(&m), "mutation at {i} by {delta}");
                agreed += 1;
            }
        }
        assert!(agreed > 10);
        let ours = parse_shape(&good).ok().map(|(l, es)| {
            (
                l,
                es.into_iter()
                    .map(|e| (e.p, e.k.to_vec(), e.v, e.t))
                    .collect::<Vec<_>>(),
            )
        });
        assert_eq!(ours, serde_decode(&good));
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
