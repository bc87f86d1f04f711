//! Listeners: bind, accept under a connection cap, hand each connection to
//! [`crate::connection`], swap in reloaded configurations, and shut down
//! gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tollgate_config::{Config, Problem};
use tollgate_log::Logger;

use crate::established::{Change, Established};
use crate::load::{ListenerPlan, LoadFailure, Loaded, Reuse, load_with};

/// A listener's current plan. Each accepted connection takes the plan of the
/// moment and keeps it to the end, so a reload never changes a connection
/// (or a function call) in flight.
struct Slot {
    name: String,
    address: SocketAddr,
    plan: ArcSwap<ListenerPlan>,
    established: Arc<Established>,
}

/// What a reload keeps: the runtime (engine, pool, epoch thread) and the
/// log sinks in use.
struct Current {
    runtime: tollgate_function::Runtime,
    loggers: Vec<Logger>,
    stores: tollgate_kvs::Stores,
    state: Option<Arc<tollgate_state::State>>,
    config: Config,
}

/// A loaded configuration with its sockets bound.
pub struct Server {
    slots: Vec<Arc<Slot>>,
    sockets: Vec<TcpListener>,
    current: Arc<Mutex<Current>>,
    reloading: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug, thiserror::Error)]
#[error("listener {name:?}: cannot listen on {address}: {source}")]
pub struct BindError {
    pub name: String,
    pub address: SocketAddr,
    pub source: std::io::Error,
}

/// Why a reload was refused; the server keeps serving what it had.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The configuration file does not read, parse or check.
    #[error("{0}")]
    Config(#[from] tollgate_config::ConfigError),
    #[error("{0}")]
    Load(LoadFailure),
    #[error(
        "the listeners changed ({0}); adding, removing, renaming or moving a listener needs a restart"
    )]
    Listeners(String),
}

/// Reloads a running [`Server`]; cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    slots: Vec<Arc<Slot>>,
    current: Arc<Mutex<Current>>,
    reloading: Arc<tokio::sync::Mutex<()>>,
}

impl Server {
    /// Binds every listener's address.
    pub async fn bind(loaded: Loaded) -> Result<Server, BindError> {
        let mut slots = Vec::new();
        let mut sockets = Vec::new();
        for plan in &loaded.listeners {
            let address = plan.section.address;
            let socket = TcpListener::bind(address)
                .await
                .map_err(|source| BindError {
                    name: plan.name.to_string(),
                    address,
                    source,
                })?;
            slots.push(Arc::new(Slot {
                name: plan.name.to_string(),
                address,
                plan: ArcSwap::new(plan.clone()),
                established: Arc::new(Established::default()),
            }));
            sockets.push(socket);
        }
        let current = Current {
            runtime: loaded.runtime,
            loggers: loaded.loggers,
            stores: loaded.stores,
            state: loaded.state,
            config: loaded.config,
        };
        Ok(Server {
            slots,
            sockets,
            current: Arc::new(Mutex::new(current)),
            reloading: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// The bound addresses, by listener name (port 0 in the config is resolved).
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.slots
            .iter()
            .zip(&self.sockets)
            .filter_map(|(slot, l)| l.local_addr().ok().map(|a| (slot.name.clone(), a)))
            .collect()
    }

    /// The log sinks in use (for SIGHUP's reopen).
    pub fn loggers(&self) -> Vec<Logger> {
        self.current
            .lock()
            .map(|c| c.loggers.clone())
            .unwrap_or_default()
    }

    pub fn reloader(&self) -> Reloader {
        Reloader {
            slots: self.slots.clone(),
            current: self.current.clone(),
            reloading: self.reloading.clone(),
        }
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets in-flight
    /// requests finish (each listener's `shutdown_grace`, the longest wins),
    /// closes what is left, and flushes the logs.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let sockets = std::mem::take(&mut self.sockets);
        let mut acceptors = JoinSet::new();
        for (slot, socket) in self.slots.iter().zip(sockets) {
            let cap = slot.plan.load().section.limits.max_connections;
            acceptors.spawn(accept_loop(slot.clone(), cap, socket, stop_rx.clone()));
        }
        shutdown.await;
        // The plans in force now (a reload may have changed the grace).
        let grace = self
            .slots
            .iter()
            .map(|slot| slot.plan.load().section.limits.shutdown_grace)
            .max()
            .unwrap_or(Duration::ZERO);
        tracing::info!("shutting down: no new connections; in-flight requests have {grace:?}");
        let _ = stop_tx.send(true);
        let drain = async { while acceptors.join_next().await.is_some() {} };
        if tokio::time::timeout(grace + Duration::from_secs(1), drain)
            .await
            .is_err()
        {
            tracing::warn!("grace period over; closing the remaining connections");
        }
        for logger in self.loggers() {
            logger.flush();
        }
    }
}

impl Reloader {
    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The log sinks in use.
    pub fn loggers(&self) -> Vec<Logger> {
        self.current().loggers.clone()
    }

    /// The stores in use.
    pub fn stores(&self) -> tollgate_kvs::Stores {
        self.current().stores.clone()
    }

    /// The configuration being served.
    pub fn config(&self) -> Config {
        self.current().config.clone()
    }

    /// The function runtime in use (to compile new versions into).
    pub fn runtime(&self) -> tollgate_function::Runtime {
        self.current().runtime.clone()
    }

    /// The durable state, when configured.
    pub fn state(&self) -> Option<Arc<tollgate_state::State>> {
        self.current().state.clone()
    }

    /// Names of the listeners whose function is `function`.
    pub fn listeners_using(&self, function: &str) -> Vec<String> {
        self.slots
            .iter()
            .filter(|s| {
                s.plan
                    .load()
                    .section
                    .function
                    .as_ref()
                    .is_some_and(|f| f.name == function)
            })
            .map(|s| s.name.clone())
            .collect()
    }

    /// Holds off reloads and function swaps until dropped: a change that
    /// commits to the state and then swaps plans holds it across both, so a
    /// concurrent reload never installs what it read before the commit.
    pub async fn change_lock(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.reloading.clone().lock_owned().await
    }

    /// Serves `function` (a new LIVE version) on every listener that names
    /// it, for connections accepted from now on; calls in flight finish on
    /// the version they started with. Returns the listeners changed.
    pub fn swap_function(
        &self,
        _held: &tokio::sync::OwnedMutexGuard<()>,
        function: &tollgate_function::Function,
    ) -> Vec<String> {
        let mut changed = Vec::new();
        for slot in &self.slots {
            let plan = slot.plan.load_full();
            let Some(f) = &plan.section.function else {
                continue;
            };
            if f.name != function.name() {
                continue;
            }
            let mut next = (*plan).clone();
            next.function = Some((function.clone(), f.on_error));
            slot.plan.store(Arc::new(next));
            changed.push(slot.name.clone());
        }
        changed
    }

    /// Re-checks established connections after `change` on every listener
    /// (each listener's own `recheck_established` decides); closes and logs
    /// those now refused. Returns how many were closed.
    pub async fn recheck(&self, change: Change) -> usize {
        let mut closed = 0;
        for slot in &self.slots {
            let plan = slot.plan.load_full();
            closed += slot.established.recheck(&plan, &change).await;
        }
        closed
    }

    /// Connections registered for re-checks, by listener.
    pub fn established(&self) -> Vec<(String, usize)> {
        self.slots
            .iter()
            .map(|s| (s.name.clone(), s.established.len()))
            .collect()
    }

    /// Each listener's current plan and bound address.
    pub fn plans(&self) -> Vec<(Arc<ListenerPlan>, SocketAddr)> {
        self.slots
            .iter()
            .map(|s| (s.plan.load_full(), s.address))
            .collect()
    }

    /// Reads the configuration file being served again and reloads it
    /// (SIGHUP, `POST /reload`, the file watcher). A file that does not read
    /// or check counts as a failed reload like one that does not load.
    pub async fn reload_from_disk(&self) -> Result<Vec<Problem>, ReloadError> {
        let path = self.config().source;
        match Config::load(&path) {
            Ok(config) => self.reload(config).await,
            Err(e) => {
                tollgate_metrics::metrics()
                    .reloads
                    .with(&["config", "failed"])
                    .inc();
                Err(ReloadError::Config(e))
            }
        }
    }

    /// Loads `config` in full and, only if everything loads and the listeners
    /// are the same (names and addresses), swaps every listener's plan. New
    /// connections get the new plan; established ones keep theirs. On any
    /// error nothing changes. Returns the new configuration's warnings.
    pub async fn reload(&self, config: Config) -> Result<Vec<Problem>, ReloadError> {
        // One reload at a time: a second waits for the first to finish.
        let _one = self.reloading.lock().await;
        let (old_listeners, runtime, state, stores, loggers) = {
            let current = self.current();
            (
                self.slots
                    .iter()
                    .map(|s| (s.name.clone(), s.address))
                    .collect::<Vec<_>>(),
                current.runtime.clone(),
                current.state.clone(),
                current.stores.clone(),
                current.loggers.clone(),
            )
        };
        let new_listeners: Vec<(String, SocketAddr)> = config
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.address))
            .collect();
        if new_listeners != old_listeners {
            let show = |v: &[(String, SocketAddr)]| {
                v.iter()
                    .map(|(n, a)| format!("{n}@{a}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            tollgate_metrics::metrics()
                .reloads
                .with(&["config", "failed"])
                .inc();
            return Err(ReloadError::Listeners(format!(
                "{} → {}",
                show(&old_listeners),
                show(&new_listeners)
            )));
        }
        let reuse = Reuse {
            runtime: Some(&runtime),
            state: state.as_ref(),
            stores: Some(&stores),
            loggers: Some(&loggers),
        };
        let reloads = &tollgate_metrics::metrics().reloads;
        let loaded = match load_with(config, true, reuse).await {
            Ok(l) => l,
            Err(e) => {
                reloads.with(&["config", "failed"]).inc();
                return Err(ReloadError::Load(e));
            }
        };
        reloads.with(&["config", "ok"]).inc();
        for (slot, plan) in self.slots.iter().zip(&loaded.listeners) {
            slot.plan.store(plan.clone());
        }
        let mut current = self.current();
        // Sinks the new configuration no longer names: written out (they
        // close when the last connection holding them ends).
        let old = std::mem::replace(&mut current.loggers, loaded.loggers);
        for logger in old {
            if !current.loggers.iter().any(|l| l.spec() == logger.spec()) {
                logger.flush();
            }
        }
        current.runtime = loaded.runtime;
        current.stores = loaded.stores;
        let mut warnings = loaded.warnings;
        warnings.extend(restart_only_changes(&current.config, &loaded.config));
        current.config = loaded.config;
        drop(current);
        // Trust stores, CRLs or store contents may have changed.
        let me = self.clone();
        tokio::spawn(async move {
            let closed = me.recheck(Change::Reload).await;
            if closed > 0 {
                tracing::info!(
                    closed,
                    "reload: established connections refused on re-check"
                );
            }
        });
        Ok(warnings)
    }
}

/// Settings a reload does not apply (they are set up once, at start): each
/// one that differs is a warning, so that "reloaded" is not taken to mean
/// they changed.
fn restart_only_changes(running: &Config, new: &Config) -> Vec<Problem> {
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let mut out = Vec::new();
    let mut note = |context: String| {
        out.push(Problem {
            file: new.source.clone(),
            context,
            message: "changed, but takes effect only on restart".into(),
        })
    };
    if differs(&running.watch, &new.watch) {
        note("watch".into());
    }
    if differs(&running.state, &new.state) {
        note("state".into());
    }
    if differs(&running.admin, &new.admin) {
        note("admin".into());
    }
    for (old, l) in running.listeners.iter().zip(&new.listeners) {
        if old.limits.max_connections != l.limits.max_connections {
            note(format!("listener {:?} limits.max_connections", l.name));
        }
    }
    out
}

async fn accept_loop(
    slot: Arc<Slot>,
    cap: usize,
    socket: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let cap = Arc::new(Semaphore::new(cap));
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            permit = cap.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        // Reap finished connection tasks so the set stays small.
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((tcp, client)) => {
                let plan = slot.plan.load_full();
                let stop = stop.clone();
                let established = slot.established.clone();
                connections.spawn(async move {
                    crate::connection::handle(plan, established, tcp, client, stop).await;
                    drop(permit);
                });
            }
            Err(err) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = %slot.name, error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(socket);
    let grace = slot.plan.load().section.limits.shutdown_grace;
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::warn!(listener = %slot.name, open = connections.len(), "closing connections still open after the grace period");
        connections.shutdown().await;
    }
}
