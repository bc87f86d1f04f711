//! PEM: reading bundles of certificates, writing one.

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

/// Encodes DER as a PEM certificate: `-----BEGIN CERTIFICATE-----`, base64
/// in 64-character lines, `-----END CERTIFICATE-----`, each line ending in
/// `\n` (no `\r`). Also exported as [`pem_encode`](crate::pem_encode).
pub fn encode_certificate(der: &[u8]) -> String {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----\n";
    const END: &str = "-----END CERTIFICATE-----\n";
    let b64 = der.len().div_ceil(3) * 4;
    let mut out = String::with_capacity(BEGIN.len() + b64 + b64.div_ceil(64) + END.len());
    out.push_str(BEGIN);
    // 48 bytes are one 64-character line.
    for line in der.chunks(48) {
        crate::base64::encode_into(&mut out, line);
        out.push('\n');
    }
    out.push_str(END);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_64_and_a_trailing_newline() {
        assert_eq!(
            encode_certificate(b""),
            "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(
            encode_certificate(b"foobar"),
            "-----BEGIN CERTIFICATE-----\nZm9vYmFy\n-----END CERTIFICATE-----\n"
        );
        let der: Vec<u8> = (0..=255).collect();
        let pem = encode_certificate(&der);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines.len(), 2 + 6);
        assert!(lines[1..6].iter().all(|l| l.len() == 64));
        assert_eq!(lines[6], "8PHy8/T19vf4+fr7/P3+/w==");
        assert_eq!(parse_certificates(pem.as_bytes()).unwrap(), [der]);
        assert_eq!(pem.capacity(), pem.len());
    }
}
