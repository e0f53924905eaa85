//! The stored login: one JSON file in the user's config directory (file 0600, directory 0700,
//! written atomically), and an authenticated PDS client that refreshes the access token when
//! it has expired.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::error::CliError;
use super::secret::Secret;
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
    pub access_jwt: Secret,
    pub refresh_jwt: Secret,
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
    load_from(&session_path()?)
}

/// The session stored at `path`, if any.
pub fn load_from(path: &Path) -> Result<Option<StoredSession>, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        CliError::Session(format!(
            "{}: unreadable session ({e}); run `guildhall logout` and log in again",
            path.display()
        ))
    })
}

/// Writes the session readable by its owner only, into a private (0700) config directory.
pub fn save(session: &StoredSession) -> Result<PathBuf, CliError> {
    save_in(&config_dir()?, session)
}

/// [`save`] into `dir`: the JSON goes to a fresh temp file beside the session file (created
/// with `O_EXCL`, mode 0600, so a file or symlink planted at that name is never opened), is
/// synced, then renamed over the old file. A reader sees the old session or the new one,
/// never a torn or world-readable file, however many `save`s run at once.
pub fn save_in(dir: &Path, session: &StoredSession) -> Result<PathBuf, CliError> {
    let text = serde_json::to_vec_pretty(session)
        .map_err(|e| CliError::Session(format!("cannot encode the session: {e}")))?;
    ensure_private_dir(dir)?;
    write_atomic(dir, SESSION_FILE, &text, temp_names())
}

/// Candidate temp names, unique per process and call: the pid, the time and a counter.
fn temp_names() -> impl Iterator<Item = String> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let pid = std::process::id();
    (0..TEMP_ATTEMPTS).map(move |_| {
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!(".{SESSION_FILE}.{pid}.{nanos}.{n}.tmp")
    })
}

/// How many temp names are tried before giving up (each taken name is skipped, not reused).
const TEMP_ATTEMPTS: usize = 16;

/// Writes `bytes` to `dir/name` through the first of `temps` that can be created anew.
fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    temps: impl IntoIterator<Item = String>,
) -> Result<PathBuf, CliError> {
    let path = dir.join(name);
    for temp in temps {
        let tmp = dir.join(temp);
        let mut f = match new_private_file(&tmp) {
            Ok(f) => f,
            // Someone (or something) holds this name: leave it alone and try the next.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(&tmp)(e)),
        };
        let written = f
            .write_all(bytes)
            .and_then(|()| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &path));
        drop(f);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&path)(e));
        }
        // The rename is durable only once the directory entry is.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        return Ok(path);
    }
    Err(CliError::Session(format!(
        "{}: could not create a temp file to write the session (every name tried exists)",
        dir.display()
    )))
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

/// Creates the config directory 0700, or tightens an existing one that others can read or
/// enter to 0700; a directory that cannot be tightened (not ours) is refused, since whoever
/// can write to it can swap the session file.
#[cfg(unix)]
fn ensure_private_dir(dir: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    let meta = std::fs::metadata(dir).map_err(io(dir))?;
    if !meta.is_dir() {
        return Err(CliError::Session(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            CliError::Session(format!(
                "{} is open to other users (mode {mode:03o}) and cannot be made private ({e}): \
                 chmod 700 it, or set {CONFIG_DIR_ENV} to a directory of your own",
                dir.display()
            ))
        })?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn ensure_private_dir(dir: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(io(dir))
}

/// Creates `path` (never opening an existing file or following a symlink there) for the owner
/// only; the mode is set at creation, so the token is never readable by others, even briefly.
#[cfg(unix)]
fn new_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn new_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
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
        if jwt_expiry(me.session.access_jwt.expose())
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
                Some(self.session.refresh_jwt.expose()),
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
        self.session.access_jwt = Secret::new(access);
        self.session.refresh_jwt = Secret::new(refresh);
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
            .query(
                &self.pds,
                nsid,
                params,
                Some(self.session.access_jwt.expose()),
            )
            .await
        {
            Err(e) if token_rejected(&e) => {
                self.refresh().await?;
                self.xrpc
                    .query(
                        &self.pds,
                        nsid,
                        params,
                        Some(self.session.access_jwt.expose()),
                    )
                    .await
            }
            other => other,
        }
    }

    /// A procedure on the account's PDS, refreshing once if the access token was refused.
    pub async fn procedure(&mut self, nsid: &str, body: &Value) -> Result<Value, CliError> {
        match self
            .xrpc
            .procedure(
                &self.pds,
                nsid,
                Some(body),
                Some(self.session.access_jwt.expose()),
            )
            .await
        {
            Err(e) if token_rejected(&e) => {
                self.refresh().await?;
                self.xrpc
                    .procedure(
                        &self.pds,
                        nsid,
                        Some(body),
                        Some(self.session.access_jwt.expose()),
                    )
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

    fn session(token: &str) -> StoredSession {
        StoredSession {
            did: "did:plc:abcdefghijklmnopqrstuvwx".into(),
            handle: Some("alice.test".into()),
            pds: "https://pds.example.com".into(),
            access_jwt: Secret::new(format!("access-{token}")),
            refresh_jwt: Secret::new(format!("refresh-{token}")),
        }
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::symlink_metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    #[test]
    fn debug_never_shows_a_token() -> Result<(), Box<dyn std::error::Error>> {
        let s = session("eyJzZWNyZXQiOnRydWV9");
        let authed = Authed {
            xrpc: Xrpc::new()?,
            session: s.clone(),
            pds: Url::parse(&s.pds)?,
        };
        for shown in [format!("{s:?}"), format!("{s:#?}"), format!("{authed:?}")] {
            assert!(!shown.contains("eyJzZWNyZXQiOnRydWV9"), "{shown}");
            assert!(shown.contains("[redacted]"), "{shown}");
            assert!(
                shown.contains("did:plc:abcdefghijklmnopqrstuvwx"),
                "{shown}"
            );
        }
        // The file keeps the tokens as plain strings, as before.
        let json = serde_json::to_value(&s)?;
        assert_eq!(json["accessJwt"], "access-eyJzZWNyZXQiOnRydWV9");
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn a_new_config_dir_is_0700_and_the_file_0600() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("a/b/guildhall");
        let path = save_in(&dir, &session("one"))?;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(
            load_from(&path)?.map(|s| s.access_jwt),
            Some(Secret::new("access-one"))
        );
        // Nothing but the session is left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        assert_eq!(names, [std::ffi::OsString::from(SESSION_FILE)]);
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn a_loose_config_dir_is_tightened() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("guildhall");
        std::fs::create_dir(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let path = save_in(&dir, &session("one"))?;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_at_the_temp_path_is_not_followed() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("guildhall");
        ensure_private_dir(&dir)?;
        // An attacker's file, and a link to it planted where the temp file would go.
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "untouched")?;
        std::os::unix::fs::symlink(&victim, dir.join("planted"))?;
        let dangling = tmp.path().join("nowhere");
        std::os::unix::fs::symlink(&dangling, dir.join("dangling"))?;
        let text = serde_json::to_vec(&session("secret-token"))?;
        let path = write_atomic(
            &dir,
            SESSION_FILE,
            &text,
            [
                "planted".to_owned(),
                "dangling".to_owned(),
                "fresh".to_owned(),
            ],
        )?;
        assert_eq!(std::fs::read_to_string(&victim)?, "untouched");
        assert!(!dangling.exists(), "the dangling link was followed");
        assert_eq!(std::fs::read_link(dir.join("planted"))?, victim);
        assert_eq!(std::fs::read(&path)?, text);
        assert_eq!(mode(&path), 0o600);
        // With every name taken, nothing is written and the error says why.
        let err = write_atomic(&dir, SESSION_FILE, b"{}", ["planted".to_owned()]);
        assert!(matches!(err, Err(CliError::Session(_))), "{err:?}");
        assert_eq!(std::fs::read(&path)?, text);
        Ok(())
    }

    #[test]
    fn concurrent_saves_never_leave_a_torn_file() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("guildhall");
        let path = save_in(&dir, &session("start"))?;
        let stop = std::sync::atomic::AtomicBool::new(false);
        let reads = std::thread::scope(|scope| -> Result<u32, Box<dyn std::error::Error>> {
            let writers: Vec<_> = (0..4)
                .map(|w| {
                    let dir = &dir;
                    scope.spawn(move || {
                        for i in 0..200 {
                            // Tokens of different lengths, so a torn file cannot parse.
                            let token = format!("{w}-{i}-{}", "x".repeat((w * 37 + i) % 300));
                            save_in(dir, &session(&token))?;
                        }
                        Ok::<_, CliError>(())
                    })
                })
                .collect();
            let reader = scope.spawn(|| {
                let mut reads = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let s = load_from(&path)?.ok_or(CliError::NotLoggedIn)?;
                    let token = s
                        .access_jwt
                        .expose()
                        .trim_start_matches("access-")
                        .to_owned();
                    assert_eq!(s.refresh_jwt.expose(), format!("refresh-{token}"));
                    reads += 1;
                }
                Ok::<_, CliError>(reads)
            });
            let written: Vec<_> = writers.into_iter().map(|w| w.join()).collect();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for w in written {
                w.map_err(|_| "writer panicked")??;
            }
            Ok(reader.join().map_err(|_| "reader panicked")??)
        })?;
        assert!(reads > 0);
        let left: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
        assert_eq!(left.len(), 1, "temp files left behind: {left:?}");
        Ok(())
    }

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
