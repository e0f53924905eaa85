//! kill -9 during a stream of holds, captures with fees, voids and transfers (`ledger-worker`),
//! on both backends: after every kill the books balance, every answered id is there, no
//! transfer is doubled or half-applied, and holds left pending are voided by their timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use guildhall_ledger::{AccountKey, Balance, HoldState, Kind, Owner, Transfer, TransferId};
use guildhall_store::*;

use crate::harness::{Ctx, both};

const KILLS: u64 = 6;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Every account's counters recomputed from the transfer log alone.
fn from_log(transfers: &[Transfer]) -> BTreeMap<AccountKey, Balance> {
    let mut b: BTreeMap<AccountKey, Balance> = BTreeMap::new();
    for t in transfers {
        match t.request.kind {
            Kind::Hold { .. } if t.hold == Some(HoldState::Pending) => {
                b.entry(t.debit.clone()).or_default().debits_pending += t.amount;
                b.entry(t.credit.clone()).or_default().credits_pending += t.amount;
            }
            Kind::Post | Kind::Capture { .. } | Kind::Refund { .. } => {
                b.entry(t.debit.clone()).or_default().debits_posted += t.amount;
                b.entry(t.credit.clone()).or_default().credits_posted += t.amount;
            }
            _ => {}
        }
    }
    b.retain(|_, v| *v != Balance::default());
    b
}

async fn check_books(store: &Store, acked: &BTreeSet<String>) {
    // One snapshot: after a kill -9 a PostgreSQL backend may still finish the dead client's
    // COMMIT, and two separate reads could straddle it.
    let (accounts, transfers) = store.ledger_snapshot().await.expect("snapshot");
    let by_id: BTreeMap<&str, &Transfer> = transfers
        .iter()
        .map(|t| (t.request.id.0.as_str(), t))
        .collect();
    assert_eq!(by_id.len(), transfers.len(), "an id applied twice");
    for id in acked {
        assert!(by_id.contains_key(id.as_str()), "answered {id} was lost");
    }
    // A capture and its fee are one linked chain: both or neither.
    for id in by_id.keys() {
        if let Some(base) = id.strip_suffix("-c") {
            assert!(
                by_id.contains_key(format!("{base}-f").as_str()),
                "{id} without its fee"
            );
        }
        if let Some(base) = id.strip_suffix("-f") {
            assert!(
                by_id.contains_key(format!("{base}-c").as_str()),
                "{id} without its capture"
            );
        }
    }
    let accounts: BTreeMap<AccountKey, Balance> = accounts
        .into_iter()
        .filter(|(_, b)| *b != Balance::default())
        .collect();
    assert_eq!(
        accounts,
        from_log(&transfers),
        "counters = what the log says"
    );
    let (mut debits, mut credits) = (0i128, 0i128);
    for (k, b) in &accounts {
        debits += i128::from(b.debits_pending) + i128::from(b.debits_posted);
        credits += i128::from(b.credits_pending) + i128::from(b.credits_posted);
        if k.owner.constrained() {
            assert!(b.available().is_some_and(|a| a >= 0), "{k:?} below zero");
        }
    }
    assert_eq!(debits, credits, "conservation");
}

async fn kill_nine_mid_stream_loses_and_doubles_nothing(ctx: Ctx) {
    let epoch = now_ms();
    let funding = LedgerHandle::start(ctx.store.clone(), LedgerConfig::default());
    for i in 0..50 {
        funding
            .grant(
                TransferId(format!("fund-{i}")),
                Owner::Did(format!("did:plc:payer{i}")),
                "USD",
                1_000_000,
                None,
            )
            .await
            .expect("fund");
    }
    drop(funding);
    let mut acked = BTreeSet::new();
    for seed in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-worker"))
            .args([&ctx.location, &seed.to_string(), &epoch.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ledger-worker");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("ack ").map(str::to_owned))
                .collect::<Vec<String>>()
        });
        // A different point of the stream each time: early, mid-batch, later.
        let after = 300 + (seed * 7_919 % 900);
        tokio::time::sleep(Duration::from_millis(after)).await;
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        let run: Vec<String> = reader.join().expect("reader");
        assert!(
            !run.is_empty(),
            "run {seed} answered nothing before the kill"
        );
        acked.extend(run);
        check_books(&ctx.store, &acked).await;
    }
    // The holds left pending time out at epoch + 2 s; the sweeper of a restarted writer voids
    // them.
    let l = LedgerHandle::start(
        ctx.store.clone(),
        LedgerConfig {
            sweep_every: Duration::from_millis(100),
            ..LedgerConfig::default()
        },
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = now_ms();
        let overdue = ctx
            .store
            .ledger_due_holds(now, 10)
            .await
            .expect("due holds");
        if now > epoch + 2_000 && overdue.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "holds left pending: {overdue:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let transfers = ctx.store.ledger_transfers().await.expect("transfers");
    let expired = transfers
        .iter()
        .filter(|t| t.hold == Some(HoldState::Expired))
        .count();
    assert!(expired > 0, "some short holds were left to expire");
    check_books(&ctx.store, &acked).await;
    drop(l);
}

both!(kill_nine_mid_stream_loses_and_doubles_nothing);
