//! Every file of the shared `syntax/` interop vectors, run against `guildhall_proto::syntax`.

use crate::vectors::{interop, read};
use guildhall_proto::syntax::{
    AtIdentifier, AtUri, Datetime, Did, Handle, Language, Nsid, RecordKey, SyntaxError, Tid, Uri,
    parse_cid_str, validate_cid_syntax,
};

/// The vector lines of one file: blank lines and `#` comments skipped, everything else kept
/// byte-for-byte (leading/trailing spaces are part of several invalid cases).
fn lines(file: &str) -> Vec<String> {
    let bytes = read(&interop(&format!("syntax/{file}")));
    let text = String::from_utf8(bytes).expect("vector file is UTF-8");
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

type Parser = fn(&str) -> Result<(), SyntaxError>;

/// Runs one valid/invalid pair of files; returns how many cases ran. Collects every failure
/// before failing so one run shows them all.
fn check_pair(kind: &str, parse: Parser, valid: &[&str], invalid: &[&str]) -> usize {
    let mut failures = Vec::new();
    let mut n = 0;
    for file in valid {
        for case in lines(file) {
            n += 1;
            if let Err(e) = parse(&case) {
                failures.push(format!("{file}: {case:?} should be valid: {e}"));
            }
        }
    }
    for file in invalid {
        for case in lines(file) {
            n += 1;
            if parse(&case).is_ok() {
                failures.push(format!("{file}: {case:?} should be invalid"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{kind}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(n > 0, "{kind}: no cases loaded");
    eprintln!("syntax {kind}: {n} cases");
    n
}

/// Also checks that a valid value prints back exactly as given (handles: lowercased).
fn round_trip<T: std::fmt::Display>(s: &str, v: Result<T, SyntaxError>) -> Result<(), SyntaxError> {
    let v = v?;
    assert_eq!(v.to_string(), s, "display must round-trip");
    Ok(())
}

#[test]
fn did_vectors() {
    check_pair(
        "did",
        |s| round_trip(s, Did::parse(s)),
        &["did_syntax_valid.txt"],
        &["did_syntax_invalid.txt"],
    );
}

#[test]
fn handle_vectors() {
    check_pair(
        "handle",
        |s| Handle::parse(s).map(|h| assert_eq!(h.as_str(), s.to_ascii_lowercase())),
        &["handle_syntax_valid.txt"],
        &["handle_syntax_invalid.txt"],
    );
}

#[test]
fn nsid_vectors() {
    check_pair(
        "nsid",
        |s| round_trip(s, Nsid::parse(s)),
        &["nsid_syntax_valid.txt"],
        &["nsid_syntax_invalid.txt"],
    );
}

#[test]
fn aturi_vectors() {
    check_pair(
        "aturi",
        |s| round_trip(s, AtUri::parse(s)),
        &["aturi_syntax_valid.txt"],
        &["aturi_syntax_invalid.txt"],
    );
}

#[test]
fn atidentifier_vectors() {
    check_pair(
        "atidentifier",
        |s| AtIdentifier::parse(s).map(drop),
        &["atidentifier_syntax_valid.txt"],
        &["atidentifier_syntax_invalid.txt"],
    );
}

#[test]
fn recordkey_vectors() {
    check_pair(
        "recordkey",
        |s| round_trip(s, RecordKey::parse(s)),
        &["recordkey_syntax_valid.txt"],
        &["recordkey_syntax_invalid.txt"],
    );
}

#[test]
fn tid_vectors() {
    check_pair(
        "tid",
        |s| {
            let t = Tid::parse(s)?;
            // Rebuilding from the decoded parts must give back the same string.
            assert_eq!(Tid::from_parts(t.timestamp_micros(), t.clock_id()), t);
            Ok(())
        },
        &["tid_syntax_valid.txt"],
        &["tid_syntax_invalid.txt"],
    );
}

#[test]
fn datetime_vectors() {
    check_pair(
        "datetime",
        |s| round_trip(s, Datetime::parse(s)),
        &["datetime_syntax_valid.txt"],
        &["datetime_syntax_invalid.txt", "datetime_parse_invalid.txt"],
    );
}

#[test]
fn language_vectors() {
    check_pair(
        "language",
        |s| round_trip(s, Language::parse(s)),
        &["language_syntax_valid.txt"],
        &["language_syntax_invalid.txt", "language_parse_invalid.txt"],
    );
}

#[test]
fn cid_vectors() {
    check_pair(
        "cid",
        validate_cid_syntax,
        &["cid_syntax_valid.txt"],
        &["cid_syntax_invalid.txt"],
    );
}

/// An independent structural check of binary CIDv1: varint version 1, varint codec, then a
/// multihash (varint code, varint length, exactly that many digest bytes).
fn is_cid_v1_bytes(bytes: &[u8]) -> bool {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..63).step_by(7) {
            let (&first, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(first & 0x7f) << shift;
            if first & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut b = bytes;
    let parts = (|| {
        Some((
            varint(&mut b)?,
            varint(&mut b)?,
            varint(&mut b)?,
            varint(&mut b)?,
        ))
    })();
    matches!(parts, Some((1, _codec, _hash, len)) if len as usize == b.len() && len <= 64)
}

/// `parse_cid_str` must reject every invalid vector, and of the valid ones accept exactly those
/// whose multibase payload really is a CIDv1 (a complete binary CIDv1), re-encoding them in their
/// own base to the same string. Some "contrived" valid vectors are syntax-only (not even
/// decodable multibase), and those must be refused with a typed error rather than accepted.
#[test]
fn cid_vectors_parse_to_cids() {
    let mut decoded = 0;
    let mut syntax_only = 0;
    for case in lines("cid_syntax_valid.txt") {
        let payload = multibase::decode(&case).ok();
        let is_v1 = payload
            .as_ref()
            .is_some_and(|(_, bytes)| is_cid_v1_bytes(bytes));
        match parse_cid_str(&case) {
            Ok(cid) => {
                assert!(is_v1, "{case:?} parsed but its payload is not a CIDv1");
                let (base, _) = payload.expect("decoded above");
                let again = cid.to_string_of_base(base).expect("re-encodes");
                assert_eq!(again, case, "{case:?} must round-trip in its own base");
                decoded += 1;
            }
            Err(e) => {
                assert!(!is_v1, "{case:?} is a CIDv1 payload but was rejected: {e}");
                assert!(matches!(e, SyntaxError::Cid(_)));
                syntax_only += 1;
            }
        }
    }
    let mut invalid = 0;
    for case in lines("cid_syntax_invalid.txt") {
        assert!(parse_cid_str(&case).is_err(), "{case:?} must be rejected");
        invalid += 1;
    }
    assert!(decoded > 0 && invalid > 0);
    eprintln!("syntax cid parse: {decoded} decoded, {syntax_only} syntax-only, {invalid} invalid");
}

#[test]
fn uri_vectors() {
    check_pair(
        "uri",
        |s| round_trip(s, Uri::parse(s)),
        &["uri_syntax_valid.txt"],
        &["uri_syntax_invalid.txt"],
    );
}

/// Guards against a vector file being added upstream without a test here.
#[test]
fn every_syntax_file_is_covered() {
    let covered = [
        "atidentifier_syntax_invalid.txt",
        "atidentifier_syntax_valid.txt",
        "aturi_syntax_invalid.txt",
        "aturi_syntax_valid.txt",
        "cid_syntax_invalid.txt",
        "cid_syntax_valid.txt",
        "datetime_parse_invalid.txt",
        "datetime_syntax_invalid.txt",
        "datetime_syntax_valid.txt",
        "did_syntax_invalid.txt",
        "did_syntax_valid.txt",
        "handle_syntax_invalid.txt",
        "handle_syntax_valid.txt",
        "language_parse_invalid.txt",
        "language_syntax_invalid.txt",
        "language_syntax_valid.txt",
        "nsid_syntax_invalid.txt",
        "nsid_syntax_valid.txt",
        "recordkey_syntax_invalid.txt",
        "recordkey_syntax_valid.txt",
        "tid_syntax_invalid.txt",
        "tid_syntax_valid.txt",
        "uri_syntax_invalid.txt",
        "uri_syntax_valid.txt",
    ];
    let dir = interop("syntax");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    found.sort();
    assert_eq!(
        found, covered,
        "syntax vector files changed: add tests for the new ones"
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Hostile input never panics any parser; whatever parses prints back as given.
        #[test]
        fn parsers_are_total(s in "\\PC{0,80}|[a-z0-9:./#%_~-]{0,80}") {
            let _ = Handle::parse(&s);
            let _ = Language::parse(&s);
            let _ = parse_cid_str(&s);
            let _ = Uri::parse(&s);
            let _ = AtIdentifier::parse(&s);
            if let Ok(d) = Did::parse(&s) { prop_assert_eq!(d.as_str(), s.as_str()); }
            if let Ok(n) = Nsid::parse(&s) { prop_assert_eq!(n.as_str(), s.as_str()); }
            if let Ok(u) = AtUri::parse(&s) { prop_assert_eq!(u.as_str(), s.as_str()); }
            if let Ok(r) = RecordKey::parse(&s) { prop_assert_eq!(r.as_str(), s.as_str()); }
            if let Ok(t) = Tid::parse(&s) { prop_assert_eq!(t.as_str(), s.as_str()); }
            if let Ok(d) = Datetime::parse(&s) { prop_assert_eq!(d.as_str(), s.as_str()); }
        }

        /// Datetime-shaped strings: no panic, and valid ones agree with `time`'s RFC 3339
        /// parser on the instant (to the microsecond).
        #[test]
        fn datetime_instant_matches_time_crate(
            y in 1000i32..9999, mo in 0u8..14, d in 0u8..33, h in 0u8..25, mi in 0u8..61, sec in 0u8..61,
            frac in proptest::option::of(0u32..1_000_000), off in proptest::option::of((-23i8..24, 0u8..60)),
        ) {
            let frac_s = frac.map(|f| format!(".{f:06}")).unwrap_or_default();
            let off_s = match off {
                None => "Z".to_owned(),
                Some((oh, om)) => format!("{}{:02}:{om:02}", if oh < 0 { '-' } else { '+' }, oh.unsigned_abs()),
            };
            let s = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}{frac_s}{off_s}");
            let ours = Datetime::parse(&s);
            let theirs = time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339);
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(i128::from(a.unix_micros()), b.unix_timestamp_nanos() / 1000, "{}", s);
                }
                (Err(_), Err(_)) => {}
                // `-00:00` is RFC 3339 but not ISO 8601, and atproto rejects it.
                (Err(_), Ok(_)) if s.ends_with("-00:00") => {}
                // The `time` crate accepts second 60 (leap second); atproto's reference does not.
                (Err(_), Ok(_)) if sec == 60 => {}
                _ => prop_assert!(false, "{s}: ours {ours:?} vs time {theirs:?}"),
            }
        }

        #[test]
        fn tid_parts_round_trip(ts in 0u64..(1 << 53), clock in 0u16..1024) {
            let t = Tid::from_parts(ts, clock);
            prop_assert_eq!(Tid::parse(t.as_str()), Ok(t.clone()));
            prop_assert_eq!(t.timestamp_micros(), ts);
            prop_assert_eq!(t.clock_id(), clock);
        }
    }
}
