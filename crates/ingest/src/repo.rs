//! Whole-repo sync: fetch `getRepo` from the account's PDS, verify it, and turn it into the
//! store changes that replace what we held. Used by resync (live) and backfill (offline).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use guildhall_proto::car::CarLimits;
use guildhall_proto::syntax::Did;
use guildhall_proto::verify::{self, RepoState};
use guildhall_store::{Change, RecordRow, RejectionRow, RepoRow, RepoStatus};

use crate::identity::Resolver;
use crate::metrics::Metrics;
use crate::plan::{self, GuildhallRecord, IndexChange};
use crate::rows;

/// Why a repo could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The DID did not resolve.
    #[error("resolving: {0}")]
    Resolve(#[from] crate::identity::ResolveError),
    /// The DID document names no PDS.
    #[error("no PDS endpoint in the DID document")]
    NoPds,
    /// The PDS could not be reached or refused.
    #[error("getRepo: {0}")]
    Http(String),
    /// The DID document's PDS endpoint points where we do not fetch (a private address).
    #[error("PDS endpoint refused: {0}")]
    Refused(#[from] crate::net::NetError),
    /// The PDS says the repo is not available (deactivated, taken down, deleted).
    #[error("repo unavailable: {0}")]
    Unavailable(String),
    /// The export is bigger than we accept.
    #[error("repo export over {0} bytes")]
    TooLarge(usize),
    /// The export is older than a rev we already verified for the repo (a lagging or hostile
    /// host): applying it would roll the repo back.
    #[error("export at rev {got} is older than the verified rev {held}")]
    Stale {
        /// The export's rev.
        got: String,
        /// The newest rev we verified.
        held: String,
    },
    /// The export does not verify.
    #[error("verification: {0}")]
    Verify(#[from] verify::VerifyError),
    /// The PDS answered 429 (and did not let up while we waited, if we did): try later, not
    /// before the `Retry-After` it gave, if any.
    #[error("rate limited by the PDS")]
    RateLimited(Option<Duration>),
}

/// A verified repo, ready to replace what we held.
#[derive(Debug)]
pub struct Snapshot {
    /// Its state at export.
    pub state: RepoState,
    /// The store changes: clear the repo's records, write the current ones, set the state.
    pub changes: Vec<Change>,
}

/// Fetches and verifies repos.
#[derive(Clone)]
pub struct RepoFetcher {
    resolver: Arc<Resolver>,
    metrics: Arc<Metrics>,
    max_bytes: usize,
}

/// How often and how long a 429 from a PDS is waited out before giving up.
const MAX_RETRIES: u32 = 8;

impl RepoFetcher {
    /// A fetcher accepting exports up to `max_bytes`.
    pub fn new(resolver: Arc<Resolver>, metrics: Arc<Metrics>, max_bytes: usize) -> Self {
        Self {
            resolver,
            metrics,
            max_bytes,
        }
    }

    /// Downloads the repo's CAR from its PDS. HTTP 429 is backpressure: wait and retry.
    pub async fn download(&self, did: &Did) -> Result<Vec<u8>, FetchError> {
        self.download_with(did, MAX_RETRIES).await
    }

    /// Downloads the repo's CAR, waiting out at most `retries` 429 answers inline; after that
    /// a 429 is [`FetchError::RateLimited`] (the live resync queue passes 0: it schedules the
    /// retry itself instead of holding a slot while it sleeps).
    async fn download_with(&self, did: &Did, retries: u32) -> Result<Vec<u8>, FetchError> {
        let url = self.xrpc_url(did, "com.atproto.sync.getRepo").await?;
        let mut attempt = 0;
        loop {
            let resp = self
                .resolver
                .http()
                .get(&url)
                .query(&[("did", did.as_str())])
                .timeout(Duration::from_secs(120))
                .send()
                .await
                .map_err(|e| FetchError::Http(e.to_string()))?;
            let status = resp.status();
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Duration::from_secs);
                if attempt >= retries {
                    return Err(FetchError::RateLimited(retry_after));
                }
                attempt += 1;
                let wait = retry_after.unwrap_or(Duration::from_millis(500 << attempt.min(6)));
                tracing::info!(%did, ?wait, "PDS rate limit; waiting");
                tokio::time::sleep(wait.min(Duration::from_secs(60))).await;
                continue;
            }
            if status == reqwest::StatusCode::BAD_REQUEST
                || status == reqwest::StatusCode::NOT_FOUND
            {
                let body = resp.text().await.unwrap_or_default();
                return Err(FetchError::Unavailable(body.chars().take(200).collect()));
            }
            if !status.is_success() {
                return Err(FetchError::Http(format!("status {status}")));
            }
            if resp
                .content_length()
                .is_some_and(|n| n > self.max_bytes as u64)
            {
                return Err(FetchError::TooLarge(self.max_bytes));
            }
            let mut body = Vec::new();
            let mut resp = resp;
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| FetchError::Http(e.to_string()))?
            {
                if body.len() + chunk.len() > self.max_bytes {
                    return Err(FetchError::TooLarge(self.max_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            return Ok(body);
        }
    }

    /// The rev of the repo's current commit, from its PDS (`com.atproto.sync.getLatestCommit`).
    pub async fn latest_rev(&self, did: &Did) -> Result<String, FetchError> {
        #[derive(serde::Deserialize)]
        struct Latest {
            rev: String,
        }
        let (status, body) = self
            .small_get(did, "com.atproto.sync.getLatestCommit")
            .await?;
        if !status.is_success() {
            let detail: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            return Err(FetchError::Unavailable(format!(
                "getLatestCommit: status {status}: {detail}"
            )));
        }
        serde_json::from_slice::<Latest>(&body)
            .map(|l| l.rev)
            .map_err(|e| FetchError::Http(format!("getLatestCommit: {e}")))
    }

    /// A small JSON GET of `method` for `did` at its PDS: the status and a capped body.
    async fn small_get(
        &self,
        did: &Did,
        method: &str,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), FetchError> {
        let url = self.xrpc_url(did, method).await?;
        let resp = self
            .resolver
            .http()
            .get(&url)
            .query(&[("did", did.as_str())])
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| FetchError::Http(e.to_string()))?;
        let status = resp.status();
        let body = crate::identity::read_capped(resp, 64 << 10)
            .await
            .map_err(FetchError::Http)?;
        Ok((status, body))
    }

    /// `<the DID's PDS>/xrpc/<method>`.
    async fn xrpc_url(&self, did: &Did, method: &str) -> Result<String, FetchError> {
        let ident = self.resolver.resolve(did).await?;
        let pds = ident.pds.as_deref().ok_or(FetchError::NoPds)?;
        let url = format!("{}/xrpc/{method}", pds.trim_end_matches('/'));
        // The endpoint is whatever the DID's owner wrote: never a way into our own network.
        let parsed = url::Url::parse(&url).map_err(|e| FetchError::Http(format!("{url}: {e}")))?;
        self.resolver.check(&parsed)?;
        Ok(url)
    }

    /// The account's status as its own PDS reports it (`com.atproto.sync.getRepoStatus`):
    /// `(active, status)`. A repo the PDS does not know (`RepoNotFound`) reads as deleted.
    pub async fn repo_status(&self, did: &Did) -> Result<(bool, Option<String>), FetchError> {
        #[derive(serde::Deserialize)]
        struct Status {
            active: bool,
            #[serde(default)]
            status: Option<String>,
        }
        let (status, body) = self
            .small_get(did, "com.atproto.sync.getRepoStatus")
            .await?;
        if status == reqwest::StatusCode::BAD_REQUEST
            && serde_json::from_slice::<serde_json::Value>(&body)
                .is_ok_and(|v| v["error"] == "RepoNotFound")
        {
            return Ok((false, Some("deleted".to_owned())));
        }
        if !status.is_success() {
            return Err(FetchError::Http(format!("getRepoStatus: status {status}")));
        }
        let s: Status = serde_json::from_slice(&body)
            .map_err(|e| FetchError::Http(format!("getRepoStatus: {e}")))?;
        Ok((s.active, s.status))
    }

    /// Fetches, verifies and plans a repo.
    pub async fn fetch(&self, did: &Did) -> Result<Snapshot, FetchError> {
        let car = self.download(did).await?;
        self.snapshot(did, &car).await
    }

    /// Like [`RepoFetcher::fetch`], but a 429 is returned at once as
    /// [`FetchError::RateLimited`] for the caller to schedule.
    pub async fn fetch_once(&self, did: &Did) -> Result<Snapshot, FetchError> {
        let car = self.download_with(did, 0).await?;
        self.snapshot(did, &car).await
    }

    /// Verifies and plans a downloaded repo.
    async fn snapshot(&self, did: &Did, car: &[u8]) -> Result<Snapshot, FetchError> {
        let ident = self.resolver.resolve(did).await?;
        let limits = CarLimits::repo(self.max_bytes);
        let verified = match verify::verify_repo(car, &limits, did, &ident.key, plan::is_ours) {
            Err(verify::VerifyError::Signature(_)) => {
                let fresh = self.resolver.refresh(did).await?;
                verify::verify_repo(car, &limits, did, &fresh.key, plan::is_ours)?
            }
            other => other?,
        };
        let mut changes = vec![Change::DeleteRepoRecords {
            did: did.to_string(),
        }];
        changes.extend(to_store_changes(
            &self.metrics,
            plan::plan_repo(did, &verified.records),
        ));
        changes.push(Change::SetRepo(RepoRow {
            did: did.to_string(),
            rev: Some(verified.state.rev.to_string()),
            data_cid: Some(verified.state.data.to_string()),
            status: RepoStatus::Synced,
        }));
        changes.push(Change::BackfillDone {
            did: did.to_string(),
        });
        Ok(Snapshot {
            state: verified.state,
            changes,
        })
    }
}

/// Maps planned changes onto store changes, counting them.
pub fn to_store_changes(metrics: &Metrics, planned: Vec<IndexChange>) -> Vec<Change> {
    let mut out = Vec::with_capacity(planned.len());
    for change in planned {
        let uri = change.uri();
        match change {
            IndexChange::Upsert {
                did,
                collection,
                rkey,
                cid,
                bytes,
                record,
                json,
            } => {
                metrics.records_indexed.fetch_add(1, Ordering::Relaxed);
                let raw = RecordRow {
                    uri: uri.clone(),
                    did: did.to_string(),
                    collection: collection.to_string(),
                    rkey: rkey.to_string(),
                    cid: cid.to_string(),
                    bytes,
                };
                let row = match *record {
                    GuildhallRecord::Service(s) => rows::service(&raw, &s, &json),
                    GuildhallRecord::Endorsement(e) => rows::endorsement(&raw, &e),
                    GuildhallRecord::Operator(o) => rows::operator(&raw, &o),
                };
                out.push(Change::UpsertRecord(raw, Some(row)));
            }
            IndexChange::Delete { .. } => {
                metrics.records_deleted.fetch_add(1, Ordering::Relaxed);
                out.push(Change::DeleteRecord { uri });
            }
            IndexChange::Reject {
                collection,
                cid,
                reason,
                ..
            } => {
                metrics.records_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%uri, %reason, "record rejected by lexicon");
                out.push(Change::Reject(RejectionRow {
                    uri,
                    cid: Some(cid.to_string()),
                    collection: collection.to_string(),
                    reason: "lexicon".to_owned(),
                    detail: Some(reason),
                }));
            }
        }
    }
    out
}
