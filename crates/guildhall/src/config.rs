//! The command line: one clap struct per command, every flag with an environment fallback.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use url::Url;

/// Guildhall: the open registry and trust layer where AI agents find, judge and hire other
/// agents' services, on the AT Protocol.
#[derive(Debug, Parser)]
#[command(
    name = "guildhall",
    version,
    about,
    after_help = "Exit codes: 0 success; 2 invalid input (a bad manifest or argument; nothing was written); 1 any other failure."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the indexer and the AppView in one process.
    Serve(ServeArgs),
    /// Run the indexer only (no HTTP server).
    Ingest(ServeArgs),
    /// Index every repo a PDS (listRepos) or relay (listReposByCollection) lists, from getRepo.
    Backfill {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        ingest: IngestArgs,
        /// The host to enumerate: a PDS or a relay (http or https URL).
        #[arg(long, env = "GUILDHALL_BACKFILL_FROM")]
        from: Url,
        /// Repos fetched at once.
        #[arg(long, env = "GUILDHALL_BACKFILL_CONCURRENCY", default_value_t = 4)]
        concurrency: usize,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Operator commands: publish, endorse and inspect from the terminal.
    #[command(flatten)]
    Operator(crate::cli::OperatorCommand),
}

/// Where the index lives.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// The database: a SQLite file path (created on first run) or a postgres:// URL.
    #[arg(long, env = "GUILDHALL_DB", default_value = "./guildhall.db")]
    pub db: String,
}

/// Where records come from and how identities are resolved.
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Firehose endpoints to follow: a relay, or PDSes directly (repeat, or comma-separate in
    /// the environment variable).
    #[arg(
        long,
        env = "GUILDHALL_FIREHOSE",
        value_delimiter = ',',
        default_value = "wss://bsky.network"
    )]
    pub firehose: Vec<Url>,
    /// The PLC directory that resolves did:plc identities.
    #[arg(long, env = "GUILDHALL_PLC", default_value = "https://plc.directory")]
    pub plc: Url,
    /// An XRPC service answering com.atproto.identity.resolveHandle, used to check handles;
    /// without it, handles are checked in DNS (TXT _atproto.<handle>), then at
    /// https://<handle>/.well-known/atproto-did.
    #[arg(long, env = "GUILDHALL_HANDLE_RESOLVER")]
    pub handle_resolver: Option<Url>,
    /// The DNS server (ip:port) for handle TXT look-ups; default: the system's.
    #[arg(long, env = "GUILDHALL_DNS", value_name = "IP:PORT")]
    pub dns: Option<std::net::SocketAddr>,
    /// Parallel verification workers (one DID always uses the same one).
    #[arg(long, env = "GUILDHALL_SHARDS", default_value_t = 2)]
    pub shards: usize,
    /// Development only: let PDS, did:web and handle URLs from DID documents reach loopback,
    /// private and link-local addresses. Without it such URLs are refused, so a DID document
    /// cannot point Guildhall at its own network or a cloud metadata service.
    #[arg(long, env = "GUILDHALL_ALLOW_PRIVATE_ADDRESSES")]
    pub allow_private_addresses: bool,
    /// Largest repo export (getRepo) accepted, in bytes.
    #[arg(long, env = "GUILDHALL_MAX_REPO_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_repo_bytes: usize,
}

/// `serve` and `ingest`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    #[command(flatten)]
    pub ingest: IngestArgs,
    /// Address of the AppView's public HTTP server (the XRPC methods).
    #[arg(long, env = "GUILDHALL_LISTEN", default_value = "127.0.0.1:2470")]
    pub listen: SocketAddr,
    /// Address of the admin HTTP server (/status and /metrics); off unless given. Keep it on
    /// loopback or a private network: it has no rate limit and shows operational state.
    #[arg(long, env = "GUILDHALL_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Networks of reverse proxies in front of the AppView (CIDR, repeat or comma-separate):
    /// only a peer inside one has its X-Forwarded-For believed, and the right-most address
    /// not in them is the client the rate limit counts. Empty: the header is ignored.
    #[arg(
        long = "trusted-proxy",
        env = "GUILDHALL_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Secret (64 hex digits) that signs search cursors. Give every AppView serving one index
    /// the same key; without it a key is generated once and kept in the database, which does
    /// the same for processes sharing it.
    #[arg(long, env = "GUILDHALL_CURSOR_KEY", value_parser = parse_key, hide_env_values = true)]
    pub cursor_key: Option<SecretKey>,
    /// Most services of one operator outside the viewer's and anchors' reach that a search
    /// ranks (one account cannot fill the answers); operators they reach keep up to 200.
    #[arg(long, env = "GUILDHALL_CANDIDATES_PER_OPERATOR", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub candidates_per_operator: u32,
    /// Serve queries only; do not follow any firehose.
    #[arg(long, env = "GUILDHALL_NO_INGEST")]
    pub no_ingest: bool,
    /// Operators trusted by configuration: the seeds of ranking when a query has no viewer or
    /// no path from it (repeat, or comma-separate in the environment variable).
    #[arg(long = "anchor", env = "GUILDHALL_ANCHORS", value_delimiter = ',')]
    pub anchors: Vec<String>,
    /// Requests per minute allowed per client IP; 0 turns the limit off.
    #[arg(long, env = "GUILDHALL_RATE_LIMIT", default_value_t = 600)]
    pub rate_limit: u32,
    /// Public hostname of this AppView, for its did:web identity at /.well-known/did.json.
    #[arg(long, env = "GUILDHALL_HOSTNAME")]
    pub hostname: Option<String>,
    /// How often to check the database for changes another process wrote (`guildhall
    /// ingest` beside `serve --no-ingest`, or a `guildhall backfill`), rebuilding the trust
    /// graph when there are any (e.g. 30s, 5m, 1h; 0 turns it off). What this process
    /// ingests reaches the graph live.
    #[arg(long, env = "GUILDHALL_TRUST_REFRESH", default_value = "30s", value_parser = parse_interval)]
    pub trust_refresh: Duration,
}

/// 32 secret bytes from the command line; never printed.
#[derive(Clone)]
pub struct SecretKey(pub [u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// 64 hex digits.
pub fn parse_key(s: &str) -> Result<SecretKey, String> {
    let s = s.trim();
    if s.len() != 64 {
        return Err("a key is 64 hex digits (32 bytes)".to_owned());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
            .map_err(|_| "a key is 64 hex digits (32 bytes)".to_owned())?;
    }
    Ok(SecretKey(out))
}

/// An interval: `0`, or a whole number with a unit `ms`, `s`, `m` or `h`.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .filter(|&i| i > 0)
        .ok_or_else(|| format!("{s:?} is not an interval like 30s, 5m or 1h"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{num:?} is not a whole number"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("unknown unit {unit:?}: use ms, s, m or h")),
    };
    n.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_interval("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_interval("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_interval("0"), Ok(Duration::ZERO));
        for bad in ["", "s", "30", "30y", "-5s", "1.5s", "99999999999999999999h"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys() {
        let k = parse_key(&"0a".repeat(32)).map(|k| k.0);
        assert_eq!(k, Ok([10; 32]));
        for bad in [
            "",
            "0a",
            &"0a".repeat(33),
            &"zz".repeat(32),
            &"é".repeat(32),
        ] {
            assert!(parse_key(bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{:?}", SecretKey([7; 32])), "SecretKey(..)");
    }
}
