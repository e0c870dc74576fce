//! Real Asterisk instances for the end-to-end tests: each with its own configuration, run, lib
//! and astdb directories and AMI port, started from the build under `HINTBUS_ASTERISK_PREFIX`
//! (`./dev asterisk` makes one), and stopped when dropped, also when a test fails.
//!
//! Every instance has two manager users: `hintbus`, with the least privileges docs/security.md
//! recommends (what the agents log in with), and `test`, with all of them, for the test's own
//! session: it sets states as a phone or a user would and reads them back the way an
//! administrator does (DeviceStateList, PresenceStateList, events).

use super::{free_port, Dir, WAIT};
use ami::client::{ClientConfig, ClientEvent};
use ami::{Client, Message};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The secret of the agents' least-privilege user.
pub const AGENT_SECRET: &str = "agent-secret";

/// Where the Asterisk build is, if the environment names one.
pub fn prefix() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var_os("HINTBUS_ASTERISK_PREFIX")?);
    p.join("sbin/asterisk").is_file().then_some(p)
}

/// The prefix, or None after saying once why the real-Asterisk tests are skipped. With
/// `HINTBUS_REQUIRE_ASTERISK=1` (CI) a missing Asterisk fails the test instead: a skipped suite
/// must not pass for a run one.
pub fn prefix_or_skip() -> Option<PathBuf> {
    static SAID: std::sync::Once = std::sync::Once::new();
    let p = prefix();
    if p.is_none() && std::env::var("HINTBUS_REQUIRE_ASTERISK").as_deref() == Ok("1") {
        panic!("HINTBUS_REQUIRE_ASTERISK=1 but HINTBUS_ASTERISK_PREFIX names no Asterisk build");
    }
    if p.is_none() {
        SAID.call_once(|| {
            let why = match std::env::var("HINTBUS_ASTERISK_PREFIX") {
                Ok(v) => format!("HINTBUS_ASTERISK_PREFIX={v} holds no sbin/asterisk"),
                Err(_) => "HINTBUS_ASTERISK_PREFIX is not set".into(),
            };
            super::report(&format!(
                "real_asterisk: skipped: {why} (build one with ./dev asterisk)"
            ));
        });
    }
    p
}

/// What one instance's dialplan, queues and modules hold.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// extensions.conf.
    pub extensions: String,
    /// queues.conf.
    pub queues: String,
    /// Extra modules.conf lines (`noload = ...`).
    pub modules: String,
    /// Files of the instance's etc directory beyond the standard ones (voicemail.conf ...).
    pub extra: Vec<(String, String)>,
}

/// One running (or stopped) Asterisk.
pub struct Asterisk {
    pub name: String,
    pub ami_port: u16,
    prefix: PathBuf,
    /// Its own root: etc/, lib/, db/, run/, log/, spool/.
    pub root: PathBuf,
    /// The running Asterisk, in the foreground (`-f`): a child of the test, killed when the
    /// test's `Asterisk` is dropped, and by the kernel when the test process dies.
    process: Option<Child>,
}

impl Asterisk {
    /// Configures and starts an instance under `dir`, and waits until it is fully booted.
    pub fn start(prefix: &Path, dir: &Dir, name: &str, setup: &Setup) -> Asterisk {
        let root = dir.0.join(format!("ast-{name}"));
        for d in ["etc", "lib", "db", "run", "log", "spool"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let mut a = Asterisk {
            name: name.to_string(),
            ami_port: free_port(),
            prefix: prefix.to_path_buf(),
            root,
            process: None,
        };
        a.write_config(setup);
        a.boot();
        a
    }

    fn conf(&self) -> PathBuf {
        self.root.join("etc/asterisk.conf")
    }

    fn write_config(&self, setup: &Setup) {
        let r = self.root.display();
        let modules = self.prefix.join("lib/asterisk/modules");
        let files: Vec<(&str, String)> = vec![
            (
                "asterisk.conf",
                format!(
                    "[directories]\nastetcdir => {r}/etc\nastmoddir => {}\nastvarlibdir => {r}/lib\n\
                     astdbdir => {r}/db\nastkeydir => {r}/lib\nastdatadir => {r}/lib\n\
                     astagidir => {r}/lib/agi-bin\nastspooldir => {r}/spool\nastrundir => {r}/run\n\
                     astlogdir => {r}/log\nastsbindir => {}\n[options]\n",
                    modules.display(),
                    self.prefix.join("sbin").display()
                ),
            ),
            (
                "modules.conf",
                format!(
                    "[modules]\nautoload = yes\n{}",
                    if setup.modules.is_empty() {
                        "noload = res_mwi_external_ami.so\nnoload = res_mwi_external.so\n"
                    } else {
                        &setup.modules
                    }
                ),
            ),
            (
                // The agents' user is the one docs/security.md recommends, eventfilter lines
                // included: what it cannot see, hintbus must not need.
                "manager.conf",
                format!(
                    "[general]\nenabled = yes\nport = {}\nbindaddr = 127.0.0.1\n\n\
                     [hintbus]\nsecret = {AGENT_SECRET}\ndeny = 0.0.0.0/0.0.0.0\npermit = 127.0.0.1/255.255.255.255\n\
                     read = system,call,agent\nwrite = system,call\n\
                     eventfilter = Event: DeviceStateChange\neventfilter = Event: PresenceStateChange\n\
                     eventfilter = Event: ExtensionStatus\neventfilter = Event: FullyBooted\n\
                     eventfilter = Event: Agent\neventfilter = Event: QueueMember\neventfilter = Event: MessageWaiting\n\n\
                     [test]\nsecret = test\ndeny = 0.0.0.0/0.0.0.0\npermit = 127.0.0.1/255.255.255.255\n\
                     read = all\nwrite = all\n",
                    self.ami_port
                ),
            ),
            ("extensions.conf", setup.extensions.clone()),
            ("queues.conf", setup.queues.clone()),
            ("logger.conf", "[logfiles]\nmessages => notice,warning,error\n".into()),
        ];
        for (f, text) in files
            .into_iter()
            .chain(setup.extra.iter().map(|(f, t)| (f.as_str(), t.clone())))
        {
            std::fs::write(self.root.join("etc").join(f), text).unwrap();
        }
    }

    fn asterisk(&self) -> Command {
        let mut c = Command::new(self.prefix.join("sbin/asterisk"));
        // -f: no fork, so it stays a child of the test; its output goes to log/console.
        c.arg("-f").arg("-C").arg(self.conf());
        let console = std::fs::File::create(self.root.join("log/console")).unwrap();
        c.stdin(Stdio::null())
            .stdout(Stdio::from(console.try_clone().unwrap()))
            .stderr(Stdio::from(console));
        // Only 0-2 cross (Asterisk keeps whatever the caller held open for its whole life: a
        // pipe a test harness waits on), and it dies with the test process.
        // SAFETY: close_range and prctl are async-signal-safe and touch no memory.
        unsafe {
            c.pre_exec(|| {
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        c
    }

    /// Replaces one file of the instance's etc directory (then reload what reads it).
    pub fn write_etc(&self, name: &str, text: &str) {
        std::fs::write(self.root.join("etc").join(name), text).unwrap();
    }

    /// `asterisk -rx CMD`: the CLI output.
    pub fn cli(&self, cmd: &str) -> String {
        let mut c = Command::new(self.prefix.join("sbin/asterisk"));
        c.arg("-C").arg(self.conf()).args(["-rx", cmd]);
        c.output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Starts Asterisk and waits until it is fully booted; returns that moment.
    pub fn boot(&mut self) -> Instant {
        self.process = Some(self.asterisk().spawn().expect("start asterisk"));
        let deadline = Instant::now() + WAIT;
        loop {
            if self.cli("core waitfullybooted").contains("fully booted") {
                return Instant::now();
            }
            let exited = self.process.as_mut().and_then(|p| p.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "asterisk {} never booted ({exited:?}): {}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `core stop now`, and waits until the process is gone.
    pub fn stop(&mut self) {
        let Some(mut p) = self.process.take() else { return };
        self.cli("core stop now");
        let deadline = Instant::now() + WAIT;
        while p.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                let _ = p.kill();
                let _ = p.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What Asterisk logged (notices, warnings, errors), for post-mortems.
    pub fn log(&self) -> String {
        let messages = std::fs::read_to_string(self.root.join("log/messages")).unwrap_or_default();
        let console = std::fs::read_to_string(self.root.join("log/console")).unwrap_or_default();
        format!("{messages}{console}")
    }

    /// The `[ami]` section for an agent of this instance.
    pub fn ami_section(&self) -> String {
        format!(
            "[ami]\nhost = 127.0.0.1\nport = {}\nusername = hintbus\nsecret = {AGENT_SECRET}\nping_ms = 500\naction_timeout_ms = 3000\n",
            self.ami_port
        )
    }

    /// A session of the test's own (all privileges), recording every event.
    pub async fn session(&self) -> Session {
        let mut cfg = ClientConfig::new(format!("127.0.0.1:{}", self.ami_port), "test", "test");
        cfg.name = format!("test-{}", self.name);
        cfg.backoff_max = Duration::from_millis(200);
        let (client, mut rx) = Client::start(cfg);
        let events = Arc::new(Recorded::default());
        let rec = events.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                let mut g = rec.log.lock().unwrap();
                match ev {
                    ClientEvent::Event(m) => g.push(Seen::Event(m)),
                    ClientEvent::Connected(_) => g.push(Seen::Connected),
                    ClientEvent::Disconnected { .. } => g.push(Seen::Disconnected),
                    ClientEvent::Lagged { .. } => {}
                }
                drop(g);
                rec.notify.notify_waiters();
            }
        });
        assert!(
            client.wait_connected(WAIT).await.is_some(),
            "test session to asterisk {}",
            self.name
        );
        Session { client, events }
    }
}

impl Drop for Asterisk {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// What the test session saw, in order.
#[derive(Debug, Clone)]
pub enum Seen {
    Connected,
    Disconnected,
    Event(Message),
}

#[derive(Default)]
pub struct Recorded {
    log: Mutex<Vec<Seen>>,
    notify: Notify,
}

/// The lists [`Session::wait_list`] reads.
enum List {
    Devices,
    Presences,
    Mailboxes,
}

/// The test's own AMI session to one instance.
pub struct Session {
    pub client: Client,
    events: Arc<Recorded>,
}

/// A device or presence state as an administrator reads it.
pub type States = BTreeMap<String, String>;

impl Session {
    /// `Setvar` with no channel; panics if Asterisk refuses it.
    pub async fn setvar(&self, var: &str, value: &str) {
        let r = self
            .client
            .action(Message::action("Setvar").with("Variable", var).with("Value", value))
            .await;
        assert!(r.is_ok(), "Setvar {var} = {value}: {r:?}");
    }

    /// `DEVICE_STATE(name) = state`.
    pub async fn set_device(&self, name: &str, state: &str) {
        self.setvar(&format!("DEVICE_STATE({name})"), state).await;
    }

    /// `PRESENCE_STATE(name) = value`.
    pub async fn set_presence(&self, name: &str, value: &str) {
        self.setvar(&format!("PRESENCE_STATE({name})"), value).await;
    }

    /// DeviceStateList: device -> state.
    pub async fn devices(&self) -> States {
        self.list("DeviceStateList", |m| {
            Some((m.get("Device")?.to_string(), m.get("State")?.to_string()))
        })
        .await
    }

    /// PresenceStateList: presentity -> `status,subtype,message` (as Asterisk reports them).
    pub async fn presences(&self) -> States {
        self.list("PresenceStateList", |m| {
            Some((
                m.get("Presentity")?.to_string(),
                format!(
                    "{},{},{}",
                    m.get("Status")?,
                    m.get("Subtype").unwrap_or(""),
                    m.get("Message").unwrap_or("")
                ),
            ))
        })
        .await
    }

    /// res_mwi_external's mailboxes (MWIGet of all): mailbox -> `new,old`.
    pub async fn mailboxes(&self) -> States {
        let l = self
            .client
            .list(Message::action("MWIGet").with("Mailbox", "/.*/"))
            .await
            .expect("MWIGet");
        l.items
            .iter()
            .filter_map(|m| {
                Some((
                    m.get("Mailbox")?.to_string(),
                    format!("{},{}", m.get("NewMessages")?, m.get("OldMessages")?),
                ))
            })
            .collect()
    }

    async fn list(&self, action: &str, item: impl Fn(&Message) -> Option<(String, String)>) -> States {
        for _ in 0..50 {
            match self.client.list(Message::action(action)).await {
                Ok(l) => return l.items.iter().filter_map(&item).collect(),
                // Reconnecting after a restart: the next try.
                Err(_) => {
                    self.client.wait_connected(WAIT).await;
                }
            }
        }
        panic!("{action} kept failing");
    }

    /// Polls a list until `ok` holds for it; false when it never does (within [`WAIT`]).
    /// A list is re-read on every event the session sees, not on a timer.
    pub async fn wait_devices(&self, ok: impl Fn(&States) -> bool) -> bool {
        self.wait_list(List::Devices, ok).await
    }

    pub async fn wait_presences(&self, ok: impl Fn(&States) -> bool) -> bool {
        self.wait_list(List::Presences, ok).await
    }

    pub async fn wait_mailboxes(&self, ok: impl Fn(&States) -> bool) -> bool {
        self.wait_list(List::Mailboxes, ok).await
    }

    async fn wait_list(&self, which: List, ok: impl Fn(&States) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.events.notify.notified();
            let states = match which {
                List::Devices => self.devices().await,
                List::Presences => self.presences().await,
                List::Mailboxes => self.mailboxes().await,
            };
            if ok(&states) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            // The next event, or a second (an event that came between the list and here).
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
    }

    /// Everything seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.events.log.lock().unwrap().clone()
    }

    /// The events seen so far, from index `from` on.
    pub fn events_since(&self, from: usize) -> Vec<Message> {
        self.seen()
            .into_iter()
            .skip(from)
            .filter_map(|s| match s {
                Seen::Event(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// How many things were seen so far (a mark for [`Session::events_since`]).
    pub fn mark(&self) -> usize {
        self.events.log.lock().unwrap().len()
    }

    /// Waits for an event, seen at or after `from`, for which `pred` holds; its index.
    pub async fn wait_event(&self, from: usize, pred: impl Fn(&Message) -> bool) -> Option<usize> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.events.notify.notified();
            let found = self
                .seen()
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, s)| matches!(s, Seen::Event(m) if pred(m)))
                .map(|(i, _)| i);
            if found.is_some() {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

/// An event's name and one of its headers equal these.
pub fn is_event(m: &Message, name: &str, header: &str, value: &str) -> bool {
    m.event_name() == Some(name) && m.get(header) == Some(value)
}
