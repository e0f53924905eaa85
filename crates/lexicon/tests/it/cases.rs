//! Example records of our three types, valid and invalid, shared by the per-record tests and the
//! cross-check against the official validator.

use serde_json::{Value, json};

pub const DID: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
pub const OTHER_DID: &str = "did:web:other.example";
pub const CID: &str = "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq";
pub const SERVICE: &str = "dev.guildhall.service";
pub const ENDORSEMENT: &str = "dev.guildhall.endorsement";
pub const OPERATOR: &str = "dev.guildhall.operator";

/// An invalid record and what must be reported.
pub struct Case {
    pub name: &'static str,
    pub nsid: &'static str,
    pub record: Value,
    /// Path of the issue that must be reported.
    pub path: &'static str,
    /// True when the lexicon alone rejects it (so the official validator must too); false for
    /// Guildhall-only rules.
    pub schema_level: bool,
}

pub fn full_service() -> Value {
    json!({
        "$type": SERVICE,
        "name": "Acme SMS",
        "description": "Send SMS to 190 countries.",
        "capabilities": ["sms.send", "sms.status"],
        "operations": [
            {
                "id": "send_sms",
                "description": "Send one message",
                "inputSchema": {
                    "type": "object",
                    "properties": {"to": {"type": "string"}, "body": {"type": "string"}},
                    "required": ["to", "body"]
                },
                "outputSchema": {"type": ["object", "null"]}
            },
            {"id": "get_status", "inputSchema": {"type": "object"}}
        ],
        "endpoints": [
            {"protocol": "mcp", "url": "https://sms.acme.example/mcp", "transport": "streamable-http"},
            {"protocol": "a2a", "url": "https://sms.acme.example/a2a"}
        ],
        "pricing": [
            {"model": "per_call", "amount": "0.0075", "currency": "USD", "unit": "message"},
            {"model": "subscription", "amount": "49", "currency": "EUR", "period": "month"},
            {"model": "per_call", "amount": "0.01", "currency": "USDC", "network": "base", "asset": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"}
        ],
        "sla": {"latencyP95Ms": 850, "availabilityBp": 9995, "successRateBp": 9900},
        "regions": ["DE", "US"],
        "tags": ["sms", "messaging"],
        "links": {
            "mcpRegistryName": "io.github.acme/sms",
            "agentCardUrl": "https://sms.acme.example/.well-known/agent-card.json",
            "termsUrl": "https://acme.example/terms",
            "privacyUrl": "https://acme.example/privacy"
        },
        "dataHandling": {"retainsContent": true, "retentionDays": 30},
        "version": "1.4.0",
        "createdAt": "2026-11-26T10:00:00.000Z"
    })
}

pub fn minimal_service() -> Value {
    json!({
        "$type": SERVICE,
        "name": "Echo",
        "capabilities": ["text.echo"],
        "endpoints": [{"protocol": "http", "url": "https://echo.example/"}],
        "createdAt": "2026-11-26T10:00:00Z"
    })
}

pub fn full_endorsement() -> Value {
    json!({
        "$type": ENDORSEMENT,
        "subject": DID,
        "service": {"uri": format!("at://{DID}/dev.guildhall.service/acme-sms"), "cid": CID},
        "capabilities": ["sms.send"],
        "strength": 80,
        "comment": "Delivered 10k messages for us without a hitch.",
        "createdAt": "2026-11-26T10:00:00.000Z",
        "expiresAt": "2027-11-26T10:00:00.000Z"
    })
}

pub fn minimal_endorsement() -> Value {
    json!({"$type": ENDORSEMENT, "subject": DID, "createdAt": "2026-11-26T10:00:00.000Z"})
}

pub fn full_operator() -> Value {
    json!({
        "$type": OPERATOR,
        "displayName": "Acme Agents GmbH",
        "description": "We run messaging agents.",
        "website": "https://acme.example",
        "contact": "ops@acme.example",
        "createdAt": "2026-11-26T10:00:00.000+01:00"
    })
}

pub fn minimal_operator() -> Value {
    json!({"$type": OPERATOR, "displayName": "A", "createdAt": "2026-11-26T10:00:00Z"})
}

/// Valid records beyond the full and minimal ones.
pub fn valid() -> Vec<(&'static str, &'static str, Value)> {
    let mut free = minimal_service();
    free["pricing"] = json!([{"model": "free"}, {"model": "free", "amount": "0"}]);
    let mut open = minimal_service();
    // Open knownValues: protocols and models this version does not know are allowed.
    open["endpoints"] = json!([{"protocol": "grpc", "url": "grpc://echo.example:443"}]);
    open["pricing"] = json!([{"model": "per_minute", "amount": "0.1", "currency": "USD"}]);
    open["futureField"] = json!({"anything": [1, 2]});
    let mut unscoped = minimal_endorsement();
    unscoped["capabilities"] = json!([]);
    unscoped["strength"] = json!(1);
    let mut uri_contact = minimal_operator();
    uri_contact["contact"] = json!("https://acme.example/contact");
    vec![
        ("service: full", SERVICE, full_service()),
        ("service: minimal", SERVICE, minimal_service()),
        ("service: free pricing", SERVICE, free),
        ("service: unknown protocol and model", SERVICE, open),
        ("endorsement: full", ENDORSEMENT, full_endorsement()),
        ("endorsement: minimal", ENDORSEMENT, minimal_endorsement()),
        ("endorsement: unscoped, weakest", ENDORSEMENT, unscoped),
        ("operator: full", OPERATOR, full_operator()),
        ("operator: minimal", OPERATOR, minimal_operator()),
        ("operator: URI contact", OPERATOR, uri_contact),
    ]
}

/// The value at a `.`-separated path of object keys and array indexes.
fn at<'v>(record: &'v mut Value, path: &str) -> &'v mut Value {
    path.split('.')
        .fold(record, |cur, k| match k.parse::<usize>() {
            Ok(i) => &mut cur[i],
            Err(_) => &mut cur[k],
        })
}

/// `record` with `value` set at `path`.
fn with(mut record: Value, path: &str, value: Value) -> Value {
    *at(&mut record, path) = value;
    record
}

/// `record` without the field at `path`.
fn without(mut record: Value, path: &str) -> Value {
    let (parent, key) = path.rsplit_once('.').map_or(("", path), |(p, k)| (p, k));
    let obj = if parent.is_empty() {
        &mut record
    } else {
        at(&mut record, parent)
    };
    assert!(
        obj.as_object_mut()
            .expect("an object")
            .remove(key)
            .is_some(),
        "no field {path}"
    );
    record
}

fn case(
    name: &'static str,
    nsid: &'static str,
    record: Value,
    path: &'static str,
    schema_level: bool,
) -> Case {
    Case {
        name,
        nsid,
        record,
        path,
        schema_level,
    }
}

pub fn invalid_services() -> Vec<Case> {
    let s = full_service;
    let c = |name, record, path, schema| case(name, SERVICE, record, path, schema);
    vec![
        c("missing name", without(s(), "name"), "name", true),
        c("empty name", with(s(), "name", json!("")), "name", true),
        c(
            "name over 64 graphemes",
            with(s(), "name", json!("n".repeat(65))),
            "name",
            true,
        ),
        c(
            "no capabilities",
            with(s(), "capabilities", json!([])),
            "capabilities",
            true,
        ),
        c(
            "capability upper case",
            with(s(), "capabilities.0", json!("SMS.Send")),
            "capabilities[0]",
            false,
        ),
        c(
            "capability one segment",
            with(s(), "capabilities.1", json!("sms")),
            "capabilities[1]",
            false,
        ),
        c(
            "capability repeated",
            with(s(), "capabilities.1", json!("sms.send")),
            "capabilities[1]",
            false,
        ),
        c(
            "inputSchema a string",
            with(s(), "operations.0.inputSchema", json!("object")),
            "operations[0].inputSchema",
            true,
        ),
        c(
            "inputSchema bad type",
            with(s(), "operations.1.inputSchema.type", json!("map")),
            "operations[1].inputSchema.type",
            false,
        ),
        c(
            "outputSchema repeated types",
            with(
                s(),
                "operations.0.outputSchema.type",
                json!(["object", "object"]),
            ),
            "operations[0].outputSchema.type",
            false,
        ),
        c(
            "operation ids repeat",
            with(s(), "operations.1.id", json!("send_sms")),
            "operations[1].id",
            false,
        ),
        c(
            "operation id with space",
            with(s(), "operations.0.id", json!("send sms")),
            "operations[0].id",
            false,
        ),
        c(
            "operation without id",
            without(s(), "operations.0.id"),
            "operations[0].id",
            true,
        ),
        c(
            "missing endpoints",
            without(s(), "endpoints"),
            "endpoints",
            true,
        ),
        c(
            "endpoint url not a URI",
            with(s(), "endpoints.0.url", json!("not a url")),
            "endpoints[0].url",
            true,
        ),
        c(
            "mcp endpoint over ftp",
            with(s(), "endpoints.0.url", json!("ftp://sms.acme.example/")),
            "endpoints[0].url",
            false,
        ),
        c(
            "amount with exponent",
            with(s(), "pricing.0.amount", json!("1e-3")),
            "pricing[0].amount",
            false,
        ),
        c(
            "amount with 10 decimals",
            with(s(), "pricing.0.amount", json!("0.0000000001")),
            "pricing[0].amount",
            false,
        ),
        c(
            "amount negative",
            with(s(), "pricing.0.amount", json!("-1")),
            "pricing[0].amount",
            false,
        ),
        c(
            "amount as a number",
            with(s(), "pricing.0.amount", json!(1)),
            "pricing[0].amount",
            true,
        ),
        c(
            "amount as a float",
            with(s(), "pricing.0.amount", json!(0.5)),
            "pricing[0].amount",
            true,
        ),
        c(
            "per_call without currency",
            without(s(), "pricing.0.currency"),
            "pricing[0].currency",
            false,
        ),
        c(
            "currency lower case",
            with(s(), "pricing.1.currency", json!("eur")),
            "pricing[1].currency",
            false,
        ),
        c(
            "subscription without period",
            without(s(), "pricing.1.period"),
            "pricing[1].period",
            false,
        ),
        c(
            "free with a price",
            with(s(), "pricing.0", json!({"model": "free", "amount": "1"})),
            "pricing[0].amount",
            false,
        ),
        c(
            "price without model",
            without(s(), "pricing.0.model"),
            "pricing[0].model",
            true,
        ),
        c(
            "availability over 100%",
            with(s(), "sla.availabilityBp", json!(10001)),
            "sla.availabilityBp",
            true,
        ),
        c(
            "success rate negative",
            with(s(), "sla.successRateBp", json!(-1)),
            "sla.successRateBp",
            true,
        ),
        c(
            "latency as a float",
            with(s(), "sla.latencyP95Ms", json!(850.5)),
            "sla.latencyP95Ms",
            true,
        ),
        c(
            "region lower case",
            with(s(), "regions.0", json!("de")),
            "regions[0]",
            false,
        ),
        c(
            "region alpha-3",
            with(s(), "regions.1", json!("USA")),
            "regions[1]",
            true,
        ),
        c(
            "too many tags",
            with(s(), "tags", json!(vec!["t"; 17])),
            "tags",
            true,
        ),
        c(
            "bad MCP registry name",
            with(s(), "links.mcpRegistryName", json!("sms")),
            "links.mcpRegistryName",
            false,
        ),
        c(
            "terms URL not a URI",
            with(s(), "links.termsUrl", json!("terms")),
            "links.termsUrl",
            true,
        ),
        c(
            "retention without retaining",
            with(
                s(),
                "dataHandling",
                json!({"retainsContent": false, "retentionDays": 30}),
            ),
            "dataHandling.retentionDays",
            false,
        ),
        c(
            "dataHandling without retainsContent",
            without(s(), "dataHandling.retainsContent"),
            "dataHandling.retainsContent",
            true,
        ),
        c(
            "version not semver",
            with(s(), "version", json!("v1.4.0")),
            "version",
            false,
        ),
        c(
            "createdAt not a datetime",
            with(s(), "createdAt", json!("yesterday")),
            "createdAt",
            true,
        ),
        c(
            "wrong $type",
            with(s(), "$type", json!(OPERATOR)),
            "$type",
            true,
        ),
        c(
            "description null",
            with(s(), "description", json!(null)),
            "description",
            true,
        ),
    ]
}

pub fn invalid_endorsements() -> Vec<Case> {
    let e = full_endorsement;
    let c = |name, record, path, schema| case(name, ENDORSEMENT, record, path, schema);
    vec![
        c("missing subject", without(e(), "subject"), "subject", true),
        c(
            "subject not a DID",
            with(e(), "subject", json!("alice")),
            "subject",
            true,
        ),
        c(
            "subject a handle",
            with(e(), "subject", json!("alice.example.com")),
            "subject",
            true,
        ),
        c(
            "strength zero",
            with(e(), "strength", json!(0)),
            "strength",
            true,
        ),
        c(
            "strength 101",
            with(e(), "strength", json!(101)),
            "strength",
            true,
        ),
        c(
            "strength a string",
            with(e(), "strength", json!("80")),
            "strength",
            true,
        ),
        c(
            "capability bad grammar",
            with(e(), "capabilities.0", json!("SMS")),
            "capabilities[0]",
            false,
        ),
        c(
            "capabilities repeat",
            with(e(), "capabilities", json!(["sms.send", "sms.send"])),
            "capabilities[1]",
            false,
        ),
        c(
            "too many capabilities",
            with(
                e(),
                "capabilities",
                json!((0..33).map(|i| format!("cap.n{i}")).collect::<Vec<_>>()),
            ),
            "capabilities",
            true,
        ),
        c(
            "service without cid",
            without(e(), "service.cid"),
            "service.cid",
            true,
        ),
        c(
            "service cid malformed",
            with(e(), "service.cid", json!("notacid")),
            "service.cid",
            true,
        ),
        c(
            "service uri not at-uri",
            with(e(), "service.uri", json!("https://acme.example/sms")),
            "service.uri",
            true,
        ),
        c(
            "service of someone else",
            with(
                e(),
                "service.uri",
                json!(format!("at://{OTHER_DID}/dev.guildhall.service/acme-sms")),
            ),
            "service.uri",
            false,
        ),
        c(
            "service uri other collection",
            with(
                e(),
                "service.uri",
                json!(format!("at://{DID}/app.bsky.feed.post/3kznmn7xqxl22")),
            ),
            "service.uri",
            false,
        ),
        c(
            "service uri without rkey",
            with(
                e(),
                "service.uri",
                json!(format!("at://{DID}/dev.guildhall.service")),
            ),
            "service.uri",
            false,
        ),
        c(
            "expires before created",
            with(e(), "expiresAt", json!("2025-11-26T10:00:00.000Z")),
            "expiresAt",
            false,
        ),
        c(
            "expires at creation (offsets)",
            with(e(), "expiresAt", json!("2026-11-26T11:00:00.000+01:00")),
            "expiresAt",
            false,
        ),
        c(
            "missing createdAt",
            without(e(), "createdAt"),
            "createdAt",
            true,
        ),
        c(
            "createdAt lower-case t",
            with(e(), "createdAt", json!("2026-11-26t10:00:00Z")),
            "createdAt",
            true,
        ),
        c(
            "comment over 300 graphemes",
            with(e(), "comment", json!("c".repeat(301))),
            "comment",
            true,
        ),
        c(
            "subject null",
            with(e(), "subject", json!(null)),
            "subject",
            true,
        ),
        c(
            "service not an object",
            with(e(), "service", json!("at://x")),
            "service",
            true,
        ),
    ]
}

pub fn invalid_operators() -> Vec<Case> {
    let o = full_operator;
    let c = |name, record, path, schema| case(name, OPERATOR, record, path, schema);
    // 60 graphemes of 'e' + 5 combining acutes: 660 bytes, over maxLength while under maxGraphemes.
    let heavy = "e\u{301}\u{301}\u{301}\u{301}\u{301}".repeat(60);
    vec![
        c(
            "missing displayName",
            without(o(), "displayName"),
            "displayName",
            true,
        ),
        c(
            "empty displayName",
            with(o(), "displayName", json!("")),
            "displayName",
            true,
        ),
        c(
            "displayName 65 graphemes",
            with(o(), "displayName", json!("d".repeat(65))),
            "displayName",
            true,
        ),
        c(
            "displayName over 640 bytes",
            with(o(), "displayName", json!(heavy)),
            "displayName",
            true,
        ),
        c(
            "displayName a number",
            with(o(), "displayName", json!(5)),
            "displayName",
            true,
        ),
        c(
            "description 257 graphemes",
            with(o(), "description", json!("d".repeat(257))),
            "description",
            true,
        ),
        c(
            "description null",
            with(o(), "description", json!(null)),
            "description",
            true,
        ),
        c(
            "website not a URI",
            with(o(), "website", json!("acme dot example")),
            "website",
            true,
        ),
        c(
            "website not http",
            with(o(), "website", json!("ftp://acme.example")),
            "website",
            false,
        ),
        c(
            "contact free text",
            with(o(), "contact", json!("call me")),
            "contact",
            false,
        ),
        c(
            "contact over 256 bytes",
            with(
                o(),
                "contact",
                json!(format!("{}@acme.example", "a".repeat(250))),
            ),
            "contact",
            true,
        ),
        c(
            "missing createdAt",
            without(o(), "createdAt"),
            "createdAt",
            true,
        ),
        c(
            "createdAt February 30",
            with(o(), "createdAt", json!("2026-02-30T00:00:00Z")),
            "createdAt",
            true,
        ),
        c(
            "createdAt negative zero offset",
            with(o(), "createdAt", json!("2026-11-26T10:00:00-00:00")),
            "createdAt",
            true,
        ),
        c(
            "createdAt hour 24",
            with(o(), "createdAt", json!("2026-11-26T24:00:00Z")),
            "createdAt",
            true,
        ),
        c(
            "createdAt without timezone",
            with(o(), "createdAt", json!("2026-11-26T10:00:00")),
            "createdAt",
            true,
        ),
        c("missing $type", without(o(), "$type"), "$type", true),
        c("record not an object", json!("Acme"), "", true),
    ]
}

/// Every invalid case of all three types.
pub fn all_invalid() -> Vec<Case> {
    let mut all = invalid_services();
    all.extend(invalid_endorsements());
    all.extend(invalid_operators());
    all
}

/// Runs the invalid cases through `validate_record`, checking each names its path, and that the
/// lexicon-only check agrees with `schema_level`.
pub fn check_invalid(cases: &[Case]) {
    let catalog = guildhall_lexicon::Catalog::guildhall().expect("embedded catalog");
    for c in cases {
        let issues = match catalog.validate_record_json(c.nsid, &c.record) {
            Ok(()) => panic!("{}: accepted", c.name),
            Err(issues) => issues,
        };
        assert!(
            issues.iter().any(|i| i.path == c.path),
            "{}: no issue at {:?}: {issues:?}",
            c.name,
            c.path
        );
        let schema_only = match guildhall_lexicon::json_to_ipld(&c.record) {
            Ok(ipld) => catalog.validate_record_schema(c.nsid, &ipld).is_err(),
            Err(_) => true,
        };
        assert_eq!(
            schema_only, c.schema_level,
            "{}: lexicon-only verdict: {issues:?}",
            c.name
        );
    }
}
