//! `hintbus import`: a hintbus configuration from zmq-ami-broker's config.ini.
//!
//! The old broker (Python 2, github.com/litnimax/zmq-ami-broker) read `[general]`
//! (`device_state`, `presence`, `log_level`, `request_timeout`, `count_messages`,
//! `verbose_messages`), `[servers] sections = server-1, server-2`, and per server `name`,
//! `addr`, `cmd_port`, `evt_port` (res_zmq_manager's ZeroMQ sockets inside Asterisk) and
//! `ami_trace`. What carries over is written as agentless `[server-<id>]` sections (the old
//! broker's own shape: one process reaching every Asterisk), or with `--agents DIR` one agent
//! file per server. What does not (the ZeroMQ ports, the AMI user and its secret, which the old
//! config never had) is said, and nothing is guessed: the result fails `--check` until each
//! server's AMI secret is filled in, and passes it then.

use anyhow::Context;
use clap::Args;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ImportArgs {
    /// zmq-ami-broker's config.ini.
    old_config: PathBuf,
    /// Where to write the hintbus configuration (default: standard output).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Also write one agent configuration per server into this directory (agent-<id>.ini), for
    /// an agent on each PBX instead of agentless mode.
    #[arg(long, requires = "broker")]
    agents: Option<PathBuf>,
    /// The broker endpoint the agents connect to (with --agents), e.g. tcp://10.0.0.1:5560.
    #[arg(long)]
    broker: Option<String>,
}

/// One server of the old configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldServer {
    /// The old section name (`server-1`).
    pub section: String,
    /// The hintbus server id made of it (`1`).
    pub id: String,
    pub name: String,
    pub addr: String,
    /// Keys of the section that have no hintbus equivalent, as `key = value`.
    pub dropped: Vec<String>,
}

/// What the old configuration says, and what of it cannot be carried over.
#[derive(Debug, Default)]
pub struct Imported {
    pub servers: Vec<OldServer>,
    pub device_state: bool,
    pub presence: bool,
    pub log_level: Option<String>,
    /// Lines for the administrator: what was not carried over, and what to do.
    pub notes: Vec<String>,
}

/// Python 2's ConfigParser booleans.
fn boolean(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// A value as ConfigParser reads it: an inline `;` comment after a blank is not part of it.
fn value(v: &str) -> &str {
    let cut = v.find(" ;").or_else(|| v.find("\t;")).unwrap_or(v.len());
    v[..cut].trim()
}

/// A hintbus server id from an old section name: `server-1` -> `1`; other characters than
/// hintbus allows become `-`.
fn server_id(section: &str) -> String {
    let base = section
        .strip_prefix("server-")
        .filter(|s| !s.is_empty())
        .unwrap_or(section);
    let id: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(proto::entry::MAX_ORIGIN)
        .collect();
    if id.is_empty() {
        "server".into()
    } else {
        id
    }
}

/// Reads the old configuration.
pub fn read_old(path: &Path) -> anyhow::Result<Imported> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let ini = ini::Ini::load_from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let get = |section: &str, key: &str| ini.get_from(Some(section), key).map(value).map(str::to_string);
    let mut out = Imported {
        device_state: true,
        presence: true,
        ..Imported::default()
    };
    for (key, default, slot) in [
        ("device_state", true, &mut out.device_state),
        ("presence", false, &mut out.presence),
    ] {
        *slot = match get("general", key) {
            None => default,
            Some(v) => {
                boolean(&v).with_context(|| format!("{}: [general] {key} = {v}: expected yes or no", path.display()))?
            }
        };
    }
    out.log_level = get("general", "log_level");
    for key in ["request_timeout", "count_messages", "verbose_messages"] {
        if let Some(v) = get("general", key) {
            out.notes.push(format!(
                "[general] {key} = {v}: not carried over (no equivalent; HINTBUS_LOG=debug logs every change)"
            ));
        }
    }
    let sections = get("servers", "sections").with_context(|| {
        format!(
            "{}: [servers] sections: missing (the list of server sections)",
            path.display()
        )
    })?;
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for section in sections.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let props = ini.section(Some(section)).with_context(|| {
            format!(
                "{}: [servers] sections names [{section}], which is not in the file",
                path.display()
            )
        })?;
        let id = server_id(section);
        if let Some(other) = ids.insert(id.clone(), section.to_string()) {
            anyhow::bail!(
                "{}: [{other}] and [{section}] would both be server {id:?}: rename one",
                path.display()
            );
        }
        let addr = props
            .get("addr")
            .map(value)
            .filter(|a| !a.is_empty())
            .with_context(|| format!("{}: [{section}] addr: missing", path.display()))?
            .to_string();
        let dropped = props
            .iter()
            .filter(|(k, _)| !matches!(*k, "name" | "addr"))
            .map(|(k, v)| format!("{k} = {}", value(v)))
            .collect();
        out.servers.push(OldServer {
            section: section.to_string(),
            id,
            name: props.get("name").map(value).unwrap_or(section).to_string(),
            addr,
            dropped,
        });
    }
    anyhow::ensure!(
        !out.servers.is_empty(),
        "{}: [servers] sections lists no server",
        path.display()
    );
    Ok(out)
}

/// The AMI keys of one server: its address, and the user left for the administrator.
fn ami_keys(out: &mut String, host: &str) {
    let _ = writeln!(out, "host = {host}");
    let _ = writeln!(
        out,
        "; The AMI port of this Asterisk (manager.conf [general] port); res_zmq_manager's ZeroMQ ports are not used."
    );
    let _ = writeln!(out, "port = 5038");
    let _ = writeln!(out, "; A least-privilege manager.conf user: see docs/security.md.");
    let _ = writeln!(out, "username = hintbus");
    let _ = writeln!(
        out,
        "; Its secret (not in the old configuration): fill in one of these."
    );
    let _ = writeln!(out, ";secret = ");
    let _ = writeln!(out, ";secret_file = /etc/hintbus/ami.secret");
}

/// The templates and switches that behave as the old broker did.
fn sharing_keys(out: &mut String, old: &Imported) {
    let _ = writeln!(
        out,
        "; As the old broker: a remote SIP/100 lands as Custom:SIP/100, presence under its own name."
    );
    let _ = writeln!(out, "device_template = Custom:{{device}}");
    let _ = writeln!(out, "presence_template = CustomPresence:{{resource}}");
    if !old.device_state {
        let _ = writeln!(out, "device_state = off");
    }
    if !old.presence {
        let _ = writeln!(out, "presence = off");
    }
}

/// The hintbus configuration: agentless `[server-<id>]` sections, or (with agents) the broker
/// alone.
pub fn broker_config(old: &Imported, source: &Path, agents: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "; hintbus configuration, imported by `hintbus import` from zmq-ami-broker's {}.",
        source.display()
    );
    let _ = writeln!(
        out,
        "; Fill in what is marked below, then check it: hintbus broker --check -c <this file>\n"
    );
    let _ = writeln!(out, "[broker]");
    if agents {
        let _ = writeln!(
            out,
            "; Agents on other hosts: listen beyond loopback, with CURVE (hintbus keygen; docs/security.md)."
        );
        let _ = writeln!(out, "listen = tcp://127.0.0.1:5560");
        let _ = writeln!(out, ";secret_key_file = /etc/hintbus/broker.key");
    } else {
        let _ = writeln!(out, "listen = tcp://127.0.0.1:5560");
    }
    let _ = writeln!(out, "feed = tcp://127.0.0.1:5561");
    if agents {
        return out;
    }
    for s in &old.servers {
        let _ = writeln!(
            out,
            "\n; {} (was [{}], res_zmq_manager on {})",
            s.name, s.section, s.addr
        );
        let _ = writeln!(out, "[server-{}]", s.id);
        ami_keys(&mut out, &s.addr);
        sharing_keys(&mut out, old);
    }
    out
}

/// One agent's configuration, for an agent on the server's own host.
pub fn agent_config(old: &Imported, s: &OldServer, broker: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "; hintbus agent of {} (was [{}] of zmq-ami-broker), imported by `hintbus import`.",
        s.name, s.section
    );
    let _ = writeln!(out, "; Check it on that host: hintbus agent --check -c <this file>\n");
    let _ = writeln!(out, "[agent]\nserver = {}\nbroker = {broker}", s.id);
    let _ = writeln!(out, ";secret_key_file = /etc/hintbus/agent.key");
    let _ = writeln!(out, ";broker_public_key = <the broker's public key>");
    sharing_keys(&mut out, old);
    let _ = writeln!(out, "\n[ami]");
    ami_keys(&mut out, "127.0.0.1");
    out
}

/// What the administrator must know: what was not carried over, and what behaves differently.
pub fn notes(old: &Imported) -> Vec<String> {
    let mut n = old.notes.clone();
    for s in &old.servers {
        if !s.dropped.is_empty() {
            n.push(format!(
                "[{}] {}: not carried over (res_zmq_manager's ZeroMQ ports and tracing; hintbus speaks AMI, port 5038 assumed: check it)",
                s.section,
                s.dropped.join(", ")
            ));
        }
        n.push(format!(
            "[server-{}]: the AMI user and its secret were not in the old configuration: create the user on {} (docs/security.md) and fill in secret or secret_file",
            s.id, s.addr
        ));
    }
    if let Some(level) = &old.log_level {
        n.push(format!(
            "[general] log_level = {level}: set HINTBUS_LOG={} in the service's environment instead",
            level.to_ascii_lowercase()
        ));
    }
    if !old.device_state {
        n.push("[general] device_state = no: carried over as device_state = off".into());
    }
    if !old.presence {
        n.push("[general] presence = no: carried over as presence = off".into());
    }
    n.push(
        "behaves differently: a server's own Custom: states (DND lamps) are now shared too, presence messages travel with the state, and a lost server's lamps read UNAVAILABLE (docs/migration.md)"
            .into(),
    );
    n
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let old = read_old(&args.old_config)?;
    let config = broker_config(&old, &args.old_config, args.agents.is_some());
    match &args.out {
        Some(p) => {
            std::fs::write(p, &config).with_context(|| format!("cannot write {}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
        None => print!("{config}"),
    }
    if let (Some(dir), Some(broker)) = (&args.agents, &args.broker) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for s in &old.servers {
            let p = dir.join(format!("agent-{}.ini", s.id));
            std::fs::write(&p, agent_config(&old, s, broker))
                .with_context(|| format!("cannot write {}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
    }
    for n in notes(&old) {
        eprintln!("note: {n}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_values_as_the_old_broker_read_them() {
        assert_eq!(server_id("server-1"), "1");
        assert_eq!(server_id("pbx east"), "pbx-east");
        assert_eq!(server_id("server-"), "server-");
        assert_eq!(value("yes ; a comment"), "yes");
        assert_eq!(value("10.0.0.1"), "10.0.0.1");
        assert_eq!(boolean("No"), Some(false));
        assert_eq!(boolean("maybe"), None);
    }
}
