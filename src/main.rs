//! `maestro`: the game-room orchestrator's command line.
//!
//! `maestro dev` runs the whole system in one process (Temporal dev server, worker, gateway,
//! local process runtime, in-memory room store); `maestro serve --role worker|gateway` runs
//! one role against an existing Temporal (production); `maestro scheduler|rooms|operation` are the
//! management API's command-line client. Wiring and configuration live here; the
//! behaviour lives in the library crates.

mod cli;
mod dev;
mod serve;
mod temporal;

use clap::{CommandFactory, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "maestro",
    version,
    about = "Game-room orchestrator on Temporal"
)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "MAESTRO_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything locally: Temporal dev server (started or reused), worker, management
    /// and rooms APIs, rooms as local processes, and a sample scheduler.
    Dev(Box<dev::DevArgs>),
    /// Run the worker and/or the gateway against an existing Temporal (production: one
    /// role per Deployment; see deploy/kubernetes).
    Serve(Box<serve::ServeCommand>),
    /// Schedulers: create, get, list, update, delete, switch-version.
    Scheduler {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        command: cli::SchedulerCommand,
    },
    /// Rooms of a scheduler: add, remove, list.
    Rooms {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        command: cli::RoomsCommand,
    },
    /// Shell completion script for bash, zsh, fish, elvish or PowerShell, on stdout
    /// (e.g. `maestro completions bash > /etc/bash_completion.d/maestro`).
    Completions { shell: clap_complete::Shell },
    /// Operations of a scheduler: list, get, cancel, wait.
    Operation {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        command: cli::OperationCommand,
    },
}

/// RUST_LOG overrides. The SDK's core is chatty at info, and the SDK opens an info span per
/// activity task that would prefix every activity's line with ~215 characters of span fields
/// (our own fields already name the scheduler, room and operation); kube's HTTP client logs every failed
/// request at ERROR (105 lines in one 30 s apiserver outage), which the runtime already
/// reports once, with context, when a call or the watch fails.
const DEFAULT_LOG_FILTER: &str = "info,temporalio_sdk=warn,temporalio_sdk_core=warn,temporalio_client=warn,kube_client::client::builder=off";

fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Errors print once, as `error: …` with their causes, and exit 1: an API refusal or an
/// operation that failed is an answer, not a crash, so no backtrace (whatever
/// `RUST_BACKTRACE` says).
#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Dev(args) => dev::run(*args).await,
        Command::Serve(command) => serve::run(*command).await,
        Command::Scheduler { client, command } => cli::scheduler(client, command).await,
        Command::Rooms { client, command } => cli::rooms(client, command).await,
        Command::Operation { client, command } => cli::operation(client, command).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "maestro",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
