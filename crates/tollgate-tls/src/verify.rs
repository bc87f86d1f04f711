//! The client-certificate verifier: modes, chain, EKU, depth, CRLs,
//! ignore-expiry; and the mapping from failures to connectionStatus codes.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
#[allow(deprecated)]
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage, VerifiedPath};

use crate::crl::CrlSet;
use crate::trust::TrustStore;

/// Viewer mTLS modes (reference §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMode {
    Required,
    Optional,
    Passthrough,
    Off,
}

/// Which extended key usage the chain is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    ClientAuth,
    /// Only for conformance suites of server certificates.
    ServerAuth,
}

/// Client certificates larger than this are refused (`ClientCertMaxSizeExceeded`).
pub const MAX_CLIENT_CERT_BYTES: usize = 16 * 1024;

/// A listener's client-authentication settings.
#[derive(Debug, Clone)]
pub struct ClientAuthPolicy {
    pub mode: ClientAuthMode,
    pub trust: Arc<TrustStore>,
    pub crls: Arc<CrlSet>,
    pub ignore_expiry: bool,
    pub advertise_ca_names: bool,
    /// Longest accepted path, leaf and root included.
    pub max_chain_depth: usize,
}

/// Why a client chain was refused; [`VerifyFailure::code`] is the reference's
/// connectionStatus code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyFailure {
    #[error("no path to a trusted CA")]
    Untrusted,
    #[error("certificate expired")]
    Expired,
    #[error("certificate not yet valid")]
    NotYetValid,
    #[error("certificate revoked by a CRL")]
    Revoked,
    #[error("CRL processing failed: {0}")]
    CrlProcessingError(String),
    #[error("chain longer than {0} certificates (root included)")]
    MaxChainDepthExceeded(usize),
    #[error("certificate larger than {MAX_CLIENT_CERT_BYTES} bytes")]
    MaxSizeExceeded,
    #[error("unsupported key or signature algorithm")]
    TypeUnsupported,
    #[error("certificate not valid for client authentication (extended key usage)")]
    PurposeInvalid,
    #[error("invalid certificate: {0}")]
    Invalid(String),
}

impl VerifyFailure {
    pub fn code(&self) -> &'static str {
        match self {
            VerifyFailure::Untrusted => "ClientCertUntrusted",
            VerifyFailure::Expired => "ClientCertExpired",
            VerifyFailure::NotYetValid => "ClientCertNotYetValid",
            VerifyFailure::Revoked => "ClientCertCrlHit",
            VerifyFailure::CrlProcessingError(_) => "ClientCertCrlProcessingError",
            VerifyFailure::MaxChainDepthExceeded(_) => "ClientCertMaxChainDepthExceeded",
            VerifyFailure::MaxSizeExceeded => "ClientCertMaxSizeExceeded",
            VerifyFailure::TypeUnsupported => "ClientCertTypeUnsupported",
            VerifyFailure::PurposeInvalid => "ClientCertPurposeInvalid",
            VerifyFailure::Invalid(_) => "ClientCertInvalid",
        }
    }

    #[allow(deprecated)]
    fn from_webpki(err: &webpki::Error, depth: usize) -> VerifyFailure {
        use webpki::Error as E;
        match err {
            E::UnknownIssuer => VerifyFailure::Untrusted,
            E::CertExpired { .. } => VerifyFailure::Expired,
            E::CertNotValidYet { .. } => VerifyFailure::NotYetValid,
            E::CertRevoked => VerifyFailure::Revoked,
            E::MaximumPathDepthExceeded => VerifyFailure::MaxChainDepthExceeded(depth),
            E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => {
                VerifyFailure::PurposeInvalid
            }
            E::UnsupportedSignatureAlgorithm
            | E::UnsupportedSignatureAlgorithmContext(_)
            | E::UnsupportedSignatureAlgorithmForPublicKey
            | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
                VerifyFailure::TypeUnsupported
            }
            E::UnknownRevocationStatus
            | E::UnsupportedCrlVersion
            | E::UnsupportedDeltaCrl
            | E::UnsupportedIndirectCrl
            | E::UnsupportedRevocationReason
            | E::InvalidCrlNumber => VerifyFailure::CrlProcessingError(format!("{err:?}")),
            other => VerifyFailure::Invalid(format!("{other:?}")),
        }
    }

    /// The rustls error carrying this failure: a standard variant where one
    /// exists (so the client gets the matching alert), otherwise `Other`.
    pub fn to_rustls(&self) -> rustls::Error {
        let e = match self {
            VerifyFailure::Untrusted => CertificateError::UnknownIssuer,
            VerifyFailure::Expired => CertificateError::Expired,
            VerifyFailure::NotYetValid => CertificateError::NotValidYet,
            VerifyFailure::Revoked => CertificateError::Revoked,
            VerifyFailure::PurposeInvalid => CertificateError::InvalidPurpose,
            other => CertificateError::Other(OtherError(Arc::new(other.clone()))),
        };
        rustls::Error::InvalidCertificate(e)
    }
}

/// The connectionStatus code (without `Failed:`) for a failed server handshake.
#[allow(deprecated)]
pub fn handshake_failure_code(err: &rustls::Error) -> &'static str {
    use CertificateError as C;
    match err {
        rustls::Error::NoCertificatesPresented => "ClientCertMissing",
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "ClientCertUntrusted",
            C::Expired | C::ExpiredContext { .. } => "ClientCertExpired",
            C::NotValidYet | C::NotValidYetContext { .. } => "ClientCertNotYetValid",
            C::Revoked => "ClientCertCrlHit",
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => "ClientCertPurposeInvalid",
            C::UnknownRevocationStatus
            | C::ExpiredRevocationList
            | C::ExpiredRevocationListContext { .. } => "ClientCertCrlProcessingError",
            // Our verifier reports chain failures as its own kinds (below);
            // rustls's BadSignature is the client's CertificateVerify: it does
            // not hold the certificate's key.
            C::BadSignature => "ClientCertInvalid",
            C::UnsupportedSignatureAlgorithm | C::UnsupportedSignatureAlgorithmContext { .. } => {
                "ClientCertTypeUnsupported"
            }
            C::BadEncoding => "ClientCertInvalid",
            C::Other(other) => match other.0.downcast_ref::<VerifyFailure>() {
                Some(f) => f.code(),
                None => "ClientCertRejected",
            },
            _ => "ClientCertRejected",
        },
        rustls::Error::InvalidCertRevocationList(_) => "ClientCertCrlProcessingError",
        _ => "UnmappedConnectionError",
    }
}

thread_local! {
    static REFUSED_LEAF: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

/// The leaf certificate the verifier refused last on this thread, taken (the
/// slot is emptied). A refusal fails the handshake in the same poll of the
/// TLS stream, on the same thread, so the task that sees the failed handshake
/// calls this right away to log which certificate was refused.
pub fn take_refused_leaf() -> Option<Vec<u8>> {
    REFUSED_LEAF.with(|slot| slot.borrow_mut().take())
}

/// A verified chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedChain {
    /// A chain certificate was outside its validity period and admitted
    /// because the policy ignores expiry.
    pub expiry_ignored: bool,
    /// Path length, leaf and root included.
    pub depth: usize,
}

/// The listener's client-certificate verifier.
#[derive(Debug)]
pub struct ClientVerifier {
    policy: ClientAuthPolicy,
    hints: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientVerifier {
    pub fn new(policy: ClientAuthPolicy) -> Arc<ClientVerifier> {
        let hints = if policy.advertise_ca_names {
            policy.trust.names.clone()
        } else {
            Vec::new()
        };
        Arc::new(ClientVerifier {
            hints,
            algs: rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
            policy,
        })
    }

    pub fn policy(&self) -> &ClientAuthPolicy {
        &self.policy
    }

    /// The chain check used by the handshake (and by conformance tests).
    pub fn verify_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: Usage,
    ) -> Result<VerifiedChain, VerifyFailure> {
        if end_entity.len() > MAX_CLIENT_CERT_BYTES
            || intermediates
                .iter()
                .any(|c| c.len() > MAX_CLIENT_CERT_BYTES)
        {
            return Err(VerifyFailure::MaxSizeExceeded);
        }
        let cert = EndEntityCert::try_from(end_entity)
            .map_err(|e| VerifyFailure::from_webpki(&e, self.policy.max_chain_depth))?;
        let mut all: Vec<CertificateDer<'_>> = intermediates.to_vec();
        all.extend(self.policy.trust.intermediates.iter().cloned());
        let depth = match self.verify_at(&cert, &all, now, usage) {
            Ok(depth) => {
                return Ok(VerifiedChain {
                    expiry_ignored: false,
                    depth,
                });
            }
            Err(e @ (VerifyFailure::Expired | VerifyFailure::NotYetValid))
                if self.policy.ignore_expiry =>
            {
                // Only the validity check is skipped: verify again at a moment
                // when every certificate offered was valid. Signatures, trust,
                // EKU, depth and revocation are all checked again.
                let mut result = Err(e);
                // Moments inside the dates of the offered certificates and of
                // the trust store's CAs (anchors included).
                let mut dated = all.clone();
                dated.extend(self.policy.trust.cas.iter().map(|c| c.der.clone()));
                for at in candidate_times(end_entity, &dated, now) {
                    match self.verify_at(&cert, &all, at, usage) {
                        Ok(depth) => {
                            result = Ok(depth);
                            break;
                        }
                        Err(VerifyFailure::Expired | VerifyFailure::NotYetValid) => continue,
                        Err(other) => {
                            result = Err(other);
                            break;
                        }
                    }
                }
                result?
            }
            Err(e) => return Err(e),
        };
        Ok(VerifiedChain {
            expiry_ignored: true,
            depth,
        })
    }

    /// Whether admitting this client chain, verified by the handshake a moment
    /// ago, needed `ignore_expiry`: the verifier's own answer for the path it
    /// builds, not a guess from the certificates the client sent (which may
    /// include some the path does not use, and lack trust-store
    /// intermediates that have expired since they were loaded).
    ///
    /// Cheap when every certificate that could be on a path is inside its
    /// validity period (the common case); otherwise the chain is verified
    /// again, and an error here means it no longer passes. `leaf` is the end
    /// entity as the caller already parsed it (None: it is parsed here).
    pub fn expiry_ignored(
        &self,
        end_entity: &CertificateDer<'_>,
        leaf: Option<&tollgate_x509::CertInfo>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<bool, VerifyFailure> {
        if !self.policy.ignore_expiry
            || matches!(
                self.policy.mode,
                ClientAuthMode::Passthrough | ClientAuthMode::Off
            )
        {
            return Ok(false);
        }
        let at = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let valid = |der: &CertificateDer<'_>| {
            tollgate_x509::CertInfo::parse(der).is_ok_and(|info| info.is_valid_at(at))
        };
        let offered_valid = leaf.map_or_else(|| valid(end_entity), |info| info.is_valid_at(at))
            && intermediates.iter().all(valid);
        if offered_valid && self.policy.trust.all_valid_at(at) {
            return Ok(false);
        }
        self.verify_chain(end_entity, intermediates, now, Usage::ClientAuth)
            .map(|chain| chain.expiry_ignored)
    }

    fn verify_at(
        &self,
        cert: &EndEntityCert<'_>,
        intermediates: &[CertificateDer<'_>],
        at: UnixTime,
        usage: Usage,
    ) -> Result<usize, VerifyFailure> {
        let max = self.policy.max_chain_depth;
        let crls = &self.policy.crls;
        let trust = &self.policy.trust;
        let at_secs = i64::try_from(at.as_secs()).unwrap_or(i64::MAX);
        let check = |path: &VerifiedPath<'_>| -> Result<(), webpki::Error> {
            // The anchor's own dates (webpki checks every other certificate's).
            if let Some(&(not_before, not_after)) = trust
                .anchors
                .iter()
                .position(|a| std::ptr::eq(a, path.anchor()))
                .and_then(|i| trust.anchor_windows.get(i))
            {
                let unix = |t: i64| {
                    UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                        u64::try_from(t).unwrap_or(0),
                    ))
                };
                if at_secs > not_after {
                    return Err(webpki::Error::CertExpired {
                        time: at,
                        not_after: unix(not_after),
                    });
                }
                if at_secs < not_before {
                    return Err(webpki::Error::CertNotValidYet {
                        time: at,
                        not_before: unix(not_before),
                    });
                }
            }
            let inters: Vec<_> = path.intermediate_certificates().collect();
            if inters.len() + 2 > max {
                return Err(webpki::Error::MaximumPathDepthExceeded);
            }
            if crls.is_empty() {
                return Ok(());
            }
            // Each certificate against the CRLs of the CA that signed it in
            // this path.
            let anchor_spki = webpki::spki_for_anchor(path.anchor());
            let leaf = path.end_entity();
            let mut subject_issuer = leaf.issuer();
            let mut subject_serial = leaf.serial();
            for (i, issuer) in inters.iter().enumerate() {
                let spki = issuer.subject_public_key_info();
                revoked(crls, subject_issuer, spki.as_ref(), subject_serial)?;
                subject_issuer = inters[i].issuer();
                subject_serial = inters[i].serial();
            }
            revoked(crls, subject_issuer, anchor_spki.as_ref(), subject_serial)
        };
        let usage = match usage {
            Usage::ClientAuth => KeyUsage::client_auth(),
            Usage::ServerAuth => KeyUsage::server_auth(),
        };
        match cert.verify_for_usage(
            self.algs.all,
            &self.policy.trust.anchors,
            intermediates,
            at,
            usage,
            None,
            Some(&check),
        ) {
            Ok(path) => Ok(path.intermediate_certificates().count() + 2),
            Err(e) => Err(VerifyFailure::from_webpki(&e, max)),
        }
    }
}

fn revoked(
    crls: &CrlSet,
    issuer: &[u8],
    issuer_spki: &[u8],
    serial: &[u8],
) -> Result<(), webpki::Error> {
    match crls.is_revoked(issuer, issuer_spki, serial) {
        Ok(false) => Ok(()),
        Ok(true) => Err(webpki::Error::CertRevoked),
        Err(_) => Err(webpki::Error::UnknownRevocationStatus),
    }
}

/// Moments at which to re-verify an expired or not-yet-valid chain: inside the
/// leaf's validity, then inside the intersection of every offered
/// certificate's validity (latest start).
fn candidate_times(
    leaf: &CertificateDer<'_>,
    others: &[CertificateDer<'_>],
    now: UnixTime,
) -> Vec<UnixTime> {
    let window = |der: &[u8]| -> Option<(i64, i64)> {
        let info = tollgate_x509::CertInfo::parse(der).ok()?;
        Some((info.not_before_unix(), info.not_after_unix()))
    };
    let now_s = now.as_secs() as i64;
    let mut out: Vec<i64> = Vec::new();
    let Some((lb, la)) = window(leaf) else {
        return Vec::new();
    };
    let clamp = |t: i64, (b, a): (i64, i64)| t.clamp(b, a.max(b));
    out.push(clamp(now_s, (lb, la)));
    let (mut b, mut a) = (lb, la);
    for der in others {
        if let Some((ob, oa)) = window(der)
            && ob.max(b) <= oa.min(a)
        {
            b = b.max(ob);
            a = a.min(oa);
        }
    }
    out.push(clamp(now_s, (b, a)));
    out.push(b);
    out.dedup();
    out.into_iter()
        .filter(|t| *t >= 0)
        .map(|t| UnixTime::since_unix_epoch(std::time::Duration::from_secs(t as u64)))
        .collect()
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.policy.mode != ClientAuthMode::Off
    }

    fn client_auth_mandatory(&self) -> bool {
        self.policy.mode == ClientAuthMode::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.policy.mode {
            ClientAuthMode::Passthrough => {
                // No trust-store validation; the handshake signature (below)
                // proves possession of the key. The certificate must parse.
                if end_entity.len() > MAX_CLIENT_CERT_BYTES {
                    return Err(VerifyFailure::MaxSizeExceeded.to_rustls());
                }
                EndEntityCert::try_from(end_entity)
                    .map_err(|e| VerifyFailure::Invalid(format!("{e:?}")).to_rustls())?;
                Ok(ClientCertVerified::assertion())
            }
            _ => self
                .verify_chain(end_entity, intermediates, now, Usage::ClientAuth)
                .map(|_| ClientCertVerified::assertion())
                .map_err(|f| {
                    REFUSED_LEAF.with(|slot| *slot.borrow_mut() = Some(end_entity.to_vec()));
                    f.to_rustls()
                }),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
