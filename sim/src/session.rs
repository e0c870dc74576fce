//! One AMI connection to a simulated Asterisk: banner, login (plain or MD5, with Asterisk's
//! delay on failure), then actions, with events written by a task that enforces
//! `writetimeout` as Asterisk does.

use crate::actions;
use crate::events::{error, event, response, success};
use crate::privilege::Classes;
use crate::server::Inner;
use crate::world::Subscriber;
use ami::client::md5_key;
use ami::codec::{AmiCodec, Frame, FrameError};
use ami::Message;
use bytes::BytesMut;
use futures::StreamExt;
use rand::Rng;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Messages buffered per session before the client counts as too slow to read.
const SESSION_QUEUE: usize = 8192;

struct Login {
    read: Classes,
    write: Classes,
}

pub(crate) async fn run(inner: Arc<Inner>, stream: TcpStream, id: u64, kill: CancellationToken) {
    let _ = stream.set_nodelay(true);
    // A hung Asterisk accepts the TCP connection (the kernel does) and says nothing.
    while inner.muted() {
        tokio::select! {
            _ = inner.mute_changed() => {}
            _ = kill.cancelled() => return,
        }
    }
    let (r, mut w) = stream.into_split();
    let banner = format!("{}{}\r\n", ami::codec::BANNER_PREFIX, inner.ami_version());
    if w.write_all(banner.as_bytes()).await.is_err() {
        return;
    }
    let (tx, rx) = mpsc::channel::<Message>(SESSION_QUEUE);
    let writer = tokio::spawn(write_loop(w, rx, inner.write_timeout(), kill.clone()));
    let mut reader = FramedRead::new(r, AmiCodec::server());
    let mut login: Option<Login> = None;
    let mut challenge: Option<String> = None;
    let auth_deadline = Instant::now() + inner.auth_timeout();
    inner.unauthenticated.fetch_add(1, Ordering::Relaxed);
    let mut counted_unauth = true;

    loop {
        let frame = tokio::select! {
            f = reader.next() => f,
            _ = kill.cancelled() => break,
            _ = tokio::time::sleep_until(auth_deadline), if login.is_none() => break,
        };
        let Some(Ok(frame)) = frame else { break };
        if let Some(d) = inner.slow_read() {
            sleep(d).await;
        }
        if inner.muted() {
            continue;
        }
        let msg = match frame {
            Ok(Frame::Message(m)) => m,
            Ok(Frame::Banner(_)) => continue,
            Err(bad) => {
                let text = match bad {
                    FrameError::LineTooLong { .. } => "Failed to parse message: line too long",
                    FrameError::TooManyHeaders { .. } => "Failed to parse message: too many headers",
                    FrameError::MalformedHeader { .. } => "Failed to parse message: malformed header",
                };
                if tx.try_send(error(bad.action_id(), text)).is_err() {
                    break;
                }
                continue;
            }
        };
        let action = msg.action_name().unwrap_or("").to_ascii_lowercase();
        let aid = msg.action_id();
        match (&login, action.as_str()) {
            (_, "logoff") => {
                let _ = tx
                    .send(response("Goodbye", aid).with("Message", "Thanks for all the fish."))
                    .await;
                break;
            }
            (None, "challenge") => {
                let reply = if msg.get("AuthType").is_some_and(|t| t.eq_ignore_ascii_case("md5")) {
                    let c: String = format!("{:09}", rand::thread_rng().gen_range(0..1_000_000_000u32));
                    challenge = Some(c.clone());
                    response("Success", aid).with("Challenge", c)
                } else {
                    error(aid, "Must specify AuthType")
                };
                let _ = tx.send(reply).await;
            }
            (None, "login") => match authenticate(&inner, &msg, challenge.as_deref()) {
                Some(l) => {
                    inner.unauthenticated.fetch_sub(1, Ordering::Relaxed);
                    counted_unauth = false;
                    let mask = l.read.0 & Classes::parse_event_mask(msg.get("Events")).0;
                    let _ = tx.send(success(aid, "Authentication accepted")).await;
                    let mut world = inner.world.lock().expect("world lock");
                    if Classes(mask).intersects(Classes::SYSTEM) {
                        let uptime = world.uptime_secs().to_string();
                        let booted = event("FullyBooted", Classes::SYSTEM)
                            .with("Uptime", uptime.clone())
                            .with("LastReload", uptime)
                            .with("Status", "Fully Booted");
                        let _ = tx.try_send(booted);
                    }
                    world.subscribers.push(Subscriber {
                        id,
                        tx: tx.clone(),
                        mask: Classes(mask),
                        kill: kill.clone(),
                    });
                    login = Some(l);
                }
                None => {
                    // manager.c sleeps before answering a failed login, then hangs up.
                    sleep(inner.login_fail_delay()).await;
                    let _ = tx.send(error(aid, "Authentication failed")).await;
                    break;
                }
            },
            (None, _) => {
                if action.is_empty() {
                    let _ = tx.send(error(aid, "Missing action in request")).await;
                } else {
                    let _ = tx.send(error(aid, "Permission denied")).await;
                }
            }
            (Some(l), _) => {
                let list = ["devicestatelist", "presencestatelist", "queuestatus", "dbgettree"];
                if let Some(d) = inner
                    .list_delay()
                    .filter(|_| list.contains(&action.to_ascii_lowercase().as_str()))
                {
                    sleep(d).await;
                }
                // What does not fit the session's queue (a list of 100,000 devices) waits for
                // the writer, as Asterisk's session thread waits for its socket (the writer
                // still drops a client that does not read within writetimeout).
                let rest = {
                    let mut world = inner.world.lock().expect("world lock");
                    let mut replies = actions::handle(&mut world, l.write, &msg).into_iter();
                    let mut rest = Vec::new();
                    for reply in replies.by_ref() {
                        match tx.try_send(reply) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(reply)) => {
                                rest.push(reply);
                                break;
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => kill.cancel(),
                        }
                    }
                    rest.extend(replies);
                    world.flush();
                    rest
                };
                for reply in rest {
                    if tx.send(reply).await.is_err() {
                        kill.cancel();
                        break;
                    }
                }
                inner.bump();
            }
        }
    }
    if counted_unauth {
        inner.unauthenticated.fetch_sub(1, Ordering::Relaxed);
    }
    inner
        .world
        .lock()
        .expect("world lock")
        .subscribers
        .retain(|s| s.id != id);
    drop(tx);
    // Let the last answers (Goodbye, Authentication failed) reach the client before closing.
    let _ = timeout(inner.write_timeout() * 5, writer).await;
    debug!(session = id, "simulated AMI session closed");
}

fn authenticate(inner: &Inner, msg: &Message, challenge: Option<&str>) -> Option<Login> {
    let username = msg.get("Username")?;
    let world = inner.world.lock().expect("world lock");
    let user = world
        .config
        .users
        .iter()
        .find(|u| u.username.eq_ignore_ascii_case(username))?;
    let ok = if msg.get("AuthType").is_some_and(|t| t.eq_ignore_ascii_case("md5")) {
        match (challenge, msg.get("Key")) {
            (Some(c), Some(key)) => key.eq_ignore_ascii_case(&md5_key(c, &user.secret)),
            _ => false,
        }
    } else {
        msg.get("Secret") == Some(user.secret.as_str())
    };
    ok.then(|| Login {
        read: Classes::parse(&user.read),
        write: Classes::parse(&user.write),
    })
}

async fn write_loop(
    mut w: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Message>,
    write_timeout: std::time::Duration,
    kill: CancellationToken,
) {
    let mut buf = BytesMut::new();
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = kill.cancelled() => None,
        };
        let Some(msg) = msg else { break };
        buf.clear();
        push(&mut buf, &msg);
        while let Ok(more) = rx.try_recv() {
            push(&mut buf, &more);
            if buf.len() > 64 * 1024 {
                break;
            }
        }
        match timeout(
            write_timeout.max(std::time::Duration::from_millis(10)),
            w.write_all(&buf),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::warn!("simulated Asterisk: write timed out, dropping the session (writetimeout)");
                kill.cancel();
                break;
            }
        }
    }
    let _ = w.shutdown().await;
}

fn push(buf: &mut BytesMut, msg: &Message) {
    // Our own messages hold no CR/LF; a test that scripts one gets it refused here, not sent.
    if let Ok(bytes) = msg.to_bytes() {
        buf.extend_from_slice(&bytes);
    }
}
