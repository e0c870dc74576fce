//! `/api/ws`: the table, then every change after it, for as long as the client stays.
//!
//! Each client is a consumer of the broker's change stream. It subscribes *before* it takes
//! its snapshot, so nothing falls between the two: batches that arrive with changes the
//! snapshot already holds are recognised by their versions and skipped. A client too slow for
//! the stream (its subscription passes [`CLIENT_BOUND`] bytes) is sent a fresh table rather
//! than a gap; the broker never waits for it. A client that holds `/api/table` at a version
//! joins with `?since=` and `&broker=` and gets the changes after it from the
//! [`History`](crate::history), not the table again.

use crate::{App, Source};
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use broker::{Broker, Recv};
use futures::{SinkExt, StreamExt};
use proto::Entry;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// WebSocket clients at once; more get 503.
pub const MAX_CLIENTS: usize = 64;
/// What one client's subscription may hold unread, in bytes.
pub const CLIENT_BOUND: usize = 4 << 20;
/// What a client may send us in one message (it has nothing to say but close).
const MAX_INCOMING: usize = 4096;
const PING: Duration = Duration::from_secs(20);
/// A client that takes no message for this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
pub struct Params {
    /// The version of an `/api/table` the client already holds...
    since: Option<u64>,
    /// ...and the broker it came from (versions start again when the broker restarts).
    broker: Option<u64>,
}

pub async fn handler(State(app): State<Arc<App>>, Query(p): Query<Params>, upgrade: WebSocketUpgrade) -> Response {
    let Source::Broker(b) = &app.source else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(permit) = app.clients.clone().try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many WebSocket clients\n").into_response();
    };
    let b = b.clone();
    let since = p.since.filter(|_| p.broker == Some(b.instance()));
    upgrade
        .max_message_size(MAX_INCOMING)
        .max_frame_size(MAX_INCOMING)
        .on_upgrade(move |socket| async move {
            serve(socket, app, b, since).await;
            drop(permit);
        })
}

async fn serve(socket: WebSocket, app: Arc<App>, broker: Arc<Broker>, since: Option<u64>) {
    let (mut tx, mut rx) = socket.split();
    // Subscribed first: whatever is published from now on is in `sub`.
    let mut sub = broker.subscribe("websocket", CLIENT_BOUND);
    let recent = since.and_then(|v| Some((v, app.history.as_ref()?.after(v)?)));
    let mut known = match recent {
        // The client holds the table at `v`: the changes after it, then the stream; and the
        // queue members as they are now (their events are not in the history).
        Some((v, changes)) => {
            let entries: Vec<Entry> = changes.iter().map(|c| c.entry()).collect();
            let known = entries.last().map_or(v, |e| e.version);
            let Some(members) = broker.members().await else { return };
            let mut first = vec![json!({"type": "queue", "events": members})];
            if !entries.is_empty() {
                first.push(json!({"type": "changes", "version": known, "entries": entries}));
            }
            for m in first {
                if send(&mut tx, m.to_string()).await.is_err() {
                    return;
                }
            }
            known
        }
        None => match send_table(&mut tx, &app, &broker).await {
            Some(v) => v,
            None => return,
        },
    };
    let mut ping = tokio::time::interval(PING);
    ping.tick().await;
    loop {
        tokio::select! {
            r = sub.recv() => match r {
                Recv::Batch(batch) => {
                    for text in app.render.messages(&batch, known).iter() {
                        if send(&mut tx, text.clone()).await.is_err() {
                            return;
                        }
                    }
                    known = known.max(batch.version);
                }
                Recv::Lagged => match send_table(&mut tx, &app, &broker).await {
                    Some(v) => known = v,
                    None => return,
                },
                Recv::Closed => {
                    let _ = tx.send(Message::Close(None)).await;
                    return;
                }
            },
            _ = app.shutdown.cancelled() => {
                let _ = tx.send(Message::Close(None)).await;
                return;
            }
            m = rx.next() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                // A browser's script never sees Ping frames: the text ping is what tells the
                // board that a quiet feed is still alive.
                if tx.send(Message::Ping(Default::default())).await.is_err()
                    || send(&mut tx, r#"{"type":"ping"}"#.to_string()).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Sends the table (waiting for a turn to make one); its version, or None when the client
/// or the broker is gone.
async fn send_table<S>(tx: &mut S, app: &App, broker: &Broker) -> Option<u64>
where
    S: futures::Sink<Message, Error = axum::Error> + Unpin,
{
    let (text, version) = crate::table::text(app, broker, Some("table")).await?;
    send(tx, text).await.ok()?;
    Some(version)
}

/// Sends one text message; a client that takes none for [`SEND_TIMEOUT`] is dropped (its
/// socket's buffers are full: it reads nothing).
async fn send<S>(tx: &mut S, text: impl Into<Utf8Bytes>) -> Result<(), ()>
where
    S: futures::Sink<Message, Error = axum::Error> + Unpin,
{
    match tokio::time::timeout(SEND_TIMEOUT, tx.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
