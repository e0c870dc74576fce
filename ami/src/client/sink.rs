//! Delivering events to the consumer without ever waiting for it, within a bound of events and
//! a bound of bytes.
//!
//! The channel bounds the number of events; the bytes they hold are counted here, on send, and
//! released as the consumer takes them. The consumer holds a plain `mpsc::Receiver`, so what it
//! took is read from the channel's free slots: the channel is first in, first out, so when `n`
//! events are left in it the ones taken were the oldest, whose sizes are at the front of
//! `sizes`.

use super::{ClientEvent, Shared};
use std::collections::VecDeque;
use tokio::sync::mpsc;
use tracing::warn;

pub(crate) struct EventSink {
    pub tx: mpsc::Sender<ClientEvent>,
    /// Sizes of the events in the channel, oldest first (see [`footprint`]).
    sizes: VecDeque<usize>,
    /// Their sum.
    held: usize,
    limit: usize,
    /// Something was dropped: the consumer must be told.
    pub lagging: bool,
    /// Events (not notices) dropped since the consumer was last told.
    lagged: u64,
    name: String,
}

impl EventSink {
    pub fn new(tx: mpsc::Sender<ClientEvent>, limit: usize, name: String) -> EventSink {
        EventSink {
            tx,
            sizes: VecDeque::new(),
            held: 0,
            limit,
            lagging: false,
            lagged: 0,
            name,
        }
    }

    /// Queues `ev`, or drops (and counts) it when either bound is reached.
    pub fn deliver(&mut self, shared: &Shared, ev: ClientEvent) {
        if self.lagging && !self.tell() {
            return self.drop_one(shared, &ev);
        }
        let is_event = matches!(ev, ClientEvent::Event(_));
        if !self.push(ev) {
            if !self.lagging {
                warn!(server = %self.name, queued = self.sizes.len(), bytes = self.held, "AMI event buffer full: dropping events until the consumer catches up");
            }
            self.lagging = true;
            if is_event {
                self.lagged += 1;
                shared.metrics.events_dropped.inc();
            }
        }
    }

    fn drop_one(&mut self, shared: &Shared, ev: &ClientEvent) {
        if matches!(ev, ClientEvent::Event(_)) {
            self.lagged += 1;
            shared.metrics.events_dropped.inc();
        }
    }

    /// Tells the consumer what it lost, once it has caught up (half of both bounds free again:
    /// told sooner, it would only lose the next events too). True when told.
    pub fn tell(&mut self) -> bool {
        self.settle();
        let caught_up = self.held <= self.limit / 2 && self.sizes.len() <= self.tx.max_capacity() / 2;
        if !caught_up || !self.push(ClientEvent::Lagged { dropped: self.lagged }) {
            return false;
        }
        warn!(server = %self.name, dropped = self.lagged, "AMI event consumer lagged; events were dropped, resync advised");
        self.lagging = false;
        self.lagged = 0;
        true
    }

    /// Free slots the channel must have for the consumer to have caught up: what the session
    /// waits for (`Sender::reserve_many`) before it calls [`EventSink::tell`], rather than
    /// polling.
    pub fn room_needed(&mut self) -> usize {
        self.settle();
        let max = self.tx.max_capacity();
        let (mut held, mut left) = (self.held, self.sizes.len());
        for size in &self.sizes {
            if held <= self.limit / 2 {
                break;
            }
            held -= size;
            left -= 1;
        }
        max - left.min(max / 2)
    }

    /// Sends within both bounds. One event always fits an empty queue, whatever its size.
    fn push(&mut self, ev: ClientEvent) -> bool {
        self.settle();
        let size = footprint(&ev);
        if self.held + size > self.limit && !self.sizes.is_empty() {
            return false;
        }
        if self.tx.try_send(ev).is_err() {
            return false;
        }
        self.sizes.push_back(size);
        self.held += size;
        true
    }

    /// Releases the sizes of the events the consumer took since the last look.
    fn settle(&mut self) {
        let in_channel = self.tx.max_capacity() - self.tx.capacity();
        while self.sizes.len() > in_channel {
            if let Some(size) = self.sizes.pop_front() {
                self.held -= size;
            }
        }
    }
}

/// Bytes one queued event holds.
fn footprint(ev: &ClientEvent) -> usize {
    std::mem::size_of::<ClientEvent>()
        + match ev {
            ClientEvent::Event(m) => m.footprint(),
            ClientEvent::Disconnected { reason } => reason.capacity(),
            ClientEvent::Connected(info) => {
                info.banner_version.capacity()
                    + [&info.ami_version, &info.asterisk_version, &info.system_name]
                        .iter()
                        .map(|s| s.as_ref().map_or(0, String::capacity))
                        .sum::<usize>()
            }
            ClientEvent::Lagged { .. } => 0,
        }
}
