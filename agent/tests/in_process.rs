//! Broker, agents and simulated Asterisks in one process, over real TCP and ZeroMQ sockets.

use agent::{spawn, AgentConfig, AgentHandle};
use ami::{ClientConfig, DeviceState, PresenceState};
use broker::{Broker, BrokerConfig};
use sim::{Sim, SimConfig};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn broker() -> Broker {
    let cfg = BrokerConfig {
        listen: "tcp://127.0.0.1:*".into(),
        feed: None,
        heartbeat: Duration::from_millis(200),
        lost_after: Duration::from_millis(1000),
        ..BrokerConfig::default()
    };
    Broker::start(cfg).unwrap()
}

fn agent_for(sim: &Sim, name: &str, broker: &str) -> AgentHandle {
    let mut ami = ClientConfig::new(sim.addr().to_string(), "hintbus", "hintbus");
    ami.name = name.into();
    ami.backoff_min = Duration::from_millis(20);
    ami.backoff_max = Duration::from_millis(200);
    let mut cfg = AgentConfig::new(name, ami, broker);
    cfg.heartbeat = Duration::from_millis(200);
    cfg.broker_timeout = Duration::from_millis(1000);
    spawn(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_on_one_server_appears_on_the_others_and_never_echoes() {
    let b = broker();
    let sims = [
        Sim::start(SimConfig::pbx("a", &["100", "101"])).await.unwrap(),
        Sim::start(SimConfig::pbx("b", &["200"])).await.unwrap(),
        Sim::start(SimConfig::pbx("c", &["300"])).await.unwrap(),
    ];
    let agents: Vec<_> = ["a", "b", "c"]
        .iter()
        .zip(&sims)
        .map(|(n, s)| agent_for(s, n, b.endpoint()))
        .collect();

    sims[0].set_device("SIP/100", DeviceState::Inuse);
    for s in &sims[1..] {
        assert!(
            s.wait_device("Custom:SIP/100", DeviceState::Inuse, WAIT).await,
            "{}",
            s.name()
        );
    }
    // The broker's view of its agents (for a status API): all three, each under its id.
    let servers: Vec<String> = b.agents().into_iter().map(|a| a.server).collect();
    assert_eq!(servers, ["a", "b", "c"]);
    // Nothing of a's own written on a.
    assert!(
        sims[0].setvar_log().iter().all(|(v, _)| !v.contains("SIP/100")),
        "{:?}",
        sims[0].setvar_log()
    );

    // A genuine Custom state is shared under the template's name.
    assert!(sims[0].set_custom("Custom:DND100", "BUSY"));
    for s in &sims[1..] {
        assert!(s.wait_device("Custom:Custom:DND100", DeviceState::Busy, WAIT).await);
    }
    // Presence with a comma round-trips.
    let p = "dnd,,aW4gYSBtZWV0aW5nLCBiYWNrIGF0IDM=,e";
    assert!(sims[1].set_presence("CustomPresence:200", p));
    for s in [&sims[0], &sims[2]] {
        assert!(
            s.wait_until(WAIT, |w| w.presence_of("CustomPresence:200").is_some_and(|v| v.state
                == PresenceState::Dnd
                && v.message == "in a meeting, back at 3"))
                .await,
            "{}",
            s.name()
        );
    }
    // No echo: b wrote nothing of its own, and each mirror was written once.
    assert!(sims[1]
        .setvar_log()
        .iter()
        .all(|(v, _)| !v.contains("CustomPresence:200")));
    let writes_on_c = sims[2]
        .setvar_log()
        .iter()
        .filter(|(v, _)| v.contains("CustomPresence:200"))
        .count();
    assert_eq!(writes_on_c, 1, "{:?}", sims[2].setvar_log());
    for a in agents {
        a.stop().await;
    }
}

/// A mirror changed on Asterisk behind the agent's back (a late action of a dropped session,
/// or someone writing our name) is put back to what it should show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_changed_behind_our_back_is_restored() {
    let b = broker();
    let sa = Sim::start(SimConfig::pbx("a", &["100"])).await.unwrap();
    let sb = Sim::start(SimConfig::pbx("b", &["200"])).await.unwrap();
    let _a = agent_for(&sa, "a", b.endpoint());
    let _b = agent_for(&sb, "b", b.endpoint());
    sa.set_device("SIP/100", DeviceState::Inuse);
    assert!(sb.wait_device("Custom:SIP/100", DeviceState::Inuse, WAIT).await);
    assert!(sb.set_custom("Custom:SIP/100", "NOT_INUSE"));
    assert!(
        sb.wait_device("Custom:SIP/100", DeviceState::Inuse, WAIT).await,
        "restored"
    );
}
