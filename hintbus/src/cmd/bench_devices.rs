//! `hintbus bench --devices N`: memory per device, and how long a joining agent takes to get
//! the whole table.
//!
//! Server s0 holds N devices `SIP/<i>` (a mix of states) and N/10 presentities; s1's agent
//! mirrors them all. Once s1 shows every mirror, the memory of the broker and of s1's agent is
//! read from /proc; then the agent of a third server, s2, is started and timed until it has
//! the whole snapshot applied, and until s2 shows every mirror. The broker and the agents are
//! processes of this binary; each simulated server runs on a thread of its own, whose CPU time
//! says whether it, rather than hintbus, set the pace.

use super::bench::{bench_dir, clk_tck, cpu_ticks, free_port, rss_kb, spawn_agent, spawn_broker, stat_ticks, Kids};
use ami::DeviceState;
use sim::hints::PresenceValue;
use sim::{Sim, SimConfig};
use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The states of the devices of s0, in turn: mostly idle, as on a real PBX.
const MIX: [DeviceState; 10] = [
    DeviceState::NotInuse,
    DeviceState::NotInuse,
    DeviceState::NotInuse,
    DeviceState::NotInuse,
    DeviceState::Inuse,
    DeviceState::Inuse,
    DeviceState::Busy,
    DeviceState::Ringing,
    DeviceState::Onhold,
    DeviceState::Unavailable,
];

/// Presence of s0's presentities, in turn (`state,subtype,message` as func_presencestate takes it).
const PRESENCE: [&str; 4] = [
    "available,,",
    "away,lunch,back soon",
    "dnd,,in a meeting",
    "xa,,on holiday until Monday",
];

/// Above this share of the window, a simulated server's thread was the bottleneck.
const SIM_BUSY: f64 = 0.9;

/// A simulated server on a thread (and runtime) of its own, so that its CPU time is its own.
struct SimThread {
    sim: Sim,
    tid: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimThread {
    fn start(cfg: SimConfig) -> anyhow::Result<SimThread> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("sim-{}", cfg.name))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => return drop(tx.send(Err(anyhow::anyhow!("runtime: {e}")))),
                };
                rt.block_on(async move {
                    // `/proc/thread-self` links to `<pid>/task/<tid>`.
                    let tid = std::fs::read_link("/proc/thread-self")
                        .ok()
                        .and_then(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
                        .unwrap_or_default();
                    match Sim::start(cfg).await {
                        Ok(sim) => {
                            let _ = tx.send(Ok((sim.clone(), tid)));
                            let _ = stopped.await;
                            sim.stop();
                        }
                        Err(e) => drop(tx.send(Err(e.into()))),
                    }
                });
            })?;
        let (sim, tid) = rx.recv()??;
        Ok(SimThread {
            sim,
            tid,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn cpu_ticks(&self) -> u64 {
        stat_ticks(&format!("/proc/self/task/{}/stat", self.tid))
    }
}

impl Drop for SimThread {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a mirror must show on a receiving server.
enum Want {
    Device(&'static str),
    Presence(PresenceValue),
}

/// Which mirrors a receiving server shows right, from the Setvars it receives: the moment the
/// last one becomes right is when it has converged (no polling of a 100,000-entry cache).
#[derive(Default)]
struct Tracker {
    /// By Setvar variable (`DEVICE_STATE(Custom:SIP/1)`): the value wanted, and whether the
    /// last Setvar of it wrote that.
    want: HashMap<String, (Want, bool)>,
    right: usize,
    setvars: u64,
    first: Option<Instant>,
    done: Option<Instant>,
}

impl Tracker {
    fn new(n: usize, presentities: usize) -> Tracker {
        let mut want = HashMap::with_capacity(n + presentities);
        for i in 0..n {
            let state = MIX[i % MIX.len()].as_str();
            want.insert(format!("DEVICE_STATE(Custom:SIP/{i})"), (Want::Device(state), false));
        }
        for i in 0..presentities {
            let value = sim::world::parse_presence(PRESENCE[i % PRESENCE.len()]).expect("valid presence");
            want.insert(
                format!("PRESENCE_STATE(CustomPresence:p{i})"),
                (Want::Presence(value), false),
            );
        }
        Tracker {
            want,
            ..Tracker::default()
        }
    }

    fn setvar(&mut self, var: &str, value: &str) {
        let now = Instant::now();
        self.setvars += 1;
        self.first.get_or_insert(now);
        let Some((want, right)) = self.want.get_mut(var) else {
            return;
        };
        let ok = match want {
            Want::Device(s) => *s == value,
            Want::Presence(p) => sim::world::parse_presence(value).as_ref() == Some(p),
        };
        match (*right, ok) {
            (false, true) => self.right += 1,
            (true, false) => self.right -= 1,
            _ => {}
        }
        *right = ok;
        if self.right == self.want.len() {
            self.done.get_or_insert(now);
        } else {
            self.done = None;
        }
    }

    /// Installs the tracker on `sim`.
    fn watch(sim: &Sim, n: usize, presentities: usize) -> Arc<Mutex<Tracker>> {
        let t = Arc::new(Mutex::new(Tracker::new(n, presentities)));
        let hook = t.clone();
        sim.with_world(move |w| {
            w.log_setvars = false;
            w.setvar_hook = Some(Arc::new(move |var: &str, value: &str| {
                hook.lock().expect("tracker").setvar(var, value)
            }));
        });
        t
    }
}

/// A simulated server without phones and without hints (hint processing would measure the
/// simulator, not hintbus).
fn empty_server(name: &str) -> SimConfig {
    let mut cfg = SimConfig::pbx(name, &[]);
    cfg.hints.clear();
    cfg
}

/// Waits until `tracker` says its server shows every mirror; None after `limit`.
async fn converged(tracker: &Mutex<Tracker>, label: &str, limit: Duration) -> Option<(Instant, Instant, u64)> {
    let start = Instant::now();
    let mut said = Instant::now();
    loop {
        {
            let t = tracker.lock().expect("tracker");
            if let (Some(first), Some(done)) = (t.first, t.done) {
                return Some((first, done, t.setvars));
            }
            if said.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "  {label}: {} of {} mirrors right, {} Setvars so far",
                    t.right,
                    t.want.len(),
                    t.setvars
                );
                said = Instant::now();
            }
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// CPU use over a window, as a share of one core.
struct Cpu {
    tck: f64,
    at: Instant,
    procs: Vec<(u32, u64)>,
    sims: Vec<u64>,
}

impl Cpu {
    fn start(procs: &[&Child], sims: &[&SimThread]) -> Cpu {
        Cpu {
            tck: clk_tck(),
            at: Instant::now(),
            procs: procs.iter().map(|c| (c.id(), cpu_ticks(c.id()))).collect(),
            sims: sims.iter().map(|s| s.cpu_ticks()).collect(),
        }
    }

    /// (processes, simulated servers), each a share of one core since start, up to `end`.
    fn shares(&self, sims: &[&SimThread], end: Instant) -> (Vec<f64>, Vec<f64>) {
        let secs = end.duration_since(self.at).as_secs_f64().max(1e-3) * self.tck;
        let procs = self
            .procs
            .iter()
            .map(|(pid, t0)| cpu_ticks(*pid).saturating_sub(*t0) as f64 / secs)
            .collect();
        let sims = sims
            .iter()
            .zip(&self.sims)
            .map(|(s, t0)| s.cpu_ticks().saturating_sub(*t0) as f64 / secs)
            .collect();
        (procs, sims)
    }
}

fn mb(pid: u32, field: &str) -> f64 {
    rss_kb(pid, field) as f64 / 1024.0
}

/// "RSS 41.2 MB (peak 55.0 MB)".
fn memory(pid: u32) -> String {
    format!("RSS {:.1} MB (peak {:.1} MB)", mb(pid, "VmRSS:"), mb(pid, "VmHWM:"))
}

/// The moments the agent said it started and applied a snapshot of `entries` entries, from
/// its log (read on a thread: the agent must never block on its stderr).
fn watch_log(child: &mut Child, entries: usize) -> std::sync::mpsc::Receiver<(&'static str, Instant)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let Some(stderr) = child.stderr.take() else {
        return rx;
    };
    std::thread::spawn(move || {
        let whole = format!("entries={entries} ");
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let now = Instant::now();
            if line.contains("agent starting") {
                let _ = tx.send(("started", now));
            } else if line.contains("snapshot applied") && line.contains(&whole) {
                let _ = tx.send(("snapshot", now));
            } else if line.contains(" WARN ") || line.contains("ERROR") {
                eprintln!("  joining agent: {line}");
            }
        }
    });
    rx
}

/// When the process `pid` has used no CPU for half a second (it is done with what it was
/// doing): the moment its last work ended.
async fn idle(pid: u32, limit: Duration) -> Instant {
    let start = Instant::now();
    let (mut ticks, mut last) = (cpu_ticks(pid), Instant::now());
    while start.elapsed() < limit && last.elapsed() < Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = cpu_ticks(pid);
        if now != ticks {
            (ticks, last) = (now, Instant::now());
        }
    }
    last
}

fn secs(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}

pub async fn run(n: usize, settle: u64) -> anyhow::Result<()> {
    anyhow::ensure!(n > 0, "--devices must be positive");
    let presentities = n / 10;
    let total = n + presentities;
    let limit = Duration::from_secs(settle.max(60) + n as u64 / 1000);
    let dir = bench_dir()?;
    let port = free_port();

    let mut cfg = empty_server("s0");
    cfg.devices = (0..n).map(|i| (format!("SIP/{i}"), MIX[i % MIX.len()])).collect();
    let origin = SimThread::start(cfg)?;
    origin.sim.with_world(|w| {
        for i in 0..presentities {
            w.write_custom_presence(&format!("CustomPresence:p{i}"), PRESENCE[i % PRESENCE.len()]);
        }
    });
    let receiver = SimThread::start(empty_server("s1"))?;
    let joiner = SimThread::start(empty_server("s2"))?;
    let received = Tracker::watch(&receiver.sim, n, presentities);
    let joined = Tracker::watch(&joiner.sim, n, presentities);

    let mut kids = Kids(vec![spawn_broker(&dir, port, None)?]);
    let start = Instant::now();
    kids.0
        .push(spawn_agent(&dir, port, &origin.sim, Stdio::inherit(), "warn")?);
    kids.0
        .push(spawn_agent(&dir, port, &receiver.sim, Stdio::inherit(), "warn")?);
    let sims = [&origin, &receiver];
    let cpu = Cpu::start(&[&kids.0[0], &kids.0[1], &kids.0[2]], &sims);
    let Some((first, done, setvars)) = converged(&received, "s1", limit).await else {
        anyhow::bail!("s1 did not show all {total} mirrors within {limit:?}");
    };
    let (procs, sim_cpu) = cpu.shares(&sims, done);
    let (broker, sender, receiving) = (kids.0[0].id(), kids.0[1].id(), kids.0[2].id());
    // What is left once the writes' answers and echoes are in.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let broker_mem = memory(broker);
    let sender_mem = memory(sender);
    let receiving_mem = memory(receiving);

    println!(
        "{n} devices and {presentities} presentities on s0, mirrored on s1 (Custom:SIP/<i>, CustomPresence:p<i>):"
    );
    println!(
        "  s1 shows all {total} mirrors {:.2} s after the agents started (first Setvar at {:.2} s; {setvars} Setvars)",
        secs(start, done),
        secs(start, first)
    );
    println!(
        "  CPU until then (share of one core): broker {:.0}%, agent s0 {:.0}%, agent s1 {:.0}%, simulated s0 {:.0}%, s1 {:.0}%",
        procs[0] * 100.0,
        procs[1] * 100.0,
        procs[2] * 100.0,
        sim_cpu[0] * 100.0,
        sim_cpu[1] * 100.0
    );
    println!("  broker: {broker_mem} | receiving agent s1: {receiving_mem} | origin agent s0: {sender_mem}");
    let remembered = receiver.sim.with_world(|w| {
        w.astdb_other
            .keys()
            .filter(|k| k.starts_with(&format!("/{}/", agent::memory::FAMILY)))
            .count()
    });
    println!("  s1's astdb remembers {remembered} of the {total} mirror names (DBPut before each first write)");
    let mut busy: Vec<&str> = ["s0", "s1"]
        .into_iter()
        .zip(&sim_cpu)
        .filter(|(_, c)| **c > SIM_BUSY)
        .map(|(s, _)| s)
        .collect();

    // The join: a third server's agent, timed by its own log.
    let mut agent = spawn_agent(&dir, port, &joiner.sim, Stdio::piped(), "info")?;
    let spawned = Instant::now();
    let log = watch_log(&mut agent, total);
    let joining = agent.id();
    kids.0.push(agent);
    let cpu = Cpu::start(&[&kids.0[0], &kids.0[3]], &[&joiner]);
    let mut started = None;
    let mut snapshot = None;
    while snapshot.is_none() && spawned.elapsed() < limit {
        match log.recv_timeout(Duration::from_millis(100)) {
            Ok(("started", at)) => started = Some(at),
            Ok((_, at)) => snapshot = Some(at),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    let Some(snapshot) = snapshot else {
        anyhow::bail!("the joining agent did not log a snapshot of {total} entries within {limit:?}");
    };
    let Some((_, written, _)) = converged(&joined, "s2", limit).await else {
        anyhow::bail!("s2 did not show all {total} mirrors within {limit:?}");
    };
    let (procs, sim_cpu) = cpu.shares(&[&joiner], written);
    println!(
        "  join: agent s2 has the whole snapshot applied (its log says so: {total} desired states known) {:.3} s after it was started ({:.3} s after it logged its start)",
        secs(spawned, snapshot),
        started.map_or(f64::NAN, |s| secs(s, snapshot))
    );
    println!(
        "        s2 shows all {total} mirrors {:.2} s after the start (CPU: broker {:.0}%, agent s2 {:.0}%, simulated s2 {:.0}%)",
        secs(spawned, written),
        procs[0] * 100.0,
        procs[1] * 100.0,
        sim_cpu[0] * 100.0
    );
    println!(
        "        after the join: broker {} | joining agent s2: {}",
        memory(broker),
        memory(joining)
    );
    busy.extend((sim_cpu[0] > SIM_BUSY).then_some("s2"));

    // An AMI reconnect of the receiver: its lists now hold every mirror, and astdb every name.
    let setvars = received.lock().expect("tracker").setvars;
    receiver.sim.drop_connections();
    let cut = Instant::now();
    while receiver.sim.sessions() == 0 && cut.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reread = idle(receiving, limit).await;
    println!(
        "  AMI reconnect of s1 (DeviceStateList and astdb now list every mirror): read again in {:.2} s, {} mirrors written again; receiving agent s1: {}",
        secs(cut, reread),
        received.lock().expect("tracker").setvars - setvars,
        memory(receiving)
    );
    if busy.is_empty() {
        println!(
            "  the simulated servers' threads were busy under {:.0}% of the time: hintbus, not they, set the pace",
            SIM_BUSY * 100.0
        );
    } else {
        println!(
            "  note: the thread of simulated {} was busy over {:.0}% of the time: it, not hintbus, may have set the pace",
            busy.join(", "),
            SIM_BUSY * 100.0
        );
    }
    drop(kids);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
