//! `streambus`: parse arguments, set up logging, dispatch to one file per
//! subcommand (STYLE §10). `main` prints errors with their causes and picks
//! the exit code.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: the publish path allocates per
/// event, and glibc's malloc/free took about a third of the server's CPU in
/// ingest profiles (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A real-time event bus for live streaming and broadcast.
#[derive(Debug, Parser)]
#[command(name = "streambus", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(cmd::serve::ServeArgs),
    /// Publish events to a running server.
    Publish(cmd::publish::PublishArgs),
    /// Follow events live, filtered and resumable.
    Tail(cmd::tail::TailArgs),
    /// Measure ingest, fan-out and connection cost against a running server.
    Bench(cmd::bench::BenchArgs),
    /// Load and validate the configuration, and check that each engine answers.
    CheckConfig(cmd::check_config::CheckConfigArgs),
    /// Mint a scoped JWT (e.g. for an OBS overlay URL).
    Token(cmd::token::TokenArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("streambus: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => cmd::serve::run(args).await,
            Command::Publish(args) => cmd::publish::run(args).await,
            Command::Tail(args) => cmd::tail::run(args).await,
            Command::Bench(args) => cmd::bench::run(args).await,
            Command::CheckConfig(args) => cmd::check_config::run(args).await,
            Command::Token(args) => cmd::token::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streambus: {e:#}");
            ExitCode::FAILURE
        }
    }
}
