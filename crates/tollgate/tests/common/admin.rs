//! Helpers for the admin-API suites: a setup with a state and an admin
//! token, an API client, kept-alive sessions through the proxy.

use std::time::{Duration, Instant};

use tollgate_guests as guests;
use tollgate_testkit::{hex, kvs_json, write};

use super::*;

pub const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// A [`Setup`] with an admin token, the revocation function and a seed file.
pub fn admin_setup() -> Setup {
    let s = setup();
    write(s.path(), "admin.token", format!("{TOKEN}\n"));
    write(s.path(), "revocation.wasm", guests::REVOCATION_WASM);
    write(
        s.path(),
        "revoked.json",
        kvs_json([("SEEDED", "from the file")]),
    );
    s
}

/// The revocation function over the store `revoked`, a state directory and
/// the admin API on an ephemeral loopback port.
pub fn extra(admin: &str) -> String {
    format!(
        r#"
[listener.function]
name = "revocation"

[functions.revocation]
wasm = "revocation.wasm"
kvs = ["revoked"]

[kvs.revoked]
import = "revoked.json"

[kvs.allowed]

[state]
dir = "state"

[watch]
enabled = false

[admin]
address = "127.0.0.1:0"
token_file = "admin.token"
{admin}
"#
    )
}

/// The proxy in required mode with [`extra`] and `admin` keys.
pub fn start(s: &Setup, admin: &str) -> Proxy {
    s.start(REQUIRED, &extra(admin))
}

pub fn client(s: &Setup, id: &Identity) -> std::sync::Arc<rustls::ClientConfig> {
    s.client(Some(id))
}

pub struct Api {
    pub addr: std::net::SocketAddr,
}

impl Api {
    pub fn of(proxy: &Proxy) -> Api {
        Api {
            addr: proxy.admin_addr(),
        }
    }
    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpReply {
        let auth = format!("Bearer {TOKEN}");
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        http_call(self.addr, method, path, &all, body)
    }
    pub fn get(&self, path: &str) -> HttpReply {
        self.call("GET", path, &[], b"")
    }
    pub fn etag(&self, store: &str) -> String {
        let r = self.get(&format!("/kvs/{store}"));
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["ETag"].as_str().unwrap().to_owned()
    }
    /// Waits (up to 10 s) until `/metrics` has this exact line.
    pub fn wait_for_metric(&self, line: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.get("/metrics").text();
            if text.lines().any(|l| l == line) {
                return;
            }
            assert!(Instant::now() < deadline, "no {line:?} in\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    pub fn upload(&self, path: &str, etag: Option<&str>, wasm: &[u8]) -> HttpReply {
        let mut headers = vec![("Content-Type", "application/wasm")];
        if let Some(e) = etag {
            headers.push(("If-Match", e));
        }
        self.call("PUT", path, &headers, wasm)
    }
    pub fn write(&self, method: &str, path: &str, etag: &str, body: &str) -> HttpReply {
        self.call(
            method,
            path,
            &[("If-Match", etag), ("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }
}

pub fn serial(id: &Identity) -> String {
    hex(&tollgate_testkit::serial_of(&id.leaf_der))
}

/// A kept-alive HTTP/1.1 connection through the proxy.
pub struct Session {
    stream: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
}

impl Session {
    pub fn open(
        addr: std::net::SocketAddr,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> Session {
        let conn = rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Session {
            stream: rustls::StreamOwned::new(conn, tcp),
        }
    }

    /// One request; the status code.
    pub fn get(&mut self) -> u16 {
        self.try_get().expect("the connection is open")
    }

    /// One request; `None` when the connection is closed.
    pub fn try_get(&mut self) -> Option<u16> {
        use std::io::{Read, Write};
        self.stream
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            self.stream.read_exact(&mut byte).ok()?;
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .expect("a content-length");
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).ok()?;
        head.split_whitespace().nth(1)?.parse().ok()
    }

    /// Waits up to 10 s for the proxy to close the connection.
    pub fn closed_by_proxy(&mut self) -> bool {
        use std::io::Read;
        let deadline = Instant::now() + Duration::from_secs(10);
        self.stream
            .sock
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 64];
        while Instant::now() < deadline {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
        }
        false
    }
}
