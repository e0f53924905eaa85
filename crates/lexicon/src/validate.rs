//! Generic validation of ATProto data (`Ipld`) against the schemas of a [`Catalog`].

use ipld_core::ipld::Ipld;
use unicode_segmentation::UnicodeSegmentation;

use crate::catalog::Catalog;
use crate::schema::{Def, Field, Format, ObjectSchema, StringSchema};
use crate::{ValidationIssue, semantic};
use guildhall_proto::syntax;

/// Guards against reference cycles (`a` → `b` → `a`) in hostile catalogs.
const MAX_DEPTH: usize = 64;

pub(crate) fn kind(v: &Ipld) -> &'static str {
    match v {
        Ipld::Null => "null",
        Ipld::Bool(_) => "boolean",
        Ipld::Integer(_) => "integer",
        Ipld::Float(_) => "float",
        Ipld::String(_) => "string",
        Ipld::Bytes(_) => "bytes",
        Ipld::List(_) => "array",
        Ipld::Map(_) => "object",
        Ipld::Link(_) => "cid-link",
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

struct Walk<'c> {
    catalog: &'c Catalog,
    issues: Vec<ValidationIssue>,
}

impl Walk<'_> {
    fn issue(&mut self, path: &str, message: impl Into<String>) {
        self.issues.push(ValidationIssue {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn object(&mut self, schema: &ObjectSchema, value: &Ipld, path: &str, depth: usize) {
        let Ipld::Map(map) = value else {
            self.issue(path, format!("expected an object, found {}", kind(value)));
            return;
        };
        for r in &schema.required {
            if !map.contains_key(r) {
                self.issue(&join(path, r), "required field missing");
            }
        }
        for (key, field) in &schema.properties {
            let Some(v) = map.get(key) else { continue };
            let fp = join(path, key);
            if matches!(v, Ipld::Null) {
                if !schema.nullable.contains(key) {
                    self.issue(&fp, "must not be null");
                }
                continue;
            }
            self.field(field, v, &fp, depth);
        }
    }

    fn field(&mut self, field: &Field, v: &Ipld, path: &str, depth: usize) {
        if depth > MAX_DEPTH {
            self.issue(path, "schema nesting too deep (reference cycle?)");
            return;
        }
        match field {
            Field::Boolean { konst } => match v {
                Ipld::Bool(b) => {
                    if konst.is_some_and(|k| k != *b) {
                        self.issue(path, format!("must be {}", konst.unwrap_or_default()));
                    }
                }
                _ => self.issue(path, format!("expected a boolean, found {}", kind(v))),
            },
            Field::Integer {
                minimum,
                maximum,
                enumeration,
                konst,
            } => self.integer(v, path, *minimum, *maximum, enumeration.as_deref(), *konst),
            Field::String(s) => self.string(s, v, path),
            Field::Bytes {
                min_length,
                max_length,
            } => match v {
                Ipld::Bytes(b) => {
                    let n = b.len() as u64;
                    if min_length.is_some_and(|m| n < m) {
                        self.issue(
                            path,
                            format!(
                                "{n} bytes, fewer than minLength {}",
                                min_length.unwrap_or(0)
                            ),
                        );
                    }
                    if max_length.is_some_and(|m| n > m) {
                        self.issue(
                            path,
                            format!("{n} bytes, more than maxLength {}", max_length.unwrap_or(0)),
                        );
                    }
                }
                _ => self.issue(path, format!("expected bytes, found {}", kind(v))),
            },
            Field::CidLink => {
                if !matches!(v, Ipld::Link(_)) {
                    self.issue(path, format!("expected a cid-link, found {}", kind(v)));
                }
            }
            Field::Blob { accept, max_size } => self.blob(v, path, accept.as_deref(), *max_size),
            Field::Array {
                items,
                min_length,
                max_length,
            } => {
                let Ipld::List(list) = v else {
                    self.issue(path, format!("expected an array, found {}", kind(v)));
                    return;
                };
                let n = list.len() as u64;
                if min_length.is_some_and(|m| n < m) {
                    self.issue(
                        path,
                        format!(
                            "{n} elements, fewer than minLength {}",
                            min_length.unwrap_or(0)
                        ),
                    );
                }
                if max_length.is_some_and(|m| n > m) {
                    self.issue(
                        path,
                        format!(
                            "{n} elements, more than maxLength {}",
                            max_length.unwrap_or(0)
                        ),
                    );
                }
                for (i, item) in list.iter().enumerate() {
                    self.field(items, item, &format!("{path}[{i}]"), depth + 1);
                }
            }
            Field::Object(o) => self.object(o, v, path, depth + 1),
            Field::Ref(r) => self.reference(r, v, path, depth + 1),
            Field::Union { refs, closed } => self.union(refs, *closed, v, path, depth + 1),
            Field::Unknown => self.unknown(v, path),
        }
    }

    fn integer(
        &mut self,
        v: &Ipld,
        path: &str,
        minimum: Option<i64>,
        maximum: Option<i64>,
        enumeration: Option<&[i64]>,
        konst: Option<i64>,
    ) {
        let n = match v {
            Ipld::Integer(n) => *n,
            Ipld::Float(_) => {
                self.issue(
                    path,
                    "expected an integer, found a float (floats are not allowed)",
                );
                return;
            }
            _ => {
                self.issue(path, format!("expected an integer, found {}", kind(v)));
                return;
            }
        };
        let Ok(n) = i64::try_from(n) else {
            self.issue(path, "integer outside the signed 64-bit range");
            return;
        };
        if let Some(k) = konst
            && n != k
        {
            self.issue(path, format!("must be {k}, found {n}"));
        }
        if let Some(e) = enumeration
            && !e.contains(&n)
        {
            self.issue(path, format!("{n} is not one of {e:?}"));
        }
        if let Some(m) = minimum
            && n < m
        {
            self.issue(path, format!("{n} is less than the minimum {m}"));
        }
        if let Some(m) = maximum
            && n > m
        {
            self.issue(path, format!("{n} is greater than the maximum {m}"));
        }
    }

    fn string(&mut self, s: &StringSchema, v: &Ipld, path: &str) {
        let Ipld::String(text) = v else {
            self.issue(path, format!("expected a string, found {}", kind(v)));
            return;
        };
        if let Some(k) = &s.konst
            && text != k
        {
            self.issue(path, format!("must be {k:?}"));
        }
        if let Some(e) = &s.enumeration
            && !e.contains(text)
        {
            self.issue(path, format!("{text:?} is not one of {e:?}"));
        }
        let bytes = text.len() as u64;
        if let Some(m) = s.min_length
            && bytes < m
        {
            self.issue(path, format!("{bytes} bytes, shorter than minLength {m}"));
        }
        if let Some(m) = s.max_length
            && bytes > m
        {
            self.issue(path, format!("{bytes} bytes, longer than maxLength {m}"));
        }
        // Graphemes never outnumber bytes: a max is met without counting when bytes ≤ max.
        let need_min = s.min_graphemes.is_some();
        let need_max = s.max_graphemes.is_some_and(|m| bytes > m);
        if need_min || need_max {
            let g = text.graphemes(true).count() as u64;
            if let Some(m) = s.min_graphemes
                && g < m
            {
                self.issue(path, format!("{g} graphemes, fewer than minGraphemes {m}"));
            }
            if let Some(m) = s.max_graphemes
                && g > m
            {
                self.issue(path, format!("{g} graphemes, more than maxGraphemes {m}"));
            }
        }
        if let Some(f) = s.format
            && let Err(reason) = check_format(f, text)
        {
            self.issue(path, format!("not a valid {} ({reason})", f.name()));
        }
    }

    fn blob(&mut self, v: &Ipld, path: &str, accept: Option<&[String]>, max_size: Option<u64>) {
        let Ipld::Map(m) = v else {
            self.issue(path, format!("expected a blob, found {}", kind(v)));
            return;
        };
        if m.get("$type") != Some(&Ipld::String("blob".into())) {
            self.issue(path, "expected a blob ($type \"blob\")");
            return;
        }
        if !matches!(m.get("ref"), Some(Ipld::Link(_))) {
            self.issue(&join(path, "ref"), "a blob needs a cid-link 'ref'");
        }
        let size = match m.get("size") {
            Some(Ipld::Integer(n)) if *n >= 0 => Some(*n),
            _ => {
                self.issue(
                    &join(path, "size"),
                    "a blob needs a non-negative integer 'size'",
                );
                None
            }
        };
        let mime = match m.get("mimeType") {
            Some(Ipld::String(s)) if !s.is_empty() => Some(s.as_str()),
            _ => {
                self.issue(&join(path, "mimeType"), "a blob needs a string 'mimeType'");
                None
            }
        };
        if let (Some(size), Some(max)) = (size, max_size)
            && size > i128::from(max)
        {
            self.issue(path, format!("blob of {size} bytes exceeds maxSize {max}"));
        }
        if let (Some(mime), Some(accept)) = (mime, accept)
            && !accept.iter().any(|a| mime_matches(a, mime))
        {
            self.issue(
                path,
                format!("mimeType {mime:?} is not accepted ({accept:?})"),
            );
        }
    }

    fn reference(&mut self, target: &str, v: &Ipld, path: &str, depth: usize) {
        match self.catalog.defs.get(target) {
            None => self.issue(path, format!("unresolved reference {target}")),
            Some(Def::Field(f)) => self.field(f, v, path, depth),
            Some(Def::Record { record, .. }) => self.object(record, v, path, depth),
            Some(Def::Token) => self.issue(path, format!("{target} is a token, which has no data")),
            Some(Def::Endpoint { .. }) => {
                self.issue(path, format!("{target} is not a data schema"))
            }
        }
    }

    fn union(&mut self, refs: &[String], closed: bool, v: &Ipld, path: &str, depth: usize) {
        let Ipld::Map(m) = v else {
            self.issue(
                path,
                format!("expected an object with $type (union), found {}", kind(v)),
            );
            return;
        };
        let Some(Ipld::String(ty)) = m.get("$type") else {
            self.issue(&join(path, "$type"), "a union member needs a string $type");
            return;
        };
        // `nsid` and `nsid#main` name the same definition.
        let full = if ty.contains('#') {
            ty.clone()
        } else {
            format!("{ty}#main")
        };
        if refs.contains(&full) {
            self.reference(&full, v, path, depth);
        } else if closed {
            self.issue(
                &join(path, "$type"),
                format!("{ty:?} is not one of the closed union's types"),
            );
        }
    }

    fn unknown(&mut self, v: &Ipld, path: &str) {
        match v {
            Ipld::Map(m) if m.get("$type") == Some(&Ipld::String("blob".into())) => {
                self.issue(path, "expected an object, found a blob");
            }
            Ipld::Map(_) => self.no_floats(v, path),
            _ => self.issue(path, format!("expected an object, found {}", kind(v))),
        }
    }

    /// Free-form data must still be ATProto data: no floats at any depth (a JSON Schema's
    /// `"maximum": 0.5` cannot be published). Iterative, so hostile nesting cannot overflow.
    fn no_floats(&mut self, v: &Ipld, path: &str) {
        let mut stack = vec![(v, path.to_owned())];
        while let Some((v, p)) = stack.pop() {
            match v {
                Ipld::Float(_) => self.issue(&p, "floats are not allowed in the data model"),
                Ipld::List(l) => {
                    stack.extend(l.iter().enumerate().map(|(i, x)| (x, format!("{p}[{i}]"))))
                }
                Ipld::Map(m) => stack.extend(m.iter().map(|(k, x)| (x, join(&p, k)))),
                _ => {}
            }
        }
    }
}

/// `image/*` matches `image/png`; `*/*` matches anything.
fn mime_matches(pattern: &str, mime: &str) -> bool {
    if pattern == "*/*" || pattern == mime {
        return true;
    }
    match pattern.strip_suffix("/*") {
        Some(prefix) => mime.split_once('/').is_some_and(|(top, _)| top == prefix),
        None => false,
    }
}

pub(crate) fn check_format(f: Format, s: &str) -> Result<(), syntax::SyntaxError> {
    match f {
        Format::AtIdentifier => syntax::AtIdentifier::parse(s).map(drop),
        Format::AtUri => syntax::AtUri::parse(s).map(drop),
        // Lexicon asks for the syntax only; the CID need not decode.
        Format::Cid => syntax::validate_cid_syntax(s),
        Format::Datetime => syntax::Datetime::parse(s).map(drop),
        Format::Did => syntax::Did::parse(s).map(drop),
        Format::Handle => syntax::Handle::parse(s).map(drop),
        Format::Nsid => syntax::Nsid::parse(s).map(drop),
        Format::Tid => syntax::Tid::parse(s).map(drop),
        Format::RecordKey => syntax::RecordKey::parse(s).map(drop),
        Format::Uri => syntax::Uri::parse(s).map(drop),
        Format::Language => syntax::Language::parse(s).map(drop),
    }
}

impl Catalog {
    /// Validates a record against its lexicon only (what any ATProto validator checks).
    pub fn validate_record_schema(
        &self,
        nsid: &str,
        record: &Ipld,
    ) -> Result<(), Vec<ValidationIssue>> {
        let mut walk = Walk {
            catalog: self,
            issues: Vec::new(),
        };
        let Some(Def::Record { record: schema, .. }) = self.defs.get(&format!("{nsid}#main"))
        else {
            walk.issue("", format!("{nsid} is not a record type in this catalog"));
            return Err(walk.issues);
        };
        match record {
            Ipld::Map(m) => match m.get("$type") {
                Some(Ipld::String(t)) if t == nsid => {}
                Some(Ipld::String(t)) => walk.issue(
                    "$type",
                    format!("{t:?} does not match the collection {nsid}"),
                ),
                Some(other) => {
                    walk.issue("$type", format!("expected a string, found {}", kind(other)))
                }
                None => walk.issue("$type", "required field missing"),
            },
            _ => {
                walk.issue(
                    "",
                    format!("a record must be an object, found {}", kind(record)),
                );
                return Err(walk.issues);
            }
        }
        walk.object(schema, record, "", 0);
        if walk.issues.is_empty() {
            Ok(())
        } else {
            Err(walk.issues)
        }
    }

    /// Validates a record against its lexicon, then applies Guildhall's own rules to Guildhall
    /// records (capability grammar, decimal amounts, …). Issues come sorted by path.
    ///
    /// Where a Guildhall rule and the lexicon both object to the same field, the more specific
    /// Guildhall message is kept.
    pub fn validate_record(&self, nsid: &str, record: &Ipld) -> Result<(), Vec<ValidationIssue>> {
        let generic = self
            .validate_record_schema(nsid, record)
            .err()
            .unwrap_or_default();
        let specific = semantic::check(nsid, record);
        if generic.is_empty() && specific.is_empty() {
            return Ok(());
        }
        let mut issues: Vec<ValidationIssue> = generic
            .into_iter()
            .filter(|g| !specific.iter().any(|s| s.path == g.path))
            .collect();
        issues.extend(specific);
        issues.sort_by(|a, b| a.path.cmp(&b.path));
        Err(issues)
    }

    /// [`Catalog::validate_record`] for a record in the JSON data model (`$link`, `$bytes`).
    pub fn validate_record_json(
        &self,
        nsid: &str,
        record: &serde_json::Value,
    ) -> Result<(), Vec<ValidationIssue>> {
        let ipld = crate::json::json_to_ipld(record).map_err(|e| {
            vec![ValidationIssue {
                path: e.path,
                message: e.message,
            }]
        })?;
        self.validate_record(nsid, &ipld)
    }
}

#[cfg(test)]
mod tests {
    use super::mime_matches;

    #[test]
    fn mime_globs() {
        assert!(mime_matches("image/*", "image/png"));
        assert!(mime_matches("*/*", "text/plain"));
        assert!(!mime_matches("image/*", "text/plain"));
        assert!(!mime_matches("image/png", "image/jpeg"));
    }
}
