//! `tollgate serve` and `tollgate check`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tollgate_config::Config;
use tollgate_edge::Server;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The configuration file (TOML; see docs/configuration.md).
    #[arg(long, short)]
    pub config: PathBuf,
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tollgate")
        .build()
        .context("starting the async runtime")
}

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    runtime()?.block_on(serve_config(config, None))
}

/// Called once the listeners are bound, with their names and addresses.
pub type OnReady = Box<dyn FnOnce(&[(String, std::net::SocketAddr)]) + Send>;

/// Loads, binds, prints the listening addresses, and serves until SIGTERM or
/// Ctrl-C. `ready` receives the bound addresses (for the demo).
pub async fn serve_config(config: Config, ready: Option<OnReady>) -> anyhow::Result<()> {
    // The state is opened once per process (it is locked while open).
    let state = match &config.state {
        Some(section) => Some(Arc::new(
            tollgate_state::State::open(&section.dir).context("opening the state directory")?,
        )),
        None => None,
    };
    let admin_section = config.admin.clone();
    let watch = config.watch.clone();
    let admin_setup = match &admin_section {
        Some(section) => {
            let token = tollgate_admin::read_token(section).map_err(anyhow::Error::msg)?;
            if let (Some(warning), Some(path)) = (
                tollgate_admin::token_file_warning(section),
                &section.token_file,
            ) {
                eprintln!("warning: admin token file {}: {warning}", path.display());
            }
            let tls = match (&section.tls_cert, &section.tls_key) {
                (Some(cert), Some(key)) => {
                    Some(tollgate_admin::tls_config(cert, key).map_err(anyhow::Error::msg)?)
                }
                _ => None,
            };
            Some((section.clone(), token, tls))
        }
        None => None,
    };
    let reuse = tollgate_edge::Reuse {
        state: state.as_ref(),
        ..Default::default()
    };
    let loaded = tollgate_edge::load_with(config, true, reuse)
        .await
        .map_err(|failure| anyhow::anyhow!("{failure}"))
        .context("the configuration cannot be served")?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    // Signal handlers first: a SIGHUP or SIGTERM right after the listeners
    // are announced must not hit the default action (terminate).
    #[cfg(unix)]
    let mut hup = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::hangup()).context("installing the SIGHUP handler")?
    };
    let shutdown = shutdown_signal()?;
    let source = config_path(&loaded);
    let server = Server::bind(loaded).await?;
    let addrs = server.local_addrs();
    if watch.enabled {
        tokio::spawn(tollgate_edge::watch(server.reloader(), watch.interval));
    }
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    if let Some((section, token, tls)) = admin_setup {
        let listener = tokio::net::TcpListener::bind(section.address)
            .await
            .with_context(|| format!("admin API: cannot listen on {}", section.address))?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!("tollgate: admin API on {scheme}://{addr}");
        let admin = tollgate_admin::Admin::new(server.reloader(), token, section.max_body_bytes)
            .map_err(anyhow::Error::msg)?;
        let mut stopping = stopping.clone();
        tokio::spawn(Arc::new(admin).serve(listener, tls, async move {
            let _ = stopping.wait_for(|s| *s).await;
        }));
    }
    drop(stopping);
    // Announced last: once a listener line is out, everything is serving.
    for (name, addr) in &addrs {
        eprintln!("tollgate: listener {name:?} on {addr}");
    }
    if let Some(ready) = ready {
        ready(&addrs);
    }
    // SIGHUP: reload the configuration from disk (certificates, trust stores,
    // CRLs, functions, stores, origins, log files); if it does not load, keep
    // serving the previous one and just reopen its log files.
    #[cfg(unix)]
    {
        let reloader = server.reloader();
        let loggers = server.loggers();
        tokio::spawn(async move {
            let mut loggers = loggers;
            while hup.recv().await.is_some() {
                match reload(&reloader, &source).await {
                    Ok(new_loggers) => loggers = new_loggers,
                    Err(e) => {
                        eprintln!(
                            "tollgate: reload refused, still serving the previous configuration:\n{e}"
                        );
                        for logger in &loggers {
                            logger.reopen();
                        }
                    }
                }
            }
        });
    }
    server
        .run(async move {
            shutdown.await;
            let _ = stopping_tx.send(true);
        })
        .await;
    Ok(())
}

fn config_path(loaded: &tollgate_edge::Loaded) -> PathBuf {
    loaded.config.source.clone()
}

/// Reloads the configuration file; returns the log sinks now in use.
async fn reload(
    reloader: &tollgate_edge::Reloader,
    path: &Path,
) -> anyhow::Result<Vec<tollgate_log::Logger>> {
    let warnings = reloader.reload_from_disk().await?;
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    eprintln!("tollgate: configuration reloaded from {}", path.display());
    Ok(reloader.loggers())
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is
/// called, not when the future is first polled.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?
    };
    let ctrl_c = tokio::signal::ctrl_c();
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        eprintln!("tollgate: shutting down");
    })
}

/// `tollgate check`: exit 0 when the config would serve (warnings listed),
/// 1 when it has errors, each printed with its file and reason.
pub fn check(args: ServeArgs) -> ExitCode {
    match check_inner(&args.config) {
        Ok((errors, warnings)) => {
            for e in &errors {
                println!("error: {e}");
            }
            if !warnings.is_empty() {
                println!("warnings:");
                for w in &warnings {
                    println!("  warning: {w}");
                }
            }
            if errors.is_empty() {
                println!("{}: ok", args.config.display());
                ExitCode::SUCCESS
            } else {
                println!(
                    "{}: {} error{}",
                    args.config.display(),
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

type Findings = (Vec<tollgate_config::Problem>, Vec<tollgate_config::Problem>);

fn check_inner(path: &Path) -> anyhow::Result<Findings> {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return Ok((e.problems(), Vec::new())),
    };
    let admin_section = config.admin.clone();
    let admin_problem = config.admin.as_ref().and_then(|section| {
        let admin_check = tollgate_admin::read_token(section).and_then(|_| {
            match (&section.tls_cert, &section.tls_key) {
                (Some(cert), Some(key)) => tollgate_admin::tls_config(cert, key).map(|_| ()),
                _ => Ok(()),
            }
        });
        admin_check.err().map(|message| tollgate_config::Problem {
            file: config.source.clone(),
            context: "admin".into(),
            message,
        })
    });
    let result = runtime()?.block_on(tollgate_edge::load(config, false));
    let (mut errors, mut warnings) = match result {
        Ok(loaded) => (Vec::new(), loaded.warnings),
        Err(failure) => (failure.errors, failure.warnings),
    };
    errors.extend(admin_problem);
    if let Some(section) = &admin_section
        && let Some(message) = tollgate_admin::token_file_warning(section)
    {
        warnings.push(tollgate_config::Problem {
            file: section.token_file.clone().unwrap_or_default(),
            context: "admin.token_file".into(),
            message,
        });
    }
    Ok((errors, warnings))
}
