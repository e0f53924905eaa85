//! The ledger against a naive model: random grants, transfers, holds, captures, voids,
//! refunds, linked fee splits, retries of earlier ids (same and changed parameters), sweeps and
//! clock jumps. The model keeps only the log of what was applied and recomputes every balance
//! and hold state from it by a full pass; after every step both must agree on the outcome and
//! every balance, and the ledger's invariants must hold.

use std::collections::{BTreeMap, BTreeSet};

use guildhall_ledger::rules::{self, View};
use guildhall_ledger::*;
use proptest::prelude::*;

use guildhall_ledger::testing::{CURRENCIES, Step, id, key, steps};

/// The naive model: the log of applied transfers, and nothing else.
#[derive(Debug, Default, Clone)]
struct Model {
    log: Vec<Transfer>,
}

impl Model {
    fn find(&self, id: &TransferId) -> Option<&Transfer> {
        self.log.iter().find(|t| &t.request.id == id)
    }

    /// How a hold stands: pending unless a later transfer resolved it.
    fn hold_state(&self, hold: &TransferId) -> HoldState {
        for t in &self.log {
            match &t.request.kind {
                Kind::Capture { hold: h } if h == hold => return HoldState::Captured,
                Kind::Void { hold: h } if h == hold => {
                    return if t.request.id.0.starts_with("expired:") {
                        HoldState::Expired
                    } else {
                        HoldState::Voided
                    };
                }
                _ => {}
            }
        }
        HoldState::Pending
    }

    fn refunded(&self, original: &TransferId) -> i64 {
        self.log
            .iter()
            .filter(|t| matches!(&t.request.kind, Kind::Refund { original: o } if o == original))
            .map(|t| t.amount)
            .sum()
    }

    /// Every account's counters, summed from the log in i128.
    fn balances(&self) -> BTreeMap<AccountKey, [i128; 4]> {
        let mut out: BTreeMap<AccountKey, [i128; 4]> = BTreeMap::new();
        for t in &self.log {
            let a = i128::from(t.amount);
            let (debit, credit) = match &t.request.kind {
                Kind::Post | Kind::Capture { .. } | Kind::Refund { .. } => {
                    ([0, a, 0, 0], [0, 0, 0, a])
                }
                Kind::Hold { .. } if self.hold_state(&t.request.id) == HoldState::Pending => {
                    ([a, 0, 0, 0], [0, 0, a, 0])
                }
                // A resolved hold and its release leave the counters touched but unchanged.
                Kind::Hold { .. } | Kind::Void { .. } => ([0; 4], [0; 4]),
            };
            for (k, d) in [(&t.debit, debit), (&t.credit, credit)] {
                let e = out.entry(k.clone()).or_insert([0; 4]);
                for i in 0..4 {
                    e[i] += d[i];
                }
            }
        }
        out
    }

    fn available(&self, k: &AccountKey) -> i128 {
        let b = self.balances().get(k).copied().unwrap_or([0; 4]);
        b[3] - b[1] - b[0]
    }

    /// Decides and (if accepted) logs one request, by the rules restated plainly.
    fn apply(&mut self, r: &Request, now: i64) -> Result<Transfer, ()> {
        if let Some(t) = self.find(&r.id) {
            return if &t.request == r {
                Ok(t.clone())
            } else {
                Err(())
            };
        }
        let fits = |m: &Model, k: &AccountKey, a: i64| {
            !k.owner.constrained() || m.available(k) >= i128::from(a)
        };
        let (debit, credit, amount) = match &r.kind {
            Kind::Post | Kind::Hold { .. } => {
                if r.amount <= 0 || r.debit == r.credit || r.debit.currency != r.credit.currency {
                    return Err(());
                }
                if !fits(self, &r.debit, r.amount) {
                    return Err(());
                }
                (r.debit.clone(), r.credit.clone(), r.amount)
            }
            Kind::Capture { hold } | Kind::Void { hold } => {
                let h = self.find(hold).ok_or(())?.clone();
                let Kind::Hold { timeout_ms } = h.request.kind else {
                    return Err(());
                };
                if self.hold_state(hold) != HoldState::Pending {
                    return Err(());
                }
                if matches!(r.kind, Kind::Capture { .. }) {
                    if now >= timeout_ms || r.amount <= 0 || r.amount > h.amount {
                        return Err(());
                    }
                    (h.debit, h.credit, r.amount)
                } else {
                    (h.debit, h.credit, h.amount)
                }
            }
            Kind::Refund { original } => {
                let o = self.find(original).ok_or(())?.clone();
                if !matches!(o.request.kind, Kind::Post | Kind::Capture { .. }) || r.amount <= 0 {
                    return Err(());
                }
                if r.amount > o.amount - self.refunded(original) || !fits(self, &o.credit, r.amount)
                {
                    return Err(());
                }
                (o.credit, o.debit, r.amount)
            }
        };
        let t = Transfer {
            request: r.clone(),
            debit,
            credit,
            amount,
            at_ms: now,
            hold: matches!(r.kind, Kind::Hold { .. }).then_some(HoldState::Pending),
            refunded: 0,
        };
        // Counters must stay in i64.
        let mut next = self.clone();
        next.log.push(t.clone());
        if next
            .balances()
            .values()
            .flatten()
            .any(|v| i64::try_from(*v).is_err())
        {
            return Err(());
        }
        *self = next;
        Ok(t)
    }

    fn sweep(&mut self, now: i64) {
        let mut due: Vec<Transfer> = self
            .log
            .iter()
            .filter(|t| matches!(t.request.kind, Kind::Hold { timeout_ms } if timeout_ms <= now))
            .filter(|t| self.hold_state(&t.request.id) == HoldState::Pending)
            .cloned()
            .collect();
        due.sort_by(|a, b| a.request.id.cmp(&b.request.id));
        for h in due {
            self.log.push(Transfer {
                request: Request {
                    id: rules::expiry_id(&h.request.id),
                    debit: h.debit.clone(),
                    credit: h.credit.clone(),
                    amount: h.amount,
                    kind: Kind::Void {
                        hold: h.request.id.clone(),
                    },
                    memo: None,
                },
                debit: h.debit.clone(),
                credit: h.credit.clone(),
                amount: h.amount,
                at_ms: now,
                hold: None,
                refunded: 0,
            });
        }
    }
}

fn check(ledger: &Ledger, model: &Model) -> Result<(), TestCaseError> {
    // Same counters for every account either side knows.
    let expected = model.balances();
    let actual: BTreeMap<AccountKey, Balance> = ledger.accounts().into_iter().collect();
    let keys: BTreeSet<&AccountKey> = expected.keys().chain(actual.keys()).collect();
    for k in keys {
        let e = expected.get(k).copied().unwrap_or([0; 4]);
        let a = actual.get(k).copied().unwrap_or_default();
        let a = [
            a.debits_pending,
            a.debits_posted,
            a.credits_pending,
            a.credits_posted,
        ]
        .map(i128::from);
        prop_assert_eq!(a, e, "counters of {:?}", k);
    }
    // Conservation per currency, pending and posted.
    for c in CURRENCIES {
        let (mut dp, mut dpo, mut cp, mut cpo) = (0i128, 0i128, 0i128, 0i128);
        for (k, b) in ledger.accounts() {
            if k.currency == c {
                dp += i128::from(b.debits_pending);
                dpo += i128::from(b.debits_posted);
                cp += i128::from(b.credits_pending);
                cpo += i128::from(b.credits_posted);
            }
        }
        prop_assert_eq!(dp, cp, "pending conservation in {}", c);
        prop_assert_eq!(dpo, cpo, "posted conservation in {}", c);
    }
    // No constrained account below zero.
    for (k, b) in ledger.accounts() {
        if k.owner.constrained() {
            prop_assert!(
                b.available().is_some_and(|v| v >= 0),
                "{:?} went below zero: {:?}",
                k,
                b
            );
        }
    }
    // Each id once; each hold resolved at most once; holds stand as the model says.
    let transfers = ledger.transfers();
    let ids: BTreeSet<&TransferId> = transfers.iter().map(|t| &t.request.id).collect();
    prop_assert_eq!(ids.len(), transfers.len(), "an id applied twice");
    let mut resolutions: BTreeMap<&TransferId, usize> = BTreeMap::new();
    for t in &transfers {
        if let Kind::Capture { hold } | Kind::Void { hold } = &t.request.kind {
            *resolutions.entry(hold).or_default() += 1;
        }
        if t.hold.is_some() {
            prop_assert_eq!(t.hold, Some(model.hold_state(&t.request.id)));
        }
    }
    prop_assert!(
        resolutions.values().all(|n| *n <= 1),
        "a hold resolved twice: {:?}",
        resolutions
    );
    prop_assert_eq!(transfers.len(), model.log.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn ledger_equals_naive_model(script in steps(80)) {
        let mut ledger = Ledger::new();
        let mut model = Model::default();
        let mut now = 0i64;
        for step in script {
            match step {
                Step::Submit(chain) => submit(&mut ledger, &mut model, &chain, now)?,
                Step::Sweep => {
                    let swept = ledger.sweep(now);
                    let before = model.log.len();
                    model.sweep(now);
                    prop_assert_eq!(swept.len(), model.log.len() - before);
                }
                Step::Advance(ms) => now += ms,
            }
            check(&ledger, &model)?;
        }
    }
}

/// Submits a chain to both; they must agree on whether it applied and on what it returned.
fn submit(
    ledger: &mut Ledger,
    model: &mut Model,
    chain: &[Request],
    now: i64,
) -> Result<(), TestCaseError> {
    let got = ledger.submit(chain, now);
    // The model applies a chain all or nothing too.
    let mut trial = model.clone();
    let mut expected = Vec::new();
    let mut ok = true;
    for r in chain {
        match trial.apply(r, now) {
            Ok(t) => expected.push(t),
            Err(()) => {
                ok = false;
                break;
            }
        }
    }
    if ok {
        *model = trial;
    }
    match got {
        Ok(ts) => {
            prop_assert!(ok, "the ledger applied {:?}, the model refused it", chain);
            for (t, e) in ts.iter().zip(&expected) {
                prop_assert_eq!(&t.request, &e.request);
                prop_assert_eq!(
                    (&t.debit, &t.credit, t.amount),
                    (&e.debit, &e.credit, e.amount)
                );
            }
        }
        Err(e) => prop_assert!(
            !ok,
            "the ledger refused {:?} ({}), the model applied it",
            chain,
            e
        ),
    }
    Ok(())
}

#[test]
fn retries_with_the_same_id_apply_once_and_changed_parameters_are_refused() {
    let mut l = Ledger::new();
    let alice = key(0, 0);
    let grant = Request {
        id: id(1),
        debit: key(4, 0),
        credit: alice.clone(),
        amount: 100,
        kind: Kind::Post,
        memo: None,
    };
    let first = l.submit(std::slice::from_ref(&grant), 0).expect("grant");
    let again = l.submit(std::slice::from_ref(&grant), 5).expect("retry");
    assert_eq!(first, again);
    assert_eq!(l.balance(&alice).credits_posted, 100);
    let changed = Request {
        amount: 101,
        ..grant
    };
    assert_eq!(l.submit(&[changed], 6), Err(LedgerError::IdReused(id(1))));
}

#[test]
fn a_capture_with_its_fee_commits_together_or_not_at_all() {
    let mut l = Ledger::new();
    let (caller, provider, fees) = (key(0, 0), key(1, 0), key(3, 0));
    l.submit(
        &[Request {
            id: id(0),
            debit: key(4, 0),
            credit: caller.clone(),
            amount: 100,
            kind: Kind::Post,
            memo: None,
        }],
        0,
    )
    .expect("grant");
    l.submit(
        &[Request {
            id: id(1),
            debit: caller.clone(),
            credit: provider.clone(),
            amount: 60,
            kind: Kind::Hold { timeout_ms: 1_000 },
            memo: None,
        }],
        0,
    )
    .expect("hold");
    assert_eq!(l.balance(&caller).available(), Some(40));
    let capture = Request {
        id: id(2),
        debit: caller.clone(),
        credit: provider.clone(),
        amount: 50,
        kind: Kind::Capture { hold: id(1) },
        memo: None,
    };
    // A fee larger than the capture fails the chain: the hold stays pending.
    let greedy = Request {
        id: id(3),
        debit: provider.clone(),
        credit: fees.clone(),
        amount: 51,
        kind: Kind::Post,
        memo: None,
    };
    assert!(matches!(
        l.submit(&[capture.clone(), greedy], 10),
        Err(LedgerError::LinkedFailed { index: 1, .. })
    ));
    assert_eq!(
        l.transfer(&id(1)).and_then(|t| t.hold),
        Some(HoldState::Pending)
    );
    let fee = Request {
        id: id(3),
        debit: provider.clone(),
        credit: fees.clone(),
        amount: 5,
        kind: Kind::Post,
        memo: None,
    };
    l.submit(&[capture, fee], 10).expect("capture + fee");
    assert_eq!(
        l.balance(&caller).available(),
        Some(50),
        "the 10 not captured came back"
    );
    assert_eq!(l.balance(&provider).available(), Some(45));
    assert_eq!(l.balance(&fees).available(), Some(5));
}

#[test]
fn an_expired_hold_is_released_by_the_sweeper_and_cannot_be_captured() {
    let mut l = Ledger::new();
    let (caller, provider) = (key(0, 0), key(1, 0));
    l.submit(
        &[Request {
            id: id(0),
            debit: key(4, 0),
            credit: caller.clone(),
            amount: 10,
            kind: Kind::Post,
            memo: None,
        }],
        0,
    )
    .expect("grant");
    l.submit(
        &[Request {
            id: id(1),
            debit: caller.clone(),
            credit: provider.clone(),
            amount: 10,
            kind: Kind::Hold { timeout_ms: 100 },
            memo: None,
        }],
        0,
    )
    .expect("hold");
    let capture = Request {
        id: id(2),
        debit: caller.clone(),
        credit: provider.clone(),
        amount: 10,
        kind: Kind::Capture { hold: id(1) },
        memo: None,
    };
    assert_eq!(
        l.submit(std::slice::from_ref(&capture), 100),
        Err(LedgerError::HoldExpired(id(1)))
    );
    assert!(l.sweep(99).is_empty());
    assert_eq!(l.sweep(100).len(), 1);
    assert_eq!(l.balance(&caller).available(), Some(10));
    assert!(matches!(
        l.submit(&[capture], 101),
        Err(LedgerError::HoldResolved {
            state: HoldState::Expired,
            ..
        })
    ));
}

#[test]
fn refunds_never_exceed_what_was_paid() {
    let mut l = Ledger::new();
    let (alice, bob) = (key(0, 0), key(1, 0));
    let grant = |i, k: &AccountKey| Request {
        id: id(i),
        debit: key(4, 0),
        credit: k.clone(),
        amount: 100,
        kind: Kind::Post,
        memo: None,
    };
    l.submit(&[grant(0, &alice), grant(1, &bob)], 0)
        .expect("grants");
    l.submit(
        &[Request {
            id: id(2),
            debit: alice.clone(),
            credit: bob.clone(),
            amount: 30,
            kind: Kind::Post,
            memo: None,
        }],
        0,
    )
    .expect("pay");
    let refund = |i, amount| Request {
        id: id(i),
        debit: bob.clone(),
        credit: alice.clone(),
        amount,
        kind: Kind::Refund { original: id(2) },
        memo: None,
    };
    l.submit(&[refund(3, 20)], 1).expect("first refund");
    assert_eq!(
        l.submit(&[refund(4, 11)], 2),
        Err(LedgerError::ExceedsRefundable {
            amount: 11,
            left: 10
        })
    );
    l.submit(&[refund(4, 10)], 2).expect("the rest");
    assert_eq!(l.balance(&alice).available(), Some(100));
}

#[test]
fn ids_memos_and_currencies_are_bounded_printable_text() {
    let mut l = Ledger::new();
    let grant = |id: &str, memo: Option<&str>, currency: &str| Request {
        id: TransferId(id.to_owned()),
        debit: AccountKey {
            owner: Owner::Issuance,
            currency: currency.to_owned(),
        },
        credit: AccountKey {
            owner: Owner::Did("did:plc:a".to_owned()),
            currency: currency.to_owned(),
        },
        amount: 1,
        kind: Kind::Post,
        memo: memo.map(str::to_owned),
    };
    let long_id = "i".repeat(256);
    let long_memo = "m".repeat(501);
    for (req, want) in [
        (grant("", None, "USD"), LedgerError::BadId),
        (grant(&long_id, None, "USD"), LedgerError::BadId),
        (grant("has space", None, "USD"), LedgerError::BadId),
        (grant("ok", Some(&long_memo), "USD"), LedgerError::BadMemo),
        (grant("ok", Some("bell\u{7}"), "USD"), LedgerError::BadMemo),
        (
            grant("ok", None, "US D"),
            LedgerError::BadCurrency("US D".to_owned()),
        ),
    ] {
        assert_eq!(l.submit(&[req], 0), Err(want));
    }
    assert!(l.accounts().is_empty(), "nothing refused was applied");
    let ok = grant(&"i".repeat(255), Some("top-up"), "USDC");
    assert_eq!(l.submit(&[ok], 0).expect("bounded input").len(), 1);
}

proptest! {
    #[test]
    fn a_fee_is_a_floored_share_never_more_than_the_amount(amount in 0i64..=i64::MAX, bp in 0u32..=10_000) {
        let fee = rules::fee_for(amount, bp).expect("in range");
        prop_assert!((0..=amount).contains(&fee));
        // Floor of amount·bp/10⁴, checked against the definition.
        let exact = i128::from(amount) * i128::from(bp);
        prop_assert!(i128::from(fee) * 10_000 <= exact);
        prop_assert!((i128::from(fee) + 1) * 10_000 > exact);
    }
}

#[test]
fn fees_outside_the_range_are_refused() {
    assert_eq!(rules::fee_for(100, 10_001), None);
    assert_eq!(rules::fee_for(-1, 100), None);
    assert_eq!(rules::fee_for(1_000_000_000, 250), Some(25_000_000));
    assert_eq!(
        rules::fee_for(3, 5_000),
        Some(1),
        "the payee keeps the fraction"
    );
}
