//! The rules: a request, the state it touches and `now` in; the effect (or the refusal) out.
//!
//! Pure: [`plan`] reads through a [`View`] and returns what to write. [`Overlay`] layers
//! planned effects over a view, which is how a linked chain sees its own earlier transfers and
//! how every counter change is checked for overflow before anything is written.

use std::collections::HashMap;

use crate::error::LedgerError;
use crate::model::{
    AccountKey, Balance, HoldState, Kind, MAX_CURRENCY_LEN, MAX_DID_LEN, MAX_ID_LEN, MAX_MEMO_LEN,
    Owner, Request, Transfer, TransferId,
};

/// What the rules read: an account's counters (zero when it has none yet) and a transfer.
pub trait View {
    /// The account's counters.
    fn balance(&self, key: &AccountKey) -> Balance;
    /// A recorded transfer.
    fn transfer(&self, id: &TransferId) -> Option<Transfer>;
}

/// Counter changes of one account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta {
    /// Added to `debits_pending` (negative: released).
    pub debits_pending: i64,
    /// Added to `debits_posted`.
    pub debits_posted: i64,
    /// Added to `credits_pending` (negative: released).
    pub credits_pending: i64,
    /// Added to `credits_posted`.
    pub credits_posted: i64,
}

impl Delta {
    /// `balance + self`, or `Overflow`.
    pub fn apply(&self, b: Balance) -> Result<Balance, LedgerError> {
        let add = |x: i64, d: i64| x.checked_add(d).ok_or(LedgerError::Overflow);
        Ok(Balance {
            debits_pending: add(b.debits_pending, self.debits_pending)?,
            debits_posted: add(b.debits_posted, self.debits_posted)?,
            credits_pending: add(b.credits_pending, self.credits_pending)?,
            credits_posted: add(b.credits_posted, self.credits_posted)?,
        })
    }
}

/// What applying a request writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    /// The transfer to record.
    pub transfer: Transfer,
    /// Counter changes: the debit account's, then the credit account's.
    pub deltas: [(AccountKey, Delta); 2],
    /// A hold this transfer resolves, and how.
    pub resolves: Option<(TransferId, HoldState)>,
    /// A posted transfer this one refunds, and by how much.
    pub refunds: Option<(TransferId, i64)>,
}

/// The outcome of planning one request.
// Planned once per request and consumed at once: boxing the common variant would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// The id was applied before with these parameters: its first result, nothing to write.
    Replay(Transfer),
    /// Write this.
    Apply(Effect),
}

/// Decides one request against `view` at `now_ms`.
pub fn plan(req: &Request, view: &impl View, now_ms: i64) -> Result<Planned, LedgerError> {
    check_shape(req)?;
    if let Some(existing) = view.transfer(&req.id) {
        return if existing.request == *req {
            Ok(Planned::Replay(existing))
        } else {
            Err(LedgerError::IdReused(req.id.clone()))
        };
    }
    let effect = match &req.kind {
        Kind::Post | Kind::Hold { .. } => {
            check_pair(&req.debit, &req.credit, req.amount)?;
            check_funds(view, &req.debit, req.amount)?;
            let a = req.amount;
            let (debit, credit, hold) = match req.kind {
                Kind::Hold { .. } => (
                    Delta {
                        debits_pending: a,
                        ..Delta::default()
                    },
                    Delta {
                        credits_pending: a,
                        ..Delta::default()
                    },
                    Some(HoldState::Pending),
                ),
                _ => (
                    Delta {
                        debits_posted: a,
                        ..Delta::default()
                    },
                    Delta {
                        credits_posted: a,
                        ..Delta::default()
                    },
                    None,
                ),
            };
            Effect {
                transfer: record(req, req.debit.clone(), req.credit.clone(), a, now_ms, hold),
                deltas: [(req.debit.clone(), debit), (req.credit.clone(), credit)],
                resolves: None,
                refunds: None,
            }
        }
        Kind::Capture { hold } => {
            let (h, held, timeout) = pending_hold(view, hold)?;
            if now_ms >= timeout {
                return Err(LedgerError::HoldExpired(hold.clone()));
            }
            if req.amount <= 0 {
                return Err(LedgerError::ZeroAmount);
            }
            if req.amount > held {
                return Err(LedgerError::ExceedsHold {
                    amount: req.amount,
                    held,
                });
            }
            let a = req.amount;
            Effect {
                transfer: record(req, h.debit.clone(), h.credit.clone(), a, now_ms, None),
                deltas: [
                    (
                        h.debit.clone(),
                        Delta {
                            debits_pending: -held,
                            debits_posted: a,
                            ..Delta::default()
                        },
                    ),
                    (
                        h.credit.clone(),
                        Delta {
                            credits_pending: -held,
                            credits_posted: a,
                            ..Delta::default()
                        },
                    ),
                ],
                resolves: Some((hold.clone(), HoldState::Captured)),
                refunds: None,
            }
        }
        Kind::Void { hold } => release(req, view, hold, now_ms, HoldState::Voided)?,
        Kind::Refund { original } => {
            let o = view
                .transfer(original)
                .ok_or_else(|| LedgerError::NotFound(original.clone()))?;
            if !o.refundable() {
                return Err(LedgerError::NotRefundable(original.clone()));
            }
            if req.amount <= 0 {
                return Err(LedgerError::ZeroAmount);
            }
            let left = o
                .amount
                .checked_sub(o.refunded)
                .ok_or(LedgerError::Overflow)?;
            if req.amount > left {
                return Err(LedgerError::ExceedsRefundable {
                    amount: req.amount,
                    left,
                });
            }
            // Back the way it came: the payee pays, and must be able to.
            check_funds(view, &o.credit, req.amount)?;
            let a = req.amount;
            Effect {
                transfer: record(req, o.credit.clone(), o.debit.clone(), a, now_ms, None),
                deltas: [
                    (
                        o.credit.clone(),
                        Delta {
                            debits_posted: a,
                            ..Delta::default()
                        },
                    ),
                    (
                        o.debit.clone(),
                        Delta {
                            credits_posted: a,
                            ..Delta::default()
                        },
                    ),
                ],
                resolves: None,
                refunds: Some((original.clone(), a)),
            }
        }
    };
    Ok(Planned::Apply(effect))
}

/// The id the sweeper records when it releases an expired hold.
pub fn expiry_id(hold: &TransferId) -> TransferId {
    TransferId(format!("expired:{hold}"))
}

/// Releases a hold whose timeout has passed (the sweeper's transfer).
pub fn plan_expiry(
    view: &impl View,
    hold: &TransferId,
    now_ms: i64,
) -> Result<Effect, LedgerError> {
    let (h, _, timeout) = pending_hold(view, hold)?;
    if now_ms < timeout {
        return Err(LedgerError::HoldResolved {
            id: hold.clone(),
            state: HoldState::Pending,
        });
    }
    let req = Request {
        id: expiry_id(hold),
        debit: h.debit.clone(),
        credit: h.credit.clone(),
        amount: h.amount,
        kind: Kind::Void { hold: hold.clone() },
        memo: None,
    };
    release(&req, view, hold, now_ms, HoldState::Expired)
}

fn release(
    req: &Request,
    view: &impl View,
    hold: &TransferId,
    now_ms: i64,
    state: HoldState,
) -> Result<Effect, LedgerError> {
    let (h, held, _) = pending_hold(view, hold)?;
    Ok(Effect {
        transfer: record(req, h.debit.clone(), h.credit.clone(), held, now_ms, None),
        deltas: [
            (
                h.debit.clone(),
                Delta {
                    debits_pending: -held,
                    ..Delta::default()
                },
            ),
            (
                h.credit.clone(),
                Delta {
                    credits_pending: -held,
                    ..Delta::default()
                },
            ),
        ],
        resolves: Some((hold.clone(), state)),
        refunds: None,
    })
}

/// The hold `id`, its amount and timeout, if it exists, is a hold, and is still pending.
fn pending_hold(view: &impl View, id: &TransferId) -> Result<(Transfer, i64, i64), LedgerError> {
    let h = view
        .transfer(id)
        .ok_or_else(|| LedgerError::NotFound(id.clone()))?;
    let Kind::Hold { timeout_ms } = h.request.kind else {
        return Err(LedgerError::NotAHold(id.clone()));
    };
    match h.hold {
        Some(HoldState::Pending) => {
            let held = h.amount;
            Ok((h, held, timeout_ms))
        }
        Some(state) => Err(LedgerError::HoldResolved {
            id: id.clone(),
            state,
        }),
        None => Err(LedgerError::NotAHold(id.clone())),
    }
}

/// Ids, memos and currency codes are bounded, printable text: they are stored, indexed and
/// shown back to people.
fn check_shape(req: &Request) -> Result<(), LedgerError> {
    let printable = |s: &str| s.chars().all(|c| !c.is_control());
    let id = &req.id.0;
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(LedgerError::BadId);
    }
    if let Some(memo) = &req.memo
        && (memo.len() > MAX_MEMO_LEN || !printable(memo))
    {
        return Err(LedgerError::BadMemo);
    }
    // A DID is what a store keys user accounts by; nothing else may pose as one (system
    // accounts are their own variants).
    for key in [&req.debit, &req.credit] {
        if let Owner::Did(did) = &key.owner
            && (!did.starts_with("did:")
                || did.len() > MAX_DID_LEN
                || !did.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(LedgerError::BadOwner(did.clone()));
        }
    }
    for c in [&req.debit.currency, &req.credit.currency] {
        let ok = !c.is_empty()
            && c.len() <= MAX_CURRENCY_LEN
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b));
        if !ok {
            return Err(LedgerError::BadCurrency(c.clone()));
        }
    }
    Ok(())
}

fn check_pair(debit: &AccountKey, credit: &AccountKey, amount: i64) -> Result<(), LedgerError> {
    if amount <= 0 {
        return Err(LedgerError::ZeroAmount);
    }
    if debit == credit {
        return Err(LedgerError::SameAccount);
    }
    if debit.currency != credit.currency {
        return Err(LedgerError::CurrencyMismatch {
            debit: debit.currency.clone(),
            credit: credit.currency.clone(),
        });
    }
    Ok(())
}

fn check_funds(view: &impl View, debit: &AccountKey, amount: i64) -> Result<(), LedgerError> {
    if !debit.owner.constrained() {
        return Ok(());
    }
    let available = view
        .balance(debit)
        .available()
        .ok_or(LedgerError::Overflow)?;
    if available < amount {
        return Err(LedgerError::InsufficientFunds {
            available,
            needed: amount,
        });
    }
    Ok(())
}

fn record(
    req: &Request,
    debit: AccountKey,
    credit: AccountKey,
    amount: i64,
    now_ms: i64,
    hold: Option<HoldState>,
) -> Transfer {
    Transfer {
        request: req.clone(),
        debit,
        credit,
        amount,
        at_ms: now_ms,
        hold,
        refunded: 0,
    }
}

/// Effects layered over a view, each checked as it is added: what a linked chain sees of its
/// own earlier transfers, and the new state a store (or [`crate::Ledger`]) then writes.
pub struct Overlay<'a, V: View> {
    base: &'a V,
    /// New counters of every account touched.
    pub balances: HashMap<AccountKey, Balance>,
    /// New or changed transfers, by id.
    pub transfers: HashMap<TransferId, Transfer>,
    /// Ids of new transfers, in the order they were added.
    pub order: Vec<TransferId>,
}

impl<'a, V: View> Overlay<'a, V> {
    /// Nothing layered yet.
    pub fn new(base: &'a V) -> Self {
        Self {
            base,
            balances: HashMap::new(),
            transfers: HashMap::new(),
            order: Vec::new(),
        }
    }

    /// Adds an effect, or fails (leaving the overlay as it was) if a counter would overflow.
    pub fn add(&mut self, effect: Effect) -> Result<(), LedgerError> {
        let mut next = Vec::with_capacity(2);
        for (key, delta) in &effect.deltas {
            // The two accounts of one transfer differ (checked by the rules, or taken from a
            // transfer that passed them), so each is read once.
            next.push((key.clone(), delta.apply(self.balance(key))?));
        }
        let mut changed = Vec::new();
        if let Some((id, state)) = &effect.resolves {
            let mut h = self
                .transfer(id)
                .ok_or_else(|| LedgerError::NotFound(id.clone()))?;
            h.hold = Some(*state);
            changed.push(h);
        }
        if let Some((id, amount)) = &effect.refunds {
            let mut o = self
                .transfer(id)
                .ok_or_else(|| LedgerError::NotFound(id.clone()))?;
            o.refunded = o
                .refunded
                .checked_add(*amount)
                .ok_or(LedgerError::Overflow)?;
            changed.push(o);
        }
        self.balances.extend(next);
        for t in changed {
            self.transfers.insert(t.request.id.clone(), t);
        }
        let id = effect.transfer.request.id.clone();
        self.transfers.insert(id.clone(), effect.transfer);
        self.order.push(id);
        Ok(())
    }
}

impl<V: View> View for Overlay<'_, V> {
    fn balance(&self, key: &AccountKey) -> Balance {
        self.balances
            .get(key)
            .copied()
            .unwrap_or_else(|| self.base.balance(key))
    }

    fn transfer(&self, id: &TransferId) -> Option<Transfer> {
        self.transfers
            .get(id)
            .cloned()
            .or_else(|| self.base.transfer(id))
    }
}

/// Plans a linked chain: every request sees the ones before it; one refusal refuses all.
/// Returns the overlay to write and each request's transfer (first results for replays).
pub fn plan_linked<'a, V: View>(
    reqs: &[Request],
    view: &'a V,
    now_ms: i64,
) -> Result<(Overlay<'a, V>, Vec<Transfer>), LedgerError> {
    let mut overlay = Overlay::new(view);
    let mut out = Vec::with_capacity(reqs.len());
    for (index, req) in reqs.iter().enumerate() {
        let fail = |e: LedgerError| {
            if reqs.len() == 1 {
                e
            } else {
                LedgerError::LinkedFailed {
                    index,
                    error: Box::new(e),
                }
            }
        };
        match plan(req, &overlay, now_ms).map_err(fail)? {
            Planned::Replay(t) => out.push(t),
            Planned::Apply(effect) => {
                out.push(effect.transfer.clone());
                overlay.add(effect).map_err(fail)?;
            }
        }
    }
    Ok((overlay, out))
}

/// Most basis points a fee can be (all of the amount).
pub const MAX_FEE_BP: u32 = 10_000;

/// The platform's fee on `amount` at `fee_bp` basis points, rounded down (the payee keeps any
/// fraction of a unit), or `None` when `amount` is negative or `fee_bp` exceeds 100 %. Computed
/// in 128 bits, so no amount overflows.
pub fn fee_for(amount: i64, fee_bp: u32) -> Option<i64> {
    if amount < 0 || fee_bp > MAX_FEE_BP {
        return None;
    }
    let fee = i128::from(amount) * i128::from(fee_bp) / i128::from(MAX_FEE_BP);
    i64::try_from(fee).ok()
}
