//! `hintbus bench`: the federation under load, with the broker and one agent per server as
//! real processes, against simulated Asterisk servers in this process.
//!
//! Prints delivered Setvars/s, coalescing, divergent keys after the load stops, latency from
//! a phone's state change to the Setvar of its mirror on another server, and the CPU and RSS of
//! the broker and the agents. `HINTBUS_BENCH_WRITETIMEOUT_MS` changes the simulated servers'
//! `writetimeout` (100 ms, as Asterisk), to tell starvation drops from other causes.

use ami::DeviceState;
use clap::Args;
use rand::Rng;
use sim::{Sim, SimConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct BenchArgs {
    /// Simulated servers (each with its own agent process).
    #[arg(long, default_value_t = 10)]
    servers: usize,
    /// Phone state changes per second, offered across all servers.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Phones per server.
    #[arg(long, default_value_t = 50)]
    phones: usize,
    /// Seconds to wait, after the load, for every mirror to equal its origin.
    #[arg(long, default_value_t = 30)]
    pub(super) settle: u64,
    /// WebSocket clients on the broker's /api/ws during the load, with a feed subscriber and a
    /// metrics scrape every second (0: the broker's HTTP listener and feed are off).
    #[arg(long, default_value_t = 0)]
    observers: usize,
    /// Brokers (1 or 2): with 2, peered, every agent on both, and broker 1 is killed halfway
    /// through the load (the failover figure).
    #[arg(long, default_value_t = 1)]
    brokers: usize,
    /// Memory mode instead of the load: one server holding this many devices (and a tenth as
    /// many presentities) mirrored on another, then a third agent joins (see bench_devices).
    #[arg(long)]
    devices: Option<usize>,
}

/// When each phone last changed, and to what: a mirror's Setvar is timed against it.
type Changes = Mutex<HashMap<String, (Instant, DeviceState)>>;

struct ProcStat {
    pid: u32,
    cpu_ticks: u64,
}

pub(super) fn cpu_ticks(pid: u32) -> u64 {
    stat_ticks(&format!("/proc/{pid}/stat"))
}

/// User and system CPU ticks from a `/proc/.../stat` file (a process's, or one thread's).
pub(super) fn stat_ticks(path: &str) -> u64 {
    let Ok(s) = std::fs::read_to_string(path) else {
        return 0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

pub(super) fn rss_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

pub(super) fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A fresh directory for the configuration files of one run.
pub(super) fn bench_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("hintbus-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A free loopback port for the broker, below the ephemeral range: 50 agents' outgoing
/// connections must not take it.
pub(super) fn free_port() -> u16 {
    loop {
        let p = rand::thread_rng().gen_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            break p;
        }
    }
}

/// The broker, as a process of this binary, listening on `port`; without a feed and an HTTP
/// listener unless `observed` gives their ports.
pub(super) fn spawn_broker(dir: &Path, port: u16, observed: Option<(u16, u16)>) -> anyhow::Result<Child> {
    spawn_broker_with(dir, "broker", port, observed, "")
}

/// [`spawn_broker`] with its own file name and more `[broker]` keys (a peer's).
fn spawn_broker_with(
    dir: &Path,
    name: &str,
    port: u16,
    observed: Option<(u16, u16)>,
    more: &str,
) -> anyhow::Result<Child> {
    let cfg = dir.join(format!("{name}.ini"));
    let (feed, http) = match observed {
        Some((feed, http)) => (format!("tcp://127.0.0.1:{feed}"), format!("127.0.0.1:{http}")),
        None => ("off".into(), "off".into()),
    };
    std::fs::write(
        &cfg,
        format!("[broker]\nlisten = tcp://127.0.0.1:{port}\nfeed = {feed}\n{more}[http]\nlisten = {http}\n"),
    )?;
    Ok(Command::new(std::env::current_exe()?)
        .args(["broker", "-c", cfg.to_str().unwrap_or_default()])
        .env("HINTBUS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?)
}

/// The agent of `sim`, as a process of this binary, its log at `log` going to `stderr`.
pub(super) fn spawn_agent(dir: &Path, port: u16, sim: &Sim, stderr: Stdio, log: &str) -> anyhow::Result<Child> {
    spawn_agent_of(dir, &[port], sim, stderr, log)
}

/// [`spawn_agent`] with every broker of `ports`.
fn spawn_agent_of(dir: &Path, ports: &[u16], sim: &Sim, stderr: Stdio, log: &str) -> anyhow::Result<Child> {
    let brokers: Vec<String> = ports.iter().map(|p| format!("tcp://127.0.0.1:{p}")).collect();
    let brokers = brokers.join(", ");
    let cfg = dir.join(format!("{}.ini", sim.name()));
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nserver = {}\nbrokers = {brokers}\n[ami]\nport = {}\nsecret = hintbus\n[http]\nlisten = off\n",
            sim.name(),
            sim.port()
        ),
    )?;
    Ok(Command::new(std::env::current_exe()?)
        .args(["agent", "-c", cfg.to_str().unwrap_or_default()])
        .env("HINTBUS_LOG", log)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()?)
}

pub(super) struct Kids(pub(super) Vec<Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        // The agents before the broker: they would log its going away.
        for c in self.0.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(n) = args.devices {
        return super::bench_devices::run(n, args.settle).await;
    }
    anyhow::ensure!(args.servers >= 2, "--servers must be at least 2");
    anyhow::ensure!(
        args.rate > 0 && args.duration > 0 && args.phones > 0,
        "--rate, --duration and --phones must be positive"
    );
    let k = args.servers;
    let dir = bench_dir()?;
    let port = free_port();

    let changes: Arc<Changes> = Arc::new(Mutex::new(HashMap::new()));
    let latencies: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(Vec::new()));
    let delivered = Arc::new(AtomicU64::new(0));
    // With two brokers: when each Setvar came, for the longest gap after a broker's kill.
    let deliveries: Option<Arc<Mutex<Vec<Instant>>>> = (args.brokers == 2).then(Default::default);
    let mut sims = Vec::new();
    for i in 0..k {
        let own: Vec<String> = (0..args.phones).map(|p| format!("{i}x{p}")).collect();
        let own: Vec<&str> = own.iter().map(String::as_str).collect();
        let mut cfg = SimConfig::pbx(&format!("s{i}"), &own);
        cfg.hints.clear(); // no hint processing: the benchmark measures hintbus, not the simulator
        if let Some(ms) = std::env::var("HINTBUS_BENCH_WRITETIMEOUT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            cfg.write_timeout = Duration::from_millis(ms);
        }
        let sim = Sim::start(cfg).await?;
        let (changes, latencies, delivered) = (changes.clone(), latencies.clone(), delivered.clone());
        let deliveries = deliveries.clone();
        sim.with_world(move |w| {
            w.log_setvars = false;
            w.setvar_hook = Some(Arc::new(move |var: &str, value: &str| {
                let Some(dev) = var
                    .strip_prefix("DEVICE_STATE(Custom:")
                    .and_then(|v| v.strip_suffix(')'))
                else {
                    return;
                };
                delivered.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                if let Some(d) = &deliveries {
                    d.lock().expect("deliveries").push(now);
                }
                if let Some((t, s)) = changes.lock().expect("changes").get(dev) {
                    if s.as_str() == value {
                        let us = now.duration_since(*t).as_micros().min(u32::MAX as u128) as u32;
                        latencies.lock().expect("latencies").push(us);
                    }
                }
            }));
        });
        sims.push(sim);
    }

    let observed = (args.observers > 0).then(|| (free_port(), free_port()));
    anyhow::ensure!((1..=2).contains(&args.brokers), "--brokers must be 1 or 2");
    let ports: Vec<u16> = std::iter::once(port)
        .chain((1..args.brokers).map(|_| free_port()))
        .collect();
    let peer = |other: u16, me: &str| format!("name = {me}\npeers = tcp://127.0.0.1:{other}\n");
    let mut kids = Kids(vec![match args.brokers {
        2 => spawn_broker_with(&dir, "broker", ports[0], observed, &peer(ports[1], "b0"))?,
        _ => spawn_broker(&dir, port, observed)?,
    }]);
    if args.brokers == 2 {
        kids.0.push(spawn_broker_with(
            &dir,
            "broker1",
            ports[1],
            None,
            &peer(ports[0], "b1"),
        )?);
    }
    for s in &sims {
        kids.0.push(spawn_agent_of(&dir, &ports, s, Stdio::inherit(), "warn")?);
    }
    let observers = match observed {
        Some((feed, http)) => Some(
            super::bench_observers::Observers::start(
                args.observers,
                &format!("127.0.0.1:{http}"),
                &format!("tcp://127.0.0.1:{feed}"),
            )
            .await?,
        ),
        None => None,
    };

    // Warm-up: every server's first phone seen everywhere.
    for (i, s) in sims.iter().enumerate() {
        s.set_device(&format!("SIP/{i}x0"), DeviceState::Inuse);
    }
    let ready = Instant::now();
    while divergent(&sims, args.phones) > 0 {
        anyhow::ensure!(
            ready.elapsed() < Duration::from_secs(60),
            "federation did not come up within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    latencies.lock().expect("latencies").clear();
    delivered.store(0, Ordering::Relaxed);

    let tck = clk_tck();
    let procs: Vec<ProcStat> = kids
        .0
        .iter()
        .map(|c| ProcStat {
            pid: c.id(),
            cpu_ticks: cpu_ticks(c.id()),
        })
        .collect();
    let self_before = cpu_ticks(std::process::id());
    let started = Instant::now();
    let total = args.rate * args.duration;
    let mut sent = 0u64;
    let states = [
        DeviceState::NotInuse,
        DeviceState::Ringing,
        DeviceState::Inuse,
        DeviceState::Onhold,
    ];
    let mut current: HashMap<String, usize> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut killed_at = None;
    while sent < total {
        tick.tick().await;
        if args.brokers == 2 && killed_at.is_none() && sent >= total / 2 {
            // Broker 1 (the peer) dies under load: SIGKILL, nothing said to anyone.
            let _ = kids.0[1].kill();
            killed_at = Some(Instant::now());
        }
        let due = ((started.elapsed().as_secs_f64() * args.rate as f64) as u64).min(total);
        while sent < due {
            let (si, p) = {
                let mut rng = rand::thread_rng();
                (rng.gen_range(0..k), rng.gen_range(0..args.phones))
            };
            let dev = format!("SIP/{si}x{p}");
            let next = (current.get(&dev).copied().unwrap_or(0) + 1) % states.len();
            current.insert(dev.clone(), next);
            changes
                .lock()
                .expect("changes")
                .insert(dev.clone(), (Instant::now(), states[next]));
            sims[si].set_device(&dev, states[next]);
            sent += 1;
        }
    }
    let load_secs = started.elapsed().as_secs_f64();
    let delivered_during = delivered.load(Ordering::Relaxed);
    // Quiescence: the mirrors catch up (coalescing allowed), or what is left is lost.
    let settle = Instant::now();
    let mut left = divergent(&sims, args.phones);
    let mut last_report = Instant::now();
    while left > 0 && settle.elapsed() < Duration::from_secs(args.settle) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = divergent(&sims, args.phones);
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  settling: {left} divergent after {:.0} s",
                settle.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let delivered_total = delivered.load(Ordering::Relaxed);
    let expected = sent * (k as u64 - 1);
    let mut lat = std::mem::take(&mut *latencies.lock().expect("latencies"));
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0
        }
    };

    let cpu = |i: usize| (cpu_ticks(procs[i].pid).saturating_sub(procs[i].cpu_ticks)) as f64 / tck / wall * 100.0;
    let nb = args.brokers;
    // A killed broker's ticks are gone with it: counted up to its kill they would need
    // sampling; its share is left out and said so.
    let broker_cpu = cpu(0);
    let agent_cpu: f64 = (nb..procs.len()).map(cpu).sum();
    let agent_rss: Vec<u64> = procs[nb..].iter().map(|p| rss_kb(p.pid, "VmHWM:")).collect();
    let self_cpu = (cpu_ticks(std::process::id()) - self_before) as f64 / tck / wall * 100.0;

    println!(
        "K={k} R={}/s D={}s phones={}/server: offered {sent} changes ({:.0}/s), {expected} mirror updates owed",
        args.rate,
        args.duration,
        args.phones,
        sent as f64 / load_secs
    );
    println!(
        "  delivered {delivered_total} Setvars ({:.0}/s during load), coalesced {} ({:.1}%), divergent keys at end: {left} (settled in {:.2} s)",
        delivered_during as f64 / load_secs,
        expected.saturating_sub(delivered_total),
        expected.saturating_sub(delivered_total) as f64 * 100.0 / expected.max(1) as f64,
        settle.elapsed().as_secs_f64()
    );
    println!(
        "  latency change->Setvar: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (n={})",
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(0) as f64 / 1000.0,
        lat.len()
    );
    println!(
        "  broker: CPU {broker_cpu:.0}%  RSS peak {:.1} MB | agents ({}): CPU {agent_cpu:.0}% total  RSS peak avg {:.1} MB max {:.1} MB | simulators+load (this process): CPU {self_cpu:.0}%",
        rss_kb(procs[0].pid, "VmHWM:") as f64 / 1024.0,
        k,
        agent_rss.iter().sum::<u64>() as f64 / agent_rss.len().max(1) as f64 / 1024.0,
        agent_rss.iter().copied().max().unwrap_or(0) as f64 / 1024.0
    );
    if let (Some(at), Some(d)) = (killed_at, &deliveries) {
        let mut d = d.lock().expect("deliveries").clone();
        d.sort_unstable();
        let window = |t: &Instant| *t >= at && t.duration_since(at) < Duration::from_secs(2);
        let after: Vec<Instant> = d.iter().copied().filter(window).collect();
        let first = after.first().map(|t| t.duration_since(at));
        let gap = after
            .windows(2)
            .map(|w| w[1].duration_since(w[0]))
            .max()
            .unwrap_or_default();
        let before_gap = d
            .iter()
            .filter(|t| **t < at && at.duration_since(**t) < Duration::from_secs(2))
            .copied()
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1].duration_since(w[0]))
            .max()
            .unwrap_or_default();
        println!(
            "  failover: broker 1 SIGKILLed halfway (CPU above is broker 0's); first Setvar {:.2} ms after the kill; longest gap between Setvars in the 2 s after it {:.2} ms (in the 2 s before: {:.2} ms)",
            first.unwrap_or_default().as_secs_f64() * 1000.0,
            gap.as_secs_f64() * 1000.0,
            before_gap.as_secs_f64() * 1000.0
        );
    }
    if let Some(o) = observers {
        let s = o.seen.clone();
        o.stop().await;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        println!(
            "  observers: {} WebSocket clients got {} messages ({} entries, {} tables); the feed subscriber {} messages; {} scrapes of /metrics",
            args.observers,
            get(&s.ws_messages),
            get(&s.ws_entries),
            get(&s.ws_tables),
            get(&s.feed),
            get(&s.scrapes)
        );
    }
    if left > 0 {
        for line in divergent_keys(&sims, args.phones, 5).1 {
            println!("  divergent: {line}");
        }
    }
    drop(kids);
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(left == 0, "{left} mirrors never converged");
    Ok(())
}

/// Mirrors (in the device cache) that differ from their origin's phone.
fn divergent(sims: &[Sim], phones: usize) -> usize {
    divergent_keys(sims, phones, 0).0
}

/// The count, and up to `show` of them described.
fn divergent_keys(sims: &[Sim], phones: usize, show: usize) -> (usize, Vec<String>) {
    let mut n = 0;
    let mut shown = Vec::new();
    for (i, origin) in sims.iter().enumerate() {
        let states: Vec<DeviceState> = (0..phones)
            .map(|p| origin.device_state(&format!("SIP/{i}x{p}")))
            .collect();
        for other in sims.iter().filter(|s| s.name() != origin.name()) {
            other.with_world(|w| {
                for (p, want) in states.iter().enumerate() {
                    let got = w.devices.get(&format!("Custom:SIP/{i}x{p}"));
                    if got != Some(want) {
                        n += 1;
                        if shown.len() < show {
                            shown.push(format!(
                                "{} shows Custom:SIP/{i}x{p} = {got:?}, {} has {want:?}",
                                w.config.name,
                                origin.name()
                            ));
                        }
                    }
                }
            });
        }
    }
    (n, shown)
}
