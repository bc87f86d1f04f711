//! Test helpers: a throwaway PKI built with rcgen, and KVS import files.
//!
//! Every certificate is generated fresh by the test that uses it; nothing
//! here is a fixture.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// A certificate authority (root or intermediate).
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A generated certificate with its key.
#[derive(Clone, Debug)]
pub struct TestCert {
    pub der: Vec<u8>,
    pub pem: String,
    pub key_pem: String,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Tollgate Test");
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
    params.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
    params
}

impl TestCa {
    /// A self-signed root with this common name (ECDSA P-256).
    pub fn root(cn: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate a key");
        let issuer = CertifiedIssuer::self_signed(ca_params(cn), key).expect("self-sign a root");
        TestCa { issuer }
    }

    /// A self-signed root valid from `from` to `to` days relative to now
    /// (negative for the past): `root_valid_days("Old CA", -30, -1)` is expired.
    pub fn root_valid_days(cn: &str, from: i64, to: i64) -> TestCa {
        let mut params = ca_params(cn);
        let now = OffsetDateTime::now_utc();
        params.not_before = now + Duration::days(from);
        params.not_after = now + Duration::days(to);
        let key = KeyPair::generate().expect("generate a key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-sign a root");
        TestCa { issuer }
    }

    /// An intermediate CA signed by this one.
    pub fn intermediate(&self, cn: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate a key");
        let issuer = CertifiedIssuer::signed_by(ca_params(cn), key, &self.issuer)
            .expect("sign an intermediate");
        TestCa { issuer }
    }

    pub fn der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (DNS names, or IP addresses when they
    /// parse as one), serverAuth EKU.
    pub fn server(&self, names: &[&str]) -> TestCert {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().expect("an IA5 DNS name")),
            })
            .collect();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(365);
        let key = KeyPair::generate().expect("generate a key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign a server certificate");
        TestCert {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A CRL (PEM) signed by this CA revoking the given certificates (DER).
    pub fn crl(&self, revoked: &[&[u8]]) -> String {
        let now = OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - Duration::hours(1),
            next_update: now + Duration::days(7),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|der| rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&serial_of(der)),
                    revocation_time: now - Duration::minutes(5),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer)
            .expect("sign a CRL")
            .pem()
            .expect("PEM-encode a CRL")
    }

    /// Starts a client certificate issued by this CA.
    pub fn client(&self, cn: &str) -> ClientCert<'_> {
        ClientCert {
            ca: self,
            cn: cn.to_owned(),
            organization: None,
            units: Vec::new(),
            serial: None,
            sans: Vec::new(),
            not_before: OffsetDateTime::now_utc() - Duration::days(1),
            not_after: OffsetDateTime::now_utc() + Duration::days(365),
            ekus: vec![ExtendedKeyUsagePurpose::ClientAuth],
        }
    }
}

/// A client certificate being built.
pub struct ClientCert<'a> {
    ca: &'a TestCa,
    cn: String,
    organization: Option<String>,
    units: Vec<String>,
    serial: Option<Vec<u8>>,
    sans: Vec<SanType>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    ekus: Vec<ExtendedKeyUsagePurpose>,
}

impl ClientCert<'_> {
    pub fn organization(mut self, o: &str) -> Self {
        self.organization = Some(o.to_owned());
        self
    }

    pub fn unit(mut self, ou: &str) -> Self {
        self.units.push(ou.to_owned());
        self
    }

    /// The serial number's bytes (big-endian, as DER would hold them).
    pub fn serial(mut self, bytes: &[u8]) -> Self {
        self.serial = Some(bytes.to_vec());
        self
    }

    pub fn uri(mut self, uri: &str) -> Self {
        self.sans
            .push(SanType::URI(uri.try_into().expect("an IA5 URI")));
        self
    }

    pub fn dns(mut self, name: &str) -> Self {
        self.sans
            .push(SanType::DnsName(name.try_into().expect("an IA5 DNS name")));
        self
    }

    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.sans.push(SanType::IpAddress(ip));
        self
    }

    pub fn email(mut self, email: &str) -> Self {
        self.sans
            .push(SanType::Rfc822Name(email.try_into().expect("an IA5 email")));
        self
    }

    /// Validity relative to now, in days (negative for the past).
    pub fn valid_days(mut self, from: i64, to: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        self.not_before = now + Duration::days(from);
        self.not_after = now + Duration::days(to);
        self
    }

    /// Exact validity bounds (X.509 keeps whole seconds).
    pub fn validity(mut self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    /// No extended key usage extension at all (any purpose).
    pub fn no_eku(mut self) -> Self {
        self.ekus = Vec::new();
        self
    }

    /// Replaces the extended key usages (default: clientAuth).
    pub fn server_auth_only(mut self) -> Self {
        self.ekus = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self
    }

    pub fn build(self) -> TestCert {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(o) = &self.organization {
            dn.push(DnType::OrganizationName, o.as_str());
        }
        for ou in &self.units {
            dn.push(DnType::OrganizationalUnitName, ou.as_str());
        }
        dn.push(DnType::CommonName, self.cn.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = self.sans;
        params.serial_number = self.serial.map(|s| SerialNumber::from_slice(&s));
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        params.extended_key_usages = self.ekus;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("generate a key");
        let cert = params
            .signed_by(&key, &self.ca.issuer)
            .expect("sign a client certificate");
        TestCert {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// The serial number bytes of a DER certificate (as the CRL lists them).
pub fn serial_of(der: &[u8]) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let (_, cert) =
        x509_parser::certificate::X509Certificate::from_der(der).expect("a DER certificate");
    cert.raw_serial().to_vec()
}

/// A KVS import file (`{"data":[{"key":..,"value":..}]}`) as a string.
pub fn kvs_json<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let data: Vec<_> = entries
        .into_iter()
        .map(|(k, v)| serde_json::json!({ "key": k, "value": v }))
        .collect();
    serde_json::json!({ "data": data }).to_string()
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write a test file");
    path
}

/// Lowercase hex without separators, as revocation stores key serials.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
