//! Server certificates by SNI, and the listener's rustls `ServerConfig`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::{ClientHello, NoServerSessionStorage, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::pem::{self, PemError};
use crate::verify::{ClientAuthMode, ClientVerifier};

/// One configured certificate.
#[derive(Debug, Clone)]
pub struct ServerCertSpec {
    /// SNI names (`api.example.com`, `*.example.com`); empty: default only.
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerCertError {
    #[error("no server certificate configured")]
    None,
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("{}: {message}", cert.display())]
    Unusable { cert: PathBuf, message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("{0}")]
    Other(String),
}

/// Certificates chosen by SNI: exact name, then a one-label wildcard, then the
/// first certificate (also for clients that send no SNI).
#[derive(Debug)]
pub struct ServerCertificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
    summaries: Vec<(Vec<String>, time::OffsetDateTime)>,
}

impl ServerCertificates {
    pub fn load(specs: &[ServerCertSpec]) -> Result<Arc<ServerCertificates>, ServerCertError> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        let mut summaries = Vec::new();
        for spec in specs {
            let chain = pem::load_certs(&spec.cert)?;
            let key = pem::load_key(&spec.key)?;
            let unusable = |message: String| ServerCertError::Unusable {
                cert: spec.cert.clone(),
                message,
            };
            let info = tollgate_x509::CertInfo::parse(&chain[0])
                .map_err(|e| unusable(format!("leaf certificate: {e}")))?;
            let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
                unusable(format!(
                    "the key {} does not fit the certificate or is unsupported: {e}",
                    spec.key.display()
                ))
            })?;
            let certified = Arc::new(certified);
            for name in &spec.names {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(rest) => wildcard.insert(rest.to_owned(), certified.clone()),
                    None => exact.insert(name, certified.clone()),
                };
            }
            default.get_or_insert_with(|| certified.clone());
            let not_after = time::OffsetDateTime::from_unix_timestamp(info.not_after_unix())
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            summaries.push((spec.names.clone(), not_after));
        }
        Ok(Arc::new(ServerCertificates {
            exact,
            wildcard,
            default: default.ok_or(ServerCertError::None)?,
            summaries,
        }))
    }

    /// Names and expiry of each certificate, in configuration order.
    pub fn summaries(&self) -> Vec<(Vec<String>, time::OffsetDateTime)> {
        self.summaries.clone()
    }

    fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        if let Some(name) = sni {
            let name = name.to_ascii_lowercase();
            if let Some(c) = self.exact.get(&name) {
                return c.clone();
            }
            if let Some((_, rest)) = name.split_once('.')
                && let Some(c) = self.wildcard.get(rest)
            {
                return c.clone();
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for ServerCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// The provider Tollgate uses: aws-lc-rs, AEAD suites only (every suite rustls
/// implements is AEAD; the list is explicit so that this stays true).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.retain(|s| {
        let name = s.suite().as_str().unwrap_or("");
        name.contains("_GCM_") || name.contains("CHACHA20_POLY1305")
    });
    Arc::new(provider)
}

/// TLS 1.2 and 1.3, AEAD suites, ALPN `h2` and `http/1.1`.
///
/// With client authentication, session resumption is **off** (no session
/// cache, no tickets): a resumed session would skip the certificate checks, so
/// revocation (CRL and function) could be bypassed. Every mTLS connection is a
/// full handshake.
pub fn server_config(
    certs: Arc<ServerCertificates>,
    client_auth: Option<Arc<ClientVerifier>>,
) -> Result<rustls::ServerConfig, TlsConfigError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let client_auth = client_auth.filter(|v| v.policy().mode != ClientAuthMode::Off);
    let mut config = match &client_auth {
        Some(verifier) => builder
            .with_client_cert_verifier(verifier.clone())
            .with_cert_resolver(certs),
        None => builder.with_no_client_auth().with_cert_resolver(certs),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if client_auth.is_some() {
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(config)
}
