//! The session task: connect, log in, run, and reconnect with backoff.

use super::auth::md5_key;
use super::backlog::Backlog;
use super::backoff::Backoff;
use super::config::AuthMethod;
use super::pending::Routed;
use super::sink::EventSink;
use super::{ActionError, ClientEvent, ServerInfo, Shared};
use crate::codec::{AmiCodec, CodecError, Frame, FrameError};
use crate::escape::shown;
use crate::message::Message;
use futures::{FutureExt, SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::{debug, info, warn};

type Reader = FramedRead<OwnedReadHalf, AmiCodec>;
type Writer = FramedWrite<OwnedWriteHalf, AmiCodec>;

/// Why a session attempt or a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    #[error("{0}")]
    Codec(#[from] CodecError),
    #[error("server closed the connection")]
    Closed,
    #[error("keepalive: no answer to Ping within {0:?}")]
    Mute(Duration),
    #[error("shut down")]
    Shutdown,
}

/// Keeps one session alive until shutdown.
pub(crate) async fn supervise(shared: Arc<Shared>, events: mpsc::Sender<ClientEvent>) {
    let cfg = &shared.config;
    let mut sink = EventSink::new(events, cfg.event_buffer_bytes, cfg.name.clone());
    let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max);
    loop {
        let result = tokio::select! {
            r = session(&shared, &mut sink, &mut backoff) => r,
            _ = shared.shutdown.cancelled() => Err(SessionError::Shutdown),
        };
        *shared.outbound.lock().expect("outbound lock") = None;
        let was_connected = shared.info.send_replace(None).is_some();
        shared.metrics.connected.set(0);
        shared.pending.fail_all(ActionError::Disconnected);
        let err = match result {
            Err(SessionError::Shutdown) => return,
            Err(e) => e,
            Ok(()) => SessionError::Closed,
        };
        let mut delay = backoff.next_delay();
        if let SessionError::AuthFailed(_) = err {
            shared.metrics.login_failures.inc();
            delay = delay.max(cfg.auth_retry);
            warn!(server = %cfg.name, addr = %cfg.addr, user = %cfg.username, retry_in = ?delay, "AMI login refused: check username and secret");
        } else {
            warn!(server = %cfg.name, addr = %cfg.addr, error = %err, retry_in = ?delay, "AMI session ended");
        }
        if was_connected {
            sink.deliver(
                &shared,
                ClientEvent::Disconnected {
                    reason: err.to_string(),
                },
            );
        }
        tokio::select! {
            _ = sleep(delay) => {}
            _ = shared.shutdown.cancelled() => return,
        }
    }
}

/// One connection: connect, log in, then run until it breaks.
async fn session(shared: &Arc<Shared>, sink: &mut EventSink, backoff: &mut Backoff) -> Result<(), SessionError> {
    let cfg = &shared.config;
    let stream = timeout(cfg.connect_timeout, TcpStream::connect(&cfg.addr))
        .await
        .map_err(|_| SessionError::Timeout("TCP connect"))?
        .map_err(SessionError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let mut reader = FramedRead::new(r, AmiCodec::client());
    let mut writer = FramedWrite::new(w, AmiCodec::client());

    let mut early_events = Backlog::new(cfg.login_backlog_bytes);
    let info = timeout(
        cfg.connect_timeout * 3,
        login(shared, &mut reader, &mut writer, &mut early_events),
    )
    .await
    .map_err(|_| SessionError::Timeout("login"))??;
    backoff.reset();
    shared.metrics.connects.inc();
    info!(server = %cfg.name, addr = %cfg.addr, asterisk = ?info.asterisk_version, ami = ?info.ami_version, "AMI connected");

    let (out_tx, out_rx) = mpsc::channel::<Message>(4096);
    *shared.outbound.lock().expect("outbound lock") = Some(out_tx.clone());
    shared.info.send_replace(Some(info.clone()));
    shared.metrics.connected.set(1);
    sink.deliver(shared, ClientEvent::Connected(info));
    if early_events.dropped > 0 {
        shared.metrics.events_dropped.inc_by(early_events.dropped);
        warn!(server = %cfg.name, dropped = early_events.dropped, limit = cfg.login_backlog_bytes, "events during the login over the backlog bound (login_backlog_bytes): dropped");
    }
    for ev in early_events.into_events() {
        shared.metrics.events_received.inc();
        sink.deliver(shared, ClientEvent::Event(ev));
    }

    let mut write_task = tokio::spawn(write_loop(writer, out_rx));
    let result = run(shared, sink, &mut reader, &out_tx, &mut write_task).await;
    if matches!(result, Err(SessionError::Shutdown)) {
        // Best effort goodbye, so Asterisk logs a clean logoff rather than a dropped socket.
        let _ = out_tx.try_send(Message::action("Logoff").with("ActionID", shared.next_action_id()));
        drop(out_tx);
        let _ = timeout(Duration::from_millis(200), &mut write_task).await;
    }
    write_task.abort();
    result
}

async fn write_loop(mut writer: Writer, mut rx: mpsc::Receiver<Message>) -> Result<(), CodecError> {
    while let Some(msg) = rx.recv().await {
        writer.feed(&msg).await?;
        // Pipelining: flush once per burst, not once per action.
        while let Ok(more) = rx.try_recv() {
            writer.feed(&more).await?;
        }
        writer.flush().await?;
    }
    Ok(())
}

/// The main loop of a logged-in session.
async fn run(
    shared: &Arc<Shared>,
    sink: &mut EventSink,
    reader: &mut Reader,
    out: &mpsc::Sender<Message>,
    write_task: &mut tokio::task::JoinHandle<Result<(), CodecError>>,
) -> Result<(), SessionError> {
    let cfg = &shared.config;
    let mut ping_timer = tokio::time::interval_at(Instant::now() + cfg.ping_interval, cfg.ping_interval);
    ping_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The outstanding keepalive: its ActionID and its deadline.
    let mut ping: Option<(String, Instant)> = None;
    // Tells a lagging consumer as soon as it has caught up, not only at the next event.
    let lag_tx = sink.tx.clone();
    // Built once: a cancellation future made on every turn registers and unregisters a
    // waiter each time, and turns come by the tens of thousands per second under load.
    let shutdown = shared.shutdown.cancelled();
    tokio::pin!(shutdown);
    let mute = sleep_until_opt(None);
    tokio::pin!(mute);
    loop {
        let room = if sink.lagging { sink.room_needed() } else { 1 };
        tokio::select! {
            frame = reader.next() => {
                let pinging = ping.is_some();
                on_frame(shared, sink, &mut ping, frame)?;
                // Messages already read from the socket are handled in this same turn.
                for _ in 0..MAX_BURST {
                    match reader.next().now_or_never() {
                        Some(frame) => on_frame(shared, sink, &mut ping, frame)?,
                        None => break,
                    }
                }
                if pinging && ping.is_none() {
                    // Answered: no deadline until the next keepalive.
                    mute.set(sleep_until_opt(None));
                }
            }
            _ = ping_timer.tick(), if ping.is_none() => {
                let id = shared.next_action_id();
                // A full writer queue means the socket is stuck: the deadline still applies.
                let _ = out.try_send(Message::action("Ping").with("ActionID", id.clone()));
                let deadline = Instant::now() + cfg.ping_timeout;
                ping = Some((id, deadline));
                mute.set(sleep_until_opt(Some(deadline)));
            }
            _ = &mut mute => return Err(SessionError::Mute(cfg.ping_timeout)),
            r = &mut *write_task => {
                return match r {
                    Ok(Err(e)) => Err(e.into()),
                    _ => Err(SessionError::Closed),
                };
            }
            permits = lag_tx.reserve_many(room), if sink.lagging => match permits {
                // The consumer took enough: the slots are given back at once, to tell it.
                Ok(permits) => {
                    drop(permits);
                    sink.tell();
                }
                // The consumer is gone: nobody to tell.
                Err(_) => sink.lagging = false,
            },
            _ = &mut shutdown => return Err(SessionError::Shutdown),
        }
    }
}

/// Most messages handled in one turn of the session loop, so that its timers keep their turn.
const MAX_BURST: usize = 256;

/// One item from the reader: the keepalive's answer, a message for the client, or a refusal.
fn on_frame(
    shared: &Shared,
    sink: &mut EventSink,
    ping: &mut Option<(String, Instant)>,
    frame: Option<Result<Result<Frame, FrameError>, CodecError>>,
) -> Result<(), SessionError> {
    let cfg = &shared.config;
    let Some(frame) = frame else {
        return Err(SessionError::Closed);
    };
    match frame? {
        Ok(Frame::Message(msg)) => {
            if let Some((id, _)) = ping {
                if msg.action_id() == Some(id.as_str()) {
                    *ping = None;
                    return Ok(());
                }
            }
            dispatch(shared, sink, msg);
        }
        Ok(Frame::Banner(b)) => debug!(server = %cfg.name, banner = %shown(&b), "unexpected second banner"),
        Err(bad) => {
            shared.metrics.frames_rejected.inc();
            warn!(server = %cfg.name, error = %shown(&bad.to_string()), "AMI message from Asterisk refused");
            if let Some(id) = bad.action_id() {
                shared.pending.fail(
                    id,
                    ActionError::Malformed {
                        action: id.to_string(),
                        detail: bad.to_string(),
                    },
                );
            }
        }
    }
    Ok(())
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn dispatch(shared: &Shared, sink: &mut EventSink, msg: Message) {
    match shared
        .pending
        .route(msg, &shared.config, shared.metrics.events_received.get())
    {
        Routed::Consumed => {}
        Routed::Event(ev) => {
            shared.metrics.events_received.inc();
            sink.deliver(shared, ClientEvent::Event(ev));
        }
        Routed::Stray(resp) => {
            debug!(server = %shared.config.name, response = ?resp, "response nobody waits for (timed out?)")
        }
    }
}

/// The login exchange, read step by step before the session is handed to the caller.
/// Events that arrive meanwhile are kept and delivered after `Connected`.
async fn login(
    shared: &Shared,
    reader: &mut Reader,
    writer: &mut Writer,
    early: &mut Backlog,
) -> Result<ServerInfo, SessionError> {
    let cfg = &shared.config;
    let banner_version = match reader.next().await {
        Some(Ok(Ok(Frame::Banner(v)))) => v,
        Some(Err(e)) => return Err(e.into()),
        _ => return Err(SessionError::Closed),
    };

    let mut login = Message::action("Login")
        .with("ActionID", shared.next_action_id())
        .with("Username", cfg.username.clone());
    match cfg.auth {
        AuthMethod::Plain => login.push("Secret", cfg.secret.expose()),
        AuthMethod::Md5 => {
            let id = shared.next_action_id();
            let challenge = Message::action("Challenge")
                .with("ActionID", id.clone())
                .with("AuthType", "MD5");
            let resp = exchange(reader, writer, challenge, &id, early).await?;
            let Some(ch) = resp.get("Challenge").filter(|_| resp.is_success()) else {
                return Err(SessionError::AuthFailed(format!(
                    "MD5 challenge refused: {}",
                    shown(resp.get("Message").unwrap_or("no challenge"))
                )));
            };
            login.push("AuthType", "MD5");
            login.push("Key", md5_key(ch, cfg.secret.expose()));
        }
    }
    login.push("Events", cfg.events.clone());
    let id = login.action_id().unwrap_or_default().to_string();
    let resp = exchange(reader, writer, login, &id, early).await?;
    if !resp.is_success() {
        return Err(SessionError::AuthFailed(
            shown(resp.get("Message").unwrap_or("refused")).to_string(),
        ));
    }

    let id = shared.next_action_id();
    let settings = Message::action("CoreSettings").with("ActionID", id.clone());
    let resp = exchange(reader, writer, settings, &id, early).await?;
    let mut info = ServerInfo {
        banner_version,
        ..Default::default()
    };
    if resp.is_success() {
        info.ami_version = resp.get("AMIversion").map(str::to_owned);
        info.asterisk_version = resp.get("AsteriskVersion").map(str::to_owned);
        info.system_name = resp.get("SystemName").map(str::to_owned);
    } else {
        warn!(server = %cfg.name, reason = %shown(resp.get("Message").unwrap_or("")), "CoreSettings refused; the AMI user needs read=system to report the Asterisk version");
    }
    Ok(info)
}

/// Sends one action and reads until its response, keeping any events seen meanwhile.
async fn exchange(
    reader: &mut Reader,
    writer: &mut Writer,
    action: Message,
    id: &str,
    early: &mut Backlog,
) -> Result<Message, SessionError> {
    writer.send(&action).await?;
    loop {
        match reader.next().await {
            Some(Ok(Ok(Frame::Message(m)))) => {
                if m.response().is_some() && m.action_id() == Some(id) {
                    return Ok(m);
                }
                if m.event_name().is_some() {
                    early.keep(m);
                }
            }
            Some(Ok(Ok(Frame::Banner(_)))) | Some(Ok(Err(_))) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err(SessionError::Closed),
        }
    }
}
