//! The hintbus wire protocol (version 1, specified in docs/protocol.md) and its ZeroMQ
//! transport.
//!
//! - [`entry`]: one state in the federated table: (origin, kind, name) -> value.
//! - [`message`]: the messages agents and broker exchange, and their JSON encoding.
//! - [`transport`]: libzmq sockets for tokio (the agent's DEALER, driven through `ZMQ_FD`).
//! - [`stamp`]: the origin's stamps, by which brokers' streams merge.
//! - [`queue`]: queue members' events, carried to observers.
//! - [`link`]: a client's broker session (an agent's, or a peer broker's).
//! - [`monitor`]: libzmq's socket monitor, to log a peer that cannot be reached or a failed handshake.

pub mod auth;
pub mod counting;
pub mod entry;
pub mod link;
pub mod message;
pub mod monitor;
pub mod queue;
pub mod stamp;
pub mod transport;

pub use entry::{Counts, Entry, Key, Kind, Packed, Value};
pub use message::{DecodeError, ErrorCode, Msg, MAX_FRAME, VERSION};
pub use queue::{QueueEvent, QueueEventKind};
pub use stamp::{Stamp, Stamper};
