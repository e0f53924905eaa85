//! End to end: three accounts write services, endorsements and profiles through every write
//! path; `guildhall serve` follows the PDS firehose; the index must equal the repos through
//! updates, deletes, lexicon rejections, a handle change, deactivation and reactivation.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use guildhall_store::Store;
use guildhall_testkit::{Account, Peer, Write};
use serde_json::{Value, json};

use crate::both;
use crate::harness::{
    Backend, Db, Guildhall, await_index, check_integrity, metric, peer, repo_records,
};

const SERVICE: &str = "dev.guildhall.service";
const ENDORSEMENT: &str = "dev.guildhall.endorsement";
const OPERATOR: &str = "dev.guildhall.operator";
const NOW: &str = "2026-11-02T10:00:00.000Z";

fn service(name: &str, caps: &[&str]) -> Value {
    json!({
        "$type": SERVICE,
        "name": name,
        "description": format!("{name}, an end-to-end test service"),
        "capabilities": caps,
        "endpoints": [{"protocol": "mcp", "url": "https://svc.example.test/mcp", "transport": "streamable-http"}],
        "pricing": [{"model": "per_call", "amount": "0.002", "currency": "USD", "unit": "call"}],
        "sla": {"latencyP95Ms": 250, "availabilityBp": 9990},
        "regions": ["DE", "US"],
        "tags": ["e2e"],
        "version": "1.0.0",
        "createdAt": NOW,
    })
}

fn endorsement(subject: &str, strength: i64) -> Value {
    json!({
        "$type": ENDORSEMENT,
        "subject": subject,
        "capabilities": ["sms.send"],
        "strength": strength,
        "comment": "reliable",
        "createdAt": NOW,
    })
}

fn operator(name: &str) -> Value {
    json!({
        "$type": OPERATOR,
        "displayName": name,
        "description": "an operator in the end-to-end test",
        "website": "https://operator.example.test",
        "createdAt": NOW,
    })
}

fn rkey_of(uri: &str) -> Result<String> {
    uri.rsplit('/')
        .next()
        .map(str::to_owned)
        .context("URI without rkey")
}

/// Polls `check` until it returns `Ok(true)`, failing with `what` after `timeout`; returns
/// how long it took.
async fn until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let t = Instant::now();
    loop {
        if check().await? {
            return Ok(t.elapsed());
        }
        if t.elapsed() > timeout {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the store shows of an operator through the filtered (public) reads.
async fn visible(store: &Store, did: &str) -> Result<(bool, BTreeSet<String>, BTreeSet<String>)> {
    let op = store.operator(did).await?.is_some();
    let services = store
        .services_of(did)
        .await?
        .into_iter()
        .map(|s| s.uri)
        .collect();
    let mut endorsements: BTreeSet<String> = store
        .endorsements_by_author(did, None, 100)
        .await?
        .items
        .into_iter()
        .map(|e| e.uri)
        .collect();
    endorsements.extend(
        store
            .endorsements_of_subject(did, None, 100)
            .await?
            .items
            .into_iter()
            .map(|e| e.uri),
    );
    Ok((op, services, endorsements))
}

async fn e2e(backend: Backend) -> Result<()> {
    let t0 = Instant::now();
    let peer = peer(3).await?;
    let db = Db::fresh(backend).await?;
    let mut gh = Guildhall::serve(&db, &peer)?;
    gh.wait_ready(Duration::from_secs(60)).await?;
    gh.wait_connected(Duration::from_secs(30)).await?;
    let store = db.store().await?;
    let accounts = peer.accounts().to_vec();
    let [alice, bob, carol] = [&accounts[0], &accounts[1], &accounts[2]];
    let x = peer.xrpc();
    let mut rejected = BTreeSet::new();

    // createRecord, each collection.
    x.create_record(
        &alice.pds_url,
        &alice.access_jwt,
        &alice.did,
        OPERATOR,
        Some("self"),
        &operator("Alice Ops"),
    )
    .await?;
    let sms = x
        .create_record(
            &alice.pds_url,
            &alice.access_jwt,
            &alice.did,
            SERVICE,
            Some("sms"),
            &service("SMS gateway", &["sms.send", "sms.receive"]),
        )
        .await?;
    let bob_svc = x
        .create_record(
            &bob.pds_url,
            &bob.access_jwt,
            &bob.did,
            SERVICE,
            None,
            &service("Bob translate", &["translate.text"]),
        )
        .await?;
    let bob_end = x
        .create_record(
            &bob.pds_url,
            &bob.access_jwt,
            &bob.did,
            ENDORSEMENT,
            None,
            &endorsement(&alice.did, 80),
        )
        .await?;
    let alice_end_carol = x
        .create_record(
            &alice.pds_url,
            &alice.access_jwt,
            &alice.did,
            ENDORSEMENT,
            None,
            &endorsement(&carol.did, 60),
        )
        .await?;

    // applyWrites: several creates in one commit.
    let applied = x
        .apply_writes(
            &carol.pds_url,
            &carol.access_jwt,
            &carol.did,
            &[
                Write::Create {
                    collection: OPERATOR.into(),
                    rkey: Some("self".into()),
                    value: operator("Carol Ops"),
                },
                Write::Create {
                    collection: SERVICE.into(),
                    rkey: Some("speech".into()),
                    value: service("Carol speech", &["speech.transcribe"]),
                },
                Write::Create {
                    collection: ENDORSEMENT.into(),
                    rkey: None,
                    value: endorsement(&alice.did, 90),
                },
                Write::Create {
                    collection: ENDORSEMENT.into(),
                    rkey: None,
                    value: endorsement(&bob.did, 40),
                },
            ],
        )
        .await?;
    let carol_end_bob = applied
        .results
        .get(3)
        .and_then(|r| r["uri"].as_str())
        .context("applyWrites result 3 has a uri")?
        .to_owned();

    // putRecord (update), deleteRecord, and an applyWrites mixing update and delete.
    x.put_record(
        &alice.pds_url,
        &alice.access_jwt,
        &alice.did,
        SERVICE,
        "sms",
        &service("SMS gateway v2", &["sms.send"]),
    )
    .await?;
    x.delete_record(
        &bob.pds_url,
        &bob.access_jwt,
        &bob.did,
        ENDORSEMENT,
        &rkey_of(&bob_end.uri)?,
    )
    .await?;
    x.apply_writes(
        &carol.pds_url,
        &carol.access_jwt,
        &carol.did,
        &[
            Write::Update {
                collection: SERVICE.into(),
                rkey: "speech".into(),
                value: service("Carol speech v2", &["speech.transcribe", "translate.text"]),
            },
            Write::Delete {
                collection: ENDORSEMENT.into(),
                rkey: rkey_of(&carol_end_bob)?,
            },
        ],
    )
    .await?;

    // Records our lexicons refuse: a new one, and a valid one whose update breaks it (the old
    // version must leave the index too).
    let mut broken = service("Broken", &["sms.send"]);
    if let Some(o) = broken.as_object_mut() {
        o.remove("endpoints");
    }
    let broken = x
        .create_record(
            &bob.pds_url,
            &bob.access_jwt,
            &bob.did,
            SERVICE,
            Some("broken"),
            &broken,
        )
        .await?;
    rejected.insert(broken.uri.clone());
    x.create_record(
        &alice.pds_url,
        &alice.access_jwt,
        &alice.did,
        SERVICE,
        Some("flaky"),
        &service("Flaky", &["search.web"]),
    )
    .await?;
    let mut flaky = service("Flaky", &["search.web"]);
    flaky["sla"]["availabilityBp"] = json!(20_000);
    let flaky = x
        .put_record(
            &alice.pds_url,
            &alice.access_jwt,
            &alice.did,
            SERVICE,
            "flaky",
            &flaky,
        )
        .await?;
    rejected.insert(flaky.uri.clone());

    let index = await_index(
        &store,
        &peer,
        &accounts,
        &rejected,
        Duration::from_secs(30),
        Some(&mut gh),
    )
    .await?;
    ensure!(
        index.contains_key(&sms.uri) && index.contains_key(&bob_svc.uri),
        "services indexed"
    );
    ensure!(
        !index.contains_key(&bob_end.uri),
        "deleted endorsement gone"
    );
    ensure!(
        index.contains_key(&alice_end_carol.uri),
        "alice's endorsement of carol indexed"
    );
    eprintln!(
        "[{backend:?}] writes indexed at {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // The rejections are visible on /status with their reasons, and counted in /metrics. The
    // index can equal the repos before the last commits are processed (a rejected record is
    // absent either way), so wait for both rejections first.
    let wanted = [broken.uri.clone(), flaky.uri.clone()];
    until(
        "both rejections on /status",
        Duration::from_secs(30),
        || async {
            let s = gh.status().await?;
            let recent = s["recentRejections"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            Ok(wanted
                .iter()
                .all(|u| recent.iter().any(|r| r["uri"] == json!(u))))
        },
    )
    .await?;
    let status = gh.status().await?;
    let recent = status["recentRejections"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (uri, cid, needle) in [
        (&broken.uri, &broken.cid, "endpoints"),
        (&flaky.uri, &flaky.cid, "availabilityBp"),
    ] {
        let hit = recent
            .iter()
            .find(|r| r["uri"] == json!(uri) && r["cid"] == json!(cid))
            .with_context(|| format!("{uri} ({cid}) in /status recentRejections: {status:#}"))?;
        let detail = hit["detail"].as_str().unwrap_or_default();
        ensure!(
            hit["reason"] == json!("lexicon") && detail.contains(needle),
            "rejection of {uri} names its reason ({needle}): {hit}"
        );
        eprintln!("[{backend:?}] rejected {uri}: {detail}");
    }
    ensure!(
        status["rejectionsByReason"]["lexicon"].as_i64() >= Some(2),
        "rejectionsByReason counts them: {status:#}"
    );
    let metrics = gh.metrics().await?;
    ensure!(
        metric(&metrics, "guildhall_records_rejected_total") >= Some(2.0),
        "guildhall_records_rejected_total counts the rejections:\n{metrics}"
    );
    ensure!(
        store.service(&flaky.uri).await?.is_none(),
        "invalid update hid the old version"
    );

    // Handle change: the index shows the new handle, verified both ways.
    let new_handle = format!("alice-renamed{}", peer.pds().handle_domain);
    x.update_handle(&alice.pds_url, &alice.access_jwt, &new_handle)
        .await?;
    let took = until(
        "alice's new handle, verified",
        Duration::from_secs(30),
        || async {
            Ok(store.operator(&alice.did).await?.is_some_and(|o| {
                o.handle.as_deref() == Some(new_handle.as_str()) && o.handle_verified
            }))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n--- guildhall log ---\n{}", gh.log_tail(40)))?;
    eprintln!("[{backend:?}] handle change visible and verified after {took:?}");

    // Deactivation hides carol's services and endorsements (given and received) at once;
    // reactivation brings them back.
    let before = visible(&store, &carol.did).await?;
    ensure!(
        before.0 && !before.1.is_empty() && before.2.len() >= 2,
        "carol visible before deactivation: {before:?}"
    );
    x.deactivate_account(&carol.pds_url, &carol.access_jwt)
        .await?;
    let took = until(
        "carol hidden after deactivation",
        Duration::from_secs(30),
        || async {
            let v = visible(&store, &carol.did).await?;
            Ok(!v.0 && v.1.is_empty() && v.2.is_empty())
        },
    )
    .await?;
    eprintln!("[{backend:?}] deactivation hid carol after {took:?}");
    ensure!(
        store
            .search_services(&Default::default())
            .await?
            .iter()
            .all(|h| h.did != carol.did),
        "search hides carol's services"
    );
    // Other accounts keep being indexed meanwhile.
    x.create_record(
        &bob.pds_url,
        &bob.access_jwt,
        &bob.did,
        SERVICE,
        Some("during"),
        &service("During", &["email.send"]),
    )
    .await?;
    let active = [alice.clone(), bob.clone()];
    await_index(
        &store,
        &peer,
        &active,
        &rejected,
        Duration::from_secs(30),
        Some(&mut gh),
    )
    .await?;
    // The status survives a crash: after kill -9 and a restart carol stays hidden.
    gh.kill9()?;
    gh.start()?;
    gh.wait_ready(Duration::from_secs(60)).await?;
    gh.wait_connected(Duration::from_secs(30)).await?;
    let v = visible(&store, &carol.did).await?;
    ensure!(
        !v.0 && v.1.is_empty() && v.2.is_empty(),
        "carol visible again after a restart while deactivated: {v:?}"
    );

    x.activate_account(&carol.pds_url, &carol.access_jwt)
        .await?;
    let took = until(
        "carol visible again after reactivation",
        Duration::from_secs(30),
        || async { Ok(visible(&store, &carol.did).await? == before) },
    )
    .await?;
    eprintln!("[{backend:?}] reactivation restored carol after {took:?}");
    // Her chain goes on after reactivation.
    x.put_record(
        &carol.pds_url,
        &carol.access_jwt,
        &carol.did,
        SERVICE,
        "speech",
        &service("Carol speech v3", &["speech.transcribe"]),
    )
    .await?;

    let index = await_index(
        &store,
        &peer,
        &accounts,
        &rejected,
        Duration::from_secs(30),
        Some(&mut gh),
    )
    .await?;
    check_integrity(&db, &store, &index).await?;
    check_status(&gh, &accounts, &peer).await?;
    eprintln!(
        "[{backend:?}] e2e done in {:.1} s: {} records indexed, {} rejected",
        t0.elapsed().as_secs_f64(),
        index.len(),
        rejected.len()
    );
    Ok(())
}

/// `/status` agrees with the repos: every record of ours is counted once.
async fn check_status(gh: &Guildhall, accounts: &[Account], peer: &Peer) -> Result<()> {
    let status = gh.status().await?;
    let repo = repo_records(peer, accounts).await?;
    let services = repo
        .keys()
        .filter(|u| u.contains("/dev.guildhall.service/"))
        .count();
    eprintln!("/status stats: {}", status["stats"]);
    ensure!(
        status["stats"]["services"].as_u64() == Some(services as u64 - 2),
        "/status counts {} services, the repos hold {services} (2 rejected): {status:#}",
        status["stats"]["services"]
    );
    Ok(())
}

both!(e2e);
