//! CRLs, checked once at load: each CRL's signature is verified against its
//! issuer in the trust store, so the handshake only looks up serial numbers.

use std::path::PathBuf;
use std::sync::RwLock;

use rustls_pki_types::SignatureVerificationAlgorithm;
use webpki::{CertRevocationList, OwnedCertRevocationList};

use crate::der;
use crate::pem::{self, PemError};
use crate::trust::TrustStore;

#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("{source_name}: CRL {index}: {message}")]
    Invalid {
        source_name: String,
        index: usize,
        message: String,
    },
    #[error("{source_name}: no CRL in the file")]
    Empty { source_name: String },
}

/// One verified CRL.
#[derive(Debug)]
pub(crate) struct Crl {
    pub list: CertRevocationList<'static>,
    /// Issuer Name contents (webpki's form).
    pub issuer: Vec<u8>,
    /// The signing CA's SubjectPublicKeyInfo (with outer SEQUENCE), when the
    /// issuer is in the trust store and the signature was verified at load:
    /// the CRL is authoritative only for certificates that CA signed.
    pub signer_spki: Option<Vec<u8>>,
    /// For a CRL whose issuer is not in the trust store (an intermediate the
    /// client sends): keys it was checked against at first use, and whether
    /// its signature verified with them.
    pub checked: RwLock<Vec<(Vec<u8>, bool)>>,
    pub der: Vec<u8>,
    pub next_update: Option<time::OffsetDateTime>,
    pub source: String,
}

/// The CRLs of a listener.
#[derive(Debug, Default)]
pub struct CrlSet {
    pub(crate) crls: Vec<Crl>,
    warnings: Vec<String>,
}

impl CrlSet {
    pub fn empty() -> CrlSet {
        CrlSet::default()
    }

    /// Loads CRL files (PEM with one or more `X509 CRL` blocks, or DER), each
    /// verified against its issuer in `trust`.
    pub fn load(paths: &[PathBuf], trust: &TrustStore) -> Result<CrlSet, CrlError> {
        let mut set = CrlSet::default();
        for path in paths {
            let bytes = pem::read(path)?;
            set.add(&bytes, &path.display().to_string(), trust)?;
        }
        Ok(set)
    }

    /// [`CrlSet::load`], reporting every file that fails rather than the
    /// first (each file is read and checked once).
    pub fn load_each(paths: &[PathBuf], trust: &TrustStore) -> Result<CrlSet, Vec<CrlError>> {
        let mut set = CrlSet::default();
        let mut errors = Vec::new();
        for path in paths {
            let added = pem::read(path)
                .map_err(CrlError::from)
                .and_then(|bytes| set.add(&bytes, &path.display().to_string(), trust));
            if let Err(e) = added {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    pub fn from_bytes(bytes: &[u8], source: &str, trust: &TrustStore) -> Result<CrlSet, CrlError> {
        let mut set = CrlSet::default();
        set.add(bytes, source, trust)?;
        Ok(set)
    }

    fn add(&mut self, bytes: &[u8], source: &str, trust: &TrustStore) -> Result<(), CrlError> {
        let ders: Vec<Vec<u8>> = if bytes.first() == Some(&0x30) {
            vec![bytes.to_vec()]
        } else {
            pem::blocks(bytes, source)?
                .into_iter()
                .filter(|b| b.label == "X509 CRL")
                .map(|b| b.der)
                .collect()
        };
        if ders.is_empty() {
            return Err(CrlError::Empty {
                source_name: source.to_owned(),
            });
        }
        for (i, der) in ders.iter().enumerate() {
            let invalid = |message: String| CrlError::Invalid {
                source_name: source.to_owned(),
                index: i + 1,
                message,
            };
            let list = OwnedCertRevocationList::from_der(der)
                .map_err(|e| invalid(format!("not a usable CRL: {e:?}")))?;
            let list = CertRevocationList::from(list);
            let issuer = list.issuer().to_vec();
            let signed = der::signed(der).ok_or_else(|| invalid("malformed signature".into()))?;
            let candidates: Vec<_> = trust.cas.iter().filter(|c| c.subject == issuer).collect();
            let signer_spki = if candidates.is_empty() {
                self.warnings.push(format!(
                    "{source}: CRL {}: issuer {} is not in the trust store; its signature is checked against the issuing CA the client presents, at first use",
                    i + 1,
                    issuer_text(der)
                ));
                None
            } else {
                let signer = candidates
                    .iter()
                    .find(|ca| verify(&ca.spki, &signed))
                    .ok_or_else(|| {
                        invalid(format!(
                            "signature does not verify with the key of {}",
                            candidates[0].subject_text
                        ))
                    })?;
                if !signer.crl_sign {
                    return Err(invalid(format!(
                        "{} may not sign CRLs (keyUsage lacks cRLSign)",
                        signer.subject_text
                    )));
                }
                Some(signer.spki.clone())
            };
            let next_update = x509_parser::parse_x509_crl(der)
                .ok()
                .and_then(|(_, crl)| crl.next_update())
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.timestamp()).ok());
            self.crls.push(Crl {
                list,
                issuer,
                signer_spki,
                checked: RwLock::new(Vec::new()),
                der: der.clone(),
                next_update,
                source: source.to_owned(),
            });
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.crls.len()
    }

    /// CRLs that load but whose signature could not be checked yet.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn is_empty(&self) -> bool {
        self.crls.is_empty()
    }

    /// The earliest nextUpdate among the CRLs.
    pub fn next_update(&self) -> Option<time::OffsetDateTime> {
        self.crls.iter().filter_map(|c| c.next_update).min()
    }

    /// Whether a certificate (by issuer Name contents, the issuer's SPKI and
    /// its serial) is revoked by an authoritative CRL.
    pub(crate) fn is_revoked(
        &self,
        issuer: &[u8],
        issuer_spki: &[u8],
        serial: &[u8],
    ) -> Result<bool, String> {
        for crl in &self.crls {
            if crl.issuer != issuer || !crl.authoritative_for(issuer_spki) {
                continue;
            }
            match crl.list.find_serial(serial) {
                Ok(Some(_)) => return Ok(true),
                Ok(None) => {}
                Err(e) => return Err(format!("{}: {e:?}", crl.source)),
            }
        }
        Ok(false)
    }
}

impl Crl {
    fn authoritative_for(&self, issuer_spki: &[u8]) -> bool {
        if let Some(spki) = &self.signer_spki {
            return spki == issuer_spki;
        }
        if let Ok(checked) = self.checked.read()
            && let Some((_, ok)) = checked.iter().find(|(k, _)| k == issuer_spki)
        {
            return *ok;
        }
        let ok = der::signed(&self.der).is_some_and(|signed| verify(issuer_spki, &signed));
        if let Ok(mut checked) = self.checked.write()
            && checked.len() < 64
        {
            checked.push((issuer_spki.to_vec(), ok));
        }
        ok
    }
}

fn issuer_text(der: &[u8]) -> String {
    x509_parser::parse_x509_crl(der)
        .map(|(_, crl)| crl.issuer().to_string())
        .unwrap_or_else(|_| "(unreadable)".into())
}

/// Verifies a signed structure with a SubjectPublicKeyInfo (outer SEQUENCE
/// included), trying the algorithms rustls supports.
pub(crate) fn verify(spki: &[u8], signed: &der::Signed<'_>) -> bool {
    let Some((key_alg, key)) = der::spki_parts(spki, true) else {
        return false;
    };
    webpki::ALL_VERIFICATION_ALGS
        .iter()
        .any(|alg: &&dyn SignatureVerificationAlgorithm| {
            alg.public_key_alg_id().as_ref() == key_alg
                && alg.signature_alg_id().as_ref() == signed.algorithm
                && alg
                    .verify_signature(key, signed.tbs, signed.signature)
                    .is_ok()
        })
}
