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
    /// Most items one list action may return (bounds memory against a runaway list).
    pub max_list_items: usize,
}

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
            max_list_items: 1_000_000,
        }
    }
}
