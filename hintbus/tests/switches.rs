//! `presence = off` and `device_state = off` (zmq-ami-broker's switches), per agent: the agent
//! neither publishes nor applies that kind, and the others are not affected.

mod common;

use ami::{DeviceState, PresenceState};
use common::*;
use sim::{Sim, SimConfig};
use std::time::Duration;

const ALL: [&str; 3] = ["100", "200", "300"];

async fn presence_is(sim: &Sim, presentity: &str, state: PresenceState) -> bool {
    sim.wait_until(WAIT, |w| w.presence_of(presentity).is_some_and(|p| p.state == state))
        .await
}

fn wrote(sim: &Sim, needle: &str) -> bool {
    sim.setvar_log().iter().any(|(v, _)| v.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_a_kind_off_neither_publishes_nor_applies_it() {
    let sims = [
        Sim::start(SimConfig::federated("a", &["100"], &ALL)).await.unwrap(),
        Sim::start(SimConfig::federated("b", &["200"], &ALL)).await.unwrap(),
        Sim::start(SimConfig::federated("c", &["300"], &ALL)).await.unwrap(),
    ];
    let dir = Dir::new("switches");
    let port = free_port();
    let _broker = Proc::start(
        &dir,
        "broker",
        &["broker", "-c", broker_config(&dir, port).to_str().unwrap()],
    );
    let _a = start_agent_with(&dir, &sims[0], port, "");
    let _b = start_agent_with(&dir, &sims[1], port, "presence = off");
    let _c = start_agent_with(&dir, &sims[2], port, "device_state = off");

    // a's device reaches b (devices on there) and a's presence reaches c (presence on there).
    sims[0].set_device("SIP/100", DeviceState::Inuse);
    assert!(sims[0].set_presence("CustomPresence:100", "away,,"));
    assert!(wait_state(&sims[1], "Custom:SIP/100", DeviceState::Inuse).await);
    assert!(presence_is(&sims[2], "CustomPresence:100", PresenceState::Away).await);
    // b's device and c's presence leave their servers.
    assert!(sims[1].set_presence("CustomPresence:200", "dnd,,"));
    sims[1].set_device("SIP/200", DeviceState::Busy);
    assert!(sims[2].set_presence("CustomPresence:300", "xa,,"));
    sims[2].set_device("SIP/300", DeviceState::Ringing);
    assert!(wait_state(&sims[0], "Custom:SIP/200", DeviceState::Busy).await);
    assert!(presence_is(&sims[0], "CustomPresence:300", PresenceState::Xa).await);
    // Time for anything still on its way; what was switched off never travelled.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !wrote(&sims[1], "CustomPresence:"),
        "b got presence: {:?}",
        sims[1].setvar_log()
    );
    assert!(!wrote(&sims[0], "CustomPresence:200"), "b's presence left b");
    assert!(!wrote(&sims[2], "CustomPresence:200"), "b's presence left b");
    assert!(
        !wrote(&sims[2], "Custom:SIP/"),
        "c got devices: {:?}",
        sims[2].setvar_log()
    );
    assert!(!wrote(&sims[0], "Custom:SIP/300"), "c's device left c");
    assert!(!wrote(&sims[1], "Custom:SIP/300"), "c's device left c");
    // What is on still crosses between the others.
    assert!(wait_state(&sims[1], "Custom:SIP/100", DeviceState::Inuse).await);
    assert!(presence_is(&sims[2], "CustomPresence:100", PresenceState::Away).await);
}

#[test]
fn check_says_what_is_not_shared() {
    let dir = Dir::new("switches-check");
    let cfg = dir.write(
        "a.ini",
        "[agent]\nserver = a\npresence = off\ndevice_state = on\n\n[ami]\nsecret = x\n",
    );
    let out = check_config("agent", &cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(", presence not shared)"), "{text}");
    let bad = dir.write("b.ini", "[agent]\nserver = a\npresence = maybe\n\n[ami]\nsecret = x\n");
    let out = check_config("agent", &bad);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[agent] presence = \"maybe\": expected on or off (line 3)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
