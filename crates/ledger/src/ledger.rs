//! An in-memory ledger that applies the rules' effects to maps: the reference state machine
//! the property tests drive, and a model of what a store does inside one transaction.

use std::collections::HashMap;

use crate::error::LedgerError;
use crate::model::{AccountKey, Balance, HoldState, Kind, Request, Transfer, TransferId};
use crate::rules::{self, View};

/// Accounts and transfers in memory.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    balances: HashMap<AccountKey, Balance>,
    transfers: HashMap<TransferId, Transfer>,
    order: Vec<TransferId>,
}

impl View for Ledger {
    fn balance(&self, key: &AccountKey) -> Balance {
        self.balances.get(key).copied().unwrap_or_default()
    }

    fn transfer(&self, id: &TransferId) -> Option<Transfer> {
        self.transfers.get(id).cloned()
    }
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a linked chain (one request: a plain transfer) all or nothing; returns each
    /// request's transfer (the first result for a retried id).
    pub fn submit(&mut self, reqs: &[Request], now_ms: i64) -> Result<Vec<Transfer>, LedgerError> {
        let (overlay, out) = rules::plan_linked(reqs, &*self, now_ms)?;
        let (balances, transfers, order) = (overlay.balances, overlay.transfers, overlay.order);
        self.balances.extend(balances);
        self.transfers.extend(transfers);
        self.order.extend(order);
        Ok(out)
    }

    /// Releases every pending hold whose timeout is at or before `now_ms` (the sweeper);
    /// returns the expiry transfers recorded.
    pub fn sweep(&mut self, now_ms: i64) -> Vec<Transfer> {
        let mut due: Vec<TransferId> = self
            .transfers
            .values()
            .filter(|t| {
                t.hold == Some(HoldState::Pending)
                    && matches!(t.request.kind, Kind::Hold { timeout_ms } if timeout_ms <= now_ms)
            })
            .map(|t| t.request.id.clone())
            .collect();
        due.sort();
        let mut out = Vec::new();
        for id in due {
            let planned = rules::plan_expiry(&*self, &id, now_ms).and_then(|effect| {
                let mut overlay = rules::Overlay::new(&*self);
                let t = effect.transfer.clone();
                overlay.add(effect)?;
                Ok((overlay.balances, overlay.transfers, overlay.order, t))
            });
            // A release only lowers pending counters, so it cannot fail on a valid ledger.
            if let Ok((balances, transfers, order, t)) = planned {
                self.balances.extend(balances);
                self.transfers.extend(transfers);
                self.order.extend(order);
                out.push(t);
            }
        }
        out
    }

    /// Every account with counters, in key order.
    pub fn accounts(&self) -> Vec<(AccountKey, Balance)> {
        let mut v: Vec<(AccountKey, Balance)> =
            self.balances.iter().map(|(k, b)| (k.clone(), *b)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Every transfer, in the order applied (as it stands now).
    pub fn transfers(&self) -> Vec<Transfer> {
        self.order
            .iter()
            .filter_map(|id| self.transfers.get(id).cloned())
            .collect()
    }
}
