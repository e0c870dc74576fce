//! Peers that have not said hello: each has a small allowance of messages and its own log
//! throttle, and the map of them is bounded.
//!
//! Before hello a peer has no session, so the per-agent rate limit did not apply: one peer that
//! never said hello sent 88,500 garbage messages a second, each parsed, answered and logged,
//! and an honest agent's latency went from 6 to 73 ms. Now a stranger's messages beyond its
//! allowance are dropped before they are parsed, at the cost of one lookup. The map holds at
//! most [`MAX_STRANGERS`] identities (a ZMTP routing id is at most 255 bytes, so well under
//! 2 MB); the least recently seen is forgotten first, which only gives it a fresh allowance.

use crate::throttle::{Bucket, LogThrottle};
use lru::LruCache;
use std::num::NonZeroUsize;
use std::time::Instant;

/// Identities remembered at once.
pub const MAX_STRANGERS: usize = 4096;

/// Messages per second (and burst) of a peer before its hello is accepted: an agent sends one
/// hello, and a few messages of the session a restarted broker forgot, before it is welcomed.
pub const STRANGER_RATE: u32 = 20;

#[derive(Debug)]
struct Stranger {
    bucket: Bucket,
    log: LogThrottle,
    /// Messages over the allowance since the last summary.
    dropped: u64,
}

/// What to say about a peer that has gone quiet: lines held back, messages dropped unread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub identity: Vec<u8>,
    pub suppressed: u64,
    pub dropped: u64,
}

pub struct Strangers {
    map: LruCache<Vec<u8>, Stranger>,
}

impl Default for Strangers {
    fn default() -> Self {
        Strangers {
            map: LruCache::new(NonZeroUsize::new(MAX_STRANGERS).expect("not zero")),
        }
    }
}

impl Strangers {
    fn entry(&mut self, identity: &[u8], now: Instant) -> &mut Stranger {
        if !self.map.contains(identity) {
            self.map.push(
                identity.to_vec(),
                Stranger {
                    bucket: Bucket::new(now),
                    log: LogThrottle::default(),
                    dropped: 0,
                },
            );
        }
        self.map.get_mut(identity).expect("just inserted")
    }

    /// Takes one message from the peer's allowance; false (and counted) when it is over it.
    pub fn admit(&mut self, identity: &[u8], now: Instant) -> bool {
        let s = self.entry(identity, now);
        let ok = s.bucket.admit(STRANGER_RATE, now);
        if !ok {
            s.dropped += 1;
        }
        ok
    }

    /// The peer's log throttle.
    pub fn log(&mut self, identity: &[u8], now: Instant) -> &mut LogThrottle {
        &mut self.entry(identity, now).log
    }

    /// The peer said hello and has a session now, with its own limits.
    pub fn forget(&mut self, identity: &[u8]) {
        self.map.pop(identity);
    }

    /// Peers whose held-back log lines are due, with what they sent meanwhile.
    pub fn overdue(&mut self, now: Instant) -> Vec<Summary> {
        self.map
            .iter_mut()
            .filter(|(_, s)| (s.log.suppressed() > 0 || s.dropped > 0) && s.log.due(now))
            .map(|(id, s)| Summary {
                identity: id.clone(),
                suppressed: s.log.said(now),
                dropped: std::mem::take(&mut s.dropped),
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowance_per_identity_summary_and_bounded_map() {
        let t = Instant::now();
        let mut s = Strangers::default();
        let admitted = (0..1000).filter(|_| s.admit(b"flood", t)).count();
        assert_eq!(admitted, STRANGER_RATE as usize);
        assert!(s.admit(b"other", t), "another peer has its own allowance");
        // What the flood cost is said once a log period is over, once.
        let later = t + crate::throttle::LOG_PERIOD;
        let summary = s.overdue(later);
        assert_eq!(
            summary,
            [Summary {
                identity: b"flood".to_vec(),
                suppressed: 0,
                dropped: 1000 - STRANGER_RATE as u64
            }]
        );
        assert!(s.overdue(later).is_empty());
        for i in 0..(2 * MAX_STRANGERS) {
            s.admit(format!("id{i}").as_bytes(), t);
        }
        assert_eq!(s.len(), MAX_STRANGERS);
        s.forget(format!("id{}", 2 * MAX_STRANGERS - 1).as_bytes());
        assert_eq!(s.len(), MAX_STRANGERS - 1);
    }
}
