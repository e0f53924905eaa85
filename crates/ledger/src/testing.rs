//! Random ledger scripts for property tests (feature `testing`): the same generator drives the
//! in-memory ledger against the naive model here and the stores against the in-memory ledger.

use proptest::prelude::*;

use crate::model::{AccountKey, Kind, Owner, Request, TransferId};

/// The user DIDs scripts use.
pub const OWNERS: [&str; 3] = ["did:plc:a", "did:plc:b", "did:plc:c"];
/// The currencies scripts use.
pub const CURRENCIES: [&str; 2] = ["USD", "EUR"];
/// Transfer ids come from a small set, so retries and reuse are common.
pub const IDS: usize = 10;

/// Account `owner` (0–2 a user, 3 the fee account, 4 issuance) in currency `currency`.
pub fn key(owner: usize, currency: usize) -> AccountKey {
    AccountKey {
        owner: match owner {
            3 => Owner::Fees,
            4 => Owner::Issuance,
            i => Owner::Did(OWNERS[i % OWNERS.len()].to_owned()),
        },
        currency: CURRENCIES[currency % CURRENCIES.len()].to_owned(),
    }
}

/// Transfer id `t<i>`.
pub fn id(i: usize) -> TransferId {
    TransferId(format!("t{i}"))
}

/// One step of a script.
#[derive(Debug, Clone)]
pub enum Step {
    /// Submit a chain (one request: a plain transfer).
    Submit(Vec<Request>),
    /// Run the sweeper.
    Sweep,
    /// Move the clock forward by this many ms.
    Advance(i64),
}

/// A step as generated, before retries and refunds are resolved against what came before.
#[derive(Debug, Clone)]
enum Op {
    Submit(Vec<Request>),
    /// Resend the n-th chain submitted so far (modulo their number), as a client retry.
    Retry(usize),
    /// Refund `amount` of the n-th chain's first request under id `r<k>` (the payee of a
    /// real transfer pays back, possibly more than once).
    RefundOf(usize, usize, i64),
    Sweep,
    Advance(i64),
}

/// Any request over the script's accounts and ids, including refused ones (zero and huge
/// amounts, same-account and cross-currency pairs, references to non-holds).
pub fn request() -> impl Strategy<Value = Request> {
    let amount = prop_oneof![8 => 1i64..20, 1 => Just(0i64), 1 => Just(i64::MAX)];
    (
        0..IDS,
        0usize..5,
        0usize..5,
        0usize..2,
        0usize..2,
        amount,
        0u8..6,
        0..IDS,
        1i64..400,
    )
        .prop_map(|(i, d, c, dc, cc, amount, k, other, timeout)| {
            // Grants come from issuance; the rest between any accounts.
            let (d, dc) = if k <= 1 { (4, cc) } else { (d, dc) };
            Request {
                id: id(i),
                debit: key(d, dc),
                credit: key(c, cc),
                amount,
                kind: match k {
                    0 | 1 => Kind::Post,
                    2 => Kind::Hold {
                        timeout_ms: timeout,
                    },
                    3 => Kind::Capture { hold: id(other) },
                    4 => Kind::Void { hold: id(other) },
                    _ => Kind::Refund {
                        original: id(other),
                    },
                },
                memo: None,
            }
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => request().prop_map(|r| Op::Submit(vec![r])),
        2 => (request(), request()).prop_map(|(a, b)| Op::Submit(vec![a, b])),
        2 => any::<usize>().prop_map(Op::Retry),
        2 => (any::<usize>(), 0usize..4, 1i64..20).prop_map(|(n, k, a)| Op::RefundOf(n, k, a)),
        1 => Just(Op::Sweep),
        1 => (1i64..200).prop_map(Op::Advance),
    ]
}

/// Scripts of up to `max` steps: grants, transfers, holds, captures, voids, refunds, linked
/// pairs, retries of earlier chains (same parameters), refunds of earlier transfers, sweeps
/// and clock jumps.
pub fn steps(max: usize) -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(op(), 1..max.max(2)).prop_map(|ops| {
        let mut sent: Vec<Vec<Request>> = Vec::new();
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Submit(chain) => {
                    sent.push(chain.clone());
                    out.push(Step::Submit(chain));
                }
                Op::Retry(n) => {
                    if !sent.is_empty() {
                        out.push(Step::Submit(sent[n % sent.len()].clone()));
                    }
                }
                Op::RefundOf(n, k, amount) => {
                    if !sent.is_empty() {
                        let o = &sent[n % sent.len()][0];
                        let chain = vec![Request {
                            id: TransferId(format!("r{k}")),
                            debit: o.credit.clone(),
                            credit: o.debit.clone(),
                            amount,
                            kind: Kind::Refund {
                                original: o.id.clone(),
                            },
                            memo: None,
                        }];
                        sent.push(chain.clone());
                        out.push(Step::Submit(chain));
                    }
                }
                Op::Sweep => out.push(Step::Sweep),
                Op::Advance(ms) => out.push(Step::Advance(ms)),
            }
        }
        out
    })
}
