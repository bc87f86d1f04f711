//! The mTLS edge end to end: the real binary, real handshakes (rustls client),
//! real compiled functions, a real origin. Each failure code of the connection
//! log is produced by a real client here.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;

use common::*;
use tollgate_guests as guests;
use tollgate_testkit::{TestCa, hex, kvs_json, write};

const REQUIRED: &str = "mode = \"required\"\ntrust_store = \"trust.pem\"";

fn status(record: &serde_json::Value) -> &str {
    record["connectionStatus"].as_str().unwrap()
}

#[test]
fn a_valid_client_reaches_the_origin_with_its_identity_and_both_logs_join() {
    let s = setup();
    let proxy = s.start(REQUIRED, "");
    let id = s.pki.client("valid.example");
    let seen = request(proxy.addr, s.client(Some(&id)), "/hello?x=1", &[]);
    let echo = seen.ok_json();
    let info = tollgate_x509::CertInfo::parse(&id.leaf_der).unwrap();
    let h = &echo["headers"];
    assert_eq!(echo["path"], "/hello?x=1");
    assert_eq!(h["cloudfront-viewer-cert-present"], "1");
    assert_eq!(
        h["cloudfront-viewer-cert-serial-number"],
        info.serial_number()
    );
    assert_eq!(h["cloudfront-viewer-cert-subject"], info.subject());
    assert_eq!(h["cloudfront-viewer-cert-issuer"], info.issuer());
    assert_eq!(
        h["cloudfront-viewer-cert-sha256"],
        tollgate_x509::sha256_fingerprint(&id.leaf_der)
    );
    assert_eq!(h["cloudfront-viewer-cert-validity"], info.validity_header());
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");

    let conn = proxy.connection(1);
    assert_eq!(status(&conn), "Success");
    assert_eq!(conn["tlsProtocol"], "TLSv1.3");
    assert!(
        conn["tlsCipher"].as_str().unwrap().starts_with("TLS_"),
        "{conn}"
    );
    assert_eq!(conn["tlsSni"], "localhost");
    assert_eq!(conn["clientLeafCertSerialNumber"], info.serial_number());
    assert_eq!(conn["clientLeafCertSubject"], info.subject());
    assert_eq!(conn["clientIp"], "127.0.0.1");
    assert_eq!(conn["serverPort"], proxy.addr.port());
    assert_eq!(conn["listener"], "e2e");
    assert!(conn["tlsHandshakeDuration"].as_f64().unwrap() > 0.0);
    let access = &proxy.accesses(1)[0];
    assert_eq!(access["connectionId"], conn["connectionId"]);
    assert_eq!(h["x-tollgate-connection-id"], conn["connectionId"]);
    assert_eq!(access["status"], 200);
    assert_eq!(access["originStatus"], 200);
    assert_eq!(access["method"], "GET");
    assert_eq!(access["path"], "/hello");
    assert!(access["bytes"].as_u64().unwrap() > 100);
}

#[test]
fn every_certificate_failure_has_its_code_and_never_reaches_the_origin() {
    let s = setup();
    let crl_victim = s.pki.issuing.client("revoked.example").build();
    write(
        s.path(),
        "issuing.crl",
        s.pki.issuing.crl(&[&crl_victim.der]),
    );
    // Depth: root → issuing → sub1 → sub2 → leaf is 5 with the root.
    let sub1 = s.pki.issuing.intermediate("E2E Sub 1");
    let sub2 = sub1.intermediate("E2E Sub 2");
    let deep = Identity::chain(
        &sub2.client("deep.example").build(),
        &[&sub2, &sub1, &s.pki.issuing],
    );
    let depth4 = Identity::chain(
        &sub1.client("depth4.example").build(),
        &[&sub1, &s.pki.issuing],
    );
    let other = TestCa::root("Stranger CA");
    let i = &s.pki.issuing;
    let cases: Vec<(&str, Option<Identity>)> = vec![
        ("ClientCertMissing", None),
        (
            "ClientCertUntrusted",
            Some(Identity::chain(&other.client("stranger").build(), &[])),
        ),
        (
            "ClientCertExpired",
            Some(Identity::chain(
                &i.client("old").valid_days(-30, -1).build(),
                &[i],
            )),
        ),
        (
            "ClientCertNotYetValid",
            Some(Identity::chain(
                &i.client("future").valid_days(2, 30).build(),
                &[i],
            )),
        ),
        ("ClientCertCrlHit", Some(Identity::chain(&crl_victim, &[i]))),
        ("ClientCertMaxChainDepthExceeded", Some(deep)),
        (
            "ClientCertPurposeInvalid",
            Some(Identity::chain(
                &i.client("server-only").server_auth_only().build(),
                &[i],
            )),
        ),
    ];
    let proxy = s.start(&format!("{REQUIRED}\ncrls = [\"issuing.crl\"]"), "");
    for (n, (code, identity)) in cases.iter().enumerate() {
        let seen = request(proxy.addr, s.client(identity.as_ref()), "/", &[]);
        assert!(
            matches!(seen, Seen::HandshakeFailed(_) | Seen::Closed(_)),
            "{code}: {seen:?}"
        );
        let record = proxy.connection(n + 1);
        assert_eq!(status(&record), format!("Failed:{code}"), "{record}");
        assert!(record["reason"].as_str().is_some_and(|r| !r.is_empty()));
        // The refused certificate is named in the log.
        if let Some(id) = identity {
            let info = tollgate_x509::CertInfo::parse(&id.leaf_der).unwrap();
            assert_eq!(
                record["clientLeafCertSerialNumber"],
                info.serial_number(),
                "{record}"
            );
        }
    }
    assert_eq!(
        s.origin.requests(),
        0,
        "a refused connection reached the origin"
    );
    // Depth 4 (leaf, two intermediates, root) is the limit and passes.
    let seen = request(proxy.addr, s.client(Some(&depth4)), "/", &[]);
    seen.ok_json();
    assert_eq!(s.origin.requests(), 1);
}

/// The listener runs the revocation function over the store `revoked`
/// (files `revocation.wasm` and `revoked.json`).
const REVOCATION: &str = r#"
[listener.function]
name = "revocation"

[functions.revocation]
wasm = "revocation.wasm"
kvs = ["revoked"]

[kvs.revoked]
import = "revoked.json"
"#;

#[test]
fn the_function_decides_before_any_http_and_denials_never_reach_the_origin() {
    let s = setup();
    let valid = s.pki.client("valid.example");
    let revoked = s.pki.client("revoked.example");
    let serial = hex(&tollgate_testkit::serial_of(&revoked.leaf_der));
    write(
        s.path(),
        "revoked.json",
        kvs_json([(serial.as_str(), "stolen laptop")]),
    );
    write(s.path(), "revocation.wasm", guests::REVOCATION_WASM);
    write(s.path(), "loop.wasm", guests::INFINITE_LOOP_WASM);
    let extra = format!(
        "{REVOCATION}
[functions.looping]
wasm = \"loop.wasm\"
time_limit = \"2ms\"
"
    );
    let proxy = s.start(REQUIRED, &extra);
    request(proxy.addr, s.client(Some(&valid)), "/", &[]).ok_json();
    let ok = proxy.connection(1);
    assert_eq!(status(&ok), "Success");
    assert_eq!(ok["functionName"], "revocation");
    assert!(ok["functionDuration"].as_f64().unwrap() > 0.0);

    let seen = request(proxy.addr, s.client(Some(&revoked)), "/", &[]);
    assert!(matches!(seen, Seen::Closed(_)), "{seen:?}");
    let denied = proxy.connection(2);
    assert_eq!(status(&denied), "Failed:ConnectionFunctionDenied");
    assert_eq!(
        denied["connectionLogCustomData"].as_str().unwrap(),
        format!("REVOKED:{serial}")
    );
    assert_eq!(s.origin.requests(), 1);
    assert_eq!(ok["functionReplayed"], serde_json::Value::Null, "{ok}");

    // The same clients again: the same answers, so the function's earlier
    // outcomes are replayed, with the same decisions and custom data.
    request(proxy.addr, s.client(Some(&valid)), "/", &[]).ok_json();
    let seen = request(proxy.addr, s.client(Some(&revoked)), "/", &[]);
    assert!(matches!(seen, Seen::Closed(_)), "{seen:?}");
    let again = proxy.connections(4);
    for (record, first) in again[2..].iter().zip([&ok, &denied]) {
        assert_eq!(record["functionReplayed"], true, "{record}");
        assert_eq!(status(record), status(first));
        assert_eq!(
            record["connectionLogCustomData"],
            first["connectionLogCustomData"]
        );
    }
    assert_eq!(s.origin.requests(), 2);
    drop(proxy);

    // A function that runs out of time: ConnectionFunctionError, denied.
    let proxy = s.start(
        REQUIRED,
        &extra.replace(
            "name = \"revocation\"\n\n[functions",
            "name = \"looping\"\n\n[functions",
        ),
    );
    let seen = request(proxy.addr, s.client(Some(&valid)), "/", &[]);
    assert!(matches!(seen, Seen::Closed(_)), "{seen:?}");
    let record = proxy.connection(5);
    assert_eq!(
        status(&record),
        "Failed:ConnectionFunctionError",
        "{record}"
    );
    assert!(
        record["reason"].as_str().unwrap().contains("timeout"),
        "{record}"
    );
    assert_eq!(s.origin.requests(), 2);
}

#[test]
fn with_instance_reuse_each_connection_still_gets_its_own_decision() {
    let s = setup();
    let valid = s.pki.client("valid.example");
    let revoked = s.pki.client("revoked.example");
    let bad = hex(&tollgate_testkit::serial_of(&revoked.leaf_der));
    let good = hex(&tollgate_testkit::serial_of(&valid.leaf_der));
    write(s.path(), "revoked.json", kvs_json([(bad.as_str(), "")]));
    write(s.path(), "revocation.wasm", guests::REVOCATION_WASM);
    let extra = format!("{REVOCATION}\n[runtime]\nmax_calls_per_instance = 100\n");
    let proxy = s.start(REQUIRED, &extra);
    for round in 0..3 {
        request(proxy.addr, s.client(Some(&valid)), "/", &[]).ok_json();
        let seen = request(proxy.addr, s.client(Some(&revoked)), "/", &[]);
        assert!(matches!(seen, Seen::Closed(_)), "{seen:?}");
        let records = proxy.connections(2 * (round + 1));
        let (ok, denied) = (&records[2 * round], &records[2 * round + 1]);
        assert_eq!(status(ok), "Success", "{ok}");
        assert_eq!(ok["connectionLogCustomData"], format!("VALID:{good}"));
        assert_eq!(status(denied), "Failed:ConnectionFunctionDenied");
        assert_eq!(denied["connectionLogCustomData"], format!("REVOKED:{bad}"));
    }
    assert_eq!(s.origin.requests(), 3);
}

#[test]
fn tcp_failures_have_their_codes() {
    let s = setup();
    let proxy = s.start(REQUIRED, "[listener.limits]\nhandshake_timeout = \"300ms\"");
    // Connect and say nothing: the handshake times out.
    let silent = TcpStream::connect(proxy.addr).unwrap();
    let record = proxy.connection(1);
    assert_eq!(status(&record), "Failed:TcpTimeout", "{record}");
    drop(silent);
    // Start a ClientHello and hang up.
    let mut rude = TcpStream::connect(proxy.addr).unwrap();
    rude.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    drop(rude);
    let record = proxy.connection(2);
    assert_eq!(status(&record), "Failed:TcpError", "{record}");
}

#[test]
fn ignore_expiry_admits_an_expired_chain_but_not_a_revoked_one() {
    let s = setup();
    let i = &s.pki.issuing;
    let expired = Identity::chain(&i.client("old").valid_days(-30, -1).build(), &[i]);
    let expired_revoked_cert = i.client("old-revoked").valid_days(-30, -1).build();
    write(s.path(), "issuing.crl", i.crl(&[&expired_revoked_cert.der]));
    // The inspect guest logs "inspected expiry-ignored" when the connection
    // object says expiry was ignored.
    write(s.path(), "inspect.wasm", guests::INSPECT_WASM);
    let proxy = s.start(
        &format!("{REQUIRED}\ncrls = [\"issuing.crl\"]\nignore_certificate_expiry = true"),
        // A roomy time limit: the debug-built host parses certificates for the
        // guest, and a loaded CI machine must not turn that into a timeout.
        "[listener.function]\nname = \"inspect\"\n[functions.inspect]\nwasm = \"inspect.wasm\"\ntime_limit = \"200ms\"\n",
    );
    request(proxy.addr, s.client(Some(&expired)), "/", &[]).ok_json();
    let record = proxy.connection(1);
    assert_eq!(status(&record), "Success");
    assert_eq!(record["expiryIgnored"], true);
    assert_eq!(
        record["connectionLogCustomData"],
        "inspected expiry-ignored"
    );
    let seen = request(
        proxy.addr,
        s.client(Some(&Identity::chain(&expired_revoked_cert, &[i]))),
        "/",
        &[],
    );
    assert!(!matches!(seen, Seen::Http(..)), "{seen:?}");
    assert_eq!(status(&proxy.connection(2)), "Failed:ClientCertCrlHit");
    // A valid client is not flagged.
    request(proxy.addr, s.client(Some(&s.pki.client("fresh"))), "/", &[]).ok_json();
    let fresh = proxy.connection(3);
    assert!(fresh.get("expiryIgnored").is_none());
    assert_eq!(fresh["connectionLogCustomData"], "inspected");
    // Nor is a valid client that also sends an expired certificate its path
    // does not use: the flag is the verifier's answer, not a look at what
    // was sent.
    let mut padded = s.pki.client("padded");
    let stray = TestCa::root("Stray")
        .client("stray")
        .valid_days(-10, -5)
        .build();
    padded.chain_pem.push_str(&stray.pem);
    request(proxy.addr, s.client(Some(&padded)), "/", &[]).ok_json();
    let padded = proxy.connection(4);
    assert_eq!(status(&padded), "Success");
    assert!(padded.get("expiryIgnored").is_none(), "{padded}");
    assert_eq!(padded["connectionLogCustomData"], "inspected");
}

#[test]
fn optional_mode_admits_no_certificate_but_not_a_bad_one() {
    let s = setup();
    let proxy = s.start("mode = \"optional\"\ntrust_store = \"trust.pem\"", "");
    let echo = request(proxy.addr, s.client(None), "/", &[]).ok_json();
    assert_eq!(echo["headers"]["cloudfront-viewer-cert-present"], "0");
    assert!(
        echo["headers"]
            .get("cloudfront-viewer-cert-subject")
            .is_none()
    );
    let stranger = Identity::chain(&TestCa::root("Stranger").client("x").build(), &[]);
    let seen = request(proxy.addr, s.client(Some(&stranger)), "/", &[]);
    assert!(!matches!(seen, Seen::Http(..)), "{seen:?}");
    assert_eq!(status(&proxy.connection(2)), "Failed:ClientCertUntrusted");
    let echo = request(proxy.addr, s.client(Some(&s.pki.client("ok"))), "/", &[]).ok_json();
    assert_eq!(echo["headers"]["cloudfront-viewer-cert-present"], "1");
}

#[test]
fn passthrough_forwards_the_chain_as_rfc9440_and_checks_only_the_key() {
    let s = setup();
    let stranger_ca = TestCa::root("Unknown To The Proxy");
    let stranger = Identity::chain(&stranger_ca.client("self.example").build(), &[&stranger_ca]);
    let proxy = s.start("mode = \"passthrough\"", "");
    let echo = request(
        proxy.addr,
        s.client(Some(&stranger)),
        "/",
        &[("Client-Cert", ":Zm9v:")],
    )
    .ok_json();
    let h = &echo["headers"];
    assert_eq!(
        h["client-cert"],
        tollgate_x509::rfc9440_item(&stranger.leaf_der)
    );
    assert_eq!(
        h["client-cert-chain"],
        tollgate_x509::rfc9440_item(&stranger_ca.der())
    );
    assert!(h.get("cloudfront-viewer-cert-subject").is_none(), "{h}");
    assert_eq!(h["cloudfront-viewer-cert-present"], "1");
    assert_eq!(status(&proxy.connection(1)), "Success");
}

/// A client whose CertificateVerify does not match its certificate (it sends
/// someone else's certificate, signing with its own key) is refused as
/// `ClientCertInvalid`, in passthrough (where the key is all that is checked)
/// and in required mode alike.
#[test]
fn a_client_without_its_certificates_key_is_refused_as_invalid() {
    for mode in ["mode = \"passthrough\"", REQUIRED] {
        impostor_is_refused(mode);
    }
}

fn impostor_is_refused(mode: &str) {
    use rustls::client::ResolvesClientCert;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    use rustls::sign::CertifiedKey;

    #[derive(Debug)]
    struct Impostor(Arc<CertifiedKey>);
    impl ResolvesClientCert for Impostor {
        fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
        fn has_certs(&self) -> bool {
            true
        }
    }

    let s = setup();
    let victim = s.pki.client("victim");
    let own_key = s.pki.client("impostor").key_pem;
    let key = PrivateKeyDer::from_pem_slice(own_key.as_bytes()).unwrap();
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).unwrap();
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(victim.chain_pem.as_bytes())
            .map(|c| c.unwrap())
            .collect();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(s.pki.server_ca.der()))
        .unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(Impostor(Arc::new(CertifiedKey::new(
            chain, signer,
        )))));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let config = Arc::new(config);

    let proxy = s.start(mode, "");
    let seen = request(proxy.addr, config, "/", &[]);
    assert!(!matches!(seen, Seen::Http(..)), "{mode}: {seen:?}");
    let record = proxy.connection(1);
    assert_eq!(
        status(&record),
        "Failed:ClientCertInvalid",
        "{mode}: {record}"
    );
    assert_eq!(
        s.origin.requests(),
        0,
        "{mode}: the impostor reached the origin"
    );
    // The real owner gets in.
    request(proxy.addr, s.client(Some(&victim)), "/", &[]).ok_json();
    assert_eq!(status(&proxy.connection(2)), "Success");
}

#[test]
fn off_mode_requests_no_certificate() {
    let s = setup();
    let proxy = s.start("mode = \"off\"", "");
    // Even a client with a certificate is not asked for it.
    let echo = request(
        proxy.addr,
        s.client(Some(&s.pki.client("unasked"))),
        "/",
        &[],
    )
    .ok_json();
    assert!(
        echo["headers"]
            .get("cloudfront-viewer-cert-present")
            .is_none()
    );
    assert!(proxy.connection(1).get("clientLeafCertSubject").is_none());
}

#[test]
fn spoofed_identity_headers_are_stripped_and_replaced() {
    let s = setup();
    let proxy = s.start(REQUIRED, "[listener.headers]\nalb = true\nrfc9440 = true");
    let id = s.pki.client("honest.example");
    let spoofed: Vec<(&str, &str)> = tollgate_proxy::IDENTITY_HEADERS
        .iter()
        .map(|n| (*n, "CN=admin"))
        .chain([
            ("X-Tollgate-Connection-Id", "forged"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("CloudFront-Viewer-Cert-Something-New", "x"),
        ])
        .collect();
    let echo = request(proxy.addr, s.client(Some(&id)), "/", &spoofed).ok_json();
    let h = echo["headers"].as_object().unwrap();
    for (name, value) in h {
        assert_ne!(value, "CN=admin", "{name} kept a client value");
    }
    assert!(!h.contains_key("cloudfront-viewer-cert-something-new"));
    assert_ne!(h["x-tollgate-connection-id"], "forged");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert!(
        h["cloudfront-viewer-cert-subject"]
            .as_str()
            .unwrap()
            .starts_with("CN=honest.example")
    );
    assert!(
        h["x-amzn-mtls-clientcert-subject"]
            .as_str()
            .unwrap()
            .starts_with("CN=honest.example")
    );
    assert_eq!(h["client-cert"], tollgate_x509::rfc9440_item(&id.leaf_der));
    // x-amzn-mtls-clientcert (passthrough only) must not exist in verify mode.
    assert!(!h.contains_key("x-amzn-mtls-clientcert"));
}

#[test]
fn resumption_is_off_so_every_connection_is_checked_in_full() {
    let s = setup();
    let proxy = s.start(REQUIRED, "");
    let config = s.client(Some(&s.pki.client("again")));
    for _ in 0..3 {
        request(proxy.addr, config.clone(), "/", &[]).ok_json();
    }
    let records = proxy.connections(3);
    assert!(records.iter().all(|r| status(r) == "Success"));
    assert!(
        records
            .iter()
            .all(|r| r["clientLeafCertSubject"].is_string())
    );
    // The client kept whatever session state it was given; the next
    // handshake is still a full one.
    assert_eq!(
        handshake_kind(proxy.addr, config),
        Some(rustls::HandshakeKind::Full)
    );
}

/// Completes a handshake, then waits for the server to close; returns how
/// long that took (None if it stayed open past `limit`).
fn closed_after(
    addr: std::net::SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
    send: &[u8],
    limit: std::time::Duration,
) -> Option<std::time::Duration> {
    use std::io::Read;
    let mut conn = rustls::ClientConnection::new(
        config,
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    let start = std::time::Instant::now();
    tcp.set_read_timeout(Some(limit)).unwrap();
    let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
    stream.write_all(send).unwrap();
    let mut buf = Vec::new();
    match stream.read_to_end(&mut buf) {
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut =>
        {
            None
        }
        _ => Some(start.elapsed()),
    }
}

#[test]
fn slow_idle_and_oversized_requests_are_cut_off() {
    let s = setup();
    let proxy = s.start(
        REQUIRED,
        "[listener.http]\nheader_read_timeout = \"400ms\"\nidle_timeout = \"600ms\"\nmax_header_bytes = 8192",
    );
    let config = s.client(Some(&s.pki.client("slow")));
    let limit = std::time::Duration::from_secs(5);
    // A request head that never ends: closed by the header-read timeout.
    let t = closed_after(
        proxy.addr,
        config.clone(),
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        limit,
    )
    .expect("a slow request head is cut off");
    assert!(t < std::time::Duration::from_secs(3), "{t:?}");
    // Nothing at all: closed by the idle timeout.
    let t =
        closed_after(proxy.addr, config.clone(), b"", limit).expect("an idle connection is closed");
    assert!(t < std::time::Duration::from_secs(3), "{t:?}");
    // A head over the limit: 431, the origin never sees it.
    let big = "x".repeat(20_000);
    match request(proxy.addr, config.clone(), "/", &[("X-Big", &big)]) {
        Seen::Http(431, _) => {}
        other => panic!("expected 431, got {other:?}"),
    }
    assert_eq!(s.origin.requests(), 0);
    // A normal request still works.
    request(proxy.addr, config, "/", &[]).ok_json();
}

/// An HTTP/2 connection driven frame by frame.
type RawH2 = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// An mTLS connection for `cn` that negotiated h2, with the connection
/// preface and an empty SETTINGS frame sent.
fn raw_h2(s: &Setup, proxy: &Proxy, cn: &str, read_timeout: std::time::Duration) -> RawH2 {
    let config = client_config(&s.pki.server_ca.pem(), Some(&s.pki.client(cn)), &[b"h2"]);
    let mut conn = rustls::ClientConnection::new(
        config,
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut tcp = TcpStream::connect(proxy.addr).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
    tcp.set_read_timeout(Some(read_timeout)).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    stream
}

/// An HTTP/2 client that sends no request, only PINGs (each answered by the
/// proxy), is idle: closed after `idle_timeout`, not kept forever.
#[test]
fn an_http2_connection_with_only_pings_is_closed_as_idle() {
    use std::io::Read;
    let s = setup();
    let proxy = s.start(
        REQUIRED,
        "[listener.http]\nheader_read_timeout = \"500ms\"\nidle_timeout = \"2s\"",
    );
    let mut stream = raw_h2(&s, &proxy, "pinger", std::time::Duration::from_millis(100));
    let start = std::time::Instant::now();
    let mut answered = 0usize;
    let closed = loop {
        if start.elapsed() > std::time::Duration::from_secs(8) {
            break None;
        }
        // PING (type 6), 8 bytes of payload, on stream 0.
        if stream.write_all(b"\0\0\x08\x06\0\0\0\0\0pingpong").is_err() {
            break Some(start.elapsed());
        }
        let mut buf = [0u8; 4096];
        match stream.read(&mut buf) {
            Ok(0) => break Some(start.elapsed()),
            Ok(n) => answered += n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break Some(start.elapsed()),
        }
        std::thread::sleep(std::time::Duration::from_millis(150));
    };
    assert!(
        answered > 0,
        "the proxy answered nothing: not an HTTP/2 peer?"
    );
    let closed = closed.expect("a connection with only PINGs is closed as idle");
    assert!(
        closed >= std::time::Duration::from_millis(1800),
        "closed before idle_timeout: {closed:?}"
    );
    assert_eq!(s.origin.requests(), 0);
}

/// A request that reaches an HTTP/2 connection after it was closed as idle
/// (the client starts it right after the GOAWAY and never answers the
/// shutdown PING) is answered before the connection is dropped.
#[test]
fn a_request_after_an_idle_goaway_is_answered_before_the_drop() {
    use std::io::Read;
    let s = setup();
    let proxy = s.start(
        REQUIRED,
        "[listener.http]\nheader_read_timeout = \"2s\"\nidle_timeout = \"500ms\"",
    );
    let mut stream = raw_h2(&s, &proxy, "late", std::time::Duration::from_secs(10));
    // Frames as (type, stream), until `until` matches or the connection ends.
    let read_until = |stream: &mut RawH2, until: &dyn Fn(u8, u32) -> bool| {
        let mut header = [0u8; 9];
        loop {
            if stream.read_exact(&mut header).is_err() {
                return false;
            }
            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0u8; len];
            if stream.read_exact(&mut payload).is_err() {
                return false;
            }
            let id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
            if until(header[3], id) {
                return true;
            }
        }
    };
    // Idle: the proxy sends GOAWAY (type 7).
    assert!(read_until(&mut stream, &|t, _| t == 7), "no GOAWAY");
    // A request anyway, on stream 1, which the origin answers 3 s later,
    // after the 2 s drop grace (for HTTP/2, `header_read_timeout`) would have
    // run out (HPACK: :method GET, :scheme https, :path /?delay=3000,
    // :authority).
    let path = b"/?delay=3000";
    let mut block = vec![0x82, 0x87, 0x44, path.len() as u8];
    block.extend_from_slice(path);
    block.extend_from_slice(&[0x41, 9]);
    block.extend_from_slice(b"localhost");
    let mut frame = (block.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend_from_slice(&[0x01, 0x05, 0, 0, 0, 1]);
    frame.extend_from_slice(&block);
    stream.write_all(&frame).unwrap();
    // Its response (HEADERS, type 1, on stream 1) arrives before the drop.
    assert!(
        read_until(&mut stream, &|t, id| t == 1 && id == 1),
        "dropped with the request in flight"
    );
    assert_eq!(s.origin.requests(), 1);
}

/// An origin that sends its head and then stalls mid-body does not hold the
/// client: after `response_timeout` without a byte the response is cut
/// (the client sees an incomplete body) and the access log says why.
#[test]
fn an_origin_that_stalls_mid_body_is_cut_off() {
    let s = setup();
    let proxy = s.start(REQUIRED, "response_timeout = \"1s\"");
    let config = s.client(Some(&s.pki.client("stalled")));
    let start = std::time::Instant::now();
    let seen = request(proxy.addr, config.clone(), "/?stall=5000", &[]);
    let took = start.elapsed();
    assert!(
        !matches!(seen, Seen::Http(200, ref body) if body.ends_with("}\n")),
        "{seen:?}"
    );
    assert!(took < std::time::Duration::from_secs(4), "{took:?}");
    let access = &proxy.accesses(1)[0];
    assert!(
        access["error"]
            .as_str()
            .is_some_and(|e| e.contains("stalled")),
        "{access}"
    );
    // A body that arrives in time is whole.
    request(proxy.addr, config, "/?stall=100", &[]).ok_json();
}

#[test]
fn a_keep_alive_connection_outlives_the_header_read_timeout_while_idle() {
    let s = setup();
    let proxy = s.start(
        REQUIRED,
        "[listener.http]\nheader_read_timeout = \"300ms\"\nidle_timeout = \"5s\"",
    );
    let mut session =
        common::admin::Session::open(proxy.addr, s.client(Some(&s.pki.client("keepalive"))));
    assert_eq!(session.get(), 200);
    // Idle for longer than the header-read timeout, shorter than idle_timeout.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(session.try_get(), Some(200));
}
