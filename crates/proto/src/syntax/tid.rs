//! Timestamp identifiers (TIDs): 13 base32-sortable characters encoding a 64-bit integer.

use super::{SyntaxError, string_type};

/// The base32-sortable alphabet: digits 2–7 then a–z, so string order equals numeric order.
const ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";

/// A TID: 53 bits of microseconds since the Unix epoch, then 10 bits of clock identifier. Its
/// string order is its time order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tid(String);

fn digit(c: u8) -> Option<u64> {
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u64)
}

impl Tid {
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        let err = SyntaxError::Tid;
        let b = s.as_bytes();
        if b.len() != 13 {
            return Err(err("must be exactly 13 characters"));
        }
        if !b.iter().all(|&c| digit(c).is_some()) {
            return Err(err("has a character outside base32-sortable [2-7a-z]"));
        }
        // The first character carries the top bits; its high bit must stay clear.
        if digit(b[0]).is_none_or(|d| d > 15) {
            return Err(err("first character must be in [2-7a-j]"));
        }
        Ok(Self(s.to_owned()))
    }

    /// Builds a TID from a microsecond timestamp (low 53 bits kept) and a clock id (low 10 bits).
    pub fn from_parts(timestamp_micros: u64, clock_id: u16) -> Self {
        let v = ((timestamp_micros & ((1 << 53) - 1)) << 10) | u64::from(clock_id & 0x3ff);
        let mut out = String::with_capacity(13);
        for i in (0..13).rev() {
            let idx = ((v >> (i * 5)) & 31) as usize;
            out.push(char::from(ALPHABET[idx]));
        }
        Self(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The whole 64-bit value.
    pub fn as_u64(&self) -> u64 {
        self.0
            .bytes()
            .fold(0u64, |acc, c| (acc << 5) | digit(c).unwrap_or_default())
    }

    /// Microseconds since the Unix epoch.
    pub fn timestamp_micros(&self) -> u64 {
        (self.as_u64() >> 10) & ((1 << 53) - 1)
    }

    /// The 10-bit clock identifier.
    pub fn clock_id(&self) -> u16 {
        (self.as_u64() & 0x3ff) as u16
    }
}
string_type!(Tid);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_parts() {
        let t = Tid::from_parts(1_700_000_000_123_456, 7);
        assert_eq!(t.as_str().len(), 13);
        assert_eq!(Tid::parse(t.as_str()).expect("valid"), t);
        assert_eq!(t.timestamp_micros(), 1_700_000_000_123_456);
        assert_eq!(t.clock_id(), 7);
    }

    #[test]
    fn order_is_time_order() {
        let a = Tid::from_parts(1_000, 999);
        let b = Tid::from_parts(1_001, 0);
        assert!(a < b);
        assert_eq!(
            Tid::parse("2222222222222")
                .expect("zero")
                .timestamp_micros(),
            0
        );
    }

    #[test]
    fn known_value() {
        // 3jzfcijpj2z2a: a TID from the spec's examples; it decodes to a 2023 timestamp.
        let t = Tid::parse("3jzfcijpj2z2a").expect("valid");
        let secs = t.timestamp_micros() / 1_000_000;
        assert!((1_672_531_200..1_704_067_200).contains(&secs), "{secs}");
    }
}
