//! Lexicon documents parsed into a typed schema model, rejecting documents that break the spec.
//!
//! Only what validation needs is kept; descriptions and other annotations are dropped. Unknown
//! schema keys are ignored, as the official parser does.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::LexiconError;
use guildhall_proto::syntax;

/// One named definition of a document.
#[derive(Debug, Clone)]
pub(crate) enum Def {
    Record {
        /// `tid`, `nsid`, `any` or `literal:<value>`; `None` when the document gives none.
        key: Option<String>,
        record: ObjectSchema,
    },
    /// query, procedure, subscription, permission-set: checked for shape, never data-validated.
    /// Keeps the schemas of its parameters and bodies so references can be checked.
    Endpoint {
        schemas: Vec<Field>,
    },
    Token,
    Field(Field),
}

/// A data schema.
#[derive(Debug, Clone)]
pub(crate) enum Field {
    Boolean {
        konst: Option<bool>,
    },
    Integer {
        minimum: Option<i64>,
        maximum: Option<i64>,
        enumeration: Option<Vec<i64>>,
        konst: Option<i64>,
    },
    String(StringSchema),
    Bytes {
        min_length: Option<u64>,
        max_length: Option<u64>,
    },
    CidLink,
    Blob {
        accept: Option<Vec<String>>,
        max_size: Option<u64>,
    },
    Array {
        items: Box<Field>,
        min_length: Option<u64>,
        max_length: Option<u64>,
    },
    Object(ObjectSchema),
    /// Fully qualified: `nsid#name`.
    Ref(String),
    Union {
        /// Fully qualified: `nsid#name`.
        refs: Vec<String>,
        closed: bool,
    },
    Unknown,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct StringSchema {
    pub format: Option<Format>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub min_graphemes: Option<u64>,
    pub max_graphemes: Option<u64>,
    pub enumeration: Option<Vec<String>>,
    pub konst: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ObjectSchema {
    pub properties: BTreeMap<String, Field>,
    pub required: Vec<String>,
    pub nullable: Vec<String>,
}

/// The string formats of Lexicon v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    AtIdentifier,
    AtUri,
    Cid,
    Datetime,
    Did,
    Handle,
    Nsid,
    Tid,
    RecordKey,
    Uri,
    Language,
}

impl Format {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "at-identifier" => Self::AtIdentifier,
            "at-uri" => Self::AtUri,
            "cid" => Self::Cid,
            "datetime" => Self::Datetime,
            "did" => Self::Did,
            "handle" => Self::Handle,
            "nsid" => Self::Nsid,
            "tid" => Self::Tid,
            "record-key" => Self::RecordKey,
            "uri" => Self::Uri,
            "language" => Self::Language,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::AtIdentifier => "at-identifier",
            Self::AtUri => "at-uri",
            Self::Cid => "cid",
            Self::Datetime => "datetime",
            Self::Did => "did",
            Self::Handle => "handle",
            Self::Nsid => "nsid",
            Self::Tid => "tid",
            Self::RecordKey => "record-key",
            Self::Uri => "uri",
            Self::Language => "language",
        }
    }
}

/// A parsed lexicon document.
#[derive(Debug, Clone)]
pub(crate) struct Document {
    pub id: String,
    pub defs: BTreeMap<String, Def>,
}

const PRIMARY_TYPES: [&str; 5] = [
    "record",
    "query",
    "procedure",
    "subscription",
    "permission-set",
];

/// Parses one document from JSON text.
pub(crate) fn parse_document(text: &str) -> Result<Document, LexiconError> {
    let value: Value = serde_json::from_str(text).map_err(|e| LexiconError::Json(e.to_string()))?;
    parse_document_value(&value)
}

/// Parses one document from a JSON value.
pub(crate) fn parse_document_value(value: &Value) -> Result<Document, LexiconError> {
    let top = value.as_object().ok_or_else(|| LexiconError::Invalid {
        id: String::new(),
        path: String::new(),
        message: "a lexicon document must be a JSON object".into(),
    })?;
    let id = match top.get("id") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(LexiconError::Invalid {
                id: String::new(),
                path: "id".into(),
                message: "must be a string".into(),
            });
        }
    };
    let p = Parser { id: &id };
    match top.get("lexicon") {
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
        Some(Value::Number(_)) => {
            return Err(p.err("lexicon", "unsupported lexicon version (only 1)"));
        }
        _ => return Err(p.err("lexicon", "must be the integer 1")),
    }
    if syntax::Nsid::parse(&id).is_err() {
        return Err(p.err("id", format!("{id:?} is not a valid NSID")));
    }
    if let Some(d) = top.get("description")
        && !d.is_string()
    {
        return Err(p.err("description", "must be a string"));
    }
    let defs_json = match top.get("defs") {
        Some(Value::Object(m)) => m,
        _ => return Err(p.err("defs", "must be an object")),
    };
    if defs_json.is_empty() {
        return Err(p.err("defs", "a lexicon needs at least one definition"));
    }
    let mut defs = BTreeMap::new();
    for (name, def) in defs_json {
        let path = format!("defs.{name}");
        if name.is_empty() || name.contains('#') {
            return Err(p.err(&path, "definition names must be non-empty and without '#'"));
        }
        defs.insert(name.clone(), p.def(&path, name, def)?);
    }
    Ok(Document { id, defs })
}

struct Parser<'a> {
    id: &'a str,
}

type Obj = Map<String, Value>;

impl Parser<'_> {
    fn err(&self, path: &str, message: impl Into<String>) -> LexiconError {
        LexiconError::Invalid {
            id: self.id.to_owned(),
            path: path.to_owned(),
            message: message.into(),
        }
    }

    fn obj<'v>(&self, path: &str, v: &'v Value) -> Result<&'v Obj, LexiconError> {
        v.as_object()
            .ok_or_else(|| self.err(path, "must be an object"))
    }

    fn type_of<'v>(&self, path: &str, o: &'v Obj) -> Result<&'v str, LexiconError> {
        match o.get("type") {
            Some(Value::String(t)) => Ok(t),
            _ => Err(self.err(path, "missing string field 'type'")),
        }
    }

    fn def(&self, path: &str, name: &str, v: &Value) -> Result<Def, LexiconError> {
        let o = self.obj(path, v)?;
        let ty = self.type_of(path, o)?;
        if PRIMARY_TYPES.contains(&ty) && name != "main" {
            return Err(self.err(
                path,
                format!("primary type {ty:?} must be the 'main' definition"),
            ));
        }
        match ty {
            "record" => {
                let key = match o.get("key") {
                    Some(Value::String(k)) if valid_record_key_type(k) => Some(k.clone()),
                    Some(Value::String(k)) => {
                        return Err(self.err(
                            &format!("{path}.key"),
                            format!("invalid record key type {k:?}"),
                        ));
                    }
                    None => None,
                    Some(_) => return Err(self.err(&format!("{path}.key"), "must be a string")),
                };
                let rpath = format!("{path}.record");
                let r = o
                    .get("record")
                    .ok_or_else(|| self.err(&rpath, "required"))?;
                let ro = self.obj(&rpath, r)?;
                if ro.get("type").and_then(Value::as_str) != Some("object") {
                    return Err(self.err(&rpath, "a record schema must have type 'object'"));
                }
                Ok(Def::Record {
                    key,
                    record: self.object(&rpath, ro, true)?,
                })
            }
            "query" | "procedure" | "subscription" => Ok(Def::Endpoint {
                schemas: self.endpoint(path, ty, o)?,
            }),
            "permission-set" => {
                match o.get("permissions") {
                    Some(Value::Array(perms)) => {
                        for (i, perm) in perms.iter().enumerate() {
                            let pp = format!("{path}.permissions[{i}]");
                            let po = self.obj(&pp, perm)?;
                            if po.get("type").and_then(Value::as_str) != Some("permission") {
                                return Err(self.err(&pp, "must have type 'permission'"));
                            }
                            if !po.get("resource").is_some_and(Value::is_string) {
                                return Err(self.err(&pp, "missing string field 'resource'"));
                            }
                        }
                    }
                    _ => return Err(self.err(&format!("{path}.permissions"), "must be an array")),
                }
                Ok(Def::Endpoint {
                    schemas: Vec::new(),
                })
            }
            "token" => Ok(Def::Token),
            "ref" | "union" | "unknown" | "params" | "permission" => {
                Err(self.err(path, format!("type {ty:?} can not be a named definition")))
            }
            _ => Ok(Def::Field(self.field(path, v)?)),
        }
    }

    fn endpoint(&self, path: &str, ty: &str, o: &Obj) -> Result<Vec<Field>, LexiconError> {
        let mut schemas = Vec::new();
        if let Some(params) = o.get("parameters") {
            let pp = format!("{path}.parameters");
            let po = self.obj(&pp, params)?;
            if po.get("type").and_then(Value::as_str) != Some("params") {
                return Err(self.err(&pp, "must have type 'params'"));
            }
            let schema = self.object(&pp, po, false)?;
            for (k, f) in &schema.properties {
                let ok = match f {
                    Field::Boolean { .. }
                    | Field::Integer { .. }
                    | Field::String(_)
                    | Field::Unknown => true,
                    Field::Array { items, .. } => {
                        matches!(
                            **items,
                            Field::Boolean { .. } | Field::Integer { .. } | Field::String(_)
                        )
                    }
                    _ => false,
                };
                if !ok {
                    return Err(self.err(
                        &format!("{pp}.properties.{k}"),
                        "params may only hold boolean, integer, string, unknown or arrays of those",
                    ));
                }
            }
        }
        let bodies: &[&str] = match ty {
            "procedure" => &["input", "output"],
            "query" => &["output"],
            _ => &[],
        };
        for body in bodies {
            if let Some(b) = o.get(*body) {
                let bp = format!("{path}.{body}");
                let bo = self.obj(&bp, b)?;
                if !bo.get("encoding").is_some_and(Value::is_string) {
                    return Err(self.err(&bp, "missing string field 'encoding'"));
                }
                if let Some(s) = bo.get("schema") {
                    let sp = format!("{bp}.schema");
                    match self.field(&sp, s)? {
                        f @ (Field::Object(_) | Field::Ref(_) | Field::Union { .. }) => {
                            schemas.push(f)
                        }
                        _ => return Err(self.err(&sp, "must be an object, a ref or a union")),
                    }
                }
            }
        }
        if ty == "subscription" {
            let mp = format!("{path}.message");
            if let Some(m) = o.get("message") {
                let mo = self.obj(&mp, m)?;
                let sp = format!("{mp}.schema");
                let s = mo.get("schema").ok_or_else(|| self.err(&sp, "required"))?;
                match self.field(&sp, s)? {
                    f @ Field::Union { .. } => schemas.push(f),
                    _ => return Err(self.err(&sp, "a subscription message schema must be a union")),
                }
            }
        }
        if let Some(errors) = o.get("errors") {
            let ep = format!("{path}.errors");
            let arr = errors
                .as_array()
                .ok_or_else(|| self.err(&ep, "must be an array"))?;
            for (i, e) in arr.iter().enumerate() {
                let name = e.get("name").and_then(Value::as_str);
                if !name.is_some_and(|n| !n.is_empty() && !n.chars().any(char::is_whitespace)) {
                    return Err(self.err(
                        &format!("{ep}[{i}].name"),
                        "must be a string without whitespace",
                    ));
                }
            }
        }
        Ok(schemas)
    }

    /// Parses an `object` (or `params`) schema body.
    fn object(
        &self,
        path: &str,
        o: &Obj,
        allow_nullable: bool,
    ) -> Result<ObjectSchema, LexiconError> {
        let mut schema = ObjectSchema::default();
        match o.get("properties") {
            Some(Value::Object(props)) => {
                for (k, v) in props {
                    let fp = format!("{path}.properties.{k}");
                    schema.properties.insert(k.clone(), self.field(&fp, v)?);
                }
            }
            None => {}
            Some(_) => return Err(self.err(&format!("{path}.properties"), "must be an object")),
        }
        schema.required = self.string_list(&format!("{path}.required"), o.get("required"))?;
        for r in &schema.required {
            if !schema.properties.contains_key(r) {
                return Err(self.err(
                    &format!("{path}.required"),
                    format!("required property {r:?} is not defined"),
                ));
            }
        }
        if allow_nullable {
            schema.nullable = self.string_list(&format!("{path}.nullable"), o.get("nullable"))?;
        } else if o.contains_key("nullable") {
            return Err(self.err(&format!("{path}.nullable"), "params can not be nullable"));
        }
        Ok(schema)
    }

    fn string_list(&self, path: &str, v: Option<&Value>) -> Result<Vec<String>, LexiconError> {
        match v {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| self.err(path, "must be an array of strings"))
                })
                .collect(),
            Some(_) => Err(self.err(path, "must be an array of strings")),
        }
    }

    fn uint(&self, path: &str, o: &Obj, key: &str) -> Result<Option<u64>, LexiconError> {
        match o.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
                self.err(&format!("{path}.{key}"), "must be a non-negative integer")
            }),
            Some(_) => Err(self.err(&format!("{path}.{key}"), "must be a non-negative integer")),
        }
    }

    fn int(&self, path: &str, o: &Obj, key: &str) -> Result<Option<i64>, LexiconError> {
        match o.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.err(&format!("{path}.{key}"), "must be an integer")),
            Some(_) => Err(self.err(&format!("{path}.{key}"), "must be an integer")),
        }
    }

    fn bounds(
        &self,
        path: &str,
        o: &Obj,
        min: &str,
        max: &str,
    ) -> Result<(Option<u64>, Option<u64>), LexiconError> {
        let lo = self.uint(path, o, min)?;
        let hi = self.uint(path, o, max)?;
        if let (Some(lo), Some(hi)) = (lo, hi)
            && lo > hi
        {
            return Err(self.err(path, format!("{min} ({lo}) exceeds {max} ({hi})")));
        }
        Ok((lo, hi))
    }

    /// Resolves a `ref` string against this document.
    fn qualify(&self, path: &str, r: &str) -> Result<String, LexiconError> {
        qualify_ref(self.id, r).ok_or_else(|| self.err(path, format!("invalid reference {r:?}")))
    }

    fn field(&self, path: &str, v: &Value) -> Result<Field, LexiconError> {
        let o = self.obj(path, v)?;
        let ty = self.type_of(path, o)?;
        Ok(match ty {
            "boolean" => Field::Boolean {
                konst: match o.get("const") {
                    None => None,
                    Some(Value::Bool(b)) => Some(*b),
                    Some(_) => return Err(self.err(&format!("{path}.const"), "must be a boolean")),
                },
            },
            "integer" => {
                let minimum = self.int(path, o, "minimum")?;
                let maximum = self.int(path, o, "maximum")?;
                if let (Some(lo), Some(hi)) = (minimum, maximum)
                    && lo > hi
                {
                    return Err(self.err(path, format!("minimum ({lo}) exceeds maximum ({hi})")));
                }
                let enumeration = match o.get("enum") {
                    None => None,
                    Some(Value::Array(a)) => Some(
                        a.iter()
                            .map(|x| {
                                x.as_i64().ok_or_else(|| {
                                    self.err(
                                        &format!("{path}.enum"),
                                        "must be an array of integers",
                                    )
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                    Some(_) => {
                        return Err(
                            self.err(&format!("{path}.enum"), "must be an array of integers")
                        );
                    }
                };
                self.int(path, o, "default")?;
                let konst = self.int(path, o, "const")?;
                Field::Integer {
                    minimum,
                    maximum,
                    enumeration,
                    konst,
                }
            }
            "string" => {
                let format = match o.get("format") {
                    None => None,
                    Some(Value::String(f)) => Some(Format::from_name(f).ok_or_else(|| {
                        self.err(&format!("{path}.format"), format!("unknown format {f:?}"))
                    })?),
                    Some(_) => return Err(self.err(&format!("{path}.format"), "must be a string")),
                };
                let (min_length, max_length) = self.bounds(path, o, "minLength", "maxLength")?;
                let (min_graphemes, max_graphemes) =
                    self.bounds(path, o, "minGraphemes", "maxGraphemes")?;
                let enumeration = match o.get("enum") {
                    None => None,
                    v => Some(self.string_list(&format!("{path}.enum"), v)?),
                };
                self.string_list(&format!("{path}.knownValues"), o.get("knownValues"))?;
                let konst = match o.get("const") {
                    None => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => return Err(self.err(&format!("{path}.const"), "must be a string")),
                };
                if konst.is_some() && o.contains_key("default") {
                    return Err(self.err(path, "const and default are mutually exclusive"));
                }
                if o.get("default").is_some_and(|d| !d.is_string()) {
                    return Err(self.err(&format!("{path}.default"), "must be a string"));
                }
                Field::String(StringSchema {
                    format,
                    min_length,
                    max_length,
                    min_graphemes,
                    max_graphemes,
                    enumeration,
                    konst,
                })
            }
            "bytes" => {
                let (min_length, max_length) = self.bounds(path, o, "minLength", "maxLength")?;
                Field::Bytes {
                    min_length,
                    max_length,
                }
            }
            "cid-link" => Field::CidLink,
            "blob" => {
                let accept = match o.get("accept") {
                    None => None,
                    v => Some(self.string_list(&format!("{path}.accept"), v)?),
                };
                Field::Blob {
                    accept,
                    max_size: self.uint(path, o, "maxSize")?,
                }
            }
            "array" => {
                let ip = format!("{path}.items");
                let items = o.get("items").ok_or_else(|| self.err(&ip, "required"))?;
                let (min_length, max_length) = self.bounds(path, o, "minLength", "maxLength")?;
                Field::Array {
                    items: Box::new(self.field(&ip, items)?),
                    min_length,
                    max_length,
                }
            }
            "object" => Field::Object(self.object(path, o, true)?),
            "ref" => match o.get("ref") {
                Some(Value::String(r)) => Field::Ref(self.qualify(&format!("{path}.ref"), r)?),
                _ => return Err(self.err(&format!("{path}.ref"), "must be a string")),
            },
            "union" => {
                let refs = self
                    .string_list(&format!("{path}.refs"), o.get("refs"))?
                    .iter()
                    .map(|r| self.qualify(&format!("{path}.refs"), r))
                    .collect::<Result<Vec<_>, _>>()?;
                if !o.contains_key("refs") {
                    return Err(self.err(&format!("{path}.refs"), "required"));
                }
                let closed = match o.get("closed") {
                    None => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(self.err(&format!("{path}.closed"), "must be a boolean")),
                };
                if closed && refs.is_empty() {
                    return Err(self.err(path, "a closed union needs at least one ref"));
                }
                Field::Union { refs, closed }
            }
            "unknown" => Field::Unknown,
            other => {
                return Err(self.err(path, format!("type {other:?} is not allowed here")));
            }
        })
    }
}

/// `tid`, `nsid`, `any` or `literal:<record-key>`.
fn valid_record_key_type(k: &str) -> bool {
    match k.strip_prefix("literal:") {
        Some(rest) => syntax::RecordKey::parse(rest).is_ok(),
        None => matches!(k, "tid" | "nsid" | "any"),
    }
}

/// Turns `#name`, `nsid` or `nsid#name` into `nsid#name` (`main` when no fragment).
pub(crate) fn qualify_ref(doc_id: &str, r: &str) -> Option<String> {
    let (nsid, name) = match r.split_once('#') {
        Some(("", name)) => (doc_id, name),
        Some((nsid, name)) => (nsid, name),
        None => (r, "main"),
    };
    if name.is_empty() || name.contains('#') || syntax::Nsid::parse(nsid).is_err() {
        return None;
    }
    Some(format!("{nsid}#{name}"))
}
