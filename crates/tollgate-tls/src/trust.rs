//! Trust stores: the CA bundle client certificates must chain to.

use std::fmt;
use std::path::Path;

use rustls::DistinguishedName;
use rustls_pki_types::{CertificateDer, TrustAnchor};
use x509_parser::prelude::*;

use crate::pem::{self, PemError};

/// Size limits of a trust-store bundle (reference §1 defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustStoreLimits {
    pub max_bundle_bytes: usize,
    pub max_certs: usize,
    pub max_cert_bytes: usize,
}

impl Default for TrustStoreLimits {
    fn default() -> Self {
        TrustStoreLimits {
            max_bundle_bytes: 64 * 1024,
            max_certs: 25,
            max_cert_bytes: 16 * 1024,
        }
    }
}

impl TrustStoreLimits {
    /// No limits (for test suites that bring their own trust anchors).
    pub fn unlimited() -> Self {
        TrustStoreLimits {
            max_bundle_bytes: usize::MAX,
            max_certs: usize::MAX,
            max_cert_bytes: usize::MAX,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrustStoreError {
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("{source_name}: the bundle is {size} bytes; the limit is {limit}")]
    BundleTooLarge {
        source_name: String,
        size: usize,
        limit: usize,
    },
    #[error("{source_name}: {count} certificates; the limit is {limit}")]
    TooManyCerts {
        source_name: String,
        count: usize,
        limit: usize,
    },
    #[error("{source_name}: entry {index} (line {line}) is {size} bytes; the limit is {limit}")]
    CertTooLarge {
        source_name: String,
        index: usize,
        line: usize,
        size: usize,
        limit: usize,
    },
    #[error("{source_name}: no usable root CA (warnings: {warnings})")]
    NoUsableCa {
        source_name: String,
        warnings: String,
    },
}

/// An entry of the bundle that was skipped or needs attention; the store still
/// loads (like API Gateway's truststore warnings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustStoreWarning {
    pub source: String,
    /// 1-based position of the certificate in the bundle.
    pub index: usize,
    pub line: usize,
    pub subject: String,
    pub message: String,
}

impl fmt::Display for TrustStoreWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: entry {} (line {}, {}): {}",
            self.source, self.index, self.line, self.subject, self.message
        )
    }
}

/// A CA certificate of the store, parsed once.
#[derive(Debug)]
pub(crate) struct CaCert {
    pub der: CertificateDer<'static>,
    /// Subject Name contents (no outer SEQUENCE), as webpki compares them.
    pub subject: Vec<u8>,
    pub subject_text: String,
    /// SubjectPublicKeyInfo with its outer SEQUENCE.
    pub spki: Vec<u8>,
    pub crl_sign: bool,
    /// The validity period, in Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// 1-based entry and line in the bundle (0 when built from DER).
    pub index: usize,
    pub line: usize,
}

/// Root CAs (trust anchors) and intermediate CAs (used to build paths, as if the
/// client had sent them), loaded and checked once.
#[derive(Debug, Default)]
pub struct TrustStore {
    pub(crate) anchors: Vec<TrustAnchor<'static>>,
    /// Each anchor's validity period (Unix seconds), by position in
    /// `anchors`: webpki's trust anchors carry no dates, and a CA outside its
    /// validity is no more trusted at verification than at load.
    pub(crate) anchor_windows: Vec<(i64, i64)>,
    pub(crate) intermediates: Vec<CertificateDer<'static>>,
    pub(crate) cas: Vec<CaCert>,
    pub(crate) names: Vec<DistinguishedName>,
    warnings: Vec<TrustStoreWarning>,
    /// A certificate of the store whose validity period is unknown (kept by
    /// `from_der_parts` although x509-parser could not read it).
    validity_unknown: bool,
}

impl TrustStore {
    /// An empty store (passthrough listeners).
    pub fn empty() -> TrustStore {
        TrustStore::default()
    }

    pub fn load(path: &Path, limits: &TrustStoreLimits) -> Result<TrustStore, TrustStoreError> {
        let text = pem::read(path)?;
        TrustStore::from_pem(&text, &path.display().to_string(), limits)
    }

    /// Parses a PEM bundle. Self-signed CAs become trust anchors, other CAs
    /// intermediates. Unusable entries (not a CA, expired, unsupported key,
    /// duplicate, unparsable) are skipped with a warning naming them.
    pub fn from_pem(
        pem_text: &[u8],
        source: &str,
        limits: &TrustStoreLimits,
    ) -> Result<TrustStore, TrustStoreError> {
        if pem_text.len() > limits.max_bundle_bytes {
            return Err(TrustStoreError::BundleTooLarge {
                source_name: source.to_owned(),
                size: pem_text.len(),
                limit: limits.max_bundle_bytes,
            });
        }
        let blocks: Vec<_> = pem::blocks(pem_text, source)?
            .into_iter()
            .filter(|b| b.label == "CERTIFICATE" || b.label == "TRUSTED CERTIFICATE")
            .collect();
        if blocks.len() > limits.max_certs {
            return Err(TrustStoreError::TooManyCerts {
                source_name: source.to_owned(),
                count: blocks.len(),
                limit: limits.max_certs,
            });
        }
        let mut store = TrustStore::default();
        let now = ::time::OffsetDateTime::now_utc().unix_timestamp();
        for block in blocks {
            if block.der.len() > limits.max_cert_bytes {
                return Err(TrustStoreError::CertTooLarge {
                    source_name: source.to_owned(),
                    index: block.index,
                    line: block.line,
                    size: block.der.len(),
                    limit: limits.max_cert_bytes,
                });
            }
            let mut warn = |subject: &str, message: String| {
                store.warnings.push(TrustStoreWarning {
                    source: source.to_owned(),
                    index: block.index,
                    line: block.line,
                    subject: subject.to_owned(),
                    message,
                })
            };
            let cert = match X509Certificate::from_der(&block.der) {
                Ok((_, cert)) => cert,
                Err(e) => {
                    warn(
                        "unparsable",
                        format!("not an X.509 certificate ({e}); skipped"),
                    );
                    continue;
                }
            };
            let subject_text = tollgate_x509::CertInfo::parse(&block.der)
                .map(|i| i.subject())
                .unwrap_or_else(|_| cert.subject().to_string());
            if !cert.is_ca() {
                warn(
                    &subject_text,
                    "not a CA certificate (basicConstraints cA is not set); skipped".into(),
                );
                continue;
            }
            if let Some(problem) = unsupported_key(&cert) {
                warn(&subject_text, format!("{problem}; skipped"));
                continue;
            }
            let not_after = cert.validity().not_after.timestamp();
            if not_after < now {
                warn(
                    &subject_text,
                    format!(
                        "expired on {}; skipped",
                        tollgate_x509::format_rfc3339(not_after)
                    ),
                );
                continue;
            }
            if store
                .cas
                .iter()
                .any(|c| c.der.as_ref() == block.der.as_slice())
            {
                warn(
                    &subject_text,
                    "duplicate of an earlier entry; skipped".into(),
                );
                continue;
            }
            let der = CertificateDer::from(block.der.clone());
            // Self-issued: subject and issuer names equal (webpki checks the
            // signatures of the chains built on it).
            let self_signed = cert.subject().as_raw() == cert.issuer().as_raw();
            let crl_sign = cert
                .key_usage()
                .ok()
                .flatten()
                .is_none_or(|ku| ku.value.crl_sign());
            let ca = CaCert {
                subject: name_contents(cert.subject().as_raw()),
                subject_text,
                spki: cert.public_key().raw.to_vec(),
                crl_sign,
                not_before: cert.validity().not_before.timestamp(),
                not_after: cert.validity().not_after.timestamp(),
                index: block.index,
                line: block.line,
                der: der.clone(),
            };
            if self_signed {
                match webpki::anchor_from_trusted_cert(&der) {
                    Ok(anchor) => {
                        store.anchors.push(anchor.to_owned());
                        store.anchor_windows.push((ca.not_before, ca.not_after));
                    }
                    Err(e) => {
                        warn(
                            &ca.subject_text,
                            format!("not usable as a trust anchor ({e:?}); skipped"),
                        );
                        continue;
                    }
                }
            } else {
                store.intermediates.push(der);
            }
            store
                .names
                .push(DistinguishedName::from(cert.subject().as_raw().to_vec()));
            store.cas.push(ca);
        }
        if store.anchors.is_empty() {
            let warnings = store
                .warnings
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(TrustStoreError::NoUsableCa {
                source_name: source.to_owned(),
                warnings: if warnings.is_empty() {
                    "none; the bundle has no self-signed CA certificate".into()
                } else {
                    warnings
                },
            });
        }
        for ca in &store.cas {
            if !store
                .anchors
                .iter()
                .any(|a| a.subject.as_ref() == ca.subject.as_slice())
                && !store.cas.iter().any(|other| {
                    X509Certificate::from_der(&ca.der)
                        .map(|(_, c)| name_contents(c.issuer().as_raw()) == other.subject)
                        .unwrap_or(false)
                })
            {
                store.warnings.push(TrustStoreWarning {
                    source: source.to_owned(),
                    index: ca.index,
                    line: ca.line,
                    subject: ca.subject_text.clone(),
                    message: "intermediate whose issuer is not in the bundle; chains through it need the client to send its issuer".into(),
                });
            }
        }
        Ok(store)
    }

    /// A store from DER certificates: every `anchors` entry is trusted as is,
    /// `intermediates` only help build paths. No limits, no warnings. For test
    /// suites (x509-limbo) that define their own anchors.
    pub fn from_der_parts(
        anchors: &[Vec<u8>],
        intermediates: &[Vec<u8>],
    ) -> Result<TrustStore, String> {
        let mut store = TrustStore::default();
        for (i, der) in anchors.iter().chain(intermediates).enumerate() {
            let der = CertificateDer::from(der.clone());
            let parsed = X509Certificate::from_der(&der).ok().map(|(_, cert)| cert);
            let window = parsed.as_ref().map(|c| {
                (
                    c.validity().not_before.timestamp(),
                    c.validity().not_after.timestamp(),
                )
            });
            if i < anchors.len() {
                let anchor = webpki::anchor_from_trusted_cert(&der)
                    .map_err(|e| format!("anchor {i}: {e:?}"))?
                    .to_owned();
                store.anchors.push(anchor);
                store
                    .anchor_windows
                    .push(window.unwrap_or((i64::MIN, i64::MAX)));
            } else {
                store.intermediates.push(der.clone());
            }
            if let (Some(cert), Some((not_before, not_after))) = (parsed, window) {
                store.cas.push(CaCert {
                    subject: name_contents(cert.subject().as_raw()),
                    subject_text: cert.subject().to_string(),
                    spki: cert.public_key().raw.to_vec(),
                    crl_sign: cert
                        .key_usage()
                        .ok()
                        .flatten()
                        .is_none_or(|ku| ku.value.crl_sign()),
                    not_before,
                    not_after,
                    index: 0,
                    line: 0,
                    der: der.clone(),
                });
                store
                    .names
                    .push(DistinguishedName::from(cert.subject().as_raw().to_vec()));
            } else {
                store.validity_unknown = true;
            }
        }
        Ok(store)
    }

    /// Whether every CA certificate of the store is inside its validity
    /// period at `unix` (seconds): then no path through the store can fail
    /// on the dates of one of its certificates.
    pub(crate) fn all_valid_at(&self, unix: i64) -> bool {
        !self.validity_unknown
            && self
                .cas
                .iter()
                .all(|c| c.not_before <= unix && unix <= c.not_after)
    }

    pub fn warnings(&self) -> &[TrustStoreWarning] {
        &self.warnings
    }

    /// CA certificates in the store (roots and intermediates).
    pub fn len(&self) -> usize {
        self.cas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cas.is_empty()
    }

    /// RFC 2253 subjects of the CAs.
    pub fn subjects(&self) -> Vec<String> {
        self.cas.iter().map(|c| c.subject_text.clone()).collect()
    }
}

/// A Name's contents without the outer SEQUENCE header (webpki's form).
pub(crate) fn name_contents(raw: &[u8]) -> Vec<u8> {
    match crate::der::tlv(raw) {
        Some((0x30, contents, _, _)) => contents.to_vec(),
        _ => raw.to_vec(),
    }
}

/// Keys the reference allows: RSA 2048/3072/4096, ECDSA P-256/P-384 (Ed25519
/// also works with rustls and is accepted).
fn unsupported_key(cert: &X509Certificate<'_>) -> Option<String> {
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
            let bits = rsa.key_size();
            (!(2048..=8192).contains(&bits))
                .then(|| format!("RSA key of {bits} bits is not supported (2048 to 8192)"))
        }
        Ok(x509_parser::public_key::PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                "1.2.840.10045.3.1.7" | "1.3.132.0.34" => None,
                other => Some(format!("EC curve {other} is not supported (P-256, P-384)")),
            }
        }
        Ok(x509_parser::public_key::PublicKey::Unknown(_))
            if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" =>
        {
            None
        }
        Ok(_) | Err(_) => Some(format!(
            "key algorithm {} is not supported",
            spki.algorithm.algorithm.to_id_string()
        )),
    }
}
