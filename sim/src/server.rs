//! A simulated Asterisk server on a loopback port, and the handle tests and demos use to
//! script it: phones changing state, queue calls, restarts, dropped connections, a mute or
//! slow server.

use crate::config::SimConfig;
use crate::hints::PresenceValue;
use crate::session;
use crate::world::{QueueError, World};
use ami::DeviceState;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

pub(crate) struct Inner {
    pub world: Mutex<World>,
    pub unauthenticated: AtomicUsize,
    muted: AtomicBool,
    mute_tx: watch::Sender<bool>,
    down: AtomicBool,
    slow_read_us: AtomicU64,
    /// How long list actions take (0: no delay).
    list_delay_us: AtomicU64,
    /// Cancelled to drop every session at once; replaced afterwards.
    epoch: Mutex<CancellationToken>,
    shutdown: CancellationToken,
    /// Bumped after every change, for [`Sim::wait_until`].
    version: watch::Sender<u64>,
    next_session: AtomicU64,
}

impl Inner {
    pub fn muted(&self) -> bool {
        self.muted.load(Ordering::Relaxed)
    }

    pub async fn mute_changed(&self) {
        let mut rx = self.mute_tx.subscribe();
        let _ = rx.changed().await;
    }

    pub fn slow_read(&self) -> Option<Duration> {
        match self.slow_read_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// How long a list action (DeviceStateList, PresenceStateList, QueueStatus, DBGetTree)
    /// takes to answer on this server, if it is slow.
    pub fn list_delay(&self) -> Option<Duration> {
        match self.list_delay_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    fn config<T>(&self, f: impl FnOnce(&SimConfig) -> T) -> T {
        f(&self.world.lock().expect("world lock").config)
    }

    pub fn ami_version(&self) -> String {
        self.config(|c| c.ami_version.clone())
    }

    pub fn write_timeout(&self) -> Duration {
        self.config(|c| c.write_timeout)
    }

    pub fn auth_timeout(&self) -> Duration {
        self.config(|c| c.auth_timeout)
    }

    pub fn login_fail_delay(&self) -> Duration {
        self.config(|c| c.login_fail_delay)
    }

    pub fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }
}

/// One running simulated Asterisk. Dropping the last handle stops it.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
    addr: SocketAddr,
    _guard: Arc<StopGuard>,
}

struct StopGuard(CancellationToken);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Sim {
    /// Starts a server on an ephemeral loopback port.
    pub async fn start(config: SimConfig) -> std::io::Result<Sim> {
        Self::start_on(config, "127.0.0.1:0").await
    }

    /// Starts a server on the given address.
    pub async fn start_on(config: SimConfig, addr: &str) -> std::io::Result<Sim> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let name = config.name.clone();
        let shutdown = CancellationToken::new();
        let inner = Arc::new(Inner {
            world: Mutex::new(World::new(config)),
            unauthenticated: AtomicUsize::new(0),
            muted: AtomicBool::new(false),
            mute_tx: watch::channel(false).0,
            down: AtomicBool::new(false),
            slow_read_us: AtomicU64::new(0),
            list_delay_us: AtomicU64::new(0),
            epoch: Mutex::new(CancellationToken::new()),
            shutdown: shutdown.clone(),
            version: watch::channel(0).0,
            next_session: AtomicU64::new(1),
        });
        tokio::spawn(accept_loop(inner.clone(), listener));
        info!(server = %name, %addr, "simulated Asterisk listening");
        Ok(Sim {
            inner,
            addr,
            _guard: Arc::new(StopGuard(shutdown)),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn name(&self) -> String {
        self.inner.config(|c| c.name.clone())
    }

    /// Runs `f` on the state, then sends the events it caused.
    pub fn with_world<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        let mut w = self.inner.world.lock().expect("world lock");
        let r = f(&mut w);
        w.flush();
        drop(w);
        self.inner.bump();
        r
    }

    /// A phone (or any non-Custom device) changes state: `SIP/100` goes INUSE.
    pub fn set_device(&self, device: &str, state: DeviceState) {
        self.with_world(|w| w.set_device(device, state));
    }

    /// What the dialplan's `Set(DEVICE_STATE(Custom:x)=...)` does; false if Asterisk refuses.
    pub fn set_custom(&self, device: &str, state: &str) -> bool {
        self.with_world(|w| w.write_custom_device(device, state))
    }

    /// What the dialplan's `Set(PRESENCE_STATE(CustomPresence:x)=...)` does.
    pub fn set_presence(&self, presentity: &str, value: &str) -> bool {
        self.with_world(|w| w.write_custom_presence(presentity, value))
    }

    /// app_voicemail's counts of `mailbox` change (a message left or heard); false if this
    /// server has no such voicemail mailbox.
    pub fn set_voicemail(&self, mailbox: &str, new: u32, old: u32) -> bool {
        self.with_world(|w| w.set_voicemail(mailbox, new, old))
    }

    /// A mailbox's counts (new, old), whichever MWI provider holds it.
    pub fn mailbox(&self, mailbox: &str) -> Option<(u32, u32)> {
        self.with_world(|w| w.mailbox(mailbox))
    }

    /// The state a hint would see for `device`.
    pub fn device_state(&self, device: &str) -> DeviceState {
        self.inner.world.lock().expect("world lock").state_of(device)
    }

    /// The presence a hint would see for `presentity`.
    pub fn presence(&self, presentity: &str) -> Option<PresenceValue> {
        self.inner.world.lock().expect("world lock").presence_of(presentity)
    }

    /// The extension status of a hint (what the phone's lamp shows).
    pub fn hint_status(&self, exten: &str, context: &str) -> Option<ami::state::ExtensionStatus> {
        let w = self.inner.world.lock().expect("world lock");
        w.hints
            .iter()
            .find(|h| h.exten == exten && h.context == context)
            .map(|h| h.status(|d| w.state_of(d)))
    }

    /// Every Setvar received over AMI so far: (variable, value).
    pub fn setvar_log(&self) -> Vec<(String, String)> {
        self.inner.world.lock().expect("world lock").setvar_log.clone()
    }

    pub fn clear_setvar_log(&self) {
        self.inner.world.lock().expect("world lock").setvar_log.clear();
    }

    /// Logged-in sessions.
    pub fn sessions(&self) -> usize {
        self.inner.world.lock().expect("world lock").subscribers.len()
    }

    pub fn queue_call(&self, queue: &str, caller: &str) -> Result<u64, QueueError> {
        self.with_world(|w| w.queue_call(queue, caller))
    }

    pub fn complete_call(&self, call: u64, reason: &str) -> Result<(), QueueError> {
        self.with_world(|w| w.complete_call(call, reason))
    }

    /// `QueuePause` from the CLI or the dialplan: QueueMemberPause (see [`World::pause_member`]).
    pub fn pause_member(&self, queue: &str, interface: &str, paused: bool, reason: &str) -> Result<(), QueueError> {
        self.with_world(|w| w.pause_member(queue, interface, paused, reason))
    }

    /// Drops every AMI connection (a network cut as Asterisk sees it).
    pub fn drop_connections(&self) {
        let mut epoch = self.inner.epoch.lock().expect("epoch lock");
        epoch.cancel();
        *epoch = CancellationToken::new();
        self.inner.world.lock().expect("world lock").subscribers.clear();
    }

    /// Restarts Asterisk: connections dropped, calls and device states lost, Custom states
    /// and presence restored from astdb (with Asterisk's last-'/' naming). `down` is how long
    /// it refuses connections meanwhile.
    pub async fn restart(&self, down: Duration) {
        self.inner.down.store(true, Ordering::SeqCst);
        self.drop_connections();
        self.with_world(|w| w.restart());
        if !down.is_zero() {
            tokio::time::sleep(down).await;
        }
        self.inner.down.store(false, Ordering::SeqCst);
    }

    /// Mute: connections are accepted but nothing is answered or sent (a hung Asterisk).
    pub fn set_mute(&self, mute: bool) {
        self.inner.muted.store(mute, Ordering::SeqCst);
        self.inner.world.lock().expect("world lock").muted = mute;
        self.inner.mute_tx.send_replace(mute);
    }

    /// Slow reader: waits this long after reading each action (None: full speed).
    pub fn set_slow_read(&self, delay: Option<Duration>) {
        let us = delay.map(|d| d.as_micros().max(1) as u64).unwrap_or(0);
        self.inner.slow_read_us.store(us, Ordering::Relaxed);
    }

    /// Slow lists: each list action is answered only after `delay` (a loaded Asterisk with a
    /// large cache). Other actions of the same session wait behind it, as in Asterisk, which
    /// handles one session's actions in order; events keep flowing.
    pub fn set_list_delay(&self, delay: Option<Duration>) {
        let us = delay.map(|d| d.as_micros().max(1) as u64).unwrap_or(0);
        self.inner.list_delay_us.store(us, Ordering::Relaxed);
    }

    /// Waits until `pred` holds on the state, re-checking after every change.
    pub async fn wait_until(&self, limit: Duration, mut pred: impl FnMut(&World) -> bool) -> bool {
        let mut rx = self.inner.version.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if pred(&self.inner.world.lock().expect("world lock")) {
                return true;
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return pred(&self.inner.world.lock().expect("world lock"));
            }
        }
    }

    /// Waits for the next change of any kind, up to `limit`; false if none came.
    pub async fn changed(&self, limit: Duration) -> bool {
        let mut rx = self.inner.version.subscribe();
        rx.borrow_and_update();
        tokio::time::timeout(limit, rx.changed()).await.is_ok()
    }

    /// Waits until a device has a state.
    pub async fn wait_device(&self, device: &str, state: DeviceState, limit: Duration) -> bool {
        self.wait_until(limit, |w| w.state_of(device) == state).await
    }

    /// Stops the server: listener closed, sessions dropped.
    pub fn stop(&self) {
        self.drop_connections();
        self.inner.shutdown.cancel();
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = inner.shutdown.cancelled() => return,
        };
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        if inner.down.load(Ordering::SeqCst) {
            drop(stream);
            continue;
        }
        let limit = inner.config(|c| c.auth_limit);
        if inner.unauthenticated.load(Ordering::Relaxed) >= limit {
            debug!(%peer, "simulated Asterisk: authlimit reached, closing");
            drop(stream);
            continue;
        }
        let id = inner.next_session.fetch_add(1, Ordering::Relaxed);
        let kill = inner.epoch.lock().expect("epoch lock").child_token();
        let shutdown = inner.shutdown.clone();
        let inner2 = inner.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = session::run(inner2, stream, id, kill) => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}
