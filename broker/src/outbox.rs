//! One agent's queue of updates not yet sent.
//!
//! Latest wins per key: a key already waiting has its value replaced in place, so a slow
//! agent gets the newest state of each device, each device's updates stay in order (there is
//! only ever one pending per key), and the queue is bounded by the number of keys, not by the
//! number of changes.

use indexmap::IndexMap;
use proto::{Entry, Key};

#[derive(Default)]
pub struct Outbox {
    pending: IndexMap<Key, Entry>,
    /// Updates that replaced an older one still waiting.
    pub coalesced: u64,
}

impl Outbox {
    pub fn push(&mut self, e: Entry) {
        match self.pending.get_mut(&e.key()) {
            Some(slot) => {
                *slot = e;
                self.coalesced += 1;
            }
            None => {
                self.pending.insert(e.key(), e);
            }
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
        self.pending.values().take(n).cloned().collect()
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
    fn latest_wins_in_first_position() {
        let mut o = Outbox::default();
        o.push(Entry::device("a", "SIP/1", Ringing));
        o.push(Entry::device("a", "SIP/2", Ringing));
        o.push(Entry::device("a", "SIP/1", Inuse));
        assert_eq!(o.len(), 2);
        assert_eq!(o.coalesced, 1);
        let batch = o.peek(10);
        assert_eq!(batch[0].state.as_deref(), Some("INUSE"));
        assert_eq!(batch[1].name, "SIP/2");
        o.commit(1);
        assert_eq!(o.peek(10)[0].name, "SIP/2");
    }
}
