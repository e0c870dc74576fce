//! A resync runs beside the agent's loop: lists slower than the broker's lost timeout never
//! make a healthy server lost.

use agent::{spawn, AgentConfig, AgentHandle};
use ami::{ClientConfig, DeviceState};
use broker::{Broker, BrokerConfig};
use sim::{Sim, SimConfig};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn agent_for(sim: &Sim, name: &str, broker: &str) -> AgentHandle {
    let mut ami = ClientConfig::new(sim.addr().to_string(), "hintbus", "hintbus");
    ami.name = name.into();
    ami.backoff_min = Duration::from_millis(20);
    ami.backoff_max = Duration::from_millis(200);
    // Longer than the lists take: they are slow, not lost.
    ami.action_timeout = Duration::from_secs(10);
    let mut cfg = AgentConfig::new(name, ami, broker);
    cfg.heartbeat = Duration::from_millis(100);
    cfg.broker_timeout = Duration::from_millis(1000);
    spawn(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_slower_than_lost_after_do_not_make_a_server_lost() {
    let b = Broker::start(BrokerConfig {
        listen: "tcp://127.0.0.1:*".into(),
        feed: None,
        heartbeat: Duration::from_millis(100),
        lost_after: Duration::from_millis(500),
        ..BrokerConfig::default()
    })
    .unwrap();
    let sa = Sim::start(SimConfig::pbx("a", &["100", "101"])).await.unwrap();
    let sb = Sim::start(SimConfig::pbx("b", &["200"])).await.unwrap();
    let _a = agent_for(&sa, "a", b.endpoint());
    let _b = agent_for(&sb, "b", b.endpoint());
    sa.set_device("SIP/100", DeviceState::Inuse);
    assert!(sb.wait_device("Custom:SIP/100", DeviceState::Inuse, WAIT).await);
    // Each list now takes three lost timeouts; a's agent reconnects and reads them all.
    sa.set_list_delay(Some(Duration::from_millis(1500)));
    sa.drop_connections();
    // A change while the lists are read reaches b once they are: the resync is over.
    assert!(sa.wait_until(WAIT, |w| w.subscribers.len() == 1).await);
    sa.set_device("SIP/101", DeviceState::Ringing);
    assert!(sb.wait_device("Custom:SIP/101", DeviceState::Ringing, WAIT).await);
    let unavailable: Vec<_> = sb
        .setvar_log()
        .into_iter()
        .filter(|(_, v)| v == "UNAVAILABLE")
        .collect();
    assert!(
        unavailable.is_empty(),
        "a was declared lost during its resync: {unavailable:?}"
    );
    assert_eq!(sb.device_state("Custom:SIP/100"), DeviceState::Inuse);
}
