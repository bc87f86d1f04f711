//! Distinguished names: RFC 2253 formatting and parsing.

use crate::X509Error;

/// One attribute of a distinguished name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAttribute {
    /// Short name (`CN`, `OU`, `emailAddress` ...) or, if none is known, the
    /// dotted OID.
    pub name: String,
    /// Dotted OID.
    pub oid: String,
    /// The value as text, unescaped. A value that is not a string is `#` and
    /// the hex of its DER encoding.
    pub value: String,
    /// Whether this attribute continues the previous one's RDN (a
    /// multi-valued RDN, joined with `+`).
    pub multi_valued: bool,
}

/// OID → short name, as OpenSSL prints with `-nameopt RFC2253`.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.6", "C"),
    ("2.5.4.9", "STREET"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
    ("2.5.4.5", "serialNumber"),
    ("2.5.4.12", "title"),
    ("2.5.4.42", "GN"),
    ("2.5.4.4", "SN"),
    ("2.5.4.43", "initials"),
    ("2.5.4.65", "pseudonym"),
    ("2.5.4.44", "generationQualifier"),
    ("2.5.4.46", "dnQualifier"),
    ("2.5.4.41", "name"),
    ("2.5.4.15", "businessCategory"),
    ("2.5.4.17", "postalCode"),
    ("2.5.4.97", "organizationIdentifier"),
    ("1.3.6.1.4.1.311.60.2.1.3", "jurisdictionC"),
    ("1.3.6.1.4.1.311.60.2.1.2", "jurisdictionST"),
    ("1.3.6.1.4.1.311.60.2.1.1", "jurisdictionL"),
];

pub(crate) fn short_name(oid: &str) -> Option<&'static str> {
    SHORT_NAMES.iter().find(|(o, _)| *o == oid).map(|(_, n)| *n)
}

fn oid_for(name: &str) -> Option<&'static str> {
    SHORT_NAMES
        .iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(name))
        .map(|(o, _)| *o)
}

/// Formats attributes (in certificate order) as an RFC 2253 string: most
/// specific first, RDNs joined with `,`, multi-valued RDNs with `+`.
pub fn format_rfc2253(attrs: &[NameAttribute]) -> String {
    // Group into RDNs in certificate order, then emit them reversed.
    let mut rdns: Vec<&[NameAttribute]> = Vec::new();
    let mut start = 0;
    for i in 1..=attrs.len() {
        if i == attrs.len() || !attrs[i].multi_valued {
            rdns.push(&attrs[start..i]);
            start = i;
        }
    }
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            out.push_str(&attr.name);
            out.push('=');
            escape_value(&attr.value, &mut out);
        }
    }
    out
}

fn escape_value(value: &str, out: &mut String) {
    if value.starts_with('#') && is_hex_form(value) {
        // A DER value in hex form is written as is.
        out.push_str(value);
        return;
    }
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
}

fn is_hex_form(value: &str) -> bool {
    value.len() > 1 && value.len() % 2 == 1 && value[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses an RFC 2253 string (`CN=a\,b,OU=x+OU=y,O=c`) into attributes in
/// certificate order (the reverse of the string's order). Types may be short
/// names, dotted OIDs or `OID.`-prefixed OIDs; values may use `\` escapes
/// (`\,` or `\2C`), double quotes, or the `#hex` form (kept as given).
pub fn parse_rfc2253(text: &str) -> Result<Vec<NameAttribute>, X509Error> {
    let err = |position: usize, reason: &str| X509Error::DistinguishedName {
        position,
        reason: reason.to_owned(),
    };
    let mut rdns: Vec<Vec<NameAttribute>> = Vec::new();
    let mut current: Vec<NameAttribute> = Vec::new();
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    loop {
        // Attribute type.
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let type_start = i;
        while i < bytes.len() && bytes[i] != b'=' {
            if matches!(bytes[i], b',' | b'+' | b';') {
                return Err(err(i, "expected '=' after the attribute type"));
            }
            i += 1;
        }
        if i >= bytes.len() {
            return Err(err(type_start, "attribute without '='"));
        }
        let raw_type = text[type_start..i].trim();
        let raw_type = raw_type
            .strip_prefix("OID.")
            .or_else(|| raw_type.strip_prefix("oid."))
            .unwrap_or(raw_type);
        if raw_type.is_empty() {
            return Err(err(type_start, "empty attribute type"));
        }
        let (name, oid) = if raw_type.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            let oid = raw_type.to_owned();
            (
                short_name(&oid).map_or_else(|| oid.clone(), str::to_owned),
                oid,
            )
        } else {
            match oid_for(raw_type) {
                Some(oid) => (
                    short_name(oid).unwrap_or(raw_type).to_owned(),
                    oid.to_owned(),
                ),
                None => {
                    return Err(err(
                        type_start,
                        &format!("unknown attribute type {raw_type:?}"),
                    ));
                }
            }
        };
        i += 1; // '='

        // Attribute value.
        let mut value = String::new();
        if bytes.get(i) == Some(&b'#') {
            let start = i;
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
                i += 1;
            }
            value.push_str(&text[start..i]);
            if !is_hex_form(&value) {
                return Err(err(start, "a '#' value needs an even number of hex digits"));
            }
        } else if bytes.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err(err(i, "unterminated quoted value")),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let (c, next) = unescape(text, i).ok_or_else(|| err(i, "bad escape"))?;
                        value.push(c);
                        i = next;
                    }
                    Some(_) => {
                        let c = text[i..]
                            .chars()
                            .next()
                            .ok_or_else(|| err(i, "bad character"))?;
                        value.push(c);
                        i += c.len_utf8();
                    }
                }
            }
        } else {
            let mut pending_spaces = String::new();
            while i < bytes.len() && !matches!(bytes[i], b',' | b'+' | b';') {
                if bytes[i] == b'\\' {
                    let (c, next) = unescape(text, i).ok_or_else(|| err(i, "bad escape"))?;
                    value.push_str(&pending_spaces);
                    pending_spaces.clear();
                    value.push(c);
                    i = next;
                } else if matches!(bytes[i], b'"' | b'<' | b'>' | b'=') {
                    return Err(err(i, "special character must be escaped"));
                } else {
                    let c = text[i..]
                        .chars()
                        .next()
                        .ok_or_else(|| err(i, "bad character"))?;
                    // Unescaped trailing spaces are not part of the value.
                    if c == ' ' {
                        pending_spaces.push(c);
                    } else {
                        value.push_str(&pending_spaces);
                        pending_spaces.clear();
                        value.push(c);
                    }
                    i += c.len_utf8();
                }
            }
        }
        current.push(NameAttribute {
            name,
            oid,
            value,
            multi_valued: false,
        });
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        match bytes.get(i) {
            None => break,
            Some(b'+') => i += 1,
            Some(b',' | b';') => {
                rdns.push(std::mem::take(&mut current));
                i += 1;
            }
            Some(_) => return Err(err(i, "expected ',' or '+' after a value")),
        }
    }
    rdns.push(current);
    // Certificate order is the reverse of the string order.
    let mut attrs = Vec::new();
    for rdn in rdns.into_iter().rev() {
        for (j, mut attr) in rdn.into_iter().enumerate() {
            attr.multi_valued = j > 0;
            attrs.push(attr);
        }
    }
    Ok(attrs)
}

/// Reads the escape at `text[i] == '\\'`: `\c` or `\HH` (a UTF-8 byte
/// sequence of hex pairs). Returns the character and the next index.
fn unescape(text: &str, i: usize) -> Option<(char, usize)> {
    let bytes = text.as_bytes();
    let first = *bytes.get(i + 1)?;
    if first.is_ascii_hexdigit() && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit) {
        // Collect consecutive \HH pairs forming one UTF-8 character.
        let mut buf = Vec::new();
        let mut j = i;
        while bytes.get(j) == Some(&b'\\')
            && bytes.get(j + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(j + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            buf.push(u8::from_str_radix(&text[j + 1..j + 3], 16).ok()?);
            j += 3;
            if let Ok(s) = std::str::from_utf8(&buf) {
                return s.chars().next().map(|c| (c, j));
            }
            if buf.len() >= 4 {
                return None;
            }
        }
        return None;
    }
    let c = text[i + 1..].chars().next()?;
    Some((c, i + 1 + c.len_utf8()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(name: &str, oid: &str, value: &str, multi: bool) -> NameAttribute {
        NameAttribute {
            name: name.into(),
            oid: oid.into(),
            value: value.into(),
            multi_valued: multi,
        }
    }

    #[test]
    fn formats_most_specific_first_with_escapes() {
        let attrs = vec![
            attr("C", "2.5.4.6", "US", false),
            attr("O", "2.5.4.10", "Acme, Inc.", false),
            attr("OU", "2.5.4.11", "a+b", false),
            attr("OU", "2.5.4.11", "second", true),
            attr("CN", "2.5.4.3", " #lead and trail ", false),
        ];
        let s = format_rfc2253(&attrs);
        assert_eq!(
            s,
            r"CN=\ #lead and trail\ ,OU=a\+b+OU=second,O=Acme\, Inc.,C=US"
        );
        assert_eq!(parse_rfc2253(&s).unwrap(), attrs);
    }

    #[test]
    fn parses_oids_hex_quotes_and_hex_escapes() {
        let attrs =
            parse_rfc2253(r#"2.5.4.3=caf\C3\A9,OID.2.5.4.10="x, y",1.2.3.4=#0403414243"#).unwrap();
        assert_eq!(attrs[0], attr("1.2.3.4", "1.2.3.4", "#0403414243", false));
        assert_eq!(attrs[1], attr("O", "2.5.4.10", "x, y", false));
        assert_eq!(attrs[2], attr("CN", "2.5.4.3", "café", false));
        assert_eq!(parse_rfc2253("cn=a, o=b").unwrap()[0].name, "O");
    }

    #[test]
    fn reports_bad_names_with_a_position() {
        for bad in [
            "CN",
            "CN=a,",
            "XX=a",
            "CN=a\"b",
            "CN=#abc",
            "CN=\"open",
            "=a",
        ] {
            let e = parse_rfc2253(bad).unwrap_err();
            assert!(
                matches!(e, X509Error::DistinguishedName { .. }),
                "{bad}: {e}"
            );
        }
        assert_eq!(parse_rfc2253("").unwrap(), vec![]);
    }
}
