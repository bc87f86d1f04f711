//! The TLS client used towards origins: origin certificate verification and
//! origin mTLS.

use std::path::Path;

use rustls_pki_types::CertificateDer;

use crate::pem;
use crate::server::TlsConfigError;

/// Verifies the origin with the CA bundle at `ca_pem` (or the system roots) and,
/// with `client`, presents that certificate chain and key when the origin asks.
/// Also returns warnings (an expired client certificate loads: the origin
/// decides).
pub fn origin_client_config(
    ca_pem: Option<&Path>,
    client: Option<(&Path, &Path)>,
) -> Result<(rustls::ClientConfig, Vec<String>), TlsConfigError> {
    let mut warnings = Vec::new();
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(path) => {
            for cert in pem::load_certs(path)? {
                roots.add(cert).map_err(|e| {
                    TlsConfigError::Other(format!("{}: unusable CA: {e}", path.display()))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(TlsConfigError::Other(
                    "no system root certificates found; set origin.ca".into(),
                ));
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(crate::server::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert_path, key_path)) => {
            let chain: Vec<CertificateDer<'static>> = pem::load_certs(cert_path)?;
            let info = tollgate_x509::CertInfo::parse(&chain[0])
                .map_err(|e| TlsConfigError::Other(format!("{}: {e}", cert_path.display())))?;
            // Reference §6: the EKU must include TLS client authentication
            // (a certificate without the extension does not say so).
            match info.extended_key_usage() {
                Some(ekus)
                    if ekus
                        .iter()
                        .any(|e| e == "clientAuth" || e == "1.3.6.1.5.5.7.3.2") => {}
                Some(ekus) => {
                    return Err(TlsConfigError::Other(format!(
                        "{}: the origin client certificate's extended key usage lacks clientAuth ({ekus:?})",
                        cert_path.display()
                    )));
                }
                None => {
                    return Err(TlsConfigError::Other(format!(
                        "{}: the origin client certificate has no extended key usage; it must include clientAuth",
                        cert_path.display()
                    )));
                }
            }
            let now = ::time::OffsetDateTime::now_utc().unix_timestamp();
            if !info.is_valid_at(now) {
                warnings.push(format!(
                    "{}: the origin client certificate is outside its validity ({})",
                    cert_path.display(),
                    info.validity_header()
                ));
            }
            let key = pem::load_key(key_path)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                TlsConfigError::Other(format!(
                    "{} / {}: {e}",
                    cert_path.display(),
                    key_path.display()
                ))
            })?
        }
    };
    Ok((config, warnings))
}
