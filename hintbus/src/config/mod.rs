//! The configuration file: INI, one per process, every key overridable from the environment
//! (`HINTBUS_<SECTION>__<KEY>`, see [`env`]). config.ini.example documents every key.
//!
//! - [`ini`]: the file's lines, as written (why not config-rs's INI reader: there);
//! - [`env`]: the environment's overrides, and how a section such as `[server-b]` is spelt;
//! - [`load`]: both merged, each value knowing its line or variable;
//! - [`typed`], [`value`]: serde structs per section, `deny_unknown_fields`, values typed
//!   with their bounds;
//! - [`broker`], [`agent`]: the sections into the crates' configs, whose `Default` / `new`
//!   are the only place defaults are written;
//! - [`http`]: `[http]`, the listener of metrics, status and the board, for either role;
//! - [`files`]: files the configuration names, read as the service user will;
//! - [`error`]: every mistake with file, section, key, value and where it came from.

mod agent;
mod broker;
pub mod env;
mod error;
mod files;
mod http;
pub mod ini;
mod load;
mod typed;
mod value;

pub use agent::{agent, agentless};
pub use broker::broker;
pub use http::{http, Http, AGENT_LISTEN, BROKER_LISTEN};
pub use load::Loaded;

/// The sections a file may hold: one file can serve both roles on one machine, each reading
/// its own sections.
pub const KNOWN_SECTIONS: &[&str] = &["broker", "agent", "ami", "agents", "http", "server-"];

/// The user the service runs as (deploy/*.service), whom `--check` run as root checks files for.
pub const SERVICE_USER: &str = "hintbus";

/// Whether config.ini.example documents `key` (given, or commented out).
#[cfg(test)]
fn in_example(key: &str) -> bool {
    include_str!("../../../config.ini.example").lines().any(|l| {
        let l = l.trim_start_matches(';').trim_start();
        l.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with('='))
    })
}
