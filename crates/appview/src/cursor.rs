//! Opaque pagination cursors: a kind byte and a fixed-layout payload, hex-encoded.
//!
//! Clients must treat cursors as opaque; the server validates every one it gets back (kind,
//! length, and for search the hash of the query it was issued for), so a forged or
//! truncated cursor is a 400 `InvalidCursor`, never a wrong page or a panic.
//!
//! Search cursors carry state a client must not choose (above all the ranking instant: an
//! instant a day back would count endorsements that have expired since), so they end in an
//! HMAC-SHA256 tag under a per-instance [`CursorKey`]; a cursor whose tag does not verify is
//! refused. Keyset cursors (endorsements, capabilities) name only a position the client may
//! as well ask for directly, and are not signed.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::XrpcError;

/// Bytes of the HMAC tag kept in a search cursor (128 bits).
const TAG_LEN: usize = 16;

/// The secret search cursors are signed with. Every AppView answering for the same index
/// should share it (a cursor issued by one is then accepted by another); `serve` reads it
/// from `--cursor-key` or keeps a generated one in the database.
#[derive(Clone)]
pub struct CursorKey([u8; 32]);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

impl CursorKey {
    /// A key from its bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh random key (for one process: its cursors die with it).
    pub fn random() -> Self {
        Self(rand::random())
    }

    fn tag(&self, data: &[u8]) -> [u8; TAG_LEN] {
        let mut out = [0u8; TAG_LEN];
        // An HMAC key may have any length, so this cannot fail.
        if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) {
            mac.update(data);
            let full = mac.finalize().into_bytes();
            out.copy_from_slice(&full[..TAG_LEN]);
        }
        out
    }

    fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mut mac) => {
                mac.update(data);
                // Constant time: the comparison leaks nothing about the expected tag.
                mac.verify_truncated_left(tag).is_ok()
            }
            Err(_) => false,
        }
    }
}

/// Longest cursor the lexicons allow.
pub const MAX_CURSOR: usize = 512;

const KIND_SEARCH: u8 = 1;
const KIND_ENDORSEMENTS: u8 = 2;
const KIND_CAPABILITIES: u8 = 3;

/// Where a ranked search page continues.
///
/// The ranked list of the first page is kept in a snapshot cache under `snapshot`; later
/// pages are slices of that list, so concurrent writes cannot duplicate or skip results.
/// When the snapshot is gone (evicted, or another process), the list is ranked again at the
/// same instant `now_us`; if the index `generation` is unchanged this reproduces it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchCursor {
    /// Snapshot cache key.
    pub snapshot: u64,
    /// Hash of the normalised query (all parameters except `limit` and `cursor`).
    pub query_hash: u64,
    /// Index generation the ranking was computed at.
    pub generation: u64,
    /// The ranking instant (age decay and expiry), Unix microseconds.
    pub now_us: i64,
    /// Position of the next result in the ranked list.
    pub offset: u32,
}

fn invalid(msg: &str) -> XrpcError {
    XrpcError::invalid("InvalidCursor", msg)
}

fn encode(kind: u8, payload: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + payload.len() * 2);
    for b in std::iter::once(kind).chain(payload.iter().copied()) {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

fn decode(s: &str, kind: u8) -> Result<Vec<u8>, XrpcError> {
    if s.len() > MAX_CURSOR || !s.len().is_multiple_of(2) || s.len() < 2 {
        return Err(invalid("malformed cursor"));
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() / 2);
    for pair in s.as_bytes().chunks_exact(2) {
        match (nib(pair[0]), nib(pair[1])) {
            (Some(h), Some(l)) => out.push(h << 4 | l),
            _ => return Err(invalid("malformed cursor")),
        }
    }
    if out.first() != Some(&kind) {
        return Err(invalid("cursor belongs to another method"));
    }
    out.remove(0);
    Ok(out)
}

fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    b.get(i..i + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes)
}

impl SearchCursor {
    /// The opaque form, signed with `key`.
    pub fn encode(&self, key: &CursorKey) -> String {
        let mut p = Vec::with_capacity(36 + TAG_LEN);
        p.extend_from_slice(&self.snapshot.to_be_bytes());
        p.extend_from_slice(&self.query_hash.to_be_bytes());
        p.extend_from_slice(&self.generation.to_be_bytes());
        p.extend_from_slice(&self.now_us.to_be_bytes());
        p.extend_from_slice(&self.offset.to_be_bytes());
        let tag = key.tag(&signed(&p));
        p.extend_from_slice(&tag);
        encode(KIND_SEARCH, &p)
    }

    /// Parses a cursor issued by [`SearchCursor::encode`] under the same key; a cursor
    /// altered in any bit, or signed with another key, is `InvalidCursor`.
    pub fn decode(s: &str, key: &CursorKey) -> Result<Self, XrpcError> {
        let b = decode(s, KIND_SEARCH)?;
        if b.len() != 36 + TAG_LEN {
            return Err(invalid("malformed cursor"));
        }
        let (b, tag) = b.split_at(36);
        if !key.verify(&signed(b), tag) {
            return Err(invalid("cursor was not issued by this service"));
        }
        let field = |i| u64_at(b, i).ok_or_else(|| invalid("malformed cursor"));
        let offset = b
            .get(32..36)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| invalid("malformed cursor"))?;
        Ok(SearchCursor {
            snapshot: field(0)?,
            query_hash: field(8)?,
            generation: field(16)?,
            now_us: field(24)? as i64,
            offset,
        })
    }
}

/// What a search cursor's tag covers: the kind byte and the payload.
fn signed(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + payload.len());
    v.push(KIND_SEARCH);
    v.extend_from_slice(payload);
    v
}

/// Keyset cursor of listEndorsements: the store's row id of the last item.
pub fn encode_endorsements(id: i64) -> String {
    encode(KIND_ENDORSEMENTS, &id.to_be_bytes())
}

/// Parses an [`encode_endorsements`] cursor.
pub fn decode_endorsements(s: &str) -> Result<i64, XrpcError> {
    let b = decode(s, KIND_ENDORSEMENTS)?;
    let id = u64_at(&b, 0)
        .filter(|_| b.len() == 8)
        .ok_or_else(|| invalid("malformed cursor"))? as i64;
    if id <= 0 {
        return Err(invalid("malformed cursor"));
    }
    Ok(id)
}

/// Keyset cursor of listCapabilities: the last capability id of the page.
pub fn encode_capabilities(last: &str) -> String {
    encode(KIND_CAPABILITIES, last.as_bytes())
}

/// Parses an [`encode_capabilities`] cursor; the id inside must follow the grammar.
pub fn decode_capabilities(s: &str) -> Result<String, XrpcError> {
    let b = decode(s, KIND_CAPABILITIES)?;
    let id = String::from_utf8(b).map_err(|_| invalid("malformed cursor"))?;
    guildhall_lexicon::grammar::check_capability_id(&id)
        .map_err(|_| invalid("malformed cursor"))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects() {
        let c = SearchCursor {
            snapshot: 7,
            query_hash: u64::MAX,
            generation: 3,
            now_us: -5,
            offset: 25,
        };
        let key = CursorKey::random();
        assert_eq!(SearchCursor::decode(&c.encode(&key), &key).ok(), Some(c));
        assert_eq!(decode_endorsements(&encode_endorsements(42)).ok(), Some(42));
        assert_eq!(
            decode_capabilities(&encode_capabilities("sms.send")).ok(),
            Some("sms.send".to_owned())
        );
        for bad in ["", "x", "zz", "0", "01", &encode_endorsements(42), "01FF"] {
            assert!(SearchCursor::decode(bad, &key).is_err(), "{bad}");
        }
        assert!(decode_endorsements(&c.encode(&key)).is_err());
        assert!(decode_endorsements(&encode_endorsements(-1)).is_err());
        assert!(decode_capabilities(&encode_capabilities("NOT VALID")).is_err());
        assert!(SearchCursor::decode(&"01".repeat(300), &key).is_err());
    }

    #[test]
    fn search_cursors_are_authenticated() {
        let key = CursorKey::random();
        let c = SearchCursor {
            snapshot: 1,
            query_hash: 2,
            generation: 3,
            now_us: 1_000_000,
            offset: 25,
        };
        let good = c.encode(&key);
        // Every single-bit change of the payload or the tag is refused.
        let bytes: Vec<u8> = (0..good.len() / 2)
            .map(|i| u8::from_str_radix(&good[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect();
        for i in 1..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let forged: String = b.iter().map(|x| format!("{x:02x}")).collect();
                assert!(
                    SearchCursor::decode(&forged, &key).is_err(),
                    "byte {i} bit {bit}"
                );
            }
        }
        // A client's own cursor with an earlier instant, tagged under any other key.
        let rewound = SearchCursor {
            now_us: c.now_us - 24 * 3_600_000_000,
            ..c
        };
        assert!(SearchCursor::decode(&rewound.encode(&CursorKey::random()), &key).is_err());
        // The old unsigned layout is refused.
        assert!(SearchCursor::decode(&good[..good.len() - 2 * TAG_LEN], &key).is_err());
    }
}
