//! The state of one simulated Asterisk: device state cache, astdb, presence, hints, queues,
//! and the sessions its events go to. Every change goes through here, so that each one emits
//! exactly the events a real Asterisk 22 emits for it.

use crate::config::SimConfig;
use crate::events::{self, device_state_change, presence_state_change};
use crate::hints::{Hint, PresenceValue};
use crate::privilege::Classes;
use crate::queue::{self, Channel, Member, Queue, QueueCall};
use ami::state::MAX_DEVICE_LEN;
use ami::{DeviceState, Message, PresenceState};
use base64::Engine;
use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Called with (variable, value) of every Setvar received.
pub type SetvarHook = std::sync::Arc<dyn Fn(&str, &str) + Send + Sync>;

/// A session that receives events.
pub struct Subscriber {
    pub id: u64,
    pub tx: mpsc::Sender<Message>,
    /// Read privileges intersected with the Login's `Events:` mask.
    pub mask: Classes,
    /// Cancelled when the session must be dropped (too slow to read).
    pub kill: CancellationToken,
}

/// Why a scripted queue operation could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("no queue {0:?}")]
    NoQueue(String),
    #[error("no member of {queue:?} can be rung (ringinuse={ringinuse})")]
    NoMemberAvailable { queue: String, ringinuse: bool },
    #[error("no call {0}")]
    NoCall(u64),
    #[error("member {0:?} not found")]
    NoMember(String),
}

pub struct World {
    pub config: SimConfig,
    pub started: SystemTime,
    pub started_at: Instant,
    pub reloaded: SystemTime,
    /// The device state cache (what DeviceStateList dumps).
    pub devices: BTreeMap<String, DeviceState>,
    /// astdb family CustomDevstate: key (name after `Custom:`) -> value.
    pub astdb_devstate: BTreeMap<String, String>,
    /// astdb family CustomPresence: key -> raw `state,subtype,message[,e]`.
    pub astdb_presence: BTreeMap<String, String>,
    /// Every other astdb entry, by full key (`/family/key`).
    pub astdb_other: BTreeMap<String, String>,
    /// The presence cache (what PresenceStateList dumps), by presentity.
    pub presence: BTreeMap<String, PresenceValue>,
    /// app_voicemail's counts (new, old) by mailbox: in its spool, so kept over a restart.
    pub voicemail: BTreeMap<String, (u32, u32)>,
    pub hints: Vec<Hint>,
    pub queues: Vec<Queue>,
    pub calls: HashMap<u64, QueueCall>,
    pub globals: HashMap<String, String>,
    pub subscribers: Vec<Subscriber>,
    /// Every Setvar received over AMI, in order: (variable, value). Tests read it to prove
    /// what was, and was not, written.
    pub setvar_log: Vec<(String, String)>,
    /// Whether Setvars are logged (a benchmark turns it off: the log would grow without end).
    pub log_setvars: bool,
    /// Called with (variable, value) for every Setvar received (benchmarks time them).
    pub setvar_hook: Option<SetvarHook>,
    /// Events of the action being handled, sent after its response.
    pending: Vec<(Classes, Message)>,
    next_unique: u64,
    pub processed_calls: u64,
    /// A hung server sends nothing.
    pub muted: bool,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// `ast_devstate_changed` formats the device into an 80-byte buffer: longer names are cut.
pub fn truncate_device(name: &str) -> String {
    let mut end = name.len().min(MAX_DEVICE_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// func_presencestate's `parse_data`: `state[,subtype[,message[,options]]]`, options must
/// contain `e` when present, and then subtype and message are base64.
pub fn parse_presence(raw: &str) -> Option<PresenceValue> {
    let mut parts = raw.splitn(4, ',');
    let state: PresenceState = parts.next().filter(|s| !s.is_empty())?.parse().ok()?;
    let subtype = parts.next().unwrap_or("");
    let message = parts.next().unwrap_or("");
    // strsep stops at the next comma: a fifth field is ignored, as in Asterisk.
    let options = parts.next().map(|o| o.split(',').next().unwrap_or("")).unwrap_or("");
    if !options.is_empty() && !options.contains('e') {
        return None;
    }
    let decode = |s: &str| -> String {
        if options.contains('e') {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .unwrap_or_default();
            String::from_utf8_lossy(&bytes[..bytes.len().min(255)]).into_owned()
        } else {
            s.to_string()
        }
    };
    Some(PresenceValue {
        state,
        subtype: decode(subtype),
        message: decode(message),
    })
}

impl World {
    pub fn new(config: SimConfig) -> World {
        let now = SystemTime::now();
        let mut w = World {
            started: now,
            started_at: Instant::now(),
            reloaded: now,
            devices: BTreeMap::new(),
            astdb_devstate: BTreeMap::new(),
            astdb_presence: BTreeMap::new(),
            astdb_other: BTreeMap::new(),
            voicemail: BTreeMap::new(),
            presence: BTreeMap::new(),
            hints: config
                .hints
                .iter()
                .map(|h| Hint::parse(&h.exten, &h.context, &h.hint))
                .collect(),
            queues: Vec::new(),
            calls: HashMap::new(),
            globals: HashMap::new(),
            subscribers: Vec::new(),
            setvar_log: Vec::new(),
            log_setvars: true,
            setvar_hook: None,
            pending: Vec::new(),
            next_unique: 1,
            processed_calls: 0,
            muted: false,
            config,
        };
        w.boot();
        w
    }

    /// Start-up: physical devices, Custom states and presence from astdb, queues, hints.
    /// Nobody is connected yet, so nothing is announced.
    fn boot(&mut self) {
        let now = SystemTime::now();
        self.started = now;
        self.started_at = Instant::now();
        self.reloaded = now;
        self.devices.clear();
        self.presence.clear();
        self.calls.clear();
        for (d, s) in &self.config.devices {
            self.devices.insert(d.clone(), *s);
        }
        // func_devstate's load_module: the name is what follows the LAST '/' of the astdb key,
        // so `Custom:SIP/100` comes back as `Custom:100` (BTreeMap order = astdb's key order).
        // An UNKNOWN there is not announced, so not cached: the cache of a device never seen
        // already says UNKNOWN (ast_publish_device_state skips an unchanged state).
        for (key, value) in &self.astdb_devstate {
            let name = key.rsplit('/').next().unwrap_or(key);
            let state = value.parse().unwrap_or(DeviceState::Unknown);
            if state != DeviceState::Unknown {
                self.devices.insert(truncate_device(&format!("Custom:{name}")), state);
            }
        }
        // func_presencestate's load_module announces `CustomPresence:<after last '/'>` and the
        // provider then reads astdb under that shorter key: a name with '/' is not restored.
        let restored: Vec<(String, PresenceValue)> = self
            .astdb_presence
            .keys()
            .filter_map(|key| {
                let name = key.rsplit('/').next().unwrap_or(key);
                let value = parse_presence(self.astdb_presence.get(name)?)?;
                Some((format!("CustomPresence:{name}"), value))
            })
            .collect();
        self.presence.extend(restored);
        let t = now_secs();
        self.queues = self.config.queues.iter().map(|q| Queue::from_config(q, t)).collect();
        self.refresh_queues(false);
        for i in 0..self.hints.len() {
            self.hints[i].last_status = self.hints[i].status(|d| self.state_of(d));
            self.hints[i].last_presence = self.hints[i].presence.as_deref().and_then(|p| self.presence_of(p));
        }
        self.pending.clear();
    }

    /// `module unload` + `module load func_devstate.so`: every astdb Custom state announced
    /// again under its restored name (cut at the last '/'). A device whose astdb entry says
    /// UNKNOWN and that had another state is now UNKNOWN in the cache: this is how a real
    /// Asterisk comes to list UNKNOWN devices.
    pub fn reload_custom_states(&mut self) {
        let restored: Vec<(String, DeviceState)> = self
            .astdb_devstate
            .iter()
            .map(|(key, value)| {
                let name = key.rsplit('/').next().unwrap_or(key);
                (format!("Custom:{name}"), value.parse().unwrap_or(DeviceState::Unknown))
            })
            .collect();
        for (device, state) in restored {
            let cached = self.devices.get(&truncate_device(&device)).copied();
            if state != DeviceState::Unknown || cached.is_some() {
                self.set_device(&device, state);
            }
        }
    }

    /// A restart: every session dropped (by the caller), volatile state lost, astdb kept.
    pub fn restart(&mut self) {
        self.subscribers.clear();
        self.boot();
    }

    /// The state a hint or Getvar sees: the cache, else the Custom provider reading astdb,
    /// else INVALID for an unknown device.
    pub fn state_of(&self, device: &str) -> DeviceState {
        if let Some(s) = self.devices.get(device) {
            return *s;
        }
        if let Some(name) = strip_prefix_ci(device, "Custom:") {
            return self
                .astdb_devstate
                .get(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(DeviceState::Unknown);
        }
        if let Some(hint) = device.strip_prefix("hint:") {
            let (exten, context) = hint.split_once('@').unwrap_or((hint, "default"));
            if let Some(h) = self.hints.iter().find(|h| h.exten == exten && h.context == context) {
                return DeviceState::aggregate(h.devices.iter().map(|d| self.state_of(d)));
            }
        }
        DeviceState::Invalid
    }

    /// The presence a hint or Getvar sees: the cache, else the provider reading astdb.
    pub fn presence_of(&self, presentity: &str) -> Option<PresenceValue> {
        if let Some(p) = self.presence.get(presentity) {
            return Some(p.clone());
        }
        let name = strip_prefix_ci(presentity, "CustomPresence:")?;
        parse_presence(self.astdb_presence.get(name)?)
    }

    /// Queues an event for every session allowed to read it.
    pub fn emit(&mut self, class: Classes, msg: Message) {
        self.pending.push((class, msg));
    }

    /// Sends the queued events. A session whose buffer is full is dropped, as Asterisk drops
    /// a client that does not read within `writetimeout`.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        if self.muted {
            return;
        }
        self.subscribers.retain(|s| {
            for (class, msg) in &pending {
                if s.mask.intersects(*class) {
                    match s.tx.try_send(msg.clone()) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            tracing::warn!(
                                session = s.id,
                                "simulated Asterisk: client too slow to read, dropping it (writetimeout)"
                            );
                            s.kill.cancel();
                            return false;
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return false,
                    }
                }
            }
            true
        });
    }

    /// A device changes state (a phone, a channel, or a Custom write). Emits DeviceStateChange
    /// unless the state is unchanged (Asterisk 20.17+/22.7+), then the hints and queue members
    /// that watch it.
    pub fn set_device(&mut self, device: &str, state: DeviceState) {
        let device = truncate_device(device);
        if self.devices.get(&device) == Some(&state) {
            return;
        }
        self.devices.insert(device.clone(), state);
        if !self.legacy() {
            self.emit(Classes::CALL, device_state_change(&device, state));
        }
        self.refresh_hints();
        self.refresh_queues(true);
    }

    /// `Set(DEVICE_STATE(Custom:<name>)=<value>)`; false where Asterisk answers "Variable not set".
    pub fn write_custom_device(&mut self, target: &str, value: &str) -> bool {
        let Some(name) = strip_prefix_ci(target, "Custom:") else {
            return false;
        };
        if name.is_empty() {
            return false;
        }
        let state: DeviceState = match value.parse() {
            Ok(DeviceState::Unknown) | Err(_) => return false,
            Ok(s) => s,
        };
        self.astdb_devstate.insert(name.to_string(), state.as_str().to_string());
        self.set_device(&format!("Custom:{name}"), state);
        true
    }

    /// `Set(PRESENCE_STATE(CustomPresence:<name>)=<value>)`. Every write is announced, even an
    /// unchanged one; hints announce only changes.
    pub fn write_custom_presence(&mut self, target: &str, value: &str) -> bool {
        let Some(name) = strip_prefix_ci(target, "CustomPresence:") else {
            return false;
        };
        if name.is_empty() {
            return false;
        }
        let Some(p) = parse_presence(value) else {
            return false;
        };
        self.astdb_presence.insert(name.to_string(), value.to_string());
        self.presence.insert(target.to_string(), p.clone());
        if !self.legacy() {
            self.emit(Classes::CALL, presence_state_change(target, &p));
        }
        for i in 0..self.hints.len() {
            let watches = self.hints[i]
                .presence
                .as_deref()
                .is_some_and(|hp| hp.eq_ignore_ascii_case(target));
            if watches && self.hints[i].last_presence.as_ref() != Some(&p) {
                self.hints[i].last_presence = Some(p.clone());
                let ev = events::presence_status(&self.hints[i], &p);
                self.emit(Classes::CALL, ev);
            }
        }
        true
    }

    fn refresh_hints(&mut self) {
        for i in 0..self.hints.len() {
            let status = self.hints[i].status(|d| self.state_of(d));
            if status != self.hints[i].last_status {
                self.hints[i].last_status = status;
                let mut ev = events::extension_status(&self.hints[i], status);
                if self.legacy() {
                    ev = ev
                        .headers()
                        .iter()
                        .filter(|(n, _)| n != "StatusText")
                        .cloned()
                        .collect();
                }
                self.emit(Classes::CALL, ev);
            }
        }
    }

    /// Re-reads every member's state interface. At boot (`announce` false) app_queue has not
    /// yet seen a member's device change, and `Queue:<q>_avail` reads INUSE (as fixtures 03 and
    /// 08 show); afterwards it is recomputed, as app_queue's device_state_cb does, for each
    /// queue in which a member's state changed.
    fn refresh_queues(&mut self, announce: bool) {
        let mut changed_devices = Vec::new();
        for qi in 0..self.queues.len() {
            let mut any_changed = false;
            for mi in 0..self.queues[qi].members.len() {
                let status = self.state_of(&self.queues[qi].members[mi].state_interface.clone());
                let q = &mut self.queues[qi];
                if q.members[mi].status != status {
                    q.members[mi].status = status;
                    any_changed = true;
                    if announce {
                        let ev = queue::member_event("QueueMemberStatus", &q.name, &q.members[mi]);
                        self.pending.push((Classes::AGENT, ev));
                    }
                }
            }
            let q = &self.queues[qi];
            if !announce {
                changed_devices.push((q.avail_device(), DeviceState::Inuse));
            } else if any_changed {
                let avail = if q.members.iter().any(Member::available) {
                    DeviceState::NotInuse
                } else {
                    DeviceState::Inuse
                };
                changed_devices.push((q.avail_device(), avail));
            }
            for m in &q.members {
                let paused = if m.paused {
                    DeviceState::Inuse
                } else {
                    DeviceState::NotInuse
                };
                changed_devices.push((q.pause_device(m), paused));
            }
        }
        for (d, s) in changed_devices {
            if self.devices.get(&d) != Some(&s) {
                self.devices.insert(d.clone(), s);
                if announce {
                    self.emit(Classes::CALL, device_state_change(&d, s));
                }
            }
        }
    }

    /// A Local channel's device (`Local/100@agents`) changes state. Local channels are not
    /// cachable: the state is announced but never enters the cache (DeviceStateList does not
    /// list it), and each change is announced twice in a row (both halves of the channel), as
    /// a real Asterisk 22 does.
    fn local_device(&mut self, device: &str, state: DeviceState) {
        if self.legacy() {
            return;
        }
        for _ in 0..2 {
            self.emit(Classes::CALL, device_state_change(device, state));
        }
    }

    fn next_uniqueid(&mut self) -> String {
        let n = self.next_unique;
        self.next_unique += 1;
        format!(
            "{}.{}",
            self.started.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
            n
        )
    }

    /// The caller's channel of a queue call (a Local channel into the queue's context, as in
    /// fixture 05).
    fn caller_channel(&mut self, caller_num: &str) -> Channel {
        let n = self.next_unique;
        let uid = self.next_uniqueid();
        Channel {
            name: format!("Local/s@callq-{n:08x};2"),
            state: 6,
            caller_num: caller_num.into(),
            caller_name: format!("Caller {caller_num}"),
            context: "callq".into(),
            exten: "s".into(),
            priority: 3,
            uniqueid: uid.clone(),
            linkedid: uid,
        }
    }

    /// A caller enters `queue`; the first member app_queue may ring is rung and answers.
    /// Emits QueueCallerJoin, AgentCalled, QueueCallerLeave, AgentConnect, and the member's
    /// device goes INUSE. Fails, leaving the caller waiting, when no member may be rung.
    pub fn queue_call(&mut self, queue: &str, caller_num: &str) -> Result<u64, QueueError> {
        let qi = self.queue_index(queue)?;
        let id = self.next_unique;
        let caller = self.caller_channel(caller_num);
        let uid = caller.uniqueid.clone();
        let mut call = QueueCall {
            id,
            queue: queue.into(),
            caller,
            member: None,
            connected_at: None,
            joined_at: Instant::now(),
        };
        self.local_device("Local/s@callq", DeviceState::Inuse);
        self.queues[qi].waiting.push(id);
        let count = self.queues[qi].waiting.len();
        self.emit(
            Classes::AGENT,
            queue::caller_event("QueueCallerJoin", &call, count, count),
        );
        let ringinuse = self.queues[qi].ringinuse;
        let Some(mi) = self.queues[qi].members.iter().position(|m| m.can_ring(ringinuse)) else {
            self.calls.insert(id, call);
            return Err(QueueError::NoMemberAvailable {
                queue: queue.into(),
                ringinuse,
            });
        };
        let member = self.queues[qi].members[mi].clone();
        let dest_uid = self.next_uniqueid();
        let mut dest = Channel {
            name: format!("{}-{:08x};1", member.interface, id + 1),
            state: 0,
            caller_num: caller_num.into(),
            caller_name: call.caller.caller_name.clone(),
            context: "agents".into(),
            exten: "s".into(),
            priority: 1,
            uniqueid: dest_uid,
            linkedid: uid,
        };
        call.member = Some((dest.clone(), member.interface.clone()));
        self.emit(Classes::AGENT, queue::agent_event("AgentCalled", &call, &member));
        if let Some(local) = local_device_of(&member.interface) {
            self.local_device(&local, DeviceState::Inuse);
        }
        self.queues[qi].waiting.retain(|c| *c != id);
        let left = self.queues[qi].waiting.len();
        self.emit(Classes::AGENT, queue::caller_event("QueueCallerLeave", &call, 1, left));
        dest.state = 6;
        call.member = Some((dest, member.interface.clone()));
        let hold = call.joined_at.elapsed().as_secs();
        let ev = queue::agent_event("AgentConnect", &call, &member)
            .with("HoldTime", hold.to_string())
            .with("RingTime", "0");
        self.emit(Classes::AGENT, ev);
        call.connected_at = Some(Instant::now());
        self.queues[qi].members[mi].in_call = true;
        self.calls.insert(id, call);
        self.processed_calls += 1;
        if is_physical(&member.interface) {
            self.set_device(&member.interface, DeviceState::Inuse);
        }
        Ok(id)
    }

    /// The connected call ends (`reason`: `agent`, `caller` or `transfer`): AgentComplete, the
    /// member's device goes back to NOT_INUSE, QueueMemberStatus.
    pub fn complete_call(&mut self, id: u64, reason: &str) -> Result<(), QueueError> {
        let call = self.calls.remove(&id).ok_or(QueueError::NoCall(id))?;
        let Some((_, iface)) = call.member.clone() else {
            // Never answered: the caller gives up.
            if let Some(q) = self.queues.iter_mut().find(|q| q.name == call.queue) {
                q.waiting.retain(|c| *c != id);
                q.abandoned += 1;
            }
            let hold = call.joined_at.elapsed().as_secs();
            let ev = queue::caller_event("QueueCallerAbandon", &call, 1, 0)
                .with("OriginalPosition", "1")
                .with("HoldTime", hold.to_string());
            self.emit(Classes::AGENT, ev);
            self.emit(Classes::AGENT, queue::caller_event("QueueCallerLeave", &call, 1, 0));
            return Ok(());
        };
        let talk = call.connected_at.map(|t| t.elapsed().as_secs()).unwrap_or(0);
        let qi = self.queue_index(&call.queue)?;
        let mi = self.queues[qi]
            .members
            .iter()
            .position(|m| m.interface == iface)
            .ok_or(QueueError::NoMember(iface.clone()))?;
        let member = self.queues[qi].members[mi].clone();
        let ev = queue::agent_event("AgentComplete", &call, &member)
            .with("HoldTime", "0")
            .with("TalkTime", talk.to_string())
            .with("Reason", reason);
        self.emit(Classes::AGENT, ev);
        {
            let q = &mut self.queues[qi];
            q.completed += 1;
            q.talk_time += talk;
            let m = &mut q.members[mi];
            m.in_call = false;
            m.calls_taken += 1;
            m.last_call = now_secs();
        }
        if is_physical(&iface) {
            self.set_device(&iface, DeviceState::NotInuse);
        }
        if let Some(local) = local_device_of(&iface) {
            self.local_device(&local, DeviceState::NotInuse);
        }
        self.local_device("Local/s@callq", DeviceState::NotInuse);
        let ev = queue::member_event("QueueMemberStatus", &self.queues[qi].name, &self.queues[qi].members[mi]);
        self.emit(Classes::AGENT, ev);
        Ok(())
    }

    /// A member is rung and does not answer: AgentCalled then AgentRingNoAnswer.
    pub fn ring_no_answer(&mut self, queue: &str, interface: &str, caller_num: &str) -> Result<(), QueueError> {
        let (call, member) = self.ring_only(queue, interface, caller_num)?;
        self.emit(
            Classes::AGENT,
            queue::agent_event("AgentRingNoAnswer", &call, &member).with("RingTime", "15"),
        );
        Ok(())
    }

    /// A member is rung, answers, and the caller hangs up before the bridge: AgentDump.
    pub fn dump(&mut self, queue: &str, interface: &str, caller_num: &str) -> Result<(), QueueError> {
        let (call, member) = self.ring_only(queue, interface, caller_num)?;
        self.emit(Classes::AGENT, queue::agent_event("AgentDump", &call, &member));
        Ok(())
    }

    fn ring_only(&mut self, queue: &str, interface: &str, caller_num: &str) -> Result<(QueueCall, Member), QueueError> {
        let q = &self.queues[self.queue_index(queue)?];
        let member = q
            .members
            .iter()
            .find(|m| m.interface == interface)
            .cloned()
            .ok_or_else(|| QueueError::NoMember(interface.into()))?;
        let caller = self.caller_channel(caller_num);
        let dest = Channel {
            name: format!("{interface}-{:08x};1", self.next_unique),
            state: 0,
            uniqueid: self.next_uniqueid(),
            ..caller.clone()
        };
        let call = QueueCall {
            id: 0,
            queue: queue.into(),
            caller,
            member: Some((dest, interface.into())),
            connected_at: None,
            joined_at: Instant::now(),
        };
        self.emit(Classes::AGENT, queue::agent_event("AgentCalled", &call, &member));
        Ok((call, member))
    }

    /// `QueueAdd`: a dynamic member joins; QueueMemberAdded carries its StateInterface.
    pub fn add_member(
        &mut self,
        queue: &str,
        interface: &str,
        name: &str,
        state_interface: &str,
    ) -> Result<(), QueueError> {
        let status = self.state_of(if state_interface.is_empty() {
            interface
        } else {
            state_interface
        });
        let qi = self.queue_index(queue)?;
        let q = &mut self.queues[qi];
        let m = Member {
            interface: interface.into(),
            name: if name.is_empty() { interface.into() } else { name.into() },
            state_interface: if state_interface.is_empty() {
                interface.into()
            } else {
                state_interface.into()
            },
            penalty: 0,
            dynamic: true,
            paused: false,
            reason_paused: String::new(),
            last_pause: 0,
            in_call: false,
            calls_taken: 0,
            last_call: 0,
            login_time: now_secs(),
            status,
        };
        let ev = queue::member_event("QueueMemberAdded", queue, &m);
        q.members.push(m);
        self.emit(Classes::AGENT, ev);
        self.refresh_queues(true);
        Ok(())
    }

    /// `queue reload all` after a static member was added to queues.conf: app_queue adds it
    /// without any event (no QueueMemberAdded; seen on a real Asterisk 22). Only QueueStatus
    /// shows it.
    pub fn reload_add_member(
        &mut self,
        queue: &str,
        interface: &str,
        name: &str,
        state_interface: &str,
    ) -> Result<(), QueueError> {
        let pending = self.pending.len();
        self.add_member(queue, interface, name, state_interface)?;
        self.pending.truncate(pending);
        let qi = self.queue_index(queue)?;
        if let Some(m) = self.queues[qi].members.last_mut() {
            m.dynamic = false;
        }
        Ok(())
    }

    /// `QueueRemove`: QueueMemberRemoved.
    pub fn remove_member(&mut self, queue: &str, interface: &str) -> Result<(), QueueError> {
        let qi = self.queue_index(queue)?;
        let q = &mut self.queues[qi];
        let i = q
            .members
            .iter()
            .position(|m| m.interface == interface)
            .ok_or_else(|| QueueError::NoMember(interface.into()))?;
        let m = q.members.remove(i);
        let ev = queue::member_event("QueueMemberRemoved", queue, &m);
        self.emit(Classes::AGENT, ev);
        self.refresh_queues(true);
        Ok(())
    }

    /// `QueuePause` (app_queue's set_member_paused): pauses or unpauses `interface` in
    /// `queue`, or in every queue it is a member of when `queue` is empty. Each member changed
    /// gets its `Queue:<q>_pause_<interface>` device, the queue's `_avail` device where
    /// app_queue changes it, and a QueueMemberPause with the member's fields, the reason in
    /// PausedReason (also on an unpause, for that event only).
    pub fn pause_member(&mut self, queue: &str, interface: &str, paused: bool, reason: &str) -> Result<(), QueueError> {
        let mut found = false;
        for qi in 0..self.queues.len() {
            if !queue.is_empty() && !self.queues[qi].name.eq_ignore_ascii_case(queue) {
                continue;
            }
            let member = self.queues[qi]
                .members
                .iter()
                .position(|m| m.interface.eq_ignore_ascii_case(interface));
            if let Some(mi) = member {
                found = true;
                self.set_queue_member_pause(qi, mi, paused, reason);
            }
            if !queue.is_empty() {
                break;
            }
        }
        if found {
            Ok(())
        } else {
            Err(QueueError::NoMember(interface.into()))
        }
    }

    fn set_queue_member_pause(&mut self, qi: usize, mi: usize, paused: bool, reason: &str) {
        // app_queue keeps the reason in a char[80].
        let mut end = reason.len().min(79);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let reason = &reason[..end];
        let m = &mut self.queues[qi].members[mi];
        m.paused = paused;
        if paused {
            m.last_pause = now_secs();
        }
        m.reason_paused = if paused { reason.to_string() } else { String::new() };
        let q = &self.queues[qi];
        let pause_device = q.pause_device(&q.members[mi]);
        let avail = if q.members[mi].available() {
            Some(DeviceState::NotInuse)
        } else if !q.members.iter().any(Member::available) {
            Some(DeviceState::Inuse)
        } else {
            None
        };
        let avail_device = q.avail_device();
        let pause_state = if paused {
            DeviceState::Inuse
        } else {
            DeviceState::NotInuse
        };
        self.set_device(&pause_device, pause_state);
        if let Some(s) = avail {
            self.set_device(&avail_device, s);
        }
        let q = &mut self.queues[qi];
        if !paused {
            q.members[mi].reason_paused = reason.to_string();
        }
        let ev = queue::member_event("QueueMemberPause", &q.name, &q.members[mi]);
        if !paused {
            q.members[mi].reason_paused.clear();
        }
        self.emit(Classes::AGENT, ev);
    }

    /// Asterisk 1.8 or 11: no DeviceStateChange, PresenceStateChange or state lists; hints
    /// announce ExtensionStatus without StatusText.
    pub fn legacy(&self) -> bool {
        self.config.major() < 13
    }

    /// The position of a queue by name.
    fn queue_index(&self, queue: &str) -> Result<usize, QueueError> {
        self.queues
            .iter()
            .position(|q| q.name == queue)
            .ok_or_else(|| QueueError::NoQueue(queue.into()))
    }

    pub fn uptime_secs(&self) -> u64 {
        self.started_at.elapsed().as_secs()
    }
}

/// Whether app_queue would see a real device (whose state a call changes) behind this
/// interface, rather than a `Custom:` state someone else writes.
/// The device of a Local channel interface (`Local/100@agents/n` -> `Local/100@agents`).
fn local_device_of(interface: &str) -> Option<String> {
    let rest = interface.strip_prefix("Local/")?;
    let base = rest.split('/').next().unwrap_or(rest);
    Some(format!("Local/{base}"))
}

/// A device with a cached state of its own (a phone): not a Custom state, not a Local channel.
fn is_physical(interface: &str) -> bool {
    strip_prefix_ci(interface, "Custom:").is_none() && !interface.starts_with("Local/")
}

/// Case-insensitive prefix strip, as Asterisk's `strncasecmp` checks.
pub fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s.is_char_boundary(prefix.len()) && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_parse_follows_func_presencestate() {
        let p = parse_presence("away,lunch,back soon").unwrap();
        assert_eq!(
            (p.state, p.subtype.as_str(), p.message.as_str()),
            (PresenceState::Away, "lunch", "back soon")
        );
        let p = parse_presence("xa,c3Vi,bXNn,e").unwrap();
        assert_eq!((p.subtype.as_str(), p.message.as_str()), ("sub", "msg"));
        assert!(parse_presence("bogus").is_none());
        assert!(parse_presence("").is_none());
        // A comma in an unencoded message makes the rest "options" without 'e': refused.
        assert!(parse_presence("away,,back, soon").is_none());
        assert_eq!(parse_presence("dnd").unwrap().message, "");
    }

    #[test]
    fn restart_restores_custom_states_by_last_slash() {
        let mut w = World::new(SimConfig::fixture_server());
        assert!(w.write_custom_device("Custom:100", "INUSE"));
        assert!(w.write_custom_device("Custom:SIP/100", "BUSY"));
        assert!(w.write_custom_presence("CustomPresence:SIP/100", "dnd,,meeting"));
        assert!(w.write_custom_presence("CustomPresence:100", "away,lunch,back soon"));
        w.restart();
        assert_eq!(w.devices.get("Custom:100"), Some(&DeviceState::Busy));
        assert!(!w.devices.contains_key("Custom:SIP/100"));
        assert!(w.presence.contains_key("CustomPresence:100"));
        assert!(!w.presence.contains_key("CustomPresence:SIP/100"));
    }

    #[test]
    fn device_names_are_cut_at_79() {
        let mut w = World::new(SimConfig::fixture_server());
        let long = format!("Custom:{}", "x".repeat(100));
        assert!(w.write_custom_device(&long, "INUSE"));
        assert!(w.devices.keys().any(|k| k.len() == 79 && k.starts_with("Custom:xxx")));
    }
}
