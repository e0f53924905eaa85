//! ATProto service auth at the edge: the [`Caller`] extractor every authenticated XRPC method
//! takes, and the [`ServiceAuth`] verifier behind it (shared in the app state).
//!
//! A caller asks its own PDS for a token (`com.atproto.server.getServiceAuth?aud=<this
//! AppView's DID>&lxm=<method>`) and sends it as `Authorization: Bearer`. The pure checks are
//! `guildhall_proto::service_auth`'s; this module adds what needs I/O and state: the issuer's
//! current `#atproto` key from the shared [`Resolver`] (cached; on a signature failure its
//! document is fetched once more, for a rotated key, at most once per
//! [`AuthConfig::key_refresh_interval`]), the clock, and the bounded replay cache.
//!
//! Invariant: a request reaches an authenticated handler only with a token whose signature
//! verified against its issuer's key, for this AppView's DID and for exactly the method the
//! request's path names, spent once.
//! Invariant: every refusal is a 401 with the XRPC error name of its cause; an issuer that does
//! not resolve is a 401 `BadJwt` (counted and logged), never a 500.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use guildhall_ingest::identity::{ResolveError, Resolver};
use guildhall_proto::service_auth::{self, AuthError, Expect, ReplayCache};
use guildhall_proto::syntax::Did;

use crate::AppState;
use crate::error::XrpcError;
use crate::http_metrics::HttpMetrics;

/// How tokens are judged.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Clock skew tolerated on `exp` and `iat`.
    pub leeway: Duration,
    /// Oldest `iat` accepted. A PDS issues tokens for 60 s by default; a caller fetches one
    /// per call, so minutes are plenty, and the replay cache need remember no token longer.
    pub max_age: Duration,
    /// Most live tokens remembered for replay checks; past it new tokens wait (401 `BadJwt`,
    /// "retry shortly") rather than live ones being forgotten.
    pub replay_capacity: usize,
    /// Least time between two fetches of one issuer's DID document forced by signature
    /// failures, so forged tokens cannot make us hammer a PLC directory or did:web host.
    pub key_refresh_interval: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            leeway: Duration::from_secs(10),
            max_age: Duration::from_secs(300),
            replay_capacity: 100_000,
            key_refresh_interval: guildhall_ingest::identity::REFRESH_INTERVAL,
        }
    }
}

/// Why a request was not authenticated: one enum for this boundary, answered as 401 XRPC
/// errors by [`From<AuthFailure> for XrpcError`].
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    /// The token itself failed a check (the proto module's error, with its XRPC name).
    #[error(transparent)]
    Token(#[from] AuthError),
    /// The issuer's DID document could not be had, so there is no key to check against.
    #[error("cannot resolve the token's issuer {did}: {reason}")]
    Issuer {
        /// The `iss` DID.
        did: String,
        /// Why (not found, unreachable, a bad document).
        reason: String,
    },
    /// This AppView has no DID (`--hostname`), so no token can be addressed to it.
    #[error("this AppView has no DID (serve --hostname), so it accepts no service auth")]
    NoAudience,
}

impl AuthFailure {
    /// The XRPC error name clients see.
    pub fn name(&self) -> &'static str {
        match self {
            AuthFailure::Token(e) => e.name(),
            AuthFailure::Issuer { .. } => "BadJwt",
            AuthFailure::NoAudience => "MethodNotImplemented",
        }
    }

    /// The label it is counted under: its name, but an issuer that does not resolve apart
    /// (an operator watching for a PLC outage needs to tell it from bad tokens).
    pub fn metric_reason(&self) -> &'static str {
        match self {
            AuthFailure::Issuer { .. } => "IssuerUnresolved",
            other => other.name(),
        }
    }
}

impl From<AuthFailure> for XrpcError {
    fn from(e: AuthFailure) -> Self {
        match e {
            AuthFailure::NoAudience => XrpcError::NotImplemented(e.to_string()),
            other => {
                let name = other.name();
                // AuthError's Display starts with its name; clients get it once, as `error`.
                let text = other.to_string();
                let message = text
                    .strip_prefix(name)
                    .and_then(|t| t.strip_prefix(": "))
                    .unwrap_or(&text)
                    .to_owned();
                XrpcError::Unauthorized {
                    error: name,
                    message,
                }
            }
        }
    }
}

/// The verifier: this AppView's DID, the resolver for issuers' keys, the replay cache.
pub struct ServiceAuth {
    audience: String,
    resolver: Arc<Resolver>,
    config: AuthConfig,
    replay: Mutex<ReplayCache>,
}

impl std::fmt::Debug for ServiceAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAuth")
            .field("audience", &self.audience)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A verified caller: the token's issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who called (`iss` without a service fragment).
    pub did: Did,
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl ServiceAuth {
    /// A verifier for tokens addressed to `audience` (this AppView's DID), resolving issuers
    /// through `resolver` (share the ingestion's: one cache, the same SSRF-guarded clients).
    pub fn new(audience: String, resolver: Arc<Resolver>, config: AuthConfig) -> Self {
        Self {
            audience,
            resolver,
            replay: Mutex::new(ReplayCache::new(config.replay_capacity)),
            config,
        }
    }

    /// The resolver issuers' keys come from (also used to check a transfer's recipient).
    pub fn resolver(&self) -> &Arc<Resolver> {
        &self.resolver
    }

    /// The DID tokens must be addressed to.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Verifies the `Authorization` header of a call to `method`.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        method: &str,
    ) -> Result<Caller, AuthFailure> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::AuthMissing)?;
        let now = now_s();
        let leeway = secs(self.config.leeway);
        let max_age = secs(self.config.max_age);
        let parsed = service_auth::parse(token)?;
        service_auth::check_claims(
            &parsed,
            &Expect {
                audience: &self.audience,
                method,
                now_s: now,
                leeway_s: leeway,
                max_age_s: max_age,
            },
        )?;
        let issuer = parsed.claims.issuer_did();
        let did = Did::parse(issuer)
            .map_err(|e| AuthError::BadJwt(format!("iss {issuer:?} is not a DID ({e})")))?;
        let identity = self
            .resolver
            .resolve(&did)
            .await
            .map_err(|e| issuer_failure(&did, &e))?;
        if let Err(first) = service_auth::check_signature(&parsed, &identity.key) {
            // Perhaps the key rotated since we cached the document: fetch it once more (rate
            // limited per DID) and try the new key, if it is new.
            let fresh = self
                .resolver
                .refresh_after(&did, self.config.key_refresh_interval)
                .await
                .map_err(|e| issuer_failure(&did, &e))?;
            if fresh.key == identity.key {
                return Err(first.into());
            }
            service_auth::check_signature(&parsed, &fresh.key)?;
        }
        let jti = parsed.claims.jti.as_deref().unwrap_or_default();
        // Remembered no longer than the token could be accepted: a self-signed token with an
        // `exp` centuries away must not hold a place in the cache for centuries.
        let iat = parsed.claims.iat.unwrap_or(now);
        let until = parsed
            .claims
            .exp
            .min(iat.saturating_add(max_age).saturating_add(leeway));
        self.replay
            .lock()
            .map_err(|_| AuthError::BadJwt("replay cache unavailable".to_owned()))?
            .check_and_insert(&parsed.claims.iss, jti, until, now, leeway)?;
        Ok(Caller { did })
    }
}

fn issuer_failure(did: &Did, e: &ResolveError) -> AuthFailure {
    let reason = match e {
        ResolveError::NotFound(_) => "no such DID".to_owned(),
        other => other.to_string(),
    };
    tracing::warn!(did = %did.as_str(), %reason, "service auth: the token's issuer does not resolve");
    AuthFailure::Issuer {
        did: did.as_str().to_owned(),
        reason,
    }
}

/// The method a request calls: the NSID of its `/xrpc/<nsid>` path. Routes are exact, so a
/// handler's path is its method, and a token minted for another method never matches.
fn method_of(parts: &Parts) -> &str {
    parts.uri.path().strip_prefix("/xrpc/").unwrap_or("")
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = XrpcError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, XrpcError> {
        let metrics: &HttpMetrics = &state.inner.http;
        let Some(auth) = state.auth.as_deref() else {
            return Err(AuthFailure::NoAudience.into());
        };
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        match auth.verify(header, method_of(parts)).await {
            Ok(c) => Ok(c),
            Err(e) => {
                metrics.auth_failure(e.metric_reason());
                tracing::debug!(error = %e, "service auth refused");
                Err(e.into())
            }
        }
    }
}
