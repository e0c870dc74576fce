//! The subcommands.

pub mod agent;
pub mod bench;
pub mod broker;
pub mod demo;
pub mod hints;
pub mod keygen;
pub mod lamps;
pub mod sim;
pub mod watch;

/// Resolves on SIGINT or SIGTERM: the moment to shut down cleanly.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
