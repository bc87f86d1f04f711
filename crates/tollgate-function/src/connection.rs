//! The connection object: what the listener knows once the handshake is done,
//! handed to the function as the `connection` resource.
//!
//! The listener fills a [`ConnectionInfo`] with raw facts (addresses, TLS
//! parameters, the DER chain); certificate fields are parsed and formatted
//! only when the function asks for them (see `host.rs`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Deserialize;
use tollgate_x509::SubjectAltName;

/// Everything a function may learn about a connection.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// Unique id, shared with the connection and access logs.
    pub id: String,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Server name indication sent by the client.
    pub sni: Option<String>,
    /// Negotiated ALPN protocol.
    pub alpn: Option<String>,
    /// `TLSv1.2` or `TLSv1.3`.
    pub tls_version: String,
    /// IANA cipher suite name.
    pub cipher_suite: String,
    /// Name of the listener.
    pub listener: String,
    pub handshake_duration: Duration,
    /// The client's certificates, leaf first. Empty when none was presented.
    pub chain: Vec<CertSource>,
    /// A certificate of the chain was outside its validity period and was
    /// admitted because the listener ignores expiry.
    pub expiry_ignored: bool,
    /// The leaf (`chain[0]`, a DER) as the listener already parsed it for its
    /// log and headers: the function's host uses it instead of parsing the
    /// DER a second time. None: parsed when the function first asks.
    pub leaf: Option<Arc<tollgate_x509::CertInfo>>,
}

/// A client certificate: its DER, or, for crafted test connections, only the
/// fields (as in CloudFront's connection object).
#[derive(Debug, Clone)]
pub enum CertSource {
    Der(Vec<u8>),
    Fields(Box<CertFields>),
}

/// A certificate described by its formatted fields only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFields {
    pub serial_number: String,
    pub subject: String,
    pub issuer: String,
    pub not_before: i64,
    pub not_after: i64,
    pub sha256_fingerprint: String,
    pub san: Vec<SubjectAltName>,
}

impl ConnectionInfo {
    /// A connection with neutral defaults (loopback addresses, TLS 1.3), for
    /// the local runner and tests to fill in.
    pub fn for_test() -> ConnectionInfo {
        ConnectionInfo {
            id: new_connection_id(),
            client: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50_000),
            server: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8_443),
            sni: None,
            alpn: Some("h2".into()),
            tls_version: "TLSv1.3".into(),
            cipher_suite: "TLS_AES_128_GCM_SHA256".into(),
            listener: "test".into(),
            handshake_duration: Duration::ZERO,
            chain: Vec::new(),
            leaf: None,
            expiry_ignored: false,
        }
    }

    /// No connection: what an idle kept instance holds between calls (its
    /// fields own no heap memory).
    pub(crate) fn idle() -> ConnectionInfo {
        let unspecified = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        ConnectionInfo {
            id: String::new(),
            client: unspecified,
            server: unspecified,
            sni: None,
            alpn: None,
            tls_version: String::new(),
            cipher_suite: String::new(),
            listener: String::new(),
            handshake_duration: Duration::ZERO,
            chain: Vec::new(),
            leaf: None,
            expiry_ignored: false,
        }
    }

    /// Parses a connection described as JSON, with CloudFront's field names
    /// (`connectionId`, `clientIp`, `endpoint`, `clientCertificate` ...) plus
    /// Tollgate's additions. See docs/runner.md for the full form.
    pub fn from_json(json: &[u8]) -> Result<ConnectionInfo, ConnectionJsonError> {
        let raw: json::Connection = serde_json::from_slice(json).map_err(|e| {
            ConnectionJsonError(format!(
                "not a valid connection object: {e} (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        raw.into_info()
    }
}

/// A connection object in JSON that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectionJsonError(String);

/// A new connection id: 128 bits, unique within and across processes (a
/// per-process random seed and a counter, mixed), as 32 lowercase hex digits.
pub fn new_connection_id() -> String {
    static SEED: OnceLock<(u64, u64)> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let &(hi_seed, lo_seed) = SEED.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let state = std::collections::hash_map::RandomState::new();
        let mut h1 = state.build_hasher();
        h1.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        let mut h2 = state.build_hasher();
        h2.write_u32(std::process::id());
        (h1.finish(), h2.finish())
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // splitmix64 of the counter keeps ids from looking sequential.
    let mut z = n.wrapping_add(lo_seed).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    format!("{hi_seed:016x}{z:016x}")
}

mod json {
    //! The JSON form of a connection (CloudFront names).

    use super::*;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    pub struct Connection {
        connection_id: Option<String>,
        client_ip: Option<String>,
        client_port: Option<u16>,
        server_ip: Option<String>,
        server_port: Option<u16>,
        /// CloudFront's name for the domain the client asked for (SNI).
        endpoint: Option<String>,
        alpn: Option<String>,
        tls_protocol: Option<String>,
        tls_cipher: Option<String>,
        listener: Option<String>,
        /// Milliseconds, as in the connection log.
        tls_handshake_duration: Option<f64>,
        #[serde(default)]
        expiry_ignored: bool,
        client_certificate: Option<ClientCertificate>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ClientCertificate {
        certificates: Certificates,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Certificates {
        leaf: Certificate,
        #[serde(default)]
        intermediates: Vec<Certificate>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Certificate {
        /// The whole certificate; when given, the other fields must be absent.
        pem: Option<String>,
        serial_number: Option<String>,
        issuer: Option<String>,
        subject: Option<String>,
        validity: Option<Validity>,
        sha256_fingerprint: Option<String>,
        san: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Validity {
        not_before: String,
        not_after: String,
    }

    fn err(msg: impl Into<String>) -> ConnectionJsonError {
        ConnectionJsonError(msg.into())
    }

    fn ip(
        field: &str,
        text: Option<String>,
        default: IpAddr,
    ) -> Result<IpAddr, ConnectionJsonError> {
        match text {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| err(format!("{field}: {text:?} is not an IP address"))),
        }
    }

    impl Connection {
        pub fn into_info(self) -> Result<ConnectionInfo, ConnectionJsonError> {
            let defaults = ConnectionInfo::for_test();
            let client_ip = ip("clientIp", self.client_ip, defaults.client.ip())?;
            let server_ip = ip("serverIp", self.server_ip, defaults.server.ip())?;
            let handshake_duration = match self.tls_handshake_duration {
                None => Duration::ZERO,
                Some(ms) if ms.is_finite() && ms >= 0.0 => Duration::from_secs_f64(ms / 1000.0),
                Some(ms) => {
                    return Err(err(format!(
                        "tlsHandshakeDuration: {ms} is not a duration in milliseconds"
                    )));
                }
            };
            let tls_version = self.tls_protocol.unwrap_or(defaults.tls_version);
            if !matches!(tls_version.as_str(), "TLSv1.2" | "TLSv1.3") {
                return Err(err(format!(
                    "tlsProtocol: {tls_version:?} is not TLSv1.2 or TLSv1.3"
                )));
            }
            let mut chain = Vec::new();
            if let Some(cc) = self.client_certificate {
                chain.push(
                    cc.certificates
                        .leaf
                        .into_source("clientCertificate.certificates.leaf")?,
                );
                for (i, c) in cc.certificates.intermediates.into_iter().enumerate() {
                    chain.push(c.into_source(&format!(
                        "clientCertificate.certificates.intermediates[{i}]"
                    ))?);
                }
            }
            Ok(ConnectionInfo {
                id: self.connection_id.unwrap_or(defaults.id),
                client: SocketAddr::new(
                    client_ip,
                    self.client_port.unwrap_or(defaults.client.port()),
                ),
                server: SocketAddr::new(
                    server_ip,
                    self.server_port.unwrap_or(defaults.server.port()),
                ),
                sni: self.endpoint,
                alpn: self.alpn.or(defaults.alpn),
                tls_version,
                cipher_suite: self.tls_cipher.unwrap_or(defaults.cipher_suite),
                listener: self.listener.unwrap_or(defaults.listener),
                handshake_duration,
                chain,
                leaf: None,
                expiry_ignored: self.expiry_ignored,
            })
        }
    }

    impl Certificate {
        fn into_source(self, at: &str) -> Result<CertSource, ConnectionJsonError> {
            if let Some(pem) = self.pem {
                if self.serial_number.is_some()
                    || self.issuer.is_some()
                    || self.subject.is_some()
                    || self.validity.is_some()
                    || self.sha256_fingerprint.is_some()
                    || self.san.is_some()
                {
                    return Err(err(format!(
                        "{at}: give either pem or the certificate fields, not both"
                    )));
                }
                let mut ders = tollgate_x509::pem::parse_certificates(pem.as_bytes())
                    .map_err(|e| err(format!("{at}.pem: {e}")))?;
                if ders.len() != 1 {
                    return Err(err(format!(
                        "{at}.pem: expected one certificate, found {}",
                        ders.len()
                    )));
                }
                let der = ders.remove(0);
                tollgate_x509::CertInfo::parse(&der).map_err(|e| err(format!("{at}.pem: {e}")))?;
                return Ok(CertSource::Der(der));
            }
            let serial_number = self
                .serial_number
                .ok_or_else(|| err(format!("{at}: serialNumber is missing")))?
                .to_ascii_lowercase();
            let well_formed = !serial_number.is_empty()
                && serial_number
                    .split(':')
                    .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()));
            if !well_formed {
                return Err(err(format!(
                    "{at}.serialNumber: {serial_number:?} is not colon-separated hex bytes like 4a:3f:5c"
                )));
            }
            let subject = self.subject.unwrap_or_default();
            let issuer = self.issuer.unwrap_or_default();
            for (field, dn) in [("subject", &subject), ("issuer", &issuer)] {
                tollgate_x509::parse_rfc2253(dn).map_err(|e| err(format!("{at}.{field}: {e}")))?;
            }
            let (not_before, not_after) = match self.validity {
                None => (0, 0),
                Some(v) => (
                    tollgate_x509::parse_rfc3339(&v.not_before)
                        .map_err(|e| err(format!("{at}.validity.notBefore: {e}")))?,
                    tollgate_x509::parse_rfc3339(&v.not_after)
                        .map_err(|e| err(format!("{at}.validity.notAfter: {e}")))?,
                ),
            };
            let sha256_fingerprint = self
                .sha256_fingerprint
                .unwrap_or_default()
                .to_ascii_lowercase();
            if !sha256_fingerprint.is_empty()
                && (sha256_fingerprint.len() != 64
                    || !sha256_fingerprint.bytes().all(|c| c.is_ascii_hexdigit()))
            {
                return Err(err(format!(
                    "{at}.sha256Fingerprint: expected 64 hex digits"
                )));
            }
            let san = match self.san {
                None => Vec::new(),
                Some(s) => {
                    tollgate_x509::parse_san_list(&s).map_err(|e| err(format!("{at}.san: {e}")))?
                }
            };
            Ok(CertSource::Fields(Box::new(CertFields {
                serial_number,
                subject,
                issuer,
                not_before,
                not_after,
                sha256_fingerprint,
                san,
            })))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_hex() {
        let a = new_connection_id();
        let b = new_connection_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn json_connection_with_fields() {
        let json = br#"{
            "connectionId": "abc",
            "clientIp": "203.0.113.42",
            "endpoint": "api.example.com",
            "clientCertificate": {"certificates": {"leaf": {
                "serialNumber": "4A:3F:5C",
                "issuer": "CN=Example CA,O=Example Corp,C=US",
                "subject": "CN=client.example.com,OU=fleet,O=Example Corp,C=US",
                "validity": {"notBefore": "2024-01-15T00:00:00Z", "notAfter": "2025-01-14T23:59:59Z"},
                "san": "DNS:client.example.com,URI:spiffe://example/client"
            }}}
        }"#;
        let info = ConnectionInfo::from_json(json).unwrap();
        assert_eq!(info.id, "abc");
        assert_eq!(info.client.ip().to_string(), "203.0.113.42");
        assert_eq!(info.sni.as_deref(), Some("api.example.com"));
        let CertSource::Fields(f) = &info.chain[0] else {
            panic!("expected fields")
        };
        assert_eq!(f.serial_number, "4a:3f:5c");
        assert_eq!(f.not_before, 1_705_276_800);
        assert_eq!(f.san.len(), 2);
    }

    #[test]
    fn json_errors_name_the_field() {
        let cases: [(&[u8], &str); 5] = [
            (br#"{"clientIp": "nope"}"#, "clientIp"),
            (br#"{"bogus": 1}"#, "bogus"),
            (br#"{"tlsProtocol": "SSLv3"}"#, "tlsProtocol"),
            (
                br#"{"clientCertificate": {"certificates": {"leaf": {"serialNumber": "zz"}}}}"#,
                "leaf.serialNumber",
            ),
            (
                br#"{"clientCertificate": {"certificates": {"leaf": {"serialNumber": "01", "validity": {"notBefore": "yesterday", "notAfter": "2025-01-01T00:00:00Z"}}}}}"#,
                "validity.notBefore",
            ),
        ];
        for (json, needle) in cases {
            let e = ConnectionInfo::from_json(json).unwrap_err().to_string();
            assert!(e.contains(needle), "{e:?} should mention {needle}");
        }
    }
}
