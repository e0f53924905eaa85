//! A loopback stand-in for the network around an indexer: a firehose replaying a scripted list
//! of frames, a PLC directory serving DID documents, a handle resolver, and a PDS serving
//! `getRepo` from snapshots the script installs as it goes.
//!
//! The firehose behaves like a PDS's `subscribeRepos`: it honours `cursor` (frames at or below
//! it are not sent again), answers a cursor beyond its newest seq with a `FutureCursor` error
//! frame and closes, and sends one-shot disruptions (garbage, oversized messages) only once,
//! so a consumer that reconnects after them resumes where it was. A script can also wait for
//! the consumer to call `getRepo`, which pins down what a resync sees.
//!
//! Shared by the integration tests and the replay benchmark (`#[path]`-included there).

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use guildhall_proto::crypto::PublicKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response as WsResponse};

/// One step of the firehose script.
#[derive(Debug, Clone)]
pub enum Step {
    /// A sequenced event. Once the current connection has sent it, `export` (if any) is what
    /// `getRepo` serves for that DID: the PDS's state right after this event.
    Event {
        /// The event's seq (frames at or below a subscriber's cursor are skipped).
        seq: i64,
        /// The frame.
        bytes: Vec<u8>,
        /// `(did, CAR)` to serve from `getRepo` from now on.
        export: Option<(String, Vec<u8>)>,
    },
    /// Bytes sent once, to the first subscriber that gets this far (garbage, oversized frames).
    Once(Vec<u8>),
    /// Hold the stream until `getRepo` of `did` has been called `calls` times in all.
    AwaitGetRepo {
        /// The repo.
        did: String,
        /// Cumulative number of calls to wait for.
        calls: u64,
    },
}

#[derive(Default)]
struct Shared {
    docs: Mutex<HashMap<String, serde_json::Value>>,
    handles: Mutex<HashMap<String, String>>,
    /// `(seq, did, CAR)` of every scripted export.
    exports: Mutex<Vec<(i64, String, Vec<u8>)>>,
    /// `(connection number, highest seq it sent)` of the newest connection: what the PDS
    /// "has published", so `getRepo` is never ahead of the stream the consumer follows.
    published: Mutex<(u64, i64)>,
    get_repo_calls: Mutex<HashMap<String, u64>>,
    get_repo_called: Notify,
    script: Mutex<Vec<Step>>,
    fired: Mutex<HashSet<usize>>,
    connections: Mutex<Vec<Option<i64>>>,
    barrier_timeouts: Mutex<u64>,
    /// What `getRepoStatus` answers per DID (absent: `RepoNotFound`).
    repo_status: Mutex<HashMap<String, RepoStatusAnswer>>,
    repo_status_calls: Mutex<u64>,
    /// What `getLatestCommit` answers per DID: the head's rev.
    heads: Mutex<HashMap<String, String>>,
}

/// A scripted `getRepoStatus` answer.
#[derive(Debug, Clone)]
pub enum RepoStatusAnswer {
    /// 200 with `{did, active, status?}`.
    Status {
        active: bool,
        status: Option<String>,
    },
    /// The PDS fails (HTTP 500).
    Fail,
}

/// The running servers. Dropping it stops them.
pub struct Net {
    /// Base URL of the HTTP side (PLC, handle resolver, PDS), with a trailing slash.
    pub http: String,
    /// Base URL of the firehose.
    pub ws: String,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A DID document in the form the reference PLC serves at `GET /<did>`.
pub fn did_document(did: &str, handle: &str, key: &PublicKey, pds: &str) -> serde_json::Value {
    serde_json::json!({
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
        "id": did,
        "alsoKnownAs": [format!("at://{handle}")],
        "verificationMethod": [{
            "id": "#atproto",
            "type": "Multikey",
            "controller": did,
            "publicKeyMultibase": key.to_multikey(),
        }],
        "service": [{
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": pds.trim_end_matches('/'),
        }],
    })
}

impl Net {
    /// Starts the HTTP and firehose listeners on 127.0.0.1, with an empty script.
    pub async fn start() -> std::io::Result<Net> {
        let shared = Arc::new(Shared::default());
        let http_listener = TcpListener::bind("127.0.0.1:0").await?;
        let ws_listener = TcpListener::bind("127.0.0.1:0").await?;
        let http_addr = http_listener.local_addr()?;
        let ws_addr = ws_listener.local_addr()?;

        let app = axum::Router::new()
            .route("/xrpc/com.atproto.sync.getRepo", get(get_repo))
            .route("/xrpc/com.atproto.sync.getRepoStatus", get(get_repo_status))
            .route(
                "/xrpc/com.atproto.sync.getLatestCommit",
                get(get_latest_commit),
            )
            .route(
                "/xrpc/com.atproto.identity.resolveHandle",
                get(resolve_handle),
            )
            .route("/{did}", get(did_doc))
            .with_state(shared.clone());
        let http_task = tokio::spawn(async move {
            let _ = axum::serve(http_listener, app).await;
        });
        let ws_shared = shared.clone();
        let ws_task = tokio::spawn(async move {
            while let Ok((stream, _)) = ws_listener.accept().await {
                tokio::spawn(serve_subscriber(stream, ws_shared.clone()));
            }
        });
        Ok(Net {
            http: format!("http://{http_addr}/"),
            ws: format!("ws://{ws_addr}"),
            shared,
            tasks: vec![http_task, ws_task],
        })
    }

    /// Publishes an account: its DID document at `GET /<did>` and its handle.
    pub fn add_account(&self, did: &str, handle: &str, key: &PublicKey) {
        let doc = did_document(did, handle, key, &self.http);
        if let Ok(mut d) = self.shared.docs.lock() {
            d.insert(did.to_owned(), doc);
        }
        if let Ok(mut h) = self.shared.handles.lock() {
            h.insert(handle.to_owned(), did.to_owned());
        }
    }

    /// Replaces the firehose script (subscribers connecting from now on see it).
    pub fn set_script(&self, script: Vec<Step>) {
        let exports = script
            .iter()
            .filter_map(|st| match st {
                Step::Event {
                    seq,
                    export: Some((did, car)),
                    ..
                } => Some((*seq, did.clone(), car.clone())),
                _ => None,
            })
            .collect();
        if let Ok(mut e) = self.shared.exports.lock() {
            *e = exports;
        }
        if let Ok(mut s) = self.shared.script.lock() {
            *s = script;
        }
    }

    /// `getRepo` calls per DID so far.
    pub fn get_repo_calls(&self) -> HashMap<String, u64> {
        self.shared
            .get_repo_calls
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// The cursor each firehose connection asked for, in connection order.
    pub fn connections(&self) -> Vec<Option<i64>> {
        self.shared
            .connections
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Sets what `getRepoStatus` answers for `did`.
    pub fn set_repo_status(&self, did: &str, answer: RepoStatusAnswer) {
        if let Ok(mut m) = self.shared.repo_status.lock() {
            m.insert(did.to_owned(), answer);
        }
    }

    /// Makes the PDS hold `car` (head `rev`) for `did` whatever the firehose has sent:
    /// `getRepo` serves it and `getLatestCommit` names its rev.
    pub fn set_head(&self, did: &str, rev: &str, car: Vec<u8>) {
        if let Ok(mut e) = self.shared.exports.lock() {
            e.retain(|(_, d, _)| d != did);
            e.push((0, did.to_owned(), car));
        }
        if let Ok(mut h) = self.shared.heads.lock() {
            h.insert(did.to_owned(), rev.to_owned());
        }
    }

    /// `getRepoStatus` calls so far.
    pub fn repo_status_calls(&self) -> u64 {
        self.shared
            .repo_status_calls
            .lock()
            .map(|n| *n)
            .unwrap_or(0)
    }

    /// How many `AwaitGetRepo` steps gave up waiting.
    pub fn barrier_timeouts(&self) -> u64 {
        self.shared.barrier_timeouts.lock().map(|n| *n).unwrap_or(0)
    }
}

async fn did_doc(State(s): State<Arc<Shared>>, Path(did): Path<String>) -> Response {
    let doc = s.docs.lock().ok().and_then(|d| d.get(&did).cloned());
    match doc {
        Some(doc) => axum::Json(doc).into_response(),
        None => (StatusCode::NOT_FOUND, format!("DID not registered: {did}")).into_response(),
    }
}

async fn resolve_handle(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let did = q
        .get("handle")
        .and_then(|h| s.handles.lock().ok().and_then(|m| m.get(h).cloned()));
    match did {
        Some(did) => axum::Json(serde_json::json!({ "did": did })).into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": "HandleNotFound"})),
        )
            .into_response(),
    }
}

async fn get_repo(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(did) = q.get("did") else {
        return (StatusCode::BAD_REQUEST, "did is required").into_response();
    };
    if let Ok(mut calls) = s.get_repo_calls.lock() {
        *calls.entry(did.clone()).or_default() += 1;
    }
    s.get_repo_called.notify_waiters();
    let upto = s.published.lock().map(|p| p.1).unwrap_or(0);
    let car = s.exports.lock().ok().and_then(|e| {
        e.iter()
            .filter(|(seq, d, _)| d == did && *seq <= upto)
            .max_by_key(|(seq, _, _)| *seq)
            .map(|(_, _, car)| car.clone())
    });
    match car {
        Some(car) => ([(header::CONTENT_TYPE, "application/vnd.ipld.car")], car).into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": "RepoNotFound"})),
        )
            .into_response(),
    }
}

async fn get_repo_status(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Ok(mut n) = s.repo_status_calls.lock() {
        *n += 1;
    }
    let answer = q
        .get("did")
        .and_then(|d| s.repo_status.lock().ok()?.get(d).cloned());
    match (answer, q.get("did")) {
        (Some(RepoStatusAnswer::Status { active, status }), Some(did)) => {
            axum::Json(serde_json::json!({ "did": did, "active": active, "status": status }))
                .into_response()
        }
        (Some(RepoStatusAnswer::Fail), _) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "scripted failure").into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": "RepoNotFound"})),
        )
            .into_response(),
    }
}

async fn get_latest_commit(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let rev = q
        .get("did")
        .and_then(|d| s.heads.lock().ok()?.get(d).cloned());
    match rev {
        Some(rev) => {
            axum::Json(serde_json::json!({ "cid": "bafyunused", "rev": rev })).into_response()
        }
        None => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": "RepoNotFound"})),
        )
            .into_response(),
    }
}

/// An error frame: `{op: -1}` then `{error, message}`.
pub fn error_frame(error: &str, message: &str) -> Vec<u8> {
    let mut out =
        guildhall_proto::cbor::encode(&serde_json::json!({ "op": -1 })).unwrap_or_default();
    out.extend(
        guildhall_proto::cbor::encode(&serde_json::json!({ "error": error, "message": message }))
            .unwrap_or_default(),
    );
    out
}

fn cursor_of(uri: &str) -> Option<i64> {
    let query = uri.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("cursor="))
        .and_then(|v| v.parse().ok())
}

async fn serve_subscriber(stream: TcpStream, s: Arc<Shared>) {
    let mut cursor = None;
    let callback = |req: &Request, resp: WsResponse| {
        cursor = cursor_of(&req.uri().to_string());
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    if let Ok(mut c) = s.connections.lock() {
        c.push(cursor);
    }
    let script = s.script.lock().map(|s| s.clone()).unwrap_or_default();
    let newest = script
        .iter()
        .filter_map(|st| match st {
            Step::Event { seq, .. } => Some(*seq),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    if cursor.is_some_and(|c| c > newest) {
        let _ = ws
            .send(Message::Binary(
                error_frame("FutureCursor", "cursor is ahead of the stream").into(),
            ))
            .await;
        let _ = ws.close(None).await;
        return;
    }
    // This connection is now the one the consumer follows; an older one still sending into a
    // closed socket must not move what `getRepo` serves.
    let me = match s.published.lock() {
        Ok(mut p) => {
            *p = (p.0 + 1, cursor.unwrap_or(0));
            p.0
        }
        Err(_) => return,
    };
    let current = || s.published.lock().map(|p| p.0 == me).unwrap_or(false);
    for (i, step) in script.into_iter().enumerate() {
        if !current() {
            return;
        }
        let (bytes, seq) = match step {
            Step::Event { seq, bytes, .. } => {
                if cursor.is_some_and(|c| seq <= c) {
                    continue;
                }
                (bytes, Some(seq))
            }
            Step::Once(bytes) => {
                let first = s.fired.lock().map(|mut f| f.insert(i)).unwrap_or(false);
                if !first {
                    continue;
                }
                (bytes, None)
            }
            Step::AwaitGetRepo { did, calls } => {
                let reached = || {
                    s.get_repo_calls
                        .lock()
                        .map(|m| m.get(&did).copied().unwrap_or(0) >= calls)
                        .unwrap_or(false)
                };
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                while !reached() {
                    let notified = s.get_repo_called.notified();
                    if reached() {
                        break;
                    }
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        if let Ok(mut n) = s.barrier_timeouts.lock() {
                            *n += 1;
                        }
                        break;
                    }
                }
                continue;
            }
        };
        if ws.send(Message::Binary(bytes.into())).await.is_err() {
            return;
        }
        if let Some(seq) = seq
            && let Ok(mut p) = s.published.lock()
            && p.0 == me
        {
            p.1 = seq;
        }
    }
    // Live from here on: nothing more to say; wait for the subscriber to leave.
    while let Some(Ok(_)) = ws.next().await {}
}
