//! Datetimes in the ATProto profile: the intersection of RFC 3339 and ISO 8601.

use super::{SyntaxError, string_type};

/// A datetime such as `1985-04-12T23:20:50.123Z`. The string is kept verbatim; the instant is
/// computed once at parse time. Order is by instant, then by string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Datetime {
    micros: i64,
    raw: String,
}

/// Days from 1970-01-01 to the given proleptic-Gregorian civil date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Reads `n` ASCII digits at `at` as a number, or `None` if any is not a digit.
fn num(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let slice = b.get(at..at + n)?;
    slice.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

impl Datetime {
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        let err = SyntaxError::Datetime;
        if s.len() > 64 {
            return Err(err("longer than 64 characters"));
        }
        let b = s.as_bytes();
        let shape = |i: usize, c: u8| b.get(i) == Some(&c);
        if !(shape(4, b'-')
            && shape(7, b'-')
            && shape(10, b'T')
            && shape(13, b':')
            && shape(16, b':'))
        {
            return Err(err(
                "must look like YYYY-MM-DDTHH:MM:SS with an uppercase T",
            ));
        }
        let field =
            |at, n| num(b, at, n).ok_or(err("date and time fields must be zero-padded digits"));
        let (year, month, day) = (field(0, 4)?, field(5, 2)?, field(8, 2)?);
        let (hour, minute, second) = (field(11, 2)?, field(14, 2)?, field(17, 2)?);
        let mut i = 19;
        let mut frac_micros = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            let digits = i - start;
            if digits == 0 || digits > 20 {
                return Err(err("fractional seconds must have 1-20 digits"));
            }
            // Keep microsecond precision; further digits are truncated.
            for k in 0..6 {
                let d = if k < digits {
                    i64::from(b[start + k] - b'0')
                } else {
                    0
                };
                frac_micros = frac_micros * 10 + d;
            }
        }
        let offset_secs = match &b[i..] {
            b"Z" => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let oh = num(b, i + 1, 2).ok_or(err("timezone offset must be digits"))?;
                let om = num(b, i + 4, 2).ok_or(err("timezone offset must be digits"))?;
                if oh > 23 || om > 59 {
                    return Err(err("timezone offset out of range"));
                }
                if *sign == b'-' && oh == 0 && om == 0 {
                    return Err(err("\"-00:00\" is not allowed; use \"Z\" or \"+00:00\""));
                }
                let secs = oh * 3600 + om * 60;
                if *sign == b'-' { -secs } else { secs }
            }
            _ => return Err(err("timezone required: \"Z\" or \"+HH:MM\"/\"-HH:MM\"")),
        };
        if !(1..=12).contains(&month) {
            return Err(err("month out of range"));
        }
        if day < 1 || day > days_in_month(year, month) {
            return Err(err("day out of range for the month"));
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(err("time of day out of range"));
        }
        let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
            - offset_secs;
        if secs < days_from_civil(0, 1, 1) * 86_400 {
            return Err(err("normalises to before year 0000"));
        }
        Ok(Self {
            micros: secs * 1_000_000 + frac_micros,
            raw: s.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Microseconds since the Unix epoch (negative before 1970), truncated to microseconds.
    pub fn unix_micros(&self) -> i64 {
        self.micros
    }
}
string_type!(Datetime);

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(s: &str) -> i64 {
        Datetime::parse(s).expect(s).unix_micros()
    }

    #[test]
    fn instants() {
        assert_eq!(micros("1970-01-01T00:00:00Z"), 0);
        assert_eq!(micros("1970-01-01T00:00:01.5Z"), 1_500_000);
        assert_eq!(micros("1985-04-12T23:20:50.123Z"), 482_196_050_123_000);
        assert_eq!(micros("1985-04-12T23:20:50.123-07:00"), 482_221_250_123_000);
        assert_eq!(micros("1985-04-12T23:20:50.1234569Z"), 482_196_050_123_456);
        assert!(micros("1969-12-31T23:59:59Z") < 0);
    }

    #[test]
    fn leap_days() {
        assert!(Datetime::parse("2024-02-29T00:00:00Z").is_ok());
        assert!(Datetime::parse("2023-02-29T00:00:00Z").is_err());
        assert!(Datetime::parse("1900-02-29T00:00:00Z").is_err());
        assert!(Datetime::parse("2000-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn rejects_lowercase_and_negative_zero() {
        assert!(Datetime::parse("1985-04-12t23:20:50Z").is_err());
        assert!(Datetime::parse("1985-04-12T23:20:50-00:00").is_err());
        assert!(Datetime::parse("1985-04-12T23:20:50+00:00").is_ok());
    }
}
