//! The recent changes, so that a client holding `/api/table` at version V can join the
//! WebSocket with `?since=V` and get exactly the changes after V, not the table again.
//!
//! A consumer of the change stream of its own, drained when a client joins (and every
//! second, so it never lags): a client subscribes first, then takes what the history holds
//! past its version; whatever was published since it subscribed is in its own subscription,
//! and versions tell the overlap. Bounded by bytes ([`BOUND`]); a version older than what it
//! holds gets the table, as a client without `since` does.

use broker::table::Change;
use broker::{Broker, Event, Recv, Subscription};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bytes of changes kept (about 40,000 changes of short names).
pub const BOUND: usize = 4 << 20;

struct Inner {
    sub: Subscription,
    changes: VecDeque<(Change, usize)>,
    bytes: usize,
    /// Every change after this version and up to the last one held is held (None: the
    /// history has just lagged and knows nothing yet).
    from: Option<u64>,
}

pub struct History {
    inner: Mutex<Inner>,
}

impl History {
    /// Starts keeping the broker's changes from its current version on.
    pub async fn start(broker: &Broker) -> Arc<History> {
        let sub = broker.subscribe("history", BOUND * 2);
        // The version only (the status has it): no copy of the table for it.
        let from = broker.status().await.map(|s| s.version);
        let h = Arc::new(History {
            inner: Mutex::new(Inner {
                sub,
                changes: VecDeque::new(),
                bytes: 0,
                from,
            }),
        });
        let weak = Arc::downgrade(&h);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            while let Some(h) = weak.upgrade() {
                h.drain();
                drop(h);
                every.tick().await;
            }
        });
        h
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes everything published so far into the history.
    fn drain(&self) {
        let mut g = self.lock();
        let inner = &mut *g;
        while let Some(r) = inner.sub.try_recv() {
            match r {
                Recv::Batch(b) => {
                    for e in &b.events {
                        let Event::Changed(cs) = e else { continue };
                        for c in cs.iter() {
                            let n = std::mem::size_of::<Change>() + c.name.len() + c.origin.len();
                            inner.changes.push_back((c.clone(), n));
                            inner.bytes += n;
                        }
                    }
                    // A batch with no change still moves the version on (there were none).
                    if inner.from.is_none() {
                        inner.from = Some(b.version);
                    }
                }
                Recv::Lagged => {
                    inner.changes.clear();
                    inner.bytes = 0;
                    inner.from = None;
                }
                Recv::Closed => break,
            }
        }
        while inner.bytes > BOUND {
            let Some((c, n)) = inner.changes.pop_front() else { break };
            inner.bytes -= n;
            inner.from = Some(c.version);
        }
    }

    /// The changes after `since`, when the history holds all of them (None: it does not,
    /// and the client needs the table).
    pub fn after(&self, since: u64) -> Option<Vec<Change>> {
        self.drain();
        let g = self.lock();
        let from = g.from?;
        if since < from {
            return None;
        }
        let last = g.changes.back().map_or(from, |(c, _)| c.version);
        if since > last {
            // A version this broker never had (another broker's, before a restart).
            return None;
        }
        Some(
            g.changes
                .iter()
                .filter(|(c, _)| c.version > since)
                .map(|(c, _)| c.clone())
                .collect(),
        )
    }
}
