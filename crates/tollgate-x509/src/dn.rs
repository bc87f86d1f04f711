//! Distinguished names: reading them from DER, RFC 2253 formatting and
//! parsing.
//!
//! Formatting follows `openssl x509 -nameopt RFC2253,-esc_msb` (and, with
//! [`format_rfc2253_ascii`], plain `-nameopt RFC2253`), except that
//! streetAddress is `STREET` as RFC 2253 names it (OpenSSL writes `street`).

use crate::{X509Error, der, oid};

/// One attribute of a distinguished name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAttribute {
    /// Short name (`CN`, `OU`, `emailAddress` ...) or, if none is known, the
    /// dotted OID.
    pub name: String,
    /// Dotted OID.
    pub oid: String,
    /// The value as text, unescaped. When [`der_hex`](Self::der_hex) is set
    /// it is instead `#` and the uppercase hex of the value's DER encoding
    /// (`#0C03616263`).
    pub value: String,
    /// Whether this attribute continues the previous one's RDN (a
    /// multi-valued RDN, joined with `+`).
    pub multi_valued: bool,
    /// Whether `value` is the `#hex` form: an attribute type without a known
    /// name, a value that is not a decodable string, or a `#hex` value in a
    /// parsed DN string. It is written unescaped, where a text value that
    /// starts with `#` is written `\#`.
    pub der_hex: bool,
}

impl NameAttribute {
    /// A text attribute, with `name` a short name, long name or dotted OID
    /// (as [`parse_rfc2253`] accepts). `None` for an unknown name.
    pub fn new(name: &str, value: &str) -> Option<NameAttribute> {
        let (name, oid) = resolve_type(name)?;
        Some(NameAttribute {
            name,
            oid,
            value: value.to_owned(),
            multi_valued: false,
            der_hex: false,
        })
    }

    /// The same attribute, marked as continuing the previous one's RDN.
    pub fn joined(mut self) -> NameAttribute {
        self.multi_valued = true;
        self
    }
}

/// (name, dotted OID) for a type as written in a DN string: a known short
/// or long name, or a dotted OID with an optional `OID.` prefix.
fn resolve_type(raw: &str) -> Option<(String, String)> {
    let raw = match raw.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("oid.") => &raw[4..],
        _ => raw,
    };
    if is_dotted_oid(raw) {
        return Some(match oid::attr_by_oid(raw) {
            Some(a) => (a.short.to_owned(), a.oid.to_owned()),
            None => (raw.to_owned(), raw.to_owned()),
        });
    }
    oid::attr_by_name(raw).map(|a| (a.short.to_owned(), a.oid.to_owned()))
}

fn is_dotted_oid(s: &str) -> bool {
    let mut arcs = 0;
    for arc in s.split('.') {
        let minimal = arc == "0" || !arc.starts_with('0');
        if arc.is_empty() || !minimal || !arc.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        arcs += 1;
    }
    arcs >= 2
}

/// Values of the attributes with this name, in certificate order. `name`
/// is a short or long name or alias (case-insensitive: `CN`, `cn`,
/// `commonName`, `E`) or a dotted OID (`2.5.4.3`). The lookup behind
/// [`CertInfo::subject_attribute`](crate::CertInfo::subject_attribute), for
/// attributes from [`parse_rfc2253`] too.
pub fn attribute_values<'a>(attrs: &'a [NameAttribute], name: &str) -> Vec<&'a str> {
    let oid = oid::attr_by_name(name).map_or(name, |a| a.oid);
    attrs
        .iter()
        .filter(|a| a.oid == oid || a.name.eq_ignore_ascii_case(name))
        .map(|a| a.value.as_str())
        .collect()
}

/// Reads a DER `Name` (SEQUENCE OF SET OF AttributeTypeAndValue) into
/// attributes in certificate order.
pub(crate) fn attributes_from_der(name: &[u8]) -> Result<Vec<NameAttribute>, X509Error> {
    let bad = || X509Error::NotDer("malformed distinguished name".to_owned());
    let (seq, _) = der::read(name).ok_or_else(bad)?;
    if !seq.is(0x30) {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(8);
    let mut rdns = seq.contents;
    while !rdns.is_empty() {
        let (set, rest) = der::read(rdns).ok_or_else(bad)?;
        rdns = rest;
        if !set.is(0x31) {
            return Err(bad());
        }
        let mut atvs = set.contents;
        let mut first = true;
        while !atvs.is_empty() {
            let (atv, rest) = der::read(atvs).ok_or_else(bad)?;
            atvs = rest;
            let (oid_tlv, rest) = der::read(atv.contents).ok_or_else(bad)?;
            let (value, _) = der::read(rest).ok_or_else(bad)?;
            if !atv.is(0x30) || !oid_tlv.is(0x06) {
                return Err(bad());
            }
            out.push(attribute(oid_tlv.contents, value, !first)?);
            first = false;
        }
    }
    Ok(out)
}

fn attribute(
    oid_der: &[u8],
    value: der::Tlv<'_>,
    multi_valued: bool,
) -> Result<NameAttribute, X509Error> {
    let known = oid::attr_by_der(oid_der);
    let (name, oid) = match known {
        Some(a) => (a.short.to_owned(), a.oid.to_owned()),
        None => {
            let dotted = oid::dotted(oid_der)
                .ok_or_else(|| X509Error::NotDer("malformed attribute type OID".to_owned()))?;
            (dotted.clone(), dotted)
        }
    };
    // As OpenSSL: attributes of unknown types are always dumped.
    let text = match known {
        Some(_) => decode_string(value),
        None => None,
    };
    let (value, der_hex) = match text {
        Some(text) => (text, false),
        None => (hex_dump(value.raw), true),
    };
    Ok(NameAttribute {
        name,
        oid,
        value,
        multi_valued,
        der_hex,
    })
}

/// A directory string's text: UTF8String, BMPString (UTF-16) and
/// UniversalString (UTF-32) as Unicode; the one-byte string types
/// (Printable, IA5, Teletex, Numeric, Visible, and the time types) as
/// Latin-1, as OpenSSL reads them. `None` for other types or undecodable
/// contents.
pub(crate) fn decode_string(value: der::Tlv<'_>) -> Option<String> {
    let data = value.contents;
    match value.tag {
        [0x0c] => std::str::from_utf8(data).ok().map(str::to_owned),
        [0x12 | 0x13 | 0x14 | 0x16 | 0x17 | 0x18 | 0x1a] => Some(match std::str::from_utf8(data) {
            Ok(ascii) if data.is_ascii() => ascii.to_owned(),
            _ => data.iter().map(|&b| char::from(b)).collect(),
        }),
        [0x1e] if data.len().is_multiple_of(2) => char::decode_utf16(
            data.chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]])),
        )
        .collect::<Result<String, _>>()
        .ok(),
        [0x1c] if data.len().is_multiple_of(4) => data
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

/// `#` and the uppercase hex of a DER element, as OpenSSL dumps values.
fn hex_dump(raw: &[u8]) -> String {
    let mut s = String::with_capacity(1 + raw.len() * 2);
    s.push('#');
    crate::push_hex(&mut s, raw, crate::HEX_UPPER);
    s
}

/// Formats attributes (in certificate order) as an RFC 2253 string: most
/// specific first, `,` between RDNs and `+` inside a multi-valued RDN.
/// Non-ASCII characters are written as UTF-8; control characters as `\XX`.
///
/// The whole attribute list is reversed, so the members of a multi-valued
/// RDN also appear in reverse DER order, as OpenSSL writes them.
pub fn format_rfc2253(attrs: &[NameAttribute]) -> String {
    format(attrs, false)
}

/// As [`format_rfc2253`], but ASCII only: every byte of a non-ASCII
/// character's UTF-8 is written `\XX` (`café` → `caf\C3\A9`), as plain
/// `openssl x509 -nameopt RFC2253` does. [`parse_rfc2253`] reads it back.
pub fn format_rfc2253_ascii(attrs: &[NameAttribute]) -> String {
    format(attrs, true)
}

fn format(attrs: &[NameAttribute], ascii: bool) -> String {
    let len: usize = attrs.iter().map(|a| a.name.len() + a.value.len() + 2).sum();
    let mut out = String::with_capacity(len + len / 8);
    for (i, attr) in attrs.iter().enumerate().rev() {
        if let Some(next) = attrs.get(i + 1) {
            out.push(if next.multi_valued { '+' } else { ',' });
        }
        out.push_str(&attr.name);
        out.push('=');
        if attr.der_hex {
            out.push_str(&attr.value);
        } else {
            escape_value(&attr.value, ascii, &mut out);
        }
    }
    out
}

/// Whether a byte never needs escaping in any position.
fn plain_byte(b: u8, ascii: bool) -> bool {
    !(b.is_ascii_control()
        || matches!(b, b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';')
        || (ascii && !b.is_ascii()))
}

fn escape_value(value: &str, ascii: bool, out: &mut String) {
    let bytes = value.as_bytes();
    let ends_plain =
        |b: Option<&u8>, first: bool| b.is_none_or(|&b| b != b' ' && !(first && b == b'#'));
    if bytes.iter().all(|&b| plain_byte(b, ascii))
        && ends_plain(bytes.first(), true)
        && ends_plain(bytes.last(), false)
    {
        out.push_str(value);
        return;
    }
    let last = value.len().saturating_sub(1);
    for (i, c) in value.char_indices() {
        let backslash = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if backslash {
            out.push('\\');
            out.push(c);
        } else if c.is_ascii_control() || (ascii && !c.is_ascii()) {
            let mut buf = [0; 4];
            for &b in c.encode_utf8(&mut buf).as_bytes() {
                out.push('\\');
                crate::push_hex(out, &[b], crate::HEX_UPPER);
            }
        } else {
            out.push(c);
        }
    }
}

/// Parses an RFC 2253 string (`CN=a\,b,OU=x+OU=y,O=c`) into attributes in
/// certificate order (the reverse of the string's order, as
/// [`format_rfc2253`] writes them).
///
/// Types are short or long names (case-insensitive; also `E`/`EMAIL` and
/// `S`), dotted OIDs or `OID.`-prefixed OIDs. Values may use `\` escapes
/// (`\,` or `\2C`, and `\C3\A9` for UTF-8), double quotes, or the `#hex`
/// form, which is kept as given (with [`NameAttribute::der_hex`] set). `;`
/// separates RDNs like `,`; spaces around separators and around `=` are
/// ignored. An empty string is an empty name.
pub fn parse_rfc2253(text: &str) -> Result<Vec<NameAttribute>, X509Error> {
    Parser { text, pos: 0 }.parse()
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, position: usize, reason: impl Into<String>) -> X509Error {
        X509Error::DistinguishedName {
            position,
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn parse(mut self) -> Result<Vec<NameAttribute>, X509Error> {
        let mut attrs = Vec::new();
        if self.text.trim().is_empty() {
            return Ok(attrs);
        }
        loop {
            let (name, oid) = self.attribute_type()?;
            let (value, der_hex) = self.attribute_value()?;
            attrs.push(NameAttribute {
                name,
                oid,
                value,
                multi_valued: false,
                der_hex,
            });
            self.skip_spaces();
            match self.peek() {
                None => break,
                Some(b'+') => {
                    // In certificate order the next attribute comes first,
                    // and this one continues its RDN.
                    if let Some(last) = attrs.last_mut() {
                        last.multi_valued = true;
                    }
                }
                Some(b',' | b';') => {}
                Some(_) => {
                    return Err(self.err(self.pos, "expected ',' or '+' after a value"));
                }
            }
            self.pos += 1;
        }
        attrs.reverse();
        Ok(attrs)
    }

    fn attribute_type(&mut self) -> Result<(String, String), X509Error> {
        self.skip_spaces();
        let start = self.pos;
        let bytes = self.text.as_bytes();
        while self.pos < bytes.len() && bytes[self.pos] != b'=' {
            if matches!(bytes[self.pos], b',' | b'+' | b';') {
                return Err(self.err(self.pos, "expected '=' after the attribute type"));
            }
            self.pos += 1;
        }
        if self.pos >= bytes.len() {
            return Err(self.err(start, "attribute without '='"));
        }
        let raw = self.text[start..self.pos].trim_end_matches(' ');
        if raw.is_empty() {
            return Err(self.err(start, "empty attribute type"));
        }
        self.pos += 1; // '='
        resolve_type(raw).ok_or_else(|| self.err(start, format!("unknown attribute type {raw:?}")))
    }

    fn attribute_value(&mut self) -> Result<(String, bool), X509Error> {
        self.skip_spaces();
        match self.peek() {
            Some(b'#') => self.hex_value().map(|v| (v, true)),
            Some(b'"') => self.quoted_value().map(|v| (v, false)),
            _ => self.plain_value().map(|v| (v, false)),
        }
    }

    fn hex_value(&mut self) -> Result<String, X509Error> {
        let start = self.pos;
        self.pos += 1;
        while self.peek().is_some_and(|b| b.is_ascii_hexdigit()) {
            self.pos += 1;
        }
        let digits = self.pos - start - 1;
        if digits == 0 || digits % 2 == 1 {
            return Err(self.err(start, "a '#' value needs an even number of hex digits"));
        }
        let value = self.text[start..self.pos].to_owned();
        self.skip_spaces();
        match self.peek() {
            None | Some(b',' | b'+' | b';') => Ok(value),
            Some(_) => Err(self.err(self.pos, "a '#' value may only hold hex digits")),
        }
    }

    fn quoted_value(&mut self) -> Result<String, X509Error> {
        let open = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            match self.peek() {
                None => return Err(self.err(open, "unterminated quoted value")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(value);
                }
                Some(b'\\') => value.push(self.escape()?),
                Some(_) => value.push(self.next_char()),
            }
        }
    }

    fn plain_value(&mut self) -> Result<String, X509Error> {
        let mut value = String::new();
        // Unescaped trailing spaces are not part of the value.
        let mut spaces = 0;
        loop {
            match self.peek() {
                None | Some(b',' | b'+' | b';') => return Ok(value),
                Some(b'\\') => {
                    value.extend(std::iter::repeat_n(' ', spaces));
                    spaces = 0;
                    value.push(self.escape()?);
                }
                Some(b' ') => {
                    spaces += 1;
                    self.pos += 1;
                }
                Some(b @ (b'"' | b'<' | b'>')) => {
                    return Err(self.err(
                        self.pos,
                        format!("{:?} must be escaped with '\\'", char::from(b)),
                    ));
                }
                Some(_) => {
                    value.extend(std::iter::repeat_n(' ', spaces));
                    spaces = 0;
                    value.push(self.next_char());
                }
            }
        }
    }

    fn next_char(&mut self) -> char {
        let c = self.text[self.pos..].chars().next().unwrap_or('\0');
        self.pos += c.len_utf8();
        c
    }

    /// Reads the escape at a `\`: `\c`, or a run of `\HH` pairs forming one
    /// UTF-8 character.
    fn escape(&mut self) -> Result<char, X509Error> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let hex_pair = |at: usize| {
            bytes.get(at) == Some(&b'\\')
                && bytes.get(at + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(at + 2).is_some_and(u8::is_ascii_hexdigit)
        };
        if !hex_pair(start) {
            self.pos += 1;
            if self.peek().is_none() {
                return Err(self.err(start, "'\\' at the end of the string"));
            }
            return Ok(self.next_char());
        }
        let mut buf = [0u8; 4];
        for n in 0..4 {
            if !hex_pair(self.pos) {
                break;
            }
            buf[n] = u8::from_str_radix(&self.text[self.pos + 1..self.pos + 3], 16)
                .map_err(|_| self.err(self.pos, "bad hex escape"))?;
            self.pos += 3;
            if let Ok(s) = std::str::from_utf8(&buf[..=n]) {
                return s
                    .chars()
                    .next()
                    .ok_or_else(|| self.err(start, "bad hex escape"));
            }
        }
        Err(self.err(start, "hex escapes that are not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(name: &str, value: &str) -> NameAttribute {
        NameAttribute::new(name, value).unwrap()
    }

    #[test]
    fn formats_most_specific_first_with_escapes() {
        let attrs = vec![
            attr("C", "US"),
            attr("O", "Acme, Inc."),
            attr("OU", "a+b"),
            attr("OU", "second").joined(),
            attr("CN", " #lead; \"and\" <trail>\\ "),
        ];
        let s = format_rfc2253(&attrs);
        assert_eq!(
            s,
            r#"CN=\ #lead\; \"and\" \<trail\>\\\ ,OU=second+OU=a\+b,O=Acme\, Inc.,C=US"#
        );
        assert_eq!(parse_rfc2253(&s).unwrap(), attrs);
    }

    #[test]
    fn escapes_controls_and_optionally_non_ascii() {
        let attrs = vec![attr("CN", "a\nb\u{1}c\u{7f}dé中=#")];
        assert_eq!(format_rfc2253(&attrs), r"CN=a\0Ab\01c\7Fdé中=#");
        let ascii = format_rfc2253_ascii(&attrs);
        assert_eq!(ascii, r"CN=a\0Ab\01c\7Fd\C3\A9\E4\B8\AD=#");
        assert_eq!(parse_rfc2253(&ascii).unwrap(), attrs);
        assert_eq!(parse_rfc2253(&format_rfc2253(&attrs)).unwrap(), attrs);
    }

    #[test]
    fn hex_values_are_written_as_is_and_text_hashes_escaped() {
        let mut hex = attr("1.2.3.4", "#0C03616263");
        hex.der_hex = true;
        let attrs = vec![hex, attr("CN", "#0C03616263")];
        let s = format_rfc2253(&attrs);
        assert_eq!(s, r"CN=\#0C03616263,1.2.3.4=#0C03616263");
        assert_eq!(parse_rfc2253(&s).unwrap(), attrs);
    }

    #[test]
    fn parses_names_oids_hex_quotes_and_hex_escapes() {
        let attrs = parse_rfc2253(
            r#"2.5.4.3=caf\C3\A9 , OID.2.5.4.10="x, y";1.2.3.4=#0403414243 + commonName = z"#,
        )
        .unwrap();
        assert_eq!(attrs.len(), 4);
        assert_eq!(attrs[0], attr("CN", "z"));
        assert_eq!(
            attrs[1],
            NameAttribute {
                name: "1.2.3.4".into(),
                oid: "1.2.3.4".into(),
                value: "#0403414243".into(),
                multi_valued: true,
                der_hex: true,
            }
        );
        assert_eq!(attrs[2], attr("O", "x, y"));
        assert_eq!(attrs[3], attr("CN", "café"));
        let lower = parse_rfc2253("cn=a, e=m@x, street=1 Main St").unwrap();
        let names: Vec<&str> = lower.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["STREET", "emailAddress", "CN"]);
        assert_eq!(parse_rfc2253("OU==eq").unwrap()[0].value, "=eq");
        assert_eq!(parse_rfc2253("CN=").unwrap()[0].value, "");
        assert_eq!(parse_rfc2253("").unwrap(), vec![]);
        assert_eq!(parse_rfc2253("  ").unwrap(), vec![]);
    }

    #[test]
    fn reports_bad_names_with_a_position() {
        for (bad, position) in [
            ("CN", 0),
            ("CN=a,", 5),
            ("CN=a,XX=b", 5),
            ("CN=a\"b", 4),
            ("CN=#abc", 3),
            ("CN=#zz", 3),
            ("CN=#00zz", 6),
            ("CN=\"open", 3),
            ("=a", 0),
            ("CN=a\\", 4),
            ("CN=\\FF", 3),
            ("CN=\"a\"b", 6),
            ("CN,O=a", 2),
            ("1.2.=a", 0),
            ("01.2=a", 0),
        ] {
            match parse_rfc2253(bad) {
                Err(X509Error::DistinguishedName { position: p, .. }) => {
                    assert_eq!(p, position, "{bad}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        let e = parse_rfc2253("CN=a,XX=b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad distinguished name at byte 5: unknown attribute type \"XX\""
        );
    }
}
