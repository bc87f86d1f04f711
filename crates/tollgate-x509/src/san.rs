//! Subject alternative names.

use std::fmt;
use std::net::IpAddr;

use crate::X509Error;

/// A subject alternative name, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectAltName {
    Dns(String),
    Ip(IpAddr),
    Uri(String),
    Email(String),
    /// Any other kind, as `label:value` text (`DirName:CN=x`,
    /// `othername:1.2.3.4`, `Registered ID:1.2.3`).
    Other(String),
}

impl fmt::Display for SubjectAltName {
    /// The OpenSSL-style label and value: `DNS:a.example`, `IP Address:192.0.2.1`,
    /// `URI:spiffe://x`, `email:a@b`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectAltName::Dns(v) => write!(f, "DNS:{v}"),
            SubjectAltName::Ip(ip) => write!(f, "IP Address:{ip}"),
            SubjectAltName::Uri(v) => write!(f, "URI:{v}"),
            SubjectAltName::Email(v) => write!(f, "email:{v}"),
            SubjectAltName::Other(v) => f.write_str(v),
        }
    }
}

/// The list form of CloudFront's connection object:
/// `DNS:client.example.com,URI:spiffe://example/client`.
pub fn format_san_list(sans: &[SubjectAltName]) -> String {
    sans.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

const LABELS: &[&str] = &[
    "DNS:",
    "IP Address:",
    "IP:",
    "URI:",
    "email:",
    "othername:",
    "DirName:",
    "Registered ID:",
];

/// Parses the list form back into typed names. A comma splits entries only
/// where a known label follows (so `DirName:CN=a,O=b` stays whole); spaces
/// after a comma are allowed, as OpenSSL writes `, `.
pub fn parse_san_list(text: &str) -> Result<Vec<SubjectAltName>, X509Error> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let starts_entry = |s: &str| LABELS.iter().any(|l| s.trim_start().starts_with(l));
    let mut entries = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == ',' && starts_entry(&text[i + 1..]) {
            entries.push(text[start..i].trim());
            start = i + 1;
        }
    }
    entries.push(text[start..].trim());
    entries
        .into_iter()
        .map(|entry| {
            let (label, value) = LABELS
                .iter()
                .find_map(|l| entry.strip_prefix(l).map(|v| (*l, v)))
                .ok_or_else(|| X509Error::SanList(format!("{entry:?} does not start with a known label (DNS:, IP Address:, URI:, email: ...)")))?;
            if value.is_empty() {
                return Err(X509Error::SanList(format!("{entry:?} has an empty value")));
            }
            Ok(match label {
                "DNS:" => SubjectAltName::Dns(value.to_owned()),
                "IP Address:" | "IP:" => SubjectAltName::Ip(
                    value
                        .parse()
                        .map_err(|_| X509Error::SanList(format!("{value:?} is not an IP address")))?,
                ),
                "URI:" => SubjectAltName::Uri(value.to_owned()),
                "email:" => SubjectAltName::Email(value.to_owned()),
                _ => SubjectAltName::Other(entry.to_owned()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_round_trip() {
        let sans = vec![
            SubjectAltName::Dns("client.example.com".into()),
            SubjectAltName::Uri("spiffe://example/client".into()),
            SubjectAltName::Ip("2001:db8::1".parse().unwrap()),
            SubjectAltName::Email("a@b.example".into()),
            SubjectAltName::Other("DirName:CN=x,O=y".into()),
        ];
        let s = format_san_list(&sans);
        assert_eq!(
            s,
            "DNS:client.example.com,URI:spiffe://example/client,IP Address:2001:db8::1,email:a@b.example,DirName:CN=x,O=y"
        );
        assert_eq!(parse_san_list(&s).unwrap(), sans);
        assert_eq!(parse_san_list("DNS:a, IP:192.0.2.1").unwrap().len(), 2);
    }

    #[test]
    fn bad_lists_are_errors() {
        assert!(parse_san_list("FOO:bar").is_err());
        assert!(parse_san_list("IP Address:300.1.1.1").is_err());
        assert!(parse_san_list("DNS:").is_err());
        assert_eq!(parse_san_list(" ").unwrap(), vec![]);
    }
}
