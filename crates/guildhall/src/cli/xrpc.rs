//! A small XRPC client over HTTP: queries, procedures and plain JSON GETs, with errors that name
//! the host and the server's XRPC error name; and the rule for where secrets may travel.

use std::time::Duration;

use serde_json::Value;
use url::{Host, Url};

use super::error::CliError;

/// Longest any one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response read (DID documents, records and search pages are far smaller).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Most redirects a plain document GET follows.
const MAX_REDIRECTS: usize = 5;

/// HTTP client for XRPC servers (PDSes, the AppView, handle resolvers) and plain JSON hosts.
#[derive(Debug, Clone)]
pub struct Xrpc {
    /// XRPC calls: never redirected, so a password or token in a request goes to the host
    /// it was meant for and nowhere else (a 307 would resend the body).
    http: reqwest::Client,
    /// Plain GETs of public documents: a few redirects, never down to http off loopback.
    docs: reqwest::Client,
}

/// Whether the URL's host is this machine by its exact name: `localhost` (not
/// `localhost.evil.com`), 127.0.0.0/8 or `::1`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Invariant: secrets (app passwords, session tokens) go only to https URLs, or to plain http on
/// a loopback host (development PDSes). `Err` says why a URL fails that.
pub fn require_secure(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(format!(
            "{} is plain http on a host that is not loopback: only https is used (or http on \
             localhost, 127.0.0.0/8 or ::1)",
            host_of(url)
        )),
        other => Err(format!("{url}: the {other:?} scheme is not https")),
    }
}

/// `scheme://host:port` of a URL, the part a person needs to know which server failed.
pub fn host_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

fn network_error(url: &Url, e: &reqwest::Error) -> CliError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_decode() {
        "unreadable answer"
    } else {
        "request failed"
    };
    // reqwest's own message is generic; the innermost cause says what actually happened.
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    CliError::Network {
        host: host_of(url),
        message: format!("{kind} ({cause})"),
    }
}

impl Xrpc {
    pub fn new() -> Result<Self, CliError> {
        let builder = || {
            reqwest::Client::builder()
                .timeout(TIMEOUT)
                .connect_timeout(Duration::from_secs(10))
                .user_agent(concat!("guildhall-cli/", env!("CARGO_PKG_VERSION")))
        };
        let docs_policy = reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if let Err(why) = require_secure(attempt.url()) {
                attempt.error(format!("redirected to {why}"))
            } else {
                attempt.follow()
            }
        });
        let fail = |e: reqwest::Error| CliError::Local(format!("cannot set up HTTP: {e}"));
        Ok(Self {
            http: builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(fail)?,
            docs: builder().redirect(docs_policy).build().map_err(fail)?,
        })
    }

    /// Refuses to send a token where it could be read on the way.
    fn guard(base: &Url, token: Option<&str>) -> Result<(), CliError> {
        match token.map(|_| require_secure(base)) {
            Some(Err(why)) => Err(CliError::Insecure(format!(
                "to send your session token: {why}"
            ))),
            _ => Ok(()),
        }
    }

    fn method_url(base: &Url, nsid: &str) -> Result<Url, CliError> {
        let text = format!("{}/xrpc/{nsid}", base.as_str().trim_end_matches('/'));
        Url::parse(&text).map_err(|e| CliError::arg(format!("{base}: not a usable base URL ({e})")))
    }

    /// An XRPC query (GET). Parameters may repeat (arrays).
    pub async fn query(
        &self,
        base: &Url,
        nsid: &str,
        params: &[(&str, String)],
        token: Option<&str>,
    ) -> Result<Value, CliError> {
        Self::guard(base, token)?;
        let url = Self::method_url(base, nsid)?;
        let mut req = self.http.get(url.clone()).query(params);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req, &url, nsid).await
    }

    /// An XRPC procedure (POST) with an optional JSON body.
    pub async fn procedure(
        &self,
        base: &Url,
        nsid: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<Value, CliError> {
        Self::guard(base, token)?;
        let url = Self::method_url(base, nsid)?;
        let mut req = self.http.post(url.clone());
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req, &url, nsid).await
    }

    /// A plain GET of a JSON document (DID documents).
    pub async fn get_json(&self, url: &Url) -> Result<Value, CliError> {
        let text = self.get_text(url).await?;
        serde_json::from_str(&text).map_err(|e| CliError::Network {
            host: host_of(url),
            message: format!("{url} is not JSON ({e})"),
        })
    }

    /// A plain GET of a small text document (`/.well-known/atproto-did`).
    pub async fn get_text(&self, url: &Url) -> Result<String, CliError> {
        let resp = self
            .docs
            .get(url.clone())
            .send()
            .await
            .map_err(|e| network_error(url, &e))?;
        let status = resp.status();
        let body = read_body(resp, url).await?;
        if !status.is_success() {
            return Err(CliError::Network {
                host: host_of(url),
                message: format!("GET {url} answered HTTP {}", status.as_u16()),
            });
        }
        Ok(body)
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &Url,
        nsid: &str,
    ) -> Result<Value, CliError> {
        let resp = req.send().await.map_err(|e| network_error(url, &e))?;
        let status = resp.status();
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let body = read_body(resp, url).await?;
        if status.is_success() {
            if body.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&body).map_err(|e| CliError::Network {
                host: host_of(url),
                message: format!("{nsid} answered with something that is not JSON ({e})"),
            });
        }
        let parsed: Option<Value> = serde_json::from_str(&body).ok();
        let field = |k: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let name = field("error").unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        let message = field("message").unwrap_or_else(|| {
            if let Some(to) = location.filter(|_| status.is_redirection()) {
                format!("redirected to {to} (XRPC calls are not redirected)")
            } else if parsed.is_some() {
                String::new()
            } else {
                body.chars().take(200).collect()
            }
        });
        Err(CliError::Xrpc {
            host: host_of(url),
            method: nsid.to_owned(),
            status: status.as_u16(),
            name,
            message,
        })
    }
}

async fn read_body(mut resp: reqwest::Response, url: &Url) -> Result<String, CliError> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| network_error(url, &e))? {
        if buf.len() + chunk.len() > MAX_BODY {
            return Err(CliError::Network {
                host: host_of(url),
                message: format!("answer larger than {MAX_BODY} bytes"),
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_exact_loopback_hosts() -> Result<(), url::ParseError> {
        for ok in [
            "https://pds.example.com",
            "https://localhost.evil.com",
            "http://localhost:2583",
            "http://LOCALHOST:2583/",
            "http://127.0.0.1:2583",
            "http://127.8.9.10",
            "http://[::1]:2583",
        ] {
            assert_eq!(require_secure(&Url::parse(ok)?), Ok(()), "{ok}");
        }
        for bad in [
            "http://localhost.evil.com",
            "http://localhost.evil.com:2583",
            "http://localhost.",
            "http://evil-localhost",
            "http://127.0.0.1.nip.io",
            "http://pds.example.com",
            "http://10.0.0.1",
            "http://[::ffff:127.0.0.1]",
            "http://[fe80::1]",
            "ftp://localhost",
            "file:///etc/passwd",
        ] {
            assert!(require_secure(&Url::parse(bad)?).is_err(), "{bad}");
        }
        Ok(())
    }
}
