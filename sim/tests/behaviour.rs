//! The simulator's scripted behaviours: what tests of hintbus rely on it to do.

use ami::codec::{AmiCodec, Frame};
use ami::state::ExtensionStatus;
use ami::{DeviceState, Message};
use futures::{SinkExt, StreamExt};
use sim::{HintConfig, QueueConfig, QueueError, Sim, SimConfig};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

const WAIT: Duration = Duration::from_secs(5);
type Conn = Framed<TcpStream, AmiCodec>;

async fn login(sim: &Sim, events: &str) -> Conn {
    let mut c = Framed::new(TcpStream::connect(sim.addr()).await.unwrap(), AmiCodec::client());
    assert!(matches!(c.next().await, Some(Ok(Ok(Frame::Banner(_))))));
    let user = sim.with_world(|w| w.config.users[0].clone());
    c.send(
        &Message::action("Login")
            .with("ActionID", "l")
            .with("Username", user.username)
            .with("Secret", user.secret)
            .with("Events", events),
    )
    .await
    .unwrap();
    loop {
        let m = next(&mut c).await.expect("login answer");
        if m.action_id() == Some("l") {
            assert!(m.is_success());
            return c;
        }
    }
}

async fn next(c: &mut Conn) -> Option<Message> {
    match tokio::time::timeout(WAIT, c.next()).await.expect("answer within 5 s") {
        Some(Ok(Ok(Frame::Message(m)))) => Some(m),
        None | Some(Err(_)) => None,
        other => panic!("{other:?}"),
    }
}

async fn answer(c: &mut Conn, action: Message) -> Message {
    c.send(&action.with("ActionID", "q")).await.unwrap();
    loop {
        let m = next(c).await.expect("answer");
        if m.action_id() == Some("q") && m.response().is_some() {
            return m;
        }
    }
}

#[tokio::test]
async fn actions_before_login_are_denied_and_idle_sessions_time_out() {
    let mut cfg = SimConfig::fixture_server();
    cfg.auth_timeout = Duration::from_millis(300);
    let sim = Sim::start(cfg).await.unwrap();
    let mut c = Framed::new(TcpStream::connect(sim.addr()).await.unwrap(), AmiCodec::client());
    assert!(matches!(c.next().await, Some(Ok(Ok(Frame::Banner(_))))));
    let m = answer(
        &mut c,
        Message::action("Setvar")
            .with("Variable", "DEVICE_STATE(Custom:1)")
            .with("Value", "INUSE"),
    )
    .await;
    assert_eq!(m.get("Message"), Some("Permission denied"));
    assert!(sim.setvar_log().is_empty());
    // authtimeout: the session is closed without a word.
    assert!(next(&mut c).await.is_none());
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_like_writetimeout() {
    let sim = Sim::start(SimConfig::fixture_server()).await.unwrap();
    let _stalled = login(&sim, "on").await;
    let mut live = login(&sim, "on").await;
    assert_eq!(sim.sessions(), 2);
    let big = "m".repeat(200);
    let mut i = 0;
    // Flood until the stalled session's buffers are full and Asterisk gives up on it.
    let dropped = tokio::time::timeout(Duration::from_secs(20), async {
        while sim.sessions() == 2 {
            for _ in 0..500 {
                sim.set_presence(&format!("CustomPresence:f{i}"), &format!("away,,{big}"));
                i += 1;
            }
            while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1), live.next()).await {}
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(dropped.is_ok(), "stalled session never dropped");
    assert_eq!(sim.sessions(), 1, "only the stalled one is dropped");
}

#[tokio::test]
async fn a_list_longer_than_the_session_queue_arrives_whole() {
    // 20,000 devices: more than a session buffers (8,192 messages). Asterisk's session thread
    // waits for its socket; so does the simulator, instead of dropping a client that reads.
    let mut cfg = SimConfig::pbx("big", &[]);
    cfg.devices = (0..20_000)
        .map(|i| (format!("SIP/{i}"), DeviceState::NotInuse))
        .collect();
    let sim = Sim::start(cfg).await.unwrap();
    let mut c = login(&sim, "off").await;
    c.send(&Message::action("DeviceStateList").with("ActionID", "d"))
        .await
        .unwrap();
    let mut items = 0;
    loop {
        let m = next(&mut c).await.expect("the whole list");
        if m.event_name() == Some("DeviceStateChange") {
            items += 1;
        } else if m.event_name() == Some("DeviceStateListComplete") {
            assert_eq!(m.get("ListItems"), Some("20000"));
            break;
        }
    }
    assert_eq!((items, sim.sessions()), (20_000, 1));
}

#[tokio::test]
async fn hints_aggregate_devices_and_mirrors() {
    let sim = Sim::start(SimConfig::pbx("a", &["100"])).await.unwrap();
    let mut c = login(&sim, "call").await;
    assert_eq!(sim.hint_status("100", "default"), Some(ExtensionStatus::IDLE));
    // The mirror alone lights the lamp.
    let m = answer(
        &mut c,
        Message::action("Setvar")
            .with("Variable", "DEVICE_STATE(Custom:SIP/100)")
            .with("Value", "RINGING"),
    )
    .await;
    assert!(m.is_success());
    assert_eq!(sim.hint_status("100", "default"), Some(ExtensionStatus::RINGING));
    // Ringing plus the phone in use: InUse&Ringing.
    sim.set_device("SIP/100", DeviceState::Inuse);
    assert_eq!(sim.hint_status("100", "default"), Some(ExtensionStatus(9)));
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let m = next(&mut c).await.unwrap();
        seen.push((
            m.event_name().unwrap_or("").to_string(),
            m.get("Status").or(m.get("State")).unwrap_or("").to_string(),
        ));
    }
    assert!(seen.contains(&("ExtensionStatus".into(), "9".into())), "{seen:?}");
    assert!(seen.contains(&("DeviceStateChange".into(), "INUSE".into())), "{seen:?}");
}

#[tokio::test]
async fn restart_keeps_astdb_and_loses_slash_names() {
    let sim = Sim::start(SimConfig::pbx("a", &["100"])).await.unwrap();
    sim.set_custom("Custom:SIP/100", "BUSY");
    sim.set_presence("CustomPresence:SIP/100", "dnd,,meeting");
    sim.set_presence("CustomPresence:100", "away,lunch,back soon");
    sim.set_device("SIP/100", DeviceState::Inuse);
    sim.restart(Duration::ZERO).await;
    let mut c = login(&sim, "off").await;
    // The phone re-registered idle; the astdb entry still answers the provider...
    let g = answer(
        &mut c,
        Message::action("Getvar").with("Variable", "DEVICE_STATE(Custom:SIP/100)"),
    )
    .await;
    assert_eq!(g.get("Value"), Some("BUSY"));
    assert_eq!(sim.device_state("SIP/100"), DeviceState::NotInuse);
    // ...but the cache, which DeviceStateList dumps, has it under the cut name.
    let devices = sim.with_world(|w| w.devices.clone());
    assert_eq!(devices.get("Custom:100"), Some(&DeviceState::Busy));
    assert!(!devices.contains_key("Custom:SIP/100"));
    assert!(sim.presence("CustomPresence:100").is_some());
    assert!(sim.with_world(|w| !w.presence.contains_key("CustomPresence:SIP/100")));
}

#[tokio::test]
async fn long_device_names_are_cut_at_79_characters_on_the_wire() {
    let sim = Sim::start(SimConfig::fixture_server()).await.unwrap();
    let mut c = login(&sim, "call").await;
    let name = format!("Custom:{}", "n".repeat(90));
    let r = answer(
        &mut c,
        Message::action("Setvar")
            .with("Variable", format!("DEVICE_STATE({name})"))
            .with("Value", "INUSE"),
    )
    .await;
    assert!(r.is_success());
    let ev = next(&mut c).await.unwrap();
    assert_eq!(ev.get("Device").unwrap().len(), 79);
}

/// The bug the queue guard fixes, reproduced: with `ringinuse=no` a member whose phone reads
/// NOT_INUSE mid-call (chan_sip re-registration) gets a second call, unless its
/// state_interface hint also holds a `Custom:` state that is INUSE.
#[tokio::test]
async fn queue_rings_a_busy_member_again_unless_guarded() {
    let mut cfg = SimConfig::pbx("a", &["100"]);
    cfg.hints.push(HintConfig {
        exten: "q100".into(),
        context: "default".into(),
        hint: "SIP/100&Custom:q100".into(),
    });
    cfg.queues.push(QueueConfig::one_member(
        "sales",
        "SIP/100",
        "Alice",
        "hint:q100@default",
    ));
    let sim = Sim::start(cfg).await.unwrap();
    let call = sim.queue_call("sales", "5551000").unwrap();
    assert_eq!(sim.device_state("SIP/100"), DeviceState::Inuse);
    assert!(matches!(
        sim.queue_call("sales", "5551001"),
        Err(QueueError::NoMemberAvailable { .. })
    ));
    // sip reload + re-register: the phone reads idle mid-call, and the queue rings it again.
    sim.set_device("SIP/100", DeviceState::NotInuse);
    let second = sim.queue_call("sales", "5551002").unwrap();
    sim.complete_call(second, "caller").unwrap();
    // Guarded: Custom:q100 INUSE keeps the member busy through the reset.
    sim.set_custom("Custom:q100", "INUSE");
    sim.set_device("SIP/100", DeviceState::NotInuse);
    assert!(matches!(
        sim.queue_call("sales", "5551003"),
        Err(QueueError::NoMemberAvailable { .. })
    ));
    sim.set_custom("Custom:q100", "NOT_INUSE");
    sim.complete_call(call, "agent").unwrap();
    assert!(sim.queue_call("sales", "5551004").is_ok());
}

#[tokio::test]
async fn dropped_connections_and_mute() {
    let sim = Sim::start(SimConfig::fixture_server()).await.unwrap();
    let mut c = login(&sim, "on").await;
    sim.drop_connections();
    while next(&mut c).await.is_some() {}
    assert_eq!(sim.sessions(), 0);
    sim.set_mute(true);
    let mut mute = Framed::new(TcpStream::connect(sim.addr()).await.unwrap(), AmiCodec::client());
    assert!(
        tokio::time::timeout(Duration::from_millis(300), mute.next())
            .await
            .is_err(),
        "a mute server sends no banner"
    );
    sim.set_mute(false);
    assert!(matches!(
        tokio::time::timeout(WAIT, mute.next()).await,
        Ok(Some(Ok(Ok(Frame::Banner(_)))))
    ));
    assert!(sim.wait_until(WAIT, |w| w.subscribers.is_empty()).await);
}

/// QueuePause as app_queue answers it, and the QueueMemberPause it raises: the member's
/// fields in queue_member_blob_create's order, the reason kept while paused, and sent with
/// an unpause for that event only.
#[tokio::test]
async fn queue_pause_raises_queue_member_pause() {
    let mut cfg = SimConfig::pbx("a", &["100", "101"]);
    for q in ["sales", "support"] {
        cfg.queues.push(QueueConfig::one_member(q, "SIP/100", "Alice", ""));
    }
    let sim = Sim::start(cfg).await.unwrap();
    let mut c = login(&sim, "agent").await;

    let missing = answer(&mut c, Message::action("QueuePause").with("Interface", "SIP/100")).await;
    assert_eq!(
        missing.get("Message"),
        Some("Need 'Interface' and 'Paused' parameters.")
    );
    let unknown = answer(
        &mut c,
        Message::action("QueuePause")
            .with("Interface", "SIP/101")
            .with("Paused", "true"),
    )
    .await;
    assert_eq!(unknown.get("Message"), Some("Interface not found"));

    let ok = answer(
        &mut c,
        Message::action("QueuePause")
            .with("Queue", "support")
            .with("Interface", "sip/100")
            .with("Paused", "true")
            .with("Reason", "lunch"),
    )
    .await;
    assert!(ok.is_success());
    assert_eq!(ok.get("Message"), Some("Interface paused successfully"));
    let ev = next(&mut c).await.unwrap();
    let names: Vec<&str> = ev.headers().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "Event",
            "Privilege",
            "Queue",
            "MemberName",
            "Interface",
            "StateInterface",
            "Membership",
            "Penalty",
            "CallsTaken",
            "LastCall",
            "LastPause",
            "LoginTime",
            "InCall",
            "Status",
            "Paused",
            "PausedReason",
            "Ringinuse",
            "Wrapuptime"
        ]
    );
    assert_eq!(ev.get("Event"), Some("QueueMemberPause"));
    assert_eq!(ev.get("Privilege"), Some("agent,all"));
    assert_eq!(
        [ev.get("Queue"), ev.get("Interface"), ev.get("MemberName")],
        [Some("support"), Some("SIP/100"), Some("Alice")]
    );
    assert_eq!([ev.get("Paused"), ev.get("PausedReason")], [Some("1"), Some("lunch")]);
    assert_ne!(ev.get("LastPause"), Some("0"));
    assert_eq!(sim.device_state("Queue:support_pause_SIP/100"), DeviceState::Inuse);
    assert_eq!(sim.device_state("Queue:sales_pause_SIP/100"), DeviceState::NotInuse);
    assert_eq!(sim.device_state("Queue:support_avail"), DeviceState::Inuse);

    // Unpaused with a reason: in this event, not kept. Without a queue: every queue of the member.
    sim.pause_member("", "SIP/100", false, "back").unwrap();
    for q in ["sales", "support"] {
        let ev = next(&mut c).await.unwrap();
        assert_eq!(ev.get("Event"), Some("QueueMemberPause"));
        assert_eq!(
            [ev.get("Queue"), ev.get("Paused"), ev.get("PausedReason")],
            [Some(q), Some("0"), Some("back")]
        );
    }
    assert_eq!(sim.device_state("Queue:support_avail"), DeviceState::NotInuse);
    let reasons = sim.with_world(|w| {
        w.queues
            .iter()
            .map(|q| q.members[0].reason_paused.clone())
            .collect::<Vec<_>>()
    });
    assert_eq!(reasons, ["", ""]);
}
