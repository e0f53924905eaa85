//! Failures a real PDS or AppView rarely shows on demand, from a small fake server on
//! loopback: e-mail sign-in codes, a PDS refusing a record, a session that can no longer be
//! refreshed, an AppView answering HTML. Each message names the host and the XRPC error.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::support::{Run, TestResult, bin, scrub};

const DID: &str = "did:plc:abcdefghijklmnopqrstuvwx";

async fn fake(base: String, req: Request<Body>) -> Response {
    let path = req.uri().path().to_owned();
    let xrpc = |status: StatusCode, error: &str, message: &str| {
        (
            status,
            axum::Json(json!({ "error": error, "message": message })),
        )
            .into_response()
    };
    match (req.method().clone(), path.as_str()) {
        (Method::GET, p) if p == format!("/{DID}") => axum::Json(json!({
            "id": DID,
            "alsoKnownAs": ["at://fake.test"],
            "verificationMethod": [],
            "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": base}]
        }))
        .into_response(),
        (Method::POST, "/xrpc/com.atproto.server.createSession") => xrpc(
            StatusCode::UNAUTHORIZED,
            "AuthFactorTokenRequired",
            "A sign in code has been sent to your email address",
        ),
        (Method::GET, "/xrpc/com.atproto.repo.getRecord") => {
            xrpc(StatusCode::BAD_REQUEST, "RecordNotFound", "Could not locate record")
        }
        (Method::POST, "/xrpc/com.atproto.repo.putRecord") => xrpc(
            StatusCode::BAD_REQUEST,
            "InvalidRecord",
            "Record/name must not be longer than 64 graphemes",
        ),
        (Method::GET, "/xrpc/com.atproto.server.getSession") => {
            xrpc(StatusCode::BAD_REQUEST, "ExpiredToken", "Token has expired")
        }
        (Method::POST, "/xrpc/com.atproto.server.refreshSession") => {
            xrpc(StatusCode::BAD_REQUEST, "ExpiredToken", "Token has been revoked")
        }
        (Method::GET, "/xrpc/dev.guildhall.searchServices") => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>Bad gateway</body></html>",
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn run(config: &std::path::Path, base: &str, args: &[&str]) -> anyhow::Result<Run> {
    let mut cmd = tokio::process::Command::new(bin());
    scrub(&mut cmd);
    let out = cmd
        .args(args)
        .env("GUILDHALL_CONFIG_DIR", config)
        .env("GUILDHALL_PLC", base)
        .env("GUILDHALL_APPVIEW", base)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_refusals_are_named_and_actionable() -> TestResult {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
    let app = Router::new().fallback({
        let base = base.clone();
        move |req: Request<Body>| fake(base.clone(), req)
    });
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config");

    // A PDS that wants an e-mail code: told to use an app password.
    let code = run(&config, &base, &["login", DID, "--password", "pw"])
        .await?
        .expect(1);
    assert!(
        code.stderr.contains("AuthFactorTokenRequired"),
        "{}",
        code.stderr
    );
    assert!(code.stderr.contains("app password"), "{}", code.stderr);
    assert!(code.stderr.contains(&base), "{}", code.stderr);
    assert!(!config.join("session.json").exists());

    // A stored session on that PDS (tokens whose exp lies far ahead).
    std::fs::create_dir_all(&config)?;
    let far = "eyJhbGciOiJub25lIn0.eyJleHAiOjk5OTk5OTk5OTl9.c2ln";
    let session = json!({
        "did": DID, "handle": "fake.test", "pds": base, "accessJwt": far, "refreshJwt": far
    });
    std::fs::write(config.join("session.json"), session.to_string())?;

    // The PDS refuses the record: its XRPC error name and message are shown.
    let manifest = dir.path().join("m.yaml");
    run(&config, &base, &["init", &manifest.display().to_string()])
        .await?
        .expect(0);
    let refused = run(
        &config,
        &base,
        &["publish", &manifest.display().to_string()],
    )
    .await?
    .expect(1);
    assert!(
        refused.stderr.contains(&format!(
            "{base} refused com.atproto.repo.putRecord: InvalidRecord: Record/name must not be longer"
        )),
        "{}",
        refused.stderr
    );

    // The access token is refused and the refresh token too: log in again.
    let expired = run(&config, &base, &["whoami"]).await?.expect(1);
    assert!(
        expired.stderr.contains("session has expired"),
        "{}",
        expired.stderr
    );
    assert!(
        expired.stderr.contains("guildhall login"),
        "{}",
        expired.stderr
    );

    // An AppView answering HTML: the status and host, not a JSON parse error.
    let html = run(&config, &base, &["search", "x"]).await?.expect(1);
    assert!(
        html.stderr.contains(&format!(
            "{base} refused dev.guildhall.searchServices: HTTP 502"
        )),
        "{}",
        html.stderr
    );
    server.abort();
    Ok(())
}
