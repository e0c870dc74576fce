//! Running the real `hintbus` binary as broker and agent processes against simulated
//! Asterisk servers in the test process.
#![allow(dead_code)]

pub mod asterisk;

use ami::DeviceState;
use sim::Sim;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(20);

/// A line for every run's output (a figure, or why a suite skipped): straight to stderr, past
/// the test harness's capture, which only takes `print!` and `eprint!`.
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A free loopback port (bound and released; the broker must keep its port across restarts).
pub fn free_port() -> u16 {
    // Below Linux's ephemeral range (32768+), where outgoing connections could take it meanwhile.
    use rand::Rng;
    loop {
        let p = rand::thread_rng().gen_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// A temporary directory, removed when dropped (after the processes that used it, which are
/// declared after it and so dropped before it).
pub struct Dir(pub PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Dir {
    pub fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("hintbus-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

/// A child process, killed when dropped. Its output goes to a log file for post-mortems.
pub struct Proc {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Its HTTP listener (if its config has none of its own: the environment wins) on a port
    /// of its own, said in its log (see [`Proc::http_addr`]): tests run in parallel.
    pub fn start(dir: &Dir, log_name: &str, args: &[&str]) -> Proc {
        Self::start_env(dir, log_name, args, &[("HINTBUS_HTTP__LISTEN", "127.0.0.1:0")])
    }

    pub fn start_env(dir: &Dir, log_name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let log = dir.0.join(format!("{log_name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hintbus"))
            .args(args)
            .env("HINTBUS_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        Proc {
            child: Some(child),
            log,
        }
    }

    /// SIGKILL: a crash, nothing said to anyone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        for _ in 0..400 {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds a line with `needle` past byte `from` (an earlier run of the
    /// same process appends to the same file); that line.
    pub async fn wait_log(&self, from: usize, needle: &str) -> Option<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            let text = self.log_text();
            if let Some(line) = text.get(from..).and_then(|t| t.lines().find(|l| l.contains(needle))) {
                return Some(line.to_string());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Proc {
    /// The address its HTTP listener said it bound (after byte `from` of its log).
    pub async fn http_addr(&self, from: usize) -> Option<std::net::SocketAddr> {
        let line = self.wait_log(from, "HTTP listening").await?;
        let at = line.find("addr=")? + 5;
        line[at..].split_whitespace().next()?.parse().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Timings for tests: a lost agent is noticed within a second.
pub fn broker_config(dir: &Dir, port: u16) -> PathBuf {
    dir.write(
        "broker.ini",
        &format!(
            "[broker]\nlisten = tcp://127.0.0.1:{port}\nfeed = off\nheartbeat_ms = 200\nlost_after_ms = 1000\nlost_policy = unavailable\n"
        ),
    )
}

pub fn agent_config(dir: &Dir, server: &str, broker_port: u16, sim: &Sim) -> PathBuf {
    dir.write(
        &format!("agent-{server}.ini"),
        &format!(
            "[agent]\nserver = {server}\nbroker = tcp://127.0.0.1:{broker_port}\nheartbeat_ms = 200\nbroker_timeout_ms = 1000\n\n\
             [ami]\nhost = 127.0.0.1\nport = {}\nusername = hintbus\nsecret = hintbus\nping_ms = 500\naction_timeout_ms = 2000\n",
            sim.port()
        ),
    )
}

/// The agent process of `sim`, with [`agent_config`], its log `agent-<server>.log`.
pub fn start_agent(dir: &Dir, broker_port: u16, sim: &Sim) -> Proc {
    let cfg = agent_config(dir, &sim.name(), broker_port, sim);
    Proc::start(
        dir,
        &format!("agent-{}", sim.name()),
        &["agent", "-c", cfg.to_str().unwrap()],
    )
}

/// The agent process of `sim` with `keys` added to its `[agent]` section (its config checked
/// first), its log `agent-<server>.log`.
pub fn start_agent_with(dir: &Dir, sim: &Sim, broker_port: u16, keys: &str) -> Proc {
    let server = sim.name();
    let cfg = dir.write(
        &format!("agent-{server}.ini"),
        &format!(
            "[agent]\nserver = {server}\nbroker = tcp://127.0.0.1:{broker_port}\nheartbeat_ms = 200\nbroker_timeout_ms = 1000\n{keys}\n\n\
             [ami]\nport = {}\nsecret = hintbus\nping_ms = 500\n",
            sim.port()
        ),
    );
    let out = check_config("agent", &cfg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Proc::start(dir, &format!("agent-{server}"), &["agent", "-c", cfg.to_str().unwrap()])
}

/// Devices of the simulated phones of `sim`.
pub fn phones(sim: &Sim) -> Vec<String> {
    sim.with_world(|w| w.config.devices.iter().map(|(d, _)| d.clone()).collect())
}

/// Keys where a server's mirror differs from its origin, for every pair of servers.
pub fn divergent(sims: &[Sim]) -> Vec<String> {
    let mut out = Vec::new();
    for origin in sims {
        for dev in phones(origin) {
            let want = origin.device_state(&dev);
            for other in sims.iter().filter(|s| s.name() != origin.name()) {
                // The cache, not the provider: after an Asterisk restart astdb still answers
                // for a slash name while the cache (and DeviceStateList) has lost it.
                let mirror = format!("Custom:{dev}");
                let got = other.with_world(|w| w.devices.get(&mirror).copied());
                if got != Some(want) {
                    out.push(format!(
                        "{} sees {mirror} {:?}, {} has {want:?}",
                        other.name(),
                        got,
                        origin.name()
                    ));
                }
            }
        }
    }
    out
}

/// Waits, change by change, until every mirror equals its origin.
pub async fn converge(sims: &[Sim], limit: Duration) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let d = divergent(sims);
        if d.is_empty() || tokio::time::Instant::now() >= deadline {
            return d;
        }
        // Wake on the next change of any server (with a cap, for a change missed meanwhile).
        let waits: Vec<_> = sims
            .iter()
            .map(|s| Box::pin(async move { s.changed(Duration::from_millis(500)).await }))
            .collect();
        let _ = futures::future::select_all(waits).await;
    }
}

pub async fn wait_state(sim: &Sim, device: &str, state: DeviceState) -> bool {
    sim.wait_until(WAIT, |w| w.devices.get(device) == Some(&state)).await
}

/// `hintbus keygen` of `<dir>/<name>.key`: the public key it prints.
pub fn keygen(dir: &Dir, name: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hintbus"))
        .args([
            "keygen",
            "--out",
            dir.0.join(format!("{name}.key")).to_str().unwrap(),
            "--name",
            name,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .unwrap()
        .trim()
        .to_string()
}

/// `hintbus <role> --check -c <path>`: validates a config file without starting. The files
/// are checked as root reads them when the tests run as root (the processes of the tests run
/// as root, not as a `hintbus` user that may exist on the machine).
pub fn check_config(role: &str, path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hintbus"))
        .args([role, "--check", "-c", path.to_str().unwrap(), "--service-user", "root"])
        .output()
        .unwrap()
}
