//! Lossless compact forms of record keys (TIDs) and record CIDs, so that an edge's provenance
//! costs 8 + 32 bytes instead of two heap strings. Anything non-canonical falls back to a string.

/// ATProto's base32-sortable alphabet, used by TIDs.
const SORTABLE: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";
/// RFC 4648 lower-case alphabet, used by multibase `b` (CIDv1 text form).
const RFC4648: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The four bytes that open every CIDv1 / dag-cbor / sha2-256 CID: the form of every
/// ATProto record CID, so only the 32-byte digest needs storing.
const DAG_CBOR_SHA256: [u8; 4] = [0x01, 0x71, 0x12, 0x20];

/// Reverse table of an alphabet: byte → digit, 0xFF for bytes outside it.
const fn reverse(alphabet: &[u8; 32]) -> [u8; 256] {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 32 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
}

const SORTABLE_REV: [u8; 256] = reverse(SORTABLE);
const RFC4648_REV: [u8; 256] = reverse(RFC4648);

fn sortable_value(c: u8) -> Option<u64> {
    match SORTABLE_REV[c as usize] {
        0xFF => None,
        d => Some(u64::from(d)),
    }
}

/// Decodes a 13-character TID to its 64-bit value; `None` if `s` is not a canonical TID.
pub(crate) fn tid_decode(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 13 {
        return None;
    }
    let mut v: u64 = 0;
    for (i, &c) in b.iter().enumerate() {
        let d = sortable_value(c)?;
        // The first character carries the top bits; TIDs keep bit 63 clear, so it is < 16.
        if i == 0 && d >= 16 {
            return None;
        }
        v = (v << 5) | d;
    }
    Some(v)
}

/// Encodes a 64-bit value (bit 63 clear) as a 13-character TID.
pub(crate) fn tid_encode(v: u64) -> String {
    let mut out = [0u8; 13];
    let mut x = v;
    for slot in out.iter_mut().rev() {
        *slot = SORTABLE[(x & 31) as usize];
        x >>= 5;
    }
    out.iter().map(|&c| c as char).collect()
}

fn rfc4648_value(c: u8) -> Option<u32> {
    match RFC4648_REV[c as usize] {
        0xFF => None,
        d => Some(u32::from(d)),
    }
}

/// Unpadded RFC 4648 base32 (lower case) decode; `None` on a bad character or trailing bits.
fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in s.as_bytes() {
        acc = (acc << 5) | rfc4648_value(c)?;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Non-zero leftover bits mean a non-canonical encoding; keep those as strings.
    if acc != 0 || bits >= 5 {
        return None;
    }
    Some(out)
}

fn base32_encode(bytes: &[u8], out: &mut String) {
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(RFC4648[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(RFC4648[((acc << (5 - bits)) & 31) as usize] as char);
    }
}

/// The sha2-256 digest of a canonical `bafyrei…` record CID, or `None` for any other CID.
pub(crate) fn cid_digest(cid: &str) -> Option<[u8; 32]> {
    let body = cid.strip_prefix('b')?;
    let bytes = base32_decode(body)?;
    if bytes.len() != 36 || bytes[..4] != DAG_CBOR_SHA256 {
        return None;
    }
    let mut d = [0u8; 32];
    d.copy_from_slice(&bytes[4..]);
    Some(d)
}

/// The text form of the CIDv1 / dag-cbor / sha2-256 CID with this digest.
pub(crate) fn cid_from_digest(digest: &[u8; 32]) -> String {
    let mut bytes = [0u8; 36];
    bytes[..4].copy_from_slice(&DAG_CBOR_SHA256);
    bytes[4..].copy_from_slice(digest);
    let mut s = String::with_capacity(59);
    s.push('b');
    base32_encode(&bytes, &mut s);
    s
}

/// Splits `at://{author}/{collection}/{rkey}` when the authority is exactly `author`.
pub(crate) fn split_uri<'a>(uri: &'a str, author: &str) -> Option<(&'a str, &'a str)> {
    let rest = uri
        .strip_prefix("at://")?
        .strip_prefix(author)?
        .strip_prefix('/')?;
    let (collection, rkey) = rest.split_once('/')?;
    if collection.is_empty() || rkey.contains('/') {
        return None;
    }
    Some((collection, rkey))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tid_round_trip_and_rejects() {
        for s in [
            "3jzfcijpj2z2a",
            "2222222222222",
            "7777777777777",
            "jzzzzzzzzzzzz",
        ] {
            let v = tid_decode(s);
            assert!(v.is_some(), "{s}");
            assert_eq!(tid_encode(v.unwrap_or_default()), s);
        }
        assert!(tid_decode("3jzfcijpj2z2").is_none(), "too short");
        assert!(tid_decode("kzzzzzzzzzzzz").is_none(), "top bit set");
        assert!(
            tid_decode("3jzfcijpj2z21").is_none(),
            "'1' is not in the alphabet"
        );
        assert!(
            tid_decode("3JZFCIJPJ2Z2A").is_none(),
            "upper case is not canonical"
        );
        // Sortable: string order equals numeric order.
        let a = tid_decode("3jzfcijpj2z2a").unwrap_or_default();
        let b = tid_decode("3jzfcijpj2z2b").unwrap_or_default();
        assert!(a < b);
    }

    #[test]
    fn cid_round_trip_and_fallback() {
        // A record CID from the ATProto interop data-model fixtures.
        let cid = "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq";
        let d = cid_digest(cid);
        assert!(d.is_some());
        assert_eq!(cid_from_digest(&d.unwrap_or_default()), cid);
        // Raw-codec (blob) CIDs and CIDv0 are not record CIDs: no compact form.
        assert!(
            cid_digest("bafkreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq").is_none()
        );
        assert!(cid_digest("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG").is_none());
        assert!(
            cid_digest("bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwr").is_none(),
            "non-zero trailing bits are not canonical"
        );
        assert!(cid_digest("b").is_none());
    }

    #[test]
    fn uri_split() {
        let a = "did:plc:abc";
        assert_eq!(
            split_uri(
                "at://did:plc:abc/dev.guildhall.endorsement/3jzfcijpj2z2a",
                a
            ),
            Some(("dev.guildhall.endorsement", "3jzfcijpj2z2a"))
        );
        assert_eq!(
            split_uri("at://did:plc:abcd/c/r", a),
            None,
            "different authority"
        );
        assert_eq!(split_uri("at://did:plc:abc/c/r/x", a), None);
        assert_eq!(split_uri("at://did:plc:abc//r", a), None);
        assert_eq!(split_uri("https://did:plc:abc/c/r", a), None);
    }
}
