//! CURVE set up as an administrator would: `hintbus keygen`, config files, real processes.

mod common;

use ami::DeviceState;
use common::*;
use sim::{Sim, SimConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_config_and_processes_with_curve() {
    let dir = Dir::new("curve");
    let (broker_pub, a_pub, b_pub) = (keygen(&dir, "broker"), keygen(&dir, "a"), keygen(&dir, "b"));
    let _stranger = keygen(&dir, "x");
    let port = free_port();
    let bcfg = dir.write(
        "broker.ini",
        &format!(
            "[broker]\nlisten = tcp://127.0.0.1:{port}\nfeed = off\nsecret_key_file = {}\n\n[agents]\na = {a_pub}\nb = {b_pub}\n",
            dir.0.join("broker.key").display()
        ),
    );
    let sims = [
        Sim::start(SimConfig::pbx("a", &["100"])).await.unwrap(),
        Sim::start(SimConfig::pbx("b", &["200"])).await.unwrap(),
        Sim::start(SimConfig::pbx("x", &["900"])).await.unwrap(),
    ];
    let agent_cfg = |name: &str, key: &str, sim: &Sim| {
        let text = format!(
            "[agent]\nserver = {name}\nbroker = tcp://127.0.0.1:{port}\nsecret_key_file = {}\nbroker_public_key = {broker_pub}\n\n[ami]\nport = {}\nsecret = hintbus\n",
            dir.0.join(format!("{key}.key")).display(),
            sim.port()
        );
        dir.write(&format!("{name}.ini"), &text)
    };
    let _broker = Proc::start(&dir, "broker", &["broker", "-c", bcfg.to_str().unwrap()]);
    let a = agent_cfg("a", "a", &sims[0]);
    let b = agent_cfg("b", "b", &sims[1]);
    let x = agent_cfg("x", "x", &sims[2]);
    let _pa = Proc::start(&dir, "agent-a", &["agent", "-c", a.to_str().unwrap()]);
    let _pb = Proc::start(&dir, "agent-b", &["agent", "-c", b.to_str().unwrap()]);
    let _px = Proc::start(&dir, "agent-x", &["agent", "-c", x.to_str().unwrap()]);
    sims[2].set_device("SIP/900", DeviceState::Inuse);
    sims[0].set_device("SIP/100", DeviceState::Inuse);
    assert!(wait_state(&sims[1], "Custom:SIP/100", DeviceState::Inuse).await);
    sims[1].set_device("SIP/200", DeviceState::Busy);
    assert!(wait_state(&sims[0], "Custom:SIP/200", DeviceState::Busy).await);
    // The agent whose key is not in [agents] got nothing and gave nothing.
    assert!(sims[2].setvar_log().is_empty());
    assert!(sims[0].setvar_log().iter().all(|(v, _)| !v.contains("900")));

    // A secret key readable by others is refused at start, naming the file.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.0.join("a.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check_config("agent", &a);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chmod 600"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plain text beyond loopback is refused.
    let open = dir.write("open.ini", "[broker]\nlisten = tcp://0.0.0.0:5560\n");
    let out = check_config("broker", &open);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("[broker] listen = \"tcp://0.0.0.0:5560\": plain text beyond loopback"));
}
