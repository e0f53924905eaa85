//! The stored login: one JSON file in the user's config directory (mode 0600), and an
//! authenticated PDS client that refreshes the access token when it has expired.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::error::CliError;
use super::xrpc::Xrpc;

/// Environment variable overriding where the session file lives (tests use a temp dir).
pub const CONFIG_DIR_ENV: &str = "GUILDHALL_CONFIG_DIR";
const SESSION_FILE: &str = "session.json";
/// Refresh a little before the access token's `exp`, so a request does not race it.
const EXPIRY_MARGIN_SECS: i64 = 30;

/// What `login` stores.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSession {
    pub did: String,
    pub handle: Option<String>,
    /// The PDS the session belongs to (from the DID document at login).
    pub pds: String,
    pub access_jwt: String,
    pub refresh_jwt: String,
}

/// `$GUILDHALL_CONFIG_DIR`, else `<user config dir>/guildhall`.
pub fn config_dir() -> Result<PathBuf, CliError> {
    if let Some(dir) = std::env::var_os(CONFIG_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::config_dir()
        .map(|d| d.join("guildhall"))
        .ok_or_else(|| {
            CliError::Session(format!(
                "cannot find your config directory: set {CONFIG_DIR_ENV}"
            ))
        })
}

/// Where the session is stored.
pub fn session_path() -> Result<PathBuf, CliError> {
    Ok(config_dir()?.join(SESSION_FILE))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The stored session, if any.
pub fn load() -> Result<Option<StoredSession>, CliError> {
    let path = session_path()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        CliError::Session(format!(
            "{}: unreadable session ({e}); run `guildhall logout` and log in again",
            path.display()
        ))
    })
}

/// Writes the session readable by its owner only: a private temp file renamed over the old one,
/// so a crash never leaves a half-written or world-readable token behind.
pub fn save(session: &StoredSession) -> Result<PathBuf, CliError> {
    let path = session_path()?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    create_private_dir(&dir).map_err(io(&dir))?;
    let tmp = dir.join(format!(".{SESSION_FILE}.{}", std::process::id()));
    let text = serde_json::to_vec_pretty(session)
        .map_err(|e| CliError::Session(format!("cannot encode the session: {e}")))?;
    {
        let mut f = private_file(&tmp).map_err(io(&tmp))?;
        f.write_all(&text).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(path)
}

/// Deletes the stored session; `false` when there was none.
pub fn remove() -> Result<bool, CliError> {
    let path = session_path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(&path)(e)),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

/// The `exp` claim of a JWT, without verifying it (the PDS does that); `None` if unreadable.
pub fn jwt_expiry(jwt: &str) -> Option<i64> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_i64()
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// XRPC error names meaning "this access token is no good any more".
fn token_rejected(e: &CliError) -> bool {
    matches!(e.xrpc_name(), Some("ExpiredToken" | "InvalidToken"))
}

/// A PDS client acting as the logged-in account.
#[derive(Debug)]
pub struct Authed {
    xrpc: Xrpc,
    session: StoredSession,
    pds: Url,
}

impl Authed {
    /// Loads the stored session; refreshes it first if its access token has expired.
    pub async fn open(xrpc: &Xrpc) -> Result<Self, CliError> {
        let session = load()?.ok_or(CliError::NotLoggedIn)?;
        let pds = Url::parse(&session.pds).map_err(|e| {
            CliError::Session(format!("stored PDS URL {:?} is invalid ({e})", session.pds))
        })?;
        let mut me = Self {
            xrpc: xrpc.clone(),
            session,
            pds,
        };
        if jwt_expiry(&me.session.access_jwt)
            .is_some_and(|exp| exp <= now_secs() + EXPIRY_MARGIN_SECS)
        {
            me.refresh().await?;
        }
        Ok(me)
    }

    pub fn did(&self) -> &str {
        &self.session.did
    }

    pub fn session(&self) -> &StoredSession {
        &self.session
    }

    pub fn pds(&self) -> &Url {
        &self.pds
    }

    /// Trades the refresh token for new tokens and stores them.
    pub async fn refresh(&mut self) -> Result<(), CliError> {
        let out = self
            .xrpc
            .procedure(
                &self.pds,
                "com.atproto.server.refreshSession",
                None,
                Some(&self.session.refresh_jwt),
            )
            .await
            .map_err(|e| match e {
                CliError::Xrpc { name, .. }
                    if matches!(
                        name.as_str(),
                        "ExpiredToken" | "InvalidToken" | "AuthenticationRequired"
                    ) =>
                {
                    CliError::SessionExpired(name)
                }
                other => other,
            })?;
        let field = |k: &str| out.get(k).and_then(Value::as_str).map(str::to_owned);
        let (Some(access), Some(refresh)) = (field("accessJwt"), field("refreshJwt")) else {
            return Err(CliError::UnexpectedAnswer {
                host: self.pds.to_string(),
                message: "refreshSession gave no tokens".into(),
            });
        };
        self.session.access_jwt = access;
        self.session.refresh_jwt = refresh;
        if let Some(h) = field("handle") {
            self.session.handle = Some(h);
        }
        save(&self.session)?;
        Ok(())
    }

    /// A query to the account's PDS, refreshing once if the access token was refused.
    pub async fn query(
        &mut self,
        nsid: &str,
        params: &[(&str, String)],
    ) -> Result<Value, CliError> {
        match self
            .xrpc
            .query(&self.pds, nsid, params, Some(&self.session.access_jwt))
            .await
        {
            Err(e) if token_rejected(&e) => {
                self.refresh().await?;
                self.xrpc
                    .query(&self.pds, nsid, params, Some(&self.session.access_jwt))
                    .await
            }
            other => other,
        }
    }

    /// A procedure on the account's PDS, refreshing once if the access token was refused.
    pub async fn procedure(&mut self, nsid: &str, body: &Value) -> Result<Value, CliError> {
        match self
            .xrpc
            .procedure(&self.pds, nsid, Some(body), Some(&self.session.access_jwt))
            .await
        {
            Err(e) if token_rejected(&e) => {
                self.refresh().await?;
                self.xrpc
                    .procedure(&self.pds, nsid, Some(body), Some(&self.session.access_jwt))
                    .await
            }
            other => other,
        }
    }

    /// `com.atproto.repo.getRecord` in the account's own repo; `None` when it does not exist.
    pub async fn get_own_record(
        &mut self,
        collection: &str,
        rkey: &str,
    ) -> Result<Option<Value>, CliError> {
        let params = [
            ("repo", self.session.did.clone()),
            ("collection", collection.to_owned()),
            ("rkey", rkey.to_owned()),
        ];
        match self.query("com.atproto.repo.getRecord", &params).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.xrpc_name() == Some("RecordNotFound") => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exp_from_a_jwt() {
        // {"alg":"none"} . {"exp":1700000000,"sub":"did:plc:x"} . (no signature)
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"none"}"#),
            b64(r#"{"exp":1700000000,"sub":"did:plc:x"}"#)
        );
        assert_eq!(jwt_expiry(&jwt), Some(1_700_000_000));
        assert_eq!(jwt_expiry("not-a-jwt"), None);
        assert_eq!(jwt_expiry("a.!!!.c"), None);
    }
}
