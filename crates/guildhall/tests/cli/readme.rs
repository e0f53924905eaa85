//! The README's "Publish your service in two minutes" commands, run line by line as written,
//! against the reference PDS and a running `guildhall serve`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::appview::serve;
use crate::support::{Term, TestResult, bin, repo_root, scrub};

const HEADING: &str = "## Publish your service in two minutes";
/// The install line; the test puts the binary cargo just built on PATH instead.
const INSTALL: &str = "cargo install --path crates/guildhall";

/// The first ```sh block under the heading, one command per line (comments dropped).
fn quick_start() -> anyhow::Result<Vec<String>> {
    let readme = std::fs::read_to_string(repo_root().join("README.md"))?;
    let section = readme
        .split_once(HEADING)
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow::anyhow!("README.md has no {HEADING:?}"))?;
    let section = section.split("\n## ").next().unwrap_or_default();
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(block, _)| block)
        .ok_or_else(|| anyhow::anyhow!("no ```sh block under {HEADING:?}"))?;
    Ok(block
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_quick_start_works_verbatim() -> TestResult {
    let lines = quick_start()?;
    assert!(lines.len() >= 8, "{lines:?}");
    assert_eq!(lines[0], INSTALL, "the quick start begins by installing");

    let t = Term::start(2).await?;
    let server = serve(&t).await?;
    let (alice, bob) = (t.account(0).clone(), t.account(1).clone());
    // The values the reader fills in, and the machine around them.
    let given = BTreeMap::from([
        ("HANDLE", alice.handle.clone()),
        ("GUILDHALL_APP_PASSWORD", t.app_password(0).await?),
        ("FRIEND", bob.handle.clone()),
    ]);
    let bin_dir = bin()
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let path = format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default());
    let work = t.path("work");
    std::fs::create_dir_all(&work)?;

    for line in &lines[1..] {
        if let Some(assign) = line.strip_prefix("export ") {
            let name = assign.split('=').next().unwrap_or_default();
            assert!(
                given.contains_key(name),
                "the README exports {name}, which the test does not know"
            );
            continue;
        }
        assert!(
            line.starts_with("guildhall "),
            "unexpected command {line:?}"
        );
        // Queries wait for the indexer, which follows the PDS asynchronously.
        let waits = line.starts_with("guildhall search") || line.starts_with("guildhall show");
        let start = Instant::now();
        loop {
            let mut cmd = tokio::process::Command::new("bash");
            scrub(&mut cmd);
            cmd.arg("-c")
                .arg(line)
                .current_dir(&work)
                .env("PATH", &path)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true);
            for (k, v) in t.env.iter().map(|(k, v)| (k.as_str(), v.as_str())) {
                cmd.env(k, v);
            }
            cmd.env("GUILDHALL_APPVIEW", &server.url);
            for (k, v) in &given {
                cmd.env(k, v);
            }
            let out = cmd.output().await?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            let ok = out.status.success() && (!waits || stdout.contains("My Summarizer"));
            if ok {
                break;
            }
            if !waits || start.elapsed() > Duration::from_secs(120) {
                anyhow::bail!(
                    "README line {line:?} failed ({}):\n{stdout}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // What the quick start promised is in the PDS.
    assert_eq!(t.records(0, "dev.guildhall.service").await?.len(), 1);
    assert_eq!(t.records(0, "dev.guildhall.operator").await?.len(), 1);
    let ends = t.records(0, "dev.guildhall.endorsement").await?;
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].2["subject"], bob.did.as_str());
    drop(server);
    Ok(())
}
