//! Subject alternative names, typed and as a list string.

use std::fmt;
use std::net::IpAddr;

use crate::X509Error;

/// A subject alternative name, typed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectAltName {
    /// dNSName.
    Dns(String),
    /// iPAddress of 4 or 16 bytes.
    Ip(IpAddr),
    /// uniformResourceIdentifier (`spiffe://...`).
    Uri(String),
    /// rfc822Name.
    Email(String),
    /// Any other kind, as the whole `label:value` list entry:
    /// `DirName:CN=x,O=y`, `othername:1.3.6.1.4.1.311.20.2.3:user@example`,
    /// `Registered ID:1.2.3.4`, `X400Name:<unsupported>`,
    /// `EdiPartyName:<unsupported>`, or `<label>:<invalid>` for an entry
    /// that could not be read (an IP address of another length, a DNS name
    /// that is not UTF-8 ...).
    Other(String),
}

/// The list entry: OpenSSL's label and the value, e.g. `DNS:a.example`,
/// `IP Address:192.0.2.1`, `URI:spiffe://x`, `email:a@b`.
impl fmt::Display for SubjectAltName {
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

/// The list form of CloudFront's connection object, entries joined by `,`
/// without spaces: `DNS:client.example.com,URI:spiffe://example/client`.
pub fn format_san_list(sans: &[SubjectAltName]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(sans.len() * 32);
    for (i, san) in sans.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{san}");
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Dns,
    Ip,
    Uri,
    Email,
    Other,
}

/// Labels as written (first) and accepted (compared case-insensitively).
const LABELS: &[(&str, Kind)] = &[
    ("DNS:", Kind::Dns),
    ("IP Address:", Kind::Ip),
    ("URI:", Kind::Uri),
    ("email:", Kind::Email),
    ("DirName:", Kind::Other),
    ("othername:", Kind::Other),
    ("Registered ID:", Kind::Other),
    ("X400Name:", Kind::Other),
    ("EdiPartyName:", Kind::Other),
    // Other spellings seen in the wild.
    ("IP:", Kind::Ip),
];

fn label_of(entry: &str) -> Option<(&'static str, Kind, &str)> {
    LABELS.iter().find_map(|&(label, kind)| {
        let head = entry.get(..label.len())?;
        head.eq_ignore_ascii_case(label)
            .then(|| (label, kind, &entry[label.len()..]))
    })
}

/// Parses the list form back into typed names. Labels are matched
/// case-insensitively and `IP:` is read as `IP Address:`. A comma splits
/// entries only where a label follows (so `DirName:CN=a,O=b` stays whole;
/// `\,` never splits); spaces around entries are ignored, so OpenSSL's
/// `, `-separated output is read too. IPv6 addresses may be in any textual
/// form (OpenSSL writes `2001:DB8:0:0:0:0:0:7`).
pub fn parse_san_list(text: &str) -> Result<Vec<SubjectAltName>, X509Error> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let mut sans = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' if label_of(text[i + 1..].trim_start()).is_some() => {
                sans.push(entry(text[start..i].trim())?);
                start = i + 1;
            }
            _ => {}
        }
    }
    sans.push(entry(text[start..].trim())?);
    Ok(sans)
}

fn entry(entry: &str) -> Result<SubjectAltName, X509Error> {
    let (label, kind, value) = label_of(entry).ok_or_else(|| {
        X509Error::SanList(format!(
            "{entry:?} does not start with a known label (DNS:, IP Address:, URI:, email:, DirName:, othername:, Registered ID:)"
        ))
    })?;
    if value.is_empty() {
        return Err(X509Error::SanList(format!("{entry:?} has an empty value")));
    }
    let label = if kind == Kind::Ip {
        "IP Address:"
    } else {
        label
    };
    if matches!(value, "<invalid>" | "<unsupported>") {
        return Ok(SubjectAltName::Other(format!("{label}{value}")));
    }
    Ok(match kind {
        Kind::Dns => SubjectAltName::Dns(value.to_owned()),
        Kind::Uri => SubjectAltName::Uri(value.to_owned()),
        Kind::Email => SubjectAltName::Email(value.to_owned()),
        Kind::Ip => SubjectAltName::Ip(
            value
                .parse()
                .map_err(|_| X509Error::SanList(format!("{value:?} is not an IP address")))?,
        ),
        Kind::Other => SubjectAltName::Other(format!("{label}{value}")),
    })
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
            SubjectAltName::Ip("192.0.2.1".parse().unwrap()),
            SubjectAltName::Email("a@b.example".into()),
            SubjectAltName::Other(r"DirName:CN=x\,DNS:y,O=z".into()),
            SubjectAltName::Other("othername:1.3.6.1.4.1.311.20.2.3:u@x".into()),
            SubjectAltName::Other("Registered ID:1.2.3.4".into()),
            SubjectAltName::Other("IP Address:<invalid>".into()),
        ];
        let s = format_san_list(&sans);
        assert_eq!(
            s,
            r"DNS:client.example.com,URI:spiffe://example/client,IP Address:2001:db8::1,IP Address:192.0.2.1,email:a@b.example,DirName:CN=x\,DNS:y,O=z,othername:1.3.6.1.4.1.311.20.2.3:u@x,Registered ID:1.2.3.4,IP Address:<invalid>"
        );
        assert_eq!(parse_san_list(&s).unwrap(), sans);
        assert_eq!(format_san_list(&[]), "");
    }

    #[test]
    fn reads_openssl_output_and_other_spellings() {
        assert_eq!(
            parse_san_list(
                "DNS:a.example, IP Address:2001:DB8:0:0:0:0:0:7, ip:192.0.2.1, Email:a@b, dirname:CN=d"
            )
            .unwrap(),
            [
                SubjectAltName::Dns("a.example".into()),
                SubjectAltName::Ip("2001:db8::7".parse().unwrap()),
                SubjectAltName::Ip("192.0.2.1".parse().unwrap()),
                SubjectAltName::Email("a@b".into()),
                SubjectAltName::Other("DirName:CN=d".into()),
            ]
        );
    }

    #[test]
    fn bad_lists_are_errors() {
        for bad in [
            "FOO:bar",
            "IP Address:300.1.1.1",
            "DNS:",
            "client.example.com",
        ] {
            assert!(
                matches!(parse_san_list(bad), Err(X509Error::SanList(_))),
                "{bad}"
            );
        }
        assert_eq!(
            parse_san_list("FOO:bar").unwrap_err().to_string(),
            "bad subject alternative name list: \"FOO:bar\" does not start with a known label (DNS:, IP Address:, URI:, email:, DirName:, othername:, Registered ID:)"
        );
        assert_eq!(parse_san_list(" ").unwrap(), vec![]);
        // A comma not followed by a label belongs to the value.
        assert_eq!(
            parse_san_list("URI:https://x.example/a,b").unwrap(),
            [SubjectAltName::Uri("https://x.example/a,b".into())]
        );
    }
}
