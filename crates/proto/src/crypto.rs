//! ATProto signing keys: did:key / Multikey / legacy verification-method parsing, and strict
//! ECDSA verification (raw 64-byte r‖s, low-S only) over K-256 and P-256.
//!
//! K-256 verification uses libsecp256k1 (the `secp256k1` crate), about twice as fast as the
//! pure-Rust `k256` (see `benches/crypto.rs`); P-256 uses the `p256` crate. Keys are parsed
//! once into [`PublicKey`] so verifying a commit never re-parses a point.

use std::sync::LazyLock;

use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use sha2::{Digest as _, Sha256};

/// Multicodec varint prefix of a compressed secp256k1 public key (`secp256k1-pub`, 0xE7).
const K256_CODEC: [u8; 2] = [0xE7, 0x01];
/// Multicodec varint prefix of a compressed P-256 public key (`p256-pub`, 0x1200).
const P256_CODEC: [u8; 2] = [0x80, 0x24];

/// One libsecp256k1 context for the whole process: building one per call would dominate the
/// cost of a verification.
static SECP: LazyLock<secp256k1::Secp256k1<secp256k1::All>> =
    LazyLock::new(secp256k1::Secp256k1::new);

/// Why a key string could not be turned into a [`PublicKey`] or [`SigningKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a did:key (must start with \"did:key:\")")]
    NotDidKey,
    #[error("not base58btc multibase (must start with 'z')")]
    NotBase58btc,
    #[error("base58btc decoding failed")]
    BadBase58,
    #[error("unsupported multicodec key prefix {0:02x?}")]
    UnknownCodec(Vec<u8>),
    #[error("a {curve} public key must be {expected} bytes here, got {got}")]
    BadLength {
        curve: &'static str,
        expected: &'static str,
        got: usize,
    },
    #[error("not a valid {0} curve point")]
    InvalidPoint(&'static str),
    #[error("not a valid {0} private key")]
    InvalidPrivateKey(&'static str),
    #[error("unsupported verification method type {0:?}")]
    UnsupportedMethodType(String),
    #[error("the DID document has no #atproto verification method")]
    NoAtprotoKey,
    #[error("the #atproto verification method has no publicKeyMultibase")]
    MissingMultibase,
}

/// Why a signature does not verify. `BadLength` covers DER-encoded signatures (atproto allows
/// only the raw 64-byte form); `HighS` is a malleable signature that atproto forbids on both
/// curves; `Malformed` is r or s out of range; `Invalid` is a well-formed signature that does
/// not match the key and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature must be exactly 64 raw bytes (r||s)")]
    BadLength,
    #[error("signature has a high S value, which atproto rejects")]
    HighS,
    #[error("signature r or s is out of range")]
    Malformed,
    #[error("signature does not match the key and message")]
    Invalid,
}

/// The curve of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    K256,
    P256,
}

/// A parsed public key, ready to verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    K256(secp256k1::PublicKey),
    P256(p256::ecdsa::VerifyingKey),
}

fn decode_base58btc(s: &str) -> Result<Vec<u8>, KeyError> {
    if !s.starts_with('z') {
        return Err(KeyError::NotBase58btc);
    }
    match multibase::decode(s) {
        Ok((multibase::Base::Base58Btc, bytes)) => Ok(bytes),
        _ => Err(KeyError::BadBase58),
    }
}

impl PublicKey {
    /// `did:key:z…` → key.
    pub fn from_did_key(s: &str) -> Result<Self, KeyError> {
        let mk = s.strip_prefix("did:key:").ok_or(KeyError::NotDidKey)?;
        Self::from_multikey(mk)
    }

    /// Multikey: `z` + base58btc(multicodec prefix + 33-byte compressed point).
    pub fn from_multikey(s: &str) -> Result<Self, KeyError> {
        let bytes = decode_base58btc(s)?;
        let (codec, point) = bytes
            .split_at_checked(2)
            .ok_or(KeyError::UnknownCodec(bytes.clone()))?;
        let curve = match codec {
            c if c == K256_CODEC => Curve::K256,
            c if c == P256_CODEC => Curve::P256,
            other => return Err(KeyError::UnknownCodec(other.to_vec())),
        };
        Self::from_compressed(curve, point)
    }

    /// A DID-document verification method. `Multikey` carries a codec prefix; the legacy
    /// `EcdsaSecp256k1VerificationKey2019` / `EcdsaSecp256r1VerificationKey2019` types carry
    /// the raw SEC1 point (65-byte uncompressed or 33-byte compressed). The form is decided by
    /// the type and the decoded bytes, never by the string's look: a legacy key can also start
    /// with `zQ…`.
    pub fn from_verification_method(
        method_type: &str,
        public_key_multibase: &str,
    ) -> Result<Self, KeyError> {
        let curve = match method_type {
            "Multikey" => return Self::from_multikey(public_key_multibase),
            "EcdsaSecp256k1VerificationKey2019" => Curve::K256,
            "EcdsaSecp256r1VerificationKey2019" => Curve::P256,
            other => return Err(KeyError::UnsupportedMethodType(other.to_owned())),
        };
        let bytes = decode_base58btc(public_key_multibase)?;
        let expected_codec = match curve {
            Curve::K256 => K256_CODEC,
            Curve::P256 => P256_CODEC,
        };
        match (bytes.len(), bytes.first()) {
            (65, Some(0x04)) | (33, Some(0x02 | 0x03)) => Self::from_sec1(curve, &bytes),
            // Some writers put a Multikey value under the legacy type; accept it only when
            // its codec matches the curve the type names.
            (35, _) if bytes.starts_with(&expected_codec) => {
                Self::from_compressed(curve, &bytes[2..])
            }
            (got, _) => Err(KeyError::BadLength {
                curve: curve.name(),
                expected: "65 (uncompressed) or 33 (compressed)",
                got,
            }),
        }
    }

    fn from_compressed(curve: Curve, point: &[u8]) -> Result<Self, KeyError> {
        if point.len() != 33 {
            return Err(KeyError::BadLength {
                curve: curve.name(),
                expected: "33",
                got: point.len(),
            });
        }
        Self::from_sec1(curve, point)
    }

    /// Any SEC1 encoding (compressed or uncompressed), validated as a curve point.
    pub fn from_sec1(curve: Curve, bytes: &[u8]) -> Result<Self, KeyError> {
        match curve {
            Curve::K256 => secp256k1::PublicKey::from_slice(bytes)
                .map(Self::K256)
                .map_err(|_| KeyError::InvalidPoint("K-256")),
            Curve::P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                .map(Self::P256)
                .map_err(|_| KeyError::InvalidPoint("P-256")),
        }
    }

    pub fn curve(&self) -> Curve {
        match self {
            Self::K256(_) => Curve::K256,
            Self::P256(_) => Curve::P256,
        }
    }

    /// The 33-byte compressed SEC1 point.
    pub fn to_compressed(&self) -> [u8; 33] {
        match self {
            Self::K256(k) => k.serialize(),
            Self::P256(k) => {
                let mut out = [0u8; 33];
                out.copy_from_slice(k.to_sec1_point(true).as_bytes());
                out
            }
        }
    }

    /// `z` + base58btc(codec + compressed point).
    pub fn to_multikey(&self) -> String {
        let codec = match self {
            Self::K256(_) => K256_CODEC,
            Self::P256(_) => P256_CODEC,
        };
        let mut bytes = Vec::with_capacity(35);
        bytes.extend_from_slice(&codec);
        bytes.extend_from_slice(&self.to_compressed());
        multibase::encode(multibase::Base::Base58Btc, bytes)
    }

    pub fn to_did_key(&self) -> String {
        format!("did:key:{}", self.to_multikey())
    }

    /// Verifies `sig` over SHA-256(`msg`).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), SignatureError> {
        let digest: [u8; 32] = Sha256::digest(msg).into();
        self.verify_digest(&digest, sig)
    }

    /// Verifies `sig` over an already-computed SHA-256 digest.
    pub fn verify_digest(&self, digest: &[u8; 32], sig: &[u8]) -> Result<(), SignatureError> {
        if sig.len() != 64 {
            return Err(SignatureError::BadLength);
        }
        match self {
            Self::K256(key) => {
                let parsed = secp256k1::ecdsa::Signature::from_compact(sig)
                    .map_err(|_| SignatureError::Malformed)?;
                let mut low = parsed;
                low.normalize_s();
                if low != parsed {
                    return Err(SignatureError::HighS);
                }
                SECP.verify_ecdsa(secp256k1::Message::from_digest(*digest), &parsed, key)
                    .map_err(|_| SignatureError::Invalid)
            }
            Self::P256(key) => {
                let parsed = p256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| SignatureError::Malformed)?;
                // `p256` accepts high-S signatures; atproto does not.
                if parsed.normalize_s() != parsed {
                    return Err(SignatureError::HighS);
                }
                key.verify_prehash(digest, &parsed)
                    .map_err(|_| SignatureError::Invalid)
            }
        }
    }
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Self::K256 => "K-256",
            Self::P256 => "P-256",
        }
    }
}

/// A private key, for tests and tools that must produce real signed commits. Signing is
/// deterministic (RFC 6979) and always yields low-S signatures.
#[derive(Clone)]
pub enum SigningKey {
    K256(secp256k1::SecretKey),
    P256(p256::ecdsa::SigningKey),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secret material.
        write!(f, "SigningKey({})", self.public_key().to_did_key())
    }
}

/// Hashes `seed` until it is a valid scalar for the curve. A 32-byte value is valid with
/// probability 1 - 2^-128, so this virtually always returns on the first try.
fn derive_scalar(seed: &[u8; 32], valid: impl Fn(&[u8; 32]) -> bool) -> [u8; 32] {
    let mut candidate = *seed;
    while !valid(&candidate) {
        candidate = Sha256::digest(candidate).into();
    }
    candidate
}

impl SigningKey {
    /// A K-256 key from 32 seed bytes (used as the scalar when valid), deterministic.
    pub fn generate_from_seed(seed: &[u8; 32]) -> Self {
        let bytes = derive_scalar(seed, |b| secp256k1::SecretKey::from_byte_array(*b).is_ok());
        match secp256k1::SecretKey::from_byte_array(bytes) {
            Ok(k) => Self::K256(k),
            // Unreachable: derive_scalar returned a value this same check accepted.
            Err(_) => Self::generate_from_seed(&Sha256::digest(bytes).into()),
        }
    }

    /// A P-256 key from 32 seed bytes, deterministic.
    pub fn generate_p256_from_seed(seed: &[u8; 32]) -> Self {
        let bytes = derive_scalar(seed, |b| p256::ecdsa::SigningKey::from_slice(b).is_ok());
        match p256::ecdsa::SigningKey::from_slice(&bytes) {
            Ok(k) => Self::P256(k),
            Err(_) => Self::generate_p256_from_seed(&Sha256::digest(bytes).into()),
        }
    }

    /// A key from its 32-byte big-endian private scalar.
    pub fn from_bytes(curve: Curve, bytes: &[u8]) -> Result<Self, KeyError> {
        match curve {
            Curve::K256 => <[u8; 32]>::try_from(bytes)
                .ok()
                .and_then(|b| secp256k1::SecretKey::from_byte_array(b).ok())
                .map(Self::K256)
                .ok_or(KeyError::InvalidPrivateKey("K-256")),
            Curve::P256 => p256::ecdsa::SigningKey::from_slice(bytes)
                .map(Self::P256)
                .map_err(|_| KeyError::InvalidPrivateKey("P-256")),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        match self {
            Self::K256(k) => PublicKey::K256(secp256k1::PublicKey::from_secret_key(&SECP, k)),
            Self::P256(k) => PublicKey::P256(*k.verifying_key()),
        }
    }

    /// Signs SHA-256(`msg`): raw r‖s, low-S.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        match self {
            Self::K256(_) => self.sign_digest(&Sha256::digest(msg).into()),
            Self::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(msg);
                to_array(&sig.normalize_s().to_bytes())
            }
        }
    }

    /// Signs an already-computed SHA-256 digest: raw r‖s, low-S.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> [u8; 64] {
        match self {
            Self::K256(k) => {
                // libsecp256k1 always produces low-S signatures.
                let sig = SECP.sign_ecdsa(secp256k1::Message::from_digest(*digest), k);
                sig.serialize_compact()
            }
            Self::P256(k) => {
                use p256::ecdsa::signature::hazmat::PrehashSigner as _;
                match k.sign_prehash(digest) {
                    Ok::<p256::ecdsa::Signature, _>(sig) => to_array(&sig.normalize_s().to_bytes()),
                    // A 32-byte prehash is always accepted for P-256; fall back to the
                    // message path so this stays total.
                    Err(_) => self.sign(digest),
                }
            }
        }
    }
}

fn to_array(bytes: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    let n = bytes.len().min(64);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k256_sign_verify_round_trip() {
        let sk = SigningKey::generate_from_seed(&[7u8; 32]);
        let pk = sk.public_key();
        let sig = sk.sign(b"hello");
        assert_eq!(pk.verify(b"hello", &sig), Ok(()));
        assert_eq!(pk.verify(b"hellO", &sig), Err(SignatureError::Invalid));
        assert_eq!(PublicKey::from_did_key(&pk.to_did_key()), Ok(pk));
    }

    #[test]
    fn p256_sign_verify_round_trip() {
        let sk = SigningKey::generate_p256_from_seed(&[9u8; 32]);
        let pk = sk.public_key();
        let sig = sk.sign(b"hello");
        assert_eq!(pk.verify(b"hello", &sig), Ok(()));
        let digest: [u8; 32] = Sha256::digest(b"hello").into();
        assert_eq!(sk.sign_digest(&digest), sig, "RFC 6979 is deterministic");
        assert!(pk.to_did_key().starts_with("did:key:zDn"));
        assert_eq!(PublicKey::from_did_key(&pk.to_did_key()), Ok(pk));
    }

    #[test]
    fn signing_is_deterministic_and_low_s() {
        for seed in 0u8..20 {
            for sk in [
                SigningKey::generate_from_seed(&[seed; 32]),
                SigningKey::generate_p256_from_seed(&[seed; 32]),
            ] {
                let a = sk.sign(&[seed]);
                assert_eq!(a, sk.sign(&[seed]));
                // verify() rejects high-S, so passing proves low-S.
                assert_eq!(sk.public_key().verify(&[seed], &a), Ok(()));
            }
        }
    }

    #[test]
    fn high_s_is_typed_on_both_curves() {
        for sk in [
            SigningKey::generate_from_seed(&[1; 32]),
            SigningKey::generate_p256_from_seed(&[1; 32]),
        ] {
            let sig = sk.sign(b"m");
            let high = flip_s(sk.public_key().curve(), &sig);
            assert_eq!(
                sk.public_key().verify(b"m", &high),
                Err(SignatureError::HighS)
            );
        }
    }

    /// s → n - s, turning a low-S signature into its high-S twin.
    fn flip_s(curve: Curve, sig: &[u8; 64]) -> [u8; 64] {
        let n: [u8; 32] = match curve {
            Curve::K256 => {
                hex32("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141")
            }
            Curve::P256 => {
                hex32("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551")
            }
        };
        let mut out = *sig;
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let v = i16::from(n[i]) - i16::from(sig[32 + i]) - borrow;
            borrow = i16::from(v < 0);
            out[32 + i] = (v + 256 * borrow) as u8;
        }
        out
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
        }
        out
    }

    #[test]
    fn length_and_range_errors() {
        let pk = SigningKey::generate_from_seed(&[2; 32]).public_key();
        assert_eq!(pk.verify(b"m", &[0u8; 63]), Err(SignatureError::BadLength));
        assert_eq!(
            pk.verify(b"m", &[0xffu8; 64]),
            Err(SignatureError::Malformed)
        );
        let p = SigningKey::generate_p256_from_seed(&[2; 32]).public_key();
        assert_eq!(p.verify(b"m", &[0u8; 64]), Err(SignatureError::Malformed));
    }

    #[test]
    fn key_parse_errors() {
        assert_eq!(
            PublicKey::from_did_key("did:web:x"),
            Err(KeyError::NotDidKey)
        );
        assert_eq!(
            PublicKey::from_multikey("fabc"),
            Err(KeyError::NotBase58btc)
        );
        assert!(matches!(
            PublicKey::from_multikey("z111"),
            Err(KeyError::UnknownCodec(_))
        ));
        assert!(matches!(
            PublicKey::from_verification_method("JsonWebKey2020", "z"),
            Err(KeyError::UnsupportedMethodType(_))
        ));
    }

    #[test]
    fn legacy_uncompressed_k256() {
        let pk = SigningKey::generate_from_seed(&[3; 32]).public_key();
        let PublicKey::K256(inner) = &pk else {
            panic!("k256")
        };
        let legacy = multibase::encode(multibase::Base::Base58Btc, inner.serialize_uncompressed());
        let parsed =
            PublicKey::from_verification_method("EcdsaSecp256k1VerificationKey2019", &legacy);
        assert_eq!(parsed, Ok(pk.clone()));
        // The same bytes under the P-256 type must not silently become a K-256 key.
        assert!(
            PublicKey::from_verification_method("EcdsaSecp256r1VerificationKey2019", &legacy)
                .is_err()
        );
        // Multikey type requires the codec prefix.
        assert!(PublicKey::from_verification_method("Multikey", &legacy).is_err());
    }
}
