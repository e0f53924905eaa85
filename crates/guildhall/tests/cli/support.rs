//! Running the real `guildhall` binary against a reference peer: environment, output capture,
//! and small helpers shared by the CLI tests.

use std::path::{Path, PathBuf};
use std::process::Output;

use guildhall_testkit::{Account, Peer, PeerOptions};
use serde_json::{Value, json};
use tempfile::TempDir;

pub type TestResult = anyhow::Result<()>;

/// What a finished `guildhall` run said.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Fails the test with both streams unless the exit code is `code`.
    #[track_caller]
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The value after `prefix` on the first stdout line starting with it.
    pub fn line_value(&self, prefix: &str) -> Option<String> {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_owned())
    }
}

/// A peer plus a private config dir: one operator's terminal.
pub struct Term {
    pub peer: Peer,
    pub dir: TempDir,
    /// Extra environment for every run.
    pub env: Vec<(String, String)>,
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_guildhall"))
}

impl Term {
    /// Starts a peer with `accounts` accounts; runs use a fresh config dir and resolve
    /// identities through the peer (PLC, and the PDS as handle resolver).
    pub async fn start(accounts: usize) -> anyhow::Result<Self> {
        let peer = Peer::start(PeerOptions {
            accounts,
            ..PeerOptions::default()
        })
        .await?;
        let dir = tempfile::tempdir()?;
        let env = vec![
            ("GUILDHALL_PLC".to_owned(), peer.info().plc_url.clone()),
            (
                "GUILDHALL_HANDLE_RESOLVER".to_owned(),
                peer.pds().url.clone(),
            ),
            (
                "GUILDHALL_CONFIG_DIR".to_owned(),
                dir.path().join("config").display().to_string(),
            ),
        ];
        Ok(Self { peer, dir, env })
    }

    pub fn account(&self, i: usize) -> &Account {
        &self.peer.accounts()[i]
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn session_file(&self) -> PathBuf {
        self.dir.path().join("config").join("session.json")
    }

    /// Runs `guildhall <args>` with this terminal's environment.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<Run> {
        self.run_with(args, &[]).await
    }

    pub async fn run_with(&self, args: &[&str], extra: &[(&str, &str)]) -> anyhow::Result<Run> {
        let mut cmd = self.command(args);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        finish(cmd, args).await
    }

    /// `guildhall <args>` with this terminal's environment, to adjust before running.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(bin());
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        scrub(&mut cmd);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Creates an app password for an account (what a real user logs in with).
    pub async fn app_password(&self, i: usize) -> anyhow::Result<String> {
        let a = self.account(i);
        let out = self
            .peer
            .xrpc()
            .procedure(
                &a.pds_url,
                "com.atproto.server.createAppPassword",
                Some(&a.access_jwt),
                &json!({ "name": format!("guildhall-cli-{}", std::process::id()) }),
            )
            .await?;
        out.get("password")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("createAppPassword gave no password: {out}"))
    }

    /// Logs account `i` in with a fresh app password.
    pub async fn login(&self, i: usize) -> anyhow::Result<Run> {
        let password = self.app_password(i).await?;
        let handle = self.account(i).handle.clone();
        Ok(self
            .run(&["login", &handle, "--password", &password])
            .await?
            .expect(0))
    }

    /// Every record of one collection in account `i`'s repo, as (rkey, cid, value).
    pub async fn records(
        &self,
        i: usize,
        collection: &str,
    ) -> anyhow::Result<Vec<(String, String, Value)>> {
        let a = self.account(i);
        Ok(self
            .peer
            .xrpc()
            .list_records(&a.pds_url, &a.did, collection)
            .await?
            .into_iter()
            .map(|r| (r.rkey().to_owned(), r.cid, r.value))
            .collect())
    }

    /// Writes a file under the terminal's temp dir.
    pub fn write(&self, name: &str, text: &str) -> anyhow::Result<PathBuf> {
        let p = self.path(name);
        std::fs::write(&p, text)?;
        Ok(p)
    }
}

/// Runs a prepared command (two minutes at most) and collects what it said.
pub async fn finish(mut cmd: tokio::process::Command, args: &[&str]) -> anyhow::Result<Run> {
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
        .await
        .map_err(|_| anyhow::anyhow!("guildhall {args:?} did not finish in 120 s"))??;
    Ok(Run::from(out))
}

/// Keeps the user's environment from leaking in: proxies (loopback must be direct) and any
/// GUILDHALL_* settings of the machine.
pub fn scrub(cmd: &mut tokio::process::Command) {
    for (k, _) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        let upper = k.to_ascii_uppercase();
        if upper.starts_with("GUILDHALL_") || upper.ends_with("_PROXY") {
            cmd.env_remove(k);
        }
    }
    cmd.env("GUILDHALL_LOG", "warn");
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The example manifest `guildhall init` writes, read back after an `init` run.
pub async fn example_manifest(term: &Term) -> anyhow::Result<String> {
    let path = term.path("example.yaml");
    if !path.exists() {
        term.run(&["init", &path.display().to_string()])
            .await?
            .expect(0);
    }
    Ok(std::fs::read_to_string(path)?)
}

/// Waits until the terminal of the process under `ancestor` (a `script` session) has echo
/// off, read with `stty -a` on its `/dev/pts` device. Linux only, as `/proc` is.
pub async fn wait_for_echo_off(ancestor: u32) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(tty) = descendant_tty(ancestor) {
            let out = tokio::process::Command::new("stty")
                .args(["-F", &tty, "-a"])
                .output()
                .await?;
            let settings = String::from_utf8_lossy(&out.stdout);
            if settings.split_whitespace().any(|w| w == "-echo") {
                return Ok(());
            }
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the terminal's echo did not go off in 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The `/dev/pts/N` that the standard input of some descendant of `ancestor` is.
fn descendant_tty(ancestor: u32) -> Option<String> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces, so split after its `)`.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut frontier = vec![ancestor];
    while let Some(p) = frontier.pop() {
        for &(child, _) in parents.iter().filter(|(_, pp)| *pp == p) {
            if let Ok(link) = std::fs::read_link(format!("/proc/{child}/fd/0"))
                && link.starts_with("/dev/pts/")
            {
                return Some(link.to_string_lossy().into_owned());
            }
            frontier.push(child);
        }
    }
    None
}
