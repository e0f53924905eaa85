//! ATProto service auth, verified: the compact JWT a caller's PDS signs for it
//! (`com.atproto.server.getServiceAuth`), checked against the expected audience and method,
//! the clock and the issuer's key — stricter than the reference verifier: `lxm` and `jti` are
//! required, `iat` may be neither in the future nor too old, signatures must be low-S.
//!
//! Pure: the caller resolves the issuer's key (and refetches it once when the signature fails,
//! for a rotated key) and keeps the [`ReplayCache`]; nothing here does I/O or reads a clock.

use std::collections::{BTreeSet, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::crypto::{Curve, PublicKey};

/// Longest token accepted, in bytes (the reference PDS issues a few hundred).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a token was refused; the names are the XRPC error names clients see (status 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("AuthMissing: no bearer token")]
    AuthMissing,
    /// Not a well-formed token of a supported algorithm.
    #[error("BadJwt: {0}")]
    BadJwt(String),
    /// `exp` is past (beyond the leeway), or `iat` too old.
    #[error("JwtExpired: the token has expired")]
    JwtExpired,
    /// `aud` is not this service.
    #[error("BadJwtAudience: the token is for {0}")]
    BadJwtAudience(String),
    /// `lxm` is missing or names another method.
    #[error("BadJwtLexiconMethod: the token is for {0}")]
    BadJwtLexiconMethod(String),
    /// The signature does not verify against the issuer's key (or is high-S).
    #[error("BadJwtSignature: {0}")]
    BadJwtSignature(String),
    /// The token's `jti` was seen before.
    #[error("JwtReplayed: the token was already used")]
    JwtReplayed,
}

impl AuthError {
    /// The XRPC error name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::AuthMissing => "AuthMissing",
            Self::BadJwt(_) => "BadJwt",
            Self::JwtExpired => "JwtExpired",
            Self::BadJwtAudience(_) => "BadJwtAudience",
            Self::BadJwtLexiconMethod(_) => "BadJwtLexiconMethod",
            Self::BadJwtSignature(_) => "BadJwtSignature",
            Self::JwtReplayed => "JwtReplayed",
        }
    }
}

/// The claims a verified token carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Claims {
    /// The caller's DID (a `#service` fragment, if any, is kept here and dropped by
    /// [`Claims::issuer_did`]).
    pub iss: String,
    /// The service the token is for.
    pub aud: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issue time, Unix seconds.
    #[serde(default)]
    pub iat: Option<i64>,
    /// The XRPC method the token is for.
    #[serde(default)]
    pub lxm: Option<String>,
    /// A nonce, remembered until `exp` so the token is used once.
    #[serde(default)]
    pub jti: Option<String>,
}

impl Claims {
    /// `iss` without a service fragment: whose key signs.
    pub fn issuer_did(&self) -> &str {
        self.iss.split('#').next().unwrap_or(&self.iss)
    }
}

#[derive(serde::Deserialize)]
struct Header {
    alg: String,
}

/// A token split and decoded, not yet trusted.
#[derive(Debug, Clone)]
pub struct Token {
    /// Its claims.
    pub claims: Claims,
    curve: Curve,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

/// What a token must say to be accepted here.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    /// This service's DID.
    pub audience: &'a str,
    /// The method being called.
    pub method: &'a str,
    /// Now, Unix seconds.
    pub now_s: i64,
    /// Clock skew tolerated on `exp` and `iat`, seconds.
    pub leeway_s: i64,
    /// Oldest `iat` accepted, seconds before now (the reference PDS issues for at most 1 h).
    pub max_age_s: i64,
}

/// Splits and decodes a compact JWT (no trust yet).
pub fn parse(token: &str) -> Result<Token, AuthError> {
    let bad = |m: &str| AuthError::BadJwt(m.to_owned());
    if token.len() > MAX_TOKEN_BYTES {
        return Err(bad("token too long"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("not a compact JWT (three dot-separated parts)"));
    };
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| AuthError::BadJwt(format!("{what} is not base64url")))
    };
    let header: Header = serde_json::from_slice(&decode(h, "header")?)
        .map_err(|_| bad("header is not a JSON object with alg"))?;
    let curve = match header.alg.as_str() {
        "ES256K" => Curve::K256,
        "ES256" => Curve::P256,
        other => return Err(AuthError::BadJwt(format!("unsupported alg {other:?}"))),
    };
    let claims: Claims = serde_json::from_slice(&decode(p, "payload")?)
        .map_err(|e| AuthError::BadJwt(format!("claims: {e}")))?;
    Ok(Token {
        claims,
        curve,
        signing_input: format!("{h}.{p}").into_bytes(),
        signature: decode(s, "signature")?,
    })
}

/// Checks everything but the signature and replay: time, audience, method, required claims.
pub fn check_claims(token: &Token, expect: &Expect<'_>) -> Result<(), AuthError> {
    let c = &token.claims;
    if c.exp + expect.leeway_s <= expect.now_s {
        return Err(AuthError::JwtExpired);
    }
    let iat = c
        .iat
        .ok_or_else(|| AuthError::BadJwt("iat is required".to_owned()))?;
    if iat > expect.now_s + expect.leeway_s {
        return Err(AuthError::BadJwt("iat is in the future".to_owned()));
    }
    if iat + expect.max_age_s + expect.leeway_s < expect.now_s {
        return Err(AuthError::JwtExpired);
    }
    if c.aud != expect.audience {
        return Err(AuthError::BadJwtAudience(c.aud.clone()));
    }
    match c.lxm.as_deref() {
        Some(m) if m == expect.method => {}
        Some(m) => return Err(AuthError::BadJwtLexiconMethod(m.to_owned())),
        None => return Err(AuthError::BadJwtLexiconMethod("no method (lxm)".to_owned())),
    }
    if c.jti.as_deref().is_none_or(str::is_empty) {
        return Err(AuthError::BadJwt("jti is required".to_owned()));
    }
    Ok(())
}

/// Checks the signature against the issuer's current `#atproto` key: the curve must match
/// the header's `alg`, and the signature be low-S.
pub fn check_signature(token: &Token, key: &PublicKey) -> Result<(), AuthError> {
    if key.curve() != token.curve {
        return Err(AuthError::BadJwtSignature(
            "alg does not match the issuer's key".to_owned(),
        ));
    }
    key.verify(&token.signing_input, &token.signature)
        .map_err(|e| AuthError::BadJwtSignature(e.to_string()))
}

/// Remembers every accepted `jti` until its token's `exp`, so a token is used once. Bounded:
/// when full, it refuses new tokens rather than forget live ones.
#[derive(Debug)]
pub struct ReplayCache {
    seen: HashMap<String, i64>,
    by_exp: BTreeSet<(i64, String)>,
    capacity: usize,
}

impl ReplayCache {
    /// A cache of at most `capacity` live tokens.
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: HashMap::new(),
            by_exp: BTreeSet::new(),
            capacity,
        }
    }

    /// Records `jti` (of `iss`, valid until `exp`), or refuses it as replayed. Forgets tokens
    /// expired at `now_s` (plus `leeway_s`) first.
    pub fn check_and_insert(
        &mut self,
        iss: &str,
        jti: &str,
        exp: i64,
        now_s: i64,
        leeway_s: i64,
    ) -> Result<(), AuthError> {
        while let Some((e, key)) = self.by_exp.first().cloned() {
            if e + leeway_s > now_s {
                break;
            }
            self.by_exp.remove(&(e, key.clone()));
            self.seen.remove(&key);
        }
        // Per issuer: one caller cannot burn another's nonce.
        let key = format!("{iss} {jti}");
        if self.seen.contains_key(&key) {
            return Err(AuthError::JwtReplayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(AuthError::BadJwt(
                "too many live tokens; retry shortly".to_owned(),
            ));
        }
        self.seen.insert(key.clone(), exp);
        self.by_exp.insert((exp, key));
        Ok(())
    }

    /// Live tokens remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Signs a service-auth token (tests and tools; the PDS does this for real callers).
#[cfg(feature = "forge")]
pub fn sign(key: &crate::crypto::SigningKey, claims: &serde_json::Value) -> String {
    let alg = match key.public_key().curve() {
        Curve::K256 => "ES256K",
        Curve::P256 => "ES256",
    };
    let h = URL_SAFE_NO_PAD.encode(serde_json::json!({"typ": "JWT", "alg": alg}).to_string());
    let p = URL_SAFE_NO_PAD.encode(claims.to_string());
    let sig = key.sign(format!("{h}.{p}").as_bytes());
    format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(sig))
}
