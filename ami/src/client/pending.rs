//! Actions sent and not yet answered, keyed by ActionID.
//!
//! Answers arrive in any order and interleave with events (pipelining), so every action
//! carries its own ActionID and waits here for the response (and, for a list action, for
//! every item up to the `EventList: Complete` event).

use super::{ActionError, ClientConfig};
use crate::message::Message;
use dashmap::DashMap;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// The answer to a list action: the response, the items, and the closing event.
#[derive(Debug, Clone, Default)]
pub struct ListResult {
    pub response: Message,
    pub items: Vec<Message>,
    pub complete: Option<Message>,
    /// How many events the client had delivered (or dropped, see `Lagged`) before this list's
    /// response arrived: events numbered below it are older than the list's items.
    pub events_before: u64,
}

/// Where [`Client::send_to`](super::Client::send_to) answers go: (token, answer).
pub type Answers = tokio::sync::mpsc::UnboundedSender<(u64, Result<Message, ActionError>)>;

pub(crate) enum Waiter {
    Single(oneshot::Sender<Result<Message, ActionError>>),
    /// Answer sent to a channel with the caller's token: no task or timer per action.
    Notify {
        token: u64,
        action: String,
        tx: Answers,
    },
    List {
        tx: oneshot::Sender<Result<ListResult, ActionError>>,
        action: String,
        result: ListResult,
        started: bool,
        /// What `result.items` holds, in [`Message::footprint`] bytes.
        bytes: usize,
    },
}

/// Lists abandoned (too large, or timed out) whose items may still be arriving, remembered so
/// that those items are discarded rather than handed to the consumer as events. Bounded: an
/// older one forgotten only lets its late items through as events, which the event queue's own
/// bound then holds.
const ABANDONED_KEPT: usize = 16;

/// What the reader should do with an incoming message.
pub(crate) enum Routed {
    /// It answered (part of) an action.
    Consumed,
    /// Not ours: an event for the consumer.
    Event(Message),
    /// A response nobody waits for (timed out, or not ours).
    Stray(Message),
}

#[derive(Default)]
pub(crate) struct Pending {
    waiters: DashMap<String, Waiter>,
    abandoned: Mutex<VecDeque<String>>,
}

impl Pending {
    pub fn insert(&self, id: String, waiter: Waiter) {
        self.waiters.insert(id, waiter);
    }

    pub fn remove(&self, id: &str) {
        self.waiters.remove(id);
    }

    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    /// Fails every waiter (the connection is gone: their answers will never come).
    pub fn fail_all(&self, err: ActionError) {
        let ids: Vec<String> = self.waiters.iter().map(|e| e.key().clone()).collect();
        for id in ids {
            if let Some((_, w)) = self.waiters.remove(&id) {
                match w {
                    Waiter::Single(tx) => drop(tx.send(Err(err.clone()))),
                    Waiter::Notify { token, tx, .. } => drop(tx.send((token, Err(err.clone())))),
                    Waiter::List { tx, .. } => drop(tx.send(Err(err.clone()))),
                }
            }
        }
    }

    /// Fails one waiter, e.g. when its answer arrived malformed.
    pub fn fail(&self, id: &str, err: ActionError) {
        if let Some((_, w)) = self.waiters.remove(id) {
            match w {
                Waiter::Single(tx) => drop(tx.send(Err(err))),
                Waiter::Notify { token, tx, .. } => drop(tx.send((token, Err(err)))),
                Waiter::List { tx, .. } => drop(tx.send(Err(err))),
            }
        }
    }

    /// Forgets a list nobody waits for any more, and discards what is still to come of it.
    pub fn abandon(&self, id: &str) {
        self.waiters.remove(id);
        let mut a = self.abandoned.lock().unwrap_or_else(|p| p.into_inner());
        if a.len() == ABANDONED_KEPT {
            a.pop_front();
        }
        a.push_back(id.to_string());
    }

    /// True when `msg` belongs to an abandoned list (and is dropped); its last item ends it.
    fn discarded(&self, id: &str, msg: &Message) -> bool {
        let mut a = self.abandoned.lock().unwrap_or_else(|p| p.into_inner());
        let Some(i) = a.iter().position(|x| x == id) else {
            return false;
        };
        // The list's own Response only ends it when no items follow: an error, or an answer
        // that is not `EventList: start`. Otherwise the items after it are the list's too.
        let listing = msg.get("EventList").is_some_and(|v| v.eq_ignore_ascii_case("start"));
        let complete = msg.get("EventList").is_some_and(|v| v.eq_ignore_ascii_case("Complete"));
        let last = complete || (msg.response().is_some() && (!msg.is_success() || !listing));
        if last {
            a.remove(i);
        }
        true
    }

    /// Routes one message from Asterisk to its waiter, or back to the caller as an event.
    pub fn route(&self, msg: Message, cfg: &ClientConfig, events_so_far: u64) -> Routed {
        let is_response = msg.response().is_some();
        let Some(id) = msg.action_id().map(str::to_owned) else {
            return if is_response {
                Routed::Stray(msg)
            } else {
                Routed::Event(msg)
            };
        };
        let Some(mut entry) = self.waiters.get_mut(&id) else {
            if self.discarded(&id, &msg) {
                return Routed::Consumed;
            }
            return if is_response {
                Routed::Stray(msg)
            } else {
                Routed::Event(msg)
            };
        };
        match entry.value_mut() {
            Waiter::Notify { .. } => {
                if !is_response {
                    return Routed::Event(msg);
                }
                drop(entry);
                if let Some((_, Waiter::Notify { token, action, tx })) = self.waiters.remove(&id) {
                    let answer = if msg.is_success() {
                        Ok(msg)
                    } else {
                        Err(ActionError::Rejected {
                            action,
                            message: msg.get("Message").unwrap_or("").to_string(),
                        })
                    };
                    let _ = tx.send((token, answer));
                }
                Routed::Consumed
            }
            Waiter::Single(_) => {
                if !is_response {
                    // An event that happens to carry our ActionID (OriginateResponse): not an answer.
                    return Routed::Event(msg);
                }
                drop(entry);
                if let Some((_, Waiter::Single(tx))) = self.waiters.remove(&id) {
                    let _ = tx.send(Ok(msg));
                }
                Routed::Consumed
            }
            Waiter::List {
                action,
                result,
                started,
                bytes,
                ..
            } => {
                if is_response {
                    let error = !msg.is_success();
                    let listing = msg.get("EventList").is_some_and(|v| v.eq_ignore_ascii_case("start"));
                    let action = action.clone();
                    result.response = msg;
                    result.events_before = events_so_far;
                    *started = true;
                    if error || !listing {
                        drop(entry);
                        self.finish_list(&id, error.then_some(action));
                    }
                    return Routed::Consumed;
                }
                let done = msg.get("EventList").is_some_and(|v| v.eq_ignore_ascii_case("Complete"));
                if done {
                    result.complete = Some(msg);
                    drop(entry);
                    self.finish_list(&id, None);
                } else if result.items.len() >= cfg.max_list_items {
                    drop(entry);
                    self.fail(
                        &id,
                        ActionError::ListTooLong {
                            limit: cfg.max_list_items,
                        },
                    );
                    self.abandon(&id);
                } else {
                    *bytes += msg.footprint();
                    result.items.push(msg);
                    if *bytes > cfg.max_list_bytes {
                        let err = ActionError::ListTooLarge {
                            action: action.clone(),
                            limit: cfg.max_list_bytes,
                            items: result.items.len(),
                            held: *bytes,
                        };
                        drop(entry);
                        self.fail(&id, err);
                        self.abandon(&id);
                    }
                }
                Routed::Consumed
            }
        }
    }

    fn finish_list(&self, id: &str, rejected: Option<String>) {
        if let Some((_, Waiter::List { tx, result, .. })) = self.waiters.remove(id) {
            let answer = match rejected {
                Some(action) => Err(ActionError::Rejected {
                    action,
                    message: result.response.get("Message").unwrap_or("").to_string(),
                }),
                None => Ok(result),
            };
            let _ = tx.send(answer);
        }
    }
}
