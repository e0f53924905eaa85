//! Grammars of Guildhall's own string values (capability ids, money, regions, versions), shared
//! by record validation, the AppView's query parameters and the CLI.

/// Why a value does not follow its grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GrammarError(pub &'static str);

/// Capability ids: 2–8 dot-separated segments of `a-z`, `0-9`, `-`; each 1–32 characters, starting
/// with a letter and not ending with `-`; at most 128 bytes. Example: `sms.send`.
pub fn check_capability_id(s: &str) -> Result<(), GrammarError> {
    if s.len() > 128 {
        return Err(GrammarError("longer than 128 bytes"));
    }
    let segments: Vec<&str> = s.split('.').collect();
    if !(2..=8).contains(&segments.len()) {
        return Err(GrammarError("needs 2 to 8 dot-separated segments"));
    }
    for seg in segments {
        if seg.is_empty() || seg.len() > 32 {
            return Err(GrammarError("segments must be 1 to 32 characters"));
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(GrammarError("segments may only hold a-z, 0-9 and '-'"));
        }
        if !seg.starts_with(|c: char| c.is_ascii_lowercase()) || seg.ends_with('-') {
            return Err(GrammarError(
                "segments start with a letter and do not end with '-'",
            ));
        }
    }
    Ok(())
}

/// Operation ids: 1–128 characters of `A-Z a-z 0-9 _ - .` (the MCP tool-name alphabet).
pub fn check_operation_id(s: &str) -> Result<(), GrammarError> {
    if s.is_empty() || s.len() > 128 {
        return Err(GrammarError("must be 1 to 128 characters"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(GrammarError(
            "may only hold A-Z, a-z, 0-9, '_', '-' and '.'",
        ));
    }
    Ok(())
}

/// A non-negative decimal amount, held exactly as billionths of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount {
    nanos: u128,
}

impl Amount {
    /// Amount in billionths (10⁻⁹) of the currency unit.
    pub fn nanos(self) -> u128 {
        self.nanos
    }

    pub fn is_zero(self) -> bool {
        self.nanos == 0
    }
}

/// Parses a decimal amount: `0` or digits without a leading zero, then optionally `.` and 1–9
/// digits; no sign or exponent; at most 18 digits in all. Examples: `0`, `12`, `0.002`.
pub fn parse_amount(s: &str) -> Result<Amount, GrammarError> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GrammarError("expected digits before the decimal point"));
    }
    if int.len() > 1 && int.starts_with('0') {
        return Err(GrammarError("no leading zeros"));
    }
    let frac = frac.unwrap_or_default();
    if s.contains('.') && (frac.is_empty() || frac.len() > 9) {
        return Err(GrammarError("1 to 9 digits after the decimal point"));
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GrammarError("expected digits after the decimal point"));
    }
    if int.len() + frac.len() > 18 {
        return Err(GrammarError("at most 18 digits"));
    }
    let digits = |t: &str| {
        t.bytes()
            .fold(0u128, |acc, d| acc * 10 + u128::from(d - b'0'))
    };
    let scale = 10u128.pow(9 - frac.len() as u32);
    Ok(Amount {
        nanos: digits(int) * 1_000_000_000 + digits(frac) * scale,
    })
}

/// Formats 10⁻⁹ units as the decimal string [`parse_amount`] reads (the inverse for every
/// amount it accepts): no trailing zeros after the point, no point for whole amounts, a `-`
/// for the negative balances only system accounts can have. `1_500_000_000` → `"1.5"`.
pub fn format_nanos(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    // unsigned_abs: i64::MIN has no positive i64.
    let n = nanos.unsigned_abs();
    let (whole, frac) = (n / 1_000_000_000, n % 1_000_000_000);
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    let digits = format!("{frac:09}");
    format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
}

/// Currency: an ISO 4217 code or a token symbol — 2 to 12 characters of `A-Z` and `0-9`,
/// starting with a letter (`USD`, `EUR`, `USDC`).
pub fn check_currency(s: &str) -> Result<(), GrammarError> {
    if !(2..=12).contains(&s.len())
        || !s.starts_with(|c: char| c.is_ascii_uppercase())
        || !s
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(GrammarError(
            "must be 2 to 12 characters of A-Z and 0-9, starting with a letter",
        ));
    }
    Ok(())
}

/// Region: ISO 3166-1 alpha-2 shape, two upper-case ASCII letters.
pub fn check_region(s: &str) -> Result<(), GrammarError> {
    if s.len() != 2 || !s.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(GrammarError(
            "must be two upper-case letters (ISO 3166-1 alpha-2)",
        ));
    }
    Ok(())
}

/// Semantic Versioning 2.0.0: `MAJOR.MINOR.PATCH[-pre][+build]`, no leading zeros.
pub fn check_semver(s: &str) -> Result<(), GrammarError> {
    let (rest, build) = match s.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (s, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let numeric = |n: &str| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (n == "0" || !n.starts_with('0'))
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3 || !parts.iter().all(|p| numeric(p)) {
        return Err(GrammarError(
            "expected MAJOR.MINOR.PATCH without leading zeros",
        ));
    }
    let ident_ok =
        |id: &str| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if let Some(pre) = pre
        && !pre
            .split('.')
            .all(|id| ident_ok(id) && (!id.bytes().all(|b| b.is_ascii_digit()) || numeric(id)))
    {
        return Err(GrammarError("invalid pre-release identifiers"));
    }
    if let Some(build) = build
        && !build.split('.').all(ident_ok)
    {
        return Err(GrammarError("invalid build metadata"));
    }
    Ok(())
}

/// MCP Registry server names: `namespace/name`, the namespace in reverse-DNS form
/// (`io.github.example/sms`).
pub fn check_mcp_registry_name(s: &str) -> Result<(), GrammarError> {
    let Some((ns, name)) = s.split_once('/') else {
        return Err(GrammarError("expected namespace/name"));
    };
    let ns_ok = !ns.is_empty()
        && ns.contains('.')
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ns_ok || !name_ok || s.len() > 200 {
        return Err(GrammarError(
            "expected a reverse-DNS namespace, '/', then a name",
        ));
    }
    Ok(())
}

/// The JSON Schema type names.
pub const JSON_SCHEMA_TYPES: [&str; 7] = [
    "null", "boolean", "object", "array", "number", "string", "integer",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_is_the_inverse_of_parsing() {
        for (n, text) in [
            (0, "0"),
            (1, "0.000000001"),
            (1_500_000_000, "1.5"),
            (12_000_000_000, "12"),
            (7_500_000, "0.0075"),
            (-2_000_000_001, "-2.000000001"),
            (i64::MAX, "9223372036.854775807"),
        ] {
            assert_eq!(format_nanos(n), text);
            if n >= 0 && text.len() <= 19 {
                let back = parse_amount(text).map(|a| a.nanos());
                assert_eq!(back, Ok(n as u128), "{text}");
            }
        }
        assert_eq!(format_nanos(i64::MIN), "-9223372036.854775808");
        // Every amount the grammar reads formats back to the same text.
        for text in ["999999999.999999999", "100", "0.1", "3.14"] {
            let a = parse_amount(text).map(|a| a.nanos() as i64);
            assert_eq!(a.map(format_nanos).as_deref(), Ok(text));
        }
    }

    #[test]
    fn capability_ids() {
        for ok in ["sms.send", "payments.card.refund", "a.b", "web-search.v2"] {
            assert_eq!(check_capability_id(ok), Ok(()), "{ok}");
        }
        for bad in [
            "sms",
            "SMS.send",
            "sms..send",
            "sms.send-",
            "1sms.send",
            "sms.send.",
            "a.b.c.d.e.f.g.h.i",
            "sms_send.x",
        ] {
            assert!(check_capability_id(bad).is_err(), "{bad}");
        }
        assert!(check_capability_id(&format!("a.{}", "b".repeat(33))).is_err());
    }

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("0").map(Amount::nanos), Ok(0));
        assert_eq!(parse_amount("0.002").map(Amount::nanos), Ok(2_000_000));
        assert_eq!(parse_amount("12.5").map(Amount::nanos), Ok(12_500_000_000));
        assert_eq!(
            parse_amount("999999999.999999999").map(Amount::nanos),
            Ok(999_999_999_999_999_999)
        );
        assert!(parse_amount("0.002").unwrap() < parse_amount("0.01").unwrap());
        for bad in [
            "",
            ".5",
            "5.",
            "-1",
            "+1",
            "01",
            "1e3",
            "0.0000000001",
            "1234567890123456789",
            "1,5",
            " 1",
        ] {
            assert!(parse_amount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn others() {
        assert!(check_currency("USD").is_ok() && check_currency("USDC").is_ok());
        assert!(
            check_currency("usd").is_err()
                && check_currency("1INCH").is_err()
                && check_currency("U").is_err()
        );
        assert!(
            check_region("DE").is_ok()
                && check_region("de").is_err()
                && check_region("DEU").is_err()
        );
        for ok in ["1.0.0", "0.1.2-beta.1", "10.20.30+build.5", "1.0.0-0.3.7"] {
            assert!(check_semver(ok).is_ok(), "{ok}");
        }
        for bad in ["1.0", "01.0.0", "1.0.0-01", "1.0.0-", "v1.0.0", "1.0.0+"] {
            assert!(check_semver(bad).is_err(), "{bad}");
        }
        assert!(check_mcp_registry_name("io.github.example/sms").is_ok());
        assert!(
            check_mcp_registry_name("sms").is_err()
                && check_mcp_registry_name("example/sms").is_err()
        );
        assert!(check_operation_id("send_sms").is_ok() && check_operation_id("send sms").is_err());
    }
}
