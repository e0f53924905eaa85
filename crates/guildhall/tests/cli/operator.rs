//! The operator's whole day on the reference PDS: login, whoami, init, publish and update,
//! endorse (pinned and not), revoke, profile set, token refresh, logout — each checked in the
//! PDS's own records.

use serde_json::{Value, json};

use crate::support::{Term, TestResult};

const SERVICE: &str = "dev.guildhall.service";
const ENDORSEMENT: &str = "dev.guildhall.endorsement";
const OPERATOR: &str = "dev.guildhall.operator";

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_publish_endorse_revoke_profile() -> TestResult {
    let t = Term::start(3).await?;
    let (alice, bob, carol) = (
        t.account(0).clone(),
        t.account(1).clone(),
        t.account(2).clone(),
    );

    // --- login / whoami -------------------------------------------------------------------
    t.run(&["whoami"]).await?.expect(1);
    let login = t.login(0).await?;
    assert!(login.stdout.contains(&alice.did), "{}", login.stdout);
    let session = t.session_file();
    #[cfg(unix)]
    {
        assert_eq!(mode(&session), 0o600, "session file must be private");
        assert_eq!(mode(session.parent().unwrap_or(&session)), 0o700);
    }
    let who = t.run(&["whoami"]).await?.expect(0);
    assert_eq!(who.line_value("did:").as_deref(), Some(alice.did.as_str()));
    assert_eq!(
        who.line_value("handle:").as_deref(),
        Some(alice.handle.as_str())
    );
    assert!(who.stdout.contains(&alice.pds_url), "{}", who.stdout);

    // --- init, dry run, publish -----------------------------------------------------------
    let manifest = t.path("service.yaml");
    let manifest_arg = manifest.display().to_string();
    t.run(&["init", &manifest_arg]).await?.expect(0);
    t.run(&["init", &manifest_arg]).await?.expect(2); // no silent overwrite
    let dry = t
        .run(&["publish", "--dry-run", &manifest_arg])
        .await?
        .expect(0);
    assert!(dry.stdout.contains("my-summarizer"), "{}", dry.stdout);
    assert!(t.records(0, SERVICE).await?.is_empty(), "dry run wrote");

    let first = t.run(&["publish", &manifest_arg]).await?.expect(0);
    let uri = format!("at://{}/{SERVICE}/my-summarizer", alice.did);
    assert_eq!(first.line_value("published").as_deref(), Some(uri.as_str()));
    let cid1 = first.line_value("cid:").unwrap_or_default();
    let recs = t.records(0, SERVICE).await?;
    assert_eq!(recs.len(), 1);
    let (rkey, cid, value) = &recs[0];
    assert_eq!(
        (rkey.as_str(), cid.as_str()),
        ("my-summarizer", cid1.as_str())
    );
    assert_eq!(value["name"], "My Summarizer");
    assert_eq!(value["$type"], SERVICE);
    assert_eq!(value["pricing"][0]["amount"], "0.002");
    assert_eq!(
        value["operations"][0]["inputSchema"]["required"],
        json!(["text"])
    );
    let created = value["createdAt"].clone();

    // Same slug: an update in place, createdAt kept.
    let text =
        std::fs::read_to_string(&manifest)?.replace("name: My Summarizer", "name: My Summarizer 2");
    std::fs::write(&manifest, text)?;
    let second = t.run(&["publish", &manifest_arg]).await?.expect(0);
    assert_eq!(second.line_value("updated").as_deref(), Some(uri.as_str()));
    let cid2 = second.line_value("cid:").unwrap_or_default();
    assert_ne!(cid1, cid2);
    let recs = t.records(0, SERVICE).await?;
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].1, cid2);
    assert_eq!(recs[0].2["name"], "My Summarizer 2");
    assert_eq!(recs[0].2["createdAt"], created);
    // Publishing the same manifest again changes nothing.
    let third = t.run(&["publish", &manifest_arg]).await?.expect(0);
    assert_eq!(third.line_value("unchanged").as_deref(), Some(uri.as_str()));
    assert_eq!(t.records(0, SERVICE).await?[0].1, cid2);
    // The same, for scripts.
    let as_json = t
        .run(&["publish", "--json", &manifest_arg])
        .await?
        .expect(0);
    let as_json: Value = serde_json::from_str(&as_json.stdout)?;
    assert_eq!(
        as_json,
        json!({"action": "unchanged", "uri": uri, "cid": cid2})
    );
    let dry = t
        .run(&["publish", "--dry-run", "--json", &manifest_arg])
        .await?
        .expect(0);
    let dry: Value = serde_json::from_str(&dry.stdout)?;
    assert_eq!(
        dry,
        json!({"action": "valid", "collection": SERVICE, "rkey": "my-summarizer"})
    );

    // --- endorse ----------------------------------------------------------------------------
    // Bob's service is written by another client (the testkit's raw XRPC).
    let bob_service = json!({
        "$type": SERVICE, "name": "Bob SMS", "capabilities": ["sms.send"],
        "endpoints": [{"protocol": "http", "url": "https://bob.example.com/sms"}],
        "createdAt": "2026-01-01T00:00:00.000Z"
    });
    let bob_put = t
        .peer
        .xrpc()
        .put_record(
            &bob.pds_url,
            &bob.access_jwt,
            &bob.did,
            SERVICE,
            "sms",
            &bob_service,
        )
        .await?;
    let bob_uri = format!("at://{}/{SERVICE}/sms", bob.did);
    let pinned = t
        .run(&[
            "endorse",
            &bob.handle,
            "--capability",
            "sms.send",
            "--service",
            &bob_uri,
            "--strength",
            "80",
            "--comment",
            "fast and honest",
            "--expires",
            "90d",
        ])
        .await?
        .expect(0);
    let pinned_uri = pinned.line_value("endorsed").unwrap_or_default();
    assert!(
        pinned_uri.starts_with(&format!("at://{}/{ENDORSEMENT}/", alice.did)),
        "{pinned_uri}"
    );
    // The PDS chose a TID as the record key.
    let tid = pinned_uri.rsplit('/').next().unwrap_or_default();
    assert!(
        tid.len() == 13 && tid.bytes().all(|b| matches!(b, b'2'..=b'7' | b'a'..=b'z')),
        "{pinned_uri}"
    );
    let open = t.run(&["endorse", &carol.did, "--json"]).await?.expect(0);
    let open: Value = serde_json::from_str(&open.stdout)?;
    assert_eq!(open["action"], "endorsed");
    let open_uri = open["uri"].as_str().unwrap_or_default().to_owned();

    let ends = t.records(0, ENDORSEMENT).await?;
    assert_eq!(ends.len(), 2);
    let find = |uri: &str| -> Option<Value> {
        ends.iter()
            .find(|(rkey, _, _)| uri.ends_with(&format!("/{rkey}")))
            .map(|(_, _, v)| v.clone())
    };
    let p = find(&pinned_uri).unwrap_or_default();
    assert_eq!(p["subject"], bob.did.as_str());
    assert_eq!(p["service"], json!({"uri": bob_uri, "cid": bob_put.cid}));
    assert_eq!(p["capabilities"], json!(["sms.send"]));
    assert_eq!(
        (p["strength"].as_i64(), p["comment"].as_str()),
        (Some(80), Some("fast and honest"))
    );
    let at = |k: &str| {
        time::OffsetDateTime::parse(
            p[k].as_str().unwrap_or(""),
            &time::format_description::well_known::Rfc3339,
        )
    };
    let days = (at("expiresAt")? - at("createdAt")?).whole_days();
    assert!((89..=90).contains(&days), "--expires 90d gave {days} days");
    let o = find(&open_uri).unwrap_or_default();
    assert_eq!(o["subject"], carol.did.as_str());
    assert!(
        o.get("service").is_none() && o.get("capabilities").is_none(),
        "{o}"
    );

    // Endorsements that must not be written.
    t.run(&["endorse", &alice.did]).await?.expect(2); // yourself
    t.run(&["endorse", &bob.did, "--strength", "101"])
        .await?
        .expect(2);
    t.run(&["endorse", &bob.did, "--capability", "SMS"])
        .await?
        .expect(2);
    t.run(&["endorse", &bob.did, "--expires", "soon"])
        .await?
        .expect(2);
    t.run(&[
        "endorse",
        &bob.did,
        "--service",
        &format!("at://{}/{SERVICE}/sms", carol.did),
    ])
    .await?
    .expect(2);
    t.run(&[
        "endorse",
        &bob.did,
        "--service",
        &format!("at://{}/{SERVICE}/nope", bob.did),
    ])
    .await?
    .expect(1);
    assert_eq!(t.records(0, ENDORSEMENT).await?.len(), 2);

    // --- the list of what I endorsed ---------------------------------------------------------
    let listed = t.run(&["endorsements"]).await?.expect(0);
    let rows: Vec<&str> = listed.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{}", listed.stdout);
    let pinned_row = rows
        .iter()
        .find(|r| r.contains(&pinned_uri))
        .copied()
        .unwrap_or_default();
    assert!(
        pinned_row.starts_with(&bob.did)
            && pinned_row.contains("sms.send")
            && pinned_row.contains(&bob_uri),
        "{pinned_row}"
    );
    let open_row = rows
        .iter()
        .find(|r| r.contains(&open_uri))
        .copied()
        .unwrap_or_default();
    assert!(
        open_row.starts_with(&carol.did) && open_row.contains("(all)"),
        "{open_row}"
    );
    let listed: Value =
        serde_json::from_str(&t.run(&["endorsements", "--json"]).await?.expect(0).stdout)?;
    assert_eq!(listed.as_array().map(Vec::len), Some(2));

    // --- revoke ------------------------------------------------------------------------------
    let revoked = t.run(&["revoke", &pinned_uri]).await?.expect(0);
    assert!(revoked.stdout.contains(&pinned_uri), "{}", revoked.stdout);
    let ends = t.records(0, ENDORSEMENT).await?;
    assert_eq!(ends.len(), 1);
    assert!(open_uri.ends_with(&ends[0].0));
    let listed = t.run(&["endorsements"]).await?.expect(0);
    assert!(
        !listed.stdout.contains(&pinned_uri) && listed.stdout.contains(&open_uri),
        "{}",
        listed.stdout
    );
    let again = t.run(&["revoke", &pinned_uri]).await?.expect(1);
    assert!(again.stderr.contains("no endorsement"), "{}", again.stderr);
    t.run(&[
        "revoke",
        &format!("at://{}/{ENDORSEMENT}/3kabcdefghij2", bob.did),
    ])
    .await?
    .expect(2);
    t.run(&["revoke", &uri]).await?.expect(2); // a service, not an endorsement
    t.run(&["revoke", "not-a-uri"]).await?.expect(2);

    // --- profile -------------------------------------------------------------------------------
    t.run(&["profile", "set", "--website", "https://alice.example.com"])
        .await?
        .expect(2); // no name yet
    assert!(t.records(0, OPERATOR).await?.is_empty());
    t.run(&[
        "profile",
        "set",
        "--display-name",
        "Alice Agents",
        "--website",
        "https://alice.example.com",
    ])
    .await?
    .expect(0);
    let prof = t.records(0, OPERATOR).await?;
    assert_eq!(prof.len(), 1);
    assert_eq!(prof[0].0, "self");
    assert_eq!(prof[0].2["displayName"], "Alice Agents");
    let created = prof[0].2["createdAt"].clone();
    t.run(&[
        "profile",
        "set",
        "--description",
        "We run small, careful agents.",
        "--contact",
        "ops@alice.example.com",
    ])
    .await?
    .expect(0);
    let prof = t.records(0, OPERATOR).await?;
    let v = &prof[0].2;
    assert_eq!(
        (
            v["displayName"].as_str(),
            v["website"].as_str(),
            v["contact"].as_str()
        ),
        (
            Some("Alice Agents"),
            Some("https://alice.example.com"),
            Some("ops@alice.example.com")
        )
    );
    assert_eq!(v["createdAt"], created);
    let bad = t
        .run(&["profile", "set", "--website", "ftp://alice.example.com"])
        .await?
        .expect(2);
    assert!(bad.stderr.contains("website"), "{}", bad.stderr);

    // --- expired access token: refreshed on the way -----------------------------------------
    let mut stored: Value = serde_json::from_str(&std::fs::read_to_string(&session)?)?;
    let old_refresh = stored["refreshJwt"].clone();
    // A token whose exp is long past (header.payload.signature, base64url of {"exp":1}).
    stored["accessJwt"] = json!("eyJhbGciOiJub25lIn0.eyJleHAiOjF9.c2ln");
    std::fs::write(&session, serde_json::to_string(&stored)?)?;
    t.run(&["whoami"]).await?.expect(0);
    let refreshed: Value = serde_json::from_str(&std::fs::read_to_string(&session)?)?;
    assert_ne!(
        refreshed["accessJwt"],
        json!("eyJhbGciOiJub25lIn0.eyJleHAiOjF9.c2ln")
    );
    assert_ne!(refreshed["refreshJwt"], old_refresh);
    #[cfg(unix)]
    assert_eq!(mode(&session), 0o600);
    // A token the PDS rejects without an exp we can read: refreshed on its answer.
    let mut stored = refreshed;
    stored["accessJwt"] = json!("garbage");
    std::fs::write(&session, serde_json::to_string(&stored)?)?;
    t.run(&["profile", "set", "--display-name", "Alice Agents 2"])
        .await?
        .expect(0);
    assert_eq!(
        t.records(0, OPERATOR).await?[0].2["displayName"],
        "Alice Agents 2"
    );

    // --- logout -------------------------------------------------------------------------------
    t.run(&["logout"]).await?.expect(0);
    assert!(!session.exists());
    let after = t.run(&["publish", &manifest_arg]).await?.expect(1);
    assert!(after.stderr.contains("guildhall login"), "{}", after.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unreachable_hosts_are_explained() -> TestResult {
    let t = Term::start(1).await?;
    let alice = t.account(0).clone();
    let bad = t
        .run(&["login", &alice.handle, "--password", "not-the-password"])
        .await?
        .expect(1);
    assert!(
        bad.stderr.contains("AuthenticationRequired"),
        "{}",
        bad.stderr
    );
    assert!(bad.stderr.contains("app password"), "{}", bad.stderr);
    assert!(!t.session_file().exists());

    // No password and no terminal: told how to give one.
    let none = t.run(&["login", &alice.did]).await?.expect(2);
    assert!(
        none.stderr.contains("GUILDHALL_APP_PASSWORD"),
        "{}",
        none.stderr
    );

    // The password from the environment, login by DID.
    let pw = t.app_password(0).await?;
    t.run_with(&["login", &alice.did], &[("GUILDHALL_APP_PASSWORD", &pw)])
        .await?
        .expect(0);

    // No --password in a terminal: asked for it, without echo (a pty from util-linux `script`).
    std::fs::remove_file(t.session_file())?;
    let line = format!(
        "'{}' login '{}'",
        crate::support::bin().display(),
        alice.handle
    );
    let mut cmd = tokio::process::Command::new("script");
    crate::support::scrub(&mut cmd);
    for (k, v) in &t.env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .args(["-qec", &line, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
        anyhow::bail!("script has no pipes");
    };
    let script_pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("script exited at once"))?;
    // Type the password only once the prompt is up and the terminal's echo is off (the
    // prompt is written a moment before echo goes off), then read the rest.
    let mut seen = Vec::new();
    let dialogue = async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut buf = [0u8; 4096];
        let prompt = format!("App password for {}:", alice.handle);
        while !String::from_utf8_lossy(&seen).contains(&prompt) {
            let n = stdout.read(&mut buf).await?;
            anyhow::ensure!(n > 0, "no prompt: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        crate::support::wait_for_echo_off(script_pid).await?;
        stdin.write_all(format!("{pw}\n").as_bytes()).await?;
        stdout.read_to_end(&mut seen).await?;
        anyhow::Ok(())
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), dialogue).await??;
    let out = child.wait_with_output().await?;
    let shown = String::from_utf8_lossy(&seen);
    assert!(
        out.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains(&format!("App password for {}:", alice.handle)),
        "{shown}"
    );
    assert!(shown.contains("Logged in as"), "{shown}");
    assert!(!shown.contains(&pw), "the password was echoed: {shown}");
    assert!(t.session_file().exists());

    // A PLC that is not there: the host is named.
    let dead = "http://127.0.0.1:9";
    let down = t
        .run_with(
            &["login", &alice.did, "--password", &pw],
            &[("GUILDHALL_PLC", dead)],
        )
        .await?
        .expect(1);
    assert!(down.stderr.contains("127.0.0.1:9"), "{}", down.stderr);
    let appview = t
        .run(&["search", "sms", "--appview", dead])
        .await?
        .expect(1);
    assert!(
        appview.stderr.contains("cannot reach http://127.0.0.1:9"),
        "{}",
        appview.stderr
    );

    // Unknown handle, malformed identifiers.
    let unknown = t
        .run(&["login", "nobody.test", "--password", &pw])
        .await?
        .expect(1);
    assert!(unknown.stderr.contains("nobody.test"), "{}", unknown.stderr);
    t.run(&["login", "not a handle", "--password", &pw])
        .await?
        .expect(2);
    Ok(())
}
