//! `ledger-worker`: a stream of holds, captures with fees, voids and transfers through the
//! ledger writer, printing each id the ledger answered — the process the crash tests kill -9.
//!
//! `ledger-worker <db> <seed> <epoch_ms>`: runs until killed. Every answered transfer id is
//! printed as `ack <id>` only after its batch committed, so the test can check each one
//! survived. It first retries the first requests of run `seed - 1` with the same ids and
//! parameters, as a client whose answers were lost in the crash would.

use std::io::Write as _;
use std::time::Duration;

use guildhall_store::ledger_core::{Owner, TransferId};
use guildhall_store::{LedgerCallError, LedgerConfig, LedgerHandle, Store};

/// Payers the crash test funds.
const PAYERS: usize = 50;
/// Concurrent callers, so batches hold several requests when the kill lands.
const TASKS: usize = 8;

fn payer(i: usize) -> Owner {
    Owner::Did(format!("did:plc:payer{}", i % PAYERS))
}

fn provider(i: usize) -> Owner {
    Owner::Did(format!("did:plc:provider{}", i % 5))
}

fn ack(id: &TransferId) {
    let mut out = std::io::stdout().lock();
    // The test reads this line; a failed write means it is gone, and so should we be.
    if writeln!(out, "ack {id}").and_then(|_| out.flush()).is_err() {
        std::process::exit(0);
    }
}

/// One iteration of caller `k` in run `seed`: deterministic ids and parameters, so a later run
/// can repeat it exactly.
async fn iteration(l: &LedgerHandle, seed: u64, k: usize, n: usize, epoch: i64) {
    let base = format!("s{seed}-k{k}-n{n}");
    let who = k * 7 + n;
    // One hold in four is left to time out soon; the rest live long enough to be resolved.
    let timeout = if n.is_multiple_of(4) {
        epoch + 2_000
    } else {
        epoch + 600_000
    };
    let hold_id = TransferId(format!("{base}-h"));
    let hold = match l
        .hold(hold_id.clone(), payer(who), provider(n), "USD", 10, timeout)
        .await
    {
        Ok(h) => {
            ack(&hold_id);
            h
        }
        Err(LedgerCallError::Refused(_)) => return,
        Err(e) => panic!("hold: {e}"),
    };
    match n % 4 {
        0 => {}
        1 => {
            let id = TransferId(format!("{base}-v"));
            if l.void(id.clone(), &hold).await.is_ok() {
                ack(&id);
            }
        }
        _ => {
            let (c, f) = (
                TransferId(format!("{base}-c")),
                TransferId(format!("{base}-f")),
            );
            if l.capture(c.clone(), &hold, 8, Some((f.clone(), 1)))
                .await
                .is_ok()
            {
                ack(&c);
                ack(&f);
            }
        }
    }
    if n.is_multiple_of(5) {
        let id = TransferId(format!("{base}-t"));
        let to = payer(who + 1);
        if l.transfer(id.clone(), payer(who), to, "USD", 1, None)
            .await
            .is_ok()
        {
            ack(&id);
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, db, seed, epoch] = args.as_slice() else {
        eprintln!("usage: ledger-worker <db> <seed> <epoch_ms>");
        std::process::exit(2);
    };
    let seed: u64 = seed.parse().expect("seed");
    let epoch: i64 = epoch.parse().expect("epoch");
    let store = Store::open(db).await.expect("open store");
    let config = LedgerConfig {
        sweep_every: Duration::from_millis(100),
        ..LedgerConfig::default()
    };
    let l = LedgerHandle::start(store, config);
    if seed > 0 {
        for n in 0..12 {
            iteration(&l, seed - 1, 0, n, epoch).await;
        }
    }
    let mut tasks = Vec::new();
    for k in 0..TASKS {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                iteration(&l, seed, k, n, epoch).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("caller");
    }
}
