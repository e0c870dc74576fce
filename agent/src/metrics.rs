//! What one agent counts, as Prometheus metrics (names in docs/http.md).
//!
//! The run loop updates the values; [`Metrics::register`] hands a registry handles to them.
//! The `server` label is the caller's (`Registry::sub_registry_with_label`): the broker's
//! agentless mode runs several agents in one process, each under its own label.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use proto::Kind;

/// The `kind` label of [`Metrics::published`].
pub type KindLabel = [(&'static str, &'static str); 1];

fn kind_label(kind: Kind) -> KindLabel {
    [(
        "kind",
        match kind {
            Kind::Device => "device",
            Kind::Presence => "presence",
        },
    )]
}

/// Counters and gauges of one agent.
#[derive(Debug)]
pub struct Metrics {
    /// Local changes sent to the broker, by kind (see [`Metrics::published`]).
    published: Family<KindLabel, Counter>,
    /// The family's two counters, held so that counting takes no lock.
    published_device: Counter,
    published_presence: Counter,
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
    /// Queue members' events from Asterisk not valid, not sent. Not exported: docs/http.md
    /// names no metric for it (yet); each is also warned.
    pub queue_events_invalid: Counter,
    /// Mirrors this agent keeps.
    pub mirrors: Gauge,
    /// 1 while the broker session is live (snapshot applied).
    pub broker_live: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let published = Family::<KindLabel, Counter>::default();
        // Both kinds exist from the start: a dashboard's `server` variable comes from this
        // metric, and it should list an agent that has published nothing yet.
        let published_device = published.get_or_create_owned(&kind_label(Kind::Device));
        let published_presence = published.get_or_create_owned(&kind_label(Kind::Presence));
        Metrics {
            published,
            published_device,
            published_presence,
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
        match kind {
            Kind::Device => &self.published_device,
            Kind::Presence => &self.published_presence,
        }
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
    /// encoder).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "hintbus_agent_published",
            "Local changes sent to the broker",
            self.published.clone(),
        );
        for (name, help, counter) in [
            ("remote_updates", "Remote states received", &self.remote_updates),
            ("setvar_written", "Setvars Asterisk accepted", &self.setvar_written),
            ("setvar_failed", "Setvars refused or lost", &self.setvar_failed),
            ("setvar_retried", "Writes tried again", &self.setvar_retried),
            ("echoes", "Events of our own mirrors, not republished", &self.echoes),
            ("artifacts", "Restore artifacts not published", &self.artifacts),
            ("resyncs", "Full re-reads of the local Asterisk", &self.resyncs),
            ("snapshots", "Snapshots applied", &self.snapshots),
            ("gaps", "Sequence gaps in the broker's updates", &self.gaps),
            ("fitted", "Presence texts cut to what AMI carries", &self.fitted),
            (
                "invalid_remote",
                "Remote entries not valid, not applied",
                &self.invalid_remote,
            ),
            (
                "write_loops",
                "Mirrors left alone (something writes them back)",
                &self.write_loops,
            ),
            (
                "collisions",
                "Remote states refused (would land on a local name)",
                &self.collisions,
            ),
            ("stale_cleaned", "Mirrors of mirrors deleted", &self.stale_cleaned),
            ("name_errors", "Remote names Asterisk cannot take", &self.name_errors),
            ("queue_events", "Queue members' events sent", &self.queue_events),
            (
                "heartbeats_missed",
                "Broker silent past broker_timeout_ms",
                &self.heartbeats_missed,
            ),
        ] {
            registry.register(format!("hintbus_agent_{name}"), help, counter.clone());
        }
        registry.register(
            "hintbus_agent_mirrors",
            "Mirrors this agent keeps",
            self.mirrors.clone(),
        );
        registry.register(
            "hintbus_agent_broker_live",
            "1 while the broker session is live",
            self.broker_live.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    /// The agent's and its AMI client's metrics, registered under a `server` label, are
    /// exposed with exactly the names of docs/http.md.
    #[tokio::test]
    async fn exposition_under_the_server_label() {
        // Nothing listens on either address: the agent starts, and waits.
        let ami = ami::ClientConfig::new("127.0.0.1:1", "hintbus", "not-a-secret");
        let handle = crate::spawn(crate::AgentConfig::new("a", ami, "tcp://127.0.0.1:1")).unwrap();
        handle.metrics.published(Kind::Device).inc_by(2);
        handle.metrics.setvar_written.inc();
        let mut registry = Registry::default();
        handle.register(registry.sub_registry_with_label(("server".into(), "a".into())));
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        handle.stop().await;

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
        assert_eq!(names.len(), 26, "{names:?}");
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
