//! Who wrote a state, and when, in a way every broker and agent compares alike.
//!
//! Every key has one writer: its origin server's agent. It stamps each state it publishes
//! with its instance's epoch and a counter, and the stamp travels unchanged through every
//! broker; a receiver keeps the highest stamp per key. So two brokers' streams merge at an
//! agent without consensus, and a duplicate is harmless (docs/protocol.md, "Stamps").
//!
//! - `epoch`: the agent instance's, at least its start time in Unix milliseconds and more
//!   than any epoch a broker has seen of that server (the welcome says it), so a restarted
//!   agent's states win even when its clock went back.
//! - `counter`: even for the origin's own states (it adds 2 each time); a broker that has
//!   lost the origin marks its devices with the last counter + 1 (odd): above the last real
//!   state, below the next one. Two brokers that lose the same server mark it alike.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "(u64, u64)", into = "(u64, u64)")]
pub struct Stamp {
    pub epoch: u64,
    pub counter: u64,
}

impl From<(u64, u64)> for Stamp {
    fn from((epoch, counter): (u64, u64)) -> Stamp {
        Stamp { epoch, counter }
    }
}

impl From<Stamp> for (u64, u64) {
    fn from(s: Stamp) -> (u64, u64) {
        (s.epoch, s.counter)
    }
}

impl Stamp {
    pub const ZERO: Stamp = Stamp { epoch: 0, counter: 0 };

    pub fn is_zero(&self) -> bool {
        *self == Stamp::ZERO
    }

    /// A broker's mark on the origin's last state: the server is lost.
    pub fn lost_mark(self) -> Stamp {
        Stamp {
            epoch: self.epoch,
            counter: self.counter | 1,
        }
    }

    /// Whether a broker made it (a lost mark) rather than the origin.
    pub fn is_mark(self) -> bool {
        self.counter & 1 == 1
    }
}

/// The origin agent's stamps: each one higher than the last, across restarts.
#[derive(Debug, Clone)]
pub struct Stamper {
    epoch: u64,
    counter: u64,
}

impl Stamper {
    /// A new instance's: its epoch is now (Unix milliseconds).
    pub fn new() -> Stamper {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        Stamper {
            epoch: now.max(1),
            counter: 0,
        }
    }

    /// The next stamp.
    pub fn stamp(&mut self) -> Stamp {
        self.counter += 2;
        Stamp {
            epoch: self.epoch,
            counter: self.counter,
        }
    }

    /// A broker has seen `epoch` of this server: if it is not below ours (our clock went
    /// back across a restart), ours moves past it. True when it moved: what was published
    /// with the old epoch must be published again.
    pub fn seen(&mut self, epoch: u64) -> bool {
        if epoch < self.epoch {
            return false;
        }
        self.epoch = epoch.saturating_add(1);
        self.counter = 0;
        true
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

impl Default for Stamper {
    fn default() -> Self {
        Stamper::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_marks_and_epochs() {
        let mut s = Stamper::new();
        let a = s.stamp();
        let b = s.stamp();
        assert!(a < b && !a.is_mark());
        let mark = b.lost_mark();
        assert!(
            mark.is_mark() && b < mark && mark < s.stamp(),
            "a mark sits between two states"
        );
        assert_eq!(mark, mark.lost_mark(), "two brokers mark alike");
        // A broker saw a later epoch (our clock went back): ours moves past it.
        let seen = s.epoch() + 1000;
        assert!(s.seen(seen));
        assert!(
            s.stamp()
                > Stamp {
                    epoch: seen,
                    counter: 10
                }
        );
        assert!(!s.seen(1));
        assert_eq!(serde_json::to_string(&b).unwrap(), format!("[{},4]", b.epoch));
    }
}
