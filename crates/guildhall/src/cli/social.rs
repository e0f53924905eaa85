//! The writing commands: `init`, `publish`, `endorse`, `revoke` and `profile set`. Every
//! record is checked against its lexicon before anything is sent.

use guildhall_lexicon::{Catalog, ENDORSEMENT_NSID, OPERATOR_NSID, SERVICE_NSID};
use guildhall_proto::syntax::{AtIdentifier, AtUri, Datetime};
use serde_json::{Map, Value, json};

use super::error::CliError;
use super::identity::parse_actor;
use super::manifest;
use super::output::{
    Table, format_datetime, now_datetime, parse_duration, say, say_json, say_json_line, warn,
};
use super::session::Authed;
use super::xrpc::Xrpc;
use super::{EndorseArgs, EndorsementsArgs, InitArgs, ProfileSetArgs, PublishArgs, RevokeArgs};

fn catalog() -> Result<&'static Catalog, CliError> {
    Ok(Catalog::guildhall()?)
}

/// Checks a record against its lexicon; every problem is reported.
fn validate(nsid: &str, record: &Value, what: &str) -> Result<(), CliError> {
    catalog()?
        .validate_record_json(nsid, record)
        .map_err(|issues| CliError::InvalidRecord {
            what: what.to_owned(),
            issues,
        })
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Prints what a write returned: the record's at:// URI and CID.
fn print_written(verb: &str, out: &Value, as_json: bool) {
    if as_json {
        say_json_line(&json!({ "action": verb, "uri": out.get("uri"), "cid": out.get("cid") }));
        return;
    }
    say(format!(
        "{verb} {}",
        str_field(out, "uri").unwrap_or_else(|| "(no uri returned)".into())
    ));
    say(format!(
        "cid: {}",
        str_field(out, "cid").unwrap_or_else(|| "(none returned)".into())
    ));
}

pub fn init(args: &InitArgs) -> Result<(), CliError> {
    if args.path.exists() && !args.force {
        return Err(CliError::arg(format!(
            "{} exists; pass --force to overwrite it or give another path",
            args.path.display()
        )));
    }
    std::fs::write(&args.path, manifest::EXAMPLE).map_err(|source| CliError::Io {
        path: args.path.clone(),
        source,
    })?;
    say(format!("Wrote {}", args.path.display()));
    say(format!(
        "Edit it, then: guildhall publish {}",
        args.path.display()
    ));
    Ok(())
}

pub async fn publish(args: &PublishArgs) -> Result<(), CliError> {
    let value = manifest::read(&args.manifest)?;
    let what = args.manifest.display().to_string();
    for w in manifest::unknown_field_warnings(&value) {
        warn(format!("warning: {w}"));
    }
    let mut m = manifest::check(value, &now_datetime(), &what)?;
    if args.dry_run && args.json {
        say_json_line(&json!({ "action": "valid", "collection": SERVICE_NSID, "rkey": m.slug }));
        return Ok(());
    }
    if args.dry_run {
        say(format!(
            "{what} is valid: it would be published as {SERVICE_NSID}/{} (dry run, nothing written)",
            m.slug
        ));
        return Ok(());
    }
    let xrpc = Xrpc::new()?;
    let mut authed = Authed::open(&xrpc).await?;
    let existing = authed.get_own_record(SERVICE_NSID, &m.slug).await?;
    // An update keeps the listing's original creation time unless the manifest sets one.
    if !m.has_created_at
        && let Some(created) = existing
            .as_ref()
            .and_then(|e| e.pointer("/value/createdAt"))
            .and_then(Value::as_str)
            .filter(|c| Datetime::parse(c).is_ok())
    {
        m.record
            .insert("createdAt".into(), Value::String(created.to_owned()));
    }
    if let Some(e) = &existing
        && e.get("value") == Some(&Value::Object(m.record.clone()))
    {
        print_written("unchanged", e, args.json);
        return Ok(());
    }
    let body = json!({
        "repo": authed.did(),
        "collection": SERVICE_NSID,
        "rkey": m.slug,
        "record": Value::Object(m.record),
    });
    let out = authed
        .procedure("com.atproto.repo.putRecord", &body)
        .await?;
    print_written(
        if existing.is_some() {
            "updated"
        } else {
            "published"
        },
        &out,
        args.json,
    );
    Ok(())
}

/// `--expires`: a datetime, or a duration from now.
fn expires_at(s: &str) -> Result<String, CliError> {
    if let Ok(d) = Datetime::parse(s) {
        return Ok(d.as_str().to_owned());
    }
    parse_duration(s)
        .map(|d| format_datetime(time::OffsetDateTime::now_utc() + d))
        .ok_or_else(|| {
            CliError::arg(format!(
                "--expires {s:?}: give a datetime (2027-01-01T00:00:00Z) or a duration such as \
                 90d, 12h or 2w"
            ))
        })
}

pub async fn endorse(args: EndorseArgs) -> Result<(), CliError> {
    let subject = parse_actor(&args.subject)?;
    let service_uri = args
        .service
        .as_deref()
        .map(|s| AtUri::parse(s).map_err(|e| CliError::arg(format!("--service {s:?}: {e}"))))
        .transpose()?;
    let expires = args.expires.as_deref().map(expires_at).transpose()?;

    let xrpc = Xrpc::new()?;
    let mut authed = Authed::open(&xrpc).await?;
    // The subject's PDS is needed only to pin a service; a DID alone needs no look-up.
    let (subject_did, subject_pds) = match (&subject, &service_uri) {
        (AtIdentifier::Did(d), None) => (d.as_str().to_owned(), None),
        _ => {
            let r = args.identity.resolve(&xrpc, &subject).await?;
            (r.did.as_str().to_owned(), Some(r.pds))
        }
    };
    if subject_did == authed.did() {
        return Err(CliError::arg(
            "you cannot endorse yourself: endorsements are what others say about you",
        ));
    }

    let mut record = Map::new();
    record.insert("$type".into(), ENDORSEMENT_NSID.into());
    record.insert("subject".into(), subject_did.clone().into());
    if !args.capabilities.is_empty() {
        record.insert("capabilities".into(), json!(args.capabilities));
    }
    if let Some(n) = args.strength {
        record.insert("strength".into(), n.into());
    }
    if let Some(c) = &args.comment {
        record.insert("comment".into(), c.clone().into());
    }
    record.insert("createdAt".into(), now_datetime().into());
    if let Some(e) = expires {
        record.insert("expiresAt".into(), e.into());
    }
    // Check what we have before any more network traffic.
    validate(
        ENDORSEMENT_NSID,
        &Value::Object(record.clone()),
        "the endorsement",
    )?;

    if let (Some(uri), Some(pds)) = (service_uri, subject_pds) {
        let collection = uri.collection().map(|c| c.as_str().to_owned());
        let rkey = uri.rkey().map(|r| r.as_str().to_owned());
        let (Some(collection), Some(rkey)) = (collection, rkey) else {
            return Err(CliError::arg(format!(
                "--service {}: name a record, at://<did>/{SERVICE_NSID}/<slug>",
                uri.as_str()
            )));
        };
        // A handle in the URI is resolved; it must be the subject.
        let authority = match uri.authority() {
            AtIdentifier::Did(d) => d.as_str().to_owned(),
            handle @ AtIdentifier::Handle(_) => args
                .identity
                .resolve(&xrpc, handle)
                .await?
                .did
                .as_str()
                .to_owned(),
        };
        if authority != subject_did {
            return Err(CliError::arg(format!(
                "--service {} belongs to {authority}, not to the operator you endorse ({subject_did})",
                uri.as_str()
            )));
        }
        let params = [
            ("repo", subject_did.clone()),
            ("collection", collection.clone()),
            ("rkey", rkey.clone()),
        ];
        let found = xrpc
            .query(&pds, "com.atproto.repo.getRecord", &params, None)
            .await
            .map_err(|e| match e.xrpc_name() {
                Some("RecordNotFound") => CliError::NotFound(format!(
                    "--service: {pds} has no record at://{subject_did}/{collection}/{rkey}"
                )),
                _ => e,
            })?;
        let cid = str_field(&found, "cid").ok_or_else(|| CliError::UnexpectedAnswer {
            host: pds.to_string(),
            message: "getRecord gave no CID".into(),
        })?;
        record.insert(
            "service".into(),
            json!({ "uri": format!("at://{subject_did}/{collection}/{rkey}"), "cid": cid }),
        );
        validate(
            ENDORSEMENT_NSID,
            &Value::Object(record.clone()),
            "the endorsement",
        )?;
    }

    let body = json!({
        "repo": authed.did(),
        "collection": ENDORSEMENT_NSID,
        "record": Value::Object(record),
    });
    let out = authed
        .procedure("com.atproto.repo.createRecord", &body)
        .await?;
    print_written("endorsed", &out, args.json);
    Ok(())
}

pub async fn revoke(args: &RevokeArgs) -> Result<(), CliError> {
    let uri = AtUri::parse(&args.uri)
        .map_err(|e| CliError::arg(format!("{:?} is not an at:// URI ({e})", args.uri)))?;
    let (Some(collection), Some(rkey)) = (uri.collection(), uri.rkey()) else {
        return Err(CliError::arg(format!(
            "{}: name one endorsement, at://<your did>/{ENDORSEMENT_NSID}/<key>",
            uri.as_str()
        )));
    };
    if collection.as_str() != ENDORSEMENT_NSID {
        return Err(CliError::arg(format!(
            "{} is a {} record; revoke deletes endorsements ({ENDORSEMENT_NSID})",
            uri.as_str(),
            collection.as_str()
        )));
    }
    let xrpc = Xrpc::new()?;
    let mut authed = Authed::open(&xrpc).await?;
    let mine = match uri.authority() {
        AtIdentifier::Did(d) => d.as_str() == authed.did(),
        AtIdentifier::Handle(h) => authed
            .session()
            .handle
            .as_deref()
            .is_some_and(|mine| mine.eq_ignore_ascii_case(h.as_str())),
    };
    if !mine {
        return Err(CliError::arg(format!(
            "{} is not yours: you can only revoke endorsements you made ({})",
            uri.as_str(),
            authed.did()
        )));
    }
    if authed
        .get_own_record(ENDORSEMENT_NSID, rkey.as_str())
        .await?
        .is_none()
    {
        return Err(CliError::NotFound(format!(
            "there is no endorsement at {} (already revoked?)",
            uri.as_str()
        )));
    }
    let body = json!({
        "repo": authed.did(),
        "collection": ENDORSEMENT_NSID,
        "rkey": rkey.as_str(),
    });
    authed
        .procedure("com.atproto.repo.deleteRecord", &body)
        .await?;
    say(format!(
        "revoked at://{}/{ENDORSEMENT_NSID}/{}",
        authed.did(),
        rkey.as_str()
    ));
    Ok(())
}

/// Most pages of listRecords read (100 records each) before stopping.
const MAX_PAGES: usize = 100;

pub async fn endorsements(args: &EndorsementsArgs) -> Result<(), CliError> {
    let xrpc = Xrpc::new()?;
    let mut authed = Authed::open(&xrpc).await?;
    let mut records = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut params = vec![
            ("repo", authed.did().to_owned()),
            ("collection", ENDORSEMENT_NSID.to_owned()),
            ("limit", "100".to_owned()),
        ];
        if let Some(c) = &cursor {
            params.push(("cursor", c.clone()));
        }
        let page = authed
            .query("com.atproto.repo.listRecords", &params)
            .await?;
        let batch = page
            .get("records")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let done = batch.is_empty();
        records.extend(batch);
        cursor = str_field(&page, "cursor");
        if done || cursor.is_none() {
            break;
        }
    }
    if args.json {
        return say_json(&Value::Array(records));
    }
    if records.is_empty() {
        say("You have made no endorsements.");
        return Ok(());
    }
    let mut t = Table::new(&[
        "SUBJECT",
        "CAPABILITIES",
        "STRENGTH",
        "EXPIRES",
        "PINNED SERVICE",
        "URI",
    ]);
    for r in &records {
        let v = r.get("value").unwrap_or(&Value::Null);
        let text = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let caps: Vec<&str> = v
            .get("capabilities")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        t.row(vec![
            text("/subject"),
            if caps.is_empty() {
                "(all)".into()
            } else {
                caps.join(",")
            },
            v.get("strength")
                .and_then(Value::as_i64)
                .map_or_else(|| "50".into(), |n| n.to_string()),
            text("/expiresAt"),
            text("/service/uri"),
            str_field(r, "uri").unwrap_or_default(),
        ]);
    }
    t.print();
    Ok(())
}

pub async fn profile_set(args: ProfileSetArgs) -> Result<(), CliError> {
    let json_out = args.json;
    let given = [
        ("displayName", args.display_name),
        ("website", args.website),
        ("description", args.description),
        ("contact", args.contact),
    ];
    if given.iter().all(|(_, v)| v.is_none()) {
        return Err(CliError::arg(
            "nothing to set: give --display-name, --website, --description or --contact",
        ));
    }
    let xrpc = Xrpc::new()?;
    let mut authed = Authed::open(&xrpc).await?;
    let existing = authed.get_own_record(OPERATOR_NSID, "self").await?;
    let mut record = existing
        .as_ref()
        .and_then(|e| e.get("value"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (key, value) in given {
        if let Some(v) = value {
            record.insert(key.into(), v.into());
        }
    }
    record.insert("$type".into(), OPERATOR_NSID.into());
    if record
        .get("createdAt")
        .and_then(Value::as_str)
        .is_none_or(|c| Datetime::parse(c).is_err())
    {
        record.insert("createdAt".into(), now_datetime().into());
    }
    let record = Value::Object(record);
    validate(OPERATOR_NSID, &record, "the profile")?;
    let body = json!({
        "repo": authed.did(),
        "collection": OPERATOR_NSID,
        "rkey": "self",
        "record": record,
    });
    let out = authed
        .procedure("com.atproto.repo.putRecord", &body)
        .await?;
    print_written(
        if existing.is_some() {
            "updated"
        } else {
            "created"
        },
        &out,
        json_out,
    );
    Ok(())
}
