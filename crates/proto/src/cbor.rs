//! Strict, bounded DAG-CBOR: a pre-scan that rejects anything non-canonical or hostile before
//! serde ever sees the bytes, plus encode/decode helpers and the CID of a DAG-CBOR block.
//!
//! `serde_ipld_dagcbor` 0.6.4 (what the ATProto Rust ecosystem pins) is lenient on input: it
//! accepts indefinite lengths, non-minimal heads, unsorted keys and recurses per nesting level.
//! Hostile network bytes therefore go through [`item_len`] first: an iterative scanner with an
//! explicit, depth-bounded stack that never allocates from a length the input claims.

use cid::Cid;
use multihash::Multihash;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// The multicodec code of DAG-CBOR.
pub const DAG_CBOR: u64 = 0x71;
/// The multicodec code of raw bytes (blobs).
pub const RAW: u64 = 0x55;
/// The multihash code of SHA2-256.
pub const SHA2_256: u64 = 0x12;

/// The only CBOR tag DAG-CBOR allows: a CID.
const TAG_CID: u64 = 42;

/// Bounds on a scan: how deeply containers may nest and how many bytes one item may span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum container nesting (an array inside a map is depth 2).
    pub max_depth: usize,
    /// Maximum encoded size of one item in bytes.
    pub max_bytes: usize,
}

impl Default for Limits {
    /// Depth 64 and 5,000,000 bytes: deeper than any ATProto record needs, and the size of the
    /// largest firehose frame.
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_bytes: 5_000_000,
        }
    }
}

/// Why bytes are not one acceptable DAG-CBOR item. Offsets (`at`) are byte positions in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    /// The input ends before the item does.
    #[error("DAG-CBOR truncated at byte {at}")]
    Truncated { at: usize },
    /// Containers nest deeper than the limit.
    #[error("DAG-CBOR nests deeper than {max} levels")]
    TooDeep { max: usize },
    /// The item spans more bytes than the limit.
    #[error("DAG-CBOR item larger than {max} bytes")]
    TooLarge { max: usize },
    /// An indefinite-length string, array or map (or a stray break byte).
    #[error("indefinite-length item at byte {at} (forbidden in DAG-CBOR)")]
    IndefiniteLength { at: usize },
    /// A valid CBOR encoding that DAG-CBOR forbids because it is not the canonical one.
    #[error("non-canonical DAG-CBOR at byte {at}: {what}")]
    NonCanonical { at: usize, what: &'static str },
    /// A tag other than 42 (CID).
    #[error("CBOR tag {tag} at byte {at} (only tag 42 is allowed)")]
    BadTag { at: usize, tag: u64 },
    /// Tag 42 not followed by a byte string with the leading 0x00 multibase byte.
    #[error("malformed CID link at byte {at}")]
    BadCid { at: usize },
    /// A map key that is not a text string.
    #[error("map key at byte {at} is not a text string")]
    NonStringKey { at: usize },
    /// The same key twice in one map.
    #[error("duplicate map key at byte {at}")]
    DuplicateKey { at: usize },
    /// A text string that is not UTF-8.
    #[error("text string at byte {at} is not valid UTF-8")]
    InvalidUtf8 { at: usize },
    /// NaN or an infinity (DAG-CBOR forbids both).
    #[error("NaN or infinite float at byte {at}")]
    InvalidFloat { at: usize },
    /// A CBOR construct outside the IPLD data model (undefined, other simple values, reserved).
    #[error("unsupported CBOR at byte {at}: {what}")]
    Unsupported { at: usize, what: &'static str },
    /// Bytes left after the single item that was expected.
    #[error("{extra} trailing bytes after a {len}-byte DAG-CBOR item")]
    Trailing { len: usize, extra: usize },
    /// The scan passed but the value does not have the expected shape.
    #[error("DAG-CBOR decode: {0}")]
    Decode(String),
    /// The value cannot be represented in DAG-CBOR.
    #[error("DAG-CBOR encode: {0}")]
    Encode(String),
}

/// The byte length of the first DAG-CBOR item in `bytes`, after checking that it is strict,
/// canonical DAG-CBOR within `limits`. Bytes after the item are not looked at.
pub fn item_len(bytes: &[u8], limits: &Limits) -> Result<usize, CborError> {
    scan(bytes, limits).map(|s| s.len)
}

/// Whether the first item of `bytes` is well-formed DAG-CBOR that contains a float anywhere.
/// ATProto records forbid floats; call this after a successful decode to enforce that. Bytes
/// that do not scan report `false` (their decode fails on its own).
pub fn contains_float(bytes: &[u8]) -> bool {
    scan(bytes, &Limits::default()).is_ok_and(|s| s.has_float)
}

/// Decodes exactly one strict DAG-CBOR item (default limits), rejecting trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CborError> {
    decode_with(bytes, &Limits::default())
}

/// [`decode`] with explicit limits.
pub fn decode_with<T: DeserializeOwned>(bytes: &[u8], limits: &Limits) -> Result<T, CborError> {
    let len = item_len(bytes, limits)?;
    if len != bytes.len() {
        return Err(CborError::Trailing {
            len,
            extra: bytes.len() - len,
        });
    }
    serde_decode(bytes)
}

/// Decodes the first strict DAG-CBOR item (default limits) and returns it with the bytes after
/// it: a firehose frame is a header item followed by a body item.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8]), CborError> {
    let len = item_len(bytes, &Limits::default())?;
    let (item, rest) = bytes.split_at(len);
    Ok((serde_decode(item)?, rest))
}

/// Encodes a value as canonical DAG-CBOR (map keys sorted length-first, minimal heads).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CborError> {
    serde_ipld_dagcbor::to_vec(value).map_err(|e| CborError::Encode(e.to_string()))
}

/// The CIDv1 (DAG-CBOR codec, SHA2-256) of an encoded block.
pub fn cid_for_cbor(bytes: &[u8]) -> Cid {
    cid_for(DAG_CBOR, bytes)
}

/// The CIDv1 with SHA2-256 of `bytes` under `codec` (DAG-CBOR or raw).
pub fn cid_for(codec: u64, bytes: &[u8]) -> Cid {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    Cid::new_v1(codec, sha256_multihash(digest))
}

/// Wraps a SHA2-256 digest as a multihash. A 32-byte digest always fits the 64-byte multihash,
/// so the error arm is unreachable; it maps to the all-zero digest rather than panicking.
pub(crate) fn sha256_multihash(digest: [u8; 32]) -> Multihash<64> {
    Multihash::wrap(SHA2_256, &digest).unwrap_or_default()
}

/// Appends a CBOR head (major type and argument) in its shortest form.
pub(crate) fn write_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Appends a CID link: tag 42 over a byte string of 0x00 then the binary CID.
pub(crate) fn write_cid(out: &mut Vec<u8>, cid: &Cid) {
    let digest = cid.hash().digest();
    // Fast path for the only CIDs ATProto uses (v1, one-byte codec, SHA2-256): no allocation.
    if cid.version() == cid::Version::V1
        && (cid.codec() == DAG_CBOR || cid.codec() == RAW)
        && cid.hash().code() == SHA2_256
        && digest.len() == 32
    {
        out.extend_from_slice(&[
            0xd8,
            0x2a,
            0x58,
            37,
            0x00,
            0x01,
            cid.codec() as u8,
            0x12,
            0x20,
        ]);
        out.extend_from_slice(digest);
        return;
    }
    let bytes = cid.to_bytes();
    out.extend_from_slice(&[0xd8, 0x2a]);
    write_head(out, 2, bytes.len() as u64 + 1);
    out.push(0x00);
    out.extend_from_slice(&bytes);
}

/// Parses a binary CID that must span all of `bytes`. The common ATProto form (v1, DAG-CBOR or
/// raw, SHA2-256) is read directly; anything else goes through the `cid` crate.
pub(crate) fn read_cid_exact(bytes: &[u8]) -> Option<Cid> {
    if let [0x01, codec @ (0x71 | 0x55), 0x12, 0x20, digest @ ..] = bytes
        && let Ok(digest) = <[u8; 32]>::try_from(digest)
    {
        return Some(Cid::new_v1(u64::from(*codec), sha256_multihash(digest)));
    }
    let cid = Cid::read_bytes(bytes).ok()?;
    (cid.encoded_len() == bytes.len()).then_some(cid)
}

fn serde_decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CborError> {
    serde_ipld_dagcbor::from_slice(bytes).map_err(|e| CborError::Decode(e.to_string()))
}

/// What a scan learned about the first item.
struct Scan {
    len: usize,
    has_float: bool,
}

/// One open container on the scanner's explicit stack.
struct Frame {
    /// Items still to read: elements of an array, or keys plus values of a map.
    remaining: usize,
    is_map: bool,
    /// The previous key of a map as (start, len) into the input, for the order check.
    prev_key: Option<(usize, usize)>,
}

/// A byte cursor whose every read is checked against both the buffer and the size limit.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    max: usize,
}

impl Cursor<'_> {
    /// Claims `n` more bytes and returns where they start. A claim past the limit is `TooLarge`
    /// and one past the buffer is `Truncated`; nothing is ever allocated from `n`.
    fn take(&mut self, n: usize) -> Result<usize, CborError> {
        let start = self.pos;
        let end = start
            .checked_add(n)
            .ok_or(CborError::TooLarge { max: self.max })?;
        if end > self.max {
            return Err(CborError::TooLarge { max: self.max });
        }
        if end > self.bytes.len() {
            return Err(CborError::Truncated { at: start });
        }
        self.pos = end;
        Ok(start)
    }

    fn byte(&mut self) -> Result<u8, CborError> {
        let at = self.take(1)?;
        Ok(self.bytes[at])
    }

    /// Reads the big-endian argument of `n` bytes following a head byte.
    fn uint(&mut self, n: usize) -> Result<u64, CborError> {
        let at = self.take(n)?;
        Ok(self.bytes[at..at + n]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// Bytes not yet consumed within the buffer.
    fn left(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }
}

/// A decoded head: major type, argument, and where the head started.
struct Head {
    major: u8,
    info: u8,
    arg: u64,
    at: usize,
}

/// Reads one head, enforcing minimal argument encodings and refusing indefinite lengths.
fn read_head(c: &mut Cursor<'_>) -> Result<Head, CborError> {
    let at = c.pos;
    let ib = c.byte()?;
    let major = ib >> 5;
    let info = ib & 0x1f;
    if major == 7 {
        // Simple values and floats: the argument is not a length, so no minimality rule.
        let arg = match info {
            0..=23 => u64::from(info),
            24 => u64::from(c.byte()?),
            25 => c.uint(2)?,
            26 => c.uint(4)?,
            27 => c.uint(8)?,
            31 => return Err(CborError::IndefiniteLength { at }),
            _ => {
                return Err(CborError::Unsupported {
                    at,
                    what: "reserved additional information",
                });
            }
        };
        return Ok(Head {
            major,
            info,
            arg,
            at,
        });
    }
    let (arg, min) = match info {
        0..=23 => (u64::from(info), 0),
        24 => (u64::from(c.byte()?), 24),
        25 => (c.uint(2)?, 0x100),
        26 => (c.uint(4)?, 0x1_0000),
        27 => (c.uint(8)?, 0x1_0000_0000),
        31 => return Err(CborError::IndefiniteLength { at }),
        _ => {
            return Err(CborError::Unsupported {
                at,
                what: "reserved additional information",
            });
        }
    };
    if arg < min {
        return Err(CborError::NonCanonical {
            at,
            what: "integer or length not in its shortest form",
        });
    }
    Ok(Head {
        major,
        info,
        arg,
        at,
    })
}

/// A claimed count or length as `usize`, refused outright when it exceeds the bytes left
/// (every element needs at least `per_item` bytes), so huge claims fail before any work.
fn bounded_count(c: &Cursor<'_>, arg: u64, per_item: usize, at: usize) -> Result<usize, CborError> {
    let n = usize::try_from(arg).map_err(|_| CborError::Truncated { at })?;
    let need = n.checked_mul(per_item).ok_or(CborError::Truncated { at })?;
    if need > c.left() {
        let end = c.pos.saturating_add(need);
        if end > c.max {
            return Err(CborError::TooLarge { max: c.max });
        }
        return Err(CborError::Truncated { at });
    }
    Ok(n)
}

/// DAG-CBOR map key order: shorter keys first, then bytewise.
fn key_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn scan(bytes: &[u8], limits: &Limits) -> Result<Scan, CborError> {
    let mut c = Cursor {
        bytes,
        pos: 0,
        max: limits.max_bytes,
    };
    let mut stack: Vec<Frame> = Vec::new();
    let mut has_float = false;
    loop {
        // Inside a map, an even number of remaining items means a key comes next.
        let expect_key = stack
            .last()
            .is_some_and(|f| f.is_map && f.remaining % 2 == 0);
        let head = read_head(&mut c)?;
        if expect_key && head.major != 3 {
            return Err(CborError::NonStringKey { at: head.at });
        }
        let mut opened = false;
        match head.major {
            0 | 1 => {}
            2 | 3 => {
                let len = bounded_count(&c, head.arg, 1, head.at)?;
                let start = c.take(len)?;
                let body = &bytes[start..start + len];
                if head.major == 3 {
                    if std::str::from_utf8(body).is_err() {
                        return Err(CborError::InvalidUtf8 { at: head.at });
                    }
                    if expect_key {
                        check_key_order(bytes, &mut stack, start, len, head.at)?;
                    }
                }
            }
            4 | 5 => {
                let per_item = if head.major == 5 { 2 } else { 1 };
                let n = bounded_count(&c, head.arg, per_item, head.at)?;
                if n > 0 {
                    if stack.len() >= limits.max_depth {
                        return Err(CborError::TooDeep {
                            max: limits.max_depth,
                        });
                    }
                    stack.push(Frame {
                        remaining: n * per_item,
                        is_map: head.major == 5,
                        prev_key: None,
                    });
                    opened = true;
                } else if stack.len() >= limits.max_depth {
                    // An empty container still counts as one level.
                    return Err(CborError::TooDeep {
                        max: limits.max_depth,
                    });
                }
            }
            6 => {
                if head.arg != TAG_CID {
                    return Err(CborError::BadTag {
                        at: head.at,
                        tag: head.arg,
                    });
                }
                // A CID: a byte string holding 0x00 then the binary CID. Scanned here in full,
                // so the tag and its content complete as one item.
                let inner = read_head(&mut c)?;
                if inner.major != 2 {
                    return Err(CborError::BadCid { at: head.at });
                }
                let len = bounded_count(&c, inner.arg, 1, inner.at)?;
                let start = c.take(len)?;
                if len < 2 || bytes[start] != 0 {
                    return Err(CborError::BadCid { at: head.at });
                }
            }
            _ => match head.info {
                20..=22 => {}
                27 => {
                    let f = f64::from_bits(head.arg);
                    if !f.is_finite() {
                        return Err(CborError::InvalidFloat { at: head.at });
                    }
                    has_float = true;
                }
                25 | 26 => {
                    return Err(CborError::NonCanonical {
                        at: head.at,
                        what: "float not encoded as 64-bit",
                    });
                }
                23 => {
                    return Err(CborError::Unsupported {
                        at: head.at,
                        what: "undefined",
                    });
                }
                _ => {
                    return Err(CborError::Unsupported {
                        at: head.at,
                        what: "simple value outside false/true/null",
                    });
                }
            },
        }
        if opened {
            continue;
        }
        // One item finished: count it against its container, closing containers that fill up.
        loop {
            match stack.last_mut() {
                None => {
                    return Ok(Scan {
                        len: c.pos,
                        has_float,
                    });
                }
                Some(top) => {
                    top.remaining -= 1;
                    if top.remaining == 0 {
                        stack.pop();
                    } else {
                        break;
                    }
                }
            }
        }
    }
}

/// Checks a new map key against the previous one in the same map: strictly ascending in
/// DAG-CBOR order, which also rules out duplicates.
fn check_key_order(
    bytes: &[u8],
    stack: &mut [Frame],
    start: usize,
    len: usize,
    at: usize,
) -> Result<(), CborError> {
    let Some(top) = stack.last_mut() else {
        return Ok(());
    };
    if let Some((ps, pl)) = top.prev_key {
        match key_order(&bytes[ps..ps + pl], &bytes[start..start + len]) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => return Err(CborError::DuplicateKey { at }),
            std::cmp::Ordering::Greater => {
                return Err(CborError::NonCanonical {
                    at,
                    what: "map keys not in DAG-CBOR order",
                });
            }
        }
    }
    top.prev_key = Some((start, len));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_and_containers() {
        let l = Limits::default();
        assert_eq!(item_len(&[0x01, 0xff], &l), Ok(1));
        assert_eq!(item_len(&[0x82, 0x01, 0x02], &l), Ok(3));
        assert_eq!(item_len(&[0xa1, 0x61, b'a', 0x80], &l), Ok(4));
        assert_eq!(item_len(&[0x80], &l), Ok(1));
    }

    #[test]
    fn rejects_non_minimal_and_indefinite() {
        let l = Limits::default();
        assert!(matches!(
            item_len(&[0x18, 0x01], &l),
            Err(CborError::NonCanonical { .. })
        ));
        assert!(matches!(
            item_len(&[0x9f, 0xff], &l),
            Err(CborError::IndefiniteLength { .. })
        ));
        assert!(matches!(
            item_len(&[0xc1, 0x00], &l),
            Err(CborError::BadTag { tag: 1, .. })
        ));
    }

    #[test]
    fn rejects_unsorted_and_duplicate_keys() {
        let l = Limits::default();
        // {"b": 1, "a": 2}
        let unsorted = [0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02];
        assert!(matches!(
            item_len(&unsorted, &l),
            Err(CborError::NonCanonical { .. })
        ));
        let dup = [0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02];
        assert!(matches!(
            item_len(&dup, &l),
            Err(CborError::DuplicateKey { .. })
        ));
    }

    #[test]
    fn cid_fast_paths_match_the_cid_crate() {
        for cid in [cid_for_cbor(b"x"), cid_for(RAW, b"y")] {
            let mut out = Vec::new();
            write_cid(&mut out, &cid);
            let mut slow = vec![0xd8, 0x2a, 0x58, 37, 0x00];
            slow.extend_from_slice(&cid.to_bytes());
            assert_eq!(out, slow);
            assert_eq!(read_cid_exact(&cid.to_bytes()), Some(cid));
            let mut long = cid.to_bytes();
            long.push(0);
            assert_eq!(read_cid_exact(&long), None);
        }
        // Another hash function still parses through the slow path.
        let other = Cid::new_v1(DAG_CBOR, Multihash::wrap(0x13, &[7; 64]).unwrap());
        assert_eq!(read_cid_exact(&other.to_bytes()), Some(other));
        let mut out = Vec::new();
        write_cid(&mut out, &other);
        assert_eq!(&out[5..], other.to_bytes().as_slice());
    }

    #[test]
    fn huge_claims_fail_without_allocating() {
        let l = Limits::default();
        let claim = [0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            item_len(&claim, &l),
            Err(CborError::TooLarge { .. })
        ));
        let arr = [0x9b, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01];
        assert!(item_len(&arr, &l).is_err());
    }
}
