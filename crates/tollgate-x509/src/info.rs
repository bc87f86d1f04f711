//! A parsed certificate: compact owned fields, formatted on demand.

use x509_parser::der_parser::asn1_rs::{Any, Tag};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use crate::dn::{NameAttribute, format_rfc2253, short_name};
use crate::san::SubjectAltName;
use crate::{X509Error, hex_lower};

/// The X.509 key usage bits, RFC 5280 order: bit 0 is digitalSignature,
/// bit 8 decipherOnly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUsage(u16);

impl KeyUsage {
    pub const DIGITAL_SIGNATURE: u16 = 1 << 0;
    pub const CONTENT_COMMITMENT: u16 = 1 << 1;
    pub const KEY_ENCIPHERMENT: u16 = 1 << 2;
    pub const DATA_ENCIPHERMENT: u16 = 1 << 3;
    pub const KEY_AGREEMENT: u16 = 1 << 4;
    pub const KEY_CERT_SIGN: u16 = 1 << 5;
    pub const CRL_SIGN: u16 = 1 << 6;
    pub const ENCIPHER_ONLY: u16 = 1 << 7;
    pub const DECIPHER_ONLY: u16 = 1 << 8;

    pub fn bits(self) -> u16 {
        self.0
    }

    pub fn contains(self, bits: u16) -> bool {
        self.0 & bits == bits
    }
}

/// The fields of one certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
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
    /// Parses a DER certificate.
    pub fn parse(der: &[u8]) -> Result<CertInfo, X509Error> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| X509Error::NotDer(e.to_string()))?;
        if !rest.is_empty() {
            return Err(X509Error::TrailingData(rest.len()));
        }
        let ext = |e: x509_parser::error::X509Error| X509Error::Extension(e.to_string());
        let sans = match cert.subject_alternative_name().map_err(ext)? {
            None => Vec::new(),
            Some(san) => san.value.general_names.iter().map(general_name).collect(),
        };
        let key_usage = cert
            .key_usage()
            .map_err(ext)?
            .map(|ku| KeyUsage(ku.value.flags));
        let eku = cert.extended_key_usage().map_err(ext)?.map(|eku| {
            let e = eku.value;
            let mut names = Vec::new();
            for (set, name) in [
                (e.server_auth, "serverAuth"),
                (e.client_auth, "clientAuth"),
                (e.code_signing, "codeSigning"),
                (e.email_protection, "emailProtection"),
                (e.time_stamping, "timeStamping"),
                (e.ocsp_signing, "OCSPSigning"),
                (e.any, "any"),
            ] {
                if set {
                    names.push(name.to_owned());
                }
            }
            names.extend(e.other.iter().map(|oid| oid.to_id_string()));
            names
        });
        Ok(CertInfo {
            serial: cert.raw_serial().to_vec(),
            subject: name_attributes(cert.subject()),
            issuer: name_attributes(cert.issuer()),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            sans,
            key_usage,
            eku,
        })
    }

    /// The serial's magnitude bytes (without DER's sign-padding zero).
    pub fn serial_bytes(&self) -> Vec<u8> {
        magnitude(&self.serial).to_vec()
    }

    /// Lowercase hex, one colon between bytes: `4a:3f:5c:92`.
    pub fn serial_number(&self) -> String {
        format_serial(&self.serial)
    }

    /// Uppercase hex without colons (ALB's `X-Amzn-Mtls-Clientcert-Serial-Number`).
    pub fn serial_hex_upper(&self) -> String {
        hex_lower(magnitude(&self.serial)).to_ascii_uppercase()
    }

    /// RFC 2253 subject.
    pub fn subject(&self) -> String {
        format_rfc2253(&self.subject)
    }

    pub fn subject_attributes(&self) -> &[NameAttribute] {
        &self.subject
    }

    /// Values of the subject attributes with this short name
    /// (case-insensitive) or dotted OID, in certificate order.
    pub fn subject_attribute(&self, name: &str) -> Vec<&str> {
        values(&self.subject, name)
    }

    /// RFC 2253 issuer.
    pub fn issuer(&self) -> String {
        format_rfc2253(&self.issuer)
    }

    pub fn issuer_attributes(&self) -> &[NameAttribute] {
        &self.issuer
    }

    pub fn issuer_attribute(&self, name: &str) -> Vec<&str> {
        values(&self.issuer, name)
    }

    pub fn not_before_unix(&self) -> i64 {
        self.not_before
    }

    pub fn not_after_unix(&self) -> i64 {
        self.not_after
    }

    pub fn subject_alt_names(&self) -> &[SubjectAltName] {
        &self.sans
    }

    /// None when the certificate has no key usage extension.
    pub fn key_usage(&self) -> Option<KeyUsage> {
        self.key_usage
    }

    /// None when the certificate has no extended key usage extension.
    pub fn extended_key_usage(&self) -> Option<&[String]> {
        self.eku.as_deref()
    }
}

fn values<'a>(attrs: &'a [NameAttribute], name: &str) -> Vec<&'a str> {
    attrs
        .iter()
        .filter(|a| a.oid == name || a.name.eq_ignore_ascii_case(name))
        .map(|a| a.value.as_str())
        .collect()
}

fn name_attributes(name: &X509Name<'_>) -> Vec<NameAttribute> {
    let mut out = Vec::new();
    for rdn in name.iter() {
        for (j, attr) in rdn.iter().enumerate() {
            let oid = attr.attr_type().to_id_string();
            let name = short_name(&oid).map_or_else(|| oid.clone(), str::to_owned);
            out.push(NameAttribute {
                name,
                oid,
                value: attribute_value(attr.attr_value()),
                multi_valued: j > 0,
            });
        }
    }
    out
}

/// A directory string as text; anything else as `#` + hex of its DER.
fn attribute_value(any: &Any<'_>) -> String {
    let data = any.data;
    let text = match any.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_owned),
        // TeletexString: in practice Latin-1.
        Tag::T61String => Some(data.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString if data.len().is_multiple_of(2) => {
            let units: Vec<u16> = data
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        Tag::UniversalString if data.len().is_multiple_of(4) => data
            .chunks(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    };
    text.unwrap_or_else(|| {
        let mut der = Vec::with_capacity(data.len() + 6);
        let tag = any.tag().0;
        let constructed = if any.header.is_constructed() { 0x20 } else { 0 };
        der.push(u8::try_from(tag).unwrap_or(0x1f) | constructed);
        push_length(&mut der, data.len());
        der.extend_from_slice(data);
        format!("#{}", hex_lower(&der))
    })
}

fn push_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn general_name(name: &GeneralName<'_>) -> SubjectAltName {
    match name {
        GeneralName::DNSName(v) => SubjectAltName::Dns((*v).to_owned()),
        GeneralName::URI(v) => SubjectAltName::Uri((*v).to_owned()),
        GeneralName::RFC822Name(v) => SubjectAltName::Email((*v).to_owned()),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => SubjectAltName::Ip(std::net::IpAddr::from([
                bytes[0], bytes[1], bytes[2], bytes[3],
            ])),
            16 => {
                let mut b = [0u8; 16];
                b.copy_from_slice(bytes);
                SubjectAltName::Ip(std::net::IpAddr::from(b))
            }
            _ => SubjectAltName::Other(format!("IP Address:#{}", hex_lower(bytes))),
        },
        GeneralName::DirectoryName(dn) => {
            SubjectAltName::Other(format!("DirName:{}", format_rfc2253(&name_attributes(dn))))
        }
        GeneralName::OtherName(oid, _) => {
            SubjectAltName::Other(format!("othername:{}", oid.to_id_string()))
        }
        GeneralName::RegisteredID(oid) => {
            SubjectAltName::Other(format!("Registered ID:{}", oid.to_id_string()))
        }
        other => SubjectAltName::Other(format!("othername:{other:?}")),
    }
}

/// DER adds a zero byte before a positive integer whose top bit is set; the
/// serial's magnitude leaves it out, as `openssl x509 -serial` does.
fn magnitude(serial: &[u8]) -> &[u8] {
    match serial {
        [0, rest @ ..] if !rest.is_empty() => rest,
        [] => &[0],
        other => other,
    }
}

fn format_serial(serial: &[u8]) -> String {
    let hex = hex_lower(magnitude(serial));
    let mut out = String::with_capacity(hex.len() * 3 / 2);
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(pair[0] as char);
        out.push(pair[1] as char);
    }
    out
}

/// Reads only the serial number from a DER certificate, without a full
/// parse: Certificate SEQUENCE → tbsCertificate SEQUENCE → optional [0]
/// version → INTEGER. Same format as [`CertInfo::serial_number`].
pub fn serial_number_from_der(der: &[u8]) -> Result<String, X509Error> {
    let bad = |what: &str| X509Error::NotDer(format!("cannot read the serial number: {what}"));
    let (tag, cert, rest) = read_tlv(der).ok_or_else(|| bad("bad certificate header"))?;
    if tag != 0x30 {
        return Err(bad("not a SEQUENCE"));
    }
    if !rest.is_empty() {
        return Err(X509Error::TrailingData(rest.len()));
    }
    let (tag, tbs, _) = read_tlv(cert).ok_or_else(|| bad("bad tbsCertificate"))?;
    if tag != 0x30 {
        return Err(bad("tbsCertificate is not a SEQUENCE"));
    }
    let (mut tag, mut value, rest) = read_tlv(tbs).ok_or_else(|| bad("empty tbsCertificate"))?;
    if tag == 0xa0 {
        (tag, value, _) = read_tlv(rest).ok_or_else(|| bad("no serial after the version"))?;
    }
    if tag != 0x02 || value.is_empty() {
        return Err(bad("no INTEGER serial"));
    }
    Ok(format_serial(value))
}

/// One DER element with a single-byte tag: (tag, contents, rest).
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || input.len() < n {
            return None;
        }
        let len = input[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        input = &input[n..];
        len
    };
    if input.len() < len {
        return None;
    }
    Some((tag, &input[..len], &input[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_formats() {
        assert_eq!(format_serial(&[0x4a, 0x3f, 0x5c]), "4a:3f:5c");
        assert_eq!(format_serial(&[0x00, 0x9a, 0x01]), "9a:01");
        assert_eq!(format_serial(&[0x00]), "00");
        assert_eq!(format_serial(&[0x01]), "01");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"hello world",
            b"\x30\x03\x30\x01\x02",
        ] {
            assert!(CertInfo::parse(bad).is_err());
            assert!(serial_number_from_der(bad).is_err());
        }
    }
}
