//! The `dev.guildhall.ledger.*` methods: the caller's balances and transfers, and transfers
//! from the caller to another DID. Every one takes a [`Caller`] (service auth), so the caller
//! is always the token's issuer, never a parameter.
//!
//! Amounts cross this edge as decimal strings (`"1.5"`) and live in the ledger as i64
//! billionths; the lexicon's grammar (at most 18 digits) guarantees a parsed amount fits.
//!
//! Invariant: a client's transfer id reaches the ledger only inside the caller's namespace
//! (`xrpc:<caller DID>:<id>`), so one caller can neither collide with nor probe another's ids,
//! nor those of grants and the broker.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use guildhall_lexicon::grammar::{check_currency, format_nanos, parse_amount};
use guildhall_proto::syntax::Did;
use guildhall_store::LedgerCallError;
use guildhall_store::ledger_core::{
    AccountKey, Balance, HoldState, Kind, LedgerError, Owner, Transfer, TransferId,
};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Caller;
use crate::error::XrpcError;
use crate::params::Params;

type XrpcResult = Result<Json<Value>, XrpcError>;

/// Longest client id (the namespaced id must stay within the ledger's 255 bytes).
pub const MAX_CLIENT_ID: usize = 128;
/// Longest memo, in bytes (the ledger's bound).
pub const MAX_MEMO: usize = 500;

/// The ledger id of a client's transfer: namespaced by the caller.
pub fn namespaced_id(caller: &str, id: &str) -> TransferId {
    TransferId(format!("xrpc:{caller}:{id}"))
}

/// An account owner as the lexicon writes it: a DID, `issuance` or `fees`.
pub fn owner_text(o: &Owner) -> &str {
    match o {
        Owner::Did(d) => d,
        Owner::Issuance => "issuance",
        Owner::Fees => "fees",
    }
}

fn account_view(key: &AccountKey, b: &Balance) -> Value {
    json!({
        "currency": key.currency,
        // The balance rule keeps a DID's account available ≥ 0; an overflow cannot happen on
        // counters the ledger checked, but is shown as 0 rather than a panic.
        "available": format_nanos(b.available().unwrap_or(0)),
        "creditsPosted": format_nanos(b.credits_posted),
        "debitsPosted": format_nanos(b.debits_posted),
        "creditsPending": format_nanos(b.credits_pending),
        "debitsPending": format_nanos(b.debits_pending),
    })
}

fn datetime_ms(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_owned())
}

/// A transfer as `viewer` sees it: its own client ids without the namespace.
pub fn transfer_view(t: &Transfer, viewer: &str) -> Value {
    let raw = &t.request.id.0;
    let own = format!("xrpc:{viewer}:");
    let id = raw.strip_prefix(&own).unwrap_or(raw);
    let kind = match t.request.kind {
        Kind::Post => "post",
        Kind::Hold { .. } => "hold",
        Kind::Capture { .. } => "capture",
        Kind::Void { .. } => "void",
        Kind::Refund { .. } => "refund",
    };
    let mut v = json!({
        "id": id,
        "kind": kind,
        "from": owner_text(&t.debit.owner),
        "to": owner_text(&t.credit.owner),
        "amount": format_nanos(t.amount),
        "currency": t.debit.currency,
        "direction": if t.credit.owner == Owner::Did(viewer.to_owned()) { "in" } else { "out" },
        "createdAt": datetime_ms(t.at_ms),
    });
    if let Some(m) = &t.request.memo {
        v["memo"] = json!(m);
    }
    if let Some(h) = t.hold {
        v["holdState"] = json!(match h {
            HoldState::Pending => "pending",
            HoldState::Captured => "captured",
            HoldState::Voided => "voided",
            HoldState::Expired => "expired",
        });
    }
    if t.refunded > 0 {
        v["refunded"] = json!(format_nanos(t.refunded));
    }
    v
}

/// A ledger refusal as the XRPC error the lexicon names (400); store failures are 500s.
fn refused(e: LedgerCallError, client_id: &str) -> XrpcError {
    match e {
        LedgerCallError::Refused(r) => {
            let (name, message) = match &r {
                LedgerError::InsufficientFunds { available, needed } => (
                    "InsufficientFunds",
                    format!(
                        "insufficient funds: {} available, {} needed",
                        format_nanos(*available),
                        format_nanos(*needed)
                    ),
                ),
                // The ledger's message names the namespaced id; the client knows its own.
                LedgerError::IdReused(_) => (
                    "IdReused",
                    format!("id {client_id:?} was used for a different transfer"),
                ),
                LedgerError::BadId => ("InvalidId", r.to_string()),
                LedgerError::BadMemo => ("InvalidMemo", r.to_string()),
                LedgerError::BadCurrency(_) | LedgerError::CurrencyMismatch { .. } => {
                    ("InvalidCurrency", r.to_string())
                }
                LedgerError::ZeroAmount | LedgerError::Overflow => ("InvalidAmount", r.to_string()),
                LedgerError::SameAccount => ("SameAccount", r.to_string()),
                other => ("TransferRefused", other.to_string()),
            };
            XrpcError::invalid(name, message)
        }
        LedgerCallError::Store(e) => XrpcError::from(e),
        LedgerCallError::Closed => XrpcError::Internal("the ledger writer has stopped".into()),
        LedgerCallError::ChainSize => {
            XrpcError::Internal("a one-transfer chain was refused".into())
        }
    }
}

fn owner_of(caller: &Caller) -> Owner {
    Owner::Did(caller.did.as_str().to_owned())
}

/// `GET /xrpc/dev.guildhall.ledger.getBalance`.
pub async fn get_balance(
    State(s): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> XrpcResult {
    let p = Params::parse(q.as_deref(), &["currency"], &[])?;
    let currency = p.string("currency", 12)?;
    let mut accounts = s.store.ledger_balances(&owner_of(&caller)).await?;
    accounts.retain(|(k, _)| currency.is_none_or(|c| k.currency == c));
    accounts.sort_by(|a, b| a.0.currency.cmp(&b.0.currency));
    Ok(Json(json!({
        "did": caller.did.as_str(),
        "accounts": accounts.iter().map(|(k, b)| account_view(k, b)).collect::<Vec<_>>(),
    })))
}

/// `GET /xrpc/dev.guildhall.ledger.listTransfers`.
pub async fn list_transfers(
    State(s): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> XrpcResult {
    let p = Params::parse(q.as_deref(), &["limit", "cursor"], &[])?;
    let limit = match p.get("limit") {
        None => 50,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| XrpcError::InvalidRequest("'limit' must be 1 to 100".into()))?,
    };
    let before =
        match p.string("cursor", 32)? {
            None => None,
            Some(c) => Some(c.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                XrpcError::invalid("InvalidCursor", "not a cursor of this method")
            })?),
        };
    let rows = s
        .store
        .ledger_transfers_of(&owner_of(&caller), before, limit)
        .await?;
    let cursor = if rows.len() == limit as usize {
        rows.last().map(|(seq, _)| seq.to_string())
    } else {
        None
    };
    let me = caller.did.as_str();
    let mut out = json!({
        "transfers": rows.iter().map(|(_, t)| transfer_view(t, me)).collect::<Vec<_>>(),
    });
    if let Some(c) = cursor {
        out["cursor"] = json!(c);
    }
    Ok(Json(out))
}

/// The input of `dev.guildhall.ledger.transfer`.
#[derive(Debug, serde::Deserialize)]
struct TransferInput {
    to: String,
    amount: String,
    currency: String,
    id: String,
    #[serde(default)]
    memo: Option<String>,
}

/// `POST /xrpc/dev.guildhall.ledger.transfer`.
pub async fn transfer(State(s): State<AppState>, caller: Caller, body: Bytes) -> XrpcResult {
    let Some(ledger) = s.ledger.clone() else {
        return Err(XrpcError::NotImplemented(
            "this AppView runs no ledger".into(),
        ));
    };
    let input: TransferInput = serde_json::from_slice(&body).map_err(|e| {
        XrpcError::InvalidRequest(format!(
            "the input must be a JSON object with to, amount, currency and id ({e})"
        ))
    })?;
    let to = Did::parse(&input.to)
        .map_err(|e| XrpcError::InvalidRequest(format!("'to' is not a DID ({e})")))?;
    let amount = parse_amount(&input.amount)
        .ok()
        .and_then(|a| i64::try_from(a.nanos()).ok())
        .ok_or_else(|| {
            XrpcError::invalid(
                "InvalidAmount",
                "'amount' must be a decimal like 1.5 (at most 9 digits after the point)",
            )
        })?;
    if amount == 0 {
        return Err(XrpcError::invalid(
            "InvalidAmount",
            "the amount must be positive",
        ));
    }
    check_currency(&input.currency)
        .map_err(|e| XrpcError::invalid("InvalidCurrency", format!("'currency' {e}")))?;
    if input.id.is_empty()
        || input.id.len() > MAX_CLIENT_ID
        || !input.id.bytes().all(|b| (0x21..=0x7e).contains(&b))
    {
        return Err(XrpcError::invalid(
            "InvalidId",
            format!("'id' must be 1 to {MAX_CLIENT_ID} printable ASCII characters without spaces"),
        ));
    }
    if let Some(m) = &input.memo
        && (m.len() > MAX_MEMO || m.chars().any(char::is_control))
    {
        return Err(XrpcError::invalid(
            "InvalidMemo",
            format!("'memo' must be at most {MAX_MEMO} bytes without control characters"),
        ));
    }
    if to == caller.did {
        return Err(XrpcError::invalid("SameAccount", "you cannot pay yourself"));
    }
    // Credits sent to a DID nobody holds could never be spent: refuse before moving them.
    if let Some(auth) = s.auth.as_deref()
        && let Err(e) = auth.resolver().resolve(&to).await
    {
        return Err(XrpcError::invalid(
            "UnknownRecipient",
            format!("{} does not resolve: {e}", to.as_str()),
        ));
    }
    let id = namespaced_id(caller.did.as_str(), &input.id);
    let t = ledger
        .transfer(
            id,
            owner_of(&caller),
            Owner::Did(to.as_str().to_owned()),
            &input.currency,
            amount,
            input.memo.clone(),
        )
        .await
        .map_err(|e| refused(e, &input.id))?;
    Ok(Json(transfer_view(&t, caller.did.as_str())))
}
