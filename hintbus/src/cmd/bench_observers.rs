//! `hintbus bench --observers N`: what the broker's consumers cost it. N WebSocket clients
//! on `/api/ws` and one subscriber of the PUB feed take every change, and `/metrics` is
//! scraped every second, while the load runs; the bench prints what they received.

use futures::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the observers got.
#[derive(Default)]
pub struct Seen {
    pub ws_messages: AtomicU64,
    pub ws_entries: AtomicU64,
    pub ws_tables: AtomicU64,
    pub feed: AtomicU64,
    pub scrapes: AtomicU64,
}

pub struct Observers {
    pub seen: Arc<Seen>,
    stop: tokio_util::sync::CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    feed: Option<std::thread::JoinHandle<()>>,
}

impl Observers {
    /// Connects `n` WebSocket clients to `http` and one SUB to `feed`, and scrapes metrics.
    pub async fn start(n: usize, http: &str, feed: &str) -> anyhow::Result<Observers> {
        let seen = Arc::new(Seen::default());
        let stop = tokio_util::sync::CancellationToken::new();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (mut ws, _) = connect(http).await?;
            let (seen, stop) = (seen.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        m = ws.next() => match m {
                            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                                seen.ws_messages.fetch_add(1, Ordering::Relaxed);
                                if t.contains("\"type\":\"table\"") {
                                    seen.ws_tables.fetch_add(1, Ordering::Relaxed);
                                }
                                // Entries are counted by their versions (one each).
                                let n = t.matches("\"version\":").count().saturating_sub(1);
                                seen.ws_entries.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            Some(Ok(_)) => {}
                            _ => break,
                        },
                        _ = stop.cancelled() => break,
                    }
                }
            }));
        }
        let url = format!("http://{http}/metrics");
        let (s2, stop2) = (seen.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        let url = url.clone();
                        let ok = tokio::task::spawn_blocking(move || ureq::get(&url).call().is_ok()).await.unwrap_or(false);
                        if ok {
                            s2.scrapes.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ = stop2.cancelled() => break,
                }
            }
        }));
        let ctx = proto::transport::context();
        let sub = ctx.socket(zmq::SUB)?;
        sub.set_subscribe(b"")?;
        sub.set_rcvtimeo(200)?;
        sub.connect(feed)?;
        let (s3, stop3) = (seen.clone(), stop.clone());
        let feed = std::thread::spawn(move || {
            while !stop3.is_cancelled() {
                if let Ok(parts) = sub.recv_multipart(0) {
                    if parts.len() == 2 {
                        s3.feed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok(Observers {
            seen,
            stop,
            tasks,
            feed: Some(feed),
        })
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        if let Some(f) = self.feed.take() {
            let _ = tokio::task::spawn_blocking(move || f.join()).await;
        }
    }
}

async fn connect(
    http: &str,
) -> anyhow::Result<(
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::handshake::client::Response,
)> {
    // The broker may still be binding its listener.
    let mut tries = 0;
    loop {
        match tokio_tungstenite::connect_async(format!("ws://{http}/api/ws")).await {
            Ok(c) => return Ok(c),
            Err(e) if tries > 100 => return Err(e.into()),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
