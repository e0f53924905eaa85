//! Decimal price strings to integer nano-units, so price filters compare integers in SQL.

use crate::StoreError;

/// Nano-units per currency unit: the lexicon allows at most 9 fractional digits.
const NANOS_PER_UNIT: i64 = 1_000_000_000;

/// Converts a decimal amount such as `"0.0075"` to nano-units (`7_500_000`).
///
/// Accepts digits, optionally followed by `.` and 1 to 9 digits (no sign, exponent or spaces).
/// Amounts above `i64::MAX` nano-units (about 9.2 billion units) saturate at `i64::MAX`: they
/// still sort above every realistic price bound, and the exact text is kept beside it.
pub fn amount_to_nanos(amount: &str) -> Result<i64, StoreError> {
    let bad = || StoreError::InvalidAmount(amount.chars().take(32).collect());
    let (int_part, frac_part) = match amount.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (amount, None),
    };
    if int_part.is_empty() || !int_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mut frac_nanos: i64 = 0;
    if let Some(f) = frac_part {
        if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        for (i, b) in f.bytes().enumerate() {
            // Digit i after the point is worth 10^(8-i) nanos.
            frac_nanos += i64::from(b - b'0') * 10_i64.pow(8 - i as u32);
        }
    }
    let mut whole: i64 = 0;
    for b in int_part.bytes() {
        whole = match whole
            .checked_mul(10)
            .and_then(|w| w.checked_add(i64::from(b - b'0')))
        {
            Some(w) => w,
            None => return Ok(i64::MAX),
        };
    }
    Ok(whole
        .checked_mul(NANOS_PER_UNIT)
        .and_then(|w| w.checked_add(frac_nanos))
        .unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::amount_to_nanos;

    #[test]
    fn converts_decimals() {
        assert_eq!(amount_to_nanos("0.0075").ok(), Some(7_500_000));
        assert_eq!(amount_to_nanos("0").ok(), Some(0));
        assert_eq!(amount_to_nanos("12").ok(), Some(12_000_000_000));
        assert_eq!(amount_to_nanos("1.000000001").ok(), Some(1_000_000_001));
        assert_eq!(amount_to_nanos("0.5").ok(), Some(500_000_000));
    }

    #[test]
    fn saturates_huge_amounts() {
        assert_eq!(amount_to_nanos("999999999999999999").ok(), Some(i64::MAX));
        assert_eq!(amount_to_nanos("9223372036.854775807").ok(), Some(i64::MAX));
        assert_eq!(
            amount_to_nanos("9223372036.854775806").ok(),
            Some(i64::MAX - 1)
        );
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            ".5",
            "1.",
            "1.0000000001",
            "-1",
            "1e3",
            " 1",
            "1,5",
            "0x10",
            "１",
        ] {
            assert!(amount_to_nanos(s).is_err(), "{s:?} accepted");
        }
    }
}
