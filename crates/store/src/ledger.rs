//! The ledger's writer: requests from every caller queue here and are decided and committed
//! in batches (group commit), and a sweeper releases holds whose timeout passed.
//!
//! One batch is one transaction ([`crate::Store::ledger_commit`]). While it commits, the next
//! requests gather; so throughput grows with load instead of every transfer waiting on the
//! row lock of a hot account. A caller is answered only after its batch committed: an answer
//! is never lost by a crash, and a request whose answer was lost is safe to retry (same id).
//!
//! Invariant: every answer a caller receives is durable (its batch committed first).
//! Invariant: one op's refusal never refuses another's; a batch the database rejects is
//! retried whole, then op by op, so one bad op cannot fail its neighbours.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use guildhall_ledger::{AccountKey, Kind, LedgerError, Owner, Request, Transfer, TransferId};
use tokio::sync::{mpsc, oneshot};

use crate::Store;
use crate::error::StoreError;
use crate::ledger_sql::{LedgerOp, Outcome};

/// Most requests in one linked chain.
pub const MAX_CHAIN: usize = 8;

/// How the writer batches and sweeps.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Most ops in one transaction.
    pub max_batch: usize,
    /// Requests that may wait for the writer before callers are made to wait for room.
    pub queue: usize,
    /// How often the sweeper looks for expired holds.
    pub sweep_every: Duration,
    /// Times a batch the database refused for a transient reason is tried again.
    pub retries: u32,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            max_batch: 256,
            queue: 8192,
            sweep_every: Duration::from_secs(1),
            retries: 5,
        }
    }
}

/// Why a ledger call did not produce transfers.
#[derive(Debug, thiserror::Error)]
pub enum LedgerCallError {
    /// The rules refused it; nothing was applied.
    #[error(transparent)]
    Refused(#[from] LedgerError),
    /// The database failed; nothing of this call was applied (retry with the same id).
    #[error("ledger storage failed")]
    Store(#[source] StoreError),
    /// The writer has stopped (the process is shutting down).
    #[error("the ledger is not running")]
    Closed,
    /// A linked chain must hold 1 to [`MAX_CHAIN`] requests.
    #[error("a linked chain holds 1 to {MAX_CHAIN} requests")]
    ChainSize,
}

struct Job {
    op: LedgerOp,
    reply: Option<oneshot::Sender<Result<Vec<Transfer>, LedgerCallError>>>,
}

/// Counts of what the writer did, for `/metrics`.
#[derive(Debug, Default)]
pub struct LedgerStats {
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Ops decided in committed batches.
    pub ops: AtomicU64,
    /// Ops the rules refused.
    pub refused: AtomicU64,
    /// Holds the sweeper released.
    pub expired: AtomicU64,
    /// Batches the database failed (before retries).
    pub failures: AtomicU64,
}

/// Handle to the ledger writer; cheap to clone. The writer stops when every handle is gone.
#[derive(Clone, Debug)]
pub struct LedgerHandle {
    tx: mpsc::Sender<Job>,
    store: Store,
    stats: Arc<LedgerStats>,
}

impl LedgerHandle {
    /// Starts the writer and the sweeper on the current Tokio runtime. The sweeper runs at
    /// once, so holds that lapsed while the process was down are released first thing.
    pub fn start(store: Store, config: LedgerConfig) -> LedgerHandle {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let stats = Arc::new(LedgerStats::default());
        tokio::spawn(write_loop(store.clone(), rx, config.clone(), stats.clone()));
        tokio::spawn(sweep_loop(
            store.clone(),
            tx.downgrade(),
            config.sweep_every,
        ));
        LedgerHandle { tx, store, stats }
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> &LedgerStats {
        &self.stats
    }

    /// The store it writes to (reads go straight there).
    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn run(&self, op: LedgerOp) -> Result<Vec<Transfer>, LedgerCallError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                op,
                reply: Some(reply),
            })
            .await
            .map_err(|_| LedgerCallError::Closed)?;
        rx.await.map_err(|_| LedgerCallError::Closed)?
    }

    /// Applies a linked chain all or nothing; each request's transfer (the first result for a
    /// retried id).
    pub async fn submit(&self, chain: Vec<Request>) -> Result<Vec<Transfer>, LedgerCallError> {
        if chain.is_empty() || chain.len() > MAX_CHAIN {
            return Err(LedgerCallError::ChainSize);
        }
        self.run(LedgerOp::Chain(chain)).await
    }

    async fn one(&self, req: Request) -> Result<Transfer, LedgerCallError> {
        let mut v = self.submit(vec![req]).await?;
        v.pop().ok_or(LedgerCallError::Closed)
    }

    /// Issues `amount` of `currency` to `to` (the instance operator's top-up).
    pub async fn grant(
        &self,
        id: TransferId,
        to: Owner,
        currency: &str,
        amount: i64,
        memo: Option<String>,
    ) -> Result<Transfer, LedgerCallError> {
        self.one(Request {
            id,
            debit: key(Owner::Issuance, currency),
            credit: key(to, currency),
            amount,
            kind: Kind::Post,
            memo,
        })
        .await
    }

    /// Moves `amount` from `from` to `to` now.
    pub async fn transfer(
        &self,
        id: TransferId,
        from: Owner,
        to: Owner,
        currency: &str,
        amount: i64,
        memo: Option<String>,
    ) -> Result<Transfer, LedgerCallError> {
        self.one(Request {
            id,
            debit: key(from, currency),
            credit: key(to, currency),
            amount,
            kind: Kind::Post,
            memo,
        })
        .await
    }

    /// Holds `amount` of the payer's credits for the payee until `timeout_ms` (Unix ms).
    pub async fn hold(
        &self,
        id: TransferId,
        payer: Owner,
        payee: Owner,
        currency: &str,
        amount: i64,
        timeout_ms: i64,
    ) -> Result<Transfer, LedgerCallError> {
        self.one(Request {
            id,
            debit: key(payer, currency),
            credit: key(payee, currency),
            amount,
            kind: Kind::Hold { timeout_ms },
            memo: None,
        })
        .await
    }

    /// Captures `amount` (≤ held) of `hold` for its payee and, with `fee`, moves `fee.1` of it
    /// from the payee to the platform's fee account under id `fee.0` — both or neither.
    pub async fn capture(
        &self,
        id: TransferId,
        hold: &Transfer,
        amount: i64,
        fee: Option<(TransferId, i64)>,
    ) -> Result<Vec<Transfer>, LedgerCallError> {
        let currency = &hold.credit.currency;
        let mut chain = vec![Request {
            id,
            debit: hold.debit.clone(),
            credit: hold.credit.clone(),
            amount,
            kind: Kind::Capture {
                hold: hold.request.id.clone(),
            },
            memo: None,
        }];
        if let Some((fee_id, fee)) = fee.filter(|(_, f)| *f > 0) {
            chain.push(Request {
                id: fee_id,
                debit: hold.credit.clone(),
                credit: key(Owner::Fees, currency),
                amount: fee,
                kind: Kind::Post,
                memo: None,
            });
        }
        self.submit(chain).await
    }

    /// Releases `hold` in full.
    pub async fn void(&self, id: TransferId, hold: &Transfer) -> Result<Transfer, LedgerCallError> {
        self.one(Request {
            id,
            debit: hold.debit.clone(),
            credit: hold.credit.clone(),
            amount: hold.amount,
            kind: Kind::Void {
                hold: hold.request.id.clone(),
            },
            memo: None,
        })
        .await
    }

    /// Moves `amount` of a posted transfer back from its payee to its payer.
    pub async fn refund(
        &self,
        id: TransferId,
        original: &Transfer,
        amount: i64,
        memo: Option<String>,
    ) -> Result<Transfer, LedgerCallError> {
        self.one(Request {
            id,
            debit: original.credit.clone(),
            credit: original.debit.clone(),
            amount,
            kind: Kind::Refund {
                original: original.request.id.clone(),
            },
            memo,
        })
        .await
    }

    /// Releases every hold due now and returns how many were released (the sweeper does this
    /// on its own; this is for callers that cannot wait for it).
    pub async fn sweep_now(&self) -> Result<usize, LedgerCallError> {
        let mut released = 0;
        loop {
            let due = self
                .store
                .ledger_due_holds(crate::ops::now_ms(), 1000)
                .await
                .map_err(LedgerCallError::Store)?;
            if due.is_empty() {
                return Ok(released);
            }
            let n = due.len();
            // Queue them all before waiting, so they share batches.
            let mut answers = Vec::with_capacity(n);
            for hold in due {
                let (reply, rx) = oneshot::channel();
                let job = Job {
                    op: LedgerOp::Expire(TransferId(hold)),
                    reply: Some(reply),
                };
                self.tx
                    .send(job)
                    .await
                    .map_err(|_| LedgerCallError::Closed)?;
                answers.push(rx);
            }
            for rx in answers {
                // Another sweep may have released it first; that is not an error here.
                match rx.await.map_err(|_| LedgerCallError::Closed)? {
                    Ok(_) => released += 1,
                    Err(LedgerCallError::Refused(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            if n < 1000 {
                return Ok(released);
            }
        }
    }
}

fn key(owner: Owner, currency: &str) -> AccountKey {
    AccountKey {
        owner,
        currency: currency.to_owned(),
    }
}

async fn write_loop(
    store: Store,
    mut rx: mpsc::Receiver<Job>,
    config: LedgerConfig,
    stats: Arc<LedgerStats>,
) {
    let max = config.max_batch.max(1);
    let mut jobs: Vec<Job> = Vec::with_capacity(max);
    loop {
        if rx.recv_many(&mut jobs, max).await == 0 {
            return;
        }
        let ops: Vec<LedgerOp> = jobs.iter().map(|j| j.op.clone()).collect();
        let outcomes = commit_with_retries(&store, &ops, &config, &stats).await;
        for (job, outcome) in jobs.drain(..).zip(outcomes) {
            if let Some(reply) = job.reply {
                // The caller may have gone away; its transfer stands either way.
                let _ = reply.send(outcome);
            }
        }
    }
}

/// Commits `ops` as one batch, retrying transient failures; if the database still refuses,
/// commits them one by one so only the op it refuses fails.
async fn commit_with_retries(
    store: &Store,
    ops: &[LedgerOp],
    config: &LedgerConfig,
    stats: &LedgerStats,
) -> Vec<Result<Vec<Transfer>, LedgerCallError>> {
    match commit_batch(store, ops, config, stats).await {
        Ok(outcomes) => outcomes
            .into_iter()
            .map(|o| o.map_err(LedgerCallError::Refused))
            .collect(),
        Err(e) if ops.len() == 1 => {
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), "ledger op failed in the database");
            vec![Err(LedgerCallError::Store(e))]
        }
        Err(e) => {
            tracing::warn!(error = %e, ops = ops.len(), "ledger batch failed; committing its ops one by one");
            let mut out = Vec::with_capacity(ops.len());
            for op in ops {
                out.push(match commit_batch(store, std::slice::from_ref(op), config, stats).await {
                    Ok(mut o) => o
                        .pop()
                        .map(|r| r.map_err(LedgerCallError::Refused))
                        .unwrap_or(Err(LedgerCallError::Closed)),
                    Err(e) => {
                        tracing::error!(error = %e, source = ?std::error::Error::source(&e), "ledger op failed in the database");
                        Err(LedgerCallError::Store(e))
                    }
                });
            }
            out
        }
    }
}

async fn commit_batch(
    store: &Store,
    ops: &[LedgerOp],
    config: &LedgerConfig,
    stats: &LedgerStats,
) -> Result<Vec<Outcome>, StoreError> {
    let mut attempt = 0;
    loop {
        match store.ledger_commit(ops, crate::ops::now_ms()).await {
            Ok(outcomes) => {
                stats.batches.fetch_add(1, Ordering::Relaxed);
                stats.ops.fetch_add(ops.len() as u64, Ordering::Relaxed);
                for (op, o) in ops.iter().zip(&outcomes) {
                    match (op, o) {
                        (_, Err(_)) => stats.refused.fetch_add(1, Ordering::Relaxed),
                        (LedgerOp::Expire(_), Ok(_)) => {
                            stats.expired.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => 0,
                    };
                }
                return Ok(outcomes);
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                // A unique-id conflict means another writer applied one of these ids first;
                // deciding again sees it. Transient failures (locks, deadlocks) likewise.
                if attempt >= config.retries || !(e.is_transient() || e.is_unique_violation()) {
                    return Err(e);
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(5 << attempt.min(6))).await;
            }
        }
    }
}

async fn sweep_loop(store: Store, tx: mpsc::WeakSender<Job>, every: Duration) {
    loop {
        let Some(tx) = tx.upgrade() else { return };
        let handle = LedgerHandle {
            tx,
            store: store.clone(),
            stats: Arc::new(LedgerStats::default()),
        };
        match handle.sweep_now().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "released expired holds"),
            Err(LedgerCallError::Closed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "sweeping expired holds failed; trying again later")
            }
        }
        drop(handle);
        tokio::time::sleep(every).await;
    }
}
