//! The client-certificate headers an origin receives, and the names a client may
//! never send (reference §4).

use http::header::{HeaderMap, HeaderName, HeaderValue};
use tollgate_config::HeadersSection;
use tollgate_x509::CertInfo;

/// Every identity header name Tollgate can produce. Whatever the configured set,
/// all of these are removed from client requests, so an origin never sees a
/// client-supplied identity.
pub const IDENTITY_HEADERS: &[&str] = &[
    "cloudfront-viewer-cert-present",
    "cloudfront-viewer-cert-serial-number",
    "cloudfront-viewer-cert-issuer",
    "cloudfront-viewer-cert-subject",
    "cloudfront-viewer-cert-sha256",
    "cloudfront-viewer-cert-validity",
    "cloudfront-viewer-cert-pem",
    "x-amzn-mtls-clientcert",
    "x-amzn-mtls-clientcert-serial-number",
    "x-amzn-mtls-clientcert-issuer",
    "x-amzn-mtls-clientcert-subject",
    "x-amzn-mtls-clientcert-validity",
    "x-amzn-mtls-clientcert-leaf",
    "client-cert",
    "client-cert-chain",
];

/// Prefixes removed too: a client must not smuggle a variant we add later.
const IDENTITY_PREFIXES: &[&str] = &["cloudfront-viewer-cert-", "x-amzn-mtls-clientcert"];

/// How the connection's client certificate was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertCheck {
    /// Validated against the trust store (required / optional mode).
    Verified,
    /// Passthrough: only key possession was proven.
    Passthrough,
    /// No client authentication on this listener.
    None,
}

/// Builds, once per connection, the identity headers added to each request.
///
/// `chain` is the client's chain as sent, leaf first (empty: no certificate);
/// `leaf` its first certificate, parsed (the caller parses it once for the
/// connection log too).
pub fn identity_headers(
    set: &HeadersSection,
    check: CertCheck,
    chain: &[Vec<u8>],
    leaf: Option<&CertInfo>,
    connection_id: &str,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        // Values are built from escaped ASCII; a value that still is not a valid
        // header value is left out rather than sent mangled.
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    let leaf = chain.first().zip(leaf);
    if set.cloudfront && check != CertCheck::None {
        match &leaf {
            Some((der, info)) if check == CertCheck::Verified => {
                put("cloudfront-viewer-cert-present", "1".into());
                put("cloudfront-viewer-cert-serial-number", info.serial_number());
                put("cloudfront-viewer-cert-issuer", info.issuer_ascii());
                put("cloudfront-viewer-cert-subject", info.subject_ascii());
                put(
                    "cloudfront-viewer-cert-sha256",
                    tollgate_x509::sha256_fingerprint(der),
                );
                put("cloudfront-viewer-cert-validity", info.validity_header());
                put(
                    "cloudfront-viewer-cert-pem",
                    tollgate_x509::url_encode_cloudfront(&tollgate_x509::pem_encode(der)),
                );
            }
            Some(_) => put("cloudfront-viewer-cert-present", "1".into()),
            // A passthrough certificate whose fields cannot be read is still
            // present.
            None if !chain.is_empty() => put("cloudfront-viewer-cert-present", "1".into()),
            None => put("cloudfront-viewer-cert-present", "0".into()),
        }
    }
    if set.alb
        && let Some((der, info)) = &leaf
    {
        match check {
            CertCheck::Verified => {
                put(
                    "x-amzn-mtls-clientcert-serial-number",
                    info.serial_hex_upper_no_colons(),
                );
                put("x-amzn-mtls-clientcert-issuer", info.issuer_ascii());
                put("x-amzn-mtls-clientcert-subject", info.subject_ascii());
                put("x-amzn-mtls-clientcert-validity", info.validity_header());
                put(
                    "x-amzn-mtls-clientcert-leaf",
                    tollgate_x509::url_encode_alb(&tollgate_x509::pem_encode(der)),
                );
            }
            CertCheck::Passthrough => {
                let pem: String = chain.iter().map(|d| tollgate_x509::pem_encode(d)).collect();
                put(
                    "x-amzn-mtls-clientcert",
                    tollgate_x509::url_encode_alb(&pem),
                );
            }
            CertCheck::None => {}
        }
    }
    let rfc9440 = set.rfc9440 || check == CertCheck::Passthrough;
    if rfc9440 && check != CertCheck::None && !chain.is_empty() {
        put("client-cert", tollgate_x509::rfc9440_item(&chain[0]));
        if chain.len() > 1 {
            put(
                "client-cert-chain",
                tollgate_x509::rfc9440_list(chain[1..].iter().map(Vec::as_slice)),
            );
        }
    }
    if !set.connection_id.is_empty()
        && let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(set.connection_id.as_bytes()),
            HeaderValue::from_str(connection_id),
        )
    {
        headers.insert(name, value);
    }
    headers
}

/// Removes every identity header (and the configured connection-id header)
/// that the client sent.
pub fn strip_identity_headers(headers: &mut HeaderMap, connection_id_header: &str) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            IDENTITY_HEADERS.contains(&n)
                || IDENTITY_PREFIXES.iter().any(|p| n.starts_with(p))
                || n.eq_ignore_ascii_case(connection_id_header)
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the ones named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_testkit::TestCa;

    fn chain() -> Vec<Vec<u8>> {
        let root = TestCa::root("Header Root");
        let inter = root.intermediate("Header Intermediate");
        let client = inter.client("client.example").build();
        vec![client.der, inter.der()]
    }

    #[test]
    fn cloudfront_headers_for_a_verified_chain() {
        let chain = chain();
        let info = CertInfo::parse(&chain[0]).unwrap();
        let h = identity_headers(
            &HeadersSection::default(),
            CertCheck::Verified,
            &chain,
            Some(&info),
            "conn-1",
        );
        assert_eq!(h["cloudfront-viewer-cert-present"], "1");
        assert_eq!(
            h["cloudfront-viewer-cert-serial-number"].to_str().unwrap(),
            info.serial_number()
        );
        assert!(
            h["cloudfront-viewer-cert-subject"]
                .to_str()
                .unwrap()
                .starts_with("CN=client.example")
        );
        let pem = h["cloudfront-viewer-cert-pem"].to_str().unwrap();
        assert!(pem.starts_with("-----BEGIN%20CERTIFICATE-----%0A"), "{pem}");
        assert_eq!(h["x-tollgate-connection-id"], "conn-1");
        assert!(h.get("client-cert").is_none());
        assert!(h.get("x-amzn-mtls-clientcert-leaf").is_none());
    }

    #[test]
    fn passthrough_sends_rfc9440_and_no_verified_fields() {
        let chain = chain();
        let set = HeadersSection {
            alb: true,
            ..Default::default()
        };
        let info = CertInfo::parse(&chain[0]).unwrap();
        let h = identity_headers(&set, CertCheck::Passthrough, &chain, Some(&info), "c");
        let item = h["client-cert"].to_str().unwrap();
        assert!(item.starts_with(':') && item.ends_with(':'));
        assert_eq!(
            h["client-cert-chain"].to_str().unwrap(),
            tollgate_x509::rfc9440_item(&chain[1])
        );
        assert!(h.get("cloudfront-viewer-cert-subject").is_none());
        assert!(h.get("x-amzn-mtls-clientcert").is_some());
        assert!(h.get("x-amzn-mtls-clientcert-subject").is_none());
    }

    #[test]
    fn no_certificate_is_present_zero() {
        let h = identity_headers(
            &HeadersSection::default(),
            CertCheck::Verified,
            &[],
            None,
            "c",
        );
        assert_eq!(h["cloudfront-viewer-cert-present"], "0");
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn client_identity_headers_are_stripped() {
        let mut h = HeaderMap::new();
        for name in IDENTITY_HEADERS {
            h.insert(*name, HeaderValue::from_static("spoofed"));
        }
        h.insert(
            "cloudfront-viewer-cert-future",
            HeaderValue::from_static("x"),
        );
        h.insert("x-tollgate-connection-id", HeaderValue::from_static("x"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_identity_headers(&mut h, "X-Tollgate-Connection-Id");
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("5"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
    }
}
