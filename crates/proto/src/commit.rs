//! Signed repository commits (version 3): decode, canonical unsigned bytes, signature check.

use cid::Cid;
use serde::{Deserialize, Serialize};

use crate::cbor::{self, CborError};
use crate::crypto::{PublicKey, SignatureError, SigningKey};
use crate::syntax::{Did, Tid};

/// The only commit format atproto repositories use today.
pub const COMMIT_VERSION: i64 = 3;

/// Why a block is not an acceptable commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    #[error("commit is not valid DAG-CBOR of the commit shape: {0}")]
    Cbor(#[from] CborError),
    #[error("unsupported commit version {0} (only 3 is accepted)")]
    UnsupportedVersion(i64),
}

/// A signed commit: `{did, version, data, rev, prev, sig}`. `data` is the MST root; `prev` is
/// kept for the format (v3 writers set it to null) and is always encoded, as null when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub did: Did,
    pub version: i64,
    pub data: Cid,
    pub rev: Tid,
    pub prev: Option<Cid>,
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

/// A commit before signing: the exact map whose DAG-CBOR bytes get signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsignedCommit {
    pub did: Did,
    pub version: i64,
    pub data: Cid,
    pub rev: Tid,
    pub prev: Option<Cid>,
}

/// The unsigned view of a commit, borrowed, so verifying does not clone the fields. Field
/// names match [`UnsignedCommit`]; DAG-CBOR sorts the keys, so declaration order is irrelevant.
#[derive(Serialize)]
struct UnsignedRef<'a> {
    did: &'a Did,
    version: i64,
    data: &'a Cid,
    rev: &'a Tid,
    prev: &'a Option<Cid>,
}

impl Commit {
    /// Decodes one commit block (strict DAG-CBOR, CIDs as tag 42) and insists on version 3.
    pub fn decode(block: &[u8]) -> Result<Commit, CommitError> {
        let commit: Commit = cbor::decode(block)?;
        if commit.version != COMMIT_VERSION {
            return Err(CommitError::UnsupportedVersion(commit.version));
        }
        Ok(commit)
    }

    /// Canonical DAG-CBOR of the commit without `sig`: the bytes the signature covers.
    pub fn unsigned_bytes(&self) -> Vec<u8> {
        let view = UnsignedRef {
            did: &self.did,
            version: self.version,
            data: &self.data,
            rev: &self.rev,
            prev: &self.prev,
        };
        // Encoding these plain types cannot fail; an empty result would only make the
        // signature check fail, never pass.
        cbor::encode(&view).unwrap_or_default()
    }

    /// Checks `sig` over [`Self::unsigned_bytes`] with the account's `#atproto` key.
    pub fn verify_signature(&self, key: &PublicKey) -> Result<(), SignatureError> {
        key.verify(&self.unsigned_bytes(), &self.sig)
    }

    /// Canonical DAG-CBOR of the whole signed commit (the block stored in a CAR).
    pub fn encode(&self) -> Result<Vec<u8>, CommitError> {
        Ok(cbor::encode(self)?)
    }

    /// The CID of [`Self::encode`]: what a firehose `#commit` names in its `commit` field.
    pub fn cid(&self) -> Result<Cid, CommitError> {
        Ok(cbor::cid_for_cbor(&self.encode()?))
    }

    /// The commit without its signature.
    pub fn unsigned(&self) -> UnsignedCommit {
        UnsignedCommit {
            did: self.did.clone(),
            version: self.version,
            data: self.data,
            rev: self.rev.clone(),
            prev: self.prev,
        }
    }
}

impl UnsignedCommit {
    /// A version-3 commit with `prev: null`, as current writers produce.
    pub fn new(did: Did, data: Cid, rev: Tid) -> Self {
        Self {
            did,
            version: COMMIT_VERSION,
            data,
            rev,
            prev: None,
        }
    }

    /// Canonical DAG-CBOR of this unsigned commit.
    pub fn bytes(&self) -> Vec<u8> {
        cbor::encode(self).unwrap_or_default()
    }

    /// Signs the canonical bytes (deterministic, low-S).
    pub fn sign(self, key: &SigningKey) -> Commit {
        let sig = key.sign(&self.bytes()).to_vec();
        Commit {
            did: self.did,
            version: self.version,
            data: self.data,
            rev: self.rev,
            prev: self.prev,
            sig,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> UnsignedCommit {
        UnsignedCommit::new(
            Did::parse("did:plc:qvu3tmkxy3kfnrlru3vd7xsx").expect("did"),
            cbor::cid_for_cbor(b"\xa0"),
            Tid::from_parts(1_700_000_000_000_000, 1),
        )
    }

    #[test]
    fn sign_encode_decode_verify() {
        let key = SigningKey::generate_from_seed(&[5; 32]);
        let commit = sample().sign(&key);
        let block = commit.encode().expect("encodes");
        let back = Commit::decode(&block).expect("decodes");
        assert_eq!(back, commit);
        assert_eq!(back.verify_signature(&key.public_key()), Ok(()));
        let other = SigningKey::generate_from_seed(&[6; 32]).public_key();
        assert_eq!(back.verify_signature(&other), Err(SignatureError::Invalid));
    }

    #[test]
    fn unsigned_bytes_match_the_unsigned_struct_and_keep_null_prev() {
        let key = SigningKey::generate_p256_from_seed(&[5; 32]);
        let unsigned = sample();
        let commit = unsigned.clone().sign(&key);
        assert_eq!(commit.unsigned_bytes(), unsigned.bytes());
        let bytes = commit.unsigned_bytes();
        // Map of 5 entries; keys sorted length-first: did, rev, data, prev, version.
        assert_eq!(bytes[0], 0xa5);
        let prev_null = [0x64, b'p', b'r', b'e', b'v', 0xf6];
        assert!(
            bytes.windows(6).any(|w| w == prev_null),
            "prev must be encoded as null"
        );
        let order: Vec<usize> = ["did", "rev", "data", "prev", "version"]
            .iter()
            .map(|k| {
                let mut needle = vec![0x60 + k.len() as u8];
                needle.extend_from_slice(k.as_bytes());
                bytes
                    .windows(needle.len())
                    .position(|w| w == needle)
                    .expect("key present")
            })
            .collect();
        assert!(order.windows(2).all(|p| p[0] < p[1]), "{order:?}");
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let key = SigningKey::generate_from_seed(&[8; 32]);
        let mut commit = sample().sign(&key);
        commit.rev = Tid::from_parts(1_700_000_000_000_001, 1);
        assert_eq!(
            commit.verify_signature(&key.public_key()),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn rejects_other_versions() {
        let key = SigningKey::generate_from_seed(&[5; 32]);
        let mut unsigned = sample();
        unsigned.version = 2;
        let block = unsigned.sign(&key).encode().expect("encodes");
        assert_eq!(
            Commit::decode(&block),
            Err(CommitError::UnsupportedVersion(2))
        );
        assert!(matches!(
            Commit::decode(&block[..block.len() - 1]),
            Err(CommitError::Cbor(_))
        ));
    }
}
