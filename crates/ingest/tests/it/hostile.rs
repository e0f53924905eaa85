//! One hostile PDS beside the reference one: it hangs `getRepo`, `getRepoStatus` and
//! `getLatestCommit`, sends forged frames, an `#account` it cannot vouch for and commits that
//! skip ahead. Writes to the reference PDS must stay indexed within a second (p99)
//! throughout, and the hostile repo must catch up once its host answers again.
//!
//! The hostile account is a real did:plc in the reference PLC (registered by
//! `tests/peer/register-did.mjs`) whose document names a key of ours and this test's server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use guildhall_ingest::indexer::{self, Context, IndexerConfig};
use guildhall_ingest::resync::ResyncConfig;
use guildhall_ingest::schedule::Limits;
use guildhall_proto::crypto::SigningKey;
use guildhall_proto::forge::{ForgeRepo, Forged, Write, frame_of};
use guildhall_proto::syntax::Did;
use guildhall_store::{RepoStatus, Store};
use guildhall_testkit::{Peer, PeerOptions};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, broadcast, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use crate::forged::service;
use crate::harness::{self, both};

both!(a_hostile_pds_stalls_nobody);

const WRITES: usize = 120;

/// The hostile server's state.
struct Hostile {
    /// While true, every XRPC call hangs (until it is set false).
    hang: watch::Sender<bool>,
    /// What `getRepo` serves once it answers.
    export: Mutex<Vec<u8>>,
    /// The head rev, for `getLatestCommit`.
    head: Mutex<String>,
    /// Every frame sent so far, in order; subscribers get the backlog, then live frames.
    backlog: Mutex<Vec<Vec<u8>>>,
    sent: broadcast::Sender<()>,
    get_repo_calls: AtomicU64,
    status_calls: AtomicU64,
}

struct HostileServer {
    http: String,
    ws: String,
    state: Arc<Hostile>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl HostileServer {
    /// The HTTP side (the PDS endpoint in the DID document) and the firehose listen on
    /// different ports, so the firehose is not the account's host and its `#account` must be
    /// confirmed with `getRepoStatus`.
    async fn start() -> HostileServer {
        let state = Arc::new(Hostile {
            hang: watch::channel(false).0,
            export: Mutex::new(Vec::new()),
            head: Mutex::new(String::new()),
            backlog: Mutex::new(Vec::new()),
            sent: broadcast::channel(1024).0,
            get_repo_calls: AtomicU64::new(0),
            status_calls: AtomicU64::new(0),
        });
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let ws = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (http_addr, ws_addr) = (
            http.local_addr().expect("addr"),
            ws.local_addr().expect("addr"),
        );
        let app = axum::Router::new()
            .route("/xrpc/com.atproto.sync.getRepo", get(get_repo))
            .route("/xrpc/com.atproto.sync.getRepoStatus", get(get_repo_status))
            .route(
                "/xrpc/com.atproto.sync.getLatestCommit",
                get(get_latest_commit),
            )
            .with_state(state.clone());
        let http_task = tokio::spawn(async move {
            let _ = axum::serve(http, app).await;
        });
        let ws_state = state.clone();
        let ws_task = tokio::spawn(async move {
            while let Ok((stream, _)) = ws.accept().await {
                tokio::spawn(subscriber(stream, ws_state.clone()));
            }
        });
        HostileServer {
            http: format!("http://{http_addr}"),
            ws: format!("ws://{ws_addr}"),
            state,
            tasks: vec![http_task, ws_task],
        }
    }

    async fn send(&self, frame: Vec<u8>) {
        self.state.backlog.lock().await.push(frame);
        let _ = self.state.sent.send(());
    }

    fn hang(&self, on: bool) {
        self.state.hang.send_replace(on);
    }
}

/// Waits while the server is told to hang: a host that accepts and never answers.
async fn maybe_hang(s: &Hostile) {
    let mut rx = s.hang.subscribe();
    let _ = rx.wait_for(|h| !*h).await;
}

async fn get_repo(State(s): State<Arc<Hostile>>) -> Response {
    s.get_repo_calls.fetch_add(1, Ordering::Relaxed);
    maybe_hang(&s).await;
    let car = s.export.lock().await.clone();
    ([(header::CONTENT_TYPE, "application/vnd.ipld.car")], car).into_response()
}

async fn get_repo_status(
    State(s): State<Arc<Hostile>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    s.status_calls.fetch_add(1, Ordering::Relaxed);
    maybe_hang(&s).await;
    let did = q.get("did").cloned().unwrap_or_default();
    axum::Json(serde_json::json!({"did": did, "active": true})).into_response()
}

async fn get_latest_commit(State(s): State<Arc<Hostile>>) -> Response {
    maybe_hang(&s).await;
    let rev = s.head.lock().await.clone();
    if rev.is_empty() {
        return (StatusCode::BAD_REQUEST, "RepoNotFound").into_response();
    }
    axum::Json(serde_json::json!({"cid": "bafyunused", "rev": rev})).into_response()
}

async fn subscriber(stream: tokio::net::TcpStream, s: Arc<Hostile>) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let mut sent = s.sent.subscribe();
    let mut next = 0;
    loop {
        let frames: Vec<Vec<u8>> = s.backlog.lock().await[next..].to_vec();
        for f in frames {
            next += 1;
            if ws.send(Message::Binary(f.into())).await.is_err() {
                return;
            }
        }
        tokio::select! {
            r = sent.recv() => if matches!(r, Err(broadcast::error::RecvError::Closed)) { return },
            m = ws.next() => if !matches!(m, Some(Ok(_))) { return },
        }
    }
}

/// The hostile account: a repo we sign, and the writes of every commit for forging replicas.
struct HostileRepo {
    did: Did,
    repo: ForgeRepo,
    history: Vec<Vec<Write>>,
    seq: i64,
    paths: Vec<String>,
}

impl HostileRepo {
    fn frame(&mut self, mut f: Forged) -> Vec<u8> {
        self.seq += 1;
        f.wire.seq = self.seq;
        f.wire.frame()
    }

    /// A real commit; the server's `getRepo` serves the repo after it.
    async fn commit(&mut self, server: &HostileServer, slug: &str) -> Vec<u8> {
        let writes = vec![service(slug, "Hostile", &["sms.send"])];
        self.paths.push(format!("dev.guildhall.service/{slug}"));
        let f = self.repo.commit(&writes).expect("commit");
        self.history.push(writes);
        *server.state.export.lock().await = self.repo.export_car().expect("export");
        *server.state.head.lock().await = f.wire.rev.clone();
        self.frame(f)
    }

    /// A commit that fits the chain exactly but is signed by another key: a forgery.
    fn forged(&mut self, slug: &str) -> Vec<u8> {
        let mut replica = ForgeRepo::new(
            self.did.clone(),
            SigningKey::generate_from_seed(&[0xee; 32]),
        );
        for w in &self.history {
            replica.commit(w).expect("replay");
        }
        let f = replica
            .commit(&[service(slug, "Forged", &["sms.send"])])
            .expect("forge");
        self.frame(f)
    }

    fn account_frame(&mut self, active: bool, status: &str) -> Vec<u8> {
        self.seq += 1;
        frame_of(
            "#account",
            &serde_json::json!({
                "seq": self.seq,
                "did": self.did.as_str(),
                "time": "2026-12-04T00:00:00.000Z",
                "active": active,
                "status": status,
            }),
        )
    }
}

fn context(store: Store, peer: &Peer) -> Arc<Context> {
    harness::context(
        store,
        harness::resolver(&peer.info().plc_url, Some(&peer.pds().url), true),
    )
}

/// Short bounds, so a hung host is given up on within seconds and retried soon after.
pub fn resync_config() -> ResyncConfig {
    ResyncConfig {
        limits: Limits {
            global: 8,
            per_host: 2,
            per_did_interval: Duration::from_millis(300),
            backoff_base: Duration::from_millis(300),
            backoff_max: Duration::from_secs(3),
            max_attempts: 3,
            breaker_threshold: 2,
            breaker_cooldown: Duration::from_millis(500),
        },
        task_timeout: Duration::from_secs(2),
        identity_timeout: Duration::from_secs(2),
        sweep_interval: Duration::from_secs(2),
        ..ResyncConfig::default()
    }
}

pub async fn eventually<F, Fut>(what: &str, limit: Duration, ctx: &Context, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} within {limit:?}; metrics:\n{}",
            ctx.metrics.render()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let i = (sorted.len() * p).div_ceil(100).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn a_hostile_pds_stalls_nobody(store: Store) {
    let peer = Peer::start(PeerOptions {
        accounts: 1,
        ..PeerOptions::default()
    })
    .await
    .expect("reference peer");
    let server = HostileServer::start().await;
    let key = SigningKey::generate_from_seed(&[0x51; 32]);
    let registered = peer
        .run_script(
            "register-did.mjs",
            &[
                "--signing-key",
                &key.public_key().to_did_key(),
                "--handle",
                "hostile.test",
                "--pds",
                &server.http,
            ],
        )
        .await
        .expect("register the hostile DID in the reference PLC");
    let did = Did::parse(registered["did"].as_str().expect("did")).expect("valid did");
    let mut hostile = HostileRepo {
        did: did.clone(),
        repo: ForgeRepo::new(did.clone(), key),
        history: Vec::new(),
        seq: 0,
        paths: Vec::new(),
    };

    let ctx = context(store.clone(), &peer);
    let config = IndexerConfig {
        sources: vec![
            Url::parse(&peer.pds().firehose_url).expect("firehose url"),
            Url::parse(&server.ws).expect("ws url"),
        ],
        batch_delay: Duration::from_millis(5),
        resync: resync_config(),
        ..IndexerConfig::default()
    };
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(indexer::run(ctx.clone(), config, shutdown));

    // While the host behaves, the hostile repo is first seen and fetched like any other.
    let first = hostile.commit(&server, "h0").await;
    server.send(first).await;
    let uri0 = format!("at://{did}/dev.guildhall.service/h0");
    eventually(
        "the hostile repo is first synced",
        Duration::from_secs(30),
        &ctx,
        || {
            let store = store.clone();
            let uri = uri0.clone();
            async move { store.record(&uri).await.ok().flatten().is_some() }
        },
    )
    .await;
    let fetched_before = server.state.get_repo_calls.load(Ordering::Relaxed);

    // Now it turns: every call hangs. Forged frames that fit the chain are counted and
    // dropped: none of them costs a getRepo.
    server.hang(true);
    for i in 0..5 {
        let f = hostile.forged(&format!("forged{i}"));
        server.send(f).await;
    }
    eventually(
        "the forgeries are refused",
        Duration::from_secs(20),
        &ctx,
        || {
            let n = ctx.metrics.commits_refused.load(Ordering::Relaxed);
            async move { n >= 5 }
        },
    )
    .await;
    assert_eq!(
        server.state.get_repo_calls.load(Ordering::Relaxed),
        fetched_before,
        "a forged frame whose chain fits must not cost a getRepo"
    );
    assert!(
        ctx.metrics.verify_failures().get("bad_signature").copied() >= Some(5),
        "{:?}",
        ctx.metrics.verify_failures()
    );

    // An #account it cannot vouch for (asks its hanging getRepoStatus), then a commit that
    // skips one (asks its hanging getRepo), then more commits and forgeries during the writes.
    let account = hostile.account_frame(false, "takendown");
    server.send(account).await;
    let _skipped = hostile.commit(&server, "h1").await;
    let ahead = hostile.commit(&server, "h2").await;
    server.send(ahead).await;

    let alice = &peer.accounts()[0];
    let x = peer.xrpc();
    // The hostile firehose also forges commits in alice's name (a key of its own): they must
    // be dropped without holding up alice's real commits from the reference PDS.
    let mut in_alices_name = ForgeRepo::new(
        Did::parse(&alice.did).expect("alice's did"),
        SigningKey::generate_from_seed(&[0xaa; 32]),
    );
    let mut latencies = Vec::with_capacity(WRITES);
    let mut breaker_seen = false;
    let started = Instant::now();
    for i in 0..=WRITES {
        if i % 10 == 5 {
            let f = if i % 20 == 5 {
                hostile.commit(&server, &format!("live{i}")).await
            } else {
                hostile.forged(&format!("forged-live{i}"))
            };
            server.send(f).await;
            let f = in_alices_name
                .commit(&[service(&format!("fake{i}"), "Fake", &["sms.send"])])
                .expect("forge");
            let f = hostile.frame(f);
            server.send(f).await;
        }
        let record = serde_json::json!({
            "$type": "dev.guildhall.service",
            "name": format!("Steady {i}"),
            "capabilities": ["sms.send"],
            "endpoints": [{"protocol": "http", "url": "https://steady.example.test"}],
            "createdAt": "2026-11-02T10:00:00Z",
        });
        let w = x
            .create_record(
                &alice.pds_url,
                &alice.access_jwt,
                &alice.did,
                "dev.guildhall.service",
                Some(&format!("steady-{i}")),
                &record,
            )
            .await
            .expect("write to the reference PDS");
        let acked = Instant::now();
        loop {
            if store
                .record(&w.uri)
                .await
                .expect("read")
                .is_some_and(|r| r.cid == w.cid)
            {
                break;
            }
            assert!(
                acked.elapsed() < Duration::from_secs(30),
                "{} not indexed 30 s after the write; metrics:\n{}",
                w.uri,
                ctx.metrics.render()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // The first write makes alice's repo tracked: not measured, as in the latency test.
        if i > 0 {
            latencies.push(acked.elapsed());
        }
        breaker_seen |= ctx.metrics.hosts_blocked.load(Ordering::Relaxed) > 0;
    }
    // Keep the host hanging until its breaker has opened, so the writes above ran beside a
    // host the queue was actively failing against.
    eventually(
        "the hostile host's breaker opens",
        Duration::from_secs(60),
        &ctx,
        || {
            breaker_seen |= ctx.metrics.hosts_blocked.load(Ordering::Relaxed) > 0;
            let seen = breaker_seen;
            async move { seen }
        },
    )
    .await;
    latencies.sort();
    let p50 = percentile(&latencies, 50);
    let p99 = percentile(&latencies, 99);
    eprintln!(
        "[{}] {WRITES} writes beside a hanging, forging PDS in {:?}: write acknowledged → indexed p50 {p50:?}, p99 {p99:?}, max {:?}; getRepo calls {}, getRepoStatus calls {}",
        store.backend_name(),
        started.elapsed(),
        latencies[latencies.len() - 1],
        server.state.get_repo_calls.load(Ordering::Relaxed),
        server.state.status_calls.load(Ordering::Relaxed),
    );
    assert!(
        p99 <= Duration::from_secs(1),
        "p99 write → indexed latency {p99:?} beside a hostile PDS; metrics:\n{}",
        ctx.metrics.render()
    );
    assert!(server.state.status_calls.load(Ordering::Relaxed) > 0);
    // Once the #account's query is given up, the commit that skipped one is replayed and
    // asks for a resync: the hanging getRepo is tried (in the background).
    eventually(
        "the resync reaches the hanging host",
        Duration::from_secs(60),
        &ctx,
        || {
            let n = server.state.get_repo_calls.load(Ordering::Relaxed);
            async move { n > fetched_before }
        },
    )
    .await;
    eventually(
        "the hostile repo is marked unsynced",
        Duration::from_secs(30),
        &ctx,
        || {
            let store = store.clone();
            let did = did.clone();
            async move {
                store
                    .repo(did.as_str())
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|r| r.status != RepoStatus::Synced)
            }
        },
    )
    .await;

    // The host answers again: the hostile repo catches up to its head, forgeries excluded.
    server.hang(false);
    let head = server.state.head.lock().await.clone();
    eventually(
        "the hostile repo catches up",
        Duration::from_secs(60),
        &ctx,
        || {
            let store = store.clone();
            let did = did.clone();
            let head = head.clone();
            async move {
                store
                    .repo(did.as_str())
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|r| {
                        r.status == RepoStatus::Synced && r.rev.as_deref() == Some(&head)
                    })
            }
        },
    )
    .await;
    for path in &hostile.paths {
        let uri = format!("at://{did}/{path}");
        assert!(
            store.record(&uri).await.expect("read").is_some(),
            "{uri} missing"
        );
    }
    for i in 0..5 {
        let uri = format!("at://{did}/dev.guildhall.service/forged{i}");
        assert!(store.record(&uri).await.expect("read").is_none());
    }
    for i in (5..=WRITES).step_by(10) {
        let uri = format!("at://{}/dev.guildhall.service/fake{i}", alice.did);
        assert!(store.record(&uri).await.expect("read").is_none(), "{uri}");
    }
    let text = ctx.metrics.render();
    for series in [
        "guildhall_hosts_blocked",
        "guildhall_repos_unsynced",
        "guildhall_dids_unresolvable",
        "guildhall_resync_queue_waiting",
    ] {
        assert!(text.contains(series), "{series} missing from /metrics");
    }

    let _ = stop.send(true);
    running.await.expect("join").expect("indexer");
    drop(server);
    peer.shutdown(Duration::from_secs(5))
        .await
        .expect("peer shutdown");
}
