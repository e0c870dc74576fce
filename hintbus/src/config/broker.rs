//! `[broker]` and its CURVE allow-list `[agents]`. Defaults are [`BrokerConfig::default`]'s:
//! a key not given leaves its field as it is there.

use super::error::ConfigError;
use super::load::Loaded;
use super::value::{self, Millis};
use broker::{BrokerConfig, LostPolicy};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BrokerSection {
    listen: Option<String>,
    feed: Option<String>,
    heartbeat_ms: Option<Millis<1, 60_000>>,
    lost_after_ms: Option<Millis<1, 3_600_000>>,
    #[serde(default, deserialize_with = "lost_policy")]
    lost_policy: Option<LostPolicy>,
    /// With `lost_policy = unavailable`: a lost server's mailboxes `keep` their counts
    /// (default) or are `clear`ed to 0.
    #[serde(default, deserialize_with = "lost_mailboxes")]
    lost_mailboxes: Option<bool>,
    #[serde(default, deserialize_with = "rate_limit")]
    rate_limit: Option<u32>,
    #[serde(default, deserialize_with = "batch_window")]
    batch_window_us: Option<Duration>,
    secret_key_file: Option<PathBuf>,
    /// This broker's name toward its peers.
    name: Option<String>,
    /// Peer brokers' agent endpoints.
    peers: Option<super::value::List>,
    /// Their public keys (with CURVE), one per peer in their order.
    peer_public_key: Option<super::value::List>,
}

fn lost_policy<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<LostPolicy>, D::Error> {
    value::parse(d, "unavailable, keep or remove", |s| s.parse().ok()).map(Some)
}

fn lost_mailboxes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    value::parse(d, "keep or clear", |s| match s {
        "keep" => Some(false),
        "clear" => Some(true),
        _ => None,
    })
    .map(Some)
}

fn rate_limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    value::parse(d, "a number of messages per second per agent (0: no limit)", |s| {
        s.parse().ok()
    })
    .map(Some)
}

/// 0 to 100 ms; longer would show as lamp lag.
fn batch_window<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    use serde::de::Error;
    let us: u64 = value::parse(d, "a number of microseconds (0 sends every update at once)", |s| {
        s.parse().ok()
    })?;
    if us > 100_000 {
        return Err(D::Error::custom("at most 100000 (100 ms): more would show as lamp lag"));
    }
    Ok(Some(Duration::from_micros(us)))
}

/// `[broker]`, with `[agents]`.
pub fn broker(l: &Loaded) -> Result<BrokerConfig, ConfigError> {
    let s = l.section("broker");
    let b: BrokerSection = s.typed()?;
    let mut c = BrokerConfig::default();
    if let Some(v) = b.listen {
        c.listen = v;
    }
    if let Some(v) = b.feed {
        c.feed = (!v.eq_ignore_ascii_case("off")).then_some(v);
    }
    if let Some(Millis(v)) = b.heartbeat_ms {
        c.heartbeat = v;
    }
    if let Some(Millis(v)) = b.lost_after_ms {
        c.lost_after = v;
    }
    if let Some(v) = b.lost_mailboxes {
        c.lost_mailboxes_clear = v;
    }
    if let Some(v) = b.lost_policy {
        c.lost_policy = v;
    }
    if let Some(v) = b.rate_limit {
        c.rate_limit = v;
    }
    if let Some(v) = b.batch_window_us {
        c.batch_window = v;
    }
    let agents = l.section("agents");
    match b.secret_key_file {
        Some(path) => {
            let err = |e: String| s.err("secret_key_file", e);
            l.check_readable(&path).map_err(err)?;
            let keys = proto::auth::KeyPair::read(&path).map_err(err)?;
            let mut allow = proto::auth::AllowList::new();
            for e in agents.entries() {
                if !proto::entry::valid_origin(&e.key) {
                    return Err(agents.err(&e.key, "not a valid server id (1 to 32 of A-Z a-z 0-9 . _ -)"));
                }
                proto::auth::decode_key(&e.value).map_err(|m| agents.err(&e.key, m))?;
                allow.insert(e.value.trim().to_string(), e.key.clone());
            }
            if allow.is_empty() {
                return Err(s.err(
                    "secret_key_file",
                    "CURVE needs an [agents] section: <server> = <agent public key>",
                ));
            }
            c.curve = Some((keys, allow));
        }
        None if agents.entries().next().is_some() => {
            return Err(agents.section_err(
                "an allow-list without [broker] secret_key_file: the broker would speak plain text and accept any agent; give the broker a key pair (hintbus keygen --out /etc/hintbus/broker.key)",
            ));
        }
        None => {}
    }
    if let Some(name) = b.name {
        if !proto::entry::valid_origin(&name) {
            return Err(s.err("name", "not a valid name (1 to 32 of A-Z a-z 0-9 . _ -)"));
        }
        c.name = name;
    }
    let peers = b.peers.map(|l| l.0).unwrap_or_default();
    if !peers.is_empty() && c.name == broker::BrokerConfig::default().name {
        return Err(s.err(
            "name",
            "required with peers: each broker a name of its own (its peers' sessions are named after it)",
        ));
    }
    let keys = b.peer_public_key.map(|l| l.0).unwrap_or_default();
    match (&c.curve, keys.len()) {
        (_, 0) if peers.is_empty() => {}
        (None, 0) => {
            if let Some(p) = peers.iter().find(|p| !broker::server::is_loopback(p)) {
                return Err(s.err(
                    "peers",
                    format!("{p} in plain text beyond loopback: give the brokers key pairs and peer_public_key"),
                ));
            }
        }
        (Some(_), n) if n == peers.len() => {
            for k in &keys {
                proto::auth::decode_key(k).map_err(|e| s.err("peer_public_key", e))?;
            }
        }
        (Some(_), n) => {
            return Err(s.err(
                "peer_public_key",
                format!("has {n} keys for {} peers: one per peer, in their order", peers.len()),
            ))
        }
        (None, _) => {
            return Err(s.err(
                "peer_public_key",
                "without secret_key_file: peers speak CURVE only when the broker has a key pair",
            ))
        }
    }
    c.peers = peers
        .into_iter()
        .enumerate()
        .map(|(i, p)| (p, keys.get(i).cloned()))
        .collect();
    if c.curve.is_none() && !broker::server::is_loopback(&c.listen) {
        return Err(s.err(
            "listen",
            "plain text beyond loopback: set secret_key_file and an [agents] allow-list",
        ));
    }
    if c.lost_after <= c.heartbeat * 2 {
        let problem = format!(
            "must be more than twice heartbeat_ms (2 × {} ms)",
            c.heartbeat.as_millis()
        );
        return Err(s.err("lost_after_ms", problem));
    }
    if let Some(feed) = c.feed.as_deref().filter(|f| !broker::server::is_loopback(f)) {
        l.warn(format!(
            "warning: [broker] feed = {feed}: the feed is plain text (it has no CURVE): every device and presence change can be read by whoever reaches it; bind it to loopback, or set feed = off"
        ));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// config.ini.example documents every key (given, or commented out).
    #[test]
    fn every_key_is_in_the_example() {
        for key in super::super::typed::fields::<BrokerSection>() {
            assert!(crate::config::in_example(key), "{key} is not in config.ini.example");
        }
    }
}
