//! The queue guard on the simulated Asterisk, over real AMI sessions.

use agent::guard::GuardTemplate;
use agent::{spawn, AgentConfig, AgentHandle};
use ami::{ClientConfig, DeviceState};
use broker::{Broker, BrokerConfig};
use sim::{HintConfig, QueueConfig, QueueError, Sim, SimConfig};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Alice (SIP/100) serves two queues; her state interface is the hint `SIP/100&Custom:Alice`.
fn call_centre() -> SimConfig {
    let mut c = SimConfig::pbx("cc", &["100"]);
    c.hints.push(HintConfig {
        exten: "alice".into(),
        context: "default".into(),
        hint: "SIP/100&Custom:Alice".into(),
    });
    for q in ["sales", "support"] {
        c.queues
            .push(QueueConfig::one_member(q, "SIP/100", "Alice", "hint:alice@default"));
    }
    c
}

fn agent(sim: &Sim, broker: &Broker) -> AgentHandle {
    let mut ami = ClientConfig::new(sim.addr().to_string(), "hintbus", "hintbus");
    ami.backoff_min = Duration::from_millis(20);
    let mut cfg = AgentConfig::new("cc", ami, broker.endpoint());
    cfg.queue_guard = Some(GuardTemplate::new("Custom:{membername}").unwrap());
    spawn(cfg).unwrap()
}

fn broker() -> Broker {
    Broker::start(BrokerConfig {
        listen: "tcp://127.0.0.1:*".into(),
        feed: None,
        ..BrokerConfig::default()
    })
    .unwrap()
}

async fn connected(a: &AgentHandle) {
    assert!(a.client.wait_connected(WAIT).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reregistration_mid_call_does_not_free_the_member() {
    let b = broker();
    let sim = Sim::start(call_centre()).await.unwrap();
    let a = agent(&sim, &b);
    connected(&a).await;
    assert!(
        sim.wait_device("Custom:Alice", DeviceState::NotInuse, WAIT).await,
        "reconciled at connect"
    );

    let call = sim.queue_call("sales", "5551000").unwrap();
    assert!(sim.wait_device("Custom:Alice", DeviceState::Inuse, WAIT).await);
    // sip reload + re-registration: the phone reads idle mid-call...
    sim.set_device("SIP/100", DeviceState::NotInuse);
    // ...but the member's hint stays busy, in both queues: no second call.
    assert_eq!(sim.device_state("hint:alice@default"), DeviceState::Inuse);
    assert!(matches!(
        sim.queue_call("sales", "5551001"),
        Err(QueueError::NoMemberAvailable { .. })
    ));
    assert!(matches!(
        sim.queue_call("support", "5551002"),
        Err(QueueError::NoMemberAvailable { .. })
    ));

    sim.complete_call(call, "agent").unwrap();
    assert!(sim.wait_device("Custom:Alice", DeviceState::NotInuse, WAIT).await);
    assert!(
        sim.queue_call("support", "5551003").is_ok(),
        "free again after the call"
    );
    // Only the member's guard name was written.
    assert!(
        sim.setvar_log().iter().all(|(v, _)| v == "DEVICE_STATE(Custom:Alice)"),
        "{:?}",
        sim.setvar_log()
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_agent_complete_is_repaired_at_reconnect() {
    let b = broker();
    let sim = Sim::start(call_centre()).await.unwrap();
    let a = agent(&sim, &b);
    connected(&a).await;
    let call = sim.queue_call("support", "5552000").unwrap();
    assert!(sim.wait_device("Custom:Alice", DeviceState::Inuse, WAIT).await);

    // The agent is down while the call ends: AgentComplete is never seen.
    a.stop().await;
    sim.complete_call(call, "caller").unwrap();
    assert_eq!(
        sim.device_state("Custom:Alice"),
        DeviceState::Inuse,
        "stale until someone repairs it"
    );

    let a = agent(&sim, &b);
    assert!(
        sim.wait_device("Custom:Alice", DeviceState::NotInuse, WAIT).await,
        "QueueStatus says InCall 0"
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_still_on_a_call_is_not_freed_at_reconnect() {
    let b = broker();
    let sim = Sim::start(call_centre()).await.unwrap();
    let a = agent(&sim, &b);
    connected(&a).await;
    let _call = sim.queue_call("sales", "5553000").unwrap();
    assert!(sim.wait_device("Custom:Alice", DeviceState::Inuse, WAIT).await);
    sim.drop_connections();
    // Reconnected and reconciled: InCall 1 keeps the guard on.
    assert!(sim.wait_until(WAIT, |w| !w.subscribers.is_empty()).await);
    connected(&a).await;
    let writes_before = sim.setvar_log().len();
    sim.set_device("SIP/100", DeviceState::NotInuse);
    assert_eq!(sim.device_state("Custom:Alice"), DeviceState::Inuse);
    assert!(matches!(
        sim.queue_call("support", "5553001"),
        Err(QueueError::NoMemberAvailable { .. })
    ));
    assert!(sim.setvar_log()[writes_before..].iter().all(|(_, v)| v != "NOT_INUSE"));
    a.stop().await;
}

/// `queue reload` adds a static member without any event, and AgentConnect carries no
/// StateInterface: the guard looks the member up (QueueStatus) before it writes, and writes the
/// member's own state interface, never a name made of its MemberName with blanks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_by_a_reload_gets_its_own_guard_name() {
    let b = broker();
    let sim = Sim::start(call_centre()).await.unwrap();
    let a = agent(&sim, &b);
    connected(&a).await;
    assert!(sim.wait_device("Custom:Alice", DeviceState::NotInuse, WAIT).await);
    sim.with_world(|w| {
        w.reload_add_member("support", "Local/200@agents", "Acc Agent 200", "Custom:accagent200")
            .unwrap();
        // Alice is away: the new member takes the call.
        for q in &mut w.queues {
            q.members.retain(|m| m.interface != "SIP/100");
        }
    });
    let call = sim.queue_call("support", "5554000").unwrap();
    assert!(
        sim.wait_device("Custom:accagent200", DeviceState::Inuse, WAIT).await,
        "{:?}",
        sim.setvar_log()
    );
    sim.complete_call(call, "agent").unwrap();
    assert!(sim.wait_device("Custom:accagent200", DeviceState::NotInuse, WAIT).await);
    assert!(
        sim.setvar_log().iter().all(|(v, _)| !v.contains(' ')),
        "{:?}",
        sim.setvar_log()
    );
    a.stop().await;
}
