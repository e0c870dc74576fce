//! Two brokers, active-active: agents publish to both and apply what either brings (the
//! highest stamp wins), so either broker may die, under load, and no lamp notices.

mod common;

use ami::DeviceState;
use common::*;
use rand::Rng;
use sim::{Sim, SimConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SERVERS: [&str; 5] = ["a", "b", "c", "d", "e"];

/// Two phones per server, every server's hints on every server.
async fn five_servers() -> Vec<Sim> {
    let all: Vec<String> = SERVERS
        .iter()
        .enumerate()
        .flat_map(|(i, _)| [format!("{}00", i + 1), format!("{}01", i + 1)])
        .collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let mut sims = Vec::new();
    for (i, s) in SERVERS.iter().enumerate() {
        let own = [all[2 * i], all[2 * i + 1]];
        sims.push(Sim::start(SimConfig::federated(s, &own, &all)).await.unwrap());
    }
    sims
}

/// Fields drop in order: the processes before their directory.
struct Tier {
    agents: Vec<Proc>,
    brokers: [Proc; 2],
    ports: [u16; 2],
    dir: Dir,
}

impl Tier {
    fn start(name: &str, sims: &[Sim]) -> Tier {
        let dir = Dir::new(name);
        let ports = [free_port(), free_port()];
        let brokers = [Self::broker(&dir, ports, 0), Self::broker(&dir, ports, 1)];
        let agents = sims.iter().map(|s| Self::agent(&dir, ports, s)).collect();
        Tier {
            dir,
            ports,
            brokers,
            agents,
        }
    }

    fn broker(dir: &Dir, ports: [u16; 2], i: usize) -> Proc {
        let cfg = dir.write(
            &format!("broker{i}.ini"),
            &format!(
                "[broker]\nlisten = tcp://127.0.0.1:{}\nfeed = off\nheartbeat_ms = 200\nlost_after_ms = 1000\nlost_policy = unavailable\nname = b{i}\npeers = tcp://127.0.0.1:{}\n",
                ports[i],
                ports[1 - i]
            ),
        );
        Proc::start(dir, &format!("broker{i}"), &["broker", "-c", cfg.to_str().unwrap()])
    }

    fn agent(dir: &Dir, ports: [u16; 2], s: &Sim) -> Proc {
        let cfg = dir.write(
            &format!("agent-{}.ini", s.name()),
            &format!(
                "[agent]\nserver = {}\nbrokers = tcp://127.0.0.1:{}, tcp://127.0.0.1:{}\nheartbeat_ms = 200\nbroker_timeout_ms = 1000\n\n\
                 [ami]\nhost = 127.0.0.1\nport = {}\nusername = hintbus\nsecret = hintbus\nping_ms = 500\naction_timeout_ms = 2000\n",
                s.name(),
                ports[0],
                ports[1],
                s.port()
            ),
        );
        Proc::start(
            dir,
            &format!("agent-{}", s.name()),
            &["agent", "-c", cfg.to_str().unwrap()],
        )
    }

    fn restart_broker(&mut self, i: usize) {
        self.brokers[i].kill();
        self.brokers[i] = Self::broker(&self.dir, self.ports, i);
    }

    /// Until every agent says, in its log after byte `from`, that broker `i`'s snapshot came.
    async fn wait_all_joined(&self, froms: &[usize], i: usize) {
        let needle = format!("broker=tcp://127.0.0.1:{}", self.ports[i]);
        for (a, from) in self.agents.iter().zip(froms) {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let text = a.log_text();
                if text
                    .get(*from..)
                    .is_some_and(|t| t.lines().any(|l| l.contains("snapshot applied") && l.contains(&needle)))
                {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "{}", text);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    fn log_lens(&self) -> Vec<usize> {
        self.agents.iter().map(|a| a.log_text().len()).collect()
    }
}

/// Every Setvar of UNAVAILABLE onto a mirror, on any server.
fn unavailable_writes(sims: &[Sim]) -> Vec<String> {
    sims.iter()
        .flat_map(|s| {
            s.setvar_log()
                .into_iter()
                .filter(|(var, v)| var.starts_with("DEVICE_STATE(Custom:") && v == "UNAVAILABLE")
                .map(move |(var, _)| format!("{} wrote {var} UNAVAILABLE", s.name()))
        })
        .collect()
}

/// Random phone changes on every server until `stop`.
fn load(sims: &[Sim], stop: Arc<AtomicBool>, count: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    let sims = sims.to_vec();
    tokio::spawn(async move {
        let states = [
            DeviceState::Inuse,
            DeviceState::Ringing,
            DeviceState::NotInuse,
            DeviceState::Onhold,
        ];
        while !stop.load(Ordering::Relaxed) {
            let (si, p, st) = {
                let mut r = rand::thread_rng();
                (
                    r.gen_range(0..sims.len()),
                    r.gen_range(0..2),
                    states[r.gen_range(0..states.len())],
                )
            };
            sims[si].set_device(&format!("SIP/{}0{p}", si + 1), st);
            count.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn either_broker_may_die_under_load_and_no_lamp_notices() {
    let sims = five_servers().await;
    let mut tier = Tier::start("ha-kill", &sims);
    tier.wait_all_joined(&vec![0; sims.len()], 0).await;
    tier.wait_all_joined(&vec![0; sims.len()], 1).await;
    assert!(converge(&sims, WAIT).await.is_empty());
    let count = Arc::new(AtomicU64::new(0));
    // `n` changes under load, then the load stops and every mirror must equal its origin.
    let phase = |n: u64| {
        let (sims, count) = (sims.clone(), count.clone());
        async move {
            let stop = Arc::new(AtomicBool::new(false));
            let traffic = load(&sims, stop.clone(), count.clone());
            let until = count.load(Ordering::Relaxed) + n;
            while count.load(Ordering::Relaxed) < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            stop.store(true, Ordering::Relaxed);
            traffic.await.unwrap();
            converge(&sims, WAIT).await
        }
    };
    for i in [0, 1] {
        // Under load: broker i is killed; the other carries everything meanwhile.
        let stop = Arc::new(AtomicBool::new(false));
        let traffic = load(&sims, stop.clone(), count.clone());
        let at = count.load(Ordering::Relaxed) + 100;
        while count.load(Ordering::Relaxed) < at {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tier.brokers[i].kill();
        let left = phase(300).await;
        stop.store(true, Ordering::Relaxed);
        traffic.await.unwrap();
        assert!(left.is_empty(), "with broker {i} down: {left:?}");
        // It comes back, under load, and converges from its agents.
        let froms = tier.log_lens();
        tier.restart_broker(i);
        let left = phase(300).await;
        assert!(left.is_empty(), "while broker {i} came back: {left:?}");
        tier.wait_all_joined(&froms, i).await;
        let left = phase(100).await;
        assert!(left.is_empty(), "after broker {i} came back: {left:?}");
    }
    let dark = unavailable_writes(&sims);
    assert!(dark.is_empty(), "a lamp went dark: {dark:?}");
    report(&format!(
        "ha: {} changes with each broker killed and restarted in turn: none lost, no lamp UNAVAILABLE",
        count.load(Ordering::Relaxed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_brokers_restarted_at_once_converge() {
    let sims = five_servers().await;
    let mut tier = Tier::start("ha-both", &sims);
    tier.wait_all_joined(&vec![0; sims.len()], 1).await;
    assert!(converge(&sims, WAIT).await.is_empty());
    let froms = tier.log_lens();
    tier.brokers[0].kill();
    tier.brokers[1].kill();
    // Changes while no broker runs, then both back at once.
    sims[0].set_device("SIP/100", DeviceState::Busy);
    sims[3].set_device("SIP/401", DeviceState::Ringing);
    tier.restart_broker(0);
    tier.restart_broker(1);
    tier.wait_all_joined(&froms, 0).await;
    tier.wait_all_joined(&froms, 1).await;
    let left = converge(&sims, WAIT).await;
    assert!(left.is_empty(), "{left:?}");
    assert!(wait_state(&sims[1], "Custom:SIP/100", DeviceState::Busy).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_loses_every_broker_shows_unavailable_until_one_is_back() {
    let sims = five_servers().await;
    let mut tier = Tier::start("ha-dark", &sims[..2]);
    tier.wait_all_joined(&[0, 0], 1).await;
    sims[0].set_device("SIP/100", DeviceState::Inuse);
    assert!(wait_state(&sims[1], "Custom:SIP/100", DeviceState::Inuse).await);
    tier.brokers[0].kill();
    tier.brokers[1].kill();
    // Frozen lamps would lie: after broker_timeout they read UNAVAILABLE.
    assert!(wait_state(&sims[1], "Custom:SIP/100", DeviceState::Unavailable).await);
    let froms = tier.log_lens();
    tier.restart_broker(1);
    tier.wait_all_joined(&froms, 1).await;
    assert!(wait_state(&sims[1], "Custom:SIP/100", DeviceState::Inuse).await);
}

/// Brokers peered both ways; agent a reaches only broker 0, agent b only broker 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_split_still_federates_through_peered_brokers() {
    let sims = five_servers().await;
    let dir = Dir::new("ha-split");
    let ports = [free_port(), free_port()];
    let broker = |i: usize| Tier::broker(&dir, ports, i);
    let _brokers = [broker(0), broker(1)];
    let mut a = start_agent(&dir, ports[0], &sims[0]);
    let _b = start_agent(&dir, ports[1], &sims[1]);
    sims[0].set_device("SIP/100", DeviceState::Inuse);
    sims[1].set_device("SIP/201", DeviceState::Ringing);
    assert!(
        wait_state(&sims[1], "Custom:SIP/100", DeviceState::Inuse).await,
        "a -> broker 0 -> broker 1 -> b"
    );
    assert!(
        wait_state(&sims[0], "Custom:SIP/201", DeviceState::Ringing).await,
        "b -> broker 1 -> broker 0 -> a"
    );
    // A later change of b's crosses too.
    sims[1].set_device("SIP/200", DeviceState::Busy);
    assert!(wait_state(&sims[0], "Custom:SIP/200", DeviceState::Busy).await);
    // a is lost by broker 0, which no one else hears it through: b's lamp of a goes dark.
    a.kill();
    assert!(wait_state(&sims[1], "Custom:SIP/100", DeviceState::Unavailable).await);
}

/// A TCP relay the test can cut: the way to make one broker lose an agent another still hears.
struct Relay {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(to: u16) -> Relay {
        Self::start_on(0, to).await.expect("a free port")
    }

    /// On `port` (0: any); None while that port cannot be bound yet.
    async fn start_on(port: u16, to: u16) -> Option<Relay> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.ok()?;
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Some(Relay { port, task })
    }

    /// Cut: every connection through it, and the listener.
    fn cut(self) {
        self.task.abort();
    }
}

/// Agent c reaches both brokers; broker 0 loses it (its relay is cut) while broker 1 still
/// hears it: no lamp of c goes dark, at a (broker 0 only) or at b (broker 1 only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broker_losing_an_agent_another_still_hears_changes_nothing() {
    let sims = five_servers().await;
    let dir = Dir::new("ha-heard");
    let ports = [free_port(), free_port()];
    let broker = |i: usize| Tier::broker(&dir, ports, i);
    let brokers = [broker(0), broker(1)];
    let relay = Relay::start(ports[0]).await;
    let _a = start_agent(&dir, ports[0], &sims[0]);
    let _b = start_agent(&dir, ports[1], &sims[1]);
    let _c = Tier::agent(&dir, [relay.port, ports[1]], &sims[2]);
    sims[2].set_device("SIP/300", DeviceState::Inuse);
    assert!(wait_state(&sims[0], "Custom:SIP/300", DeviceState::Inuse).await);
    assert!(wait_state(&sims[1], "Custom:SIP/300", DeviceState::Inuse).await);
    // c has its session at broker 0 too (through the relay) before the relay is cut.
    assert!(brokers[0].wait_log(0, "agent joined server=c").await.is_some());
    relay.cut();
    assert!(
        brokers[0].wait_log(0, "a peer broker still hears it").await.is_some(),
        "{}",
        brokers[0].log_text()
    );
    // A later change of c crosses (through broker 1, and broker 1 to 0), then nothing went dark.
    sims[2].set_device("SIP/301", DeviceState::Ringing);
    assert!(wait_state(&sims[0], "Custom:SIP/301", DeviceState::Ringing).await);
    assert!(wait_state(&sims[1], "Custom:SIP/301", DeviceState::Ringing).await);
    let dark = unavailable_writes(&sims);
    assert!(dark.is_empty(), "{dark:?}");
}

/// CURVE everywhere: each broker's key allowed by the other (named as it names itself), each
/// agent on its own broker only: states cross both ways through the peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peered_brokers_speak_curve() {
    let sims = five_servers().await;
    let dir = Dir::new("ha-curve");
    let keys: Vec<String> = ["b0", "b1", "a", "b"].iter().map(|n| keygen(&dir, n)).collect();
    let ports = [free_port(), free_port()];
    let broker = |i: usize| {
        let key = dir.0.join(format!("b{i}.key"));
        let cfg = dir.write(
            &format!("broker{i}.ini"),
            &format!(
                "[broker]\nlisten = tcp://127.0.0.1:{}\nfeed = off\nheartbeat_ms = 200\nlost_after_ms = 1000\nname = b{i}\n\
                 peers = tcp://127.0.0.1:{}\npeer_public_key = {}\nsecret_key_file = {}\n\n[agents]\nb{} = {}\na = {}\nb = {}\n",
                ports[i],
                ports[1 - i],
                keys[1 - i],
                key.display(),
                1 - i,
                keys[1 - i],
                keys[2],
                keys[3]
            ),
        );
        Proc::start(&dir, &format!("broker{i}"), &["broker", "-c", cfg.to_str().unwrap()])
    };
    let _brokers = [broker(0), broker(1)];
    let agent = |i: usize| {
        let s = &sims[i];
        let cfg = dir.write(
            &format!("agent-{}.ini", s.name()),
            &format!(
                "[agent]\nserver = {}\nbroker = tcp://127.0.0.1:{}\nsecret_key_file = {}\nbroker_public_key = {}\nheartbeat_ms = 200\nbroker_timeout_ms = 1000\n\n[ami]\nport = {}\nsecret = hintbus\n",
                s.name(),
                ports[i],
                dir.0.join(format!("{}.key", s.name())).display(),
                keys[i],
                s.port()
            ),
        );
        Proc::start(
            &dir,
            &format!("agent-{}", s.name()),
            &["agent", "-c", cfg.to_str().unwrap()],
        )
    };
    let _agents = [agent(0), agent(1)];
    sims[0].set_device("SIP/100", DeviceState::Busy);
    assert!(
        wait_state(&sims[1], "Custom:SIP/100", DeviceState::Busy).await,
        "a -> b0 -> b1 -> b over CURVE"
    );
    sims[1].set_device("SIP/200", DeviceState::Inuse);
    assert!(wait_state(&sims[0], "Custom:SIP/200", DeviceState::Inuse).await);
}

/// Broker 0 reaches broker 1 through a relay the test cuts: broker 0 takes a (only on broker 1)
/// for lost, and when the link is back a's real states lift the marks at broker 0's agents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_mark_made_during_a_peer_outage_is_lifted_when_the_peer_is_back() {
    let sims = five_servers().await;
    let dir = Dir::new("ha-heal");
    let ports = [free_port(), free_port()];
    let relay = Relay::start(ports[1]).await;
    let relay_port = relay.port;
    let cfg = |i: usize, peer: u16| {
        dir.write(
            &format!("broker{i}.ini"),
            &format!(
                "[broker]\nlisten = tcp://127.0.0.1:{}\nfeed = off\nheartbeat_ms = 200\nlost_after_ms = 1000\nname = b{i}\npeers = tcp://127.0.0.1:{peer}\n",
                ports[i]
            ),
        )
    };
    let c0 = cfg(0, relay_port);
    let c1 = cfg(1, ports[0]);
    let _b0 = Proc::start(&dir, "broker0", &["broker", "-c", c0.to_str().unwrap()]);
    let _b1 = Proc::start(&dir, "broker1", &["broker", "-c", c1.to_str().unwrap()]);
    let _a = start_agent(&dir, ports[1], &sims[0]);
    let _b = start_agent(&dir, ports[0], &sims[1]);
    sims[0].set_device("SIP/100", DeviceState::Inuse);
    assert!(wait_state(&sims[1], "Custom:SIP/100", DeviceState::Inuse).await);
    relay.cut();
    // Broker 0 no longer hears a through anyone: b's lamp of a goes dark.
    assert!(wait_state(&sims[1], "Custom:SIP/100", DeviceState::Unavailable).await);
    // The link comes back on the same port; a's state has not changed meanwhile.
    let relay = loop {
        let r = Relay::start_on(relay_port, ports[1]).await;
        if let Some(r) = r {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        wait_state(&sims[1], "Custom:SIP/100", DeviceState::Inuse).await,
        "the mark was not lifted"
    );
    relay.cut();
}
