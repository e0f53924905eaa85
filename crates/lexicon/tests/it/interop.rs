//! The official ATProto lexicon vectors (`lexicon/` of atproto-interop-tests).

use std::path::PathBuf;

use guildhall_lexicon::Catalog;
use serde_json::Value;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/atproto-interop-tests/lexicon")
}

fn load(name: &str) -> Vec<Value> {
    let path = vectors_dir().join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("vector JSON")
}

fn vector_catalog() -> Catalog {
    let mut texts = Vec::new();
    for entry in std::fs::read_dir(vectors_dir().join("catalog")).expect("vector catalog dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            texts.push(std::fs::read_to_string(path).expect("catalog document"));
        }
    }
    assert!(texts.len() >= 5, "catalog documents missing");
    Catalog::from_documents(texts.iter().map(String::as_str)).expect("vector catalog")
}

/// The collection of a vector record is its `$type`.
fn nsid_of(data: &Value) -> &str {
    data["$type"].as_str().expect("vector $type")
}

#[test]
fn record_data_valid() {
    let catalog = vector_catalog();
    let cases = load("record-data-valid.json");
    for case in &cases {
        let data = &case["data"];
        let result = catalog.validate_record_json(nsid_of(data), data);
        assert!(result.is_ok(), "{}: {:?}", case["name"], result);
        let rkey = case["rkey"].as_str().expect("vector rkey");
        assert_eq!(catalog.validate_record_key(nsid_of(data), rkey), Ok(()));
    }
    println!("record-data-valid: {} cases passed", cases.len());
    assert!(cases.len() >= 3);
}

#[test]
fn record_data_invalid() {
    let catalog = vector_catalog();
    let cases = load("record-data-invalid.json");
    for case in &cases {
        let data = &case["data"];
        let result = catalog.validate_record_json(nsid_of(data), data);
        assert!(result.is_err(), "{} was accepted", case["name"]);
    }
    println!("record-data-invalid: {} cases rejected", cases.len());
    assert!(cases.len() >= 40);
}

/// Each invalid case must fail for its own reason, not only for a missing required field.
#[test]
fn record_data_invalid_reasons() {
    let catalog = vector_catalog();
    let mut specific = 0;
    for case in &load("record-data-invalid.json") {
        let data = &case["data"];
        let issues = catalog
            .validate_record_json(nsid_of(data), data)
            .unwrap_err();
        if issues
            .iter()
            .any(|i| !(i.path == "integer" && i.message == "required field missing"))
        {
            specific += 1;
        } else {
            assert_eq!(case["name"], "missing required field", "{issues:?}");
        }
    }
    assert!(specific >= 40, "{specific}");
}

#[test]
fn lexicon_documents() {
    let valid = load("lexicon-valid.json");
    for case in &valid {
        let r = Catalog::check_document_value(&case["lexicon"]);
        assert!(r.is_ok(), "{}: {r:?}", case["name"]);
    }
    let invalid = load("lexicon-invalid.json");
    for case in &invalid {
        let r = Catalog::check_document_value(&case["lexicon"]);
        assert!(r.is_err(), "{} was accepted", case["name"]);
    }
    println!(
        "lexicon-valid: {} accepted; lexicon-invalid: {} rejected",
        valid.len(),
        invalid.len()
    );
    assert!(!valid.is_empty() && !invalid.is_empty());
}

#[test]
fn catalog_documents_parse() {
    let catalog = vector_catalog();
    let ids: Vec<&str> = catalog.ids().collect();
    assert!(ids.contains(&"example.lexicon.record"), "{ids:?}");
    // procedure.json points at app.bsky.actor.defs, which the vectors do not ship.
    assert!(
        catalog
            .unresolved_refs()
            .contains("app.bsky.actor.defs#preferences")
    );
}
