//! The batch window: an idle agent's update leaves at once; an agent that gets many updates
//! gets them together, once per window, in order.

use ami::DeviceState;
use broker::{Broker, BrokerConfig};
use proto::transport::{Dealer, SocketOptions};
use proto::{Entry, Msg};
use std::time::Duration;
use tokio::time::{timeout, Instant};

const WINDOW: Duration = Duration::from_millis(300);

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

/// The next Updates message, as (when it came, its entries as (device, state)).
async fn updates(d: &Dealer) -> (Instant, Vec<(String, String)>) {
    loop {
        if let Ok(Msg::Updates { entries, .. }) = Msg::decode(&next(d).await) {
            let got = entries
                .into_iter()
                .map(|e| (e.name, e.state.unwrap_or_default()))
                .collect();
            return (Instant::now(), got);
        }
    }
}

/// Update number `i`: five devices, each alternating, so that every one is a change.
fn nth(i: usize) -> (String, DeviceState) {
    let state = if (i / 5).is_multiple_of(2) {
        DeviceState::Inuse
    } else {
        DeviceState::NotInuse
    };
    (format!("SIP/{}", i % 5), state)
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
    tx.send(&update("SIP/9", DeviceState::Busy));
    let (first_at, first) = updates(&rx).await;
    assert_eq!(first, [("SIP/9".to_string(), "BUSY".to_string())]);
    assert!(
        first_at - sent < WINDOW / 2,
        "an idle agent's update waited {:?}",
        first_at - sent
    );

    // Now a steady stream, one update every millisecond: once the broker has seen b's rate,
    // b gets them a window at a time.
    const N: usize = 600;
    let stream = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        for i in 0..N {
            tick.tick().await;
            let (name, state) = nth(i);
            tx.send(&update(&name, state));
        }
        tx
    });
    let mut got = Vec::new();
    let mut frames = 0;
    while got.len() < N {
        let (_, entries) = updates(&rx).await;
        frames += 1;
        got.extend(entries);
    }
    drop(stream.await.unwrap());
    let want: Vec<(String, String)> = (0..N)
        .map(|i| {
            let (name, state) = nth(i);
            (name, state.as_str().to_string())
        })
        .collect();
    assert_eq!(got, want, "every update, in order");
    // One frame per update until the rate is known (a sample every 100 ms), then one per window.
    assert!(frames < N / 3, "{frames} frames for {N} updates: not batched");
}
