//! `login`, `logout` and `whoami`: app-password sessions with the operator's own PDS.

use std::io::IsTerminal as _;

use serde_json::{Value, json};

use super::LoginArgs;
use super::error::CliError;
use super::identity::parse_actor;
use super::output::{escape, say, warn};
use super::secret::Secret;
use super::session::{self, Authed, StoredSession};
use super::xrpc::Xrpc;

/// Turns createSession's refusals into what the person should do.
fn login_error(e: CliError, account: &str) -> CliError {
    let CliError::Xrpc {
        host,
        name,
        message,
        ..
    } = &e
    else {
        return e;
    };
    let detail = if message.is_empty() {
        name.clone()
    } else {
        format!("{name}: {message}")
    };
    match name.as_str() {
        "AuthenticationRequired" => CliError::Login(format!(
            "{host} did not accept the password for {account} ({detail}). Check the handle and \
             use an app password (your PDS account settings → App passwords)."
        )),
        "AuthFactorTokenRequired" => CliError::Login(format!(
            "{host} wants a sign-in code sent by e-mail for {account} ({detail}). Log in with \
             an app password instead: it needs no code."
        )),
        "AccountTakedown" | "AccountDeactivated" => CliError::Login(format!(
            "{host} says the account {account} cannot log in ({detail})"
        )),
        _ => e,
    }
}

fn read_password(account: &str, given: Option<Secret>) -> Result<Secret, CliError> {
    if let Some(p) = given.filter(|p| !p.is_empty()) {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::arg(
            "no password: pass --password or set GUILDHALL_APP_PASSWORD (or run in a terminal \
             to be asked)",
        ));
    }
    rpassword::prompt_password(format!("App password for {}: ", escape(account)))
        .map(Secret::new)
        .map_err(|e| CliError::Local(format!("cannot read the password: {e}")))
}

pub async fn login(args: LoginArgs) -> Result<(), CliError> {
    let actor = parse_actor(&args.account)?;
    let xrpc = Xrpc::new()?;
    let resolved = args.identity.resolve(&xrpc, &actor).await?;
    let password = read_password(&args.account, args.password)?;
    let out = xrpc
        .procedure(
            &resolved.pds,
            "com.atproto.server.createSession",
            Some(&json!({ "identifier": resolved.did.as_str(), "password": password.expose() })),
            None,
        )
        .await
        .map_err(|e| login_error(e, &args.account))?;
    let field = |k: &str| out.get(k).and_then(Value::as_str).map(str::to_owned);
    let (Some(did), Some(access_jwt), Some(refresh_jwt)) =
        (field("did"), field("accessJwt"), field("refreshJwt"))
    else {
        return Err(CliError::UnexpectedAnswer {
            host: resolved.pds.to_string(),
            message: "createSession gave no session".into(),
        });
    };
    if did != resolved.did.as_str() {
        return Err(CliError::Login(format!(
            "{} logged you in as {did}, not {}: refusing to keep that session",
            resolved.pds,
            resolved.did.as_str()
        )));
    }
    let stored = StoredSession {
        did,
        handle: field("handle").or(resolved.handle),
        pds: resolved.pds.to_string(),
        access_jwt: Secret::new(access_jwt),
        refresh_jwt: Secret::new(refresh_jwt),
    };
    let path = session::save(&stored)?;
    say(format!(
        "Logged in as {} ({}) on {}",
        stored.handle.as_deref().unwrap_or("(no handle)"),
        stored.did,
        stored.pds
    ));
    say(format!("Session saved to {}", path.display()));
    Ok(())
}

pub async fn logout() -> Result<(), CliError> {
    let Some(stored) = session::load()? else {
        say("Not logged in.");
        return Ok(());
    };
    // Ending the session server-side is a courtesy: the local copy goes either way.
    let xrpc = Xrpc::new()?;
    if let Ok(pds) = url::Url::parse(&stored.pds)
        && let Err(e) = xrpc
            .procedure(
                &pds,
                "com.atproto.server.deleteSession",
                None,
                Some(stored.refresh_jwt.expose()),
            )
            .await
    {
        warn(format!(
            "note: the PDS did not end the session ({e}); forgetting it here anyway"
        ));
    }
    session::remove()?;
    say(format!(
        "Logged out {}",
        stored.handle.as_deref().unwrap_or(&stored.did)
    ));
    Ok(())
}

pub async fn whoami() -> Result<(), CliError> {
    let xrpc = Xrpc::new()?;
    let mut authed = Authed::open(&xrpc).await?;
    let out = authed.query("com.atproto.server.getSession", &[]).await?;
    let handle = out
        .get("handle")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| authed.session().handle.clone());
    say(format!("did:    {}", authed.did()));
    say(format!("handle: {}", handle.as_deref().unwrap_or("(none)")));
    say(format!("pds:    {}", authed.pds()));
    say(format!("session: {}", session::session_path()?.display()));
    Ok(())
}
