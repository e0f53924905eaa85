//! The firehose over `wss://` and the PLC over `https://`: the reference PDS and PLC behind a
//! loopback TLS terminator whose CA the test makes. Trusted through `SSL_CERT_FILE`, `serve`
//! indexes through it; with another CA in its place, the handshake is refused and said so.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use guildhall_testkit::Peer;
use guildhall_testkit::db::unique;
use guildhall_testkit::tls::{TestCa, TlsProxy, upstream_of};
use serde_json::json;

use crate::harness::{Backend, Db, Guildhall, await_index, metric, peer};

/// `serve` following the PDS's firehose and resolving DIDs through the PLC, both over TLS.
fn serve_args(db: &Db, peer: &Peer, firehose: &str, plc: &str) -> Vec<String> {
    [
        "serve",
        "--db",
        &db.location,
        "--firehose",
        firehose,
        "--plc",
        plc,
        "--handle-resolver",
        &peer.pds().url,
        "--allow-private-addresses",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `SSL_CERT_FILE` set to `pem`, and an empty `SSL_CERT_DIR`, so the machine's own roots play
/// no part: only the web PKI set built into the binary and the given file.
fn roots_env(pem: &std::path::Path, empty_dir: &std::path::Path) -> Vec<(String, String)> {
    vec![
        ("SSL_CERT_FILE".to_owned(), pem.display().to_string()),
        ("SSL_CERT_DIR".to_owned(), empty_dir.display().to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_and_plc_over_tls() {
    if let Err(e) = run().await {
        panic!("{e:#}");
    }
}

async fn run() -> Result<()> {
    let peer = peer(1).await?;
    let ca = TestCa::new("trusted")?;
    let server = ca.server_config()?;
    let pds_tls = TlsProxy::start(server.clone(), upstream_of(&peer.pds().url)?).await?;
    let plc_tls = TlsProxy::start(server, upstream_of(&peer.info().plc_url)?).await?;
    let firehose = pds_tls.url_for("wss", &peer.pds().firehose_url)?;
    let plc = plc_tls.url_for("https", &peer.info().plc_url)?;
    ensure!(firehose.starts_with("wss://localhost:"), "{firehose}");
    let empty = std::env::temp_dir().join(unique("gh_tls_empty_roots"));
    std::fs::create_dir_all(&empty)?;

    // Trusted: the test CA is in SSL_CERT_FILE.
    let db = Db::fresh(Backend::Sqlite).await?;
    let mut gh = Guildhall::custom(
        serve_args(&db, &peer, &firehose, &plc),
        roots_env(ca.pem_path(), &empty),
    )?;
    gh.wait_ready(Duration::from_secs(60)).await?;
    gh.wait_connected(Duration::from_secs(30)).await?;
    let alice = &peer.accounts()[0];
    let service = json!({
        "$type": "dev.guildhall.service",
        "name": "TLS test",
        "description": "published while the firehose runs over wss://",
        "capabilities": ["text.summarize"],
        "endpoints": [{"protocol": "mcp", "url": "https://svc.example.test/mcp", "transport": "streamable-http"}],
        "pricing": [{"model": "per_call", "amount": "0.002", "currency": "USD", "unit": "call"}],
        "createdAt": "2026-12-01T00:00:00.000Z",
    });
    peer.xrpc()
        .create_record(
            &alice.pds_url,
            &alice.access_jwt,
            &alice.did,
            "dev.guildhall.service",
            Some("tls"),
            &service,
        )
        .await?;
    let store = db.store().await?;
    let index = await_index(
        &store,
        &peer,
        peer.accounts(),
        &BTreeSet::new(),
        Duration::from_secs(30),
        Some(&mut gh),
    )
    .await?;
    ensure!(
        index.len() == 1,
        "expected the one service indexed, got {index:?}"
    );
    let m = gh.metrics().await?;
    ensure!(
        metric(&m, "guildhall_commits_verified_total").unwrap_or(0.0) >= 1.0,
        "no verified commit counted:\n{m}"
    );
    drop(gh);

    // Untrusted: another CA in SSL_CERT_FILE. The handshake must fail, clearly, and nothing
    // may be indexed.
    let other = TestCa::new("untrusted")?;
    let db2 = Db::fresh(Backend::Sqlite).await?;
    let mut gh2 = Guildhall::custom(
        serve_args(&db2, &peer, &firehose, &plc),
        roots_env(other.pem_path(), &empty),
    )?;
    gh2.wait_ready(Duration::from_secs(60)).await?;
    let t = Instant::now();
    loop {
        gh2.check_alive()?;
        let m = gh2.metrics().await?;
        let tls_errors = m
            .lines()
            .filter(|l| l.starts_with("guildhall_frame_errors_total{") && l.contains("\"tls\""))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>();
        if tls_errors >= 1.0 {
            ensure!(
                metric(&m, "guildhall_firehose_connects_total").unwrap_or(0.0) == 0.0,
                "connected through an untrusted certificate:\n{m}"
            );
            break;
        }
        if t.elapsed() > Duration::from_secs(30) {
            bail!("no TLS failure counted in 30 s\n{}", gh2.log_tail(30));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = gh2.log_tail(200);
    ensure!(
        log.contains("firehose TLS handshake failed") && log.contains("UnknownIssuer"),
        "the log does not say why:\n{log}"
    );
    let store2 = db2.store().await?;
    let held = crate::harness::indexed_records(&store2, peer.accounts()).await?;
    ensure!(
        held.is_empty(),
        "indexed through an untrusted certificate: {held:?}"
    );
    let _ = std::fs::remove_dir_all(&empty);
    Ok(())
}
