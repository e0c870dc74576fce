//! One agent's session with the broker.

use crate::metrics::{self, Metrics, ServerKind};
use crate::outbox::Outbox;
use crate::table::Staging;
use crate::throttle::{Bucket, LogThrottle};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often an agent's update rate is sampled, at most.
const RATE_SAMPLE: Duration = Duration::from_millis(100);

/// This session's series of the broker's metrics, looked up once rather than per frame.
pub struct Counters {
    /// By kind (device, presence).
    pub updates_in: [Counter; 3],
    pub updates_out: Counter,
    pub coalesced: Counter,
    pub backpressure: Counter,
    pub queue_entries: Gauge,
    pub lag: Gauge<f64, AtomicU64>,
}

impl Counters {
    fn new(m: &Metrics, server: &str) -> Counters {
        let label = metrics::server(server);
        let by_kind = |kind: &str| {
            m.updates_in
                .get_or_create(&ServerKind {
                    server: server.into(),
                    kind: kind.into(),
                })
                .clone()
        };
        Counters {
            updates_in: proto::Kind::ALL.map(|k| by_kind(k.as_str())),
            updates_out: m.updates_out.get_or_create(&label).clone(),
            coalesced: m.coalesced.get_or_create(&label).clone(),
            backpressure: m.backpressure.get_or_create(&label).clone(),
            queue_entries: m.queue_entries.get_or_create(&label).clone(),
            lag: m.lag.get_or_create(&label).clone(),
        }
    }
}

pub struct Session {
    /// The ROUTER identity of the agent's connection.
    pub identity: Vec<u8>,
    /// The server this agent speaks for.
    pub server: Arc<str>,
    pub instance: u64,
    /// What the agent said it is (`hintbus 0.1.0`).
    pub software: String,
    /// A peer broker's session: it takes everything and publishes nothing here; its end is
    /// no server's loss.
    pub peer: bool,
    /// When the hello was accepted.
    pub joined: SystemTime,
    /// What the agent last said of its Asterisk (status messages).
    pub ami_connected: Option<bool>,
    pub asterisk: Option<String>,
    pub ami_detail: String,
    /// Entries of this agent that changed the table, and entries sent to it, in this session
    /// (the metrics count since the broker started).
    pub updates_in: u64,
    pub updates_out: u64,
    pub counters: Counters,
    pub last_seen: Instant,
    pub last_sent: Instant,
    /// Sequence of the last Updates sent.
    pub seq: u64,
    pub outbox: Outbox,
    /// A snapshot is owed (asked for, or deferred by backpressure).
    pub snapshot_owed: bool,
    /// Chunks of a sync not yet complete, packed (a server's whole state may wait here).
    pub sync_buf: Staging,
    /// The rate limit: messages left, refilled continuously.
    pub bucket: Bucket,
    pub last_limited_notice: Option<Instant>,
    /// The log lines its refused messages cause.
    pub log: LogThrottle,
    /// libzmq refused the last send (its queue for this agent is full): try again later.
    pub backpressured: bool,
    /// Updates queued for this agent per second, averaged over the last samples.
    rate: f64,
    queued: u64,
    sampled: Instant,
}

impl Session {
    /// Counts updates queued for this agent, for its rate.
    pub fn count_queued(&mut self, n: u64, now: Instant) {
        self.queued += n;
        if now.duration_since(self.sampled) >= RATE_SAMPLE {
            self.sample_rate(now);
        }
    }

    /// Updates the rate: when updates are counted, and at every broker tick (so that it
    /// decays when they stop).
    pub fn sample_rate(&mut self, now: Instant) {
        let dt = now.duration_since(self.sampled).as_secs_f64();
        if dt > 0.0 {
            self.rate = (self.rate + self.queued as f64 / dt) / 2.0;
            self.queued = 0;
            self.sampled = now;
        }
    }

    /// Until when this agent's pending updates are held back, waiting for more to send them
    /// with: while its batch window is open and at least one more update is expected in what is
    /// left of it. An agent that gets few updates is never held: holding would only add
    /// latency, and wake the broker once more.
    pub fn held_until(&self, window: Duration) -> Instant {
        let window_end = self.last_sent + window;
        if self.rate <= 0.0 {
            return self.last_sent;
        }
        window_end
            .checked_sub(Duration::from_secs_f64((1.0 / self.rate).min(3600.0)))
            .unwrap_or(self.last_sent)
    }

    pub fn new(
        identity: Vec<u8>,
        server: Arc<str>,
        instance: u64,
        software: String,
        m: &Metrics,
        now: Instant,
    ) -> Session {
        Session {
            identity,
            counters: Counters::new(m, &server),
            server,
            instance,
            software,
            peer: false,
            joined: SystemTime::now(),
            ami_connected: None,
            asterisk: None,
            ami_detail: String::new(),
            updates_in: 0,
            updates_out: 0,
            last_seen: now,
            last_sent: now,
            seq: 0,
            outbox: Outbox::default(),
            snapshot_owed: false,
            sync_buf: Staging::default(),
            bucket: Bucket::new(now),
            last_limited_notice: None,
            log: LogThrottle::default(),
            backpressured: false,
            rate: 0.0,
            queued: 0,
            sampled: now,
        }
    }
}
