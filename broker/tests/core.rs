//! The broker core without sockets: frames in, frames and events out, time given.

use ami::DeviceState::*;
use broker::core::{Core, Outlet, Sent};
use broker::{BrokerConfig, Event, LostPolicy, Metrics};
use proto::{Entry, ErrorCode, Msg, QueueEvent, QueueEventKind};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Records every frame by peer; a peer can be made full (backpressure) or gone.
#[derive(Default)]
struct Recorder {
    got: HashMap<Vec<u8>, Vec<Msg>>,
    full: Vec<Vec<u8>>,
}

impl Outlet for Recorder {
    fn send(&mut self, identity: &[u8], frame: &[u8]) -> Sent {
        if self.full.iter().any(|f| f == identity) {
            return Sent::Full;
        }
        let msg = Msg::decode(frame).expect("the core sends valid frames");
        self.got.entry(identity.to_vec()).or_default().push(msg);
        Sent::Ok
    }
}

impl Recorder {
    /// What `peer` got since the last call.
    fn take(&mut self, peer: &str) -> Vec<Msg> {
        self.got.remove(peer.as_bytes()).unwrap_or_default()
    }

    /// The entries of the `updates` `peer` got since the last call.
    fn updates(&mut self, peer: &str) -> Vec<Entry> {
        self.take(peer)
            .into_iter()
            .flat_map(|m| match m {
                Msg::Updates { entries, .. } => entries,
                _ => Vec::new(),
            })
            .collect()
    }
}

struct World {
    core: Core,
    out: Recorder,
    now: Instant,
    metrics: Metrics,
}

impl World {
    fn new(config: BrokerConfig) -> World {
        let now = Instant::now();
        let metrics = Metrics::default();
        World {
            core: Core::new(config, 7, metrics.clone(), now),
            out: Recorder::default(),
            now,
            metrics,
        }
    }

    fn config() -> BrokerConfig {
        BrokerConfig {
            batch_window: Duration::ZERO,
            ..BrokerConfig::default()
        }
    }

    fn frame(&mut self, peer: &str, msg: &Msg) {
        let parts = vec![peer.as_bytes().to_vec(), msg.encode()];
        self.core.on_frames(&mut self.out, parts, None, self.now);
        self.core.flush_all(&mut self.out, self.now);
    }

    fn raw(&mut self, peer: &str, frame: &[u8]) {
        let parts = vec![peer.as_bytes().to_vec(), frame.to_vec()];
        self.core.on_frames(&mut self.out, parts, None, self.now);
    }

    /// An agent for `server` on connection `peer`, joined and snapshotted.
    fn join(&mut self, peer: &str, server: &str) {
        self.frame(
            peer,
            &Msg::Hello {
                server: server.into(),
                instance: 1,
                software: "test".into(),
            },
        );
        self.frame(peer, &Msg::SnapshotRequest);
    }

    fn update(&mut self, peer: &str, entries: Vec<Entry>) {
        self.frame(peer, &Msg::Update { entries });
    }

    fn tick(&mut self, after: Duration) {
        self.now += after;
        self.core.on_tick(&mut self.out, self.now);
        self.core.flush_all(&mut self.out, self.now);
    }
}

fn names(entries: &[Entry]) -> Vec<(String, String, Option<String>)> {
    entries
        .iter()
        .map(|e| (e.origin.clone(), e.name.clone(), e.state.clone()))
        .collect()
}

#[test]
fn a_change_reaches_every_other_agent_never_its_origin_and_is_one_event() {
    let mut w = World::new(World::config());
    w.join("pa", "a");
    w.join("pb", "b");
    w.join("pc", "c");
    let welcome = w.out.take("pa");
    assert!(matches!(welcome[0], Msg::Welcome { broker: 7, .. }), "{welcome:?}");
    assert!(matches!(welcome[1], Msg::Snapshot { last: true, .. }));
    w.out.take("pb");
    w.out.take("pc");
    w.core.take_events();

    w.update("pa", vec![Entry::device("a", "SIP/100", Inuse)]);
    // A later change from b crosses first; then nothing of a's own has come back to a.
    w.update("pb", vec![Entry::device("b", "SIP/200", Ringing)]);
    let one = |o: &str, n: &str, s: &str| (o.to_string(), n.to_string(), Some(s.to_string()));
    assert_eq!(names(&w.out.updates("pa")), [one("b", "SIP/200", "RINGING")]);
    assert_eq!(
        names(&w.out.updates("pc")),
        [one("a", "SIP/100", "INUSE"), one("b", "SIP/200", "RINGING")]
    );
    assert_eq!(names(&w.out.updates("pb")), [one("a", "SIP/100", "INUSE")]);

    // The same entries came out as events, versioned in order.
    let versions: Vec<u64> = w
        .core
        .take_events()
        .iter()
        .flat_map(|e| match e {
            Event::Changed(c) => c.iter().map(|c| c.version).collect(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(versions, [1, 2]);
    assert_eq!(w.core.version(), 2);
    let status = w.core.status(w.now);
    assert_eq!(status.agents.len(), 3);
    assert_eq!(status.agents[0].updates_in, 1);
    assert_eq!(status.agents[0].updates_out, 1, "a was sent b's change");
}

#[test]
fn a_slow_agent_gets_the_latest_of_each_key_and_delays_no_one() {
    let mut w = World::new(World::config());
    w.join("pa", "a");
    w.join("pb", "b");
    w.join("pc", "c");
    w.out.full.push(b"pb".to_vec());
    for i in 0..5000 {
        let state = if (i / 10) % 2 == 0 { Inuse } else { NotInuse };
        w.update("pa", vec![Entry::device("a", &format!("SIP/{}", i % 10), state)]);
    }
    // c kept up with every change, in order.
    assert_eq!(w.out.updates("pc").len(), 5000);
    assert!(w.out.updates("pb").is_empty(), "b's libzmq queue is full");
    // b catches up: the newest state of each of the ten devices, not a backlog.
    w.out.full.clear();
    w.tick(Duration::from_millis(1));
    let b = w.out.updates("pb");
    assert!(b.len() < 5000, "{}", b.len());
    let mut last: HashMap<String, Option<String>> = HashMap::new();
    for e in &b {
        last.insert(e.name.clone(), e.state.clone());
    }
    assert_eq!(last.len(), 10);
    assert!(last.values().all(|s| s.as_deref() == Some("NOT_INUSE")));
    let label = broker::metrics::server("b");
    assert!(w.metrics.coalesced.get_or_create(&label).get() > 0);
    assert!(w.metrics.backpressure.get_or_create(&label).get() > 0);
}

#[test]
fn a_silent_agent_is_lost_once_and_its_devices_read_unavailable_elsewhere() {
    let config = BrokerConfig {
        lost_policy: LostPolicy::Unavailable,
        ..World::config()
    };
    let lost_after = config.lost_after;
    let mut w = World::new(config);
    w.join("pa", "a");
    w.join("pb", "b");
    w.update("pa", vec![Entry::device("a", "SIP/100", NotInuse)]);
    w.out.updates("pb");
    w.core.take_events();
    // b keeps talking; a goes silent.
    let step = lost_after / 2;
    for _ in 0..3 {
        w.frame("pb", &Msg::Heartbeat);
        w.tick(step);
    }
    let b = w.out.updates("pb");
    assert_eq!(names(&b), [("a".into(), "SIP/100".into(), Some("UNAVAILABLE".into()))]);
    let events = w.core.take_events();
    let lost: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::AgentLost { server, .. } => Some(server.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(lost, ["a"]);
    let status = w.core.status(w.now);
    assert_eq!(status.lost.len(), 1);
    assert_eq!(status.agents.len(), 1);
    assert_eq!(
        w.metrics
            .heartbeats_missed
            .get_or_create(&broker::metrics::server("a"))
            .get(),
        1
    );
    // A reconnect of the same server on a new connection is not a loss.
    w.join("pb2", "b");
    assert!(!w
        .core
        .take_events()
        .iter()
        .any(|e| matches!(e, Event::AgentLost { .. })));
}

/// A lost server's mailboxes: kept as they were by default (the messages are still there),
/// cleared to 0 with `lost_mailboxes = clear`; its phones read UNAVAILABLE either way.
#[test]
fn a_lost_servers_mailboxes_are_kept_or_cleared() {
    for clear in [false, true] {
        let config = BrokerConfig {
            lost_policy: LostPolicy::Unavailable,
            lost_mailboxes_clear: clear,
            ..World::config()
        };
        let lost_after = config.lost_after;
        let mut w = World::new(config);
        w.join("pa", "a");
        w.join("pb", "b");
        let counts = proto::Counts {
            new: 2,
            old: 1,
            urgent: 0,
        };
        w.update(
            "pa",
            vec![
                Entry::device("a", "SIP/100", NotInuse),
                Entry::mailbox("a", "100@default", counts),
            ],
        );
        let first = w.out.updates("pb");
        assert_eq!(first.len(), 2, "{first:?}");
        let step = lost_after / 2;
        for _ in 0..3 {
            w.frame("pb", &Msg::Heartbeat);
            w.tick(step);
        }
        let b = w.out.updates("pb");
        let mut want = vec![("a".to_string(), "SIP/100".to_string(), Some("UNAVAILABLE".to_string()))];
        if clear {
            want.push(("a".into(), "100@default".into(), Some("empty".into())));
        }
        assert_eq!(names(&b), want, "clear = {clear}");
        if clear {
            let m = b.iter().find(|e| e.name == "100@default").unwrap();
            assert_eq!((m.new, m.old), (0, 0));
        }
    }
}

#[test]
fn one_bad_entry_is_refused_alone_and_said_as_an_event() {
    let mut w = World::new(World::config());
    w.join("pa", "a");
    w.join("pb", "b");
    w.out.take("pa");
    let mut bad = Entry::device("a", "SIP/1", Inuse);
    bad.state = Some("BOGUS".into());
    let theirs = Entry::device("b", "SIP/2", Inuse);
    w.update("pa", vec![bad, Entry::device("a", "SIP/3", Busy), theirs]);
    assert_eq!(
        names(&w.out.updates("pb")),
        [("a".into(), "SIP/3".into(), Some("BUSY".into()))]
    );
    let reply = w.out.take("pa");
    assert!(
        matches!(&reply[0], Msg::Error { code: ErrorCode::WrongOrigin, message } if message.contains("2 entries refused")),
        "{reply:?}"
    );
    assert!(w
        .core
        .take_events()
        .iter()
        .any(|e| matches!(e, Event::Refused { server: Some(s), .. } if &**s == "a")));
    // Garbage before hello: refused, no session, and the stranger's allowance is small.
    for _ in 0..100 {
        w.raw("px", b"\xff garbage");
    }
    assert!(w.out.take("px").len() <= 20);
    assert!(w.metrics.rate_limited.get() >= 80);
}

#[test]
fn queue_events_and_status_reach_observers_not_agents() {
    let mut w = World::new(World::config());
    w.join("pa", "a");
    w.join("pb", "b");
    w.out.take("pb");
    w.core.take_events();
    let ev = |origin: &str, event, paused| QueueEvent {
        origin: origin.into(),
        queue: "support".into(),
        interface: "PJSIP/100".into(),
        member: "Alice".into(),
        event,
        paused,
        reason: String::new(),
    };
    w.frame(
        "pa",
        &Msg::Queue {
            events: vec![
                ev("a", QueueEventKind::Pause, Some(true)),
                ev("b", QueueEventKind::Called, None),
                ev("a", QueueEventKind::Called, None),
            ],
        },
    );
    w.frame(
        "pa",
        &Msg::Status {
            ami_connected: true,
            asterisk: Some("22.10.1".into()),
            detail: String::new(),
        },
    );
    assert!(w.out.take("pb").is_empty(), "agents get no queue events");
    let events = w.core.take_events();
    let queue: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Queue(q) => Some(q.iter().map(|e| e.event).collect::<Vec<_>>()),
            _ => None,
        })
        .collect();
    assert_eq!(queue, [vec![QueueEventKind::Pause, QueueEventKind::Called]]);
    let members = w.core.snapshot().members;
    assert_eq!(members.len(), 1);
    assert!(members[0].paused && members[0].event == QueueEventKind::Called);
    let a = &w.core.status(w.now).agents[0];
    assert_eq!((a.asterisk.as_deref(), a.ami_connected), (Some("22.10.1"), Some(true)));
}

#[test]
fn a_peer_session_takes_everything_and_publishes_nothing() {
    let mut w = World::new(World::config());
    w.join("pa", "a");
    w.frame(
        "pp",
        &Msg::PeerHello {
            name: "b2".into(),
            instance: 3,
        },
    );
    w.frame("pp", &Msg::SnapshotRequest);
    w.out.take("pp");
    w.update("pa", vec![Entry::device("a", "SIP/100", Inuse)]);
    assert_eq!(w.out.updates("pp").len(), 1, "a peer is sent every change");
    // It may not publish, nor may a hello pass itself off as a peer.
    w.update("pp", vec![Entry::device("peer:b2", "SIP/1", Busy)]);
    assert!(matches!(
        &w.out.take("pp")[0],
        Msg::Error {
            code: ErrorCode::BadMessage,
            ..
        }
    ));
    w.frame(
        "px",
        &Msg::Hello {
            server: "peer:b2".into(),
            instance: 1,
            software: "peer broker".into(),
        },
    );
    assert!(matches!(
        &w.out.take("px")[0],
        Msg::Error {
            code: ErrorCode::Refused,
            ..
        }
    ));
    w.frame(
        "py",
        &Msg::Hello {
            server: "peer:b2".into(),
            instance: 1,
            software: "hintbus".into(),
        },
    );
    assert!(matches!(
        &w.out.take("py")[0],
        Msg::Error {
            code: ErrorCode::Refused,
            ..
        }
    ));
    assert_eq!(w.core.entries().len(), 1);
}
