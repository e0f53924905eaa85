//! The embedded Guildhall catalog: complete, self-contained, and bounded.

use guildhall_lexicon::{
    Catalog, DEFS_NSID, ENDORSEMENT_NSID, GET_BALANCE_NSID, GET_OPERATOR_NSID, GET_SERVICE_NSID,
    GET_TRUST_PATH_NSID, LEDGER_DEFS_NSID, LIST_CAPABILITIES_NSID, LIST_ENDORSEMENTS_NSID,
    LIST_TRANSFERS_NSID, LexiconError, OPERATOR_NSID, SEARCH_SERVICES_NSID, SERVICE_NSID,
    TRANSFER_NSID,
};
use serde_json::Value;

#[test]
fn guildhall_catalog_is_complete_and_closed() {
    let catalog = Catalog::guildhall().unwrap();
    let ids: Vec<&str> = catalog.ids().collect();
    for id in [
        SERVICE_NSID,
        ENDORSEMENT_NSID,
        OPERATOR_NSID,
        DEFS_NSID,
        SEARCH_SERVICES_NSID,
        GET_SERVICE_NSID,
        GET_OPERATOR_NSID,
        GET_TRUST_PATH_NSID,
        LIST_ENDORSEMENTS_NSID,
        LIST_CAPABILITIES_NSID,
        LEDGER_DEFS_NSID,
        GET_BALANCE_NSID,
        LIST_TRANSFERS_NSID,
        TRANSFER_NSID,
        "com.atproto.repo.strongRef",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    assert_eq!(ids.len(), 15);
    assert!(
        catalog.unresolved_refs().is_empty(),
        "{:?}",
        catalog.unresolved_refs()
    );
    for record in [SERVICE_NSID, ENDORSEMENT_NSID, OPERATOR_NSID] {
        assert!(catalog.is_record_type(record));
    }
    assert!(!catalog.is_record_type(SEARCH_SERVICES_NSID));
}

/// Walks a schema JSON tree, calling `f(path, node)` on every object carrying a `type`.
fn walk(v: &Value, path: &str, f: &mut dyn FnMut(&str, &serde_json::Map<String, Value>)) {
    match v {
        Value::Object(o) => {
            if o.get("type").is_some_and(Value::is_string) {
                f(path, o);
            }
            for (k, child) in o {
                walk(child, &format!("{path}.{k}"), f);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                walk(child, &format!("{path}[{i}]"), f);
            }
        }
        _ => {}
    }
}

/// Record data is bounded: strings without a format have maxLength, arrays have maxLength.
#[test]
fn record_documents_bound_every_string_and_array() {
    let mut checked = 0;
    for text in Catalog::guildhall_documents() {
        let doc: Value = serde_json::from_str(text).unwrap();
        let id = doc["id"].as_str().unwrap();
        if ![SERVICE_NSID, ENDORSEMENT_NSID, OPERATOR_NSID].contains(&id) {
            continue;
        }
        walk(&doc["defs"], id, &mut |path, node| {
            checked += 1;
            match node["type"].as_str() {
                Some("string") if !node.contains_key("format") => {
                    assert!(
                        node.contains_key("maxLength"),
                        "{path}: string without maxLength"
                    );
                }
                Some("array") => assert!(
                    node.contains_key("maxLength"),
                    "{path}: array without maxLength"
                ),
                Some("number" | "float") => panic!("{path}: floats are not allowed"),
                _ => {}
            }
        });
    }
    assert!(checked > 40, "{checked}");
}

#[test]
fn duplicate_and_broken_documents_are_refused() {
    let docs = Catalog::guildhall_documents();
    assert_eq!(
        Catalog::from_documents([docs[0], docs[0]]).unwrap_err(),
        LexiconError::Duplicate(SERVICE_NSID.into())
    );
    let err = Catalog::check_document(
        r#"{"lexicon": 1, "id": "a.b.c", "defs": {"x": {"type": "query"}}}"#,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"lexicon a.b.c: defs.x: primary type "query" must be the 'main' definition"#
    );
    let err = Catalog::check_document(
        r#"{"lexicon": 1, "id": "a.b.c", "defs": {"main": {"type": "string", "minLength": 5, "maxLength": 2}}}"#,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "lexicon a.b.c: defs.main: minLength (5) exceeds maxLength (2)"
    );
    assert!(matches!(
        Catalog::check_document("{"),
        Err(LexiconError::Json(_))
    ));
    let err = Catalog::check_document(
        r#"{"lexicon": 1, "id": "a.b.c", "defs": {"main": {"type": "object", "required": ["x"], "properties": {}}}}"#,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("required property \"x\" is not defined"),
        "{err}"
    );
}

#[test]
fn record_keys_follow_each_type() {
    let catalog = Catalog::guildhall().expect("embedded catalog");
    assert_eq!(catalog.validate_record_key(OPERATOR_NSID, "self"), Ok(()));
    assert!(
        catalog
            .validate_record_key(OPERATOR_NSID, "profile")
            .is_err()
    );
    assert_eq!(
        catalog.validate_record_key(ENDORSEMENT_NSID, "3kznmn7xqxl22"),
        Ok(())
    );
    let err = catalog
        .validate_record_key(ENDORSEMENT_NSID, "my-endorsement")
        .expect_err("not a TID");
    assert_eq!(
        err.message,
        r#"record key "my-endorsement" does not satisfy dev.guildhall.endorsement's key rule "tid""#
    );
    assert_eq!(
        catalog.validate_record_key(SERVICE_NSID, "acme-sms"),
        Ok(())
    );
    assert!(catalog.validate_record_key(SERVICE_NSID, "..").is_err());
    assert!(
        catalog
            .validate_record_key(SEARCH_SERVICES_NSID, "x")
            .is_err()
    );
}
