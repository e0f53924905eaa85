//! DID and handle resolution over HTTP, with a bounded TTL cache and coalesced lookups.
//!
//! `did:plc` documents come from a PLC directory, `did:web` from the host's
//! `/.well-known/did.json`. A handle is shown only when it resolves back to the DID (through
//! the configured XRPC handle resolver, or DNS TXT `_atproto.<handle>` then the handle's own
//! `/.well-known/atproto-did`) *and* the DID document claims it. Parsing the documents is the protocol core's job; this module
//! only fetches, caches and rate-limits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use guildhall_proto::crypto::PublicKey;
use guildhall_proto::identity::DidDocument;
use guildhall_proto::syntax::{Did, Handle};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig as DnsConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use tokio::sync::{Mutex, OnceCell};
use url::Url;

use crate::net::{self, FetchPolicy, NetError};

/// How long a successful resolution is trusted (indigo uses a day; `#identity` clears it).
pub const HIT_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a failure is remembered, so a broken DID cannot make us hammer its host.
pub const ERROR_TTL: Duration = Duration::from_secs(120);
/// The least time between two forced refreshes of one DID (after a signature failure).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// What we need to know about an account to verify and show its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The account.
    pub did: Did,
    /// Its current `#atproto` signing key.
    pub key: PublicKey,
    /// Its PDS endpoint, where `getRepo` is served.
    pub pds: Option<String>,
    /// The handle its document claims (not yet checked the other way).
    pub declared_handle: Option<Handle>,
}

/// Why an identity could not be resolved.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// The DID method is not one we resolve.
    #[error("unsupported DID method: {0}")]
    UnsupportedMethod(String),
    /// The directory or host could not be reached, or answered with an error status.
    #[error("fetching {url}: {reason}")]
    Fetch {
        /// What we asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The directory says there is no such DID.
    #[error("{0} not found")]
    NotFound(Did),
    /// The document is not a usable DID document, or names another DID, or has no valid key.
    #[error("bad DID document for {did}: {reason}")]
    BadDocument {
        /// The DID asked for.
        did: Did,
        /// What is wrong with it.
        reason: String,
    },
}

/// A resolution's outcome and when it was fetched.
type Resolved = (Result<Arc<Identity>, ResolveError>, Instant);

struct Entry {
    cell: Arc<OnceCell<Resolved>>,
    created: Instant,
}

/// Where to resolve, and how much to remember.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// The PLC directory (`https://plc.directory`).
    pub plc: Url,
    /// An XRPC service answering `com.atproto.identity.resolveHandle`; when absent, handles are
    /// resolved through DNS (TXT `_atproto.<handle>`), then
    /// `https://<handle>/.well-known/atproto-did`.
    pub handle_resolver: Option<Url>,
    /// The DNS server (ip:port) for handle TXT look-ups; `None`: the system's.
    pub dns: Option<SocketAddr>,
    /// Most identities kept in memory.
    pub capacity: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Whether URLs from DID documents and handles may reach non-public addresses.
    pub policy: FetchPolicy,
}

/// Resolves DIDs to identities, caching and coalescing concurrent lookups of the same DID.
pub struct Resolver {
    /// For URLs other people chose (did:web hosts, PDS endpoints, handle well-knowns).
    http: reqwest::Client,
    /// For URLs the operator configured (PLC directory, handle resolver).
    configured: reqwest::Client,
    /// Built once: building reads the system's DNS configuration. `None` when that failed;
    /// handles are then checked over HTTPS only.
    dns: Option<TokioResolver>,
    config: ResolverConfig,
    cache: Mutex<HashMap<Did, Entry>>,
}

impl Resolver {
    /// A resolver with its own HTTP client.
    pub fn new(config: ResolverConfig) -> Result<Self, ResolveError> {
        let client_error = |e: NetError| ResolveError::Fetch {
            url: String::new(),
            reason: e.to_string(),
        };
        let http = net::document_client(config.timeout, config.policy).map_err(client_error)?;
        let configured = net::configured_client(config.timeout).map_err(client_error)?;
        let dns = match dns_resolver(config.dns, config.timeout) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "no DNS for handle checks; HTTPS well-known only");
                None
            }
        };
        Ok(Self {
            http,
            configured,
            dns,
            config,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The HTTP client for URLs found in documents (a PDS endpoint), shared with the other
    /// edges that fetch them; check each first URL with [`Resolver::check`].
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The HTTP client for URLs the operator configured (a backfill host).
    pub fn configured_http(&self) -> &reqwest::Client {
        &self.configured
    }

    /// Refuses a URL from a document that points at a non-public address (see [`net`]).
    pub fn check(&self, url: &Url) -> Result<(), NetError> {
        net::check_url(url, self.config.policy)
    }

    /// Resolves a DID, from the cache when fresh. Concurrent callers for one DID share one fetch.
    pub async fn resolve(&self, did: &Did) -> Result<Arc<Identity>, ResolveError> {
        let cell = {
            let mut cache = self.cache.lock().await;
            let stale = cache.get(did).is_some_and(|e| match e.cell.get() {
                Some((Ok(_), at)) => at.elapsed() > HIT_TTL,
                Some((Err(_), at)) => at.elapsed() > ERROR_TTL,
                None => false,
            });
            if stale {
                cache.remove(did);
            }
            if !cache.contains_key(did) && cache.len() >= self.config.capacity {
                evict_oldest(&mut cache, self.config.capacity / 8 + 1);
            }
            cache
                .entry(did.clone())
                .or_insert_with(|| Entry {
                    cell: Arc::new(OnceCell::new()),
                    created: Instant::now(),
                })
                .cell
                .clone()
        };
        let (result, _) = cell
            .get_or_init(|| async { (self.fetch(did).await.map(Arc::new), Instant::now()) })
            .await;
        result.clone()
    }

    /// What the cache holds for a DID, without fetching: `None` when it holds nothing fresh
    /// (or a lookup is still running). For callers that must not wait on a DID's host.
    pub async fn cached(&self, did: &Did) -> Option<Result<Arc<Identity>, ResolveError>> {
        let cache = self.cache.lock().await;
        let (result, at) = cache.get(did)?.cell.get()?;
        let ttl = if result.is_ok() { HIT_TTL } else { ERROR_TTL };
        (at.elapsed() <= ttl).then(|| result.clone())
    }

    /// Whether [`Resolver::refresh`] would fetch `did`'s document again now: it was not
    /// fetched within [`REFRESH_INTERVAL`].
    pub async fn refresh_due(&self, did: &Did) -> bool {
        let cache = self.cache.lock().await;
        cache
            .get(did)
            .and_then(|e| e.cell.get())
            .is_none_or(|(_, at)| at.elapsed() >= REFRESH_INTERVAL)
    }

    /// Forgets a DID, so the next lookup fetches it again (on `#identity`).
    pub async fn invalidate(&self, did: &Did) {
        self.cache.lock().await.remove(did);
    }

    /// Re-fetches a DID whose key may have rotated, unless it was fetched within
    /// [`REFRESH_INTERVAL`]; returns the identity either way.
    pub async fn refresh(&self, did: &Did) -> Result<Arc<Identity>, ResolveError> {
        self.refresh_after(did, REFRESH_INTERVAL).await
    }

    /// [`Resolver::refresh`] with another least interval between two fetches of one DID
    /// (service auth keeps its own; tests use zero to see a rotation at once).
    pub async fn refresh_after(
        &self,
        did: &Did,
        interval: Duration,
    ) -> Result<Arc<Identity>, ResolveError> {
        let previous = {
            let mut cache = self.cache.lock().await;
            let recent = cache
                .get(did)
                .and_then(|e| e.cell.get())
                .is_some_and(|(_, at)| at.elapsed() < interval);
            if recent { None } else { cache.remove(did) }
        };
        let fresh = self.resolve(did).await;
        if fresh.is_err()
            && let Some(old) = previous
            && matches!(old.cell.get(), Some((Ok(_), _)))
        {
            // A failed refresh must not replace a good identity with an error for minutes.
            let result = old.cell.get().map(|(r, _)| r.clone());
            self.cache.lock().await.insert(did.clone(), old);
            if let Some(r) = result {
                return r;
            }
        }
        fresh
    }

    async fn fetch(&self, did: &Did) -> Result<Identity, ResolveError> {
        let url = self.document_url(did)?;
        // The PLC directory is configured; a did:web host is whoever minted the DID.
        let http = if did.as_str().starts_with("did:web:") {
            self.check(&url).map_err(|e| ResolveError::Fetch {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
            &self.http
        } else {
            &self.configured
        };
        let resp = http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| fetch_error(&url, &e))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND
            || resp.status() == reqwest::StatusCode::GONE
        {
            return Err(ResolveError::NotFound(did.clone()));
        }
        if !resp.status().is_success() {
            return Err(ResolveError::Fetch {
                url: url.to_string(),
                reason: format!("status {}", resp.status()),
            });
        }
        let body = read_capped(resp, MAX_DOCUMENT_BYTES)
            .await
            .map_err(|reason| ResolveError::Fetch {
                url: url.to_string(),
                reason,
            })?;
        identity_from_document(did, &body)
    }

    fn document_url(&self, did: &Did) -> Result<Url, ResolveError> {
        let s = did.as_str();
        if s.starts_with("did:plc:") {
            // Appended as a path segment: `Url::join("did:plc:…")` would read the DID as an
            // absolute URL of scheme `did`.
            let mut url = self.config.plc.clone();
            url.path_segments_mut()
                .map_err(|()| ResolveError::UnsupportedMethod(format!("{s}: bad PLC URL")))?
                .pop_if_empty()
                .push(s);
            return Ok(url);
        }
        if let Some(host) = s.strip_prefix("did:web:") {
            // did:web allows a port only as `%3A`; plain http only for local development hosts.
            let host = host.replace("%3A", ":");
            if host.contains(':') && !host.starts_with("localhost:") {
                return Err(ResolveError::UnsupportedMethod(s.to_owned()));
            }
            let scheme = if host == "localhost" || host.starts_with("localhost:") {
                "http"
            } else {
                "https"
            };
            return Url::parse(&format!("{scheme}://{host}/.well-known/did.json"))
                .map_err(|e| ResolveError::UnsupportedMethod(format!("{s}: {e}")));
        }
        Err(ResolveError::UnsupportedMethod(s.to_owned()))
    }

    /// Whether `handle` resolves to `did` and `did`'s document claims `handle`: only then may
    /// the handle be shown.
    pub async fn verify_handle(&self, did: &Did, handle: &Handle) -> bool {
        let claimed = match self.resolve(did).await {
            Ok(id) => id.declared_handle.as_ref() == Some(handle),
            Err(_) => false,
        };
        claimed && self.resolve_handle(handle).await.as_ref() == Some(did)
    }

    /// Resolves a handle to a DID, or `None` when it does not resolve.
    pub async fn resolve_handle(&self, handle: &Handle) -> Option<Did> {
        match &self.config.handle_resolver {
            Some(base) => {
                let url = base.join("/xrpc/com.atproto.identity.resolveHandle").ok()?;
                #[derive(serde::Deserialize)]
                struct Out {
                    did: Did,
                }
                let resp = self
                    .configured
                    .get(url)
                    .query(&[("handle", handle.as_str())])
                    .send()
                    .await
                    .ok()?;
                if !resp.status().is_success() {
                    return None;
                }
                let body = read_capped(resp, MAX_DOCUMENT_BYTES).await.ok()?;
                serde_json::from_slice::<Out>(&body).ok().map(|o| o.did)
            }
            None => {
                if let Some(dns) = &self.dns {
                    match dns_txt_did(dns, handle).await {
                        Ok(Some(did)) => return Some(did),
                        Ok(None) => {}
                        Err(e) => tracing::debug!(%handle, error = %e, "handle DNS look-up failed"),
                    }
                }
                let url = Url::parse(&format!(
                    "https://{}/.well-known/atproto-did",
                    handle.as_str()
                ))
                .ok()?;
                if let Err(e) = self.check(&url) {
                    tracing::debug!(%handle, error = %e, "handle check refused");
                    return None;
                }
                let resp = self.http.get(url).send().await.ok()?;
                if !resp.status().is_success() {
                    return None;
                }
                let body = read_capped(resp, MAX_DOCUMENT_BYTES).await.ok()?;
                Did::parse(std::str::from_utf8(&body).ok()?.trim()).ok()
            }
        }
    }
}

/// A DNS resolver asking `server` (ip:port), or the system's configured servers, giving each
/// look-up one attempt of at most `timeout`.
pub fn dns_resolver(
    server: Option<SocketAddr>,
    timeout: Duration,
) -> Result<TokioResolver, String> {
    let mut builder = match server {
        Some(addr) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let server = NameServerConfig::new(addr.ip(), true, vec![udp]);
            hickory_resolver::Resolver::builder_with_config(
                DnsConfig::from_name_servers(vec![server]),
                TokioRuntimeProvider::default(),
            )
        }
        None => {
            TokioResolver::builder_tokio().map_err(|e| format!("no DNS configuration ({e})"))?
        }
    };
    builder.options_mut().timeout = timeout;
    builder.options_mut().attempts = 1;
    builder
        .build()
        .map_err(|e| format!("cannot set up DNS ({e})"))
}

/// The DID in `_atproto.<handle>` TXT (`did=…`); `None` when there is no such record.
/// Several different DIDs are an error: none of them can be trusted.
pub async fn dns_txt_did(resolver: &TokioResolver, handle: &Handle) -> Result<Option<Did>, String> {
    let lookup = match resolver
        .txt_lookup(format!("_atproto.{}.", handle.as_str()))
        .await
    {
        Ok(l) => l,
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Ok(None),
        Err(e) => return Err(format!("DNS look-up failed ({e})")),
    };
    let mut dids = Vec::new();
    for record in lookup.answers() {
        if let RData::TXT(txt) = &record.data {
            let text: String = txt
                .txt_data
                .iter()
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect();
            if let Some(did) = text.trim().strip_prefix("did=") {
                dids.push(did.to_owned());
            }
        }
    }
    dids.sort();
    dids.dedup();
    match dids.as_slice() {
        [] => Ok(None),
        [one] => Did::parse(one)
            .map(Some)
            .map_err(|e| format!("DNS names an invalid DID {one:?} ({e})")),
        _ => Err(format!(
            "DNS has {} different _atproto DIDs, so none can be trusted",
            dids.len()
        )),
    }
}

/// Largest DID document or handle answer we read: real ones are a few KB.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Reads a response body, refusing to hold more than `cap` bytes of it.
pub async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(format!("response over {cap} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > cap {
            return Err(format!("response over {cap} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn fetch_error(url: &Url, e: &reqwest::Error) -> ResolveError {
    ResolveError::Fetch {
        url: url.to_string(),
        reason: e.to_string(),
    }
}

fn evict_oldest(cache: &mut HashMap<Did, Entry>, n: usize) {
    let mut by_age: Vec<(Instant, Did)> = cache
        .iter()
        .map(|(did, e)| (e.created, did.clone()))
        .collect();
    by_age.sort();
    for (_, did) in by_age.into_iter().take(n) {
        cache.remove(&did);
    }
}

/// Reads a DID document (JSON bytes) into an [`Identity`], checking it is for `did`.
pub fn identity_from_document(did: &Did, body: &[u8]) -> Result<Identity, ResolveError> {
    let bad = |reason: String| ResolveError::BadDocument {
        did: did.clone(),
        reason,
    };
    let doc: DidDocument = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if &doc.id != did {
        return Err(bad(format!("document is for {}", doc.id)));
    }
    let key = doc.atproto_key().map_err(|e| bad(e.to_string()))?;
    Ok(Identity {
        did: did.clone(),
        key,
        pds: doc.pds_endpoint().map(str::to_owned),
        declared_handle: doc.handle(),
    })
}
