//! `/api/table`: every entry with its version, the table's version, and the queue members.

use crate::{App, Source};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use broker::Snapshot;
use proto::Entry;
use serde_json::{json, Value};
use std::sync::Arc;

/// The table as JSON (`type` is added for the WebSocket's first message).
pub fn to_json(s: &Snapshot, kind: Option<&str>) -> Value {
    let entries: Vec<Entry> = s.changes.iter().map(|c| c.entry()).collect();
    let mut v = json!({
        "broker": s.broker,
        "version": s.version,
        "entries": entries,
        "queue": s.members,
    });
    if let Some(k) = kind {
        v["type"] = json!(k);
    }
    v
}

pub async fn handler(State(app): State<Arc<App>>) -> Response {
    let Source::Broker(b) = &app.source else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match b.snapshot().await {
        Some(s) => axum::Json(to_json(&s, None)).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "the broker has stopped\n").into_response(),
    }
}
