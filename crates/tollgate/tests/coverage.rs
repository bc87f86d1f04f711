//! What the edge promises beyond the mTLS modes (edge.rs): identity headers
//! over HTTP/2 and against duplicates, every reference header name, exact
//! header formats, SNI defaults, TLS 1.2 without resumption, certificates
//! without an EKU, trust-store warnings, origin pooling, access-log fields and
//! the demo's advice. The real `tollgate` binary, real rustls (and hyper)
//! clients, the echo origin. Expected values are written out from the
//! reference (edge-mtls.md §4, §5) or computed here from the certificate, not
//! taken from the product's own formatting code.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tollgate_testkit::{TestCa, write};

const REQUIRED: &str = "mode = \"required\"\ntrust_store = \"trust.pem\"";

fn status(record: &Value) -> &str {
    record["connectionStatus"].as_str().unwrap()
}

/// Every value the origin received for `name` (any case), from the echo
/// origin's `headerList`, which keeps duplicates.
fn values_of<'a>(echo: &'a Value, name: &str) -> Vec<&'a str> {
    echo["headerList"]
        .as_array()
        .expect("the echo origin lists every header")
        .iter()
        .filter(|pair| pair[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|pair| pair[1].as_str().unwrap())
        .collect()
}

/// Percent-encoding as the reference describes it: everything but the
/// unreserved characters (`A-Z a-z 0-9 - . _ ~`) and `keep` becomes `%XX`.
fn url_encode(text: &str, keep: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.as_bytes().contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A rustls client config like `client_config`, limited to `versions`.
fn client_config_versions(
    server_ca_pem: &str,
    identity: Option<&Identity>,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server_ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_protocol_versions(versions)
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(id.chain_pem.as_bytes())
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// What one HTTP/1.1 request over a fresh TLS connection showed.
struct Fetched {
    seen: Seen,
    /// The server's leaf certificate (DER).
    server_leaf: Vec<u8>,
    version: Option<rustls::ProtocolVersion>,
    kind: Option<rustls::HandshakeKind>,
}

/// Handshake with `server_name` (an IP address: no SNI is sent), then one
/// `GET path` with `Connection: close`.
fn fetch(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
    path: &str,
) -> Fetched {
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            panic!("handshake with {server_name} failed: {e}");
        }
    }
    let server_leaf = conn.peer_certificates().unwrap()[0].to_vec();
    let (version, kind) = (conn.protocol_version(), conn.handshake_kind());
    let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut response = Vec::new();
    let seen = match stream.read_to_end(&mut response) {
        Err(e) if response.is_empty() => Seen::Closed(e.to_string()),
        _ => {
            let text = String::from_utf8_lossy(&response).into_owned();
            let code = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            Seen::Http(code, text)
        }
    };
    Fetched {
        seen,
        server_leaf,
        version,
        kind,
    }
}

/// Sends `requests` (path, extra headers) one after the other on ONE
/// connection with hyper's client: HTTP/2 when `h2`, else HTTP/1.1
/// keep-alive. Returns each response's status and JSON body.
fn exchange(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    h2: bool,
    requests: &[(&str, &[(&str, &str)])],
) -> Vec<(u16, Value)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("mTLS handshake");
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let want: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
        assert_eq!(alpn.as_deref(), Some(want), "ALPN");
        let io = TokioIo::new(tls);
        enum Sender {
            H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
            H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
        }
        let mut sender = if h2 {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            Sender::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Sender::H1(send)
        };
        let mut out = Vec::new();
        for (path, headers) in requests {
            let mut builder = http::Request::builder();
            builder = if h2 {
                builder.uri(format!("https://localhost:{}{path}", addr.port()))
            } else {
                builder.uri(*path).header("host", "localhost")
            };
            for (k, v) in *headers {
                // `header` appends: a repeated name is sent twice.
                builder = builder.header(*k, *v);
            }
            let request = builder.body(Empty::<Bytes>::new()).unwrap();
            let response = match &mut sender {
                Sender::H1(s) => {
                    s.ready().await.unwrap();
                    s.send_request(request).await.unwrap()
                }
                Sender::H2(s) => {
                    s.ready().await.unwrap();
                    s.send_request(request).await.unwrap()
                }
            };
            let want = if h2 {
                http::Version::HTTP_2
            } else {
                http::Version::HTTP_11
            };
            assert_eq!(response.version(), want);
            let code = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!("{code}: not JSON ({e}): {}", String::from_utf8_lossy(&body))
            });
            out.push((code, json));
        }
        out
    })
}

/// HTTP/2: the identity headers reach the origin, the client's spoofed
/// ones do not.
#[test]
fn http2_carries_the_identity_headers_and_strips_spoofed_ones() {
    let s = setup();
    let proxy = s.start(REQUIRED, "");
    let id = s.pki.client("h2.example");
    let info = tollgate_x509::CertInfo::parse(&id.leaf_der).unwrap();
    let config = client_config(&s.pki.server_ca.pem(), Some(&id), &[b"h2"]);
    let spoofed: &[(&str, &str)] = &[
        ("cloudfront-viewer-cert-serial-number", "00:de:ad"),
        ("cloudfront-viewer-cert-subject", "CN=admin"),
        ("cloudfront-viewer-cert-subject", "CN=root"),
        ("cloudfront-viewer-cert-something-new", "CN=admin"),
        ("x-amzn-mtls-clientcert-subject", "CN=admin"),
        ("x-amzn-mtls-clientcert", "CN=admin"),
        ("x-amzn-mtls-clientcert-something-new", "CN=admin"),
        ("client-cert", ":Zm9v:"),
        ("client-cert-chain", ":Zm9v:"),
        ("x-tollgate-connection-id", "forged"),
    ];
    let replies = exchange(
        proxy.addr,
        config,
        true,
        &[("/first", spoofed), ("/second", spoofed)],
    );
    let conn = proxy.connection(1);
    assert_eq!(status(&conn), "Success");
    for (code, echo) in &replies {
        assert_eq!(*code, 200);
        let one = |name: &str| {
            let v = values_of(echo, name);
            assert_eq!(v.len(), 1, "{name}: {v:?}");
            v[0].to_owned()
        };
        assert_eq!(one("cloudfront-viewer-cert-present"), "1");
        assert_eq!(
            one("cloudfront-viewer-cert-serial-number"),
            info.serial_number()
        );
        assert_eq!(one("cloudfront-viewer-cert-subject"), "CN=h2.example");
        assert_eq!(
            one("cloudfront-viewer-cert-sha256"),
            tollgate_x509::sha256_fingerprint(&id.leaf_der)
        );
        assert_eq!(
            one("x-tollgate-connection-id"),
            conn["connectionId"].as_str().unwrap()
        );
        // Not produced by this listener (ALB and RFC 9440 are off), so any
        // value would be the client's.
        for name in [
            "cloudfront-viewer-cert-something-new",
            "x-amzn-mtls-clientcert-something-new",
            "x-amzn-mtls-clientcert-subject",
            "x-amzn-mtls-clientcert",
            "client-cert",
            "client-cert-chain",
        ] {
            assert!(
                values_of(echo, name).is_empty(),
                "{name} reached the origin"
            );
        }
        for pair in echo["headerList"].as_array().unwrap() {
            assert!(
                !["CN=admin", "CN=root", ":Zm9v:", "forged", "00:de:ad"]
                    .contains(&pair[1].as_str().unwrap()),
                "a client value reached the origin: {pair}"
            );
        }
    }
    let accesses = proxy.accesses(2);
    for a in &accesses {
        assert_eq!(a["protocol"], "HTTP/2.0", "{a}");
        assert_eq!(a["connectionId"], conn["connectionId"]);
    }
    assert_eq!(s.origin.requests(), 2);
}

/// A client sending an identity header twice, in mixed case, leaves the
/// origin with exactly one value: the proxy's.
#[test]
fn a_repeated_mixed_case_identity_header_reaches_the_origin_once_with_the_proxys_value() {
    let s = setup();
    let proxy = s.start(REQUIRED, "[listener.headers]\nalb = true\nrfc9440 = true");
    let id = s.pki.client("twice.example");
    let info = tollgate_x509::CertInfo::parse(&id.leaf_der).unwrap();
    let echo = request(
        proxy.addr,
        s.client(Some(&id)),
        "/",
        &[
            ("CloudFront-Viewer-Cert-Subject", "CN=admin"),
            ("CLOUDFRONT-VIEWER-CERT-SUBJECT", "CN=root"),
            ("x-amzn-mtls-clientcert-subject", "CN=admin"),
            ("X-Amzn-Mtls-Clientcert-Subject", "CN=root"),
            ("Client-Cert", ":Zm9v:"),
            ("client-CERT", ":YmFy:"),
            // Produced only in passthrough mode: none may arrive here.
            ("X-Amzn-Mtls-Clientcert", "CN=admin"),
            ("x-amzn-mtls-clientcert", "CN=root"),
            // A control: duplicates of an ordinary header do arrive twice,
            // so `headerList` can show a repeated name.
            ("X-Coverage-Dup", "a"),
            ("x-coverage-dup", "b"),
        ],
    )
    .ok_json();
    assert_eq!(values_of(&echo, "x-coverage-dup"), ["a", "b"]);
    assert_eq!(
        values_of(&echo, "cloudfront-viewer-cert-subject"),
        [info.subject_ascii()]
    );
    assert_eq!(
        values_of(&echo, "x-amzn-mtls-clientcert-subject"),
        [info.subject_ascii()]
    );
    assert_eq!(
        values_of(&echo, "client-cert"),
        [tollgate_x509::rfc9440_item(&id.leaf_der)]
    );
    assert!(values_of(&echo, "x-amzn-mtls-clientcert").is_empty());
    // The map view agrees (it keeps one value per name).
    assert_eq!(
        echo["headers"]["cloudfront-viewer-cert-subject"],
        info.subject_ascii()
    );
}

/// The identity header names of the reference (§4) and the connection-id
/// header, written out here rather than taken from the product.
const REFERENCE_NAMES: &[&str] = &[
    "CloudFront-Viewer-Cert-Present",
    "CloudFront-Viewer-Cert-Serial-Number",
    "CloudFront-Viewer-Cert-Issuer",
    "CloudFront-Viewer-Cert-Subject",
    "CloudFront-Viewer-Cert-Sha256",
    "CloudFront-Viewer-Cert-Validity",
    "CloudFront-Viewer-Cert-Pem",
    "X-Amzn-Mtls-Clientcert",
    "X-Amzn-Mtls-Clientcert-Serial-Number",
    "X-Amzn-Mtls-Clientcert-Issuer",
    "X-Amzn-Mtls-Clientcert-Subject",
    "X-Amzn-Mtls-Clientcert-Validity",
    "X-Amzn-Mtls-Clientcert-Leaf",
    "Client-Cert",
    "Client-Cert-Chain",
    "X-Tollgate-Connection-Id",
];

/// Every reference name is on the product's strip list, and a client
/// sending each of them gets none through — on a listener that produces
/// none of them itself (`off`: no client certificate, connection id off), so
/// a value replaced by the proxy cannot hide a name that was not stripped.
#[test]
fn every_reference_identity_header_name_is_stripped() {
    for name in REFERENCE_NAMES {
        if *name == "X-Tollgate-Connection-Id" {
            continue; // configurable; stripped by its configured name
        }
        assert!(
            tollgate_proxy::IDENTITY_HEADERS
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name)),
            "{name} is not on tollgate_proxy::IDENTITY_HEADERS"
        );
    }
    let s = setup();
    let spoofed: Vec<(&str, &str)> = REFERENCE_NAMES.iter().map(|n| (*n, "spoofed")).collect();
    // Off mode, connection id header left out: the proxy adds nothing.
    let proxy = s.start("mode = \"off\"", "[listener.headers]\nconnection_id = \"\"");
    let echo = request(proxy.addr, s.client(None), "/", &spoofed).ok_json();
    for name in REFERENCE_NAMES {
        if *name == "X-Tollgate-Connection-Id" {
            continue; // not the configured name here: an ordinary header
        }
        assert!(
            values_of(&echo, name).is_empty(),
            "{name} reached the origin from the client: {echo}"
        );
    }
    drop(proxy);
    // Default headers: the connection id is the proxy's, nothing else spoofed
    // survives, and the names the proxy does not produce are absent.
    let proxy = s.start("mode = \"off\"", "");
    let echo = request(proxy.addr, s.client(None), "/", &spoofed).ok_json();
    for name in REFERENCE_NAMES {
        let values = values_of(&echo, name);
        if *name == "X-Tollgate-Connection-Id" {
            assert_eq!(values.len(), 1, "{values:?}");
            assert_eq!(values[0], proxy.connection(2)["connectionId"]);
        } else {
            assert!(values.is_empty(), "{name} reached the origin: {echo}");
        }
    }
}

/// ALB and CloudFront headers with the exact reference formats, computed
/// here from a certificate whose fields the test chose.
#[test]
fn alb_and_cloudfront_headers_have_the_exact_reference_formats() {
    use time::macros::datetime;
    let s = setup();
    let proxy = s.start(REQUIRED, "[listener.headers]\nalb = true");
    let leaf = s
        .pki
        .issuing
        .client("alb.example")
        .organization("Acme, Inc.")
        .unit("Unit A")
        .serial(&[0x0a, 0x3f, 0x5c, 0x92, 0xd1, 0xe8, 0x7b, 0x6c])
        .validity(
            datetime!(2025-01-15 00:00:00 UTC),
            datetime!(2035-01-14 23:59:59 UTC),
        )
        .build();
    let pem = leaf.pem.replace("\r\n", "\n");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n") && pem.ends_with("-----\n"));
    let id = Identity::chain(&leaf, &[&s.pki.issuing]);
    let echo = request(proxy.addr, s.client(Some(&id)), "/", &[]).ok_json();
    let one = |name: &str| {
        let v = values_of(&echo, name);
        assert_eq!(v.len(), 1, "{name}: {v:?}");
        v[0].to_owned()
    };
    // RFC 2253: last RDN first, `,` in a value escaped.
    let subject = r"CN=alb.example,OU=Unit A,O=Acme\, Inc.";
    let issuer = "CN=E2E Client Issuing CA,O=Tollgate Test";
    let validity = "NotBefore=2025-01-15T00:00:00Z;NotAfter=2035-01-14T23:59:59Z";

    assert_eq!(
        one("x-amzn-mtls-clientcert-serial-number"),
        "0A3F5C92D1E87B6C"
    );
    assert_eq!(one("x-amzn-mtls-clientcert-issuer"), issuer);
    assert_eq!(one("x-amzn-mtls-clientcert-subject"), subject);
    assert_eq!(one("x-amzn-mtls-clientcert-validity"), validity);
    let alb_leaf = one("x-amzn-mtls-clientcert-leaf");
    assert_eq!(alb_leaf, url_encode(&pem, "+=/"));
    assert!(alb_leaf.starts_with("-----BEGIN%20CERTIFICATE-----%0A"));
    assert!(alb_leaf.ends_with("%0A-----END%20CERTIFICATE-----%0A"));
    assert!(!alb_leaf.contains("%2B") && !alb_leaf.contains("%2F") && !alb_leaf.contains("%3D"));

    assert_eq!(
        one("cloudfront-viewer-cert-serial-number"),
        "0a:3f:5c:92:d1:e8:7b:6c"
    );
    assert_eq!(one("cloudfront-viewer-cert-issuer"), issuer);
    assert_eq!(one("cloudfront-viewer-cert-subject"), subject);
    assert_eq!(one("cloudfront-viewer-cert-validity"), validity);
    let cf_pem = one("cloudfront-viewer-cert-pem");
    assert_eq!(cf_pem, url_encode(&pem, ""));
    assert!(cf_pem.starts_with("-----BEGIN%20CERTIFICATE-----%0AMII"));
    assert!(!cf_pem.contains(['+', '/', '=', ' ', '\n']), "{cf_pem}");
    // Passthrough-only and RFC 9440 headers are not part of this set.
    assert!(values_of(&echo, "x-amzn-mtls-clientcert").is_empty());
    assert!(values_of(&echo, "client-cert").is_empty());
    // The connection log uses the CloudFront forms.
    let conn = proxy.connection(1);
    assert_eq!(
        conn["clientLeafCertSerialNumber"],
        "0a:3f:5c:92:d1:e8:7b:6c"
    );
    assert_eq!(conn["clientLeafCertValidity"], validity);
}

/// An unknown SNI and no SNI at all both get the first configured
/// certificate; a known name gets its own.
#[test]
fn unknown_or_missing_sni_gets_the_first_certificate() {
    let s = setup();
    let default = s
        .pki
        .server_ca
        .server(&["default.example", "unknown.example", "127.0.0.1"]);
    write(s.path(), "default.pem", &default.pem);
    write(s.path(), "default.key", &default.key_pem);
    let config = config_for(s.origin.addr, REQUIRED, "").replacen(
        "[[listener.certificate]]\n",
        "[[listener.certificate]]\nnames = [\"default.example\"]\ncert = \"default.pem\"\nkey = \"default.key\"\n\n[[listener.certificate]]\n",
        1,
    );
    let proxy = Proxy::start(s.path(), &config);
    let client = s.client(Some(&s.pki.client("sni.example")));
    let known = fetch(proxy.addr, client.clone(), "localhost", "/");
    assert_eq!(known.server_leaf, s.pki.server.der, "localhost has its own");
    known.seen.ok_json();
    let unknown = fetch(proxy.addr, client.clone(), "unknown.example", "/");
    assert_eq!(unknown.server_leaf, default.der, "unknown SNI");
    unknown.seen.ok_json();
    // rustls sends no SNI for an IP address.
    let none = fetch(proxy.addr, client, "127.0.0.1", "/");
    assert_eq!(none.server_leaf, default.der, "no SNI");
    none.seen.ok_json();
    let records = proxy.connections(3);
    assert_eq!(records[0]["tlsSni"], "localhost");
    assert_eq!(records[1]["tlsSni"], "unknown.example");
    assert!(records[2].get("tlsSni").is_none(), "{}", records[2]);
    assert!(records.iter().all(|r| status(r) == "Success"));
}

/// TLS 1.2 with a client certificate works, and a second connection from
/// a client that keeps sessions is a full handshake again.
#[test]
fn tls12_mtls_works_and_is_never_resumed() {
    let s = setup();
    let proxy = s.start(REQUIRED, "");
    let id = s.pki.client("tls12.example");
    let config = client_config_versions(
        &s.pki.server_ca.pem(),
        Some(&id),
        &[b"http/1.1"],
        &[&rustls::version::TLS12],
    );
    let first = fetch(proxy.addr, config.clone(), "localhost", "/");
    assert_eq!(first.version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(first.kind, Some(rustls::HandshakeKind::Full));
    let echo = first.seen.ok_json();
    assert!(
        echo["headers"]["cloudfront-viewer-cert-subject"]
            .as_str()
            .unwrap()
            .starts_with("CN=tls12.example")
    );
    let second = fetch(proxy.addr, config.clone(), "localhost", "/");
    assert_eq!(second.version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(
        second.kind,
        Some(rustls::HandshakeKind::Full),
        "a TLS 1.2 session was resumed"
    );
    second.seen.ok_json();
    for record in proxy.connections(2) {
        assert_eq!(status(&record), "Success");
        assert_eq!(record["tlsProtocol"], "TLSv1.2");
        let cipher = record["tlsCipher"].as_str().unwrap();
        assert!(
            cipher.starts_with("TLS_ECDHE_")
                && (cipher.contains("_GCM_") || cipher.contains("CHACHA20")),
            "{cipher}"
        );
        assert!(record["clientLeafCertSubject"].is_string());
    }
    // A control: the same kind of client does resume against a server that
    // offers TLS 1.2 resumption (rustls' defaults), so Full above is the
    // proxy's doing.
    let server = s.pki.server.clone();
    let resuming = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(server.der)],
            PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    let other = Origin::start(Some(resuming));
    let control = client_config_versions(
        &s.pki.server_ca.pem(),
        None,
        &[b"http/1.1"],
        &[&rustls::version::TLS12],
    );
    fetch(other.addr, control.clone(), "localhost", "/")
        .seen
        .ok_json();
    assert_eq!(
        fetch(other.addr, control, "localhost", "/").kind,
        Some(rustls::HandshakeKind::Resumed)
    );
}

/// A client certificate with no extended key usage extension at all is
/// good for any purpose, client authentication included.
#[test]
fn a_client_certificate_without_eku_is_accepted() {
    let s = setup();
    let proxy = s.start(REQUIRED, "");
    let leaf = s.pki.issuing.client("no-eku.example").no_eku().build();
    let info = tollgate_x509::CertInfo::parse(&leaf.der).unwrap();
    assert!(
        info.extended_key_usage().is_none(),
        "the test cert has an EKU"
    );
    let id = Identity::chain(&leaf, &[&s.pki.issuing]);
    let echo = request(proxy.addr, s.client(Some(&id)), "/", &[]).ok_json();
    assert!(
        echo["headers"]["cloudfront-viewer-cert-subject"]
            .as_str()
            .unwrap()
            .starts_with("CN=no-eku.example")
    );
    let record = proxy.connection(1);
    assert_eq!(status(&record), "Success", "{record}");
    assert_eq!(s.origin.requests(), 1);
}

/// Unusable trust-store entries are warnings naming the entry, in
/// `tollgate check` and on `serve`'s stderr; the rest of the bundle works.
#[test]
fn trust_store_warnings_name_the_entry_in_check_and_serve() {
    let s = setup();
    let expired = TestCa::root_valid_days("Expired Coverage CA", -60, -2);
    let not_a_ca = s.pki.issuing.client("leaf-in-bundle.example").build();
    let bundle = format!(
        "# the client root\n{}# an expired CA\n{}# not a CA\n{}",
        s.pki.root.pem(),
        expired.pem(),
        not_a_ca.pem
    );
    write(s.path(), "trust-warn.pem", bundle);
    let mtls = "mode = \"required\"\ntrust_store = \"trust-warn.pem\"";
    let config = config_for(s.origin.addr, mtls, "");
    let path = write(s.path(), "check.toml", &config);
    let o = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["check", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{out}");
    assert!(!out.lines().any(|l| l.starts_with("error")), "{out}");
    let warnings: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("warning:"))
        .collect();
    let expired_line = |text: &str| {
        text.lines().any(|l| {
            l.contains("warning:")
                && l.contains("trust-warn.pem")
                && l.contains("entry 2")
                && l.contains("CN=Expired Coverage CA")
                && l.contains("expired")
        })
    };
    let not_ca_line = |text: &str| {
        text.lines().any(|l| {
            l.contains("warning:")
                && l.contains("trust-warn.pem")
                && l.contains("entry 3")
                && l.contains("CN=leaf-in-bundle.example")
                && l.contains("not a CA")
        })
    };
    assert!(expired_line(&out), "{warnings:?}\n{out}");
    assert!(not_ca_line(&out), "{warnings:?}\n{out}");
    assert!(
        !warnings.iter().any(|l| l.contains("E2E Client Root")),
        "the usable root was warned about: {warnings:?}"
    );

    let proxy = Proxy::start(s.path(), &config);
    proxy.wait_for_stderr("CN=Expired Coverage CA");
    let stderr = proxy.stderr();
    assert!(expired_line(&stderr), "{stderr}");
    assert!(not_ca_line(&stderr), "{stderr}");
    request(
        proxy.addr,
        s.client(Some(&s.pki.client("still.example"))),
        "/",
        &[],
    )
    .ok_json();
}

/// The origin connection pool: sequential requests, from several client
/// connections, reuse origin connections. A control with pooling disabled
/// shows that each request would otherwise open its own.
#[test]
fn origin_connections_are_pooled() {
    let s = setup();
    let run = |proxy: &Proxy| {
        let config = s.client(Some(&s.pki.client("pooled.example")));
        for _ in 0..3 {
            let replies = exchange(
                proxy.addr,
                config.clone(),
                false,
                &[("/a", &[]), ("/b", &[])],
            );
            assert!(replies.iter().all(|(code, _)| *code == 200));
        }
    };
    let proxy = s.start(REQUIRED, "");
    run(&proxy);
    assert_eq!(s.origin.requests(), 6);
    // (A request may race its predecessor's connection back into the pool
    // and open another one; without pooling every request opens one.)
    assert!(
        s.origin.connections() < 6,
        "6 sequential requests used {} origin connections",
        s.origin.connections()
    );
    drop(proxy);

    let unpooled = Origin::start(None);
    let proxy = Proxy::start(
        s.path(),
        &config_for(unpooled.addr, REQUIRED, "pool_max_idle_per_host = 0"),
    );
    run(&proxy);
    assert_eq!(unpooled.requests(), 6);
    assert_eq!(unpooled.connections(), 6, "the control kept connections");
}

fn parse_time(text: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
}

/// `2026-11-22T15:43:11.123Z`: UTC, milliseconds.
fn is_millis_utc(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 24
        && b[10] == b'T'
        && b[19] == b'.'
        && b[23] == b'Z'
        && b[20..23].iter().all(u8::is_ascii_digit)
        && parse_time(text).offset() == time::UtcOffset::UTC
}

/// Access records: `timestamp` (RFC 3339 UTC, ms, when the request
/// arrived), `duration` (ms, covering the origin's time), and the
/// `connectionId` of the connection log record of their connection.
#[test]
fn access_records_carry_timestamp_duration_and_their_connections_id() {
    let s = setup();
    let proxy = s.start(REQUIRED, "");
    let config = s.client(Some(&s.pki.client("timed.example")));
    let before = time::OffsetDateTime::now_utc();
    let first = exchange(
        proxy.addr,
        config.clone(),
        false,
        &[("/slow?delay=300", &[]), ("/fast", &[])],
    );
    let second = exchange(proxy.addr, config, false, &[("/other", &[])]);
    let after = time::OffsetDateTime::now_utc();
    let conns = proxy.connections(2);
    let accesses = proxy.accesses(3);
    let ids: Vec<&Value> = conns.iter().map(|c| &c["connectionId"]).collect();
    assert_ne!(ids[0], ids[1]);
    assert_eq!(accesses[0]["connectionId"], *ids[0]);
    assert_eq!(accesses[1]["connectionId"], *ids[0]);
    assert_eq!(accesses[2]["connectionId"], *ids[1]);
    // The same id went to the origin with each request.
    for ((_, echo), access) in first.iter().chain(&second).zip(&accesses) {
        assert_eq!(
            echo["headers"]["x-tollgate-connection-id"],
            access["connectionId"]
        );
    }
    let slack = time::Duration::seconds(1);
    let mut previous = None;
    for (access, conn) in accesses.iter().zip([&conns[0], &conns[0], &conns[1]]) {
        // RFC 3339 in UTC (the fixed three-digit form: see the test below).
        let ts = access["timestamp"].as_str().expect("a timestamp");
        assert!(ts.ends_with('Z'), "{ts}");
        let ts = parse_time(ts);
        assert!(ts >= before - slack && ts <= after + slack, "{access}");
        assert!(
            ts >= parse_time(conn["eventTimestamp"].as_str().unwrap()),
            "request before its connection: {access} {conn}"
        );
        if let Some(p) = previous {
            assert!(ts >= p, "timestamps go backwards");
        }
        previous = Some(ts);
        let duration = access["duration"].as_f64().expect("a duration");
        let origin = access["originDuration"].as_f64().expect("originDuration");
        assert!(duration > 0.0 && duration < 10_000.0, "{access}");
        assert!(duration >= origin, "{access}");
    }
    // The origin held the first request for 300 ms.
    let slow = accesses[0]["duration"].as_f64().unwrap();
    assert!(slow >= 300.0, "{}", accesses[0]);
    assert!(accesses[0]["originDuration"].as_f64().unwrap() >= 300.0);
    assert!(accesses[1]["duration"].as_f64().unwrap() < slow);
    assert_eq!(accesses[0]["path"], "/slow");
}

/// Log timestamps have the documented form, `…:11.123Z`, every time
/// (docs/logs.md: "RFC 3339, UTC, ms"; the example has three digits). Each
/// timestamp whose millisecond ends in 0 would show a formatter that drops
/// trailing zeros, so 50 requests all but surely include one (tollgate-log's
/// unit test checks the formatter itself).
#[test]
fn log_timestamps_always_have_three_fraction_digits() {
    let s = setup();
    let proxy = s.start(REQUIRED, "");
    let requests: Vec<(&str, &[(&str, &str)])> = vec![("/", &[]); 50];
    exchange(
        proxy.addr,
        s.client(Some(&s.pki.client("clock.example"))),
        false,
        &requests,
    );
    let mut stamps: Vec<String> = proxy
        .accesses(50)
        .iter()
        .map(|a| a["timestamp"].as_str().unwrap().to_owned())
        .collect();
    stamps.push(
        proxy.connection(1)["eventTimestamp"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let bad: Vec<&String> = stamps.iter().filter(|t| !is_millis_utc(t)).collect();
    assert!(bad.is_empty(), "not YYYY-MM-DDTHH:MM:SS.mmmZ: {bad:?}");
}

/// The demo tells the user a client without a certificate gets
/// "certificate required", and that is the alert such a client receives.
#[test]
fn the_demo_says_certificate_required_and_a_client_gets_that_alert() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let demo = Demo::start(&demo_dir);
    let mut intro = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !intro.iter().any(|l: &String| l.contains("Ctrl-C")) {
        let left = deadline.saturating_duration_since(Instant::now());
        intro.push(demo.line(left).expect("the demo's introduction"));
    }
    let addr: SocketAddr = intro
        .iter()
        .find_map(|l| l.split("mTLS proxy on https://").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {intro:#?}"));
    // The no-certificate case is announced as "certificate required", with
    // a curl command without --cert after it.
    let at = intro
        .iter()
        .position(|l| l.contains("No client certificate"))
        .unwrap_or_else(|| panic!("{intro:#?}"));
    assert!(intro[at].contains("certificate required"), "{}", intro[at]);
    let cmd = intro[at + 1..]
        .iter()
        .find(|l| l.trim().starts_with("curl "))
        .unwrap();
    assert!(!cmd.contains("--cert"), "{cmd}");

    // A rustls client with no certificate: the alert it gets.
    let ca = std::fs::read_to_string(demo_dir.join("ca.pem")).unwrap();
    let config = client_config(&ca, None, &[b"http/1.1"]);
    let mut conn =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut error = None;
    while conn.is_handshaking() && error.is_none() {
        error = conn.complete_io(&mut tcp).err();
    }
    // TLS 1.3: the client's side of the handshake ends before the server has
    // looked at its (empty) certificate; the alert comes with the next read.
    let error = error.unwrap_or_else(|| {
        let mut buf = [0u8; 1];
        rustls::Stream::new(&mut conn, &mut tcp)
            .read(&mut buf)
            .expect_err("served without a certificate")
    });
    let alert = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .cloned();
    assert_eq!(
        alert,
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired
        )),
        "{error}"
    );
}
