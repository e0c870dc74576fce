//! The federation end to end: a broker process and one agent process per simulated Asterisk.

mod common;

use ami::{DeviceState, PresenceState};
use common::*;
use rand::seq::SliceRandom;
use rand::Rng;
use sim::{Sim, SimConfig};
use std::time::{Duration, Instant};

const ALL: [&str; 4] = ["100", "101", "200", "300"];

async fn three_servers() -> Vec<Sim> {
    vec![
        Sim::start(SimConfig::federated("a", &["100", "101"], &ALL))
            .await
            .unwrap(),
        Sim::start(SimConfig::federated("b", &["200"], &ALL)).await.unwrap(),
        Sim::start(SimConfig::federated("c", &["300"], &ALL)).await.unwrap(),
    ]
}

/// Fields drop in order: the processes before their directory.
struct Federation {
    agents: Vec<Proc>,
    broker: Proc,
    port: u16,
    dir: Dir,
}

impl Federation {
    fn start(name: &str, sims: &[Sim]) -> Federation {
        let dir = Dir::new(name);
        let port = free_port();
        let broker = Proc::start(
            &dir,
            "broker",
            &["broker", "-c", broker_config(&dir, port).to_str().unwrap()],
        );
        let agents = sims.iter().map(|s| Self::agent(&dir, port, s)).collect();
        Federation {
            dir,
            port,
            broker,
            agents,
        }
    }

    fn agent(dir: &Dir, port: u16, s: &Sim) -> Proc {
        start_agent(dir, port, s)
    }

    fn restart_broker(&mut self) {
        self.broker.kill();
        self.broker = Proc::start(
            &self.dir,
            "broker",
            &["broker", "-c", self.dir.0.join("broker.ini").to_str().unwrap()],
        );
    }

    fn logs(&self) -> String {
        let mut s = format!("--- broker\n{}", self.broker.log_text());
        for a in &self.agents {
            s.push_str(&format!("--- {}\n{}", a.log.display(), a.log_text()));
        }
        s
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_cross_servers_without_echo() {
    let sims = three_servers().await;
    let fed = Federation::start("basic", &sims);

    sims[0].set_device("SIP/100", DeviceState::Inuse);
    for s in &sims[1..] {
        assert!(
            wait_state(s, "Custom:SIP/100", DeviceState::Inuse).await,
            "{}:\n{}",
            s.name(),
            fed.logs()
        );
        // The shared hint lights up on the other servers.
        assert_eq!(s.hint_status("100", "default").map(|h| h.text()), Some("InUse"));
    }
    assert!(
        sims[0].setvar_log().iter().all(|(v, _)| !v.contains("SIP/100")),
        "written on a: {:?}",
        sims[0].setvar_log()
    );

    assert!(sims[0].set_custom("Custom:DND100", "BUSY"));
    for s in &sims[1..] {
        assert!(wait_state(s, "Custom:Custom:DND100", DeviceState::Busy).await);
    }
    assert!(sims[0].setvar_log().iter().all(|(v, _)| !v.contains("DND100")));

    // A presence message with a comma (base64 on the wire to Asterisk).
    assert!(sims[1].set_presence("CustomPresence:200", "dnd,,aW4gYSBtZWV0aW5nLCBiYWNrIGF0IDM=,e"));
    for s in [&sims[0], &sims[2]] {
        let ok = s
            .wait_until(WAIT, |w| {
                w.presence_of("CustomPresence:200")
                    .is_some_and(|p| p.state == PresenceState::Dnd && p.message == "in a meeting, back at 3")
            })
            .await;
        assert!(ok, "{}", s.name());
    }
    // Each server wrote every mirror once: no echo, no ping-pong.
    for s in &sims {
        let log = s.setvar_log();
        let mut seen = std::collections::HashMap::new();
        for (var, val) in &log {
            *seen.entry((var.clone(), val.clone())).or_insert(0) += 1;
        }
        assert!(seen.values().all(|n| *n == 1), "{}: {log:?}", s.name());
    }
    assert!(sims[1]
        .setvar_log()
        .iter()
        .all(|(v, _)| !v.contains("CustomPresence:200")));
    drop(fed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_loses_nothing() {
    let sims = three_servers().await;
    let mut fed = Federation::start("broker-restart", &sims);
    sims[0].set_device("SIP/100", DeviceState::Ringing);
    assert!(converge(&sims, WAIT).await.is_empty(), "{}", fed.logs());

    fed.broker.kill();
    // Changes while the broker is down...
    sims[0].set_device("SIP/100", DeviceState::Inuse);
    sims[0].set_device("SIP/101", DeviceState::Onhold);
    sims[2].set_device("SIP/300", DeviceState::Busy);
    fed.restart_broker();
    // ...are all there once it is back.
    let left = converge(&sims, WAIT).await;
    assert!(left.is_empty(), "{left:#?}\n{}", fed.logs());
    // And the federation still works afterwards.
    sims[1].set_device("SIP/200", DeviceState::Inuse);
    assert!(converge(&sims, WAIT).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_agent_goes_unavailable_and_comes_back() {
    let sims = three_servers().await;
    let mut fed = Federation::start("agent-lost", &sims);
    sims[0].set_device("SIP/100", DeviceState::Inuse);
    assert!(converge(&sims, WAIT).await.is_empty(), "{}", fed.logs());

    fed.agents[0].kill();
    let t = Instant::now();
    for s in &sims[1..] {
        assert!(
            wait_state(s, "Custom:SIP/100", DeviceState::Unavailable).await,
            "{}",
            fed.logs()
        );
        assert!(wait_state(s, "Custom:SIP/101", DeviceState::Unavailable).await);
    }
    // lost_after_ms = 1000 (+ a broker tick).
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    fed.agents[0] = Federation::agent(&fed.dir, fed.port, &sims[0]);
    assert!(converge(&sims, WAIT).await.is_empty(), "{}", fed.logs());
    assert_eq!(sims[1].device_state("Custom:SIP/100"), DeviceState::Inuse);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_restart_reapplies_mirrors_and_a_mute_server_delays_no_one() {
    let sims = three_servers().await;
    let fed = Federation::start("ast-restart", &sims);
    sims[0].set_device("SIP/100", DeviceState::Busy);
    sims[2].set_device("SIP/300", DeviceState::Inuse);
    assert!(converge(&sims, WAIT).await.is_empty(), "{}", fed.logs());

    // b restarts: its cache loses Custom:SIP/100 (it comes back as Custom:100).
    sims[1].restart(Duration::from_millis(200)).await;
    assert!(
        wait_state(&sims[1], "Custom:SIP/100", DeviceState::Busy).await,
        "{}",
        fed.logs()
    );
    assert!(wait_state(&sims[1], "Custom:SIP/300", DeviceState::Inuse).await);
    // The restore artifact Custom:100 is not published as a state of b.
    assert!(sims[0].with_world(|w| !w.devices.contains_key("Custom:Custom:100")));

    // b hangs: a's changes still reach c at once.
    sims[1].set_mute(true);
    let t = Instant::now();
    sims[0].set_device("SIP/100", DeviceState::NotInuse);
    assert!(wait_state(&sims[2], "Custom:SIP/100", DeviceState::NotInuse).await);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "a->c took {:?} with b mute",
        t.elapsed()
    );
    sims[1].set_mute(false);
    assert!(converge(&sims, WAIT).await.is_empty(), "{}", fed.logs());
}

/// Broker and agents restart together, and b's agent comes first: the new broker's snapshot is
/// empty, while b's Asterisk still shows a's states as mirrors (restored from astdb after a
/// restart, or simply still there). b must not publish them as its own: a would mirror its own
/// state back as `Custom:Custom:SIP/100`, and every further restart would add a level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_are_not_published_when_everything_restarts_together() {
    let sims = three_servers().await;
    let mut fed = Federation::start("restart-all", &sims);
    sims[0].set_device("SIP/100", DeviceState::Busy);
    assert!(converge(&sims, WAIT).await.is_empty(), "{}", fed.logs());
    fed.broker.kill();
    for a in &mut fed.agents {
        a.kill();
    }
    fed.restart_broker();
    // b alone first: nothing tells it which names are mirrors but what it remembered.
    let from = fed.agents[1].log_text().len();
    fed.agents[1] = Federation::agent(&fed.dir, fed.port, &sims[1]);
    let line = fed.agents[1].wait_log(from, "snapshot applied").await;
    assert!(
        line.as_deref().is_some_and(|l| l.contains("entries=0")),
        "b's snapshot was not empty: {line:?}\n{}",
        fed.logs()
    );
    sims[1].set_device("SIP/200", DeviceState::Ringing);
    fed.agents[0] = Federation::agent(&fed.dir, fed.port, &sims[0]);
    fed.agents[2] = Federation::agent(&fed.dir, fed.port, &sims[2]);
    // b's later change crosses to a: a republished mirror of b's would have crossed before it.
    assert!(
        wait_state(&sims[0], "Custom:SIP/200", DeviceState::Ringing).await,
        "{}",
        fed.logs()
    );
    sims[1].set_device("SIP/200", DeviceState::Inuse);
    assert!(wait_state(&sims[0], "Custom:SIP/200", DeviceState::Inuse).await);
    assert!(wait_state(&sims[2], "Custom:SIP/200", DeviceState::Inuse).await);
    for s in &sims {
        let nested: Vec<String> = s.with_world(|w| {
            w.devices
                .keys()
                .filter(|d| d.starts_with("Custom:Custom:"))
                .cloned()
                .collect()
        });
        assert!(
            nested.is_empty(),
            "{} shows mirrors of mirrors: {nested:?}\n{}",
            s.name(),
            fed.logs()
        );
    }
    assert!(converge(&sims, WAIT).await.is_empty(), "{}", fed.logs());
}

/// 1000 random changes on 5 servers, with agents and the broker killed and restarted in
/// between; at the end every mirror must equal its origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convergence_under_random_changes_and_restarts() {
    let exts: Vec<Vec<String>> = (0..5)
        .map(|i| (0..4).map(|j| format!("{}{j:02}", i + 1)).collect())
        .collect();
    let all: Vec<&str> = exts.iter().flatten().map(String::as_str).collect();
    let mut sims = Vec::new();
    for (i, own) in exts.iter().enumerate() {
        let own: Vec<&str> = own.iter().map(String::as_str).collect();
        sims.push(
            Sim::start(SimConfig::federated(&format!("s{i}"), &own, &all))
                .await
                .unwrap(),
        );
    }
    let mut fed = Federation::start("torture", &sims);
    let states = [
        DeviceState::NotInuse,
        DeviceState::Inuse,
        DeviceState::Ringing,
        DeviceState::Onhold,
        DeviceState::Busy,
    ];
    let (mut agent_restarts, mut broker_restarts) = (0, 0);
    for n in 0..1000 {
        let (si, ext, state, event) = {
            let mut rng = rand::thread_rng();
            let si = rng.gen_range(0..sims.len());
            (
                si,
                exts[si].choose(&mut rng).unwrap().clone(),
                *states.choose(&mut rng).unwrap(),
                rng.gen_range(0..1000),
            )
        };
        sims[si].set_device(&format!("SIP/{ext}"), state);
        if event < 6 {
            let a = event % sims.len();
            fed.agents[a].kill();
            fed.agents[a] = Federation::agent(&fed.dir, fed.port, &sims[a]);
            agent_restarts += 1;
        } else if event < 8 {
            fed.restart_broker();
            broker_restarts += 1;
        }
        if n % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let left = converge(&sims, Duration::from_secs(60)).await;
    // Straight to stderr, past the test harness's capture: the figure belongs in every run's output.
    let line = format!(
        "convergence: {} divergent keys of {} after 1000 changes, {agent_restarts} agent and {broker_restarts} broker restarts\n",
        left.len(),
        all.len() * (sims.len() - 1)
    );
    std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes()).unwrap();
    assert!(left.is_empty(), "{left:#?}\n{}", fed.logs());
}

/// Agentless mode: the broker runs b's agent itself from a `[server-b]` section; a is a
/// normal agent process. States cross both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agentless_server_federates_with_an_agent() {
    let sims = [
        Sim::start(SimConfig::federated("a", &["100", "101"], &ALL))
            .await
            .unwrap(),
        Sim::start(SimConfig::federated("b", &["200"], &ALL)).await.unwrap(),
    ];
    let dir = Dir::new("agentless");
    let port = free_port();
    let cfg = dir.write(
        "broker.ini",
        &format!(
            "[broker]\nlisten = tcp://127.0.0.1:{port}\nfeed = off\nheartbeat_ms = 200\nlost_after_ms = 1000\n\n\
             [server-b]\nhost = 127.0.0.1\nport = {}\nusername = hintbus\nsecret = hintbus\nheartbeat_ms = 200\n",
            sims[1].port()
        ),
    );
    let broker = Proc::start(&dir, "broker", &["broker", "-c", cfg.to_str().unwrap()]);
    let agent_a = Proc::start(
        &dir,
        "agent-a",
        &["agent", "-c", agent_config(&dir, "a", port, &sims[0]).to_str().unwrap()],
    );
    sims[0].set_device("SIP/100", DeviceState::Inuse);
    sims[1].set_device("SIP/200", DeviceState::Ringing);
    assert!(
        wait_state(&sims[1], "Custom:SIP/100", DeviceState::Inuse).await,
        "{}",
        broker.log_text()
    );
    assert!(
        wait_state(&sims[0], "Custom:SIP/200", DeviceState::Ringing).await,
        "{}",
        agent_a.log_text()
    );
}

#[test]
fn config_mistakes_are_named_and_fatal() {
    let dir = Dir::new("config");
    let bad = dir.write(
        "a.ini",
        "[agent]\nserver = a\ndevice_templat = Custom:{device}\n[ami]\nsecret = x\n",
    );
    let out = check_config("agent", &bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("a.ini: [agent] device_templat = \"Custom:{device}\": unknown key"),
        "{err}"
    );
    let bad = dir.write("b.ini", "[broker]\nlost_policy = sometimes\n");
    let out = check_config("broker", &bad);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("[broker] lost_policy = \"sometimes\": expected unavailable, keep or remove"));
    let bad = dir.write("w.ini", "[broker]\nbatch_window_us = 250000\n");
    let out = check_config("broker", &bad);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("w.ini: [broker] batch_window_us = \"250000\": at most 100000"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = dir.write(
        "c.ini",
        "[agent]\nserver = a\n[ami]\nsecret_file = /nonexistent/secret\n",
    );
    let out = check_config("agent", &ok);
    assert!(String::from_utf8_lossy(&out.stderr).contains("[ami] secret_file = \"/nonexistent/secret\""));
    // The example documents a valid file for both roles.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../config.ini.example");
    for role in ["broker", "agent"] {
        let out = check_config(role, std::path::Path::new(example));
        assert!(out.status.success(), "{role}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
