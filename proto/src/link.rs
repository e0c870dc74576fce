//! A client's side of a broker session: hello, welcome, snapshot, sequence check, heartbeats,
//! and noticing a broker that restarted or went away. An agent has one per broker; a broker
//! has one per peer broker (a session that only takes).

use crate::{Entry, ErrorCode, Msg};
use std::time::{Duration, Instant};
use tracing::{info, warn};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Hello sent, no welcome yet.
    Joining,
    /// Welcomed; waiting for the snapshot.
    Welcomed,
    /// Snapshot applied; updates flow.
    Live,
}

/// What the agent must do after a broker message.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// Send this to the broker.
    Send(Msg),
    /// A complete snapshot: replace (or, from a new broker, merge) the remote states; then
    /// the local state is owed to the broker.
    Snapshot {
        entries: Vec<Entry>,
        merge: bool,
    },
    /// Changes of remote states, in order.
    Updates(Vec<Entry>),
    /// (From a peer broker) the servers it has a session with.
    Hearing(Vec<String>),
}

pub struct Link {
    pub server: String,
    pub instance: u64,
    pub state: State,
    broker: Option<u64>,
    /// The broker of the last snapshot applied (a different one means it restarted).
    snapshot_broker: Option<u64>,
    expected_seq: Option<u64>,
    snapshot_buf: Vec<Entry>,
    pub last_heard: Instant,
    last_hello: Instant,
    /// When the snapshot we wait for was asked for.
    snapshot_asked: Instant,
    pub gaps: u64,
    /// A peer broker's session (it says `peer_hello`).
    peer: bool,
    /// The highest stamp epoch of our server the broker holds (from its welcome).
    pub last_epoch: u64,
    /// Times the broker was silent past the timeout.
    pub heartbeats_missed: u64,
}

/// What a client says it is in its hello.
pub const SOFTWARE: &str = concat!("hintbus ", env!("CARGO_PKG_VERSION"));

impl Link {
    /// A peer broker's session with another broker, as `name`.
    pub fn peer(name: &str) -> Link {
        Link {
            peer: true,
            ..Link::new(name)
        }
    }

    pub fn new(server: &str) -> Link {
        Link {
            server: server.to_string(),
            instance: rand::random::<u64>() >> 11,
            state: State::Joining,
            broker: None,
            snapshot_broker: None,
            expected_seq: None,
            snapshot_buf: Vec::new(),
            last_heard: Instant::now(),
            last_hello: Instant::now() - Duration::from_secs(3600),
            snapshot_asked: Instant::now(),
            gaps: 0,
            heartbeats_missed: 0,
            last_epoch: 0,
            peer: false,
        }
    }

    pub fn hello(&mut self) -> Msg {
        self.state = State::Joining;
        self.expected_seq = None;
        self.snapshot_buf.clear();
        self.last_hello = Instant::now();
        if self.peer {
            return Msg::PeerHello {
                name: self.server.clone(),
                instance: self.instance,
            };
        }
        Msg::Hello {
            server: self.server.clone(),
            instance: self.instance,
            software: SOFTWARE.to_string(),
        }
    }

    pub fn on_message(&mut self, msg: Msg) -> Step {
        self.last_heard = Instant::now();
        match msg {
            Msg::Welcome { broker, last_epoch, .. } => {
                self.last_epoch = last_epoch;
                if self.broker.is_some_and(|b| b != broker) {
                    info!(server = %self.server, "broker restarted: resynchronising");
                }
                self.broker = Some(broker);
                self.state = State::Welcomed;
                self.snapshot_buf.clear();
                self.expected_seq = None;
                self.snapshot_asked = Instant::now();
                Step::Send(Msg::SnapshotRequest)
            }
            Msg::Snapshot { seq, entries, last } => {
                if self.state == State::Joining {
                    return Step::Nothing;
                }
                self.snapshot_buf.extend(entries);
                if !last {
                    return Step::Nothing;
                }
                self.expected_seq = Some(seq + 1);
                self.state = State::Live;
                // From a broker that restarted, the snapshot may not hold every server yet:
                // merge it, and let their syncs fill in the rest.
                let merge = self.snapshot_broker.is_some() && self.snapshot_broker != self.broker;
                self.snapshot_broker = self.broker;
                Step::Snapshot {
                    entries: std::mem::take(&mut self.snapshot_buf),
                    merge,
                }
            }
            Msg::Updates { seq, entries } => match self.expected_seq {
                Some(want) if seq == want => {
                    self.expected_seq = Some(seq + 1);
                    Step::Updates(entries)
                }
                // Sent before the snapshot we are using: already in it.
                Some(want) if seq < want => Step::Nothing,
                Some(want) => {
                    self.gaps += 1;
                    warn!(server = %self.server, expected = want, got = seq, "updates lost: asking for a snapshot");
                    self.expected_seq = None;
                    self.state = State::Welcomed;
                    self.snapshot_asked = Instant::now();
                    Step::Send(Msg::SnapshotRequest)
                }
                None => Step::Nothing,
            },
            Msg::Heartbeat => Step::Nothing,
            Msg::Hearing { servers } if self.peer => Step::Hearing(servers),
            Msg::Error {
                code: ErrorCode::NotWelcome,
                ..
            } => {
                // The broker does not know us (it restarted, or our connection was replaced).
                if self.last_hello.elapsed() > Duration::from_millis(200) {
                    Step::Send(self.hello())
                } else {
                    Step::Nothing
                }
            }
            Msg::Error { code, message } => {
                warn!(server = %self.server, ?code, reason = %ami::shown(&message), "broker refused a message");
                Step::Nothing
            }
            other => {
                warn!(server = %self.server, kind = other.kind(), "unexpected message from broker");
                Step::Nothing
            }
        }
    }

    /// Called every heartbeat: what to send.
    pub fn on_tick(&mut self, timeout: Duration) -> Msg {
        if self.state != State::Joining && self.last_heard.elapsed() > timeout {
            warn!(server = %self.server, silent = ?self.last_heard.elapsed(), "broker silent: saying hello again");
            self.heartbeats_missed += 1;
            return self.hello();
        }
        if self.state == State::Joining {
            return self.hello();
        }
        // A snapshot request (or the snapshot) can be lost under load: ask again.
        if self.state == State::Welcomed && self.snapshot_asked.elapsed() > timeout {
            warn!(server = %self.server, "no snapshot yet: asking again");
            self.snapshot_buf.clear();
            self.snapshot_asked = Instant::now();
            return Msg::SnapshotRequest;
        }
        Msg::Heartbeat
    }
}
