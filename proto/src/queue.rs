//! Queue members' events, carried from each agent to the broker and on to observers (the feed,
//! the WebSocket, the board): a panel on any server sees every queue's members.
//!
//! They are events, not states: nothing is mirrored onto another Asterisk (the queue guard
//! does that on the member's own server). The broker keeps the latest of each member for a
//! client that joins later (see docs/protocol.md).

use serde::{Deserialize, Serialize};

/// Longest queue, interface or member name carried, in bytes (Asterisk's own are at most 80).
pub const MAX_QUEUE_FIELD: usize = 128;
/// Longest pause reason carried, in bytes.
pub const MAX_REASON: usize = 255;

/// What happened to a member, from app_queue's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueEventKind {
    /// AgentCalled: the member's phone rings for a queue caller.
    Called,
    /// AgentConnect: the member answered.
    Connect,
    /// AgentComplete: the call ended.
    Complete,
    /// AgentRingNoAnswer: the member did not answer in time.
    RingNoAnswer,
    /// AgentDump: the member hung up before the caller was bridged.
    Dump,
    /// QueueMemberPause: paused or unpaused (see `paused`).
    Pause,
}

impl QueueEventKind {
    /// The kind of an AMI event, if it is one of these.
    pub fn of_ami(event: &str) -> Option<QueueEventKind> {
        Some(match event {
            "AgentCalled" => QueueEventKind::Called,
            "AgentConnect" => QueueEventKind::Connect,
            "AgentComplete" => QueueEventKind::Complete,
            "AgentRingNoAnswer" => QueueEventKind::RingNoAnswer,
            "AgentDump" => QueueEventKind::Dump,
            "QueueMemberPause" => QueueEventKind::Pause,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            QueueEventKind::Called => "called",
            QueueEventKind::Connect => "connect",
            QueueEventKind::Complete => "complete",
            QueueEventKind::RingNoAnswer => "ring_no_answer",
            QueueEventKind::Dump => "dump",
            QueueEventKind::Pause => "pause",
        }
    }
}

/// One queue member's event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEvent {
    /// The server whose queue it is (the agent's own: the broker refuses another).
    pub origin: String,
    pub queue: String,
    /// The member's interface (`PJSIP/100`, `Local/100@agents`).
    pub interface: String,
    /// The member's name (MemberName), often the interface again.
    #[serde(default)]
    pub member: String,
    pub event: QueueEventKind,
    /// For `pause`: paused (true) or unpaused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// For `pause`: the reason given, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// Why a queue event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueEventError {
    #[error("{field} is empty or longer than {max} bytes, or holds a control character")]
    Field { field: &'static str, max: usize },
    #[error("origin {0:?} is not a valid server id")]
    Origin(String),
}

impl QueueEvent {
    /// Checks every field's size and characters: queue events reach log lines and web pages.
    pub fn validate(&self) -> Result<(), QueueEventError> {
        if !crate::entry::valid_origin(&self.origin) {
            return Err(QueueEventError::Origin(ami::shown(&self.origin).max(40).to_string()));
        }
        let printable = |s: &str| s.chars().all(ami::escape::is_printable);
        for (field, value, max, may_be_empty) in [
            ("queue", &self.queue, MAX_QUEUE_FIELD, false),
            ("interface", &self.interface, MAX_QUEUE_FIELD, false),
            ("member", &self.member, MAX_QUEUE_FIELD, true),
            ("reason", &self.reason, MAX_REASON, true),
        ] {
            if (value.is_empty() && !may_be_empty) || value.len() > max || !printable(value) {
                return Err(QueueEventError::Field { field, max });
            }
        }
        Ok(())
    }

    /// The (origin, queue, interface) it is about: one member of one queue.
    pub fn member_key(&self) -> (&str, &str, &str) {
        (&self.origin, &self.queue, &self.interface)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> QueueEvent {
        QueueEvent {
            origin: "a".into(),
            queue: "support".into(),
            interface: "PJSIP/100".into(),
            member: "Alice".into(),
            event: QueueEventKind::Pause,
            paused: Some(true),
            reason: "lunch".into(),
        }
    }

    #[test]
    fn wire_form_and_validation() {
        let text = serde_json::to_string(&ev()).unwrap();
        assert_eq!(
            text,
            r#"{"origin":"a","queue":"support","interface":"PJSIP/100","member":"Alice","event":"pause","paused":true,"reason":"lunch"}"#
        );
        assert_eq!(serde_json::from_str::<QueueEvent>(&text).unwrap(), ev());
        assert!(ev().validate().is_ok());
        for bad in [
            QueueEvent {
                queue: String::new(),
                ..ev()
            },
            QueueEvent {
                member: "x\u{1b}[31m".into(),
                ..ev()
            },
            QueueEvent {
                reason: "r".repeat(MAX_REASON + 1),
                ..ev()
            },
            QueueEvent {
                origin: "no spaces".into(),
                ..ev()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert_eq!(
            QueueEventKind::of_ami("AgentRingNoAnswer"),
            Some(QueueEventKind::RingNoAnswer)
        );
        assert_eq!(QueueEventKind::of_ami("QueueMemberStatus"), None);
    }
}
