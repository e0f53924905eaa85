//! String formats against the interop syntax vectors (`syntax/*_valid.txt`, `*_invalid.txt`),
//! exercised end to end through a record with one field per format.

use std::path::PathBuf;

use guildhall_lexicon::Catalog;
use serde_json::json;

const FORMATS: [(&str, &str); 11] = [
    ("atidentifier", "at-identifier"),
    ("aturi", "at-uri"),
    ("cid", "cid"),
    ("datetime", "datetime"),
    ("did", "did"),
    ("handle", "handle"),
    ("language", "language"),
    ("nsid", "nsid"),
    ("recordkey", "record-key"),
    ("tid", "tid"),
    ("uri", "uri"),
];

fn catalog() -> Catalog {
    let properties: serde_json::Map<String, serde_json::Value> = FORMATS
        .iter()
        .map(|(field, format)| {
            (
                field.to_string(),
                json!({"type": "string", "format": format}),
            )
        })
        .collect();
    let doc = json!({
        "lexicon": 1,
        "id": "test.guildhall.formats",
        "defs": {"main": {"type": "record", "key": "any", "record": {"type": "object", "properties": properties}}}
    });
    Catalog::from_documents([doc.to_string().as_str()]).expect("format catalog")
}

fn lines(file: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/atproto-interop-tests/syntax")
        .join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn formats_follow_the_syntax_vectors() {
    let catalog = catalog();
    let (mut valid, mut invalid) = (0, 0);
    let mut wrong = Vec::new();
    for (field, _) in FORMATS {
        let mut files = vec![
            (format!("{field}_syntax_valid.txt"), true),
            (format!("{field}_syntax_invalid.txt"), false),
        ];
        // Semantically impossible datetimes (month 0, hour 25, before year 0) are invalid data too.
        if field == "datetime" {
            files.push(("datetime_parse_invalid.txt".into(), false));
        }
        for (file, expect_valid) in files {
            for value in lines(&file) {
                let record = json!({"$type": "test.guildhall.formats", field: value});
                let ok = catalog
                    .validate_record_json("test.guildhall.formats", &record)
                    .is_ok();
                if ok != expect_valid {
                    wrong.push(format!("{file}: {value:?}"));
                }
                if expect_valid {
                    valid += 1
                } else {
                    invalid += 1
                }
            }
        }
    }
    println!("syntax vectors: {valid} valid, {invalid} invalid values checked");
    assert!(
        wrong.is_empty(),
        "{} misjudged:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(valid > 200 && invalid > 200);
}
