//! The AMI client against the simulated Asterisk over real TCP sessions.

use ami::client::{ActionError, AuthMethod};
use ami::{Client, ClientConfig, ClientEvent, DeviceState, Message};
use sim::{Sim, SimConfig};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Receiver;

const WAIT: Duration = Duration::from_secs(10);

fn config(sim: &Sim) -> ClientConfig {
    let mut c = ClientConfig::new(sim.addr().to_string(), "broker", "s3cret");
    c.name = "test".into();
    c.ping_interval = Duration::from_millis(200);
    c.ping_timeout = Duration::from_millis(300);
    c.backoff_min = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(200);
    c.action_timeout = Duration::from_secs(5);
    c
}

/// Waits for the first event that `pred` accepts, skipping the others.
async fn wait_for(rx: &mut Receiver<ClientEvent>, mut pred: impl FnMut(&ClientEvent) -> bool) -> ClientEvent {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(ev)) if pred(&ev) => return ev,
            Ok(Some(_)) => {}
            Ok(None) => panic!("event stream ended"),
            Err(_) => panic!("timed out waiting for an event"),
        }
    }
}

fn is_connected(ev: &ClientEvent) -> bool {
    matches!(ev, ClientEvent::Connected(_))
}

fn device_event<'a>(ev: &'a ClientEvent, device: &str) -> Option<&'a Message> {
    match ev {
        ClientEvent::Event(m) if m.event_name() == Some("DeviceStateChange") && m.get("Device") == Some(device) => {
            Some(m)
        }
        _ => None,
    }
}

#[tokio::test]
async fn md5_and_plain_login_read_core_settings() {
    let sim = Sim::start(SimConfig::fixture_server()).await.unwrap();
    for auth in [AuthMethod::Md5, AuthMethod::Plain] {
        let mut cfg = config(&sim);
        cfg.auth = auth;
        let (client, mut rx) = Client::start(cfg);
        let ClientEvent::Connected(info) = wait_for(&mut rx, is_connected).await else {
            unreachable!()
        };
        assert_eq!(info.asterisk_version.as_deref(), Some("22.10.1"));
        assert_eq!(info.ami_version.as_deref(), Some("11.0.0"));
        assert_eq!(info.banner_version, "11.0.0");
        assert_eq!(info.asterisk_major(), Some(22));
        assert!(info.has_state_events());
        assert_eq!(client.server_info(), Some(info));
        // FullyBooted, sent right after login, is delivered after Connected.
        wait_for(
            &mut rx,
            |e| matches!(e, ClientEvent::Event(m) if m.event_name() == Some("FullyBooted")),
        )
        .await;
    }
}

#[tokio::test]
async fn pipelined_actions_each_get_their_own_answer() {
    let sim = Sim::start(SimConfig::fixture_server()).await.unwrap();
    let (client, mut rx) = Client::start(config(&sim));
    wait_for(&mut rx, is_connected).await;
    let n = 500;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move {
                let state = if i % 2 == 0 { "INUSE" } else { "NOT_INUSE" };
                let r = c
                    .action(
                        Message::action("Setvar")
                            .with("Variable", format!("DEVICE_STATE(Custom:p{i})"))
                            .with("Value", state),
                    )
                    .await?;
                let g = c
                    .action(Message::action("Getvar").with("Variable", format!("DEVICE_STATE(Custom:p{i})")))
                    .await?;
                Ok::<_, ActionError>((r, g, state))
            })
        })
        .collect();
    for t in tasks {
        let (set, get, state) = t.await.unwrap().unwrap();
        assert_eq!(set.get("Message"), Some("Variable Set"));
        assert_eq!(get.get("Value"), Some(state));
    }
    assert_eq!(sim.setvar_log().len(), n);
    assert_eq!(client.in_flight(), 0);
    wait_for(&mut rx, |e| device_event(e, &format!("Custom:p{}", n - 1)).is_some()).await;
}

#[tokio::test]
async fn list_is_collected_while_unrelated_events_interleave() {
    let sim = Sim::start(SimConfig::fixture_server()).await.unwrap();
    let (client, mut rx) = Client::start(config(&sim));
    wait_for(&mut rx, is_connected).await;
    for i in 0..300 {
        sim.set_custom(&format!("Custom:d{i}"), "INUSE");
    }
    // A second writer makes events while the list is being sent.
    let writer = client.clone();
    let noise = tokio::spawn(async move {
        for i in 0..200 {
            writer
                .action(
                    Message::action("Setvar")
                        .with("Variable", format!("DEVICE_STATE(Custom:n{i})"))
                        .with("Value", "BUSY"),
                )
                .await
                .unwrap();
        }
    });
    let list = client.list(Message::action("DeviceStateList")).await.unwrap();
    noise.await.unwrap();
    let listed = list
        .items
        .iter()
        .filter(|m| m.get("Device").is_some_and(|d| d.starts_with("Custom:d")))
        .count();
    assert_eq!(listed, 300);
    assert_eq!(
        list.complete.as_ref().and_then(|c| c.get("ListItems")),
        Some(list.items.len().to_string().as_str())
    );
    assert!(list.items.iter().all(|m| m.action_id() == list.response.action_id()));
    // The interleaved events went to the stream, not into the list.
    wait_for(&mut rx, |e| device_event(e, "Custom:n199").is_some()).await;
    let queues = client.list(Message::action("QueueStatus")).await.unwrap();
    assert_eq!(
        queues
            .items
            .iter()
            .filter(|m| m.event_name() == Some("QueueMember"))
            .count(),
        1
    );
}

#[tokio::test]
async fn refused_actions_and_injection_are_errors() {
    let sim = Sim::start(SimConfig::fixture_server()).await.unwrap();
    let (client, mut rx) = Client::start(config(&sim));
    wait_for(&mut rx, is_connected).await;
    let err = client
        .action(
            Message::action("Setvar")
                .with("Variable", "DEVICE_STATE(SIP/foo)")
                .with("Value", "INUSE"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ActionError::Rejected {
            action: "Setvar".into(),
            message: "Variable not set".into()
        }
    );
    let err = client
        .action(Message::action("Command").with("Command", "core show version"))
        .await
        .unwrap_err();
    assert!(matches!(err, ActionError::Rejected { ref message, .. } if message == "Permission denied"));
    let before = sim.setvar_log().len();
    let err = client
        .action(
            Message::action("Setvar")
                .with("Variable", "DEVICE_STATE(Custom:x)")
                .with("Value", "INUSE\r\n\r\nAction: Originate"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ActionError::Encode(_)), "{err}");
    assert!(err.to_string().contains("Value"));
    // Nothing reached the server; the session is intact.
    client.action(Message::action("Ping")).await.unwrap();
    assert_eq!(sim.setvar_log().len(), before);
}

#[tokio::test]
async fn reconnects_after_dropped_connections_and_restart() {
    let sim = Sim::start(SimConfig::fixture_server()).await.unwrap();
    let (client, mut rx) = Client::start(config(&sim));
    wait_for(&mut rx, is_connected).await;
    assert_eq!(client.metrics().connected.get(), 1);
    sim.drop_connections();
    wait_for(&mut rx, |e| matches!(e, ClientEvent::Disconnected { .. })).await;
    wait_for(&mut rx, is_connected).await;
    assert_eq!(client.metrics().connected.get(), 1);
    assert!(sim.set_custom("Custom:SIP/100", "BUSY"));
    sim.restart(Duration::from_millis(100)).await;
    wait_for(&mut rx, |e| matches!(e, ClientEvent::Disconnected { .. })).await;
    wait_for(&mut rx, is_connected).await;
    // After the restart the state reads as Asterisk restores it: `Custom:SIP/100` is `Custom:100`.
    let list = client.list(Message::action("DeviceStateList")).await.unwrap();
    let customs: Vec<_> = list
        .items
        .iter()
        .filter_map(|m| m.get("Device"))
        .filter(|d| d.starts_with("Custom:"))
        .collect();
    assert_eq!(customs, ["Custom:100"]);
    assert!(client.metrics().connects.get() >= 3);
}

#[tokio::test]
async fn a_mute_server_is_detected_by_keepalive_and_actions_time_out() {
    let sim = Sim::start(SimConfig::fixture_server()).await.unwrap();
    let mut cfg = config(&sim);
    cfg.action_timeout = Duration::from_millis(300);
    let (client, mut rx) = Client::start(cfg);
    wait_for(&mut rx, is_connected).await;
    sim.set_mute(true);
    let err = client.action(Message::action("Ping")).await.unwrap_err();
    assert!(
        matches!(err, ActionError::Timeout { .. } | ActionError::Disconnected),
        "{err}"
    );
    let t = Instant::now();
    let ev = wait_for(&mut rx, |e| matches!(e, ClientEvent::Disconnected { .. })).await;
    assert!(format!("{ev:?}").contains("Ping"), "{ev:?}");
    // ping_interval 200 ms + ping_timeout 300 ms, measured from the mute.
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(!client.is_connected());
    assert_eq!(
        client.action(Message::action("Ping")).await.unwrap_err(),
        ActionError::NotConnected
    );
    sim.set_mute(false);
    wait_for(&mut rx, is_connected).await;
    client.action(Message::action("Ping")).await.unwrap();
}

#[tokio::test]
async fn slow_consumer_loses_counted_events_never_the_session() {
    let sim = Sim::start(SimConfig::fixture_server()).await.unwrap();
    let mut cfg = config(&sim);
    cfg.event_buffer = 16;
    let (client, mut rx) = Client::start(cfg);
    wait_for(&mut rx, is_connected).await;
    // Nobody reads the stream while 2000 events arrive.
    for i in 0..1000 {
        sim.set_custom(&format!("Custom:s{i}"), "INUSE");
        sim.set_custom(&format!("Custom:s{i}"), "NOT_INUSE");
    }
    // The session is alive (the reader never blocked, so the server did not drop us).
    client.action(Message::action("Ping")).await.unwrap();
    assert_eq!(sim.sessions(), 1);
    let dropped = client.metrics().events_dropped.get();
    assert!(dropped > 1000, "dropped {dropped}");
    let ev = wait_for(&mut rx, |e| matches!(e, ClientEvent::Lagged { .. })).await;
    let ClientEvent::Lagged { dropped: told } = ev else {
        unreachable!()
    };
    assert!(told > 0 && told <= dropped);
}

/// Collects log output so a test can read what an operator would see.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn refused_login_is_retried_slowly_and_never_logs_the_secret() {
    let logs = LogBuf::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sim = Sim::start(SimConfig::fixture_server().fast()).await.unwrap();
    for auth in [AuthMethod::Plain, AuthMethod::Md5] {
        let mut cfg = config(&sim);
        cfg.auth = auth;
        cfg.secret = "wrong-Pa55word".into();
        cfg.auth_retry = Duration::from_secs(30);
        let (client, mut rx) = Client::start(cfg);
        let metrics = client.metrics();
        let deadline = Instant::now() + WAIT;
        while metrics.login_failures.get() == 0 {
            assert!(Instant::now() < deadline, "no login attempt");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // One attempt, then a 30 s pause: no hot loop.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(metrics.login_failures.get(), 1);
        assert!(rx.try_recv().is_err(), "no Connected");
        assert!(!client.is_connected());
    }
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("AMI login refused"), "{text}");
    assert!(!text.contains("wrong-Pa55word"), "secret in logs: {text}");
}

/// A broken server: an over-long line and a header without ':' are refused; the messages
/// after them still arrive.
#[tokio::test]
async fn malformed_messages_from_the_server_are_skipped_not_fatal() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"Asterisk Call Manager/11.0.0\r\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut seen = String::new();
        // Answer Login and CoreSettings by their ActionIDs.
        for _ in 0..2 {
            while !seen.contains("\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            let (msg, rest) = seen.split_once("\r\n\r\n").unwrap();
            let id = msg
                .lines()
                .find_map(|l| l.strip_prefix("ActionID: "))
                .unwrap()
                .to_string();
            seen = rest.to_string();
            s.write_all(format!("Response: Success\r\nActionID: {id}\r\nAsteriskVersion: 22.10.1\r\n\r\n").as_bytes())
                .await
                .unwrap();
        }
        let long = "x".repeat(5000);
        s.write_all(format!("Event: Bad\r\nData: {long}\r\n\r\nEvent: Bad2\r\nno colon here\r\n\r\nEvent: DeviceStateChange\r\nDevice: Custom:ok\r\nState: INUSE\r\n\r\n").as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut cfg = ClientConfig::new(addr.to_string(), "u", "p");
    cfg.auth = AuthMethod::Plain;
    let (client, mut rx) = Client::start(cfg);
    wait_for(&mut rx, is_connected).await;
    let ev = wait_for(&mut rx, |e| matches!(e, ClientEvent::Event(_))).await;
    assert!(device_event(&ev, "Custom:ok").is_some(), "{ev:?}");
    assert_eq!(client.metrics().frames_rejected.get(), 2);
    assert!(client.is_connected());
}

#[tokio::test]
async fn events_respect_the_users_read_classes() {
    let mut cfg = SimConfig::fixture_server();
    cfg.users.push(sim::User {
        username: "agentonly".into(),
        secret: "x".into(),
        read: "agent".into(),
        write: "call".into(),
    });
    let sim = Sim::start(cfg).await.unwrap();
    let mut c = config(&sim);
    c.username = "agentonly".into();
    c.secret = "x".into();
    let (client, mut rx) = Client::start(c);
    wait_for(&mut rx, is_connected).await;
    // CoreSettings needs system or reporting: refused, and the login still succeeds.
    assert_eq!(client.server_info().unwrap().asterisk_version, None);
    sim.set_device("SIP/200", DeviceState::Inuse);
    sim.set_custom("Custom:agent100", "NOT_INUSE");
    let ev = wait_for(&mut rx, |e| matches!(e, ClientEvent::Event(_))).await;
    let ClientEvent::Event(m) = ev else { unreachable!() };
    assert_eq!(
        m.event_name(),
        Some("QueueMemberStatus"),
        "call-class events must not reach an agent-only user"
    );
}
