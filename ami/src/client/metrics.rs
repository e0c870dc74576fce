//! What one AMI client counts, as Prometheus metrics (names in docs/http.md).
//!
//! The values live in the client and are updated where things happen; a registry only holds
//! handles to them, so an agent (or several, in the broker's agentless mode) registers them
//! under its own `server` label and the client knows nothing of HTTP.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// One metric of a client or an agent, for a collector that puts several of them under one
/// name (see the agent's `metrics::Agents`).
#[derive(Debug, Clone, Copy)]
pub enum Series<'a> {
    Counter(&'a Counter),
    Gauge(&'a Gauge),
}

/// Counters and the connected gauge of one AMI client. Clones share the values.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    /// Logins that succeeded.
    pub connects: Counter,
    /// Logins Asterisk refused.
    pub login_failures: Counter,
    /// Events handed to the consumer (or dropped for it).
    pub events_received: Counter,
    /// Events the consumer was too slow for (it is told to resync).
    pub events_dropped: Counter,
    /// Malformed or oversized AMI messages refused by the codec.
    pub frames_rejected: Counter,
    /// 1 while logged in.
    pub connected: Gauge,
}

impl Metrics {
    /// Registers every metric as `hintbus_ami_*` (counters get their `_total` from the
    /// encoder). The handles share the values: what the client counts later is what is read.
    pub fn register(&self, registry: &mut Registry) {
        for (name, help, series) in self.series() {
            match series {
                Series::Counter(c) => registry.register(name, help, c.clone()),
                Series::Gauge(g) => registry.register(name, help, g.clone()),
            }
        }
    }

    /// Every metric, with its name and help.
    pub fn series(&self) -> [(&'static str, &'static str, Series<'_>); 6] {
        [
            (
                "hintbus_ami_connected",
                "1 while logged in to Asterisk",
                Series::Gauge(&self.connected),
            ),
            (
                "hintbus_ami_connects",
                "AMI logins that succeeded",
                Series::Counter(&self.connects),
            ),
            (
                "hintbus_ami_login_failures",
                "AMI logins refused",
                Series::Counter(&self.login_failures),
            ),
            (
                "hintbus_ami_events_received",
                "AMI events received",
                Series::Counter(&self.events_received),
            ),
            (
                "hintbus_ami_events_dropped",
                "AMI events the agent was too slow for (it resyncs)",
                Series::Counter(&self.events_dropped),
            ),
            (
                "hintbus_ami_frames_rejected",
                "Malformed or oversized AMI messages",
                Series::Counter(&self.frames_rejected),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn exposition_names_are_those_of_the_docs() {
        let m = Metrics::default();
        m.connects.inc();
        m.connected.set(1);
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "hintbus_ami_connected 1",
                "hintbus_ami_connects_total 1",
                "hintbus_ami_login_failures_total 0",
                "hintbus_ami_events_received_total 0",
                "hintbus_ami_events_dropped_total 0",
                "hintbus_ami_frames_rejected_total 0",
            ]
        );
        assert!(text.contains("# TYPE hintbus_ami_connects counter\n"), "{text}");
    }
}
