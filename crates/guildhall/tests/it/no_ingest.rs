//! `guildhall serve --no-ingest` beside another writer: no firehose, no broadcast, and the
//! AppView's trust graph still follows the database through `--trust-refresh`.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use guildhall_store::{
    Batch, Change, EndorsementRow, IndexRow, OperatorStatus, PriceRow, RecordRow, ServiceRow, Store,
};
use serde_json::Value;

use crate::both;
use crate::harness::{Backend, Db};

const SVC: &str = "dev.guildhall.service";
const END: &str = "dev.guildhall.endorsement";

fn did(n: &str) -> String {
    format!("did:plc:{n}")
}

fn record(did: &str, collection: &str, rkey: &str, cid: &str) -> RecordRow {
    RecordRow {
        uri: format!("at://{did}/{collection}/{rkey}"),
        did: did.to_owned(),
        collection: collection.to_owned(),
        rkey: rkey.to_owned(),
        cid: cid.to_owned(),
        bytes: cid.as_bytes().to_vec(),
    }
}

fn service(op: &str) -> Change {
    let (d, rkey) = (did(op), format!("{op}-sms"));
    let cid = format!("bafy-s-{op}");
    Change::UpsertRecord(
        record(&d, SVC, &rkey, &cid),
        Some(IndexRow::Service(ServiceRow {
            uri: format!("at://{d}/{SVC}/{rkey}"),
            did: d.clone(),
            rkey: rkey.clone(),
            cid,
            name: format!("SMS by {op}"),
            description: None,
            version: None,
            created_at: "2026-11-02T10:00:00Z".to_owned(),
            latency_p95_ms: None,
            availability_bp: None,
            success_rate_bp: None,
            record_json: format!("{{\"name\":\"SMS by {op}\"}}"),
            capabilities: vec!["sms.send".to_owned()],
            regions: Vec::new(),
            prices: vec![PriceRow {
                model: "free".to_owned(),
                currency: None,
                amount: None,
                unit: None,
                period: None,
            }],
            tags: Vec::new(),
        })),
    )
}

fn endorsement(author: &str, rkey: &str, subject: &str) -> Change {
    let (a, s) = (did(author), did(subject));
    let cid = format!("bafy-e-{rkey}");
    Change::UpsertRecord(
        record(&a, END, rkey, &cid),
        Some(IndexRow::Endorsement(EndorsementRow {
            uri: format!("at://{a}/{END}/{rkey}"),
            author: a.clone(),
            rkey: rkey.to_owned(),
            cid,
            subject: s,
            service_uri: None,
            service_cid: None,
            strength: Some(80),
            comment: None,
            created_at: "2026-11-02T10:00:00Z".to_owned(),
            expires_at: None,
            capabilities: vec!["sms.send".to_owned()],
        })),
    )
}

async fn write(store: &Store, changes: Vec<Change>) -> Result<()> {
    store
        .apply(&Batch {
            cursors: Vec::new(),
            changes,
        })
        .await
        .map(drop)
        .context("writing as the other process")
}

/// The AppView child; dropping it kills and reaps it.
struct AppView {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    http: reqwest::Client,
}

impl AppView {
    fn start(db: &Db, refresh: &str) -> Result<AppView> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let admin_port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse()?;
        let child = Command::new(env!("CARGO_BIN_EXE_guildhall"))
            .args(["serve", "--no-ingest", "--db", &db.location, "--listen"])
            .arg(addr.to_string())
            .arg("--admin-listen")
            .arg(admin.to_string())
            .args(["--rate-limit", "0", "--trust-refresh", refresh])
            .env("GUILDHALL_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("spawning guildhall serve --no-ingest")?;
        Ok(AppView {
            child,
            addr,
            admin,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    async fn get(&self, path: &str) -> Result<Value> {
        // /status lives on the admin listener.
        let host = if path == "/status" {
            self.admin
        } else {
            self.addr
        };
        let r = self.http.get(format!("http://{host}{path}")).send().await?;
        let code = r.status();
        let text = r.text().await?;
        if !code.is_success() {
            bail!("{path}: {code}: {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// `(operator DID, distance)` of each searchServices result for the viewer, in order.
    async fn ranking(&self) -> Result<Vec<(String, Option<u64>)>> {
        let v = self
            .get(&format!(
                "/xrpc/dev.guildhall.searchServices?capability=sms.send&viewer={}",
                did("viewer")
            ))
            .await?;
        Ok(v["services"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        (
                            s["operator"]["did"].as_str().unwrap_or_default().to_owned(),
                            s["trust"]["distance"].as_u64(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Polls the ranking until it equals `want`.
    async fn wait_ranking(&mut self, want: &[(String, Option<u64>)]) -> Result<Duration> {
        let t = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("guildhall exited by itself ({status})");
            }
            match self.ranking().await {
                Ok(r) if r == want => return Ok(t.elapsed()),
                Ok(r) if t.elapsed() > Duration::from_secs(15) => {
                    bail!("ranking is {r:?}, want {want:?}")
                }
                Err(e) if t.elapsed() > Duration::from_secs(15) => return Err(e),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

impl Drop for AppView {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn no_ingest_follows_the_database(backend: Backend) -> Result<()> {
    let db = Db::fresh(backend).await?;
    // The other process (`guildhall ingest`, here the test itself) writes the store.
    let store = db.store().await?;
    let mut world = Vec::new();
    for n in ["viewer", "e1", "p1", "p2"] {
        world.push(Change::Account {
            did: did(n),
            status: OperatorStatus::Active,
        });
    }
    world.extend([
        service("p1"),
        service("p2"),
        endorsement("viewer", "3kaaaaaaaaa2a", "e1"),
        endorsement("e1", "3kaaaaaaaaa2b", "p1"),
    ]);
    write(&store, world).await?;
    let mut app = AppView::start(&db, "200ms")?;
    let (p1, p2) = (did("p1"), did("p2"));
    app.wait_ranking(&[(p1.clone(), Some(2)), (p2.clone(), None)])
        .await
        .context("initial ranking")?;

    // A new endorsement written elsewhere reaches the ranking without any broadcast.
    write(&store, vec![endorsement("viewer", "3kaaaaaaaaa2c", "p2")]).await?;
    let took = app
        .wait_ranking(&[(p2.clone(), Some(1)), (p1.clone(), Some(2))])
        .await
        .context("after a new endorsement")?;
    eprintln!("{backend:?}: a new endorsement ranked after {took:?}");

    // So does a deletion.
    write(
        &store,
        vec![Change::DeleteRecord {
            uri: format!("at://{}/{END}/3kaaaaaaaaa2c", did("viewer")),
        }],
    )
    .await?;
    app.wait_ranking(&[(p1.clone(), Some(2)), (p2.clone(), None)])
        .await
        .context("after a deletion")?;

    // And a takedown of the endorser in the middle.
    write(
        &store,
        vec![Change::Account {
            did: did("e1"),
            status: OperatorStatus::Takendown,
        }],
    )
    .await?;
    app.wait_ranking(&[(p1.clone(), None), (p2.clone(), None)])
        .await
        .context("after a takedown")?;
    let status = app.get("/status").await?;
    // Loaded once, then rebuilt exactly once per change: idle checks rebuild nothing.
    if status["trustGraph"]["generation"] != 4 {
        bail!("trust graph generation is not 4: {status}");
    }
    drop(app);
    store.close().await;
    Ok(())
}

both!(no_ingest_follows_the_database);

/// `--trust-refresh 0` turns the refresh off: the graph stays as loaded.
async fn trust_refresh_zero_turns_it_off(backend: Backend) -> Result<()> {
    let db = Db::fresh(backend).await?;
    let store = db.store().await?;
    write(
        &store,
        vec![service("p1"), endorsement("viewer", "3kaaaaaaaaa2a", "p1")],
    )
    .await?;
    let mut app = AppView::start(&db, "0")?;
    let p1 = did("p1");
    app.wait_ranking(&[(p1.clone(), Some(1))]).await?;
    write(
        &store,
        vec![Change::DeleteRecord {
            uri: format!("at://{}/{END}/3kaaaaaaaaa2a", did("viewer")),
        }],
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Nothing rebuilt the graph: the deleted endorsement still explains the ranking.
    if app.ranking().await? != [(p1.clone(), Some(1))] {
        bail!("the graph changed without a refresh");
    }
    drop(app);
    store.close().await;
    Ok(())
}

both!(trust_refresh_zero_turns_it_off);
