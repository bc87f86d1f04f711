//! `tollgate`: the mTLS edge proxy and its tools.

mod client;
mod demo;
mod runner;
mod serve;

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
    /// Run the mTLS edge proxy.
    Serve(serve::ServeArgs),
    /// Check a configuration: load everything the server would (certificates,
    /// trust stores, CRLs, functions, KVS files) and list every problem.
    ///
    /// Exit status: 0 when it would serve (warnings are listed), 1 on errors.
    Check(serve::ServeArgs),
    /// Run the proxy on a generated dev PKI with the example revocation
    /// function and a built-in origin, and print curl commands to try.
    Demo(demo::DemoArgs),
    /// Key-value stores of a running proxy, through its admin API.
    ///
    /// Exit status: 0 on success, 1 when the API refused (its message on
    /// stderr), 2 when it could not be reached.
    Kvs(client::KvsArgs),
    /// Connection functions of a running proxy (upload, test, publish),
    /// through its admin API.
    ///
    /// Exit status: 0 on success, 1 when the API refused, 2 when it could
    /// not be reached.
    Functions(client::FunctionsArgs),
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
        Command::Serve(args) => report(serve::serve(args)),
        Command::Check(args) => serve::check(args),
        Command::Demo(args) => report(demo::main(args)),
        Command::Kvs(args) => client::kvs(args),
        Command::Functions(args) => client::functions(args),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
