//! AT URIs (`at://<authority>[/<collection>[/<rkey>]]`) and record keys.

use super::{AtIdentifier, Did, Nsid, SyntaxError, string_type};

/// A record key: 1–512 characters from `[A-Za-z0-9._:~-]`, never `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey(String);

impl RecordKey {
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        let err = SyntaxError::RecordKey;
        if s.is_empty() || s.len() > 512 {
            return Err(err("must be 1-512 characters"));
        }
        if s == "." || s == ".." {
            return Err(err("\".\" and \"..\" are reserved"));
        }
        if !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'~' | b'-'))
        {
            return Err(err("has a character outside [A-Za-z0-9._:~-]"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_type!(RecordKey);

/// Splits a repository path (`<collection>/<rkey>`, as in firehose ops and MST keys) into its
/// validated parts. A bad collection reports an NSID error, anything else a record-key error.
pub fn parse_record_path(path: &str) -> Result<(Nsid, RecordKey), SyntaxError> {
    let (collection, rkey) = path.split_once('/').ok_or(SyntaxError::RecordKey(
        "repo path must be <collection>/<rkey>",
    ))?;
    Ok((Nsid::parse(collection)?, RecordKey::parse(rkey)?))
}

/// An AT URI in the restricted form Lexicon allows: authority, optional collection NSID,
/// optional record key; no query, no fragment, no trailing slash. Parsed parts are kept so
/// callers never re-split the string. Equality and order follow the string.
#[derive(Debug, Clone)]
pub struct AtUri {
    raw: String,
    authority: AtIdentifier,
    collection: Option<Nsid>,
    rkey: Option<RecordKey>,
}

/// The spec caps an AT URI at 8 KB.
const ATURI_MAX_LEN: usize = 8 * 1024;

impl AtUri {
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        let err = SyntaxError::AtUri;
        if s.len() > ATURI_MAX_LEN {
            return Err(err("longer than 8 KB"));
        }
        let rest = s
            .strip_prefix("at://")
            .ok_or(err("must start with \"at://\""))?;
        let mut parts = rest.split('/');
        let authority = AtIdentifier::parse(parts.next().unwrap_or_default())
            .map_err(|_| err("authority is neither a valid DID nor a valid handle"))?;
        let collection = parts
            .next()
            .map(|c| Nsid::parse(c).map_err(|_| err("collection is not a valid NSID")))
            .transpose()?;
        let rkey = parts
            .next()
            .map(|r| RecordKey::parse(r).map_err(|_| err("record key is not valid")))
            .transpose()?;
        if parts.next().is_some() {
            return Err(err("too many path segments"));
        }
        Ok(Self {
            raw: s.to_owned(),
            authority,
            collection,
            rkey,
        })
    }

    /// `at://<did>/<collection>/<rkey>`: the URI of one record.
    pub fn record(did: &Did, collection: &Nsid, rkey: &RecordKey) -> Self {
        Self {
            raw: format!("at://{did}/{collection}/{rkey}"),
            authority: AtIdentifier::Did(did.clone()),
            collection: Some(collection.clone()),
            rkey: Some(rkey.clone()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn authority(&self) -> &AtIdentifier {
        &self.authority
    }

    pub fn collection(&self) -> Option<Nsid> {
        self.collection.clone()
    }

    pub fn rkey(&self) -> Option<RecordKey> {
        self.rkey.clone()
    }
}
string_type!(AtUri);

impl PartialEq for AtUri {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}
impl Eq for AtUri {}

impl std::hash::Hash for AtUri {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.raw.hash(state);
    }
}

impl PartialOrd for AtUri {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for AtUri {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.raw.cmp(&other.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_record_constructor_agree() {
        let u = AtUri::parse("at://did:plc:abc/app.bsky.feed.post/3jzfcijpj2z2a").expect("valid");
        assert_eq!(u.authority().as_str(), "did:plc:abc");
        assert_eq!(
            u.collection().map(|c| c.to_string()).as_deref(),
            Some("app.bsky.feed.post")
        );
        assert_eq!(
            u.rkey().map(|r| r.to_string()).as_deref(),
            Some("3jzfcijpj2z2a")
        );
        let built = AtUri::record(
            &Did::parse("did:plc:abc").expect("did"),
            &Nsid::parse("app.bsky.feed.post").expect("nsid"),
            &RecordKey::parse("3jzfcijpj2z2a").expect("rkey"),
        );
        assert_eq!(built, u);
        assert_eq!(AtUri::parse(built.as_str()).expect("reparse"), built);
    }

    #[test]
    fn authority_only_has_no_parts() {
        let u = AtUri::parse("at://alice.test").expect("valid");
        assert!(u.collection().is_none() && u.rkey().is_none());
        assert!(AtUri::parse("at://alice.test/").is_err());
    }

    #[test]
    fn record_paths() {
        let (c, r) = parse_record_path("app.bsky.feed.post/3jzfcijpj2z2a").expect("valid");
        assert_eq!(
            (c.as_str(), r.as_str()),
            ("app.bsky.feed.post", "3jzfcijpj2z2a")
        );
        assert!(matches!(
            parse_record_path("app.bsky.feed.post"),
            Err(SyntaxError::RecordKey(_))
        ));
        assert!(matches!(
            parse_record_path("post/abc"),
            Err(SyntaxError::Nsid(_))
        ));
        assert!(matches!(
            parse_record_path("a.b.c/x/y"),
            Err(SyntaxError::RecordKey(_))
        ));
        assert!(matches!(
            parse_record_path("a.b.c/.."),
            Err(SyntaxError::RecordKey(_))
        ));
    }

    #[test]
    fn record_key_reserved_values() {
        assert!(RecordKey::parse(".").is_err());
        assert!(RecordKey::parse("..").is_err());
        assert!(RecordKey::parse("...").is_ok());
        assert!(RecordKey::parse(&"a".repeat(513)).is_err());
    }
}
