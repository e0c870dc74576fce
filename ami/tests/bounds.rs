//! Memory bounded in bytes against a misbehaving Asterisk: a TCP server that sends messages
//! which are each within Asterisk's own limits (lines under 1024 bytes, 120 headers) but many
//! and large. What the client holds is measured in bytes it reports, not by RSS.

use ami::client::{ActionError, AuthMethod};
use ami::{AmiCodec, Client, ClientConfig, ClientEvent, Frame, Message};
use futures::StreamExt;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc::Receiver;
use tokio_util::codec::FramedRead;

const WAIT: Duration = Duration::from_secs(15);
const MIB: usize = 1 << 20;

/// One message of 120 headers of about 1,000 bytes each: every line within Asterisk's limits.
fn big(event: &str, action_id: Option<&str>, n: usize) -> Vec<u8> {
    let mut out = format!("Event: {event}\r\n");
    if let Some(id) = action_id {
        out.push_str(&format!("ActionID: {id}\r\n"));
    }
    out.push_str(&format!("Device: Custom:big{n}\r\nState: INUSE\r\n"));
    for h in 0..116 {
        out.push_str(&format!("X-Pad{h:03}: {}\r\n", "v".repeat(990)));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn reply(id: &str, extra: &str) -> Vec<u8> {
    format!("Response: Success\r\nActionID: {id}\r\n{extra}\r\n").into_bytes()
}

/// What the fake Asterisk writes when it reads an action.
type Script = Box<dyn FnMut(&Message) -> Vec<u8> + Send>;

/// A TCP server playing Asterisk for one client: banner, then each action it reads is answered
/// with what `script` returns, written whole before the next action is read.
async fn fake_asterisk(mut script: Script) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let (r, mut w) = s.into_split();
        w.write_all(b"Asterisk Call Manager/11.0.0\r\n").await.unwrap();
        let mut actions = FramedRead::new(r, AmiCodec::server());
        while let Some(Ok(Ok(Frame::Message(m)))) = actions.next().await {
            if w.write_all(&script(&m)).await.is_err() {
                return;
            }
        }
    });
    addr
}

/// Login and CoreSettings as Asterisk 22 answers them; `None` for any other action.
fn login(m: &Message) -> Option<Vec<u8>> {
    let id = m.action_id().unwrap_or("");
    match m.action_name()? {
        "Login" => Some(reply(id, "Message: Authentication accepted\r\n")),
        "CoreSettings" => Some(reply(id, "AMIversion: 11.0.0\r\nAsteriskVersion: 22.10.1\r\n")),
        "Ping" => Some(reply(id, "Ping: Pong\r\n")),
        _ => None,
    }
}

fn config(addr: &str) -> ClientConfig {
    let mut c = ClientConfig::new(addr, "u", "p");
    c.auth = AuthMethod::Plain;
    c.action_timeout = WAIT;
    // No keepalive of its own in the middle of the scripts.
    c.ping_interval = Duration::from_secs(600);
    c
}

async fn next(rx: &mut Receiver<ClientEvent>) -> ClientEvent {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an event in time")
        .expect("event stream open")
}

async fn connected(rx: &mut Receiver<ClientEvent>) {
    let deadline = Instant::now() + WAIT;
    while !matches!(next(rx).await, ClientEvent::Connected(_)) {
        assert!(Instant::now() < deadline, "no Connected");
    }
}

/// A DeviceStateList that never completes (8,000 items of 120 headers were a gigabyte) is
/// abandoned when its items pass `max_list_bytes`, its later items are not handed out as
/// events, and the session goes on.
#[tokio::test]
async fn a_list_that_never_completes_is_abandoned_at_its_byte_bound() {
    let bound = 8 * MIB;
    let addr = fake_asterisk(Box::new(move |m| {
        if let Some(r) = login(m) {
            return r;
        }
        // DeviceStateList: four times the bound, never `EventList: Complete`, then a marker.
        let id = m.action_id().unwrap_or("");
        let mut out = reply(id, "EventList: start\r\nMessage: Device State Changes will follow\r\n");
        let item = big("DeviceStateChange", Some(id), 0);
        for _ in 0..(4 * bound / item.len()) {
            out.extend_from_slice(&item);
        }
        out.extend_from_slice(b"Event: Marker\r\n\r\n");
        out
    }))
    .await;
    let mut cfg = config(&addr);
    cfg.max_list_bytes = bound;
    let (client, mut rx) = Client::start(cfg);
    connected(&mut rx).await;

    let err = client.list(Message::action("DeviceStateList")).await.unwrap_err();
    let ActionError::ListTooLarge {
        action,
        limit,
        items,
        held,
    } = &err
    else {
        panic!("expected ListTooLarge, got {err}");
    };
    assert_eq!((action.as_str(), *limit), ("DeviceStateList", bound));
    // Held when abandoned: past the bound by less than one item (about 130 KB in memory).
    assert!(*held > bound && *held < bound + 256 * 1024, "held {held}");
    assert!(*items < 100, "{items} items");
    assert!(err.to_string().contains("max_list_bytes"), "{err}");

    // The rest of the list was discarded, not queued as events: the marker comes first.
    match next(&mut rx).await {
        ClientEvent::Event(m) if m.event_name() == Some("Marker") => {}
        other => panic!("before the marker: {other:?}"),
    }
    client.action(Message::action("Ping")).await.unwrap();
    assert!(client.is_connected());
}

/// A consumer that does not read while 200 events of 120 KB arrive (24 MB, far under the
/// count bound): the queue holds at most `event_buffer_bytes`, the rest is dropped and counted,
/// and the consumer is told.
#[tokio::test]
async fn the_event_queue_is_bounded_in_bytes() {
    let n = 200;
    let addr = fake_asterisk(Box::new(move |m| {
        if m.get("X-Flood").is_some() {
            let mut out = Vec::new();
            for i in 0..n {
                out.extend_from_slice(&big("DeviceStateChange", None, i));
            }
            out.extend_from_slice(&reply(m.action_id().unwrap_or(""), ""));
            return out;
        }
        login(m).unwrap_or_default()
    }))
    .await;
    let bound = 4 * MIB;
    let mut cfg = config(&addr);
    cfg.event_buffer_bytes = bound;
    let (client, mut rx) = Client::start(cfg);
    connected(&mut rx).await;
    // Answered after the flood on the same stream: once it returns, the reader has seen it all.
    client
        .action(Message::action("Ping").with("X-Flood", "yes"))
        .await
        .unwrap();
    let dropped = client.metrics().events_dropped.get();
    assert!(dropped > 0, "nothing dropped: the queue held all {n} events");

    let (mut bytes, mut got) = (0usize, 0u64);
    let told = loop {
        match next(&mut rx).await {
            ClientEvent::Event(m) => {
                bytes += m.footprint();
                got += 1;
            }
            ClientEvent::Lagged { dropped } => break dropped,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(bytes <= bound, "the queue held {bytes} bytes, over {bound}");
    assert_eq!(got + told, n as u64, "every event delivered or counted");
    assert_eq!(told, dropped);
}

/// 100 events of 120 KB between the Login answer and the CoreSettings answer: what is kept
/// for delivery after Connected is bounded by `login_backlog_bytes`, the rest is counted.
#[tokio::test]
async fn events_during_the_login_are_bounded_in_bytes() {
    let n = 100;
    let addr = fake_asterisk(Box::new(move |m| {
        let mut out = Vec::new();
        if m.action_name() == Some("CoreSettings") {
            for i in 0..n {
                out.extend_from_slice(&big("DeviceStateChange", None, i));
            }
        }
        out.extend_from_slice(&login(m).unwrap_or_default());
        out
    }))
    .await;
    let bound = MIB;
    let mut cfg = config(&addr);
    cfg.login_backlog_bytes = bound;
    let (client, mut rx) = Client::start(cfg);
    assert!(matches!(next(&mut rx).await, ClientEvent::Connected(_)));
    let (mut bytes, mut got) = (0usize, 0u64);
    // The backlog is delivered right after Connected, before anything read later.
    client.action(Message::action("Ping")).await.unwrap();
    while let Ok(ev) = rx.try_recv() {
        let ClientEvent::Event(m) = ev else {
            panic!("unexpected {ev:?}")
        };
        bytes += m.footprint();
        got += 1;
    }
    assert!(
        got > 0 && bytes <= bound,
        "{got} events, {bytes} bytes kept, bound {bound}"
    );
    let dropped = client.metrics().events_dropped.get();
    assert_eq!(got + dropped, n as u64, "every event delivered or counted");
}
