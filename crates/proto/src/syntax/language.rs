//! BCP-47 language tags (RFC 5646), with the strictness the interop vectors ask for.

use super::{SyntaxError, string_type};

/// A language tag such as `en`, `pt-BR` or `zh-Hant`. Well-formed per RFC 5646 §2.1 with a
/// lowercase primary language subtag, plus the §2.2.9 validity rules that no variant and no
/// extension singleton repeats. Kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Language(String);

/// RFC 5646 §2.2.8 grandfathered tags: whole-tag matches, compared case-insensitively.
const GRANDFATHERED: &[&str] = &[
    "en-gb-oed",
    "i-ami",
    "i-bnn",
    "i-default",
    "i-enochian",
    "i-hak",
    "i-klingon",
    "i-lux",
    "i-mingo",
    "i-navajo",
    "i-pwn",
    "i-tao",
    "i-tay",
    "i-tsu",
    "sgn-be-fr",
    "sgn-be-nl",
    "sgn-ch-de",
    "art-lojban",
    "cel-gaulish",
    "no-bok",
    "no-nyn",
    "zh-guoyu",
    "zh-hakka",
    "zh-min",
    "zh-min-nan",
    "zh-xiang",
];

fn alpha(s: &str, lo: usize, hi: usize) -> bool {
    (lo..=hi).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_alphabetic())
}

fn alnum(s: &str, lo: usize, hi: usize) -> bool {
    (lo..=hi).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_alphanumeric())
}

fn is_variant(s: &str) -> bool {
    alnum(s, 5, 8) || (s.len() == 4 && s.as_bytes()[0].is_ascii_digit() && alnum(s, 4, 4))
}

fn is_x(s: &str) -> bool {
    s.eq_ignore_ascii_case("x")
}

impl Language {
    pub fn parse(s: &str) -> Result<Self, SyntaxError> {
        let err = SyntaxError::Language;
        if s.is_empty() || s.len() > 128 {
            return Err(err("must be 1-128 characters"));
        }
        let tags: Vec<&str> = s.split('-').collect();
        if !tags.iter().all(|t| alnum(t, 1, 8)) {
            return Err(err("subtags must be 1-8 ASCII letters or digits"));
        }
        if GRANDFATHERED.iter().any(|g| g.eq_ignore_ascii_case(s)) {
            return Ok(Self(s.to_owned()));
        }
        let mut i = 0;
        if is_x(tags[0]) {
            return Self::private_use(&tags, s);
        }
        let primary = tags[0];
        let lower = primary.bytes().all(|c| c.is_ascii_lowercase());
        if !(lower && matches!(primary.len(), 2 | 3 | 5..=8)) {
            return Err(err("primary language must be 2-3 or 5-8 lowercase letters"));
        }
        i += 1;
        if primary.len() <= 3 {
            let mut ext = 0;
            while ext < 3 && tags.get(i).is_some_and(|t| alpha(t, 3, 3)) {
                i += 1;
                ext += 1;
            }
        }
        if tags.get(i).is_some_and(|t| alpha(t, 4, 4)) {
            i += 1; // script
        }
        if tags.get(i).is_some_and(|t| {
            alpha(t, 2, 2) || (t.len() == 3 && t.bytes().all(|c| c.is_ascii_digit()))
        }) {
            i += 1; // region
        }
        let mut variants: Vec<String> = Vec::new();
        while let Some(t) = tags.get(i).filter(|t| is_variant(t)) {
            let v = t.to_ascii_lowercase();
            if variants.contains(&v) {
                return Err(err("variant subtag repeated"));
            }
            variants.push(v);
            i += 1;
        }
        let mut singletons: Vec<u8> = Vec::new();
        while let Some(t) = tags.get(i).filter(|t| t.len() == 1 && !is_x(t)) {
            let single = t.as_bytes()[0].to_ascii_lowercase();
            if singletons.contains(&single) {
                return Err(err("extension singleton repeated"));
            }
            singletons.push(single);
            i += 1;
            let start = i;
            while tags.get(i).is_some_and(|t| alnum(t, 2, 8)) {
                i += 1;
            }
            if i == start {
                return Err(err("extension singleton needs at least one subtag"));
            }
        }
        if tags.get(i).is_some_and(|t| is_x(t)) {
            return Self::private_use(&tags[i..], s);
        }
        if i != tags.len() {
            return Err(err("subtags out of order or malformed"));
        }
        Ok(Self(s.to_owned()))
    }

    /// `x-…`: at least one more subtag, each 1–8 alphanumerics (already checked).
    fn private_use(tags: &[&str], whole: &str) -> Result<Self, SyntaxError> {
        if tags.len() < 2 {
            return Err(SyntaxError::Language(
                "private-use \"x\" needs at least one subtag",
            ));
        }
        Ok(Self(whole.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_type!(Language);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure() {
        for ok in [
            "en",
            "zh-cmn-Hans-CN",
            "sl-rozaj-biske",
            "x-whatever",
            "en-a-bbb-x-a-ccc",
            "de-1996",
        ] {
            assert!(Language::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "en-US-US",
            "en-a",
            "en-x",
            "i-bad-grandfathered",
            "En",
            "abcd",
            "en--US",
        ] {
            assert!(Language::parse(bad).is_err(), "{bad}");
        }
    }
}
