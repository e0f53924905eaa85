//! The ATProto JSON data model mapped onto `Ipld`: `{"$link": cid}` → link, `{"$bytes": b64}` →
//! bytes, integers → integers; floats are refused because the data model has none.

use std::collections::BTreeMap;

use ipld_core::cid::Cid;
use ipld_core::ipld::Ipld;
use serde_json::Value;

/// A JSON value that is not valid ATProto data, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct JsonDataError {
    pub path: String,
    pub message: String,
}

/// Converts JSON in the ATProto data model to `Ipld`, the form DAG-CBOR records decode to.
pub fn json_to_ipld(value: &Value) -> Result<Ipld, JsonDataError> {
    convert(value, &mut String::new())
}

fn err(path: &str, message: impl Into<String>) -> JsonDataError {
    JsonDataError {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn convert(value: &Value, path: &mut String) -> Result<Ipld, JsonDataError> {
    Ok(match value {
        Value::Null => Ipld::Null,
        Value::Bool(b) => Ipld::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Ipld::Integer(i128::from(i)),
            (None, Some(_)) => return Err(err(path, "integer exceeds the signed 64-bit range")),
            (None, None) => return Err(err(path, "floats are not allowed in the data model")),
        },
        Value::String(s) => Ipld::String(s.clone()),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                out.push(convert(item, path)?);
                path.truncate(len);
            }
            Ipld::List(out)
        }
        Value::Object(map) => {
            if let Some(link) = map.get("$link") {
                return match (link, map.len()) {
                    (Value::String(s), 1) => Cid::try_from(s.as_str())
                        .map(Ipld::Link)
                        .map_err(|_| err(path, format!("$link {s:?} is not a valid CID"))),
                    _ => Err(err(path, "a $link object must hold exactly one string")),
                };
            }
            if let Some(bytes) = map.get("$bytes") {
                return match (bytes, map.len()) {
                    (Value::String(s), 1) => decode_base64(s)
                        .map(Ipld::Bytes)
                        .ok_or_else(|| err(path, "$bytes is not valid base64")),
                    _ => Err(err(path, "a $bytes object must hold exactly one string")),
                };
            }
            let mut out = BTreeMap::new();
            for (k, v) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                out.insert(k.clone(), convert(v, path)?);
                path.truncate(len);
            }
            Ipld::Map(out)
        }
    })
}

/// Standard base64, padding optional, trailing bits ignored (as the reference implementation does).
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    // One leftover character (6 bits) cannot encode a byte.
    if s.len() % 4 == 1 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_variants() {
        assert_eq!(decode_base64("b25l"), Some(b"one".to_vec()));
        assert_eq!(decode_base64("b24="), Some(b"on".to_vec()));
        assert_eq!(decode_base64("b24"), Some(b"on".to_vec()));
        assert_eq!(decode_base64("123").map(|v| v.len()), Some(2));
        assert_eq!(decode_base64("b"), None);
        assert_eq!(decode_base64("b2!l"), None);
    }

    #[test]
    fn floats_and_links() {
        let e = json_to_ipld(&serde_json::json!({"a": [1, 2.5]})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a[1]: floats are not allowed in the data model"
        );
        let e = json_to_ipld(&serde_json::json!({"l": {"$link": "nope"}})).unwrap_err();
        assert_eq!(e.path, "l");
        let ok = json_to_ipld(&serde_json::json!({
            "$link": "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq"
        }));
        assert!(matches!(ok, Ok(Ipld::Link(_))));
    }
}
