//! PEM bundles of certificates.

use x509_parser::pem::Pem;

use crate::X509Error;

/// The DER certificates in a PEM text, in order. Blocks with other labels
/// (keys, CRLs) and text outside blocks (comments starting with `#`) are
/// skipped; a malformed block is an error naming its position.
pub fn parse_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, X509Error> {
    let mut certs = Vec::new();
    for (i, block) in Pem::iter_from_buffer(pem).enumerate() {
        let block = block.map_err(|e| X509Error::Pem(format!("block {}: {e}", i + 1)))?;
        if block.label == "CERTIFICATE" {
            certs.push(block.contents);
        }
    }
    Ok(certs)
}

/// Encodes DER as a PEM certificate: 64-character lines, trailing newline.
pub fn encode_certificate(der: &[u8]) -> String {
    let b64 = crate::base64::encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
