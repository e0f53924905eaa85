//! Syntax checks for the Lexicon string formats.
//!
//! Interim: mirrors the `parse(&str)` signatures of `guildhall_proto::syntax` so the switch to
//! that module, once it lands, is a change of `use` lines only.

/// Why a string does not match its format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {format}: {reason}")]
pub struct FormatError {
    pub format: &'static str,
    pub reason: &'static str,
}

fn fail<T>(format: &'static str, reason: &'static str) -> Result<T, FormatError> {
    Err(FormatError { format, reason })
}

macro_rules! format_type {
    ($name:ident, $check:ident) => {
        /// Proof that a string passed the format check.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(());
        impl $name {
            pub fn parse(s: &str) -> Result<Self, FormatError> {
                $check(s)?;
                Ok(Self(()))
            }
        }
    };
}

format_type!(Did, check_did);
format_type!(Handle, check_handle);
format_type!(Nsid, check_nsid);
format_type!(AtUri, check_at_uri);
format_type!(Tid, check_tid);
format_type!(RecordKey, check_record_key);
format_type!(Language, check_language);
format_type!(AtIdentifier, check_at_identifier);

/// A datetime in the atproto profile of RFC 3339, with its instant for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datetime {
    /// Seconds since 0000-01-01T00:00:00Z (proleptic Gregorian) and nanoseconds, in UTC.
    instant: (i64, u32),
}

impl Datetime {
    pub fn parse(s: &str) -> Result<Self, FormatError> {
        Ok(Self {
            instant: check_datetime(s)?,
        })
    }

    /// Orders two datetimes by the instant they denote (offsets applied).
    pub fn instant(&self) -> (i64, u32) {
        self.instant
    }
}

/// A CID in string form, checked for syntax only (as Lexicon validation asks): 8 to 256
/// characters of a multibase alphabet; CIDv0 (`Qm…`) is not allowed.
pub fn parse_cid_str(s: &str) -> Result<(), FormatError> {
    if s.len() < 8 || s.len() > 256 {
        return fail("cid", "length must be 8 to 256 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'='))
    {
        return fail("cid", "invalid characters");
    }
    if s.starts_with("Qmb") {
        return fail("cid", "CIDv0 is not allowed");
    }
    Ok(())
}

/// A generic URI (RFC 3986 shape: scheme, ':', then non-blank text), at most 8 KiB.
pub fn check_uri(s: &str) -> Result<(), FormatError> {
    const F: &str = "uri";
    if s.len() > 8192 {
        return fail(F, "longer than 8192 bytes");
    }
    let Some((scheme, rest)) = s.split_once(':') else {
        return fail(F, "missing scheme");
    };
    let mut chars = scheme.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
    {
        return fail(F, "invalid scheme");
    }
    let body = rest.strip_prefix("//").unwrap_or(rest);
    if body.is_empty()
        || body.starts_with('/')
        || s.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return fail(F, "empty or blank after the scheme");
    }
    Ok(())
}

fn check_did(s: &str) -> Result<(), FormatError> {
    const F: &str = "did";
    if s.len() > 2048 {
        return fail(F, "longer than 2048 bytes");
    }
    let Some(rest) = s.strip_prefix("did:") else {
        return fail(F, "must start with 'did:'");
    };
    let Some((method, id)) = rest.split_once(':') else {
        return fail(F, "missing method-specific identifier");
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_lowercase()) {
        return fail(F, "method must be lower-case letters");
    }
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'%' | b'-'))
    {
        return fail(F, "invalid characters in the identifier");
    }
    if id.ends_with(':') || id.ends_with('%') {
        return fail(F, "must not end with ':' or '%'");
    }
    Ok(())
}

fn check_handle(s: &str) -> Result<(), FormatError> {
    const F: &str = "handle";
    if s.len() > 253 {
        return fail(F, "longer than 253 bytes");
    }
    let labels: Vec<&str> = s.split('.').collect();
    if labels.len() < 2 {
        return fail(F, "needs at least two labels");
    }
    for l in &labels {
        if l.is_empty() || l.len() > 63 {
            return fail(F, "labels must be 1 to 63 characters");
        }
        if !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || l.starts_with('-')
            || l.ends_with('-')
        {
            return fail(F, "labels are letters, digits and inner hyphens");
        }
    }
    if labels
        .last()
        .is_some_and(|tld| !tld.starts_with(|c: char| c.is_ascii_alphabetic()))
    {
        return fail(F, "the last label must start with a letter");
    }
    Ok(())
}

fn check_nsid(s: &str) -> Result<(), FormatError> {
    const F: &str = "nsid";
    if s.len() > 317 {
        return fail(F, "longer than 317 bytes");
    }
    let segs: Vec<&str> = s.split('.').collect();
    if segs.len() < 3 {
        return fail(F, "needs at least three segments");
    }
    let (name, authority) = match segs.split_last() {
        Some(x) => x,
        None => return fail(F, "empty"),
    };
    for (i, a) in authority.iter().enumerate() {
        if a.is_empty() || a.len() > 63 {
            return fail(F, "segments must be 1 to 63 characters");
        }
        if !a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || a.starts_with('-')
            || a.ends_with('-')
        {
            return fail(
                F,
                "authority segments are letters, digits and inner hyphens",
            );
        }
        if i == 0 && a.starts_with(|c: char| c.is_ascii_digit()) {
            return fail(F, "the first segment must not start with a digit");
        }
    }
    if name.is_empty()
        || name.len() > 63
        || !name.starts_with(|c: char| c.is_ascii_alphabetic())
        || !name.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return fail(F, "the name segment is a letter then letters or digits");
    }
    Ok(())
}

fn check_at_identifier(s: &str) -> Result<(), FormatError> {
    if s.starts_with("did:") {
        check_did(s)
    } else {
        check_handle(s).or(fail("at-identifier", "neither a DID nor a handle"))
    }
}

fn check_at_uri(s: &str) -> Result<(), FormatError> {
    const F: &str = "at-uri";
    if s.len() > 8192 {
        return fail(F, "longer than 8192 bytes");
    }
    let Some(rest) = s.strip_prefix("at://") else {
        return fail(F, "must start with 'at://'");
    };
    let mut parts = rest.splitn(3, '/');
    let authority = parts.next().unwrap_or_default();
    if check_at_identifier(authority).is_err() {
        return fail(F, "the authority is neither a DID nor a handle");
    }
    if let Some(collection) = parts.next()
        && check_nsid(collection).is_err()
    {
        return fail(F, "the collection is not an NSID");
    }
    if let Some(rkey) = parts.next()
        && check_record_key(rkey).is_err()
    {
        return fail(F, "invalid record key");
    }
    Ok(())
}

fn check_tid(s: &str) -> Result<(), FormatError> {
    const ALPHABET: &[u8] = b"234567abcdefghijklmnopqrstuvwxyz";
    let b = s.as_bytes();
    if b.len() != 13 || !b.iter().all(|c| ALPHABET.contains(c)) {
        return fail("tid", "must be 13 base32-sortable characters");
    }
    // The top bit of the 64-bit value must be zero.
    if !b"234567abcdefghij".contains(&b[0]) {
        return fail("tid", "first character out of range");
    }
    Ok(())
}

fn check_record_key(s: &str) -> Result<(), FormatError> {
    const F: &str = "record-key";
    if s.is_empty() || s.len() > 512 {
        return fail(F, "must be 1 to 512 characters");
    }
    if s == "." || s == ".." {
        return fail(F, "'.' and '..' are not allowed");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'~' | b'.' | b':' | b'-'))
    {
        return fail(F, "invalid characters");
    }
    Ok(())
}

/// Well-formed BCP 47 shape: a 2–3 letter primary subtag (or 'i'/'x'), then 1–8 character
/// alphanumeric subtags.
fn check_language(s: &str) -> Result<(), FormatError> {
    const F: &str = "language";
    let mut subtags = s.split('-');
    let primary = subtags.next().unwrap_or_default();
    let primary_ok = matches!(primary, "i" | "x" | "I" | "X")
        || ((2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_lowercase()));
    if !primary_ok {
        return fail(F, "the primary subtag must be 2 or 3 lower-case letters");
    }
    for t in subtags {
        if t.is_empty() || t.len() > 8 || !t.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return fail(F, "subtags are 1 to 8 letters or digits");
        }
    }
    Ok(())
}

/// Checks `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` and returns the UTC instant.
fn check_datetime(s: &str) -> Result<(i64, u32), FormatError> {
    const F: &str = "datetime";
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        part.iter()
            .try_fold(0i64, |acc, d| Some(acc * 10 + i64::from(d - b'0')))
    };
    let sep = |i: usize, c: u8| b.get(i) == Some(&c);
    if s.len() > 64 {
        return fail(F, "too long");
    }
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return fail(F, "expected YYYY-MM-DDTHH:MM:SS");
    };
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return fail(F, "expected YYYY-MM-DDTHH:MM:SS with an upper-case 'T'");
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if sep(i, b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return fail(F, "empty fraction");
        }
        for _ in (i - start)..9 {
            nanos *= 10;
        }
    }
    let offset_secs = match &b[i..] {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (Some(oh), Some(om)) = (digits(i + 1..i + 3), digits(i + 4..i + 6)) else {
                return fail(F, "invalid offset");
            };
            if oh > 23 || om > 59 {
                return fail(F, "offset out of range");
            }
            if *sign == b'-' && oh == 0 && om == 0 {
                return fail(F, "'-00:00' is not allowed");
            }
            let secs = oh * 3600 + om * 60;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return fail(F, "timezone must be 'Z' or ±HH:MM"),
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return fail(F, "no such date");
    }
    if hour > 23 || minute > 59 || second > 59 {
        return fail(F, "time out of range");
    }
    let days = days_from_year_zero(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    if secs < 0 {
        return fail(F, "normalizes to before year 0");
    }
    Ok((secs, nanos))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 0000-01-01 to the given date (proleptic Gregorian).
fn days_from_year_zero(y: i64, m: i64, d: i64) -> i64 {
    // Years before `y`, with year 0 a leap year.
    let leaps = if y == 0 {
        0
    } else {
        (y - 1) / 4 - (y - 1) / 100 + (y - 1) / 400 + 1
    };
    let mut days = y * 365 + leaps;
    for mm in 1..m {
        days += days_in_month(y, mm);
    }
    days + d - 1
}
