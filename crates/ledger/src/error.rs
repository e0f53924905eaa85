//! Why a ledger request was refused: one enum for the ledger boundary.

use crate::model::{HoldState, TransferId};

/// A refused request. Nothing of it was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// A transfer id is 1–255 bytes of printable ASCII.
    #[error("a transfer id must be 1 to 255 printable ASCII characters")]
    BadId,
    /// A memo is at most 500 bytes without control characters.
    #[error("a memo must be at most 500 bytes without control characters")]
    BadMemo,
    /// A user account's owner is a DID.
    #[error("account owner {0:?} is not a DID")]
    BadOwner(String),
    /// A currency code is 1–32 bytes of letters, digits and `._-:`.
    #[error("bad currency code {0:?}")]
    BadCurrency(String),
    /// Amounts are positive.
    #[error("the amount must be positive")]
    ZeroAmount,
    /// A transfer moves credits between two different accounts.
    #[error("debit and credit account are the same")]
    SameAccount,
    /// Both accounts must hold the same currency.
    #[error("accounts of different currencies ({debit} and {credit})")]
    CurrencyMismatch {
        /// The debit account's currency.
        debit: String,
        /// The credit account's currency.
        credit: String,
    },
    /// The id was used before by a transfer with other parameters.
    #[error("transfer id {0} was used for a different transfer")]
    IdReused(TransferId),
    /// The debit account cannot cover the amount.
    #[error("insufficient funds: {available} available, {needed} needed")]
    InsufficientFunds {
        /// What the account could still pay (posted credits − posted and pending debits).
        available: i64,
        /// What the transfer needs.
        needed: i64,
    },
    /// A capture, void or refund names a transfer that does not exist.
    #[error("no transfer {0}")]
    NotFound(TransferId),
    /// A capture or void names a transfer that is not a hold.
    #[error("transfer {0} is not a hold")]
    NotAHold(TransferId),
    /// The hold was already resolved.
    #[error("hold {id} is already {state:?}")]
    HoldResolved {
        /// The hold.
        id: TransferId,
        /// How it was resolved.
        state: HoldState,
    },
    /// The hold's timeout passed: it can only be voided (by the sweeper or explicitly).
    #[error("hold {0} has expired")]
    HoldExpired(TransferId),
    /// A capture of more than was held.
    #[error("capture of {amount} exceeds the {held} held")]
    ExceedsHold {
        /// Asked for.
        amount: i64,
        /// Held.
        held: i64,
    },
    /// A refund of more than is left of the original posted amount.
    #[error("refund of {amount} exceeds the {left} left to refund")]
    ExceedsRefundable {
        /// Asked for.
        amount: i64,
        /// What the original transfer still has unrefunded.
        left: i64,
    },
    /// A refund names a transfer that moved nothing posted (a hold, a void).
    #[error("transfer {0} cannot be refunded")]
    NotRefundable(TransferId),
    /// A counter would leave the range of i64.
    #[error("amount overflow")]
    Overflow,
    /// One transfer of a linked chain failed, so none was applied.
    #[error("linked transfer {index} failed: {error}")]
    LinkedFailed {
        /// Position in the chain.
        index: usize,
        /// Why.
        error: Box<LedgerError>,
    },
}
