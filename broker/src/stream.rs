//! The change stream: every consumer gets every [`Batch`] the core emits, and none can slow
//! the core down.
//!
//! Written here rather than taken from tokio's `broadcast`: that channel bounds what a slow
//! receiver holds by a count of messages, and one batch may hold a whole server's sync. Here
//! each subscriber has a byte bound; one that passes it is told it lagged (its queue is
//! dropped) and resynchronises from a snapshot of the table, as a WebSocket client or a peer
//! broker must then do anyway. Batches are shared (`Arc`): a subscriber's bytes are what it
//! keeps alive, not copies.
//!
//! Publishing takes one short lock per subscriber and never waits for a consumer; a consumer
//! waits either asynchronously (a tokio task) or blocking (a thread of its own, like the feed).

use crate::events::Batch;
use crate::metrics::{Metrics, SinkLabel};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

/// What a subscriber may hold unread by default.
pub const DEFAULT_BOUND: usize = 32 << 20;

/// What a subscriber gets next.
#[derive(Debug, Clone)]
pub enum Recv {
    Batch(Arc<Batch>),
    /// Batches were dropped because this subscriber fell behind its byte bound: what it knows
    /// of the table is incomplete, and it must take a snapshot before going on.
    Lagged,
    /// The broker has stopped.
    Closed,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<(Arc<Batch>, usize)>,
    bytes: usize,
    lagged: bool,
    closed: bool,
}

struct Shared {
    name: &'static str,
    bound: usize,
    queue: Mutex<Queue>,
    /// For a consumer that is a tokio task.
    notify: tokio::sync::Notify,
    /// For a consumer that is a thread.
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A consumer that panicked holding the lock leaves a queue that is still whole.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The publishing side, held by the broker's I/O loop.
#[derive(Clone)]
pub struct Stream {
    subs: Arc<Mutex<Vec<Arc<Shared>>>>,
    metrics: Metrics,
}

impl Stream {
    pub fn new(metrics: Metrics) -> Stream {
        Stream {
            subs: Default::default(),
            metrics,
        }
    }

    /// A new consumer, which gets every batch published from now on. `name` labels its
    /// `hintbus_broker_sink_lagged_total`.
    pub fn subscribe(&self, name: &'static str, bound: usize) -> Subscription {
        let shared = Arc::new(Shared {
            name,
            bound,
            queue: Mutex::default(),
            notify: tokio::sync::Notify::new(),
            cond: Condvar::new(),
        });
        self.subs.lock().unwrap_or_else(|e| e.into_inner()).push(shared.clone());
        Subscription { shared }
    }

    /// Hands a batch to every consumer; never waits for one.
    pub fn publish(&self, batch: Batch) {
        let mut subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        // A consumer that is gone holds the only other reference.
        subs.retain(|s| Arc::strong_count(s) > 1);
        if subs.is_empty() {
            return;
        }
        let bytes = batch.bytes();
        let batch = Arc::new(batch);
        for s in subs.iter() {
            let mut q = s.lock();
            if q.lagged {
                continue;
            }
            // The bound is on the backlog: one batch larger than it (a whole server's sync) is
            // still taken by a consumer that is keeping up.
            if !q.items.is_empty() && q.bytes + bytes > s.bound {
                q.items.clear();
                q.bytes = 0;
                q.lagged = true;
                self.metrics
                    .sink_lagged
                    .get_or_create(&SinkLabel { sink: s.name.into() })
                    .inc();
            } else {
                q.items.push_back((batch.clone(), bytes));
                q.bytes += bytes;
            }
            drop(q);
            s.notify.notify_one();
            s.cond.notify_one();
        }
    }

    /// Tells every consumer the broker has stopped.
    pub fn close(&self) {
        for s in self.subs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            s.lock().closed = true;
            s.notify.notify_one();
            s.cond.notify_one();
        }
    }

    /// Consumers now.
    pub fn subscribers(&self) -> usize {
        let mut subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| Arc::strong_count(s) > 1);
        subs.len()
    }
}

/// One consumer's end of the stream. Dropping it unsubscribes.
pub struct Subscription {
    shared: Arc<Shared>,
}

impl Subscription {
    fn take(&self) -> Option<Recv> {
        let mut q = self.shared.lock();
        if q.lagged {
            q.lagged = false;
            return Some(Recv::Lagged);
        }
        if let Some((b, bytes)) = q.items.pop_front() {
            q.bytes -= bytes;
            return Some(Recv::Batch(b));
        }
        q.closed.then_some(Recv::Closed)
    }

    /// The next batch, waiting for it (from a tokio task).
    pub async fn recv(&mut self) -> Recv {
        loop {
            if let Some(r) = self.take() {
                return r;
            }
            // A notification sent between `take` and here is kept as a permit.
            self.shared.notify.notified().await;
        }
    }

    /// The next batch, waiting for it (from a thread of its own), or None after `timeout`.
    pub fn recv_blocking(&mut self, timeout: std::time::Duration) -> Option<Recv> {
        let deadline = std::time::Instant::now() + timeout;
        let mut q = self.shared.lock();
        loop {
            if q.lagged || q.closed || !q.items.is_empty() {
                drop(q);
                return self.take();
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            q = self
                .shared
                .cond
                .wait_timeout(q, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Takes what is there without waiting.
    pub fn try_recv(&mut self) -> Option<Recv> {
        self.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, LostReason};
    use std::time::Duration;

    fn batch(n: usize) -> Batch {
        Batch {
            events: (0..n)
                .map(|_| Event::AgentLost {
                    server: "a".into(),
                    reason: LostReason::Heartbeat,
                })
                .collect(),
            version: n as u64,
            broker: 1,
        }
    }

    #[test]
    fn every_subscriber_gets_every_batch_in_order() {
        let s = Stream::new(Metrics::default());
        let mut a = s.subscribe("a", DEFAULT_BOUND);
        let mut b = s.subscribe("b", DEFAULT_BOUND);
        s.publish(batch(1));
        s.publish(batch(2));
        for sub in [&mut a, &mut b] {
            for v in [1, 2] {
                let Some(Recv::Batch(x)) = sub.try_recv() else { panic!() };
                assert_eq!(x.version, v);
            }
            assert!(sub.try_recv().is_none());
        }
        drop(b);
        s.publish(batch(3));
        assert_eq!(s.subscribers(), 1);
        s.close();
        assert!(matches!(a.recv_blocking(Duration::from_secs(5)), Some(Recv::Batch(_))));
        assert!(matches!(a.recv_blocking(Duration::from_secs(5)), Some(Recv::Closed)));
    }

    #[test]
    fn a_slow_subscriber_lags_alone_and_holds_no_more_than_its_bound() {
        let m = Metrics::default();
        let s = Stream::new(m.clone());
        let one = batch(10).bytes();
        let mut slow = s.subscribe("slow", one * 3);
        let mut fast = s.subscribe("fast", DEFAULT_BOUND);
        for _ in 0..3 {
            s.publish(batch(10));
            assert!(matches!(fast.try_recv(), Some(Recv::Batch(_))));
        }
        s.publish(batch(10));
        assert!(matches!(fast.try_recv(), Some(Recv::Batch(_))));
        assert!(matches!(slow.try_recv(), Some(Recv::Lagged)), "over its bound");
        assert!(slow.try_recv().is_none(), "its queue was dropped");
        assert_eq!(m.sink_lagged.get_or_create(&SinkLabel { sink: "slow".into() }).get(), 1);
        s.publish(batch(10));
        assert!(matches!(slow.try_recv(), Some(Recv::Batch(_))), "and it goes on after");
        // One batch over the bound is taken by a consumer that keeps up.
        s.publish(batch(100));
        assert!(matches!(slow.try_recv(), Some(Recv::Batch(_))));
    }

    #[tokio::test]
    async fn an_async_consumer_is_woken() {
        let s = Stream::new(Metrics::default());
        let mut sub = s.subscribe("ws", DEFAULT_BOUND);
        let t = tokio::spawn(async move { sub.recv().await });
        tokio::task::yield_now().await;
        s.publish(batch(1));
        assert!(matches!(t.await.unwrap(), Recv::Batch(_)));
    }
}
