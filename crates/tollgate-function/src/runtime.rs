//! The wasmtime embedding: one engine, compile once per function version,
//! `InstancePre` once, then a fresh `Store` and instance for every call.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use tracing::Instrument;
use wasmtime::component::{Component, ComponentExportIndex, HasSelf, Linker, Resource, TypedFunc};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};
use wasmtime_wasi::clocks::{HostMonotonicClock, HostWallClock};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use crate::connection::ConnectionInfo;
use crate::host::types::Decision as WitDecision;
use crate::host::{ConnectionFunction, ConnectionFunctionPre, ConnectionRes, HostState, Limiter};
use crate::limits::Limits;
use crate::outcome::{Decision, ErrorKind, FunctionError, Outcome};
use crate::output::{ConsoleLevel, SharedOutput};
use crate::replay::{Recorded, Replays};

/// Settings shared by every function of a runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Function calls that may run at once; more wait for a slot. The pooling
    /// allocator reserves instances, memories and stacks for this many.
    pub max_concurrent_calls: u32,
    /// The most any function's limits may be raised to.
    pub ceiling: Limits,
    /// Epoch tick: how often running functions are checked against their
    /// time limit (and, on a fiber, yield their worker thread). Default 1 ms.
    pub epoch_tick: Duration,
    /// Functions whose time limit is at most this run inline: on the
    /// connection's worker thread, without a fiber, until they return or their
    /// time is up, like the handshake's own cryptography. That is the fast
    /// path (a fiber costs more than the rest of a small function's call).
    /// Functions allowed more time run on a fiber and yield their thread at
    /// every epoch tick, so a slow one cannot hold up other connections for
    /// long. Default 10 ms.
    pub max_inline_time: Duration,
    /// Where compiled components are cached, keyed by the SHA-256 of the
    /// Wasm and the engine's configuration. None: no disk cache. The
    /// directory must be private to Tollgate: cached code is loaded as is.
    pub cache_dir: Option<PathBuf>,
    /// Calls one instance of a function may serve. 1 (the default): every
    /// call gets a fresh instance and nothing survives a call. Above 1: an
    /// instance whose call returned normally is kept for the next call of the
    /// same function version, up to this many calls, so the guest's own
    /// memory and globals (not the connection object, not its KVS handles,
    /// which belong to one call) carry over from one connection to the next,
    /// as in Envoy's Wasm filters or a warm Lambda. An instance that trapped,
    /// ran out of time or kept a handle is dropped. Saves the instantiation,
    /// most of a small function's cost (docs/PERFORMANCE.md).
    pub max_calls_per_instance: u32,
    /// Memory each function version may use to replay its earlier calls: a
    /// call that asks the same questions of the host (the client's serial,
    /// a store lookup, ...) and gets the same answers as an earlier one has
    /// that call's outcome, without an instance (see `replay.rs`). When full
    /// it starts over. 0 turns replay off. Only fresh-instance functions
    /// replay (`max_calls_per_instance` = 1). Default 32 MiB.
    pub replay_bytes: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_concurrent_calls: 128,
            ceiling: Limits::default_ceiling(),
            epoch_tick: Duration::from_millis(1),
            max_inline_time: Duration::from_millis(10),
            cache_dir: None,
            max_calls_per_instance: 1,
            replay_bytes: 32 << 20,
        }
    }
}

/// The stores a function may open, by name.
#[derive(Debug, Clone, Default)]
pub struct StoreSet(Arc<HashMap<String, Arc<tollgate_kvs::Store>>>);

impl StoreSet {
    pub fn new(stores: impl IntoIterator<Item = Arc<tollgate_kvs::Store>>) -> StoreSet {
        StoreSet(Arc::new(
            stores
                .into_iter()
                .map(|s| (s.name().to_owned(), s))
                .collect(),
        ))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<tollgate_kvs::Store>> {
        self.0.get(name)
    }

    /// The names of the stores, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.0.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// The runtime could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid runtime configuration: {0}")]
    Config(String),
    #[error("cannot create the Wasm engine: {0}")]
    Engine(String),
    #[error("cannot use the compile cache directory {path}: {source}")]
    CacheDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A function could not be loaded. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the function is {size} bytes, over the module size limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("not a WebAssembly binary (it does not start with the \\0asm magic)")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component; build the function for the \
         wasm32-wasip2 target (cargo build --release --target wasm32-wasip2)"
    )]
    CoreModule,
    #[error("invalid Wasm component: {0}")]
    Invalid(String),
    #[error("the component does not target the tollgate:connection/connection-function world: {0}")]
    WrongWorld(String),
    #[error("invalid limits: {0}")]
    Limits(String),
    #[error("the component cannot be instantiated within its limits: {0}")]
    Instantiate(String),
}

/// Owns the engine, the linker and the epoch ticker. Cloning shares them (a
/// reloaded configuration compiles its functions into the same runtime).
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    shared: Arc<Shared>,
    config: RuntimeConfig,
    engine_hash: u64,
}

/// What functions share with their runtime; the epoch ticker stops when the
/// runtime and all its functions are gone.
struct Shared {
    ticker: EpochTicker,
    epoch_tick: Duration,
    permits: tokio::sync::Semaphore,
    /// [`RuntimeConfig::max_calls_per_instance`].
    max_calls_per_instance: u32,
    /// Instances kept for reuse, over all functions of the runtime; they hold
    /// pool slots, so there may be at most `max_concurrent_calls` of them
    /// (the pool has room for as many again as the calls).
    idle: AtomicU32,
    idle_cap: u32,
    /// [`RuntimeConfig::replay_bytes`]; 0 when functions keep instances.
    replay_bytes: usize,
}

impl Shared {
    /// A function version's replays, if calls replay.
    fn replays(&self) -> Option<Replays> {
        (self.replay_bytes > 0).then(|| Replays::new(self.replay_bytes))
    }
}

/// Advances the engine's epoch every tick while guest code may run, and
/// sleeps once no call has run for [`IDLE_BEFORE_SLEEP`]: a proxy without
/// functions, or an idle one, is not woken a thousand times a second. A call
/// wakes it before any guest code runs ([`EpochTicker::hold`]).
struct EpochTicker {
    state: Arc<TickerState>,
    thread: Option<JoinHandle<()>>,
}

/// How long the ticker goes on ticking after the last call.
const IDLE_BEFORE_SLEEP: Duration = Duration::from_millis(100);

struct TickerState {
    stop: AtomicBool,
    /// Calls and trial instantiations under way (holders of [`Ticking`]).
    running: AtomicUsize,
    /// The ticker is asleep, or about to be; a holder that sees it clears it
    /// and wakes the thread.
    asleep: AtomicBool,
    thread: std::sync::OnceLock<std::thread::Thread>,
}

/// While one is held, the epoch advances.
pub(crate) struct Ticking<'a>(&'a TickerState);

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EpochTicker {
    fn start(engine: Engine, tick: Duration) -> std::io::Result<EpochTicker> {
        let state = Arc::new(TickerState {
            stop: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            asleep: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
        });
        let idle_ticks = (IDLE_BEFORE_SLEEP.as_nanos() / tick.as_nanos().max(1)).max(1);
        let ticker = state.clone();
        let thread = std::thread::Builder::new()
            .name("tollgate-epoch".into())
            .spawn(move || {
                let state = ticker;
                let mut idle = 0u128;
                while !state.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                    if state.running.load(Ordering::SeqCst) > 0 {
                        idle = 0;
                        continue;
                    }
                    idle += 1;
                    if idle < idle_ticks {
                        continue;
                    }
                    // Say so first, then look again: a call that began in
                    // between either is seen here or sees `asleep` (both
                    // sides write, then read, in one total order).
                    state.asleep.store(true, Ordering::SeqCst);
                    if state.running.load(Ordering::SeqCst) == 0 {
                        while state.asleep.load(Ordering::SeqCst)
                            && !state.stop.load(Ordering::SeqCst)
                        {
                            std::thread::park();
                        }
                    }
                    state.asleep.store(false, Ordering::SeqCst);
                    idle = 0;
                }
            })?;
        let _ = state.thread.set(thread.thread().clone());
        Ok(EpochTicker {
            state,
            thread: Some(thread),
        })
    }

    /// Keeps the epoch advancing until the guard is dropped; wakes the
    /// ticker if it sleeps. Taken before any guest code runs.
    fn hold(&self) -> Ticking<'_> {
        let state = &*self.state;
        state.running.fetch_add(1, Ordering::SeqCst);
        if state.asleep.load(Ordering::SeqCst)
            && state.asleep.swap(false, Ordering::SeqCst)
            && let Some(thread) = state.thread.get()
        {
            thread.unpark();
        }
        Ticking(state)
    }

    /// Whether the ticker is ticking (not asleep for want of calls).
    fn ticking(&self) -> bool {
        !self.state.asleep.load(Ordering::SeqCst)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        if config.max_concurrent_calls == 0 {
            return Err(RuntimeError::Config(
                "max_concurrent_calls must be at least 1".into(),
            ));
        }
        if config.max_calls_per_instance == 0 {
            return Err(RuntimeError::Config(
                "max_calls_per_instance must be at least 1".into(),
            ));
        }
        if config.epoch_tick.is_zero() {
            return Err(RuntimeError::Config(
                "epoch_tick must be greater than 0".into(),
            ));
        }
        let n = config.max_concurrent_calls;
        // Kept instances need pool slots of their own.
        let idle_cap = if config.max_calls_per_instance > 1 {
            n
        } else {
            0
        };
        let slots = n.saturating_add(idle_cap);
        let ceiling = &config.ceiling;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(slots)
            .total_core_instances(slots.saturating_mul(8))
            .total_memories(slots.saturating_mul(2))
            .total_tables(slots.saturating_mul(4))
            .total_stacks(slots)
            .max_core_instances_per_component(ceiling.instances)
            .max_memories_per_component(ceiling.memories)
            .max_tables_per_component(ceiling.tables)
            .max_memory_size(usize::try_from(ceiling.memory_bytes).unwrap_or(usize::MAX))
            .table_elements(usize::try_from(ceiling.table_elements).unwrap_or(usize::MAX))
            // Reset the first 128 KiB of a memory (and 64 KiB of tables) in
            // place instead of returning them to the kernel: a function's
            // stack, data and first heap pages live there (functions/ link
            // a 64 KiB stack), and keeping them resident halves the cost of a
            // call (page faults and madvise were half of it; PERFORMANCE.md).
            .linear_memory_keep_resident(128 << 10)
            .table_keep_resident(64 << 10);

        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed)
            .max_wasm_stack(512 << 10)
            .async_stack_size(2 << 20)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;

        let mut linker = Linker::new(&engine);
        add_wasi_to_linker(&mut linker).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        ConnectionFunction::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;

        if let Some(dir) = &config.cache_dir {
            create_private_dir(dir).map_err(|source| RuntimeError::CacheDir {
                path: dir.clone(),
                source,
            })?;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hasher.finish();

        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)
            .map_err(|e| RuntimeError::Engine(format!("cannot start the epoch thread: {e}")))?;
        let shared = Arc::new(Shared {
            ticker,
            epoch_tick: config.epoch_tick,
            permits: tokio::sync::Semaphore::new(n as usize),
            max_calls_per_instance: config.max_calls_per_instance,
            idle: AtomicU32::new(0),
            idle_cap,
            // A kept instance carries state from call to call: its calls are
            // not a function of their answers alone.
            replay_bytes: if config.max_calls_per_instance > 1 {
                0
            } else {
                config.replay_bytes
            },
        });
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            shared,
            config,
            engine_hash,
        })
    }

    /// Whether the epoch ticker is running: it goes to sleep once no call
    /// has run for 100 ms, and the next call wakes it.
    pub fn epoch_ticking(&self) -> bool {
        self.shared.ticker.ticking()
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Compiles (or loads from the cache), links and test-instantiates a
    /// function. Any problem is reported here, not on the first connection.
    pub async fn load(&self, spec: FunctionSpec<'_>) -> Result<Function, LoadError> {
        let FunctionSpec {
            name,
            wasm,
            limits,
            stores,
        } = spec;
        limits
            .validate(&self.config.ceiling)
            .map_err(LoadError::Limits)?;
        let size = wasm.len() as u64;
        if size > limits.module_bytes {
            return Err(LoadError::TooLarge {
                size,
                limit: limits.module_bytes,
            });
        }
        match wasm.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(LoadError::CoreModule),
            Some([0, b'a', b's', b'm', ..]) => {}
            _ => return Err(LoadError::NotWasm),
        }
        let sha256 = tollgate_x509::hex_lower(&Sha256::digest(wasm));
        let (component, from_cache) = self.compile(wasm, &sha256)?;

        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let pre =
            ConnectionFunctionPre::new(pre).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
        let on_connection = component
            .get_export_index(None, "on-connection")
            .ok_or_else(|| LoadError::WrongWorld("no on-connection export".into()))?;
        let inline = limits.time() <= self.config.max_inline_time;

        let function = Function {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                sha256,
                size,
                limits,
                stores,
                pre,
                on_connection,
                inline,
                shared: self.shared.clone(),
                from_cache,
                warm: WarmPool::new(self.shared.clone()),
                replays: self.shared.replays(),
                instantiations: AtomicU64::new(0),
            }),
        };
        // Instantiate once, without calling it: a component that needs more
        // memory or tables than its limits allow is refused now. (Its start
        // code runs: under the time limit, so with the epoch advancing.)
        let _ticking = self.shared.ticker.hold();
        let output = SharedOutput::new(function.inner.limits.output_bytes);
        let (mut store, meter) = function.new_store(Arc::new(ConnectionInfo::for_test()), output);
        let instantiated = Metered {
            meter: &meter,
            future: Box::pin(function.inner.pre.instantiate_async(&mut store)),
        }
        .await;
        if let Err(e) = instantiated {
            let limiter = &store.data().limiter;
            let why = if limiter.memory_exhausted {
                format!(
                    "its initial memory is over the limit of {} bytes",
                    function.inner.limits.memory_bytes
                )
            } else {
                format!("{e:#}")
            };
            return Err(LoadError::Instantiate(why));
        }
        Ok(function)
    }

    fn compile(&self, wasm: &[u8], sha256: &str) -> Result<(Component, bool), LoadError> {
        let cached = self
            .config
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{sha256}-{:016x}.cwasm", self.engine_hash)));
        if let Some(path) = &cached {
            match read_cache_entry(&self.engine, path) {
                Ok(Some(component)) => return Ok((component, true)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compile cache entry");
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        let component =
            Component::new(&self.engine, wasm).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        if let Some(path) = &cached
            && let Err(e) = component
                .serialize()
                .map_err(std::io::Error::other)
                .and_then(|mut bytes| {
                    // A checksum trailer: a damaged entry is detected before
                    // wasmtime is asked to trust it.
                    let sum = Sha256::digest(&bytes);
                    bytes.extend_from_slice(&sum);
                    write_atomically(path, &bytes)
                })
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the compile cache");
        }
        Ok((component, false))
    }
}

/// Links only the WASI interfaces a Rust guest's standard library uses:
/// `wasi:io` (synchronous: see `wasi_io.rs`), `wasi:cli` (stdio, environment,
/// exit; stdin is closed, the environment empty), `wasi:clocks` (frozen) and
/// `wasi:random`. There is no `wasi:filesystem` and no `wasi:sockets`: a
/// component importing them is refused at load. Every host function is
/// synchronous, so any function can run inline.
fn add_wasi_to_linker(l: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, random};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView};

    crate::wasi_io::add_to_linker(l)?;
    clocks::wall_clock::add_to_linker::<HostState, WasiClocks>(l, HostState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<HostState, WasiClocks>(l, HostState::clocks)?;
    random::random::add_to_linker::<HostState, WasiRandom>(l, HostState::random)?;
    random::insecure::add_to_linker::<HostState, WasiRandom>(l, HostState::random)?;
    random::insecure_seed::add_to_linker::<HostState, WasiRandom>(l, HostState::random)?;
    cli::exit::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::environment::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::stdin::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::stdout::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::stderr::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_input::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_output::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stdin::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stdout::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    cli::terminal_stderr::add_to_linker::<HostState, WasiCli>(l, HostState::cli)?;
    Ok(())
}

/// Reads a cache entry into memory (never mapped: a file changed underneath
/// a mapping would crash the process) and checks its checksum trailer.
fn read_cache_entry(engine: &Engine, path: &Path) -> Result<Option<Component>, String> {
    let mut bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let Some(body_len) = bytes.len().checked_sub(32) else {
        return Err("truncated".into());
    };
    if Sha256::digest(&bytes[..body_len]).as_slice() != &bytes[body_len..] {
        return Err("checksum mismatch".into());
    }
    bytes.truncate(body_len);
    // SAFETY: the bytes were produced by `Component::serialize` of an engine
    // with the same configuration (the file name carries its compatibility
    // hash), in a directory private to Tollgate (created 0700), and their
    // checksum matches; wasmtime also checks the header and version.
    unsafe { Component::deserialize(engine, &bytes) }
        .map(Some)
        .map_err(|e| format!("{e:#}"))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// What to load.
pub struct FunctionSpec<'a> {
    pub name: &'a str,
    pub wasm: &'a [u8],
    pub limits: Limits,
    /// The stores the function may open.
    pub stores: StoreSet,
}

/// A loaded function version, ready to run on connections. Cheap to clone.
#[derive(Clone)]
pub struct Function {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    sha256: String,
    size: u64,
    limits: Limits,
    stores: StoreSet,
    pre: ConnectionFunctionPre<HostState>,
    /// The `on-connection` export, found once.
    on_connection: ComponentExportIndex,
    /// Runs inline (no fiber, no yield): its time limit is small enough.
    inline: bool,
    shared: Arc<Shared>,
    from_cache: bool,
    /// Instances kept for the next calls.
    warm: WarmPool,
    /// Instances created for calls.
    instantiations: AtomicU64,
    /// Earlier calls to replay; None when replay is off.
    replays: Option<Replays>,
}

/// An instance kept between calls (see [`RuntimeConfig::max_calls_per_instance`]).
struct Warm {
    store: Store<HostState>,
    on_connection: OnConnection,
    /// Calls it has served.
    calls: u32,
}

type OnConnection = TypedFunc<(Resource<ConnectionRes>,), (Result<WitDecision, String>,)>;

/// The kept instances of one function version; they go (and give their pool
/// slots back) with it. Sharded by thread: a worker thread takes back the
/// instance it used last (its memory still in that core's cache), and two
/// threads never wait on each other — a busy shard is skipped, and with every
/// shard busy the call simply gets a fresh instance.
struct WarmPool {
    shared: Arc<Shared>,
    shards: Box<[Mutex<Vec<Warm>>]>,
}

/// This thread's shard, the same for every pool.
fn home_shard(shards: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static HOME: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    HOME.with(|home| home % shards)
}

impl WarmPool {
    fn new(shared: Arc<Shared>) -> WarmPool {
        let shards = if shared.max_calls_per_instance > 1 {
            std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
        } else {
            0
        };
        WarmPool {
            shared,
            shards: (0..shards).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    /// Shards to try, this thread's first.
    fn order(&self) -> impl Iterator<Item = &Mutex<Vec<Warm>>> {
        let n = self.shards.len();
        let home = if n == 0 { 0 } else { home_shard(n) };
        (0..n).map(move |i| &self.shards[(home + i) % n])
    }

    fn take(&self) -> Option<Warm> {
        for shard in self.order() {
            let Ok(mut kept) = shard.try_lock() else {
                continue;
            };
            if let Some(warm) = kept.pop() {
                self.shared.idle.fetch_sub(1, Ordering::Relaxed);
                return Some(warm);
            }
        }
        None
    }

    /// Keeps `warm` if it may serve another call and the runtime has room.
    fn put(&self, mut warm: Warm) {
        if warm.calls >= self.shared.max_calls_per_instance {
            return;
        }
        // Outside the shard's lock.
        warm.store.data_mut().end_call();
        let cap = self.shared.idle_cap;
        for shard in self.order() {
            let Ok(mut kept) = shard.try_lock() else {
                continue;
            };
            let room = self
                .shared
                .idle
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < cap).then_some(n + 1)
                })
                .is_ok();
            if room {
                kept.push(warm);
            }
            return;
        }
    }
}

impl Drop for WarmPool {
    fn drop(&mut self) {
        let kept: usize = self
            .shards
            .iter_mut()
            .map(|shard| {
                shard
                    .get_mut()
                    .map_or_else(|poisoned| poisoned.into_inner().len(), |kept| kept.len())
            })
            .sum();
        self.shared.idle.fetch_sub(kept as u32, Ordering::Relaxed);
    }
}

/// The time a call has been running, as its limit counts it: time the thread
/// spends descheduled (a busy machine) does not count against the function.
enum Meter {
    /// On a fiber: the sum, over the polls of the call's future, of the CPU
    /// time of the polling thread.
    Fiber {
        /// Nanoseconds of finished polls.
        active: AtomicU64,
        /// Thread CPU time at which the current poll began.
        poll_started: AtomicU64,
    },
    /// Inline: the call runs in one stretch on one thread. Until the first
    /// epoch tick lands in it, its time is the wall-clock time since it
    /// began (the thread's CPU clock is a system call; most calls end before
    /// any tick and never read it). From the first tick on, it is the
    /// thread's CPU time, plus at most one tick of wall time for the stretch
    /// before it: a tick lands within one tick of running, so a thread
    /// descheduled before its first tick is not charged for the wait.
    Inline {
        started: Instant,
        tick: Duration,
        /// Counted time and thread CPU time at the first tick.
        first_tick: std::sync::OnceLock<(Duration, u64)>,
    },
}

impl Meter {
    fn fiber() -> Meter {
        Meter::Fiber {
            active: AtomicU64::new(0),
            poll_started: AtomicU64::new(0),
        }
    }

    fn inline(tick: Duration) -> Meter {
        Meter::Inline {
            started: Instant::now(),
            tick,
            first_tick: std::sync::OnceLock::new(),
        }
    }

    /// Running time so far. Called from the epoch callback, which runs on the
    /// thread running the guest (inside a poll, on a fiber).
    fn active(&self) -> Duration {
        match self {
            Meter::Fiber {
                active,
                poll_started,
            } => {
                let current = thread_cpu_ns().saturating_sub(poll_started.load(Ordering::Relaxed));
                Duration::from_nanos(active.load(Ordering::Relaxed).saturating_add(current))
            }
            Meter::Inline {
                started,
                tick,
                first_tick,
            } => match first_tick.get() {
                Some(&(before, cpu)) => {
                    before + Duration::from_nanos(thread_cpu_ns().saturating_sub(cpu))
                }
                None => {
                    let before = started.elapsed().min(*tick);
                    let _ = first_tick.set((before, thread_cpu_ns()));
                    before
                }
            },
        }
    }

    /// The call's running time, once it has returned.
    fn finished(&self) -> Duration {
        match self {
            Meter::Fiber { active, .. } => Duration::from_nanos(active.load(Ordering::Relaxed)),
            Meter::Inline {
                started,
                first_tick,
                ..
            } => match first_tick.get() {
                Some(&(before, cpu)) => {
                    before + Duration::from_nanos(thread_cpu_ns().saturating_sub(cpu))
                }
                None => started.elapsed(),
            },
        }
    }
}

/// CPU time of the calling thread, in nanoseconds.
#[cfg(target_os = "linux")]
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; the clock id is
    // a constant supported on every Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Elsewhere: wall-clock time since the first call, an upper bound of CPU time.
#[cfg(not(target_os = "linux"))]
fn thread_cpu_ns() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    u64::try_from(BASE.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Counts the time spent inside `poll` of the wrapped future (on a fiber).
struct Metered<'m, F> {
    meter: &'m Meter,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for Metered<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Meter::Fiber {
            active,
            poll_started,
        } = self.meter
        else {
            // Inline: one stretch, timed by the meter itself.
            return self.future.as_mut().poll(cx);
        };
        let start = thread_cpu_ns();
        poll_started.store(start, Ordering::Relaxed);
        let result = self.future.as_mut().poll(cx);
        let spent = thread_cpu_ns().saturating_sub(start);
        active.fetch_add(spent, Ordering::Relaxed);
        result
    }
}

/// The WASI context of one call, built when the guest first needs it:
/// stdout and stderr into the bounded console, clocks frozen at the start of
/// the call, no network.
pub(crate) fn wasi_ctx(output: &SharedOutput, now: Duration) -> WasiCtx {
    WasiCtxBuilder::new()
        .stdout(output.stdout())
        .stderr(output.stderr())
        .wall_clock(FrozenWallClock(now))
        .monotonic_clock(FrozenMonotonicClock)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// A clock that stands still at the start of the call: functions get no
/// clock beyond what the contract offers.
struct FrozenWallClock(Duration);

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        self.0
    }
}

struct FrozenMonotonicClock;

impl HostMonotonicClock for FrozenMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

enum CallError {
    Instantiate(wasmtime::Error),
    Run(wasmtime::Error),
}

impl Function {
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// SHA-256 of the Wasm component, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// Size of the Wasm component in bytes.
    pub fn size(&self) -> u64 {
        self.inner.size
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub fn stores(&self) -> &StoreSet {
        &self.inner.stores
    }

    /// The same compiled function bound to other stores (no recompilation).
    pub fn with_stores(&self, stores: StoreSet) -> Function {
        let i = &self.inner;
        Function {
            inner: Arc::new(Inner {
                name: i.name.clone(),
                sha256: i.sha256.clone(),
                size: i.size,
                limits: i.limits.clone(),
                stores,
                pre: i.pre.clone(),
                on_connection: i.on_connection,
                inline: i.inline,
                shared: i.shared.clone(),
                from_cache: i.from_cache,
                warm: WarmPool::new(i.shared.clone()),
                // Other stores: other answers to the same questions.
                replays: i.shared.replays(),
                instantiations: AtomicU64::new(0),
            }),
        }
    }

    /// Whether calls run inline on the caller's thread (the time limit is at
    /// most [`RuntimeConfig::max_inline_time`]) rather than on a fiber that
    /// yields at every epoch tick.
    pub fn runs_inline(&self) -> bool {
        self.inner.inline
    }

    /// How many instances calls have created: one per call, unless
    /// [`RuntimeConfig::max_calls_per_instance`] lets calls share them.
    pub fn instantiations(&self) -> u64 {
        self.inner.instantiations.load(Ordering::Relaxed)
    }

    /// Whether the compiled code came from the disk cache.
    pub fn compiled_from_cache(&self) -> bool {
        self.inner.from_cache
    }

    /// A fresh store for one call, with its limits and its time meter.
    fn new_store(
        &self,
        conn: Arc<ConnectionInfo>,
        output: SharedOutput,
    ) -> (Store<HostState>, Arc<Meter>) {
        let mut store = Store::new(self.inner.pre.engine(), self.host_state(conn, output));
        store.limiter(|s| &mut s.limiter);
        let meter = self.arm(&mut store);
        (store, meter)
    }

    /// The host side of one call: its connection, its output, its limits.
    fn host_state(&self, conn: Arc<ConnectionInfo>, output: SharedOutput) -> HostState {
        let limits = &self.inner.limits;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let limiter = Limiter {
            memory_bytes: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
            table_elements: limits.table_elements as usize,
            instances: limits.instances as usize,
            tables: limits.tables as usize,
            memories: limits.memories as usize,
            memory_exhausted: false,
            table_exhausted: false,
        };
        HostState::new(now, conn, self.inner.stores.clone(), output, limiter)
    }

    /// Starts a call's time meter: the epoch callback stops the guest once
    /// its running time reaches the limit, and otherwise lets it go on
    /// (inline) or makes it yield its thread (on a fiber) at every tick.
    fn arm(&self, store: &mut Store<HostState>) -> Arc<Meter> {
        let meter = Arc::new(if self.inner.inline {
            Meter::inline(self.inner.shared.epoch_tick)
        } else {
            Meter::fiber()
        });
        let callback_meter = meter.clone();
        let time_limit = self.inner.limits.time();
        let inline = self.inner.inline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            if callback_meter.active() >= time_limit {
                ctx.data_mut().timed_out = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(if inline {
                UpdateDeadline::Continue(1)
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        meter
    }

    /// Runs the function on one connection, in a fresh instance. Never fails:
    /// any error becomes a deny carrying the error's kind.
    ///
    /// If an earlier call asked the same questions and got the same answers,
    /// its outcome is replayed instead ([`RuntimeConfig::replay_bytes`]).
    pub async fn call(&self, conn: Arc<ConnectionInfo>) -> Outcome {
        let span = tracing::debug_span!("connection_function", connection_id = %conn.id, function = %self.inner.name);
        self.call_inner(conn, true).instrument(span).await
    }

    /// Runs the function, never a replay: for the runner and the test API,
    /// whose users want their code to run.
    pub async fn run(&self, conn: Arc<ConnectionInfo>) -> Outcome {
        let span = tracing::debug_span!("connection_function", connection_id = %conn.id, function = %self.inner.name);
        self.call_inner(conn, false).instrument(span).await
    }

    /// Calls answered by a replay.
    pub fn replays(&self) -> u64 {
        self.inner.replays.as_ref().map_or(0, Replays::hits)
    }

    async fn call_inner(&self, conn: Arc<ConnectionInfo>, replay: bool) -> Outcome {
        let started = Instant::now();
        let replays = self.inner.replays.as_ref().filter(|_| replay);
        if let Some(recorded) = replays.and_then(|r| r.find(&conn, &self.inner.stores)) {
            tracing::debug!(decision = %recorded.decision, "connection function replayed");
            return recorded.outcome(started.elapsed());
        }
        let limits = &self.inner.limits;
        let time_limit = limits.time();
        // The semaphore is never closed; a failure here would be a bug, and
        // still denies.
        let Ok(_permit) = self.inner.shared.permits.acquire().await else {
            return failure(
                started,
                Duration::ZERO,
                time_limit,
                ErrorKind::Host,
                "call slots closed".into(),
                None,
            );
        };
        // Before any guest code runs (instantiation included).
        let _ticking = self.inner.shared.ticker.hold();
        let output = SharedOutput::new(limits.output_bytes);
        // A kept instance, rebound to this call; or a fresh one.
        let (mut store, meter, kept, served) = match self.inner.warm.take() {
            Some(warm) => {
                let mut store = warm.store;
                *store.data_mut() = self.host_state(conn, output.clone());
                let meter = self.arm(&mut store);
                (store, meter, Some(warm.on_connection), warm.calls)
            }
            None => {
                let (mut store, meter) = self.new_store(conn, output.clone());
                if replays.is_some() {
                    store.data_mut().trace = Some(Vec::new());
                }
                (store, meter, None, 0)
            }
        };

        let pre = self.inner.pre.instance_pre();
        let inline = self.inner.inline;
        let result = Metered {
            meter: &meter,
            future: Box::pin(async {
                let on_connection = match kept {
                    Some(on_connection) => on_connection,
                    None => {
                        self.inner.instantiations.fetch_add(1, Ordering::Relaxed);
                        let instance = if inline {
                            pre.instantiate(&mut store)
                        } else {
                            pre.instantiate_async(&mut store).await
                        }
                        .map_err(CallError::Instantiate)?;
                        instance
                            .get_typed_func(&mut store, self.inner.on_connection)
                            .map_err(CallError::Run)?
                    }
                };
                let conn = store.data_mut().push_connection().map_err(CallError::Run)?;
                let rep = conn.rep();
                let (result,) = if inline {
                    on_connection.call(&mut store, (conn,))
                } else {
                    on_connection.call_async(&mut store, (conn,)).await
                }
                .map_err(CallError::Run)?;
                // A handle the guest kept makes this fail, and the instance
                // is then not reused (see `reusable`).
                let _ = store.data_mut().release_connection(rep);
                Ok((result, on_connection))
            }),
        }
        .await;
        let compute = meter.finished();
        let (result, returned) = match result {
            Ok((result, on_connection)) => (Ok(result), Some(on_connection)),
            Err(e) => (Err(e), None),
        };

        let trace = store.data_mut().trace.take();
        let state = store.data();
        let mut out = output.lock();
        out.finish();
        let custom_data = out.custom_data.take();
        let console = std::mem::take(&mut out.console);
        let output_exceeded = out.exceeded;
        drop(out);

        // The guest's own strings go to the connection log: bounded.
        let bounded = crate::output::bound_reason;
        let (decision, reason, error) = match result {
            Ok(Ok(crate::host::types::Decision::Allow)) => (Decision::Allow, None, None),
            Ok(Ok(crate::host::types::Decision::Deny(reason))) => {
                (Decision::Deny, reason.map(bounded), None)
            }
            Ok(Err(message)) => (
                Decision::Deny,
                None,
                Some(FunctionError {
                    kind: ErrorKind::FunctionError,
                    message: bounded(message),
                }),
            ),
            Err(e) => {
                let (kind, message) = classify(e, state, output_exceeded, limits, &console);
                (Decision::Deny, None, Some(FunctionError { kind, message }))
            }
        };
        // A call that ran to its end (a decision or its own error) on
        // answers alone is recorded; a call stopped by a limit never is.
        let recordable = error
            .as_ref()
            .is_none_or(|e| e.kind == ErrorKind::FunctionError)
            && !output_exceeded
            && !state.hit_a_limit();
        let mut outcome = Outcome {
            decision,
            reason,
            error,
            custom_data,
            console,
            duration: started.elapsed(),
            compute_utilization: utilization(compute, time_limit),
            replayed: false,
        };
        if let (Some(replays), Some(trace)) = (replays, trace)
            && recordable
        {
            replays.insert(&trace, Recorded::of(&outcome));
            // The recording is part of what the call cost.
            outcome.duration = started.elapsed();
        }
        tracing::debug!(
            decision = %outcome.decision,
            error = outcome.error.as_ref().map(|e| e.kind.as_str()),
            duration_us = outcome.duration.as_micros() as u64,
            "connection function finished"
        );
        // The guest returned: its instance may serve the next call, unless it
        // kept a handle (the connection object and everything opened from it
        // belong to this call alone).
        if let Some(on_connection) = returned
            && store.data().reusable()
        {
            self.inner.warm.put(Warm {
                store,
                on_connection,
                calls: served + 1,
            });
        }
        outcome
    }
}

fn utilization(compute: Duration, limit: Duration) -> u8 {
    if limit.is_zero() {
        return 100;
    }
    let pct = (compute.as_secs_f64() / limit.as_secs_f64() * 100.0).round();
    pct.clamp(0.0, 100.0) as u8
}

fn failure(
    started: Instant,
    compute: Duration,
    limit: Duration,
    kind: ErrorKind,
    message: String,
    custom_data: Option<String>,
) -> Outcome {
    Outcome {
        decision: Decision::Deny,
        reason: None,
        error: Some(FunctionError { kind, message }),
        custom_data,
        console: Vec::new(),
        duration: started.elapsed(),
        compute_utilization: utilization(compute, limit),
        replayed: false,
    }
}

/// Names the reason a call stopped. The host's own flags come first: they
/// know why a trap happened (time, memory, output) better than the trap.
fn classify(
    error: CallError,
    state: &HostState,
    output_exceeded: bool,
    limits: &Limits,
    console: &[crate::output::ConsoleLine],
) -> (ErrorKind, String) {
    let (error, instantiating) = match error {
        CallError::Instantiate(e) => (e, true),
        CallError::Run(e) => (e, false),
    };
    if state.timed_out {
        return (
            ErrorKind::Timeout,
            format!("execution time limit of {} µs exceeded", limits.time_us),
        );
    }
    if state.limiter.memory_exhausted {
        return (
            ErrorKind::MemoryLimit,
            format!("memory limit of {} bytes reached", limits.memory_bytes),
        );
    }
    if state.limiter.table_exhausted {
        return (
            ErrorKind::MemoryLimit,
            format!("table limit of {} elements reached", limits.table_elements),
        );
    }
    if output_exceeded {
        return (
            ErrorKind::OutputLimit,
            format!("output limit of {} bytes exceeded", limits.output_bytes),
        );
    }
    if let Some(blocked) = error.downcast_ref::<crate::wasi_io::WouldBlock>() {
        return (ErrorKind::Trap, blocked.to_string());
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        if *trap == Trap::StackOverflow {
            return (ErrorKind::StackOverflow, "stack overflow".into());
        }
        if let Some(message) = panic_message(console) {
            return (ErrorKind::Panic, message);
        }
        return (ErrorKind::Trap, format!("{error:#}"));
    }
    if instantiating {
        return (ErrorKind::Instantiation, format!("{error:#}"));
    }
    (ErrorKind::Host, format!("{error:#}"))
}

/// The message of a Rust panic, from the lines the panic handler wrote to
/// stderr (`thread '...' panicked at src/lib.rs:7:5:` then the message).
fn panic_message(console: &[crate::output::ConsoleLine]) -> Option<String> {
    let stderr: Vec<&str> = console
        .iter()
        .filter(|l| l.level == ConsoleLevel::Stderr)
        .map(|l| l.text.as_str())
        .collect();
    let at = stderr.iter().position(|l| l.contains("panicked at"))?;
    let location = stderr[at];
    let message = stderr.get(at + 1).copied().unwrap_or_default();
    Some(format!(
        "panic: {message} ({})",
        location.trim_end_matches(':')
    ))
}
