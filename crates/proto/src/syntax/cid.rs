//! CID strings: the Lexicon `cid` string-format check, and full parsing into a CIDv1.

use super::SyntaxError;

/// The Lexicon `cid` string format, as the interop vectors define it: 8–256 characters of
/// `[A-Za-z0-9+=]` and not a CIDv0 (`Qmb…`). This is a syntax check only: some strings it
/// accepts are not decodable CIDs. Use [`parse_cid_str`] when the CID itself is needed.
pub fn validate_cid_syntax(s: &str) -> Result<(), SyntaxError> {
    let err = SyntaxError::Cid;
    if !(8..=256).contains(&s.len()) {
        return Err(err("must be 8-256 characters"));
    }
    if !s
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'=')
    {
        return Err(err("has a character outside [A-Za-z0-9+=]"));
    }
    if s.starts_with("Qm") {
        return Err(err("CIDv0 is not allowed"));
    }
    Ok(())
}

/// Parses a CID string into a CIDv1: the syntax check of [`validate_cid_syntax`] (which also
/// rules out whitespace and `/ipfs/…` paths the `cid` crate would accept), then a real decode
/// in any multibase encoding; CIDv0 is rejected.
pub fn parse_cid_str(s: &str) -> Result<cid::Cid, SyntaxError> {
    validate_cid_syntax(s)?;
    let parsed = cid::Cid::try_from(s).map_err(|_| SyntaxError::Cid("does not decode as a CID"))?;
    if parsed.version() != cid::Version::V1 {
        return Err(SyntaxError::Cid("only CIDv1 is allowed"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dag_cbor_cid_round_trips() {
        let s = "bafyreidcfk2groeivipsrepk47qaey5khzt7giskmukinh7qg7ggqoxhie";
        let c = parse_cid_str(s).expect("valid");
        assert_eq!(c.codec(), 0x71);
        assert_eq!(c.to_string(), s);
        assert!(parse_cid_str("QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR").is_err());
        assert!(parse_cid_str(&format!("/ipfs/{s}")).is_err());
    }
}
