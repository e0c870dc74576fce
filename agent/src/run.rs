//! The agent: one task that joins its Asterisk (AMI) to the broker (ZeroMQ).
//!
//! Local side: on every AMI (re)connect the full state is re-read (DeviceStateList,
//! PresenceStateList) and published as a sync; each change after that is published as it
//! comes. Names in the mirror namespace are our own writes and are never published.
//!
//! Remote side: the broker's snapshot and updates set the mirrors, which are written with
//! pipelined Setvars, skipping what Asterisk already shows, and re-applied after every AMI
//! reconnect for whatever Asterisk lost.

use crate::asterisk::{fitted, observed, setvar};
use crate::brokers::Brokers;
use crate::config::AgentConfig;
use crate::guard::{Guard, GuardWrite};
use crate::local::{classify, Class, Local};
use crate::metrics::Metrics;
use crate::mirror::Mirror;
use crate::remote::Remote;
use crate::status::{printable, Board, BrokerState, Status, MAX_DETAIL};
use ami::client::ActionError;
use ami::{Client, ClientEvent, Message};
use prometheus_client::registry::Registry;
use proto::link::{State, Step};
use proto::{Entry, Kind, Msg, QueueEvent, Stamp, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// A running agent.
pub struct AgentHandle {
    pub metrics: Arc<Metrics>,
    pub client: Client,
    board: Arc<Board>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl AgentHandle {
    /// Registers this agent's metrics and its AMI client's into `registry`. The caller gives
    /// the `server` label (`registry.sub_registry_with_label`).
    pub fn register(&self, registry: &mut Registry) {
        self.metrics.register(registry);
        self.client.metrics().register(registry);
    }

    /// The agent's `/api/status`, read without waiting on the agent's task.
    pub fn status(&self) -> Status {
        self.board.status()
    }

    /// Reads the status as [`AgentHandle::status`] does, for an HTTP listener that outlives
    /// no agent but must not hold its handle.
    pub fn status_reader(&self) -> impl Fn() -> Status + Send + Sync + 'static {
        let board = self.board.clone();
        move || board.status()
    }

    /// Stops the agent and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// The QueueStatus answer for one member the queue guard had not learnt.
struct GuardLookup {
    member: (String, String),
    answer: Result<ami::client::ListResult, ActionError>,
}

/// The backlog is sent again when fewer writes than this are on their way, this many at a
/// time (the AMI client queues 4,096 actions).
const REFILL_BELOW: usize = 1024;
const REFILL_BATCH: usize = 2048;

/// Events of one member kept while it is looked up: a call has a handful.
const GUARD_PENDING_MAX: usize = 32;

/// A Setvar sent and not yet answered.
struct Written {
    target: String,
    value: Value,
    at: std::time::Instant,
    /// For a queue guard write: (member, queue), for the log.
    guard: Option<(String, String)>,
}

struct Agent {
    cfg: AgentConfig,
    client: Client,
    /// Every broker's session (see [`crate::brokers`]).
    brokers: Brokers,
    /// With more than one broker: each one's view, merged (see [`crate::remote`]).
    remote: Option<Remote>,
    /// Since when no broker session is live (the mirrors go dark after `broker_timeout`).
    none_live_since: Option<std::time::Instant>,
    mirror: Mirror,
    local: Local,
    /// The local state has been read since the last AMI (re)connect.
    local_ready: bool,
    /// Local changes waiting to be sent.
    outgoing: Vec<Entry>,
    /// Events consumed so far, to tell stale ones from a list's items.
    events_seen: u64,
    /// Events numbered below these are older than the last device / presence list.
    device_list_at: u64,
    presence_list_at: u64,
    mailbox_list_at: u64,
    /// This Asterisk answered MWIUpdate with "Invalid/unknown command" (res_mwi_external_ami
    /// not loaded): mailbox writes wait for the next AMI connect.
    mwiupdate_missing: bool,
    sync_id: u64,
    answers: ami::client::Answers,
    /// By token.
    written: std::collections::HashMap<u64, Written>,
    next_token: u64,
    guard: Option<Guard>,
    /// The server is Asterisk 1.8 or 11: state comes from ExtensionStatus of `legacy_hints`.
    legacy: bool,
    /// A frame to the broker was dropped: the whole local state is sent again at the next tick.
    sync_owed: std::collections::BTreeSet<usize>,
    /// The last resync failed (a list timed out or was too large): it is tried again at the
    /// first tick after this moment, later after each failure in a row.
    resync_owed: Option<std::time::Instant>,
    resync_backoff: ami::client::Backoff,
    /// A resync is reading the lists (see [`crate::resync`]): AMI events wait until it is done.
    resyncing: bool,
    /// Another resync was asked for while one was running.
    resync_again: bool,
    /// Where the resync task hands its reads back.
    resync_tx: mpsc::UnboundedSender<crate::resync::Read>,
    /// Queue members being looked up for the guard, with the events of theirs that wait for
    /// the answer (in order; a few per member at most).
    guard_pending: std::collections::HashMap<(String, String), std::collections::VecDeque<Message>>,
    guard_tx: mpsc::UnboundedSender<GuardLookup>,
    /// Targets whose last write failed: tried again every heartbeat.
    retry: std::collections::BTreeSet<String>,
    /// Targets not sent because the queue to Asterisk was full: sent as answers make room.
    backlog: std::collections::BTreeSet<String>,
    /// DBPuts of new mirror names on their way, by token (see [`crate::memory`]).
    remembering: std::collections::HashMap<u64, (String, String)>,
    /// astdb's memory carries its marker, or this run has written it (see [`crate::memory`]).
    memory_kept: bool,
    /// A snapshot was applied in this run: every target of now is known and remembered at the
    /// next write, so the marker may follow.
    snapshot_seen: bool,
    /// The running resync's task (one that ended without a result is noticed at a tick).
    resync_task: Option<tokio::task::JoinHandle<()>>,
    /// Said once that astdb cannot hold our mirror names.
    memory_warned: bool,
    /// Mirrors something else keeps changing back.
    overrides: crate::overrides::Overrides,
    /// Stamps of what this server publishes (see [`proto::stamp`]).
    stamper: proto::Stamper,
    metrics: Arc<Metrics>,
    /// What `/api/status` shows, kept current as things change.
    board: Arc<Board>,
    /// The AMI connection as last told (to the board and the broker): connected, Asterisk's
    /// version (the last known), why it is down.
    ami_connected: bool,
    asterisk: Option<String>,
    ami_detail: String,
    /// The broker state the board and the gauge show.
    shown_state: State,
    /// Queue members' events of this turn, sent at its end (see [`crate::queue_events`]).
    queue_batch: crate::queue_events::Batch,
}

/// Starts an agent.
pub fn spawn(cfg: AgentConfig) -> Result<AgentHandle, String> {
    let (client, ami_rx) = Client::start(cfg.ami.clone());
    let brokers = Brokers::connect(&cfg)?;
    let endpoints: Vec<String> = brokers.conns.iter().map(|c| c.endpoint.clone()).collect();
    let metrics = Arc::new(Metrics::default());
    let board = Arc::new(Board::new(&cfg.server, &endpoints.join(", ")));
    let shutdown = CancellationToken::new();
    let (answers, answers_rx) = mpsc::unbounded_channel();
    let (resync_tx, resync_rx) = mpsc::unbounded_channel();
    let (guard_tx, guard_rx) = mpsc::unbounded_channel();
    let agent = Agent {
        remote: (brokers.len() > 1).then(|| Remote::new(brokers.len())),
        none_live_since: Some(std::time::Instant::now()),
        mirror: {
            let mut m = Mirror::new(cfg.device_template.clone(), cfg.presence_template.clone());
            m.set_mailbox_sink(&cfg.mwi_sink);
            m
        },
        local: Local::default(),
        local_ready: false,
        outgoing: Vec::new(),
        events_seen: 0,
        device_list_at: 0,
        presence_list_at: 0,
        mailbox_list_at: 0,
        mwiupdate_missing: false,
        sync_id: 0,
        brokers,
        client: client.clone(),
        answers,
        guard: cfg.queue_guard.clone().map(Guard::new),
        legacy: false,
        sync_owed: Default::default(),
        resync_owed: None,
        resync_backoff: ami::client::Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
        resyncing: false,
        resync_again: false,
        resync_tx,
        guard_pending: Default::default(),
        guard_tx,
        written: Default::default(),
        next_token: 0,
        retry: Default::default(),
        backlog: Default::default(),
        remembering: Default::default(),
        memory_kept: false,
        snapshot_seen: false,
        resync_task: None,
        memory_warned: false,
        overrides: Default::default(),
        stamper: proto::Stamper::new(),
        metrics: metrics.clone(),
        board: board.clone(),
        ami_connected: false,
        asterisk: None,
        ami_detail: String::new(),
        shown_state: State::Joining,
        queue_batch: Default::default(),
        cfg,
    };
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        agent.run(ami_rx, answers_rx, resync_rx, guard_rx, stop).await;
    });
    Ok(AgentHandle {
        metrics,
        board,
        client,
        shutdown,
        task,
    })
}

impl Agent {
    async fn run(
        mut self,
        mut ami_rx: mpsc::Receiver<ClientEvent>,
        mut answers_rx: mpsc::UnboundedReceiver<(u64, Result<Message, ami::client::ActionError>)>,
        mut resync_rx: mpsc::UnboundedReceiver<crate::resync::Read>,
        mut guard_rx: mpsc::UnboundedReceiver<GuardLookup>,
        shutdown: CancellationToken,
    ) {
        info!(server = %self.cfg.server, broker = %self.cfg.broker, ami = %self.cfg.ami.addr, "agent starting");
        self.brokers.hello_all();
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + self.cfg.heartbeat, self.cfg.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            tokio::select! {
                ev = ami_rx.recv(), if !self.resyncing => match ev {
                    Some(ev) => self.on_ami(ev),
                    None => break,
                },
                Some(read) = resync_rx.recv() => self.resync_done(read),
                Some(lookup) = guard_rx.recv() => self.guard_lookup_done(lookup),
                (i, frame) = self.brokers.recv() => self.on_broker_frame(i, &frame),
                Some((token, answer)) = answers_rx.recv() => self.on_answer(token, answer.map(|_| ())),
                _ = tick.tick() => {
                    for i in 0..self.brokers.len() {
                        let m = self.brokers.conns[i].link.on_tick(self.cfg.broker_timeout);
                        self.brokers.send_to(i, &m);
                    }
                    self.links_changed();
                    if self.resync_owed.is_some_and(|at| at <= std::time::Instant::now()) && self.client.is_connected() {
                        self.resync_owed = None;
                        self.resync();
                    }
                    // Owed to a broker that is live still (another gets one after its snapshot).
                    let live = self.brokers.live();
                    self.sync_owed.retain(|i| live.contains(i));
                    if !self.sync_owed.is_empty() && self.local_ready {
                        warn!(server = %self.cfg.server, "frames to the broker were dropped: sending the whole state again");
                        for i in std::mem::take(&mut self.sync_owed) {
                            self.send_sync_to(Some(i));
                        }
                    }
                    self.expire_writes();
                    if self.resync_task.as_ref().is_some_and(|t| t.is_finished()) && self.resyncing {
                        // Its result would have come first: it ended without one.
                        warn!(server = %self.cfg.server, "the state lists were not read; trying again");
                        self.resyncing = false;
                        self.resync_task = None;
                        self.resync_owed = Some(std::time::Instant::now());
                    }
                    let due = self.overrides.due(std::time::Instant::now());
                    self.write_targets(due);
                    if !self.retry.is_empty() && self.client.is_connected() {
                        let again: Vec<String> = std::mem::take(&mut self.retry).into_iter().collect();
                        // Only Setvars go into `written`, and nothing leaves it meanwhile.
                        let before = self.written.len();
                        self.write_targets(again);
                        let sent = self.written.len().saturating_sub(before);
                        self.metrics.setvar_retried.inc_by(sent as u64);
                    }
                }
                _ = &mut cancelled => break,
            }
            // What else is already here is handled in the same turn: one turn of `select!` per
            // wake-up rather than per message, and local events leave in one frame (one wake-up
            // of each thread on the way) rather than one each. Bounded, so ticks and broker
            // frames keep their turn.
            for _ in 0..512 {
                if let Ok((token, answer)) = answers_rx.try_recv() {
                    self.on_answer(token, answer.map(|_| ()));
                } else if let Some(ev) = (!self.resyncing).then(|| ami_rx.try_recv().ok()).flatten() {
                    self.on_ami(ev);
                } else {
                    break;
                }
            }
            self.flush_outgoing();
            self.flush_queue_events();
            self.refill();
            self.update_metrics();
        }
        self.client.shutdown();
        info!(server = %self.cfg.server, "agent stopped");
    }

    /// Counts kept by the link and the mirror, and the gauges, brought into the metrics once
    /// per turn of the loop.
    fn update_metrics(&mut self) {
        let m = &self.metrics;
        Metrics::catch_up(&m.gaps, self.brokers.gaps());
        Metrics::catch_up(&m.heartbeats_missed, self.brokers.heartbeats_missed());
        Metrics::catch_up(&m.collisions, self.mirror.local_collisions);
        Metrics::catch_up(&m.name_errors, self.mirror.name_errors);
        m.mirrors.set(self.mirror.target_count() as i64);
        let pending = self.written.len() + self.backlog.len() + self.retry.len();
        self.board.set_counts(self.mirror.target_count(), pending);
        let state = self.brokers.best_state();
        if state != self.shown_state {
            self.shown_state = state;
            m.broker_live.set(i64::from(state == State::Live));
            self.board.set_broker(BrokerState::from(state));
        }
    }

    /// The AMI connection changed: shown, and told to the broker when it has a session for
    /// us (a hello not yet answered would get `not_welcome`; it is told once live anyway).
    fn ami_changed(&mut self, connected: bool, detail: &str) {
        self.ami_connected = connected;
        self.ami_detail = printable(detail, MAX_DETAIL);
        self.board
            .set_ami(connected, self.asterisk.clone(), self.ami_detail.clone());
        self.send_status();
    }

    fn send_status(&self) {
        self.send(&Msg::Status {
            ami_connected: self.ami_connected,
            asterisk: self.asterisk.clone(),
            detail: self.ami_detail.clone(),
        });
    }

    /// One AMI event that may be a queue member's: read, validated (an invalid one is dropped
    /// alone, counted and warned), and batched while the broker session is live.
    fn queue_event(&mut self, m: &Message) {
        if !self.brokers.any_live() {
            return; // an event, not a state: nothing is kept for later
        }
        let Some(ev) = crate::queue_events::read(&self.cfg.server, m) else {
            return;
        };
        if let Err(e) = ev.validate() {
            self.metrics.queue_events_invalid.inc();
            warn!(server = %self.cfg.server, event = %ami::shown(m.event_name().unwrap_or("")), queue = %ami::shown(&ev.queue), interface = %ami::shown(&ev.interface), error = %e, "queue event from Asterisk not valid: not sent");
            return;
        }
        if let Some(full) = self.queue_batch.push(ev) {
            self.send_queue_events(full);
        }
    }

    fn flush_queue_events(&mut self) {
        if self.queue_batch.is_empty() {
            return;
        }
        let events = self.queue_batch.take();
        // The session may have ended in this turn: they are not kept.
        if self.brokers.any_live() {
            self.send_queue_events(events);
        }
    }

    fn send_queue_events(&mut self, events: Vec<QueueEvent>) {
        let n = events.len() as u64;
        if self.send(&Msg::Queue { events }) {
            self.metrics.queue_events.inc_by(n);
        }
    }

    fn count_published(&self, entries: &[Entry]) {
        for kind in Kind::ALL {
            let n = entries.iter().filter(|e| e.kind == kind).count() as u64;
            if n > 0 {
                self.metrics.published(kind).inc_by(n);
            }
        }
    }

    /// Sends to every live broker; false if a frame was dropped (a socket queue was full).
    fn send(&self, m: &Msg) -> bool {
        self.brokers.send_live(m)
    }

    fn on_ami(&mut self, ev: ClientEvent) {
        match ev {
            ClientEvent::Connected(info) => {
                info!(server = %self.cfg.server, asterisk = ?info.asterisk_version, "Asterisk connected: resynchronising");
                self.asterisk = info.asterisk_version.as_deref().map(|v| printable(v, MAX_DETAIL));
                self.ami_changed(true, "");
                self.mwiupdate_missing = false;
                self.resync();
            }
            ClientEvent::Lagged { dropped } => {
                self.events_seen += dropped;
                warn!(server = %self.cfg.server, dropped, "AMI events were dropped: resynchronising");
                self.resync();
            }
            ClientEvent::Disconnected { reason } => {
                info!(server = %self.cfg.server, %reason, "Asterisk disconnected");
                self.ami_changed(false, &reason);
                self.local_ready = false;
                self.mirror.forget_applied();
                // Every target is written again once the lists are read after the reconnect.
                self.backlog.clear();
            }
            ClientEvent::Event(m) => {
                let index = self.events_seen;
                self.events_seen += 1;
                self.on_event(&m, index);
            }
        }
    }

    fn on_event(&mut self, m: &Message, index: u64) {
        if self.cfg.queue_events {
            self.queue_event(m);
        }
        if self.guard.is_some() {
            self.guard_event(m);
        }
        if self.legacy {
            if let Some((exten, state)) = self.legacy_hint(m) {
                self.observe(Kind::Device, exten, Value::Device(state), true);
            }
            return;
        }
        let Some((kind, name, value)) = observed(m) else { return };
        let list_at = match kind {
            Kind::Device => self.device_list_at,
            Kind::Presence => self.presence_list_at,
            Kind::Mailbox => self.mailbox_list_at,
        };
        if index < list_at {
            // Older than the list we just read: the list already has the newer value.
            return;
        }
        self.observe(kind, name, value, true);
    }

    /// One event for the queue guard. A member it has not learnt (static members added by
    /// `queue reload` come without any event) is looked up first: QueueStatus of that member
    /// says its state interface, which the Agent* events do not carry. Its events wait, in
    /// order, for the answer.
    fn guard_event(&mut self, m: &Message) {
        let Some(g) = self.guard.as_mut() else { return };
        let member = g
            .unknown_member(m)
            .or_else(|| crate::guard::member_key(m).filter(|k| self.guard_pending.contains_key(k)));
        let Some(member) = member else {
            let writes = g.on_event(m);
            return self.guard_writes(writes);
        };
        let first = !self.guard_pending.contains_key(&member);
        let waiting = self.guard_pending.entry(member.clone()).or_default();
        // Bounded: the oldest go first, the last (the call's end) is what decides.
        if waiting.len() == GUARD_PENDING_MAX {
            waiting.pop_front();
            warn!(server = %self.cfg.server, queue = %ami::shown(&member.0), interface = %ami::shown(&member.1), "queue guard: many events of a member still being looked up; the oldest are dropped");
        }
        waiting.push_back(m.clone());
        if first {
            debug!(server = %self.cfg.server, queue = %ami::shown(&member.0), interface = %ami::shown(&member.1), "queue guard: looking up a member it has not seen");
            let client = self.client.clone();
            let tx = self.guard_tx.clone();
            tokio::spawn(async move {
                let action = Message::action("QueueStatus")
                    .with("Queue", member.0.clone())
                    .with("Member", member.1.clone());
                let answer = client.list(action).await;
                let _ = tx.send(GuardLookup { member, answer });
            });
        }
    }

    fn guard_lookup_done(&mut self, lookup: GuardLookup) {
        let events = self.guard_pending.remove(&lookup.member).unwrap_or_default();
        let Some(g) = self.guard.as_mut() else { return };
        match &lookup.answer {
            Ok(list) => g.learn_status(&list.items),
            Err(e) => {
                warn!(server = %self.cfg.server, queue = %lookup.member.0, interface = %lookup.member.1, error = %e, "queue guard: QueueStatus of a new member failed; its guard name comes from the template")
            }
        }
        if let Some(first) = events.front().filter(|m| g.unknown_member(m).is_some()) {
            g.learn_unlisted(
                &lookup.member.0,
                &lookup.member.1,
                first.get("MemberName").unwrap_or(""),
            );
        }
        let mut writes = Vec::new();
        for m in &events {
            writes.extend(g.on_event(m));
        }
        self.guard_writes(writes);
    }

    /// One state seen on this Asterisk, from an event or a list.
    fn observe(&mut self, kind: Kind, name: String, value: Value, publish: bool) {
        if !self.cfg.shares(kind) {
            return; // `device_state = off` / `presence = off`: neither published nor mirrored
        }
        let (value, changed) = fitted(value);
        // A name we meant to write but never did, and that Asterisk holds: the server's own.
        if self.mirror.is_unclaimed_target(&name) {
            self.mirror.collide(&name);
        }
        match classify(&name, &self.mirror, &self.cfg.ignore) {
            Class::Mirror => {
                self.metrics.echoes.inc();
                self.mirror.observed(&name, value.clone());
                // Usually the echo of our own write. If the mirror now shows something else and
                // no write of ours is on its way (a late action of a dropped session landed, or
                // someone wrote our name), put back what it should show: at once the first time,
                // then less and less often, then not at all (no write loop).
                if let Some(want) = self.mirror.needs_write(&name).filter(|_| publish && self.may_write()) {
                    use crate::overrides::Verdict;
                    match self
                        .overrides
                        .on_override(&name, std::time::Instant::now(), self.cfg.heartbeat)
                    {
                        Verdict::WriteNow => {
                            debug!(server = %self.cfg.server, target = %name, "mirror changed behind our back: writing it again");
                            self.write_targets(vec![name]);
                        }
                        Verdict::GiveUp => {
                            self.metrics.write_loops.inc();
                            warn!(server = %self.cfg.server, target = %name, written = ?want, reported = ?value, retries = crate::overrides::MAX_RETRIES, "Asterisk keeps reporting another value than the one written: this mirror is left alone until its origin changes (does another tool write this name?)");
                        }
                        Verdict::Later | Verdict::Ignore => {}
                    }
                }
            }
            Class::Artifact => {
                self.metrics.artifacts.inc();
            }
            Class::Stale => {}
            Class::Ignored | Class::Invalid => {}
            Class::Local => {
                // Seen even when not published: no remote state may land on it.
                self.mirror.local_seen(&name);
                if !self.cfg.publishes(kind) {
                    return; // `mwi_publish = off`: applied from others, never our own
                }
                if changed && self.local.states.get(&(kind, name.clone())) != Some(&value) {
                    self.metrics.fitted.inc();
                    info!(server = %self.cfg.server, presentity = %name, "presence text published cut to 255 bytes and without control characters or leading blanks (what AMI carries unchanged)");
                }
                if self.local.set(kind, &name, value.clone()) && publish && self.local_ready && self.brokers.any_live()
                {
                    self.outgoing.push(Entry::from_value(
                        proto::Key {
                            origin: self.cfg.server.clone(),
                            kind,
                            name,
                        },
                        Some(value),
                    ));
                }
            }
        }
    }

    /// Starts re-reading the whole local state (see [`crate::resync`]); [`Agent::resync_done`]
    /// publishes it and re-applies lost mirrors.
    fn resync(&mut self) {
        if self.resyncing {
            self.resync_again = true;
            return;
        }
        self.resyncing = true;
        self.resync_owed = None;
        self.metrics.resyncs.inc();
        self.mirror.forget_applied();
        // A new session: every mirror is written again, whatever fought it before.
        self.overrides = Default::default();
        self.legacy = self.client.server_info().is_some_and(|i| !i.has_state_events());
        if self.legacy {
            info!(server = %self.cfg.server, hints = self.cfg.legacy_hints.len(), "Asterisk before 13: state from ExtensionStatus of the configured hints");
        }
        let hints = self.legacy.then(|| self.cfg.legacy_hints.clone());
        let mailboxes = self.cfg.shares(Kind::Mailbox);
        let read = crate::resync::read(self.client.clone(), hints, self.guard.is_some(), mailboxes);
        let tx = self.resync_tx.clone();
        self.resync_task = Some(tokio::spawn(async move {
            let _ = tx.send(read.await);
        }));
    }

    /// The resync's reads are in: the local state is replaced, published, and the mirrors
    /// Asterisk lost are written again.
    fn resync_done(&mut self, read: crate::resync::Read) {
        self.resyncing = false;
        self.resync_task = None;
        match read {
            crate::resync::Read::Legacy(answers) => self.legacy_resync_done(answers),
            crate::resync::Read::Lists(lists) => self.lists_read(*lists),
        }
        if std::mem::take(&mut self.resync_again) {
            self.resync();
        }
    }

    fn lists_read(&mut self, read: crate::resync::Lists) {
        let crate::resync::Lists {
            memory,
            custom_astdb,
            devices,
            presence,
            mailboxes,
            queues,
        } = read;
        match memory {
            Ok(r) => {
                debug!(server = %self.cfg.server, names = r.names.len(), kept = r.kept, "mirror names read from astdb");
                if !r.kept {
                    info!(server = %self.cfg.server, "no mirror names kept in astdb yet (a first run): the mirrors Asterisk holds are taken from the broker's view this time");
                }
                self.memory_kept = r.kept;
                self.mirror.remember(r.names, r.kept);
            }
            Err(e) => {
                self.mirror.memory_unavailable();
                self.memory_failed(&e);
            }
        }
        // A mailbox list that failed for any other reason than its module not being loaded
        // (an empty list then) fails the resync as a device list would: publishing the server
        // without its mailboxes would darken every remote lamp of them.
        let mut mailboxes = mailboxes;
        let mut mailbox_err = None;
        if let Some(m) = mailboxes.as_mut() {
            for list in [&mut m.voicemail, &mut m.external] {
                match list {
                    Err(ActionError::Rejected { message, .. }) if message.contains("Invalid/unknown command") => {}
                    Err(e) if mailbox_err.is_none() => {
                        mailbox_err = Some(std::mem::replace(e, ActionError::NotConnected))
                    }
                    _ => {}
                }
            }
        }
        let (devices, presence) = match (devices, presence, mailbox_err) {
            (Ok(d), Ok(p), None) => (d, p),
            (d, p, m) => {
                let err = d.err().or(p.err()).or(m);
                // A lost connection resyncs at the next connect; a list that fails on a live
                // one (too slow, too large) is tried again later and later.
                let connection = matches!(err, Some(ActionError::Disconnected | ActionError::NotConnected));
                let err = err.map(|e| e.to_string()).unwrap_or_default();
                let retry_in = (!connection).then(|| self.resync_backoff.next_delay());
                warn!(server = %self.cfg.server, error = %err, ?retry_in, "could not read the state lists; trying again");
                self.local_ready = false;
                self.resync_owed = retry_in.map(|d| std::time::Instant::now() + d);
                return;
            }
        };
        self.resync_backoff.reset();
        // Mirrors of mirrors an older run left in astdb: deleted (and their restored names
        // not taken for this server's). Without DBGetTree, the lists alone still keep them
        // from being published.
        for name in custom_astdb.unwrap_or_default() {
            if self.mirror.is_stale(&name) {
                self.forget_stale(&name);
            }
        }
        self.device_list_at = devices.events_before;
        self.presence_list_at = presence.events_before;
        // A module that is not loaded answers an error: that list is empty. Its MWI events
        // after the list count from the earlier of the two.
        let mailbox_items: Vec<Message> = match mailboxes {
            Some(m) => {
                let mut at = u64::MAX;
                let mut items = Vec::new();
                for (what, list) in [("VoicemailUsersList", m.voicemail), ("MWIGet", m.external)] {
                    match list {
                        Ok(l) => {
                            at = at.min(l.events_before);
                            items.extend(l.items);
                        }
                        Err(e) => {
                            debug!(server = %self.cfg.server, list = what, error = %e, "no mailboxes of that module")
                        }
                    }
                }
                self.mailbox_list_at = if at == u64::MAX { 0 } else { at };
                items
            }
            None => Vec::new(),
        };
        self.local = Local::default();
        self.mirror.forget_local();
        for item in devices
            .items
            .iter()
            .chain(presence.items.iter())
            .chain(mailbox_items.iter())
        {
            if let Some((kind, name, value)) = observed(item) {
                self.observe(kind, name, value, false);
            }
        }
        self.local_ready = true;
        debug!(server = %self.cfg.server, local = self.local.states.len(), "local state read");
        match queues {
            Some(Ok(qs)) => {
                let current: std::collections::HashMap<String, ami::DeviceState> = devices
                    .items
                    .iter()
                    .filter_map(observed)
                    .filter_map(|(_, n, v)| match v {
                        Value::Device(d) => Some((n, d)),
                        _ => None,
                    })
                    .collect();
                let writes = self
                    .guard
                    .as_mut()
                    .map(|g| g.reconcile(&qs.items, |t| current.get(t).copied()))
                    .unwrap_or_default();
                info!(server = %self.cfg.server, members = qs.items.len(), writes = writes.len(), "queue guard reconciled from QueueStatus");
                self.guard_writes(writes);
            }
            Some(Err(e)) => {
                warn!(server = %self.cfg.server, error = %e, "QueueStatus failed: queue guard not reconciled")
            }
            None => {}
        }
        self.local_read();
    }

    /// The local state is known again: it is published, and the mirrors are written again.
    fn local_read(&mut self) {
        if self.brokers.any_live() {
            self.send_sync();
        }
        let targets: Vec<String> = self.mirror.targets().cloned().collect();
        self.write_targets(targets);
    }

    /// The state of a configured hint from an ExtensionStatus event (1.8/11).
    fn legacy_hint(&self, m: &Message) -> Option<(String, ami::DeviceState)> {
        if m.event_name() != Some("ExtensionStatus") && m.response().is_none() {
            return None;
        }
        let exten = m.get("Exten")?;
        let context = m.get("Context").unwrap_or("default");
        if !self.cfg.legacy_hints.iter().any(|(e, c)| e == exten && c == context) {
            return None;
        }
        let status: i32 = m.get("Status")?.trim().parse().ok()?;
        if status < 0 {
            return None; // no such hint (-1) or removed (-2): nothing to say
        }
        Some((
            exten.to_string(),
            ami::DeviceState::from_extension_status(ami::state::ExtensionStatus(status)),
        ))
    }

    /// Asterisk 1.8/11 have no state lists: the ExtensionState answer of each configured hint.
    fn legacy_resync_done(&mut self, answers: Vec<((String, String), Result<Message, ActionError>)>) {
        self.device_list_at = 0;
        self.presence_list_at = 0;
        self.mailbox_list_at = 0;
        self.local = Local::default();
        for ((exten, context), answer) in answers {
            match answer {
                Ok(resp) => {
                    if let Some((name, state)) = self.legacy_hint(&resp) {
                        self.observe(Kind::Device, name, Value::Device(state), false);
                    }
                }
                Err(e) => warn!(server = %self.cfg.server, %exten, %context, error = %e, "ExtensionState failed"),
            }
        }
        self.local_ready = true;
        self.local_read();
    }

    /// Our whole state to every live broker.
    fn send_sync(&mut self) {
        self.send_sync_to(None);
    }

    /// Our whole state to broker `to`, or (None) to every live one.
    fn send_sync_to(&mut self, to: Option<usize>) {
        self.sync_id += 1;
        let mut entries = self.local.entries(&self.cfg.server);
        // Stamped anew: above any lost mark a broker put on our last states.
        for e in &mut entries {
            e.stamp = self.stamper.stamp();
        }
        self.count_published(&entries);
        let chunks: Vec<&[Entry]> = if entries.is_empty() {
            vec![&[]]
        } else {
            entries.chunks(500).collect()
        };
        let n = chunks.len();
        let targets = match to {
            Some(i) => vec![i],
            None => self.brokers.live(),
        };
        for (k, c) in chunks.into_iter().enumerate() {
            let m = Msg::Sync {
                sync_id: self.sync_id,
                entries: c.to_vec(),
                last: k + 1 == n,
            };
            for &b in &targets {
                // A dropped chunk would leave that broker with part of our state: it is sent
                // the whole again.
                if !self.brokers.send_to(b, &m) {
                    self.sync_owed.insert(b);
                }
            }
        }
        self.outgoing.clear();
    }

    fn flush_outgoing(&mut self) {
        if self.outgoing.is_empty() {
            return;
        }
        let mut entries = std::mem::take(&mut self.outgoing);
        for e in &mut entries {
            e.stamp = self.stamper.stamp();
        }
        self.count_published(&entries);
        for c in entries.chunks(500) {
            // Lost on the way out: the next heartbeat sends that broker our whole state instead.
            let failed = self.brokers.send_live_failed(&Msg::Update { entries: c.to_vec() });
            self.sync_owed.extend(failed);
        }
    }

    fn on_broker_frame(&mut self, i: usize, frame: &[u8]) {
        let msg = match Msg::decode(frame) {
            Ok(m) => m,
            Err(e) => {
                warn!(server = %self.cfg.server, broker = %self.brokers.conns[i].endpoint, error = %ami::shown(&e.to_string()), "bad frame from broker");
                return;
            }
        };
        self.board.heard();
        let link = &mut self.brokers.conns[i].link;
        let step = link.on_message(msg);
        if self.stamper.seen(link.last_epoch) {
            info!(server = %self.cfg.server, epoch = self.stamper.epoch(), "a broker holds states of ours stamped later than this run's clock: stamping above them");
        }
        match step {
            // An agent's link is no peer's: the broker sends it no `hearing`.
            Step::Nothing | Step::Hearing(_) => {}
            Step::Send(m) => {
                self.brokers.send_to(i, &m);
            }
            Step::Snapshot { entries, merge } => {
                self.metrics.snapshots.inc();
                let n = entries.len();
                let values: Vec<(proto::Key, Stamp, Value)> = entries
                    .into_iter()
                    .filter(|e| e.origin != self.cfg.server && self.cfg.shares(e.kind))
                    .filter_map(|e| match e.value() {
                        Ok(Some(v)) => Some((e.key(), e.stamp, v.as_written())),
                        Ok(None) => None,
                        Err(err) => {
                            self.metrics.invalid_remote.inc();
                            warn!(server = %self.cfg.server, origin = %ami::shown(&e.origin), error = %ami::shown(&err.to_string()), "invalid entry in snapshot not applied");
                            None
                        }
                    })
                    .collect();
                let touched = match self.remote.as_mut() {
                    None => {
                        let values = values.into_iter().map(|(k, _, v)| (k, v)).collect();
                        self.mirror.replace_all(values, merge)
                    }
                    Some(r) => {
                        let mut shown = r.snapshot(i, values.into_iter().map(|(k, s, v)| (k, s, Some(v))).collect());
                        shown.extend(r.set_live(i, true));
                        self.show(shown)
                    }
                };
                self.snapshot_seen = true;
                for t in &touched {
                    self.overrides.reset(t);
                }
                info!(server = %self.cfg.server, broker = %self.brokers.conns[i].endpoint, entries = n, merge, "snapshot applied");
                self.write_targets(touched);
                self.links_changed();
                // The mirror namespace is known now: our own state can be told apart and sent
                // (to that broker: the others have it).
                if self.local_ready {
                    self.reclassify_local();
                    self.send_sync_to(Some(i));
                }
                // Live again: a broker that restarted learns how this agent's Asterisk is.
                self.send_status();
            }
            Step::Updates(entries) => {
                self.metrics.remote_updates.inc_by(entries.len() as u64);
                // Written entry by entry: two states of one phone in one batch are both shown
                // (a ring before an answer), in order.
                for e in entries {
                    if e.origin == self.cfg.server || !self.cfg.shares(e.kind) {
                        continue;
                    }
                    match e.value() {
                        Ok(v) => {
                            let stamp = e.stamp;
                            let v = v.map(Value::as_written);
                            let touched = match self.remote.as_mut() {
                                None => self.mirror.set(&e.into_key(), v),
                                Some(r) => match r.update(i, e.into_key(), stamp, v) {
                                    Some(shown) => self.show(vec![shown]).pop(),
                                    None => None,
                                },
                            };
                            if let Some(t) = &touched {
                                self.overrides.reset(t);
                            }
                            self.write_targets(touched.into_iter().collect());
                        }
                        Err(err) => {
                            self.metrics.invalid_remote.inc();
                            warn!(server = %self.cfg.server, origin = %ami::shown(&e.origin), error = %ami::shown(&err.to_string()), "invalid entry from broker ignored");
                        }
                    }
                }
            }
        }
    }

    /// What the merged view shows now, onto the mirrors: the targets to write.
    fn show(&mut self, shown: Vec<crate::remote::Shown>) -> Vec<String> {
        shown.into_iter().filter_map(|(k, v)| self.mirror.set(&k, v)).collect()
    }

    /// After broker sessions may have changed state: a session that is no longer live gives
    /// way to the others' views; with none live for `broker_timeout`, the device mirrors go
    /// dark (UNAVAILABLE, as a lost server's) rather than stay frozen; a live one lights them.
    fn links_changed(&mut self) {
        let live: Vec<bool> = self.brokers.conns.iter().map(|c| c.link.state == State::Live).collect();
        let mut touched = Vec::new();
        if let Some(r) = self.remote.as_mut() {
            let mut shown = Vec::new();
            for (i, l) in live.iter().enumerate() {
                // Going live is the snapshot's to say (its view comes with it).
                if !*l {
                    shown.extend(r.set_live(i, false));
                }
            }
            touched.extend(self.show(shown));
        }
        let now = std::time::Instant::now();
        if live.iter().any(|l| *l) {
            self.none_live_since = None;
            touched.extend(self.mirror.set_dark(false));
        } else {
            let since = *self.none_live_since.get_or_insert(now);
            if now.duration_since(since) > self.cfg.broker_timeout && self.snapshot_seen {
                let dark = self.mirror.set_dark(true);
                if !dark.is_empty() {
                    warn!(server = %self.cfg.server, mirrors = dark.len(), "no broker answers: the other servers' devices show UNAVAILABLE until one does");
                }
                touched.extend(dark);
            }
        }
        if !touched.is_empty() {
            self.write_targets(touched);
        }
    }

    /// Names read before the mirror namespace was known may be mirrors: drop those.
    fn reclassify_local(&mut self) {
        let mirror = &self.mirror;
        let ignore = &self.cfg.ignore;
        self.local
            .states
            .retain(|(_, name), _| classify(name, mirror, ignore) == Class::Local);
    }

    /// Deletes a stale mirror of mirrors from func_devstate's astdb family. It stays in
    /// Asterisk's cache until the next restart (a device state cannot be removed), but is never
    /// published and does not come back.
    fn forget_stale(&mut self, name: &str) {
        let Some(action) = crate::memory::forget_custom(name) else {
            return;
        };
        self.metrics.stale_cleaned.inc();
        self.mirror.stale_restored_as(name);
        info!(server = %self.cfg.server, device = %ami::shown(name), "a mirror of mirrors left by an older run: not published, and deleted from astdb");
        self.next_token += 1;
        if let Err(e) = self.client.send_to(action, self.next_token, &self.answers) {
            debug!(server = %self.cfg.server, device = %ami::shown(name), error = %e, "stale mirror not deleted from astdb");
        }
    }

    /// astdb cannot keep our mirror names: a refusal is said once, at warn; a lost connection
    /// or a timeout is tried again anyway.
    fn memory_failed(&mut self, e: &ActionError) {
        if !matches!(e, ActionError::Rejected { .. }) {
            debug!(server = %self.cfg.server, error = %e, "astdb memory not read or written this time");
            return;
        }
        if !std::mem::replace(&mut self.memory_warned, true) {
            warn!(server = %self.cfg.server, error = %ami::shown(&e.to_string()), family = crate::memory::FAMILY, "cannot keep the mirror names in astdb (DBGetTree/DBPut need write = system): after a restart of broker and agents together, restored mirrors may be taken for this server's own states");
        }
    }

    /// Whether mirror writes may go out now (see [`Agent::write_targets`]).
    fn may_write(&self) -> bool {
        self.client.is_connected() && self.local_ready && !self.resyncing
    }

    /// Writes every target whose value on Asterisk differs from what it should be, in order.
    ///
    /// Not before this connection's lists are read (every target is written then): until they
    /// are, a name may be one of the server's own states, and what Asterisk shows is unknown.
    fn write_targets(&mut self, targets: Vec<String>) {
        if !self.may_write() {
            return;
        }
        // A new name is remembered before its first write (one connection keeps their order).
        // When the AMI client's queue is full, the rest waits for the next call: nothing is
        // tried again and again in one call, and no write goes out before its name's DBPut.
        while let Some((target, origin)) = self.mirror.pop_unremembered() {
            self.next_token += 1;
            let put = crate::memory::remember(&target, &origin);
            if let Err(e) = self.client.send_to(put, self.next_token, &self.answers) {
                self.mirror.unremember(&target, &origin);
                self.memory_failed(&e);
                self.backlog.extend(targets);
                return;
            }
            self.remembering.insert(self.next_token, (target, origin));
        }
        // After every name of the first snapshot: from the next run on, astdb's memory is
        // trusted to tell mirrors from the server's own states.
        if !self.memory_kept && self.snapshot_seen {
            self.next_token += 1;
            let marker = crate::memory::remember(crate::memory::MARKER, &self.cfg.server);
            if self.client.send_to(marker, self.next_token, &self.answers).is_ok() {
                self.memory_kept = true;
            }
        }
        let mut targets = targets.into_iter();
        while let Some(target) = targets.next() {
            if self.overrides.is_given_up(&target) {
                continue;
            }
            let Some(value) = self.mirror.needs_write(&target) else {
                continue;
            };
            if self.mwiupdate_missing && matches!(value, Value::Mailbox(_)) {
                continue;
            }
            self.next_token += 1;
            match self
                .client
                .send_to(setvar(&target, &value), self.next_token, &self.answers)
            {
                Ok(()) => {
                    self.mirror.mark_inflight(&target, value.clone());
                    self.written.insert(
                        self.next_token,
                        Written {
                            target,
                            value,
                            at: std::time::Instant::now(),
                            guard: None,
                        },
                    );
                }
                Err(e) => {
                    // The queue to Asterisk is full (or the connection gone): this one and
                    // the rest are written at the next heartbeat, or after the reconnect.
                    self.metrics.setvar_failed.inc();
                    debug!(server = %self.cfg.server, target = %ami::shown(&target), error = %e, "mirror writes not sent; will retry");
                    self.backlog.insert(target);
                    self.backlog.extend(targets);
                    return;
                }
            }
        }
    }

    /// Sends more of the backlog once the writes on their way are few: the queue to Asterisk
    /// stays full while a large snapshot is written, rather than refilled once a heartbeat.
    fn refill(&mut self) {
        if self.backlog.is_empty() || self.written.len() + self.remembering.len() > REFILL_BELOW || !self.may_write() {
            return;
        }
        let batch: Vec<String> = std::iter::from_fn(|| self.backlog.pop_first())
            .take(REFILL_BATCH)
            .collect();
        self.write_targets(batch);
    }

    /// Sends the queue guard's writes, in order.
    fn guard_writes(&mut self, writes: Vec<GuardWrite>) {
        for w in writes {
            let value = Value::Device(w.state);
            self.next_token += 1;
            match self
                .client
                .send_to(setvar(&w.target, &value), self.next_token, &self.answers)
            {
                Ok(()) => {
                    let guard = Some((w.member, w.queue));
                    self.written.insert(
                        self.next_token,
                        Written {
                            target: w.target,
                            value,
                            at: std::time::Instant::now(),
                            guard,
                        },
                    );
                }
                Err(e) => {
                    warn!(server = %self.cfg.server, target = %w.target, member = %w.member, queue = %w.queue, error = %e, "queue guard write not sent; reconciled at reconnect");
                    if let Some(g) = self.guard.as_mut() {
                        g.failed(&w.target);
                    }
                }
            }
        }
    }

    /// Writes that got no answer within the action timeout count as failed.
    fn expire_writes(&mut self) {
        let limit = self.cfg.ami.action_timeout;
        let late: Vec<u64> = self
            .written
            .iter()
            .filter(|(_, w)| w.at.elapsed() > limit)
            .map(|(t, _)| *t)
            .collect();
        for token in late {
            self.on_answer(
                token,
                Err(ami::client::ActionError::Timeout {
                    action: "Setvar".into(),
                    timeout: limit,
                }),
            );
        }
    }

    fn on_answer(&mut self, token: u64, result: Result<(), ami::client::ActionError>) {
        if let Some((target, origin)) = self.remembering.remove(&token) {
            if let Err(e) = result {
                debug!(server = %self.cfg.server, target = %ami::shown(&target), error = %e, "mirror name not remembered");
                self.mirror.unremember(&target, &origin);
                self.memory_failed(&e);
            }
            return;
        }
        let Some(done) = self.written.remove(&token) else {
            return;
        };
        if let Some((member, queue)) = &done.guard {
            match &result {
                Ok(()) => {
                    self.metrics.setvar_written.inc();
                }
                Err(e) => {
                    self.metrics.setvar_failed.inc();
                    warn!(server = %self.cfg.server, target = %done.target, %member, %queue, error = %e, "queue guard write failed");
                    if let Some(g) = self.guard.as_mut() {
                        g.failed(&done.target);
                    }
                }
            }
            return;
        }
        match &result {
            Ok(()) => {
                self.metrics.setvar_written.inc();
            }
            Err(e) if matches!(done.value, Value::Mailbox(_)) && e.to_string().contains("Invalid/unknown command") => {
                self.metrics.setvar_failed.inc();
                // Not a failure of this write: the module is not there. Said once; tried
                // again after the next AMI connect (it may be loaded by then).
                if !self.mwiupdate_missing {
                    self.mwiupdate_missing = true;
                    warn!(server = %self.cfg.server, "mwi_sink = mwiupdate, but this Asterisk has no MWIUpdate: res_mwi_external_ami (with res_mwi_external and res_sorcery_astdb) is not loaded, and cannot be beside app_voicemail; remote mailboxes are not shown here (use mwi_sink = custom for lamps on a server with voicemail)");
                }
            }
            Err(e) => {
                self.metrics.setvar_failed.inc();
                // Retried every heartbeat. A lost connection fails every pending write at once
                // and is logged once by the AMI client; other failures once per target.
                let lost = matches!(e, ActionError::Disconnected | ActionError::NotConnected);
                if self.retry.insert(done.target.clone()) && !lost {
                    warn!(server = %self.cfg.server, target = %done.target, value = ?done.value, error = %e, "mirror write failed; will retry");
                }
            }
        }
        if result.is_ok() {
            self.retry.remove(&done.target);
        }
        self.mirror.write_done(&done.target, &done.value, result.is_ok());
        // Asterisk may have reported another value while this write was on its way.
        if result.is_ok() && self.mirror.needs_write(&done.target).is_some() {
            self.write_targets(vec![done.target]);
        }
    }
}
