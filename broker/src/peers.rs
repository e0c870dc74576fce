//! Peer brokers: this broker takes each peer's table (a session at the peer that only takes,
//! `peer_hello`), and each peer takes this one's through its own session here. Entries keep
//! their origin's stamps, so what comes back the other way changes nothing. An agent that
//! reaches only one broker still reaches everyone who reaches the other (a network split).
//!
//! A server is lost only when no broker hears it: each broker tells its peers which servers
//! it has a session with (`hearing`, every tick), a broker that loses a session leaves the
//! server be while a live peer hears it, and a server known only through a peer is lost when
//! that peer has been gone for `lost_after` and no one else hears it.

use crate::core::Core;
use crate::events::LostReason;
use proto::link::{Link, State, Step};
use proto::{Entry, Msg};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;
use tracing::{info, warn};

pub struct Peer {
    pub endpoint: String,
    pub link: Link,
    /// The servers it said it has a session with.
    hears: HashSet<String>,
    /// Since when its session is not live.
    down_since: Option<Instant>,
}

impl Peer {
    pub fn new(endpoint: &str, name: &str, now: Instant) -> Peer {
        Peer {
            endpoint: endpoint.to_string(),
            link: Link::peer(name),
            hears: HashSet::new(),
            down_since: Some(now),
        }
    }

    fn live(&self) -> bool {
        self.link.state == State::Live
    }
}

impl Core {
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Whether a live peer has a session with `server`.
    pub(crate) fn heard_by_a_peer(&self, server: &str) -> bool {
        self.peers.iter().any(|p| p.live() && p.hears.contains(server))
    }

    /// The first message to peer `i`.
    pub fn peer_hello(&mut self, i: usize) -> Msg {
        self.peers[i].link.hello()
    }

    /// A frame from peer `i`: what to answer it, if anything.
    pub fn on_peer_frame(&mut self, i: usize, frame: &[u8], now: Instant) -> Option<Msg> {
        let msg = match Msg::decode(frame) {
            Ok(m) => m,
            Err(e) => {
                warn!(peer = %self.peers[i].endpoint, error = %ami::shown(&e.to_string()), "bad frame from peer broker");
                return None;
            }
        };
        match self.peers[i].link.on_message(msg) {
            Step::Nothing => None,
            Step::Send(m) => Some(m),
            Step::Hearing(servers) => {
                let servers: HashSet<String> = servers.into_iter().filter(|s| proto::entry::valid_origin(s)).collect();
                // A server this broker lost that the peer hears: its states, to lift the marks.
                let found = servers
                    .iter()
                    .any(|s| !self.peers[i].hears.contains(s) && self.lost.contains_key(s.as_str()));
                for s in &servers {
                    self.lost.remove(s.as_str());
                }
                self.peers[i].hears = servers;
                found.then_some(Msg::SnapshotRequest)
            }
            Step::Snapshot { entries, .. } => {
                info!(peer = %self.peers[i].endpoint, entries = entries.len(), "peer broker's table taken");
                self.peers[i].down_since = None;
                self.take_from_peer(entries, now);
                None
            }
            Step::Updates(entries) => {
                self.take_from_peer(entries, now);
                None
            }
        }
    }

    /// A peer's entries into the table (merged by stamp, never replacing: this broker's own
    /// agents are in it too). A lost mark on a server this broker hears is not taken: the
    /// server is not lost here.
    fn take_from_peer(&mut self, entries: Vec<Entry>, now: Instant) {
        let heard: HashSet<Arc<str>> = self
            .sessions
            .values()
            .filter(|s| !s.peer)
            .map(|s| s.server.clone())
            .collect();
        let mut changed = Vec::new();
        for e in entries {
            if !proto::entry::valid_origin(&e.origin) || e.value().is_err() {
                continue;
            }
            if e.stamp.is_mark() && heard.contains(e.origin.as_str()) {
                continue;
            }
            // Unstamped states stay with the broker that took them: between peers they would
            // pass every comparison and could go back and forth.
            if e.stamp.is_zero() && e.state.is_some() {
                continue;
            }
            let peer_hears = self.heard_by_a_peer(&e.origin);
            let again = e.clone();
            match self.table.apply(e) {
                Some(c) => changed.push(c),
                None if peer_hears => changed.extend(self.table.unmark(again)),
                None => {}
            }
        }
        self.fan_out(changed, now);
    }

    /// Each tick, for peer `i`: what to send it, and the servers known only through a peer
    /// that has been gone for `lost_after` get their lost policy.
    pub fn peer_tick(&mut self, i: usize, now: Instant) -> Msg {
        let m = self.peers[i].link.on_tick(self.config.heartbeat * 5);
        if self.peers[i].live() {
            self.peers[i].down_since = None;
        } else {
            let since = *self.peers[i].down_since.get_or_insert(now);
            if now.saturating_duration_since(since) > self.config.lost_after {
                self.peers[i].hears.clear();
                // Every server of the table that no one hears now: known only through peers
                // (what the gone peer last listed may be older than its states, so the table
                // is asked, not that list). Each is lost once.
                let gone: Vec<Arc<str>> = self
                    .table
                    .origins()
                    .filter(|o| !self.lost.contains_key(&**o) && !self.peer_heard.contains_key(&**o))
                    .filter(|o| !self.sessions.values().any(|s| s.server == **o))
                    .filter(|o| !self.heard_by_a_peer(o))
                    .cloned()
                    .collect();
                for server in gone {
                    warn!(%server, peer = %self.peers[i].endpoint, "a server heard only through a peer broker that is gone: lost");
                    self.lose(server, LostReason::Heartbeat, now);
                }
            }
        }
        m
    }

    /// What this broker tells its peers' sessions here: the servers it has a session with.
    pub(crate) fn hearing(&self) -> Msg {
        let mut servers: Vec<String> = self
            .sessions
            .values()
            .filter(|s| !s.peer)
            .map(|s| s.server.to_string())
            .collect();
        servers.sort();
        servers.dedup();
        servers.truncate(proto::message::MAX_ENTRIES);
        Msg::Hearing { servers }
    }
}

/// A server whose session here ended, while the peers are asked whether they hear it.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    pub since: Instant,
    /// When a live peer last said it hears the server (None: none has since).
    pub heard: Option<Instant>,
}

impl Core {
    /// Servers whose session here ended: back here, forgotten; heard by a live peer, left
    /// be (said once); heard by no one, lost: a heartbeat after the session ended (the peers
    /// say whom they hear every tick), or `lost_after` after a peer last heard it (a peer's
    /// list that missed it once, or a peer link that dropped out for a moment, is no loss).
    pub(crate) fn check_peer_heard(&mut self, now: Instant) {
        let servers: Vec<Arc<str>> = self.peer_heard.keys().cloned().collect();
        for server in servers {
            let p = self.peer_heard[&server];
            if self.sessions.values().any(|s| s.server == server) {
                self.peer_heard.remove(&server);
            } else if self.heard_by_a_peer(&server) {
                if p.heard.is_none() {
                    info!(%server, "agent's session here ended, but a peer broker still hears it: not lost");
                }
                self.peer_heard.insert(server, Pending { heard: Some(now), ..p });
            } else {
                let (quiet, grace) = match p.heard {
                    Some(t) => (t, self.config.lost_after),
                    None => (p.since, self.config.heartbeat),
                };
                if now.saturating_duration_since(quiet) > grace {
                    self.peer_heard.remove(&server);
                    self.lose(server, LostReason::Heartbeat, now);
                }
            }
        }
    }
}
