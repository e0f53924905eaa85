//! A did:plc client for tests: creates a DID in the reference PLC directory with a genesis
//! operation signed by a rotation key the test holds, and changes it later with signed update
//! operations, as the did:plc spec says (DAG-CBOR, K-256 low-S, base64url without padding).

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use guildhall_proto::cbor;
use guildhall_proto::crypto::{PublicKey, SigningKey};
use serde::Serialize;

/// What an account's did:plc document says: its keys, handle and PDS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlcState {
    /// The `#atproto` verification method: the key repo commits are signed with.
    pub signing_key: PublicKey,
    /// The handle, without `at://`.
    pub handle: String,
    /// The `#atproto_pds` endpoint.
    pub pds: String,
}

/// One `plc_operation`, in the field names the directory expects.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Operation {
    #[serde(rename = "type")]
    kind: &'static str,
    rotation_keys: Vec<String>,
    verification_methods: BTreeMap<String, String>,
    also_known_as: Vec<String>,
    services: BTreeMap<String, Service>,
    /// CID of the previous operation; null in the genesis operation (and signed as null).
    prev: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sig: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Service {
    #[serde(rename = "type")]
    kind: String,
    endpoint: String,
}

/// A DID the test owns in a PLC directory: it holds the rotation key and the CID of the last
/// operation, so it can sign the next one.
pub struct PlcDid {
    /// `did:plc:…`, derived from the signed genesis operation.
    pub did: String,
    plc_url: String,
    rotation: SigningKey,
    prev: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for PlcDid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlcDid")
            .field("did", &self.did)
            .field("prev", &self.prev)
            .finish_non_exhaustive()
    }
}

impl Operation {
    fn new(rotation: &SigningKey, state: &PlcState, prev: Option<String>) -> Self {
        Self {
            kind: "plc_operation",
            rotation_keys: vec![rotation.public_key().to_did_key()],
            verification_methods: BTreeMap::from([(
                "atproto".to_owned(),
                state.signing_key.to_did_key(),
            )]),
            also_known_as: vec![format!("at://{}", state.handle)],
            services: BTreeMap::from([(
                "atproto_pds".to_owned(),
                Service {
                    kind: "AtprotoPersonalDataServer".to_owned(),
                    endpoint: state.pds.clone(),
                },
            )]),
            prev,
            sig: None,
        }
    }

    /// Signs the DAG-CBOR of the unsigned operation; returns the signed operation's DAG-CBOR.
    fn sign(&mut self, key: &SigningKey) -> Result<Vec<u8>> {
        self.sig = None;
        let unsigned = cbor::encode(&*self).context("encoding the unsigned operation")?;
        let sig = key.sign(&unsigned);
        self.sig = Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig));
        cbor::encode(&*self).context("encoding the signed operation")
    }
}

/// `did:plc:` + the first 24 characters of base32-lower(sha256(signed genesis DAG-CBOR)).
fn did_for_genesis(signed: &[u8]) -> String {
    let cid = cbor::cid_for_cbor(signed);
    let encoded = multibase::encode(multibase::Base::Base32Lower, cid.hash().digest());
    // Drop the multibase prefix `b`.
    let id: String = encoded.chars().skip(1).take(24).collect();
    format!("did:plc:{id}")
}

impl PlcDid {
    /// Creates a DID at `plc_url` whose document says `state`, controlled by `rotation`.
    pub async fn create(plc_url: &str, rotation: SigningKey, state: &PlcState) -> Result<Self> {
        let mut op = Operation::new(&rotation, state, None);
        let signed = op.sign(&rotation)?;
        let did = did_for_genesis(&signed);
        let me = Self {
            did,
            plc_url: plc_url.trim_end_matches('/').to_owned(),
            rotation,
            prev: cbor::cid_for_cbor(&signed).to_string(),
            http: reqwest::Client::new(),
        };
        me.submit(&op).await?;
        Ok(me)
    }

    /// Replaces the document with `state` by a signed update operation chained on the last one.
    pub async fn update(&mut self, state: &PlcState) -> Result<()> {
        let signer = self.rotation.clone();
        self.prev = self.submit_update(state, &signer).await?;
        Ok(())
    }

    /// The same update signed by `signer` instead of the rotation key, as someone who does not
    /// control the DID would send it (the directory must refuse it). Our chain does not move.
    pub async fn update_signed_by(&self, state: &PlcState, signer: &SigningKey) -> Result<()> {
        self.submit_update(state, signer).await.map(drop)
    }

    /// Submits an update signed by `signer`; returns its CID.
    async fn submit_update(&self, state: &PlcState, signer: &SigningKey) -> Result<String> {
        let mut op = Operation::new(&self.rotation, state, Some(self.prev.clone()));
        let signed = op.sign(signer)?;
        self.submit(&op).await?;
        Ok(cbor::cid_for_cbor(&signed).to_string())
    }

    async fn submit(&self, op: &Operation) -> Result<()> {
        let url = format!("{}/{}", self.plc_url, self.did);
        let resp = self
            .http
            .post(&url)
            .json(op)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            bail!("POST {url} -> {status}: {body}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_did_is_24_base32_characters_of_the_signed_genesis_hash() {
        let did = did_for_genesis(b"\xa0");
        let id = did.strip_prefix("did:plc:").expect("prefix");
        assert_eq!(id.len(), 24);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c)),
            "{id}"
        );
        assert_ne!(did, did_for_genesis(b"\xa1\x61a\x01"));
    }
}
