//! Forged accounts and their records: real signed commits from `ForgeRepo`, a model of what
//! each repo holds, replicas for building forgeries, and lexicon-valid Guildhall records.

use std::collections::BTreeMap;

use cid::Cid;
use guildhall_proto::cbor;
use guildhall_proto::crypto::{PublicKey, SigningKey};
use guildhall_proto::forge::{ForgeRepo, Forged, Write};
use guildhall_proto::syntax::{Did, Tid};

/// One forged account: its repo, the writes of every commit so far, and the records it holds.
pub struct Account {
    pub did: Did,
    pub handle: String,
    seed: [u8; 32],
    pub repo: ForgeRepo,
    history: Vec<Vec<Write>>,
    /// `collection/rkey` → CID, as the repo holds it after the last commit.
    pub model: BTreeMap<String, Cid>,
}

impl Account {
    /// A new, empty account named `name` (lowercase letters; it pads the did:plc identifier).
    pub fn new(name: &str, seed_byte: u8) -> Self {
        let did = Did::parse(&format!("did:plc:{name:a<24}")).expect("valid did:plc");
        let seed = [seed_byte; 32];
        let repo = ForgeRepo::new(did.clone(), SigningKey::generate_from_seed(&seed));
        Self {
            did,
            handle: format!("{name}.test"),
            seed,
            repo,
            history: Vec::new(),
            model: BTreeMap::new(),
        }
    }

    pub fn key(&self) -> PublicKey {
        SigningKey::generate_from_seed(&self.seed).public_key()
    }

    /// Commits `writes` to the real repo.
    pub fn commit(&mut self, writes: Vec<Write>) -> Forged {
        let forged = self.repo.commit(&writes).expect("forge commit");
        for w in &writes {
            match w {
                Write::Put { path, record } => {
                    self.model.insert(path.clone(), cbor::cid_for_cbor(record));
                }
                Write::Delete { path } => {
                    self.model.remove(path);
                }
            }
        }
        self.history.push(writes);
        forged
    }

    /// A copy of the repo as it is now, signing with the key of `seed_byte` (the account's own
    /// or another): commits made on it never reach the real repo.
    pub fn replica(&self, seed_byte: u8) -> ForgeRepo {
        let mut r = ForgeRepo::new(
            self.did.clone(),
            SigningKey::generate_from_seed(&[seed_byte; 32]),
        );
        for writes in &self.history {
            r.commit(writes).expect("replay history");
        }
        r
    }

    /// The key seed byte of this account.
    pub fn seed_byte(&self) -> u8 {
        self.seed[0]
    }

    /// `getRepo` as the PDS would serve it now.
    pub fn export(&self) -> (String, Vec<u8>) {
        (
            self.did.to_string(),
            self.repo.export_car().expect("export"),
        )
    }

    /// `at://` URI of a path in this repo.
    pub fn uri(&self, path: &str) -> String {
        format!("at://{}/{path}", self.did)
    }

    /// `(uri, cid)` of every record the model holds in `collection`, by rkey.
    pub fn expected(&self, collection: &str) -> Vec<(String, String)> {
        self.model
            .iter()
            .filter(|(p, _)| p.split_once('/').is_some_and(|(c, _)| c == collection))
            .map(|(p, c)| (self.uri(p), c.to_string()))
            .collect()
    }
}

fn encode(json: serde_json::Value) -> Vec<u8> {
    let ipld = guildhall_lexicon::json_to_ipld(&json).expect("record JSON is data-model");
    cbor::encode(&ipld).expect("encode record")
}

/// A valid `dev.guildhall.service` at `dev.guildhall.service/<slug>`.
pub fn service(slug: &str, name: &str, caps: &[&str]) -> Write {
    Write::Put {
        path: format!("dev.guildhall.service/{slug}"),
        record: encode(serde_json::json!({
            "$type": "dev.guildhall.service",
            "name": name,
            "description": format!("{name}, forged for the ingestion tests"),
            "capabilities": caps,
            "endpoints": [{"protocol": "mcp", "url": format!("https://{slug}.example.com/mcp"), "transport": "streamable-http"}],
            "pricing": [{"model": "per_call", "amount": "0.002", "currency": "USD", "unit": "call"}],
            "sla": {"latencyP95Ms": 250, "availabilityBp": 9990},
            "regions": ["DE", "US"],
            "tags": ["forged"],
            "version": "1.0.0",
            "createdAt": "2026-01-01T00:00:00.000Z",
        })),
    }
}

/// A valid `dev.guildhall.endorsement` of `subject` under a TID key made from `n`.
pub fn endorsement(n: u64, subject: &Did, strength: i64) -> Write {
    let rkey = Tid::from_parts(1_767_225_600_000_000 + n, 3);
    Write::Put {
        path: format!("dev.guildhall.endorsement/{rkey}"),
        record: encode(serde_json::json!({
            "$type": "dev.guildhall.endorsement",
            "subject": subject.as_str(),
            "strength": strength,
            "capabilities": ["sms.send"],
            "comment": "works as described",
            "createdAt": "2026-01-02T00:00:00.000Z",
        })),
    }
}

/// A record outside our collections (the indexer must not even look at its commit).
pub fn post(rkey: &str) -> Write {
    Write::Put {
        path: format!("app.bsky.feed.post/{rkey}"),
        record: encode(serde_json::json!({
            "$type": "app.bsky.feed.post",
            "text": "hello",
            "createdAt": "2026-01-01T00:00:00.000Z",
        })),
    }
}

/// Deletes `path`.
pub fn delete(path: &str) -> Write {
    Write::Delete {
        path: path.to_owned(),
    }
}

/// The path a write touches.
pub fn path_of(w: &Write) -> &str {
    match w {
        Write::Put { path, .. } | Write::Delete { path } => path,
    }
}

/// A `dev.guildhall.service` the lexicon refuses: it has no `endpoints`.
pub fn bad_service(slug: &str) -> Write {
    Write::Put {
        path: format!("dev.guildhall.service/{slug}"),
        record: encode(serde_json::json!({
            "$type": "dev.guildhall.service",
            "name": "No endpoints",
            "capabilities": ["sms.send"],
            "createdAt": "2026-01-01T00:00:00.000Z",
        })),
    }
}
