//! `/api/status`: the broker's agents (server, versions, since when, last heard, queue, lag)
//! and lost servers; or an agent's AMI and broker links. No secret is in it.

use crate::{App, Source};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

pub const SOFTWARE: &str = concat!("hintbus ", env!("CARGO_PKG_VERSION"));

pub async fn handler(State(app): State<Arc<App>>) -> Response {
    match &app.source {
        Source::Agent(status) => Json(status()).into_response(),
        Source::Broker(b) => match b.status().await {
            Some(s) => Json(json!({
                "role": "broker",
                "software": SOFTWARE,
                "instance": s.instance,
                "uptime_ms": s.uptime_ms,
                "table": { "entries": s.entries, "version": s.version },
                "agents": s.agents,
                "lost": s.lost,
            }))
            .into_response(),
            None => (StatusCode::SERVICE_UNAVAILABLE, "the broker has stopped\n").into_response(),
        },
    }
}
