//! Integration tests of the testkit against the real reference peer: start-up,
//! every write path, read-back, the PLC's DID document, and clean shutdown.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use guildhall_testkit::{Peer, PeerOptions, Write, XrpcError};
use serde_json::{Value, json};

const SERVICE: &str = "dev.guildhall.service";

fn service(name: &str, caps: &[&str]) -> Value {
    json!({
        "$type": SERVICE,
        "name": name,
        "description": format!("{name} for the testkit test"),
        "capabilities": caps,
        "endpoints": [{"protocol": "mcp", "url": "https://svc.example.test/mcp"}],
        "createdAt": "2026-11-26T10:00:00.000Z",
    })
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Names (by capability list) of the services in alice's repo, sorted by rkey.
async fn services_of(peer: &Peer, idx: usize) -> Result<Vec<(String, Value)>> {
    let a = &peer.accounts()[idx];
    let mut out: Vec<(String, Value)> = peer
        .xrpc()
        .list_records(&a.pds_url, &a.did, SERVICE)
        .await?
        .into_iter()
        .map(|r| (r.rkey().to_owned(), r.value))
        .collect();
    out.sort_by(|x, y| x.0.cmp(&y.0));
    Ok(out)
}

#[tokio::test]
async fn peer_write_paths_read_back_and_clean_shutdown() -> Result<()> {
    let peer = Peer::start(PeerOptions {
        accounts: 3,
        ..Default::default()
    })
    .await?;
    let pid = peer.pid();
    ensure!(process_exists(pid), "peer process {pid} should be running");
    ensure!(
        peer.accounts().len() == 3,
        "3 accounts, got {}",
        peer.accounts().len()
    );
    let x = peer.xrpc().clone();
    let (alice, bob) = (peer.accounts()[0].clone(), peer.accounts()[1].clone());
    let (base, tok, did) = (
        alice.pds_url.as_str(),
        alice.access_jwt.as_str(),
        alice.did.as_str(),
    );

    // createRecord with a chosen rkey, and with a PDS-chosen TID.
    let created = x
        .create_record(
            base,
            tok,
            did,
            SERVICE,
            Some("sms"),
            &service("SMS", &["sms.send"]),
        )
        .await?;
    ensure!(
        created.uri == format!("at://{did}/{SERVICE}/sms"),
        "uri {}",
        created.uri
    );
    ensure!(
        created.commit.is_some(),
        "createRecord returns the commit rev"
    );
    let tid = x
        .create_record(
            base,
            tok,
            did,
            SERVICE,
            None,
            &service("Mail", &["email.send"]),
        )
        .await?;
    let tid_rkey = tid
        .uri
        .rsplit('/')
        .next()
        .context("uri has an rkey")?
        .to_owned();
    ensure!(tid_rkey.len() == 13, "PDS-chosen rkey is a TID: {tid_rkey}");

    // putRecord: update in place (new CID) and upsert a new key.
    let updated = x
        .put_record(
            base,
            tok,
            did,
            SERVICE,
            "sms",
            &service("SMS v2", &["sms.send", "sms.receive"]),
        )
        .await?;
    ensure!(updated.cid != created.cid, "an update changes the CID");
    x.put_record(
        base,
        tok,
        did,
        SERVICE,
        "translate",
        &service("Translate", &["translate.text"]),
    )
    .await?;

    // deleteRecord.
    let rev = x.delete_record(base, tok, did, SERVICE, &tid_rkey).await?;
    ensure!(rev.is_some(), "deleting an existing record makes a commit");

    // applyWrites: create + update + delete in one commit.
    let batch = x
        .apply_writes(
            base,
            tok,
            did,
            &[
                Write::Create {
                    collection: SERVICE.into(),
                    rkey: Some("geo".into()),
                    value: service("Geo", &["geo.geocode"]),
                },
                Write::Update {
                    collection: SERVICE.into(),
                    rkey: "translate".into(),
                    value: service("Translate v2", &["translate.text"]),
                },
                Write::Delete {
                    collection: SERVICE.into(),
                    rkey: "sms".into(),
                },
            ],
        )
        .await?;
    ensure!(
        batch.results.len() == 3,
        "one result per write: {:?}",
        batch.results
    );
    let (_, latest_rev) = x.get_latest_commit(base, did).await?;
    ensure!(
        batch.rev.as_deref() == Some(latest_rev.as_str()),
        "applyWrites made the latest commit"
    );

    // Read back: exactly geo and translate (v2) remain.
    let got = services_of(&peer, 0).await?;
    let names: Vec<(&str, &str)> = got
        .iter()
        .map(|(k, v)| (k.as_str(), v["name"].as_str().unwrap_or("")))
        .collect();
    ensure!(
        names == [("geo", "Geo"), ("translate", "Translate v2")],
        "records after all writes: {names:?}"
    );
    ensure!(
        services_of(&peer, 1).await?.is_empty(),
        "bob's repo is untouched"
    );

    // Writing to someone else's repo is refused with a typed error.
    let err = x
        .create_record(
            &bob.pds_url,
            tok,
            &bob.did,
            SERVICE,
            None,
            &service("X", &["x.y"]),
        )
        .await
        .err()
        .context("writing to another repo must fail")?;
    let xe = err
        .downcast_ref::<XrpcError>()
        .context("the error is an XrpcError")?;
    ensure!(
        xe.status == 400 || xe.status == 401 || xe.status == 403,
        "status {}",
        xe.status
    );

    // The repo export is a CAR (varint header length, then DAG-CBOR {roots, version}).
    let car = x.get_repo(base, did).await?;
    ensure!(car.len() > 100, "CAR of {} bytes", car.len());

    // The PLC serves the DID document with the legacy key form, and the
    // did:key form in /data; the peer info carries both.
    let doc = peer.did_document(did).await?;
    let vm = doc["verificationMethod"]
        .as_array()
        .and_then(|v| {
            v.iter()
                .find(|m| m["id"].as_str().is_some_and(|id| id.ends_with("#atproto")))
        })
        .context("DID document has an #atproto verification method")?;
    ensure!(
        vm["type"] == "EcdsaSecp256k1VerificationKey2019",
        "legacy key type, got {}",
        vm["type"]
    );
    let multibase = vm["publicKeyMultibase"]
        .as_str()
        .context("publicKeyMultibase")?;
    ensure!(
        multibase.starts_with('z'),
        "base58btc multibase: {multibase}"
    );
    ensure!(
        *vm == alice.did_doc_verification_method,
        "peer info has the same verification method"
    );
    let data = peer.plc_data(did).await?;
    ensure!(
        data["verificationMethods"]["atproto"] == alice.signing_key.as_str(),
        "did:key matches: {data}"
    );
    ensure!(
        alice.signing_key.starts_with("did:key:zQ3s"),
        "K-256 did:key: {}",
        alice.signing_key
    );
    ensure!(
        doc["alsoKnownAs"][0] == format!("at://{}", alice.handle),
        "alsoKnownAs: {}",
        doc["alsoKnownAs"]
    );

    // Graceful stop: SIGTERM, exit 0, and the process is gone.
    let clean = peer.shutdown(Duration::from_secs(20)).await?;
    ensure!(clean, "the peer exits 0 on SIGTERM");
    ensure!(
        !process_exists(pid),
        "peer process {pid} is gone after shutdown"
    );
    Ok(())
}

#[tokio::test]
async fn account_lifecycle_and_drop_kills_the_peer() -> Result<()> {
    let peer = Peer::start(PeerOptions {
        accounts: 2,
        pds_count: 2,
        ..Default::default()
    })
    .await?;
    let pid = peer.pid();
    ensure!(peer.info().pdses.len() == 2, "two PDSes");
    let (p0, p1) = (&peer.info().pdses[0], &peer.info().pdses[1]);
    ensure!(
        p0.port != p1.port && p0.firehose_url.starts_with("ws://"),
        "distinct ports: {p0:?} {p1:?}"
    );
    let carol = peer.accounts()[1].clone();
    ensure!(
        carol.pds_url == p1.url,
        "the second account lives on the second PDS"
    );
    let x = peer.xrpc();

    // A fresh session, a handle change, deactivation and reactivation.
    let session = x
        .create_session(&carol.pds_url, &carol.handle, &carol.password)
        .await?;
    ensure!(session.did == carol.did, "session for {}", session.did);
    let new_handle = format!("renamed{}", p1.handle_domain);
    x.update_handle(&carol.pds_url, &session.access_jwt, &new_handle)
        .await?;
    let doc = peer.did_document(&carol.did).await?;
    ensure!(
        doc["alsoKnownAs"][0] == format!("at://{new_handle}"),
        "PLC has the new handle: {}",
        doc["alsoKnownAs"]
    );

    x.deactivate_account(&carol.pds_url, &session.access_jwt)
        .await?;
    let err = x
        .list_records(&carol.pds_url, &carol.did, SERVICE)
        .await
        .err()
        .context("a deactivated repo is not served")?;
    ensure!(
        err.downcast_ref::<XrpcError>().is_some(),
        "typed error: {err:#}"
    );
    x.activate_account(&carol.pds_url, &session.access_jwt)
        .await?;
    ensure!(
        x.list_records(&carol.pds_url, &carol.did, SERVICE)
            .await?
            .is_empty(),
        "served again, empty"
    );

    // Dropping the peer kills and reaps the process synchronously.
    drop(peer);
    ensure!(
        !process_exists(pid),
        "peer process {pid} is gone after drop"
    );
    Ok(())
}

#[tokio::test]
async fn missing_install_is_an_error_naming_install_sh() -> Result<()> {
    // A folder with peer.mjs but no node_modules: start must fail, not skip.
    let dir = std::env::temp_dir().join(format!(
        "guildhall-testkit-noinstall-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("peer.mjs"), "// placeholder\n")?;
    let res = Peer::start(PeerOptions {
        peer_dir: Some(dir.clone()),
        ..Default::default()
    })
    .await;
    std::fs::remove_dir_all(&dir)?;
    let msg = format!(
        "{:#}",
        res.err().context("start must fail without node_modules")?
    );
    ensure!(
        msg.contains("install.sh"),
        "message names install.sh: {msg}"
    );
    Ok(())
}

#[tokio::test]
async fn record_stream_captures_every_commit() -> Result<()> {
    let peer = Peer::start(PeerOptions {
        accounts: 3,
        ..Default::default()
    })
    .await?;
    let out = std::env::temp_dir().join(format!(
        "guildhall-testkit-stream-{}.frames",
        std::process::id()
    ));
    let ops = 40;
    let summary = peer.record_stream(&out, ops, 4).await?;
    let frames = guildhall_testkit::read_frames(&out);
    // The reference consumer accepts every commit of the recording.
    let verified = peer.verify_with_reference(&out).await;
    std::fs::remove_file(&out)?;
    let keys = std::fs::read_to_string(out.with_extension("frames.keys.json"));
    std::fs::remove_file(out.with_extension("frames.keys.json"))?;
    let keys: Value = serde_json::from_str(&keys?)?;
    for a in peer.accounts() {
        ensure!(
            keys[&a.did] == a.signing_key.as_str(),
            "keys file has {}: {keys}",
            a.did
        );
    }
    let (frames, verified) = (frames?, verified?);
    ensure!(
        verified["failures"] == 0 && verified["opsVerified"] == verified["ops"],
        "reference verifier: {verified}"
    );
    ensure!(
        verified["ops"] == summary["load"]["writes"],
        "one op per write: {verified} vs {summary}"
    );
    ensure!(
        summary["load"]["errors"] == 0,
        "load errors: {}",
        summary["load"]
    );
    ensure!(
        summary["files"][0]["frames"] == frames.len(),
        "frame count matches: {summary}"
    );
    // A #commit header is the DAG-CBOR map {"t": "#commit", "op": 1}; keys
    // sort by length, so every commit frame starts with these bytes.
    let commit_prefix: Vec<u8> = [&[0xa2, 0x61, b't', 0x67][..], b"#commit"].concat();
    let commits = frames
        .iter()
        .filter(|f| f.starts_with(&commit_prefix))
        .count();
    ensure!(
        summary["framesByType"]["#commit"] == commits,
        "commit count matches: {summary}"
    );
    // Every operation is one commit; account creation adds a genesis commit each.
    ensure!(
        commits == ops + 3,
        "{commits} commits for {ops} ops + 3 genesis commits"
    );
    Ok(())
}
