//! Field formats on real certificates generated with rcgen, checked against
//! exact strings and, where it is installed, against `openssl x509`.

use std::process::Command;

use tollgate_testkit::{TestCa, hex, write};
use tollgate_x509::{
    CertInfo, KeyUsage, SubjectAltName, format_san_list, pem, serial_number_from_der,
    sha256_fingerprint,
};

#[test]
fn serial_numbers_in_every_shape() {
    let ca = TestCa::root("Serial CA");
    let cases: [(&[u8], &str); 4] = [
        (
            &[0x4a, 0x3f, 0x5c, 0x92, 0xd1, 0xe8, 0x7b, 0x6c],
            "4a:3f:5c:92:d1:e8:7b:6c",
        ),
        (&[0x9a, 0x01], "9a:01"),
        (&[0x00, 0x9a, 0x01], "9a:01"),
        (&[0x01], "01"),
    ];
    for (bytes, want) in cases {
        let cert = ca.client("s").serial(bytes).build();
        let info = CertInfo::parse(&cert.der).unwrap();
        assert_eq!(info.serial_number(), want);
        assert_eq!(serial_number_from_der(&cert.der).unwrap(), want);
        assert_eq!(
            info.serial_hex_upper(),
            want.replace(':', "").to_uppercase()
        );
    }
    // The fast path agrees with the full parse on many random 20-byte serials.
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for _ in 0..50 {
        let mut serial = Vec::new();
        for _ in 0..20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            serial.push(x as u8);
        }
        serial[0] &= 0x7f;
        let cert = ca.client("r").serial(&serial).build();
        let full = CertInfo::parse(&cert.der).unwrap();
        assert_eq!(
            serial_number_from_der(&cert.der).unwrap(),
            full.serial_number()
        );
        assert_eq!(
            hex(&full.serial_bytes()),
            full.serial_number().replace(':', "")
        );
    }
}

#[test]
fn names_sans_validity_and_usages() {
    let root = TestCa::root("Root, Inc.");
    let cert = root
        .client("device #1")
        .organization("Example Corp")
        .unit("fleet+eu")
        .uri("spiffe://example.org/device-1")
        .dns("device-1.example.org")
        .ip("2001:db8::7".parse().unwrap())
        .email("ops@example.org")
        .build();
    let info = CertInfo::parse(&cert.der).unwrap();
    assert_eq!(info.subject(), r"CN=device #1,OU=fleet\+eu,O=Example Corp");
    assert_eq!(info.issuer(), r"CN=Root\, Inc.,O=Tollgate Test");
    assert_eq!(info.subject_attribute("cn"), ["device #1"]);
    assert_eq!(info.subject_attribute("2.5.4.11"), ["fleet+eu"]);
    assert_eq!(info.issuer_attribute("O"), ["Tollgate Test"]);
    assert_eq!(
        info.subject_alt_names(),
        [
            SubjectAltName::Uri("spiffe://example.org/device-1".into()),
            SubjectAltName::Dns("device-1.example.org".into()),
            SubjectAltName::Ip("2001:db8::7".parse().unwrap()),
            SubjectAltName::Email("ops@example.org".into()),
        ]
    );
    assert_eq!(
        format_san_list(info.subject_alt_names()),
        "URI:spiffe://example.org/device-1,DNS:device-1.example.org,IP Address:2001:db8::7,email:ops@example.org"
    );
    assert_eq!(
        info.key_usage().map(KeyUsage::bits),
        Some(KeyUsage::DIGITAL_SIGNATURE)
    );
    assert_eq!(
        info.extended_key_usage(),
        Some(&["clientAuth".to_string()][..])
    );
    assert!(info.not_before_unix() < info.not_after_unix());
    assert_eq!(sha256_fingerprint(&cert.der).len(), 64);

    let server = root.client("server").server_auth_only().build();
    assert_eq!(
        CertInfo::parse(&server.der).unwrap().extended_key_usage(),
        Some(&["serverAuth".to_string()][..])
    );
}

#[test]
fn pem_bundles_round_trip_and_garbage_is_refused() {
    let ca = TestCa::root("PEM CA");
    let a = ca.client("a").build();
    let b = ca.client("b").build();
    let bundle = format!("# a comment\n{}\n{}{}", a.pem, a.key_pem, b.pem);
    let ders = pem::parse_certificates(bundle.as_bytes()).unwrap();
    assert_eq!(
        ders,
        vec![a.der.clone(), b.der.clone()],
        "keys are skipped, order kept"
    );
    assert_eq!(
        pem::encode_certificate(&a.der).replace("\r\n", "\n"),
        a.pem.replace("\r\n", "\n")
    );
    assert!(
        pem::parse_certificates(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
            .is_err()
    );
    assert!(CertInfo::parse(&a.der[..a.der.len() - 1]).is_err());
    let mut trailing = a.der.clone();
    trailing.push(0);
    assert!(CertInfo::parse(&trailing).is_err());
}

/// Compares subject and issuer with `openssl x509 -nameopt RFC2253`.
#[test]
fn names_match_openssl() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl not installed: skipping the comparison");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = TestCa::root("Root; \"Quoted\" <CA>");
    let certs = [
        root.client("plain").build(),
        root.client("with, comma")
            .organization("O+plus")
            .unit("=eq")
            .build(),
        root.client(" lead and trail ").organization("café").build(),
    ];
    for (i, cert) in certs.iter().enumerate() {
        let path = write(dir.path(), &format!("c{i}.pem"), &cert.pem);
        let out = Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-subject",
                "-issuer",
                "-nameopt",
                "RFC2253,-esc_msb",
                "-in",
            ])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let subject = text
            .lines()
            .find_map(|l| l.strip_prefix("subject="))
            .unwrap();
        let issuer = text
            .lines()
            .find_map(|l| l.strip_prefix("issuer="))
            .unwrap();
        let info = CertInfo::parse(&cert.der).unwrap();
        assert_eq!(info.subject(), subject, "cert {i}");
        assert_eq!(info.issuer(), issuer, "cert {i}");
    }
}
