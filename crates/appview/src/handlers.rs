//! The six `dev.guildhall.*` XRPC queries and the did:web document.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{RawQuery, State};
use guildhall_proto::syntax::AtIdentifier;
use guildhall_store::{OperatorRow, ServiceCandidate, ServiceQuery, ServiceRecordRow, Store};
use serde_json::{Value, json};

use crate::AppState;
use crate::cursor::{self, SearchCursor};
use crate::error::XrpcError;
use crate::params::{self, Params};
use crate::search::{self, RankedService, SearchRequest, now_us, rank_candidates};
use crate::views::{
    CapabilityCount, EndorsementView, OperatorBasic, OperatorView, PathEdge, ServiceView,
    TrustInfo, endorsement_record,
};

type XrpcResult = Result<Json<Value>, XrpcError>;

fn to_json<T: serde::Serialize>(v: &T) -> XrpcResult {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| XrpcError::Internal(format!("serialising a response: {e}")))
}

/// Active operators by DID, read in one batch.
async fn operators(
    store: &Store,
    dids: impl IntoIterator<Item = &str>,
) -> Result<HashMap<String, OperatorRow>, XrpcError> {
    let mut want: Vec<&str> = dids.into_iter().collect();
    want.sort_unstable();
    want.dedup();
    let rows = store.operators_by_dids(&want).await?;
    Ok(rows
        .into_iter()
        .flatten()
        .map(|r| (r.did.clone(), r))
        .collect())
}

/// Fills path-edge CIDs the graph did not keep (graphs built with `keep_cids = false`), for
/// every path of a page in one batched read.
async fn resolve_path_cids<'a>(
    store: &Store,
    trusts: impl IntoIterator<Item = &'a mut TrustInfo>,
) -> Result<(), XrpcError> {
    let mut edges: Vec<&mut PathEdge> = trusts
        .into_iter()
        .flat_map(|t| t.path.iter_mut())
        .filter(|e| e.cid.is_empty())
        .collect();
    if edges.is_empty() {
        return Ok(());
    }
    let uris: Vec<&str> = edges.iter().map(|e| e.uri.as_str()).collect();
    let cids = store.record_cids(&uris).await?;
    for (e, cid) in edges.iter_mut().zip(cids) {
        if let Some(c) = cid {
            e.cid = c;
        }
    }
    Ok(())
}

fn parse_record(json: &str) -> Result<Value, XrpcError> {
    serde_json::from_str(json)
        .map_err(|e| XrpcError::Internal(format!("stored record JSON does not parse: {e}")))
}

/// Hydrates ranked services into views; services deleted since ranking are dropped.
async fn service_views(
    store: &Store,
    ranked: Vec<RankedService>,
) -> Result<Vec<ServiceView>, XrpcError> {
    let uris: Vec<&str> = ranked.iter().map(|r| r.uri.as_str()).collect();
    let rows = store.service_records(&uris).await?;
    hydrate(store, ranked, rows).await
}

/// Views of ranked services from their rows (`rows[i]` belongs to `ranked[i]`; `None` is
/// dropped): one batched read for the operators and one for path CIDs, whatever the page size.
async fn hydrate(
    store: &Store,
    ranked: Vec<RankedService>,
    rows: Vec<Option<ServiceRecordRow>>,
) -> Result<Vec<ServiceView>, XrpcError> {
    let mut found: Vec<(RankedService, ServiceRecordRow)> = ranked
        .into_iter()
        .zip(rows)
        .filter_map(|(r, row)| Some((r, row?)))
        .collect();
    let ops = operators(store, found.iter().map(|(r, _)| r.did.as_str())).await?;
    resolve_path_cids(store, found.iter_mut().map(|(r, _)| &mut r.trust)).await?;
    found
        .into_iter()
        .map(|(r, row)| {
            Ok(ServiceView {
                operator: OperatorBasic::from_row(&r.did, ops.get(&r.did)),
                record: parse_record(&row.record_json)?,
                uri: row.uri,
                cid: row.cid,
                trust: Some(r.trust),
            })
        })
        .collect()
}

/// Ranks one operator's services for `viewer` (getService, getOperator).
fn rank_services(
    state: &AppState,
    viewer: Option<&str>,
    candidates: Vec<ServiceCandidate>,
) -> Vec<RankedService> {
    let (list, _) = rank_candidates(
        &state.trust,
        viewer,
        &[],
        std::sync::Arc::new(search::Candidates::new(candidates)),
        now_us(),
        &state.inner.rank_opts,
    );
    list.page(0, list.len())
}

fn candidate(row: &guildhall_store::ServiceRow) -> ServiceCandidate {
    ServiceCandidate {
        uri: row.uri.clone(),
        did: row.did.clone(),
        cid: row.cid.clone(),
        created_at: row.created_at.clone(),
        latency_p95_ms: row.latency_p95_ms,
        availability_bp: row.availability_bp,
        success_rate_bp: row.success_rate_bp,
    }
}

/// Validates searchServices parameters; a cursor must verify under `key`.
pub fn search_request(
    raw: Option<&str>,
    key: &cursor::CursorKey,
) -> Result<SearchRequest, XrpcError> {
    let p = Params::parse(
        raw,
        &[
            "q",
            "capability",
            "region",
            "maxPrice",
            "currency",
            "pricingModel",
            "maxLatencyMs",
            "minAvailabilityBp",
            "viewer",
            "limit",
            "cursor",
        ],
        &["capability"],
    )?;
    let q = p.string("q", 512)?.map(str::to_owned);
    let caps = p.all("capability");
    if caps.len() > 8 {
        return Err(XrpcError::InvalidRequest(
            "at most 8 'capability' parameters".into(),
        ));
    }
    let mut capabilities = Vec::with_capacity(caps.len());
    for c in caps {
        let c = params::capability(c)?;
        if !capabilities.contains(&c) {
            capabilities.push(c);
        }
    }
    let region = p.string("region", 2)?.map(str::to_owned);
    if let Some(r) = &region {
        guildhall_lexicon::grammar::check_region(r)
            .map_err(|e| XrpcError::InvalidRequest(format!("'region': {e}")))?;
    }
    let currency = p.string("currency", 12)?.map(str::to_owned);
    if let Some(c) = &currency {
        guildhall_lexicon::grammar::check_currency(c)
            .map_err(|e| XrpcError::InvalidRequest(format!("'currency': {e}")))?;
    }
    let max_price_nanos = match p.string("maxPrice", 19)? {
        Some(m) => {
            guildhall_lexicon::grammar::parse_amount(m)
                .map_err(|e| XrpcError::invalid("InvalidPrice", format!("'maxPrice': {e}")))?;
            if currency.is_none() {
                return Err(XrpcError::invalid(
                    "InvalidPrice",
                    "'maxPrice' needs 'currency'",
                ));
            }
            Some(guildhall_store::amount_to_nanos(m).map_err(|_| {
                XrpcError::invalid("InvalidPrice", "'maxPrice' is not a decimal amount")
            })?)
        }
        None => None,
    };
    let pricing_model = p.string("pricingModel", 32)?.map(str::to_owned);
    if let Some(m) = &pricing_model
        && !m.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        return Err(XrpcError::InvalidRequest(
            "'pricingModel' may only hold a-z and '_'".into(),
        ));
    }
    let max_latency_ms = p.int("maxLatencyMs", 0, i64::MAX)?;
    let min_availability_bp = p.int("minAvailabilityBp", 0, 10_000)?;
    let viewer = p.did("viewer")?.map(|d| d.into_string());
    let limit = p.limit(25, 100)?;
    let cursor = p
        .string("cursor", cursor::MAX_CURSOR)?
        .map(|c| SearchCursor::decode(c, key))
        .transpose()?;
    Ok(SearchRequest {
        filters: ServiceQuery {
            q,
            capabilities,
            region,
            max_price_nanos,
            currency,
            pricing_model,
            max_latency_ms,
            min_availability_bp,
            limit: 0,
            after: None,
        },
        viewer,
        limit,
        cursor,
    })
}

/// `dev.guildhall.searchServices`.
pub async fn search_services(State(s): State<AppState>, RawQuery(raw): RawQuery) -> XrpcResult {
    let req = search_request(raw.as_deref(), &s.config.cursor_key)?;
    let page = search::search(&s, &req).await?;
    let services = service_views(&s.store, page.services).await?;
    let mut out = json!({
        "services": to_json(&services)?.0,
        "candidatesOmitted": page.omitted,
    });
    if let Some(c) = page.cursor {
        out["cursor"] = json!(c);
    }
    Ok(Json(out))
}

/// `dev.guildhall.getService`.
pub async fn get_service(State(s): State<AppState>, RawQuery(raw): RawQuery) -> XrpcResult {
    let p = Params::parse(raw.as_deref(), &["uri", "viewer"], &[])?;
    let uri = p.required_at_uri("uri")?;
    let viewer = p.did("viewer")?;
    let row = s
        .store
        .service(uri.as_str())
        .await?
        .ok_or_else(|| XrpcError::NotFound("no such service is indexed".into()))?;
    let ranked = rank_services(
        &s,
        viewer.as_ref().map(|d| d.as_str()),
        vec![candidate(&row)],
    );
    let mut views = hydrate(&s.store, ranked, vec![Some(row.into())]).await?;
    let view = views
        .pop()
        .ok_or_else(|| XrpcError::NotFound("no such service is indexed".into()))?;
    Ok(Json(json!({ "service": to_json(&view)?.0 })))
}

/// `dev.guildhall.getOperator`.
pub async fn get_operator(State(s): State<AppState>, RawQuery(raw): RawQuery) -> XrpcResult {
    let p = Params::parse(raw.as_deref(), &["actor", "viewer"], &[])?;
    let actor = p.required_actor("actor")?;
    let viewer = p.did("viewer")?;
    let row = match &actor {
        AtIdentifier::Did(d) => s.store.operator(d.as_str()).await?,
        AtIdentifier::Handle(h) => s.store.operator_by_handle(h.as_str()).await?,
    }
    .ok_or_else(|| XrpcError::NotFound("the actor is unknown to Guildhall".into()))?;
    let services = s.store.services_of(&row.did).await?;
    let counts = s.store.endorsement_counts(&row.did).await?;
    let candidates: Vec<ServiceCandidate> = services.iter().map(candidate).collect();
    let ranked = rank_services(&s, viewer.as_ref().map(|d| d.as_str()), candidates);
    // Services keep their URI order here: ranking one operator's services against each other
    // would only sort by the same trust value.
    let mut by_uri: BTreeMap<String, RankedService> =
        ranked.into_iter().map(|r| (r.uri.clone(), r)).collect();
    let (ordered, rows): (Vec<RankedService>, Vec<Option<ServiceRecordRow>>) = services
        .into_iter()
        .filter_map(|svc| Some((by_uri.remove(&svc.uri)?, Some(svc.into()))))
        .unzip();
    let views = hydrate(&s.store, ordered, rows).await?;
    Ok(Json(json!({
        "operator": to_json(&OperatorView::from(&row))?.0,
        "services": to_json(&views)?.0,
        "endorsementsGiven": counts.given,
        "endorsementsReceived": counts.received,
    })))
}

/// Whether the index knows `did`: an active operator, or an endorsement author or subject.
async fn known(store: &Store, did: &str) -> Result<bool, XrpcError> {
    if store.operator(did).await?.is_some() {
        return Ok(true);
    }
    let c = store.endorsement_counts(did).await?;
    Ok(c.given + c.received > 0)
}

/// `dev.guildhall.getTrustPath`.
pub async fn get_trust_path(State(s): State<AppState>, RawQuery(raw): RawQuery) -> XrpcResult {
    let p = Params::parse(raw.as_deref(), &["from", "to", "capability"], &[])?;
    let from = p.required_did("from")?;
    let to = p.required_did("to")?;
    let capability = p
        .string("capability", 128)?
        .map(params::capability)
        .transpose()?;
    for d in [&from, &to] {
        if !known(&s.store, d.as_str()).await? {
            return Err(XrpcError::NotFound(format!(
                "{} is not known to the index",
                d.as_str()
            )));
        }
    }
    let path = s.trust.path(
        from.as_str(),
        to.as_str(),
        capability.as_deref(),
        now_us(),
        &s.inner.rank_opts,
    );
    let mut out = json!({"from": from.as_str(), "to": to.as_str(), "found": path.is_some()});
    if let Some(p) = path {
        let mut trust = TrustInfo::from_path(&p);
        resolve_path_cids(&s.store, [&mut trust]).await?;
        out["trust"] = to_json(&trust)?.0;
    }
    Ok(Json(out))
}

/// `dev.guildhall.listEndorsements`.
pub async fn list_endorsements(State(s): State<AppState>, RawQuery(raw): RawQuery) -> XrpcResult {
    let p = Params::parse(
        raw.as_deref(),
        &["subject", "author", "limit", "cursor"],
        &[],
    )?;
    let subject = p.did("subject")?;
    let author = p.did("author")?;
    let limit = p.limit(50, 100)?;
    let cursor = p
        .string("cursor", cursor::MAX_CURSOR)?
        .map(cursor::decode_endorsements)
        .transpose()?;
    let page = match (subject, author) {
        (Some(d), None) => {
            s.store
                .endorsements_of_subject(d.as_str(), cursor, limit)
                .await?
        }
        (None, Some(d)) => {
            s.store
                .endorsements_by_author(d.as_str(), cursor, limit)
                .await?
        }
        _ => {
            return Err(XrpcError::invalid(
                "SubjectOrAuthorRequired",
                "give exactly one of 'subject' and 'author'",
            ));
        }
    };
    let ops = operators(&s.store, page.items.iter().map(|e| e.author.as_str())).await?;
    // Current CIDs of every pinned service on the page, in one batched read.
    let pinned: Vec<&str> = page
        .items
        .iter()
        .filter_map(|e| e.service_uri.as_deref())
        .collect();
    let current: HashMap<&str, String> = pinned
        .iter()
        .copied()
        .zip(s.store.service_records(&pinned).await?)
        .filter_map(|(u, row)| Some((u, row?.cid)))
        .collect();
    let now = now_us();
    let mut views = Vec::with_capacity(page.items.len());
    for e in &page.items {
        let expired = e
            .expires_at
            .as_deref()
            .and_then(|x| guildhall_proto::syntax::Datetime::parse(x).ok())
            .is_some_and(|x| x.unix_micros() <= now);
        let pin_lapsed = match (&e.service_uri, &e.service_cid) {
            (Some(u), Some(c)) => current.get(u.as_str()) != Some(c),
            _ => false,
        };
        views.push(EndorsementView {
            uri: e.uri.clone(),
            cid: e.cid.clone(),
            author: OperatorBasic::from_row(&e.author, ops.get(&e.author)),
            record: endorsement_record(e),
            lapsed: expired || pin_lapsed,
        });
    }
    let mut out = json!({ "endorsements": to_json(&views)?.0 });
    if let Some(c) = page.cursor {
        out["cursor"] = json!(cursor::encode_endorsements(c));
    }
    Ok(Json(out))
}

/// `dev.guildhall.listCapabilities`.
pub async fn list_capabilities(State(s): State<AppState>, RawQuery(raw): RawQuery) -> XrpcResult {
    let p = Params::parse(raw.as_deref(), &["prefix", "limit", "cursor"], &[])?;
    let prefix = p.string("prefix", 128)?.unwrap_or("");
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err(XrpcError::InvalidRequest(
            "'prefix' may only hold a-z, 0-9, '-' and '.'".into(),
        ));
    }
    let limit = p.limit(100, 1000)? as usize;
    let after = p
        .string("cursor", cursor::MAX_CURSOR)?
        .map(cursor::decode_capabilities)
        .transpose()?;
    // One more than the page tells whether another follows; the database pages, so a call
    // costs the page, not every capability.
    let mut rows = s
        .store
        .capabilities_page(prefix, after.as_deref(), limit as u32 + 1)
        .await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let page: Vec<CapabilityCount> = rows
        .into_iter()
        .map(|(id, n)| CapabilityCount {
            id,
            service_count: n,
        })
        .collect();
    let mut out = json!({ "capabilities": to_json(&page)?.0 });
    if more && let Some(last) = page.last() {
        out["cursor"] = json!(cursor::encode_capabilities(&last.id));
    }
    Ok(Json(out))
}

/// `/.well-known/did.json`: the AppView's did:web document, when a hostname is configured.
pub async fn did_document(State(s): State<AppState>) -> XrpcResult {
    let host = s
        .config
        .hostname_for_did_web
        .as_deref()
        .ok_or_else(|| XrpcError::NotFound("no did:web identity is configured".into()))?;
    Ok(Json(json!({
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": did_web(host),
        "service": [{
            "id": "#guildhall_appview",
            "type": "GuildhallAppView",
            "serviceEndpoint": format!("https://{host}"),
        }],
    })))
}

/// The did:web DID of a hostname (a port's colon is percent-encoded, per the method).
pub fn did_web(host: &str) -> String {
    format!("did:web:{}", host.replace(':', "%3A"))
}
