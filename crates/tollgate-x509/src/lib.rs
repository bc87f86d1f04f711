//! Client certificate fields, in the formats origins and logs expect.
//!
//! The one place that turns a certificate (DER) into the strings that
//! connection functions, origin headers and connection logs show, in the
//! formats CloudFront and ALB use:
//!
//! * serial numbers as lowercase colon hex (`4a:3f:5c:92`), or uppercase
//!   without colons for ALB;
//! * subject and issuer as RFC 2253 strings (`CN=client,O=Example,C=US`),
//!   plus typed attributes, and a parser for such strings;
//! * validity as RFC 3339 (`2024-01-15T00:00:00Z`) and Unix seconds;
//! * SHA-256 fingerprints as 64 lowercase hex digits;
//! * subject alternative names, typed and as `DNS:a,URI:b` lists (and back);
//! * key usage bits and extended key usage names;
//! * PEM, the URL-encoded PEM headers and RFC 9440 `Client-Cert` items.
//!
//! [`CertInfo::parse`] parses once and keeps compact owned data; strings are
//! formatted when asked for. [`serial_number_from_der`] reads only the serial,
//! for the common function that needs nothing else. docs/certificate-fields.md
//! describes every format.

mod base64;
mod der;
mod dn;
mod encode;
mod info;
mod oid;
pub mod pem;
mod san;
mod usage;

pub use dn::{
    NameAttribute, attribute_values, format_rfc2253, format_rfc2253_ascii, parse_rfc2253,
};
pub use encode::{rfc9440_item, rfc9440_list, url_encode_alb, url_encode_cloudfront};
pub use info::{CertInfo, format_serial, serial_bytes_from_der, serial_number_from_der};
pub use pem::encode_certificate as pem_encode;
pub use san::{SubjectAltName, format_san_list, parse_san_list};
pub use usage::KeyUsage;

use sha2::{Digest, Sha256};

/// Something in a certificate, a name, a list or a time could not be read.
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

/// SHA-256 of the DER encoding as 64 lowercase hex digits
/// (`CloudFront-Viewer-Cert-Sha256`).
pub fn sha256_fingerprint(der: &[u8]) -> String {
    hex(&Sha256::digest(der), HEX_LOWER, None)
}

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
const MIN_UNIX: i64 = -62_167_219_200;
const MAX_UNIX: i64 = 253_402_300_799;

/// Unix seconds as RFC 3339 in UTC with a `Z`: `2024-01-15T00:00:00Z`.
/// Values outside years 0000–9999 are clamped to them.
pub fn format_rfc3339(unix: i64) -> String {
    let mut s = String::with_capacity(20);
    push_rfc3339(&mut s, unix);
    s
}

fn push_rfc3339(out: &mut String, unix: i64) {
    let t = unix.clamp(MIN_UNIX, MAX_UNIX);
    let (year, month, day) = civil_from_days(t.div_euclid(86_400));
    let secs = t.rem_euclid(86_400);
    let mut buf = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, secs / 3600);
    put(14, 2, secs / 60 % 60);
    put(17, 2, secs % 60);
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
}

/// (year, month, day) of a day count since 1970-01-01, proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Parses an RFC 3339 time (any offset, optional fraction, which is
/// dropped) into Unix seconds.
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
    let mut s = String::with_capacity(60);
    s.push_str("NotBefore=");
    push_rfc3339(&mut s, not_before);
    s.push_str(";NotAfter=");
    push_rfc3339(&mut s, not_after);
    s
}

pub(crate) const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
pub(crate) const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Hex of `bytes` with these digits, optionally a separator between bytes.
pub(crate) fn hex(bytes: &[u8], digits: &[u8; 16], separator: Option<u8>) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 3);
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(sep) = separator.filter(|_| i > 0) {
            out.push(sep);
        }
        out.push(digits[usize::from(b >> 4)]);
        out.push(digits[usize::from(b & 0xf)]);
    }
    // Only ASCII was written.
    String::from_utf8(out).unwrap_or_default()
}

/// Lowercase hex of `bytes`, no separator: `4a3f5c92`.
pub fn hex_lower(bytes: &[u8]) -> String {
    hex(bytes, HEX_LOWER, None)
}

pub(crate) fn push_hex(out: &mut String, bytes: &[u8], digits: &[u8; 16]) {
    out.push_str(&hex(bytes, digits, None));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        assert_eq!(format_rfc3339(1_705_276_800), "2024-01-15T00:00:00Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339(MIN_UNIX), "0000-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(i64::MIN), "0000-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(MAX_UNIX), "9999-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
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

    /// The hand-written formatter agrees with the `time` crate.
    #[test]
    fn rfc3339_agrees_with_time() {
        let fmt = time::format_description::well_known::Rfc3339;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let unix = MIN_UNIX + (x % (MAX_UNIX - MIN_UNIX + 1) as u64) as i64;
            let want = time::OffsetDateTime::from_unix_timestamp(unix)
                .unwrap()
                .format(&fmt)
                .unwrap();
            assert_eq!(format_rfc3339(unix), want, "{unix}");
            assert_eq!(parse_rfc3339(&want), Ok(unix));
        }
    }

    #[test]
    fn fingerprint_is_lowercase_sha256() {
        assert_eq!(
            sha256_fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
