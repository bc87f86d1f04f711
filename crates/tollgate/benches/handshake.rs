//! Full mTLS handshakes per server CPU-second: a bare rustls server, Tollgate
//! without a function, and Tollgate running the `revocation` function over a
//! 1,000,000-key store. Each server is its own process; its CPU time is read
//! from /proc, so the load generator's own work is not counted.
//!
//! ```text
//! cargo bench -p tollgate --bench handshake
//! BENCH_SECS=5 BENCH_ROUNDS=3 BENCH_CLIENTS=3 cargo bench -p tollgate --bench handshake
//! BENCH_INTERLEAVE=1 ...   # the servers at once, each client taking them in turn
//! BENCH_ONLY=revocation ... # one variant (for profiling)
//! BENCH_WASM=path ...       # another function in the revocation's place
//! BENCH_REUSE=N ...         # [runtime] max_calls_per_instance = N (default 1)
//! BENCH_IDENTITIES=N ...    # distinct client certificates, taken in turn (default 1000)
//! BENCH_REPLAY_BYTES=N ...  # [runtime] replay_bytes = N (default: Tollgate's, 32 MiB; 0: off)
//! BENCH_PIN=1 ...           # servers share CPU 0, the client threads run on CPU 1
//! BENCH_KEEP=1 ...          # keep the directory (configs, connection log)
//! ```
//!
//! The summary ends with the function call's own duration inside the proxy,
//! from the connection log's `functionDuration`, and how many calls were
//! replays (`functionReplayed`): a client certificate seen before whose
//! answers have not changed. The clients take BENCH_IDENTITIES certificates
//! in turn, so each identity comes back every that many connections; each
//! has connected once, in the warm-up, before the timed part.
//!
//! Every connection: TCP connect, TLS 1.3 full handshake with an ECDSA P-256
//! client certificate (client resumption off; the servers offer none either),
//! client close_notify, read to EOF. Figures go to docs/PERFORMANCE.md.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};
use tollgate_testkit::{TestCa, write};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::var("BENCH_ROLE").as_deref() == Ok("bare-server") {
        return bare_server();
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs = env_or("BENCH_SECS", 5);
    let rounds = env_or("BENCH_ROUNDS", 3);
    let clients = env_or("BENCH_CLIENTS", 3);
    let keys = env_or("BENCH_KEYS", 1_000_000);

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = TestCa::root("Bench Root");
    let server_ca = TestCa::root("Bench Server CA");
    let server = server_ca.server(&["localhost"]);
    let identities = env_or("BENCH_IDENTITIES", 1000).max(1);
    let clients_certs: Vec<_> = (0..identities)
        .map(|i| root.client(&format!("bench-client-{i}")).build())
        .collect();
    let revoked = root.client("revoked").build();
    write(d, "server.pem", &server.pem);
    write(d, "server.key", &server.key_pem);
    write(d, "trust.pem", root.pem());
    write(d, "root.crl", root.crl(&[&revoked.der]));
    // BENCH_WASM=path: measure another function in the revocation's place.
    match std::env::var_os("BENCH_WASM") {
        Some(path) => write(
            d,
            "revocation.wasm",
            std::fs::read(path).expect("BENCH_WASM"),
        ),
        None => write(d, "revocation.wasm", tollgate_guests::REVOCATION_WASM),
    };
    let mut json = String::with_capacity(keys as usize * 64);
    json.push_str("{\"data\":[");
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..keys {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            "{{\"key\":\"{:016x}{:016x}\",\"value\":\"r\"}}",
            x,
            x.rotate_left(29)
        ));
    }
    json.push_str("]}");
    write(d, "revoked.json", json);

    // BENCH_REUSE=N: [runtime] max_calls_per_instance = N (default 1).
    let reuse = env_or("BENCH_REUSE", 1);
    let replay_bytes = std::env::var("BENCH_REPLAY_BYTES").ok();
    let config = |function: bool| {
        let mut text = format!("[runtime]\nmax_calls_per_instance = {reuse}\n");
        if let Some(bytes) = &replay_bytes {
            text.push_str(&format!("replay_bytes = {bytes}\n"));
        }
        text.push_str(
            r#"[logs]
connection = "connections.log"
access = "off"

[[listener]]
name = "bench"
address = "127.0.0.1:0"
[[listener.certificate]]
names = ["localhost"]
cert = "server.pem"
key = "server.key"
[listener.mtls]
mode = "required"
trust_store = "trust.pem"
crls = ["root.crl"]
[listener.origin]
url = "http://127.0.0.1:9"
"#,
        );
        if function {
            text.push_str(
                r#"[listener.function]
name = "revocation"
[functions.revocation]
wasm = "revocation.wasm"
kvs = ["revoked"]
[kvs.revoked]
import = "revoked.json"
max_store_bytes = 268435456
"#,
            );
        }
        text
    };
    write(d, "plain.toml", config(false));
    write(d, "function.toml", config(true));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(server_ca.der())).unwrap();
    let roots = Arc::new(roots);
    let client_configs: Arc<Vec<Arc<rustls::ClientConfig>>> = Arc::new(
        clients_certs
            .iter()
            .map(|client| {
                let key = PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).unwrap();
                let mut c = rustls::ClientConfig::builder()
                    .with_root_certificates(roots.clone())
                    .with_client_auth_cert(vec![CertificateDer::from(client.der.clone())], key)
                    .unwrap();
                c.resumption = rustls::client::Resumption::disabled();
                Arc::new(c)
            })
            .collect(),
    );

    println!(
        "handshake bench: {rounds} rounds x {secs} s per server, {clients} client threads, \
         {identities} client certificates, store {keys} keys"
    );
    let mut totals: Vec<(&str, f64, f64)> = Vec::new();
    // Per round: handshakes per CPU-second of Tollgate without and with the
    // function, measured back to back (the machine's speed drifts between
    // rounds more than the function costs; a pair shares the drift).
    let mut pairs: Vec<(f64, f64)> = Vec::new();
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    // BENCH_INTERLEAVE=1: the servers of a round run at the same time and
    // every client thread takes them in turn, connection by connection, so
    // they share the machine's moment-to-moment speed (on a shared VM it
    // drifts more, between runs seconds apart, than the function costs).
    let interleave = std::env::var("BENCH_INTERLEAVE").as_deref() == Ok("1");
    let variants: Vec<(&str, Option<&str>)> = [
        ("bare rustls", None),
        ("tollgate, no function", Some("plain.toml")),
        ("tollgate + revocation (1M keys)", Some("function.toml")),
    ]
    .into_iter()
    .filter(|(name, _)| only.is_empty() || name.contains(only.as_str()))
    .collect();
    assert!(
        !variants.is_empty(),
        "BENCH_ONLY={only:?} is part of no variant's name"
    );
    let groups: Vec<Vec<(&str, Option<&str>)>> = if interleave {
        vec![variants.clone()]
    } else {
        variants.iter().map(|v| vec![*v]).collect()
    };
    for round in 0..rounds {
        for group in &groups {
            // The servers of a group are started when its turn comes.
            let mut children: Vec<(Child, SocketAddr)> = group
                .iter()
                .map(|(_, config)| match config {
                    None => spawn_bare(d),
                    Some(config) => spawn_tollgate(d, config),
                })
                .collect();
            let servers: Vec<(SocketAddr, u32)> =
                children.iter().map(|(c, addr)| (*addr, c.id())).collect();
            let (results, wall) = load(&servers, client_configs.clone(), clients, secs);
            for (child, _) in &mut children {
                let _ = child.kill();
                let _ = child.wait();
            }
            for ((name, config), (count, cpu)) in group.iter().zip(results) {
                let rate = count as f64 / cpu;
                match config {
                    Some("plain.toml") => pairs.push((rate, f64::NAN)),
                    Some(_) => {
                        if let Some(pair) = pairs.last_mut().filter(|p| p.1.is_nan()) {
                            pair.1 = rate;
                        }
                    }
                    None => {}
                }
                println!(
                    "round {}: {name:<34} {count:>7} handshakes  {:>7.0}/s wall  {rate:>7.0}/CPU-s server  (server CPU {cpu:.2} s)",
                    round + 1,
                    count as f64 / wall,
                );
                match totals.iter_mut().find(|t| t.0 == *name) {
                    Some(t) => {
                        t.1 += count as f64;
                        t.2 += cpu;
                    }
                    None => totals.push((name, count as f64, cpu)),
                }
            }
        }
    }
    let (calls, replayed) = function_durations(&d.join("connections.log"));
    if std::env::var("BENCH_KEEP").as_deref() == Ok("1") {
        println!("kept: {}", dir.keep().display());
    }
    println!("\nsummary (all rounds): handshakes per server CPU-second");
    for (name, count, cpu) in &totals {
        println!("  {name:<34} {:>7.0}", count / cpu);
    }
    let rate = |name: &str| {
        totals
            .iter()
            .find(|t| t.0.starts_with(name))
            .map(|t| t.1 / t.2)
    };
    if let (Some(plain), Some(function)) = (rate("tollgate, no function"), rate("tollgate + ")) {
        println!(
            "  function cost: {:.1} % of handshake throughput (budget 3 %)",
            (1.0 - function / plain) * 100.0
        );
        let mut costs: Vec<f64> = pairs
            .iter()
            .filter(|p| !p.1.is_nan())
            .map(|(plain, function)| (1.0 - function / plain) * 100.0)
            .collect();
        costs.sort_by(f64::total_cmp);
        if let Some(median) = costs.get(costs.len() / 2) {
            let listed: Vec<String> = costs.iter().map(|c| format!("{c:.1}")).collect();
            println!(
                "  function cost per round (back-to-back pairs): median {median:.1} % [{}]",
                listed.join(", ")
            );
        }
    }
    if !calls.is_empty() {
        let at = |p: f64| calls[((calls.len() - 1) as f64 * p) as usize];
        println!(
            "  the function's call inside the proxy (functionDuration, {} calls): p50 {:.0} µs, p90 {:.0} µs, p99 {:.0} µs",
            calls.len(),
            at(0.5),
            at(0.9),
            at(0.99)
        );
        println!(
            "  replayed (functionReplayed, warm-up included): {replayed} of {} calls ({:.1} %)",
            calls.len(),
            replayed as f64 * 100.0 / calls.len() as f64
        );
    }
}

/// Every `functionDuration` (µs, sorted) in the connection log: the call as
/// the proxy timed it, in place, under this load; and how many of those
/// calls were replays.
fn function_durations(log: &Path) -> (Vec<f64>, usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let records: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|record: &serde_json::Value| record["functionDuration"].is_f64())
        .collect();
    let replayed = records
        .iter()
        .filter(|r| r["functionReplayed"] == serde_json::Value::Bool(true))
        .count();
    let mut out: Vec<f64> = records
        .iter()
        .filter_map(|record| record["functionDuration"].as_f64())
        .map(|ms| ms * 1000.0)
        .collect();
    out.sort_by(f64::total_cmp);
    (out, replayed)
}

/// Spawns `tollgate serve`; returns the child and its address.
fn spawn_tollgate(dir: &Path, config: &str) -> (Child, SocketAddr) {
    let mut child = server_command(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--config"])
        .arg(dir.join(config))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = read_addr(&mut child, "tollgate: listener");
    (child, addr)
}

fn spawn_bare(dir: &Path) -> (Child, SocketAddr) {
    let mut child = server_command(std::env::current_exe().unwrap())
        .env("BENCH_ROLE", "bare-server")
        .env("BENCH_DIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = read_addr(&mut child, "bare: listening");
    (child, addr)
}

/// BENCH_PIN=1: every server on CPU 0 (through `taskset`, which execs the
/// server in place: the child's pid is the server's).
fn server_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if !pinned() {
        return Command::new(program);
    }
    let mut command = Command::new("taskset");
    command.args(["-c", "0"]).arg(program);
    command
}

fn pinned() -> bool {
    std::env::var("BENCH_PIN").as_deref() == Ok("1")
}

/// BENCH_PIN=1: the calling client thread on CPU 1, away from the servers.
fn pin_client_thread() {
    if !pinned() {
        return;
    }
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    let tid = link.file_name().expect("a thread id").to_owned();
    let status = Command::new("taskset")
        .args(["-p", "-c", "1"])
        .arg(&tid)
        .stdout(Stdio::null())
        .status()
        .expect("taskset");
    assert!(status.success(), "taskset -p -c 1 {tid:?} failed");
}

fn read_addr(child: &mut Child, prefix: &str) -> SocketAddr {
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    loop {
        let Some(Ok(line)) = lines.next() else {
            panic!("the server did not start:\n{seen}");
        };
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with(prefix) {
            let addr = line.rsplit(' ').next().unwrap().parse().unwrap();
            // Keep draining stderr so the child never blocks on it.
            std::thread::spawn(move || for _ in lines {});
            return addr;
        }
    }
}

/// Server CPU time (user + system) in seconds, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn load(
    servers: &[(SocketAddr, u32)],
    configs: Arc<Vec<Arc<rustls::ClientConfig>>>,
    clients: u64,
    secs: u64,
) -> (Vec<(u64, f64)>, f64) {
    // Warm up (compiles, page faults, pools), and every identity connects
    // once: the timed connections are clients coming back, a fleet's steady
    // state. (BENCH_REPLAY_BYTES=0: every call runs, as for a new client.)
    for (addr, _) in servers {
        for i in 0..configs.len().max(50) {
            one(*addr, configs[i % configs.len()].clone());
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<Vec<AtomicU64>> = Arc::new(servers.iter().map(|_| AtomicU64::new(0)).collect());
    let addrs: Arc<Vec<SocketAddr>> = Arc::new(servers.iter().map(|s| s.0).collect());
    let cpu0: Vec<f64> = servers.iter().map(|s| cpu_seconds(s.1)).collect();
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|t| {
            let (stop, counts, addrs, config) =
                (stop.clone(), counts.clone(), addrs.clone(), configs.clone());
            std::thread::spawn(move || {
                pin_client_thread();
                let mut i = t as usize;
                while !stop.load(Ordering::Relaxed) {
                    let k = i % addrs.len();
                    // The client threads take the identities in turn, each
                    // its own: one comes back every BENCH_IDENTITIES
                    // connections to a server.
                    let identity =
                        ((i / addrs.len()) * clients as usize + t as usize) % config.len();
                    if one(addrs[k], config[identity].clone()) {
                        counts[k].fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let wall = start.elapsed().as_secs_f64();
    let results = servers
        .iter()
        .zip(cpu0)
        .zip(counts.iter())
        .map(|((s, cpu0), count)| (count.load(Ordering::Relaxed), cpu_seconds(s.1) - cpu0))
        .collect();
    (results, wall)
}

/// One connection: full handshake, close_notify, read to EOF.
fn one(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> bool {
    let Ok(mut tcp) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
    let mut conn =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            return false;
        }
    }
    conn.send_close_notify();
    let _ = conn.complete_io(&mut tcp);
    let mut buf = [0u8; 256];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    true
}

/// The reference point: a plain rustls mTLS server (same certificates, the
/// same CRL), handshake then wait for the client to close.
fn bare_server() {
    let dir = std::path::PathBuf::from(std::env::var("BENCH_DIR").unwrap());
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&read("trust.pem")) {
        roots.add(c.unwrap()).unwrap();
    }
    let crls = CertificateRevocationListDer::pem_slice_iter(&read("root.crl"))
        .map(|c| c.unwrap())
        .collect::<Vec<_>>();
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .with_crls(crls)
        .build()
        .unwrap();
    let certs = CertificateDer::pem_slice_iter(&read("server.pem"))
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_slice(&read("server.key")).unwrap();
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        eprintln!("bare: listening {}", listener.local_addr().unwrap());
        let _ = std::io::stderr().flush();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                if let Ok(mut stream) = acceptor.accept(tcp).await {
                    let mut buf = [0u8; 256];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                }
            });
        }
    });
}
