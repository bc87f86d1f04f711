//! ns/op for the per-connection paths on a typical ECDSA P-256 client
//! certificate (issued by an intermediate, with a subject of four
//! attributes, a URI and a DNS SAN, key usage and clientAuth).
//!
//! cargo bench -p tollgate-x509 --bench parse

use std::hint::black_box;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tollgate_x509::{CertInfo, serial_number_from_der, sha256_fingerprint};

fn client_cert() -> Vec<u8> {
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::OrganizationName, "mTLS");
    dn.push(DnType::CommonName, "rootcamtls.com");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("key");
    let issuer = Issuer::new(ca, ca_key);

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::StateOrProvinceName, "Washington");
    dn.push(DnType::OrganizationName, "mTLS");
    dn.push(DnType::OrganizationalUnitName, "client-3");
    dn.push(DnType::CommonName, "client.com");
    params.distinguished_name = dn;
    params.subject_alt_names = vec![
        SanType::URI("spiffe://example.org/client".try_into().expect("uri")),
        SanType::DnsName("client.example.com".try_into().expect("dns")),
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().expect("key");
    params
        .signed_by(&key, &issuer)
        .expect("sign")
        .der()
        .to_vec()
}

/// Runs `f` for about half a second after a warm-up; prints ns/op.
fn bench<T>(name: &str, mut f: impl FnMut() -> T) {
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(100) {
        black_box(f());
    }
    let mut iterations = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        for _ in 0..100 {
            black_box(f());
        }
        iterations += 100;
    }
    let ns = start.elapsed().as_nanos() as f64 / iterations as f64;
    println!("{name:<40} {ns:>9.1} ns/op");
}

fn main() {
    let der = client_cert();
    let info = CertInfo::parse(&der).expect("parse");
    println!(
        "ECDSA P-256 client certificate, {} bytes DER; subject {}",
        der.len(),
        info.subject()
    );
    bench("CertInfo::parse", || CertInfo::parse(black_box(&der)));
    bench("serial_number_from_der", || {
        serial_number_from_der(black_box(&der))
    });
    bench("CertInfo::serial_number", || {
        black_box(&info).serial_number()
    });
    bench("CertInfo::subject (RFC 2253)", || {
        black_box(&info).subject()
    });
    bench("CertInfo::issuer (RFC 2253)", || black_box(&info).issuer());
    bench("CertInfo::validity_header", || {
        black_box(&info).validity_header()
    });
    bench("CertInfo::san_list", || black_box(&info).san_list());
    bench("sha256_fingerprint", || sha256_fingerprint(black_box(&der)));
}
