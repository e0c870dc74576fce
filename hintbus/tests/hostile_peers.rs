//! Peers that misbehave below and above the protocol, against a real broker process serving real
//! agents: a frame header announcing 8 GiB, a flood of garbage from a peer that never says
//! hello, and peer text made to forge log lines. Each speaks ZMTP 3.0 (RFC 23) itself over plain
//! TCP on loopback, as a hostile peer would, rather than through libzmq.

mod common;

use ami::DeviceState;
use common::*;
use sim::{Sim, SimConfig};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The 64-byte ZMTP 3.0 greeting: signature, version 3.0, mechanism NULL, as-server 0, filler.
fn greeting() -> [u8; 64] {
    let mut g = [0u8; 64];
    g[0] = 0xff;
    g[9] = 0x7f;
    g[10] = 3;
    g[12..16].copy_from_slice(b"NULL");
    g
}

/// The NULL mechanism's READY command, announcing a DEALER.
fn ready() -> Vec<u8> {
    let mut body = vec![5];
    body.extend_from_slice(b"READY");
    body.push(11);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&6u32.to_be_bytes());
    body.extend_from_slice(b"DEALER");
    let mut f = vec![0x04, body.len() as u8];
    f.extend(body);
    f
}

/// One message frame (no MORE flag): short form up to 255 bytes, long form beyond.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = if body.len() < 256 {
        vec![0x00, body.len() as u8]
    } else {
        let mut f = vec![0x02];
        f.extend_from_slice(&(body.len() as u64).to_be_bytes());
        f
    };
    f.extend_from_slice(body);
    f
}

/// One frame from the broker: (flags, body). Commands (PING, ...) have flag 0x04.
async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> std::io::Result<(u8, Vec<u8>)> {
    let flags = r.read_u8().await?;
    let len = if flags & 0x02 != 0 {
        r.read_u64().await?
    } else {
        u64::from(r.read_u8().await?)
    };
    let mut body = vec![0; len as usize];
    r.read_exact(&mut body).await?;
    Ok((flags, body))
}

/// A peer through the ZMTP handshake with the broker, as a DEALER. The broker may still be
/// starting: connecting is retried until it listens.
async fn zmtp_peer(port: u16) -> TcpStream {
    let deadline = Instant::now() + WAIT;
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("broker not listening: {e}"),
        }
    };
    s.write_all(&greeting()).await.unwrap();
    let mut theirs = [0u8; 64];
    s.read_exact(&mut theirs).await.unwrap();
    assert_eq!((theirs[0], theirs[9], theirs[10]), (0xff, 0x7f, 3), "a ZMTP 3 greeting");
    s.write_all(&ready()).await.unwrap();
    let (flags, body) = read_frame(&mut s).await.unwrap();
    assert!(flags & 0x04 != 0 && body.get(1..6) == Some(b"READY"), "READY expected");
    s
}

/// A broker process and one agent process per simulated server, with a state crossed from the
/// first server to the others (so the agents are live).
struct Setup {
    port: u16,
    broker: Proc,
    _agents: Vec<Proc>,
    sims: Vec<Sim>,
    /// Last: removed once the processes are gone.
    _dir: Dir,
}

impl Setup {
    async fn start(name: &str, servers: &[&str]) -> Setup {
        let dir = Dir::new(name);
        let port = free_port();
        let broker = Proc::start(
            &dir,
            "broker",
            &["broker", "-c", broker_config(&dir, port).to_str().unwrap()],
        );
        let mut sims = Vec::new();
        let mut agents = Vec::new();
        for (i, s) in servers.iter().enumerate() {
            let ext = format!("{}00", i + 1);
            let sim = Sim::start(SimConfig::pbx(s, &[&ext])).await.unwrap();
            let cfg = agent_config(&dir, s, port, &sim);
            agents.push(Proc::start(
                &dir,
                &format!("agent-{s}"),
                &["agent", "-c", cfg.to_str().unwrap()],
            ));
            sims.push(sim);
        }
        let setup = Setup {
            _dir: dir,
            port,
            broker,
            _agents: agents,
            sims,
        };
        if setup.sims.len() > 1 {
            setup.crosses(DeviceState::Inuse).await;
        }
        setup
    }

    /// `SIP/100` of the first server set to `state` reaches the second.
    async fn crosses(&self, state: DeviceState) {
        self.sims[0].set_device("SIP/100", state);
        assert!(
            wait_state(&self.sims[1], "Custom:SIP/100", state).await,
            "SIP/100 {state:?} did not cross; broker log:\n{}",
            self.broker.log_text()
        );
    }

    fn broker_lines(&self) -> usize {
        self.broker.log_text().lines().count()
    }

    /// Waits for a line of the broker's log that `pred` accepts.
    async fn broker_logs(&self, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.broker.log_text().lines().any(&pred) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// Waits for a message (not a command) from the broker whose text holds one of `words`.
async fn answer(r: &mut (impl AsyncRead + Unpin), words: &[&str]) {
    let wait = async {
        loop {
            let (flags, body) = read_frame(r).await.expect("connection kept");
            let body = String::from_utf8_lossy(&body);
            if flags & 0x04 == 0 && words.iter().any(|w| body.contains(w)) {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, wait).await.expect("the broker answered");
}

/// Defect 6: a peer announces an 8 GiB frame (plain text, before any hello) and streams it. The
/// broker's libzmq hangs up at the header (ZMQ_MAXMSGSIZE) instead of taking it in; the agents
/// are still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_announcing_an_8_gib_frame_is_disconnected() {
    let setup = Setup::start("maxmsgsize", &["a", "b"]).await;
    let mut peer = zmtp_peer(setup.port).await;
    let mut header = vec![0x02];
    header.extend_from_slice(&(8u64 << 30).to_be_bytes());
    peer.write_all(&header).await.unwrap();
    // Without the bound the broker reads (and holds) all of it, and every write succeeds.
    let chunk = vec![0u8; 1 << 20];
    let limit = 128 << 20;
    let mut sent = 0;
    while sent < limit {
        match tokio::time::timeout(WAIT, peer.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            Ok(Err(_)) => break,
            Err(_) => panic!("the broker neither read nor closed for {WAIT:?}"),
        }
    }
    assert!(
        sent < limit,
        "the broker took {sent} bytes of an 8 GiB frame without hanging up"
    );
    setup.crosses(DeviceState::Busy).await;
}

/// Defect 7: a peer that never says hello sends 300,000 garbage messages. They cost a bounded
/// number of log lines (one per second at most, with a count of the others), an honest agent's
/// update crosses meanwhile, and the broker still answers that peer within its allowance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_hello_costs_a_bounded_number_of_log_lines() {
    let setup = Setup::start("stranger-flood", &["a", "b"]).await;
    let before = setup.broker_lines();
    let (mut r, mut w) = zmtp_peer(setup.port).await.into_split();
    // Answers to the peer: a `not_welcome` one answers the probe sent after the flood, so
    // the broker has read the whole flood by then (one peer's messages stay in order).
    let answered = tokio::spawn(async move { answer(&mut r, &["not_welcome"]).await });
    let n = 300_000;
    let flood: Vec<u8> = (0..n).flat_map(|i| frame(format!("garbage {i}").as_bytes())).collect();
    let prober = tokio::spawn(async move {
        w.write_all(&flood).await.unwrap();
        // The probe may find the peer's allowance spent: sent again until answered.
        let probe = frame(br#"{"v":2,"type":"heartbeat"}"#);
        loop {
            if w.write_all(&probe).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    setup.crosses(DeviceState::Busy).await;
    answered.await.unwrap();
    prober.abort();
    let text = setup.broker.log_text();
    let added: Vec<&str> = text.lines().skip(before).collect();
    assert!(
        added.len() <= 20,
        "{} log lines for {n} garbage messages:\n{}",
        added.len(),
        added.iter().take(20).copied().collect::<Vec<_>>().join("\n")
    );
    assert!(added.iter().any(|l| l.contains("refused")), "{added:?}");
    // What was dropped unread is said once the peer's log period is over.
    assert!(
        setup
            .broker_logs(|l| l.contains("over its allowance") && !l.contains("dropped=0"))
            .await,
        "no summary of the flood:\n{}",
        setup.broker.log_text()
    );
}

/// Defect 7: peer text reaches the broker's log escaped. An error message, a hello's server and
/// a hello's software hold a newline that would start a forged log line, and an ANSI escape;
/// each comes from a peer of its own (one line per peer per second is logged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_text_cannot_forge_or_colour_log_lines() {
    let setup = Setup::start("log-injection", &["a"]).await;
    let evil = r#"x\nFAKE forged line \u001b[31mred"#;
    let messages = [
        format!(r#"{{"v":2,"type":"error","code":"bad_message","message":"{evil}"}}"#),
        format!(r#"{{"v":2,"type":"hello","server":"{evil}","instance":1,"software":"hb"}}"#),
        format!(r#"{{"v":2,"type":"hello","server":"evil","instance":1,"software":"{evil}"}}"#),
    ];
    for m in &messages {
        let (mut r, mut w) = zmtp_peer(setup.port).await.into_split();
        w.write_all(&frame(m.as_bytes())).await.unwrap();
        // Answered (not_welcome, or a snapshot if the hello was taken) once the above is handled.
        w.write_all(&frame(br#"{"v":2,"type":"snapshot_request"}"#))
            .await
            .unwrap();
        answer(&mut r, &["not_welcome", "snapshot"]).await;
    }
    let text = setup.broker.log_text();
    assert!(!text.contains('\x1b'), "raw escape in the log:\n{text}");
    assert!(text.lines().all(|l| !l.starts_with("FAKE")), "forged log line:\n{text}");
    let shown = text.lines().filter(|l| l.contains("FAKE forged line")).count();
    assert_eq!(shown, 3, "each peer text is shown, escaped, once:\n{text}");
}
