//! Handles published by DNS: `login <handle>` with no XRPC resolver reads the TXT record
//! `_atproto.<handle>` (here from a tiny DNS server on loopback) and logs in.

use std::collections::BTreeMap;

use tokio::net::UdpSocket;

use crate::support::{Term, TestResult, finish};

/// Answers TXT questions from `records` (lower-case name without the final dot → text);
/// anything else gets NXDOMAIN.
async fn serve_dns(socket: UdpSocket, records: BTreeMap<String, String>) {
    let mut buf = [0u8; 1500];
    while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
        if let Some(reply) = answer(&buf[..n], &records) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

fn answer(query: &[u8], records: &BTreeMap<String, String>) -> Option<Vec<u8>> {
    // Header (12 bytes), then one question: labels, type, class.
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let qtype = query.get(pos..pos + 2)?;
    let question = query.get(12..pos + 4)?;
    let text = records.get(&labels.join(".")).filter(|_| qtype == [0, 16]);
    let mut out = Vec::new();
    out.extend_from_slice(query.get(0..2)?); // id
    out.extend_from_slice(if text.is_some() {
        &[0x81, 0x80]
    } else {
        &[0x81, 0x83]
    });
    out.extend_from_slice(&[0, 1, 0, u8::from(text.is_some()), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if let Some(text) = text {
        let bytes = text.as_bytes();
        let len = u8::try_from(bytes.len()).ok()?;
        // Name: pointer to the question; TXT, IN, TTL 60, one character-string.
        out.extend_from_slice(&[0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, len + 1, len]);
        out.extend_from_slice(bytes);
    }
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_a_handle_published_in_dns() -> TestResult {
    let t = Term::start(1).await?;
    let alice = t.account(0).clone();
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let dns = socket.local_addr()?.to_string();
    let records = BTreeMap::from([(
        format!("_atproto.{}", alice.handle.to_ascii_lowercase()),
        format!("did={}", alice.did),
    )]);
    let server = tokio::spawn(serve_dns(socket, records));

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
    server.abort();
    Ok(())
}
