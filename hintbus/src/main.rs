//! `hintbus`: one binary, one subcommand per role.

mod cmd;
mod config;

/// glibc's malloc was 12% of an agent's CPU under load (perf: `_int_malloc`,
/// `malloc_consolidate`): every AMI message and update is a few short-lived allocations.
/// Built with `no_thp`: on hosts with transparent huge pages "always", mimalloc's segments
/// otherwise took 2 MiB pages and doubled every process's resident memory (11 -> 21 MB).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{CommandFactory, Parser, Subcommand};
use std::io::Write;
use tracing_subscriber::fmt::MakeWriter;
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
    /// What the broker (or an agent) says of itself: agents, versions, since when, how far
    /// behind, lost servers. Exit status 0: all well, 1: not reachable, 2: something is wrong.
    Status(cmd::status::StatusArgs),
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(cmd::completions::CompletionsArgs),
    /// Write the manual pages into a directory (for the package).
    #[command(hide = true)]
    Man(cmd::man::ManArgs),
}

fn main() -> std::process::ExitCode {
    let command = match Cli::parse().command {
        // Generated from the definitions above: no runtime, no logs.
        Command::Completions(args) => return exit(cmd::completions::run(args, Cli::command())),
        Command::Man(args) => return exit(cmd::man::run(args, Cli::command())),
        // A blocking HTTP request and a table: no runtime, no logs.
        Command::Status(args) => return cmd::status::run(args),
        command => command,
    };
    // One agent is one task (and libzmq's I/O thread): a single-threaded runtime spends less CPU
    // on wake-ups (measured with `hintbus bench`), which matters on a busy PBX.
    let runtime = match command {
        Command::Agent(_) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        _ => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    };
    match runtime {
        Ok(rt) => rt.block_on(run(command)),
        Err(e) => {
            eprintln!("hintbus: cannot start the runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> std::process::ExitCode {
    if let Err(e) = cmd::install_signal_handlers() {
        eprintln!("hintbus: cannot install signal handlers: {e}");
        return std::process::ExitCode::FAILURE;
    }
    // The demo's terminal belongs to the lamps: only warnings go with them.
    let default_level = if matches!(command, Command::Demo(_) | Command::Bench(_)) {
        "warn"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_env("HINTBUS_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    if journal_stream() {
        // The journal stamps every line itself, and has no use for colours.
        logs.without_time().with_ansi(false).with_writer(JournalStderr).init();
    } else {
        logs
            // Colours only on a terminal: in a file or the journal they are escape sequences, and a
            // log with escapes of its own could not be told from one a peer injected into.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init();
    }
    let result = match command {
        Command::Broker(args) => cmd::broker::run(args).await,
        Command::Agent(args) => cmd::agent::run(args).await,
        Command::Demo(args) => cmd::demo::run(args).await,
        Command::Bench(args) => cmd::bench::run(args).await,
        Command::Hints(args) => cmd::hints::run(args),
        Command::Import(args) => cmd::import::run(args),
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Sim(args) => cmd::sim::run(args).await,
        Command::Watch(args) => cmd::watch::run(args).await,
        Command::Completions(args) => cmd::completions::run(args, Cli::command()),
        Command::Man(args) => cmd::man::run(args, Cli::command()),
        Command::Status(args) => return cmd::status::run(args),
    };
    exit(result)
}

fn exit(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let text = format!("hintbus: {e:#}\n");
            if journal_stream() {
                // An error that stops the service (a failed --check in ExecStartPre too) is
                // found with `journalctl -p err`.
                write_prefixed(3, text.as_bytes());
            } else {
                eprint!("{text}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// Whether stderr is the journal stream systemd connected it to. systemd.exec(5): it names that
/// stream's `<device>:<inode>` in JOURNAL_STREAM, which children inherit even when their stderr
/// goes elsewhere (an administrator's `hintbus agent --check 2>&1 | less` from a unit's shell),
/// hence the comparison with stderr itself rather than the variable's mere presence.
fn journal_stream() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        v.split_once(':')
            .map(|(d, i)| (d.parse::<u64>().ok(), i.parse::<u64>().ok()))
    }) else {
        return false;
    };
    let stderr = std::io::stderr().as_fd().try_clone_to_owned().map(std::fs::File::from);
    match stderr.and_then(|f| f.metadata()) {
        Ok(meta) => dev == Some(meta.dev()) && ino == Some(meta.ino()),
        Err(_) => false,
    }
}

/// stderr for the journal: every line starts with its event's syslog priority (`<4>` for a
/// warning), which journald, with systemd's default `SyslogLevelPrefix=yes`, strips and keeps as
/// the entry's priority, so `journalctl -p warning` finds warnings.
///
/// Chosen over tracing-journald (its own datagram socket): the lines stay on the one stream
/// systemd gave the unit, in order with what else is written there (ExecStartPre's `--check`,
/// the exit error, a panic), and no socket can be missing, refused by the sandbox or need a
/// fallback. The cost is journald's structured fields, which the text carries as `key=value`.
/// Each line of a multi-line event gets the event's prefix, so a peer's text with a newline in
/// it cannot begin a journal entry with a priority of its own.
struct JournalStderr;

impl<'a> MakeWriter<'a> for JournalStderr {
    type Writer = PrefixedEvent;

    fn make_writer(&'a self) -> PrefixedEvent {
        PrefixedEvent {
            priority: 6,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> PrefixedEvent {
        let priority = match *meta.level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        PrefixedEvent {
            priority,
            buf: Vec::new(),
        }
    }
}

/// One event, gathered and written with its prefixes when dropped (tracing makes one writer per
/// event), so a prefix never lands inside a line however the formatter splits its writes.
struct PrefixedEvent {
    priority: u8,
    buf: Vec<u8>,
}

impl Write for PrefixedEvent {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for PrefixedEvent {
    fn drop(&mut self) {
        // The formatter pads " INFO" and " WARN" to the width of "ERROR": no use after a prefix.
        write_prefixed(self.priority, self.buf.strip_prefix(b" ").unwrap_or(&self.buf));
    }
}

/// Writes `text` to stderr in one write, each of its lines prefixed with `<priority>`.
fn write_prefixed(priority: u8, text: &[u8]) {
    if text.is_empty() {
        return;
    }
    let prefix = format!("<{priority}>");
    let mut out = Vec::with_capacity(text.len() + 8);
    for line in text.strip_suffix(b"\n").unwrap_or(text).split(|&b| b == b'\n') {
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    // A log line that cannot be written has nowhere else to go.
    let _ = std::io::stderr().lock().write_all(&out);
}
