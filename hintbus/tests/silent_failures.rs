//! Mistakes an administrator makes that used to leave an agent silent: a broker port where
//! nothing listens, a wrong `broker_public_key`, a key the broker does not know, and the
//! agent's own key given as the broker's. Real processes, as a user runs them.

mod common;

use common::*;
use sim::{Sim, SimConfig};
use std::time::{Duration, Instant};

/// An agent config with CURVE: its key file and the broker key it is given.
fn curve_agent(dir: &Dir, server: &str, key: &str, broker_key: &str, port: u16, sim: &Sim) -> std::path::PathBuf {
    dir.write(
        &format!("{server}.ini"),
        &format!(
            "[agent]\nserver = {server}\nbroker = tcp://127.0.0.1:{port}\nsecret_key_file = {}\nbroker_public_key = {broker_key}\n\n[ami]\nport = {}\nsecret = hintbus\n",
            dir.0.join(format!("{key}.key")).display(),
            sim.port()
        ),
    )
}

/// Waits for a warning in `p`'s log that holds every one of `words`.
async fn warns(p: &Proc, words: &[&str]) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if p.log_text()
            .lines()
            .any(|l| l.contains("WARN") && words.iter().all(|w| l.contains(w)))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_broker_is_not_there_says_so_naming_the_endpoint() {
    let dir = Dir::new("no-broker");
    let sim = Sim::start(SimConfig::pbx("a", &["100"])).await.unwrap();
    let port = free_port(); // nothing listens there
    let cfg = agent_config(&dir, "a", port, &sim);
    let agent = Proc::start(&dir, "agent-a", &["agent", "-c", cfg.to_str().unwrap()]);
    let endpoint = format!("tcp://127.0.0.1:{port}");
    assert!(
        warns(&agent, &["cannot reach the broker", &endpoint]).await,
        "{}",
        agent.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_broker_key_or_an_unknown_agent_key_is_a_logged_handshake_failure() {
    let dir = Dir::new("wrong-key");
    let (broker_pub, a_pub) = (keygen(&dir, "broker"), keygen(&dir, "a"));
    let not_broker = keygen(&dir, "other");
    keygen(&dir, "stranger");
    let port = free_port();
    let bcfg = dir.write(
        "broker.ini",
        &format!(
            "[broker]\nlisten = tcp://127.0.0.1:{port}\nfeed = off\nsecret_key_file = {}\n\n[agents]\na = {a_pub}\n",
            dir.0.join("broker.key").display()
        ),
    );
    let _broker = Proc::start(&dir, "broker", &["broker", "-c", bcfg.to_str().unwrap()]);
    let (sa, sb) = (
        Sim::start(SimConfig::pbx("a", &["100"])).await.unwrap(),
        Sim::start(SimConfig::pbx("b", &["200"])).await.unwrap(),
    );
    let endpoint = format!("tcp://127.0.0.1:{port}");
    // a's own key, another key given as the broker's.
    let wrong = curve_agent(&dir, "a", "a", &not_broker, port, &sa);
    let a = Proc::start(&dir, "agent-a", &["agent", "-c", wrong.to_str().unwrap()]);
    // The right broker key, but a key the broker's [agents] does not hold.
    let unknown = curve_agent(&dir, "b", "stranger", &broker_pub, port, &sb);
    let b = Proc::start(&dir, "agent-b", &["agent", "-c", unknown.to_str().unwrap()]);
    assert!(
        warns(
            &a,
            &["handshake with the broker failed", &endpoint, "broker_public_key"]
        )
        .await,
        "{}",
        a.log_text()
    );
    assert!(
        warns(&b, &["refused this agent's key", &endpoint]).await,
        "{}",
        b.log_text()
    );
}

#[test]
fn check_refuses_the_agents_own_key_given_as_the_brokers() {
    let dir = Dir::new("own-key");
    let a_pub = keygen(&dir, "a");
    let cfg = dir.write(
        "a.ini",
        &format!(
            "[agent]\nserver = a\nsecret_key_file = {}\nbroker_public_key = {a_pub}\n\n[ami]\nsecret = x\n",
            dir.0.join("a.key").display()
        ),
    );
    let out = check_config("agent", &cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "--check said OK: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains("broker_public_key") && err.contains("own public key"),
        "{err}"
    );
}
