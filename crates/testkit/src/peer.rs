//! Starting and stopping the reference ATProto peer (`tests/peer/peer.mjs`):
//! free loopback ports, the READY handshake, the peer-info file, clean-up.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use crate::xrpc::XrpcClient;

/// What to start.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// Accounts to create (alice, bob, carol, …), spread round robin over the PDSes.
    pub accounts: usize,
    /// Number of PDSes (each on its own port, all sharing one PLC).
    pub pds_count: usize,
    /// How long to wait for READY before giving up.
    pub startup_timeout: Duration,
    /// The `tests/peer` folder; `None` means [`peer_dir`].
    pub peer_dir: Option<PathBuf>,
}

impl Default for PeerOptions {
    fn default() -> Self {
        Self {
            accounts: 3,
            pds_count: 1,
            // Cold start is ~2 s here; a loaded CI machine compiling Rust on
            // both cores can be many times slower.
            startup_timeout: Duration::from_secs(90),
            peer_dir: None,
        }
    }
}

/// One PDS of the peer.
#[derive(Debug, Clone)]
pub struct PdsInfo {
    /// `http://localhost:<port>`
    pub url: String,
    /// `ws://localhost:<port>/xrpc/com.atproto.sync.subscribeRepos`
    pub firehose_url: String,
    /// The PDS's service DID (`did:web:localhost%3A<port>`).
    pub did: String,
    pub port: u16,
    /// Handle suffix of its accounts (`.test`, or `.p<port>.test` with several PDSes).
    pub handle_domain: String,
}

/// One account created at start-up.
#[derive(Debug, Clone)]
pub struct Account {
    pub did: String,
    pub handle: String,
    pub password: String,
    /// Base URL of the PDS hosting the account.
    pub pds_url: String,
    pub access_jwt: String,
    pub refresh_jwt: String,
    /// The repo signing key as `did:key:zQ3s…` (from the PLC's `/<did>/data`).
    pub signing_key: String,
    /// The `#atproto` verification method exactly as the PLC's DID document
    /// serves it (the legacy `EcdsaSecp256k1VerificationKey2019` form).
    pub did_doc_verification_method: serde_json::Value,
}

/// Everything `peer.mjs` reports once it is ready.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// `http://localhost:<port>` of the did:plc directory.
    pub plc_url: String,
    pub pdses: Vec<PdsInfo>,
    pub accounts: Vec<Account>,
    /// Password for the PDS admin API (`admin` basic auth).
    pub admin_password: String,
    /// Start-up time reported by the peer itself, in milliseconds.
    pub startup_ms: u64,
}

// ---- the JSON file written by peer.mjs ----------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawInfo {
    plc: RawPlc,
    pdses: Vec<RawPds>,
    accounts: Vec<RawAccount>,
    admin_password: String,
    timings_ms: RawTimings,
}
#[derive(Deserialize)]
struct RawPlc {
    url: String,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPds {
    url: String,
    port: u16,
    did: String,
    handle_domain: String,
    firehose: String,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAccount {
    did: String,
    handle: String,
    password: String,
    pds: String,
    access_jwt: String,
    refresh_jwt: String,
    signing_key: Option<String>,
    did_doc_verification_method: Option<serde_json::Value>,
}
#[derive(Deserialize)]
struct RawTimings {
    total: u64,
}

impl PeerInfo {
    /// Parses the peer-info JSON that `peer.mjs` writes.
    pub fn from_json(text: &str) -> Result<Self> {
        let raw: RawInfo = serde_json::from_str(text)
            .context("peer info JSON does not have the expected shape")?;
        let accounts = raw
            .accounts
            .into_iter()
            .map(|a| {
                let signing_key = a
                    .signing_key
                    .ok_or_else(|| anyhow!("account {} has no signing key", a.did))?;
                Ok(Account {
                    did: a.did,
                    handle: a.handle,
                    password: a.password,
                    pds_url: a.pds,
                    access_jwt: a.access_jwt,
                    refresh_jwt: a.refresh_jwt,
                    signing_key,
                    did_doc_verification_method: a
                        .did_doc_verification_method
                        .unwrap_or(serde_json::Value::Null),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            plc_url: raw.plc.url,
            pdses: raw
                .pdses
                .into_iter()
                .map(|p| PdsInfo {
                    url: p.url,
                    firehose_url: p.firehose,
                    did: p.did,
                    port: p.port,
                    handle_domain: p.handle_domain,
                })
                .collect(),
            accounts,
            admin_password: raw.admin_password,
            startup_ms: raw.timings_ms.total,
        })
    }
}

// ---- locating the installed harness ----------------------------------------------

/// The `tests/peer` folder: `$GUILDHALL_PEER_DIR`, else relative to this crate.
pub fn peer_dir() -> PathBuf {
    match std::env::var_os("GUILDHALL_PEER_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peer"),
    }
}

/// The Node 22 binary installed by `tests/peer/install.sh`.
fn node_binary(dir: &Path) -> Result<PathBuf> {
    let node = dir.join("node_modules/.bin/node");
    let script = dir.join("peer.mjs");
    if !script.is_file() {
        bail!(
            "{} not found: is GUILDHALL_PEER_DIR right?",
            script.display()
        );
    }
    if !node.exists() {
        bail!(
            "the test peer is not installed ({} is missing): run `{}/install.sh` once (needs the npm registry, ~2 min)",
            node.display(),
            dir.display()
        );
    }
    Ok(node)
}

/// Picks `n` distinct free loopback ports. All listeners are held until every
/// port is chosen so the kernel cannot hand out the same one twice; the small
/// window between dropping them and the peer binding is covered by retrying.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind(("127.0.0.1", 0)).context("binding a free loopback port"))
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr().context("reading a bound port")?.port()))
        .collect()
}

/// A unique scratch directory for one peer (removed when the peer drops).
fn scratch_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "guildhall-peer-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

// ---- the running peer ---------------------------------------------------------------

/// Keeps the last bytes of a child's output for error messages.
#[derive(Clone, Default)]
struct Tail(Arc<Mutex<String>>);

impl Tail {
    const LIMIT: usize = 16 * 1024;

    fn push_line(&self, line: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.push_str(line);
            s.push('\n');
            if s.len() > Self::LIMIT {
                let mut cut = s.len() - Self::LIMIT;
                while !s.is_char_boundary(cut) {
                    cut += 1;
                }
                s.drain(..cut);
            }
        }
    }

    fn text(&self) -> String {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Copies a child's output into `tail`, line by line, until EOF.
fn drain_into<R: AsyncRead + Unpin + Send + 'static>(reader: R, tail: Tail) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tail.push_line(&line);
        }
    });
}

/// A running reference peer: one in-memory PLC and `pds_count` PDSes on
/// loopback. Dropping it kills the Node process (SIGKILL), waits for it and
/// deletes its data; [`Peer::shutdown`] stops it gracefully instead.
pub struct Peer {
    info: PeerInfo,
    child: Option<Child>,
    // Held open: peer.mjs exits when its stdin closes, so even if this test
    // process dies without running Drop, no PDS is left behind.
    _stdin: Option<ChildStdin>,
    pid: u32,
    primary: PdsInfo,
    data_dir: PathBuf,
    info_path: PathBuf,
    node: PathBuf,
    dir: PathBuf,
    stderr: Tail,
    http: XrpcClient,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("pid", &self.pid)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Starts the peer and waits until it is READY. Fails (never skips) when
    /// `tests/peer/install.sh` has not been run.
    pub async fn start(opts: PeerOptions) -> Result<Peer> {
        if opts.pds_count == 0 {
            bail!("PeerOptions::pds_count must be at least 1");
        }
        let dir = opts.peer_dir.clone().unwrap_or_else(peer_dir);
        let node = node_binary(&dir)?;
        // A port chosen by free_ports can, rarely, be taken by someone else
        // before the peer binds it: retry with fresh ports in that case only.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(&dir, &node, &opts).await {
                Ok(peer) => return Ok(peer),
                Err(e) if attempt < 3 && format!("{e:#}").contains("EADDRINUSE") => continue,
                Err(e) => return Err(e),
            }
        }
    }

    async fn start_once(dir: &Path, node: &Path, opts: &PeerOptions) -> Result<Peer> {
        let ports = free_ports(1 + opts.pds_count)?;
        let (plc_port, pds_ports) = ports
            .split_first()
            .ok_or_else(|| anyhow!("no ports chosen"))?;
        let pds_ports = pds_ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let data_dir = scratch_dir();
        let info_path = data_dir.join("peer.json");

        let mut child = Command::new(node)
            .current_dir(dir)
            .arg("peer.mjs")
            .arg("--plc-port")
            .arg(plc_port.to_string())
            .arg("--pds-ports")
            .arg(&pds_ports)
            .arg("--accounts")
            .arg(opts.accounts.to_string())
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--out")
            .arg(&info_path)
            .env("GUILDHALL_PEER_EXIT_ON_STDIN_EOF", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {} peer.mjs", node.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("the peer exited at once"))?;
        let stdin = child.stdin.take();
        let stderr = Tail::default();
        if let Some(err) = child.stderr.take() {
            drain_into(err, stderr.clone());
        }
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;

        let mut peer = Peer {
            info: PeerInfo {
                plc_url: String::new(),
                pdses: Vec::new(),
                accounts: Vec::new(),
                admin_password: String::new(),
                startup_ms: 0,
            },
            child: Some(child),
            _stdin: stdin,
            pid,
            primary: PdsInfo {
                url: String::new(),
                firehose_url: String::new(),
                did: String::new(),
                port: 0,
                handle_domain: String::new(),
            },
            data_dir,
            info_path: info_path.clone(),
            node: node.to_path_buf(),
            dir: dir.to_path_buf(),
            stderr,
            http: XrpcClient::new()?,
        };
        // From here on, an error drops `peer`, which kills the child.
        let ready = tokio::time::timeout(opts.startup_timeout, wait_ready(stdout)).await;
        let path = match ready {
            Ok(Ok(path)) => path,
            Ok(Err(e)) => {
                // Give the stderr reader a moment to catch the exit message.
                tokio::time::sleep(Duration::from_millis(200)).await;
                bail!(
                    "the peer did not start: {e:#}\n--- peer stderr ---\n{}",
                    peer.stderr.text()
                );
            }
            Err(_) => bail!(
                "the peer was not READY within {:?}\n--- peer stderr ---\n{}",
                opts.startup_timeout,
                peer.stderr.text()
            ),
        };
        let text = tokio::fs::read_to_string(&path)
            .await
            .with_context(|| format!("reading the peer info {}", path.display()))?;
        peer.info =
            PeerInfo::from_json(&text).with_context(|| format!("parsing {}", path.display()))?;
        peer.primary = peer
            .info
            .pdses
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("the peer reported no PDS"))?;
        Ok(peer)
    }

    /// What the peer reported: URLs, accounts, keys.
    pub fn info(&self) -> &PeerInfo {
        &self.info
    }

    /// The accounts created at start-up.
    pub fn accounts(&self) -> &[Account] {
        &self.info.accounts
    }

    /// The first (or only) PDS.
    pub fn pds(&self) -> &PdsInfo {
        &self.primary
    }

    /// An XRPC client (shared connection pool); methods take the base URL.
    pub fn xrpc(&self) -> &XrpcClient {
        &self.http
    }

    /// The PID of the Node process (for checking that it is gone afterwards).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `GET <plc>/<did>`: the DID document as the PLC serves it.
    pub async fn did_document(&self, did: &str) -> Result<serde_json::Value> {
        self.http
            .get_json(&format!("{}/{did}", self.info.plc_url))
            .await
    }

    /// `GET <plc>/<did>/data`: the PLC operation state (keys as did:key).
    pub async fn plc_data(&self, did: &str) -> Result<serde_json::Value> {
        self.http
            .get_json(&format!("{}/{did}/data", self.info.plc_url))
            .await
    }

    /// The peer-info JSON file (input of the scripts in `tests/peer`).
    pub fn info_path(&self) -> &Path {
        &self.info_path
    }

    /// Runs a Node script of `tests/peer` against this peer (`--peer <info>`
    /// is added), waits for it, and parses the JSON it prints on stdout.
    /// Fails with the script's stderr if it exits non-zero.
    pub async fn run_script(&self, script: &str, args: &[&str]) -> Result<serde_json::Value> {
        let out = Command::new(&self.node)
            .current_dir(&self.dir)
            .arg(script)
            .arg("--peer")
            .arg(&self.info_path)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("running {script}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "{script} {args:?} failed ({}):\n{stdout}\n--- stderr ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_str(&stdout).with_context(|| format!("{script} printed no JSON: {stdout}"))
    }

    /// Writes `ops` operations of dev.guildhall.* records (create / put /
    /// delete / applyWrites mix, `concurrency` in flight) with `load.mjs`;
    /// returns its throughput summary.
    pub async fn load(&self, ops: usize, concurrency: usize) -> Result<serde_json::Value> {
        let (ops, conc) = (ops.to_string(), concurrency.to_string());
        self.run_script("load.mjs", &["--count", &ops, "--concurrency", &conc])
            .await
    }

    /// Records the firehose of every PDS from cursor 0 into `out` (frames
    /// file, see [`crate::read_frames`]) while `ops` operations are written,
    /// until every repo's latest commit has arrived (`record-stream.mjs`).
    pub async fn record_stream(
        &self,
        out: &Path,
        ops: usize,
        concurrency: usize,
    ) -> Result<serde_json::Value> {
        let (ops, conc) = (ops.to_string(), concurrency.to_string());
        let out = out
            .to_str()
            .ok_or_else(|| anyhow!("non-UTF-8 path {}", out.display()))?;
        self.run_script(
            "record-stream.mjs",
            &["--out", out, "--count", &ops, "--concurrency", &conc],
        )
        .await
    }

    /// Runs every `#commit` of a frames file through Bluesky's reference
    /// consumer (`@atproto/sync` Firehose, signatures and MST proofs on,
    /// keys from this peer's PLC) with `bench-verify.mjs`; returns its JSON
    /// (commits, ops, opsVerified, failures, commitsPerSecond, …). Fails if
    /// any commit or op does not verify.
    pub async fn verify_with_reference(&self, frames: &Path) -> Result<serde_json::Value> {
        let frames = frames
            .to_str()
            .ok_or_else(|| anyhow!("non-UTF-8 path {}", frames.display()))?;
        self.run_script("bench-verify.mjs", &["--frames", frames])
            .await
    }

    /// Stops the peer with SIGTERM (the PDSes and the PLC close cleanly),
    /// waits up to `grace` for it to exit, then kills it. Returns whether it
    /// exited by itself with status 0.
    pub async fn shutdown(mut self, grace: Duration) -> Result<bool> {
        let Some(mut child) = self.child.take() else {
            return Ok(false);
        };
        // tokio only sends SIGKILL; SIGTERM goes through kill(1), which
        // keeps this crate free of unsafe code and of a libc dependency.
        let term = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .context("running kill -TERM")?;
        if !term.success() {
            bail!("kill -TERM {} failed: {term}", self.pid);
        }
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(status) => Ok(status.context("waiting for the peer")?.success()),
            Err(_) => {
                child
                    .kill()
                    .await
                    .context("killing the peer after the grace period")?;
                Ok(false)
            }
        }
    }
}

/// Reads the peer's stdout until `READY <path>`; keeps draining it after
/// that so the pipe never fills.
async fn wait_ready<R: AsyncRead + Unpin + Send + 'static>(stdout: R) -> Result<PathBuf> {
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines
        .next_line()
        .await
        .context("reading the peer's stdout")?
    {
        if let Some(path) = line.strip_prefix("READY ") {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(PathBuf::from(path.trim()));
        }
    }
    bail!("the peer exited before READY")
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            // Reap it here, synchronously, so the PID is really gone when
            // drop returns (SIGKILL takes effect in milliseconds).
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
