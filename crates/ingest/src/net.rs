//! Outbound network policy: one TLS root store for every client, and the guard that keeps
//! fetches of URLs taken from other people's documents off private networks.
//!
//! Two kinds of URL leave this process. *Configured* ones (the firehose, the PLC directory, a
//! handle resolver, a backfill host) were chosen by whoever runs Guildhall and are fetched as
//! given. *Document* ones (a PDS endpoint or a `did:web` host from a DID document, a handle's
//! `/.well-known/atproto-did`) are chosen by anyone who can publish a DID, so they must not be
//! a way to reach the operator's loopback, LAN or cloud metadata service: their host names are
//! resolved through [`GuardedDns`], literal addresses are checked by [`check_url`], and every
//! redirect hop is checked again. `--allow-private-addresses` lifts the guard for development
//! and tests on loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Why an outbound request was refused before it was sent.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum NetError {
    /// The URL's host is, or resolves only to, an address outside the public internet.
    #[error(
        "refusing to fetch {host}: {reason} (use --allow-private-addresses for local development)"
    )]
    PrivateAddress {
        /// The host as written in the URL.
        host: String,
        /// Which range it fell in.
        reason: String,
    },
    /// The URL cannot be fetched at all (no host, or a scheme other than http/https).
    #[error("refusing to fetch {0}: not an http(s) URL with a host")]
    BadUrl(String),
    /// The host name did not resolve.
    #[error("resolving {host}: {reason}")]
    Dns {
        /// The host looked up.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// Whether URLs from documents may point at non-public addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Development only: let document URLs reach loopback, private and link-local addresses.
    pub allow_private: bool,
}

/// The range a non-public address belongs to, or `None` for a public unicast address.
pub fn non_public_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_range(v4),
        IpAddr::V6(v6) => {
            // An IPv4 address wrapped in IPv6 (mapped, or NAT64's well-known prefix) is the
            // IPv4 address as far as routing goes.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_range(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
                let v4 =
                    Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
                return v4_range(v4);
            }
            v6_range(v6)
        }
    }
}

fn v4_range(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "this network (0.0.0.0/8)",
        (10, _, _) => "private (10.0.0.0/8)",
        (100, 64..=127, _) => "shared address space (100.64.0.0/10)",
        (127, _, _) => "loopback (127.0.0.0/8)",
        (169, 254, _) => "link-local and cloud metadata (169.254.0.0/16)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay anycast (192.88.99.0/24)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, _, _) => "multicast (224.0.0.0/4)",
        (240..=255, _, _) => "reserved or broadcast (240.0.0.0/4)",
        _ => return None,
    })
}

fn v6_range(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    Some(match s[0] {
        // ::/96 (IPv4-compatible, deprecated) and the rest of ::/8.
        0x0000 => "reserved (::/8)",
        0x0100 if s[1..4] == [0; 3] => "discard-only (100::/64)",
        0x2001 if s[1] == 0x0db8 => "documentation (2001:db8::/32)",
        0x2002 => "6to4 (2002::/16)",
        x if x & 0xfe00 == 0xfc00 => "unique local, incl. cloud metadata (fc00::/7)",
        x if x & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        x if x & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        x if x & 0xff00 == 0xff00 => "multicast (ff00::/8)",
        _ => return None,
    })
}

/// Checks a URL taken from a document before it is fetched: http(s), a host, and — unless the
/// policy allows private addresses — no literal non-public address and no `localhost` name.
/// Host names are checked again when they resolve ([`GuardedDns`]).
pub fn check_url(url: &Url, policy: FetchPolicy) -> Result<(), NetError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(NetError::BadUrl(url.to_string()));
    }
    let host = url
        .host()
        .ok_or_else(|| NetError::BadUrl(url.to_string()))?;
    if policy.allow_private {
        return Ok(());
    }
    let refuse = |reason: &str| NetError::PrivateAddress {
        host: host.to_string(),
        reason: reason.to_owned(),
    };
    match host {
        Host::Ipv4(ip) => v4_range(ip).map_or(Ok(()), |r| Err(refuse(r))),
        Host::Ipv6(ip) => non_public_range(IpAddr::V6(ip)).map_or(Ok(()), |r| Err(refuse(r))),
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                Err(refuse("loopback name"))
            } else {
                Ok(())
            }
        }
    }
}

/// A DNS resolver for document URLs: the system's resolver, with every non-public address
/// dropped from the answer, and an error when none is left. Checking after resolution (rather
/// than the name) is what stops a public name that points at 127.0.0.1.
#[derive(Debug, Clone, Copy)]
pub struct GuardedDns;

impl Resolve for GuardedDns {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| NetError::Dns {
                    host: host.clone(),
                    reason: e.to_string(),
                })?;
            let mut refused = None;
            let public: Vec<SocketAddr> = found
                .filter(|a| match non_public_range(a.ip()) {
                    None => true,
                    Some(r) => {
                        refused = Some(r);
                        false
                    }
                })
                .collect();
            if public.is_empty() {
                let reason = refused.unwrap_or("no addresses");
                return Err(Box::new(NetError::PrivateAddress {
                    host,
                    reason: reason.to_owned(),
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// The roots every TLS client here trusts: Mozilla's web PKI set (so a minimal container
/// without a CA bundle still connects), plus the system's store, which `SSL_CERT_FILE` and
/// `SSL_CERT_DIR` replace when set (so a private CA can be added without a rebuild).
pub fn root_store() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::warn!(error = %e, "reading system TLS roots");
            }
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            tracing::debug!(added, ignored, total = roots.len(), "TLS roots loaded");
            Arc::new(roots)
        })
        .clone()
}

fn tls_config(alpn: &[&[u8]]) -> Result<rustls::ClientConfig, NetError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Client(e.to_string()))?
        .with_root_certificates(root_store())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// TLS for WebSocket clients: HTTP/1.1 only, since the upgrade is an HTTP/1.1 exchange.
pub fn websocket_tls() -> Result<Arc<rustls::ClientConfig>, NetError> {
    static WS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if let Some(c) = WS.get() {
        return Ok(c.clone());
    }
    let c = Arc::new(tls_config(&[b"http/1.1"])?);
    Ok(WS.get_or_init(|| c).clone())
}

/// An HTTP client for configured URLs (PLC directory, handle resolver, backfill host).
pub fn configured_client(timeout: Duration) -> Result<reqwest::Client, NetError> {
    base_builder(timeout)?
        .build()
        .map_err(|e| NetError::Client(e.to_string()))
}

/// An HTTP client for URLs from documents: resolved through [`GuardedDns`], each redirect hop
/// checked with [`check_url`] (at most five). Callers still call [`check_url`] on the first
/// URL, since a literal address never reaches a resolver.
pub fn document_client(
    timeout: Duration,
    policy: FetchPolicy,
) -> Result<reqwest::Client, NetError> {
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        match redirect_allowed(attempt.url(), attempt.previous().len(), policy) {
            Ok(()) => attempt.follow(),
            Err(e) => attempt.error(e),
        }
    });
    let builder = base_builder(timeout)?.redirect(redirects);
    let builder = if policy.allow_private {
        builder
    } else {
        builder.dns_resolver(Arc::new(GuardedDns))
    };
    builder.build().map_err(|e| NetError::Client(e.to_string()))
}

/// Most redirects followed for one document fetch.
pub const MAX_REDIRECTS: usize = 5;

/// Whether a redirect to `url`, after `hops` earlier ones, may be followed: the target is
/// checked like a first URL, so a public host cannot bounce us into a private one.
pub fn redirect_allowed(url: &Url, hops: usize, policy: FetchPolicy) -> Result<(), NetError> {
    if hops >= MAX_REDIRECTS {
        return Err(NetError::BadUrl(format!(
            "{url} (more than {MAX_REDIRECTS} redirects)"
        )));
    }
    check_url(url, policy)
}

fn base_builder(timeout: Duration) -> Result<reqwest::ClientBuilder, NetError> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("guildhall/", env!("CARGO_PKG_VERSION")))
        .tls_backend_preconfigured(tls_config(&[b"h2", b"http/1.1"])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> bool {
        check_url(&Url::parse(s).expect("url"), FetchPolicy::default()).is_err()
    }

    #[test]
    fn private_and_special_ranges_are_refused() {
        for url in [
            "http://127.0.0.1/",
            "http://127.8.9.10:2583/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://[::1]/",
            "http://[::]/",
            "http://[fe80::1]/",
            "http://[fd00:ec2::254]/",
            "http://[fc00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::a00:1]/",
            "http://[ff02::1]/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://pds.localhost:2583/",
            "file:///etc/passwd",
            "gopher://example.com/",
        ] {
            assert!(refused(url), "{url} should be refused");
        }
    }

    #[test]
    fn public_addresses_and_names_pass() {
        for url in [
            "https://bsky.social/",
            "https://8.8.8.8/",
            "https://172.32.0.1/",
            "https://100.128.0.1/",
            "https://[2606:4700::1111]/",
            "https://[64:ff9b::808:808]/",
            "https://localhost.evil.com/",
        ] {
            assert!(!refused(url), "{url} should pass");
        }
    }

    #[test]
    fn the_development_flag_lifts_the_guard_but_not_the_scheme_check() {
        let allow = FetchPolicy {
            allow_private: true,
        };
        assert!(check_url(&Url::parse("http://127.0.0.1:2583/").expect("url"), allow).is_ok());
        assert!(check_url(&Url::parse("file:///etc/passwd").expect("url"), allow).is_err());
    }

    #[test]
    fn redirects_are_checked_hop_by_hop() {
        let deny = FetchPolicy::default();
        let url = |s: &str| Url::parse(s).expect("url");
        assert!(redirect_allowed(&url("https://pds.example.com/x"), 0, deny).is_ok());
        assert!(
            redirect_allowed(&url("https://pds.example.com/x"), MAX_REDIRECTS - 1, deny).is_ok()
        );
        assert!(redirect_allowed(&url("https://pds.example.com/x"), MAX_REDIRECTS, deny).is_err());
        for target in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:2583/",
            "http://localhost/",
        ] {
            let err = redirect_allowed(&url(target), 1, deny).expect_err(target);
            assert!(
                matches!(err, NetError::PrivateAddress { .. }),
                "{target}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn the_guarded_resolver_drops_loopback_answers() {
        let err = GuardedDns
            .resolve("localhost".parse().expect("name"))
            .await
            .err()
            .expect("localhost resolves only to loopback");
        assert!(err.to_string().contains("loopback"), "{err}");
    }
}
