//! libzmq sockets for tokio.
//!
//! A `zmq::Socket` has no async API. The agent's DEALER is driven from tokio through the
//! socket's `ZMQ_FD` ([`Dealer`]); the broker, which owns a thread, polls its sockets there.

use crate::message::MAX_FRAME;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tracing::{debug, warn};

/// The process's one ZeroMQ context (inproc endpoints only work within one context).
pub fn context() -> &'static zmq::Context {
    static CTX: OnceLock<zmq::Context> = OnceLock::new();
    CTX.get_or_init(zmq::Context::new)
}

/// Largest message libzmq takes from a peer (`ZMQ_MAXMSGSIZE`): [`MAX_FRAME`] plus slack, so that
/// a frame a little too large still arrives and is refused with an error reply that says so,
/// while a peer that announces anything larger (a ZMTP frame header can say 8 GiB) is
/// disconnected by libzmq before it buffers a byte of it. Without it, an unauthenticated peer
/// took the broker from 11 MB to 318 MB.
pub const MAX_MSG_SIZE: i64 = MAX_FRAME as i64 + 64 * 1024;

/// Socket settings shared by both ends.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// ZMTP heartbeat interval: a dead TCP peer is noticed even when no message flows.
    pub heartbeat: Duration,
    /// ZMTP heartbeat timeout.
    pub heartbeat_timeout: Duration,
    /// Messages queued per peer before libzmq refuses more (then we coalesce or drop).
    pub hwm: i32,
    /// First and longest reconnect interval of a connecting socket.
    pub reconnect: Duration,
    pub reconnect_max: Duration,
    /// `ZMQ_MAXMSGSIZE`, see [`MAX_MSG_SIZE`].
    pub max_msg_size: i64,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(3),
            hwm: 10_000,
            reconnect: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(2),
            max_msg_size: MAX_MSG_SIZE,
        }
    }
}

impl SocketOptions {
    /// Applies the options to a socket.
    pub fn apply(&self, s: &zmq::Socket) -> zmq::Result<()> {
        s.set_heartbeat_ivl(self.heartbeat.as_millis() as i32)?;
        s.set_heartbeat_timeout(self.heartbeat_timeout.as_millis() as i32)?;
        s.set_heartbeat_ttl(self.heartbeat_timeout.as_millis() as i32)?;
        s.set_sndhwm(self.hwm)?;
        s.set_rcvhwm(self.hwm)?;
        s.set_reconnect_ivl(self.reconnect.as_millis() as i32)?;
        s.set_reconnect_ivl_max(self.reconnect_max.as_millis() as i32)?;
        s.set_linger(200)?;
        s.set_maxmsgsize(self.max_msg_size)?;
        Ok(())
    }
}

/// A DEALER socket driven from tokio: no thread of its own.
///
/// libzmq's `ZMQ_FD` is a file descriptor that becomes readable whenever the socket *may*
/// have something to report; `ZMQ_EVENTS` (or a non-blocking receive) tells what. Waiting
/// on it in tokio saves a thread hop per frame in each direction: under load the agents
/// spent a third of their CPU in a socket thread and its wake-ups (design.md's "no socket
/// blocks the runtime" holds either way: every call here is non-blocking).
pub struct Dealer {
    /// Declared before `sock`: deregistered before the socket closes its descriptor.
    fd: AsyncFd<ZmqFd>,
    /// A `zmq::Socket` is `Send` but not `Sync`; the lock is uncontended (one owner task)
    /// and makes `recv` usable from a spawned task's future.
    sock: Mutex<zmq::Socket>,
    dropped: AtomicU64,
    /// The socket must be tried before waiting on the descriptor (see `recv`).
    check: AtomicBool,
    endpoint: String,
}

/// The socket's notification descriptor. It belongs to libzmq, which closes it.
pub(crate) struct ZmqFd(pub(crate) RawFd);

impl AsRawFd for ZmqFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl Dealer {
    /// Connects a DEALER socket to `endpoint`. `prepare` runs on the socket before it
    /// connects (CURVE keys). Must be called within a tokio runtime.
    pub fn connect(
        endpoint: &str,
        opts: &SocketOptions,
        prepare: impl FnOnce(&zmq::Socket) -> zmq::Result<()>,
    ) -> zmq::Result<Dealer> {
        let sock = context().socket(zmq::DEALER)?;
        opts.apply(&sock)?;
        prepare(&sock)?;
        sock.connect(endpoint)?;
        // SAFETY: the descriptor belongs to `sock`, which stays open as long as the `AsyncFd`:
        // both live in the returned `Dealer`, whose `fd` field is dropped before `sock`.
        let fd = unsafe { AsyncFd::register_with_interest(ZmqFd(sock.get_fd()?), Interest::READABLE) }
            .map_err(|_| zmq::Error::EINVAL)?;
        Ok(Dealer {
            sock: Mutex::new(sock),
            fd,
            dropped: AtomicU64::new(0),
            check: AtomicBool::new(true),
            endpoint: endpoint.to_string(),
        })
    }

    /// Queues one frame; never waits. A frame libzmq will not take (its queue to the peer is
    /// full) is dropped and counted, and false is returned: the caller resyncs instead.
    pub fn send(&self, frame: &[u8]) -> bool {
        self.check.store(true, Ordering::Relaxed);
        match self.socket().send(frame, zmq::DONTWAIT) {
            Ok(()) => true,
            Err(e) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                debug!(endpoint = %self.endpoint, error = %e, "outgoing frame dropped");
                false
            }
        }
    }

    /// The next frame from the peer. Cancel-safe: a frame is only taken when it is returned.
    ///
    /// Every failed non-blocking receive costs libzmq two system calls (poll, getpid), and
    /// `select!` polls this future on every turn of the agent's loop: so the socket is only
    /// tried when the descriptor said so, or after a send (which may have consumed the
    /// notification: libzmq processes its command queue, and resets the descriptor, on any call).
    pub async fn recv(&self) -> Vec<u8> {
        loop {
            if self.check.swap(false, Ordering::Relaxed) {
                if let Some(frame) = self.try_recv() {
                    self.check.store(true, Ordering::Relaxed);
                    return frame;
                }
            }
            let Ok(mut ready) = self.fd.readable().await else {
                return std::future::pending().await;
            };
            match self.try_recv() {
                // Readiness is kept: more frames may be queued, the next call looks again.
                Some(frame) => return frame,
                // Edge-triggered: the next message makes the descriptor readable again.
                None => ready.clear_ready(),
            }
        }
    }

    fn try_recv(&self) -> Option<Vec<u8>> {
        match self.socket().recv_bytes(zmq::DONTWAIT) {
            Ok(frame) => Some(frame),
            Err(zmq::Error::EAGAIN) => None,
            Err(e) => {
                warn!(endpoint = %self.endpoint, error = %e, "zmq receive failed");
                None
            }
        }
    }

    /// Frames dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn socket(&self) -> std::sync::MutexGuard<'_, zmq::Socket> {
        // A panic while holding the lock cannot leave the socket inconsistent (every call
        // is one libzmq call): recover the guard instead of spreading the poison.
        self.sock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dealer_round_trip_through_a_router() {
        let ctx = context();
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.bind("tcp://127.0.0.1:*").unwrap();
        let ep = router.get_last_endpoint().unwrap().unwrap();
        let dealer = Dealer::connect(&ep, &SocketOptions::default(), |_| Ok(())).unwrap();
        assert!(dealer.send(b"hello 0"));
        let echo = std::thread::spawn(move || {
            for i in 0..100 {
                let parts = router.recv_multipart(0).unwrap();
                assert_eq!(parts[1], format!("hello {i}").as_bytes());
                router
                    .send_multipart([parts[0].clone(), format!("world {i}").into_bytes()], 0)
                    .unwrap();
            }
            router
        });
        // Sending between receives must not lose a notification (libzmq resets ZMQ_FD on send).
        for i in 0..100 {
            if i > 0 {
                assert!(dealer.send(format!("hello {i}").as_bytes()));
            }
            let got = tokio::time::timeout(Duration::from_secs(5), dealer.recv())
                .await
                .expect("reply within 5 s");
            assert_eq!(got, format!("world {i}").into_bytes());
        }
        drop(echo.join().unwrap());
    }
}
