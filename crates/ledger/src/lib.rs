//! Guildhall's ledger core: accounts of credits, immutable transfers keyed by a client-chosen
//! id, two-phase holds, and the rules that decide every movement — as pure functions of the
//! request, the accounts it touches and `now` (TigerBeetle's model, on our terms).
//!
//! The core decides; it does not store. [`rules::plan`] turns a request and the current state
//! of what it touches into an [`Effect`]: the transfer to record, the counter deltas per
//! account, and the hold it resolves. A store applies an effect inside one transaction; the
//! in-memory [`Ledger`] applies it to maps, and is what the property tests drive against a naive
//! model that recomputes every balance from the full history.
//!
//! Invariant: for every currency, Σ debits = Σ credits, pending and posted alike, after every
//! applied effect (each transfer moves one amount from one account to another of the same
//! currency).
//! Invariant: a constrained account's posted + pending debits never exceed its posted credits.
//! Invariant: a transfer id is applied at most once; the same id with the same parameters
//! answers the first result, with other parameters an error.
//! Invariant: a hold resolves at most once (captured, voided or expired), and a capture never
//! moves more than was held.
//! Invariant: amounts are integers of 10⁻⁹ units; every sum is checked, an overflow is an error.

mod error;
mod ledger;
mod model;
pub mod rules;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::LedgerError;
pub use ledger::Ledger;
pub use model::*;
