//! The broker: one thread owning the ROUTER (agents) and PUB (feed) sockets and the table.
//!
//! One thread, no locks: every update is applied, versioned and queued for every other agent
//! in arrival order. Sends never block: an agent whose libzmq queue is full keeps its updates
//! in its [`Outbox`](crate::outbox::Outbox), coalesced per key, and gets them when it catches
//! up, so one slow or dead agent delays no one else.

use crate::config::{BrokerConfig, LostPolicy};
use crate::session::Session;
use crate::stats::Stats;
use crate::strangers::Strangers;
use crate::table::{Change, Staged, Table};
use ami::shown;
use proto::message::MAX_ENTRIES;
use proto::transport::context;
use proto::{Entry, ErrorCode, Msg};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Requests to the broker thread.
enum Control {
    Stop,
    Table(mpsc::Sender<Vec<Entry>>),
    Agents(mpsc::Sender<Vec<AgentInfo>>),
}

/// A live agent, for the status API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    pub server: String,
    pub instance: u64,
    pub queued: usize,
    pub silent_ms: u64,
}

/// A running broker. Dropping it stops the thread.
pub struct Broker {
    control: mpsc::Sender<Control>,
    wake: UnixDatagram,
    thread: Option<std::thread::JoinHandle<()>>,
    stats: Arc<Stats>,
    endpoint: String,
    feed_endpoint: Option<String>,
    instance: u64,
}

impl Broker {
    /// Binds the sockets (errors name the endpoint) and starts the broker thread.
    pub fn start(config: BrokerConfig) -> Result<Broker, String> {
        let ctx = context();
        let router = ctx.socket(zmq::ROUTER).map_err(|e| e.to_string())?;
        config.socket.apply(&router).map_err(|e| e.to_string())?;
        router.set_router_mandatory(true).map_err(|e| e.to_string())?;
        let instance = rand::random::<u64>() >> 11; // fits a JSON number exactly
        let zap_domain = format!("hintbus-{instance}");
        match &config.curve {
            Some((keys, allow)) => {
                proto::auth::register(&zap_domain, allow.clone())?;
                router.set_zap_domain(&zap_domain).map_err(|e| e.to_string())?;
                router.set_curve_server(true).map_err(|e| e.to_string())?;
                router
                    .set_curve_secretkey(&keys.secret_bytes()?)
                    .map_err(|e| e.to_string())?;
                info!(
                    agents = allow.len(),
                    "CURVE on: only agents in the allow-list are accepted"
                );
            }
            None => {
                if !is_loopback(&config.listen) {
                    return Err(format!(
                        "listening on {} in plain text: give the broker a secret_key_file and an [agents] allow-list, or listen on loopback",
                        config.listen
                    ));
                }
                warn!(listen = %config.listen, "plain text (no CURVE): any local process can join as any server; acceptable on loopback only");
            }
        }
        router
            .bind(&config.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let endpoint = router
            .get_last_endpoint()
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| config.listen.clone());
        let feed = match &config.feed {
            Some(ep) => {
                let pub_ = ctx.socket(zmq::PUB).map_err(|e| e.to_string())?;
                pub_.set_sndhwm(config.socket.hwm).map_err(|e| e.to_string())?;
                pub_.set_linger(0).map_err(|e| e.to_string())?;
                // What a subscriber sends (subscriptions) is bounded as well.
                pub_.set_maxmsgsize(config.socket.max_msg_size)
                    .map_err(|e| e.to_string())?;
                pub_.bind(ep)
                    .map_err(|e| format!("cannot publish the feed on {ep}: {e}"))?;
                Some(pub_)
            }
            None => None,
        };
        let feed_endpoint = feed
            .as_ref()
            .and_then(|s| s.get_last_endpoint().ok().and_then(Result::ok));
        // Wakes the broker thread for a control request: a socket pair, not a libzmq socket,
        // so that looking at it costs nothing while the broker is busy.
        let (wake, wake_rx) = UnixDatagram::pair().map_err(|e| format!("wake-up socket: {e}"))?;
        wake.set_nonblocking(true).map_err(|e| e.to_string())?;
        wake_rx.set_nonblocking(true).map_err(|e| e.to_string())?;
        let router_fd = router.get_fd().map_err(|e| e.to_string())?;
        let (control, control_rx) = mpsc::channel();
        let stats = Arc::new(Stats::default());
        let curve = config.curve.is_some();
        let mut core = Core {
            config,
            router,
            feed,
            wake: wake_rx,
            router_fd,
            control: control_rx,
            table: Table::default(),
            sessions: HashMap::new(),
            strangers: Strangers::default(),
            stats: stats.clone(),
            instance,
            curve,
            stopped: AtomicBool::new(false),
        };
        let thread = std::thread::Builder::new()
            .name("hintbus-broker".into())
            .spawn(move || core.run())
            .map_err(|e| e.to_string())?;
        info!(%endpoint, feed = ?feed_endpoint, "broker listening");
        Ok(Broker {
            control,
            wake,
            thread: Some(thread),
            stats,
            endpoint,
            feed_endpoint,
            instance,
        })
    }

    /// The bound agent endpoint (with the real port when the config said `*`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn feed_endpoint(&self) -> Option<&str> {
        self.feed_endpoint.as_deref()
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Changes when the broker restarts.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    fn request<T>(&self, make: impl FnOnce(mpsc::Sender<T>) -> Control) -> Option<T> {
        let (tx, rx) = mpsc::channel();
        self.control.send(make(tx)).ok()?;
        self.wake_up();
        rx.recv_timeout(Duration::from_secs(5)).ok()
    }

    /// A copy of the whole table.
    pub fn table(&self) -> Vec<Entry> {
        self.request(Control::Table).unwrap_or_default()
    }

    /// The live agents.
    pub fn agents(&self) -> Vec<AgentInfo> {
        self.request(Control::Agents).unwrap_or_default()
    }

    /// Stops the thread and closes the sockets.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn wake_up(&self) {
        // A full buffer means a wake-up is already pending: nothing is lost.
        let _ = self.wake.send(b"x");
    }

    fn shutdown(&mut self) {
        let _ = self.control.send(Control::Stop);
        self.wake_up();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Core {
    config: BrokerConfig,
    router: zmq::Socket,
    feed: Option<zmq::Socket>,
    /// Readable when a control request is waiting.
    wake: UnixDatagram,
    /// The ROUTER's ZMQ_FD, waited on with ppoll (see [`Core::wait`]).
    router_fd: RawFd,
    control: mpsc::Receiver<Control>,
    table: Table,
    /// By ROUTER identity.
    sessions: HashMap<Vec<u8>, Session>,
    /// Peers that have not said hello (yet), each with a small allowance.
    strangers: Strangers,
    stats: Arc<Stats>,
    instance: u64,
    /// Agents are authenticated: a hello must name the server its key is tied to.
    curve: bool,
    stopped: AtomicBool,
}

impl Core {
    fn run(&mut self) {
        let tick = (self.config.heartbeat / 4).max(Duration::from_millis(10));
        let mut next_tick = Instant::now() + tick;
        while !self.stopped.load(Ordering::Relaxed) {
            let now = Instant::now();
            let until = self.next_flush(now).map_or(next_tick, |due| due.min(next_tick));
            self.wait(until.saturating_duration_since(now));
            // Bounded per round so that fan-out and timers keep their turn under a flood.
            for _ in 0..10_000 {
                match self.recv() {
                    Some((parts, user)) => self.on_frames(parts, user),
                    None => break,
                }
            }
            while let Ok(c) = self.control.try_recv() {
                self.on_control(c);
            }
            if Instant::now() >= next_tick {
                self.on_tick();
                next_tick = Instant::now() + tick;
            }
            self.flush_all();
        }
        info!("broker stopped");
    }

    /// Waits until the ROUTER may have something to receive, a control request comes, or
    /// `timeout` has passed.
    ///
    /// `zmq::poll` counts in milliseconds, too coarse to end a batch window on time,
    /// and asks libzmq about every socket each time: so this waits on the ROUTER's `ZMQ_FD`
    /// and the wake-up socket with ppoll(2), which counts in nanoseconds. That descriptor only
    /// signals a change, so `ZMQ_EVENTS` is looked at first (which also catches a message an
    /// earlier send made readable).
    fn wait(&self, timeout: Duration) {
        if self.router.get_events().map_or(true, |ev| ev.contains(zmq::POLLIN)) {
            return;
        }
        let mut fds = [
            libc::pollfd {
                fd: self.router_fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(3600) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `fds` is an array of two initialised pollfd structs and `ts` a timespec, both
        // alive for the duration of the call; a null signal mask leaves the mask unchanged.
        unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, &ts, std::ptr::null()) };
        if fds[1].revents & libc::POLLIN != 0 {
            let mut buf = [0u8; 64];
            while self.wake.recv(&mut buf).is_ok() {}
        }
    }

    /// When the next flush is due: an agent's held updates are released, or libzmq may take
    /// again what it refused (its queue for a slow agent was full).
    fn next_flush(&self, now: Instant) -> Option<Instant> {
        self.sessions
            .values()
            .filter(|s| !s.outbox.is_empty() || s.snapshot_owed)
            .map(|s| {
                if s.backpressured {
                    now + BACKPRESSURE_RETRY
                } else {
                    s.held_until(self.config.batch_window).max(now)
                }
            })
            .min()
    }

    fn on_control(&mut self, c: Control) {
        match c {
            Control::Stop => self.stopped.store(true, Ordering::Relaxed),
            Control::Table(tx) => {
                let _ = tx.send(self.table.all().collect());
            }
            Control::Agents(tx) => {
                let now = Instant::now();
                let mut v: Vec<AgentInfo> = self
                    .sessions
                    .values()
                    .map(|s| AgentInfo {
                        server: s.server.clone(),
                        instance: s.instance,
                        queued: s.outbox.len(),
                        silent_ms: now.duration_since(s.last_seen).as_millis() as u64,
                    })
                    .collect();
                v.sort_by(|a, b| a.server.cmp(&b.server));
                let _ = tx.send(v);
            }
        }
    }

    fn send(&mut self, identity: &[u8], msg: &Msg) -> Result<(), zmq::Error> {
        let r = self.router.send_multipart([identity, &msg.encode()[..]], zmq::DONTWAIT);
        if let Some(s) = self.sessions.get_mut(identity) {
            if r.is_ok() {
                s.last_sent = Instant::now();
            }
        }
        r
    }

    /// Answers a refused message, and logs it within the peer's log throttle with its text
    /// escaped: a peer decides neither how much the broker logs nor what a log line looks like.
    fn refuse(&mut self, identity: &[u8], code: ErrorCode, message: String) {
        Stats::add(&self.stats.rejected, 1);
        if let Some((server, suppressed)) = self.may_log(identity) {
            warn!(%server, peer = %peer_id(identity), ?code, reason = %shown(&message), suppressed, "message from agent refused");
        }
        let _ = self.send(identity, &Msg::Error { code, message });
    }

    /// The peer's server (`?` before hello) when one more line about it may be logged now, with
    /// the number of lines about it held back since the last one.
    fn may_log(&mut self, identity: &[u8]) -> Option<(String, u64)> {
        let now = Instant::now();
        match self.sessions.get_mut(identity) {
            Some(s) => s.log.allow(now).map(|n| (s.server.clone(), n)),
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

    /// One message from the ROUTER, with the ZAP User-Id (the server id its key is tied to).
    fn recv(&mut self) -> Option<(Vec<Vec<u8>>, Option<String>)> {
        let mut parts = Vec::new();
        let mut user = None;
        loop {
            let mut msg = self
                .router
                .recv_msg(if parts.is_empty() { zmq::DONTWAIT } else { 0 })
                .ok()?;
            if user.is_none() {
                user = msg.gets("User-Id").map(str::to_owned);
            }
            let more = msg.get_more();
            // Bounded: a peer cannot make us hold more than a few frames.
            if parts.len() < 4 {
                parts.push(msg.to_vec());
            }
            if !more {
                return Some((parts, user));
            }
        }
    }

    fn on_frames(&mut self, parts: Vec<Vec<u8>>, user: Option<String>) {
        Stats::add(&self.stats.received, 1);
        let [identity, frame] = <[Vec<u8>; 2]>::try_from(parts).unwrap_or_else(|p| {
            // A DEALER sends one frame; anything else is not ours.
            [p.first().cloned().unwrap_or_default(), Vec::new()]
        });
        // The rate limit comes before any parsing: a flood costs us as little as possible.
        if let Some(s) = self.sessions.get_mut(&identity) {
            s.last_seen = Instant::now();
            // 0: no limit (`rate_limit = 0`), not a bucket that refills one token a second.
            if self.config.rate_limit > 0 && !s.admit(self.config.rate_limit) {
                Stats::add(&self.stats.rate_limited, 1);
                let notice = s
                    .last_limited_notice
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(1));
                if notice {
                    s.last_limited_notice = Some(Instant::now());
                    let text = format!(
                        "agent of {} over {} messages/s: messages dropped",
                        s.server, self.config.rate_limit
                    );
                    self.refuse(&identity, ErrorCode::RateLimited, text);
                }
                return;
            }
        } else if !self.strangers.admit(&identity, Instant::now()) {
            // Before hello: a small allowance, and nothing beyond it is parsed, answered or logged.
            Stats::add(&self.stats.rate_limited, 1);
            return;
        }
        let msg = match Msg::decode(&frame) {
            Ok(m) => m,
            Err(e) => return self.refuse(&identity, e.code(), e.to_string()),
        };
        match msg {
            Msg::Hello { server, .. } if self.curve && user.as_deref() != Some(server.as_str()) => {
                let key_of = user.unwrap_or_else(|| "?".into());
                self.refuse(
                    &identity,
                    ErrorCode::Refused,
                    format!("the key of {key_of} cannot speak for {server}"),
                );
            }
            Msg::Hello {
                server,
                instance,
                software,
            } => self.on_hello(identity, server, instance, software),
            Msg::Heartbeat => {
                if !self.sessions.contains_key(&identity) {
                    self.refuse(&identity, ErrorCode::NotWelcome, "unknown session: send hello".into());
                }
            }
            Msg::Error { code, message } => {
                if let Some((server, suppressed)) = self.may_log(&identity) {
                    warn!(%server, peer = %peer_id(&identity), ?code, reason = %shown(&message), suppressed, "agent reported an error");
                }
            }
            other => {
                let Some(session) = self.sessions.get(&identity) else {
                    return self.refuse(
                        &identity,
                        ErrorCode::NotWelcome,
                        format!("{} before hello", other.kind()),
                    );
                };
                let server = session.server.clone();
                match other {
                    Msg::Update { entries } => {
                        let entries = self.validated(&identity, &server, entries);
                        let changed: Vec<Change> = entries.into_iter().filter_map(|e| self.table.apply(e)).collect();
                        self.fan_out(changed);
                    }
                    Msg::Sync { entries, last, .. } => {
                        let entries = self.validated(&identity, &server, entries);
                        let s = self.sessions.get_mut(&identity).expect("session");
                        if s.sync_buf.len() + entries.len() > 100 * MAX_ENTRIES {
                            s.sync_buf.clear();
                            return self.refuse(
                                &identity,
                                ErrorCode::TooLarge,
                                "sync larger than 200000 entries".into(),
                            );
                        }
                        s.sync_buf.extend(entries.iter().filter_map(Staged::new));
                        if last {
                            let all = std::mem::take(&mut s.sync_buf);
                            debug!(%server, entries = all.len(), "sync");
                            let changed = self.table.replace_origin(&server, all);
                            self.fan_out(changed);
                        }
                    }
                    Msg::SnapshotRequest => {
                        let s = self.sessions.get_mut(&identity).expect("session");
                        s.outbox.clear();
                        s.snapshot_owed = true;
                    }
                    m => self.refuse(
                        &identity,
                        ErrorCode::BadMessage,
                        format!("{} is not sent by agents", m.kind()),
                    ),
                }
            }
        }
    }

    /// The entries that are valid and of the agent's own server. Each other entry is refused
    /// alone (counted, logged, and named in one `error` reply): one bad entry never costs the
    /// rest of the message, nor the server its place in the federation.
    fn validated(&mut self, identity: &[u8], server: &str, entries: Vec<Entry>) -> Vec<Entry> {
        let mut refused: Vec<String> = Vec::new();
        let mut code = ErrorCode::BadEntry;
        let mut ok = Vec::with_capacity(entries.len());
        for mut e in entries {
            let why = if e.origin != server {
                code = ErrorCode::WrongOrigin;
                Stats::add(&self.stats.refused_wrong_origin, 1);
                Some(format!(
                    "a state of {:?}",
                    e.origin.chars().take(40).collect::<String>()
                ))
            } else {
                match e.value() {
                    Ok(_) => None,
                    Err(err) => {
                        Stats::add(&self.stats.refused_entries, 1);
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
            let shown: Vec<&String> = refused.iter().filter(|r| !r.is_empty()).collect();
            let more = if n > shown.len() {
                format!(" and {} more", n - shown.len())
            } else {
                String::new()
            };
            let list: Vec<&str> = shown.iter().map(|s| s.as_str()).collect();
            let text = format!(
                "agent of {server}: {n} entries refused, the rest applied: {}{more}",
                list.join("; ")
            );
            self.refuse(identity, code, text);
        }
        ok
    }

    fn on_hello(&mut self, identity: Vec<u8>, server: String, instance: u64, software: String) {
        if !proto::entry::valid_origin(&server) {
            return self.refuse(
                &identity,
                ErrorCode::Refused,
                format!("server id {server:?} is not valid"),
            );
        }
        // The same server on a new connection (agent restarted or reconnected): the old
        // session is over, and its states are not lost.
        self.sessions.retain(|id, s| s.server != server || *id == identity);
        self.strangers.forget(&identity);
        info!(%server, instance, software = %shown(&software), "agent joined");
        self.sessions
            .insert(identity.clone(), Session::new(identity.clone(), server, instance));
        Stats::set(&self.stats.agents, self.sessions.len() as u64);
        let welcome = Msg::Welcome {
            broker: self.instance,
            heartbeat_ms: self.config.heartbeat.as_millis() as u64,
        };
        let _ = self.send(&identity, &welcome);
    }

    /// Queues changes for every agent but their origin's, and publishes them on the feed.
    fn fan_out(&mut self, changed: Vec<Change>) {
        if changed.is_empty() {
            return;
        }
        Stats::add(&self.stats.changes, changed.len() as u64);
        Stats::set(&self.stats.entries, self.table.len() as u64);
        let now = Instant::now();
        for s in self.sessions.values_mut() {
            let before = s.outbox.coalesced;
            let theirs = |e: &&Change| *e.origin != *s.server;
            let queued = changed.iter().filter(theirs).count();
            s.outbox.push_all(changed.iter().filter(theirs).cloned(), queued);
            s.count_queued(queued as u64, now);
            Stats::add(&self.stats.coalesced, s.outbox.coalesced - before);
        }
        if let Some(feed) = &self.feed {
            for e in &changed {
                let topic = format!(
                    "{}.{}",
                    if e.kind == proto::Kind::Device {
                        "device"
                    } else {
                        "presence"
                    },
                    e.origin
                );
                let body = serde_json::to_vec(&e.entry()).expect("entries serialize");
                // PUB never blocks: a slow observer loses messages, agents are not affected.
                let _ = feed.send_multipart([topic.as_bytes(), &body[..]], zmq::DONTWAIT);
            }
        }
    }

    /// Sends every agent what it is owed, unless its updates are held for the batch window
    /// (see [`Session::held_until`]): under load they then leave together, one frame (and one
    /// wake-up of every thread on the way) instead of one per update; when idle nothing waits.
    fn flush_all(&mut self) {
        let window = self.config.batch_window;
        let now = Instant::now();
        let ids: Vec<Vec<u8>> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.snapshot_owed || (!s.outbox.is_empty() && s.held_until(window) <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.flush(&id);
        }
    }

    /// Sends what one agent is owed, until libzmq's queue for it is full.
    fn flush(&mut self, id: &[u8]) {
        let batch = self.config.batch.clamp(1, MAX_ENTRIES);
        let Some(s) = self.sessions.get(id) else { return };
        if s.snapshot_owed {
            let seq = s.seq;
            // Made chunk by chunk from the table as it is sent: never a copy of the whole table.
            let server = s.server.clone();
            let mut entries = self.table.others(&server).peekable();
            let mut chunks = 0;
            while chunks == 0 || entries.peek().is_some() {
                let chunk: Vec<Entry> = entries.by_ref().take(batch).collect();
                let msg = Msg::Snapshot {
                    seq,
                    entries: chunk,
                    last: entries.peek().is_none(),
                };
                // A snapshot is sent whole or not at all; a partial one is asked for again.
                let sent = self.router.send_multipart([id, &msg.encode()[..]], zmq::DONTWAIT);
                if let Err(e) = sent {
                    drop(entries);
                    if chunks > 0 {
                        if let Some(s) = self.sessions.get_mut(id) {
                            s.last_sent = Instant::now();
                        }
                    }
                    Stats::add(&self.stats.backpressure, 1);
                    debug!(error = %e, "snapshot deferred");
                    if e == zmq::Error::EHOSTUNREACH {
                        self.drop_session(id);
                    } else if let Some(s) = self.sessions.get_mut(id) {
                        s.backpressured = true;
                    }
                    return;
                }
                chunks += 1;
            }
            drop(entries);
            Stats::add(&self.stats.snapshots, 1);
            if let Some(s) = self.sessions.get_mut(id) {
                s.last_sent = Instant::now();
                s.backpressured = false;
                s.snapshot_owed = false;
            }
        }
        loop {
            let Some(s) = self.sessions.get_mut(id) else { return };
            if s.outbox.is_empty() {
                return;
            }
            let entries = s.outbox.peek(batch);
            let n = entries.len();
            let msg = Msg::Updates {
                seq: s.seq + 1,
                entries,
            };
            match self.router.send_multipart([id, &msg.encode()[..]], zmq::DONTWAIT) {
                Ok(()) => {
                    s.seq += 1;
                    s.outbox.commit(n);
                    s.last_sent = Instant::now();
                    s.backpressured = false;
                    Stats::add(&self.stats.sent_entries, n as u64);
                }
                Err(zmq::Error::EAGAIN) => {
                    Stats::add(&self.stats.backpressure, 1);
                    s.backpressured = true;
                    return;
                }
                Err(e) => {
                    debug!(server = %s.server, error = %e, "agent unreachable");
                    self.drop_session(id);
                    return;
                }
            }
        }
    }

    /// The connection is gone; the agent will come back with a new one, or be declared lost.
    fn drop_session(&mut self, id: &[u8]) {
        if let Some(s) = self.sessions.remove(id) {
            info!(server = %s.server, "agent connection gone");
            self.lost(&s.server);
        }
        Stats::set(&self.stats.agents, self.sessions.len() as u64);
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let lost: Vec<Vec<u8>> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.duration_since(s.last_seen) > self.config.lost_after)
            .map(|(id, _)| id.clone())
            .collect();
        for id in lost {
            if let Some(s) = self.sessions.remove(&id) {
                warn!(server = %s.server, silent = ?now.duration_since(s.last_seen), "agent lost (no heartbeat)");
                Stats::add(&self.stats.lost, 1);
                self.lost(&s.server);
            }
        }
        Stats::set(&self.stats.agents, self.sessions.len() as u64);
        for s in self.sessions.values_mut() {
            s.sample_rate(now);
        }
        self.log_suppressed(now);
        let idle: Vec<Vec<u8>> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.duration_since(s.last_sent) >= self.config.heartbeat && s.outbox.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            let _ = self.send(&id, &Msg::Heartbeat);
        }
    }

    /// Applies the lost-server policy, unless another session serves that server now.
    fn lost(&mut self, server: &str) {
        if self.sessions.values().any(|s| s.server == server) {
            return;
        }
        let changed = match self.config.lost_policy {
            LostPolicy::Keep => Vec::new(),
            LostPolicy::Unavailable => self.table.mark_devices(server, ami::DeviceState::Unavailable),
            LostPolicy::Remove => self.table.remove_origin(server),
        };
        self.fan_out(changed);
    }
}

/// A ROUTER identity for logs: hex, at most 16 bytes of it (libzmq's own are 5 bytes; a peer
/// may choose up to 255).
fn peer_id(identity: &[u8]) -> String {
    let mut s: String = identity.iter().take(16).map(|b| format!("{b:02x}")).collect();
    if identity.len() > 16 {
        s.push('…');
    }
    s
}

/// How soon a send that libzmq refused (its queue for that agent was full) is tried again.
const BACKPRESSURE_RETRY: Duration = Duration::from_millis(2);

/// Whether a `tcp://host:port` endpoint is on this machine only.
pub fn is_loopback(endpoint: &str) -> bool {
    let host = endpoint
        .trim_start_matches("tcp://")
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    endpoint.starts_with("inproc://")
        || endpoint.starts_with("ipc://")
        || host == "localhost"
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
