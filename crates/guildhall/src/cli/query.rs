//! `search` and `show`: ask a Guildhall AppView and print tables with the trust path, or the
//! answer's JSON as is.

use guildhall_lexicon::SERVICE_NSID;
use guildhall_proto::syntax::{AtIdentifier, AtUri};
use serde_json::Value;

use super::error::CliError;
use super::identity::parse_actor;
use super::output::{Table, clip, percent_ppm, say, say_json};
use super::session;
use super::xrpc::Xrpc;
use super::{AppViewArgs, SearchArgs, ShowArgs};

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn strings(v: &Value, pointer: &str) -> Vec<String> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The viewer DID: `--as` (a handle is resolved), else the logged-in account, else none.
async fn viewer(args: &AppViewArgs, xrpc: &Xrpc) -> Result<Option<String>, CliError> {
    match &args.viewer {
        Some(v) => match parse_actor(v)? {
            AtIdentifier::Did(d) => Ok(Some(d.as_str().to_owned())),
            h @ AtIdentifier::Handle(_) => Ok(Some(
                args.identity
                    .resolve(xrpc, &h)
                    .await?
                    .did
                    .as_str()
                    .to_owned(),
            )),
        },
        None => Ok(session::load().ok().flatten().map(|s| s.did)),
    }
}

/// An operator as people read it: handle if known, else DID.
fn who(op: &Value) -> String {
    let handle = s(op, "/handle");
    if handle.is_empty() {
        s(op, "/did").to_owned()
    } else {
        handle.to_owned()
    }
}

/// One line per price point, e.g. `0.002 USD/call`.
fn prices(record: &Value) -> String {
    let Some(list) = record.get("pricing").and_then(Value::as_array) else {
        return "-".into();
    };
    if list.is_empty() {
        return "-".into();
    }
    list.iter()
        .map(|p| {
            let model = s(p, "/model");
            if model == "free" {
                return "free".to_owned();
            }
            let mut out = format!("{} {}", s(p, "/amount"), s(p, "/currency"));
            let per = [s(p, "/unit"), s(p, "/period")]
                .into_iter()
                .find(|x| !x.is_empty())
                .unwrap_or(model);
            out.push('/');
            out.push_str(per);
            out
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The trust column: hops and score, or why there is none.
fn trust_cell(service: &Value) -> String {
    let Some(t) = service.get("trust") else {
        return "-".into();
    };
    let score = t.get("score").and_then(Value::as_i64).unwrap_or(0);
    let basis = s(t, "/basis");
    match t.get("distance").and_then(Value::as_i64) {
        Some(0) => "you".into(),
        Some(d) => format!(
            "{d} hop{} {}{}",
            if d == 1 { "" } else { "s" },
            percent_ppm(score),
            if basis == "fallback" {
                " (anchors)"
            } else {
                ""
            }
        ),
        None => format!("no path ({})", if basis.is_empty() { "-" } else { basis }),
    }
}

/// The trust path, one endorsement per line: `did → did  via at://…`.
fn trust_path_lines(service: &Value, indent: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Some(path) = service.pointer("/trust/path").and_then(Value::as_array) else {
        return out;
    };
    for edge in path {
        let caps = strings(edge, "/capabilities");
        out.push(format!(
            "{indent}{} → {}  via {}{}",
            s(edge, "/from"),
            s(edge, "/to"),
            s(edge, "/uri"),
            if caps.is_empty() {
                String::new()
            } else {
                format!(" [{}]", caps.join(", "))
            }
        ));
    }
    if let Some(v) = service.pointer("/trust/vouchers") {
        let count = v.get("count").and_then(Value::as_i64).unwrap_or(0);
        if count > 0 {
            out.push(format!(
                "{indent}vouched for by {count} operator{} you reach: {}",
                if count == 1 { "" } else { "s" },
                strings(v, "/sample").join(", ")
            ));
        }
    }
    out
}

fn services_table(services: &[Value]) -> Table {
    let mut t = Table::new(&[
        "#",
        "NAME",
        "OPERATOR",
        "CAPABILITIES",
        "PRICE",
        "TRUST",
        "URI",
    ]);
    for (i, sv) in services.iter().enumerate() {
        t.row(vec![
            (i + 1).to_string(),
            clip(s(sv, "/record/name"), 40),
            clip(&who(sv.get("operator").unwrap_or(&Value::Null)), 40),
            clip(&strings(sv, "/record/capabilities").join(","), 40),
            clip(&prices(sv.get("record").unwrap_or(&Value::Null)), 32),
            trust_cell(sv),
            s(sv, "/uri").to_owned(),
        ]);
    }
    t
}

fn print_trust_paths(services: &[Value]) {
    let mut header = false;
    for (i, sv) in services.iter().enumerate() {
        let lines = trust_path_lines(sv, "    ");
        if lines.is_empty() {
            continue;
        }
        if !header {
            say("");
            say("Trust paths:");
            header = true;
        }
        say(format!("  #{} {}", i + 1, s(sv, "/record/name")));
        for l in lines {
            say(l);
        }
    }
}

pub async fn search(args: SearchArgs) -> Result<(), CliError> {
    let xrpc = Xrpc::new()?;
    let mut params: Vec<(&str, String)> = Vec::new();
    let text = args.text.join(" ");
    if !text.trim().is_empty() {
        params.push(("q", text));
    }
    for c in &args.capabilities {
        params.push(("capability", c.clone()));
    }
    if let Some(r) = &args.region {
        params.push(("region", r.clone()));
    }
    if let Some(p) = &args.max_price {
        params.push(("maxPrice", p.clone()));
    }
    if let Some(c) = &args.currency {
        params.push(("currency", c.clone()));
    }
    params.push(("limit", args.limit.to_string()));
    let viewer = viewer(&args.appview, &xrpc).await?;
    if let Some(v) = &viewer {
        params.push(("viewer", v.clone()));
    }
    let out = xrpc
        .query(
            &args.appview.appview,
            "dev.guildhall.searchServices",
            &params,
            None,
        )
        .await
        .map_err(query_error)?;
    if args.appview.json {
        return say_json(&out);
    }
    let services = out
        .get("services")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if services.is_empty() {
        say("No services found.");
        return Ok(());
    }
    services_table(&services).print();
    print_trust_paths(&services);
    if let Some(v) = &viewer {
        say("");
        say(format!("Ranked by trust from {v}."));
    }
    Ok(())
}

/// The AppView's input errors (bad capability, price…) are the user's to fix.
fn query_error(e: CliError) -> CliError {
    match &e {
        CliError::Xrpc {
            status: 400,
            name,
            message,
            ..
        } if name != "InvalidCursor" => CliError::arg(format!(
            "the AppView rejected the query: {name}{}{message}",
            if message.is_empty() { "" } else { ": " }
        )),
        _ => e,
    }
}

pub async fn show(args: ShowArgs) -> Result<(), CliError> {
    let xrpc = Xrpc::new()?;
    let viewer = viewer(&args.appview, &xrpc).await?;
    let mut params: Vec<(&str, String)> = Vec::new();
    if let Some(v) = &viewer {
        params.push(("viewer", v.clone()));
    }
    let base = &args.appview.appview;
    if args.target.starts_with("at://") {
        let uri = AtUri::parse(&args.target)
            .map_err(|e| CliError::arg(format!("{:?}: {e}", args.target)))?;
        if uri.collection().is_none_or(|c| c.as_str() != SERVICE_NSID) || uri.rkey().is_none() {
            return Err(CliError::arg(format!(
                "{}: show takes a service URI (at://<did>/{SERVICE_NSID}/<slug>), a DID or a handle",
                uri.as_str()
            )));
        }
        // The index keys services by DID: a handle in the URI is resolved first.
        let did = match uri.authority() {
            AtIdentifier::Did(d) => d.as_str().to_owned(),
            h @ AtIdentifier::Handle(_) => args
                .appview
                .identity
                .resolve(&xrpc, h)
                .await?
                .did
                .as_str()
                .to_owned(),
        };
        let rkey = uri
            .rkey()
            .map(|r| r.as_str().to_owned())
            .unwrap_or_default();
        params.push(("uri", format!("at://{did}/{SERVICE_NSID}/{rkey}")));
        let out = xrpc
            .query(base, "dev.guildhall.getService", &params, None)
            .await
            .map_err(|e| not_found(e, &args.target))
            .map_err(query_error)?;
        if args.appview.json {
            return say_json(&out);
        }
        print_service(out.get("service").unwrap_or(&Value::Null));
    } else {
        let actor = parse_actor(&args.target)?;
        params.push(("actor", actor.as_str().to_owned()));
        let out = xrpc
            .query(base, "dev.guildhall.getOperator", &params, None)
            .await
            .map_err(|e| not_found(e, &args.target))
            .map_err(query_error)?;
        if args.appview.json {
            return say_json(&out);
        }
        print_operator(&out);
    }
    Ok(())
}

fn not_found(e: CliError, target: &str) -> CliError {
    match e.xrpc_name() {
        Some("NotFound") => CliError::NotFound(format!(
            "the AppView does not know {target} (not published, or not indexed yet)"
        )),
        _ => e,
    }
}

fn field(label: &str, value: impl AsRef<str>) {
    let v = value.as_ref();
    if !v.is_empty() {
        say(format!("{label:<14}{v}"));
    }
}

fn print_service(sv: &Value) {
    let r = sv.get("record").unwrap_or(&Value::Null);
    say(s(r, "/name"));
    field("uri", s(sv, "/uri"));
    field("cid", s(sv, "/cid"));
    let op = sv.get("operator").unwrap_or(&Value::Null);
    field("operator", format!("{} ({})", who(op), s(op, "/did")));
    field("description", s(r, "/description"));
    field("capabilities", strings(r, "/capabilities").join(", "));
    field("price", prices(r));
    field("regions", strings(r, "/regions").join(", "));
    field("tags", strings(r, "/tags").join(", "));
    field("version", s(r, "/version"));
    if let Some(sla) = r.get("sla").and_then(Value::as_object) {
        let parts: Vec<String> = sla.iter().map(|(k, v)| format!("{k}={v}")).collect();
        field("sla", parts.join(" "));
    }
    field("created", s(r, "/createdAt"));
    field("indexed", s(sv, "/indexedAt"));
    field("trust", trust_cell(sv));
    for l in trust_path_lines(sv, "  ") {
        say(l);
    }

    if let Some(eps) = r.get("endpoints").and_then(Value::as_array) {
        say("");
        let mut t = Table::new(&["PROTOCOL", "URL", "TRANSPORT"]);
        for e in eps {
            t.row(vec![
                s(e, "/protocol").into(),
                s(e, "/url").into(),
                s(e, "/transport").into(),
            ]);
        }
        t.print();
    }
    if let Some(ops) = r.get("operations").and_then(Value::as_array)
        && !ops.is_empty()
    {
        say("");
        let mut t = Table::new(&["OPERATION", "DESCRIPTION"]);
        for o in ops {
            t.row(vec![s(o, "/id").into(), clip(s(o, "/description"), 60)]);
        }
        t.print();
    }
}

fn print_operator(out: &Value) {
    let op = out.get("operator").unwrap_or(&Value::Null);
    let name = s(op, "/displayName");
    say(if name.is_empty() {
        who(op)
    } else {
        name.to_owned()
    });
    field("did", s(op, "/did"));
    field("handle", s(op, "/handle"));
    field("description", s(op, "/description"));
    field("website", s(op, "/website"));
    field("contact", s(op, "/contact"));
    let count = |k: &str| out.get(k).and_then(Value::as_i64).unwrap_or(0).to_string();
    field(
        "endorsements",
        format!(
            "{} received, {} given",
            count("endorsementsReceived"),
            count("endorsementsGiven")
        ),
    );
    let services = out
        .get("services")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    say("");
    if services.is_empty() {
        say("No services published.");
        return;
    }
    services_table(&services).print();
    print_trust_paths(&services);
}
