//! Service manifests: a `dev.guildhall.service` record plus its `slug` (the record key), written
//! in YAML, JSON or TOML. Reading, checking against the lexicon (every problem, with its path),
//! checking that each operation's JSON Schemas compile, and the `init` example.

use std::collections::BTreeSet;
use std::path::Path;

use guildhall_lexicon::{Catalog, SERVICE_NSID, ValidationIssue, json_to_ipld};
use serde_json::{Map, Value};

use super::error::CliError;

/// A manifest that passed every check, ready to be written.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The record key.
    pub slug: String,
    /// The record, `$type` included.
    pub record: Map<String, Value>,
    /// Whether the manifest gave its own `createdAt` (otherwise `now`, or on update the
    /// published record's, is used).
    pub has_created_at: bool,
}

/// Reads a manifest file into JSON, choosing the syntax by extension.
pub fn read(path: &Path) -> Result<Value, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Io {
        path: path.to_owned(),
        source,
    })?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let syntax = |message: String| CliError::ManifestSyntax {
        path: path.to_owned(),
        message,
    };
    match ext.as_str() {
        "yaml" | "yml" => parse_yaml(&text).map_err(syntax),
        "json" => serde_json::from_str(&text).map_err(|e| syntax(format!("invalid JSON: {e}"))),
        "toml" => parse_toml(&text).map_err(syntax),
        other => Err(CliError::arg(format!(
            "{}: unknown manifest type {other:?}; use .yaml, .yml, .json or .toml",
            path.display()
        ))),
    }
}

/// YAML → JSON. Mapping keys must be strings; YAML floats stay floats (and are refused later
/// with a hint), so `amount: 0.5` is not silently turned into text.
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    serde_yaml_ng::from_str::<Value>(text).map_err(|e| format!("invalid YAML: {e}"))
}

/// TOML → JSON. TOML datetimes become their RFC 3339 text.
pub fn parse_toml(text: &str) -> Result<Value, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| format!("invalid TOML: {e}"))?;
    Ok(toml_to_json(toml::Value::Table(table)))
}

fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        // Kept as a float so the data-model check reports it with its path.
        toml::Value::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

fn issue(path: impl Into<String>, message: impl Into<String>) -> ValidationIssue {
    ValidationIssue {
        path: path.into(),
        message: message.into(),
    }
}

/// Finds the value at a validation path like `operations[0].inputSchema`.
fn locate_mut<'a>(root: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let mut cur = root;
    if path.is_empty() {
        return Some(cur);
    }
    for part in path.split('.') {
        let (name, rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !name.is_empty() {
            cur = cur.as_object_mut()?.get_mut(name)?;
        }
        for index in rest.split('[').skip(1) {
            let i: usize = index.strip_suffix(']')?.parse().ok()?;
            cur = cur.as_array_mut()?.get_mut(i)?;
        }
    }
    Some(cur)
}

/// Most data-model problems (floats, integers past 64 bits) a manifest can hold before the
/// report stops listing them one by one.
const MAX_DATA_MODEL_ISSUES: usize = 64;

/// The data-model conversion stops at its first problem; to report them all, each reported
/// value is set aside (replaced by null) and the conversion runs again. Returns the issues and
/// the paths they name.
fn data_model_issues(record: &mut Value) -> Vec<ValidationIssue> {
    let mut out = Vec::new();
    while out.len() < MAX_DATA_MODEL_ISSUES {
        let Err(e) = json_to_ipld(record) else { break };
        let Some(slot) = locate_mut(record, &e.path) else {
            out.push(issue(e.path, e.message));
            break;
        };
        if slot.is_null() {
            // Nothing left to set aside: stop rather than loop.
            out.push(issue(e.path, e.message));
            break;
        }
        *slot = Value::Null;
        let message = if e.message.contains("float") {
            format!(
                "{} (write amounts as quoted decimal strings such as \"0.002\"; SLA figures \
                 and versions are integers or strings)",
                e.message
            )
        } else {
            e.message
        };
        out.push(issue(e.path, message));
    }
    out
}

/// Turns a JSON pointer into the schema (`/properties/a/type`) into a path suffix
/// (`.properties.a.type`), using the schema itself to tell array indexes from keys.
fn pointer_suffix(schema: &Value, pointer: &str) -> String {
    let mut out = String::new();
    let mut cur = Some(schema);
    for raw in pointer.split('/').skip(1) {
        let seg = raw.replace("~1", "/").replace("~0", "~");
        match cur {
            Some(Value::Array(items)) => {
                let i: Option<usize> = seg.parse().ok();
                out.push_str(&format!("[{seg}]"));
                cur = i.and_then(|i| items.get(i));
            }
            Some(Value::Object(map)) => {
                out.push('.');
                out.push_str(&seg);
                cur = map.get(&seg);
            }
            _ => {
                out.push('.');
                out.push_str(&seg);
                cur = None;
            }
        }
    }
    out
}

/// Checks one JSON Schema by compiling it, offline (remote `$ref`s are not fetched). On
/// failure: the path suffix inside the schema where it broke, and why.
pub fn schema_compile_issue(schema: &Value) -> Option<(String, String)> {
    jsonschema::validator_for(schema).err().map(|e| {
        (
            pointer_suffix(schema, e.instance_path().as_str()),
            format!("does not compile as a JSON Schema: {e}"),
        )
    })
}

/// The top-level fields `dev.guildhall.service` defines.
fn known_fields() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for doc in Catalog::guildhall_documents() {
        let Ok(v) = serde_json::from_str::<Value>(doc) else {
            continue;
        };
        if v.get("id").and_then(Value::as_str) != Some(SERVICE_NSID) {
            continue;
        }
        if let Some(props) = v
            .pointer("/defs/main/record/properties")
            .and_then(Value::as_object)
        {
            out.extend(props.keys().cloned());
        }
    }
    out
}

/// Levenshtein distance, for "did you mean" on misspelt field names.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Top-level fields the lexicon does not define: not errors (records are open), but usually
/// typos, so each gets a warning with the closest known name.
pub fn unknown_field_warnings(manifest: &Value) -> Vec<String> {
    let Some(fields) = manifest.as_object() else {
        return Vec::new();
    };
    let known = known_fields();
    fields
        .keys()
        .filter(|k| !matches!(k.as_str(), "$type" | "slug") && !known.contains(*k))
        .map(|key| {
            let hint = known
                .iter()
                .filter(|k| distance(k, key) <= 2)
                .min_by_key(|k| distance(k, key))
                .map(|k| format!("; did you mean {k:?}?"))
                .unwrap_or_default();
            format!(
                "unknown field {key:?} is not part of {SERVICE_NSID} and will be published as is{hint}"
            )
        })
        .collect()
}

/// Checks a manifest (already parsed to JSON). `now` fills in a missing `createdAt`.
/// Every problem is reported at once, each with its path.
pub fn check(manifest: Value, now: &str, what: &str) -> Result<Manifest, CliError> {
    let invalid = |issues: Vec<ValidationIssue>| CliError::InvalidRecord {
        what: what.to_owned(),
        issues,
    };
    let Value::Object(mut fields) = manifest else {
        return Err(invalid(vec![issue(
            "",
            "a manifest is a mapping of field names to values (see `guildhall init`)",
        )]));
    };
    let catalog = Catalog::guildhall()?;
    let mut issues = Vec::new();

    let slug = match fields.remove("slug") {
        None => {
            issues.push(issue(
                "slug",
                "required: the record key of the listing, e.g. \"sms-gateway\"",
            ));
            None
        }
        Some(Value::String(s)) => {
            if let Err(e) = catalog.validate_record_key(SERVICE_NSID, &s) {
                issues.push(issue("slug", e.message));
            }
            Some(s)
        }
        Some(_) => {
            issues.push(issue("slug", "must be a string"));
            None
        }
    };
    match fields.get("$type") {
        None => {}
        Some(Value::String(t)) if t == SERVICE_NSID => {}
        Some(other) => issues.push(issue(
            "$type",
            format!("must be {SERVICE_NSID:?} (or left out), not {other}"),
        )),
    }
    fields.insert("$type".into(), Value::String(SERVICE_NSID.into()));
    let has_created_at = fields.contains_key("createdAt");
    if !has_created_at {
        fields.insert("createdAt".into(), Value::String(now.to_owned()));
    }

    let mut record = Value::Object(fields);
    let data = data_model_issues(&mut record);
    let reported: BTreeSet<String> = data.iter().map(|i| i.path.clone()).collect();
    issues.extend(data);
    if let Err(found) = catalog.validate_record_json(SERVICE_NSID, &record) {
        // A value set aside above reads as null now; its own problem is already listed.
        issues.extend(found.into_iter().filter(|i| !reported.contains(&i.path)));
    }

    // Compile each schema the lexicon accepted as an object.
    let flagged = |p: &str| {
        issues
            .iter()
            .any(|i| i.path == p || i.path.starts_with(&format!("{p}.")))
    };
    let mut compile = Vec::new();
    if let Some(ops) = record.get("operations").and_then(Value::as_array) {
        for (i, op) in ops.iter().enumerate() {
            for key in ["inputSchema", "outputSchema"] {
                let path = format!("operations[{i}].{key}");
                if let Some(schema @ Value::Object(_)) = op.get(key)
                    && !flagged(&path)
                    && let Some((suffix, msg)) = schema_compile_issue(schema)
                {
                    compile.push(issue(format!("{path}{suffix}"), msg));
                }
            }
        }
    }
    issues.extend(compile);

    let Value::Object(record) = record else {
        return Err(CliError::Local(
            "internal: the manifest changed shape while checking".into(),
        ));
    };
    match slug {
        Some(slug) if issues.is_empty() => Ok(Manifest {
            slug,
            record,
            has_created_at,
        }),
        _ => {
            issues.sort_by(|a, b| a.path.cmp(&b.path));
            issues.dedup();
            Err(invalid(issues))
        }
    }
}

/// The commented example `guildhall init` writes; `guildhall publish --dry-run` accepts it.
pub const EXAMPLE: &str = r#"# A Guildhall service manifest. `guildhall publish <this file>` checks it and
# publishes it as a dev.guildhall.service record in your own repository, where any
# Guildhall AppView indexes it. `guildhall publish --dry-run <file>` only checks.
# Field reference: lexicons/dev/guildhall/service.json.

# The record key: letters, digits, '.', '-', '_', '~' or ':' (1 to 512 characters).
# Publishing again with the same slug updates the listing; endorsements pinned to
# the old version lapse, so ask endorsers to renew after a big change.
slug: my-summarizer

# Shown to people and to agents choosing a tool (at most 64 characters).
name: My Summarizer
description: Summarizes long texts into a few sentences.

# What it offers: ids of 2 to 8 dot-separated segments of a-z, 0-9 and '-'.
capabilities:
  - text.summarize

# Where to reach it. protocol: mcp, a2a, http or xrpc; url: http(s) only.
endpoints:
  - protocol: mcp
    url: https://summarizer.example.com/mcp
    transport: streamable-http

# Callable operations (MCP tools, A2A skills, HTTP routes), ids unique.
# Schemas are JSON Schema objects; the AT Protocol has no floats, so use integers.
operations:
  - id: summarize
    description: Summarize one text.
    inputSchema:
      type: object
      properties:
        text: { type: string, maxLength: 100000 }
        sentences: { type: integer, minimum: 1, maximum: 20 }
      required: [text]
    outputSchema:
      type: object
      properties:
        summary: { type: string }

# Price points. Amounts are quoted decimal strings, never floats.
# model: free, per_call, per_token or subscription (needs period).
pricing:
  - model: per_call
    amount: "0.002"
    currency: USD
    unit: call

# Declared service levels, as integers: milliseconds and basis points (10000 = 100%).
sla:
  latencyP95Ms: 800
  availabilityBp: 9990

# ISO 3166-1 alpha-2 codes, upper case.
regions: [DE, US]
tags: [summarization, text]

links:
  termsUrl: https://summarizer.example.com/terms
  privacyUrl: https://summarizer.example.com/privacy

dataHandling:
  retainsContent: false

# Semantic Versioning, quoted.
version: "1.0.0"

# createdAt is filled in when you first publish and kept on updates.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:00:00.000Z";

    fn check_yaml(text: &str) -> Result<Manifest, Vec<ValidationIssue>> {
        let value = parse_yaml(text).map_err(|m| vec![issue("", m)])?;
        check(value, NOW, "test").map_err(|e| match e {
            CliError::InvalidRecord { issues, .. } => issues,
            other => vec![issue("", other.to_string())],
        })
    }

    #[test]
    fn the_example_is_valid() {
        let m = check_yaml(EXAMPLE).map_err(|e| format!("{e:?}"));
        let m = m.as_ref().map_err(String::as_str);
        assert_eq!(m.map(|m| m.slug.as_str()), Ok("my-summarizer"));
        let value = parse_yaml(EXAMPLE).unwrap_or_default();
        assert!(unknown_field_warnings(&value).is_empty());
    }

    #[test]
    fn every_float_is_reported_with_the_other_problems() {
        let text = EXAMPLE
            .replace("amount: \"0.002\"", "amount: 0.002")
            .replace("latencyP95Ms: 800", "latencyP95Ms: 800.5")
            .replace("- text.summarize", "- Text.Summarize");
        let issues = check_yaml(&text).err().unwrap_or_default();
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            ["capabilities[0]", "pricing[0].amount", "sla.latencyP95Ms"]
        );
        assert!(issues[1].message.contains("quoted decimal"), "{issues:?}");
    }

    #[test]
    fn schemas_must_compile() {
        let text = EXAMPLE.replace("maxLength: 100000", "pattern: \"([a-z\"");
        let issues = check_yaml(&text).err().unwrap_or_default();
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(
            issues[0].path,
            "operations[0].inputSchema.properties.text.pattern"
        );
        assert!(issues[0].message.contains("does not compile"), "{issues:?}");
    }

    #[test]
    fn remote_refs_are_not_fetched() {
        let text = EXAMPLE.replace(
            "summary: { type: string }",
            "summary: { $ref: \"https://schemas.example.com/s.json\" }",
        );
        let issues = check_yaml(&text).err().unwrap_or_default();
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(
            issues[0].path.starts_with("operations[0].outputSchema"),
            "{issues:?}"
        );
        assert!(
            issues[0].message.contains("schemas.example.com"),
            "{issues:?}"
        );
    }

    #[test]
    fn pointers_become_paths() {
        let schema = serde_json::json!({"allOf": [{"properties": {"a/b": {"type": 1}}}]});
        assert_eq!(
            pointer_suffix(&schema, "/allOf/0/properties/a~1b/type"),
            ".allOf[0].properties.a/b.type"
        );
        assert_eq!(pointer_suffix(&schema, ""), "");
    }

    #[test]
    fn unknown_fields_warn_with_a_suggestion() {
        let text = EXAMPLE.replace("description: Summarizes", "descripton: Summarizes");
        let warnings = unknown_field_warnings(&parse_yaml(&text).unwrap_or_default());
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("did you mean \"description\""),
            "{warnings:?}"
        );
    }

    #[test]
    fn toml_and_yaml_agree() {
        let toml = r#"
slug = "s"
name = "S"
capabilities = ["a.b"]
createdAt = 2026-01-01T00:00:00Z
[[endpoints]]
protocol = "http"
url = "https://s.example.com"
"#;
        let yaml = "slug: s\nname: S\ncapabilities: [a.b]\ncreatedAt: \"2026-01-01T00:00:00Z\"\nendpoints:\n  - {protocol: http, url: \"https://s.example.com\"}\n";
        let a = parse_toml(toml).map_err(|e| e.to_string());
        let b = parse_yaml(yaml).map_err(|e| e.to_string());
        assert_eq!(a, b);
    }

    #[test]
    fn locates_paths() {
        let mut v = serde_json::json!({"a": [{"b": 1}, {"c": [5, 6]}]});
        assert_eq!(
            locate_mut(&mut v, "a[1].c[1]").map(|x| x.clone()),
            Some(6.into())
        );
        assert_eq!(locate_mut(&mut v, "a[2]"), None);
    }
}
