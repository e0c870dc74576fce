//! The hintbus agent: one Asterisk's states to the broker, everyone else's onto it.
//!
//! - [`config`]: what an agent needs.
//! - [`template`]: where a remote state lands (`Custom:{device}`).
//! - [`mirror`]: the mirror namespace, what it should show, what it shows.
//! - [`local`]: this server's own states, and telling them from our own writes.
//! - [`asterisk`]: reading states from AMI, writing them with Setvar.
//! - [`brokers`]: one session (`proto::link`) per broker listed; [`remote`]: their views merged by stamp.
//! - [`run`]: the task that ties them together.
//! - [`metrics`]: what it counts, for Prometheus; [`status`]: what `/api/status` shows.
//! - [`queue_events`]: queue members' events, passed to the broker for observers.
//!
//! The broker's agentless mode runs this same code for servers it reaches over AMI.

pub mod asterisk;
pub mod brokers;
pub mod config;
pub mod guard;
pub mod local;
pub mod memory;
pub mod metrics;
pub mod mirror;
pub mod overrides;
pub mod queue_events;
pub mod remote;
pub mod resync;
pub mod run;
pub mod status;
pub mod template;

pub use config::AgentConfig;
pub use metrics::Metrics;
pub use run::{spawn, AgentHandle};
pub use status::Status;
pub use template::Template;
