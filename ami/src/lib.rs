//! The Asterisk Manager Interface (AMI) as hintbus speaks it.
//!
//! - [`message`]: one AMI message, an ordered list of `Name: Value` headers.
//! - [`codec`]: bytes to messages and back, with Asterisk's own limits enforced.
//! - [`client`]: an async, pipelined, self-reconnecting AMI client.
//! - [`state`]: device and presence states, shared by everything that reads or writes them.
//! - [`cescape`]: the C escaping Asterisk applies to presence text in events, and its inverse.
//! - [`escape`]: peer text made safe for logs, used by every crate that logs what a peer sent.
//!
//! The three AMI crates on crates.io each fail one of repeated headers, bare `\n` line ends,
//! MD5 login or reconnect (see design.md), which is why this codec is written here, on
//! tokio-util's codec framework.

pub mod cescape;
pub mod client;
pub mod codec;
pub mod escape;
pub mod message;
pub mod secret;
pub mod state;

pub use client::{Client, ClientConfig, ClientEvent, ServerInfo};
pub use codec::{AmiCodec, Frame, FrameError, Limits};
pub use escape::shown;
pub use message::{EncodeError, Message};
pub use secret::Secret;
pub use state::{DeviceState, PresenceState};
