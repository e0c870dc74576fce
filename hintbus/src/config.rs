//! The configuration file: INI, one per process, every key overridable from the environment
//! (`HINTBUS_<SECTION>__<KEY>`, e.g. `HINTBUS_AMI__SECRET`). config.ini.example documents
//! every key.
//!
//! Read with config-rs; the typed layer here exists so that every mistake is reported with the
//! file, the section, the key and the value, and so that a misspelt key is an error rather than
//! a silently ignored line.

use agent::{AgentConfig, Template};
use ami::client::AuthMethod;
use ami::ClientConfig;
use broker::{BrokerConfig, LostPolicy};
use config::{Config, Environment, File, FileFormat, Value, ValueKind};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// A configuration mistake, said the way an administrator needs to read it.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ConfigError {
    pub file: String,
    pub section: String,
    pub key: String,
    pub value: String,
    pub problem: String,
}

impl ConfigError {
    fn describe(&self) -> String {
        if self.key.is_empty() {
            format!("{}: [{}]: {}", self.file, self.section, self.problem)
        } else {
            format!(
                "{}: [{}] {} = {:?}: {} (from the file, or HINTBUS_{}__{} if set)",
                self.file,
                self.section,
                self.key,
                self.value,
                self.problem,
                self.section.to_uppercase().replace('-', "_"),
                self.key.to_uppercase()
            )
        }
    }
}

/// The sections a file may hold: one file can serve both roles on one machine, each reading
/// its own sections.
pub const KNOWN_SECTIONS: &[&str] = &["broker", "agent", "ami", "agents", "server-"];

pub struct Loaded {
    file: String,
    sections: HashMap<String, HashMap<String, Value>>,
}

/// One section, read key by key; `finish` reports keys nobody asked for.
pub struct Section<'a> {
    file: &'a str,
    name: String,
    table: HashMap<String, Value>,
    used: Vec<&'static str>,
}

impl Loaded {
    pub fn read(path: &Path) -> anyhow::Result<Loaded> {
        let file = path.display().to_string();
        if !path.exists() {
            anyhow::bail!("{file}: no such file (see config.ini.example)");
        }
        let cfg = Config::builder()
            .add_source(File::from(path).format(FileFormat::Ini))
            .add_source(
                Environment::with_prefix("HINTBUS")
                    .prefix_separator("_")
                    .separator("__")
                    // Only HINTBUS_<SECTION>__<KEY>: HINTBUS_LOG and friends are not config keys.
                    .source(Some(
                        std::env::vars()
                            .filter(|(k, _)| k.starts_with("HINTBUS_") && k.contains("__"))
                            .collect(),
                    )),
            )
            .build()
            .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        let root: HashMap<String, Value> = cfg.try_deserialize().map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        let mut sections = HashMap::new();
        for (name, v) in root {
            match v.kind {
                ValueKind::Table(t) => {
                    sections.insert(name, t.into_iter().collect());
                }
                _ => anyhow::bail!("{file}: {name:?} is outside any [section]"),
            }
        }
        Ok(Loaded { file, sections })
    }

    pub fn section(&self, name: &str) -> Section<'_> {
        Section {
            file: &self.file,
            name: name.to_string(),
            table: self.sections.get(name).cloned().unwrap_or_default(),
            used: Vec::new(),
        }
    }

    /// Sections whose names start with `prefix` (`server-b`, `server-c`, ...).
    pub fn sections_with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .sections
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Every section must be one of `known` (or start with one ending in '-').
    pub fn check_sections(&self, known: &[&str]) -> Result<(), ConfigError> {
        for name in self.sections.keys() {
            let ok = known.iter().any(|k| {
                if k.ends_with('-') {
                    name.starts_with(k)
                } else {
                    name == k
                }
            });
            if !ok {
                return Err(ConfigError {
                    file: self.file.clone(),
                    section: name.clone(),
                    key: String::new(),
                    value: String::new(),
                    problem: format!("unknown section (known: {})", known.join(", ")),
                });
            }
        }
        Ok(())
    }
}

impl Section<'_> {
    fn err(&self, key: &str, value: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            section: self.name.clone(),
            key: key.to_string(),
            value: value.to_string(),
            problem: problem.into(),
        }
    }

    fn raw(&mut self, key: &'static str) -> Option<String> {
        self.used.push(key);
        // INI keeps `; comments` in values (config-rs): strip a trailing one.
        self.table.get(key).map(|v| {
            let s = v.to_string();
            let s = match s.find(" ;") {
                Some(i) => &s[..i],
                None => &s,
            };
            s.trim().to_string()
        })
    }

    pub fn string(&mut self, key: &'static str, default: Option<&str>) -> Result<String, ConfigError> {
        match self.raw(key).filter(|v| !v.is_empty()) {
            Some(v) => Ok(v),
            None => default.map(str::to_string).ok_or_else(|| self.err(key, "", "required")),
        }
    }

    pub fn opt_string(&mut self, key: &'static str) -> Option<String> {
        self.raw(key).filter(|v| !v.is_empty())
    }

    pub fn millis(&mut self, key: &'static str, default: u64) -> Result<Duration, ConfigError> {
        match self.raw(key) {
            None => Ok(Duration::from_millis(default)),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(Duration::from_millis(n)),
                _ => Err(self.err(key, &v, "expected a number of milliseconds, at least 1")),
            },
        }
    }

    pub fn parse<T: std::str::FromStr>(
        &mut self,
        key: &'static str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| self.err(key, &v, format!("expected {expected}"))),
        }
    }

    pub fn list(&mut self, key: &'static str, default: &[&str]) -> Vec<String> {
        match self.raw(key) {
            // config-rs gives `a, b` back as one string.
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            None => default.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn check<T, E: std::fmt::Display>(
        &self,
        key: &'static str,
        value: &str,
        r: Result<T, E>,
    ) -> Result<T, ConfigError> {
        r.map_err(|e| self.err(key, value, e.to_string()))
    }

    /// Errors on any key that was not read: a typo must not be ignored.
    pub fn finish(self) -> Result<(), ConfigError> {
        let mut extra: Vec<&String> = self.table.keys().filter(|k| !self.used.contains(&k.as_str())).collect();
        extra.sort();
        match extra.first() {
            Some(k) => {
                let v = self.table.get(*k).map(|v| v.to_string()).unwrap_or_default();
                Err(self.err(k, &v, format!("unknown key (known here: {})", self.used.join(", "))))
            }
            None => Ok(()),
        }
    }
}

/// `batch_window_us`: 0 to 100 ms; longer would show as lamp lag.
fn batch_window(s: &mut Section, default: Duration) -> Result<Duration, ConfigError> {
    const KEY: &str = "batch_window_us";
    let us: u64 = s.parse(
        KEY,
        default.as_micros() as u64,
        "a number of microseconds (0 sends every update at once)",
    )?;
    if us > 100_000 {
        return Err(s.err(
            KEY,
            &us.to_string(),
            "at most 100000 (100 ms): more would show as lamp lag",
        ));
    }
    Ok(Duration::from_micros(us))
}

/// `[broker]`.
pub fn broker(l: &Loaded) -> Result<BrokerConfig, ConfigError> {
    let mut s = l.section("broker");
    let d = BrokerConfig::default();
    let listen = s.string("listen", Some(&d.listen))?;
    let feed = s.string("feed", d.feed.as_deref())?;
    let cfg = BrokerConfig {
        listen,
        feed: (!feed.eq_ignore_ascii_case("off")).then_some(feed),
        heartbeat: s.millis("heartbeat_ms", 1000)?,
        lost_after: s.millis("lost_after_ms", 5000)?,
        lost_policy: s.parse("lost_policy", LostPolicy::Unavailable, "unavailable, keep or remove")?,
        rate_limit: s.parse("rate_limit", 20_000u32, "messages per second per agent")?,
        batch_window: batch_window(&mut s, d.batch_window)?,
        curve: None,
        ..d
    };
    let mut cfg = cfg;
    if let Some(path) = s.opt_string("secret_key_file") {
        let keys = proto::auth::KeyPair::read(Path::new(&path)).map_err(|e| s.err("secret_key_file", &path, e))?;
        let mut allow = proto::auth::AllowList::new();
        let a = l.section("agents");
        let servers: Vec<String> = a.table.keys().cloned().collect();
        for server in servers {
            let key = a.table.get(&server).map(|v| v.to_string()).unwrap_or_default();
            if !proto::entry::valid_origin(&server) {
                return Err(a.err(&server, &key, "not a valid server id"));
            }
            proto::auth::decode_key(&key).map_err(|e| a.err(&server, &key, e))?;
            allow.insert(key.trim().to_string(), server);
        }
        if allow.is_empty() {
            return Err(s.err(
                "secret_key_file",
                &path,
                "CURVE needs an [agents] section: <server> = <agent public key>",
            ));
        }
        cfg.curve = Some((keys, allow));
    }
    if cfg.curve.is_none() && !broker::server::is_loopback(&cfg.listen) {
        return Err(s.err(
            "listen",
            &cfg.listen,
            "plain text beyond loopback: set secret_key_file and an [agents] allow-list",
        ));
    }
    if cfg.lost_after <= cfg.heartbeat * 2 {
        let v = cfg.lost_after.as_millis().to_string();
        return Err(s.err("lost_after_ms", &v, "must be more than twice heartbeat_ms"));
    }
    s.finish()?;
    Ok(cfg)
}

/// An AMI connection: `[ami]` of an agent, or a `[server-x]` of the broker's agentless mode
/// (which also holds that server's agent keys).
pub fn ami(s: &mut Section<'_>, name: &str) -> Result<ClientConfig, ConfigError> {
    let host = s.string("host", Some("127.0.0.1"))?;
    let port: u16 = s.parse("port", 5038, "a TCP port")?;
    let username = s.string("username", Some("hintbus"))?;
    let secret = match (s.opt_string("secret"), s.opt_string("secret_file")) {
        (Some(v), None) => v,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| s.err("secret_file", &path, e.to_string()))?;
            text.trim_end_matches(['\r', '\n']).to_string()
        }
        (Some(_), Some(path)) => return Err(s.err("secret_file", &path, "give secret or secret_file, not both")),
        (None, None) => return Err(s.err("secret", "", "required (or secret_file, or HINTBUS_AMI__SECRET)")),
    };
    let auth = match s.string("auth", Some("md5"))?.to_ascii_lowercase().as_str() {
        "md5" => AuthMethod::Md5,
        "plain" => AuthMethod::Plain,
        other => return Err(s.err("auth", other, "expected md5 or plain")),
    };
    let mut c = ClientConfig::new(format!("{host}:{port}"), username, secret);
    c.name = name.to_string();
    c.auth = auth;
    c.ping_interval = s.millis("ping_ms", 5000)?;
    c.action_timeout = s.millis("action_timeout_ms", 10_000)?;
    Ok(c)
}

/// The agent keys shared by `[agent]` and `[server-x]`.
fn agent_keys(
    s: &mut Section<'_>,
    server: &str,
    ami: ClientConfig,
    broker_ep: &str,
) -> Result<AgentConfig, ConfigError> {
    let mut c = AgentConfig::new(server, ami, broker_ep);
    let t = s.string("device_template", Some("Custom:{device}"))?;
    c.device_template = s.check("device_template", &t, Template::device(&t))?;
    let t = s.string("presence_template", Some("CustomPresence:{resource}"))?;
    c.presence_template = s.check("presence_template", &t, Template::presence(&t))?;
    c.ignore = s.list("ignore", &["Queue:", "Local/"]);
    c.heartbeat = s.millis("heartbeat_ms", 1000)?;
    c.broker_timeout = s.millis("broker_timeout_ms", 5000)?;
    let mut hints = Vec::new();
    for h in s.list("legacy_hints", &[]) {
        let (exten, context) = h.split_once('@').unwrap_or((h.as_str(), "default"));
        if exten.is_empty() || context.is_empty() || !proto::entry::valid_name(exten) {
            return Err(s.err("legacy_hints", &h, "expected exten@context, e.g. 100@default"));
        }
        hints.push((exten.to_string(), context.to_string()));
    }
    c.legacy_hints = hints;
    let guard = s.string("queue_guard", Some("off"))?;
    let template = s.string("guard_template", Some("Custom:{membername}"))?;
    c.queue_guard = match guard.to_ascii_lowercase().as_str() {
        "off" | "no" | "false" => None,
        "on" | "yes" | "true" => {
            Some(s.check("guard_template", &template, agent::guard::GuardTemplate::new(&template))?)
        }
        _ => return Err(s.err("queue_guard", &guard, "expected on or off")),
    };
    Ok(c)
}

fn server_id(s: &Section<'_>, key: &'static str, id: &str) -> Result<(), ConfigError> {
    if proto::entry::valid_origin(id) {
        Ok(())
    } else {
        Err(s.err(key, id, "1 to 32 characters of A-Z a-z 0-9 . _ -"))
    }
}

/// `[agent]` + `[ami]`.
pub fn agent(l: &Loaded) -> Result<AgentConfig, ConfigError> {
    let mut s = l.section("agent");
    let server = s.string("server", None)?;
    server_id(&s, "server", &server)?;
    let broker_ep = s.string("broker", Some("tcp://127.0.0.1:5560"))?;
    let mut a = l.section("ami");
    let ami_cfg = ami(&mut a, &server)?;
    a.finish()?;
    let mut cfg = agent_keys(&mut s, &server, ami_cfg, &broker_ep)?;
    match (s.opt_string("secret_key_file"), s.opt_string("broker_public_key")) {
        (Some(path), Some(broker_key)) => {
            let keys = proto::auth::KeyPair::read(Path::new(&path)).map_err(|e| s.err("secret_key_file", &path, e))?;
            proto::auth::decode_key(&broker_key).map_err(|e| s.err("broker_public_key", &broker_key, e))?;
            if broker_key.trim() == keys.public {
                // Every handshake would fail, and nothing would say why.
                return Err(s.err(
                    "broker_public_key",
                    &broker_key,
                    format!("is this agent's own public key (from {path}): give the broker's, which `hintbus keygen` printed for it"),
                ));
            }
            cfg.curve = Some((keys, broker_key));
        }
        (None, None) => {}
        (Some(p), None) => return Err(s.err("broker_public_key", "", format!("required with secret_key_file = {p}"))),
        (None, Some(k)) => return Err(s.err("secret_key_file", "", format!("required with broker_public_key = {k}"))),
    }
    s.finish()?;
    Ok(cfg)
}

/// Agentless mode: every `[server-<id>]` section of the broker's file.
pub fn agentless(l: &Loaded, broker_ep: &str) -> Result<Vec<AgentConfig>, ConfigError> {
    let mut out = Vec::new();
    for name in l.sections_with_prefix("server-") {
        let mut s = l.section(&name);
        let id = name.trim_start_matches("server-").to_string();
        server_id(&s, "(section name)", &id)?;
        let ami_cfg = ami(&mut s, &id)?;
        let cfg = agent_keys(&mut s, &id, ami_cfg, broker_ep)?;
        s.finish()?;
        out.push(cfg);
    }
    Ok(out)
}
