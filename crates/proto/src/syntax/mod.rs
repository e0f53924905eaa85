//! ATProto string syntaxes as parse-once, validated newtypes (DID, handle, NSID, AT URI, TID, ...).
//!
//! Each type is built only through `parse`, so holding one is proof the string was checked;
//! serde deserialisation goes through the same `parse`. Rules follow the atproto.com specs and
//! the shared interop vectors (`syntax/*.txt`).

mod aturi;
mod cid;
mod datetime;
mod ident;
mod language;
mod nsid;
mod tid;
mod uri;

pub use aturi::{AtUri, RecordKey, parse_record_path};
pub use cid::{parse_cid_str, validate_cid_syntax};
pub use datetime::Datetime;
pub use ident::{AtIdentifier, Did, Handle};
pub use language::Language;
pub use nsid::Nsid;
pub use tid::Tid;
pub use uri::Uri;

/// Why a string is not a valid value of one of the syntax types; the variant names the type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    #[error("invalid DID: {0}")]
    Did(&'static str),
    #[error("invalid handle: {0}")]
    Handle(&'static str),
    #[error("invalid AT identifier: {0}")]
    AtIdentifier(&'static str),
    #[error("invalid NSID: {0}")]
    Nsid(&'static str),
    #[error("invalid AT URI: {0}")]
    AtUri(&'static str),
    #[error("invalid record key: {0}")]
    RecordKey(&'static str),
    #[error("invalid TID: {0}")]
    Tid(&'static str),
    #[error("invalid datetime: {0}")]
    Datetime(&'static str),
    #[error("invalid language tag: {0}")]
    Language(&'static str),
    #[error("invalid CID: {0}")]
    Cid(&'static str),
    #[error("invalid URI: {0}")]
    Uri(&'static str),
}

/// One DNS-style label: 1–63 ASCII letters, digits or hyphens, not starting or ending with a
/// hyphen. Shared by handles and NSID authorities.
pub(crate) fn is_domain_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b.first() != Some(&b'-')
        && b.last() != Some(&b'-')
}

/// The shared surface of every string newtype: `FromStr`, `Display`, `AsRef<str>`, and serde
/// as a plain string whose deserialisation re-validates. Needs `Self::parse` and `as_str`.
macro_rules! string_type {
    ($ty:ident) => {
        impl ::std::str::FromStr for $ty {
            type Err = $crate::syntax::SyntaxError;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl ::std::convert::TryFrom<&str> for $ty {
            type Error = $crate::syntax::SyntaxError;
            fn try_from(s: &str) -> ::std::result::Result<Self, Self::Error> {
                Self::parse(s)
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::convert::AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::std::result::Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(
                    deserializer,
                )?;
                Self::parse(&s).map_err(<D::Error as ::serde::de::Error>::custom)
            }
        }
    };
}
pub(crate) use string_type;
