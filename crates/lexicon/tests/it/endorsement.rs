//! `dev.guildhall.endorsement`: valid examples decode; invalid ones name their path.

use guildhall_lexicon::{
    Catalog, DEFAULT_STRENGTH, ENDORSEMENT_NSID, json_to_ipld, parse_endorsement,
};
use serde_json::json;

use crate::cases::{self, CID, DID, ENDORSEMENT};

#[test]
fn valid_examples_pass() {
    let catalog = Catalog::guildhall().unwrap();
    for (name, nsid, record) in cases::valid().into_iter().filter(|c| c.1 == ENDORSEMENT) {
        assert_eq!(
            catalog.validate_record_json(nsid, &record),
            Ok(()),
            "{name}"
        );
        parse_endorsement(&json_to_ipld(&record).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn full_example_decodes() {
    let e = parse_endorsement(&json_to_ipld(&cases::full_endorsement()).unwrap()).unwrap();
    assert_eq!(e.subject, DID);
    let pinned = e.service.as_ref().unwrap();
    assert_eq!(pinned.cid, CID);
    assert!(pinned.uri.ends_with("/dev.guildhall.service/acme-sms"));
    assert_eq!(e.capabilities, ["sms.send"]);
    assert_eq!(e.strength_or_default(), 80);
    assert_eq!(e.expires_at.as_deref(), Some("2027-11-26T10:00:00.000Z"));
}

#[test]
fn missing_strength_reads_as_default() {
    let e = parse_endorsement(&json_to_ipld(&cases::minimal_endorsement()).unwrap()).unwrap();
    assert_eq!(e.strength, None);
    assert_eq!(e.strength_or_default(), DEFAULT_STRENGTH);
    assert!(e.capabilities.is_empty() && e.service.is_none());
}

#[test]
fn invalid_examples_name_their_path() {
    let invalid = cases::invalid_endorsements();
    cases::check_invalid(&invalid);
    println!("endorsement: {} invalid cases", invalid.len());
    assert!(invalid.len() >= 15);
}

#[test]
fn messages_are_precise() {
    let mut r = cases::full_endorsement();
    r["subject"] = json!("did:plc:someoneelse");
    r["strength"] = json!(0);
    r["expiresAt"] = json!("2026-11-26T09:00:00Z");
    let issues = Catalog::guildhall()
        .unwrap()
        .validate_record_json(ENDORSEMENT_NSID, &r)
        .unwrap_err();
    let text = issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!(text, @r"
    expiresAt: must be later than createdAt
    service.uri: must name a dev.guildhall.service record of the subject (at://did:plc:someoneelse/dev.guildhall.service/<rkey>)
    strength: 0 is less than the minimum 1
    ");
}
