//! A batch of the change stream as WebSocket messages, rendered once for every client.
//!
//! Ten clients rendering the same batch to JSON ten times doubled the broker's CPU under
//! `hintbus bench --observers 10`; the first client to take a batch renders it here and the
//! others send the same bytes (`Utf8Bytes` clones share them). Only a client that already
//! holds part of a batch (it has just joined) gets a rendering of its own.

use axum::extract::ws::Utf8Bytes;
use broker::{Batch, Event};
use proto::Entry;
use serde_json::json;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

/// Batches remembered: clients a little behind the others still find theirs; at most
/// [`BOUND`] bytes of them (a batch may hold a whole server's sync).
const KEEP: usize = 64;
const BOUND: usize = 8 << 20;

/// A batch (while some client still holds it) and its messages.
type Rendered = (Weak<Batch>, Arc<Vec<Utf8Bytes>>);

#[derive(Default)]
pub struct Renderer {
    recent: Mutex<VecDeque<Rendered>>,
}

impl Renderer {
    /// The messages of `batch` for a client whose table is at version `known`.
    pub fn messages(&self, batch: &Arc<Batch>, known: u64) -> Arc<Vec<Utf8Bytes>> {
        if first_version(batch).is_some_and(|v| v <= known) {
            return Arc::new(render(&batch.events, known));
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        // A batch no client holds any more is never asked for again.
        recent.retain(|(w, _)| w.strong_count() > 0);
        if let Some((_, m)) = recent
            .iter()
            .find(|(w, _)| w.upgrade().is_some_and(|b| Arc::ptr_eq(&b, batch)))
        {
            return m.clone();
        }
        let m = Arc::new(render(&batch.events, known));
        recent.push_back((Arc::downgrade(batch), m.clone()));
        let size = |r: &Rendered| r.1.iter().map(|t| t.as_str().len()).sum::<usize>();
        while recent.len() > KEEP || (recent.len() > 1 && recent.iter().map(size).sum::<usize>() > BOUND) {
            recent.pop_front();
        }
        m
    }
}

/// The version of the batch's first change.
fn first_version(batch: &Batch) -> Option<u64> {
    batch.events.iter().find_map(|e| match e {
        Event::Changed(c) => c.first().map(|c| c.version),
        _ => None,
    })
}

/// A batch's events as the client's messages; changes the client already has (version at
/// most `known`) are left out.
fn render(events: &[Event], known: u64) -> Vec<Utf8Bytes> {
    let mut out = Vec::new();
    for e in events {
        let v = match e {
            Event::Changed(changes) => {
                let entries: Vec<Entry> = changes
                    .iter()
                    .filter(|c| c.version > known)
                    .map(|c| c.entry())
                    .collect();
                let Some(last) = entries.last() else { continue };
                json!({"type": "changes", "version": last.version, "entries": entries})
            }
            Event::Queue(events) => json!({"type": "queue", "events": &**events}),
            Event::AgentJoined { server, .. } => json!({"type": "agent", "server": &**server, "event": "joined"}),
            Event::AgentLost { server, .. } => json!({"type": "agent", "server": &**server, "event": "lost"}),
            Event::AgentStatus {
                server, ami_connected, ..
            } => {
                let event = if *ami_connected { "ami_up" } else { "ami_down" };
                json!({"type": "agent", "server": &**server, "event": event})
            }
            Event::Refused { .. } => continue,
        };
        out.push(Utf8Bytes::from(v.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker::events::LostReason;

    #[test]
    fn one_rendering_for_every_client_unless_it_holds_part_of_the_batch() {
        let mut t = broker::table::Table::default();
        let changes: Vec<_> = (0..3)
            .filter_map(|i| t.apply(proto::Entry::device("a", &format!("SIP/{i}"), ami::DeviceState::Inuse)))
            .collect();
        let batch = Arc::new(Batch {
            events: vec![
                Event::Changed(changes.into()),
                Event::AgentLost {
                    server: "b".into(),
                    reason: LostReason::Heartbeat,
                },
            ],
            version: 3,
            broker: 1,
        });
        let r = Renderer::default();
        let one = r.messages(&batch, 0);
        assert!(Arc::ptr_eq(&one, &r.messages(&batch, 0)), "rendered once");
        assert_eq!(one.len(), 2);
        assert!(one[0].as_str().contains("\"version\":3"));
        let partial = r.messages(&batch, 2);
        assert!(!Arc::ptr_eq(&one, &partial));
        assert_eq!(
            partial[0].as_str().matches("\"name\"").count(),
            1,
            "only SIP/2 is new to it"
        );
    }
}
