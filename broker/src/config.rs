//! What a broker needs to run.

use proto::transport::SocketOptions;
use std::time::Duration;

/// What happens to a lost server's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LostPolicy {
    /// Its devices read UNAVAILABLE everywhere until it is back (the default: a dark lamp is
    /// honest; a lamp frozen on "idle" invites calls to a dead server).
    #[default]
    Unavailable,
    /// Its states stay as they were.
    Keep,
    /// Its states are removed (mirrors are set to INVALID, neutral in a hint).
    Remove,
}

impl std::str::FromStr for LostPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "unavailable" => Ok(LostPolicy::Unavailable),
            "keep" => Ok(LostPolicy::Keep),
            "remove" => Ok(LostPolicy::Remove),
            _ => Err("one of unavailable, keep, remove".into()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where agents connect (ROUTER), e.g. `tcp://127.0.0.1:5560`.
    pub listen: String,
    /// Where observers subscribe to every change (PUB), e.g. `tcp://127.0.0.1:5561`.
    pub feed: Option<String>,
    /// How often agents and broker say something when idle.
    pub heartbeat: Duration,
    /// An agent silent for this long is lost.
    pub lost_after: Duration,
    pub lost_policy: LostPolicy,
    /// With [`LostPolicy::Unavailable`], a lost server's mailboxes are cleared to 0 (their
    /// lamps go dark) rather than kept: kept is the default, since the messages are still
    /// there; clear says "we do not know" as UNAVAILABLE does for a phone.
    pub lost_mailboxes_clear: bool,
    /// Entries per Updates or Snapshot message.
    pub batch: usize,
    /// An agent that gets updates faster than one per window, and was sent a frame less than
    /// this long ago, gets the next ones when the window ends: under load updates then travel
    /// together (fewer frames, fewer wake-ups on every agent), at the cost of at most this
    /// much latency. An agent that gets few updates is never held. Zero sends every round.
    pub batch_window: Duration,
    pub socket: SocketOptions,
    /// CURVE: the broker's key pair and the agents it accepts (public key -> server id).
    /// None: plain text, allowed on loopback only.
    pub curve: Option<(proto::auth::KeyPair, proto::auth::AllowList)>,
    /// Messages per second one agent may send; more are dropped and counted. 0: no limit.
    pub rate_limit: u32,
    /// This broker's name toward its peers (their allow-lists name its key so).
    pub name: String,
    /// Peer brokers, each with its public key when CURVE is on: this broker takes their
    /// tables (and they take its own through their sessions here).
    pub peers: Vec<(String, Option<String>)>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: "tcp://127.0.0.1:5560".into(),
            feed: Some("tcp://127.0.0.1:5561".into()),
            heartbeat: Duration::from_secs(1),
            lost_after: Duration::from_secs(5),
            lost_policy: LostPolicy::Unavailable,
            lost_mailboxes_clear: false,
            batch: 500,
            batch_window: Duration::from_micros(1000),
            socket: SocketOptions::default(),
            curve: None,
            rate_limit: 20_000,
            name: "broker".into(),
            peers: Vec::new(),
        }
    }
}
