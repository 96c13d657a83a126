//! TLS configuration with rustls: the client side (`[tls]`, optionally
//! mutual with `client_ca_file`) and the side towards Redis (`rediss://`
//! with `[backend_tls]`). Certificates and keys are read from PEM files;
//! error messages name the file and what is wrong with it, never its
//! contents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// `[tls]` as validated: where the files are.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    /// Certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Private key (PEM).
    pub key_file: PathBuf,
    /// CA whose certificates clients must present (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
}

/// The client-side acceptor (a newtype for `Debug`).
#[derive(Clone)]
pub struct Acceptor(pub tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acceptor")
    }
}

/// How backend connections speak TLS. Clones share the certificates, which
/// a reload replaces ([`BackendTls::reload_from`]) for every connection
/// opened after it.
#[derive(Clone)]
pub struct BackendTls {
    /// The rustls client configuration now; watched by the topology
    /// followers, whose clients are rebuilt when it changes.
    connector: Arc<tokio::sync::watch::Sender<tokio_rustls::TlsConnector>>,
    /// The name the Redis certificate must carry.
    pub server_name: ServerName<'static>,
    /// The name was configured (`backend_tls.server_name`), not taken from
    /// the URL's host: cluster nodes are checked against it too.
    pub named: bool,
}

impl BackendTls {
    /// The client configuration to open a connection with now.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        self.connector.borrow().clone()
    }

    /// Take `next`'s certificates (a reloaded configuration's) for every
    /// connection opened from now on; open connections keep theirs.
    pub fn reload_from(&self, next: &BackendTls) {
        self.connector.send_replace(next.connector());
    }

    /// Told when a reload replaced the certificates.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<tokio_rustls::TlsConnector> {
        self.connector.subscribe()
    }
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackendTls({:?})", self.server_name)
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificates from {}: {}", path.display(), pem_error(&e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid certificate in {}: {}", path.display(), pem_error(&e)))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a private key from {}: {}", path.display(), pem_error(&e)))
}

/// The kind of PEM problem, without any of the file's bytes.
fn pem_error(e: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(_) => "not readable",
        E::NoItemsFound => "no PEM item of the expected kind",
        _ => "not valid PEM",
    }
}

fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in certs(path)? {
        roots.add(c).map_err(|e| format!("unusable CA certificate in {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The acceptor for client connections.
///
/// # Errors
/// A file that cannot be read or does not hold what it should.
pub fn acceptor(files: &ServerFiles) -> Result<Acceptor, String> {
    let chain = certs(&files.cert_file)?;
    let key = key(&files.key_file)?;
    let builder = ServerConfig::builder();
    let builder = match &files.client_ca_file {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots(ca)?))
                .build()
                .map_err(|e| format!("client_ca_file {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("cert_file and key_file do not make a usable pair: {e}"))?;
    Ok(Acceptor(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

/// The connector for `rediss://`.
///
/// # Errors
/// A file that cannot be read or does not hold what it should, or an
/// invalid server name.
pub fn connector(
    ca_file: &Path,
    client: Option<(&Path, &Path)>,
    server_name: &str,
    named: bool,
) -> Result<BackendTls, String> {
    let builder = ClientConfig::builder().with_root_certificates(roots(ca_file)?);
    let config = match client {
        Some((cert, key_file)) => builder
            .with_client_auth_cert(certs(cert)?, key(key_file)?)
            .map_err(|e| format!("backend_tls cert_file and key_file do not make a usable pair: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    let server_name = ServerName::try_from(server_name.to_string())
        .map_err(|_| format!("backend_tls server_name {server_name:?} is not a DNS name or IP address"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    Ok(BackendTls { connector: Arc::new(tokio::sync::watch::Sender::new(connector)), server_name, named })
}
