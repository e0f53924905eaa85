//! Credits end to end through the real binary: the instance operator's local `credits grant`,
//! then `credits balance`, `send` and `history` as logged-in users whose service-auth tokens
//! come from the reference PDS, against a live `guildhall serve` whose DID is the did:web of
//! its address. A retried send with the same id moves money once; the same id for another
//! amount is refused.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use guildhall_testkit::Account;
use serde_json::{Value, json};

use crate::both;
use crate::harness::{Backend, Db, Guildhall, free_port, ingest_args, peer};

/// What one CLI run said.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.stdout)
            .with_context(|| format!("not JSON: {}\n{}", self.stdout, self.stderr))
    }
}

/// One user's terminal: their config dir (session) and the peer's identity services.
struct Term {
    env: Vec<(String, String)>,
}

impl Term {
    fn new(dir: &Path, plc: &str, pds: &str, appview: SocketAddr) -> Self {
        Self {
            env: vec![
                ("GUILDHALL_PLC".into(), plc.into()),
                ("GUILDHALL_HANDLE_RESOLVER".into(), pds.into()),
                ("GUILDHALL_CONFIG_DIR".into(), dir.display().to_string()),
                (
                    "GUILDHALL_APPVIEW".into(),
                    format!("http://localhost:{}", appview.port()),
                ),
            ],
        }
    }

    async fn run(&self, args: &[&str]) -> Result<Out> {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_guildhall"));
        cmd.args(args).stdin(std::process::Stdio::null());
        for (k, _) in std::env::vars_os() {
            if let Some(k) = k.to_str()
                && (k.starts_with("GUILDHALL_") || k.to_ascii_uppercase().ends_with("_PROXY"))
            {
                cmd.env_remove(k);
            }
        }
        cmd.env("GUILDHALL_LOG", "warn");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .with_context(|| format!("guildhall {args:?} did not finish"))??;
        Ok(Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs and requires exit 0.
    async fn ok(&self, args: &[&str]) -> Result<Out> {
        let out = self.run(args).await?;
        ensure!(
            out.code == 0,
            "guildhall {args:?} exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.code,
            out.stdout,
            out.stderr
        );
        Ok(out)
    }

    /// `guildhall login` with a fresh app password of `a`.
    async fn login(&self, peer: &guildhall_testkit::Peer, a: &Account) -> Result<()> {
        let pw = peer
            .xrpc()
            .procedure(
                &a.pds_url,
                "com.atproto.server.createAppPassword",
                Some(&a.access_jwt),
                &json!({ "name": "guildhall-credits" }),
            )
            .await?;
        let pw = pw["password"]
            .as_str()
            .context("no app password")?
            .to_owned();
        self.ok(&["login", &a.handle, "--password", &pw]).await?;
        Ok(())
    }
}

/// `available` of `currency` in a getBalance answer.
fn available(balance: &Value, currency: &str) -> Option<String> {
    balance["accounts"]
        .as_array()?
        .iter()
        .find(|a| a["currency"] == currency)
        .and_then(|a| a["available"].as_str())
        .map(str::to_owned)
}

async fn credits_end_to_end(backend: Backend) -> Result<()> {
    let peer = peer(2).await?;
    let db = Db::fresh(backend).await?;
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let mut args = vec!["serve".to_owned(), "--no-ingest".to_owned()];
    args.extend(ingest_args(&db, &peer));
    // The AppView's DID is the did:web of the address the CLI reaches it at (`localhost`:
    // atproto allows a port in a did:web only there).
    args.extend([
        "--hostname".to_owned(),
        format!("localhost:{}", addr.port()),
    ]);
    args.extend(["--rate-limit".to_owned(), "0".to_owned()]);
    let mut gh = Guildhall::custom_on(addr, args, Vec::new())?;
    gh.wait_ready(Duration::from_secs(60)).await?;

    let (alice, bob) = (&peer.accounts()[0], &peer.accounts()[1]);
    let dirs = tempfile::tempdir()?;
    let plc = peer.info().plc_url.clone();
    let pds = peer.pds().url.clone();
    let op = Term::new(&dirs.path().join("op"), &plc, &pds, addr);
    let a = Term::new(&dirs.path().join("alice"), &plc, &pds, addr);
    let b = Term::new(&dirs.path().join("bob"), &plc, &pds, addr);

    // The operator funds alice by handle, from the database directly.
    let granted = op
        .ok(&[
            "credits",
            "grant",
            &alice.handle,
            "10",
            "USD",
            "--memo",
            "top-up",
            "--id",
            "g1",
            "--db",
            &db.location,
            "--json",
        ])
        .await?
        .json()?;
    ensure!(granted["to"] == alice.did.as_str(), "{granted}");
    ensure!(granted["amount"] == "10", "{granted}");
    // The same grant again is the same grant.
    op.ok(&[
        "credits",
        "grant",
        &alice.handle,
        "10",
        "USD",
        "--memo",
        "top-up",
        "--id",
        "g1",
        "--db",
        &db.location,
    ])
    .await?;

    a.login(&peer, alice).await?;
    b.login(&peer, bob).await?;
    let bal = a.ok(&["credits", "balance", "--json"]).await?.json()?;
    ensure!(bal["did"] == alice.did.as_str(), "{bal}");
    ensure!(available(&bal, "USD").as_deref() == Some("10"), "{bal}");

    // alice pays bob 2.5, then retries the same send: one transfer.
    let send = [
        "credits",
        "send",
        &bob.handle,
        "2.5",
        "USD",
        "--id",
        "s1",
        "--memo",
        "lunch",
        "--json",
    ];
    let first = a.ok(&send).await?.json()?;
    ensure!(
        first["amount"] == "2.5" && first["to"] == bob.did.as_str(),
        "{first}"
    );
    ensure!(
        first["id"] == "s1" && first["direction"] == "out",
        "{first}"
    );
    let again = a.ok(&send).await?.json()?;
    ensure!(
        again == first,
        "a retry answers the first result: {again} vs {first}"
    );
    let bal = a.ok(&["credits", "balance", "--json"]).await?.json()?;
    ensure!(available(&bal, "USD").as_deref() == Some("7.5"), "{bal}");
    let bal = b.ok(&["credits", "balance", "--json"]).await?.json()?;
    ensure!(available(&bal, "USD").as_deref() == Some("2.5"), "{bal}");

    // The same id for another transfer is refused, and moves nothing.
    let reused = a
        .run(&[
            "credits",
            "send",
            &bob.handle,
            "3",
            "USD",
            "--id",
            "s1",
            "--memo",
            "lunch",
        ])
        .await?;
    ensure!(
        reused.code == 1 && reused.stderr.contains("IdReused"),
        "exit {}: {}",
        reused.code,
        reused.stderr
    );
    // bob's ids are his own: his "s1" is not alice's.
    let back = b
        .ok(&[
            "credits", "send", &alice.did, "0.5", "USD", "--id", "s1", "--json",
        ])
        .await?
        .json()?;
    ensure!(back["amount"] == "0.5" && back["id"] == "s1", "{back}");
    // More than bob has.
    let broke = b
        .run(&["credits", "send", &alice.did, "100", "USD"])
        .await?;
    ensure!(
        broke.code == 1 && broke.stderr.contains("InsufficientFunds"),
        "exit {}: {}",
        broke.code,
        broke.stderr
    );

    // alice's history, newest first, a page at a time.
    let all = a.ok(&["credits", "history", "--json"]).await?.json()?;
    let kinds: Vec<(String, String, String)> = all["transfers"]
        .as_array()
        .context("transfers")?
        .iter()
        .map(|t| {
            (
                t["direction"].as_str().unwrap_or("").to_owned(),
                t["amount"].as_str().unwrap_or("").to_owned(),
                t["from"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    ensure!(
        kinds
            == vec![
                ("in".to_owned(), "0.5".to_owned(), bob.did.clone()),
                ("out".to_owned(), "2.5".to_owned(), alice.did.clone()),
                ("in".to_owned(), "10".to_owned(), "issuance".to_owned()),
            ],
        "{all}"
    );
    let page1 = a
        .ok(&["credits", "history", "--limit", "2", "--json"])
        .await?
        .json()?;
    let cursor = page1["cursor"].as_str().context("a cursor after page 1")?;
    let page2 = a
        .ok(&[
            "credits", "history", "--limit", "2", "--cursor", cursor, "--json",
        ])
        .await?
        .json()?;
    ensure!(
        page2["transfers"].as_array().map(Vec::len) == Some(1)
            && page2["transfers"][0]["memo"] == "top-up",
        "{page2}"
    );

    // And for people: tables.
    let text = a.ok(&["credits", "balance"]).await?.stdout;
    ensure!(text.contains("USD") && text.contains("8"), "{text}");
    let text = a.ok(&["credits", "history"]).await?.stdout;
    ensure!(
        text.contains("-2.5 USD") && text.contains("lunch"),
        "{text}"
    );
    gh.check_alive()?;
    Ok(())
}

both!(credits_end_to_end);
