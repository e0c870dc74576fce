//! What an agent tells the broker besides states: queue members' events and its Asterisk
//! connection. A real agent against the simulator, and a ROUTER socket of the test's own
//! playing the broker (hello, welcome, an empty snapshot; heartbeats answered), which hands
//! every frame it gets to the test.

use agent::status::BrokerState;
use agent::{spawn, AgentConfig};
use ami::ClientConfig;
use proto::{Msg, QueueEvent, QueueEventKind};
use sim::{QueueConfig, Sim, SimConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Only so that a broken agent fails the test instead of hanging it: nothing is timed.
const HANG: Duration = Duration::from_secs(60);

/// The broker side: a thread with a ROUTER socket; the messages it got, in order.
struct FakeBroker {
    endpoint: String,
    rx: mpsc::UnboundedReceiver<Msg>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeBroker {
    fn start() -> FakeBroker {
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).unwrap();
        // Wakes the thread now and then to see whether the test is done.
        router.set_rcvtimeo(100).unwrap();
        router.set_linger(0).unwrap();
        router.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let _ctx = ctx;
            while !stopped.load(Ordering::Relaxed) {
                let Ok(parts) = router.recv_multipart(0) else { continue };
                let [id, frame] = &parts[..] else { continue };
                let msg = Msg::decode(frame).expect("the agent sends valid frames");
                let reply = match &msg {
                    Msg::Hello { .. } => Some(Msg::Welcome {
                        broker: 7,
                        heartbeat_ms: 100,
                        last_epoch: 0,
                    }),
                    Msg::SnapshotRequest => Some(Msg::Snapshot {
                        seq: 0,
                        entries: vec![],
                        last: true,
                    }),
                    Msg::Heartbeat => Some(Msg::Heartbeat),
                    _ => None,
                };
                if let Some(r) = reply {
                    router.send_multipart([id.as_slice(), &r.encode()], 0).unwrap();
                }
                if tx.send(msg).is_err() {
                    return;
                }
            }
        });
        FakeBroker {
            endpoint,
            rx,
            stop,
            thread: Some(thread),
        }
    }

    /// The next message from the agent for which `pick` says something, skipping the others.
    async fn next<T>(&mut self, what: &str, mut pick: impl FnMut(Msg) -> Option<T>) -> T {
        loop {
            let msg = tokio::time::timeout(HANG, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} from the agent"))
                .expect("the broker thread ended");
            if let Some(t) = pick(msg) {
                return t;
            }
        }
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn status(msg: Msg) -> Option<(bool, Option<String>, String)> {
    match msg {
        Msg::Status {
            ami_connected,
            asterisk,
            detail,
        } => Some((ami_connected, asterisk, detail)),
        _ => None,
    }
}

fn queue(msg: Msg) -> Option<Vec<QueueEvent>> {
    match msg {
        Msg::Queue { events } => Some(events),
        _ => None,
    }
}

/// Alice (SIP/100) in queue `support`.
fn call_centre() -> SimConfig {
    let mut c = SimConfig::pbx("a", &["100"]);
    c.queues
        .push(QueueConfig::one_member("support", "SIP/100", "Alice", ""));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_events_and_ami_status_reach_the_broker() {
    let sim = Sim::start(call_centre()).await.unwrap();
    let mut broker = FakeBroker::start();
    let mut ami = ClientConfig::new(sim.addr().to_string(), "hintbus", "hintbus");
    ami.backoff_min = Duration::from_millis(20);
    let mut cfg = AgentConfig::new("a", ami, &broker.endpoint);
    cfg.heartbeat = Duration::from_millis(100);
    let agent = spawn(cfg).unwrap();

    // Connected to Asterisk and live: a status saying so, and the agent's sync (sent only on
    // a live session once the local state is read), in whichever order they come.
    let (mut connected, mut synced) = (false, false);
    while !(connected && synced) {
        let seen = broker
            .next("status or sync", |m| match m {
                Msg::Sync { last: true, .. } => Some((false, true)),
                Msg::Status {
                    ami_connected: true,
                    asterisk,
                    detail,
                } => {
                    assert_eq!(asterisk.as_deref(), Some("22.10.1"));
                    assert_eq!(detail, "");
                    Some((true, false))
                }
                _ => None,
            })
            .await;
        connected |= seen.0;
        synced |= seen.1;
    }

    // A queue call answered and completed, then a pause: every member event, in order.
    let call = sim.queue_call("support", "5551000").unwrap();
    sim.complete_call(call, "agent").unwrap();
    // One that no observer could show (a queue name over 128 bytes): dropped alone.
    sim.with_world(|w| {
        let ev = ami::Message::new()
            .with("Event", "AgentDump")
            .with("Privilege", "agent,all")
            .with("Queue", "q".repeat(200))
            .with("Interface", "SIP/100")
            .with("MemberName", "Alice");
        w.emit(sim::privilege::Classes::AGENT, ev);
    });
    sim.pause_member("support", "SIP/100", true, "lunch").unwrap();
    let mut events = Vec::new();
    while events.len() < 4 {
        events.extend(broker.next("queue events", queue).await);
    }
    let kinds: Vec<QueueEventKind> = events.iter().map(|e| e.event).collect();
    assert_eq!(
        kinds,
        [
            QueueEventKind::Called,
            QueueEventKind::Connect,
            QueueEventKind::Complete,
            QueueEventKind::Pause
        ]
    );
    for e in &events {
        assert_eq!(
            (
                e.origin.as_str(),
                e.queue.as_str(),
                e.interface.as_str(),
                e.member.as_str()
            ),
            ("a", "support", "SIP/100", "Alice"),
            "{e:?}"
        );
    }
    assert_eq!(events[0].paused, None);
    assert_eq!(events[0].reason, "");
    assert_eq!((events[3].paused, events[3].reason.as_str()), (Some(true), "lunch"));

    let s = agent.status();
    assert!(s.ami.connected);
    assert_eq!(s.broker.state, BrokerState::Live);
    assert_eq!(s.broker.endpoint, broker.endpoint);
    assert_eq!(s.server, "a");

    // Asterisk drops the AMI session: the broker is told, with why.
    sim.drop_connections();
    let (_, asterisk, detail) = broker
        .next("status with AMI down", |m| status(m).filter(|s| !s.0))
        .await;
    assert_eq!(asterisk.as_deref(), Some("22.10.1"), "the version last seen");
    assert!(!detail.is_empty());
    assert_eq!(agent.metrics.queue_events.get(), 4);
    assert_eq!(agent.metrics.queue_events_invalid.get(), 1);
    agent.stop().await;
}
