//! The ledger in the database: the stores against the in-memory ledger on random scripts, and
//! the batching writer under concurrent callers, two writers at once and the sweeper.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use guildhall_ledger::testing::{Step, steps};
use guildhall_ledger::{
    AccountKey, Balance, HoldState, Kind, Ledger, LedgerError, Owner, Transfer, TransferId,
};
use guildhall_store::*;
use proptest::prelude::*;

use crate::harness::{Ctx, both, fresh};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn did(name: &str) -> Owner {
    Owner::Did(format!("did:plc:{name}"))
}

fn tid(s: &str) -> TransferId {
    TransferId(s.to_owned())
}

fn nonzero(accounts: Vec<(AccountKey, Balance)>) -> BTreeMap<AccountKey, Balance> {
    accounts
        .into_iter()
        .filter(|(_, b)| *b != Balance::default())
        .collect()
}

/// Conservation per currency, no constrained account below zero, each hold resolved at most
/// once: what must hold of any ledger state, read back from the database.
async fn audit(store: &Store) {
    let (accounts, transfers) = store.ledger_snapshot().await.expect("snapshot");
    let mut sums: BTreeMap<String, [i128; 4]> = BTreeMap::new();
    for (k, b) in &accounts {
        let s = sums.entry(k.currency.clone()).or_default();
        s[0] += i128::from(b.debits_pending);
        s[1] += i128::from(b.debits_posted);
        s[2] += i128::from(b.credits_pending);
        s[3] += i128::from(b.credits_posted);
        if k.owner.constrained() {
            assert!(
                b.available().is_some_and(|a| a >= 0) && b.debits_pending >= 0,
                "{k:?} below zero: {b:?}"
            );
        }
    }
    for (c, s) in sums {
        assert_eq!(s[0], s[2], "pending debits = pending credits in {c}");
        assert_eq!(s[1], s[3], "posted debits = posted credits in {c}");
    }
    let ids: BTreeSet<&TransferId> = transfers.iter().map(|t| &t.request.id).collect();
    assert_eq!(ids.len(), transfers.len(), "an id applied twice");
    let mut resolved: BTreeMap<&TransferId, usize> = BTreeMap::new();
    for t in &transfers {
        if let Kind::Capture { hold } | Kind::Void { hold } = &t.request.kind {
            *resolved.entry(hold).or_default() += 1;
        }
    }
    assert!(
        resolved.values().all(|n| *n == 1),
        "a hold resolved twice: {resolved:?}"
    );
}

/// Runs random scripts on the store and on the in-memory ledger (itself checked against a
/// naive model in `guildhall-ledger`), cutting the script into batches at random: every
/// outcome, every account and every transfer must agree, and the audit must pass.
fn same_as_in_memory(pg: bool, cases: u32) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let script = (steps(60), proptest::collection::vec(any::<bool>(), 60));
    let result = proptest::test_runner::TestRunner::new(config).run(&script, |(script, cuts)| {
        rt.block_on(async {
            let db = fresh(pg).await;
            let store = Store::open(&db.location).await.expect("open");
            let outcome = run_script(&store, &script, &cuts).await;
            store.close().await;
            db.cleanup().await;
            outcome
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

async fn run_script(store: &Store, script: &[Step], cuts: &[bool]) -> Result<(), TestCaseError> {
    let mut mem = Ledger::new();
    let mut now = 0i64;
    let mut pending: Vec<LedgerOp> = Vec::new();
    let mut expected: Vec<Result<Vec<Transfer>, LedgerError>> = Vec::new();
    for (i, step) in script.iter().enumerate() {
        match step {
            Step::Submit(chain) => {
                expected.push(mem.submit(chain, now));
                pending.push(LedgerOp::Chain(chain.clone()));
            }
            Step::Sweep => {
                flush(store, &mut pending, &mut expected, now).await?;
                let due = store.ledger_due_holds(now, 1000).await.expect("due");
                let ops: Vec<LedgerOp> = due
                    .into_iter()
                    .map(|h| LedgerOp::Expire(TransferId(h)))
                    .collect();
                let outcomes = store.ledger_commit(&ops, now).await.expect("sweep");
                let mut got: Vec<Transfer> = outcomes
                    .into_iter()
                    .map(|o| o.expect("a due hold is released").remove(0))
                    .collect();
                let mut want = mem.sweep(now);
                got.sort_by(|a, b| a.request.id.cmp(&b.request.id));
                want.sort_by(|a, b| a.request.id.cmp(&b.request.id));
                prop_assert_eq!(got, want, "sweep at {}", now);
            }
            Step::Advance(ms) => {
                flush(store, &mut pending, &mut expected, now).await?;
                now += ms;
            }
        }
        if cuts.get(i).copied().unwrap_or(true) {
            flush(store, &mut pending, &mut expected, now).await?;
            compare(store, &mem).await?;
        }
    }
    flush(store, &mut pending, &mut expected, now).await?;
    compare(store, &mem).await?;
    audit(store).await;
    Ok(())
}

async fn flush(
    store: &Store,
    pending: &mut Vec<LedgerOp>,
    expected: &mut Vec<Result<Vec<Transfer>, LedgerError>>,
    now: i64,
) -> Result<(), TestCaseError> {
    if pending.is_empty() {
        return Ok(());
    }
    let got = store.ledger_commit(pending, now).await.expect("commit");
    prop_assert_eq!(&got, &*expected, "outcomes of a batch of {}", pending.len());
    pending.clear();
    expected.clear();
    Ok(())
}

async fn compare(store: &Store, mem: &Ledger) -> Result<(), TestCaseError> {
    let got = nonzero(store.ledger_accounts().await.expect("accounts"));
    let want = nonzero(mem.accounts());
    prop_assert_eq!(got, want, "accounts");
    let got: BTreeMap<TransferId, Transfer> = store
        .ledger_transfers()
        .await
        .expect("transfers")
        .into_iter()
        .map(|t| (t.request.id.clone(), t))
        .collect();
    let want: BTreeMap<TransferId, Transfer> = mem
        .transfers()
        .into_iter()
        .map(|t| (t.request.id.clone(), t))
        .collect();
    prop_assert_eq!(got, want, "transfers");
    Ok(())
}

#[test]
fn sqlite_ledger_equals_in_memory_ledger() {
    same_as_in_memory(false, 48);
}

#[test]
fn postgres_ledger_equals_in_memory_ledger() {
    same_as_in_memory(true, 32);
}

fn fast() -> LedgerConfig {
    LedgerConfig {
        sweep_every: Duration::from_millis(50),
        ..LedgerConfig::default()
    }
}

/// A second connection pool to the same database: another writer, as a second process would
/// be.
async fn second_writer(ctx: &Ctx) -> Store {
    Store::open(&ctx.location).await.expect("second store")
}

async fn five_hundred_holds_against_a_balance_for_one_hundred(ctx: Ctx) {
    let other = second_writer(&ctx).await;
    let writers = [
        LedgerHandle::start(ctx.store.clone(), fast()),
        LedgerHandle::start(other.clone(), fast()),
    ];
    let payer = did("payer");
    writers[0]
        .grant(tid("grant"), payer.clone(), "USD", 100, Some("test".into()))
        .await
        .expect("grant");
    let timeout = now_ms() + 60_000;
    let mut tasks = Vec::new();
    for i in 0..500 {
        let w = writers[i % 2].clone();
        let payer = payer.clone();
        tasks.push(tokio::spawn(async move {
            w.hold(
                TransferId(format!("hold-{i}")),
                payer,
                did(&format!("provider{}", i % 7)),
                "USD",
                1,
                timeout,
            )
            .await
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => ok += 1,
            Err(LedgerCallError::Refused(LedgerError::InsufficientFunds { .. })) => refused += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((ok, refused), (100, 400));
    let b = ctx.store.ledger_balances(&payer).await.expect("balance");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].1.available(), Some(0));
    assert_eq!(b[0].1.debits_pending, 100);
    audit(&ctx.store).await;
    other.close().await;
}

async fn fifty_retries_of_one_id_make_one_transfer(ctx: Ctx) {
    let other = second_writer(&ctx).await;
    let writers = [
        LedgerHandle::start(ctx.store.clone(), fast()),
        LedgerHandle::start(other.clone(), fast()),
    ];
    let (a, b) = (did("a"), did("b"));
    writers[0]
        .grant(tid("g"), a.clone(), "USD", 1_000, None)
        .await
        .expect("grant");
    let mut tasks = Vec::new();
    for i in 0..50 {
        let w = writers[i % 2].clone();
        let (a, b) = (a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            w.transfer(tid("pay-once"), a, b, "USD", 7, Some("retry".into()))
                .await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("task").expect("every retry answers"));
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]), "one first result");
    let moved = ctx.store.ledger_balances(&b).await.expect("balance");
    assert_eq!(moved[0].1.credits_posted, 7, "moved once");
    let all = ctx.store.ledger_transfers().await.expect("transfers");
    assert_eq!(
        all.iter().filter(|t| t.request.id.0 == "pay-once").count(),
        1
    );
    // Same id, other parameters: refused, nothing moves.
    let changed = writers[1]
        .transfer(tid("pay-once"), a.clone(), b.clone(), "USD", 8, None)
        .await;
    assert!(matches!(
        changed,
        Err(LedgerCallError::Refused(LedgerError::IdReused(_)))
    ));
    audit(&ctx.store).await;
    other.close().await;
}

async fn a_settlement_splits_the_fee_and_a_refund_returns_it(ctx: Ctx) {
    let l = LedgerHandle::start(ctx.store.clone(), fast());
    let (caller, provider) = (did("caller"), did("provider"));
    l.grant(
        tid("g"),
        caller.clone(),
        "USD",
        1_000,
        Some("top-up".into()),
    )
    .await
    .expect("grant");
    let hold = l
        .hold(
            tid("h"),
            caller.clone(),
            provider.clone(),
            "USD",
            300,
            now_ms() + 60_000,
        )
        .await
        .expect("hold");
    let settled = l
        .capture(tid("c"), &hold, 250, Some((tid("fee"), 25)))
        .await
        .expect("capture");
    assert_eq!(settled.len(), 2);
    let bal = |o: Owner| {
        let store = ctx.store.clone();
        async move {
            store.ledger_balances(&o).await.expect("balance")[0]
                .1
                .available()
                .expect("in range")
        }
    };
    assert_eq!(
        bal(caller.clone()).await,
        750,
        "the 50 not captured came back"
    );
    assert_eq!(bal(provider.clone()).await, 225);
    assert_eq!(bal(Owner::Fees).await, 25);
    // A second capture of the same hold is refused; the first result answers a retry.
    let again = l
        .capture(tid("c"), &hold, 250, Some((tid("fee"), 25)))
        .await
        .expect("retry");
    assert_eq!(again, settled);
    let other = l.capture(tid("c2"), &hold, 10, None).await;
    assert!(matches!(
        other,
        Err(LedgerCallError::Refused(LedgerError::HoldResolved { .. }))
    ));
    // A capture whose fee the payee cannot cover fails whole: the hold stays pending.
    let h2 = l
        .hold(
            tid("h2"),
            caller.clone(),
            provider.clone(),
            "USD",
            10,
            now_ms() + 60_000,
        )
        .await
        .expect("hold");
    let too_much = l
        .capture(tid("c3"), &h2, 10, Some((tid("fee3"), 1_000)))
        .await;
    assert!(matches!(
        too_much,
        Err(LedgerCallError::Refused(LedgerError::LinkedFailed {
            index: 1,
            ..
        }))
    ));
    let h2_now = ctx
        .store
        .ledger_transfers()
        .await
        .expect("transfers")
        .into_iter()
        .find(|t| t.request.id == tid("h2"))
        .expect("h2");
    assert_eq!(h2_now.hold, Some(HoldState::Pending));
    let refund = l
        .refund(tid("r"), &settled[0], 100, Some("SLA breach".into()))
        .await
        .expect("refund");
    assert_eq!(refund.debit.owner, provider);
    assert_eq!(bal(caller.clone()).await, 840);
    let over = l.refund(tid("r2"), &settled[0], 151, None).await;
    assert!(matches!(
        over,
        Err(LedgerCallError::Refused(LedgerError::ExceedsRefundable {
            left: 150,
            ..
        }))
    ));
    audit(&ctx.store).await;
}

async fn the_sweeper_releases_holds_that_time_out(ctx: Ctx) {
    let l = LedgerHandle::start(ctx.store.clone(), fast());
    let (caller, provider) = (did("caller"), did("provider"));
    l.grant(tid("g"), caller.clone(), "USD", 100, None)
        .await
        .expect("grant");
    let hold = l
        .hold(
            tid("h"),
            caller.clone(),
            provider.clone(),
            "USD",
            60,
            now_ms() + 150,
        )
        .await
        .expect("hold");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let t = ctx.store.ledger_transfers().await.expect("transfers");
        if t.iter()
            .any(|t| t.request.id == tid("h") && t.hold == Some(HoldState::Expired))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hold never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b = ctx.store.ledger_balances(&caller).await.expect("balance");
    assert_eq!(b[0].1.available(), Some(100));
    assert_eq!(b[0].1.debits_pending, 0);
    let late = l.capture(tid("c"), &hold, 60, None).await;
    assert!(matches!(
        late,
        Err(LedgerCallError::Refused(LedgerError::HoldResolved {
            state: HoldState::Expired,
            ..
        }))
    ));
    assert!(l.stats().expired.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    audit(&ctx.store).await;
}

async fn history_pages_newest_first(ctx: Ctx) {
    let l = LedgerHandle::start(ctx.store.clone(), fast());
    let (a, b, c) = (did("a"), did("b"), did("c"));
    l.grant(tid("g"), a.clone(), "USD", 100, None)
        .await
        .expect("grant");
    for i in 0..5 {
        let to = if i % 2 == 0 { b.clone() } else { c.clone() };
        l.transfer(TransferId(format!("t{i}")), a.clone(), to, "USD", 1, None)
            .await
            .expect("transfer");
    }
    let first = ctx
        .store
        .ledger_transfers_of(&a, None, 4)
        .await
        .expect("page");
    let ids: Vec<&str> = first.iter().map(|(_, t)| t.request.id.0.as_str()).collect();
    assert_eq!(ids, ["t4", "t3", "t2", "t1"]);
    let before = first.last().map(|(seq, _)| *seq);
    let rest = ctx
        .store
        .ledger_transfers_of(&a, before, 4)
        .await
        .expect("page");
    let ids: Vec<&str> = rest.iter().map(|(_, t)| t.request.id.0.as_str()).collect();
    assert_eq!(ids, ["t0", "g"]);
    let of_b = ctx
        .store
        .ledger_transfers_of(&b, None, 10)
        .await
        .expect("page");
    let ids: Vec<&str> = of_b.iter().map(|(_, t)| t.request.id.0.as_str()).collect();
    assert_eq!(ids, ["t4", "t2", "t0"], "only b's");
}

both!(
    five_hundred_holds_against_a_balance_for_one_hundred,
    fifty_retries_of_one_id_make_one_transfer,
    a_settlement_splits_the_fee_and_a_refund_returns_it,
    the_sweeper_releases_holds_that_time_out,
    history_pages_newest_first,
);
