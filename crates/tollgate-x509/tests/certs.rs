//! Field formats on real certificates generated with rcgen (and, for what
//! rcgen cannot write, with the small DER builder in `builder/`), checked
//! against exact strings and, where it is installed, against `openssl x509`.

mod builder;

use std::process::Command;

use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose as Eku, KeyPair, KeyUsagePurpose as Ku, OtherNameValue, SanType,
    SerialNumber,
};
use sha2::{Digest, Sha256};
use time::macros::datetime;
use tollgate_testkit::{TestCa, write};
use tollgate_x509::{
    CertInfo, KeyUsage, NameAttribute, SubjectAltName, X509Error, attribute_values, format_rfc2253,
    format_san_list, parse_rfc2253, parse_san_list, pem, pem_encode, rfc9440_item, rfc9440_list,
    serial_bytes_from_der, serial_number_from_der, sha256_fingerprint, url_encode_alb,
    url_encode_cloudfront,
};

use builder::{Spec, bmp, extension, ia5, name, oid, printable, teletex_latin1, tlv, utf8};

/// A self-signed certificate: (DER, PEM).
fn self_signed(params: CertificateParams, key: &KeyPair) -> (Vec<u8>, String) {
    let cert = params.self_signed(key).expect("self-sign");
    (cert.der().to_vec(), cert.pem())
}

fn params_named(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// The certificate behind most name tests: every string type rcgen writes,
/// an unknown OID, two OUs and every character RFC 2253 escapes.
fn names_cert() -> Vec<u8> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CountryName,
        DnValue::PrintableString("US".try_into().unwrap()),
    );
    dn.push(DnType::StateOrProvinceName, "Washington");
    dn.push(DnType::OrganizationName, "Acme, Inc.");
    dn.push(DnType::OrganizationalUnitName, "fleet+eu");
    dn.push(
        DnType::CustomDnType(vec![2, 5, 4, 11]),
        DnValue::BmpString("Ünits".try_into().unwrap()),
    );
    dn.push(
        DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 25]),
        DnValue::Ia5String("example".try_into().unwrap()),
    );
    dn.push(
        DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
        DnValue::Ia5String("ops@example.org".try_into().unwrap()),
    );
    dn.push(
        DnType::CustomDnType(vec![1, 3, 6, 1, 4, 1, 55555, 1]),
        "custom",
    );
    dn.push(
        DnType::CustomDnType(vec![2, 5, 4, 12]),
        DnValue::UniversalString("Ωmega 😀".try_into().unwrap()),
    );
    dn.push(DnType::CommonName, " #1 <dev>; \"q\" \\ é\n ");
    params.distinguished_name = dn;
    self_signed(params, &KeyPair::generate().unwrap()).0
}

const NAMES_SUBJECT: &str = concat!(
    r#"CN=\ #1 \<dev\>\; \"q\" \\ é\0A\ ,"#,
    "title=Ωmega 😀,",
    "1.3.6.1.4.1.55555.1=#0C06637573746F6D,",
    "emailAddress=ops@example.org,",
    "DC=example,",
    "OU=Ünits,",
    r"OU=fleet\+eu,",
    r"O=Acme\, Inc.,",
    "ST=Washington,",
    "C=US"
);

/// RDNs {C}, {O, OU}, {CN}: a multi-valued RDN in the middle.
fn multi_valued_cert() -> Vec<u8> {
    let subject = name(&[
        &[("2.5.4.6", printable("US"))],
        &[("2.5.4.10", utf8("Zeta")), ("2.5.4.11", utf8("Alpha"))],
        &[("2.5.4.3", utf8("x+y"))],
    ]);
    builder::certificate(&Spec {
        subject,
        ..Spec::default()
    })
}

/// Values OpenSSL dumps as hex (a SEQUENCE, an unknown attribute type),
/// and a Latin-1 TeletexString.
fn dumped_values_cert() -> Vec<u8> {
    let subject = name(&[
        &[("2.5.4.3", builder::seq(&[tlv(0x02, &[0x05])]))],
        &[("2.5.4.7", teletex_latin1("Zürich"))],
        &[("1.2.3.4", printable("abc"))],
        &[("2.5.4.10", bmp("Bmp é"))],
    ]);
    builder::certificate(&Spec {
        subject,
        ..Spec::default()
    })
}

#[test]
fn serial_numbers_in_every_shape() {
    let key = KeyPair::generate().unwrap();
    let mut twenty_high = vec![0xff; 20];
    twenty_high[19] = 0x01;
    let cases: [(&[u8], &str, &str); 8] = [
        (
            &[0x4a, 0x3f, 0x5c, 0x92, 0xd1, 0xe8, 0x7b, 0x6c],
            "4a:3f:5c:92:d1:e8:7b:6c",
            "4A3F5C92D1E87B6C",
        ),
        // High bit: DER holds 00 9a 01.
        (&[0x9a, 0x01], "9a:01", "9A01"),
        (&[0x00, 0x9a, 0x01], "9a:01", "9A01"),
        (&[0x00, 0x00, 0x05], "05", "05"),
        (&[0x01], "01", "01"),
        (&[0x00], "00", "00"),
        (&[0x7f, 0x00], "7f:00", "7F00"),
        (
            &twenty_high,
            "ff:ff:ff:ff:ff:ff:ff:ff:ff:ff:ff:ff:ff:ff:ff:ff:ff:ff:ff:01",
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF01",
        ),
    ];
    for (bytes, colons, upper) in cases {
        let mut params = params_named("serial");
        params.serial_number = Some(SerialNumber::from_slice(bytes));
        let (der, _) = self_signed(params, &key);
        let info = CertInfo::parse(&der).unwrap();
        assert_eq!(info.serial_number(), colons);
        assert_eq!(serial_number_from_der(&der).unwrap(), colons);
        assert_eq!(info.serial_hex_upper_no_colons(), upper);
        assert_eq!(serial_bytes_from_der(&der).unwrap(), info.serial_bytes());
        assert_eq!(
            info.serial_bytes().len(),
            colons.len().div_ceil(3),
            "{colons}"
        );
    }
}

#[test]
fn fast_serial_path_agrees_with_full_parse() {
    let key = KeyPair::generate().unwrap();
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut high_bit = 0;
    for i in 0..300 {
        let len = 1 + (xorshift(&mut x) % 20) as usize;
        let serial: Vec<u8> = (0..len).map(|_| xorshift(&mut x) as u8).collect();
        high_bit += usize::from(serial[0] >= 0x80);
        let mut params = params_named(&format!("r{i}"));
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let (der, _) = self_signed(params, &key);
        let full = CertInfo::parse(&der).unwrap();
        assert_eq!(serial_number_from_der(&der).unwrap(), full.serial_number());
        assert_eq!(serial_bytes_from_der(&der).unwrap(), full.serial_bytes());
        // The magnitude is the random bytes without leading zeros.
        let start = serial.iter().take_while(|&&b| b == 0).count();
        let want = if start == serial.len() {
            &[0u8][..]
        } else {
            &serial[start..]
        };
        assert_eq!(full.serial_bytes(), want);
    }
    assert!(high_bit > 100, "{high_bit} serials with the high bit set");

    // v1 (no version field) and a negative serial (invalid, shown as its
    // two's-complement bytes) agree too.
    for (v3, serial, want) in [
        (false, vec![0x05], "05"),
        (true, vec![0x80, 0x01], "80:01"),
        (true, vec![0x00, 0xff], "ff"),
    ] {
        let der = builder::certificate(&Spec {
            v3,
            serial,
            ..Spec::default()
        });
        assert_eq!(CertInfo::parse(&der).unwrap().serial_number(), want);
        assert_eq!(serial_number_from_der(&der).unwrap(), want);
    }
}

#[test]
fn names_with_escapes_string_types_and_unknown_oids() {
    let info = CertInfo::parse(&names_cert()).unwrap();
    assert_eq!(info.subject(), NAMES_SUBJECT);
    assert_eq!(info.issuer(), NAMES_SUBJECT);
    assert_eq!(
        info.subject_ascii(),
        NAMES_SUBJECT
            .replace('é', r"\C3\A9")
            .replace('Ω', r"\CE\A9")
            .replace('😀', r"\F0\9F\98\80")
            .replace('Ü', r"\C3\9C")
    );
    let custom = &info.subject_attributes()[7];
    assert_eq!(custom.name, "1.3.6.1.4.1.55555.1");
    assert_eq!(custom.oid, "1.3.6.1.4.1.55555.1");
    assert_eq!(custom.value, "#0C06637573746F6D");
    assert!(custom.der_hex);
    assert!(info.subject_attributes().iter().all(|a| !a.multi_valued));
}

#[test]
fn multi_valued_rdns_keep_their_grouping() {
    let info = CertInfo::parse(&multi_valued_cert()).unwrap();
    // As OpenSSL: the attribute list reversed as a whole.
    assert_eq!(info.subject(), r"CN=x\+y,OU=Alpha+O=Zeta,C=US");
    let grouping: Vec<(&str, bool)> = info
        .subject_attributes()
        .iter()
        .map(|a| (a.name.as_str(), a.multi_valued))
        .collect();
    assert_eq!(
        grouping,
        [("C", false), ("O", false), ("OU", true), ("CN", false)]
    );
    assert_eq!(
        parse_rfc2253(&info.subject()).unwrap(),
        info.subject_attributes()
    );
    assert_eq!(info.issuer(), "CN=builder");
}

#[test]
fn undecodable_values_are_hex_and_one_byte_strings_latin1() {
    let info = CertInfo::parse(&dumped_values_cert()).unwrap();
    assert_eq!(
        info.subject(),
        "O=Bmp é,1.2.3.4=#1303616263,L=Zürich,CN=#3003020105"
    );
    // Values OpenSSL refuses to load: not a string, bad UTF-8, odd BMP
    // length, a UniversalString that is not a character.
    let subject = name(&[
        &[("2.5.4.5", tlv(0x02, &[0x05]))],
        &[("2.5.4.3", tlv(0x0c, &[0x66, 0xff]))],
        &[("2.5.4.11", tlv(0x1e, &[0x00, 0x41, 0x00]))],
        &[("2.5.4.11", tlv(0x1c, &[0x00, 0x11, 0x00, 0x00]))],
        &[("2.5.4.9", utf8("1 Main St"))],
        &[("0.9.2342.19200300.100.1.1", ia5("jdoe"))],
    ]);
    let der = builder::certificate(&Spec {
        subject,
        ..Spec::default()
    });
    let info = CertInfo::parse(&der).unwrap();
    assert_eq!(
        info.subject(),
        "UID=jdoe,STREET=1 Main St,OU=#1C0400110000,OU=#1E03004100,CN=#0C0266FF,serialNumber=#020105"
    );
    assert_eq!(info.subject_attribute("cn"), ["#0C0266FF"]);
    assert!(info.subject_attributes()[0].der_hex);
    assert!(!info.subject_attributes()[5].der_hex);
    assert_eq!(
        parse_rfc2253(&info.subject()).unwrap(),
        info.subject_attributes()
    );
}

#[test]
fn attribute_lookups() {
    let info = CertInfo::parse(&names_cert()).unwrap();
    for name in ["OU", "ou", "2.5.4.11", "organizationalUnitName"] {
        assert_eq!(
            info.subject_attribute(name),
            ["fleet+eu", "Ünits"],
            "{name}"
        );
    }
    assert_eq!(info.subject_attribute("CN"), [" #1 <dev>; \"q\" \\ é\n "]);
    assert_eq!(info.subject_attribute("emailaddress"), ["ops@example.org"]);
    assert_eq!(info.subject_attribute("E"), ["ops@example.org"]);
    assert_eq!(info.subject_attribute("dc"), ["example"]);
    assert_eq!(info.subject_attribute("title"), ["Ωmega 😀"]);
    assert_eq!(
        info.subject_attribute("1.3.6.1.4.1.55555.1"),
        ["#0C06637573746F6D"]
    );
    assert!(info.subject_attribute("STREET").is_empty());
    assert!(info.subject_attribute("nonsense").is_empty());
    assert_eq!(info.issuer_attribute("st"), ["Washington"]);
    let c = &info.subject_attributes()[0];
    assert_eq!(
        (c.name.as_str(), c.oid.as_str(), c.value.as_str()),
        ("C", "2.5.4.6", "US")
    );

    // A chain from the shared test PKI: issuer and subject differ.
    let root = TestCa::root("Root CA");
    let inter = root.intermediate("Issuing CA");
    let leaf = inter
        .client("device-1")
        .organization("Example Corp")
        .build();
    let info = CertInfo::parse(&leaf.der).unwrap();
    assert_eq!(info.subject(), "CN=device-1,O=Example Corp");
    assert_eq!(info.issuer(), "CN=Issuing CA,O=Tollgate Test");
    assert_eq!(info.issuer_attribute("commonName"), ["Issuing CA"]);
    assert_eq!(info.subject_attribute("O"), ["Example Corp"]);
}

#[test]
fn validity_strings() {
    let key = KeyPair::generate().unwrap();
    for (not_before, not_after, nb_unix, na_unix, header) in [
        (
            datetime!(2023-09-21 01:50:17 UTC),
            datetime!(2024-09-20 01:50:17 UTC),
            1_695_261_017,
            1_726_797_017,
            "NotBefore=2023-09-21T01:50:17Z;NotAfter=2024-09-20T01:50:17Z",
        ),
        // UTCTime's first year, and GeneralizedTime after 2049 up to the
        // RFC 5280 "no expiry" date.
        (
            datetime!(1950-01-01 00:00:00 UTC),
            datetime!(9999-12-31 23:59:59 UTC),
            -631_152_000,
            253_402_300_799,
            "NotBefore=1950-01-01T00:00:00Z;NotAfter=9999-12-31T23:59:59Z",
        ),
        (
            datetime!(2049-12-31 23:59:59 UTC),
            datetime!(2050-01-01 00:00:00 UTC),
            2_524_607_999,
            2_524_608_000,
            "NotBefore=2049-12-31T23:59:59Z;NotAfter=2050-01-01T00:00:00Z",
        ),
    ] {
        let mut params = params_named("validity");
        params.not_before = not_before;
        params.not_after = not_after;
        let (der, _) = self_signed(params, &key);
        let info = CertInfo::parse(&der).unwrap();
        assert_eq!(info.not_before_unix(), nb_unix);
        assert_eq!(info.not_after_unix(), na_unix);
        assert_eq!(info.validity_header(), header);
        assert_eq!(
            format!(
                "NotBefore={};NotAfter={}",
                info.not_before(),
                info.not_after()
            ),
            header
        );
        assert!(info.is_valid_at(nb_unix) && info.is_valid_at(na_unix));
        assert!(!info.is_valid_at(nb_unix - 1) && !info.is_valid_at(na_unix + 1));
    }
}

#[test]
fn fingerprint_is_sha256_of_the_der() {
    let der = names_cert();
    let want: String = Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sha256_fingerprint(&der), want);
    assert_eq!(want.len(), 64);
}

#[test]
fn sans_of_every_kind_and_the_list_round_trip() {
    let mut params = params_named("sans");
    params.subject_alt_names = vec![
        SanType::DnsName("client.example.com".try_into().unwrap()),
        SanType::URI("spiffe://example/client".try_into().unwrap()),
        SanType::IpAddress("192.0.2.1".parse().unwrap()),
        SanType::IpAddress("2001:db8::7".parse().unwrap()),
        SanType::Rfc822Name("a@b.example".try_into().unwrap()),
        SanType::OtherName((
            vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3],
            OtherNameValue::Utf8String("user@corp.example".into()),
        )),
    ];
    let (der, _) = self_signed(params, &KeyPair::generate().unwrap());
    let info = CertInfo::parse(&der).unwrap();
    let want = [
        SubjectAltName::Dns("client.example.com".into()),
        SubjectAltName::Uri("spiffe://example/client".into()),
        SubjectAltName::Ip("192.0.2.1".parse().unwrap()),
        SubjectAltName::Ip("2001:db8::7".parse().unwrap()),
        SubjectAltName::Email("a@b.example".into()),
        SubjectAltName::Other("othername:1.3.6.1.4.1.311.20.2.3:user@corp.example".into()),
    ];
    assert_eq!(info.subject_alt_names(), want);
    let list = info.san_list();
    assert_eq!(
        list,
        "DNS:client.example.com,URI:spiffe://example/client,IP Address:192.0.2.1,IP Address:2001:db8::7,email:a@b.example,othername:1.3.6.1.4.1.311.20.2.3:user@corp.example"
    );
    assert_eq!(format_san_list(info.subject_alt_names()), list);
    assert_eq!(parse_san_list(&list).unwrap(), want);

    // The kinds rcgen does not write, and entries that cannot be read.
    let general_names = builder::seq(&[
        tlv(
            0xa4,
            &name(&[&[("2.5.4.10", utf8("e"))], &[("2.5.4.3", utf8("d,x"))]]),
        ),
        tlv(0x88, &oid("1.2.3.5")[2..]),
        tlv(0x87, &[192, 0, 2, 0, 255, 255, 255, 0]),
        tlv(0xa3, &[]),
        tlv(
            0xa0,
            &[oid("1.2.3.4"), tlv(0xa0, &tlv(0x02, &[0x07]))].concat(),
        ),
        tlv(0x82, &[0xff]),
    ]);
    let der = builder::certificate(&Spec {
        extensions: vec![extension("2.5.29.17", &general_names)],
        ..Spec::default()
    });
    let info = CertInfo::parse(&der).unwrap();
    let list = info.san_list();
    assert_eq!(
        list,
        r"DirName:CN=d\,x,O=e,Registered ID:1.2.3.5,IP Address:<invalid>,X400Name:<unsupported>,othername:1.2.3.4:#020107,DNS:<invalid>"
    );
    assert!(
        info.subject_alt_names()
            .iter()
            .all(|s| matches!(s, SubjectAltName::Other(_)))
    );
    assert_eq!(parse_san_list(&list).unwrap(), info.subject_alt_names());

    // No extension: no names.
    let (der, _) = self_signed(params_named("none"), &KeyPair::generate().unwrap());
    let info = CertInfo::parse(&der).unwrap();
    assert!(info.subject_alt_names().is_empty());
    assert_eq!(info.san_list(), "");
}

#[test]
fn key_usage_and_extended_key_usage() {
    let key = KeyPair::generate().unwrap();
    let parse = |kus: Vec<Ku>, ekus: Vec<Eku>| {
        let mut params = params_named("usage");
        params.key_usages = kus;
        params.extended_key_usages = ekus;
        CertInfo::parse(&self_signed(params, &key).0).unwrap()
    };

    let none = parse(vec![], vec![]);
    assert_eq!(none.key_usage(), None);
    assert_eq!(none.extended_key_usage(), None);

    let info = parse(
        vec![Ku::DigitalSignature, Ku::KeyEncipherment],
        vec![Eku::ClientAuth],
    );
    assert_eq!(
        info.key_usage(),
        Some(KeyUsage::DIGITAL_SIGNATURE | KeyUsage::KEY_ENCIPHERMENT)
    );
    assert_eq!(info.key_usage().unwrap().bits(), 0b101);
    assert_eq!(
        info.extended_key_usage(),
        Some(&["clientAuth".to_owned()][..])
    );

    let all = parse(
        vec![
            Ku::DigitalSignature,
            Ku::ContentCommitment,
            Ku::KeyEncipherment,
            Ku::DataEncipherment,
            Ku::KeyAgreement,
            Ku::KeyCertSign,
            Ku::CrlSign,
            Ku::EncipherOnly,
            Ku::DecipherOnly,
        ],
        vec![
            Eku::ServerAuth,
            Eku::Other(vec![1, 2, 3, 4]),
            Eku::ClientAuth,
            Eku::Any,
            Eku::CodeSigning,
            Eku::EmailProtection,
            Eku::TimeStamping,
            Eku::OcspSigning,
        ],
    );
    assert_eq!(all.key_usage().unwrap().bits(), 0x1ff);
    assert_eq!(
        all.key_usage().unwrap().to_string(),
        "digitalSignature,contentCommitment,keyEncipherment,dataEncipherment,keyAgreement,keyCertSign,cRLSign,encipherOnly,decipherOnly"
    );
    assert_eq!(
        all.extended_key_usage().unwrap(),
        [
            "serverAuth",
            "1.2.3.4",
            "clientAuth",
            "any",
            "codeSigning",
            "emailProtection",
            "timeStamping",
            "OCSPSigning"
        ]
    );

    // Single bits land where RFC 5280 puts them.
    for (ku, bit) in [
        (Ku::KeyCertSign, KeyUsage::KEY_CERT_SIGN),
        (Ku::DecipherOnly, KeyUsage::DECIPHER_ONLY),
        (Ku::ContentCommitment, KeyUsage::CONTENT_COMMITMENT),
    ] {
        assert_eq!(parse(vec![ku], vec![]).key_usage(), Some(bit));
    }

    // A keyUsage extension with no bit set is present but empty.
    let der = builder::certificate(&Spec {
        extensions: vec![extension("2.5.29.15", &tlv(0x03, &[0x00]))],
        ..Spec::default()
    });
    assert_eq!(
        CertInfo::parse(&der).unwrap().key_usage(),
        Some(KeyUsage::empty())
    );

    // A duplicated extension is refused.
    let mut params = params_named("dup");
    params.extended_key_usages = vec![Eku::ClientAuth];
    params.custom_extensions = vec![CustomExtension::from_oid_content(
        &[2, 5, 29, 37],
        builder::seq(&[oid("1.3.6.1.5.5.7.3.1")]),
    )];
    let (der, _) = self_signed(params, &key);
    assert_eq!(
        CertInfo::parse(&der),
        Err(X509Error::Extension(
            "duplicate extKeyUsage extension".into()
        ))
    );
}

/// Decodes `%XX` escapes.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn pem_and_header_encodings() {
    // A hand-checked vector: the base64 of fb ef ff 00 is `++//AA==`.
    let der = [0xfb, 0xef, 0xff, 0x00];
    let pem = pem_encode(&der);
    assert_eq!(
        pem,
        "-----BEGIN CERTIFICATE-----\n++//AA==\n-----END CERTIFICATE-----\n"
    );
    assert_eq!(
        url_encode_cloudfront(&pem),
        "-----BEGIN%20CERTIFICATE-----%0A%2B%2B%2F%2FAA%3D%3D%0A-----END%20CERTIFICATE-----%0A"
    );
    assert_eq!(
        url_encode_alb(&pem),
        "-----BEGIN%20CERTIFICATE-----%0A++//AA==%0A-----END%20CERTIFICATE-----%0A"
    );
    assert_eq!(rfc9440_item(&der), ":++//AA==:");
    assert_eq!(rfc9440_list([&der[..], &[0x00][..]]), ":++//AA==:, :AA==:");
    assert_eq!(url_encode_cloudfront("a b~c_d.e-f"), "a%20b~c_d.e-f");

    // A real certificate: the same PEM rcgen writes (it uses CRLF).
    let key = KeyPair::generate().unwrap();
    let (der, rcgen_pem) = self_signed(params_named("pem"), &key);
    let pem = pem_encode(&der);
    assert_eq!(pem, rcgen_pem.replace("\r\n", "\n"));
    assert!(pem.lines().all(|l| l.len() <= 64));
    assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
    assert_eq!(
        pem::parse_certificates(pem.as_bytes()).unwrap(),
        std::slice::from_ref(&der)
    );

    let cf = url_encode_cloudfront(&pem);
    assert!(cf.starts_with("-----BEGIN%20CERTIFICATE-----%0AMII"));
    assert!(cf.ends_with("%0A-----END%20CERTIFICATE-----%0A"));
    assert!(
        cf.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b))
    );
    assert_eq!(percent_decode(&cf), pem);
    let alb = url_encode_alb(&pem);
    assert_eq!(
        alb,
        cf.replace("%2B", "+")
            .replace("%2F", "/")
            .replace("%3D", "=")
    );
    assert_eq!(percent_decode(&alb), pem);

    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert_eq!(rfc9440_item(&der), format!(":{body}:"));
}

#[test]
fn pem_bundles_skip_other_blocks() {
    let ca = TestCa::root("PEM CA");
    let a = ca.client("a").build();
    let b = ca.client("b").build();
    let bundle = format!("# a comment\n{}\n{}{}", a.pem, a.key_pem, b.pem);
    let ders = pem::parse_certificates(bundle.as_bytes()).unwrap();
    assert_eq!(
        ders,
        [a.der.clone(), b.der.clone()],
        "keys are skipped, order kept"
    );
    assert!(
        pem::parse_certificates(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
            .is_err()
    );
}

#[test]
fn dn_strings_round_trip_through_the_parser() {
    for der in [names_cert(), multi_valued_cert(), dumped_values_cert()] {
        let info = CertInfo::parse(&der).unwrap();
        for text in [info.subject(), info.subject_ascii()] {
            let parsed = parse_rfc2253(&text).unwrap();
            assert_eq!(parsed, info.subject_attributes(), "{text}");
            assert_eq!(format_rfc2253(&parsed), info.subject());
        }
    }
    // Attributes built by hand format and parse back.
    let attrs = vec![
        NameAttribute::new("DC", "example").unwrap(),
        NameAttribute::new("DC", "org").unwrap(),
        NameAttribute::new("UID", "jdoe").unwrap(),
        NameAttribute::new("CN", "J. Doe").unwrap().joined(),
    ];
    let text = format_rfc2253(&attrs);
    assert_eq!(text, "CN=J. Doe+UID=jdoe,DC=org,DC=example");
    assert_eq!(parse_rfc2253(&text).unwrap(), attrs);
    assert!(NameAttribute::new("nonsense", "x").is_none());
    let parsed = parse_rfc2253("CN=a,OU=x+OU=y").unwrap();
    assert_eq!(
        attribute_values(&parsed, "organizationalUnitName"),
        ["y", "x"]
    );
    assert_eq!(attribute_values(&parsed, "2.5.4.3"), ["a"]);
    assert!(matches!(
        parse_rfc2253("CN=a,,O=b"),
        Err(X509Error::DistinguishedName { position: 5, .. })
    ));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let der = names_cert();
    for len in 0..der.len() {
        assert!(CertInfo::parse(&der[..len]).is_err(), "prefix {len}");
        assert!(serial_number_from_der(&der[..len]).is_err(), "prefix {len}");
    }
    let mut trailing = der.clone();
    trailing.extend([0, 0]);
    assert_eq!(CertInfo::parse(&trailing), Err(X509Error::TrailingData(2)));
    assert_eq!(
        serial_number_from_der(&trailing),
        Err(X509Error::TrailingData(2))
    );
    // Every single-byte corruption: an answer either way, never a panic.
    for i in 0..der.len() {
        for flip in [0xff, 0x80, 0x01] {
            let mut bad = der.clone();
            bad[i] ^= flip;
            let _ = CertInfo::parse(&bad);
            let _ = serial_number_from_der(&bad);
        }
    }
    let mut x: u64 = 42;
    for _ in 0..2000 {
        let len = (xorshift(&mut x) % 64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| xorshift(&mut x) as u8).collect();
        if let Some(first) = bytes.first_mut() {
            *first = 0x30;
        }
        let _ = CertInfo::parse(&bytes);
        let _ = serial_number_from_der(&bytes);
        let _ = parse_rfc2253(&String::from_utf8_lossy(&bytes));
        let _ = parse_san_list(&String::from_utf8_lossy(&bytes));
    }
    let e = CertInfo::parse(b"hello").unwrap_err();
    assert!(e.to_string().starts_with("not a DER certificate: "), "{e}");
}

/// One `openssl x509` output line, after `prefix`.
fn openssl_field(pem_path: &std::path::Path, args: &[&str], prefix: &str) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-in"])
        .arg(pem_path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in {text}"))
        .to_owned()
}

/// Compares names, serials and fingerprints with `openssl x509`.
#[test]
fn fields_match_openssl() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl not installed: skipping the comparison");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = TestCa::root("Root; \"Quoted\" <CA>");
    let mut ders = vec![
        names_cert(),
        multi_valued_cert(),
        dumped_values_cert(),
        root.der(),
        root.client("with, comma")
            .organization("O+plus")
            .unit("=eq")
            .build()
            .der,
        root.client(" lead and trail ")
            .organization("café")
            .build()
            .der,
    ];
    let key = KeyPair::generate().unwrap();
    for serial in [&[0x9a, 0x01][..], &[0x00], &[0x7f; 20]] {
        let mut params = params_named("#hash");
        params.serial_number = Some(SerialNumber::from_slice(serial));
        ders.push(self_signed(params, &key).0);
    }
    for (i, der) in ders.iter().enumerate() {
        let path = write(dir.path(), &format!("c{i}.pem"), pem_encode(der));
        let info = CertInfo::parse(der).unwrap();
        let utf8 = ["-nameopt", "RFC2253,-esc_msb"];
        let ascii = ["-nameopt", "RFC2253"];
        for (args, subject, issuer) in [
            (&utf8, info.subject(), info.issuer()),
            (&ascii, info.subject_ascii(), info.issuer_ascii()),
        ] {
            let mut with = args.to_vec();
            with.push("-subject");
            assert_eq!(subject, openssl_field(&path, &with, "subject="), "cert {i}");
            with.pop();
            with.push("-issuer");
            assert_eq!(issuer, openssl_field(&path, &with, "issuer="), "cert {i}");
        }
        assert_eq!(
            info.serial_hex_upper_no_colons(),
            openssl_field(&path, &["-serial"], "serial="),
            "cert {i}"
        );
        assert_eq!(
            sha256_fingerprint(der),
            openssl_field(&path, &["-fingerprint", "-sha256"], "sha256 Fingerprint=")
                .replace(':', "")
                .to_ascii_lowercase(),
            "cert {i}"
        );
    }
}
