//! `/api/table`: every entry with its version, the table's version, and the queue members.
//!
//! A table may hold 100,000 entries: it is written straight to JSON text from the broker's
//! snapshot (no tree of values in between), and at most [`MAX_TABLES`] are made at once, for
//! `/api/table` and the WebSocket's first messages together: a client looping on it costs
//! the broker one snapshot at a time, not one per request.

use crate::{App, Source};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use broker::table::Change;
use broker::{Broker, Snapshot};
use serde::{Serialize, Serializer};
use std::sync::Arc;

/// Tables made at once.
pub const MAX_TABLES: usize = 4;

#[derive(Serialize)]
struct Table<'a> {
    /// `table` on the WebSocket; absent from `/api/table`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    broker: u64,
    version: u64,
    entries: Entries<'a>,
    queue: &'a [broker::members::Member],
}

/// The changes as entries, made one at a time as they are written.
struct Entries<'a>(&'a [Change]);

impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(Change::entry))
    }
}

/// The table as JSON text (`kind` is the WebSocket's message type).
pub fn to_json(s: &Snapshot, kind: Option<&'static str>) -> String {
    let t = Table {
        kind,
        broker: s.broker,
        version: s.version,
        entries: Entries(&s.changes),
        queue: &s.members,
    };
    serde_json::to_string(&t).expect("tables serialize")
}

/// The broker's table as JSON text and its version, made in a turn among [`MAX_TABLES`]
/// (the snapshot and its text together); None when the broker has stopped.
pub async fn text(app: &App, broker: &Broker, kind: Option<&'static str>) -> Option<(String, u64)> {
    let _turn = app.tables.acquire().await.ok()?;
    let snap = broker.snapshot().await?;
    Some((to_json(&snap, kind), snap.version))
}

pub async fn handler(State(app): State<Arc<App>>) -> Response {
    let Source::Broker(b) = &app.source else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match text(&app, b, None).await {
        Some((json, _)) => ([(CONTENT_TYPE, "application/json")], json).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "the broker has stopped\n").into_response(),
    }
}
