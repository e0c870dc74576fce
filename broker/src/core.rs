//! The broker core: the protocol without I/O.
//!
//! Frames, ticks and control requests go in; frames to send go out through an [`Outlet`]
//! (which says at once whether libzmq took them), and what happened comes out as [`Event`]s.
//! Time is an argument, so every behaviour (sessions, validation, fan-out, backpressure,
//! snapshots, heartbeats, the lost policy) is tested without a socket or a clock; the
//! broker thread ([`crate::server`]) only moves bytes.
//!
//! One owner, no locks: every update is applied, versioned and queued for every other agent
//! in arrival order.

use crate::config::{BrokerConfig, LostPolicy};
use crate::events::{Event, LostReason};
use crate::members::{Member, Members};
use crate::metrics::{self, Metrics};
use crate::session::Session;
use crate::strangers::Strangers;
use crate::table::{Change, Staged, Table};
use ami::shown;
use proto::message::MAX_ENTRIES;
use proto::{Entry, ErrorCode, Kind, Msg, QueueEvent};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, info, warn};

/// What an [`Outlet`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Ok,
    /// Its queue for that peer is full: try again later (backpressure).
    Full,
    /// That peer's connection is gone.
    Gone,
}

/// Where the core's frames go: the ROUTER socket, or a test's recorder.
pub trait Outlet {
    /// Sends one frame to one peer, never waiting.
    fn send(&mut self, identity: &[u8], frame: &[u8]) -> Sent;
}

/// A live agent, for the status API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentInfo {
    pub server: String,
    pub instance: u64,
    pub software: String,
    pub asterisk: Option<String>,
    /// None until the agent has said (an agent older than the status message never does).
    pub ami_connected: Option<bool>,
    pub ami_detail: String,
    /// Unix milliseconds.
    pub connected_ms: u64,
    pub last_heard_ms_ago: u64,
    pub queued: usize,
    pub lag_ms: u64,
    pub updates_in: u64,
    pub updates_out: u64,
}

/// A server no session speaks for any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostServer {
    pub server: String,
    pub since_ms: u64,
}

/// The core's state as `/api/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub instance: u64,
    pub uptime_ms: u64,
    pub entries: usize,
    pub version: u64,
    pub agents: Vec<AgentInfo>,
    pub lost: Vec<LostServer>,
}

/// The whole table at one version, and the queue members, as `/api/table` shows it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub broker: u64,
    pub version: u64,
    pub changes: Vec<Change>,
    pub members: Vec<Member>,
}

/// What a peer broker's session says it is (agents' `software` cannot be it: it is no
/// version of ours, and only `PeerHello` makes such a session).
const PEER_SOFTWARE: &str = "peer broker";

/// Lost servers remembered for the status API.
const MAX_LOST: usize = 4096;

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub struct Core {
    pub(crate) config: BrokerConfig,
    pub(crate) table: Table,
    /// By ROUTER identity.
    pub(crate) sessions: HashMap<Vec<u8>, Session>,
    /// Peers that have not said hello (yet), each with a small allowance.
    strangers: Strangers,
    pub(crate) metrics: Metrics,
    instance: u64,
    /// Agents are authenticated: a hello must name the server its key is tied to.
    curve: bool,
    pub(crate) events: Vec<Event>,
    members: Members,
    /// Servers whose last session ended, and since when.
    pub(crate) lost: BTreeMap<Arc<str>, SystemTime>,
    started: Instant,
    /// The table's size gauges by kind, looked up once (they are set at every change).
    pub(crate) table_entries: [prometheus_client::metrics::gauge::Gauge; 3],
    /// The peer brokers whose tables this one takes (see [`crate::peers`]).
    pub(crate) peers: Vec<crate::peers::Peer>,
    /// Servers whose session here ended, with peers (see [`crate::peers`]).
    pub(crate) peer_heard: HashMap<Arc<str>, crate::peers::Pending>,
}

impl Core {
    pub fn new(config: BrokerConfig, instance: u64, metrics: Metrics, now: Instant) -> Core {
        let curve = config.curve.is_some();
        let table_entries = Kind::ALL.map(|k| {
            metrics
                .table_entries
                .get_or_create(&metrics::KindLabel {
                    kind: k.as_str().into(),
                })
                .clone()
        });
        let peers = config
            .peers
            .iter()
            .map(|(ep, _)| crate::peers::Peer::new(ep, &config.name, now))
            .collect();
        Core {
            table_entries,
            peers,
            peer_heard: HashMap::new(),
            config,
            table: Table::default(),
            sessions: HashMap::new(),
            strangers: Strangers::default(),
            metrics,
            instance,
            curve,
            events: Vec::new(),
            members: Members::default(),
            lost: BTreeMap::new(),
            started: now,
        }
    }

    pub fn instance(&self) -> u64 {
        self.instance
    }

    pub fn version(&self) -> u64 {
        self.table.version()
    }

    /// The events since the last call, in order.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    pub fn heartbeat(&self) -> Duration {
        self.config.heartbeat
    }

    /// How often [`Core::on_tick`] wants to run.
    pub fn tick_interval(&self) -> Duration {
        (self.config.heartbeat / 4).max(Duration::from_millis(10))
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            broker: self.instance,
            version: self.table.version(),
            changes: self.table.changes().collect(),
            members: self.members.all(),
        }
    }

    pub fn members(&self) -> Vec<Member> {
        self.members.all()
    }

    /// Every entry (for tests and tools; the HTTP API takes a [`Snapshot`]).
    pub fn entries(&self) -> Vec<Entry> {
        self.table.all().collect()
    }

    pub fn status(&self, now: Instant) -> Status {
        let mut agents: Vec<AgentInfo> = self
            .sessions
            .values()
            .map(|s| {
                let silent = now.saturating_duration_since(s.last_seen).as_millis() as u64;
                AgentInfo {
                    server: s.server.to_string(),
                    instance: s.instance,
                    software: s.software.clone(),
                    asterisk: s.asterisk.clone(),
                    ami_connected: s.ami_connected,
                    ami_detail: s.ami_detail.clone(),
                    connected_ms: unix_ms(s.joined),
                    last_heard_ms_ago: silent,
                    queued: s.outbox.len(),
                    lag_ms: s.outbox.waiting(now).as_millis() as u64,
                    updates_in: s.updates_in,
                    updates_out: s.updates_out,
                }
            })
            .collect();
        agents.sort_by(|a, b| a.server.cmp(&b.server));
        Status {
            instance: self.instance,
            uptime_ms: now.saturating_duration_since(self.started).as_millis() as u64,
            entries: self.table.len(),
            version: self.table.version(),
            agents,
            lost: self
                .lost
                .iter()
                .map(|(s, t)| LostServer {
                    server: s.to_string(),
                    since_ms: unix_ms(*t),
                })
                .collect(),
        }
    }

    /// Sends one message to a peer; a sent one counts as something said (no heartbeat due).
    pub(crate) fn send(&mut self, out: &mut impl Outlet, identity: &[u8], msg: &Msg, now: Instant) -> Sent {
        let r = out.send(identity, &msg.encode());
        if r == Sent::Ok {
            if let Some(s) = self.sessions.get_mut(identity) {
                s.last_sent = now;
            }
        }
        r
    }

    /// Answers a refused message, and logs it within the peer's log throttle with its text
    /// escaped: a peer decides neither how much the broker logs nor what a log line looks like.
    fn refuse(&mut self, out: &mut impl Outlet, identity: &[u8], code: ErrorCode, message: String, now: Instant) {
        self.metrics
            .refused_messages
            .get_or_create(&metrics::reason(code.as_str()))
            .inc();
        if let Some((server, suppressed)) = self.may_log(identity, now) {
            warn!(%server, peer = %peer_id(identity), ?code, reason = %shown(&message), suppressed, "message from agent refused");
        }
        let server = self.sessions.get(identity).map(|s| s.server.clone());
        self.events.push(Event::Refused {
            server,
            code,
            message: message.clone(),
        });
        self.send(out, identity, &Msg::Error { code, message }, now);
    }

    /// The peer's server (`?` before hello) when one more line about it may be logged now, with
    /// the number of lines about it held back since the last one.
    fn may_log(&mut self, identity: &[u8], now: Instant) -> Option<(String, u64)> {
        match self.sessions.get_mut(identity) {
            Some(s) => s.log.allow(now).map(|n| (s.server.to_string(), n)),
            None => self.strangers.log(identity, now).allow(now).map(|n| ("?".into(), n)),
        }
    }

    /// Says how many lines were held back about peers that have gone quiet since.
    fn log_suppressed(&mut self, now: Instant) {
        for s in self.sessions.values_mut() {
            if s.log.suppressed() > 0 && s.log.due(now) {
                let n = s.log.said(now);
                warn!(server = %s.server, peer = %peer_id(&s.identity), suppressed = n, "more messages from agent refused, not logged one by one");
            }
        }
        for x in self.strangers.overdue(now) {
            warn!(server = "?", peer = %peer_id(&x.identity), suppressed = x.suppressed, dropped = x.dropped, "peer that has not said hello: more messages refused, not logged one by one, and messages over its allowance dropped unread");
        }
    }

    /// One message from the ROUTER: its frames (identity, then the message) and the ZAP
    /// User-Id (the server id its key is tied to).
    pub fn on_frames(&mut self, out: &mut impl Outlet, parts: Vec<Vec<u8>>, user: Option<String>, now: Instant) {
        self.metrics.messages_received.inc();
        let [identity, frame] = <[Vec<u8>; 2]>::try_from(parts).unwrap_or_else(|p| {
            // A DEALER sends one frame; anything else is not ours.
            [p.first().cloned().unwrap_or_default(), Vec::new()]
        });
        // The rate limit comes before any parsing: a flood costs us as little as possible.
        let rate = self.config.rate_limit;
        if let Some(s) = self.sessions.get_mut(&identity) {
            s.last_seen = now;
            // 0: no limit (`rate_limit = 0`), not a bucket that refills one token a second.
            if rate > 0 && !s.bucket.admit(rate, now) {
                self.metrics.rate_limited.inc();
                let notice = s
                    .last_limited_notice
                    .is_none_or(|t| now.saturating_duration_since(t) > Duration::from_secs(1));
                if notice {
                    s.last_limited_notice = Some(now);
                    let text = format!("agent of {} over {rate} messages/s: messages dropped", s.server);
                    self.refuse(out, &identity, ErrorCode::RateLimited, text, now);
                }
                return;
            }
        } else if !self.strangers.admit(&identity, now) {
            // Before hello: a small allowance, and nothing beyond it is parsed, answered or logged.
            self.metrics.rate_limited.inc();
            return;
        }
        let msg = match Msg::decode(&frame) {
            Ok(m) => m,
            Err(e) => return self.refuse(out, &identity, e.code(), e.to_string(), now),
        };
        match msg {
            Msg::Hello { server, .. } if self.curve && user.as_deref() != Some(server.as_str()) => {
                let key_of = user.unwrap_or_else(|| "?".into());
                let text = format!("the key of {key_of} cannot speak for {server}");
                self.refuse(out, &identity, ErrorCode::Refused, text, now);
            }
            Msg::Hello { software, .. } if software == PEER_SOFTWARE => {
                let text = "a hello that says it is a peer: peers say peer_hello".into();
                self.refuse(out, &identity, ErrorCode::Refused, text, now);
            }
            Msg::Hello {
                server,
                instance,
                software,
            } => self.on_hello(out, identity, server, instance, software, now),
            Msg::PeerHello { name, .. } if self.curve && user.as_deref() != Some(name.as_str()) => {
                let key_of = user.unwrap_or_else(|| "?".into());
                let text = format!("the key of {key_of} cannot speak for peer {name}");
                self.refuse(out, &identity, ErrorCode::Refused, text, now);
            }
            Msg::PeerHello { name, instance } => {
                // A session named so that no origin is its own: it is sent every change.
                let server = format!("peer:{name}");
                self.on_hello(out, identity.clone(), server, instance, PEER_SOFTWARE.into(), now);
                if let Some(s) = self.sessions.get_mut(&identity) {
                    s.peer = true;
                }
            }
            Msg::Heartbeat => {
                if !self.sessions.contains_key(&identity) {
                    let text = "unknown session: send hello".into();
                    self.refuse(out, &identity, ErrorCode::NotWelcome, text, now);
                }
            }
            Msg::Error { code, message } => {
                if let Some((server, suppressed)) = self.may_log(&identity, now) {
                    warn!(%server, peer = %peer_id(&identity), ?code, reason = %shown(&message), suppressed, "agent reported an error");
                }
            }
            other => {
                let Some(session) = self.sessions.get(&identity) else {
                    let text = format!("{} before hello", other.kind());
                    return self.refuse(out, &identity, ErrorCode::NotWelcome, text, now);
                };
                let server = session.server.clone();
                self.on_session_msg(out, &identity, &server, other, now);
            }
        }
    }

    /// A message of an agent with a session.
    fn on_session_msg(&mut self, out: &mut impl Outlet, identity: &[u8], server: &Arc<str>, msg: Msg, now: Instant) {
        let peer = self.sessions.get(identity).is_some_and(|s| s.peer);
        match msg {
            Msg::Update { .. } | Msg::Sync { .. } | Msg::Status { .. } | Msg::Queue { .. } if peer => {
                let text = format!("{} on a peer's session: a peer only takes", msg.kind());
                self.refuse(out, identity, ErrorCode::BadMessage, text, now);
            }
            Msg::Update { entries } => {
                let entries = self.validated(out, identity, server, entries, now);
                let changed: Vec<Change> = entries.into_iter().filter_map(|e| self.table.apply(e)).collect();
                self.count_in(identity, &changed);
                self.fan_out(changed, now);
            }
            Msg::Sync { entries, last, .. } => {
                let entries = self.validated(out, identity, server, entries, now);
                let s = self.sessions.get_mut(identity).expect("session");
                if s.sync_buf.len() + entries.len() > 100 * MAX_ENTRIES {
                    s.sync_buf.clear();
                    let text = "sync larger than 200000 entries".into();
                    return self.refuse(out, identity, ErrorCode::TooLarge, text, now);
                }
                s.sync_buf.extend(entries.iter().filter_map(Staged::new));
                if last {
                    let all = std::mem::take(&mut s.sync_buf);
                    debug!(%server, entries = all.len(), "sync");
                    let changed = self.table.replace_origin(server, all);
                    self.count_in(identity, &changed);
                    self.fan_out(changed, now);
                }
            }
            Msg::SnapshotRequest => {
                let s = self.sessions.get_mut(identity).expect("session");
                s.outbox.clear();
                s.snapshot_owed = true;
            }
            Msg::Status {
                ami_connected,
                asterisk,
                detail,
            } => {
                let s = self.sessions.get_mut(identity).expect("session");
                s.ami_connected = Some(ami_connected);
                if asterisk.is_some() {
                    s.asterisk = asterisk.clone();
                }
                s.ami_detail = detail.clone();
                self.events.push(Event::AgentStatus {
                    server: server.clone(),
                    ami_connected,
                    asterisk,
                    detail,
                });
            }
            Msg::Queue { events } => self.on_queue(out, identity, server, events, now),
            m => {
                let text = format!("{} is not sent by agents", m.kind());
                self.refuse(out, identity, ErrorCode::BadMessage, text, now);
            }
        }
    }

    /// Counts the changes an agent's message made, by kind.
    fn count_in(&mut self, identity: &[u8], changed: &[Change]) {
        let Some(s) = self.sessions.get_mut(identity) else {
            return;
        };
        s.updates_in += changed.len() as u64;
        for kind in Kind::ALL {
            let n = changed.iter().filter(|c| c.kind == kind).count() as u64;
            if n > 0 {
                s.counters.updates_in[kind.index()].inc_by(n);
            }
        }
    }

    /// Queue events: each refused alone when not valid or not the agent's own; the rest
    /// recorded and passed on.
    fn on_queue(
        &mut self,
        out: &mut impl Outlet,
        identity: &[u8],
        server: &Arc<str>,
        events: Vec<QueueEvent>,
        now: Instant,
    ) {
        let mut refused = Vec::new();
        let mut ok = Vec::with_capacity(events.len());
        for e in events {
            let why = if e.origin != **server {
                Some((
                    "wrong_origin",
                    format!("a queue event of {:?}", shown(&e.origin).max(40).to_string()),
                ))
            } else {
                e.validate().err().map(|err| ("bad_entry", err.to_string()))
            };
            match why {
                Some((reason, text)) => {
                    self.metrics
                        .refused_entries
                        .get_or_create(&metrics::reason(reason))
                        .inc();
                    refused.push(text);
                }
                None => ok.push(e),
            }
        }
        if !refused.is_empty() {
            let n = refused.len();
            refused.truncate(3);
            let text = format!(
                "agent of {server}: {n} queue events refused, the rest passed on: {}",
                refused.join("; ")
            );
            self.refuse(out, identity, ErrorCode::BadEntry, text, now);
        }
        if ok.is_empty() {
            return;
        }
        let at = unix_ms(SystemTime::now());
        for e in &ok {
            self.members.record(e, at);
        }
        self.metrics
            .queue_events
            .get_or_create(&metrics::server(server))
            .inc_by(ok.len() as u64);
        self.events.push(Event::Queue(ok.into()));
    }

    fn on_hello(
        &mut self,
        out: &mut impl Outlet,
        identity: Vec<u8>,
        server: String,
        instance: u64,
        software: String,
        now: Instant,
    ) {
        // A peer's session is `peer:<name>` (see `PeerHello`); an agent's id can hold no `:`.
        let name = if software == PEER_SOFTWARE {
            server.strip_prefix("peer:").unwrap_or(&server)
        } else {
            &server
        };
        if !proto::entry::valid_origin(name) {
            let text = format!("server id {server:?} is not valid");
            return self.refuse(out, &identity, ErrorCode::Refused, text, now);
        }
        // The same server on a new connection (agent restarted or reconnected): the old
        // session is over, and its states are not lost.
        self.sessions.retain(|id, s| *s.server != *server || *id == identity);
        self.strangers.forget(&identity);
        info!(%server, instance, software = %shown(&software), "agent joined");
        let server: Arc<str> = server.into();
        self.lost.remove(&server);
        self.peer_heard.remove(&server);
        let session = Session::new(
            identity.clone(),
            server.clone(),
            instance,
            software.clone(),
            &self.metrics,
            now,
        );
        self.sessions.insert(identity.clone(), session);
        self.metrics.sessions.set(self.sessions.len() as i64);
        self.metrics.agents_joined.inc();
        let welcome = Msg::Welcome {
            broker: self.instance,
            heartbeat_ms: self.config.heartbeat.as_millis() as u64,
            last_epoch: self.table.epoch(&server),
        };
        self.events.push(Event::AgentJoined {
            server,
            instance,
            software,
        });
        self.send(out, &identity, &welcome, now);
    }

    /// The entries that are valid and of the agent's own server. Each other entry is refused
    /// alone (counted, logged, and named in one `error` reply): one bad entry never costs the
    /// rest of the message, nor the server its place in the federation.
    fn validated(
        &mut self,
        out: &mut impl Outlet,
        identity: &[u8],
        server: &str,
        entries: Vec<Entry>,
        now: Instant,
    ) -> Vec<Entry> {
        let mut refused: Vec<String> = Vec::new();
        let mut code = ErrorCode::BadEntry;
        let mut ok = Vec::with_capacity(entries.len());
        for mut e in entries {
            let why = if e.origin != server {
                code = ErrorCode::WrongOrigin;
                self.metrics
                    .refused_entries
                    .get_or_create(&metrics::reason("wrong_origin"))
                    .inc();
                Some(format!(
                    "a state of {:?}",
                    e.origin.chars().take(40).collect::<String>()
                ))
            } else {
                match e.value() {
                    Ok(_) => None,
                    Err(err) => {
                        self.metrics
                            .refused_entries
                            .get_or_create(&metrics::reason("bad_entry"))
                            .inc();
                        Some(err.to_string())
                    }
                }
            };
            match why {
                Some(why) => {
                    if refused.len() < 5 {
                        let name: String = e.name.chars().take(80).collect();
                        refused.push(format!("{name:?}: {why}"));
                    } else {
                        refused.push(String::new());
                    }
                }
                None => {
                    e.version = 0;
                    ok.push(e);
                }
            }
        }
        if !refused.is_empty() {
            let n = refused.len();
            let shown: Vec<&str> = refused.iter().filter(|r| !r.is_empty()).map(String::as_str).collect();
            let more = if n > shown.len() {
                format!(" and {} more", n - shown.len())
            } else {
                String::new()
            };
            let text = format!(
                "agent of {server}: {n} entries refused, the rest applied: {}{more}",
                shown.join("; ")
            );
            self.refuse(out, identity, code, text, now);
        }
        ok
    }

    /// The connection is gone; the agent will come back with a new one, or be declared lost.
    pub(crate) fn drop_session(&mut self, id: &[u8], now: Instant) {
        if let Some(s) = self.sessions.remove(id) {
            info!(server = %s.server, "agent connection gone");
            self.session_ended(&s, LostReason::Disconnected, now);
        }
    }

    /// Heartbeats, lost agents, rates, held-back log lines.
    pub fn on_tick(&mut self, out: &mut impl Outlet, now: Instant) {
        let lost_after = self.config.lost_after;
        let lost: Vec<Vec<u8>> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_seen) > lost_after)
            .map(|(id, _)| id.clone())
            .collect();
        for id in lost {
            if let Some(s) = self.sessions.remove(&id) {
                warn!(server = %s.server, silent = ?now.saturating_duration_since(s.last_seen), "agent lost (no heartbeat)");
                self.metrics
                    .heartbeats_missed
                    .get_or_create(&metrics::server(&s.server))
                    .inc();
                self.session_ended(&s, LostReason::Heartbeat, now);
            }
        }
        for s in self.sessions.values_mut() {
            s.sample_rate(now);
            s.counters.queue_entries.set(s.outbox.len() as i64);
            s.counters.lag.set(s.outbox.waiting(now).as_secs_f64());
        }
        self.log_suppressed(now);
        let heartbeat = self.config.heartbeat;
        let idle: Vec<Vec<u8>> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_sent) >= heartbeat && s.outbox.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            self.send(out, &id, &Msg::Heartbeat, now);
        }
        self.check_peer_heard(now);
        // Peer brokers' sessions here learn whom this broker hears.
        let peers: Vec<Vec<u8>> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.peer)
            .map(|(id, _)| id.clone())
            .collect();
        if !peers.is_empty() {
            let hearing = self.hearing();
            for id in peers {
                self.send(out, &id, &hearing, now);
            }
        }
    }

    /// A session is over: unless another session serves that server now, the server is lost
    /// and its policy applied.
    fn session_ended(&mut self, s: &Session, reason: LostReason, now: Instant) {
        self.metrics.sessions.set(self.sessions.len() as i64);
        if s.peer || self.sessions.values().any(|x| x.server == s.server) {
            return;
        }
        self.metrics.forget_session(&s.server);
        if !self.peers.is_empty() {
            // Decided at a tick, once the peers have said (again) whom they hear.
            self.peer_heard
                .entry(s.server.clone())
                .or_insert(crate::peers::Pending {
                    since: now,
                    heard: None,
                });
            return;
        }
        self.lose(s.server.clone(), reason, now);
    }

    /// No broker hears `server`: its lost policy.
    pub(crate) fn lose(&mut self, server: Arc<str>, reason: LostReason, now: Instant) {
        self.metrics
            .agents_lost
            .get_or_create(&metrics::reason(reason.as_str()))
            .inc();
        // Bounded: without CURVE (loopback) any local process may invent server ids.
        if self.lost.len() >= MAX_LOST {
            if let Some(oldest) = self.lost.iter().min_by_key(|(_, t)| **t).map(|(s, _)| s.clone()) {
                self.lost.remove(&oldest);
            }
        }
        self.lost.insert(server.clone(), SystemTime::now());
        let changed = match self.config.lost_policy {
            LostPolicy::Keep => Vec::new(),
            LostPolicy::Unavailable => {
                let mut changed = self.table.mark_devices(&server, ami::DeviceState::Unavailable);
                if self.config.lost_mailboxes_clear {
                    let empty = proto::Packed::Mailbox(proto::Counts::default());
                    changed.extend(self.table.mark(&server, Kind::Mailbox, &empty));
                }
                changed
            }
            LostPolicy::Remove => {
                self.members.forget_origin(&server);
                self.table.remove_origin(&server)
            }
        };
        self.events.push(Event::AgentLost {
            server: server.clone(),
            reason,
        });
        self.fan_out(changed, now);
    }
}

/// A ROUTER identity for logs: hex, at most 16 bytes of it (libzmq's own are 5 bytes; a peer
/// may choose up to 255).
pub fn peer_id(identity: &[u8]) -> String {
    let mut s: String = identity.iter().take(16).map(|b| format!("{b:02x}")).collect();
    if identity.len() > 16 {
        s.push('…');
    }
    s
}
