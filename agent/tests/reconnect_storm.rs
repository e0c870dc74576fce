//! Mirrors converge when the AMI session is dropped again and again in the middle of a burst.

use agent::{spawn, AgentConfig};
use ami::{ClientConfig, DeviceState};
use broker::{Broker, BrokerConfig};
use sim::{Sim, SimConfig};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_during_a_burst_still_converge() {
    let b = Broker::start(BrokerConfig {
        listen: "tcp://127.0.0.1:*".into(),
        feed: None,
        ..BrokerConfig::default()
    })
    .unwrap();
    let exts: Vec<String> = (0..50).map(|i| format!("{i}")).collect();
    let exts: Vec<&str> = exts.iter().map(String::as_str).collect();
    let a = Sim::start(SimConfig::pbx("a", &exts)).await.unwrap();
    let m = Sim::start(SimConfig::pbx("m", &["900"])).await.unwrap();
    let mut ca = ClientConfig::new(a.addr().to_string(), "hintbus", "hintbus");
    ca.backoff_min = Duration::from_millis(10);
    let mut cm = ClientConfig::new(m.addr().to_string(), "hintbus", "hintbus");
    cm.backoff_min = Duration::from_millis(10);
    cm.backoff_max = Duration::from_millis(50);
    let _aa = spawn(AgentConfig::new("a", ca, b.endpoint())).unwrap();
    let _am = spawn(AgentConfig::new("m", cm, b.endpoint())).unwrap();
    a.set_device("SIP/0", DeviceState::Inuse);
    assert!(
        m.wait_device("Custom:SIP/0", DeviceState::Inuse, Duration::from_secs(10))
            .await
    );
    let states = [
        DeviceState::NotInuse,
        DeviceState::Ringing,
        DeviceState::Inuse,
        DeviceState::Onhold,
    ];
    for round in 0..40 {
        for (i, e) in exts.iter().enumerate() {
            a.set_device(&format!("SIP/{e}"), states[(round + i) % 4]);
        }
        if round % 4 == 0 {
            m.drop_connections();
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ok = m
        .wait_until(Duration::from_secs(20), |w| {
            exts.iter()
                .all(|e| w.devices.get(&format!("Custom:SIP/{e}")) == Some(&a.device_state(&format!("SIP/{e}"))))
        })
        .await;
    let stale: Vec<String> = exts
        .iter()
        .filter(|e| {
            m.with_world(|w| w.devices.get(&format!("Custom:SIP/{e}")).copied())
                != Some(a.device_state(&format!("SIP/{e}")))
        })
        .map(|e| {
            format!(
                "{e}: m {:?} a {:?}",
                m.with_world(|w| w.devices.get(&format!("Custom:SIP/{e}")).copied()),
                a.device_state(&format!("SIP/{e}"))
            )
        })
        .collect();
    assert!(ok, "{} stale: {stale:?}", stale.len());
}
