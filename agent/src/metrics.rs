//! What one agent counts, as Prometheus metrics (names in docs/http.md).
//!
//! The run loop updates the values; [`Metrics::register`] hands a registry handles to them.
//! The `server` label is the caller's (`Registry::sub_registry_with_label`): the broker's
//! agentless mode runs several agents in one process, each under its own label.

use ami::client::metrics::Series;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use proto::Kind;
use std::sync::{Arc, Mutex};

/// The `kind` label of [`Metrics::published`].
pub type KindLabel = [(&'static str, &'static str); 1];

fn kind_label(kind: Kind) -> KindLabel {
    [("kind", kind.as_str())]
}

/// Counters and gauges of one agent.
#[derive(Debug)]
pub struct Metrics {
    /// Local changes sent to the broker, by kind (see [`Metrics::published`]).
    published: Family<KindLabel, Counter>,
    /// The family's two counters, held so that counting takes no lock.
    /// [`Metrics::published`] by [`Kind::index`].
    published_by_kind: [Counter; 3],
    /// Remote states received in updates.
    pub remote_updates: Counter,
    /// Setvars Asterisk accepted.
    pub setvar_written: Counter,
    /// Setvars refused, lost, timed out, or not sent (the queue to Asterisk full).
    pub setvar_failed: Counter,
    /// Setvars sent again for targets whose last write failed.
    pub setvar_retried: Counter,
    /// Events of our own mirrors, not republished.
    pub echoes: Counter,
    /// Restore artifacts (`Custom:100` for `Custom:SIP/100`) not published.
    pub artifacts: Counter,
    /// Full re-reads of the local Asterisk.
    pub resyncs: Counter,
    /// Snapshots applied.
    pub snapshots: Counter,
    /// Sequence gaps in the broker's updates.
    pub gaps: Counter,
    /// Local presence texts published cut to what AMI carries unchanged.
    pub fitted: Counter,
    /// Remote entries not valid, not applied.
    pub invalid_remote: Counter,
    /// Mirrors left alone because something keeps changing them back.
    pub write_loops: Counter,
    /// Remote states refused because they would land on one of this server's own names.
    pub collisions: Counter,
    /// Mirrors of mirrors left by older runs, deleted from astdb.
    pub stale_cleaned: Counter,
    /// Remote names Asterisk cannot take (the template makes them too long, or odd).
    pub name_errors: Counter,
    /// Queue members' events sent to the broker.
    pub queue_events: Counter,
    /// Times the broker was silent past `broker_timeout` (the agent then joins again).
    pub heartbeats_missed: Counter,
    /// Queue members' events from Asterisk not valid, not sent (each is also warned).
    pub queue_events_invalid: Counter,
    /// Mirrors this agent keeps.
    pub mirrors: Gauge,
    /// 1 while the broker session is live (snapshot applied).
    pub broker_live: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let published = Family::<KindLabel, Counter>::default();
        // Every kind exists from the start: a dashboard's `server` variable comes from this
        // metric, and it should list an agent that has published nothing yet.
        let published_by_kind = Kind::ALL.map(|k| published.get_or_create_owned(&kind_label(k)));
        Metrics {
            published,
            published_by_kind,
            remote_updates: Counter::default(),
            setvar_written: Counter::default(),
            setvar_failed: Counter::default(),
            setvar_retried: Counter::default(),
            echoes: Counter::default(),
            artifacts: Counter::default(),
            resyncs: Counter::default(),
            snapshots: Counter::default(),
            gaps: Counter::default(),
            fitted: Counter::default(),
            invalid_remote: Counter::default(),
            write_loops: Counter::default(),
            collisions: Counter::default(),
            stale_cleaned: Counter::default(),
            name_errors: Counter::default(),
            queue_events: Counter::default(),
            heartbeats_missed: Counter::default(),
            queue_events_invalid: Counter::default(),
            mirrors: Gauge::default(),
            broker_live: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Local changes of `kind` sent to the broker.
    pub fn published(&self, kind: Kind) -> &Counter {
        &self.published_by_kind[kind.index()]
    }

    /// Brings a counter kept elsewhere (the link's gaps, the mirror's collisions) up to
    /// `total`: only this agent's loop adds to these counters.
    pub(crate) fn catch_up(counter: &Counter, total: u64) {
        let now = counter.get();
        if total > now {
            counter.inc_by(total - now);
        }
    }

    /// Registers every metric as `hintbus_agent_*` (counters get their `_total` from the
    /// encoder), for a process with this one agent; [`Agents`] puts several under one name.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(PUBLISHED.0, PUBLISHED.1, self.published.clone());
        for (name, help, series) in self.series() {
            match series {
                Series::Counter(c) => registry.register(name, help, c.clone()),
                Series::Gauge(g) => registry.register(name, help, g.clone()),
            }
        }
    }

    /// Every metric but `published` (which has a `kind` label), with its name and help.
    pub fn series(&self) -> [(&'static str, &'static str, Series<'_>); 20] {
        use ami::client::metrics::Series::{Counter as C, Gauge as G};
        [
            (
                "hintbus_agent_remote_updates",
                "Remote states received",
                C(&self.remote_updates),
            ),
            (
                "hintbus_agent_setvar_written",
                "Setvars Asterisk accepted",
                C(&self.setvar_written),
            ),
            (
                "hintbus_agent_setvar_failed",
                "Setvars refused or lost",
                C(&self.setvar_failed),
            ),
            (
                "hintbus_agent_setvar_retried",
                "Writes tried again",
                C(&self.setvar_retried),
            ),
            (
                "hintbus_agent_echoes",
                "Events of our own mirrors, not republished",
                C(&self.echoes),
            ),
            (
                "hintbus_agent_artifacts",
                "Restore artifacts not published",
                C(&self.artifacts),
            ),
            (
                "hintbus_agent_resyncs",
                "Full re-reads of the local Asterisk",
                C(&self.resyncs),
            ),
            ("hintbus_agent_snapshots", "Snapshots applied", C(&self.snapshots)),
            (
                "hintbus_agent_gaps",
                "Sequence gaps in the broker's updates",
                C(&self.gaps),
            ),
            (
                "hintbus_agent_fitted",
                "Presence texts cut to what AMI carries",
                C(&self.fitted),
            ),
            (
                "hintbus_agent_invalid_remote",
                "Remote entries not valid, not applied",
                C(&self.invalid_remote),
            ),
            (
                "hintbus_agent_write_loops",
                "Mirrors left alone (something writes them back)",
                C(&self.write_loops),
            ),
            (
                "hintbus_agent_collisions",
                "Remote states refused (would land on a local name)",
                C(&self.collisions),
            ),
            (
                "hintbus_agent_stale_cleaned",
                "Mirrors of mirrors deleted",
                C(&self.stale_cleaned),
            ),
            (
                "hintbus_agent_name_errors",
                "Remote names Asterisk cannot take",
                C(&self.name_errors),
            ),
            (
                "hintbus_agent_queue_events",
                "Queue members' events sent",
                C(&self.queue_events),
            ),
            (
                "hintbus_agent_heartbeats_missed",
                "Broker silent past broker_timeout_ms",
                C(&self.heartbeats_missed),
            ),
            ("hintbus_agent_mirrors", "Mirrors this agent keeps", G(&self.mirrors)),
            (
                "hintbus_agent_broker_live",
                "1 while the broker session is live",
                G(&self.broker_live),
            ),
            (
                "hintbus_agent_queue_events_invalid",
                "Queue members' events from Asterisk not valid, not sent",
                C(&self.queue_events_invalid),
            ),
        ]
    }
}

const PUBLISHED: (&str, &str) = ("hintbus_agent_published", "Local changes sent to the broker");

/// Every agent of a process (one, or the broker's agentless ones) in one exposition: each
/// metric described once, with one series per `server`. A registry's labelled sub-registries
/// would describe each metric again for every server, which OpenMetrics forbids.
#[derive(Debug, Clone, Default)]
pub struct Agents(Arc<Mutex<Vec<Labelled>>>);

/// One agent's metrics and its AMI client's, with its server id.
type Labelled = (String, Arc<Metrics>, ami::client::Metrics);

impl Agents {
    /// Adds an agent's metrics and its AMI client's, labelled `server`.
    pub fn add(&self, server: &str, h: &crate::AgentHandle) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push((
            server.to_string(),
            h.metrics.clone(),
            h.client.metrics().clone(),
        ));
    }
}

impl Collector for Agents {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let agents = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if agents.is_empty() {
            return Ok(());
        }
        {
            let mut m = enc.encode_descriptor(PUBLISHED.0, PUBLISHED.1, None, MetricType::Counter)?;
            for (server, a, _) in agents.iter() {
                for kind in Kind::ALL {
                    let labels = [("server", server.as_str()), ("kind", kind.as_str())];
                    a.published(kind).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        // Every agent's series (its own, then its AMI client's) listed once, in one order.
        let rows: Vec<(&str, Vec<Described>)> = agents
            .iter()
            .map(|(srv, a, c)| (srv.as_str(), a.series().into_iter().chain(c.series()).collect()))
            .collect();
        for (i, &(name, help, s)) in rows[0].1.iter().enumerate() {
            encode_each(&mut enc, name, help, s, rows.iter().map(|(srv, r)| (*srv, r[i].2)))?;
        }
        Ok(())
    }
}

/// A metric with its name and help.
type Described<'a> = (&'static str, &'static str, Series<'a>);

/// One metric's descriptor, then its series of every server.
fn encode_each<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: Series,
    each: impl Iterator<Item = (&'a str, Series<'a>)>,
) -> std::fmt::Result {
    let ty = match kind {
        Series::Counter(_) => MetricType::Counter,
        Series::Gauge(_) => MetricType::Gauge,
    };
    let mut m = enc.encode_descriptor(name, help, None, ty)?;
    for (server, s) in each {
        let labels = [("server", server)];
        match s {
            Series::Counter(c) => c.encode(m.encode_family(&labels)?)?,
            Series::Gauge(g) => g.encode(m.encode_family(&labels)?)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    /// The agent's and its AMI client's metrics, registered under a `server` label, are
    /// exposed with exactly the names of docs/http.md.
    #[tokio::test]
    async fn exposition_under_the_server_label() {
        // Nothing listens on either address: the agents start, and wait.
        let spawn = |server: &str| {
            let ami = ami::ClientConfig::new("127.0.0.1:1", "hintbus", "not-a-secret");
            crate::spawn(crate::AgentConfig::new(server, ami, "tcp://127.0.0.1:1")).unwrap()
        };
        let (handle, other) = (spawn("a"), spawn("b"));
        handle.metrics.published(Kind::Device).inc_by(2);
        handle.metrics.setvar_written.inc();
        let mut registry = Registry::default();
        let agents = Agents::default();
        registry.register_collector(Box::new(agents.clone()));
        agents.add("a", &handle);
        agents.add("b", &other);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        handle.stop().await;
        other.stop().await;
        // Each metric is described once, whatever the number of agents.
        let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let n = types.len();
        types.dedup();
        assert_eq!(types.len(), n, "{text}");
        assert!(
            text.contains(r#"hintbus_agent_setvar_written_total{server="b"} 0"#),
            "{text}"
        );

        let lines: Vec<&str> = text.lines().collect();
        for line in [
            r#"hintbus_agent_published_total{server="a",kind="device"} 2"#,
            r#"hintbus_agent_published_total{server="a",kind="presence"} 0"#,
            r#"hintbus_agent_setvar_written_total{server="a"} 1"#,
            r#"hintbus_agent_broker_live{server="a"} 0"#,
            r#"hintbus_ami_connected{server="a"} 0"#,
            "# TYPE hintbus_agent_mirrors gauge",
        ] {
            assert!(lines.contains(&line), "{line} not in\n{text}");
        }
        assert!(!text.contains("not-a-secret"));

        let docs = include_str!("../../docs/http.md");
        let table = &docs[docs.find("Agent (each metric").unwrap()..docs.find("Both:").unwrap()];
        let names: Vec<&str> = table
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
            .collect();
        assert_eq!(names.len(), 27, "{names:?}");
        for name in &names {
            let sample = format!("{name}{{server=\"a\"");
            assert!(lines.iter().any(|l| l.starts_with(&sample)), "{name} not in\n{text}");
        }
        // And nothing that the docs do not name.
        for l in lines.iter().filter(|l| !l.starts_with('#')) {
            let name = l.split('{').next().unwrap();
            assert!(names.contains(&name), "{name} is not in docs/http.md");
        }
    }
}
