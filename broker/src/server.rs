//! The broker thread: the ROUTER socket, the wake-ups and the control requests around the
//! [`Core`], and the change stream its events go out on.
//!
//! This is the only part that does I/O. Each round it waits (ppoll, see [`Io::wait`]),
//! hands what the ROUTER received to the core, answers control requests, ticks, lets the
//! core flush the agents' queues, and publishes the round's events as one batch.

use crate::config::BrokerConfig;
use crate::core::{AgentInfo, Core, Outlet, Sent, Snapshot, Status};
use crate::events::Batch;
use crate::metrics::Metrics;
use crate::sinks;
use crate::stream::{Stream, Subscription};
use proto::transport::context;
use proto::Entry;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::{info, warn};

/// Requests to the broker thread. The async ones are answered within a round and never make
/// the broker wait for their caller.
enum Control {
    Stop,
    Entries(mpsc::Sender<Vec<Entry>>),
    Agents(mpsc::Sender<Vec<AgentInfo>>),
    Snapshot(oneshot::Sender<Snapshot>),
    Status(oneshot::Sender<Status>),
    Members(oneshot::Sender<Vec<crate::members::Member>>),
}

/// A running broker. Dropping it stops the thread.
pub struct Broker {
    control: mpsc::Sender<Control>,
    wake: UnixDatagram,
    thread: Option<std::thread::JoinHandle<()>>,
    feed: Option<sinks::feed::Feed>,
    metrics: Metrics,
    stream: Stream,
    endpoint: String,
    feed_endpoint: Option<String>,
    instance: u64,
}

impl Broker {
    /// Binds the sockets (errors name the endpoint) and starts the broker thread.
    pub fn start(config: BrokerConfig) -> Result<Broker, String> {
        let ctx = context();
        let router = ctx.socket(zmq::ROUTER).map_err(|e| e.to_string())?;
        config.socket.apply(&router).map_err(|e| e.to_string())?;
        router.set_router_mandatory(true).map_err(|e| e.to_string())?;
        let instance = rand::random::<u64>() >> 11; // fits a JSON number exactly
        let zap_domain = format!("hintbus-{instance}");
        match &config.curve {
            Some((keys, allow)) => {
                proto::auth::register(&zap_domain, allow.clone())?;
                router.set_zap_domain(&zap_domain).map_err(|e| e.to_string())?;
                router.set_curve_server(true).map_err(|e| e.to_string())?;
                router
                    .set_curve_secretkey(&keys.secret_bytes()?)
                    .map_err(|e| e.to_string())?;
                info!(
                    agents = allow.len(),
                    "CURVE on: only agents in the allow-list are accepted"
                );
            }
            None => {
                if !is_loopback(&config.listen) {
                    return Err(format!(
                        "listening on {} in plain text: give the broker a secret_key_file and an [agents] allow-list, or listen on loopback",
                        config.listen
                    ));
                }
                warn!(listen = %config.listen, "plain text (no CURVE): any local process can join as any server; acceptable on loopback only");
            }
        }
        router
            .bind(&config.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let endpoint = router
            .get_last_endpoint()
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| config.listen.clone());
        let metrics = Metrics::default();
        let stream = Stream::new(metrics.clone());
        // Subscribed before the thread starts: the feed misses nothing.
        let feed = match &config.feed {
            Some(ep) => Some(sinks::feed::Feed::start(
                ctx,
                ep,
                &config.socket,
                stream.subscribe("feed", crate::stream::DEFAULT_BOUND),
            )?),
            None => None,
        };
        let feed_endpoint = feed.as_ref().map(|f| f.endpoint().to_string());
        // Wakes the broker thread for a control request: a socket pair, not a libzmq socket,
        // so that looking at it costs nothing while the broker is busy.
        let (wake, wake_rx) = UnixDatagram::pair().map_err(|e| format!("wake-up socket: {e}"))?;
        wake.set_nonblocking(true).map_err(|e| e.to_string())?;
        wake_rx.set_nonblocking(true).map_err(|e| e.to_string())?;
        let router_fd = router.get_fd().map_err(|e| e.to_string())?;
        // Peer brokers: a DEALER each, taking that peer's table (see crate::peers).
        let mut peers = Vec::new();
        for (ep, key) in &config.peers {
            let s = ctx.socket(zmq::DEALER).map_err(|e| e.to_string())?;
            config.socket.apply(&s).map_err(|e| e.to_string())?;
            if let (Some((keys, _)), Some(key)) = (&config.curve, key) {
                let server = proto::auth::decode_key(key).map_err(|e| format!("peer {ep}'s public key: {e}"))?;
                s.set_curve_serverkey(&server).map_err(|e| e.to_string())?;
                s.set_curve_publickey(&keys.public_bytes()?)
                    .map_err(|e| e.to_string())?;
                s.set_curve_secretkey(&keys.secret_bytes()?)
                    .map_err(|e| e.to_string())?;
            }
            s.connect(ep)
                .map_err(|e| format!("cannot connect to peer broker {ep}: {e}"))?;
            let fd = s.get_fd().map_err(|e| e.to_string())?;
            peers.push((s, fd));
        }
        let (control, control_rx) = mpsc::channel();
        let io = Io {
            core: Core::new(config, instance, metrics.clone(), Instant::now()),
            router,
            wake: wake_rx,
            router_fd,
            control: control_rx,
            stream: stream.clone(),
            stopped: false,
            peers,
        };
        let thread = std::thread::Builder::new()
            .name("hintbus-broker".into())
            .spawn(move || io.run())
            .map_err(|e| e.to_string())?;
        info!(%endpoint, feed = ?feed_endpoint, "broker listening");
        Ok(Broker {
            control,
            wake,
            thread: Some(thread),
            feed,
            metrics,
            stream,
            endpoint,
            feed_endpoint,
            instance,
        })
    }

    /// The bound agent endpoint (with the real port when the config said `*`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn feed_endpoint(&self) -> Option<&str> {
        self.feed_endpoint.as_deref()
    }

    /// The broker's metrics (register them in the process's registry).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A new consumer of the change stream: every batch of events from now on (see
    /// [`crate::stream`]). `bound` is the bytes it may hold unread before it lags.
    pub fn subscribe(&self, name: &'static str, bound: usize) -> Subscription {
        self.stream.subscribe(name, bound)
    }

    /// Changes when the broker restarts.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    fn ask(&self, c: Control) -> bool {
        let ok = self.control.send(c).is_ok();
        // A full buffer means a wake-up is already pending: nothing is lost.
        let _ = self.wake.send(b"x");
        ok
    }

    fn request<T>(&self, make: impl FnOnce(mpsc::Sender<T>) -> Control) -> Option<T> {
        let (tx, rx) = mpsc::channel();
        self.ask(make(tx)).then_some(())?;
        rx.recv_timeout(Duration::from_secs(5)).ok()
    }

    /// The whole table at one version, with the queue members; None when the broker has
    /// stopped. Awaited, never blocking a thread.
    pub async fn snapshot(&self) -> Option<Snapshot> {
        let (tx, rx) = oneshot::channel();
        self.ask(Control::Snapshot(tx)).then_some(())?;
        rx.await.ok()
    }

    /// The agents, the lost servers, the table's size.
    pub async fn status(&self) -> Option<Status> {
        let (tx, rx) = oneshot::channel();
        self.ask(Control::Status(tx)).then_some(())?;
        rx.await.ok()
    }

    /// The latest event of every queue member.
    pub async fn members(&self) -> Option<Vec<crate::members::Member>> {
        let (tx, rx) = oneshot::channel();
        self.ask(Control::Members(tx)).then_some(())?;
        rx.await.ok()
    }

    /// A copy of the whole table (blocking, at most 5 s: for tests and tools).
    pub fn table(&self) -> Vec<Entry> {
        self.request(Control::Entries).unwrap_or_default()
    }

    /// The live agents (blocking, at most 5 s: for tests and tools).
    pub fn agents(&self) -> Vec<AgentInfo> {
        self.request(Control::Agents).unwrap_or_default()
    }

    /// Stops the thread and closes the sockets.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.ask(Control::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(f) = self.feed.take() {
            f.stop();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The ROUTER as the core's [`Outlet`].
struct Router<'a>(&'a zmq::Socket);

impl Outlet for Router<'_> {
    fn send(&mut self, identity: &[u8], frame: &[u8]) -> Sent {
        match self.0.send_multipart([identity, frame], zmq::DONTWAIT) {
            Ok(()) => Sent::Ok,
            Err(zmq::Error::EAGAIN) => Sent::Full,
            // EHOSTUNREACH (ZMQ_ROUTER_MANDATORY): that peer is gone.
            Err(_) => Sent::Gone,
        }
    }
}

struct Io {
    core: Core,
    router: zmq::Socket,
    /// Readable when a control request is waiting.
    wake: UnixDatagram,
    /// The ROUTER's ZMQ_FD, waited on with ppoll (see [`Io::wait`]).
    router_fd: RawFd,
    control: mpsc::Receiver<Control>,
    stream: Stream,
    stopped: bool,
    /// The DEALER to each peer broker, and its ZMQ_FD.
    peers: Vec<(zmq::Socket, RawFd)>,
}

impl Io {
    fn run(mut self) {
        let tick = self.core.tick_interval();
        let mut next_tick = Instant::now() + tick;
        let mut next_peer_tick = Instant::now() + self.core.heartbeat();
        for i in 0..self.peers.len() {
            let hello = self.core.peer_hello(i);
            let _ = self.peers[i].0.send(hello.encode(), zmq::DONTWAIT);
        }
        while !self.stopped {
            let now = Instant::now();
            let until = self.core.next_flush(now).map_or(next_tick, |due| due.min(next_tick));
            self.wait(until.saturating_duration_since(now));
            let mut out = Router(&self.router);
            // Bounded per round so that fan-out and timers keep their turn under a flood.
            for _ in 0..10_000 {
                match recv(&self.router) {
                    Some((parts, user)) => self.core.on_frames(&mut out, parts, user, Instant::now()),
                    None => break,
                }
            }
            for i in 0..self.peers.len() {
                for _ in 0..10_000 {
                    let Ok(frame) = self.peers[i].0.recv_bytes(zmq::DONTWAIT) else {
                        break;
                    };
                    if let Some(reply) = self.core.on_peer_frame(i, &frame, Instant::now()) {
                        let _ = self.peers[i].0.send(reply.encode(), zmq::DONTWAIT);
                    }
                }
            }
            while let Ok(c) = self.control.try_recv() {
                self.on_control(c);
            }
            let mut out = Router(&self.router);
            if Instant::now() >= next_tick {
                self.core.on_tick(&mut out, Instant::now());
                next_tick = Instant::now() + tick;
            }
            // Peer sessions at the heartbeat's pace, as an agent's: a hello per tick while
            // joining would open a new session at the peer each time.
            if Instant::now() >= next_peer_tick {
                for i in 0..self.peers.len() {
                    let m = self.core.peer_tick(i, Instant::now());
                    let _ = self.peers[i].0.send(m.encode(), zmq::DONTWAIT);
                }
                next_peer_tick = Instant::now() + self.core.heartbeat();
            }
            self.core.flush_all(&mut out, Instant::now());
            let events = self.core.take_events();
            if !events.is_empty() {
                self.stream.publish(Batch {
                    events,
                    version: self.core.version(),
                    broker: self.core.instance(),
                });
            }
        }
        self.stream.close();
        info!("broker stopped");
    }

    fn on_control(&mut self, c: Control) {
        match c {
            Control::Stop => self.stopped = true,
            Control::Entries(tx) => {
                let _ = tx.send(self.core.entries());
            }
            Control::Agents(tx) => {
                let _ = tx.send(self.core.status(Instant::now()).agents);
            }
            Control::Snapshot(tx) => {
                let _ = tx.send(self.core.snapshot());
            }
            Control::Status(tx) => {
                let _ = tx.send(self.core.status(Instant::now()));
            }
            Control::Members(tx) => {
                let _ = tx.send(self.core.members());
            }
        }
    }

    /// Waits until the ROUTER may have something to receive, a control request comes, or
    /// `timeout` has passed.
    ///
    /// `zmq::poll` counts in milliseconds, too coarse to end a batch window on time,
    /// and asks libzmq about every socket each time: so this waits on the ROUTER's `ZMQ_FD`
    /// and the wake-up socket with ppoll(2), which counts in nanoseconds. That descriptor only
    /// signals a change, so `ZMQ_EVENTS` is looked at first (which also catches a message an
    /// earlier send made readable).
    fn wait(&self, timeout: Duration) {
        let readable = |s: &zmq::Socket| s.get_events().map_or(true, |ev| ev.contains(zmq::POLLIN));
        if readable(&self.router) || self.peers.iter().any(|(s, _)| readable(s)) {
            return;
        }
        let poll = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds: Vec<libc::pollfd> = [self.router_fd, self.wake.as_raw_fd()]
            .into_iter()
            .chain(self.peers.iter().map(|(_, fd)| *fd))
            .map(poll)
            .collect();
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(3600) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `fds` is a vector of initialised pollfd structs and `ts` a timespec, both
        // alive for the duration of the call; a null signal mask leaves the mask unchanged.
        unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, &ts, std::ptr::null()) };
        if fds[1].revents & libc::POLLIN != 0 {
            let mut buf = [0u8; 64];
            while self.wake.recv(&mut buf).is_ok() {}
        }
    }
}

/// One message from the ROUTER, with the ZAP User-Id (the server id its key is tied to).
fn recv(router: &zmq::Socket) -> Option<(Vec<Vec<u8>>, Option<String>)> {
    let mut parts = Vec::new();
    let mut user = None;
    loop {
        let mut msg = router.recv_msg(if parts.is_empty() { zmq::DONTWAIT } else { 0 }).ok()?;
        if user.is_none() {
            user = msg.gets("User-Id").map(str::to_owned);
        }
        let more = msg.get_more();
        // Bounded: a peer cannot make us hold more than a few frames.
        if parts.len() < 4 {
            parts.push(msg.to_vec());
        }
        if !more {
            return Some((parts, user));
        }
    }
}

/// Whether a `tcp://host:port` endpoint is on this machine only.
pub fn is_loopback(endpoint: &str) -> bool {
    let host = endpoint
        .trim_start_matches("tcp://")
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    endpoint.starts_with("inproc://")
        || endpoint.starts_with("ipc://")
        || host == "localhost"
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
