//! Strict parsing of XRPC query parameters: unknown, repeated or malformed parameters are
//! rejected with a 400 before any handler logic runs.
//!
//! axum's `Query` extractor cannot express repeated keys (`capability=a&capability=b`), so
//! the raw query string is decoded here with `form_urlencoded`.

use guildhall_proto::syntax::{AtIdentifier, AtUri, Did};

use crate::error::XrpcError;

/// Longest raw query string accepted; anything longer cannot be a valid request (the longest
/// lexicon-bounded parameter set is well under this).
pub const MAX_QUERY_STRING: usize = 8 * 1024;

/// Decoded parameters of one request.
#[derive(Debug)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Decodes `raw`, allowing only the `known` names; names in `repeatable` may occur more
    /// than once, every other name at most once.
    pub fn parse(
        raw: Option<&str>,
        known: &[&str],
        repeatable: &[&str],
    ) -> Result<Params, XrpcError> {
        let raw = raw.unwrap_or("");
        if raw.len() > MAX_QUERY_STRING {
            return Err(XrpcError::InvalidRequest(format!(
                "query string longer than {MAX_QUERY_STRING} bytes"
            )));
        }
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            if !known.contains(&k.as_ref()) {
                return Err(XrpcError::InvalidRequest(format!(
                    "unknown parameter '{}'",
                    truncate(&k, 64)
                )));
            }
            if !repeatable.contains(&k.as_ref()) && pairs.iter().any(|(n, _)| n == &k) {
                return Err(XrpcError::InvalidRequest(format!(
                    "parameter '{k}' given more than once"
                )));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Params { pairs })
    }

    /// The value of a single-valued parameter; an empty value counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a repeatable parameter, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A string of at most `max` bytes.
    pub fn string(&self, name: &str, max: usize) -> Result<Option<&str>, XrpcError> {
        match self.get(name) {
            Some(v) if v.len() > max => Err(XrpcError::InvalidRequest(format!(
                "'{name}' is longer than {max} bytes"
            ))),
            other => Ok(other),
        }
    }

    /// A required string of at most `max` bytes.
    pub fn required(&self, name: &str, max: usize) -> Result<&str, XrpcError> {
        self.string(name, max)?
            .ok_or_else(|| XrpcError::InvalidRequest(format!("'{name}' is required")))
    }

    /// An integer within `min..=max`, or `default` when absent.
    pub fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, XrpcError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        // Lexicon integers are plain decimal; reject '+', spaces and leading zeros' cousins
        // like "1e3" that a lenient parser might accept.
        let ok_shape = !v.is_empty()
            && v.len() <= 20
            && v.strip_prefix('-')
                .unwrap_or(v)
                .bytes()
                .all(|b| b.is_ascii_digit());
        let n = ok_shape
            .then(|| v.parse::<i64>().ok())
            .flatten()
            .ok_or_else(|| XrpcError::InvalidRequest(format!("'{name}' must be an integer")))?;
        if !(min..=max).contains(&n) {
            return Err(XrpcError::InvalidRequest(format!(
                "'{name}' must be between {min} and {max}"
            )));
        }
        Ok(Some(n))
    }

    /// The page size: `limit` within `1..=max`, `default` when absent.
    pub fn limit(&self, default: u32, max: u32) -> Result<u32, XrpcError> {
        Ok(self
            .int("limit", 1, i64::from(max))?
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(default))
    }

    /// A DID-format parameter.
    pub fn did(&self, name: &str) -> Result<Option<Did>, XrpcError> {
        self.string(name, 2048)?
            .map(|v| Did::parse(v).map_err(|e| XrpcError::InvalidRequest(format!("'{name}': {e}"))))
            .transpose()
    }

    /// A required DID-format parameter.
    pub fn required_did(&self, name: &str) -> Result<Did, XrpcError> {
        self.did(name)?
            .ok_or_else(|| XrpcError::InvalidRequest(format!("'{name}' is required")))
    }

    /// A required at-identifier (DID or handle).
    pub fn required_actor(&self, name: &str) -> Result<AtIdentifier, XrpcError> {
        let v = self.required(name, 2048)?;
        AtIdentifier::parse(v).map_err(|e| XrpcError::InvalidRequest(format!("'{name}': {e}")))
    }

    /// A required AT-URI.
    pub fn required_at_uri(&self, name: &str) -> Result<AtUri, XrpcError> {
        let v = self.required(name, 8192)?;
        AtUri::parse(v).map_err(|e| XrpcError::InvalidRequest(format!("'{name}': {e}")))
    }
}

/// A capability id that must follow the grammar (error name `InvalidCapability`).
pub fn capability(v: &str) -> Result<String, XrpcError> {
    guildhall_lexicon::grammar::check_capability_id(v).map_err(|e| {
        XrpcError::invalid(
            "InvalidCapability",
            format!("capability '{}': {e}", truncate(v, 128)),
        )
    })?;
    Ok(v.to_owned())
}

/// At most `n` bytes of `s`, cut on a character boundary (for echoing input in messages).
fn truncate(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut i = n;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_unknown() {
        let p = Params::parse(
            Some("capability=a.b&capability=c.d&limit=3"),
            &["capability", "limit"],
            &["capability"],
        );
        let Ok(p) = p else { panic!("{p:?}") };
        assert_eq!(p.all("capability"), ["a.b", "c.d"]);
        assert_eq!(p.limit(25, 100).ok(), Some(3));
        assert!(Params::parse(Some("limit=1&limit=2"), &["limit"], &[]).is_err());
        assert!(Params::parse(Some("nope=1"), &["limit"], &[]).is_err());
    }

    #[test]
    fn integers_are_strict() {
        for bad in [
            "1e3",
            "+5",
            " 5",
            "0x10",
            "1000",
            "0",
            "-1",
            "99999999999999999999999",
        ] {
            let p = Params::parse(Some(&format!("limit={bad}")), &["limit"], &[]);
            let Ok(p) = p else { continue };
            assert!(p.limit(25, 100).is_err(), "{bad}");
        }
        let Ok(p) = Params::parse(None, &["limit"], &[]) else {
            panic!()
        };
        assert_eq!(p.limit(25, 100).ok(), Some(25));
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
