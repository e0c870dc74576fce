//! hintbus over HTTP (docs/http.md): `/metrics`, `/api/status`, `/api/table`, `/api/ws` and
//! the BLF board at `/`, for the broker and (metrics and status) for each agent.
//!
//! - [`auth`]: the bearer token, and the rule that only loopback goes without one.
//! - [`metrics`]: the Prometheus registry as text.
//! - [`status`]: who is connected, since when, how far behind.
//! - [`table`]: the table and the queue members as JSON.
//! - [`ws`]: the WebSocket, a consumer of the broker's change stream; [`history`]: the
//!   recent changes, for a client that joins holding the table; [`render`]: a batch as
//!   JSON once for every client.
//! - [`board`]: the web page, served from the binary.

pub mod auth;
pub mod board;
pub mod history;
pub mod metrics;
pub mod render;
pub mod status;
pub mod table;
pub mod ws;

use axum::routing::get;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// What an agent says of itself for `/api/status`, read without waiting on the agent.
pub type AgentStatus = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Whose HTTP API this is.
pub enum Source {
    Broker(Arc<broker::Broker>),
    Agent(AgentStatus),
}

pub struct App {
    /// Every metric of the process.
    pub registry: Registry,
    /// `[http] token`: required of every `/api/*` and `/metrics` request when set.
    pub token: Option<String>,
    pub source: Source,
    /// WebSocket clients now, against [`ws::MAX_CLIENTS`].
    pub(crate) clients: Arc<tokio::sync::Semaphore>,
    /// The broker's recent changes (made when the server starts).
    pub(crate) history: Option<Arc<history::History>>,
    /// Batches rendered once for every WebSocket client.
    pub(crate) render: Arc<render::Renderer>,
    /// Turns to make a table (see [`table::MAX_TABLES`]).
    pub(crate) tables: tokio::sync::Semaphore,
    /// Cancelled when the listener stops: open WebSockets end with it.
    pub(crate) shutdown: CancellationToken,
}

impl App {
    pub fn new(registry: Registry, token: Option<String>, source: Source) -> App {
        App {
            registry,
            token,
            source,
            clients: Arc::new(tokio::sync::Semaphore::new(ws::MAX_CLIENTS)),
            history: None,
            render: Arc::default(),
            tables: tokio::sync::Semaphore::new(table::MAX_TABLES),
            shutdown: CancellationToken::new(),
        }
    }
}

/// The routes; `/api/table`, `/api/ws` and the board only where there is a table (a broker).
pub fn router(app: Arc<App>) -> axum::Router {
    let mut api = axum::Router::new()
        .route("/metrics", get(metrics::handler))
        .route("/api/status", get(status::handler));
    if matches!(app.source, Source::Broker(_)) {
        api = api
            .route("/api/table", get(table::handler))
            .route("/api/ws", get(ws::handler));
    }
    let api = api.layer(axum::middleware::from_fn_with_state(app.clone(), auth::require));
    let mut routes = axum::Router::new().merge(api);
    if matches!(app.source, Source::Broker(_)) {
        routes = routes.merge(board::routes());
    }
    routes.with_state(app)
}

/// A running HTTP listener.
pub struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds `listen` (an error names it) and serves. Refuses a listener beyond loopback
    /// without a token.
    pub async fn start(listen: &str, app: App) -> Result<Server, String> {
        auth::check_listen(listen, app.token.as_deref())?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let mut app = app;
        let shutdown = app.shutdown.clone();
        let stop = shutdown.clone();
        if let Source::Broker(b) = &app.source {
            app.history = Some(history::History::start(b).await);
        }
        let app = Arc::new(app);
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router(app)).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "HTTP listener ended");
            }
        });
        info!(%addr, "HTTP listening (metrics, status, board)");
        Ok(Server { addr, shutdown, task })
    }

    /// The bound address (with the real port when the config said 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening; open WebSockets are closed.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}
