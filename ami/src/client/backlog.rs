//! The events read during the login, before the consumer may have them: kept within a bound of
//! bytes, and delivered after `Connected`.

use crate::message::Message;

pub(crate) struct Backlog {
    events: Vec<Message>,
    bytes: usize,
    limit: usize,
    /// Events that did not fit.
    pub dropped: u64,
}

impl Backlog {
    pub fn new(limit: usize) -> Backlog {
        Backlog {
            events: Vec::new(),
            bytes: 0,
            limit,
            dropped: 0,
        }
    }

    /// Keeps `event` if it fits, else counts it. Nothing is lost that matters: `Connected`,
    /// delivered first, already tells the consumer to re-read the whole state.
    pub fn keep(&mut self, event: Message) {
        let size = event.footprint();
        if self.bytes + size > self.limit {
            self.dropped += 1;
            return;
        }
        self.bytes += size;
        self.events.push(event);
    }

    pub fn into_events(self) -> Vec<Message> {
        self.events
    }
}
