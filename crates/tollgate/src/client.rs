//! `tollgate kvs …` and `tollgate functions …`: thin clients of the admin
//! API (docs/admin-api.md). Human output by default, the API's JSON with
//! `--json`. Exit status: 0 on success, 1 when the API refused the call
//! (its message on stderr), 2 when it could not be reached or the input is
//! unusable.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

#[derive(Args)]
pub struct Connect {
    /// The admin API.
    #[arg(long, env = "TOLLGATE_ADMIN", default_value = "http://127.0.0.1:9901")]
    admin: String,
    /// A file holding the bearer token (else TOLLGATE_ADMIN_TOKEN).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// CA certificates (PEM) to verify an https admin API with.
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// Print the API's JSON instead of a summary.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Args)]
pub struct KvsArgs {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    command: KvsCommand,
}

#[derive(Subcommand)]
enum KvsCommand {
    /// Every store with its size and ETag.
    List,
    /// One store: item count, size, ETag, times.
    Describe { store: String },
    /// One key's value.
    Get { store: String, key: String },
    /// Keys and values in key order.
    Keys {
        store: String,
        /// Keys per page (1-1000).
        #[arg(long, default_value_t = 100)]
        max: usize,
        /// Start after this key (a NextToken).
        #[arg(long)]
        after: Option<String>,
        /// Follow NextToken to the end.
        #[arg(long)]
        all: bool,
    },
    /// Put one key.
    Put {
        store: String,
        key: String,
        value: String,
        /// The store's ETag (default: its current one, read first).
        #[arg(long)]
        if_match: Option<String>,
    },
    /// Delete one key.
    Delete {
        store: String,
        key: String,
        #[arg(long)]
        if_match: Option<String>,
    },
    /// Puts and deletes, all or nothing.
    Update {
        store: String,
        /// KEY=VALUE, repeatable.
        #[arg(long = "put", value_name = "KEY=VALUE")]
        puts: Vec<String>,
        /// KEY, repeatable.
        #[arg(long = "delete", value_name = "KEY")]
        deletes: Vec<String>,
        #[arg(long)]
        if_match: Option<String>,
    },
    /// Replace the whole store with an import file.
    Import {
        store: String,
        file: PathBuf,
        #[arg(long)]
        if_match: Option<String>,
    },
}

#[derive(Args)]
pub struct FunctionsArgs {
    #[command(flatten)]
    connect: Connect,
    #[command(subcommand)]
    command: FunctionsCommand,
}

#[derive(Subcommand)]
enum FunctionsCommand {
    /// Every stage of every function.
    List,
    /// One stage of a function.
    Describe {
        name: String,
        #[arg(long, default_value = "DEVELOPMENT")]
        stage: String,
    },
    /// Create a function or replace its DEVELOPMENT code.
    Upload {
        name: String,
        /// The component (.wasm).
        wasm: PathBuf,
        /// Stores it may open, comma-separated.
        #[arg(long)]
        kvs: Option<String>,
        /// CPU time per call, e.g. 5ms.
        #[arg(long)]
        time_limit: Option<String>,
        /// Guest memory, bytes.
        #[arg(long)]
        memory_limit: Option<u64>,
        #[arg(long)]
        comment: Option<String>,
        /// The DEVELOPMENT ETag (default: the current one, when it exists).
        #[arg(long)]
        if_match: Option<String>,
    },
    /// Run a stage on a connection, as `tollgate test` does.
    Test {
        name: String,
        #[arg(long, default_value = "DEVELOPMENT")]
        stage: String,
        /// Client certificate chain (PEM, leaf first).
        #[arg(long, value_name = "PEM", conflicts_with = "connection")]
        cert: Option<PathBuf>,
        #[arg(long, value_name = "IP")]
        client_ip: Option<std::net::IpAddr>,
        #[arg(long)]
        sni: Option<String>,
        /// A connection object (JSON).
        #[arg(long, value_name = "JSON")]
        connection: Option<PathBuf>,
    },
    /// Make the DEVELOPMENT version LIVE.
    Publish {
        name: String,
        #[arg(long)]
        if_match: Option<String>,
    },
    /// Delete a function (refused while a listener uses it).
    Delete {
        name: String,
        #[arg(long)]
        if_match: Option<String>,
    },
}

/// A call the API answered.
struct Reply {
    status: StatusCode,
    etag: Option<String>,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Why a command failed: the API refused (exit 1) or it could not run (2).
enum Failure {
    Refused(String),
    Unusable(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Unusable(e)
    }
}

struct Client {
    scheme_https: bool,
    host: String,
    port: u16,
    token: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    json: bool,
}

impl Client {
    fn new(c: &Connect) -> anyhow::Result<Client> {
        let uri: http::Uri = c.admin.parse().context("--admin is not a URL")?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => bail!("--admin must be http://HOST:PORT or https://HOST:PORT"),
        };
        let host = uri.host().context("--admin has no host")?.to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let token = match &c.token_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --token-file {}", path.display()))?,
            None => std::env::var("TOLLGATE_ADMIN_TOKEN")
                .context("no token: pass --token-file or set TOLLGATE_ADMIN_TOKEN")?,
        };
        let tls = if https {
            let mut roots = rustls::RootCertStore::empty();
            match &c.ca {
                Some(path) => {
                    for cert in tollgate_tls_roots(path)? {
                        roots.add(cert).context("--ca: unusable certificate")?;
                    }
                }
                None => {
                    bail!("an https admin API needs --ca with the CA that issued its certificate")
                }
            }
            Some(Arc::new(
                rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            ))
        } else {
            None
        };
        Ok(Client {
            scheme_https: https,
            host,
            port,
            token: token.trim().to_owned(),
            tls,
            json: c.json,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<Reply> {
        let addr = format!("{}:{}", self.host, self.port);
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .with_context(|| format!("cannot reach the admin API at {addr}"))?;
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &addr)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            );
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder.body(Full::new(Bytes::from(body)))?;
        let response = match &self.tls {
            Some(tls) if self.scheme_https => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .context("--admin host is not a valid server name")?;
                let stream = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .context("TLS handshake with the admin API")?;
                send(TokioIo::new(stream), request).await?
            }
            _ => send(TokioIo::new(tcp), request).await?,
        };
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .context("reading the answer")?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            etag: parts
                .headers
                .get(http::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body,
        })
    }

    /// The call's JSON when it succeeded; the API's message otherwise.
    async fn ok(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply, Failure> {
        let reply = self.call(method, path, headers, body).await?;
        if reply.status.is_success() {
            return Ok(reply);
        }
        Err(refused(&reply))
    }

    /// `given`, or the ETag a GET of `path` returns.
    async fn etag(&self, given: &Option<String>, path: &str) -> Result<String, Failure> {
        if let Some(e) = given {
            return Ok(e.clone());
        }
        let reply = self.ok(Method::GET, path, &[], Vec::new()).await?;
        reply
            .etag
            .ok_or_else(|| Failure::Unusable(anyhow::anyhow!("{path} returned no ETag")))
    }

    fn print(&self, value: &Value, human: impl FnOnce(&Value)) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else {
            human(value);
        }
    }
}

/// The API's refusal, with its message.
fn refused(reply: &Reply) -> Failure {
    let message = reply.json()["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&reply.body).into_owned());
    Failure::Refused(format!(
        "{} {}: {message}",
        reply.status.as_u16(),
        reply.status.canonical_reason().unwrap_or("")
    ))
}

async fn send<IO>(
    io: TokioIo<IO>,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<http::Response<hyper::body::Incoming>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .context("HTTP handshake with the admin API")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
        .send_request(request)
        .await
        .context("sending the request to the admin API")
}

fn tollgate_tls_roots(
    path: &std::path::Path,
) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("--ca {}", path.display()))?;
    if certs.is_empty() {
        bail!("--ca {}: no certificate", path.display());
    }
    Ok(certs)
}

/// Percent-encodes one path segment or query value.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Unusable(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Unusable(e.into()))
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

pub fn kvs(args: KvsArgs) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(kvs_inner(args))))
}

async fn kvs_inner(args: KvsArgs) -> Result<(), Failure> {
    let c = Client::new(&args.connect)?;
    let store_line = |s: &Value| {
        println!(
            "{}: {} keys, {} bytes, ETag {}, last modified {}",
            s["Name"].as_str().unwrap_or(""),
            s["ItemCount"],
            s["TotalSizeInBytes"],
            s["ETag"].as_str().unwrap_or(""),
            s["LastModified"].as_str().unwrap_or("")
        )
    };
    let written = |v: &Value| {
        println!(
            "ok: ETag {} ({} keys, {} bytes)",
            v["ETag"].as_str().unwrap_or(""),
            v["ItemCount"],
            v["TotalSizeInBytes"]
        )
    };
    match args.command {
        KvsCommand::List => {
            let v = c.ok(Method::GET, "/kvs", &[], Vec::new()).await?.json();
            c.print(&v, |v| {
                for s in v["Stores"].as_array().into_iter().flatten() {
                    store_line(s);
                }
            });
        }
        KvsCommand::Describe { store } => {
            let path = format!("/kvs/{}", enc(&store));
            let v = c.ok(Method::GET, &path, &[], Vec::new()).await?.json();
            c.print(&v, store_line);
        }
        KvsCommand::Get { store, key } => {
            let path = format!("/kvs/{}/keys/{}", enc(&store), enc(&key));
            let v = c.ok(Method::GET, &path, &[], Vec::new()).await?.json();
            c.print(&v, |v| println!("{}", v["Value"].as_str().unwrap_or("")));
        }
        KvsCommand::Keys {
            store,
            max,
            after,
            all,
        } => {
            let mut after = after;
            let mut items = Vec::new();
            let mut next;
            loop {
                let mut path = format!("/kvs/{}/keys?MaxResults={max}", enc(&store));
                if let Some(a) = &after {
                    path.push_str(&format!("&NextToken={}", enc(a)));
                }
                let v = c.ok(Method::GET, &path, &[], Vec::new()).await?.json();
                items.extend(v["Items"].as_array().cloned().unwrap_or_default());
                next = v["NextToken"].as_str().map(str::to_owned);
                if !all || next.is_none() {
                    break;
                }
                after = next.clone();
            }
            let mut v = json!({ "Items": items });
            if let Some(n) = &next {
                v["NextToken"] = json!(n);
            }
            c.print(&v, |v| {
                for i in v["Items"].as_array().into_iter().flatten() {
                    println!(
                        "{}\t{}",
                        i["Key"].as_str().unwrap_or(""),
                        i["Value"].as_str().unwrap_or("")
                    );
                }
                if let Some(n) = v["NextToken"].as_str() {
                    eprintln!("(more: --after {n})");
                }
            });
        }
        KvsCommand::Put {
            store,
            key,
            value,
            if_match,
        } => {
            let etag = c.etag(&if_match, &format!("/kvs/{}", enc(&store))).await?;
            let path = format!("/kvs/{}/keys/{}", enc(&store), enc(&key));
            let body =
                serde_json::to_vec(&json!({ "Value": value })).map_err(anyhow::Error::from)?;
            let v = c
                .ok(Method::PUT, &path, &[("If-Match", &etag), JSON], body)
                .await?
                .json();
            c.print(&v, written);
        }
        KvsCommand::Delete {
            store,
            key,
            if_match,
        } => {
            let etag = c.etag(&if_match, &format!("/kvs/{}", enc(&store))).await?;
            let path = format!("/kvs/{}/keys/{}", enc(&store), enc(&key));
            let v = c
                .ok(Method::DELETE, &path, &[("If-Match", &etag)], Vec::new())
                .await?
                .json();
            c.print(&v, written);
        }
        KvsCommand::Update {
            store,
            puts,
            deletes,
            if_match,
        } => {
            let mut put_list = Vec::new();
            for p in &puts {
                let (k, v) = p
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--put {p:?}: expected KEY=VALUE"))?;
                put_list.push(json!({ "Key": k, "Value": v }));
            }
            let delete_list: Vec<Value> = deletes.iter().map(|k| json!({ "Key": k })).collect();
            let etag = c.etag(&if_match, &format!("/kvs/{}", enc(&store))).await?;
            let body = serde_json::to_vec(&json!({ "Puts": put_list, "Deletes": delete_list }))
                .map_err(anyhow::Error::from)?;
            let path = format!("/kvs/{}/keys", enc(&store));
            let v = c
                .ok(Method::POST, &path, &[("If-Match", &etag), JSON], body)
                .await?
                .json();
            c.print(&v, written);
        }
        KvsCommand::Import {
            store,
            file,
            if_match,
        } => {
            let body =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let path = format!("/kvs/{}", enc(&store));
            let etag = c.etag(&if_match, &path).await?;
            let v = c
                .ok(Method::PUT, &path, &[("If-Match", &etag), JSON], body)
                .await?
                .json();
            c.print(&v, written);
        }
    }
    Ok(())
}

pub fn functions(args: FunctionsArgs) -> ExitCode {
    finish(runtime().and_then(|rt| rt.block_on(functions_inner(args))))
}

fn function_line(f: &Value) {
    let listeners: Vec<&str> = f["Listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    println!(
        "{} {}: ETag {}, sha256 {}, {} bytes, stores [{}], modified {}{}",
        f["Name"].as_str().unwrap_or(""),
        f["Stage"].as_str().unwrap_or(""),
        f["ETag"].as_str().unwrap_or(""),
        f["Sha256"].as_str().unwrap_or(""),
        f["Size"],
        f["KeyValueStores"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        f["LastModified"].as_str().unwrap_or(""),
        if listeners.is_empty() {
            String::new()
        } else {
            format!(", serving {}", listeners.join(", "))
        }
    );
}

/// The human form of a test outcome, as `tollgate test` prints it.
fn outcome_lines(o: &Value) {
    let decision = o["decision"].as_str().unwrap_or("");
    println!("decision:    {decision}");
    if let Some(r) = o["reason"].as_str() {
        println!("reason:      {r}");
    }
    if let Some(e) = o["error"].as_object() {
        println!(
            "error:       {} ({})",
            e.get("message").and_then(Value::as_str).unwrap_or(""),
            e.get("kind").and_then(Value::as_str).unwrap_or("")
        );
    }
    if let Some(d) = o["customData"].as_str() {
        println!("custom data: {d}");
    }
    println!("duration:    {} µs", o["durationUs"]);
    println!(
        "compute:     {} % of the time limit",
        o["computeUtilization"]
    );
    for line in o["console"].as_array().into_iter().flatten() {
        println!(
            "  [{}] {}",
            line["level"].as_str().unwrap_or(""),
            line["text"].as_str().unwrap_or("")
        );
    }
}

async fn functions_inner(args: FunctionsArgs) -> Result<(), Failure> {
    let c = Client::new(&args.connect)?;
    match args.command {
        FunctionsCommand::List => {
            let v = c
                .ok(Method::GET, "/functions", &[], Vec::new())
                .await?
                .json();
            c.print(&v, |v| {
                for f in v["Functions"].as_array().into_iter().flatten() {
                    function_line(f);
                }
            });
        }
        FunctionsCommand::Describe { name, stage } => {
            let path = format!("/functions/{}?Stage={}", enc(&name), enc(&stage));
            let v = c.ok(Method::GET, &path, &[], Vec::new()).await?.json();
            c.print(&v, function_line);
        }
        FunctionsCommand::Upload {
            name,
            wasm,
            kvs,
            time_limit,
            memory_limit,
            comment,
            if_match,
        } => {
            let code =
                std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
            let mut query = Vec::new();
            if let Some(k) = &kvs {
                query.push(format!("KeyValueStores={}", enc(k)));
            }
            if let Some(t) = &time_limit {
                query.push(format!("TimeLimit={}", enc(t)));
            }
            if let Some(m) = memory_limit {
                query.push(format!("MemoryLimit={m}"));
            }
            if let Some(cm) = &comment {
                query.push(format!("Comment={}", enc(cm)));
            }
            let base = format!("/functions/{}", enc(&name));
            // Updating needs the DEVELOPMENT ETag; creating needs none.
            let etag = match if_match {
                Some(e) => Some(e),
                None => {
                    let r = c.call(Method::GET, &base, &[], Vec::new()).await?;
                    match r.status {
                        StatusCode::OK => r.etag,
                        StatusCode::NOT_FOUND => None,
                        _ => return Err(refused(&r)),
                    }
                }
            };
            let path = if query.is_empty() {
                base
            } else {
                format!("{base}?{}", query.join("&"))
            };
            let mut headers = vec![("Content-Type", "application/wasm")];
            if let Some(e) = &etag {
                headers.push(("If-Match", e));
            }
            let v = c.ok(Method::PUT, &path, &headers, code).await?.json();
            c.print(&v, function_line);
        }
        FunctionsCommand::Test {
            name,
            stage,
            cert,
            client_ip,
            sni,
            connection,
        } => {
            let body = match connection {
                Some(path) => {
                    let raw = std::fs::read(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let conn: Value = serde_json::from_slice(&raw)
                        .with_context(|| format!("{} is not JSON", path.display()))?;
                    json!({ "Connection": conn })
                }
                None => {
                    let mut b = serde_json::Map::new();
                    if let Some(path) = cert {
                        let pem = std::fs::read_to_string(&path)
                            .with_context(|| format!("cannot read {}", path.display()))?;
                        b.insert("CertificatePem".into(), json!(pem));
                    }
                    if let Some(ip) = client_ip {
                        b.insert("ClientIp".into(), json!(ip.to_string()));
                    }
                    if let Some(s) = sni {
                        b.insert("Sni".into(), json!(s));
                    }
                    Value::Object(b)
                }
            };
            let path = format!("/functions/{}/test?Stage={}", enc(&name), enc(&stage));
            let body = serde_json::to_vec(&body).map_err(anyhow::Error::from)?;
            let v = c.ok(Method::POST, &path, &[JSON], body).await?.json();
            c.print(&v, outcome_lines);
        }
        FunctionsCommand::Publish { name, if_match } => {
            let base = format!("/functions/{}", enc(&name));
            let etag = c.etag(&if_match, &base).await?;
            let v = c
                .ok(
                    Method::POST,
                    &format!("{base}/publish"),
                    &[("If-Match", &etag)],
                    Vec::new(),
                )
                .await?
                .json();
            c.print(&v, function_line);
        }
        FunctionsCommand::Delete { name, if_match } => {
            let base = format!("/functions/{}", enc(&name));
            let etag = c.etag(&if_match, &base).await?;
            c.ok(Method::DELETE, &base, &[("If-Match", &etag)], Vec::new())
                .await?;
            c.print(&json!({ "Deleted": name }), |_| println!("deleted {name}"));
        }
    }
    Ok(())
}
