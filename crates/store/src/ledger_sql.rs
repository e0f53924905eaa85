//! The ledger's SQL: one batch of requests decided by `guildhall_ledger`'s rules over the rows
//! it touches, and written back, in one transaction (instantiated per backend by `ops`).
//!
//! A batch reads every transfer and account its requests name (on PostgreSQL locking them
//! `FOR UPDATE`, accounts in key order), plans the requests one after another over that
//! state in memory, then writes each touched account once and every new transfer in a few
//! multi-row statements. So a popular provider's or the fee account's row is written once per
//! batch, not once per transfer: concurrent payers queue in the batcher
//! ([`crate::LedgerHandle`]), not on that row's lock.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap, HashSet};

use guildhall_ledger::rules::{self, Overlay, View};
use guildhall_ledger::{
    AccountKey, Balance, HoldState, Kind, LedgerError, Owner, Request, Transfer, TransferId,
};

use crate::error::StoreError;

/// One unit of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerOp {
    /// Requests that apply together or not at all (one request: a plain transfer).
    Chain(Vec<Request>),
    /// Release a hold whose timeout has passed (the sweeper's work).
    Expire(TransferId),
}

/// What one op came to: its transfers (first results for retried ids), or why it was refused.
pub type Outcome = Result<Vec<Transfer>, LedgerError>;

/// The stored form of an owner: its DID, or a `$` name no DID can have.
pub(crate) fn owner_text(o: &Owner) -> &str {
    match o {
        Owner::Did(d) => d,
        Owner::Issuance => "$issuance",
        Owner::Fees => "$fees",
    }
}

pub(crate) fn owner_from(s: String) -> Owner {
    match s.as_str() {
        "$issuance" => Owner::Issuance,
        "$fees" => Owner::Fees,
        _ => Owner::Did(s),
    }
}

pub(crate) fn kind_text(k: &Kind) -> &'static str {
    match k {
        Kind::Post => "post",
        Kind::Hold { .. } => "hold",
        Kind::Capture { .. } => "capture",
        Kind::Void { .. } => "void",
        Kind::Refund { .. } => "refund",
    }
}

pub(crate) fn kind_ref(k: &Kind) -> Option<&str> {
    match k {
        Kind::Post | Kind::Hold { .. } => None,
        Kind::Capture { hold } | Kind::Void { hold } => Some(&hold.0),
        Kind::Refund { original } => Some(&original.0),
    }
}

pub(crate) fn kind_timeout(k: &Kind) -> Option<i64> {
    match k {
        Kind::Hold { timeout_ms } => Some(*timeout_ms),
        _ => None,
    }
}

pub(crate) fn state_text(s: Option<HoldState>) -> Option<&'static str> {
    s.map(|s| match s {
        HoldState::Pending => "pending",
        HoldState::Captured => "captured",
        HoldState::Voided => "voided",
        HoldState::Expired => "expired",
    })
}

/// A transfer row's columns, in [`TRANSFER_COLS`] order, as read.
pub(crate) struct RawTransfer {
    pub id: String,
    pub kind: String,
    pub req_debit_owner: String,
    pub req_debit_currency: String,
    pub req_credit_owner: String,
    pub req_credit_currency: String,
    pub req_amount: i64,
    pub ref_id: Option<String>,
    pub timeout_ms: Option<i64>,
    pub memo: Option<String>,
    pub debit_owner: String,
    pub credit_owner: String,
    pub currency: String,
    pub amount: i64,
    pub at_ms: i64,
    pub hold_state: Option<String>,
    pub refunded: i64,
}

/// Columns of `ledger_transfers` that make a [`Transfer`] (all but `seq`).
pub(crate) const TRANSFER_COLS: &str = "id, kind, req_debit_owner, req_debit_currency, \
    req_credit_owner, req_credit_currency, req_amount, ref_id, timeout_ms, memo, debit_owner, \
    credit_owner, currency, amount, at_ms, hold_state, refunded";
pub(crate) const TRANSFER_NCOLS: usize = 17;

impl RawTransfer {
    pub(crate) fn decode(self) -> Result<Transfer, StoreError> {
        let corrupt = |kind| StoreError::Corrupt { kind };
        let reference = |r: Option<String>| r.map(TransferId).ok_or(corrupt("ledger reference"));
        let kind = match self.kind.as_str() {
            "post" => Kind::Post,
            "hold" => Kind::Hold {
                timeout_ms: self.timeout_ms.ok_or(corrupt("hold timeout"))?,
            },
            "capture" => Kind::Capture {
                hold: reference(self.ref_id)?,
            },
            "void" => Kind::Void {
                hold: reference(self.ref_id)?,
            },
            "refund" => Kind::Refund {
                original: reference(self.ref_id)?,
            },
            _ => return Err(corrupt("transfer kind")),
        };
        let hold = match self.hold_state.as_deref() {
            None => None,
            Some("pending") => Some(HoldState::Pending),
            Some("captured") => Some(HoldState::Captured),
            Some("voided") => Some(HoldState::Voided),
            Some("expired") => Some(HoldState::Expired),
            Some(_) => return Err(corrupt("hold state")),
        };
        Ok(Transfer {
            request: Request {
                id: TransferId(self.id),
                debit: AccountKey {
                    owner: owner_from(self.req_debit_owner),
                    currency: self.req_debit_currency,
                },
                credit: AccountKey {
                    owner: owner_from(self.req_credit_owner),
                    currency: self.req_credit_currency,
                },
                amount: self.req_amount,
                kind,
                memo: self.memo,
            },
            debit: AccountKey {
                owner: owner_from(self.debit_owner),
                currency: self.currency.clone(),
            },
            credit: AccountKey {
                owner: owner_from(self.credit_owner),
                currency: self.currency,
            },
            amount: self.amount,
            at_ms: self.at_ms,
            hold,
            refunded: self.refunded,
        })
    }
}

/// The transfer ids a batch reads: each request's own and the one it names.
pub(crate) fn transfer_ids(ops: &[LedgerOp]) -> BTreeSet<&str> {
    let mut ids = BTreeSet::new();
    for op in ops {
        match op {
            LedgerOp::Chain(reqs) => {
                for r in reqs {
                    ids.insert(r.id.0.as_str());
                    if let Some(x) = kind_ref(&r.kind) {
                        ids.insert(x);
                    }
                }
            }
            LedgerOp::Expire(hold) => {
                ids.insert(hold.0.as_str());
            }
        }
    }
    ids
}

/// The accounts a batch reads: every request's two, and those of the transfers it names.
pub(crate) fn account_keys(ops: &[LedgerOp], loaded: &[Transfer]) -> BTreeSet<AccountKey> {
    let mut keys = BTreeSet::new();
    for op in ops {
        if let LedgerOp::Chain(reqs) = op {
            for r in reqs {
                keys.insert(r.debit.clone());
                keys.insert(r.credit.clone());
            }
        }
    }
    for t in loaded {
        keys.insert(t.debit.clone());
        keys.insert(t.credit.clone());
    }
    keys
}

/// The rows a batch read, changed in memory as its requests are decided in order.
pub(crate) struct BatchView {
    balances: HashMap<AccountKey, Balance>,
    read_accounts: HashSet<AccountKey>,
    transfers: HashMap<TransferId, Transfer>,
    read_transfers: HashSet<TransferId>,
    /// Set when the rules asked for a row the batch did not read: the batch is then refused
    /// as a whole rather than decided on a guess.
    gap: Cell<bool>,
    /// Accounts to write back.
    pub dirty: BTreeSet<AccountKey>,
    /// New transfers, in the order applied.
    pub new: Vec<TransferId>,
    new_set: HashSet<TransferId>,
    /// Existing transfers whose hold state or refunded sum changed.
    pub changed: BTreeSet<TransferId>,
}

impl View for BatchView {
    fn balance(&self, key: &AccountKey) -> Balance {
        match self.balances.get(key) {
            Some(b) => *b,
            None => {
                if !self.read_accounts.contains(key) {
                    self.gap.set(true);
                }
                Balance::default()
            }
        }
    }

    fn transfer(&self, id: &TransferId) -> Option<Transfer> {
        let t = self.transfers.get(id).cloned();
        if t.is_none() && !self.read_transfers.contains(id) {
            self.gap.set(true);
        }
        t
    }
}

impl BatchView {
    /// The state read: `accounts` found among the `read_accounts` asked for, `transfers`
    /// found among `read_transfers`.
    pub(crate) fn new(
        read_accounts: BTreeSet<AccountKey>,
        accounts: Vec<(AccountKey, Balance)>,
        read_transfers: &BTreeSet<&str>,
        transfers: Vec<Transfer>,
    ) -> Self {
        Self {
            balances: accounts.into_iter().collect(),
            read_accounts: read_accounts.into_iter().collect(),
            transfers: transfers
                .into_iter()
                .map(|t| (t.request.id.clone(), t))
                .collect(),
            read_transfers: read_transfers
                .iter()
                .map(|s| TransferId((*s).to_owned()))
                .collect(),
            gap: Cell::new(false),
            dirty: BTreeSet::new(),
            new: Vec::new(),
            new_set: HashSet::new(),
            changed: BTreeSet::new(),
        }
    }

    /// Decides every op in order; a refused op leaves the state as it was.
    pub(crate) fn decide(
        &mut self,
        ops: &[LedgerOp],
        now_ms: i64,
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let planned = match op {
                LedgerOp::Chain(reqs) => rules::plan_linked(reqs, &*self, now_ms).map(|(o, ts)| {
                    let parts = (o.balances, o.transfers, o.order);
                    (parts, ts)
                }),
                LedgerOp::Expire(hold) => rules::plan_expiry(&*self, hold, now_ms).and_then(|e| {
                    let t = e.transfer.clone();
                    let mut o = Overlay::new(&*self);
                    o.add(e)?;
                    Ok(((o.balances, o.transfers, o.order), vec![t]))
                }),
            };
            if self.gap.get() {
                return Err(StoreError::Corrupt {
                    kind: "ledger batch (a row the rules needed was not read)",
                });
            }
            out.push(planned.map(|((balances, transfers, order), ts)| {
                for (k, b) in balances {
                    self.dirty.insert(k.clone());
                    self.balances.insert(k, b);
                }
                for id in order {
                    self.new_set.insert(id.clone());
                    self.new.push(id);
                }
                for (id, t) in transfers {
                    if !self.new_set.contains(&id) {
                        self.changed.insert(id.clone());
                    }
                    self.transfers.insert(id, t);
                }
                ts
            }));
        }
        Ok(out)
    }

    pub(crate) fn balance_of(&self, key: &AccountKey) -> Balance {
        self.balances.get(key).copied().unwrap_or_default()
    }

    pub(crate) fn transfer_of(&self, id: &TransferId) -> Option<&Transfer> {
        self.transfers.get(id)
    }
}

/// The SQL of the ledger, for one backend: instantiated inside `ops::sqlite` and `ops::pg`,
/// where `Db`, `Conn`, `Pool`, `Arg`, `bind_one` and `IS_PG` are in scope.
macro_rules! ledger_ops {
    () => {
        use guildhall_ledger::{AccountKey as LAccountKey, Balance as LBalance, Owner as LOwner, Transfer as LTransfer};
        use crate::ledger_sql::{
            BatchView, LedgerOp, Outcome, RawTransfer, TRANSFER_COLS, TRANSFER_NCOLS, account_keys, kind_ref,
            kind_text, kind_timeout, owner_from, owner_text, state_text, transfer_ids,
        };

        async fn fetch_tx(c: &mut Conn, sql: String, args: &[Arg<'_>]) -> Result<Vec<DbRow>, StoreError> {
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for a in args {
                query = bind_one(query, a);
            }
            query.fetch_all(&mut *c).await.map_err(q)
        }

        fn raw_transfer(row: &DbRow, at: usize) -> Result<LTransfer, StoreError> {
            RawTransfer {
                id: text(row, at)?,
                kind: text(row, at + 1)?,
                req_debit_owner: text(row, at + 2)?,
                req_debit_currency: text(row, at + 3)?,
                req_credit_owner: text(row, at + 4)?,
                req_credit_currency: text(row, at + 5)?,
                req_amount: int(row, at + 6)?,
                ref_id: opt_text(row, at + 7)?,
                timeout_ms: opt_int(row, at + 8)?,
                memo: opt_text(row, at + 9)?,
                debit_owner: text(row, at + 10)?,
                credit_owner: text(row, at + 11)?,
                currency: text(row, at + 12)?,
                amount: int(row, at + 13)?,
                at_ms: int(row, at + 14)?,
                hold_state: opt_text(row, at + 15)?,
                refunded: int(row, at + 16)?,
            }
            .decode()
        }

        fn raw_account(row: &DbRow) -> Result<(LAccountKey, LBalance), StoreError> {
            Ok((
                LAccountKey { owner: owner_from(text(row, 0)?), currency: text(row, 1)? },
                LBalance {
                    debits_pending: int(row, 2)?,
                    debits_posted: int(row, 3)?,
                    credits_pending: int(row, 4)?,
                    credits_posted: int(row, 5)?,
                },
            ))
        }

        fn transfer_args(t: &LTransfer) -> Vec<Arg<'_>> {
            let r = &t.request;
            vec![
                Arg::Text(Cow::Borrowed(&r.id.0)),
                Arg::Text(Cow::Borrowed(kind_text(&r.kind))),
                Arg::Text(Cow::Borrowed(owner_text(&r.debit.owner))),
                Arg::Text(Cow::Borrowed(&r.debit.currency)),
                Arg::Text(Cow::Borrowed(owner_text(&r.credit.owner))),
                Arg::Text(Cow::Borrowed(&r.credit.currency)),
                Arg::Int(r.amount),
                Arg::OptText(kind_ref(&r.kind)),
                Arg::OptInt(kind_timeout(&r.kind)),
                Arg::OptText(r.memo.as_deref()),
                Arg::Text(Cow::Borrowed(owner_text(&t.debit.owner))),
                Arg::Text(Cow::Borrowed(owner_text(&t.credit.owner))),
                Arg::Text(Cow::Borrowed(&t.debit.currency)),
                Arg::Int(t.amount),
                Arg::Int(t.at_ms),
                Arg::OptText(state_text(t.hold)),
                Arg::Int(t.refunded),
            ]
        }

        const ACCOUNT_COLS: &str =
            "owner, currency, debits_pending, debits_posted, credits_pending, credits_posted";

        /// Decides and writes one batch in one transaction; each op's outcome in order.
        pub(crate) async fn ledger_commit(pool: &Pool, ops: &[LedgerOp], now: i64) -> Result<Vec<Outcome>, StoreError> {
            let mut tx = if IS_PG {
                pool.begin().await.map_err(q)?
            } else {
                pool.begin_with("BEGIN IMMEDIATE").await.map_err(q)?
            };
            let lock = if IS_PG { " FOR UPDATE" } else { "" };
            // Transfers first: a capture's accounts are those of the hold it names.
            let ids = transfer_ids(ops);
            let id_list: Vec<&str> = ids.iter().copied().collect();
            let mut loaded = Vec::new();
            for chunk in id_list.chunks(rows_per_statement(1)) {
                let sql = format!(
                    "SELECT {TRANSFER_COLS} FROM ledger_transfers WHERE id IN ({}) ORDER BY id{lock}",
                    key_list(chunk.len(), IS_PG)
                );
                let args: Vec<Arg<'_>> = chunk.iter().map(|s| Arg::Text(Cow::Borrowed(*s))).collect();
                for row in fetch_tx(&mut tx, sql, &args).await? {
                    loaded.push(raw_transfer(&row, 0)?);
                }
            }
            let keys = account_keys(ops, &loaded);
            let key_rows: Vec<Vec<Arg<'_>>> = keys
                .iter()
                .map(|k| vec![Arg::Text(Cow::Borrowed(owner_text(&k.owner))), Arg::Text(Cow::Borrowed(&k.currency))])
                .collect();
            if IS_PG {
                // Rows to lock, even for accounts that have none yet; in key order, so two
                // writers meet in the same order.
                values_insert(&mut tx, "INSERT INTO ledger_accounts (owner, currency)", 2, &key_rows, "ON CONFLICT DO NOTHING").await?;
            }
            let key_list_: Vec<&LAccountKey> = keys.iter().collect();
            let mut accounts = Vec::with_capacity(keys.len());
            for chunk in key_list_.chunks(rows_per_statement(2)) {
                let sql = format!(
                    "SELECT {ACCOUNT_COLS} FROM ledger_accounts WHERE (owner, currency) IN (VALUES {}) \
                     ORDER BY owner, currency{lock}",
                    placeholders(chunk.len(), 2, IS_PG)
                );
                let args: Vec<Arg<'_>> = chunk
                    .iter()
                    .flat_map(|k| [Arg::Text(Cow::Borrowed(owner_text(&k.owner))), Arg::Text(Cow::Borrowed(k.currency.as_str()))])
                    .collect();
                for row in fetch_tx(&mut tx, sql, &args).await? {
                    accounts.push(raw_account(&row)?);
                }
            }
            let mut view = BatchView::new(keys, accounts, &ids, loaded);
            let outcomes = view.decide(ops, now)?;

            let account_rows: Vec<Vec<Arg<'_>>> = view
                .dirty
                .iter()
                .map(|k| {
                    let b = view.balance_of(k);
                    vec![
                        Arg::Text(Cow::Borrowed(owner_text(&k.owner))),
                        Arg::Text(Cow::Borrowed(&k.currency)),
                        Arg::Int(b.debits_pending),
                        Arg::Int(b.debits_posted),
                        Arg::Int(b.credits_pending),
                        Arg::Int(b.credits_posted),
                        Arg::Int(now),
                    ]
                })
                .collect();
            values_insert(
                &mut tx,
                "INSERT INTO ledger_accounts (owner, currency, debits_pending, debits_posted, credits_pending, credits_posted, updated_at)",
                7,
                &account_rows,
                "ON CONFLICT (owner, currency) DO UPDATE SET debits_pending = excluded.debits_pending, \
                 debits_posted = excluded.debits_posted, credits_pending = excluded.credits_pending, \
                 credits_posted = excluded.credits_posted, updated_at = excluded.updated_at",
            )
            .await?;
            let head = format!("INSERT INTO ledger_transfers ({TRANSFER_COLS})");
            let new_rows: Vec<Vec<Arg<'_>>> = view
                .new
                .iter()
                .filter_map(|id| view.transfer_of(id))
                .map(transfer_args)
                .collect();
            // A new id that another writer inserted meanwhile fails the batch (unique id), which
            // is then decided again and sees it.
            values_insert(&mut tx, &head, TRANSFER_NCOLS, &new_rows, "").await?;
            let changed_rows: Vec<Vec<Arg<'_>>> = view
                .changed
                .iter()
                .filter_map(|id| view.transfer_of(id))
                .map(transfer_args)
                .collect();
            values_insert(
                &mut tx,
                &head,
                TRANSFER_NCOLS,
                &changed_rows,
                "ON CONFLICT (id) DO UPDATE SET hold_state = excluded.hold_state, refunded = excluded.refunded",
            )
            .await?;
            tx.commit().await.map_err(q)?;
            Ok(outcomes)
        }

        /// Holds pending at or past their timeout, oldest first.
        pub(crate) async fn ledger_due_holds(pool: &Pool, now: i64, limit: u32) -> Result<Vec<String>, StoreError> {
            let rows = sqlx::query(
                "SELECT id FROM ledger_transfers WHERE hold_state = 'pending' AND timeout_ms <= $1 ORDER BY timeout_ms, id LIMIT $2",
            )
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(q)?;
            rows.iter().map(|r| text(r, 0)).collect()
        }

        /// An owner's accounts, by currency.
        pub(crate) async fn ledger_balances(pool: &Pool, owner: &LOwner) -> Result<Vec<(LAccountKey, LBalance)>, StoreError> {
            let sql = format!("SELECT {ACCOUNT_COLS} FROM ledger_accounts WHERE owner = $1 ORDER BY currency");
            let rows = sqlx::query(AssertSqlSafe(sql)).bind(owner_text(owner)).fetch_all(pool).await.map_err(q)?;
            rows.iter().map(raw_account).collect()
        }

        /// Every account, in key order (audits and tests).
        pub(crate) async fn ledger_accounts(pool: &Pool) -> Result<Vec<(LAccountKey, LBalance)>, StoreError> {
            let sql = format!("SELECT {ACCOUNT_COLS} FROM ledger_accounts ORDER BY owner, currency");
            let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(pool).await.map_err(q)?;
            rows.iter().map(raw_account).collect()
        }

        /// Transfers that moved credits out of or into `owner`'s accounts, newest first,
        /// before `before` (a `seq`), with their `seq`.
        pub(crate) async fn ledger_transfers_of(
            pool: &Pool,
            owner: &LOwner,
            before: Option<i64>,
            limit: u32,
        ) -> Result<Vec<(i64, LTransfer)>, StoreError> {
            let limit = i64::from(page_size(limit));
            let side = |col: &str| {
                format!(
                    "SELECT * FROM (SELECT seq, {TRANSFER_COLS} FROM ledger_transfers \
                     WHERE {col} = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3) AS {col}_side"
                )
            };
            let sql = format!(
                "{} UNION ALL {} ORDER BY seq DESC LIMIT $3",
                side("debit_owner"),
                side("credit_owner")
            );
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind(owner_text(owner))
                .bind(before.unwrap_or(i64::MAX))
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(q)?;
            rows.iter().map(|r| Ok((int(r, 0)?, raw_transfer(r, 1)?))).collect()
        }

        /// Every account and every transfer as of one moment (one read transaction): what an
        /// audit compares, which two separate reads could not promise while a writer commits.
        pub(crate) async fn ledger_snapshot(pool: &Pool) -> Result<(Vec<(LAccountKey, LBalance)>, Vec<LTransfer>), StoreError> {
            let mut tx = pool.begin().await.map_err(q)?;
            if IS_PG {
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .execute(&mut *tx)
                    .await
                    .map_err(q)?;
            }
            let sql = format!("SELECT {ACCOUNT_COLS} FROM ledger_accounts ORDER BY owner, currency");
            let rows = fetch_tx(&mut tx, sql, &[]).await?;
            let accounts = rows.iter().map(raw_account).collect::<Result<Vec<_>, _>>()?;
            let sql = format!("SELECT {TRANSFER_COLS} FROM ledger_transfers ORDER BY seq");
            let rows = fetch_tx(&mut tx, sql, &[]).await?;
            let transfers = rows.iter().map(|r| raw_transfer(r, 0)).collect::<Result<Vec<_>, _>>()?;
            tx.commit().await.map_err(q)?;
            Ok((accounts, transfers))
        }

        /// Every transfer in the order applied (audits and tests).
        pub(crate) async fn ledger_transfers(pool: &Pool) -> Result<Vec<LTransfer>, StoreError> {
            let sql = format!("SELECT {TRANSFER_COLS} FROM ledger_transfers ORDER BY seq");
            let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(pool).await.map_err(q)?;
            rows.iter().map(|r| raw_transfer(r, 0)).collect()
        }
    };
}

pub(crate) use ledger_ops;
