//! Queue members' events (AgentCalled, AgentConnect, AgentComplete, AgentRingNoAnswer,
//! AgentDump, QueueMemberPause) read from AMI, for the broker to pass on to observers.
//!
//! They are events, not state: sent while the broker session is live, in one frame per turn
//! of the agent's loop, and never kept for later (a board that joins later asks the broker,
//! which keeps each member's latest).

use ami::Message;
use proto::message::{MAX_ENTRIES, MAX_FRAME};
use proto::{QueueEvent, QueueEventKind};

/// The queue event an AMI event is, if it is one (not yet validated: see
/// [`QueueEvent::validate`]).
///
/// The member is `Interface` (Asterisk 12 and later) or `Member` (1.8 and 11, where
/// AgentCalled names it `AgentCalled` and its name `AgentName`). `Paused` is app_queue's
/// integer; `PausedReason` is kept for QueueMemberPause only.
pub fn read(origin: &str, m: &Message) -> Option<QueueEvent> {
    let event = QueueEventKind::of_ami(m.event_name()?)?;
    let field = |names: &[&str]| names.iter().find_map(|n| m.get(n)).unwrap_or("").to_string();
    let pause = event == QueueEventKind::Pause;
    Some(QueueEvent {
        origin: origin.to_string(),
        queue: field(&["Queue"]),
        interface: field(&["Interface", "Member", "AgentCalled"]),
        member: field(&["MemberName", "AgentName"]),
        event,
        paused: pause
            .then(|| match m.get("Paused").map(str::trim) {
                Some("1") => Some(true),
                Some("0") => Some(false),
                _ => None,
            })
            .flatten(),
        reason: if pause { field(&["PausedReason"]) } else { String::new() },
    })
}

/// What one frame may carry, in estimated JSON bytes: well under [`MAX_FRAME`].
const FRAME_BUDGET: usize = MAX_FRAME / 2;

/// Most bytes `ev` takes in a frame: validated text is printable, so JSON escapes at most
/// double it (`"` and `\`); the rest is the keys and punctuation.
fn wire_bytes(ev: &QueueEvent) -> usize {
    let text = ev.origin.len() + ev.queue.len() + ev.interface.len() + ev.member.len() + ev.reason.len();
    2 * text + 160
}

/// The events of one turn, bounded by count and bytes to what one `queue` frame carries.
#[derive(Debug, Default)]
pub struct Batch {
    events: Vec<QueueEvent>,
    bytes: usize,
}

impl Batch {
    /// Adds a validated event; when the frame is full, hands back its events to send now.
    pub fn push(&mut self, ev: QueueEvent) -> Option<Vec<QueueEvent>> {
        let size = wire_bytes(&ev);
        let full = (self.events.len() == MAX_ENTRIES || self.bytes + size > FRAME_BUDGET).then(|| self.take());
        self.bytes += size;
        self.events.push(ev);
        full
    }

    /// Everything held, leaving the batch empty.
    pub fn take(&mut self) -> Vec<QueueEvent> {
        self.bytes = 0;
        std::mem::take(&mut self.events)
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pause(reason: &str) -> Message {
        Message::new()
            .with("Event", "QueueMemberPause")
            .with("Queue", "support")
            .with("MemberName", "Alice")
            .with("Interface", "PJSIP/100")
            .with("Paused", "1")
            .with("PausedReason", reason)
    }

    #[test]
    fn reads_the_fields_of_each_version() {
        let ev = read("a", &pause("lunch")).unwrap();
        assert_eq!(
            (ev.queue.as_str(), ev.interface.as_str(), ev.member.as_str()),
            ("support", "PJSIP/100", "Alice")
        );
        assert_eq!(
            (ev.event, ev.paused, ev.reason.as_str()),
            (QueueEventKind::Pause, Some(true), "lunch")
        );
        assert!(ev.validate().is_ok());
        // Asterisk 11's AgentComplete names the member `Member`.
        let old = Message::new()
            .with("Event", "AgentComplete")
            .with("Queue", "support")
            .with("Member", "SIP/100")
            .with("MemberName", "Alice")
            .with("PausedReason", "not for this kind");
        let ev = read("a", &old).unwrap();
        assert_eq!(
            (ev.interface.as_str(), ev.paused, ev.reason.as_str()),
            ("SIP/100", None, "")
        );
        assert!(read("a", &Message::new().with("Event", "QueueMemberStatus")).is_none());
        // Too long a reason: read, and refused by validation alone.
        assert!(read("a", &pause(&"r".repeat(300))).unwrap().validate().is_err());
    }

    #[test]
    fn a_batch_never_passes_one_frame() {
        let ev = read("a", &pause(&"\"".repeat(255))).unwrap();
        let mut b = Batch::default();
        let mut frames = Vec::new();
        for _ in 0..5000 {
            frames.extend(b.push(ev.clone()));
        }
        frames.push(b.take());
        assert!(b.is_empty());
        assert_eq!(frames.iter().map(Vec::len).sum::<usize>(), 5000);
        for f in &frames {
            assert!(f.len() <= MAX_ENTRIES);
            let bytes = proto::Msg::Queue { events: f.clone() }.encode();
            assert!(bytes.len() < MAX_FRAME, "{}", bytes.len());
            assert!(proto::Msg::decode(&bytes).is_ok());
        }
    }
}
