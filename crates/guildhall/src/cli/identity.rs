//! Identity resolution for the CLI: handle → DID (an XRPC resolver, or DNS TXT
//! `_atproto.<handle>` then HTTPS well-known), DID → DID document (PLC or did:web), and from the
//! document the account's PDS.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use guildhall_ingest::identity::{dns_resolver, dns_txt_did};
use guildhall_proto::identity::DidDocument;
use guildhall_proto::syntax::{AtIdentifier, Did, Handle};
use serde_json::Value;
use url::Url;

use super::error::CliError;
use super::xrpc::Xrpc;

/// Where identities are resolved.
#[derive(Debug, Clone, Args)]
pub struct IdentityArgs {
    /// The PLC directory that resolves did:plc identities.
    #[arg(long, env = "GUILDHALL_PLC", default_value = "https://plc.directory")]
    pub plc: Url,
    /// An XRPC service answering com.atproto.identity.resolveHandle (any PDS does) used to
    /// turn handles into DIDs; without it, handles are looked up in DNS (TXT
    /// _atproto.<handle>), then at https://<handle>/.well-known/atproto-did.
    #[arg(long = "resolver", env = "GUILDHALL_HANDLE_RESOLVER")]
    pub resolver: Option<Url>,
    /// The DNS server (ip:port) for handle TXT look-ups; default: the system's.
    #[arg(long, env = "GUILDHALL_DNS", value_name = "IP:PORT")]
    pub dns: Option<SocketAddr>,
}

/// How long one DNS look-up may take before HTTPS well-known is tried.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// An account, resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub did: Did,
    /// The handle the DID document claims, when it has a valid one.
    pub handle: Option<String>,
    /// The account's PDS.
    pub pds: Url,
}

/// Parses a DID or a handle given on the command line.
pub fn parse_actor(s: &str) -> Result<AtIdentifier, CliError> {
    let s = s.strip_prefix('@').unwrap_or(s);
    AtIdentifier::parse(s)
        .map_err(|e| CliError::arg(format!("{s:?} is neither a DID nor a handle ({e})")))
}

impl IdentityArgs {
    /// The DID a handle points to.
    pub async fn resolve_handle(&self, xrpc: &Xrpc, handle: &Handle) -> Result<Did, CliError> {
        let id_err = |message: String| CliError::Identity {
            subject: handle.as_str().to_owned(),
            message,
        };
        let text = match &self.resolver {
            Some(base) => {
                let out = xrpc
                    .query(
                        base,
                        "com.atproto.identity.resolveHandle",
                        &[("handle", handle.as_str().to_owned())],
                        None,
                    )
                    .await
                    .map_err(|e| match e {
                        CliError::Xrpc { name, message, .. } => id_err(format!(
                            "{base} could not resolve it ({name}{}{message})",
                            if message.is_empty() { "" } else { ": " }
                        )),
                        other => other,
                    })?;
                out.get("did")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| id_err(format!("{base} answered without a DID")))?
            }
            None => {
                let txt = match dns_resolver(self.dns, DNS_TIMEOUT) {
                    Ok(resolver) => dns_txt_did(&resolver, handle).await,
                    Err(e) => Err(e),
                };
                let dns = match txt {
                    Ok(Some(did)) => return Ok(did),
                    Ok(None) => "DNS has no _atproto TXT record".to_owned(),
                    Err(e) => e,
                };
                let url = Url::parse(&format!(
                    "https://{}/.well-known/atproto-did",
                    handle.as_str()
                ))
                .map_err(|e| id_err(e.to_string()))?;
                xrpc.get_text(&url).await.map_err(|e| {
                    id_err(format!("{dns}, and {e}; or pass --resolver <your PDS URL>"))
                })?
            }
        };
        Did::parse(text.trim()).map_err(|e| id_err(format!("resolved to an invalid DID ({e})")))
    }

    /// The DID document of a did:plc or did:web identity.
    pub async fn did_document(&self, xrpc: &Xrpc, did: &Did) -> Result<DidDocument, CliError> {
        let id_err = |message: String| CliError::Identity {
            subject: did.as_str().to_owned(),
            message,
        };
        let url = match did.method() {
            "plc" => Url::parse(&format!(
                "{}/{}",
                self.plc.as_str().trim_end_matches('/'),
                did.as_str()
            )),
            "web" => {
                let host = did
                    .as_str()
                    .strip_prefix("did:web:")
                    .unwrap_or_default()
                    .replace("%3A", ":");
                // Only `localhost` exactly (a development PDS) gets a port and plain http;
                // `localhost.evil.com` is somebody else's host.
                let name = host.split(':').next().unwrap_or_default();
                let local = name.eq_ignore_ascii_case("localhost");
                if host.contains(':') && !local {
                    return Err(id_err(
                        "did:web with a path or port is not used by atproto".into(),
                    ));
                }
                let scheme = if local { "http" } else { "https" };
                Url::parse(&format!("{scheme}://{host}/.well-known/did.json"))
            }
            other => return Err(id_err(format!("unsupported DID method {other:?}"))),
        }
        .map_err(|e| id_err(e.to_string()))?;
        let raw = xrpc.get_json(&url).await?;
        let bytes = serde_json::to_vec(&raw).map_err(|e| id_err(e.to_string()))?;
        let doc = DidDocument::from_json(&bytes).map_err(|e| id_err(e.to_string()))?;
        if doc.id != *did {
            return Err(id_err(format!(
                "{url} holds the document of {}",
                doc.id.as_str()
            )));
        }
        Ok(doc)
    }

    /// A DID or handle → DID, claimed handle and PDS. A handle must be confirmed by the
    /// document it leads to.
    pub async fn resolve(&self, xrpc: &Xrpc, actor: &AtIdentifier) -> Result<Resolved, CliError> {
        let (did, asked_handle) = match actor {
            AtIdentifier::Did(d) => (d.clone(), None),
            AtIdentifier::Handle(h) => (self.resolve_handle(xrpc, h).await?, Some(h)),
        };
        let doc = self.did_document(xrpc, &did).await?;
        let handle = doc.handle().map(|h| h.as_str().to_ascii_lowercase());
        if let Some(asked) = asked_handle
            && handle.as_deref() != Some(asked.as_str().to_ascii_lowercase().as_str())
        {
            return Err(CliError::Identity {
                subject: asked.as_str().to_owned(),
                message: format!(
                    "it points to {}, whose DID document claims {} instead",
                    did.as_str(),
                    handle.as_deref().unwrap_or("no handle")
                ),
            });
        }
        let pds = doc
            .pds_endpoint()
            .ok_or_else(|| CliError::Identity {
                subject: did.as_str().to_owned(),
                message: "its DID document names no PDS (#atproto_pds)".into(),
            })
            .and_then(|p| {
                Url::parse(p).map_err(|e| CliError::Identity {
                    subject: did.as_str().to_owned(),
                    message: format!("its PDS endpoint {p:?} is not a URL ({e})"),
                })
            })?;
        // Checked here, before any password or token can be sent to it.
        super::xrpc::require_secure(&pds).map_err(|why| CliError::Identity {
            subject: did.as_str().to_owned(),
            message: format!(
                "its DID document names a PDS that cannot be trusted with a password: {why}"
            ),
        })?;
        Ok(Resolved { did, handle, pds })
    }
}
