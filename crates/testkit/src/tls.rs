//! A loopback TLS terminator for tests: a throwaway CA made by the test, a certificate for
//! `localhost` and `127.0.0.1` signed by it, and a proxy that unwraps TLS and forwards the
//! bytes to a plain upstream (the reference PDS or PLC), so `wss://` and `https://` clients
//! can be tested against the real servers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A test certificate authority: its PEM, written to a file a client can be pointed at
/// (`SSL_CERT_FILE`), and the key that signs server certificates.
pub struct TestCa {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, KeyPair>,
    pem_path: PathBuf,
    _dir: tempfile_dir::Dir,
}

impl TestCa {
    /// A new CA whose PEM is written under a fresh temporary directory.
    pub fn new(name: &str) -> Result<TestCa> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        let dir = tempfile_dir::Dir::new(name)?;
        let pem_path = dir.path().join("ca.pem");
        std::fs::write(&pem_path, cert.pem()).context("writing the test CA")?;
        Ok(TestCa {
            cert,
            issuer: rcgen::Issuer::new(params, key),
            pem_path,
            _dir: dir,
        })
    }

    /// Where the CA's PEM is.
    pub fn pem_path(&self) -> &Path {
        &self.pem_path
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> &[u8] {
        self.cert.der()
    }

    /// A server configuration for `localhost` and `127.0.0.1`, signed by this CA.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf = params.signed_by(&key, &self.issuer)?;
        let chain = vec![leaf.der().clone(), self.cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        Ok(Arc::new(config))
    }
}

/// A TLS terminator on a free loopback port, forwarding every connection to `upstream`.
/// Dropping it stops accepting.
pub struct TlsProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TlsProxy {
    /// Listens on `127.0.0.1:0` with `config`, forwarding decrypted bytes to `upstream`.
    pub async fn start(
        config: Arc<rustls::ServerConfig>,
        upstream: SocketAddr,
    ) -> Result<TlsProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses our certificate ends here; that is the point of
                    // some tests, not an error of the proxy.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut plain) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Ok(TlsProxy { addr, task })
    }

    /// `scheme://localhost:<port>` + `path_and_query` of `plain_url` (whose host and port
    /// are replaced by this proxy's).
    pub fn url_for(&self, scheme: &str, plain_url: &str) -> Result<String> {
        let mut url = url_parts(plain_url)?;
        url.0 = format!("{scheme}://localhost:{}", self.addr.port());
        Ok(format!("{}{}", url.0, url.1))
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// (`scheme://host:port`, the rest) of a URL.
fn url_parts(url: &str) -> Result<(String, String)> {
    let after_scheme = url.find("://").context("URL without scheme")? + 3;
    let rest_at = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    Ok((url[..rest_at].to_owned(), url[rest_at..].to_owned()))
}

/// The socket address of a plain `http://` or `ws://` URL on loopback.
pub fn upstream_of(url: &str) -> Result<SocketAddr> {
    let (origin, _) = url_parts(url)?;
    let hostport = origin.split("://").nth(1).context("URL without host")?;
    let hostport = hostport.replace("localhost", "127.0.0.1");
    hostport
        .parse()
        .with_context(|| format!("{url} is not a loopback ip:port URL"))
}

mod tempfile_dir {
    //! A directory removed on drop (the testkit has no tempfile dependency of its own).
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(name: &str) -> std::io::Result<Dir> {
            let path = std::env::temp_dir().join(crate::db::unique(&format!("gh_tls_{name}")));
            std::fs::create_dir_all(&path)?;
            Ok(Dir(path))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
