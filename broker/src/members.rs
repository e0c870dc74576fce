//! The latest event of every queue member the broker has heard of, for a client that joins
//! later (the board shows who is paused, who is on a call).
//!
//! Bounded: at most [`MAX_MEMBERS`] members, the least recently heard forgotten first; each
//! event's fields are bounded by [`proto::queue`]'s limits, so the whole is under 8 MB.

use lru::LruCache;
use proto::{QueueEvent, QueueEventKind};
use serde::Serialize;
use std::num::NonZeroUsize;

pub const MAX_MEMBERS: usize = 10_000;

/// A member's latest event, as `/api/table` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub origin: String,
    pub queue: String,
    pub interface: String,
    pub member: String,
    /// The last event heard.
    pub event: QueueEventKind,
    /// Whether the member is paused, from its last pause event (false until one is heard).
    pub paused: bool,
    /// The reason of its last pause.
    pub reason: String,
    /// When it was heard, in Unix milliseconds.
    pub at_ms: u64,
}

pub struct Members {
    map: LruCache<(String, String, String), Member>,
}

impl Default for Members {
    fn default() -> Self {
        Members {
            map: LruCache::new(NonZeroUsize::new(MAX_MEMBERS).expect("not zero")),
        }
    }
}

impl Members {
    pub fn record(&mut self, e: &QueueEvent, at_ms: u64) {
        let (o, q, i) = e.member_key();
        let key = (o.to_string(), q.to_string(), i.to_string());
        let before = self.map.peek(&key);
        let (paused, reason) = match e.paused {
            Some(p) => (p, e.reason.clone()),
            None => before.map_or((false, String::new()), |m| (m.paused, m.reason.clone())),
        };
        self.map.put(
            key,
            Member {
                origin: e.origin.clone(),
                queue: e.queue.clone(),
                interface: e.interface.clone(),
                member: e.member.clone(),
                event: e.event,
                paused,
                reason,
                at_ms,
            },
        );
    }

    /// Every member, by origin, queue and interface.
    pub fn all(&self) -> Vec<Member> {
        let mut v: Vec<Member> = self.map.iter().map(|(_, m)| m.clone()).collect();
        v.sort_by(|a, b| (&a.origin, &a.queue, &a.interface).cmp(&(&b.origin, &b.queue, &b.interface)));
        v
    }

    /// A lost server's members are forgotten with its states (when the policy removes them).
    pub fn forget_origin(&mut self, origin: &str) {
        let gone: Vec<_> = self
            .map
            .iter()
            .filter(|((o, ..), _)| o == origin)
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.map.pop(&k);
        }
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

    fn ev(i: usize, event: QueueEventKind, paused: Option<bool>) -> QueueEvent {
        QueueEvent {
            origin: "a".into(),
            queue: "q".into(),
            interface: format!("PJSIP/{i}"),
            member: String::new(),
            event,
            paused,
            reason: String::new(),
        }
    }

    #[test]
    fn latest_per_member_pause_kept_and_bounded() {
        let mut m = Members::default();
        m.record(&ev(1, QueueEventKind::Pause, Some(true)), 1);
        m.record(&ev(1, QueueEventKind::Called, None), 2);
        let all = m.all();
        assert_eq!(all.len(), 1);
        assert!(all[0].paused, "a call does not unpause");
        assert_eq!(all[0].event, QueueEventKind::Called);
        for i in 0..MAX_MEMBERS + 10 {
            m.record(&ev(i + 2, QueueEventKind::Called, None), 3);
        }
        assert_eq!(m.len(), MAX_MEMBERS);
        m.forget_origin("a");
        assert!(m.is_empty());
    }
}
