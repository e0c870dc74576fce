//! What the broker core says happened: one typed stream, in the order it happened.
//!
//! The core emits these as it works; the I/O loop hands each round's events, as one
//! [`Batch`], to every consumer through the [`stream`](crate::stream) (the feed, the HTTP
//! API's WebSocket, and later a journal or a peer broker). The agents' own queues are filled
//! by the core itself (see [`crate::fanout`]): they decide its backpressure and its snapshots.

use crate::table::Change;
use proto::{ErrorCode, QueueEvent};
use std::sync::Arc;

/// Why an agent's session ended without another taking its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostReason {
    /// Silent for longer than `lost_after`.
    Heartbeat,
    /// libzmq said its connection is gone.
    Disconnected,
}

impl LostReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LostReason::Heartbeat => "heartbeat",
            LostReason::Disconnected => "disconnected",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    /// Entries of the table changed, each with its new version, in version order (a removal
    /// has no value).
    Changed(Arc<[Change]>),
    AgentJoined {
        server: Arc<str>,
        instance: u64,
        software: String,
    },
    /// The server has no session any more; its lost policy has been applied (its changes are
    /// in the `Changed` that follows).
    AgentLost { server: Arc<str>, reason: LostReason },
    /// An agent's view of its Asterisk.
    AgentStatus {
        server: Arc<str>,
        ami_connected: bool,
        asterisk: Option<String>,
        detail: String,
    },
    /// A message, or entries of one, refused (`server` None: a peer that has not said hello).
    Refused {
        server: Option<Arc<str>>,
        code: ErrorCode,
        message: String,
    },
    /// Queue members' events from one server, validated.
    Queue(Arc<[QueueEvent]>),
}

impl Event {
    /// An upper bound of the memory the event keeps alive, for the stream's byte bound. The
    /// names of a change are shared with the table, but counted as if they were not.
    pub fn bytes(&self) -> usize {
        const BASE: usize = std::mem::size_of::<Event>();
        match self {
            Event::Changed(c) => {
                BASE + c
                    .iter()
                    .map(|c| std::mem::size_of::<Change>() + c.name.len() + c.origin.len() + 16)
                    .sum::<usize>()
            }
            Event::AgentJoined { software, .. } => BASE + software.len(),
            Event::AgentLost { .. } => BASE,
            Event::AgentStatus { asterisk, detail, .. } => {
                BASE + detail.len() + asterisk.as_ref().map_or(0, String::len)
            }
            Event::Refused { message, .. } => BASE + message.len(),
            Event::Queue(q) => {
                BASE + q
                    .iter()
                    .map(|e| {
                        std::mem::size_of::<QueueEvent>()
                            + e.origin.len()
                            + e.queue.len()
                            + e.interface.len()
                            + e.member.len()
                            + e.reason.len()
                    })
                    .sum::<usize>()
            }
        }
    }
}

/// One round of the core's events, and the table's version after them.
#[derive(Debug, Clone)]
pub struct Batch {
    pub events: Vec<Event>,
    pub version: u64,
    /// The broker that made it (a new one starts its versions again).
    pub broker: u64,
}

impl Batch {
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Batch>() + self.events.iter().map(Event::bytes).sum::<usize>()
    }
}
