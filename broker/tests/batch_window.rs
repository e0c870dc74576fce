//! The batch window: an idle agent's update leaves at once; updates for an agent that was just
//! sent something wait for the window's end and travel together, in order.

use ami::DeviceState;
use broker::{Broker, BrokerConfig};
use proto::transport::{Dealer, SocketOptions};
use proto::{Entry, Msg};
use std::time::Duration;
use tokio::time::{timeout, Instant};

const WINDOW: Duration = Duration::from_millis(600);

fn broker() -> Broker {
    Broker::start(BrokerConfig {
        listen: "tcp://127.0.0.1:*".into(),
        feed: None,
        // No heartbeat inside the test: it would open a window of its own.
        heartbeat: Duration::from_secs(20),
        lost_after: Duration::from_secs(60),
        batch_window: WINDOW,
        ..BrokerConfig::default()
    })
    .unwrap()
}

/// Joins as `server`; returns the socket and when the snapshot (the last frame sent) came.
async fn join(b: &Broker, server: &str) -> (Dealer, Instant) {
    let d = Dealer::connect(b.endpoint(), &SocketOptions::default(), |_| Ok(())).unwrap();
    d.send(
        &Msg::Hello {
            server: server.into(),
            instance: 1,
            software: "test".into(),
        }
        .encode(),
    );
    loop {
        match Msg::decode(&next(&d).await) {
            Ok(Msg::Welcome { .. }) => {
                d.send(&Msg::SnapshotRequest.encode());
            }
            Ok(Msg::Snapshot { last: true, .. }) => return (d, Instant::now()),
            _ => {}
        }
    }
}

async fn next(d: &Dealer) -> Vec<u8> {
    timeout(Duration::from_secs(10), d.recv())
        .await
        .expect("a frame within 10 s")
}

/// The next Updates message, as (when it came, the device names it holds).
async fn updates(d: &Dealer) -> (Instant, Vec<String>) {
    loop {
        if let Ok(Msg::Updates { entries, .. }) = Msg::decode(&next(d).await) {
            return (Instant::now(), entries.into_iter().map(|e| e.name).collect());
        }
    }
}

fn update(name: &str, state: DeviceState) -> Vec<u8> {
    Msg::Update {
        entries: vec![Entry::device("a", name, state)],
    }
    .encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_agents_get_updates_together_idle_ones_at_once() {
    let b = broker();
    let (rx, snapshot_at) = join(&b, "b").await;
    let (tx, _) = join(&b, "a").await;
    // The snapshot opened b's window: let it close (a known deadline, not a hoped-for event).
    tokio::time::sleep_until(snapshot_at + WINDOW + Duration::from_millis(50)).await;

    let sent = Instant::now();
    tx.send(&update("SIP/1", DeviceState::Inuse));
    let (first_at, first) = updates(&rx).await;
    assert_eq!(first, ["SIP/1"]);
    assert!(
        first_at - sent < WINDOW / 2,
        "an idle agent's update waited {:?}",
        first_at - sent
    );

    // Three more, each in a frame of its own, right behind: they leave when the window ends.
    for (name, state) in [
        ("SIP/2", DeviceState::Ringing),
        ("SIP/3", DeviceState::Inuse),
        ("SIP/2", DeviceState::Inuse),
    ] {
        tx.send(&update(name, state));
    }
    let (second_at, second) = updates(&rx).await;
    assert_eq!(second, ["SIP/2", "SIP/3", "SIP/2"], "together and in order");
    assert!(
        second_at - first_at >= WINDOW - Duration::from_millis(50),
        "sent {:?} after the previous frame, inside the window",
        second_at - first_at
    );
}
