//! Settings of one AMI client.

use crate::secret::Secret;
use std::time::Duration;

/// How the client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethod {
    /// `Secret:` in the Login action.
    Plain,
    /// `Action: Challenge` then `Key: md5(challenge + secret)`: the secret never crosses the wire.
    #[default]
    Md5,
}

/// Everything one client needs; [`ClientConfig::new`] fills in sane timings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// A name for logs (the server id).
    pub name: String,
    /// `host:port` of the AMI listener.
    pub addr: String,
    pub username: String,
    pub secret: Secret,
    pub auth: AuthMethod,
    /// The `Events:` header of the Login: `on`, `off`, or a class list such as `call,agent`.
    pub events: String,
    /// Limit for the TCP connect and for each step of the login.
    pub connect_timeout: Duration,
    /// Default limit for one action's answer (a list: its last item).
    pub action_timeout: Duration,
    /// How often a Ping is sent on an idle connection.
    pub ping_interval: Duration,
    /// How long a Ping may stay unanswered before the connection is declared dead.
    pub ping_timeout: Duration,
    /// First reconnect delay; doubles up to `backoff_max`, with jitter.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Least delay before retrying after a refused login (Asterisk delays and counts failures).
    pub auth_retry: Duration,
    /// Events buffered for a slow consumer before they are dropped (and counted).
    pub event_buffer: usize,
    /// Bytes (see [`Message::footprint`](crate::Message::footprint)) those buffered events may
    /// hold: past it events are dropped and the consumer is told to resync, as when the count
    /// is reached. A count alone let 65,536 events of 128 KiB each (within Asterisk's line
    /// limits) hold 8 GiB.
    pub event_buffer_bytes: usize,
    /// Most items one list action may return.
    pub max_list_items: usize,
    /// Bytes one list action's items may hold; past it the list is abandoned with
    /// [`ActionError::ListTooLarge`](super::ActionError::ListTooLarge) and its remaining items
    /// are discarded as they arrive. The bound that matters against a runaway list: 8,000 items
    /// of 120 headers of 1,000 bytes are a gigabyte and every line is within Asterisk's limits.
    pub max_list_bytes: usize,
    /// Bytes of the events that arrive during the login, kept to be delivered after
    /// [`ClientEvent::Connected`](super::ClientEvent::Connected); more are dropped and counted
    /// (Connected already tells the consumer to re-read everything).
    pub login_backlog_bytes: usize,
}

/// 64 MiB: a DeviceStateList item (Event, ActionID, Device, State) holds about 300 bytes, so
/// 100,000 devices of normal names take 30 MB; this leaves twice that for long names and
/// presence messages, and keeps a runaway list far from the memory of a PBX host.
pub const DEFAULT_MAX_LIST_BYTES: usize = 64 << 20;

/// 16 MiB: about 45,000 DeviceStateChange events (350 bytes each) waiting for a consumer that
/// fell behind, several seconds of the heaviest bursts measured; past that a resync is cheaper.
pub const DEFAULT_EVENT_BUFFER_BYTES: usize = 16 << 20;

/// 1 MiB: between Login and the CoreSettings answer Asterisk sends a few events (FullyBooted,
/// what happens meanwhile), never megabytes.
pub const DEFAULT_LOGIN_BACKLOG_BYTES: usize = 1 << 20;

impl ClientConfig {
    pub fn new(addr: impl Into<String>, username: impl Into<String>, secret: impl Into<Secret>) -> Self {
        let addr = addr.into();
        Self {
            name: addr.clone(),
            addr,
            username: username.into(),
            secret: secret.into(),
            auth: AuthMethod::Md5,
            events: "on".into(),
            connect_timeout: Duration::from_secs(5),
            action_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(3),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            auth_retry: Duration::from_secs(30),
            event_buffer: 65_536,
            event_buffer_bytes: DEFAULT_EVENT_BUFFER_BYTES,
            max_list_items: 1_000_000,
            max_list_bytes: DEFAULT_MAX_LIST_BYTES,
            login_backlog_bytes: DEFAULT_LOGIN_BACKLOG_BYTES,
        }
    }
}
