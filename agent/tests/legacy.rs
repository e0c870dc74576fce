//! An Asterisk 11 server (no device state events) federated with an Asterisk 22 server.

use agent::{spawn, AgentConfig};
use ami::{ClientConfig, DeviceState, Message};
use broker::{Broker, BrokerConfig};
use sim::{Sim, SimConfig};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_11_and_22_federate_both_ways() {
    let b = Broker::start(BrokerConfig {
        listen: "tcp://127.0.0.1:*".into(),
        feed: None,
        ..BrokerConfig::default()
    })
    .unwrap();
    let old = Sim::start(SimConfig::pbx("old", &["100"]).legacy("11")).await.unwrap();
    let new = Sim::start(SimConfig::pbx("new", &["200"])).await.unwrap();

    // The simulator plays 11 faithfully enough: its banner, and no 13+ list.
    let (c, _ev) = ami::Client::start(ClientConfig::new(old.addr().to_string(), "hintbus", "hintbus"));
    let info = c.wait_connected(WAIT).await.unwrap();
    assert_eq!((info.banner_version.as_str(), info.asterisk_major()), ("1.3", Some(11)));
    assert!(!info.has_state_events());
    assert!(c.list(Message::action("DeviceStateList")).await.is_err());
    c.shutdown();

    let mut cfg = AgentConfig::new(
        "old",
        ClientConfig::new(old.addr().to_string(), "hintbus", "hintbus"),
        b.endpoint(),
    );
    cfg.legacy_hints = vec![("100".into(), "default".into())];
    let a_old = spawn(cfg).unwrap();
    let a_new = spawn(AgentConfig::new(
        "new",
        ClientConfig::new(new.addr().to_string(), "hintbus", "hintbus"),
        b.endpoint(),
    ))
    .unwrap();

    // 11 -> 22: the hint's state, under the extension's name.
    old.set_device("SIP/100", DeviceState::Inuse);
    assert!(new.wait_device("Custom:100", DeviceState::Inuse, WAIT).await);
    old.set_device("SIP/100", DeviceState::Ringing);
    assert!(new.wait_device("Custom:100", DeviceState::Ringing, WAIT).await);
    // 22 -> 11: Setvar DEVICE_STATE works the same there.
    new.set_device("SIP/200", DeviceState::Busy);
    assert!(old.wait_device("Custom:SIP/200", DeviceState::Busy, WAIT).await);
    // The mirror write on the 11 server is not sent back.
    assert!(
        new.setvar_log().iter().all(|(v, _)| !v.contains("200")),
        "{:?}",
        new.setvar_log()
    );
    a_old.stop().await;
    a_new.stop().await;
}
