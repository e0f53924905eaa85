//! Where the app password and session tokens may go: never to a plain-http PDS off loopback,
//! whatever a DID document says, and never along a redirect. A fake server on loopback plays
//! the PLC directory and, as the CLI's HTTP proxy, every other host on the network, recording
//! each request — so a password that leaves is seen, not lost in a DNS failure.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::support::{Run, TestResult, bin, scrub};

const PASSWORD: &str = "pw-must-not-leave-1234";
const TOKEN: &str = "eyJhbGciOiJub25lIn0.eyJleHAiOjk5OTk5OTk5OTl9.token-must-not-leave";
/// did:plc identities whose documents name these PDSes.
const EVIL_LOCALHOST: &str = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
const PLAIN_HTTP: &str = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb";
const REDIRECTING: &str = "did:plc:cccccccccccccccccccccccc";
const LOOPBACK: &str = "did:plc:dddddddddddddddddddddddd";
const WEB_EVIL_LOCALHOST: &str = "did:web:localhost.evil.com";

/// One request the fake network saw.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    host: String,
    path: String,
    authorization: Option<String>,
    body: String,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn doc(did: &str, pds: &str) -> Response {
    axum::Json(json!({
        "id": did,
        "alsoKnownAs": ["at://someone.test"],
        "verificationMethod": [],
        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": pds}]
    }))
    .into_response()
}

async fn network(base: String, log: Log, req: Request<Body>) -> Response {
    // Through a proxy the target is in the request line; directly, in the Host header.
    let host = req
        .uri()
        .host()
        .map(str::to_owned)
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| h.split(':').next().unwrap_or_default().to_owned())
        })
        .unwrap_or_default();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if let Ok(mut l) = log.lock() {
        l.push(Seen {
            method: method.clone(),
            host: host.clone(),
            path: path.clone(),
            authorization,
            body,
        });
    }
    match (method, path.as_str()) {
        (Method::GET, p) if p == format!("/{EVIL_LOCALHOST}") => {
            doc(EVIL_LOCALHOST, "http://localhost.evil.com:2583")
        }
        (Method::GET, p) if p == format!("/{PLAIN_HTTP}") => {
            doc(PLAIN_HTTP, "http://pds.example.com")
        }
        (Method::GET, p) if p == format!("/{REDIRECTING}") => {
            doc(REDIRECTING, &format!("{base}/redirecting"))
        }
        (Method::GET, p) if p == format!("/{LOOPBACK}") => doc(LOOPBACK, &base),
        (Method::GET, "/.well-known/did.json") if host == "localhost.evil.com" => {
            doc(WEB_EVIL_LOCALHOST, "http://localhost.evil.com")
        }
        // A loopback PDS that sends the login on to a plain-http host (a 307 keeps the body).
        (Method::POST, "/redirecting/xrpc/com.atproto.server.createSession") => (
            StatusCode::TEMPORARY_REDIRECT,
            [(
                header::LOCATION,
                "http://pds.example.com/xrpc/com.atproto.server.createSession",
            )],
        )
            .into_response(),
        (_, p) if p.starts_with("/xrpc/") => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "AuthenticationRequired", "message": "no"})),
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn run(
    config: &std::path::Path,
    base: &str,
    args: &[&str],
    proxy: bool,
) -> anyhow::Result<Run> {
    let mut cmd = tokio::process::Command::new(bin());
    scrub(&mut cmd);
    cmd.args(args)
        .env("GUILDHALL_CONFIG_DIR", config)
        .env("GUILDHALL_PLC", base)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if proxy {
        for k in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"] {
            cmd.env(k, base);
        }
    }
    let out = cmd.output().await?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn leaked(log: &Log) -> Vec<Seen> {
    log.lock()
        .map(|l| {
            l.iter()
                .filter(|s| {
                    s.body.contains(PASSWORD)
                        || s.authorization
                            .as_deref()
                            .is_some_and(|a| a.contains(TOKEN))
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_or_token_goes_to_plain_http_off_loopback() -> TestResult {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
    let log: Log = Arc::default();
    let app = Router::new().fallback({
        let (base, log) = (base.clone(), log.clone());
        move |req: Request<Body>| network(base.clone(), log.clone(), req)
    });
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config");

    // The harness sees a password that leaves: a loopback PDS does get it (and says no).
    let control = run(
        &config,
        &base,
        &["login", LOOPBACK, "--password", PASSWORD],
        true,
    )
    .await?
    .expect(1);
    assert!(
        control.stderr.contains("AuthenticationRequired"),
        "{}",
        control.stderr
    );
    assert_eq!(leaked(&log).len(), 1, "{:?}", log.lock().map(|l| l.clone()));
    log.lock().map(|mut l| l.clear()).ok();

    // DID documents naming plain http off loopback: refused before the password is sent.
    for (did, host) in [
        (EVIL_LOCALHOST, "localhost.evil.com"),
        (PLAIN_HTTP, "pds.example.com"),
        (WEB_EVIL_LOCALHOST, "localhost.evil.com"),
    ] {
        let refused = run(
            &config,
            &base,
            &["login", did, "--password", PASSWORD],
            true,
        )
        .await?
        .expect(1);
        assert!(refused.stderr.contains(host), "{did}: {}", refused.stderr);
        assert!(leaked(&log).is_empty(), "{did}: {:?}", leaked(&log));
        assert!(!config.join("session.json").exists());
    }
    // did:web:localhost.evil.com is not `localhost`: its document is fetched over https only.
    let web_fetches: Vec<Seen> = log
        .lock()
        .map(|l| {
            l.iter()
                .filter(|s| s.path == "/.well-known/did.json")
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    assert!(web_fetches.is_empty(), "fetched over http: {web_fetches:?}");
    let refused = run(
        &config,
        &base,
        &["login", EVIL_LOCALHOST, "--password", PASSWORD],
        true,
    )
    .await?;
    assert!(
        refused.stderr.contains("not loopback"),
        "{}",
        refused.stderr
    );

    // A PDS on loopback that redirects the login elsewhere: the redirect is not followed.
    let redirected = run(
        &config,
        &base,
        &["login", REDIRECTING, "--password", PASSWORD],
        true,
    )
    .await?
    .expect(1);
    assert!(
        redirected.stderr.contains("redirected to"),
        "{}",
        redirected.stderr
    );
    let elsewhere: Vec<Seen> = log
        .lock()
        .map(|l| {
            l.iter()
                .filter(|s| s.host == "pds.example.com")
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    assert!(elsewhere.is_empty(), "followed: {elsewhere:?}");
    // (The loopback PDS itself got the password, as it may.)
    log.lock().map(|mut l| l.clear()).ok();

    // A stored session naming a plain-http PDS (an old file, or one edited by hand): its
    // tokens are not sent, not even to refresh.
    std::fs::create_dir_all(&config)?;
    let session = json!({
        "did": PLAIN_HTTP, "handle": "someone.test", "pds": "http://pds.example.com",
        "accessJwt": TOKEN, "refreshJwt": TOKEN
    });
    std::fs::write(config.join("session.json"), session.to_string())?;
    for args in [&["whoami"][..], &["logout"][..]] {
        let r = run(&config, &base, args, true).await?;
        assert!(leaked(&log).is_empty(), "{args:?}: {:?}", leaked(&log));
        if args == ["whoami"] {
            assert_eq!(r.code, 1, "{}", r.stderr);
            assert!(r.stderr.contains("not loopback"), "{}", r.stderr);
        }
    }
    let seen: Vec<Value> = log
        .lock()
        .map(|l| {
            l.iter()
                .map(|s| json!([s.method.as_str(), s.host, s.path]))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !seen.iter().any(|s| s[1] == "pds.example.com"),
        "requests to the plain-http PDS: {seen:?}"
    );
    server.abort();
    Ok(())
}
