//! Guildhall rules that a lexicon cannot express, applied to Guildhall records after (and
//! independently of) the schema check. Fields of the wrong shape are skipped here: the schema
//! check reports them.

use std::collections::BTreeMap;

use ipld_core::ipld::Ipld;

use crate::grammar::{self, JSON_SCHEMA_TYPES};
use crate::validate::join;
use guildhall_proto::syntax;

use crate::{ENDORSEMENT_NSID, OPERATOR_NSID, SERVICE_NSID, ValidationIssue};

type Map = BTreeMap<String, Ipld>;

struct Issues(Vec<ValidationIssue>);

impl Issues {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationIssue {
            path: path.into(),
            message: message.into(),
        });
    }
}

pub(crate) fn check(nsid: &str, record: &Ipld) -> Vec<ValidationIssue> {
    let mut issues = Issues(Vec::new());
    if let Ipld::Map(m) = record {
        match nsid {
            SERVICE_NSID => service(m, &mut issues),
            ENDORSEMENT_NSID => endorsement(m, &mut issues),
            OPERATOR_NSID => operator(m, &mut issues),
            _ => {}
        }
    }
    issues.0
}

fn string<'a>(m: &'a Map, key: &str) -> Option<&'a str> {
    match m.get(key) {
        Some(Ipld::String(s)) => Some(s),
        _ => None,
    }
}

fn list<'a>(m: &'a Map, key: &str) -> &'a [Ipld] {
    match m.get(key) {
        Some(Ipld::List(l)) => l,
        _ => &[],
    }
}

fn map<'a>(m: &'a Map, key: &str) -> Option<&'a Map> {
    match m.get(key) {
        Some(Ipld::Map(x)) => Some(x),
        _ => None,
    }
}

/// Capability ids: grammar and no repeats.
fn capabilities(items: &[Ipld], path: &str, issues: &mut Issues) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let Ipld::String(id) = item else { continue };
        let p = format!("{path}[{i}]");
        if let Err(e) = grammar::check_capability_id(id) {
            issues.push(p, format!("{id:?} is not a capability id: {e}"));
        } else if let Some(first) = seen.insert(id, i) {
            issues.push(
                p,
                format!("duplicate capability {id:?} (first at {path}[{first}])"),
            );
        }
    }
}

fn service(m: &Map, issues: &mut Issues) {
    capabilities(list(m, "capabilities"), "capabilities", issues);

    let mut op_ids: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, op) in list(m, "operations").iter().enumerate() {
        let Ipld::Map(op) = op else { continue };
        let base = format!("operations[{i}]");
        if let Some(id) = string(op, "id") {
            if let Err(e) = grammar::check_operation_id(id) {
                issues.push(
                    format!("{base}.id"),
                    format!("{id:?} is not an operation id: {e}"),
                );
            } else if let Some(first) = op_ids.insert(id, i) {
                issues.push(
                    format!("{base}.id"),
                    format!("duplicate operation id {id:?} (first at operations[{first}])"),
                );
            }
        }
        for key in ["inputSchema", "outputSchema"] {
            if let Some(schema) = op.get(key) {
                json_schema(schema, &join(&base, key), issues);
            }
        }
    }

    for (i, ep) in list(m, "endpoints").iter().enumerate() {
        let Ipld::Map(ep) = ep else { continue };
        let known = matches!(
            string(ep, "protocol"),
            Some("mcp" | "a2a" | "http" | "xrpc")
        );
        // Malformed URIs are the schema check's to report.
        if let (true, Some(url)) = (known, string(ep, "url"))
            && syntax::Uri::parse(url).is_ok()
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            issues.push(
                format!("endpoints[{i}].url"),
                "must be an http(s) URL for this protocol",
            );
        }
    }

    for (i, price) in list(m, "pricing").iter().enumerate() {
        let Ipld::Map(price) = price else { continue };
        let base = format!("pricing[{i}]");
        let model = string(price, "model");
        let amount = string(price, "amount").map(|a| (a, grammar::parse_amount(a)));
        if let Some((a, Err(e))) = &amount {
            issues.push(
                format!("{base}.amount"),
                format!("{a:?} is not a decimal amount: {e}"),
            );
        }
        if let Some(c) = string(price, "currency")
            && let Err(e) = grammar::check_currency(c)
        {
            issues.push(format!("{base}.currency"), format!("{c:?}: {e}"));
        }
        match model {
            Some("free") => {
                if let Some((_, Ok(a))) = amount
                    && !a.is_zero()
                {
                    issues.push(
                        format!("{base}.amount"),
                        "a free price must have amount 0 or none",
                    );
                }
            }
            Some(model) => {
                for key in ["amount", "currency"] {
                    if !price.contains_key(key) {
                        issues.push(
                            format!("{base}.{key}"),
                            format!("required for pricing model {model:?}"),
                        );
                    }
                }
                if model == "subscription" && !price.contains_key("period") {
                    issues.push(
                        format!("{base}.period"),
                        "required for pricing model \"subscription\"",
                    );
                }
            }
            None => {}
        }
    }

    if let Some(sla) = map(m, "sla") {
        for key in ["availabilityBp", "successRateBp"] {
            if let Some(Ipld::Integer(n)) = sla.get(key)
                && !(0..=10_000).contains(n)
            {
                issues.push(
                    format!("sla.{key}"),
                    format!("{n} basis points is outside 0..=10000 (0% to 100%)"),
                );
            }
        }
    }

    for (i, r) in list(m, "regions").iter().enumerate() {
        if let Ipld::String(r) = r
            && let Err(e) = grammar::check_region(r)
        {
            issues.push(format!("regions[{i}]"), format!("{r:?}: {e}"));
        }
    }

    if let Some(links) = map(m, "links")
        && let Some(name) = string(links, "mcpRegistryName")
        && let Err(e) = grammar::check_mcp_registry_name(name)
    {
        issues.push("links.mcpRegistryName", format!("{name:?}: {e}"));
    }

    if let Some(dh) = map(m, "dataHandling")
        && dh.get("retainsContent") == Some(&Ipld::Bool(false))
        && let Some(Ipld::Integer(days)) = dh.get("retentionDays")
        && *days > 0
    {
        issues.push(
            "dataHandling.retentionDays",
            "content that is not retained can not have a retention period",
        );
    }

    if let Some(v) = string(m, "version")
        && let Err(e) = grammar::check_semver(v)
    {
        issues.push("version", format!("{v:?} is not a semantic version: {e}"));
    }
}

/// JSON Schemas must be objects; a `type` must name JSON Schema types.
fn json_schema(schema: &Ipld, path: &str, issues: &mut Issues) {
    let Ipld::Map(s) = schema else {
        issues.push(path, "not a JSON Schema object");
        return;
    };
    if s.get("$type") == Some(&Ipld::String("blob".into())) {
        issues.push(path, "not a JSON Schema object");
        return;
    }
    let valid = |t: &Ipld| matches!(t, Ipld::String(t) if JSON_SCHEMA_TYPES.contains(&t.as_str()));
    match s.get("type") {
        None => {}
        Some(t @ Ipld::String(name)) if !valid(t) => {
            issues.push(
                join(path, "type"),
                format!("{name:?} is not a JSON Schema type"),
            );
        }
        Some(Ipld::String(_)) => {}
        Some(Ipld::List(types)) => {
            if types.is_empty() || !types.iter().all(valid) {
                issues.push(join(path, "type"), "must list JSON Schema type names");
            } else if (1..types.len()).any(|i| types[..i].contains(&types[i])) {
                issues.push(join(path, "type"), "type names must not repeat");
            }
        }
        Some(_) => issues.push(join(path, "type"), "must be a type name or a list of them"),
    }
}

fn endorsement(m: &Map, issues: &mut Issues) {
    capabilities(list(m, "capabilities"), "capabilities", issues);

    if let (Some(subject), Some(service)) = (string(m, "subject"), map(m, "service"))
        && let Some(uri) = string(service, "uri")
        && let Ok(uri) = syntax::AtUri::parse(uri)
    {
        let pinned = uri.authority().as_str() == subject
            && uri.collection().is_some_and(|c| c.as_str() == SERVICE_NSID)
            && uri.rkey().is_some();
        if !pinned {
            issues.push(
                "service.uri",
                format!("must name a {SERVICE_NSID} record of the subject (at://{subject}/{SERVICE_NSID}/<rkey>)"),
            );
        }
    }

    if let (Some(created), Some(expires)) = (string(m, "createdAt"), string(m, "expiresAt"))
        && let (Ok(c), Ok(e)) = (
            syntax::Datetime::parse(created),
            syntax::Datetime::parse(expires),
        )
        && e.unix_micros() <= c.unix_micros()
    {
        issues.push("expiresAt", "must be later than createdAt");
    }
}

fn operator(m: &Map, issues: &mut Issues) {
    if let Some(contact) = string(m, "contact") {
        let email = contact.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        }) && !contact.contains(':');
        let blank = contact.chars().any(char::is_whitespace);
        if blank || !(email || syntax::Uri::parse(contact).is_ok()) {
            issues.push("contact", "must be an e-mail address or a URI");
        }
    }
    if let Some(site) = string(m, "website")
        && syntax::Uri::parse(site).is_ok()
        && !(site.starts_with("https://") || site.starts_with("http://"))
    {
        issues.push("website", "must be an http(s) URL");
    }
}
