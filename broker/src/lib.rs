//! The hintbus broker: the one place that knows every server's current state.
//!
//! - [`table`]: the state table, versioned.
//! - [`outbox`]: per-agent queues with latest-wins coalescing.
//! - [`session`]: one agent's session.
//! - [`strangers`]: peers that have not said hello, each with a small allowance.
//! - [`throttle`]: token buckets and log throttles per peer.
//! - [`server`]: the broker thread: sockets, fan-out, snapshots, heartbeats, expiry.
//! - [`config`], [`stats`].
//!
//! This is the Clone pattern of the ØMQ Guide (chapter 5) with one change: updates reach the
//! agents over their own ROUTER session instead of a shared PUB socket, so that each agent has
//! its own flow control and coalescing queue; the PUB socket is kept for observers.
//! docs/protocol.md says more.

pub mod config;
pub mod outbox;
pub mod server;
pub mod session;
pub mod stats;
pub mod strangers;
pub mod table;
pub mod throttle;

pub use config::{BrokerConfig, LostPolicy};
pub use server::{AgentInfo, Broker};
pub use stats::Stats;
