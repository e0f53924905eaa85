//! Handles published by DNS: `login <handle>` with no XRPC resolver reads the TXT record
//! `_atproto.<handle>` (here from a tiny DNS server on loopback) and logs in.

use std::collections::BTreeMap;

use guildhall_testkit::dns::TxtServer;

use crate::support::{Term, TestResult, finish};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_a_handle_published_in_dns() -> TestResult {
    let t = Term::start(1).await?;
    let alice = t.account(0).clone();
    let records = BTreeMap::from([(
        format!("_atproto.{}", alice.handle.to_ascii_lowercase()),
        format!("did={}", alice.did),
    )]);
    let server = TxtServer::start(records).await?;
    let dns = server.addr.to_string();

    let pw = t.app_password(0).await?;
    let args = ["login", alice.handle.as_str(), "--password", pw.as_str()];
    let mut cmd = t.command(&args);
    // No XRPC resolver: the handle must come from DNS.
    cmd.env_remove("GUILDHALL_HANDLE_RESOLVER")
        .env("GUILDHALL_DNS", &dns);
    let run = finish(cmd, &args).await?.expect(0);
    assert!(run.stdout.contains(&alice.did), "{}", run.stdout);
    let who = t.run(&["whoami"]).await?.expect(0);
    assert_eq!(who.line_value("did:").as_deref(), Some(alice.did.as_str()));
    drop(server);
    Ok(())
}
