//! Counters of the broker, read by the status API, metrics and benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Stats {
    /// Messages received from agents.
    pub received: AtomicU64,
    /// Table changes (entries that changed a value).
    pub changes: AtomicU64,
    /// Entries sent to agents in Updates.
    pub sent_entries: AtomicU64,
    /// Updates replaced in an agent's queue before it could take them.
    pub coalesced: AtomicU64,
    /// Sends deferred because an agent's queue in libzmq was full.
    pub backpressure: AtomicU64,
    /// Messages refused (bad frame, bad entry, wrong origin, unknown session).
    pub rejected: AtomicU64,
    /// Entries refused alone (not valid), the rest of their message applied.
    pub refused_entries: AtomicU64,
    /// Entries refused alone because they were of another server than the agent's.
    pub refused_wrong_origin: AtomicU64,
    /// Messages dropped because an agent went over its rate limit.
    pub rate_limited: AtomicU64,
    /// Agents declared lost by heartbeat.
    pub lost: AtomicU64,
    /// Snapshots sent.
    pub snapshots: AtomicU64,
    /// Agents with a live session now.
    pub agents: AtomicU64,
    /// Entries in the table now.
    pub entries: AtomicU64,
}

impl Stats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set(c: &AtomicU64, n: u64) {
        c.store(n, Ordering::Relaxed);
    }
}
