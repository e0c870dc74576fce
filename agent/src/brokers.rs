//! The agent's brokers: one session (a DEALER socket and its [`Link`]) per broker listed.
//!
//! The agent publishes to every broker whose session is live and applies what any of them
//! brings (the highest stamp wins, see [`crate::remote`]): with two brokers, either may die
//! and no lamp notices.

use crate::config::AgentConfig;
use proto::link::{Link, State};
use proto::transport::Dealer;
use proto::Msg;

pub struct Conn {
    pub endpoint: String,
    pub dealer: Dealer,
    pub link: Link,
}

pub struct Brokers {
    pub conns: Vec<Conn>,
}

impl Brokers {
    /// Connects to every broker (libzmq connects in the background: nothing waits here).
    pub fn connect(cfg: &AgentConfig) -> Result<Brokers, String> {
        let mut conns = Vec::new();
        for (endpoint, broker_key) in cfg.brokers() {
            let curve = match (&cfg.curve, broker_key) {
                (Some((keys, _)), Some(k)) => Some((
                    keys.public_bytes()?,
                    keys.secret_bytes()?,
                    proto::auth::decode_key(&k).map_err(|e| format!("broker public key: {e}"))?,
                )),
                _ => None,
            };
            let dealer = Dealer::connect(&endpoint, &cfg.socket, |s| {
                // A broker that cannot be reached, or a failed handshake, is said in the log.
                proto::monitor::watch(s, &cfg.server, &endpoint)?;
                match &curve {
                    Some((public, secret, server)) => {
                        s.set_curve_serverkey(server)?;
                        s.set_curve_publickey(public)?;
                        s.set_curve_secretkey(secret)
                    }
                    None => Ok(()),
                }
            })
            .map_err(|e| format!("cannot connect to broker {endpoint}: {e}"))?;
            conns.push(Conn {
                endpoint,
                dealer,
                link: Link::new(&cfg.server),
            });
        }
        Ok(Brokers { conns })
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// The next frame from any broker, with the broker's index. Cancel-safe, as each
    /// DEALER's receive is.
    pub async fn recv(&self) -> (usize, Vec<u8>) {
        let all = self
            .conns
            .iter()
            .enumerate()
            .map(|(i, c)| Box::pin(async move { (i, c.dealer.recv().await) }));
        futures::future::select_all(all).await.0
    }

    /// Sends to broker `i`; false if the frame was dropped (its socket queue is full).
    pub fn send_to(&self, i: usize, m: &Msg) -> bool {
        self.conns[i].dealer.send(&m.encode())
    }

    /// Sends to every broker whose session is live; false if a frame was dropped.
    pub fn send_live(&self, m: &Msg) -> bool {
        self.send_live_failed(m).is_empty()
    }

    /// Sends to every broker whose session is live: those that dropped the frame.
    pub fn send_live_failed(&self, m: &Msg) -> Vec<usize> {
        let frame = m.encode();
        self.live()
            .into_iter()
            .filter(|i| !self.conns[*i].dealer.send(&frame))
            .collect()
    }

    /// The brokers whose session is live.
    pub fn live(&self) -> Vec<usize> {
        (0..self.conns.len())
            .filter(|i| self.conns[*i].link.state == State::Live)
            .collect()
    }

    /// Says hello to every broker.
    pub fn hello_all(&mut self) {
        for c in &mut self.conns {
            let hello = c.link.hello();
            c.dealer.send(&hello.encode());
        }
    }

    pub fn any_live(&self) -> bool {
        self.conns.iter().any(|c| c.link.state == State::Live)
    }

    /// The furthest any session has got (what the status and the gauge show).
    pub fn best_state(&self) -> State {
        let rank = |s: State| match s {
            State::Joining => 0,
            State::Welcomed => 1,
            State::Live => 2,
        };
        self.conns
            .iter()
            .map(|c| c.link.state)
            .max_by_key(|s| rank(*s))
            .unwrap_or(State::Joining)
    }

    pub fn gaps(&self) -> u64 {
        self.conns.iter().map(|c| c.link.gaps).sum()
    }

    pub fn heartbeats_missed(&self) -> u64 {
        self.conns.iter().map(|c| c.link.heartbeats_missed).sum()
    }
}
