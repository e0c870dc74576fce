//! The agent's `/api/status` (docs/http.md): what it is connected to, since when, how far
//! behind.
//!
//! The run loop writes into a [`Board`] only when something changes (an AMI connect or
//! disconnect, a new broker state), plus two counters a turn; [`Board::status`] reads it under
//! a lock the loop holds for a few stores, so the HTTP side never waits on the agent's task.
//! How long ago the broker was heard is worked out when read.

use proto::link::State;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// What this build calls itself, as in its hello.
pub use proto::link::SOFTWARE;

/// Longest AMI `detail` and `asterisk` shown, in bytes (the protocol's bound for the same
/// fields of a status message).
pub const MAX_DETAIL: usize = proto::message::MAX_DETAIL;

/// One agent's status, as `/api/status` serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Always `agent`.
    pub role: &'static str,
    pub software: &'static str,
    pub server: String,
    pub uptime_ms: u64,
    pub ami: AmiStatus,
    pub broker: BrokerStatus,
    /// Mirrors this agent keeps.
    pub mirrors: u64,
    /// Setvars on their way to Asterisk, waiting for room, or to be tried again.
    pub pending_writes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AmiStatus {
    pub connected: bool,
    /// Unix time (ms) of the last connect or disconnect (the agent's start before either).
    pub since_ms: u64,
    /// Asterisk's version, once known (kept after a disconnect: the one last seen).
    pub asterisk: Option<String>,
    /// Why AMI is down, if it is: escaped, at most [`MAX_DETAIL`] bytes.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerStatus {
    pub state: BrokerState,
    pub endpoint: String,
    /// Unix time (ms) the session entered this state.
    pub since_ms: u64,
    /// None until the broker has said anything.
    pub last_heard_ms_ago: Option<u64>,
}

/// The broker session, as docs/http.md names its states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerState {
    /// Hello sent, no welcome yet.
    Joining,
    /// Welcomed, the snapshot not whole yet.
    Syncing,
    /// Snapshot applied: updates flow.
    Live,
}

impl From<State> for BrokerState {
    fn from(s: State) -> Self {
        match s {
            State::Joining => BrokerState::Joining,
            State::Welcomed => BrokerState::Syncing,
            State::Live => BrokerState::Live,
        }
    }
}

/// Peer text made fit for a status: escaped ([`ami::shown`]: every character printable) and
/// cut at a character boundary to `max` bytes.
pub fn printable(text: &str, max: usize) -> String {
    let mut s = ami::shown(text).max(max).to_string();
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What changes only now and then, under one lock.
#[derive(Debug)]
struct Parts {
    ami: AmiStatus,
    broker: BrokerState,
    broker_since_ms: u64,
}

/// Where the run loop keeps the status current and the handle reads it.
#[derive(Debug)]
pub(crate) struct Board {
    server: String,
    endpoint: String,
    started: Instant,
    parts: Mutex<Parts>,
    /// Milliseconds after `started` the broker was last heard, plus one (0: never).
    heard: AtomicU64,
    mirrors: AtomicU64,
    pending_writes: AtomicU64,
}

impl Board {
    pub fn new(server: &str, endpoint: &str) -> Board {
        let now = unix_ms();
        Board {
            server: server.to_string(),
            endpoint: endpoint.to_string(),
            started: Instant::now(),
            parts: Mutex::new(Parts {
                ami: AmiStatus {
                    connected: false,
                    since_ms: now,
                    asterisk: None,
                    detail: String::new(),
                },
                broker: BrokerState::Joining,
                broker_since_ms: now,
            }),
            heard: AtomicU64::new(0),
            mirrors: AtomicU64::new(0),
            pending_writes: AtomicU64::new(0),
        }
    }

    /// A panic elsewhere while the lock was held leaves plain values behind: still shown.
    fn parts(&self) -> std::sync::MutexGuard<'_, Parts> {
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The AMI connection as the loop knows it (already bounded by the caller).
    pub fn set_ami(&self, connected: bool, asterisk: Option<String>, detail: String) {
        let mut p = self.parts();
        p.ami = AmiStatus {
            connected,
            since_ms: unix_ms(),
            asterisk,
            detail,
        };
    }

    /// The broker session's state; its `since_ms` moves only when it changes.
    pub fn set_broker(&self, state: BrokerState) {
        let mut p = self.parts();
        if p.broker != state {
            p.broker = state;
            p.broker_since_ms = unix_ms();
        }
    }

    /// The broker said something.
    pub fn heard(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.heard.store(ms + 1, Ordering::Relaxed);
    }

    pub fn set_counts(&self, mirrors: usize, pending_writes: usize) {
        self.mirrors.store(mirrors as u64, Ordering::Relaxed);
        self.pending_writes.store(pending_writes as u64, Ordering::Relaxed);
    }

    pub fn status(&self) -> Status {
        let elapsed = self.started.elapsed().as_millis() as u64;
        let heard = self.heard.load(Ordering::Relaxed);
        let p = self.parts();
        Status {
            role: "agent",
            software: SOFTWARE,
            server: self.server.clone(),
            uptime_ms: elapsed,
            ami: p.ami.clone(),
            broker: BrokerStatus {
                state: p.broker,
                endpoint: self.endpoint.clone(),
                since_ms: p.broker_since_ms,
                last_heard_ms_ago: (heard > 0).then(|| elapsed.saturating_sub(heard - 1)),
            },
            mirrors: self.mirrors.load(Ordering::Relaxed),
            pending_writes: self.pending_writes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_that_of_the_docs() {
        let b = Board::new("a", "tcp://10.0.0.1:5560");
        b.set_ami(true, Some("22.10.1".into()), String::new());
        b.set_broker(BrokerState::from(State::Live));
        b.heard();
        b.set_counts(40, 0);
        let s = b.status();
        let v = serde_json::to_value(&s).unwrap();
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(
            keys(&v),
            [
                "ami",
                "broker",
                "mirrors",
                "pending_writes",
                "role",
                "server",
                "software",
                "uptime_ms"
            ]
        );
        assert_eq!(keys(&v["ami"]), ["asterisk", "connected", "detail", "since_ms"]);
        assert_eq!(
            keys(&v["broker"]),
            ["endpoint", "last_heard_ms_ago", "since_ms", "state"]
        );
        assert_eq!(v["role"], "agent");
        assert_eq!(v["software"], format!("hintbus {}", env!("CARGO_PKG_VERSION")));
        assert_eq!(v["broker"]["state"], "live");
        assert_eq!(v["broker"]["endpoint"], "tcp://10.0.0.1:5560");
        assert_eq!(v["ami"]["asterisk"], "22.10.1");
        assert_eq!(v["mirrors"], 40);
        assert!(v["broker"]["last_heard_ms_ago"].as_u64().unwrap() < 60_000);
        assert!(v["ami"]["since_ms"].as_u64().unwrap() > 1_700_000_000_000);
        assert_eq!(
            serde_json::to_value(BrokerState::from(State::Welcomed)).unwrap(),
            "syncing"
        );
    }

    #[test]
    fn detail_is_printable_and_bounded() {
        let hostile = format!("closed: \x1b[31m\n{}", "é".repeat(400));
        let d = printable(&hostile, MAX_DETAIL);
        assert!(d.len() <= MAX_DETAIL, "{}", d.len());
        assert!(d.chars().all(ami::escape::is_printable), "{d}");
        assert!(d.starts_with("closed: \\x1b[31m\\n"), "{d}");
        assert_eq!(
            printable("server closed the connection", MAX_DETAIL),
            "server closed the connection"
        );
    }
}
