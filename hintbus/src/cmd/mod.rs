//! The subcommands.

pub mod agent;
pub mod bench;
mod bench_devices;
pub mod broker;
pub mod demo;
pub mod hints;
pub mod keygen;
pub mod lamps;
pub mod sim;
pub mod watch;

static SHUTDOWN: std::sync::OnceLock<tokio_util::sync::CancellationToken> = std::sync::OnceLock::new();

/// Installs the SIGINT/SIGTERM handlers at start-up, before anything else runs, so that a
/// signal is never lost between two waits (tokio only delivers to streams that exist).
pub fn install_signal_handlers() -> std::io::Result<()> {
    let token = SHUTDOWN.get_or_init(tokio_util::sync::CancellationToken::new).clone();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            token.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        token.cancel();
    });
    Ok(())
}

/// Resolves once SIGINT or SIGTERM has arrived (at any time since start-up).
pub async fn shutdown_signal() {
    SHUTDOWN
        .get_or_init(tokio_util::sync::CancellationToken::new)
        .cancelled()
        .await;
}
