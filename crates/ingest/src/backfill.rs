//! Backfill: enumerate a host's repos, fetch each one's `getRepo`, verify it, index it.
//!
//! Resumable (repos already backfilled are skipped), bounded in concurrency, and polite: a 429
//! from a host is waited out (see [`crate::repo`]), never counted as a failure.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use guildhall_proto::syntax::Did;
use guildhall_store::{Batch, Change, OperatorStatus};
use serde::Deserialize;
use url::Url;

use crate::IngestError;
use crate::indexer::{Context, identity_change};
use crate::plan::PREFIX;

/// What a backfill run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Repos listed by the host.
    pub listed: u64,
    /// Repos fetched, verified and indexed in this run.
    pub indexed: u64,
    /// Repos skipped because an earlier run finished them.
    pub skipped: u64,
    /// Repos whose fetch or verification failed (logged; a later run retries them).
    pub failed: u64,
    /// Repos the host reports inactive.
    pub inactive: u64,
}

#[derive(Deserialize)]
struct ListRepos {
    #[serde(default)]
    cursor: Option<String>,
    repos: Vec<ListedRepo>,
}

#[derive(Deserialize)]
struct ListedRepo {
    did: String,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    status: Option<String>,
}

fn yes() -> bool {
    true
}

/// One listed repo.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The account.
    pub did: Did,
    /// Whether the host serves it.
    pub active: bool,
    /// Why not, when inactive.
    pub status: Option<String>,
}

/// Lists the repos to backfill from `host`: a relay's `listReposByCollection` for each of our
/// collections when it has it, else every repo from `listRepos` (a PDS).
pub async fn list_repos(http: &reqwest::Client, host: &Url) -> Result<Vec<Listed>, IngestError> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut by_collection = true;
    for collection in [
        "dev.guildhall.service",
        "dev.guildhall.endorsement",
        "dev.guildhall.operator",
    ] {
        match page_all(
            http,
            host,
            "com.atproto.sync.listReposByCollection",
            Some(collection),
        )
        .await
        {
            Ok(repos) => {
                for r in repos {
                    if seen.insert(r.did.clone()) {
                        out.push(r);
                    }
                }
            }
            // Only a host without the method falls back to listing every repo; any other
            // failure must not turn into fetching the whole network.
            Err(ListError::Unsupported) => {
                by_collection = false;
                break;
            }
            Err(ListError::Failed(e)) => return Err(e),
        }
    }
    if by_collection {
        return Ok(out);
    }
    page_all(http, host, "com.atproto.sync.listRepos", None)
        .await
        .map_err(|e| match e {
            ListError::Unsupported => IngestError::List("listRepos is not supported".to_owned()),
            ListError::Failed(e) => e,
        })
}

/// Whether a 400 answer means "this host has no such method". The reference PDS proxies
/// methods it does not serve to an AppView and, with none configured, answers
/// `InvalidRequest: No service configured for <nsid>` (seen on `listReposByCollection`).
fn unsupported_method(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    text.contains("MethodNotImplemented") || text.contains("No service configured for")
}

enum ListError {
    /// The host does not implement the method (404, 501, MethodNotImplemented).
    Unsupported,
    /// Anything else.
    Failed(IngestError),
}

async fn page_all(
    http: &reqwest::Client,
    host: &Url,
    method: &str,
    collection: Option<&str>,
) -> Result<Vec<Listed>, ListError> {
    let fail = |e: String| ListError::Failed(IngestError::List(e));
    let url = host
        .join(&format!("/xrpc/{method}"))
        .map_err(|e| fail(e.to_string()))?;
    let mut cursor: Option<String> = None;
    let mut out = Vec::new();
    loop {
        let mut q: Vec<(&str, String)> = vec![("limit", "1000".to_owned())];
        if let Some(c) = collection {
            q.push(("collection", c.to_owned()));
        }
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let resp = http
            .get(url.clone())
            .query(&q)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        }
        let body = crate::identity::read_capped(resp, 16 * 1024 * 1024)
            .await
            .map_err(fail)?;
        if status == reqwest::StatusCode::NOT_FOUND
            || status == reqwest::StatusCode::NOT_IMPLEMENTED
            || (status == reqwest::StatusCode::BAD_REQUEST && unsupported_method(&body))
        {
            return Err(ListError::Unsupported);
        }
        if !status.is_success() {
            return Err(fail(format!("{method}: status {status}")));
        }
        let page: ListRepos = serde_json::from_slice(&body).map_err(|e| fail(e.to_string()))?;
        let n = page.repos.len();
        for r in page.repos {
            match Did::parse(&r.did) {
                Ok(did) => out.push(Listed {
                    did,
                    active: r.active,
                    status: r.status,
                }),
                Err(e) => tracing::warn!(did = %r.did, error = %e, "host listed an invalid DID"),
            }
        }
        match page.cursor {
            Some(c) if n > 0 && Some(&c) != cursor.as_ref() => cursor = Some(c),
            _ => return Ok(out),
        }
    }
}

/// Backfills every repo `host` lists, `concurrency` at a time.
pub async fn run(ctx: Arc<Context>, host: &Url, concurrency: usize) -> Result<Report, IngestError> {
    let listed = list_repos(ctx.resolver.configured_http(), host).await?;
    let total = listed.len() as u64;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} repos {msg}",
        ) {
            b.set_style(style);
        }
        b
    });
    let done = AtomicU64::new(0);
    let indexed = AtomicU64::new(0);
    let skipped = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let inactive = AtomicU64::new(0);
    let results = futures_util::stream::iter(listed)
        .map(|repo| {
            let ctx = ctx.clone();
            let (done, indexed, skipped, failed, inactive, bar) =
                (&done, &indexed, &skipped, &failed, &inactive, &bar);
            async move {
                let r = one(&ctx, &repo).await;
                match &r {
                    Ok(Outcome::Indexed) => indexed.fetch_add(1, Ordering::Relaxed),
                    Ok(Outcome::Skipped) => skipped.fetch_add(1, Ordering::Relaxed),
                    Ok(Outcome::Inactive) => inactive.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                match bar {
                    Some(b) => b.set_position(n),
                    None if n % 100 == 0 || n == total => {
                        tracing::info!(done = n, total, "backfill progress");
                    }
                    None => {}
                }
                r
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    if let Some(b) = &bar {
        b.finish();
    }
    // A store failure is fatal (the run can be resumed); per-repo fetch failures are not.
    for r in results {
        if let Err(Some(Fatal(e))) = r {
            return Err(e);
        }
    }
    Ok(Report {
        listed: total,
        indexed: indexed.into_inner(),
        skipped: skipped.into_inner(),
        failed: failed.into_inner(),
        inactive: inactive.into_inner(),
    })
}

enum Outcome {
    Indexed,
    Skipped,
    Inactive,
}

struct Fatal(IngestError);

async fn one(ctx: &Context, repo: &Listed) -> Result<Outcome, Option<Fatal>> {
    let store_err = |e: guildhall_store::StoreError| Some(Fatal(IngestError::Store(e)));
    if ctx
        .store
        .backfill_done(repo.did.as_str())
        .await
        .map_err(store_err)?
    {
        return Ok(Outcome::Skipped);
    }
    if !repo.active {
        let status = repo
            .status
            .as_deref()
            .and_then(OperatorStatus::parse)
            .unwrap_or(OperatorStatus::Deactivated);
        // Only remember the status of accounts we already know: others are not ours.
        if ctx
            .store
            .operator_status(repo.did.as_str())
            .await
            .map_err(store_err)?
            .is_some()
        {
            let batch = Batch {
                cursors: Vec::new(),
                changes: vec![Change::Account {
                    did: repo.did.to_string(),
                    status,
                }],
            };
            ctx.store.apply(&batch).await.map_err(store_err)?;
        }
        return Ok(Outcome::Inactive);
    }
    let snapshot = match ctx.fetcher.fetch(&repo.did).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(did = %repo.did, error = %e, "backfill of repo failed");
            return Err(None);
        }
    };
    let held = ctx.store.repo(repo.did.as_str()).await.map_err(store_err)?;
    // A running indexer may have synced this repo past our snapshot meanwhile: never go back.
    if let Some(rev) = held.as_ref().and_then(|r| r.rev.as_deref())
        && rev >= snapshot.state.rev.as_str()
    {
        return Ok(Outcome::Skipped);
    }
    let ours = snapshot.changes.iter().any(|c| {
        matches!(c, Change::UpsertRecord(r, _) if r.collection.starts_with(PREFIX))
            || matches!(c, Change::Reject(_))
    });
    let mut changes = snapshot.changes;
    if ours {
        changes.extend(identity_change(&ctx.resolver, &repo.did).await);
    } else if held.is_none() {
        // Not an operator, and never was: remember only that it was looked at.
        changes.retain(|c| matches!(c, Change::BackfillDone { .. }));
    }
    let applied = ctx
        .store
        .apply(&Batch {
            cursors: Vec::new(),
            changes,
        })
        .await
        .map_err(store_err)?;
    // The check above is only a shortcut: the store compares the rev again inside its
    // transaction, which is what stops a `serve` that moved on in between.
    if applied.refused > 0 {
        return Ok(Outcome::Skipped);
    }
    Ok(Outcome::Indexed)
}
