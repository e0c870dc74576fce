//! One agent's queue of updates not yet sent.
//!
//! While the agent keeps up, every update is kept, in order: a phone that rings and is answered
//! within one batch shows both. When the agent falls behind and the queue passes `limit`
//! entries, it is compacted to the latest state per key (latest wins): the slow agent gets the
//! newest state of each device, each device's updates stay in order, and the queue stays
//! bounded by the number of keys instead of growing with the number of changes.
//!
//! The queue holds [`Change`]s, whose names are the table's own (shared, not copied): a sync of
//! 100,000 devices queued for every other agent costs 64 bytes per device per agent. Once such a
//! burst is sent, the queue gives its memory back.

use crate::table::Change;
use proto::Entry;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The limit of a new queue.
const LIMIT: usize = 4096;

pub struct Outbox {
    pending: VecDeque<Change>,
    limit: usize,
    /// The limit when the queue is not behind (compaction raises `limit` meanwhile).
    base_limit: usize,
    /// Updates dropped by compaction because a newer one of the same key was waiting.
    pub coalesced: u64,
    /// Since when the queue has not been empty: the oldest entry has waited no longer.
    since: Option<Instant>,
}

impl Default for Outbox {
    fn default() -> Self {
        Self::with_limit(LIMIT)
    }
}

impl Outbox {
    pub fn with_limit(limit: usize) -> Self {
        Self {
            pending: VecDeque::new(),
            limit: limit.max(1),
            base_limit: limit.max(1),
            coalesced: 0,
            since: None,
        }
    }

    pub fn push(&mut self, c: Change, now: Instant) {
        self.since.get_or_insert(now);
        self.pending.push_back(c);
        if self.pending.len() > self.limit {
            self.compact();
        }
    }

    /// Queues `n` changes at once (a sync's), in order: room for all of them is made first,
    /// rather than the queue being copied each time it doubles.
    pub fn push_all(&mut self, changes: impl IntoIterator<Item = Change>, n: usize, now: Instant) {
        self.pending.reserve_exact(n);
        for c in changes {
            self.push(c, now);
        }
    }

    /// How long entries have waited here without the queue emptying (an upper bound of the
    /// oldest one's wait: the lag metric).
    pub fn waiting(&self, now: Instant) -> Duration {
        self.since.map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// Keeps only the newest entry of each key, at the position of that newest entry.
    ///
    /// Found by sorting positions by key (4 bytes per entry) rather than with a map of keys
    /// (60): a queue may hold a whole server's sync when this runs.
    fn compact(&mut self) {
        let keep: Vec<bool> = {
            let pending = self.pending.make_contiguous();
            let key = |i: u32| {
                let c = &pending[i as usize];
                (&*c.origin, c.kind, &*c.name)
            };
            let mut order: Vec<u32> = (0..pending.len() as u32).collect();
            order.sort_unstable_by(|a, b| key(*a).cmp(&key(*b)).then(a.cmp(b)));
            let mut keep = vec![false; pending.len()];
            for same in order.chunk_by(|a, b| key(*a) == key(*b)) {
                keep[*same.last().expect("chunks are not empty") as usize] = true;
            }
            keep
        };
        let before = self.pending.len();
        let mut keep = keep.into_iter();
        self.pending.retain(|_| keep.next().unwrap_or(true));
        self.coalesced += (before - self.pending.len()) as u64;
        // Still over the limit with distinct keys only: let it grow to twice that before the
        // next compaction, so compaction is not repeated on every push.
        if self.pending.len() * 2 > self.limit {
            self.limit = self.pending.len() * 2;
        }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The oldest `n` entries, still queued until [`Outbox::commit`].
    pub fn peek(&self, n: usize) -> Vec<Entry> {
        self.pending.iter().take(n).map(Change::entry).collect()
    }

    /// Drops the `n` oldest entries once they are sent.
    pub fn commit(&mut self, n: usize) {
        self.pending.drain(..n.min(self.pending.len()));
        // `since` stays while anything is left: an upper bound of the oldest entry's wait.
        self.settle();
    }

    pub fn clear(&mut self) {
        self.pending.clear();
        self.settle();
    }

    /// Once a burst is sent: its memory back, and the limit back to where it was.
    fn settle(&mut self) {
        if self.pending.is_empty() {
            self.limit = self.base_limit;
            self.since = None;
        }
        if self.pending.capacity() > 2 * self.base_limit && self.pending.len() * 4 < self.pending.capacity() {
            self.pending.shrink_to(self.base_limit.max(self.pending.len() * 2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Table;
    use ami::DeviceState::{self, *};

    /// Changes as the table makes them (the table of each test is its own).
    fn change(t: &mut Table, name: &str, state: DeviceState) -> Change {
        t.apply(Entry::device("a", name, state)).expect("a change")
    }

    #[test]
    fn every_update_kept_while_the_agent_keeps_up() {
        let t = &mut Table::default();
        let mut o = Outbox::default();
        o.push(change(t, "SIP/1", Ringing), Instant::now());
        o.push(change(t, "SIP/1", Inuse), Instant::now());
        assert_eq!(o.len(), 2);
        assert_eq!(o.coalesced, 0);
        o.commit(1);
        assert_eq!(o.peek(10)[0].state.as_deref(), Some("INUSE"));
    }

    #[test]
    fn latest_wins_per_key_once_behind() {
        let t = &mut Table::default();
        let mut o = Outbox::with_limit(4);
        o.push(change(t, "SIP/1", Ringing), Instant::now());
        o.push(change(t, "SIP/2", Ringing), Instant::now());
        o.push(change(t, "SIP/1", Inuse), Instant::now());
        o.push(change(t, "SIP/1", Onhold), Instant::now());
        o.push(change(t, "SIP/2", Busy), Instant::now());
        assert_eq!(o.len(), 2);
        assert_eq!(o.coalesced, 3);
        let batch = o.peek(10);
        assert_eq!(
            (batch[0].name.as_str(), batch[0].state.as_deref()),
            ("SIP/1", Some("ONHOLD"))
        );
        assert_eq!(
            (batch[1].name.as_str(), batch[1].state.as_deref()),
            ("SIP/2", Some("BUSY"))
        );
        // Bounded by keys: many updates of few devices stay small.
        for i in 0..1000 {
            o.push(
                change(t, "SIP/3", if i % 2 == 0 { Inuse } else { NotInuse }),
                Instant::now(),
            );
        }
        assert!(o.len() <= 8, "{}", o.len());
    }

    #[test]
    fn a_burst_gives_its_memory_back_once_sent() {
        let t = &mut Table::default();
        let mut o = Outbox::with_limit(16);
        for i in 0..1000 {
            o.push(change(t, &format!("SIP/{i}"), Busy), Instant::now());
        }
        assert_eq!((o.len(), o.coalesced), (1000, 0), "distinct keys are all kept");
        assert!(o.limit >= 1000);
        o.commit(990);
        assert!(o.pending.capacity() <= 32, "{}", o.pending.capacity());
        o.commit(10);
        assert_eq!(o.limit, 16, "compaction as before once caught up");
    }
}
