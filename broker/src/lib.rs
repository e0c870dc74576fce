//! The hintbus broker: the one place that knows every server's current state.
//!
//! - [`core`]: the protocol without I/O: sessions, validation, the lost policy; frames and
//!   ticks in, frames and [`events`] out.
//! - [`table`]: the state table, versioned.
//! - [`fanout`]: every change to every other agent, through [`outbox`]es with latest-wins
//!   coalescing; snapshots; backpressure.
//! - [`session`]: one agent's session; [`strangers`]: peers that have not said hello;
//!   [`throttle`]: token buckets and log throttles per peer.
//! - [`peers`]: peer brokers, whose tables this one takes (active-active).
//! - [`members`]: the latest event of each queue member.
//! - [`stream`]: the change stream to consumers, each with a byte bound; [`sinks`]: those
//!   consumers (the feed).
//! - [`server`]: the broker thread: the sockets around the core.
//! - [`config`], [`metrics`].
//!
//! This is the Clone pattern of the ØMQ Guide (chapter 5) with one change: updates reach the
//! agents over their own ROUTER session instead of a shared PUB socket, so that each agent has
//! its own flow control and coalescing queue; the PUB socket is kept for observers.
//! docs/protocol.md says more.

pub mod config;
pub mod core;
pub mod events;
pub mod fanout;
pub mod members;
pub mod metrics;
pub mod outbox;
pub mod peers;
pub mod server;
pub mod session;
pub mod sinks;
pub mod strangers;
pub mod stream;
pub mod table;
pub mod throttle;

pub use config::{BrokerConfig, LostPolicy};
pub use core::{AgentInfo, Core, Snapshot, Status};
pub use events::{Batch, Event};
pub use metrics::Metrics;
pub use server::Broker;
pub use stream::{Recv, Subscription};
