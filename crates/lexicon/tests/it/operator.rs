//! `dev.guildhall.operator`: valid examples decode; invalid ones name their path.

use guildhall_lexicon::{Catalog, OPERATOR_NSID, json_to_ipld, parse_operator};
use serde_json::json;

use crate::cases::{self, OPERATOR};

#[test]
fn valid_examples_pass() {
    let catalog = Catalog::guildhall().unwrap();
    for (name, nsid, record) in cases::valid().into_iter().filter(|c| c.1 == OPERATOR) {
        assert_eq!(
            catalog.validate_record_json(nsid, &record),
            Ok(()),
            "{name}"
        );
        parse_operator(&json_to_ipld(&record).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn full_example_decodes() {
    let o = parse_operator(&json_to_ipld(&cases::full_operator()).unwrap()).unwrap();
    assert_eq!(o.display_name, "Acme Agents GmbH");
    assert_eq!(o.website.as_deref(), Some("https://acme.example"));
    assert_eq!(o.contact.as_deref(), Some("ops@acme.example"));
    assert_eq!(o.created_at, "2026-11-26T10:00:00.000+01:00");
}

#[test]
fn invalid_examples_name_their_path() {
    let invalid = cases::invalid_operators();
    cases::check_invalid(&invalid);
    println!("operator: {} invalid cases", invalid.len());
    assert!(invalid.len() >= 15);
}

#[test]
fn messages_are_precise() {
    let mut r = cases::full_operator();
    r["displayName"] = json!(null);
    r["createdAt"] = json!("2026-02-29T10:00:00Z");
    r["contact"] = json!("call me");
    let issues = Catalog::guildhall()
        .unwrap()
        .validate_record_json(OPERATOR_NSID, &r)
        .unwrap_err();
    let text = issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!(text, @r"
    contact: must be an e-mail address or a URI
    createdAt: not a valid datetime (invalid datetime: day out of range for the month)
    displayName: must not be null
    ");
}

#[test]
fn other_collections_are_refused() {
    let catalog = Catalog::guildhall().unwrap();
    let issues = catalog
        .validate_record_json(
            "dev.guildhall.defs",
            &json!({"$type": "dev.guildhall.defs"}),
        )
        .unwrap_err();
    assert_eq!(
        issues[0].message,
        "dev.guildhall.defs is not a record type in this catalog"
    );
}
