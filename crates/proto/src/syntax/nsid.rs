//! Namespaced identifiers (NSIDs) such as `app.bsky.feed.post`.

use super::{SyntaxError, is_domain_label, string_type};

/// An NSID: a reversed domain authority plus a name segment. Kept exactly as written (no case
/// normalisation), since records carry it verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nsid(String);

impl Nsid {
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        let err = SyntaxError::Nsid;
        if s.len() > 317 {
            return Err(err("longer than 317 characters"));
        }
        let (authority, name) = s
            .rsplit_once('.')
            .ok_or(err("needs at least three segments"))?;
        let mut segments = 0usize;
        for (i, seg) in authority.split('.').enumerate() {
            if !is_domain_label(seg) {
                return Err(err(
                    "authority segments must be 1-63 ASCII letters, digits or inner hyphens",
                ));
            }
            if i == 0 && seg.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                return Err(err("first segment must not start with a digit"));
            }
            segments += 1;
        }
        if segments < 2 {
            return Err(err("needs at least three segments"));
        }
        let nb = name.as_bytes();
        if nb.is_empty() || nb.len() > 63 {
            return Err(err("name segment must be 1-63 characters"));
        }
        if !nb.iter().all(u8::is_ascii_alphanumeric) {
            return Err(err("name segment must be ASCII letters and digits only"));
        }
        if !nb[0].is_ascii_alphabetic() {
            return Err(err("name segment must start with a letter"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The authority as a domain name, lowercased: `app.bsky.feed.post` → `feed.bsky.app`.
    pub fn authority(&self) -> String {
        let authority = self.0.rsplit_once('.').map(|(a, _)| a).unwrap_or_default();
        let mut parts: Vec<&str> = authority.split('.').collect();
        parts.reverse();
        parts.join(".").to_ascii_lowercase()
    }

    /// The final (name) segment: `app.bsky.feed.post` → `post`.
    pub fn name(&self) -> &str {
        self.0.rsplit_once('.').map(|(_, n)| n).unwrap_or_default()
    }
}
string_type!(Nsid);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_and_name() {
        let n = Nsid::parse("App.Bsky.feed.postV2").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n.authority(), "feed.bsky.app");
        assert_eq!(n.name(), "postV2");
        assert_eq!(n.as_str(), "App.Bsky.feed.postV2");
    }

    #[test]
    fn rejects_short_and_bad_names() {
        assert!(Nsid::parse("a.b").is_err());
        assert!(Nsid::parse("a.b.1c").is_err());
        assert!(Nsid::parse("a.b.c-d").is_err());
        assert!(Nsid::parse("a.b.c").is_ok());
    }
}
