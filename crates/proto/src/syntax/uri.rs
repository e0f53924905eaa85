//! Generic URIs, as Lexicon's `uri` string format checks them (shallowly, by design).

use super::{SyntaxError, string_type};

/// A URI with a scheme: `scheme:rest`, where the scheme starts with a lowercase letter and the
/// rest is non-empty printable ASCII without spaces; at most 8 KB.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uri(String);

impl Uri {
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        let err = SyntaxError::Uri;
        if s.len() > 8 * 1024 {
            return Err(err("longer than 8 KB"));
        }
        let (scheme, rest) = s.split_once(':').ok_or(err("missing scheme"))?;
        let sb = scheme.as_bytes();
        if sb.is_empty()
            || sb.len() > 81
            || !sb[0].is_ascii_lowercase()
            || !sb[1..]
                .iter()
                .all(|c| c.is_ascii_lowercase() || *c == b'.' || *c == b'-')
        {
            return Err(err("scheme must be a lowercase letter then [a-z.-]"));
        }
        if rest.is_empty() || !rest.bytes().all(|c| c.is_ascii_graphic()) {
            return Err(err("body must be non-empty printable ASCII without spaces"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_type!(Uri);
