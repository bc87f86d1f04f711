//! `tollgate test`: the local runner. It loads a function with the same
//! runtime, limits and KVS code as the proxy and runs it on one connection
//! (described by certificates and flags, or as JSON), or on a table of cases.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::Deserialize;
use tollgate_function::{
    CertSource, ConnectionInfo, Decision, ErrorKind, Function, FunctionSpec, Limits, Outcome,
    Runtime, RuntimeConfig, StoreSet,
};

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("input").args(["cert", "connection", "cases"])))]
pub struct TestArgs {
    /// The function: a Wasm component built for wasm32-wasip2.
    function: PathBuf,
    /// The client's leaf certificate (PEM). Further certificates in the same
    /// file are taken as intermediates.
    #[arg(long, value_name = "PEM")]
    cert: Option<PathBuf>,
    /// More intermediates (PEM), after those in --cert.
    #[arg(long, value_name = "PEM", requires = "cert")]
    chain: Option<PathBuf>,
    /// The connection as JSON (CloudFront's field names), for cases with no
    /// certificate or with crafted values.
    #[arg(long, value_name = "JSON", conflicts_with_all = ["cert", "chain", "client_ip", "sni"])]
    connection: Option<PathBuf>,
    /// A table of named cases (TOML); ends with `N passed, N failed`.
    #[arg(long, value_name = "TOML", conflicts_with_all = ["expect", "client_ip", "sni", "json"])]
    cases: Option<PathBuf>,
    /// The client's IP address.
    #[arg(long, value_name = "IP")]
    client_ip: Option<IpAddr>,
    /// The server name the client asked for.
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,
    /// A key-value store for the function, from a JSON import file
    /// (`{"data":[{"key":..,"value":..}]}`). Repeatable.
    #[arg(long = "kvs", value_name = "NAME=FILE", value_parser = parse_kvs_arg)]
    kvs: Vec<(String, PathBuf)>,
    /// Raise the per-store size limit (bytes) for large stores.
    #[arg(long, value_name = "BYTES")]
    kvs_max_store_bytes: Option<u64>,
    /// The per-key size limit (bytes), as `max_key_bytes` in `[kvs.NAME]`.
    #[arg(long, value_name = "BYTES")]
    kvs_max_key_bytes: Option<usize>,
    /// The per-value size limit (bytes), as `max_value_bytes` in `[kvs.NAME]`.
    #[arg(long, value_name = "BYTES")]
    kvs_max_value_bytes: Option<usize>,
    /// The execution time limit in microseconds (default: the proxy's, 5000).
    #[arg(long, value_name = "US")]
    time_limit_us: Option<u64>,
    /// The linear memory limit in bytes (default: the proxy's, 16 MiB).
    #[arg(long, value_name = "BYTES")]
    memory_limit_bytes: Option<u64>,
    /// The decision you expect; exit 1 when the function decides otherwise.
    #[arg(long, value_enum)]
    expect: Option<Expect>,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Allow,
    Deny,
}

impl Expect {
    fn decision(self) -> Decision {
        match self {
            Expect::Allow => Decision::Allow,
            Expect::Deny => Decision::Deny,
        }
    }
}

fn parse_kvs_arg(arg: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name.to_owned(), PathBuf::from(file)))
        }
        _ => Err(format!("expected NAME=FILE, got {arg:?}")),
    }
}

/// Input that cannot be used: exit status 2.
#[derive(Debug)]
struct Unusable(anyhow::Error);

pub fn main(args: TestArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(code) => code,
        Err(Unusable(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: TestArgs) -> Result<ExitCode, Unusable> {
    let limits = Limits {
        time_us: args.time_limit_us.unwrap_or(Limits::default().time_us),
        memory_bytes: args
            .memory_limit_bytes
            .unwrap_or(Limits::default().memory_bytes),
        ..Limits::default()
    };
    let kvs_limits = kvs_limits(
        args.kvs_max_store_bytes,
        args.kvs_max_key_bytes,
        args.kvs_max_value_bytes,
    );
    let wasm = std::fs::read(&args.function)
        .with_context(|| format!("cannot read the function {}", args.function.display()))
        .map_err(Unusable)?;
    let runtime = Runtime::new(RuntimeConfig {
        max_concurrent_calls: 4,
        ..RuntimeConfig::default()
    })
    .context("cannot start the Wasm runtime")
    .map_err(Unusable)?;
    let loader = Loader {
        function: load_function(&runtime, &wasm, &args.function, limits)
            .await
            .map_err(Unusable)?,
    };

    if let Some(cases) = &args.cases {
        return run_cases(&loader, cases, &args.kvs, &kvs_limits).await;
    }

    let stores = load_stores(
        args.kvs.iter().map(|(n, p)| (n.clone(), p.clone())),
        &kvs_limits,
    )
    .map_err(Unusable)?;
    let function = loader.function.with_stores(stores);
    let conn = if let Some(path) = &args.connection {
        let json = std::fs::read(path)
            .with_context(|| format!("cannot read the connection {}", path.display()))
            .map_err(Unusable)?;
        ConnectionInfo::from_json(&json)
            .with_context(|| format!("{}", path.display()))
            .map_err(Unusable)?
    } else {
        let mut conn = ConnectionInfo::for_test();
        if let Some(cert) = &args.cert {
            conn.chain = read_chain(cert, args.chain.as_deref()).map_err(Unusable)?;
        }
        if let Some(ip) = args.client_ip {
            conn.client = SocketAddr::new(ip, conn.client.port());
        }
        conn.sni = args.sni.clone();
        conn
    };
    let outcome = function.run(Arc::new(conn)).await;
    let holds = args.expect.is_none_or(|e| e.decision() == outcome.decision);
    if args.json {
        let mut value = serde_json::to_value(&outcome).map_err(|e| Unusable(e.into()))?;
        if let (Some(expect), Some(obj)) = (args.expect, value.as_object_mut()) {
            obj.insert("expected".into(), serde_json::json!(expect.decision()));
            obj.insert("expectationHolds".into(), serde_json::json!(holds));
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&value).map_err(|e| Unusable(e.into()))?
        );
    } else {
        print_outcome(&outcome);
        if let Some(expect) = args.expect {
            let verdict = if holds { "holds" } else { "DOES NOT HOLD" };
            println!("expected:    {} ({verdict})", expect.decision());
        }
    }
    Ok(if holds {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The store limits, the proxy's defaults where not given (as a `[kvs.NAME]`
/// section would set them).
fn kvs_limits(
    max_store_bytes: Option<u64>,
    max_key_bytes: Option<usize>,
    max_value_bytes: Option<usize>,
) -> tollgate_kvs::Limits {
    let defaults = tollgate_kvs::Limits::default();
    tollgate_kvs::Limits {
        max_store_bytes: max_store_bytes.unwrap_or(defaults.max_store_bytes),
        max_key_bytes: max_key_bytes.unwrap_or(defaults.max_key_bytes),
        max_value_bytes: max_value_bytes.unwrap_or(defaults.max_value_bytes),
    }
}

/// The function, compiled once; each case binds it to its own stores.
struct Loader {
    function: Function,
}

async fn load_function(
    runtime: &Runtime,
    wasm: &[u8],
    path: &Path,
    limits: Limits,
) -> anyhow::Result<Function> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "function".into());
    runtime
        .load(FunctionSpec {
            name: &name,
            wasm,
            limits,
            stores: StoreSet::default(),
        })
        .await
        .with_context(|| format!("cannot load the function {}", path.display()))
}

fn load_stores(
    files: impl IntoIterator<Item = (String, PathBuf)>,
    limits: &tollgate_kvs::Limits,
) -> anyhow::Result<StoreSet> {
    let mut stores = Vec::new();
    for (name, path) in files {
        let json = std::fs::read(&path)
            .with_context(|| format!("cannot read the store file {}", path.display()))?;
        let store = tollgate_kvs::Store::from_import_json(&name, limits.clone(), &json)
            .with_context(|| format!("store {name} ({})", path.display()))?;
        stores.push(Arc::new(store));
    }
    Ok(StoreSet::new(stores))
}

/// Reads a leaf (and any intermediates after it) and an optional chain file.
fn read_chain(cert: &Path, chain: Option<&Path>) -> anyhow::Result<Vec<CertSource>> {
    let mut ders = Vec::new();
    for (path, what) in [(Some(cert), "--cert"), (chain, "--chain")] {
        let Some(path) = path else { continue };
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read {what} {}", path.display()))?;
        let certs = tollgate_x509::pem::parse_certificates(&pem)
            .with_context(|| format!("{what} {}", path.display()))?;
        if certs.is_empty() {
            bail!("{what} {}: no certificate found", path.display());
        }
        for der in certs {
            tollgate_x509::CertInfo::parse(&der)
                .with_context(|| format!("{what} {}", path.display()))?;
            ders.push(CertSource::Der(der));
        }
    }
    Ok(ders)
}

fn print_outcome(o: &Outcome) {
    println!("decision:    {}", o.decision);
    println!("status:      {}", o.connection_status());
    if let Some(reason) = &o.reason {
        println!("reason:      {reason}");
    }
    if let Some(e) = &o.error {
        println!("error:       {} ({})", e.message, e.kind);
    }
    if let Some(data) = &o.custom_data {
        println!("custom data: {data}");
    }
    println!("duration:    {} µs", o.duration.as_micros());
    println!("compute:     {} % of the time limit", o.compute_utilization);
    if !o.console.is_empty() {
        println!("console:");
        for line in &o.console {
            println!(
                "  [{}] {}",
                serde_json::to_value(line.level)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                line.text
            );
        }
    }
}

/// A cases file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasesFile {
    /// Stores given to every case, NAME = FILE (relative to the cases file).
    #[serde(default)]
    kvs: BTreeMap<String, PathBuf>,
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// Leaf certificate (PEM file), intermediates may follow in the file.
    cert: Option<PathBuf>,
    chain: Option<PathBuf>,
    /// A connection object: a JSON file name, or an inline table.
    connection: Option<toml::Value>,
    client_ip: Option<IpAddr>,
    sni: Option<String>,
    /// Stores for this case; they replace the file-level ones of the same name.
    #[serde(default)]
    kvs: BTreeMap<String, PathBuf>,
    expect: Expect,
    /// Expected custom log data, exactly.
    custom_data: Option<String>,
    /// Expected error kind (e.g. `function-error`, `timeout`).
    error_kind: Option<String>,
}

struct PreparedCase {
    name: String,
    conn: ConnectionInfo,
    function: Function,
    expect: Expect,
    custom_data: Option<String>,
    error_kind: Option<String>,
}

async fn run_cases(
    loader: &Loader,
    path: &Path,
    cli_kvs: &[(String, PathBuf)],
    kvs_limits: &tollgate_kvs::Limits,
) -> Result<ExitCode, Unusable> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the cases file {}", path.display()))
        .map_err(Unusable)?;
    let file: CasesFile = toml::from_str(&text)
        .with_context(|| format!("{}", path.display()))
        .map_err(Unusable)?;
    if file.cases.is_empty() {
        return Err(Unusable(anyhow::anyhow!(
            "{}: no [[case]] entries",
            path.display()
        )));
    }
    let base = path.parent().unwrap_or(Path::new("."));

    // Prepare every case before running any: unusable input is reported as
    // such (exit 2), never as a failed case.
    let mut prepared = Vec::new();
    for case in file.cases {
        let name = case.name.clone();
        let p = prepare_case(loader, base, &file.kvs, cli_kvs, kvs_limits, case)
            .with_context(|| format!("{}: case {name:?}", path.display()))
            .map_err(Unusable)?;
        prepared.push(p);
    }

    let (mut passed, mut failed) = (0, 0);
    for case in prepared {
        let outcome = case.function.run(Arc::new(case.conn)).await;
        let mut problems = Vec::new();
        if outcome.decision != case.expect.decision() {
            problems.push(format!(
                "expected {}, got {}",
                case.expect.decision(),
                outcome.decision
            ));
        }
        if let Some(want) = &case.custom_data
            && outcome.custom_data.as_deref() != Some(want.as_str())
        {
            problems.push(format!(
                "expected custom data {want:?}, got {:?}",
                outcome.custom_data
            ));
        }
        if let Some(want) = &case.error_kind {
            let got = outcome.error.as_ref().map(|e| e.kind.as_str());
            if got != Some(want.as_str()) {
                problems.push(format!("expected error kind {want:?}, got {got:?}"));
            }
        }
        let detail = describe(&outcome);
        if problems.is_empty() {
            passed += 1;
            println!("ok    {} ({detail})", case.name);
        } else {
            failed += 1;
            println!("FAIL  {}: {} ({detail})", case.name, problems.join("; "));
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn describe(o: &Outcome) -> String {
    let mut parts = vec![o.decision.to_string()];
    if let Some(reason) = &o.reason {
        parts.push(format!("reason {reason:?}"));
    }
    if let Some(e) = &o.error {
        parts.push(format!("{}: {}", e.kind, e.message));
    }
    if let Some(data) = &o.custom_data {
        parts.push(format!("custom data {data:?}"));
    }
    parts.push(format!("{} µs", o.duration.as_micros()));
    parts.join(", ")
}

fn prepare_case(
    loader: &Loader,
    base: &Path,
    file_kvs: &BTreeMap<String, PathBuf>,
    cli_kvs: &[(String, PathBuf)],
    kvs_limits: &tollgate_kvs::Limits,
    case: Case,
) -> anyhow::Result<PreparedCase> {
    if let Some(kind) = &case.error_kind {
        let known = [
            ErrorKind::Timeout,
            ErrorKind::MemoryLimit,
            ErrorKind::StackOverflow,
            ErrorKind::Panic,
            ErrorKind::Trap,
            ErrorKind::OutputLimit,
            ErrorKind::FunctionError,
            ErrorKind::Instantiation,
            ErrorKind::Host,
        ];
        if !known.iter().any(|k| k.as_str() == kind) {
            let names: Vec<_> = known.iter().map(|k| k.as_str()).collect();
            bail!("unknown error_kind {kind:?}; one of {}", names.join(", "));
        }
    }
    // Stores: command line, then the file's, then the case's (later wins).
    let mut stores: BTreeMap<String, PathBuf> = cli_kvs.iter().cloned().collect();
    stores.extend(file_kvs.iter().map(|(n, p)| (n.clone(), base.join(p))));
    stores.extend(case.kvs.iter().map(|(n, p)| (n.clone(), base.join(p))));
    let function = loader
        .function
        .with_stores(load_stores(stores, kvs_limits)?);

    let mut conn = match &case.connection {
        None => ConnectionInfo::for_test(),
        Some(toml::Value::String(file)) => {
            let file = base.join(file);
            let json = std::fs::read(&file)
                .with_context(|| format!("cannot read the connection {}", file.display()))?;
            ConnectionInfo::from_json(&json).with_context(|| format!("{}", file.display()))?
        }
        Some(inline) => {
            let json = serde_json::to_vec(inline)?;
            ConnectionInfo::from_json(&json).context("connection")?
        }
    };
    if let Some(cert) = &case.cert {
        if case.connection.is_some() {
            bail!("give either cert or connection, not both");
        }
        conn.chain = read_chain(
            &base.join(cert),
            case.chain.as_ref().map(|c| base.join(c)).as_deref(),
        )?;
    } else if case.chain.is_some() {
        bail!("chain needs cert");
    }
    if let Some(ip) = case.client_ip {
        conn.client = SocketAddr::new(ip, conn.client.port());
    }
    if case.sni.is_some() {
        conn.sni = case.sni.clone();
    }
    Ok(PreparedCase {
        name: case.name,
        conn,
        function,
        expect: case.expect,
        custom_data: case.custom_data,
        error_kind: case.error_kind,
    })
}
