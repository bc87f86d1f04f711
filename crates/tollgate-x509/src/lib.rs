//! Client certificate fields, in the formats origins and logs expect.
//!
//! The one place that turns a certificate (DER) into the strings that
//! connection functions, origin headers and connection logs show:
//!
//! * serial numbers as lowercase colon hex (`4a:3f:5c:92`);
//! * subject and issuer as RFC 2253 strings (`CN=client,O=Example,C=US`),
//!   plus typed attributes;
//! * validity as RFC 3339 (`2024-01-15T00:00:00Z`) and Unix seconds;
//! * SHA-256 fingerprints as 64 lowercase hex digits;
//! * subject alternative names, typed and as `DNS:a,URI:b` lists.
//!
//! [`CertInfo::parse`] parses once and keeps compact owned data; strings are
//! formatted when asked for. [`serial_number_from_der`] reads only the serial,
//! for the common function that needs nothing else. docs/certificate-fields.md
//! describes every format.

mod base64;
mod dn;
mod encode;
mod info;
pub mod pem;
mod san;

pub use dn::{NameAttribute, format_rfc2253, parse_rfc2253};
pub use encode::{rfc9440_item, rfc9440_list, url_encode_alb, url_encode_cloudfront};
pub use info::{CertInfo, KeyUsage, serial_number_from_der};
pub use san::{SubjectAltName, format_san_list, parse_san_list};

use sha2::{Digest, Sha256};

/// Something in a certificate, a name or a time could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum X509Error {
    #[error("not a DER certificate: {0}")]
    NotDer(String),
    #[error("{0} bytes of trailing data after the certificate")]
    TrailingData(usize),
    #[error("bad certificate extension: {0}")]
    Extension(String),
    #[error("bad distinguished name at byte {position}: {reason}")]
    DistinguishedName { position: usize, reason: String },
    #[error("bad subject alternative name list: {0}")]
    SanList(String),
    #[error("bad RFC 3339 time {text:?}: {reason}")]
    Time { text: String, reason: String },
    #[error("bad PEM: {0}")]
    Pem(String),
}

/// SHA-256 of the DER encoding as 64 lowercase hex digits.
pub fn sha256_fingerprint(der: &[u8]) -> String {
    hex_lower(&Sha256::digest(der))
}

/// Unix seconds as RFC 3339 in UTC with a `Z`: `2024-01-15T00:00:00Z`.
/// Out-of-range values are clamped to the representable years.
pub fn format_rfc3339(unix: i64) -> String {
    use time::OffsetDateTime;
    let t = OffsetDateTime::from_unix_timestamp(unix).unwrap_or(if unix < 0 {
        OffsetDateTime::UNIX_EPOCH
            .replace_year(-9999)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    } else {
        OffsetDateTime::UNIX_EPOCH
            .replace_year(9999)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    });
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| unix.to_string())
}

/// Parses an RFC 3339 time into Unix seconds.
pub fn parse_rfc3339(text: &str) -> Result<i64, X509Error> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| X509Error::Time {
            text: text.to_owned(),
            reason: e.to_string(),
        })
}

/// The CloudFront validity header form:
/// `NotBefore=2023-09-21T01:50:17Z;NotAfter=2024-09-20T01:50:17Z`.
pub fn validity_header(not_before: i64, not_after: i64) -> String {
    format!(
        "NotBefore={};NotAfter={}",
        format_rfc3339(not_before),
        format_rfc3339(not_after)
    )
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        assert_eq!(format_rfc3339(1_705_276_800), "2024-01-15T00:00:00Z");
        assert_eq!(parse_rfc3339("2024-01-15T00:00:00Z"), Ok(1_705_276_800));
        assert_eq!(
            parse_rfc3339("2024-01-15T01:00:00+01:00"),
            Ok(1_705_276_800)
        );
        assert!(parse_rfc3339("yesterday").is_err());
        assert_eq!(
            validity_header(1_695_261_017, 1_726_797_017),
            "NotBefore=2023-09-21T01:50:17Z;NotAfter=2024-09-20T01:50:17Z"
        );
    }

    #[test]
    fn fingerprint_is_lowercase_sha256() {
        assert_eq!(
            sha256_fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
