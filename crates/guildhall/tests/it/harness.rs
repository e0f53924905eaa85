//! Shared machinery: fresh databases, the `guildhall` child process, and comparing the index
//! with the repos.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use guildhall_store::Store;
use guildhall_testkit::db::{TestDb, unique};
use guildhall_testkit::{Account, Peer, PeerOptions};
use sha2::Digest as _;
use sqlx::Connection as _;

/// Guildhall's collections, the ones the index must mirror.
pub const COLLECTIONS: [&str; 3] = [
    "dev.guildhall.service",
    "dev.guildhall.endorsement",
    "dev.guildhall.operator",
];

/// The two storage backends every scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `both!(scenario)` turns `async fn scenario(Backend) -> Result<()>` into the tests
/// `scenario::sqlite` and `scenario::postgres`.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Err(e) = super::$name($crate::harness::Backend::Sqlite).await {
                    panic!("{e:#}");
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Err(e) = super::$name($crate::harness::Backend::Postgres).await {
                    panic!("{e:#}");
                }
            }
        }
    };
}

/// A fresh, empty database, removed when dropped (even when the test panics).
pub struct Db {
    pub backend: Backend,
    /// What `--db` gets: a file path or a postgres URL.
    pub location: String,
    db: TestDb,
}

impl Db {
    pub async fn fresh(backend: Backend) -> Result<Db> {
        let db = TestDb::create(backend == Backend::Postgres, "gh_e2e").await?;
        Ok(Db {
            backend,
            location: db.location.clone(),
            db,
        })
    }

    /// Opens the store the binary writes (reads only, from the test's side).
    pub async fn store(&self) -> Result<Store> {
        Store::open(&self.location)
            .await
            .with_context(|| format!("opening {}", self.location))
    }

    /// Inconsistencies found with raw SQL (checks the store API does not offer).
    pub async fn integrity(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        match self.backend {
            Backend::Sqlite => {
                let mut c =
                    sqlx::SqliteConnection::connect(&format!("sqlite:{}", self.location)).await?;
                for q in INTEGRITY {
                    let rows: Vec<(String,)> = sqlx::query_as(*q).fetch_all(&mut c).await?;
                    problems.extend(rows.into_iter().map(|(r,)| r));
                }
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.location).await?;
                for q in INTEGRITY {
                    let rows: Vec<(String,)> = sqlx::query_as(*q).fetch_all(&mut c).await?;
                    problems.extend(rows.into_iter().map(|(r,)| r));
                }
            }
        }
        Ok(problems)
    }
}

/// Portable queries, each returning one line per inconsistency: duplicates, raw records
/// without their index row, index rows without their raw record, CIDs that disagree.
const INTEGRITY: &[&str] = &[
    "SELECT 'duplicate record ' || uri FROM records GROUP BY uri HAVING COUNT(*) > 1",
    "SELECT 'duplicate record key ' || did || '/' || collection || '/' || rkey FROM records \
     GROUP BY did, collection, rkey HAVING COUNT(*) > 1",
    "SELECT 'duplicate service ' || uri FROM services GROUP BY uri HAVING COUNT(*) > 1",
    "SELECT 'duplicate endorsement ' || uri FROM endorsements GROUP BY uri HAVING COUNT(*) > 1",
    "SELECT 'service record without index row ' || r.uri FROM records r \
     LEFT JOIN services s ON s.uri = r.uri \
     WHERE r.collection = 'dev.guildhall.service' AND s.uri IS NULL",
    "SELECT 'endorsement record without index row ' || r.uri FROM records r \
     LEFT JOIN endorsements e ON e.uri = r.uri \
     WHERE r.collection = 'dev.guildhall.endorsement' AND e.uri IS NULL",
    "SELECT 'operator record without profile ' || r.uri FROM records r \
     LEFT JOIN operators o ON o.profile_uri = r.uri \
     WHERE r.collection = 'dev.guildhall.operator' AND o.did IS NULL",
    "SELECT 'service row without record ' || s.uri FROM services s \
     LEFT JOIN records r ON r.uri = s.uri WHERE r.uri IS NULL",
    "SELECT 'endorsement row without record ' || e.uri FROM endorsements e \
     LEFT JOIN records r ON r.uri = e.uri WHERE r.uri IS NULL",
    "SELECT 'profile without record ' || o.profile_uri FROM operators o \
     LEFT JOIN records r ON r.uri = o.profile_uri \
     WHERE o.profile_uri IS NOT NULL AND r.uri IS NULL",
    "SELECT 'service cid differs ' || s.uri FROM services s JOIN records r ON r.uri = s.uri \
     WHERE r.cid <> s.cid",
    "SELECT 'endorsement cid differs ' || e.uri FROM endorsements e \
     JOIN records r ON r.uri = e.uri WHERE r.cid <> e.cid",
    "SELECT 'profile cid differs ' || o.profile_uri FROM operators o \
     JOIN records r ON r.uri = o.profile_uri WHERE r.cid <> o.profile_cid",
];

impl Drop for Db {
    fn drop(&mut self) {
        self.db.remove_blocking();
    }
}

/// Starts a peer with `accounts` accounts on one PDS, printing how long it took.
pub async fn peer(accounts: usize) -> Result<Peer> {
    peer_with(accounts, 1).await
}

/// Starts a peer with `accounts` accounts spread over `pdses` PDSes.
pub async fn peer_with(accounts: usize, pdses: usize) -> Result<Peer> {
    let t = Instant::now();
    let peer = Peer::start(PeerOptions {
        accounts,
        pds_count: pdses,
        ..PeerOptions::default()
    })
    .await?;
    eprintln!(
        "peer: {accounts} accounts on {pdses} PDS(es), READY in {:.1} s (its own start-up {} ms)",
        t.elapsed().as_secs_f64(),
        peer.info().startup_ms
    );
    Ok(peer)
}

/// A port free on loopback right now.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The real `guildhall` binary as a child process. Dropping it kills it (SIGKILL) and reaps it.
pub struct Guildhall {
    child: Option<Child>,
    /// The AppView's public address (XRPC).
    pub addr: SocketAddr,
    /// The admin listener (`/status`, `/metrics`).
    pub admin: SocketAddr,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    http: reqwest::Client,
    /// How many times it was started.
    pub starts: u32,
}

impl Guildhall {
    /// `guildhall serve` on the firehose of every PDS of the peer, resolving DIDs from its PLC
    /// and handles through its first PDS.
    pub fn serve(db: &Db, peer: &Peer) -> Result<Guildhall> {
        let mut args = vec!["serve".to_owned()];
        args.extend(ingest_args(db, peer));
        for pds in &peer.info().pdses {
            args.extend(["--firehose".to_owned(), pds.firehose_url.clone()]);
        }
        Guildhall::custom(args, Vec::new())
    }

    /// `guildhall serve` with exactly these arguments (plus `--listen` and `--admin-listen`)
    /// and extra environment.
    pub fn custom(args: Vec<String>, env: Vec<(String, String)>) -> Result<Guildhall> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        Guildhall::custom_on(addr, args, env)
    }

    /// [`Guildhall::custom`] on a public address the caller chose (to name it in other
    /// arguments, e.g. `--hostname`).
    pub fn custom_on(
        addr: SocketAddr,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Result<Guildhall> {
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let mut args = args;
        args.extend(["--listen".to_owned(), addr.to_string()]);
        args.extend(["--admin-listen".to_owned(), admin.to_string()]);
        let log = std::env::temp_dir().join(format!("{}.log", unique("gh_e2e_guildhall")));
        let mut g = Guildhall {
            child: None,
            addr,
            admin,
            args,
            env,
            log,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            starts: 0,
        };
        g.start()?;
        Ok(g)
    }

    /// (Re)starts the process on the same database and address.
    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("guildhall is already running");
        }
        let out = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new(env!("CARGO_BIN_EXE_guildhall"))
            .args(&self.args)
            .env(
                "GUILDHALL_LOG",
                std::env::var("GUILDHALL_TEST_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("spawning guildhall")?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// SIGKILL (no chance to flush anything) and reap.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            // std's Child::kill is SIGKILL on Unix.
            c.kill().context("kill -9 guildhall")?;
            c.wait().context("reaping guildhall")?;
        }
        Ok(())
    }

    /// Fails with the log's tail if the process has exited on its own.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut()
            && let Some(status) = c.try_wait()?
        {
            self.child = None;
            bail!(
                "guildhall exited by itself ({status})\n--- log tail ---\n{}",
                self.log_tail(60)
            );
        }
        Ok(())
    }

    /// Waits until `/status` answers.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if let Ok(r) = self.http.get(self.admin_url("/status")).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "guildhall did not answer /status within {timeout:?}\n--- log tail ---\n{}",
                    self.log_tail(60)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the firehose socket has connected `n` times in this process's life.
    pub async fn wait_connected(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if let Ok(m) = self.metrics().await
                && metric(&m, "guildhall_firehose_connects_total").unwrap_or(0.0) >= 1.0
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "guildhall did not connect to the firehose within {timeout:?}\n--- log tail ---\n{}",
                    self.log_tail(60)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// `GET /status` as JSON.
    pub async fn status(&self) -> Result<serde_json::Value> {
        let r = self.http.get(self.admin_url("/status")).send().await?;
        let code = r.status();
        let text = r.text().await?;
        if !code.is_success() {
            bail!("/status: {code}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("/status is not JSON: {text}"))
    }

    /// `GET /metrics` (Prometheus text).
    pub async fn metrics(&self) -> Result<String> {
        let r = self.http.get(self.admin_url("/metrics")).send().await?;
        let code = r.status();
        let text = r.text().await?;
        if !code.is_success() {
            bail!("/metrics: {code}: {text}");
        }
        Ok(text)
    }

    /// The last `n` lines the process(es) wrote.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Guildhall {
    fn drop(&mut self) {
        let _ = self.kill9();
        if !std::thread::panicking() && std::env::var_os("GUILDHALL_TEST_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_file(&self.log);
        } else {
            eprintln!("guildhall log kept at {}", self.log.display());
        }
    }
}

/// `--db`, `--plc` and `--handle-resolver` for this peer.
pub fn ingest_args(db: &Db, peer: &Peer) -> Vec<String> {
    vec![
        "--db".to_owned(),
        db.location.clone(),
        "--plc".to_owned(),
        peer.info().plc_url.clone(),
        "--handle-resolver".to_owned(),
        peer.pds().url.clone(),
        // The peer's PDSes live on loopback, which DID documents may not send us to otherwise.
        "--allow-private-addresses".to_owned(),
    ]
}

/// The value of an unlabelled sample, or the sum over the labels of a labelled one.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let base = key.split('{').next().unwrap_or(key);
        if base == name
            && let Ok(v) = value.trim().parse::<f64>()
        {
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

/// `uri -> cid` of records.
pub type Index = BTreeMap<String, String>;

/// What the repos hold in our collections, from the PDS's `listRecords`.
pub async fn repo_records(peer: &Peer, accounts: &[Account]) -> Result<Index> {
    let mut out = Index::new();
    for a in accounts {
        for c in COLLECTIONS {
            for r in peer
                .xrpc()
                .list_records(&a.pds_url, &a.did, c)
                .await
                .with_context(|| format!("listRecords {} {c}", a.did))?
            {
                out.insert(r.uri, r.cid);
            }
        }
    }
    Ok(out)
}

/// What the store holds for these accounts (sync state: not filtered by account status).
pub async fn indexed_records(store: &Store, accounts: &[Account]) -> Result<Index> {
    let mut out = Index::new();
    for a in accounts {
        for c in COLLECTIONS {
            out.extend(store.list_records(&a.did, c).await?);
        }
    }
    Ok(out)
}

/// A readable difference, or `None` when equal.
pub fn diff(expected: &Index, actual: &Index) -> Option<String> {
    let mut lines = Vec::new();
    for (uri, cid) in expected {
        match actual.get(uri) {
            None => lines.push(format!("  missing  {uri} ({cid})")),
            Some(c) if c != cid => lines.push(format!("  stale    {uri}: index {c}, repo {cid}")),
            Some(_) => {}
        }
    }
    for (uri, cid) in actual {
        if !expected.contains_key(uri) {
            lines.push(format!("  extra    {uri} ({cid})"));
        }
    }
    if lines.is_empty() {
        return None;
    }
    let n = lines.len();
    lines.truncate(40);
    Some(format!(
        "{n} difference(s) (repo: {}, index: {}):\n{}{}",
        expected.len(),
        actual.len(),
        lines.join("\n"),
        if n > 40 { "\n  …" } else { "" }
    ))
}

/// Polls until the index equals the repos minus `excluded` (records our lexicons reject);
/// returns the repos' records, or fails with the last difference and the binary's log.
pub async fn await_index(
    store: &Store,
    peer: &Peer,
    accounts: &[Account],
    excluded: &BTreeSet<String>,
    timeout: Duration,
    guildhall: Option<&mut Guildhall>,
) -> Result<Index> {
    let t = Instant::now();
    let deadline = t + timeout;
    let mut guildhall = guildhall;
    loop {
        if let Some(g) = guildhall.as_deref_mut() {
            g.check_alive()?;
        }
        let mut expected = repo_records(peer, accounts).await?;
        expected.retain(|uri, _| !excluded.contains(uri));
        let actual = indexed_records(store, accounts).await?;
        match diff(&expected, &actual) {
            None => {
                eprintln!(
                    "index = repos ({} records) after {:.2} s",
                    expected.len(),
                    t.elapsed().as_secs_f64()
                );
                return Ok(expected);
            }
            Some(d) if Instant::now() > deadline => {
                let log = guildhall
                    .as_deref()
                    .map(|g| g.log_tail(40))
                    .unwrap_or_default();
                bail!(
                    "index still differs from the repos after {timeout:?}: {d}\n--- guildhall log tail ---\n{log}"
                );
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Every raw record's bytes hash (SHA-256, DAG-CBOR codec) to the CID stored with them, and
/// the index has no duplicate or orphan rows.
pub async fn check_integrity(db: &Db, store: &Store, index: &Index) -> Result<()> {
    let mut bad = db.integrity().await?;
    for (uri, cid) in index {
        let Some(row) = store.record(uri).await? else {
            bad.push(format!("no raw record for {uri}"));
            continue;
        };
        let parsed: cid::Cid = row
            .cid
            .parse()
            .with_context(|| format!("stored CID of {uri}"))?;
        let digest = sha2::Sha256::digest(&row.bytes);
        if parsed.codec() != 0x71
            || parsed.hash().code() != 0x12
            || parsed.hash().digest() != digest.as_slice()
            || &row.cid != cid
        {
            bad.push(format!(
                "{uri}: bytes do not hash to the stored CID {}",
                row.cid
            ));
        }
    }
    if !bad.is_empty() {
        bail!(
            "{} integrity problem(s):\n  {}",
            bad.len(),
            bad.join("\n  ")
        );
    }
    eprintln!(
        "integrity: {} raw records hash to their CIDs; no duplicate or orphan rows",
        index.len()
    );
    Ok(())
}

/// Small deterministic PRNG (xorshift64*) so a failing run can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `GUILDHALL_TEST_SEED` or the clock; the seed is printed.
    pub fn from_env() -> Rng {
        let seed = std::env::var("GUILDHALL_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
            | 1;
        eprintln!("random seed {seed} (GUILDHALL_TEST_SEED={seed} to replay)");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

/// p-th percentile (0..=100) of sorted durations.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = (sorted.len() * p).div_ceil(100).saturating_sub(1);
    sorted[i.min(sorted.len() - 1)]
}

#[test]
fn diff_names_missing_stale_and_extra_records() {
    let expected: Index = [("at://a/c/1", "x"), ("at://a/c/2", "y")]
        .into_iter()
        .map(|(u, c)| (u.to_owned(), c.to_owned()))
        .collect();
    assert_eq!(diff(&expected, &expected.clone()), None);
    let actual: Index = [("at://a/c/2", "z"), ("at://a/c/3", "w")]
        .into_iter()
        .map(|(u, c)| (u.to_owned(), c.to_owned()))
        .collect();
    let d = diff(&expected, &actual).unwrap_or_default();
    assert!(d.starts_with("3 difference(s) (repo: 2, index: 2)"), "{d}");
    assert!(d.contains("missing  at://a/c/1 (x)"), "{d}");
    assert!(d.contains("stale    at://a/c/2: index z, repo y"), "{d}");
    assert!(d.contains("extra    at://a/c/3 (w)"), "{d}");
}

#[test]
fn metric_sums_labelled_samples_and_skips_comments() {
    let text = "# HELP x y\n# TYPE x counter\nx{reason=\"a\"} 2\nx{reason=\"b\"} 3\nxy 7\nz 1.5\n";
    assert_eq!(metric(text, "x"), Some(5.0));
    assert_eq!(metric(text, "z"), Some(1.5));
    assert_eq!(metric(text, "missing"), None);
}
