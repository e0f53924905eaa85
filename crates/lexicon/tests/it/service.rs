//! `dev.guildhall.service`: valid examples decode; invalid ones name their path.

use guildhall_lexicon::grammar::parse_amount;
use guildhall_lexicon::{Catalog, RecordError, SERVICE_NSID, json_to_ipld, parse_service};
use serde_json::json;

use crate::cases::{self, SERVICE};

#[test]
fn valid_examples_pass() {
    let catalog = Catalog::guildhall().unwrap();
    for (name, nsid, record) in cases::valid().into_iter().filter(|c| c.1 == SERVICE) {
        assert_eq!(
            catalog.validate_record_json(nsid, &record),
            Ok(()),
            "{name}"
        );
        parse_service(&json_to_ipld(&record).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn full_example_decodes() {
    let s = parse_service(&json_to_ipld(&cases::full_service()).unwrap()).unwrap();
    assert_eq!(s.name, "Acme SMS");
    assert_eq!(s.capabilities, ["sms.send", "sms.status"]);
    assert_eq!(s.operations.len(), 2);
    assert_eq!(s.operations[0].id, "send_sms");
    assert!(s.operations[0].input_schema.is_some());
    assert_eq!(s.endpoints[0].transport.as_deref(), Some("streamable-http"));
    let price = &s.pricing[0];
    assert_eq!(
        (price.model.as_str(), price.currency.as_deref()),
        ("per_call", Some("USD"))
    );
    assert_eq!(
        parse_amount(price.amount.as_deref().unwrap())
            .unwrap()
            .nanos(),
        7_500_000
    );
    let sla = s.sla.unwrap();
    assert_eq!(
        (sla.latency_p95_ms, sla.availability_bp, sla.success_rate_bp),
        (Some(850), Some(9995), Some(9900))
    );
    assert_eq!(s.regions, ["DE", "US"]);
    assert_eq!(
        s.links.unwrap().mcp_registry_name.as_deref(),
        Some("io.github.acme/sms")
    );
    assert_eq!(s.data_handling.unwrap().retention_days, Some(30));
    assert_eq!(s.version.as_deref(), Some("1.4.0"));
    assert_eq!(s.created_at, "2026-11-26T10:00:00.000Z");
}

#[test]
fn minimal_example_decodes_with_defaults() {
    let s = parse_service(&json_to_ipld(&cases::minimal_service()).unwrap()).unwrap();
    assert!(s.operations.is_empty() && s.pricing.is_empty() && s.regions.is_empty());
    assert_eq!(s.sla, None);
}

#[test]
fn invalid_examples_name_their_path() {
    let invalid = cases::invalid_services();
    cases::check_invalid(&invalid);
    println!("service: {} invalid cases", invalid.len());
    assert!(invalid.len() >= 15);
}

#[test]
fn parse_rejects_invalid_with_issues() {
    let mut record = cases::full_service();
    record["sla"]["availabilityBp"] = json!(12000);
    match parse_service(&json_to_ipld(&record).unwrap()) {
        Err(RecordError::Invalid(issues)) => assert_eq!(issues[0].path, "sla.availabilityBp"),
        other => panic!("{other:?}"),
    }
}

fn messages(record: serde_json::Value) -> String {
    let issues = Catalog::guildhall()
        .expect("embedded catalog")
        .validate_record_json(SERVICE_NSID, &record)
        .expect_err("record should be invalid");
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn messages_are_precise() {
    let mut r = cases::full_service();
    r["operations"][0]["inputSchema"] = json!("object");
    r["operations"][1]["id"] = json!("send_sms");
    r["pricing"][0]["amount"] = json!("0.0000000001");
    r["sla"]["availabilityBp"] = json!(10001);
    r["regions"][0] = json!("de");
    insta::assert_snapshot!(messages(r), @r#"
    operations[0].inputSchema: not a JSON Schema object
    operations[1].id: duplicate operation id "send_sms" (first at operations[0])
    pricing[0].amount: "0.0000000001" is not a decimal amount: 1 to 9 digits after the decimal point
    regions[0]: "de": must be two upper-case letters (ISO 3166-1 alpha-2)
    sla.availabilityBp: 10001 basis points is outside 0..=10000 (0% to 100%)
    "#);

    let mut r = cases::minimal_service();
    r["name"] = json!("n".repeat(65));
    r["capabilities"] = json!(["SMS.send"]);
    r["endpoints"][0]["url"] = json!("not a url");
    r.as_object_mut().unwrap().remove("createdAt");
    insta::assert_snapshot!(messages(r), @r#"
    capabilities[0]: "SMS.send" is not a capability id: segments may only hold a-z, 0-9 and '-'
    createdAt: required field missing
    endpoints[0].url: not a valid uri (invalid URI: missing scheme)
    name: 65 graphemes, more than maxGraphemes 64
    "#);
}

#[test]
fn floats_inside_json_schemas_are_refused() {
    let mut record = json_to_ipld(&cases::full_service()).expect("data model");
    let ipld_core::ipld::Ipld::Map(top) = &mut record else {
        panic!("object")
    };
    let ipld_core::ipld::Ipld::List(ops) = top.get_mut("operations").expect("operations") else {
        panic!("list")
    };
    let ipld_core::ipld::Ipld::Map(op) = &mut ops[0] else {
        panic!("object")
    };
    let schema = ipld_core::ipld!({"type": "number", "maximum": 0.5});
    op.insert("inputSchema".into(), schema);
    let issues = Catalog::guildhall()
        .expect("embedded catalog")
        .validate_record(SERVICE_NSID, &record)
        .expect_err("float inside unknown");
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(
        issues[0].to_string(),
        "operations[0].inputSchema.maximum: floats are not allowed in the data model"
    );
}
