//! Someone else's records are text the CLI prints: terminal escape sequences, carriage returns
//! and bidi overrides in them are shown escaped, so they cannot clear a line, fake a trust path
//! or reorder what is read; `--json` carries the exact text, JSON-escaped.

use serde_json::{Value, json};

use crate::appview::{serve, until};
use crate::support::{Run, Term, TestResult};

const SERVICE: &str = "dev.guildhall.service";
const OPERATOR: &str = "dev.guildhall.operator";
const ENDORSEMENT: &str = "dev.guildhall.endorsement";

/// Clears the line, returns to its start and prints a fake trust verdict in green, then
/// reverses the rest of the line; ends with a bell and a C1 CSI.
const SPOOF: &str = "\u{1b}[2K\r\u{1b}[32m1 hop 99.9%\u{1b}[0m \u{202e}lapyap\u{202c}\u{7}\u{9b}";

fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            c != '\n'
                && (c.is_control()
                    || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
        })
        .collect()
}

#[track_caller]
fn assert_escaped(run: &Run, what: &str) {
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        let raw = raw_controls(text);
        assert!(
            raw.is_empty(),
            "{what}: raw {raw:?} on {stream}:\n{}",
            text.escape_debug()
        );
    }
    assert!(
        run.stdout
            .contains(r"\u{1b}[2K\u{d}\u{1b}[32m1 hop 99.9%\u{1b}[0m \u{202e}lapyap"),
        "{what}: the escaped text is not shown:\n{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_in_records_is_escaped_on_the_terminal() -> TestResult {
    let mut t = Term::start(2).await?;
    let server = serve(&t).await?;
    t.env.push(("GUILDHALL_APPVIEW".into(), server.url.clone()));
    let (alice, mallory) = (t.account(0).clone(), t.account(1).clone());

    // Alice publishes the example; Mallory's listing is a copy full of terminal tricks,
    // written over raw XRPC like any other client could.
    t.login(0).await?;
    let manifest = t.path("service.yaml");
    t.run(&["init", &manifest.display().to_string()])
        .await?
        .expect(0);
    t.run(&["publish", &manifest.display().to_string()])
        .await?
        .expect(0);
    let mut record = t.records(0, SERVICE).await?[0].2.clone();
    record["name"] = json!(format!("Mal{SPOOF}"));
    record["description"] = json!(format!("Looks fine{SPOOF}"));
    record["tags"] = json!(["t\u{1b}[2K\r\u{202e}x"]);
    record["operations"][0]["description"] = json!(format!("op{SPOOF}"));
    let xrpc = t.peer.xrpc();
    xrpc.put_record(
        &mallory.pds_url,
        &mallory.access_jwt,
        &mallory.did,
        SERVICE,
        "evil",
        &record,
    )
    .await?;
    let profile = json!({
        "$type": OPERATOR,
        "displayName": format!("Mallory{SPOOF}"),
        "description": format!("About{SPOOF}"),
        "createdAt": "2026-01-01T00:00:00.000Z",
    });
    xrpc.put_record(
        &mallory.pds_url,
        &mallory.access_jwt,
        &mallory.did,
        OPERATOR,
        "self",
        &profile,
    )
    .await?;
    // Alice vouches for Mallory (a trust path to print), and another client slipped an
    // endorsement with a hostile subject into her repo (`endorsements` lists it).
    t.run(&["endorse", &mallory.did]).await?.expect(0);
    let odd = json!({
        "$type": ENDORSEMENT,
        "subject": format!("did:plc:x{SPOOF}"),
        "createdAt": "2026-01-01T00:00:00.000Z",
    });
    xrpc.put_record(
        &alice.pds_url,
        &alice.access_jwt,
        &alice.did,
        ENDORSEMENT,
        "odd",
        &odd,
    )
    .await?;

    let uri = format!("at://{}/{SERVICE}/evil", mallory.did);
    let json = until(&t, &["search", "--json"], |r| {
        r.stdout.contains(&uri) && r.stdout.contains("\"path\"")
    })
    .await?;
    // JSON: the exact text, as escapes only.
    assert!(raw_controls(&json.stdout).is_empty(), "{}", json.stdout);
    let answer: Value = serde_json::from_str(&json.stdout)?;
    let mine = answer["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["uri"] == uri.as_str()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(mine["record"]["name"], format!("Mal{SPOOF}").as_str());
    assert_eq!(mine["record"]["description"], record["description"]);

    let table = t.run(&["search"]).await?.expect(0);
    assert_escaped(&table, "search");
    // The columns still line up: the URI starts where the header says.
    let header = table.stdout.lines().next().unwrap_or_default();
    let row = table
        .stdout
        .lines()
        .find(|l| l.contains(&uri))
        .unwrap_or_default();
    // (In characters: a clipped cell ends in a multi-byte `…`.)
    let column = |line: &str, at: &str| line.find(at).map(|i| line[..i].chars().count());
    assert_eq!(
        column(row, "at://"),
        column(header, "URI"),
        "{}",
        table.stdout
    );

    let shown = t.run(&["show", &uri]).await?.expect(0);
    assert_escaped(&shown, "show <uri>");
    assert!(
        shown.stdout.starts_with("Mal\\u{1b}[2K"),
        "{}",
        shown.stdout
    );
    let op = until(&t, &["show", &mallory.did], |r| r.stdout.contains("About")).await?;
    assert_escaped(&op, "show <did>");
    let listed = t.run(&["endorsements"]).await?.expect(0);
    assert_escaped(&listed, "endorsements");
    let listed_json = t.run(&["endorsements", "--json"]).await?.expect(0);
    assert!(raw_controls(&listed_json.stdout).is_empty());
    let records: Value = serde_json::from_str(&listed_json.stdout)?;
    assert!(
        records
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["value"] == odd)),
        "{records}"
    );
    drop(server);
    Ok(())
}
