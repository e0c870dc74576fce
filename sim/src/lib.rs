//! A simulated Asterisk: the AMI of an Asterisk 22 server, faithful to the transcripts in
//! `fixtures/ami/asterisk-22.10.1`, run on loopback ports for the demo, the tests and the
//! benchmarks.
//!
//! - [`config`]: what a server is (users, hints, queues, version).
//! - [`world`]: its state and every change's events.
//! - [`actions`]: the AMI actions it answers; [`astdb`]: the DB actions.
//! - [`session`]: one AMI connection.
//! - [`server`]: the listener, and the [`Sim`] handle to script it.

pub mod actions;
pub mod astdb;
pub mod clock;
pub mod config;
pub mod events;
pub mod hints;
pub mod privilege;
pub mod queue;
pub mod server;
pub(crate) mod session;
pub mod transcript;
pub mod voicemail;
pub mod world;

pub use config::{HintConfig, MemberConfig, QueueConfig, SimConfig, User};
pub use server::Sim;
pub use world::QueueError;

/// Starts `n` servers from `make(i)` on ephemeral loopback ports (or `base_port + i`).
pub async fn start_many(
    n: usize,
    base_port: Option<u16>,
    make: impl Fn(usize) -> SimConfig,
) -> std::io::Result<Vec<Sim>> {
    let mut sims = Vec::with_capacity(n);
    for i in 0..n {
        let addr = match base_port {
            Some(p) => format!("127.0.0.1:{}", p as usize + i),
            None => "127.0.0.1:0".to_string(),
        };
        sims.push(Sim::start_on(make(i), &addr).await?);
    }
    Ok(sims)
}
