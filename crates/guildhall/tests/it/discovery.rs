//! Discovery end to end: records written on the reference PDS come back from
//! `dev.guildhall.searchServices` ranked by trust distance from the viewer, with the endorsement
//! path; deleting an endorsement there changes the ranking (the time it takes is printed).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};

use crate::both;
use crate::harness::{Backend, Db, Guildhall, peer};

fn service(name: &str) -> Value {
    json!({
        "$type": "dev.guildhall.service",
        "name": name,
        "capabilities": ["sms.send"],
        "endpoints": [{"protocol": "http", "url": "https://sms.example.test"}],
        "createdAt": "2026-11-02T10:00:00Z",
    })
}

fn endorsement(subject: &str) -> Value {
    json!({
        "$type": "dev.guildhall.endorsement",
        "subject": subject,
        "capabilities": ["sms.send"],
        "strength": 80,
        "createdAt": "2026-11-02T10:00:00Z",
    })
}

/// `(operator DID, distance)` of each result, in rank order.
fn ranking(body: &Value) -> Vec<(String, Option<u64>)> {
    body["services"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["operator"]["did"].as_str().unwrap_or_default().to_owned(),
                        s["trust"]["distance"].as_u64(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn discovery(backend: Backend) -> Result<()> {
    let peer = peer(4).await?;
    let db = Db::fresh(backend).await?;
    let mut gh = Guildhall::serve(&db, &peer)?;
    gh.wait_ready(Duration::from_secs(60)).await?;
    gh.wait_connected(Duration::from_secs(30)).await?;
    let accounts = peer.accounts();
    let (viewer, middle, far, near) = (&accounts[0], &accounts[1], &accounts[2], &accounts[3]);
    let x = peer.xrpc();
    let svc = "dev.guildhall.service";
    let end = "dev.guildhall.endorsement";
    // far is two hops away (viewer → middle → far); near is one (viewer → near).
    x.create_record(
        &far.pds_url,
        &far.access_jwt,
        &far.did,
        svc,
        Some("sms"),
        &service("Far SMS"),
    )
    .await?;
    x.create_record(
        &near.pds_url,
        &near.access_jwt,
        &near.did,
        svc,
        Some("sms"),
        &service("Near SMS"),
    )
    .await?;
    let v_m = x
        .create_record(
            &viewer.pds_url,
            &viewer.access_jwt,
            &viewer.did,
            end,
            None,
            &endorsement(&middle.did),
        )
        .await?;
    let m_f = x
        .create_record(
            &middle.pds_url,
            &middle.access_jwt,
            &middle.did,
            end,
            None,
            &endorsement(&far.did),
        )
        .await?;
    let v_n = x
        .create_record(
            &viewer.pds_url,
            &viewer.access_jwt,
            &viewer.did,
            end,
            None,
            &endorsement(&near.did),
        )
        .await?;

    let http = reqwest::Client::new();
    let url = format!(
        "http://{}/xrpc/dev.guildhall.searchServices?capability=sms.send&viewer={}",
        gh.addr, viewer.did
    );
    let search = || async {
        let resp = http.get(&url).send().await.context("searchServices")?;
        ensure!(
            resp.status().is_success(),
            "searchServices: {}",
            resp.status()
        );
        resp.json::<Value>().await.context("searchServices body")
    };

    let want = vec![(near.did.clone(), Some(1)), (far.did.clone(), Some(2))];
    let started = Instant::now();
    let body = loop {
        let body = search().await?;
        if ranking(&body) == want {
            break body;
        }
        if started.elapsed() > Duration::from_secs(30) {
            gh.check_alive()?;
            bail!(
                "ranking never became {want:?}; last answer:\n{body:#}\n{}",
                gh.log_tail(30)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The two-hop result explains itself with the exact endorsement records.
    let path = body["services"][1]["trust"]["path"]
        .as_array()
        .context("path of the far service")?;
    let hops: Vec<(&str, &str, &str)> = path
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap_or_default(),
                e["to"].as_str().unwrap_or_default(),
                e["uri"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        hops,
        vec![
            (viewer.did.as_str(), middle.did.as_str(), v_m.uri.as_str()),
            (middle.did.as_str(), far.did.as_str(), m_f.uri.as_str()),
        ]
    );
    assert_eq!(body["services"][0]["trust"]["basis"], "graph");

    // Withdraw the direct vouch for `near`: it loses its path, `far` now ranks first.
    let rkey = v_n.uri.rsplit('/').next().unwrap_or_default().to_owned();
    x.delete_record(
        &viewer.pds_url,
        &viewer.access_jwt,
        &viewer.did,
        "dev.guildhall.endorsement",
        &rkey,
    )
    .await?;
    let acked = Instant::now();
    loop {
        let body = search().await?;
        let r = ranking(&body);
        if r.first() == Some(&(far.did.clone(), Some(2)))
            && r.iter().any(|(d, dist)| d == &near.did && dist.is_none())
        {
            break;
        }
        if acked.elapsed() > Duration::from_secs(10) {
            bail!("ranking did not follow the deletion: {r:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = acked.elapsed();
    eprintln!(
        "discovery ({backend:?}): endorsement deleted on the PDS → ranking changed in {took:?}"
    );
    Ok(())
}

both!(discovery);
