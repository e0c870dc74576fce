//! The feed: every change on a PUB socket, for observers (docs/protocol.md, "The feed").
//!
//! Its own thread owns the socket (libzmq sockets are not shared between threads). PUB never
//! blocks: a slow subscriber loses messages, and so does this sink when it falls behind the
//! stream; agents are not affected either way.

use crate::events::Event;
use crate::stream::{Recv, Subscription};
use proto::transport::SocketOptions;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

pub struct Feed {
    endpoint: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Feed {
    /// Binds the PUB socket (errors name the endpoint) and starts publishing what `sub` gets.
    pub fn start(
        ctx: &zmq::Context,
        endpoint: &str,
        opts: &SocketOptions,
        mut sub: Subscription,
    ) -> Result<Feed, String> {
        let pub_ = ctx.socket(zmq::PUB).map_err(|e| e.to_string())?;
        pub_.set_sndhwm(opts.hwm).map_err(|e| e.to_string())?;
        pub_.set_linger(0).map_err(|e| e.to_string())?;
        // What a subscriber sends (subscriptions) is bounded as well.
        pub_.set_maxmsgsize(opts.max_msg_size).map_err(|e| e.to_string())?;
        pub_.bind(endpoint)
            .map_err(|e| format!("cannot publish the feed on {endpoint}: {e}"))?;
        let bound = pub_
            .get_last_endpoint()
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| endpoint.to_string());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("hintbus-feed".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    match sub.recv_blocking(Duration::from_millis(200)) {
                        Some(Recv::Batch(b)) => {
                            for e in &b.events {
                                publish(&pub_, e);
                            }
                        }
                        Some(Recv::Lagged) => warn!("the feed fell behind: some changes were not published"),
                        Some(Recv::Closed) => break,
                        None => {}
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Feed {
            endpoint: bound,
            stop,
            thread: Some(thread),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Topics: `device.<origin>`, `presence.<origin>`, `queue.<origin>`; the body is JSON.
fn publish(pub_: &zmq::Socket, e: &Event) {
    let send = |topic: String, body: Vec<u8>| {
        let _ = pub_.send_multipart([topic.as_bytes(), &body[..]], zmq::DONTWAIT);
    };
    match e {
        Event::Changed(changes) => {
            for c in changes.iter() {
                let body = serde_json::to_vec(&c.entry()).expect("entries serialize");
                send(format!("{}.{}", c.kind.as_str(), c.origin), body);
            }
        }
        Event::Queue(events) => {
            for q in events.iter() {
                let body = serde_json::to_vec(q).expect("queue events serialize");
                send(format!("queue.{}", q.origin), body);
            }
        }
        Event::AgentJoined { .. } | Event::AgentLost { .. } | Event::AgentStatus { .. } | Event::Refused { .. } => {}
    }
}
