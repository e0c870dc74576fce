//! The broker's metrics, in one Prometheus registry with the agents' (docs/http.md).
//!
//! Counters of the hot path (a frame received, an entry sent) are atomics the core adds to
//! where it happens: cheaper than an event per frame. What the event stream says (agents
//! joined and lost, table changes, queue events) is counted there as well, as it is emitted.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabel {
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerKind {
    pub server: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric of the broker. Cheap to clone (each metric is shared).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub sessions: Gauge,
    pub agents_joined: Counter,
    pub agents_lost: Family<Reason, Counter>,
    pub heartbeats_missed: Family<ServerLabel, Counter>,
    pub messages_received: Counter,
    pub updates_in: Family<ServerKind, Counter>,
    pub updates_out: Family<ServerLabel, Counter>,
    pub coalesced: Family<ServerLabel, Counter>,
    pub backpressure: Family<ServerLabel, Counter>,
    pub queue_entries: Family<ServerLabel, Gauge>,
    pub lag: Family<ServerLabel, FloatGauge>,
    pub refused_messages: Family<Reason, Counter>,
    pub refused_entries: Family<Reason, Counter>,
    pub rate_limited: Counter,
    pub snapshots_sent: Counter,
    pub table_entries: Family<KindLabel, Gauge>,
    pub table_version: Gauge,
    pub queue_events: Family<ServerLabel, Counter>,
    pub sink_lagged: Family<SinkLabel, Counter>,
}

pub fn server(s: &str) -> ServerLabel {
    ServerLabel { server: s.to_string() }
}

pub fn reason(r: &str) -> Reason {
    Reason { reason: r.to_string() }
}

impl Metrics {
    /// Registers every metric under `hintbus_broker_` (prometheus-client adds `_total` to
    /// counters and the unit to the name).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("hintbus_broker");
        r.register("sessions", "Agents with a live session", self.sessions.clone());
        r.register("agents_joined", "Hellos accepted", self.agents_joined.clone());
        r.register("agents_lost", "Agents lost, by why", self.agents_lost.clone());
        r.register(
            "heartbeats_missed",
            "Agents declared lost for their silence",
            self.heartbeats_missed.clone(),
        );
        r.register(
            "messages_received",
            "Frames received from agents",
            self.messages_received.clone(),
        );
        r.register(
            "updates_in",
            "Entries from an agent that changed the table",
            self.updates_in.clone(),
        );
        r.register("updates_out", "Entries sent to an agent", self.updates_out.clone());
        r.register(
            "coalesced",
            "Updates replaced in an agent's queue by newer ones of the same key",
            self.coalesced.clone(),
        );
        r.register(
            "backpressure",
            "Sends deferred because libzmq's queue for the agent was full",
            self.backpressure.clone(),
        );
        r.register(
            "queue_entries",
            "Entries waiting in the broker for an agent",
            self.queue_entries.clone(),
        );
        r.register_with_unit(
            "lag",
            "How long the oldest entry waiting for an agent has waited",
            Unit::Seconds,
            self.lag.clone(),
        );
        r.register(
            "refused_messages",
            "Frames refused, by the protocol's error code",
            self.refused_messages.clone(),
        );
        r.register(
            "refused_entries",
            "Entries refused alone, the rest of their message applied",
            self.refused_entries.clone(),
        );
        r.register(
            "rate_limited",
            "Frames dropped because an agent or a stranger was over its rate",
            self.rate_limited.clone(),
        );
        r.register(
            "snapshots_sent",
            "Snapshots sent to agents",
            self.snapshots_sent.clone(),
        );
        r.register("table_entries", "Entries in the table", self.table_entries.clone());
        r.register(
            "table_version",
            "The table's version (one more per change)",
            self.table_version.clone(),
        );
        r.register(
            "queue_events",
            "Queue members' events passed on to observers",
            self.queue_events.clone(),
        );
        r.register(
            "sink_lagged",
            "Times a slow consumer of the change stream fell behind and was resynchronised",
            self.sink_lagged.clone(),
        );
    }

    /// One agent's gauges are gone with its session (counters stay: Prometheus expects them to).
    pub fn forget_session(&self, s: &str) {
        self.queue_entries.remove(&server(s));
        self.lag.remove(&server(s));
    }
}

/// `hintbus_process_resident_memory_bytes` and `hintbus_build_info`, for the broker and the
/// agent alike; the resident size is read from /proc when it is scraped.
pub fn register_process(registry: &mut Registry) {
    #[derive(Debug)]
    struct Process;
    impl prometheus_client::collector::Collector for Process {
        fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
            use prometheus_client::encoding::EncodeMetric;
            use prometheus_client::metrics::gauge::ConstGauge;
            let rss = ConstGauge::new(resident_bytes() as i64);
            let e = encoder.encode_descriptor(
                "hintbus_process_resident_memory",
                "Resident memory of this process",
                Some(&Unit::Bytes),
                rss.metric_type(),
            )?;
            rss.encode(e)?;
            let info = ConstGauge::new(1i64);
            let mut e =
                encoder.encode_descriptor("hintbus_build_info", "The running version", None, info.metric_type())?;
            let labels = [("version", env!("CARGO_PKG_VERSION"))];
            info.encode(e.encode_family(&labels)?)?;
            Ok(())
        }
    }
    registry.register_collector(Box::new(Process));
}

/// This process's resident memory, from /proc/self/statm (0 where there is none).
pub fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names() {
        let m = Metrics::default();
        let mut r = Registry::default();
        m.register(&mut r);
        register_process(&mut r);
        m.updates_in
            .get_or_create(&ServerKind {
                server: "a".into(),
                kind: "device".into(),
            })
            .inc_by(3);
        m.lag.get_or_create(&server("b")).set(0.25);
        m.sessions.set(2);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        for line in [
            "hintbus_broker_updates_in_total{server=\"a\",kind=\"device\"} 3",
            "hintbus_broker_lag_seconds{server=\"b\"} 0.25",
            "hintbus_broker_sessions 2",
            "# TYPE hintbus_process_resident_memory_bytes gauge",
            "hintbus_build_info{version=\"",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        m.forget_session("b");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        assert!(!text.contains("lag_seconds{server=\"b\"}"));
    }
}
