//! `hintbus`: one binary, one subcommand per role.

mod cmd;
mod config;

/// glibc's malloc was 12% of an agent's CPU under load (perf: `_int_malloc`,
/// `malloc_consolidate`): every AMI message and update is a few short-lived allocations.
/// Built with `no_thp`: on hosts with transparent huge pages "always", mimalloc's segments
/// otherwise took 2 MiB pages and doubled every process's resident memory (11 -> 21 MB).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "hintbus",
    version,
    about = "Device and presence state federation for Asterisk PBX servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (and the agents of agentless servers in its config).
    Broker(cmd::broker::BrokerArgs),
    /// Run the agent of one Asterisk server.
    Agent(cmd::agent::AgentArgs),
    /// Write a CURVE key pair for the broker or an agent.
    Keygen(cmd::keygen::KeygenArgs),
    /// Print the shared hints file, and the queue guard's hints and queues.conf lines.
    Hints(cmd::hints::HintsArgs),
    /// Write a hintbus configuration from zmq-ami-broker's config.ini, saying what it could
    /// not carry over.
    Import(cmd::import::ImportArgs),
    /// Load the federation (broker and agent processes, simulated servers) and print figures.
    Bench(cmd::bench::BenchArgs),
    /// A broker, three simulated Asterisk servers and their agents in one process, with lamps.
    Demo(cmd::demo::DemoArgs),
    /// Run simulated Asterisk servers on loopback (for trying hintbus out, tests and benchmarks).
    Sim(cmd::sim::SimArgs),
    /// Log in to an Asterisk's AMI and print its device, presence and hint changes
    /// (checks an AMI user before hintbus is pointed at it).
    Watch(cmd::watch::WatchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One agent is one task (and libzmq's I/O thread): a single-threaded runtime spends less CPU
    // on wake-ups (measured with `hintbus bench`), which matters on a busy PBX.
    let runtime = match cli.command {
        Command::Agent(_) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    match runtime {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => {
            eprintln!("hintbus: cannot start the runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> std::process::ExitCode {
    if let Err(e) = cmd::install_signal_handlers() {
        eprintln!("hintbus: cannot install signal handlers: {e}");
        return std::process::ExitCode::FAILURE;
    }
    // The demo's terminal belongs to the lamps: only warnings go with them.
    let default_level = if matches!(cli.command, Command::Demo(_) | Command::Bench(_)) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("HINTBUS_LOG").unwrap_or_else(|_| EnvFilter::new(default_level)))
        .with_target(false)
        // Colours only on a terminal: in a file or the journal they are escape sequences, and a
        // log with escapes of its own could not be told from one a peer injected into.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Broker(args) => cmd::broker::run(args).await,
        Command::Agent(args) => cmd::agent::run(args).await,
        Command::Demo(args) => cmd::demo::run(args).await,
        Command::Bench(args) => cmd::bench::run(args).await,
        Command::Hints(args) => cmd::hints::run(args),
        Command::Import(args) => cmd::import::run(args),
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Sim(args) => cmd::sim::run(args).await,
        Command::Watch(args) => cmd::watch::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hintbus: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
