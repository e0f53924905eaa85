//! `credits`: the instance operator's local `grant` (issues credits straight into the store's
//! ledger), and `balance`, `send` and `history` for anyone logged in, which call the AppView's
//! `dev.guildhall.ledger.*` methods with ATProto service auth: a token from the user's own PDS
//! (`com.atproto.server.getServiceAuth`) for exactly one method and this AppView.
//!
//! The token's audience is the did:web of the AppView URL's host (`--appview-did` to name
//! another), so a token can only be spent at the host it is sent to: an AppView URL pointing
//! elsewhere cannot collect a token good for this instance.

use guildhall_lexicon::grammar::{check_currency, format_nanos, parse_amount};
use guildhall_lexicon::{GET_BALANCE_NSID, LIST_TRANSFERS_NSID, TRANSFER_NSID};
use guildhall_proto::syntax::{AtIdentifier, Did};
use guildhall_store::ledger_core::{Owner, TransferId};
use guildhall_store::{LedgerCallError, LedgerConfig, LedgerHandle, Store};
use serde_json::{Value, json};
use url::Url;

use super::error::CliError;
use super::identity::parse_actor;
use super::output::{Table, say, say_json};
use super::session::Authed;
use super::xrpc::Xrpc;
use super::{CreditsBalanceArgs, CreditsGrantArgs, CreditsHistoryArgs, CreditsSendArgs};

/// Amount text → 10⁻⁹ units, refusing zero (exit 2 on a bad argument).
fn amount(text: &str) -> Result<i64, CliError> {
    let nanos = parse_amount(text)
        .map_err(|e| CliError::arg(format!("{text:?} is not an amount like 1.5 ({e})")))?
        .nanos();
    let nanos =
        i64::try_from(nanos).map_err(|_| CliError::arg(format!("{text:?} is too large")))?;
    if nanos == 0 {
        return Err(CliError::arg("the amount must be more than 0"));
    }
    Ok(nanos)
}

fn currency(text: &str) -> Result<(), CliError> {
    check_currency(text).map_err(|e| CliError::arg(format!("currency {text:?}: {e}")))
}

/// A fresh idempotency id: the time and 64 random bits (printed, so a retry can reuse it).
fn fresh_id() -> String {
    let ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    format!("{ms}-{:016x}", rand::random::<u64>())
}

/// The did:web of the AppView's host (a port percent-encoded, as did:web spells it).
pub fn appview_did(appview: &Url) -> Result<String, CliError> {
    let host = appview
        .host_str()
        .ok_or_else(|| CliError::arg(format!("{appview}: no host")))?;
    Ok(match appview.port() {
        Some(p) => format!("did:web:{host}%3A{p}"),
        None => format!("did:web:{host}"),
    })
}

/// `guildhall credits grant`: issue credits from the Issuance account, in the local store.
pub async fn grant(args: CreditsGrantArgs) -> Result<(), CliError> {
    let nanos = amount(&args.amount)?;
    currency(&args.currency)?;
    let xrpc = Xrpc::new()?;
    let did = match parse_actor(&args.subject)? {
        AtIdentifier::Did(d) => d,
        h @ AtIdentifier::Handle(_) => args.identity.resolve(&xrpc, &h).await?.did,
    };
    let store = Store::open(&args.db)
        .await
        .map_err(|e| CliError::Local(format!("opening the database {}: {e}", args.db)))?;
    let id = args.id.clone().unwrap_or_else(fresh_id);
    let ledger = LedgerHandle::start(store.clone(), LedgerConfig::default());
    let result = ledger
        .grant(
            // Grants have a namespace of their own: no XRPC caller can reach it.
            TransferId(format!("grant:{id}")),
            Owner::Did(did.as_str().to_owned()),
            &args.currency,
            nanos,
            args.memo.clone(),
        )
        .await;
    drop(ledger);
    store.close().await;
    let t = result.map_err(|e| match e {
        LedgerCallError::Refused(r) => {
            CliError::Local(format!("the ledger refused the grant: {r}"))
        }
        other => CliError::Local(format!("granting: {other}")),
    })?;
    let out = json!({
        "id": id,
        "to": did.as_str(),
        "amount": format_nanos(t.amount),
        "currency": t.credit.currency,
        "memo": t.request.memo,
    });
    if args.json {
        return say_json(&out);
    }
    say(format!(
        "granted {} {} to {} (id {id})",
        format_nanos(t.amount),
        t.credit.currency,
        did.as_str()
    ));
    Ok(())
}

/// A service-auth token for `method` at the AppView, then the call.
struct LedgerClient {
    xrpc: Xrpc,
    authed: Authed,
    appview: Url,
    audience: String,
}

impl LedgerClient {
    async fn open(appview: &Url, did_override: Option<&str>) -> Result<Self, CliError> {
        let xrpc = Xrpc::new()?;
        let authed = Authed::open(&xrpc).await?;
        let audience = match did_override {
            Some(d) => Did::parse(d)
                .map_err(|e| CliError::arg(format!("--appview-did {d:?}: {e}")))?
                .as_str()
                .to_owned(),
            None => appview_did(appview)?,
        };
        Ok(Self {
            xrpc,
            authed,
            appview: appview.clone(),
            audience,
        })
    }

    /// Asks the user's PDS for a token good for one call of `method` here.
    async fn token(&mut self, method: &str) -> Result<String, CliError> {
        let out = self
            .authed
            .query(
                "com.atproto.server.getServiceAuth",
                &[("aud", self.audience.clone()), ("lxm", method.to_owned())],
            )
            .await?;
        out.get("token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| CliError::UnexpectedAnswer {
                host: self.authed.pds().to_string(),
                message: "getServiceAuth gave no token".into(),
            })
    }

    async fn query(&mut self, method: &str, params: &[(&str, String)]) -> Result<Value, CliError> {
        let token = self.token(method).await?;
        self.xrpc
            .query(&self.appview, method, params, Some(&token))
            .await
    }

    async fn procedure(&mut self, method: &str, body: &Value) -> Result<Value, CliError> {
        let token = self.token(method).await?;
        self.xrpc
            .procedure(&self.appview, method, Some(body), Some(&token))
            .await
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `guildhall credits balance`.
pub async fn balance(args: CreditsBalanceArgs) -> Result<(), CliError> {
    let mut c =
        LedgerClient::open(&args.ledger.appview, args.ledger.appview_did.as_deref()).await?;
    let mut params = Vec::new();
    if let Some(cur) = &args.currency {
        currency(cur)?;
        params.push(("currency", cur.clone()));
    }
    let out = c.query(GET_BALANCE_NSID, &params).await?;
    if args.ledger.json {
        return say_json(&out);
    }
    let accounts = out
        .get("accounts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    say(format!("balances of {}", s(&out, "did")));
    if accounts.is_empty() {
        say("no credits yet");
        return Ok(());
    }
    let mut t = Table::new(&[
        "CURRENCY",
        "AVAILABLE",
        "HELD OUT",
        "HELD IN",
        "RECEIVED",
        "SPENT",
    ]);
    for a in &accounts {
        t.row(vec![
            s(a, "currency").to_owned(),
            s(a, "available").to_owned(),
            s(a, "debitsPending").to_owned(),
            s(a, "creditsPending").to_owned(),
            s(a, "creditsPosted").to_owned(),
            s(a, "debitsPosted").to_owned(),
        ]);
    }
    t.print();
    Ok(())
}

/// `guildhall credits send`.
pub async fn send(args: CreditsSendArgs) -> Result<(), CliError> {
    amount(&args.amount)?;
    currency(&args.currency)?;
    let mut c =
        LedgerClient::open(&args.ledger.appview, args.ledger.appview_did.as_deref()).await?;
    let to = match parse_actor(&args.to)? {
        AtIdentifier::Did(d) => d,
        h @ AtIdentifier::Handle(_) => args.identity.resolve(&c.xrpc, &h).await?.did,
    };
    let id = args.id.clone().unwrap_or_else(fresh_id);
    let mut body = json!({
        "to": to.as_str(),
        "amount": args.amount,
        "currency": args.currency,
        "id": id,
    });
    if let Some(m) = &args.memo {
        body["memo"] = json!(m);
    }
    let out = c.procedure(TRANSFER_NSID, &body).await?;
    if args.ledger.json {
        return say_json(&out);
    }
    say(format!(
        "sent {} {} to {} (id {}; to retry safely, repeat with --id {})",
        s(&out, "amount"),
        s(&out, "currency"),
        s(&out, "to"),
        s(&out, "id"),
        s(&out, "id"),
    ));
    Ok(())
}

/// `guildhall credits history`.
pub async fn history(args: CreditsHistoryArgs) -> Result<(), CliError> {
    let mut c =
        LedgerClient::open(&args.ledger.appview, args.ledger.appview_did.as_deref()).await?;
    let mut params = vec![("limit", args.limit.to_string())];
    if let Some(cur) = &args.cursor {
        params.push(("cursor", cur.clone()));
    }
    let out = c.query(LIST_TRANSFERS_NSID, &params).await?;
    if args.ledger.json {
        return say_json(&out);
    }
    let transfers = out
        .get("transfers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if transfers.is_empty() {
        say("no transfers");
    } else {
        let mut t = Table::new(&["WHEN", "KIND", "AMOUNT", "FROM/TO", "ID", "MEMO"]);
        for x in &transfers {
            let (sign, other) = if s(x, "direction") == "in" {
                ("+", format!("from {}", s(x, "from")))
            } else {
                ("-", format!("to {}", s(x, "to")))
            };
            t.row(vec![
                s(x, "createdAt").to_owned(),
                s(x, "kind").to_owned(),
                format!("{sign}{} {}", s(x, "amount"), s(x, "currency")),
                other,
                s(x, "id").to_owned(),
                s(x, "memo").to_owned(),
            ]);
        }
        t.print();
    }
    if let Some(cursor) = out.get("cursor").and_then(Value::as_str) {
        say(format!("more: --cursor {cursor}"));
    }
    Ok(())
}
