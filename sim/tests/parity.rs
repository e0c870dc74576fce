//! Behaviours of a real Asterisk 22 that the real-Asterisk suite (hintbus/tests/real_asterisk.rs)
//! revealed and the simulator now reproduces. Each test states one.

use ami::codec::{AmiCodec, Frame};
use ami::{DeviceState, Message};
use futures::{SinkExt, StreamExt};
use sim::{Sim, SimConfig};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

type Conn = Framed<TcpStream, AmiCodec>;

async fn login(sim: &Sim) -> Conn {
    let mut c = Framed::new(TcpStream::connect(sim.addr()).await.unwrap(), AmiCodec::client());
    assert!(matches!(c.next().await, Some(Ok(Ok(Frame::Banner(_))))));
    let user = sim.with_world(|w| w.config.users[0].clone());
    c.send(
        &Message::action("Login")
            .with("ActionID", "l")
            .with("Username", user.username)
            .with("Secret", user.secret),
    )
    .await
    .unwrap();
    until(&mut c, "l").await;
    c
}

/// Everything up to the answer to a Ping with ActionID `id` (sent here).
async fn until(c: &mut Conn, id: &str) -> Vec<Message> {
    if id != "l" {
        c.send(&Message::action("Ping").with("ActionID", id)).await.unwrap();
    }
    let mut got = Vec::new();
    loop {
        let m = match tokio::time::timeout(Duration::from_secs(5), c.next()).await {
            Ok(Some(Ok(Ok(Frame::Message(m))))) => m,
            other => panic!("no answer: {other:?}"),
        };
        if m.action_id() == Some(id) && m.response().is_some() {
            return got;
        }
        got.push(m);
    }
}

async fn device_list(c: &mut Conn) -> Vec<(String, String)> {
    c.send(&Message::action("DeviceStateList").with("ActionID", "list"))
        .await
        .unwrap();
    until(c, "after-list")
        .await
        .iter()
        .filter(|m| m.event_name() == Some("DeviceStateChange") && m.action_id() == Some("list"))
        .map(|m| {
            (
                m.get("Device").unwrap().to_string(),
                m.get("State").unwrap().to_string(),
            )
        })
        .collect()
}

/// UNKNOWN reaches DeviceStateList only as a change: a Custom device that had a state and whose
/// astdb entry says UNKNOWN when func_devstate is reloaded. At boot, an UNKNOWN in astdb is not
/// announced (unchanged from an uncached device), so it is not listed.
#[tokio::test]
async fn unknown_is_listed_after_a_change_to_it_not_after_a_boot() {
    let sim = Sim::start(SimConfig::fixture_server()).await.unwrap();
    let mut c = login(&sim).await;
    assert!(sim.set_custom("Custom:gone", "INUSE"));
    sim.with_world(|w| {
        w.astdb_devstate.insert("gone".into(), "UNKNOWN".into());
        w.reload_custom_states();
    });
    let seen = until(&mut c, "p1").await;
    assert!(seen
        .iter()
        .any(|m| m.get("Device") == Some("Custom:gone") && m.get("State") == Some("UNKNOWN")));
    assert!(device_list(&mut c)
        .await
        .contains(&("Custom:gone".into(), "UNKNOWN".into())));
    sim.restart(Duration::from_millis(10)).await;
    let mut c = login(&sim).await;
    assert!(
        !device_list(&mut c).await.iter().any(|(d, _)| d == "Custom:gone"),
        "an UNKNOWN in astdb is not listed after a boot"
    );
    assert_eq!(sim.device_state("Custom:gone"), DeviceState::Unknown);
}

/// Each DeviceStateChange of a Local channel arrives twice in a row, and Local channels (not
/// cachable) never appear in DeviceStateList.
#[tokio::test]
async fn local_channel_states_come_twice_and_are_not_listed() {
    let sim = Sim::start(SimConfig::fixture_server()).await.unwrap();
    let mut c = login(&sim).await;
    assert!(sim.set_custom("Custom:agent100", "NOT_INUSE"));
    let call = sim.queue_call("support", "5551234").unwrap();
    let seen = until(&mut c, "p1").await;
    let local: Vec<(&str, &str)> = seen
        .iter()
        .filter(|m| m.event_name() == Some("DeviceStateChange"))
        .filter_map(|m| Some((m.get("Device")?, m.get("State")?)))
        .filter(|(d, _)| d.starts_with("Local/"))
        .collect();
    assert_eq!(
        local,
        [
            ("Local/s@callq", "INUSE"),
            ("Local/s@callq", "INUSE"),
            ("Local/100@agents", "INUSE"),
            ("Local/100@agents", "INUSE")
        ]
    );
    assert!(!device_list(&mut c).await.iter().any(|(d, _)| d.starts_with("Local/")));
    sim.complete_call(call, "agent").unwrap();
    let seen = until(&mut c, "p2").await;
    let n = seen
        .iter()
        .filter(|m| m.get("Device").is_some_and(|d| d.starts_with("Local/")) && m.get("State") == Some("NOT_INUSE"))
        .count();
    assert_eq!(n, 4);
}
