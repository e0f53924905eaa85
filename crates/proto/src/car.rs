//! A bounded CAR v1 reader (and a writer for tests and forgeries).
//!
//! CAR v1 = varint-prefixed DAG-CBOR header `{version: 1, roots: [CID]}`, then sections of
//! varint length + binary CID + block bytes. Every size is checked against [`CarLimits`] before
//! anything of that size is allocated, and every block must hash to its CID, so a `BlockMap`
//! that comes out of [`read_car`] holds only authentic content.

use std::collections::HashMap;

use cid::Cid;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::cbor::{self, CborError, DAG_CBOR, Limits, RAW, SHA2_256};

/// Bounds on one CAR file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarLimits {
    /// Maximum size of the whole CAR.
    pub max_bytes: usize,
    /// Maximum size of one block.
    pub max_block_bytes: usize,
    /// Maximum number of block sections.
    pub max_blocks: usize,
}

impl CarLimits {
    /// A `#commit` slice: at most 2,000,000 bytes, record blocks at most 1,000,000 bytes.
    pub const FIREHOSE: CarLimits = CarLimits {
        max_bytes: 2_000_000,
        max_block_bytes: 1_000_000,
        max_blocks: 10_000,
    };

    /// A whole repository from `com.atproto.sync.getRepo`, capped at `max_bytes`. A block can
    /// never be smaller than its CID, so the block count is bounded by the size as well.
    pub const fn repo(max_bytes: usize) -> CarLimits {
        CarLimits {
            max_bytes,
            max_block_bytes: 1_000_000,
            max_blocks: max_bytes / 36 + 1,
        }
    }
}

/// Why bytes are not an acceptable CAR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarError {
    /// The whole input is over the size limit.
    #[error("CAR of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    /// A section claims more bytes than one block may have.
    #[error("CAR section at byte {at} claims {len} bytes (limit {max})")]
    BlockTooLarge { at: usize, len: u64, max: usize },
    /// More block sections than the limit.
    #[error("CAR holds more than {max} blocks")]
    TooManyBlocks { max: usize },
    /// The input ends inside a varint, header, CID or block.
    #[error("CAR truncated at byte {at}")]
    Truncated { at: usize },
    /// A varint longer than 9 bytes or not in its shortest form.
    #[error("malformed varint at byte {at}")]
    BadVarint { at: usize },
    /// The header is not DAG-CBOR `{version, roots}`.
    #[error("CAR header: {0}")]
    Header(CborError),
    /// The header's version is not 1.
    #[error("CAR version {0} (only 1 is supported)")]
    Version(u64),
    /// A section's CID is not v1 / DAG-CBOR or raw / SHA2-256 with a 32-byte digest.
    #[error("unsupported CID in the section at byte {at}: {what}")]
    UnsupportedCid { at: usize, what: &'static str },
    /// A block whose bytes do not hash to its CID.
    #[error("block {cid} does not match its hash")]
    HashMismatch { cid: Cid },
}

/// Blocks by CID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockMap {
    blocks: HashMap<Cid, Vec<u8>>,
}

impl BlockMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes of a block.
    pub fn get(&self, cid: &Cid) -> Option<&[u8]> {
        self.blocks.get(cid).map(Vec::as_slice)
    }

    /// Whether the block is present.
    pub fn contains(&self, cid: &Cid) -> bool {
        self.blocks.contains_key(cid)
    }

    /// Adds a block. Not checked against the CID: tests use this to build forgeries.
    pub fn insert(&mut self, cid: Cid, bytes: Vec<u8>) {
        self.blocks.insert(cid, bytes);
    }

    /// Removes a block, returning its bytes.
    pub fn remove(&mut self, cid: &Cid) -> Option<Vec<u8>> {
        self.blocks.remove(cid)
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// All blocks, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Cid, &[u8])> {
        self.blocks.iter().map(|(c, b)| (c, b.as_slice()))
    }

    /// Moves every block of `other` into this map.
    pub fn extend(&mut self, other: BlockMap) {
        self.blocks.extend(other.blocks);
    }
}

/// A parsed CAR: its roots and its hash-checked blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Car {
    pub roots: Vec<Cid>,
    pub blocks: BlockMap,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    version: u64,
    roots: Vec<Cid>,
}

/// Parses a CAR v1, checking every size against `limits` before use and every block against
/// its CID.
pub fn read_car(bytes: &[u8], limits: &CarLimits) -> Result<Car, CarError> {
    if bytes.len() > limits.max_bytes {
        return Err(CarError::TooLarge {
            len: bytes.len(),
            max: limits.max_bytes,
        });
    }
    let mut pos = 0;
    let header_len = read_varint(bytes, &mut pos)?;
    let header_bytes = take(bytes, &mut pos, header_len)?;
    let header: Header = cbor::decode_with(
        header_bytes,
        &Limits {
            max_depth: 4,
            max_bytes: header_bytes.len(),
        },
    )
    .map_err(CarError::Header)?;
    if header.version != 1 {
        return Err(CarError::Version(header.version));
    }

    let mut blocks = BlockMap::new();
    let mut count = 0usize;
    while pos < bytes.len() {
        let at = pos;
        let section_len = read_varint(bytes, &mut pos)?;
        // The section is CID (36 bytes for the CIDs accepted here) plus the block.
        if section_len > (limits.max_block_bytes as u64).saturating_add(64) {
            return Err(CarError::BlockTooLarge {
                at,
                len: section_len,
                max: limits.max_block_bytes,
            });
        }
        count += 1;
        if count > limits.max_blocks {
            return Err(CarError::TooManyBlocks {
                max: limits.max_blocks,
            });
        }
        let section = take(bytes, &mut pos, section_len)?;
        let (cid, cid_len, digest) = read_cid(section, at)?;
        let block = &section[cid_len..];
        if block.len() > limits.max_block_bytes {
            return Err(CarError::BlockTooLarge {
                at,
                len: block.len() as u64,
                max: limits.max_block_bytes,
            });
        }
        let actual: [u8; 32] = Sha256::digest(block).into();
        if actual != digest {
            return Err(CarError::HashMismatch { cid });
        }
        if !blocks.contains(&cid) {
            blocks.insert(cid, block.to_vec());
        }
    }
    Ok(Car {
        roots: header.roots,
        blocks,
    })
}

/// Writes a CAR v1 with the given roots and every block of `blocks` (sorted by CID bytes, so
/// the output is deterministic). Blocks are written as given, unchecked.
pub fn write_car(roots: &[Cid], blocks: &BlockMap) -> Vec<u8> {
    // The header by hand, in DAG-CBOR key order ("roots" before "version"): infallible.
    let mut header = vec![0xa2, 0x65];
    header.extend_from_slice(b"roots");
    cbor::write_head(&mut header, 4, roots.len() as u64);
    for root in roots {
        cbor::write_cid(&mut header, root);
    }
    header.push(0x67);
    header.extend_from_slice(b"version");
    header.push(0x01);

    let mut out = Vec::new();
    write_varint(&mut out, header.len() as u64);
    out.extend_from_slice(&header);
    let mut sorted: Vec<(Vec<u8>, &[u8])> = blocks.iter().map(|(c, b)| (c.to_bytes(), b)).collect();
    sorted.sort();
    for (cid, block) in sorted {
        write_varint(&mut out, (cid.len() + block.len()) as u64);
        out.extend_from_slice(&cid);
        out.extend_from_slice(block);
    }
    out
}

fn write_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads an unsigned LEB128 varint (multiformats rules: at most 9 bytes, shortest form).
fn read_varint(bytes: &[u8], pos: &mut usize) -> Result<u64, CarError> {
    let at = *pos;
    let mut n: u64 = 0;
    for i in 0..9 {
        let Some(&b) = bytes.get(at + i) else {
            return Err(CarError::Truncated { at });
        };
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            // A final zero byte after the first means the encoding was padded.
            if b == 0 && i > 0 {
                return Err(CarError::BadVarint { at });
            }
            *pos = at + i + 1;
            return Ok(n);
        }
    }
    Err(CarError::BadVarint { at })
}

/// Takes `len` bytes at `pos`, failing (without allocating) when the buffer is shorter.
fn take<'a>(bytes: &'a [u8], pos: &mut usize, len: u64) -> Result<&'a [u8], CarError> {
    let at = *pos;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| at.checked_add(l))
        .filter(|&e| e <= bytes.len())
        .ok_or(CarError::Truncated { at })?;
    *pos = end;
    Ok(&bytes[at..end])
}

/// Parses the binary CID at the start of a section: v1, DAG-CBOR or raw, SHA2-256, 32 bytes.
/// Returns the CID, its encoded length and its digest.
fn read_cid(section: &[u8], at: usize) -> Result<(Cid, usize, [u8; 32]), CarError> {
    let unsupported = |what| CarError::UnsupportedCid { at, what };
    let mut pos = 0;
    if section.starts_with(&[0x12, 0x20]) {
        return Err(unsupported("CIDv0"));
    }
    let version = read_varint(section, &mut pos).map_err(|_| unsupported("bad version"))?;
    if version != 1 {
        return Err(unsupported("version is not 1"));
    }
    let codec = read_varint(section, &mut pos).map_err(|_| unsupported("bad codec"))?;
    if codec != DAG_CBOR && codec != RAW {
        return Err(unsupported("codec is neither dag-cbor nor raw"));
    }
    let hash = read_varint(section, &mut pos).map_err(|_| unsupported("bad hash code"))?;
    if hash != SHA2_256 {
        return Err(unsupported("hash is not sha2-256"));
    }
    let len = read_varint(section, &mut pos).map_err(|_| unsupported("bad digest length"))?;
    if len != 32 {
        return Err(unsupported("digest is not 32 bytes"));
    }
    let digest: [u8; 32] = section
        .get(pos..pos + 32)
        .and_then(|d| d.try_into().ok())
        .ok_or(CarError::Truncated { at })?;
    pos += 32;
    let cid = Cid::new_v1(codec, cbor::sha256_multihash(digest));
    Ok((cid, pos, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let block = cbor::encode(&"hello").unwrap();
        let cid = cbor::cid_for_cbor(&block);
        let mut blocks = BlockMap::new();
        blocks.insert(cid, block.clone());
        let car = read_car(&write_car(&[cid], &blocks), &CarLimits::FIREHOSE).unwrap();
        assert_eq!(car.roots, vec![cid]);
        assert_eq!(car.blocks.get(&cid), Some(block.as_slice()));

        let mut forged = BlockMap::new();
        forged.insert(cid, cbor::encode(&"evil").unwrap());
        assert_eq!(
            read_car(&write_car(&[cid], &forged), &CarLimits::FIREHOSE),
            Err(CarError::HashMismatch { cid })
        );
    }

    #[test]
    fn varints() {
        let mut out = Vec::new();
        write_varint(&mut out, 300);
        let mut pos = 0;
        assert_eq!(read_varint(&out, &mut pos), Ok(300));
        let mut pos = 0;
        assert_eq!(
            read_varint(&[0x80, 0x00], &mut pos),
            Err(CarError::BadVarint { at: 0 })
        );
    }
}
