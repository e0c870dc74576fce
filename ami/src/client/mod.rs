//! An async AMI client: one TCP session to one Asterisk, kept alive for as long as the
//! [`Client`] lives.
//!
//! - Actions are pipelined: many in flight at once, each answered by its ActionID
//!   ([`Client::action`], [`Client::list`]), each with a timeout.
//! - Events come out of a bounded channel as [`ClientEvent`]s. The socket reader never waits
//!   for the consumer (Asterisk drops a client that reads slower than its `writetimeout`):
//!   when the buffer is full, in events or in bytes, events are dropped, counted, logged, and
//!   the consumer is told with [`ClientEvent::Lagged`] so that it can resync instead of
//!   trusting a stale view.
//! - Everything held from the network is bounded in bytes, not only in messages: the event
//!   queue, a list's items, the events read during the login ([`ClientConfig`]).
//! - A Ping every `ping_interval` detects a dead or mute server; the session is then dropped
//!   and rebuilt with exponential backoff and jitter. Every successful (re)login is announced
//!   with [`ClientEvent::Connected`], the caller's cue to re-read the full state, because
//!   events sent while we were away are lost.
//! - A refused login is retried no sooner than `auth_retry`, never in a hot loop; the secret
//!   appears in no log line and no error.
//! - What it counts is in [`Metrics`], for Prometheus.

mod auth;
mod backlog;
mod backoff;
mod config;
mod connection;
pub mod metrics;
mod pending;
mod sink;

pub use auth::md5_key;
pub use backoff::Backoff;
pub use config::{
    AuthMethod, ClientConfig, DEFAULT_EVENT_BUFFER_BYTES, DEFAULT_LOGIN_BACKLOG_BYTES, DEFAULT_MAX_LIST_BYTES,
};
pub use metrics::Metrics;
pub use pending::{Answers, ListResult};

use crate::escape::shown;
use crate::message::{EncodeError, Message};
use pending::{Pending, Waiter};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// What the server told us at login.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerInfo {
    /// From the banner, e.g. `11.0.0` (Asterisk 22) or `1.1` (Asterisk 1.8).
    pub banner_version: String,
    /// `AMIversion` from CoreSettings.
    pub ami_version: Option<String>,
    /// `AsteriskVersion` from CoreSettings, e.g. `22.10.1`.
    pub asterisk_version: Option<String>,
    /// `SystemName` from CoreSettings.
    pub system_name: Option<String>,
}

impl ServerInfo {
    /// Asterisk's major version, from CoreSettings, else guessed from the banner's AMI version.
    pub fn asterisk_major(&self) -> Option<u32> {
        if let Some(v) = &self.asterisk_version {
            // Certified releases read `certified-18.9-cert4`.
            let digits = v.trim_start_matches(|c: char| !c.is_ascii_digit());
            if let Some(m) = digits.split('.').next().and_then(|m| m.parse().ok()) {
                return Some(m);
            }
        }
        match self.banner_version.as_str() {
            "1.1" => Some(1),
            "1.3" => Some(11),
            "1.4" => Some(12),
            _ => None,
        }
    }

    /// True when the server has DeviceStateChange, PresenceStateChange and their lists (13+).
    pub fn has_state_events(&self) -> bool {
        self.asterisk_major().is_some_and(|m| m >= 13)
    }
}

/// What the client hands to its consumer, in order.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// Logged in (again). Everything before this may have been missed: resync.
    Connected(ServerInfo),
    /// The session ended; the client is reconnecting.
    Disconnected { reason: String },
    /// An event from Asterisk.
    Event(Message),
    /// The consumer was too slow and `dropped` events were thrown away: resync.
    Lagged { dropped: u64 },
}

/// Why an action got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("not connected to Asterisk")]
    NotConnected,
    #[error("connection to Asterisk lost before the answer")]
    Disconnected,
    #[error("no answer to {action} within {timeout:?}")]
    Timeout { action: String, timeout: Duration },
    /// `message` is Asterisk's text, escaped when shown.
    #[error("Asterisk refused {action}: {}", shown(.message))]
    Rejected { action: String, message: String },
    #[error("answer to {action} was malformed: {}", shown(.detail))]
    Malformed { action: String, detail: String },
    #[error("list answer longer than {limit} items")]
    ListTooLong { limit: usize },
    /// The list's items passed [`ClientConfig::max_list_bytes`]: the list is abandoned (its
    /// remaining items are discarded as they arrive) and the memory given back.
    #[error("answer to {action} abandoned at item {items}: its items hold {held} bytes, over the bound of {limit} (max_list_bytes)")]
    ListTooLarge {
        action: String,
        limit: usize,
        items: usize,
        held: usize,
    },
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("client is shut down")]
    Closed,
}

pub(crate) struct Shared {
    pub config: ClientConfig,
    pub pending: Pending,
    /// The current session's writer queue; `None` while disconnected.
    pub outbound: Mutex<Option<mpsc::Sender<Message>>>,
    pub next_id: AtomicU64,
    pub info: watch::Sender<Option<ServerInfo>>,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
}

impl Shared {
    pub fn next_action_id(&self) -> String {
        format!("hb-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

/// A handle to one AMI session. Cheap to clone; the session ends with [`Client::shutdown`]
/// or when the last handle is dropped.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    _guard: Arc<DropGuard>,
}

struct DropGuard(CancellationToken);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Client {
    /// Starts the session task and returns the handle and the event stream.
    pub fn start(config: ClientConfig) -> (Client, mpsc::Receiver<ClientEvent>) {
        let (events_tx, events_rx) = mpsc::channel(config.event_buffer.max(1));
        let (info, _) = watch::channel(None);
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared {
            config,
            pending: Pending::default(),
            outbound: Mutex::new(None),
            next_id: AtomicU64::new(1),
            info,
            metrics: Metrics::default(),
            shutdown: shutdown.clone(),
        });
        tokio::spawn(connection::supervise(shared.clone(), events_tx));
        (
            Client {
                shared,
                _guard: Arc::new(DropGuard(shutdown)),
            },
            events_rx,
        )
    }

    /// Gives an action our ActionID and checks it can be sent: (action name, ActionID).
    fn stamp(&self, action: &mut Message) -> Result<(String, String), ActionError> {
        let name = action.action_name().unwrap_or("?").to_string();
        let id = self.shared.next_action_id();
        action.set("ActionID", id.clone());
        action.validate()?;
        Ok((name, id))
    }

    /// Sends an action and waits for its response. `Response: Error` becomes
    /// [`ActionError::Rejected`] with Asterisk's message.
    pub async fn action(&self, action: Message) -> Result<Message, ActionError> {
        self.action_timeout(action, self.shared.config.action_timeout).await
    }

    /// [`Client::action`] with its own timeout.
    pub async fn action_timeout(&self, mut action: Message, timeout: Duration) -> Result<Message, ActionError> {
        let (name, id) = self.stamp(&mut action)?;
        let (tx, rx) = oneshot::channel();
        self.shared.pending.insert(id.clone(), Waiter::Single(tx));
        let answer = self.send_and_wait(&id, &name, action, rx, timeout).await?;
        if answer.is_success() {
            Ok(answer)
        } else {
            Err(ActionError::Rejected {
                action: name,
                message: answer.get("Message").unwrap_or("").to_string(),
            })
        }
    }

    /// Puts an action on the wire now, in the order of the calls, and has its answer sent
    /// to `answers` with `token`, `Response: Error` as [`ActionError::Rejected`]. Nothing waits
    /// and no timer runs per action: for high rates of writes. An answer that never comes is
    /// the caller's to time out (a lost connection answers every pending action with
    /// [`ActionError::Disconnected`]).
    pub fn send_to(&self, mut action: Message, token: u64, answers: &Answers) -> Result<(), ActionError> {
        let (name, id) = self.stamp(&mut action)?;
        let sender = self
            .shared
            .outbound
            .lock()
            .expect("outbound lock")
            .clone()
            .ok_or(ActionError::NotConnected)?;
        self.shared.pending.insert(
            id.clone(),
            Waiter::Notify {
                token,
                action: name,
                tx: answers.clone(),
            },
        );
        if sender.try_send(action).is_err() {
            self.shared.pending.remove(&id);
            return Err(ActionError::Disconnected);
        }
        Ok(())
    }

    /// Sends a list action (DeviceStateList, QueueStatus, ...) and collects its items up to the
    /// closing `EventList: Complete` event; unrelated events interleaved with it still go to the
    /// event stream. The timeout covers the whole list.
    pub async fn list(&self, mut action: Message) -> Result<ListResult, ActionError> {
        let timeout = self.shared.config.action_timeout;
        let (name, id) = self.stamp(&mut action)?;
        let (tx, rx) = oneshot::channel();
        self.shared.pending.insert(
            id.clone(),
            Waiter::List {
                tx,
                action: name.clone(),
                result: ListResult::default(),
                started: false,
                bytes: 0,
            },
        );
        let answer = self.send_and_wait(&id, &name, action, rx, timeout).await;
        if let Err(ActionError::Timeout { .. }) = answer {
            // Its items may still come: they are not events.
            self.shared.pending.abandon(&id);
        }
        answer
    }

    async fn send_and_wait<T>(
        &self,
        id: &str,
        name: &str,
        action: Message,
        rx: oneshot::Receiver<Result<T, ActionError>>,
        timeout: Duration,
    ) -> Result<T, ActionError> {
        let sender = self.shared.outbound.lock().expect("outbound lock").clone();
        let Some(sender) = sender else {
            self.shared.pending.remove(id);
            return Err(ActionError::NotConnected);
        };
        let result = tokio::time::timeout(timeout, async {
            if sender.send(action).await.is_err() {
                return Err(ActionError::Disconnected);
            }
            rx.await.unwrap_or(Err(ActionError::Disconnected))
        })
        .await;
        match result {
            Ok(answer) => {
                if answer.is_err() {
                    self.shared.pending.remove(id);
                }
                answer
            }
            Err(_) => {
                self.shared.pending.remove(id);
                Err(ActionError::Timeout {
                    action: name.to_string(),
                    timeout,
                })
            }
        }
    }

    /// The server's details from the last login, if connected.
    pub fn server_info(&self) -> Option<ServerInfo> {
        self.shared.info.borrow().clone()
    }

    /// Waits until the client is logged in, up to `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> Option<ServerInfo> {
        let mut rx = self.shared.info.subscribe();
        let result = tokio::time::timeout(timeout, rx.wait_for(|i| i.is_some())).await;
        match result {
            Ok(Ok(info)) => info.clone(),
            _ => None,
        }
    }

    /// True while a session is logged in.
    pub fn is_connected(&self) -> bool {
        self.shared.info.borrow().is_some()
    }

    /// What the client counts, to register for Prometheus or read in a test.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Number of actions waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.shared.pending.len()
    }

    /// The name given in the config (for logs).
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// Ends the session (Logoff is sent when possible) and stops reconnecting.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }
}
