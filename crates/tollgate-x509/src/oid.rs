//! Object identifiers this crate names: distinguished-name attribute types
//! (with the short names OpenSSL prints under `-nameopt RFC2253`) and
//! extended key usages. OIDs are matched on their DER content bytes, so a
//! parse never builds a dotted string for a known OID.

/// A distinguished-name attribute type.
#[derive(Debug)]
pub(crate) struct AttrType {
    /// DER content bytes of the OID.
    pub der: &'static [u8],
    /// Dotted form.
    pub oid: &'static str,
    /// The name a formatted DN uses: RFC 2253's (`CN`, `STREET`, ...) or
    /// OpenSSL's short name.
    pub short: &'static str,
    /// OpenSSL's long name (`commonName`), accepted when parsing.
    pub long: &'static str,
}

const fn at(
    der: &'static [u8],
    oid: &'static str,
    short: &'static str,
    long: &'static str,
) -> AttrType {
    AttrType {
        der,
        oid,
        short,
        long,
    }
}

/// X.520 attributes, `2.5.4.n`, sorted by `n` (the last DER byte).
static X520: &[AttrType] = &[
    at(&[0x55, 0x04, 0x03], "2.5.4.3", "CN", "commonName"),
    at(&[0x55, 0x04, 0x04], "2.5.4.4", "SN", "surname"),
    at(
        &[0x55, 0x04, 0x05],
        "2.5.4.5",
        "serialNumber",
        "serialNumber",
    ),
    at(&[0x55, 0x04, 0x06], "2.5.4.6", "C", "countryName"),
    at(&[0x55, 0x04, 0x07], "2.5.4.7", "L", "localityName"),
    at(&[0x55, 0x04, 0x08], "2.5.4.8", "ST", "stateOrProvinceName"),
    at(&[0x55, 0x04, 0x09], "2.5.4.9", "STREET", "streetAddress"),
    at(&[0x55, 0x04, 0x0a], "2.5.4.10", "O", "organizationName"),
    at(
        &[0x55, 0x04, 0x0b],
        "2.5.4.11",
        "OU",
        "organizationalUnitName",
    ),
    at(&[0x55, 0x04, 0x0c], "2.5.4.12", "title", "title"),
    at(
        &[0x55, 0x04, 0x0d],
        "2.5.4.13",
        "description",
        "description",
    ),
    at(
        &[0x55, 0x04, 0x0e],
        "2.5.4.14",
        "searchGuide",
        "searchGuide",
    ),
    at(
        &[0x55, 0x04, 0x0f],
        "2.5.4.15",
        "businessCategory",
        "businessCategory",
    ),
    at(
        &[0x55, 0x04, 0x10],
        "2.5.4.16",
        "postalAddress",
        "postalAddress",
    ),
    at(&[0x55, 0x04, 0x11], "2.5.4.17", "postalCode", "postalCode"),
    at(
        &[0x55, 0x04, 0x12],
        "2.5.4.18",
        "postOfficeBox",
        "postOfficeBox",
    ),
    at(
        &[0x55, 0x04, 0x13],
        "2.5.4.19",
        "physicalDeliveryOfficeName",
        "physicalDeliveryOfficeName",
    ),
    at(
        &[0x55, 0x04, 0x14],
        "2.5.4.20",
        "telephoneNumber",
        "telephoneNumber",
    ),
    at(
        &[0x55, 0x04, 0x15],
        "2.5.4.21",
        "telexNumber",
        "telexNumber",
    ),
    at(
        &[0x55, 0x04, 0x16],
        "2.5.4.22",
        "teletexTerminalIdentifier",
        "teletexTerminalIdentifier",
    ),
    at(
        &[0x55, 0x04, 0x17],
        "2.5.4.23",
        "facsimileTelephoneNumber",
        "facsimileTelephoneNumber",
    ),
    at(
        &[0x55, 0x04, 0x18],
        "2.5.4.24",
        "x121Address",
        "x121Address",
    ),
    at(
        &[0x55, 0x04, 0x19],
        "2.5.4.25",
        "internationaliSDNNumber",
        "internationaliSDNNumber",
    ),
    at(
        &[0x55, 0x04, 0x1a],
        "2.5.4.26",
        "registeredAddress",
        "registeredAddress",
    ),
    at(
        &[0x55, 0x04, 0x1b],
        "2.5.4.27",
        "destinationIndicator",
        "destinationIndicator",
    ),
    at(
        &[0x55, 0x04, 0x1c],
        "2.5.4.28",
        "preferredDeliveryMethod",
        "preferredDeliveryMethod",
    ),
    at(
        &[0x55, 0x04, 0x1d],
        "2.5.4.29",
        "presentationAddress",
        "presentationAddress",
    ),
    at(
        &[0x55, 0x04, 0x1e],
        "2.5.4.30",
        "supportedApplicationContext",
        "supportedApplicationContext",
    ),
    at(&[0x55, 0x04, 0x1f], "2.5.4.31", "member", "member"),
    at(&[0x55, 0x04, 0x20], "2.5.4.32", "owner", "owner"),
    at(
        &[0x55, 0x04, 0x21],
        "2.5.4.33",
        "roleOccupant",
        "roleOccupant",
    ),
    at(&[0x55, 0x04, 0x22], "2.5.4.34", "seeAlso", "seeAlso"),
    at(
        &[0x55, 0x04, 0x23],
        "2.5.4.35",
        "userPassword",
        "userPassword",
    ),
    at(
        &[0x55, 0x04, 0x24],
        "2.5.4.36",
        "userCertificate",
        "userCertificate",
    ),
    at(
        &[0x55, 0x04, 0x25],
        "2.5.4.37",
        "cACertificate",
        "cACertificate",
    ),
    at(
        &[0x55, 0x04, 0x26],
        "2.5.4.38",
        "authorityRevocationList",
        "authorityRevocationList",
    ),
    at(
        &[0x55, 0x04, 0x27],
        "2.5.4.39",
        "certificateRevocationList",
        "certificateRevocationList",
    ),
    at(
        &[0x55, 0x04, 0x28],
        "2.5.4.40",
        "crossCertificatePair",
        "crossCertificatePair",
    ),
    at(&[0x55, 0x04, 0x29], "2.5.4.41", "name", "name"),
    at(&[0x55, 0x04, 0x2a], "2.5.4.42", "GN", "givenName"),
    at(&[0x55, 0x04, 0x2b], "2.5.4.43", "initials", "initials"),
    at(
        &[0x55, 0x04, 0x2c],
        "2.5.4.44",
        "generationQualifier",
        "generationQualifier",
    ),
    at(
        &[0x55, 0x04, 0x2d],
        "2.5.4.45",
        "x500UniqueIdentifier",
        "x500UniqueIdentifier",
    ),
    at(
        &[0x55, 0x04, 0x2e],
        "2.5.4.46",
        "dnQualifier",
        "dnQualifier",
    ),
    at(
        &[0x55, 0x04, 0x2f],
        "2.5.4.47",
        "enhancedSearchGuide",
        "enhancedSearchGuide",
    ),
    at(
        &[0x55, 0x04, 0x30],
        "2.5.4.48",
        "protocolInformation",
        "protocolInformation",
    ),
    at(
        &[0x55, 0x04, 0x31],
        "2.5.4.49",
        "distinguishedName",
        "distinguishedName",
    ),
    at(
        &[0x55, 0x04, 0x32],
        "2.5.4.50",
        "uniqueMember",
        "uniqueMember",
    ),
    at(
        &[0x55, 0x04, 0x33],
        "2.5.4.51",
        "houseIdentifier",
        "houseIdentifier",
    ),
    at(
        &[0x55, 0x04, 0x34],
        "2.5.4.52",
        "supportedAlgorithms",
        "supportedAlgorithms",
    ),
    at(
        &[0x55, 0x04, 0x35],
        "2.5.4.53",
        "deltaRevocationList",
        "deltaRevocationList",
    ),
    at(&[0x55, 0x04, 0x36], "2.5.4.54", "dmdName", "dmdName"),
    at(&[0x55, 0x04, 0x41], "2.5.4.65", "pseudonym", "pseudonym"),
    at(&[0x55, 0x04, 0x48], "2.5.4.72", "role", "role"),
    at(
        &[0x55, 0x04, 0x61],
        "2.5.4.97",
        "organizationIdentifier",
        "organizationIdentifier",
    ),
    at(&[0x55, 0x04, 0x62], "2.5.4.98", "c3", "countryCode3c"),
    at(&[0x55, 0x04, 0x63], "2.5.4.99", "n3", "countryCode3n"),
    at(&[0x55, 0x04, 0x64], "2.5.4.100", "dnsName", "dnsName"),
];

/// Attributes outside `2.5.4`, most common first.
static OTHER: &[AttrType] = &[
    at(
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
        "1.2.840.113549.1.9.1",
        "emailAddress",
        "emailAddress",
    ),
    at(
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19],
        "0.9.2342.19200300.100.1.25",
        "DC",
        "domainComponent",
    ),
    at(
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01],
        "0.9.2342.19200300.100.1.1",
        "UID",
        "userId",
    ),
    at(
        &[
            0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x3c, 0x02, 0x01, 0x03,
        ],
        "1.3.6.1.4.1.311.60.2.1.3",
        "jurisdictionC",
        "jurisdictionCountryName",
    ),
    at(
        &[
            0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x3c, 0x02, 0x01, 0x02,
        ],
        "1.3.6.1.4.1.311.60.2.1.2",
        "jurisdictionST",
        "jurisdictionStateOrProvinceName",
    ),
    at(
        &[
            0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x3c, 0x02, 0x01, 0x01,
        ],
        "1.3.6.1.4.1.311.60.2.1.1",
        "jurisdictionL",
        "jurisdictionLocalityName",
    ),
    at(
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x02],
        "1.2.840.113549.1.9.2",
        "unstructuredName",
        "unstructuredName",
    ),
    at(
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x08],
        "1.2.840.113549.1.9.8",
        "unstructuredAddress",
        "unstructuredAddress",
    ),
    at(
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x03],
        "0.9.2342.19200300.100.1.3",
        "mail",
        "rfc822Mailbox",
    ),
];

/// Other spellings accepted when parsing a DN string (Microsoft and Java
/// tools write `E=` and `S=`), besides the short and long names.
const ALIASES: &[(&str, &str)] = &[
    ("E", "1.2.840.113549.1.9.1"),
    ("EMAIL", "1.2.840.113549.1.9.1"),
    ("S", "2.5.4.8"),
];

/// The attribute type with these DER content bytes.
pub(crate) fn attr_by_der(der: &[u8]) -> Option<&'static AttrType> {
    if let [0x55, 0x04, n] = der {
        return X520
            .binary_search_by_key(n, |a| a.der[2])
            .ok()
            .map(|i| &X520[i]);
    }
    OTHER.iter().find(|a| a.der == der)
}

/// The attribute type with this dotted OID.
pub(crate) fn attr_by_oid(oid: &str) -> Option<&'static AttrType> {
    X520.iter().chain(OTHER).find(|a| a.oid == oid)
}

/// The attribute type with this short name, long name or alias, compared
/// case-insensitively.
pub(crate) fn attr_by_name(name: &str) -> Option<&'static AttrType> {
    X520.iter()
        .chain(OTHER)
        .find(|a| a.short.eq_ignore_ascii_case(name) || a.long.eq_ignore_ascii_case(name))
        .or_else(|| {
            ALIASES
                .iter()
                .find(|(alias, _)| alias.eq_ignore_ascii_case(name))
                .and_then(|(_, oid)| attr_by_oid(oid))
        })
}

/// Extended key usage purposes by DER content bytes, in RFC 5280 order.
const EKUS: &[(&[u8], &str)] = &[
    (
        &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01],
        "serverAuth",
    ),
    (
        &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02],
        "clientAuth",
    ),
    (
        &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03],
        "codeSigning",
    ),
    (
        &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x04],
        "emailProtection",
    ),
    (
        &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08],
        "timeStamping",
    ),
    (
        &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x09],
        "OCSPSigning",
    ),
    (&[0x55, 0x1d, 0x25, 0x00], "any"),
];

/// The name of an extended key usage purpose (`clientAuth`), if known.
pub(crate) fn eku_name(der: &[u8]) -> Option<&'static str> {
    EKUS.iter().find(|(d, _)| *d == der).map(|(_, n)| *n)
}

/// The dotted form of an OID from its DER content bytes; `None` if the bytes
/// are not a valid OID or an arc does not fit in 128 bits.
pub(crate) fn dotted(der: &[u8]) -> Option<String> {
    use std::fmt::Write;
    if der.is_empty() || der[der.len() - 1] & 0x80 != 0 {
        return None;
    }
    let mut out = String::with_capacity(der.len() * 3);
    let mut value: u128 = 0;
    let mut first = true;
    for (i, &b) in der.iter().enumerate() {
        // A leading 0x80 would be a non-minimal encoding.
        if value == 0 && b == 0x80 && (i == 0 || der[i - 1] & 0x80 == 0) {
            return None;
        }
        if value.leading_zeros() < 7 {
            return None;
        }
        value = (value << 7) | u128::from(b & 0x7f);
        if b & 0x80 == 0 {
            if first {
                let (a, b) = match value {
                    0..=39 => (0, value),
                    40..=79 => (1, value - 40),
                    _ => (2, value - 80),
                };
                let _ = write!(out, "{a}.{b}");
                first = false;
            } else {
                let _ = write!(out, ".{value}");
            }
            value = 0;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written DER bytes agree with the dotted strings, and the
    /// X.520 table is sorted for the binary search.
    #[test]
    fn tables_are_consistent() {
        for a in X520.iter().chain(OTHER) {
            assert_eq!(dotted(a.der).as_deref(), Some(a.oid), "{}", a.short);
            assert!(std::ptr::eq(attr_by_der(a.der).unwrap(), a));
            assert!(std::ptr::eq(attr_by_oid(a.oid).unwrap(), a));
            assert!(std::ptr::eq(attr_by_name(a.short).unwrap(), a));
            assert!(std::ptr::eq(attr_by_name(a.long).unwrap(), a));
        }
        assert!(X520.windows(2).all(|w| w[0].der[2] < w[1].der[2]));
        assert_eq!(attr_by_name("e").unwrap().short, "emailAddress");
        assert_eq!(attr_by_name("street").unwrap().short, "STREET");
        assert_eq!(attr_by_name("commonname").unwrap().short, "CN");
        assert!(attr_by_name("nope").is_none());
        assert!(attr_by_der(&[0x55, 0x04, 0x7f]).is_none());
    }

    #[test]
    fn dotted_oids() {
        assert_eq!(dotted(&[0x2a, 0x03]).as_deref(), Some("1.2.3"));
        assert_eq!(
            dotted(&[0x55, 0x1d, 0x25, 0x00]).as_deref(),
            Some("2.5.29.37.0")
        );
        // 2.999.3: the first subidentifier is 999 + 80 = 1079.
        assert_eq!(dotted(&[0x88, 0x37, 0x03]).as_deref(), Some("2.999.3"));
        // A 128-bit UUID arc (2.25.<uuid>).
        let mut uuid = vec![0x69];
        uuid.extend([0x83, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        uuid.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert_eq!(
            dotted(&uuid).as_deref(),
            Some("2.25.340282366920938463463374607431768211455")
        );
        assert_eq!(dotted(&[]), None);
        assert_eq!(dotted(&[0x2a, 0x83]), None);
        assert_eq!(dotted(&[0x80, 0x01]), None);
        assert_eq!(
            eku_name(&[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02]),
            Some("clientAuth")
        );
    }
}
