//! The ledger's data: accounts, their four counters, transfers and what a request asks.

use std::fmt;

/// Who owns an account: an ATProto DID, or one of the instance's system accounts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    /// An operator's or agent's DID.
    Did(String),
    /// Where credits of a currency come from (`credits grant`); may go below zero.
    Issuance,
    /// Where platform fees go.
    Fees,
}

impl Owner {
    /// Whether the balance rule holds for this owner: debits may not exceed credits.
    pub fn constrained(&self) -> bool {
        !matches!(self, Owner::Issuance)
    }
}

/// An account: one owner, one currency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountKey {
    /// Who holds it.
    pub owner: Owner,
    /// Currency code or token symbol, as in a service's pricing.
    pub currency: String,
}

/// The four counters of an account, in 10⁻⁹ units of its currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Balance {
    /// Held, not yet captured or voided, out of this account.
    pub debits_pending: i64,
    /// Moved out.
    pub debits_posted: i64,
    /// Held, not yet captured or voided, into this account.
    pub credits_pending: i64,
    /// Moved in.
    pub credits_posted: i64,
}

impl Balance {
    /// What the account can still pay: posted credits − posted and pending debits (checked).
    pub fn available(&self) -> Option<i64> {
        self.credits_posted
            .checked_sub(self.debits_posted)?
            .checked_sub(self.debits_pending)
    }
}

/// Longest transfer id, in bytes (Stripe's idempotency keys stop at 255 too).
pub const MAX_ID_LEN: usize = 255;
/// Longest memo, in bytes.
pub const MAX_MEMO_LEN: usize = 500;
/// Longest DID, in bytes (the DID syntax's own limit is 2 KB; ours are far shorter).
pub const MAX_DID_LEN: usize = 2048;
/// Longest currency code, in bytes.
pub const MAX_CURRENCY_LEN: usize = 32;

/// A client-chosen transfer id: the idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId(pub String);

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Move `amount` now.
    Post,
    /// Hold `amount` until it is captured, voided, or `timeout_ms` (Unix ms) passes.
    Hold {
        /// When the hold lapses.
        timeout_ms: i64,
    },
    /// Capture `amount` (≤ held) of a hold; the rest is released.
    Capture {
        /// The hold.
        hold: TransferId,
    },
    /// Release a hold.
    Void {
        /// The hold.
        hold: TransferId,
    },
    /// Move `amount` back from the original transfer's credit account to its debit account.
    Refund {
        /// The posted transfer (a post or a capture) being refunded.
        original: TransferId,
    },
}

/// One transfer request. For a capture, void or refund, `debit` and `credit` are taken from
/// the transfer it names (a hold's accounts; a refund's reversed); the request's own are
/// ignored there, so a client cannot redirect a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Idempotency key.
    pub id: TransferId,
    /// Paying account.
    pub debit: AccountKey,
    /// Receiving account.
    pub credit: AccountKey,
    /// 10⁻⁹ units; for a void, ignored (the whole hold is released).
    pub amount: i64,
    /// What to do.
    pub kind: Kind,
    /// A note for the people reading the history (a grant's reason); part of the request, so
    /// a retry must repeat it.
    pub memo: Option<String>,
}

/// How a hold stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldState {
    /// Still held.
    Pending,
    /// Captured (possibly partly; the rest released).
    Captured,
    /// Released on request.
    Voided,
    /// Released because its timeout passed.
    Expired,
}

/// A recorded transfer: immutable, but a hold's state and a posted transfer's refunded sum
/// move as later transfers resolve or refund it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The request it answers.
    pub request: Request,
    /// The accounts it actually moved between.
    pub debit: AccountKey,
    /// See `debit`.
    pub credit: AccountKey,
    /// What it moved (a void: what it released).
    pub amount: i64,
    /// When it was applied (Unix ms).
    pub at_ms: i64,
    /// For a hold: how it stands.
    pub hold: Option<HoldState>,
    /// For a posted transfer: how much of it was refunded so far.
    pub refunded: i64,
}

impl Transfer {
    /// Whether this transfer moved posted credits that may be refunded.
    pub fn refundable(&self) -> bool {
        matches!(self.request.kind, Kind::Post | Kind::Capture { .. })
    }
}
