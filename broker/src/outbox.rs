//! One agent's queue of updates not yet sent.
//!
//! While the agent keeps up, every update is kept, in order: a phone that rings and is answered
//! within one batch shows both. When the agent falls behind and the queue passes `limit`
//! entries, it is compacted to the latest state per key (latest wins): the slow agent gets the
//! newest state of each device, each device's updates stay in order, and the queue stays
//! bounded by the number of keys instead of growing with the number of changes.

use proto::{Entry, Key};
use std::collections::{HashMap, VecDeque};

pub struct Outbox {
    pending: VecDeque<Entry>,
    limit: usize,
    /// Updates dropped by compaction because a newer one of the same key was waiting.
    pub coalesced: u64,
}

impl Default for Outbox {
    fn default() -> Self {
        Self::with_limit(4096)
    }
}

impl Outbox {
    pub fn with_limit(limit: usize) -> Self {
        Self {
            pending: VecDeque::new(),
            limit: limit.max(1),
            coalesced: 0,
        }
    }

    pub fn push(&mut self, e: Entry) {
        self.pending.push_back(e);
        if self.pending.len() > self.limit {
            self.compact();
        }
    }

    /// Keeps only the newest entry of each key, at the position of that newest entry.
    fn compact(&mut self) {
        let mut newest: HashMap<Key, usize> = HashMap::with_capacity(self.pending.len());
        for (i, e) in self.pending.iter().enumerate() {
            newest.insert(e.key(), i);
        }
        let before = self.pending.len();
        let mut i = 0;
        self.pending.retain(|e| {
            let keep = newest.get(&e.key()) == Some(&i);
            i += 1;
            keep
        });
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
        self.pending.iter().take(n).cloned().collect()
    }

    /// Drops the `n` oldest entries once they are sent.
    pub fn commit(&mut self, n: usize) {
        self.pending.drain(..n.min(self.pending.len()));
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ami::DeviceState::*;

    #[test]
    fn every_update_kept_while_the_agent_keeps_up() {
        let mut o = Outbox::default();
        o.push(Entry::device("a", "SIP/1", Ringing));
        o.push(Entry::device("a", "SIP/1", Inuse));
        assert_eq!(o.len(), 2);
        assert_eq!(o.coalesced, 0);
        o.commit(1);
        assert_eq!(o.peek(10)[0].state.as_deref(), Some("INUSE"));
    }

    #[test]
    fn latest_wins_per_key_once_behind() {
        let mut o = Outbox::with_limit(4);
        o.push(Entry::device("a", "SIP/1", Ringing));
        o.push(Entry::device("a", "SIP/2", Ringing));
        o.push(Entry::device("a", "SIP/1", Inuse));
        o.push(Entry::device("a", "SIP/1", Onhold));
        o.push(Entry::device("a", "SIP/2", Busy));
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
            o.push(Entry::device("a", "SIP/3", if i % 2 == 0 { Inuse } else { NotInuse }));
        }
        assert!(o.len() <= 8, "{}", o.len());
    }
}
