//! Says in the log when a connecting socket cannot reach its peer, or its handshake fails.
//!
//! libzmq reconnects silently, forever: with a wrong `broker_public_key`, or a broker port where
//! nothing listens, an agent logged nothing after "resynchronising". libzmq's socket monitor
//! reports each connection event on an inproc PAIR socket; a thread reads them and keeps a small
//! state ([`Watch`]):
//! one warning when the link starts failing, naming the endpoint and the likely cause; another
//! only when the cause changes, or every [`REMINDER`] while it lasts; one info line when the
//! link is up again. A retry every 100 ms does not flood the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::{info, warn};
use zmq::SocketEvent as E;

/// While a failure lasts, it is said again this often.
pub const REMINDER: Duration = Duration::from_secs(300);

/// Why the link is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The TCP connection itself fails: nothing listens there (or a firewall says no).
    Unreachable,
    /// TCP connected, the ZeroMQ handshake did not complete: with CURVE a wrong server key, or
    /// CURVE on one side only; without, not a ZeroMQ peer.
    Handshake,
    /// The peer's authentication handler refused our key (ZAP status, e.g. 400).
    Refused(u32),
    /// An established connection ended.
    Lost,
}

impl Failure {
    fn bit(self) -> u8 {
        match self {
            Failure::Unreachable => 1,
            Failure::Handshake => 2,
            Failure::Refused(_) => 4,
            Failure::Lost => 8,
        }
    }
}

/// What one event means for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Said {
    Nothing,
    /// Warn: the link fails (`attempts` failures so far in this episode).
    Failing {
        failure: Failure,
        attempts: u64,
    },
    /// Info: the link is up again after `attempts` failures.
    Recovered {
        attempts: u64,
        after: Duration,
    },
}

/// The state of one monitored link, fed with the monitor's events.
#[derive(Debug, Default)]
pub struct Watch {
    up: bool,
    /// The current attempt got a TCP connection (so its retry was caused by what came after).
    tcp_up: bool,
    attempts: u64,
    since: Option<Instant>,
    /// Kinds of failure already said in this episode.
    said: u8,
    last_said: Option<Instant>,
}

impl Watch {
    /// One monitor event: its number and value (errno, ZAP status, retry interval...).
    pub fn on_event(&mut self, event: u16, value: u32, now: Instant) -> Said {
        let is = |e: E| event == e.to_raw();
        if is(E::CONNECTED) {
            self.tcp_up = true;
            Said::Nothing
        } else if is(E::HANDSHAKE_SUCCEEDED) {
            let was_failing = self.since.is_some();
            let said = Said::Recovered {
                attempts: self.attempts,
                after: self.since.map_or(Duration::ZERO, |t| now.saturating_duration_since(t)),
            };
            *self = Watch {
                up: true,
                ..Watch::default()
            };
            if was_failing {
                said
            } else {
                Said::Nothing
            }
        } else if is(E::CONNECT_RETRIED) {
            let tcp_was_up = std::mem::take(&mut self.tcp_up);
            if tcp_was_up {
                // The handshake failure or the disconnection before it was said already.
                Said::Nothing
            } else {
                self.fail(Failure::Unreachable, now)
            }
        } else if is(E::HANDSHAKE_FAILED_AUTH) {
            self.fail(Failure::Refused(value), now)
        } else if is(E::HANDSHAKE_FAILED_NO_DETAIL) || is(E::HANDSHAKE_FAILED_PROTOCOL) {
            self.fail(Failure::Handshake, now)
        } else if is(E::DISCONNECTED) && self.up {
            self.fail(Failure::Lost, now)
        } else {
            Said::Nothing
        }
    }

    fn fail(&mut self, failure: Failure, now: Instant) -> Said {
        self.up = false;
        self.attempts += 1;
        self.since.get_or_insert(now);
        let new_kind = self.said & failure.bit() == 0;
        let remind = self
            .last_said
            .is_some_and(|t| now.saturating_duration_since(t) >= REMINDER);
        if !new_kind && !remind {
            return Said::Nothing;
        }
        self.said |= failure.bit();
        self.last_said = Some(now);
        Said::Failing {
            failure,
            attempts: self.attempts,
        }
    }
}

/// Events the monitor reports.
fn events() -> i32 {
    [
        E::CONNECTED,
        E::CONNECT_RETRIED,
        E::DISCONNECTED,
        E::HANDSHAKE_FAILED_NO_DETAIL,
        E::HANDSHAKE_FAILED_PROTOCOL,
        E::HANDSHAKE_FAILED_AUTH,
        E::HANDSHAKE_SUCCEEDED,
        E::MONITOR_STOPPED,
    ]
    .iter()
    .fold(0, |all, e| all | i32::from(e.to_raw()))
}

/// Starts monitoring `socket`, which will connect to `endpoint`, logging as `label` (the
/// server id). Call it before `connect`, so that the first attempt is seen too. The monitor
/// ends when the socket is closed.
///
/// The reader is a thread of its own, not a task: libzmq sends monitor events from its I/O
/// thread with a blocking send, so a reader that goes away before the socket's last event
/// (MONITOR_STOPPED) would stall that I/O thread, and with it every socket of the process. A
/// task would go away with its runtime (as every test's runtime does); a thread reads to the
/// end.
pub fn watch(socket: &zmq::Socket, label: &str, endpoint: &str) -> zmq::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let inproc = format!("inproc://hintbus-monitor-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    socket.monitor(&inproc, events())?;
    let pair = crate::transport::context().socket(zmq::PAIR)?;
    pair.connect(&inproc)?;
    let (label, endpoint) = (label.to_string(), endpoint.to_string());
    std::thread::Builder::new()
        .name("hintbus-monitor".into())
        .spawn(move || {
            let mut watch = Watch::default();
            while let Ok(parts) = pair.recv_multipart(0) {
                let Some((event, value)) = parts.first().and_then(|f| parse(f)) else {
                    continue;
                };
                if event == E::MONITOR_STOPPED.to_raw() {
                    break;
                }
                say(&label, &endpoint, watch.on_event(event, value, Instant::now()));
            }
        })
        .map_err(|_| zmq::Error::EMFILE)?;
    Ok(())
}

/// The first frame of a monitor message: event number (16 bits) and value (32 bits), native
/// byte order (zmq_socket_monitor(3)).
fn parse(frame: &[u8]) -> Option<(u16, u32)> {
    let event = u16::from_ne_bytes(frame.get(0..2)?.try_into().ok()?);
    let value = u32::from_ne_bytes(frame.get(2..6)?.try_into().ok()?);
    Some((event, value))
}

fn say(label: &str, endpoint: &str, said: Said) {
    match said {
        Said::Nothing => {}
        Said::Failing { failure, attempts } => match failure {
            Failure::Unreachable => {
                warn!(server = %label, broker = %endpoint, attempts, "cannot reach the broker: nothing accepts connections there (is it running, and is this its address and port?); retrying")
            }
            Failure::Handshake => {
                warn!(server = %label, broker = %endpoint, attempts, "handshake with the broker failed: check broker_public_key (the broker's public key, not this agent's) and that both sides use CURVE; retrying")
            }
            Failure::Refused(status) => {
                warn!(server = %label, broker = %endpoint, attempts, status, "the broker refused this agent's key: add its public key for this server to the broker's [agents]; retrying")
            }
            Failure::Lost => warn!(server = %label, broker = %endpoint, "connection to the broker lost; reconnecting"),
        },
        Said::Recovered { attempts, after } => {
            info!(server = %label, broker = %endpoint, failed_attempts = attempts, after = ?after, "connected to the broker")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(w: &mut Watch, events: &[E], t: Instant) -> Vec<Said> {
        events
            .iter()
            .map(|e| w.on_event(e.to_raw(), 0, t))
            .filter(|s| *s != Said::Nothing)
            .collect()
    }

    #[test]
    fn one_warning_per_cause_and_one_line_on_recovery() {
        let t = Instant::now();
        let mut w = Watch::default();
        // Nothing listens: a retry every 100 ms, said once.
        let said = feed(&mut w, &[E::CONNECT_RETRIED; 50], t);
        assert_eq!(
            said,
            [Said::Failing {
                failure: Failure::Unreachable,
                attempts: 1
            }]
        );
        // A wrong key: connected, handshake fails, disconnected, retried; said once more.
        let cycle = [
            E::CONNECTED,
            E::HANDSHAKE_FAILED_NO_DETAIL,
            E::DISCONNECTED,
            E::CONNECT_RETRIED,
        ];
        let said = feed(&mut w, &cycle.repeat(20), t);
        assert_eq!(
            said,
            [Said::Failing {
                failure: Failure::Handshake,
                attempts: 51
            }]
        );
        // Still failing after a while: reminded.
        let later = t + REMINDER;
        assert_eq!(feed(&mut w, &cycle, later).len(), 1);
        let said = feed(&mut w, &[E::CONNECTED, E::HANDSHAKE_SUCCEEDED], later);
        assert!(matches!(said[..], [Said::Recovered { attempts: 71, .. }]), "{said:?}");
        // Up: a lost connection is said, once.
        let said = feed(
            &mut w,
            &[E::DISCONNECTED, E::CONNECT_RETRIED, E::CONNECT_RETRIED],
            later,
        );
        assert_eq!(said.len(), 2, "lost, then unreachable: {said:?}");
    }

    #[test]
    fn a_first_connection_that_works_says_nothing() {
        let mut w = Watch::default();
        assert!(feed(&mut w, &[E::CONNECTED, E::HANDSHAKE_SUCCEEDED], Instant::now()).is_empty());
    }
}
