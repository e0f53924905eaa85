//! A tiny XRPC client for tests: the `com.atproto.*` calls our integration
//! tests make against the reference PDS, with HTTP errors kept typed.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde::Deserialize;
use serde_json::{Value, json};

/// An XRPC call that the server answered with an error status. Kept as a
/// type so tests can assert on it (`err.downcast_ref::<XrpcError>()`).
#[derive(Debug, thiserror::Error)]
#[error("{nsid} -> HTTP {status}: {error} {message}")]
pub struct XrpcError {
    pub nsid: String,
    pub status: u16,
    /// The `error` field of the body (e.g. `InvalidRequest`), or empty.
    pub error: String,
    /// The `message` field of the body, or the raw body if it is not JSON.
    pub message: String,
}

/// Result of a single-record write.
#[derive(Debug, Clone, Deserialize)]
pub struct WriteResult {
    pub uri: String,
    pub cid: String,
    /// The repo revision the write created (absent on no-op writes).
    #[serde(default, deserialize_with = "commit_rev")]
    pub commit: Option<String>,
}

/// One record from `listRecords`.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordEntry {
    pub uri: String,
    pub cid: String,
    pub value: Value,
}

impl RecordEntry {
    /// The record key (last path segment of the at:// URI).
    pub fn rkey(&self) -> &str {
        self.uri.rsplit('/').next().unwrap_or_default()
    }
}

/// A session from `createSession`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub did: String,
    pub handle: String,
    pub access_jwt: String,
    pub refresh_jwt: String,
}

/// The result of `applyWrites`.
#[derive(Debug, Clone)]
pub struct ApplyWritesResult {
    /// The revision of the one commit holding all writes.
    pub rev: Option<String>,
    /// Per-write results as the PDS returned them (uri/cid for create and update).
    pub results: Vec<Value>,
}

/// One write of an `applyWrites` batch.
#[derive(Debug, Clone)]
pub enum Write {
    /// `rkey: None` lets the PDS choose a TID.
    Create {
        collection: String,
        rkey: Option<String>,
        value: Value,
    },
    Update {
        collection: String,
        rkey: String,
        value: Value,
    },
    Delete {
        collection: String,
        rkey: String,
    },
}

impl Write {
    fn to_json(&self) -> Value {
        match self {
            Write::Create {
                collection,
                rkey,
                value,
            } => {
                let mut w = json!({"$type": "com.atproto.repo.applyWrites#create", "collection": collection, "value": value});
                if let (Some(rkey), Some(obj)) = (rkey, w.as_object_mut()) {
                    obj.insert("rkey".into(), json!(rkey));
                }
                w
            }
            Write::Update {
                collection,
                rkey,
                value,
            } => {
                json!({"$type": "com.atproto.repo.applyWrites#update", "collection": collection, "rkey": rkey, "value": value})
            }
            Write::Delete { collection, rkey } => {
                json!({"$type": "com.atproto.repo.applyWrites#delete", "collection": collection, "rkey": rkey})
            }
        }
    }
}

fn commit_rev<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct CommitMeta {
        rev: String,
    }
    Ok(Option::<CommitMeta>::deserialize(d)?.map(|c| c.rev))
}

/// XRPC over HTTP to loopback servers. Cheap to clone (shared pool). Every
/// method takes the PDS base URL, so one client serves several PDSes.
#[derive(Debug, Clone)]
pub struct XrpcClient {
    http: reqwest::Client,
}

impl XrpcClient {
    pub fn new() -> Result<Self> {
        let http = reqwest::Client::builder()
            // Loopback only: a proxy from the environment must not get in the way.
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(Self { http })
    }

    async fn finish(nsid: &str, res: reqwest::Response) -> Result<reqwest::Response> {
        let status = res.status();
        if status.is_success() {
            return Ok(res);
        }
        let body = res.text().await.unwrap_or_default();
        let parsed: Option<Value> = serde_json::from_str(&body).ok();
        let field = |k: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Err(XrpcError {
            nsid: nsid.to_owned(),
            status: status.as_u16(),
            error: field("error").unwrap_or_default(),
            message: field("message").unwrap_or(body),
        }
        .into())
    }

    /// POST a procedure with a JSON body; returns the JSON answer (or `{}`).
    pub async fn procedure(
        &self,
        base: &str,
        nsid: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<Value> {
        self.post(base, nsid, token, Some(body)).await
    }

    /// POST with an optional body: procedures without input (activateAccount)
    /// reject even an empty JSON object.
    async fn post(
        &self,
        base: &str,
        nsid: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut req = self.http.post(format!("{base}/xrpc/{nsid}"));
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("{nsid}: request failed"))?;
        let text = Self::finish(nsid, res)
            .await?
            .text()
            .await
            .with_context(|| format!("{nsid}: reading the body"))?;
        if text.trim().is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_str(&text).with_context(|| format!("{nsid}: answer is not JSON: {text}"))
    }

    /// GET a query; returns the raw response for the caller to read.
    async fn query_raw(
        &self,
        base: &str,
        nsid: &str,
        params: &[(&str, &str)],
    ) -> Result<reqwest::Response> {
        let res = self
            .http
            .get(format!("{base}/xrpc/{nsid}"))
            .query(params)
            .send()
            .await
            .with_context(|| format!("{nsid}: request failed"))?;
        Self::finish(nsid, res).await
    }

    /// GET a query returning JSON.
    pub async fn query(&self, base: &str, nsid: &str, params: &[(&str, &str)]) -> Result<Value> {
        self.query_raw(base, nsid, params)
            .await?
            .json()
            .await
            .with_context(|| format!("{nsid}: answer is not JSON"))
    }

    /// GET any URL returning JSON (used for the PLC's plain HTTP API).
    pub async fn get_json(&self, url: &str) -> Result<Value> {
        let res = self
            .http
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = res.status();
        if !status.is_success() {
            let body = res.text().await.unwrap_or_default();
            return Err(anyhow!("GET {url} -> HTTP {status}: {body}"));
        }
        res.json()
            .await
            .with_context(|| format!("GET {url}: not JSON"))
    }

    // ---- com.atproto.server ----

    pub async fn create_session(
        &self,
        base: &str,
        identifier: &str,
        password: &str,
    ) -> Result<Session> {
        let v = self
            .procedure(
                base,
                "com.atproto.server.createSession",
                None,
                &json!({"identifier": identifier, "password": password}),
            )
            .await?;
        serde_json::from_value(v).context("createSession: unexpected answer")
    }

    pub async fn deactivate_account(&self, base: &str, token: &str) -> Result<()> {
        self.procedure(
            base,
            "com.atproto.server.deactivateAccount",
            Some(token),
            &json!({}),
        )
        .await
        .map(drop)
    }

    pub async fn activate_account(&self, base: &str, token: &str) -> Result<()> {
        self.post(
            base,
            "com.atproto.server.activateAccount",
            Some(token),
            None,
        )
        .await
        .map(drop)
    }

    // ---- com.atproto.identity ----

    pub async fn update_handle(&self, base: &str, token: &str, handle: &str) -> Result<()> {
        self.procedure(
            base,
            "com.atproto.identity.updateHandle",
            Some(token),
            &json!({"handle": handle}),
        )
        .await
        .map(drop)
    }

    // ---- com.atproto.repo ----

    /// `rkey: None` lets the PDS choose a TID.
    pub async fn create_record(
        &self,
        base: &str,
        token: &str,
        repo: &str,
        collection: &str,
        rkey: Option<&str>,
        record: &Value,
    ) -> Result<WriteResult> {
        let mut body = json!({"repo": repo, "collection": collection, "record": record});
        if let (Some(rkey), Some(obj)) = (rkey, body.as_object_mut()) {
            obj.insert("rkey".into(), json!(rkey));
        }
        let v = self
            .procedure(base, "com.atproto.repo.createRecord", Some(token), &body)
            .await?;
        serde_json::from_value(v).context("createRecord: unexpected answer")
    }

    pub async fn put_record(
        &self,
        base: &str,
        token: &str,
        repo: &str,
        collection: &str,
        rkey: &str,
        record: &Value,
    ) -> Result<WriteResult> {
        let body = json!({"repo": repo, "collection": collection, "rkey": rkey, "record": record});
        let v = self
            .procedure(base, "com.atproto.repo.putRecord", Some(token), &body)
            .await?;
        serde_json::from_value(v).context("putRecord: unexpected answer")
    }

    /// Returns the revision of the commit (None if there was nothing to delete).
    pub async fn delete_record(
        &self,
        base: &str,
        token: &str,
        repo: &str,
        collection: &str,
        rkey: &str,
    ) -> Result<Option<String>> {
        let body = json!({"repo": repo, "collection": collection, "rkey": rkey});
        let v = self
            .procedure(base, "com.atproto.repo.deleteRecord", Some(token), &body)
            .await?;
        Ok(v.pointer("/commit/rev")
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    pub async fn apply_writes(
        &self,
        base: &str,
        token: &str,
        repo: &str,
        writes: &[Write],
    ) -> Result<ApplyWritesResult> {
        let body =
            json!({"repo": repo, "writes": writes.iter().map(Write::to_json).collect::<Vec<_>>()});
        let v = self
            .procedure(base, "com.atproto.repo.applyWrites", Some(token), &body)
            .await?;
        Ok(ApplyWritesResult {
            rev: v
                .pointer("/commit/rev")
                .and_then(Value::as_str)
                .map(str::to_owned),
            results: v
                .get("results")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// Every record of a collection, following the cursor over all pages.
    pub async fn list_records(
        &self,
        base: &str,
        repo: &str,
        collection: &str,
    ) -> Result<Vec<RecordEntry>> {
        #[derive(Deserialize)]
        struct Page {
            records: Vec<RecordEntry>,
            cursor: Option<String>,
        }
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params = vec![("repo", repo), ("collection", collection), ("limit", "100")];
            if let Some(c) = cursor.as_deref() {
                params.push(("cursor", c));
            }
            let v = self
                .query(base, "com.atproto.repo.listRecords", &params)
                .await?;
            let page: Page = serde_json::from_value(v).context("listRecords: unexpected answer")?;
            let done = page.records.is_empty() || page.cursor.is_none();
            out.extend(page.records);
            if done {
                return Ok(out);
            }
            cursor = page.cursor;
        }
    }

    // ---- com.atproto.sync ----

    /// The whole repo as a CAR file.
    pub async fn get_repo(&self, base: &str, did: &str) -> Result<Vec<u8>> {
        let res = self
            .query_raw(base, "com.atproto.sync.getRepo", &[("did", did)])
            .await?;
        Ok(res
            .bytes()
            .await
            .context("getRepo: reading the CAR")?
            .to_vec())
    }

    /// `(commit CID, rev)` of the repo's latest commit.
    pub async fn get_latest_commit(&self, base: &str, did: &str) -> Result<(String, String)> {
        let v = self
            .query(base, "com.atproto.sync.getLatestCommit", &[("did", did)])
            .await?;
        let field = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("getLatestCommit: no {k} in {v}"))
        };
        Ok((field("cid")?, field("rev")?))
    }
}
