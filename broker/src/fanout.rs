//! Fan-out: every change to every agent but its origin's, through each agent's own queue.
//!
//! The agents' queues are the one consumer of the change stream that lives inside the core:
//! what they hold decides backpressure, the batch window and the sequence a snapshot is
//! current at, all of which the core must know. Sends never block: an agent whose libzmq
//! queue is full keeps its updates in its [`Outbox`](crate::outbox::Outbox), coalesced per
//! key, and gets them when it catches up, so one slow or dead agent delays no one else.

use crate::core::{Core, Outlet, Sent};
use crate::events::Event;
use crate::table::Change;
use proto::message::MAX_ENTRIES;
use proto::{Entry, Kind, Msg};
use std::time::{Duration, Instant};
use tracing::debug;

/// How soon a send that libzmq refused (its queue for that agent was full) is tried again.
pub const BACKPRESSURE_RETRY: Duration = Duration::from_millis(2);

impl Core {
    /// Queues changes for every agent but their origin's, and emits them as one event.
    pub(crate) fn fan_out(&mut self, changed: Vec<Change>, now: Instant) {
        if changed.is_empty() {
            return;
        }
        for s in self.sessions.values_mut() {
            let before = s.outbox.coalesced;
            let theirs = |e: &&Change| *e.origin != *s.server;
            let queued = changed.iter().filter(theirs).count();
            s.outbox.push_all(changed.iter().filter(theirs).cloned(), queued, now);
            s.count_queued(queued as u64, now);
            s.counters.coalesced.inc_by(s.outbox.coalesced - before);
        }
        self.metrics.table_version.set(self.table.version() as i64);
        for kind in Kind::ALL {
            self.table_entries[kind.index()].set(self.table.len_of(kind) as i64);
        }
        self.events.push(Event::Changed(changed.into()));
    }

    /// When the next flush is due: an agent's held updates are released, or libzmq may take
    /// again what it refused (its queue for a slow agent was full).
    pub fn next_flush(&self, now: Instant) -> Option<Instant> {
        self.sessions
            .values()
            .filter(|s| !s.outbox.is_empty() || s.snapshot_owed)
            .map(|s| {
                if s.backpressured {
                    now + BACKPRESSURE_RETRY
                } else {
                    s.held_until(self.config.batch_window).max(now)
                }
            })
            .min()
    }

    /// Sends every agent what it is owed, unless its updates are held for the batch window
    /// (see [`Session::held_until`](crate::session::Session::held_until)): under load they then
    /// leave together, one frame (and one wake-up of every thread on the way) instead of one
    /// per update; when idle nothing waits.
    pub fn flush_all(&mut self, out: &mut impl Outlet, now: Instant) {
        let window = self.config.batch_window;
        let ids: Vec<Vec<u8>> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.snapshot_owed || (!s.outbox.is_empty() && s.held_until(window) <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.flush(out, &id, now);
        }
    }

    /// Sends what one agent is owed, until libzmq's queue for it is full.
    fn flush(&mut self, out: &mut impl Outlet, id: &[u8], now: Instant) {
        let batch = self.config.batch.clamp(1, MAX_ENTRIES);
        let Some(s) = self.sessions.get(id) else { return };
        if s.snapshot_owed {
            let seq = s.seq;
            // Made chunk by chunk from the table as it is sent: never a copy of the whole table.
            let server = s.server.clone();
            let mut entries = self.table.others(&server).peekable();
            let mut chunks = 0;
            let mut sent = Sent::Ok;
            while chunks == 0 || entries.peek().is_some() {
                let chunk: Vec<Entry> = entries.by_ref().take(batch).collect();
                let msg = Msg::Snapshot {
                    seq,
                    entries: chunk,
                    last: entries.peek().is_none(),
                };
                // A snapshot is sent whole or not at all; a partial one is asked for again.
                sent = out.send(id, &msg.encode());
                if sent != Sent::Ok {
                    break;
                }
                chunks += 1;
            }
            drop(entries);
            let s = self.sessions.get_mut(id).expect("looked up above");
            match sent {
                Sent::Ok => {
                    self.metrics.snapshots_sent.inc();
                    s.last_sent = now;
                    s.backpressured = false;
                    s.snapshot_owed = false;
                }
                Sent::Full => {
                    if chunks > 0 {
                        s.last_sent = now;
                    }
                    s.counters.backpressure.inc();
                    s.backpressured = true;
                    debug!(server = %s.server, "snapshot deferred");
                    return;
                }
                Sent::Gone => return self.drop_session(id, now),
            }
        }
        loop {
            let Some(s) = self.sessions.get_mut(id) else { return };
            if s.outbox.is_empty() {
                return;
            }
            let entries = s.outbox.peek(batch);
            let n = entries.len();
            let msg = Msg::Updates {
                seq: s.seq + 1,
                entries,
            };
            match out.send(id, &msg.encode()) {
                Sent::Ok => {
                    s.seq += 1;
                    s.outbox.commit(n);
                    s.last_sent = now;
                    s.backpressured = false;
                    s.counters.updates_out.inc_by(n as u64);
                    s.updates_out += n as u64;
                }
                Sent::Full => {
                    s.counters.backpressure.inc();
                    s.backpressured = true;
                    return;
                }
                Sent::Gone => {
                    debug!(server = %s.server, "agent unreachable");
                    return self.drop_session(id, now);
                }
            }
        }
    }
}
