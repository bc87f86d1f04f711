//! `tollgate`: the mTLS edge proxy and its tools.

mod demo;
mod runner;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Self-hosted mTLS edge proxy with Wasm connection functions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a connection function locally, exactly as the proxy would.
    ///
    /// Exit status: 0 when the expectation holds (or none was given), 1 when
    /// it does not, 2 for unusable input.
    Test(Box<runner::TestArgs>),
    /// Show a connection function at work: the example revocation function
    /// on a freshly generated dev PKI (a valid, a revoked and a missing
    /// client certificate).
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Test(args) => runner::main(*args),
        Command::Demo => match demo::main() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
