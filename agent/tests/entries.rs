//! Ordinary and hostile entries, as a receiving server sees them: one bad entry is refused
//! alone, text AMI would alter is never written in a loop, a value something else keeps
//! changing back is left alone after a few tries, and a remote name never lands on one of the
//! server's own states.

use agent::{spawn, AgentConfig, AgentHandle};
use ami::{ClientConfig, DeviceState, PresenceState};
use broker::{Broker, BrokerConfig};
use proto::transport::{Dealer, SocketOptions};
use proto::{Entry, ErrorCode, Msg};
use sim::{Sim, SimConfig};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn broker() -> Broker {
    Broker::start(BrokerConfig {
        listen: "tcp://127.0.0.1:*".into(),
        feed: None,
        heartbeat: Duration::from_millis(200),
        lost_after: Duration::from_millis(2000),
        ..BrokerConfig::default()
    })
    .unwrap()
}

fn agent_for(sim: &Sim, name: &str, broker: &str) -> AgentHandle {
    let mut ami = ClientConfig::new(sim.addr().to_string(), "hintbus", "hintbus");
    ami.name = name.into();
    let mut cfg = AgentConfig::new(name, ami, broker);
    cfg.heartbeat = Duration::from_millis(100);
    spawn(cfg).unwrap()
}

/// A peer speaking the protocol itself as server `a` (plain text, loopback).
async fn peer(b: &Broker) -> Dealer {
    let d = Dealer::connect(b.endpoint(), &SocketOptions::default(), |_| Ok(())).unwrap();
    d.send(
        &Msg::Hello {
            server: "a".into(),
            instance: 1,
            software: "test peer".into(),
        }
        .encode(),
    );
    let welcome = tokio::time::timeout(WAIT, d.recv()).await.expect("no welcome");
    assert!(matches!(Msg::decode(&welcome), Ok(Msg::Welcome { .. })));
    d
}

/// The next error the broker sends the peer (skipping updates and heartbeats).
async fn next_error(d: &Dealer) -> (ErrorCode, String) {
    loop {
        let frame = tokio::time::timeout(WAIT, d.recv())
            .await
            .expect("no error from the broker");
        match Msg::decode(&frame) {
            Ok(Msg::Error { code, message }) => return (code, message),
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

/// Waits until the broker's table holds an entry for which `pred` holds (what a server
/// published); false when it never does.
async fn published(b: &Broker, pred: impl Fn(&Entry) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if b.table().iter().any(&pred) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn writes_of(sim: &Sim, needle: &str) -> usize {
    sim.setvar_log().iter().filter(|(v, _)| v.contains(needle)).count()
}

/// Sends a device change of `a` and waits until b shows it: what a sent before has crossed.
async fn sentinel(d: &Dealer, sim: &Sim, n: u32) {
    let name = format!("SIP/sentinel{n}");
    d.send(
        &Msg::Update {
            entries: vec![Entry::device("a", &name, DeviceState::Ringing)],
        }
        .encode(),
    );
    assert!(
        sim.wait_device(&format!("Custom:{name}"), DeviceState::Ringing, WAIT)
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_entry_is_refused_alone_and_unknown_is_carried() {
    let b = broker();
    let sb = Sim::start(SimConfig::pbx("b", &["200"])).await.unwrap();
    let _agent = agent_for(&sb, "b", b.endpoint());
    let d = peer(&b).await;
    let mut bogus = Entry::device("a", "SIP/101", DeviceState::Inuse);
    bogus.state = Some("BOGUS".into());
    d.send(
        &Msg::Update {
            entries: vec![
                Entry::device("a", "PJSIP/gone", DeviceState::Unknown),
                Entry::device("a", "SIP/100", DeviceState::Busy),
                Entry::device("a", "SIP/1\r\nAction: Originate", DeviceState::Inuse),
                bogus,
                Entry::device("c", "SIP/300", DeviceState::Inuse),
            ],
        }
        .encode(),
    );
    let (code, message) = next_error(&d).await;
    assert_eq!(code, ErrorCode::WrongOrigin, "{message}");
    assert!(message.contains("3 entries refused"), "{message}");
    assert!(message.contains("BOGUS") && message.contains("SIP/101"), "{message}");
    // The good ones are applied: BUSY arrives, UNKNOWN is mirrored as INVALID.
    assert!(sb.wait_device("Custom:SIP/100", DeviceState::Busy, WAIT).await);
    assert!(sb.wait_device("Custom:PJSIP/gone", DeviceState::Invalid, WAIT).await);
    assert!(sb
        .setvar_log()
        .iter()
        .all(|(v, _)| !v.contains("Originate") && !v.contains("300")));
    // A sync holding the same is not refused whole either.
    d.send(
        &Msg::Sync {
            sync_id: 1,
            entries: vec![
                Entry::device("a", "SIP/100", DeviceState::Ringing),
                Entry::presence("a", "CustomPresence:100", PresenceState::Away, "", &"x".repeat(300)),
            ],
            last: true,
        }
        .encode(),
    );
    assert!(sb.wait_device("Custom:SIP/100", DeviceState::Ringing, WAIT).await);
    let refused: u64 = ["bad_entry", "wrong_origin"]
        .iter()
        .map(|r| {
            b.metrics()
                .refused_entries
                .get_or_create(&broker::metrics::reason(r))
                .get()
        })
        .sum();
    assert!(refused >= 3, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_that_ami_alters_is_written_once_not_in_a_loop() {
    let b = broker();
    let sb = Sim::start(SimConfig::pbx("b", &["200"])).await.unwrap();
    let _agent = agent_for(&sb, "b", b.endpoint());
    let d = peer(&b).await;
    // Valid in the protocol; an AMI reader skips the blank after `Message:`, and the quote
    // comes back C-escaped.
    d.send(
        &Msg::Update {
            entries: vec![Entry::presence(
                "a",
                "CustomPresence:100",
                PresenceState::Away,
                "",
                "  back at 3, \"maybe\"",
            )],
        }
        .encode(),
    );
    assert!(
        sb.wait_until(WAIT, |w| w
            .presence_of("CustomPresence:100")
            .is_some_and(|p| p.message == "back at 3, \"maybe\""))
            .await
    );
    sentinel(&d, &sb, 1).await;
    sentinel(&d, &sb, 2).await;
    assert_eq!(
        writes_of(&sb, "PRESENCE_STATE(CustomPresence:100)"),
        1,
        "{:?}",
        sb.setvar_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_something_else_keeps_changing_is_left_alone() {
    let b = broker();
    let sb = Sim::start(SimConfig::pbx("b", &["200"])).await.unwrap();
    let agent = agent_for(&sb, "b", b.endpoint());
    let d = peer(&b).await;
    // Another tool on b: whenever Custom:SIP/7 is BUSY, it sets it back to NOT_INUSE.
    let fighter = {
        let sb = sb.clone();
        tokio::spawn(async move {
            loop {
                sb.changed(Duration::from_secs(1)).await;
                if sb.device_state("Custom:SIP/7") == DeviceState::Busy {
                    sb.set_custom("Custom:SIP/7", "NOT_INUSE");
                }
            }
        })
    };
    d.send(
        &Msg::Update {
            entries: vec![Entry::device("a", "SIP/7", DeviceState::Busy)],
        }
        .encode(),
    );
    let gave_up = async {
        while agent.metrics.write_loops.get() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert!(
        tokio::time::timeout(WAIT, gave_up).await.is_ok(),
        "{:?}",
        sb.setvar_log()
    );
    // Later changes cross, and no more writes of the contested mirror came meanwhile.
    sentinel(&d, &sb, 1).await;
    let n = writes_of(&sb, "DEVICE_STATE(Custom:SIP/7)");
    assert!(
        n <= 1 + agent::overrides::MAX_RETRIES as usize,
        "{n} writes: {:?}",
        sb.setvar_log()
    );
    sentinel(&d, &sb, 2).await;
    assert_eq!(writes_of(&sb, "DEVICE_STATE(Custom:SIP/7)"), n, "still writing");
    fighter.abort();
    // A new value from the origin is written again.
    d.send(
        &Msg::Update {
            entries: vec![Entry::device("a", "SIP/7", DeviceState::Ringing)],
        }
        .encode(),
    );
    assert!(sb.wait_device("Custom:SIP/7", DeviceState::Ringing, WAIT).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_name_never_lands_on_the_servers_own_state() {
    let b = broker();
    let sb = Sim::start(SimConfig::pbx("b", &["200"])).await.unwrap();
    // b's own DND lamp, set before its agent starts; hintbus ran on b before (its memory is kept).
    assert!(sb.set_custom("Custom:DND200", "BUSY"));
    sb.with_world(|w| {
        w.astdb_other.insert(
            format!("/{}/{}", agent::memory::FAMILY, agent::memory::MARKER),
            "b".into(),
        );
    });
    let agent = agent_for(&sb, "b", b.endpoint());
    let d = peer(&b).await;
    // a publishes a device named DND200: with Custom:{device} it lands on b's lamp.
    d.send(
        &Msg::Update {
            entries: vec![Entry::device("a", "DND200", DeviceState::NotInuse)],
        }
        .encode(),
    );
    sentinel(&d, &sb, 1).await;
    assert_eq!(
        sb.device_state("Custom:DND200"),
        DeviceState::Busy,
        "b's lamp was overwritten"
    );
    assert_eq!(writes_of(&sb, "DND200"), 0);
    // b's lamp is still b's own: a change of it is published.
    sb.set_custom("Custom:DND200", "NOT_INUSE");
    assert!(
        published(&b, |e| e.origin == "b"
            && e.name == "Custom:DND200"
            && e.state.as_deref() == Some("NOT_INUSE"))
        .await,
        "{:?}",
        b.table()
    );
    assert!(agent.metrics.collisions.get() >= 1);
}

/// What an older run left in astdb (mirrors of mirrors of mirrors, restored by Asterisk at
/// start-up: one as it was, one with a `/` under a shorter name) is never published, and is
/// deleted from astdb so that no restart brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_of_mirrors_left_in_astdb_are_cleaned_and_never_published() {
    let b = broker();
    let sb = Sim::start(SimConfig::pbx("b", &["200"])).await.unwrap();
    sb.with_world(|w| {
        w.astdb_devstate.insert("Custom:Custom:agent100".into(), "INUSE".into());
        w.astdb_devstate.insert("Custom:Custom:SIP/100".into(), "BUSY".into());
    });
    sb.restart(Duration::from_millis(10)).await;
    assert!(sb.with_world(
        |w| w.devices.contains_key("Custom:Custom:Custom:agent100") && w.devices.contains_key("Custom:100")
    ));
    let agent = agent_for(&sb, "b", b.endpoint());
    assert!(
        sb.wait_until(WAIT, |w| w.astdb_devstate.is_empty()).await,
        "not deleted from astdb: {:?}",
        sb.with_world(|w| w.astdb_devstate.clone())
    );
    // b's own change is published after its sync: the stale name was not in it.
    sb.set_device("SIP/200", DeviceState::Ringing);
    assert!(published(&b, |e| e.name == "SIP/200" && e.state.as_deref() == Some("RINGING")).await);
    assert!(
        b.table()
            .iter()
            .all(|e| !e.name.contains("Custom:Custom:") && e.name != "Custom:100"),
        "{:?}",
        b.table()
    );
    assert_eq!(agent.metrics.stale_cleaned.get(), 2);
}

/// The first run on a server that zmq-ami-broker (or an older hintbus) fed: its mirrors are in
/// astdb and in the cache, and nothing says they are mirrors. They are adopted from the broker's
/// view, not refused as the server's own, remembered, and the memory marked as kept from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_adopts_the_mirrors_an_old_broker_left() {
    let b = broker();
    let sb = Sim::start(SimConfig::pbx("b", &["200"])).await.unwrap();
    // What zmq-ami-broker wrote on b for a's SIP/100.
    assert!(sb.set_custom("Custom:SIP/100", "INUSE"));
    let d = peer(&b).await;
    d.send(
        &Msg::Sync {
            sync_id: 1,
            entries: vec![Entry::device("a", "SIP/100", DeviceState::Busy)],
            last: true,
        }
        .encode(),
    );
    let _agent = agent_for(&sb, "b", b.endpoint());
    // a's state is mirrored (not refused), and the old mirror is not published as b's own.
    assert!(sb.wait_device("Custom:SIP/100", DeviceState::Busy, WAIT).await);
    let marker = format!("/{}/{}", agent::memory::FAMILY, agent::memory::MARKER);
    assert!(
        sb.wait_until(WAIT, |w| w.astdb_other.contains_key(&marker)
            && w.astdb_other
                .contains_key(&format!("/{}/Custom:SIP/100", agent::memory::FAMILY)))
            .await,
        "{:?}",
        sb.with_world(|w| w.astdb_other.clone())
    );
    sb.set_device("SIP/200", DeviceState::Ringing);
    assert!(published(&b, |e| e.name == "SIP/200" && e.state.as_deref() == Some("RINGING")).await);
    assert!(
        b.table()
            .iter()
            .all(|e| !(e.origin == "b" && e.name == "Custom:SIP/100")),
        "{:?}",
        b.table()
    );
}
