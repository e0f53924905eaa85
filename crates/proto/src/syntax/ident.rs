//! DIDs, handles, and the AT identifier that is either of them.

use super::{SyntaxError, is_domain_label, string_type};

/// A DID (`did:<method>:<identifier>`), syntax-checked only; resolution happens elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Did(String);

/// The spec caps a DID at 2 KB.
const DID_MAX_LEN: usize = 2048;

impl Did {
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        let err = SyntaxError::Did;
        if s.len() > DID_MAX_LEN {
            return Err(err("longer than 2048 characters"));
        }
        let rest = s
            .strip_prefix("did:")
            .ok_or(err("must start with lowercase \"did:\""))?;
        let (method, id) = rest
            .split_once(':')
            .ok_or(err("missing method-specific identifier"))?;
        if method.is_empty() || !method.bytes().all(|c| c.is_ascii_lowercase()) {
            return Err(err("method must be one or more lowercase letters"));
        }
        if id.is_empty() {
            return Err(err("empty method-specific identifier"));
        }
        if !id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'%' | b'-'))
        {
            return Err(err("identifier has a character outside [A-Za-z0-9._:%-]"));
        }
        if id.ends_with(':') || id.ends_with('%') {
            return Err(err("identifier must not end with ':' or '%'"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The DID method, e.g. `plc` or `web`.
    pub fn method(&self) -> &str {
        self.0
            .get(4..)
            .and_then(|rest| rest.split(':').next())
            .unwrap_or_default()
    }

    pub fn into_string(self) -> String {
        self.0
    }
}
string_type!(Did);

/// A handle (a DNS name), normalised to lowercase at parse time so equal handles compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(String);

impl Handle {
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        let err = SyntaxError::Handle;
        if s.is_empty() {
            return Err(err("empty"));
        }
        if s.len() > 253 {
            return Err(err("longer than 253 characters"));
        }
        let mut labels = 0usize;
        let mut last = "";
        for label in s.split('.') {
            if !is_domain_label(label) {
                return Err(err(
                    "each label must be 1-63 ASCII letters, digits or inner hyphens",
                ));
            }
            labels += 1;
            last = label;
        }
        if labels < 2 {
            return Err(err("needs at least two labels"));
        }
        if !last.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) {
            return Err(err("top-level label must start with a letter"));
        }
        Ok(Self(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the top-level domain is one the handle spec reserves (`.alt`, `.arpa`,
    /// `.example`, `.internal`, `.invalid`, `.local`, `.localhost`, `.onion`) or `.test`,
    /// which is for development only. Such handles are syntactically valid but must not be
    /// trusted from the public network.
    pub fn has_reserved_tld(&self) -> bool {
        const RESERVED: &[&str] = &[
            "alt",
            "arpa",
            "example",
            "internal",
            "invalid",
            "local",
            "localhost",
            "onion",
            "test",
        ];
        self.0
            .rsplit('.')
            .next()
            .is_some_and(|tld| RESERVED.contains(&tld))
    }
}
string_type!(Handle);

/// The authority of an AT URI or an XRPC `repo` parameter: a DID or a handle.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AtIdentifier {
    Did(Did),
    Handle(Handle),
}

impl AtIdentifier {
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        // A string starting with `did:` can only be a DID: `did` is never a valid handle label
        // followed by ':'.
        if s.starts_with("did:") {
            Did::parse(s)
                .map(Self::Did)
                .map_err(|_| SyntaxError::AtIdentifier("starts with did: but is not a valid DID"))
        } else {
            Handle::parse(s)
                .map(Self::Handle)
                .map_err(|_| SyntaxError::AtIdentifier("neither a DID nor a valid handle"))
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Did(d) => d.as_str(),
            Self::Handle(h) => h.as_str(),
        }
    }

    pub fn as_did(&self) -> Option<&Did> {
        match self {
            Self::Did(d) => Some(d),
            Self::Handle(_) => None,
        }
    }
}
string_type!(AtIdentifier);

impl From<Did> for AtIdentifier {
    fn from(d: Did) -> Self {
        Self::Did(d)
    }
}

impl From<Handle> for AtIdentifier {
    fn from(h: Handle) -> Self {
        Self::Handle(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_method_and_errors() {
        let d = Did::parse("did:plc:abc123").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.method(), "plc");
        assert!(matches!(Did::parse("did:plc:"), Err(SyntaxError::Did(_))));
        assert!(Did::parse(&format!("did:web:{}", "a".repeat(2041))).is_err());
        assert!(Did::parse(&format!("did:web:{}", "a".repeat(2040))).is_ok());
    }

    #[test]
    fn handle_is_lowercased() {
        let h = Handle::parse("Alice.Example.COM").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.as_str(), "alice.example.com");
        assert_eq!(
            h,
            Handle::parse("alice.example.com").unwrap_or_else(|e| panic!("{e}"))
        );
    }

    #[test]
    fn at_identifier_picks_kind() {
        assert!(matches!(
            AtIdentifier::parse("did:plc:x"),
            Ok(AtIdentifier::Did(_))
        ));
        assert!(matches!(
            AtIdentifier::parse("a.test"),
            Ok(AtIdentifier::Handle(_))
        ));
        assert!(matches!(
            AtIdentifier::parse("did:x.test"),
            Err(SyntaxError::AtIdentifier(_))
        ));
    }

    #[test]
    fn serde_validates() {
        let ok: Result<Did, _> = serde_json::from_str("\"did:plc:abc\"");
        assert!(ok.is_ok());
        let bad: Result<Did, _> = serde_json::from_str("\"did:PLC:abc\"");
        assert!(bad.is_err());
        let h: Handle = serde_json::from_str("\"BOB.test\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            serde_json::to_string(&h).unwrap_or_default(),
            "\"bob.test\""
        );
    }
}
