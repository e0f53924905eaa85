//! `search` and `show` through a running `guildhall serve` that indexes the reference PDS:
//! a service published with the CLI and one written by another client (raw XRPC) are indexed
//! and shown the same way, with the trust path between them.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Run, Term, TestResult, bin, scrub};

/// A `guildhall serve` child process, killed when dropped.
pub struct Serve {
    _child: tokio::process::Child,
    pub url: String,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `guildhall serve` following the peer's PDS and waits until it answers.
pub async fn serve(t: &Term) -> anyhow::Result<Serve> {
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(t.path("serve.log"))?;
    let mut cmd = tokio::process::Command::new(bin());
    scrub(&mut cmd);
    cmd.args([
        "serve",
        "--db",
        &t.path("index.db").display().to_string(),
        "--firehose",
        &t.peer.pds().firehose_url,
        "--plc",
        &t.peer.info().plc_url,
        "--handle-resolver",
        &t.peer.pds().url,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--rate-limit",
        "0",
        "--allow-private-addresses",
    ])
    .env("GUILDHALL_LOG", "info")
    .stdin(std::process::Stdio::null())
    .stdout(log.try_clone()?)
    .stderr(log)
    .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!(
                "guildhall serve exited ({status}):\n{}",
                std::fs::read_to_string(t.path("serve.log")).unwrap_or_default()
            );
        }
        if let Ok(r) = http.get(format!("{url}/xrpc/_health")).send().await
            && r.status().is_success()
        {
            return Ok(Serve { _child: child, url });
        }
        if start.elapsed() > Duration::from_secs(90) {
            anyhow::bail!("guildhall serve did not answer /xrpc/_health in 90 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs a query command until `done` accepts its output (indexing is asynchronous).
pub async fn until(t: &Term, args: &[&str], done: impl Fn(&Run) -> bool) -> anyhow::Result<Run> {
    let start = Instant::now();
    loop {
        let run = t.run(args).await?;
        if run.code == 0 && done(&run) {
            return Ok(run);
        }
        if start.elapsed() > Duration::from_secs(120) {
            anyhow::bail!(
                "guildhall {args:?} never gave the expected output in 120 s; last:\n{}\n{}\n--- serve.log ---\n{}",
                run.stdout,
                run.stderr,
                std::fs::read_to_string(t.path("serve.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Writes a record with Bluesky's own client library, `@atproto/api` (AtpAgent), from the
/// peer's Node install; returns its `{uri, cid}`.
async fn put_with_atproto_api(
    account: &guildhall_testkit::Account,
    collection: &str,
    rkey: &str,
    record: &Value,
) -> anyhow::Result<Value> {
    const SCRIPT: &str = r#"
const { AtpAgent } = await import('@atproto/api')
const [pds, did, password, collection, rkey, record] = process.argv.slice(1)
const agent = new AtpAgent({ service: pds })
await agent.login({ identifier: did, password })
const res = await agent.com.atproto.repo.putRecord({ repo: did, collection, rkey, record: JSON.parse(record) })
console.log(JSON.stringify(res.data))
"#;
    let dir = guildhall_testkit::peer_dir();
    let mut cmd = tokio::process::Command::new(dir.join("node_modules/.bin/node"));
    scrub(&mut cmd);
    let out = cmd
        .current_dir(&dir)
        .args(["--input-type=module", "-e", SCRIPT])
        .args([
            &account.pds_url,
            &account.did,
            &account.password,
            collection,
            rkey,
        ])
        .arg(record.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "@atproto/api putRecord failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn services(run: &Run) -> Vec<Value> {
    serde_json::from_str::<Value>(&run.stdout)
        .ok()
        .and_then(|v| v.get("services").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_show_what_the_cli_and_another_client_wrote() -> TestResult {
    let mut t = Term::start(3).await?;
    let server = serve(&t).await?;
    t.env.push(("GUILDHALL_APPVIEW".into(), server.url.clone()));
    let (alice, bob, carol) = (
        t.account(0).clone(),
        t.account(1).clone(),
        t.account(2).clone(),
    );

    // Alice publishes with the CLI.
    t.login(0).await?;
    let manifest = t.path("service.yaml");
    t.run(&["init", &manifest.display().to_string()])
        .await?
        .expect(0);
    t.run(&["publish", &manifest.display().to_string()])
        .await?
        .expect(0);
    let alice_uri = format!("at://{}/dev.guildhall.service/my-summarizer", alice.did);
    // Bob writes the same kind of record with @atproto/api, Carol with raw XRPC: not the CLI.
    let mut bob_record = t.records(0, "dev.guildhall.service").await?[0].2.clone();
    bob_record["name"] = json!("Bob Summaries");
    bob_record["description"] = json!("Summaries by Bob, written without the CLI.");
    bob_record["endpoints"][0]["url"] = json!("https://bob.example.com/mcp");
    let written =
        put_with_atproto_api(&bob, "dev.guildhall.service", "summaries", &bob_record).await?;
    assert_eq!(
        written["uri"],
        format!("at://{}/dev.guildhall.service/summaries", bob.did)
    );
    let mut carol_record = bob_record.clone();
    carol_record["name"] = json!("Carol Digest");
    carol_record["description"] = json!("Digests by Carol, over raw XRPC.");
    t.peer
        .xrpc()
        .put_record(
            &carol.pds_url,
            &carol.access_jwt,
            &carol.did,
            "dev.guildhall.service",
            "digest",
            &carol_record,
        )
        .await?;
    let carol_uri = format!("at://{}/dev.guildhall.service/digest", carol.did);
    let bob_uri = format!("at://{}/dev.guildhall.service/summaries", bob.did);
    // Alice vouches for Bob with the CLI: the trust path alice → bob.
    let endorsed = t
        .run(&[
            "endorse",
            &bob.handle,
            "--capability",
            "text.summarize",
            "--strength",
            "90",
        ])
        .await?
        .expect(0);
    let endorsement_uri = endorsed.line_value("endorsed").unwrap_or_default();

    // JSON: both indexed, each exactly as its PDS holds it.
    let search = ["search", "--capability", "text.summarize", "--json"];
    let run = until(&t, &search, |r| {
        let s = services(r);
        s.len() == 3 && s.iter().any(|x| x.pointer("/trust/path/0").is_some())
    })
    .await?;
    let found = services(&run);
    for (account, uri) in [(&alice, &alice_uri), (&bob, &bob_uri), (&carol, &carol_uri)] {
        let sv = found
            .iter()
            .find(|s| s["uri"] == uri.as_str())
            .ok_or_else(|| anyhow::anyhow!("{uri} not in {found:?}"))?;
        let rkey = uri.rsplit('/').next().unwrap_or_default();
        let pds = t
            .peer
            .xrpc()
            .query(
                &account.pds_url,
                "com.atproto.repo.getRecord",
                &[
                    ("repo", &account.did),
                    ("collection", "dev.guildhall.service"),
                    ("rkey", rkey),
                ],
            )
            .await?;
        assert_eq!(sv["record"], pds["value"], "{uri} indexed differently");
        assert_eq!(sv["cid"], pds["cid"]);
        assert_eq!(sv["operator"]["did"], account.did.as_str());
        let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
        assert_eq!(
            keys(sv),
            keys(&found[0]),
            "views of both services have one shape"
        );
    }
    let bob_view = found
        .iter()
        .find(|s| s["uri"] == bob_uri.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(bob_view["trust"]["distance"], 1);
    assert_eq!(bob_view["trust"]["path"][0]["from"], alice.did.as_str());
    assert_eq!(bob_view["trust"]["path"][0]["to"], bob.did.as_str());
    assert_eq!(
        bob_view["trust"]["path"][0]["uri"],
        endorsement_uri.as_str()
    );

    // The table: both rows in the same columns, and the trust path spelled out.
    let table = t
        .run(&["search", "--capability", "text.summarize"])
        .await?
        .expect(0);
    let header = table.stdout.lines().next().unwrap_or_default();
    assert!(header.starts_with("#  NAME"), "{}", table.stdout);
    let rows = [
        ("My Summarizer", &alice_uri),
        ("Bob Summaries", &bob_uri),
        ("Carol Digest", &carol_uri),
    ];
    for (name, uri) in rows {
        let row = table
            .stdout
            .lines()
            .find(|l| l.contains(uri.as_str()))
            .ok_or_else(|| anyhow::anyhow!("no row for {uri}:\n{}", table.stdout))?;
        assert!(
            row.contains(name) && row.contains("text.summarize") && row.contains("0.002 USD/call"),
            "{row}"
        );
        // Columns line up: the URI starts where the header says.
        assert_eq!(row.find("at://"), header.find("URI"), "{}", table.stdout);
    }
    let path_line = format!(
        "{} → {}  via {endorsement_uri} [text.summarize]",
        alice.did, bob.did
    );
    assert!(table.stdout.contains(&path_line), "{}", table.stdout);
    assert!(
        table
            .stdout
            .contains(&format!("Ranked by trust from {}", alice.did)),
        "{}",
        table.stdout
    );

    // Text search, and filters that exclude.
    let by_text = t.run(&["search", "Bob", "--json"]).await?.expect(0);
    let names: Vec<Value> = services(&by_text)
        .iter()
        .map(|s| s["record"]["name"].clone())
        .collect();
    assert_eq!(names, [json!("Bob Summaries")]);
    let none = t
        .run(&["search", "--capability", "sms.send"])
        .await?
        .expect(0);
    assert!(none.stdout.contains("No services found"), "{}", none.stdout);
    let cheap = [
        "search",
        "--max-price",
        "0.001",
        "--currency",
        "USD",
        "--region",
        "DE",
    ];
    let cheap = t.run(&cheap).await?.expect(0);
    assert!(
        cheap.stdout.contains("No services found"),
        "{}",
        cheap.stdout
    );
    let affordable = [
        "search",
        "--max-price",
        "0.01",
        "--currency",
        "USD",
        "--region",
        "DE",
        "--json",
    ];
    assert_eq!(services(&t.run(&affordable).await?.expect(0)).len(), 3);
    let one = [
        "search",
        "--capability",
        "text.summarize",
        "--limit",
        "1",
        "--json",
    ];
    assert_eq!(services(&t.run(&one).await?.expect(0)).len(), 1);
    t.run(&["search", "--capability", "Not A Capability"])
        .await?
        .expect(2);

    // show <uri>: the same view getService gives, in JSON and as text.
    let shown = t.run(&["show", &bob_uri, "--json"]).await?.expect(0);
    let shown: Value = serde_json::from_str(&shown.stdout)?;
    for k in ["uri", "cid", "record", "operator"] {
        assert_eq!(shown["service"][k], bob_view[k], "show --json {k}");
    }
    let text = t.run(&["show", &bob_uri]).await?.expect(0);
    assert!(
        text.stdout.starts_with("Bob Summaries\n"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains(&path_line), "{}", text.stdout);
    assert!(
        text.stdout.contains("https://bob.example.com/mcp"),
        "{}",
        text.stdout
    );
    let by_handle = t
        .run(&[
            "show",
            &format!("at://{}/dev.guildhall.service/summaries", bob.handle),
        ])
        .await?
        .expect(0);
    assert_eq!(by_handle.stdout, text.stdout);
    let mine = t.run(&["show", &alice_uri]).await?.expect(0);
    assert!(
        mine.stdout.starts_with("My Summarizer\n"),
        "{}",
        mine.stdout
    );
    assert!(
        mine.stdout.contains("https://summarizer.example.com/mcp"),
        "{}",
        mine.stdout
    );

    // show <handle>: the operator with services and endorsement counts.
    let op = t.run(&["show", &bob.handle]).await?.expect(0);
    assert!(op.stdout.contains(&bob.did), "{}", op.stdout);
    assert!(op.stdout.contains("1 received, 0 given"), "{}", op.stdout);
    assert!(op.stdout.contains(&bob_uri), "{}", op.stdout);
    let op_json = t.run(&["show", &alice.did, "--json"]).await?.expect(0);
    let op_json: Value = serde_json::from_str(&op_json.stdout)?;
    assert_eq!(op_json["endorsementsGiven"], 1);
    assert_eq!(op_json["services"][0]["uri"], alice_uri.as_str());

    // Unknown things are reported, not shown empty.
    let missing = t
        .run(&[
            "show",
            &format!("at://{}/dev.guildhall.service/nope", bob.did),
        ])
        .await?
        .expect(1);
    assert!(
        missing.stderr.contains("does not know"),
        "{}",
        missing.stderr
    );
    t.run(&["show", "at://not valid"]).await?.expect(2);
    drop(server);
    Ok(())
}
