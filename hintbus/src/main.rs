//! `hintbus`: one binary, one subcommand per role.

mod cmd;

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
    /// Run simulated Asterisk servers on loopback (for trying hintbus out, tests and benchmarks).
    Sim(cmd::sim::SimArgs),
    /// Log in to an Asterisk's AMI and print its device, presence and hint changes
    /// (checks an AMI user before hintbus is pointed at it).
    Watch(cmd::watch::WatchArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("HINTBUS_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_target(false)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => cmd::sim::run(args).await,
        Command::Watch(args) => cmd::watch::run(args).await,
    }
}
