//! A parsed certificate: compact owned fields, formatted on demand; and the
//! fast serial-number path.

use x509_parser::certificate::X509CertificateParser;
use x509_parser::extensions::GeneralName;
use x509_parser::nom::Parser;
use x509_parser::prelude::FromDer;

use crate::dn::{self, NameAttribute, format_rfc2253, format_rfc2253_ascii};
use crate::san::{SubjectAltName, format_san_list};
use crate::usage::KeyUsage;
use crate::{HEX_LOWER, HEX_UPPER, X509Error, der, format_rfc3339, hex, oid};

/// The fields of one certificate, read by one parse and kept as compact
/// owned data; strings are formatted when asked for. The DER itself is not
/// kept: [`sha256_fingerprint`](crate::sha256_fingerprint),
/// [`pem_encode`](crate::pem_encode) and
/// [`rfc9440_item`](crate::rfc9440_item) take it from the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The serial INTEGER's contents octets, as in the DER.
    serial: Vec<u8>,
    subject: Vec<NameAttribute>,
    issuer: Vec<NameAttribute>,
    not_before: i64,
    not_after: i64,
    sans: Vec<SubjectAltName>,
    key_usage: Option<KeyUsage>,
    eku: Option<Vec<String>>,
}

impl CertInfo {
    /// Parses a DER certificate. Trailing bytes after it, a malformed name
    /// and a malformed or duplicated subjectAltName, keyUsage or
    /// extKeyUsage extension are errors.
    pub fn parse(der: &[u8]) -> Result<CertInfo, X509Error> {
        // Only three extensions are read, from their raw values below;
        // deep-parsing all of them would cost a fifth of the parse.
        let (rest, cert) = X509CertificateParser::new()
            .with_deep_parse_extensions(false)
            .parse(der)
            .map_err(|e| X509Error::NotDer(e.to_string()))?;
        if !rest.is_empty() {
            return Err(X509Error::TrailingData(rest.len()));
        }
        let mut sans = None;
        let mut key_usage = None;
        let mut eku = None;
        for ext in cert.extensions() {
            match ext.oid.as_bytes() {
                [0x55, 0x1d, 0x11] => {
                    once(&sans, "subjectAltName")?;
                    sans = Some(subject_alt_names(ext.value)?);
                }
                [0x55, 0x1d, 0x0f] => {
                    once(&key_usage, "keyUsage")?;
                    key_usage = Some(key_usage_bits(ext.value)?);
                }
                [0x55, 0x1d, 0x25] => {
                    once(&eku, "extKeyUsage")?;
                    eku = Some(extended_key_usage(ext.value)?);
                }
                _ => {}
            }
        }
        let validity = cert.validity();
        Ok(CertInfo {
            serial: cert.raw_serial().to_vec(),
            subject: dn::attributes_from_der(cert.subject().as_raw())?,
            issuer: dn::attributes_from_der(cert.issuer().as_raw())?,
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
            sans: sans.unwrap_or_default(),
            key_usage,
            eku,
        })
    }

    /// The serial number's magnitude bytes: the INTEGER without the `00`
    /// DER puts before a first byte ≥ 0x80.
    pub fn serial_bytes(&self) -> &[u8] {
        magnitude(&self.serial)
    }

    /// Lowercase hex, one colon between bytes: `4a:3f:5c:92:d1:e8:7b:6c`
    /// (`CloudFront-Viewer-Cert-Serial-Number`).
    pub fn serial_number(&self) -> String {
        format_serial(&self.serial)
    }

    /// Uppercase hex without colons: `4A3F5C92D1E87B6C`
    /// (ALB's `X-Amzn-Mtls-Clientcert-Serial-Number`).
    pub fn serial_hex_upper_no_colons(&self) -> String {
        hex(magnitude(&self.serial), HEX_UPPER, None)
    }

    /// RFC 2253 subject, most specific first: `CN=client.com,O=mTLS,C=US`.
    pub fn subject(&self) -> String {
        format_rfc2253(&self.subject)
    }

    /// RFC 2253 subject with non-ASCII written as `\XX` UTF-8 bytes.
    pub fn subject_ascii(&self) -> String {
        format_rfc2253_ascii(&self.subject)
    }

    /// Subject attributes in certificate order (least specific first).
    pub fn subject_attributes(&self) -> &[NameAttribute] {
        &self.subject
    }

    /// Values of the subject attributes with this short or long name
    /// (case-insensitive) or dotted OID, in certificate order.
    pub fn subject_attribute(&self, name: &str) -> Vec<&str> {
        dn::attribute_values(&self.subject, name)
    }

    /// RFC 2253 issuer.
    pub fn issuer(&self) -> String {
        format_rfc2253(&self.issuer)
    }

    /// RFC 2253 issuer with non-ASCII written as `\XX` UTF-8 bytes.
    pub fn issuer_ascii(&self) -> String {
        format_rfc2253_ascii(&self.issuer)
    }

    pub fn issuer_attributes(&self) -> &[NameAttribute] {
        &self.issuer
    }

    pub fn issuer_attribute(&self, name: &str) -> Vec<&str> {
        dn::attribute_values(&self.issuer, name)
    }

    pub fn not_before_unix(&self) -> i64 {
        self.not_before
    }

    pub fn not_after_unix(&self) -> i64 {
        self.not_after
    }

    /// notBefore as RFC 3339 UTC: `2024-01-15T00:00:00Z`.
    pub fn not_before(&self) -> String {
        format_rfc3339(self.not_before)
    }

    /// notAfter as RFC 3339 UTC.
    pub fn not_after(&self) -> String {
        format_rfc3339(self.not_after)
    }

    /// `NotBefore=2023-09-21T01:50:17Z;NotAfter=2024-09-20T01:50:17Z`
    /// (`CloudFront-Viewer-Cert-Validity`).
    pub fn validity_header(&self) -> String {
        crate::validity_header(self.not_before, self.not_after)
    }

    /// Whether `unix` lies within notBefore..=notAfter.
    pub fn is_valid_at(&self, unix: i64) -> bool {
        self.not_before <= unix && unix <= self.not_after
    }

    /// Subject alternative names in certificate order; empty without the
    /// extension.
    pub fn subject_alt_names(&self) -> &[SubjectAltName] {
        &self.sans
    }

    /// The SAN list string: `DNS:a.example,URI:spiffe://x/y,IP Address:192.0.2.1`.
    pub fn san_list(&self) -> String {
        format_san_list(&self.sans)
    }

    /// None when the certificate has no key usage extension.
    pub fn key_usage(&self) -> Option<KeyUsage> {
        self.key_usage
    }

    /// The extended key usages in certificate order (`serverAuth`,
    /// `clientAuth`, `codeSigning`, `emailProtection`, `timeStamping`,
    /// `OCSPSigning`, `any`, else the dotted OID). None when the certificate
    /// has no extended key usage extension.
    pub fn extended_key_usage(&self) -> Option<&[String]> {
        self.eku.as_deref()
    }
}

fn once<T>(seen: &Option<T>, name: &str) -> Result<(), X509Error> {
    match seen {
        Some(_) => Err(X509Error::Extension(format!("duplicate {name} extension"))),
        None => Ok(()),
    }
}

/// GeneralNames ::= SEQUENCE SIZE (1..MAX) OF GeneralName.
fn subject_alt_names(value: &[u8]) -> Result<Vec<SubjectAltName>, X509Error> {
    let bad = |why: &str| X509Error::Extension(format!("malformed subjectAltName: {why}"));
    let (seq, rest) = der::read(value).ok_or_else(|| bad("not DER"))?;
    if !seq.is(0x30) || !rest.is_empty() {
        return Err(bad("not a SEQUENCE"));
    }
    let mut sans = Vec::with_capacity(4);
    let mut items = seq.contents;
    while !items.is_empty() {
        let (item, rest) = der::read(items).ok_or_else(|| bad("not DER"))?;
        items = rest;
        let (_, name) = GeneralName::from_der(item.raw).map_err(|e| bad(&e.to_string()))?;
        sans.push(general_name(&name)?);
    }
    Ok(sans)
}

/// KeyUsage ::= BIT STRING, bit 0 (digitalSignature) the first bit.
fn key_usage_bits(value: &[u8]) -> Result<KeyUsage, X509Error> {
    let bad = || X509Error::Extension("malformed keyUsage".to_owned());
    let (bits, rest) = der::read(value).ok_or_else(bad)?;
    match bits.contents {
        [unused, data @ ..] if bits.is(0x03) && rest.is_empty() && *unused < 8 => {
            let mut flags = 0u16;
            for i in 0..9 {
                if data.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0) {
                    flags |= 1 << i;
                }
            }
            Ok(KeyUsage::from_bits(flags))
        }
        _ => Err(bad()),
    }
}

/// ExtKeyUsageSyntax ::= SEQUENCE SIZE (1..MAX) OF KeyPurposeId, read from
/// the raw extension value to keep the certificate's order.
fn extended_key_usage(value: &[u8]) -> Result<Vec<String>, X509Error> {
    let bad = || X509Error::Extension("malformed extKeyUsage".to_owned());
    let (seq, rest) = der::read(value).ok_or_else(bad)?;
    if !seq.is(0x30) || !rest.is_empty() {
        return Err(bad());
    }
    let mut names = Vec::with_capacity(2);
    let mut items = seq.contents;
    while !items.is_empty() {
        let (item, rest) = der::read(items).ok_or_else(bad)?;
        items = rest;
        if !item.is(0x06) {
            return Err(bad());
        }
        names.push(match oid::eku_name(item.contents) {
            Some(name) => name.to_owned(),
            None => oid::dotted(item.contents).ok_or_else(bad)?,
        });
    }
    Ok(names)
}

fn general_name(name: &GeneralName<'_>) -> Result<SubjectAltName, X509Error> {
    Ok(match name {
        GeneralName::DNSName(v) => SubjectAltName::Dns((*v).to_owned()),
        GeneralName::URI(v) => SubjectAltName::Uri((*v).to_owned()),
        GeneralName::RFC822Name(v) => SubjectAltName::Email((*v).to_owned()),
        GeneralName::IPAddress(bytes) => match **bytes {
            [a, b, c, d] => SubjectAltName::Ip([a, b, c, d].into()),
            _ => match <[u8; 16]>::try_from(*bytes) {
                Ok(v6) => SubjectAltName::Ip(v6.into()),
                Err(_) => SubjectAltName::Other("IP Address:<invalid>".to_owned()),
            },
        },
        GeneralName::DirectoryName(dn) => SubjectAltName::Other(format!(
            "DirName:{}",
            format_rfc2253(&dn::attributes_from_der(dn.as_raw())?)
        )),
        GeneralName::OtherName(oid, value) => {
            let oid = oid.to_id_string();
            // value is the [0] EXPLICIT wrapper around the typed value.
            let inner = der::read(value)
                .filter(|(wrapper, _)| wrapper.is(0xa0))
                .and_then(|(wrapper, _)| der::read(wrapper.contents))
                .map(|(inner, _)| inner);
            let text = match inner {
                Some(inner) => dn::decode_string(inner)
                    .unwrap_or_else(|| format!("#{}", hex(inner.raw, HEX_UPPER, None))),
                None => "<invalid>".to_owned(),
            };
            SubjectAltName::Other(format!("othername:{oid}:{text}"))
        }
        GeneralName::RegisteredID(oid) => {
            SubjectAltName::Other(format!("Registered ID:{}", oid.to_id_string()))
        }
        GeneralName::X400Address(_) => SubjectAltName::Other("X400Name:<unsupported>".to_owned()),
        GeneralName::EDIPartyName(_) => {
            SubjectAltName::Other("EdiPartyName:<unsupported>".to_owned())
        }
        GeneralName::Invalid(tag, _) => {
            let label = match tag.0 {
                0 => "othername",
                1 => "email",
                2 => "DNS",
                3 => "X400Name",
                4 => "DirName",
                5 => "EdiPartyName",
                6 => "URI",
                7 => "IP Address",
                8 => "Registered ID",
                _ => "unknown",
            };
            SubjectAltName::Other(format!("{label}:<invalid>"))
        }
    })
}

/// DER puts a `00` before a positive integer whose first byte is ≥ 0x80;
/// the magnitude leaves it out, as `openssl x509 -serial` does. An empty
/// INTEGER reads as zero.
fn magnitude(serial: &[u8]) -> &[u8] {
    match serial {
        [0, next, ..] if *next >= 0x80 => &serial[1..],
        [] => &[0],
        other => other,
    }
}

/// Formats a serial number, given as DER INTEGER contents or as magnitude
/// bytes: lowercase hex, a colon between bytes, DER's sign-padding `00`
/// dropped (`00 9a 01` → `9a:01`), zero as `00`.
pub fn format_serial(integer: &[u8]) -> String {
    hex(magnitude(integer), HEX_LOWER, Some(b':'))
}

/// Reads only the serial number from a DER certificate, without a full
/// parse: Certificate SEQUENCE → tbsCertificate SEQUENCE → optional `[0]`
/// version → INTEGER. Same format as [`CertInfo::serial_number`].
pub fn serial_number_from_der(der: &[u8]) -> Result<String, X509Error> {
    serial_integer(der).map(format_serial)
}

/// The serial's magnitude bytes (as [`CertInfo::serial_bytes`]) read the
/// fast way, borrowed from `der`.
pub fn serial_bytes_from_der(der: &[u8]) -> Result<&[u8], X509Error> {
    serial_integer(der).map(magnitude)
}

fn serial_integer(der: &[u8]) -> Result<&[u8], X509Error> {
    let bad = |what: &str| X509Error::NotDer(format!("cannot read the serial number: {what}"));
    let (cert, rest) = der::read(der).ok_or_else(|| bad("bad certificate header"))?;
    if !cert.is(0x30) {
        return Err(bad("the certificate is not a SEQUENCE"));
    }
    if !rest.is_empty() {
        return Err(X509Error::TrailingData(rest.len()));
    }
    let (tbs, _) = der::read(cert.contents).ok_or_else(|| bad("bad tbsCertificate header"))?;
    if !tbs.is(0x30) {
        return Err(bad("tbsCertificate is not a SEQUENCE"));
    }
    let (mut field, rest) = der::read(tbs.contents).ok_or_else(|| bad("empty tbsCertificate"))?;
    if field.is(0xa0) {
        (field, _) = der::read(rest).ok_or_else(|| bad("nothing after the version"))?;
    }
    if !field.is(0x02) || field.contents.is_empty() {
        return Err(bad("no INTEGER serial number"));
    }
    Ok(field.contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_formats() {
        assert_eq!(format_serial(&[0x4a, 0x3f, 0x5c]), "4a:3f:5c");
        assert_eq!(format_serial(&[0x00, 0x9a, 0x01]), "9a:01");
        assert_eq!(format_serial(&[0x9a, 0x01]), "9a:01");
        assert_eq!(format_serial(&[0x00]), "00");
        assert_eq!(format_serial(&[]), "00");
        assert_eq!(format_serial(&[0x01]), "01");
        assert_eq!(format_serial(&[0x00, 0x80]), "80");
        // Only DER's sign byte is dropped; a (non-DER) 00 before a small
        // byte stays.
        assert_eq!(format_serial(&[0x00, 0x01]), "00:01");
    }

    #[test]
    fn fast_path_reads_hand_built_der() {
        // SEQUENCE { SEQUENCE { [0] { INTEGER 2 }, INTEGER 00 ff } }
        let v3 = [
            0x30, 0x0b, 0x30, 0x09, 0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x02, 0x00, 0xff,
        ];
        assert_eq!(serial_number_from_der(&v3).unwrap(), "ff");
        assert_eq!(serial_bytes_from_der(&v3).unwrap(), [0xff]);
        // v1: no version field.
        let v1 = [0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x00];
        assert_eq!(serial_number_from_der(&v1).unwrap(), "00");
        assert_eq!(
            serial_number_from_der(&[0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x00, 0x00]),
            Err(X509Error::TrailingData(1))
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"hello world",
            b"\x30\x03\x30\x01\x02",
            b"\x30\x02\x30\x00",
            b"\x30\x04\x30\x02\xa0\x00",
            b"\x30\x04\x30\x02\x02\x00",
            b"\x31\x03\x30\x01\x02",
            b"\x30\x80\x30\x80\x02\x01\x01\x00\x00\x00\x00",
        ] {
            assert!(CertInfo::parse(bad).is_err(), "{bad:02x?}");
            assert!(serial_number_from_der(bad).is_err(), "{bad:02x?}");
        }
    }

    #[test]
    fn extended_key_usage_keeps_order_and_names_unknown_oids() {
        // SEQUENCE { clientAuth, 1.2.3, serverAuth }
        let value = [
            0x30, 0x18, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02, 0x06, 0x02,
            0x2a, 0x03, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01,
        ];
        assert_eq!(
            extended_key_usage(&value).unwrap(),
            ["clientAuth", "1.2.3", "serverAuth"]
        );
        assert!(extended_key_usage(&value[..10]).is_err());
        assert!(extended_key_usage(&[0x30, 0x02, 0x04, 0x00]).is_err());
    }

    #[test]
    fn key_usage_bits_from_raw_bit_strings() {
        let ku = |v: &[u8]| key_usage_bits(v);
        assert_eq!(
            ku(&[0x03, 0x02, 0x07, 0x80]),
            Ok(KeyUsage::DIGITAL_SIGNATURE)
        );
        assert_eq!(
            ku(&[0x03, 0x02, 0x01, 0x06]),
            Ok(KeyUsage::KEY_CERT_SIGN | KeyUsage::CRL_SIGN)
        );
        assert_eq!(
            ku(&[0x03, 0x03, 0x07, 0x00, 0x80]),
            Ok(KeyUsage::DECIPHER_ONLY)
        );
        assert_eq!(ku(&[0x03, 0x01, 0x00]), Ok(KeyUsage::empty()));
        for bad in [
            &[0x03, 0x00][..],
            &[0x04, 0x02, 0x07, 0x80],
            &[0x03, 0x02, 0x08, 0x80],
            &[0x03, 0x02, 0x07, 0x80, 0x00],
            &[0x03, 0x05, 0x07],
        ] {
            assert!(ku(bad).is_err(), "{bad:02x?}");
        }
    }

    #[test]
    fn subject_alt_names_from_raw_values() {
        assert_eq!(
            subject_alt_names(&[0x30, 0x03, 0x82, 0x01, 0x61]),
            Ok(vec![SubjectAltName::Dns("a".into())])
        );
        assert_eq!(
            subject_alt_names(&[0x30, 0x06, 0x87, 0x04, 192, 0, 2, 1]),
            Ok(vec![SubjectAltName::Ip([192, 0, 2, 1].into())])
        );
        for bad in [
            &[0x30, 0x03, 0x02, 0x01, 0x61][..],
            &[0x31, 0x03, 0x82, 0x01, 0x61],
            &[0x30, 0x03, 0x82, 0x01],
            &[0x30, 0x03, 0x82, 0x01, 0x61, 0x00],
        ] {
            assert!(subject_alt_names(bad).is_err(), "{bad:02x?}");
        }
    }
}
