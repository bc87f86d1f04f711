//! Turning a [`Config`] into everything a listener needs, loaded once: server
//! certificates, trust stores, CRLs, verifiers, compiled functions, KVS data,
//! origin clients, log sinks. `tollgate check` is this without binding.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tollgate_config::{Config, ListenerSection, LogTarget, MtlsMode, OnError, Problem};
use tollgate_function::{Function, FunctionSpec, Limits, Runtime, RuntimeConfig, StoreSet};
use tollgate_log::{Logger, SinkSpec};
use tollgate_proxy::Origin;
use tollgate_state::{FunctionRecord, Stage, State};
use tollgate_tls::{
    ClientAuthMode, ClientAuthPolicy, ClientVerifier, CrlSet, ServerCertSpec, ServerCertificates,
    TrustStore, TrustStoreLimits,
};

/// Everything loaded from a config, ready to bind.
pub struct Loaded {
    pub config: Config,
    pub listeners: Vec<Arc<ListenerPlan>>,
    /// Problems that do not stop the server (trust-store entries skipped, …).
    pub warnings: Vec<Problem>,
    /// Kept alive for the functions it compiled.
    pub runtime: Runtime,
    pub stores: tollgate_kvs::Stores,
    pub loggers: Vec<Logger>,
    /// The durable state the stores write through, when configured.
    pub state: Option<Arc<State>>,
}

/// What a load may take from the running server instead of building anew.
#[derive(Default, Clone, Copy)]
pub struct Reuse<'a> {
    /// Compile into this runtime when it has the same settings (a reload
    /// keeps the engine, its pool and its epoch thread).
    pub runtime: Option<&'a Runtime>,
    /// Open stores from this state (seeding the ones it does not know).
    pub state: Option<&'a Arc<State>>,
    /// Stores in use: a store with the same name and limits is kept as it
    /// is (with a state, its contents belong to the state, not the file).
    pub stores: Option<&'a tollgate_kvs::Stores>,
    /// Log sinks in use: a sink the new configuration names again is kept
    /// (and reopened), so that connections accepted before the reload and
    /// after it write through the same, reopened, file.
    pub loggers: Option<&'a [Logger]>,
}

/// One listener, loaded.
#[derive(Clone)]
pub struct ListenerPlan {
    pub section: ListenerSection,
    pub name: Arc<str>,
    pub tls: Arc<rustls::ServerConfig>,
    pub certificates: Arc<ServerCertificates>,
    pub mode: MtlsMode,
    pub verifier: Option<Arc<ClientVerifier>>,
    pub ignore_expiry: bool,
    pub function: Option<(Function, OnError)>,
    pub origin: Arc<Origin>,
    pub connection_log: Logger,
    pub access_log: Logger,
    /// The listener's metric series, found once here rather than per
    /// connection.
    pub metrics: Arc<ListenerMetrics>,
}

/// A listener's metric series.
pub struct ListenerMetrics {
    pub active: Arc<tollgate_metrics::Gauge>,
    pub handshake: Arc<tollgate_metrics::Histogram>,
    pub success: Arc<tollgate_metrics::Counter>,
    /// The listener's function's series, by its name (a published version
    /// keeps the name, so these stay right).
    pub function: Option<FunctionMetrics>,
}

/// Duration, denies and replays of one function.
pub struct FunctionMetrics {
    pub seconds: Arc<tollgate_metrics::Histogram>,
    pub denies: Arc<tollgate_metrics::Counter>,
    pub replays: Arc<tollgate_metrics::Counter>,
}

impl ListenerMetrics {
    fn new(listener: &str, function: Option<&str>) -> ListenerMetrics {
        let m = tollgate_metrics::metrics();
        ListenerMetrics {
            active: m.active_connections.with(&[listener]),
            handshake: m.handshake_seconds.with(&[listener]),
            success: m.connections.with(&[listener, "Success"]),
            function: function.map(|f| FunctionMetrics {
                seconds: m.function_seconds.with(&[f]),
                denies: m.function_denies.with(&[f]),
                replays: m.function_replays.with(&[f]),
            }),
        }
    }
}

/// Why loading failed: every problem found, not just the first.
#[derive(Debug)]
pub struct LoadFailure {
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl std::fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadFailure {}

struct Collector<'a> {
    source: &'a Path,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Collector<'_> {
    fn error(&mut self, file: &Path, context: impl Into<String>, message: impl std::fmt::Display) {
        self.errors.push(Problem {
            file: file.to_owned(),
            context: context.into(),
            message: message.to_string(),
        });
    }
    fn warn(&mut self, file: &Path, context: impl Into<String>, message: impl std::fmt::Display) {
        self.warnings.push(Problem {
            file: file.to_owned(),
            context: context.into(),
            message: message.to_string(),
        });
    }
    fn config_warn(&mut self, context: impl Into<String>, message: impl std::fmt::Display) {
        let source = self.source.to_owned();
        self.warn(&source, context, message);
    }
    fn config_error(&mut self, context: impl Into<String>, message: impl std::fmt::Display) {
        let source = self.source.to_owned();
        self.error(&source, context, message);
    }
}

/// Loads everything `config` names. Log files are opened only when
/// `open_logs` (not for `check`).
pub async fn load(config: Config, open_logs: bool) -> Result<Loaded, LoadFailure> {
    load_with(config, open_logs, Reuse::default()).await
}

/// [`load`], reusing what `reuse` offers.
pub async fn load_with(
    config: Config,
    open_logs: bool,
    reuse: Reuse<'_>,
) -> Result<Loaded, LoadFailure> {
    let runtime = reuse.runtime;
    let source = config.source.clone();
    let mut c = Collector {
        source: &source,
        errors: Vec::new(),
        warnings: Vec::new(),
    };

    // Stores.
    // What a state does not know yet is seeded into it only once the whole
    // configuration has loaded: a refused load writes nothing.
    let mut seeds = Seeds::default();
    let mut stores = tollgate_kvs::Stores::new();
    for (name, section) in &config.kvs {
        let mut limits = tollgate_kvs::Limits::default();
        if let Some(v) = section.max_key_bytes {
            limits.max_key_bytes = v;
        }
        if let Some(v) = section.max_value_bytes {
            limits.max_value_bytes = v;
        }
        if let Some(v) = section.max_store_bytes {
            limits.max_store_bytes = v as u64;
        }
        let in_use = reuse
            .stores
            .and_then(|s| s.get(name))
            .filter(|s| s.limits() == &limits);
        let store = match (reuse.state, in_use) {
            (Some(_), Some(store)) => Ok(store),
            (Some(state), None) => state
                .prepare_store(name, limits, section.import.as_deref())
                .map(|(store, opened)| {
                    tracing::info!(store = %name, ?opened, "store opened from the state");
                    let store = Arc::new(store);
                    if opened != tollgate_state::Opened::FromState {
                        seeds.stores.push(store.clone());
                    }
                    store
                })
                .map_err(|e| (state.path().to_owned(), e.to_string())),
            (None, _) => match &section.import {
                None => Ok(Arc::new(tollgate_kvs::Store::new(name, limits))),
                Some(path) => match std::fs::read(path) {
                    Ok(json) => tollgate_kvs::Store::from_import_json(name, limits, &json)
                        .map(Arc::new)
                        .map_err(|e| (path.clone(), e.to_string())),
                    Err(e) => Err((path.clone(), format!("cannot read: {e}"))),
                },
            },
        };
        match store {
            Ok(store) => stores.insert(store),
            Err((path, message)) => c.error(&path, format!("kvs.{name}.import"), message),
        }
    }

    // Functions.
    let wanted = runtime_config(&config.runtime);
    let reusable = runtime.filter(|rt| same_runtime(rt.config(), &wanted));
    let runtime = match reusable
        .cloned()
        .map(Ok)
        .unwrap_or_else(|| Runtime::new(wanted))
    {
        Ok(rt) => rt,
        Err(e) => {
            c.config_error("runtime", e);
            return Err(LoadFailure {
                errors: c.errors,
                warnings: c.warnings,
            });
        }
    };
    let mut functions: HashMap<String, Function> = HashMap::new();
    if let Some(state) = reuse.state {
        // With a state, functions are its LIVE versions; a function the state
        // does not know is seeded from its [functions.NAME] section.
        let mut names: Vec<&str> = config.functions.keys().map(String::as_str).collect();
        for l in &config.listeners {
            if let Some(f) = &l.function
                && !names.contains(&f.name.as_str())
            {
                names.push(&f.name);
            }
        }
        for name in names {
            match live_function(
                state,
                &runtime,
                &stores,
                name,
                config.functions.get(name),
                &mut seeds,
            )
            .await
            {
                Ok(Some(f)) => {
                    functions.insert(name.to_owned(), f);
                }
                Ok(None) => {}
                Err((file, message)) => c.error(
                    &file.unwrap_or_else(|| state.path().to_owned()),
                    format!("functions.{name}"),
                    message,
                ),
            }
        }
    }
    for (name, section) in config.functions.iter().filter(|_| reuse.state.is_none()) {
        let wasm = match std::fs::read(&section.wasm) {
            Ok(w) => w,
            Err(e) => {
                c.error(
                    &section.wasm,
                    format!("functions.{name}.wasm"),
                    format!("cannot read: {e}"),
                );
                continue;
            }
        };
        let limits = section_limits(section.time_limit, section.memory_limit);
        let store_set = StoreSet::new(section.kvs.iter().filter_map(|s| stores.get(s)));
        match runtime
            .load(FunctionSpec {
                name,
                wasm: &wasm,
                limits,
                stores: store_set,
            })
            .await
        {
            Ok(f) => {
                functions.insert(name.clone(), f);
            }
            Err(e) => c.error(&section.wasm, format!("functions.{name}"), e),
        }
    }

    // Log sinks, shared by target so that lines never interleave.
    let reuse_loggers = reuse.loggers;
    let mut loggers: HashMap<LogTarget, Logger> = HashMap::new();
    let mut logger_for = |c: &mut Collector<'_>, target: &LogTarget, context: &str| -> Logger {
        if let Some(l) = loggers.get(target) {
            return l.clone();
        }
        let spec = match target {
            LogTarget::Stdout => SinkSpec::Stdout,
            LogTarget::Off => SinkSpec::Off,
            LogTarget::File(p) => SinkSpec::File(p.clone()),
        };
        let kept = reuse_loggers
            .iter()
            .flat_map(|l| l.iter())
            .find(|l| l.spec() == &spec);
        let logger = if let Some(kept) = kept.filter(|_| open_logs) {
            // Kept, but the file must still open (as for a new sink): a
            // reload naming a path that can no longer be written is refused.
            match target {
                LogTarget::File(path) => std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map(|_| kept.clone())
                    .map_err(|e| format!("cannot open log file {}: {e}", path.display())),
                _ => Ok(kept.clone()),
            }
            .inspect(|kept| kept.reopen())
        } else if open_logs {
            Logger::open(&spec).map_err(|e| e.to_string())
        } else {
            // check: only make sure the directory exists.
            if let LogTarget::File(p) = target
                && let Some(dir) = p.parent()
                && !dir.as_os_str().is_empty()
                && !dir.is_dir()
            {
                c.config_error(
                    context.to_owned(),
                    format!("log directory {} does not exist", dir.display()),
                );
            }
            Logger::open(&SinkSpec::Off).map_err(|e| e.to_string())
        };
        match logger {
            Ok(l) => {
                loggers.insert(target.clone(), l.clone());
                l
            }
            Err(e) => {
                c.config_error(context.to_owned(), e);
                Logger::open(&SinkSpec::Off)
                    .unwrap_or_else(|_| unreachable!("an Off sink cannot fail"))
            }
        }
    };

    let mut listeners = Vec::new();
    for section in &config.listeners {
        let ctx = |key: &str| format!("listener {:?} {key}", section.name);
        let logs = config.listener_logs(section).clone();
        let connection_log = logger_for(&mut c, &logs.connection, &ctx("logs.connection"));
        let access_log = logger_for(&mut c, &logs.access, &ctx("logs.access"));

        let specs: Vec<ServerCertSpec> = section
            .certificates
            .iter()
            .map(|cs| ServerCertSpec {
                names: cs.names.clone(),
                cert: cs.cert.clone(),
                key: cs.key.clone(),
            })
            .collect();
        let certs = match ServerCertificates::load(&specs) {
            Ok(certs) => {
                let now = time::OffsetDateTime::now_utc();
                for (names, not_after) in certs.summaries() {
                    if not_after < now {
                        c.warn(
                            &source,
                            ctx("certificate"),
                            format!("the certificate for {names:?} expired on {not_after}"),
                        );
                    }
                }
                Some(certs)
            }
            Err(e) => {
                c.config_error(ctx("certificate"), e);
                None
            }
        };

        let m = &section.mtls;
        let verifier = match m.mode {
            MtlsMode::Off => None,
            MtlsMode::Passthrough => Some(ClientVerifier::new(ClientAuthPolicy {
                mode: ClientAuthMode::Passthrough,
                trust: Arc::new(TrustStore::empty()),
                crls: Arc::new(CrlSet::empty()),
                ignore_expiry: m.ignore_certificate_expiry,
                advertise_ca_names: false,
                max_chain_depth: m.max_chain_depth,
            })),
            MtlsMode::Required | MtlsMode::Optional => {
                let limits = TrustStoreLimits {
                    max_bundle_bytes: m.max_bundle_bytes,
                    max_certs: m.max_ca_certs,
                    max_cert_bytes: m.max_cert_bytes,
                };
                let trust_path = m.trust_store.clone().unwrap_or_default();
                match TrustStore::load(&trust_path, &limits) {
                    Ok(trust) => {
                        for w in trust.warnings() {
                            c.warn(&trust_path, ctx("mtls.trust_store"), w);
                        }
                        // Every bad file is reported, not just the first.
                        let crls = CrlSet::load_each(&m.crls, &trust);
                        if let Ok(crls) = &crls {
                            for w in crls.warnings() {
                                c.config_warn(ctx("mtls.crls"), w);
                            }
                        }
                        match crls {
                            Ok(crls) => Some(ClientVerifier::new(ClientAuthPolicy {
                                mode: if m.mode == MtlsMode::Required {
                                    ClientAuthMode::Required
                                } else {
                                    ClientAuthMode::Optional
                                },
                                trust: Arc::new(trust),
                                crls: Arc::new(crls),
                                ignore_expiry: m.ignore_certificate_expiry,
                                advertise_ca_names: m.advertise_ca_names,
                                max_chain_depth: m.max_chain_depth,
                            })),
                            Err(errors) => {
                                for e in errors {
                                    c.config_error(ctx("mtls.crls"), e);
                                }
                                None
                            }
                        }
                    }
                    Err(e) => {
                        c.error(&trust_path, ctx("mtls.trust_store"), e);
                        // The CRLs cannot be checked against their CAs, but
                        // files that are not CRLs at all are still reported.
                        if let Err(errors) = CrlSet::load_each(&m.crls, &TrustStore::empty()) {
                            for e in errors {
                                c.config_error(ctx("mtls.crls"), e);
                            }
                        }
                        None
                    }
                }
            }
        };

        let tls = match &certs {
            Some(certs) => match tollgate_tls::server_config(certs.clone(), verifier.clone()) {
                Ok(cfg) => Some(Arc::new(cfg)),
                Err(e) => {
                    c.config_error(ctx("tls"), e);
                    None
                }
            },
            None => None,
        };

        let origin_tls = match section.origin.parsed_url() {
            Ok(url) if url.https => {
                let client = section
                    .origin
                    .client_cert
                    .as_deref()
                    .zip(section.origin.client_key.as_deref());
                match tollgate_tls::origin_client_config(section.origin.ca.as_deref(), client) {
                    Ok((cfg, warnings)) => {
                        for w in warnings {
                            c.config_warn(ctx("origin.client_cert"), w);
                        }
                        Some(cfg)
                    }
                    Err(e) => {
                        c.config_error(ctx("origin"), e);
                        None
                    }
                }
            }
            _ => None,
        };
        let origin = match Origin::new(&section.origin, origin_tls) {
            Ok(o) => Some(Arc::new(o)),
            Err(e) => {
                c.config_error(ctx("origin"), e);
                None
            }
        };

        let function = section.function.as_ref().and_then(|f| {
            functions
                .get(&f.name)
                .map(|func| (func.clone(), f.on_error))
        });
        if let Some(f) = &section.function
            && function.is_none()
            && config.state.is_some()
            && reuse.state.is_none()
            && !config.functions.contains_key(&f.name)
        {
            c.config_warn(
                ctx("function.name"),
                format!(
                    "{:?} is not in [functions]: it must exist (LIVE) in the state when the server starts",
                    f.name
                ),
            );
        }
        if let Some(f) = &section.function
            && function.is_none()
            && reuse.state.is_some()
            && !config.functions.contains_key(&f.name)
        {
            c.config_error(
                ctx("function.name"),
                format!(
                    "no function named {:?} in [functions] or (LIVE) in the state",
                    f.name
                ),
            );
        }
        if m.mode == MtlsMode::Passthrough && section.function.is_none() {
            c.warn(&source, ctx("mtls.mode"), "passthrough validates no certificate and no function is configured: any client key is admitted");
        }

        if let (Some(tls), Some(origin), Some(certificates)) = (tls, origin, certs)
            && (m.mode == MtlsMode::Off || verifier.is_some())
        {
            listeners.push(Arc::new(ListenerPlan {
                name: Arc::from(section.name.as_str()),
                section: section.clone(),
                tls,
                certificates,
                mode: m.mode,
                verifier,
                ignore_expiry: m.ignore_certificate_expiry,
                function,
                origin,
                connection_log,
                access_log,
                metrics: Arc::new(ListenerMetrics::new(
                    &section.name,
                    section.function.as_ref().map(|f| f.name.as_str()),
                )),
            }));
        }
    }

    if c.errors.is_empty()
        && let Some(state) = reuse.state
        && let Err(e) = seeds.commit(state)
    {
        c.error(state.path(), "state", e);
    }
    if !c.errors.is_empty() {
        return Err(LoadFailure {
            errors: c.errors,
            warnings: c.warnings,
        });
    }
    Ok(Loaded {
        config,
        listeners,
        warnings: c.warnings,
        runtime,
        stores,
        loggers: loggers.into_values().collect(),
        state: reuse.state.cloned(),
    })
}

/// Function limits from a config section (defaults where it is silent).
pub fn section_limits(
    time_limit: Option<std::time::Duration>,
    memory_limit: Option<u64>,
) -> Limits {
    let mut limits = Limits::default();
    if let Some(t) = time_limit {
        limits.time_us = t.as_micros().min(u64::MAX as u128) as u64;
    }
    if let Some(m) = memory_limit {
        limits.memory_bytes = m;
    }
    limits
}

/// Function limits of a state record.
pub fn record_limits(record: &FunctionRecord) -> Limits {
    let mut limits = Limits::default();
    if let Some(t) = record.time_limit_us {
        limits.time_us = t;
    }
    if let Some(m) = record.memory_limit_bytes {
        limits.memory_bytes = m;
    }
    limits
}

/// A fresh ETag for a function version.
pub fn new_function_etag() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("F{:016X}", h.finish())
}

/// Compiles a state record's code, bound to its stores.
pub async fn compile_record(
    state: &State,
    runtime: &Runtime,
    stores: &tollgate_kvs::Stores,
    record: &FunctionRecord,
) -> Result<Function, String> {
    let code = state
        .function_code(&record.sha256)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the state has no code for sha256 {}", record.sha256))?;
    let mut missing = Vec::new();
    let set = StoreSet::new(record.kvs.iter().filter_map(|s| {
        let store = stores.get(s);
        if store.is_none() {
            missing.push(s.clone());
        }
        store
    }));
    if !missing.is_empty() {
        return Err(format!(
            "{} {} uses stores that are not configured: {}",
            record.name,
            record.stage.as_str(),
            missing.join(", ")
        ));
    }
    runtime
        .load(FunctionSpec {
            name: &record.name,
            wasm: &code,
            limits: record_limits(record),
            stores: set,
        })
        .await
        .map_err(|e| e.to_string())
}

/// What a load would add to the state: written by [`Seeds::commit`] once the
/// whole configuration has loaded.
#[derive(Default)]
struct Seeds {
    /// Stores the state does not know, with their first contents.
    stores: Vec<Arc<tollgate_kvs::Store>>,
    /// Functions the state does not know: both stages and the module.
    functions: Vec<(FunctionRecord, FunctionRecord, Vec<u8>)>,
}

impl Seeds {
    /// All seeds in one transaction (nothing is written if any fails).
    fn commit(self, state: &Arc<State>) -> Result<(), String> {
        if self.stores.is_empty() && self.functions.is_empty() {
            return Ok(());
        }
        let stores: Vec<&tollgate_kvs::Store> = self.stores.iter().map(|s| &**s).collect();
        let functions: Vec<_> = self
            .functions
            .iter()
            .map(|(dev, live, wasm)| (dev, live, wasm.as_slice()))
            .collect();
        state
            .seed(&stores, &functions)
            .map_err(|e| format!("seeding the state: {e}"))?;
        for (dev, _, _) in &self.functions {
            tracing::info!(function = %dev.name, "function seeded into the state from its wasm file");
        }
        Ok(())
    }
}

/// The LIVE version of `name` from the state, or (when the state does not
/// know it) compiled from `section`, with both stages added to `seeds`.
/// `Ok(None)`: neither has it.
async fn live_function(
    state: &Arc<State>,
    runtime: &Runtime,
    stores: &tollgate_kvs::Stores,
    name: &str,
    section: Option<&tollgate_config::FunctionSection>,
    seeds: &mut Seeds,
) -> Result<Option<Function>, (Option<std::path::PathBuf>, String)> {
    let live = state
        .function(name, Stage::Live)
        .map_err(|e| (None, e.to_string()))?;
    if let Some(record) = live {
        return compile_record(state, runtime, stores, &record)
            .await
            .map(Some)
            .map_err(|e| (None, e));
    }
    let Some(section) = section else {
        return Ok(None);
    };
    let wasm = std::fs::read(&section.wasm)
        .map_err(|e| (Some(section.wasm.clone()), format!("cannot read: {e}")))?;
    let set = StoreSet::new(section.kvs.iter().filter_map(|s| stores.get(s)));
    let function = runtime
        .load(FunctionSpec {
            name,
            wasm: &wasm,
            limits: section_limits(section.time_limit, section.memory_limit),
            stores: set,
        })
        .await
        .map_err(|e| (Some(section.wasm.clone()), e.to_string()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let dev = FunctionRecord {
        name: name.to_owned(),
        stage: Stage::Development,
        etag: new_function_etag(),
        sha256: function.sha256().to_owned(),
        size: wasm.len() as u64,
        created_ms: now,
        modified_ms: now,
        time_limit_us: section.time_limit.map(|t| t.as_micros() as u64),
        memory_limit_bytes: section.memory_limit,
        kvs: section.kvs.clone(),
        comment: format!("seeded from {}", section.wasm.display()),
    };
    let live = FunctionRecord {
        stage: Stage::Live,
        etag: new_function_etag(),
        ..dev.clone()
    };
    seeds.functions.push((dev, live, wasm));
    Ok(Some(function))
}

/// The function runtime a `[runtime]` section asks for.
fn runtime_config(section: &tollgate_config::RuntimeSection) -> RuntimeConfig {
    RuntimeConfig {
        max_concurrent_calls: section.max_concurrent_calls,
        cache_dir: section.cache_dir.clone(),
        max_inline_time: section.max_inline_time,
        max_calls_per_instance: section.max_calls_per_instance,
        replay_bytes: section.replay_bytes,
        ..RuntimeConfig::default()
    }
}

/// Whether a running runtime already is what a reload asks for (otherwise a
/// new one is built and every function is loaded into it).
fn same_runtime(running: &RuntimeConfig, wanted: &RuntimeConfig) -> bool {
    running.max_concurrent_calls == wanted.max_concurrent_calls
        && running.cache_dir == wanted.cache_dir
        && running.max_inline_time == wanted.max_inline_time
        && running.max_calls_per_instance == wanted.max_calls_per_instance
        && running.replay_bytes == wanted.replay_bytes
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn every_runtime_key_reaches_the_runtime_and_a_change_rebuilds_it() {
        let section = tollgate_config::RuntimeSection {
            max_concurrent_calls: 7,
            cache_dir: Some("/var/cache/tollgate".into()),
            max_inline_time: Duration::ZERO,
            max_calls_per_instance: 50,
            replay_bytes: 1 << 20,
        };
        let wanted = runtime_config(&section);
        assert_eq!(wanted.max_concurrent_calls, 7);
        assert_eq!(wanted.max_calls_per_instance, 50);
        assert_eq!(wanted.replay_bytes, 1 << 20);
        assert_eq!(wanted.cache_dir, section.cache_dir);
        assert_eq!(wanted.max_inline_time, Duration::ZERO);
        assert!(same_runtime(&wanted, &runtime_config(&section)));
        let faster = tollgate_config::RuntimeSection {
            max_inline_time: Duration::from_millis(10),
            ..section.clone()
        };
        assert!(!same_runtime(&wanted, &runtime_config(&faster)));
        let reusing = tollgate_config::RuntimeSection {
            max_calls_per_instance: 1,
            ..section.clone()
        };
        assert!(!same_runtime(&wanted, &runtime_config(&reusing)));
        let no_replay = tollgate_config::RuntimeSection {
            replay_bytes: 0,
            ..section.clone()
        };
        assert!(!same_runtime(&wanted, &runtime_config(&no_replay)));
        let bigger = tollgate_config::RuntimeSection {
            max_concurrent_calls: 8,
            ..section
        };
        assert!(!same_runtime(&wanted, &runtime_config(&bigger)));
    }
}
