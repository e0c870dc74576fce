//! The subcommands.

pub mod agent;
pub mod bench;
mod bench_devices;
mod bench_observers;
pub mod broker;
pub mod completions;
pub mod demo;
pub mod hints;
pub mod import;
pub mod keygen;
pub mod lamps;
pub mod man;
pub mod sim;
pub mod status;
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

/// `127.0.0.1:5580 (with a token)` or `off`, for `--check`.
pub fn http_line(h: &crate::config::Http) -> String {
    match &h.listen {
        Some(l) if h.token.is_some() => format!("{l} (with a token)"),
        Some(l) => l.clone(),
        None => "off".into(),
    }
}

/// The process's registry: the process's own metrics, and one collector for all its agents
/// (each agent's series labelled with its server: see `agent::metrics::Agents`).
pub fn registry() -> (prometheus_client::registry::Registry, ::agent::metrics::Agents) {
    let mut registry = prometheus_client::registry::Registry::default();
    ::broker::metrics::register_process(&mut registry);
    let agents = ::agent::metrics::Agents::default();
    registry.register_collector(Box::new(agents.clone()));
    (registry, agents)
}

/// What `/api/status` of an agent says (read without waiting on the agent).
pub fn agent_status(h: &::agent::AgentHandle) -> web::AgentStatus {
    let read = h.status_reader();
    std::sync::Arc::new(move || serde_json::to_value(read()).unwrap_or_default())
}

/// Stops the broker once the last WebSocket client lets go of it (they end with the HTTP
/// listener; one still closing stops it when it does).
pub async fn stop_broker(broker: std::sync::Arc<::broker::Broker>) {
    if let Ok(b) = std::sync::Arc::try_unwrap(broker) {
        let _ = tokio::task::spawn_blocking(move || b.stop()).await;
    }
}

/// Resolves once SIGINT or SIGTERM has arrived (at any time since start-up).
pub async fn shutdown_signal() {
    SHUTDOWN
        .get_or_init(tokio_util::sync::CancellationToken::new)
        .cancelled()
        .await;
}

/// `--check` warnings about one agent's templates: a template that takes a name of its own
/// shape to itself lands another server's `Custom:DND100` (or `CustomPresence:100`) on this
/// server's own name of that name. The agent refuses such a landing at run time (warned and
/// counted, see docs/ami.md); here the administrator learns it can happen.
pub fn template_warnings(section: &str, cfg: &::agent::AgentConfig) -> Vec<String> {
    let mut out = Vec::new();
    for (key, t, shared) in [
        ("device_template", &cfg.device_template, cfg.device_state),
        ("presence_template", &cfg.presence_template, cfg.presence),
    ] {
        // A kind that is not shared lands nowhere.
        if shared && t.can_collide() {
            out.push(format!(
                "warning: [{section}] {key} = {t}: another server's state of the same name lands on this server's own one (refused when it happens); add {{origin}} or a prefix of its own to keep them apart"
            ));
        }
    }
    out
}

/// `, presence off` and the like for a `--check` line: only what differs from sharing both.
pub fn switches(cfg: &::agent::AgentConfig) -> String {
    let mut out = String::new();
    for (name, on) in [("device states", cfg.device_state), ("presence", cfg.presence)] {
        if !on {
            out.push_str(&format!(", {name} not shared"));
        }
    }
    if !cfg.mwi_publish {
        out.push_str(", mailboxes not published");
    }
    match cfg.mwi_sink {
        ::agent::config::MwiSink::Off => {}
        ::agent::config::MwiSink::MwiUpdate(_) => out.push_str(", remote mailboxes by MWIUpdate"),
        ::agent::config::MwiSink::Custom(_) => out.push_str(", remote mailboxes as Custom: lamps"),
    }
    out
}

/// Says whom `--check` checked the files for when that is not the user running it.
pub fn print_checked_as(loaded: &crate::config::Loaded, service_user: &str) {
    match &loaded.service_user {
        Some(u) => println!("files checked as {}, the user the service runs as", u.name),
        // SAFETY: geteuid has no preconditions.
        None if unsafe { libc::geteuid() } == 0 && service_user != "root" => println!(
            "note: there is no user {service_user}: files were checked as root, who reads everything (--service-user USER to check as another)"
        ),
        None => {}
    }
}
