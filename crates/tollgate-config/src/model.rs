use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::Problem;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file this was read from (set by the loader).
    #[serde(skip)]
    pub source: PathBuf,
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// Connection functions by name.
    #[serde(default)]
    pub functions: BTreeMap<String, FunctionSection>,
    /// Key-value stores by name.
    #[serde(default)]
    pub kvs: BTreeMap<String, KvsSection>,
    /// Default log sinks for every listener.
    #[serde(default)]
    pub logs: LogsSection,
    #[serde(rename = "listener", default)]
    pub listeners: Vec<ListenerSection>,
    /// Durable state for what the admin API changes; none → no state.
    pub state: Option<StateSection>,
    /// The admin API; none → not started.
    pub admin: Option<AdminSection>,
    /// Reloading when files change.
    #[serde(default)]
    pub watch: WatchSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchSection {
    /// Reload when the config file or a file it names changes.
    pub enabled: bool,
    /// How often files are looked at.
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
}

impl Default for WatchSection {
    fn default() -> Self {
        WatchSection {
            enabled: true,
            interval: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    /// Directory of the state database (created with mode 0700).
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Where the admin API listens.
    #[serde(default = "default_admin_address")]
    pub address: SocketAddr,
    /// A file holding the bearer token (surrounding whitespace ignored).
    pub token_file: Option<PathBuf>,
    /// An environment variable holding the bearer token.
    pub token_env: Option<String>,
    /// Certificate and key for HTTPS; required on a non-loopback address.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Largest request body accepted, bytes.
    #[serde(default = "default_admin_max_body")]
    pub max_body_bytes: usize,
}

fn default_admin_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}

fn default_admin_max_body() -> usize {
    32 << 20
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// Function calls running at once, process-wide (the pooling allocator's size).
    pub max_concurrent_calls: u32,
    /// Where compiled functions are cached; none → no disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Functions whose time limit is at most this run inline on the
    /// connection's thread; others on a fiber that yields at every tick.
    #[serde(deserialize_with = "duration")]
    pub max_inline_time: Duration,
    /// Calls one function instance may serve; 1: a fresh instance per call.
    pub max_calls_per_instance: u32,
    /// Memory per function version for replaying earlier calls; 0: off.
    pub replay_bytes: usize,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        RuntimeSection {
            max_concurrent_calls: 1000,
            cache_dir: None,
            max_inline_time: Duration::from_millis(10),
            max_calls_per_instance: 1,
            replay_bytes: 32 << 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSection {
    /// The compiled component (`wasm32-wasip2`).
    pub wasm: PathBuf,
    /// Stores the function may open.
    #[serde(default)]
    pub kvs: Vec<String>,
    /// CPU time per call.
    #[serde(default, deserialize_with = "opt_duration")]
    pub time_limit: Option<Duration>,
    /// Guest memory, bytes.
    #[serde(default)]
    pub memory_limit: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvsSection {
    /// Seed data in the CloudFront KVS import format.
    pub import: Option<PathBuf>,
    #[serde(default)]
    pub max_key_bytes: Option<usize>,
    #[serde(default)]
    pub max_value_bytes: Option<usize>,
    #[serde(default)]
    pub max_store_bytes: Option<usize>,
}

/// A log destination: `"stdout"`, `"off"`, or a file path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LogTarget {
    Stdout,
    Off,
    File(PathBuf),
}

impl<'de> Deserialize<'de> for LogTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "stdout" | "-" => LogTarget::Stdout,
            "off" => LogTarget::Off,
            "" => return Err(serde::de::Error::custom("empty log target")),
            path => LogTarget::File(PathBuf::from(path)),
        })
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogsSection {
    pub connection: LogTarget,
    pub access: LogTarget,
}

impl Default for LogsSection {
    fn default() -> Self {
        LogsSection {
            connection: LogTarget::Stdout,
            access: LogTarget::Stdout,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    /// Names the listener in logs; defaults to the address.
    #[serde(default)]
    pub name: String,
    pub address: SocketAddr,
    /// Server certificates; the first is the default for unknown or absent SNI.
    #[serde(rename = "certificate", default)]
    pub certificates: Vec<CertificateSection>,
    #[serde(default)]
    pub mtls: MtlsSection,
    #[serde(default)]
    pub function: Option<FunctionRef>,
    pub origin: OriginSection,
    #[serde(default)]
    pub headers: HeadersSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub limits: ListenerLimits,
    /// Overrides the top-level `[logs]` for this listener.
    #[serde(default)]
    pub logs: Option<LogsSection>,
    /// When revocation data changes (a KVS write, a reload of CRLs, trust
    /// stores or stores), re-check established connections — re-run the
    /// function, re-verify the chain — and close those now refused.
    #[serde(default = "default_true")]
    pub recheck_established: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateSection {
    /// SNI host names this certificate serves (`*.example.com` allowed).
    #[serde(default)]
    pub names: Vec<String>,
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MtlsMode {
    #[default]
    Required,
    Optional,
    Passthrough,
    Off,
}

impl MtlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MtlsMode::Required => "required",
            MtlsMode::Optional => "optional",
            MtlsMode::Passthrough => "passthrough",
            MtlsMode::Off => "off",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MtlsSection {
    pub mode: MtlsMode,
    /// PEM bundle of root and intermediate CAs (required for `required`/`optional`).
    pub trust_store: Option<PathBuf>,
    /// CRL files (PEM or DER).
    pub crls: Vec<PathBuf>,
    pub ignore_certificate_expiry: bool,
    pub advertise_ca_names: bool,
    /// Longest accepted chain, counting the leaf and the root.
    pub max_chain_depth: usize,
    pub max_bundle_bytes: usize,
    pub max_ca_certs: usize,
    pub max_cert_bytes: usize,
}

impl Default for MtlsSection {
    fn default() -> Self {
        MtlsSection {
            mode: MtlsMode::Required,
            trust_store: None,
            crls: Vec::new(),
            ignore_certificate_expiry: false,
            advertise_ca_names: false,
            max_chain_depth: 4,
            max_bundle_bytes: 64 * 1024,
            max_ca_certs: 25,
            max_cert_bytes: 16 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    #[default]
    Deny,
    Allow,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionRef {
    /// A key of `[functions]`.
    pub name: String,
    /// What a function error (trap, timeout, no decision) means.
    #[serde(default)]
    pub on_error: OnError,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginSection {
    /// `http://host:port` or `https://host:port`, optionally with a path prefix.
    pub url: String,
    /// CA bundle for the origin's certificate; system roots when absent.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Origin mTLS: the certificate (PEM chain) presented when the origin asks.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    #[serde(default = "default_connect_timeout", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Until the origin's response head arrives.
    #[serde(default = "default_response_timeout", deserialize_with = "duration")]
    pub response_timeout: Duration,
    #[serde(default = "default_pool_idle_timeout", deserialize_with = "duration")]
    pub pool_idle_timeout: Duration,
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle_per_host: usize,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_response_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_pool_idle_timeout() -> Duration {
    Duration::from_secs(90)
}
fn default_pool_max_idle() -> usize {
    32
}

/// The origin URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Prefix added before every request path ("" or "/api").
    pub path_prefix: String,
}

impl OriginSection {
    pub fn parsed_url(&self) -> Result<OriginUrl, String> {
        let uri: http::Uri = self
            .url
            .parse()
            .map_err(|e| format!("origin url {:?}: {e}", self.url))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            other => {
                return Err(format!(
                    "origin url {:?}: scheme must be http or https, not {:?}",
                    self.url,
                    other.unwrap_or("")
                ));
            }
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("origin url {:?} has no host", self.url))?;
        if uri.query().is_some() {
            return Err(format!(
                "origin url {:?}: no query string allowed",
                self.url
            ));
        }
        // The URL parser would drop both without a word.
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(format!(
                "origin url {:?}: no user or password allowed (they would not be sent)",
                self.url
            ));
        }
        if self.url.contains('#') {
            return Err(format!("origin url {:?}: no fragment allowed", self.url));
        }
        let path = uri.path().trim_end_matches('/');
        Ok(OriginUrl {
            https,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            path_prefix: path.to_owned(),
        })
    }
}

/// Which client-certificate headers go to the origin.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersSection {
    /// `CloudFront-Viewer-Cert-*`.
    pub cloudfront: bool,
    /// `X-Amzn-Mtls-Clientcert-*`.
    pub alb: bool,
    /// `Client-Cert` / `Client-Cert-Chain` (always on in passthrough mode).
    pub rfc9440: bool,
    /// Header carrying the connection id; empty → not sent.
    pub connection_id: String,
}

impl Default for HeadersSection {
    fn default() -> Self {
        HeadersSection {
            cloudfront: true,
            alb: false,
            rfc9440: false,
            connection_id: "X-Tollgate-Connection-Id".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Largest request head (request line + headers) accepted.
    pub max_header_bytes: usize,
    /// A client must send a complete request head within this time.
    #[serde(deserialize_with = "duration")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            max_header_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerLimits {
    /// From TCP accept to the end of the TLS handshake.
    #[serde(deserialize_with = "duration")]
    pub handshake_timeout: Duration,
    /// Connections open at once; further accepts wait.
    pub max_connections: usize,
    /// On shutdown, in-flight requests get this long to finish.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            handshake_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// `"10s"`, `"250ms"`, `"2m"`, `"1h"`, or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (like \"10s\" or \"250ms\")"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("{text:?}: unknown unit {other:?} (ms, s, m, h)")),
    };
    if !seconds.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&seconds) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationRepr {
    Text(String),
    Seconds(u64),
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match DurationRepr::deserialize(d)? {
        DurationRepr::Text(text) => parse_duration(&text).map_err(serde::de::Error::custom),
        DurationRepr::Seconds(s) => {
            parse_duration(&s.to_string()).map_err(serde::de::Error::custom)
        }
    }
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

fn resolve(base: &Path, path: &mut PathBuf) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}

impl Config {
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        if let Some(dir) = &mut self.runtime.cache_dir {
            resolve(base, dir);
        }
        for f in self.functions.values_mut() {
            resolve(base, &mut f.wasm);
        }
        for k in self.kvs.values_mut() {
            if let Some(p) = &mut k.import {
                resolve(base, p);
            }
        }
        let fix_logs = |logs: &mut LogsSection| {
            for t in [&mut logs.connection, &mut logs.access] {
                if let LogTarget::File(p) = t {
                    resolve(base, p);
                }
            }
        };
        fix_logs(&mut self.logs);
        if let Some(state) = &mut self.state {
            resolve(base, &mut state.dir);
        }
        if let Some(admin) = &mut self.admin {
            for p in [
                &mut admin.token_file,
                &mut admin.tls_cert,
                &mut admin.tls_key,
            ]
            .into_iter()
            .flatten()
            {
                resolve(base, p);
            }
        }
        for l in &mut self.listeners {
            for c in &mut l.certificates {
                resolve(base, &mut c.cert);
                resolve(base, &mut c.key);
            }
            if let Some(p) = &mut l.mtls.trust_store {
                resolve(base, p);
            }
            for p in &mut l.mtls.crls {
                resolve(base, p);
            }
            for p in [
                &mut l.origin.ca,
                &mut l.origin.client_cert,
                &mut l.origin.client_key,
            ]
            .into_iter()
            .flatten()
            {
                resolve(base, p);
            }
            if let Some(logs) = &mut l.logs {
                fix_logs(logs);
            }
            if l.name.is_empty() {
                l.name = l.address.to_string();
            }
        }
    }

    /// The log sinks of a listener (its own or the top-level ones).
    pub fn listener_logs<'a>(&'a self, listener: &'a ListenerSection) -> &'a LogsSection {
        listener.logs.as_ref().unwrap_or(&self.logs)
    }

    pub(crate) fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |context: String, message: String| {
            problems.push(Problem {
                file: self.source.clone(),
                context,
                message,
            })
        };
        if self.listeners.is_empty() {
            problem(String::new(), "no [[listener]] configured".into());
        }
        if self.runtime.max_concurrent_calls == 0 {
            problem(
                "runtime.max_concurrent_calls".into(),
                "must be at least 1".into(),
            );
        }
        if self.runtime.max_calls_per_instance == 0 {
            problem(
                "runtime.max_calls_per_instance".into(),
                "must be at least 1 (1: a fresh instance for every call)".into(),
            );
        }
        if self.runtime.max_inline_time > Duration::from_secs(1) {
            problem(
                "runtime.max_inline_time".into(),
                "must be at most 1s (a function's time limit cannot be longer)".into(),
            );
        }
        for (name, f) in &self.functions {
            for store in &f.kvs {
                if !self.kvs.contains_key(store) {
                    problem(
                        format!("functions.{name}.kvs"),
                        format!("no store named {store:?} in [kvs]"),
                    );
                }
            }
            if f.time_limit.is_some_and(|t| t.is_zero()) {
                problem(
                    format!("functions.{name}.time_limit"),
                    "must be more than zero".into(),
                );
            }
        }
        if self.watch.interval < Duration::from_millis(100) {
            problem("watch.interval".into(), "must be at least 100ms".into());
        }
        if let Some(admin) = &self.admin {
            if self.state.is_none() {
                problem(
                    "admin".into(),
                    "the admin API needs [state] dir, where its writes are made durable".into(),
                );
            }
            match (&admin.token_file, &admin.token_env) {
                (None, None) => problem(
                    "admin".into(),
                    "set token_file or token_env: every admin call needs a bearer token".into(),
                ),
                (Some(_), Some(_)) => problem(
                    "admin".into(),
                    "set one of token_file and token_env, not both".into(),
                ),
                _ => {}
            }
            if admin.tls_cert.is_some() != admin.tls_key.is_some() {
                problem("admin".into(), "tls_cert and tls_key go together".into());
            }
            if !admin.address.ip().is_loopback() && admin.tls_cert.is_none() {
                problem(
                    "admin.address".into(),
                    format!(
                        "{} is not a loopback address: the admin API needs tls_cert and tls_key there",
                        admin.address
                    ),
                );
            }
            if admin.max_body_bytes < 1024 {
                problem(
                    "admin.max_body_bytes".into(),
                    "must be at least 1024".into(),
                );
            }
        }
        let mut names = HashSet::new();
        let mut addresses = HashSet::new();
        for l in &self.listeners {
            let ctx = |key: &str| format!("listener {:?} {key}", l.name);
            if !names.insert(l.name.clone()) {
                problem(ctx("name"), "two listeners have this name".into());
            }
            if !addresses.insert(l.address) {
                problem(ctx("address"), format!("{} is used twice", l.address));
            }
            if l.certificates.is_empty() {
                problem(
                    ctx("certificate"),
                    "at least one [[listener.certificate]] is needed".into(),
                );
            }
            let m = &l.mtls;
            match m.mode {
                MtlsMode::Required | MtlsMode::Optional if m.trust_store.is_none() => problem(
                    ctx("mtls.trust_store"),
                    format!("mode {:?} needs a trust_store", m.mode.as_str()),
                ),
                MtlsMode::Passthrough | MtlsMode::Off
                    if m.trust_store.is_some() || !m.crls.is_empty() =>
                {
                    problem(
                        ctx("mtls"),
                        format!(
                            "mode {:?} does not validate certificates; remove trust_store and crls",
                            m.mode.as_str()
                        ),
                    )
                }
                _ => {}
            }
            if !(1..=16).contains(&m.max_chain_depth) {
                problem(ctx("mtls.max_chain_depth"), "must be 1 to 16".into());
            }
            // With a state, a function may also exist only there (created
            // through the admin API); the loader checks that.
            if let Some(f) = &l.function
                && self.state.is_none()
                && !self.functions.contains_key(&f.name)
            {
                problem(
                    ctx("function.name"),
                    format!("no function named {:?} in [functions]", f.name),
                );
            }
            match l.origin.parsed_url() {
                Err(e) => problem(ctx("origin.url"), e),
                Ok(url) => {
                    if !url.https && (l.origin.ca.is_some() || l.origin.client_cert.is_some()) {
                        problem(
                            ctx("origin"),
                            "ca and client_cert need an https origin url".into(),
                        );
                    }
                }
            }
            if l.origin.client_cert.is_some() != l.origin.client_key.is_some() {
                problem(
                    ctx("origin"),
                    "client_cert and client_key go together".into(),
                );
            }
            if !l.headers.connection_id.is_empty()
                && http::HeaderName::from_bytes(l.headers.connection_id.as_bytes()).is_err()
            {
                problem(
                    ctx("headers.connection_id"),
                    format!("{:?} is not a valid header name", l.headers.connection_id),
                );
            }
            if l.http.max_header_bytes < 8192 {
                problem(ctx("http.max_header_bytes"), "must be at least 8192".into());
            }
            if l.limits.max_connections == 0 {
                problem(ctx("limits.max_connections"), "must be at least 1".into());
            }
            // A zero timeout would refuse every handshake or request, or
            // close every connection as idle at once.
            for (key, value) in [
                ("limits.handshake_timeout", l.limits.handshake_timeout),
                ("http.header_read_timeout", l.http.header_read_timeout),
                ("http.idle_timeout", l.http.idle_timeout),
                ("origin.connect_timeout", l.origin.connect_timeout),
                ("origin.response_timeout", l.origin.response_timeout),
            ] {
                if value.is_zero() {
                    problem(ctx(key), "must be more than zero".into());
                }
            }
        }
        problems
    }
}
