//! `[agent]` + `[ami]` of an agent, and the `[server-<id>]` sections of the broker's agentless
//! mode (the keys of `[ami]` and the agent keys of `[agent]` in one section). Defaults are
//! [`AgentConfig::new`]'s and [`ClientConfig::new`]'s: a key not given leaves its field as it
//! is there.

use super::error::ConfigError;
use super::load::{Loaded, Part};
use super::typed::fields;
use super::value::{self, List, Millis, Port, Switch};
use agent::config::MwiSink;
use agent::{AgentConfig, Template};
use ami::client::AuthMethod;
use ami::ClientConfig;
use broker::BrokerConfig;
use serde::Deserialize;
use std::path::PathBuf;

/// Where an agent finds its Asterisk when `[ami]` does not say: the same host, the port and
/// user name of docs/security.md's manager.conf.
const AMI_HOST: &str = "127.0.0.1";
const AMI_PORT: u16 = 5038;
const AMI_USER: &str = "hintbus";

/// The secret config.ini.example ships with: never the real one.
const PLACEHOLDER_SECRET: &str = "change-me";

/// `[agent]`'s own keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentSection {
    server: Option<String>,
    broker: Option<String>,
    /// Several brokers, active-active (instead of `broker`).
    brokers: Option<List>,
    secret_key_file: Option<PathBuf>,
    /// One key, or (with `brokers`) one per broker in the same order.
    broker_public_key: Option<List>,
}

/// What an agent does with states, in `[agent]` and in each `[server-<id>]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentKeys {
    device_template: Option<String>,
    presence_template: Option<String>,
    ignore: Option<List>,
    heartbeat_ms: Option<Millis<1, 60_000>>,
    broker_timeout_ms: Option<Millis<1, 3_600_000>>,
    legacy_hints: Option<List>,
    queue_guard: Option<Switch>,
    guard_template: Option<String>,
    device_state: Option<Switch>,
    presence: Option<Switch>,
    queue_events: Option<Switch>,
    /// This server's mailboxes are published (default on).
    mwi_publish: Option<Switch>,
    /// How other servers' mailboxes are shown: `mwiupdate`, `custom` or `off` (default).
    mwi_sink: Option<String>,
    /// The mailbox name MWIUpdate writes (`{mailbox}@{context}`).
    mwi_template: Option<String>,
    /// The lamp device of `mwi_sink = custom` (`Custom:MWI{mailbox}`).
    mwi_device_template: Option<String>,
}

/// An AMI connection: `[ami]`, and in each `[server-<id>]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AmiSection {
    host: Option<String>,
    port: Option<Port>,
    username: Option<String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "auth")]
    auth: Option<AuthMethod>,
    ping_ms: Option<Millis<1, 3_600_000>>,
    action_timeout_ms: Option<Millis<1, 3_600_000>>,
}

fn auth<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<AuthMethod>, D::Error> {
    value::parse(d, "md5 or plain", |s| match s.to_ascii_lowercase().as_str() {
        "md5" => Some(Some(AuthMethod::Md5)),
        "plain" => Some(Some(AuthMethod::Plain)),
        _ => None,
    })
}

fn ami(s: &Part<'_>, name: &str) -> Result<ClientConfig, ConfigError> {
    let a: AmiSection = s.typed_part()?;
    let secret = match (a.secret, a.secret_file) {
        (Some(v), None) => v,
        (None, Some(path)) => {
            let text = s.loaded.read_file(&path).map_err(|e| s.err("secret_file", e))?;
            text.trim_end_matches(['\r', '\n']).to_string()
        }
        (Some(_), Some(_)) => return Err(s.err("secret_file", "give secret or secret_file, not both")),
        (None, None) => return Err(s.err("secret", "required (or secret_file)")),
    };
    if secret == PLACEHOLDER_SECRET {
        s.loaded.warn(format!(
            "warning: [{}] secret is {PLACEHOLDER_SECRET:?}, the placeholder of config.ini.example: set the secret of the AMI user (manager.conf), or use secret_file",
            s.name
        ));
    }
    let host = a.host.unwrap_or_else(|| AMI_HOST.into());
    let port = a.port.map_or(AMI_PORT, |Port(p)| p);
    let mut c = ClientConfig::new(
        format!("{host}:{port}"),
        a.username.unwrap_or_else(|| AMI_USER.into()),
        secret,
    );
    c.name = name.to_string();
    if let Some(v) = a.auth {
        c.auth = v;
    }
    if let Some(Millis(v)) = a.ping_ms {
        c.ping_interval = v;
    }
    if let Some(Millis(v)) = a.action_timeout_ms {
        c.action_timeout = v;
    }
    Ok(c)
}

fn agent_keys(s: &Part<'_>, server: &str, ami: ClientConfig, broker_ep: &str) -> Result<AgentConfig, ConfigError> {
    let k: AgentKeys = s.typed_part()?;
    let mut c = AgentConfig::new(server, ami, broker_ep);
    c.mwi_sink = mwi_sink(s, &k)?;
    if let Some(t) = k.device_template {
        c.device_template = Template::device(&t).map_err(|e| s.err("device_template", e.to_string()))?;
    }
    if let Some(t) = k.presence_template {
        c.presence_template = Template::presence(&t).map_err(|e| s.err("presence_template", e.to_string()))?;
    }
    if let Some(List(v)) = k.ignore {
        c.ignore = v;
    }
    if let Some(Millis(v)) = k.heartbeat_ms {
        c.heartbeat = v;
    }
    if let Some(Millis(v)) = k.broker_timeout_ms {
        c.broker_timeout = v;
    }
    if c.broker_timeout <= c.heartbeat * 2 {
        let problem = format!(
            "must be more than twice heartbeat_ms (2 × {} ms)",
            c.heartbeat.as_millis()
        );
        return Err(s.err("broker_timeout_ms", problem));
    }
    for h in k.legacy_hints.map(|List(v)| v).unwrap_or_default() {
        let (exten, context) = h.split_once('@').unwrap_or((h.as_str(), "default"));
        if exten.is_empty() || context.is_empty() || !proto::entry::valid_name(exten) {
            let problem = format!("{h:?} is not exten@context, e.g. 100@default");
            return Err(s.err("legacy_hints", problem));
        }
        c.legacy_hints.push((exten.to_string(), context.to_string()));
    }
    let template = k
        .guard_template
        .as_deref()
        .unwrap_or(agent::config::DEFAULT_GUARD_TEMPLATE);
    let guard = agent::guard::GuardTemplate::new(template).map_err(|e| s.err("guard_template", e))?;
    if let Some(Switch(true)) = k.queue_guard {
        c.queue_guard = Some(guard);
    }
    if let Some(Switch(v)) = k.device_state {
        c.device_state = v;
    }
    if let Some(Switch(v)) = k.presence {
        c.presence = v;
    }
    if let Some(Switch(v)) = k.queue_events {
        c.queue_events = v;
    }
    if let Some(Switch(v)) = k.mwi_publish {
        c.mwi_publish = v;
    }
    Ok(c)
}

/// `mwi_sink` with its template (each template is checked even when its sink is not chosen:
/// a mistake shows before someone switches to it).
fn mwi_sink(s: &Part<'_>, k: &AgentKeys) -> Result<MwiSink, ConfigError> {
    let update = match &k.mwi_template {
        Some(t) => MwiSink::MwiUpdate(Template::mailbox(t).map_err(|e| s.err("mwi_template", e.to_string()))?),
        None => MwiSink::mwiupdate(),
    };
    let lamp = match &k.mwi_device_template {
        Some(t) => MwiSink::Custom(Template::mailbox_lamp(t).map_err(|e| s.err("mwi_device_template", e.to_string()))?),
        None => MwiSink::custom(),
    };
    match k.mwi_sink.as_deref().map(str::trim) {
        None | Some("off") => Ok(MwiSink::Off),
        Some("mwiupdate") => Ok(update),
        Some("custom") => Ok(lamp),
        Some(_) => Err(s.err(
            "mwi_sink",
            "use mwiupdate (res_mwi_external), custom (a Custom: lamp) or off",
        )),
    }
}

fn server_id(s: &Part<'_>, key: &str, id: &str) -> Result<(), ConfigError> {
    if proto::entry::valid_origin(id) {
        Ok(())
    } else if key.is_empty() {
        Err(s.section_err("the server id after server- must be 1 to 32 of A-Z a-z 0-9 . _ -"))
    } else {
        Err(s.err(key, "1 to 32 characters of A-Z a-z 0-9 . _ -"))
    }
}

/// `[agent]` + `[ami]`.
pub fn agent(l: &Loaded) -> Result<AgentConfig, ConfigError> {
    let s = l.section("agent");
    s.only_keys(&[fields::<AgentSection>(), fields::<AgentKeys>()].concat())?;
    let a: AgentSection = s.typed_part()?;
    let server = a.server.ok_or_else(|| s.err("server", "required"))?;
    server_id(&s, "server", &server)?;
    let endpoints = match (a.broker, a.brokers) {
        (Some(_), Some(_)) => return Err(s.err("brokers", "give broker (one) or brokers (a list), not both")),
        (Some(b), None) => vec![b],
        (None, Some(List(list))) if !list.is_empty() => {
            let mut seen = std::collections::HashSet::new();
            if let Some(twice) = list.iter().find(|b| !seen.insert(b.as_str())) {
                return Err(s.err("brokers", format!("lists {twice} twice")));
            }
            list
        }
        (None, Some(_)) => return Err(s.err("brokers", "is empty")),
        (None, None) => vec![BrokerConfig::default().listen],
    };
    let m = l.section("ami");
    m.only_keys(fields::<AmiSection>())?;
    let ami_cfg = ami(&m, &server)?;
    let mut cfg = agent_keys(&s, &server, ami_cfg, &endpoints[0])?;
    cfg.more_brokers = endpoints[1..].iter().map(|e| (e.clone(), None)).collect();
    match (a.secret_key_file, a.broker_public_key) {
        (Some(path), Some(List(keys_given))) => {
            let err = |e: String| s.err("secret_key_file", e);
            l.check_readable(&path).map_err(err)?;
            let keys = proto::auth::KeyPair::read(&path).map_err(err)?;
            // One key for every broker, or one each, in the order of `brokers`.
            let per_broker: Vec<String> = match keys_given.len() {
                1 => vec![keys_given[0].clone(); endpoints.len()],
                n if n == endpoints.len() => keys_given,
                n => {
                    return Err(s.err(
                        "broker_public_key",
                        format!(
                            "has {n} keys for {} brokers: give one for all, or one per broker in their order",
                            endpoints.len()
                        ),
                    ))
                }
            };
            for broker_key in &per_broker {
                proto::auth::decode_key(broker_key).map_err(|e| s.err("broker_public_key", e))?;
                if broker_key.trim() == keys.public {
                    // Every handshake would fail, and nothing would say why.
                    return Err(s.err(
                        "broker_public_key",
                        format!("is this agent's own public key (from {}): give the broker's, which `hintbus keygen` printed for it", path.display()),
                    ));
                }
            }
            for (b, k) in cfg.more_brokers.iter_mut().zip(&per_broker[1..]) {
                b.1 = Some(k.clone());
            }
            cfg.curve = Some((keys, per_broker[0].clone()));
        }
        (None, None) => {}
        (Some(p), None) => {
            return Err(s.err(
                "broker_public_key",
                format!("required with secret_key_file = {}", p.display()),
            ))
        }
        (None, Some(List(k))) => {
            return Err(s.err(
                "secret_key_file",
                format!("required with broker_public_key = {}", k.join(", ")),
            ))
        }
    }
    Ok(cfg)
}

/// Agentless mode: every `[server-<id>]` section of the broker's file.
pub fn agentless(l: &Loaded, broker: &BrokerConfig) -> Result<Vec<AgentConfig>, ConfigError> {
    let mut out = Vec::new();
    for s in l.sections_with_prefix("server-") {
        let id = s.name.trim_start_matches("server-").to_string();
        server_id(&s, "", &id)?;
        s.only_keys(&[fields::<AmiSection>(), fields::<AgentKeys>()].concat())?;
        let ami_cfg = ami(&s, &id)?;
        let cfg = agent_keys(&s, &id, ami_cfg, &broker.listen)?;
        // The broker takes a server silent for lost_after for lost: its agent must speak
        // more often than that, with room for one missed heartbeat.
        if cfg.heartbeat * 2 >= broker.lost_after {
            let problem = format!(
                "must be less than half of [broker] lost_after_ms ({} ms), or the broker takes this server for lost between two heartbeats; it is {} ms",
                broker.lost_after.as_millis(),
                cfg.heartbeat.as_millis()
            );
            return Err(s.err("heartbeat_ms", problem));
        }
        out.push(cfg);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// config.ini.example documents every key (given, or commented out).
    #[test]
    fn every_key_is_in_the_example() {
        let keys = [fields::<AgentSection>(), fields::<AgentKeys>(), fields::<AmiSection>()].concat();
        for key in keys {
            assert!(crate::config::in_example(key), "{key} is not in config.ini.example");
        }
    }
}
