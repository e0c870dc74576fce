//! The messages of protocol version 2 and their encoding: one JSON object per ZeroMQ frame,
//! `{"v":2,"type":"...",...}`. JSON because every language (and a 40-line pyzmq script) can
//! read it; the figures in the closing notes show it is not the bottleneck.

use crate::entry::Entry;
use crate::queue::QueueEvent;
use ami::shown;
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const VERSION: u32 = 2;
/// Largest frame accepted (a snapshot is sent in chunks well below it).
pub const MAX_FRAME: usize = 1 << 20;
/// Most entries in one message.
pub const MAX_ENTRIES: usize = 2000;
/// Longest `software` of a hello, in bytes.
pub const MAX_SOFTWARE: usize = 64;

/// Why a peer's message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, an unknown `type`, or a missing field.
    BadMessage,
    /// A `v` this broker does not speak.
    UnsupportedVersion,
    /// Larger than [`MAX_FRAME`] or more than [`MAX_ENTRIES`] entries.
    TooLarge,
    /// An entry failed validation.
    BadEntry,
    /// The peer sent something before `hello`, or its session is unknown (broker restarted).
    NotWelcome,
    /// The entry's origin is not the server this agent speaks for.
    WrongOrigin,
    /// The peer is not allowed (unknown key, or another agent holds that server id).
    Refused,
    /// Too many messages: some were dropped.
    RateLimited,
}

impl ErrorCode {
    /// The name on the wire (`bad_entry`), for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::BadEntry => "bad_entry",
            ErrorCode::NotWelcome => "not_welcome",
            ErrorCode::WrongOrigin => "wrong_origin",
            ErrorCode::Refused => "refused",
            ErrorCode::RateLimited => "rate_limited",
        }
    }
}

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Msg {
    /// Agent -> broker, first: who I am. `instance` changes when the agent restarts.
    Hello {
        server: String,
        instance: u64,
        software: String,
    },
    /// Broker -> broker, first: a peer broker that takes everything this broker holds (and
    /// publishes nothing on this session: it has its own for that, the other way).
    PeerHello { name: String, instance: u64 },
    /// Broker -> peer broker: the servers this broker has a session with now (at most
    /// [`MAX_ENTRIES`]): a server one broker has lost is not lost while another hears it.
    Hearing { servers: Vec<String> },
    /// Broker -> agent: accepted. `broker` changes when the broker restarts.
    Welcome {
        broker: u64,
        heartbeat_ms: u64,
        /// The highest stamp epoch this broker holds of the agent's server (0: none): the
        /// agent's own must be above it.
        last_epoch: u64,
    },
    /// Agent -> broker: my whole local state, in chunks; on `last` it replaces everything the
    /// broker holds for this origin (what is missing is removed).
    Sync {
        sync_id: u64,
        entries: Vec<Entry>,
        last: bool,
    },
    /// Agent -> broker: changes of my local state.
    Update { entries: Vec<Entry> },
    /// Agent -> broker: send me everyone else's state.
    SnapshotRequest,
    /// Broker -> agent: everyone else's state, in chunks. `seq` is the session sequence the
    /// snapshot is current at; updates continue from `seq + 1`.
    Snapshot { seq: u64, entries: Vec<Entry>, last: bool },
    /// Broker -> agent: changes of others' states. `seq` counts these per session, without
    /// gaps: a gap means something was lost, and the agent asks for a snapshot.
    Updates { seq: u64, entries: Vec<Entry> },
    /// Either way, when there is nothing else to say.
    Heartbeat,
    /// Either way: a refused message.
    Error { code: ErrorCode, message: String },
    /// Agent -> broker: its Asterisk connection, at every AMI connect and disconnect, and
    /// after each `welcome` (for the status API; changes nothing in the table).
    Status {
        ami_connected: bool,
        /// Asterisk's version, once known (CoreSettings' AsteriskVersion).
        asterisk: Option<String>,
        /// Why AMI is down, if it is: at most [`MAX_DETAIL`] bytes of printable characters.
        detail: String,
    },
    /// Agent -> broker: queue members' events, passed on to observers (not to agents).
    Queue { events: Vec<QueueEvent> },
}

/// Longest `detail` of a status, and `asterisk` version, in bytes.
pub const MAX_DETAIL: usize = 255;

#[derive(Serialize)]
struct Envelope<T> {
    v: u32,
    #[serde(flatten)]
    msg: T,
}

/// Every field any message has, for decoding in one pass.
#[derive(Deserialize)]
struct Wire<'a> {
    v: Option<u32>,
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    server: Option<String>,
    name: Option<String>,
    servers: Option<Vec<String>>,
    instance: Option<u64>,
    software: Option<String>,
    broker: Option<u64>,
    heartbeat_ms: Option<u64>,
    last_epoch: Option<u64>,
    sync_id: Option<u64>,
    entries: Option<Vec<Entry>>,
    last: Option<bool>,
    seq: Option<u64>,
    code: Option<ErrorCode>,
    message: Option<String>,
    ami_connected: Option<bool>,
    asterisk: Option<String>,
    detail: Option<String>,
    events: Option<Vec<QueueEvent>>,
}

impl Wire<'_> {
    fn into_msg(self) -> Result<Msg, DecodeError> {
        fn need<T>(v: Option<T>, field: &str) -> Result<T, DecodeError> {
            v.ok_or_else(|| DecodeError::Bad(format!("missing field `{field}`")))
        }
        let kind = need(self.kind, "type")?;
        Ok(match kind.as_ref() {
            "hello" => Msg::Hello {
                server: need(self.server, "server")?,
                instance: need(self.instance, "instance")?,
                software: valid_software(need(self.software, "software")?)?,
            },
            "hearing" => Msg::Hearing {
                servers: need(self.servers, "servers")?,
            },
            "peer_hello" => Msg::PeerHello {
                name: need(self.name, "name")?,
                instance: need(self.instance, "instance")?,
            },
            "welcome" => Msg::Welcome {
                broker: need(self.broker, "broker")?,
                heartbeat_ms: need(self.heartbeat_ms, "heartbeat_ms")?,
                last_epoch: self.last_epoch.unwrap_or(0),
            },
            "sync" => Msg::Sync {
                sync_id: need(self.sync_id, "sync_id")?,
                entries: need(self.entries, "entries")?,
                last: need(self.last, "last")?,
            },
            "update" => Msg::Update {
                entries: need(self.entries, "entries")?,
            },
            "snapshot_request" => Msg::SnapshotRequest,
            "snapshot" => Msg::Snapshot {
                seq: need(self.seq, "seq")?,
                entries: need(self.entries, "entries")?,
                last: need(self.last, "last")?,
            },
            "updates" => Msg::Updates {
                seq: need(self.seq, "seq")?,
                entries: need(self.entries, "entries")?,
            },
            "heartbeat" => Msg::Heartbeat,
            "error" => Msg::Error {
                code: need(self.code, "code")?,
                message: need(self.message, "message")?,
            },
            "status" => Msg::Status {
                ami_connected: need(self.ami_connected, "ami_connected")?,
                asterisk: self.asterisk.map(|a| printable(a, "asterisk")).transpose()?,
                detail: printable(self.detail.unwrap_or_default(), "detail")?,
            },
            "queue" => Msg::Queue {
                events: need(self.events, "events")?,
            },
            other => {
                return Err(DecodeError::Bad(format!(
                    "unknown message type {:?}",
                    shown(other).max(40)
                )));
            }
        })
    }
}

#[derive(Deserialize)]
struct VersionOnly {
    v: Option<u32>,
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("protocol version {0} is not supported (this is version {VERSION})")]
    Version(u32),
    #[error("not a hintbus message: {0}")]
    Bad(String),
    #[error("{0} entries in one message (limit {MAX_ENTRIES})")]
    TooManyEntries(usize),
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge(_) | DecodeError::TooManyEntries(_) => ErrorCode::TooLarge,
            DecodeError::Version(_) => ErrorCode::UnsupportedVersion,
            DecodeError::Bad(_) => ErrorCode::BadMessage,
        }
    }
}

impl Msg {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&Envelope { v: VERSION, msg: self }).expect("protocol messages always serialize")
    }

    /// Decodes one frame, refusing oversized frames and unknown versions.
    ///
    /// One pass into [`Wire`] (all fields optional), then the `type` picks the message. serde's
    /// internally tagged enum behind a flattened envelope buffered every value twice and was
    /// the largest single cost of an agent under load.
    pub fn decode(frame: &[u8]) -> Result<Msg, DecodeError> {
        if frame.len() > MAX_FRAME {
            return Err(DecodeError::TooLarge(frame.len()));
        }
        let wire: Wire = match serde_json::from_slice(frame) {
            Ok(w) => w,
            Err(e) => {
                // Another version may shape its fields differently: say so rather than "bad".
                if let Ok(VersionOnly { v: Some(v) }) = serde_json::from_slice(frame) {
                    if v != VERSION {
                        return Err(DecodeError::Version(v));
                    }
                }
                return Err(DecodeError::Bad(short(e)));
            }
        };
        match wire.v {
            Some(VERSION) => {}
            Some(v) => return Err(DecodeError::Version(v)),
            None => return Err(DecodeError::Bad("no \"v\" field".into())),
        }
        let counts = [
            wire.entries.as_ref().map(Vec::len),
            wire.events.as_ref().map(Vec::len),
            wire.servers.as_ref().map(Vec::len),
        ];
        if let Some(n) = counts.into_iter().flatten().find(|n| *n > MAX_ENTRIES) {
            return Err(DecodeError::TooManyEntries(n));
        }
        wire.into_msg()
    }

    /// The `type` name, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::Hello { .. } => "hello",
            Msg::PeerHello { .. } => "peer_hello",
            Msg::Hearing { .. } => "hearing",
            Msg::Welcome { .. } => "welcome",
            Msg::Sync { .. } => "sync",
            Msg::Update { .. } => "update",
            Msg::SnapshotRequest => "snapshot_request",
            Msg::Snapshot { .. } => "snapshot",
            Msg::Updates { .. } => "updates",
            Msg::Heartbeat => "heartbeat",
            Msg::Error { .. } => "error",
            Msg::Status { .. } => "status",
            Msg::Queue { .. } => "queue",
        }
    }
}

/// serde's message quotes the input (`unknown variant `...``): escaped and bounded here, so
/// that the error is safe wherever it is shown.
fn short(e: serde_json::Error) -> String {
    shown(&e.to_string()).to_string()
}

/// A hello's `software` is shown in the broker's log and status: at most [`MAX_SOFTWARE`]
/// bytes of printable characters.
fn valid_software(software: String) -> Result<String, DecodeError> {
    if software.len() <= MAX_SOFTWARE && software.chars().all(ami::escape::is_printable) {
        Ok(software)
    } else {
        Err(DecodeError::Bad(format!(
            "hello's software {:?} is not at most {MAX_SOFTWARE} bytes of printable characters",
            shown(&software).max(MAX_SOFTWARE)
        )))
    }
}

/// A status's text fields are shown in the status API and on the board: at most
/// [`MAX_DETAIL`] bytes of printable characters.
fn printable(text: String, field: &str) -> Result<String, DecodeError> {
    if text.len() <= MAX_DETAIL && text.chars().all(ami::escape::is_printable) {
        Ok(text)
    } else {
        Err(DecodeError::Bad(format!(
            "status's {field} is not at most {MAX_DETAIL} bytes of printable characters"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ami::{DeviceState, PresenceState};

    #[test]
    fn round_trip_and_wire_form() {
        let m = Msg::Update {
            entries: vec![
                Entry::device("a", "SIP/100", DeviceState::Inuse),
                Entry::presence("a", "CustomPresence:100", PresenceState::Away, "", "lunch, back at 2"),
            ],
        };
        let bytes = m.encode();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with(
                r#"{"v":2,"type":"update","entries":[{"origin":"a","kind":"device","name":"SIP/100","state":"INUSE"}"#
            ),
            "{text}"
        );
        assert_eq!(Msg::decode(&bytes).unwrap(), m);
        assert_eq!(
            Msg::decode(&Msg::SnapshotRequest.encode()).unwrap(),
            Msg::SnapshotRequest
        );
        let status = Msg::Status {
            ami_connected: true,
            asterisk: Some("22.10.1".into()),
            detail: String::new(),
        };
        assert_eq!(Msg::decode(&status.encode()).unwrap(), status);
        let queue = Msg::Queue {
            events: vec![crate::QueueEvent {
                origin: "a".into(),
                queue: "support".into(),
                interface: "PJSIP/100".into(),
                member: "Alice".into(),
                event: crate::QueueEventKind::Connect,
                paused: None,
                reason: String::new(),
            }],
        };
        assert_eq!(Msg::decode(&queue.encode()).unwrap(), queue);
        assert!(matches!(
            Msg::decode(br#"{"v":2,"type":"status","ami_connected":false,"detail":"\u001b[31m"}"#),
            Err(DecodeError::Bad(_))
        ));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            Msg::decode(br#"{"v":1,"type":"heartbeat"}"#),
            Err(DecodeError::Version(1))
        );
        assert!(matches!(
            Msg::decode(br#"{"v":2,"type":"launch_missiles"}"#),
            Err(DecodeError::Bad(_))
        ));
        assert!(matches!(Msg::decode(b"\xff\x00garbage"), Err(DecodeError::Bad(_))));
        assert!(matches!(
            Msg::decode(br#"{"type":"heartbeat"}"#),
            Err(DecodeError::Bad(_))
        ));
        assert!(matches!(
            Msg::decode(&vec![b' '; MAX_FRAME + 1]),
            Err(DecodeError::TooLarge(_))
        ));
        let hello = |software: &str| {
            Msg::Hello {
                server: "a".into(),
                instance: 1,
                software: software.into(),
            }
            .encode()
        };
        assert!(Msg::decode(&hello("hintbus 0.1.0 (Grüße)")).is_ok());
        for bad in ["x\n\x1b[31mred", &"x".repeat(MAX_SOFTWARE + 1), "\u{202e}txt"] {
            let Err(DecodeError::Bad(e)) = Msg::decode(&hello(bad)) else {
                panic!("{bad:?} accepted")
            };
            assert!(!e.contains('\n') && !e.contains('\x1b'), "{e}");
        }
        let many = Msg::Update {
            entries: vec![Entry::device("a", "SIP/1", DeviceState::Inuse); MAX_ENTRIES + 1],
        };
        assert!(matches!(
            Msg::decode(&many.encode()),
            Err(DecodeError::TooManyEntries(_))
        ));
        // An empty `entries` beside the events does not lift the bound on the events.
        let event = r#"{"origin":"a","queue":"q","interface":"SIP/1","event":"called"}"#;
        let events = vec![event; MAX_ENTRIES + 1].join(",");
        let frame = format!(r#"{{"v":2,"type":"queue","entries":[],"events":[{events}]}}"#);
        assert!(matches!(
            Msg::decode(frame.as_bytes()),
            Err(DecodeError::TooManyEntries(_))
        ));
    }
}
