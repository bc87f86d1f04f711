//! The edge with the tools operators use: curl, openssl s_client, HTTP/2,
//! origin mTLS, signals, `tollgate check` and `tollgate demo`.

mod common;

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tollgate_testkit::{TestCa, write};

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run a tool")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn curl(proxy: &Proxy, dir: &std::path::Path, args: &[&str]) -> Output {
    let port = proxy.addr.port();
    run(Command::new("curl")
        .args(["-sS", "--max-time", "20", "--resolve"])
        .arg(format!("localhost:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(dir.join("server-ca.pem"))
        .args(args)
        .arg(format!("https://localhost:{port}/")))
}

const REQUIRED: &str = "mode = \"required\"\ntrust_store = \"trust.pem\"";

#[test]
fn curl_sees_each_outcome_and_http2_works() {
    let Env {
        dir,
        pki,
        origin,
        proxy,
    } = Env::required("");
    let (cert, key) = pki.client("curl.example").write(dir.path(), "client");
    let cert_args = [
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];

    let o = curl(
        &proxy,
        dir.path(),
        &[&cert_args[..], &["--http1.1"]].concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let echo: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        echo["headers"]["cloudfront-viewer-cert-subject"]
            .as_str()
            .unwrap()
            .starts_with("CN=curl.example")
    );

    let o = curl(
        &proxy,
        dir.path(),
        &[&cert_args[..], &["--http2", "-w", "%{http_version}"]].concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).ends_with('2'),
        "{}",
        text(&o)
    );
    let accesses = proxy.accesses(2);
    assert_eq!(accesses[1]["protocol"], "HTTP/2.0");

    // No certificate: the handshake fails (rustls sends certificate_required;
    // depending on timing curl reports the alert, a reset or the closed
    // socket) and curl gets no HTTP response.
    let o = curl(&proxy, dir.path(), &["-w", "%{http_code}"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "000", "{}", text(&o));
    assert_eq!(
        proxy.connection(3)["connectionStatus"],
        "Failed:ClientCertMissing"
    );
    assert_eq!(origin.requests(), 2);
}

#[test]
fn openssl_sees_the_advertised_ca_names_only_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    pki.write(dir.path());
    let origin = Origin::start(None);
    let s_client = |proxy: &Proxy| {
        text(&run(Command::new("openssl")
            .args(["s_client", "-connect"])
            .arg(proxy.addr.to_string())
            .args(["-servername", "localhost", "-CAfile"])
            .arg(dir.path().join("server-ca.pem"))))
    };
    let on = Proxy::start(
        dir.path(),
        &config_for(
            origin.addr,
            &format!("{REQUIRED}\nadvertise_ca_names = true"),
            "",
        ),
    );
    let out = s_client(&on);
    assert!(
        out.contains("Acceptable client certificate CA names"),
        "{out}"
    );
    assert!(
        out.contains("CN = E2E Client Root") || out.contains("CN=E2E Client Root"),
        "{out}"
    );
    drop(on);
    let off = Proxy::start(dir.path(), &config_for(origin.addr, REQUIRED, ""));
    let out = s_client(&off);
    assert!(!out.contains("E2E Client Root"), "{out}");
    assert!(out.contains("No client certificate CA names sent"), "{out}");
}

/// An https origin that requires a client certificate from `client_ca`.
fn mtls_origin(dir: &std::path::Path, client_ca: &TestCa) -> Origin {
    let origin_ca = TestCa::root("Origin CA");
    let server = origin_ca.server(&["localhost"]);
    write(dir, "origin-ca.pem", origin_ca.pem());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(client_ca.der())).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(server.der.clone())],
            PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    Origin::start(Some(config))
}

/// The origin client certificate must carry the clientAuth EKU (reference
/// §6): one without any EKU is an error; an expired one is a warning.
#[test]
fn check_judges_the_origin_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    pki.write(dir.path());
    let edge_ca = TestCa::root("Edge Client CA");
    write(dir.path(), "origin-ca.pem", TestCa::root("Origin CA").pem());
    let check = |cert: &tollgate_testkit::TestCert| {
        write(dir.path(), "edge.pem", &cert.pem);
        write(dir.path(), "edge.key", &cert.key_pem);
        let config = config_for("127.0.0.1:9".parse().unwrap(), REQUIRED, "").replace(
            "[listener.origin]\nurl = \"http://127.0.0.1:9\"\n",
            "[listener.origin]\nurl = \"https://localhost:9\"\nca = \"origin-ca.pem\"\nclient_cert = \"edge.pem\"\nclient_key = \"edge.key\"\n",
        );
        let path = write(dir.path(), "origin.toml", config);
        tollgate(&["check", "--config", path.to_str().unwrap()])
    };
    let o = check(&edge_ca.client("edge").build());
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("edge.pem"), "{}", text(&o));
    let o = check(&edge_ca.client("edge").no_eku().build());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no extended key usage"), "{}", text(&o));
    let o = check(&edge_ca.client("edge").valid_days(-30, -1).build());
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o)
            .lines()
            .any(|l| l.trim_start().starts_with("warning:")
                && l.contains("edge.pem")
                && l.contains("outside its validity")),
        "{}",
        text(&o)
    );
}

#[test]
fn origin_mtls_presents_the_configured_certificate_and_failures_are_502() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    pki.write(dir.path());
    let edge_ca = TestCa::root("Edge Client CA");
    let origin = mtls_origin(dir.path(), &edge_ca);
    let edge = edge_ca.client("edge.example").build();
    write(dir.path(), "edge.pem", &edge.pem);
    write(dir.path(), "edge.key", &edge.key_pem);
    let url = format!("https://localhost:{}", origin.addr.port());
    let with_cert = format!(
        "[listener.origin]\nurl = \"{url}\"\nca = \"origin-ca.pem\"\nclient_cert = \"edge.pem\"\nclient_key = \"edge.key\"\n"
    );
    let base = |origin_section: &str| {
        config_for(origin.addr, REQUIRED, "").replace(
            &format!("[listener.origin]\nurl = \"http://{}\"\n", origin.addr),
            origin_section,
        )
    };
    let client = client_config(
        &pki.server_ca.pem(),
        Some(&pki.client("viewer")),
        &[b"http/1.1"],
    );

    let proxy = Proxy::start(dir.path(), &base(&with_cert));
    let echo = request(proxy.addr, client.clone(), "/", &[]).ok_json();
    assert_eq!(echo["clientCertificatePresented"], true);
    drop(proxy);

    // Without the client certificate the origin refuses: 502, logged.
    let without = format!("[listener.origin]\nurl = \"{url}\"\nca = \"origin-ca.pem\"\n");
    let proxy = Proxy::start(dir.path(), &base(&without));
    match request(proxy.addr, client.clone(), "/", &[]) {
        Seen::Http(502, _) => {}
        other => panic!("expected 502, got {other:?}"),
    }
    let access = &proxy.accesses(2)[1];
    assert_eq!(access["status"], 502);
    assert!(
        access["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{access}"
    );
    drop(proxy);

    // An origin certificate that does not name the host in the URL: 502.
    let by_ip = with_cert.replace("https://localhost:", "https://127.0.0.1:");
    let proxy = Proxy::start(dir.path(), &base(&by_ip));
    match request(proxy.addr, client.clone(), "/", &[]) {
        Seen::Http(502, _) => {}
        other => panic!("expected 502, got {other:?}"),
    }
    // The log file is shared with the two proxies above: this one's line is the third.
    let access = &proxy.accesses(3)[2];
    assert!(
        access["error"]
            .as_str()
            .unwrap_or("")
            .contains("certificate"),
        "{access}"
    );
    drop(proxy);

    // An origin certificate from a CA we do not trust: 502.
    write(
        dir.path(),
        "wrong-ca.pem",
        TestCa::root("Not The Origin CA").pem(),
    );
    let wrong = with_cert.replace("origin-ca.pem", "wrong-ca.pem");
    let proxy = Proxy::start(dir.path(), &base(&wrong));
    match request(proxy.addr, client, "/", &[]) {
        Seen::Http(502, _) => {}
        other => panic!("expected 502, got {other:?}"),
    }
}

/// Sends SIGTERM while a request for `path` is at the origin; what the
/// client then got.
fn term_during_request(proxy: &Proxy, pki: &Pki, origin: &Origin, path: &str) -> Seen {
    let addr = proxy.addr;
    let client = client_config(
        &pki.server_ca.pem(),
        Some(&pki.client("slow")),
        &[b"http/1.1"],
    );
    let path = path.to_owned();
    let slow = std::thread::spawn(move || request(addr, client, &path, &[]));
    while origin.requests() == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    proxy.signal("TERM");
    slow.join().unwrap()
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let Env {
        dir: _dir,
        pki,
        origin,
        mut proxy,
    } = Env::required("[listener.limits]\nshutdown_grace = \"10s\"");
    let seen = term_during_request(&proxy, &pki, &origin, "/?delay=1500");
    assert!(matches!(seen, Seen::Http(200, _)), "{seen:?}");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = proxy.child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}\n{}", proxy.stderr());
    // The access record of the finished request was flushed.
    assert_eq!(read_records(&proxy.access_log).len(), 1);
}

/// The grace period in force at SIGTERM is the one that counts, also when a
/// reload changed it after the start.
#[test]
fn sigterm_uses_the_grace_period_of_the_current_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    pki.write(dir.path());
    let origin = Origin::start(None);
    let config = |grace: &str| {
        config_for(
            origin.addr,
            REQUIRED,
            &format!("[listener.limits]\nshutdown_grace = \"{grace}\""),
        )
    };
    let mut proxy = Proxy::start(dir.path(), &config("100ms"));
    // The same file with a longer grace, reloaded.
    let text = std::fs::read_to_string(dir.path().join("tollgate.toml")).unwrap();
    let longer = text.replace("shutdown_grace = \"100ms\"", "shutdown_grace = \"10s\"");
    assert_ne!(text, longer);
    write(dir.path(), "tollgate.toml", longer);
    proxy.signal("HUP");
    proxy.wait_for_stderr("configuration reloaded");
    let seen = term_during_request(&proxy, &pki, &origin, "/?delay=2500");
    assert!(matches!(seen, Seen::Http(200, _)), "{seen:?}");
    let status = proxy.child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", proxy.stderr());
}

#[test]
fn the_connection_cap_holds_new_connections_until_one_closes() {
    let Env {
        dir: _dir,
        pki,
        origin,
        proxy,
    } = Env::required("[listener.limits]\nmax_connections = 1");
    let addr = proxy.addr;
    let client = client_config(
        &pki.server_ca.pem(),
        Some(&pki.client("capped")),
        &[b"http/1.1"],
    );
    let first = client.clone();
    let holder = std::thread::spawn(move || request(addr, first, "/?delay=2500", &[]));
    while origin.requests() == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let start = Instant::now();
    let seen = request(addr, client, "/", &[]);
    assert!(matches!(seen, Seen::Http(200, _)), "{seen:?}");
    assert!(
        start.elapsed() >= Duration::from_millis(700),
        "the second connection was served while the first held the only slot"
    );
    assert!(matches!(holder.join().unwrap(), Seen::Http(200, _)));
}

#[test]
fn sighup_reopens_log_files_after_rotation() {
    let env = Env::required("");
    let (dir, proxy) = (&env.dir, &env.proxy);
    let client = env.client("rotated");
    request(proxy.addr, client.clone(), "/", &[]).ok_json();
    // A keep-alive connection that spans the rotation.
    let mut session = common::admin::Session::open(proxy.addr, client.clone());
    assert_eq!(session.get(), 200);
    proxy.connections(2);
    proxy.accesses(2);
    let rotated = dir.path().join("connections.log.1");
    let rotated_access = dir.path().join("access.log.1");
    std::fs::rename(&proxy.connection_log, &rotated).unwrap();
    std::fs::rename(&proxy.access_log, &rotated_access).unwrap();
    proxy.signal("HUP");
    // The reopen happens before the next line is written.
    proxy.wait_for_stderr("configuration reloaded");
    request(proxy.addr, client, "/", &[]).ok_json();
    // The connection accepted before the HUP logs to the new file too.
    assert_eq!(session.try_get(), Some(200));
    assert_eq!(proxy.connections(1).len(), 1);
    assert_eq!(read_records(&rotated).len(), 2);
    assert_eq!(proxy.accesses(2).len(), 2);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(read_records(&rotated_access).len(), 2);
}

/// A reload whose log file can no longer be opened is refused, also when the
/// sink is the one already in use.
#[test]
fn a_reload_whose_log_file_cannot_be_opened_is_refused() {
    let env = Env::required("");
    let (dir, proxy) = (&env.dir, &env.proxy);
    let client = env.client("logged");
    request(proxy.addr, client.clone(), "/", &[]).ok_json();
    proxy.connections(1);
    // The log path becomes a directory.
    std::fs::rename(&proxy.connection_log, dir.path().join("moved.log")).unwrap();
    std::fs::create_dir(&proxy.connection_log).unwrap();
    proxy.signal("HUP");
    proxy.wait_for_stderr("reload refused");
    // The reason is on the lines after the refusal, which the reader thread
    // may not have collected yet: wait for it (fails after 10 s).
    proxy.wait_for_stderr("connections.log");
    assert!(!proxy.stderr().contains("configuration reloaded"));
    // Still serving, logging through the file it had.
    request(proxy.addr, client, "/", &[]).ok_json();
    wait_records(&dir.path().join("moved.log"), 2);
}

/// A reload that changes a setting only a restart applies says so.
#[test]
fn a_reload_warns_about_settings_it_does_not_apply() {
    let Env {
        dir,
        pki: _pki,
        origin: _origin,
        proxy,
    } = Env::required("[listener.limits]\nmax_connections = 100");
    let text = std::fs::read_to_string(dir.path().join("tollgate.toml")).unwrap();
    write(
        dir.path(),
        "tollgate.toml",
        text.replace("max_connections = 100", "max_connections = 5"),
    );
    proxy.signal("HUP");
    proxy.wait_for_stderr("configuration reloaded");
    let stderr = proxy.stderr();
    assert!(
        stderr.lines().any(|l| l.starts_with("warning:")
            && l.contains("limits.max_connections")
            && l.contains("only on restart")),
        "{stderr}"
    );
}

fn tollgate(args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_tollgate")).args(args))
}

#[test]
fn check_lists_every_problem_with_its_file_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    pki.write(dir.path());
    let good = config_for("127.0.0.1:9".parse().unwrap(), REQUIRED, "");
    let path = write(dir.path(), "good.toml", &good);
    let o = tollgate(&["check", "--config", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("ok"));

    write(
        dir.path(),
        "bad-trust.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    write(dir.path(), "bad.json", "{\"data\": [{\"key\": \"a\"}]}");
    write(dir.path(), "bad.wasm", "this is not wasm");
    // Two CRL files that are not CRLs: reported although the trust store
    // they would be checked against does not load.
    write(dir.path(), "bad-1.crl", "not a CRL");
    write(
        dir.path(),
        "bad-2.crl",
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    );
    let bad = config_for(
        "127.0.0.1:9".parse().unwrap(),
        "mode = \"required\"\ntrust_store = \"bad-trust.pem\"\ncrls = [\"bad-1.crl\", \"bad-2.crl\"]",
        "[listener.function]\nname = \"f\"\n[functions.f]\nwasm = \"bad.wasm\"\nkvs = [\"s\"]\n[kvs.s]\nimport = \"bad.json\"\n",
    );
    let path = write(dir.path(), "bad.toml", &bad);
    let o = tollgate(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    for file in [
        "bad-trust.pem",
        "bad.json",
        "bad.wasm",
        "bad-1.crl",
        "bad-2.crl",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("error:") && l.contains(file)),
            "{file} not named:\n{out}"
        );
    }
    // Serving the same config refuses to start.
    let o = tollgate(&["serve", "--config", path.to_str().unwrap()]);
    assert!(!o.status.success());

    // With a good trust store, every bad CRL file is named, not just the first.
    let bad = config_for(
        "127.0.0.1:9".parse().unwrap(),
        "mode = \"required\"\ntrust_store = \"trust.pem\"\ncrls = [\"bad-1.crl\", \"bad-2.crl\"]",
        "",
    );
    let path = write(dir.path(), "bad-crls.toml", &bad);
    let o = tollgate(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    for file in ["bad-1.crl", "bad-2.crl"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("error:") && l.contains(file)),
            "{file} not named:\n{out}"
        );
    }
}

/// Runs `tollgate demo` on `dir` until it says whether it created or reused
/// the directory; returns that line.
fn demo_intro(dir: &std::path::Path) -> String {
    let demo = Demo::start(dir);
    std::iter::from_fn(|| demo.line(Duration::from_secs(60)))
        .find(|l| l.starts_with("Created") || l.starts_with("Reusing"))
        .expect("the demo says Created or Reusing")
}

/// A demo directory whose certificates expired (or soon will) is made anew
/// instead of being served.
#[test]
fn the_demo_remakes_an_expired_pki() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    assert!(demo_intro(&demo).starts_with("Created"));
    assert!(demo_intro(&demo).starts_with("Reusing"));
    let old = TestCa::root("Old")
        .client("localhost")
        .valid_days(-100, -10)
        .build();
    write(&demo, "server.pem", &old.pem);
    assert!(demo_intro(&demo).starts_with("Created"));
    let pem = std::fs::read_to_string(demo.join("server.pem")).unwrap();
    assert_ne!(pem, old.pem);
    assert!(demo_intro(&demo).starts_with("Reusing"));
}

#[test]
fn the_demo_serves_what_it_prints() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let demo = Demo::start(&demo_dir);
    let mut commands = Vec::new();
    while commands.len() < 4 {
        let line = demo
            .line(Duration::from_secs(60))
            .expect("the demo prints four curl commands");
        if let Some(cmd) = line.trim().strip_prefix("curl ") {
            commands.push(cmd.to_owned());
        }
    }
    let curl = |cmd: &str| {
        let mut args: Vec<&str> = cmd.split_whitespace().collect();
        args.insert(0, "-sS");
        run(Command::new("curl").args(["--max-time", "20"]).args(&args))
    };
    let valid = curl(&commands[0]);
    assert!(valid.status.success(), "{}", text(&valid));
    let echo: serde_json::Value = serde_json::from_slice(&valid.stdout).unwrap();
    assert_eq!(echo["headers"]["cloudfront-viewer-cert-present"], "1");
    for (i, cmd) in commands[1..].iter().enumerate() {
        let o = curl(cmd);
        assert!(
            !o.status.success(),
            "case {} was served: {}",
            i + 2,
            text(&o)
        );
    }
    let mut statuses = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while statuses.len() < 4 && Instant::now() < deadline {
        if let Some(line) = demo.line(Duration::from_millis(200))
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && let Some(s) = v["connectionStatus"].as_str()
        {
            statuses.push(s.to_owned());
        }
    }
    drop(demo);
    assert_eq!(
        statuses,
        [
            "Success",
            "Failed:ConnectionFunctionDenied",
            "Failed:ClientCertMissing",
            "Failed:ClientCertUntrusted"
        ]
    );
    // A second run reuses the directory.
    assert!(demo_dir.join("ca.pem").is_file());
}
