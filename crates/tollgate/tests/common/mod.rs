//! End-to-end harness: the real `tollgate serve` binary on loopback, a real
//! origin (the built-in echo origin, counting what reaches it), and real
//! clients (rustls here; curl and openssl in the tests that need them).

#![allow(dead_code)]

pub mod admin;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tollgate_proxy::echo::{EchoStats, serve_echo};
use tollgate_testkit::{TestCa, TestCert, write};

/// A PKI for the listener: a root and an intermediate that issue clients, a
/// server certificate for `localhost`.
pub struct Pki {
    pub root: TestCa,
    pub issuing: TestCa,
    pub server_ca: TestCa,
    pub server: TestCert,
}

impl Pki {
    pub fn new() -> Pki {
        let root = TestCa::root("E2E Client Root");
        let issuing = root.intermediate("E2E Client Issuing CA");
        let server_ca = TestCa::root("E2E Server CA");
        let server = server_ca.server(&["localhost", "127.0.0.1"]);
        Pki {
            root,
            issuing,
            server_ca,
            server,
        }
    }

    /// Writes server.pem/key, server-ca.pem and trust.pem (root only) into `dir`.
    pub fn write(&self, dir: &Path) {
        write(dir, "server.pem", &self.server.pem);
        write(dir, "server.key", &self.server.key_pem);
        write(dir, "server-ca.pem", self.server_ca.pem());
        write(dir, "trust.pem", self.root.pem());
    }

    /// A valid client, chain leaf + issuing intermediate.
    pub fn client(&self, cn: &str) -> Identity {
        Identity::chain(&self.issuing.client(cn).build(), &[&self.issuing])
    }
}

/// A client identity: certificate chain and key.
#[derive(Clone)]
pub struct Identity {
    pub chain_pem: String,
    pub key_pem: String,
    pub leaf_der: Vec<u8>,
}

impl Identity {
    pub fn chain(leaf: &TestCert, cas: &[&TestCa]) -> Identity {
        let mut chain_pem = leaf.pem.clone();
        for ca in cas {
            chain_pem.push_str(&ca.pem());
        }
        Identity {
            chain_pem,
            key_pem: leaf.key_pem.clone(),
            leaf_der: leaf.der.clone(),
        }
    }

    /// Writes `<name>.pem` (chain) and `<name>.key`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        (
            write(dir, &format!("{name}.pem"), &self.chain_pem),
            write(dir, &format!("{name}.key"), &self.key_pem),
        )
    }
}

/// The echo origin on its own runtime thread.
pub struct Origin {
    pub addr: SocketAddr,
    pub stats: Arc<EchoStats>,
    _rt: tokio::runtime::Runtime,
}

impl Origin {
    pub fn start(tls: Option<rustls::ServerConfig>) -> Origin {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let stats = Arc::new(EchoStats::default());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(serve_echo(listener, tls.map(Arc::new), stats.clone()));
        Origin {
            addr,
            stats,
            _rt: rt,
        }
    }

    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> u64 {
        self.stats.connections.load(Ordering::Relaxed)
    }
}

/// A running `tollgate serve`.
pub struct Proxy {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub connection_log: PathBuf,
    pub access_log: PathBuf,
    stderr: Arc<std::sync::Mutex<String>>,
}

impl Proxy {
    /// Writes `config` (the `[[listener]]` must use address 127.0.0.1:0 and
    /// the logs below are appended) to `dir/tollgate.toml` and starts the proxy.
    pub fn start(dir: &Path, config: &str) -> Proxy {
        let connection_log = dir.join("connections.log");
        let access_log = dir.join("access.log");
        let text = format!(
            "[logs]\nconnection = {:?}\naccess = {:?}\n\n{config}",
            connection_log.display().to_string(),
            access_log.display().to_string()
        );
        let path = write(dir, "tollgate.toml", text);
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["serve", "--config"])
            .arg(&path)
            .env("TOLLGATE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tollgate serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let collected = Arc::new(std::sync::Mutex::new(String::new()));
        let sink = collected.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split(" on ").nth(1)
                    && line.starts_with("tollgate: listener")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.trim().parse::<SocketAddr>().ok());
                }
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(addr)) => addr,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("tollgate did not start:\n{}", collected.lock().unwrap());
            }
        };
        Proxy {
            child,
            addr,
            dir: dir.to_owned(),
            connection_log,
            access_log,
            stderr: collected,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The admin API's address (announced before the listeners).
    pub fn admin_addr(&self) -> SocketAddr {
        let stderr = self.stderr();
        stderr
            .lines()
            .find_map(|l| l.strip_prefix("tollgate: admin API on "))
            .and_then(|url| url.split_once("://"))
            .and_then(|(_, a)| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("no admin API announced:\n{stderr}"))
    }

    /// SIGKILL, no cleanup.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Nothing left for Drop to stop.
        std::mem::forget(self);
    }

    /// Waits until the connection log holds at least `n` records; returns them.
    pub fn connections(&self, n: usize) -> Vec<Value> {
        wait_records(&self.connection_log, n)
    }

    pub fn accesses(&self, n: usize) -> Vec<Value> {
        wait_records(&self.access_log, n)
    }

    /// The last connection record, once there are `n`.
    pub fn connection(&self, n: usize) -> Value {
        self.connections(n).pop().unwrap()
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Proxy {
    /// SIGTERM (a graceful shutdown flushes the logs), SIGKILL after 10 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The complete lines of a JSON-lines log (a line still being written, not
/// yet ended by its newline, is left for the next read).
pub fn read_records(path: &Path) -> Vec<Value> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let complete = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&bytes[..0], |end| &bytes[..=end]);
    let text = std::str::from_utf8(complete).expect("log lines are UTF-8");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l:?}: {e}")))
        .collect()
}

pub fn wait_records(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let records = read_records(path);
        if records.len() >= n || Instant::now() > deadline {
            assert!(
                records.len() >= n,
                "{} has {} records, expected {n}: {records:#?}",
                path.display(),
                records.len()
            );
            return records;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a client saw.
#[derive(Debug)]
pub enum Seen {
    /// An HTTP response: status and body.
    Http(u16, String),
    /// The handshake failed (with the alert rustls reports).
    HandshakeFailed(String),
    /// Handshake done, then the connection ended before any response.
    Closed(String),
}

impl Seen {
    pub fn ok_json(&self) -> Value {
        match self {
            Seen::Http(200, body) => {
                let json = body.split("\r\n\r\n").nth(1).unwrap_or(body);
                serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {body}"))
            }
            other => panic!("expected 200, got {other:?}"),
        }
    }
}

pub fn client_config(
    server_ca_pem: &str,
    identity: Option<&Identity>,
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server_ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = CertificateDer::pem_slice_iter(id.chain_pem.as_bytes())
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// One HTTP/1.1 request over a fresh mTLS connection with a rustls client.
pub fn request(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> Seen {
    let mut conn =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            return Seen::HandshakeFailed(e.to_string());
        }
    }
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
    if let Err(e) = stream.write_all(req.as_bytes()) {
        return Seen::Closed(e.to_string());
    }
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) if response.is_empty() => Seen::Closed("no bytes".into()),
        Err(e) if response.is_empty() => {
            // TLS 1.3: a client certificate refused by the server shows up
            // here, after the client's side of the handshake finished.
            if e.to_string().contains("alert") || e.to_string().contains("Alert") {
                Seen::HandshakeFailed(e.to_string())
            } else {
                Seen::Closed(e.to_string())
            }
        }
        _ => {
            let text = String::from_utf8_lossy(&response).into_owned();
            let status = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            Seen::Http(status, text)
        }
    }
}

pub fn config_for(origin: SocketAddr, mtls: &str, extra: &str) -> String {
    format!(
        r#"[[listener]]
name = "e2e"
address = "127.0.0.1:0"

[[listener.certificate]]
names = ["localhost"]
cert = "server.pem"
key = "server.key"

[listener.mtls]
{mtls}

[listener.origin]
url = "http://{origin}"
{extra}
"#
    )
}

/// Completes a handshake only, and says whether it was full or resumed.
pub fn handshake_kind(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Option<rustls::HandshakeKind> {
    let mut conn =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).ok()?;
    }
    conn.handshake_kind()
}

impl Proxy {
    /// Waits (up to 10 s) until the proxy's stderr contains `needle`.
    pub fn wait_for_stderr(&self, needle: &str) {
        let start = Instant::now();
        while !self.stderr().contains(needle) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{needle:?} not on stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A temporary directory with a PKI, an echo origin, and a proxy in
/// `required` mode trusting the PKI's client root (`extra` is appended to the
/// listener's config).
pub struct Env {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub origin: Origin,
    pub proxy: Proxy,
}

pub const REQUIRED: &str = "mode = \"required\"\ntrust_store = \"trust.pem\"";

impl Env {
    pub fn required(extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new();
        pki.write(dir.path());
        let origin = Origin::start(None);
        let proxy = Proxy::start(dir.path(), &config_for(origin.addr, REQUIRED, extra));
        Env {
            dir,
            pki,
            origin,
            proxy,
        }
    }

    /// A rustls client config with a fresh valid client certificate.
    pub fn client(&self, cn: &str) -> Arc<rustls::ClientConfig> {
        client_config(
            &self.pki.server_ca.pem(),
            Some(&self.pki.client(cn)),
            &[b"http/1.1"],
        )
    }
}

/// An HTTP/1.1 response read to the end.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One plain-HTTP/1.1 call (`Connection: close`), for the admin API.
pub fn http_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpReply {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) before reading all of a large body.
    let _ = tcp.write_all(body);
    let mut raw = Vec::new();
    let _ = tcp.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    HttpReply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// A test directory with the PKI written to it and an echo origin.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub origin: Origin,
}

pub fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    pki.write(dir.path());
    Setup {
        dir,
        pki,
        origin: Origin::start(None),
    }
}

impl Setup {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    /// The proxy with one listener in `mtls` mode; `extra` follows its origin.
    pub fn start(&self, mtls: &str, extra: &str) -> Proxy {
        Proxy::start(self.path(), &config_for(self.origin.addr, mtls, extra))
    }
    /// An HTTP/1.1 rustls client trusting the server CA, with `id` if given.
    pub fn client(&self, id: Option<&Identity>) -> Arc<rustls::ClientConfig> {
        client_config(&self.pki.server_ca.pem(), id, &[b"http/1.1"])
    }
}

/// `tollgate demo --listen 127.0.0.1:0 --dir DIR`, its stdout line by line;
/// killed when dropped.
pub struct Demo {
    child: Child,
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Demo {
    pub fn start(dir: &Path) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["demo", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tollgate demo");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Demo { child, lines }
    }

    /// The next line, waiting up to `limit`.
    pub fn line(&self, limit: Duration) -> Option<String> {
        self.lines.recv_timeout(limit).ok()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
