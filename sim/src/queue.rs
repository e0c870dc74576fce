//! app_queue as far as hintbus cares: members, their status, and the events of a queue call.

use crate::config::QueueConfig;
use crate::events::event;
use crate::privilege::Classes;
use ami::{DeviceState, Message};

#[derive(Debug, Clone)]
pub struct Member {
    pub interface: String,
    pub name: String,
    pub state_interface: String,
    pub penalty: u32,
    pub dynamic: bool,
    pub paused: bool,
    /// Why it is paused (PausedReason), at most 79 bytes as app_queue keeps it.
    pub reason_paused: String,
    /// Unix time of its last pause (LastPause), 0 if never.
    pub last_pause: u64,
    pub in_call: bool,
    pub calls_taken: u64,
    pub last_call: u64,
    pub login_time: u64,
    /// The member's device state, as app_queue tracks it from the state interface.
    pub status: DeviceState,
}

impl Member {
    pub fn membership(&self) -> &'static str {
        if self.dynamic {
            "dynamic"
        } else {
            "static"
        }
    }

    /// With `ringinuse=no` app_queue rings a member only when its device is free: this is the
    /// check the queue guard's `Custom:` state feeds.
    pub fn can_ring(&self, ringinuse: bool) -> bool {
        !self.paused && (ringinuse || matches!(self.status, DeviceState::NotInuse | DeviceState::Unknown))
    }

    /// Available for `Queue:<q>_avail`.
    pub fn available(&self) -> bool {
        !self.paused && matches!(self.status, DeviceState::NotInuse | DeviceState::Unknown)
    }
}

#[derive(Debug, Clone)]
pub struct Queue {
    pub name: String,
    pub strategy: String,
    pub ringinuse: bool,
    pub members: Vec<Member>,
    pub completed: u64,
    pub abandoned: u64,
    pub talk_time: u64,
    pub waiting: Vec<u64>,
}

impl Queue {
    pub fn from_config(q: &QueueConfig, now: u64) -> Queue {
        Queue {
            name: q.name.clone(),
            strategy: q.strategy.clone(),
            ringinuse: q.ringinuse,
            members: q
                .members
                .iter()
                .map(|m| Member {
                    interface: m.interface.clone(),
                    name: if m.name.is_empty() {
                        m.interface.clone()
                    } else {
                        m.name.clone()
                    },
                    state_interface: if m.state_interface.is_empty() {
                        m.interface.clone()
                    } else {
                        m.state_interface.clone()
                    },
                    penalty: m.penalty,
                    dynamic: false,
                    paused: false,
                    reason_paused: String::new(),
                    last_pause: 0,
                    in_call: false,
                    calls_taken: 0,
                    last_call: 0,
                    login_time: now,
                    status: DeviceState::Unknown,
                })
                .collect(),
            completed: 0,
            abandoned: 0,
            talk_time: 0,
            waiting: Vec::new(),
        }
    }

    pub fn avail_device(&self) -> String {
        format!("Queue:{}_avail", self.name)
    }

    pub fn pause_device(&self, m: &Member) -> String {
        format!("Queue:{}_pause_{}", self.name, m.interface)
    }
}

/// The member fields shared by QueueMemberStatus, QueueMemberAdded, QueueMemberRemoved and
/// QueueMemberPause (app_queue's queue_member_blob_create).
pub fn member_event(name: &str, queue: &str, m: &Member) -> Message {
    let ev = event(name, Classes::AGENT)
        .with("Queue", queue)
        .with("MemberName", m.name.clone())
        .with("Interface", m.interface.clone());
    member_fields(ev, m).with("Ringinuse", "0").with("Wrapuptime", "0")
}

/// The member fields from StateInterface to PausedReason, shared by the member events and
/// QueueStatus's QueueMember items (which name the first two fields differently).
pub fn member_fields(msg: Message, m: &Member) -> Message {
    msg.with("StateInterface", m.state_interface.clone())
        .with("Membership", m.membership())
        .with("Penalty", m.penalty.to_string())
        .with("CallsTaken", m.calls_taken.to_string())
        .with("LastCall", m.last_call.to_string())
        .with("LastPause", m.last_pause.to_string())
        .with("LoginTime", m.login_time.to_string())
        .with("InCall", u8::from(m.in_call).to_string())
        .with("Status", (m.status as u8).to_string())
        .with("Paused", u8::from(m.paused).to_string())
        .with("PausedReason", m.reason_paused.clone())
}

/// One side of a call, as the channel snapshot fields of an event.
#[derive(Debug, Clone)]
pub struct Channel {
    pub name: String,
    pub state: u8,
    pub caller_num: String,
    pub caller_name: String,
    pub context: String,
    pub exten: String,
    pub priority: u32,
    pub uniqueid: String,
    pub linkedid: String,
}

impl Channel {
    fn state_desc(&self) -> &'static str {
        match self.state {
            0 => "Down",
            5 => "Ringing",
            _ => "Up",
        }
    }

    /// Appends the snapshot fields, with `prefix` `""` for the caller and `"Dest"` for the member.
    pub fn append(&self, m: &mut Message, prefix: &str) {
        let f = |n: &str| format!("{prefix}{n}");
        m.push(f("Channel"), self.name.clone());
        m.push(f("ChannelState"), self.state.to_string());
        m.push(f("ChannelStateDesc"), self.state_desc());
        m.push(f("CallerIDNum"), self.caller_num.clone());
        m.push(f("CallerIDName"), self.caller_name.clone());
        m.push(f("ConnectedLineNum"), self.caller_num.clone());
        m.push(f("ConnectedLineName"), self.caller_name.clone());
        m.push(f("Language"), "en");
        m.push(f("AccountCode"), "");
        m.push(f("Context"), self.context.clone());
        m.push(f("Exten"), self.exten.clone());
        m.push(f("Priority"), self.priority.to_string());
        m.push(f("Uniqueid"), self.uniqueid.clone());
        m.push(f("Linkedid"), self.linkedid.clone());
    }
}

/// A call in a queue, from join to completion.
#[derive(Debug, Clone)]
pub struct QueueCall {
    pub id: u64,
    pub queue: String,
    pub caller: Channel,
    /// The member's channel and interface once one was rung.
    pub member: Option<(Channel, String)>,
    pub connected_at: Option<std::time::Instant>,
    pub joined_at: std::time::Instant,
}

/// An Agent* event: caller snapshot, member snapshot, then the queue fields.
pub fn agent_event(name: &str, call: &QueueCall, member: &Member) -> Message {
    let mut m = event(name, Classes::AGENT);
    call.caller.append(&mut m, "");
    if let Some((dest, _)) = &call.member {
        dest.append(&mut m, "Dest");
    }
    m.push("Queue", call.queue.clone());
    m.push("Interface", member.interface.clone());
    m.push("MemberName", member.name.clone());
    m
}

/// QueueCallerJoin / QueueCallerLeave / QueueCallerAbandon.
pub fn caller_event(name: &str, call: &QueueCall, position: usize, count: usize) -> Message {
    let mut m = event(name, Classes::AGENT);
    call.caller.append(&mut m, "");
    m.push("Queue", call.queue.clone());
    m.push("Position", position.to_string());
    if name != "QueueCallerAbandon" {
        m.push("Count", count.to_string());
    }
    m
}
