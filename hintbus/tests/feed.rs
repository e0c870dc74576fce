//! The broker's feed read by a Python subscriber (examples/feed.py, pyzmq): the protocol
//! is usable from another language with nothing but its document.

use agent::AgentConfig;
use ami::{ClientConfig, DeviceState};
use broker::{Broker, BrokerConfig};
use sim::{Sim, SimConfig};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the script however the test ends.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyzmq_script_reads_the_feed() {
    let has_pyzmq = Command::new("python3")
        .args(["-c", "import zmq"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(has_pyzmq, "python3 with pyzmq is needed (./dev setup installs it)");
    let broker = Broker::start(BrokerConfig {
        listen: "tcp://127.0.0.1:*".into(),
        feed: Some("tcp://127.0.0.1:*".into()),
        ..BrokerConfig::default()
    })
    .unwrap();
    let sim = Sim::start(SimConfig::pbx("a", &["100"])).await.unwrap();
    let ami = ClientConfig::new(sim.addr().to_string(), "hintbus", "hintbus");
    let agent = agent::spawn(AgentConfig::new("a", ami, broker.endpoint())).unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/feed.py");
    let mut child = Kill(
        Command::new("python3")
            .args([script, broker.feed_endpoint().unwrap(), "0", "device.a"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // A SUB socket joins some time after it connects: change the phone until the script shows
    // a change, then check one specific change end to end.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut up = false;
    let mut lines = Vec::new();
    let mut round = 0;
    while !up {
        assert!(
            Instant::now() < deadline,
            "no output from feed.py: {lines:?}; table {:?}; agent {:?}",
            broker.table(),
            agent.metrics
        );
        round += 1;
        let state = if round % 2 == 0 {
            DeviceState::Ringing
        } else {
            DeviceState::NotInuse
        };
        sim.set_device("SIP/100", state);
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(l);
            up = true;
        }
    }
    sim.set_device("SIP/100", DeviceState::Busy);
    let line = loop {
        let l = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("feed.py printed the change");
        if l.contains("BUSY") {
            break l;
        }
    };
    assert!(
        line.contains(" a ") && line.contains("device") && line.contains("SIP/100"),
        "{line}"
    );
    agent.stop().await;
}
