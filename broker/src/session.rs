//! One agent's session with the broker.

use crate::outbox::Outbox;
use proto::Entry;
use std::time::Instant;

pub struct Session {
    /// The ROUTER identity of the agent's connection.
    pub identity: Vec<u8>,
    /// The server this agent speaks for.
    pub server: String,
    pub instance: u64,
    pub last_seen: Instant,
    pub last_sent: Instant,
    /// Sequence of the last Updates sent.
    pub seq: u64,
    pub outbox: Outbox,
    /// A snapshot is owed (asked for, or deferred by backpressure).
    pub snapshot_owed: bool,
    /// Chunks of a sync not yet complete.
    pub sync_buf: Vec<Entry>,
    /// Token bucket of the rate limit: messages left, refilled continuously.
    pub tokens: f64,
    pub refilled: Instant,
    pub last_limited_notice: Option<Instant>,
}

impl Session {
    /// Takes one message from the bucket; false when the agent is over its rate.
    pub fn admit(&mut self, per_second: u32) -> bool {
        let now = Instant::now();
        let cap = f64::from(per_second.max(1));
        self.tokens = (self.tokens.min(cap) + now.duration_since(self.refilled).as_secs_f64() * cap).min(cap);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn new(identity: Vec<u8>, server: String, instance: u64) -> Session {
        let now = Instant::now();
        Session {
            identity,
            server,
            instance,
            last_seen: now,
            last_sent: now,
            seq: 0,
            outbox: Outbox::default(),
            snapshot_owed: false,
            sync_buf: Vec::new(),
            tokens: f64::MAX,
            refilled: now,
            last_limited_notice: None,
        }
    }
}
