//! DID documents, as served by PLC (`GET /<did>`), did:web, or PLC's `/<did>/data` form:
//! pure parsing into one [`DidDocument`] and the three facts atproto needs from it.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::crypto::{KeyError, PublicKey};
use crate::syntax::{Did, Handle};

/// A DID document, reduced to what atproto reads. Deserialising accepts both the W3C form
/// (`id`, `alsoKnownAs`, `verificationMethod[]`, `service[]`) and PLC's `/data` form (`did`,
/// `alsoKnownAs`, `verificationMethods{name: did:key}`, `services{name: {type, endpoint}}`);
/// both yield the same value. Serialising writes the W3C form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawDocument")]
pub struct DidDocument {
    pub id: Did,
    pub also_known_as: Vec<String>,
    pub verification_method: Vec<VerificationMethod>,
    pub service: Vec<Service>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMethod {
    pub id: String,
    #[serde(rename = "type")]
    pub method_type: String,
    #[serde(default)]
    pub controller: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_multibase: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub id: String,
    #[serde(rename = "type")]
    pub service_type: String,
    /// The endpoint when it is a plain string (the only form atproto uses); W3C also allows
    /// maps and arrays, which are kept as `None`.
    #[serde(default, deserialize_with = "string_or_ignored")]
    pub service_endpoint: Option<String>,
}

/// Both wire forms, field by field, before they are merged.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDocument {
    id: Option<Did>,
    did: Option<Did>,
    #[serde(default)]
    also_known_as: Vec<String>,
    #[serde(default)]
    verification_method: Vec<VerificationMethod>,
    #[serde(default)]
    verification_methods: BTreeMap<String, String>,
    #[serde(default)]
    service: Vec<Service>,
    #[serde(default)]
    services: BTreeMap<String, PlcService>,
}

#[derive(Deserialize)]
struct PlcService {
    #[serde(rename = "type")]
    service_type: String,
    endpoint: String,
}

/// Why a JSON value is not a DID document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DidDocumentError {
    #[error("not a DID document: {0}")]
    Json(String),
    #[error("DID document has neither \"id\" nor \"did\"")]
    MissingId,
    #[error("DID document's \"id\" and \"did\" disagree")]
    ConflictingId,
}

impl TryFrom<RawDocument> for DidDocument {
    type Error = DidDocumentError;

    fn try_from(raw: RawDocument) -> Result<Self, Self::Error> {
        let id = match (raw.id, raw.did) {
            (Some(a), Some(b)) if a != b => return Err(DidDocumentError::ConflictingId),
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => return Err(DidDocumentError::MissingId),
        };
        let mut verification_method = raw.verification_method;
        // PLC's data form names each key by fragment and gives it as a did:key, which is the
        // Multikey value behind the `did:key:` prefix.
        for (name, did_key) in raw.verification_methods {
            verification_method.push(VerificationMethod {
                id: format!("#{name}"),
                method_type: "Multikey".to_owned(),
                controller: id.to_string(),
                public_key_multibase: did_key.strip_prefix("did:key:").map(str::to_owned),
            });
        }
        let mut service = raw.service;
        for (name, s) in raw.services {
            service.push(Service {
                id: format!("#{name}"),
                service_type: s.service_type,
                service_endpoint: Some(s.endpoint),
            });
        }
        Ok(Self {
            id,
            also_known_as: raw.also_known_as,
            verification_method,
            service,
        })
    }
}

fn string_or_ignored<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Endpoint {
        Url(String),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Endpoint::deserialize(d)? {
        Endpoint::Url(s) => Some(s),
        Endpoint::Other(_) => None,
    })
}

impl DidDocument {
    /// Parses JSON in either form (W3C document or PLC `/data`).
    pub fn from_json(bytes: &[u8]) -> Result<Self, DidDocumentError> {
        serde_json::from_slice(bytes).map_err(|e| DidDocumentError::Json(e.to_string()))
    }

    /// Whether a method/service `id` names `fragment` of this DID: relative (`#atproto`, as
    /// the reference PLC writes it) or absolute (`did:plc:…#atproto`).
    fn is_fragment(&self, id: &str, fragment: &str) -> bool {
        match id.split_once('#') {
            Some((base, frag)) => frag == fragment && (base.is_empty() || base == self.id.as_str()),
            None => false,
        }
    }

    /// The account's signing key: the verification method `#atproto`.
    pub fn atproto_key(&self) -> Result<PublicKey, KeyError> {
        let method = self
            .verification_method
            .iter()
            .find(|m| self.is_fragment(&m.id, "atproto"))
            .ok_or(KeyError::NoAtprotoKey)?;
        let multibase = method
            .public_key_multibase
            .as_deref()
            .ok_or(KeyError::MissingMultibase)?;
        PublicKey::from_verification_method(&method.method_type, multibase)
    }

    /// The PDS URL: service `#atproto_pds` of type `AtprotoPersonalDataServer`.
    pub fn pds_endpoint(&self) -> Option<&str> {
        self.service
            .iter()
            .find(|s| {
                self.is_fragment(&s.id, "atproto_pds")
                    && s.service_type == "AtprotoPersonalDataServer"
            })
            .and_then(|s| s.service_endpoint.as_deref())
    }

    /// The claimed handle: the first `at://` entry of `alsoKnownAs`, if it is a valid handle.
    /// Claimed only: it must still be confirmed by resolving the handle back to this DID.
    pub fn handle(&self) -> Option<Handle> {
        self.also_known_as
            .iter()
            .find_map(|aka| aka.strip_prefix("at://"))
            .and_then(|h| Handle::parse(h).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SigningKey;

    fn doc(json: &str) -> DidDocument {
        serde_json::from_str(json).expect("parses")
    }

    #[test]
    fn w3c_form_with_absolute_ids_and_multikey() {
        let key = SigningKey::generate_p256_from_seed(&[4; 32]).public_key();
        let d = doc(&format!(
            r##"{{"id":"did:web:example.com","alsoKnownAs":["https://x","at://Example.com"],
            "verificationMethod":[{{"id":"did:web:example.com#other","type":"Multikey","controller":"did:web:example.com","publicKeyMultibase":"zbad"}},
              {{"id":"did:web:example.com#atproto","type":"Multikey","controller":"did:web:example.com","publicKeyMultibase":"{}"}}],
            "service":[{{"id":"#atproto_pds","type":"AtprotoPersonalDataServer","serviceEndpoint":"https://pds.example.com"}},
              {{"id":"#other","type":"X","serviceEndpoint":{{"a":1}}}}]}}"##,
            key.to_multikey()
        ));
        assert_eq!(d.atproto_key(), Ok(key));
        assert_eq!(d.pds_endpoint(), Some("https://pds.example.com"));
        assert_eq!(
            d.handle().map(|h| h.to_string()).as_deref(),
            Some("example.com")
        );
    }

    #[test]
    fn foreign_did_fragment_is_not_ours() {
        let d = doc(
            r##"{"id":"did:plc:aaa","verificationMethod":[{"id":"did:plc:bbb#atproto","type":"Multikey","publicKeyMultibase":"z"}],
            "service":[{"id":"#atproto_pds","type":"SomethingElse","serviceEndpoint":"https://x"}]}"##,
        );
        assert_eq!(d.atproto_key(), Err(KeyError::NoAtprotoKey));
        assert_eq!(d.pds_endpoint(), None);
        assert_eq!(d.handle(), None);
    }

    #[test]
    fn id_errors() {
        assert!(matches!(
            DidDocument::from_json(br#"{"alsoKnownAs":[]}"#),
            Err(DidDocumentError::Json(m)) if m.contains("neither")
        ));
        assert!(matches!(
            DidDocument::from_json(b"[1]"),
            Err(DidDocumentError::Json(_))
        ));
        assert!(
            serde_json::from_str::<DidDocument>(r#"{"id":"did:plc:a","did":"did:plc:b"}"#).is_err()
        );
        assert!(serde_json::from_str::<DidDocument>(r#"{"id":"not a did"}"#).is_err());
    }

    #[test]
    fn serialises_as_w3c_and_round_trips() {
        let d = doc(
            r#"{"did":"did:plc:aaa","alsoKnownAs":["at://a.test"],"verificationMethods":{"atproto":"did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme"},
            "services":{"atproto_pds":{"type":"AtprotoPersonalDataServer","endpoint":"https://pds"}}}"#,
        );
        let json = serde_json::to_string(&d).expect("serialises");
        assert!(json.contains("\"verificationMethod\"") && json.contains("\"serviceEndpoint\""));
        assert_eq!(doc(&json), d);
    }
}
