//! One entry of the federated state table, and its validation.
//!
//! Everything here arrives from the network, so every field is checked before it can reach an
//! AMI write: names are bounded and free of control characters, states are ones Asterisk knows.

use crate::stamp::Stamp;
use ami::{DeviceState, PresenceState};
use serde::{Deserialize, Serialize};

/// Longest origin (server id).
pub const MAX_ORIGIN: usize = 32;
/// Longest device or presentity name we accept from a peer (Asterisk's device limit is 79;
/// the template may add to it, and is checked again where it is applied).
pub const MAX_NAME: usize = 79;
/// Longest presence subtype or message (func_presencestate decodes at most 255 bytes).
pub const MAX_TEXT: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Device,
    Presence,
    /// A voicemail mailbox (`100@default`) and its message counts (MWI).
    Mailbox,
}

impl Kind {
    /// Every kind, in the order of [`Kind::index`]: loops over the kinds use this, so that a
    /// new kind cannot be left out of one silently.
    pub const ALL: [Kind; 3] = [Kind::Device, Kind::Presence, Kind::Mailbox];

    /// The name on the wire (`device`, `presence`, `mailbox`), for topics and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Device => "device",
            Kind::Presence => "presence",
            Kind::Mailbox => "mailbox",
        }
    }

    /// The kind's place in [`Kind::ALL`], for tables indexed by kind.
    pub fn index(self) -> usize {
        match self {
            Kind::Device => 0,
            Kind::Presence => 1,
            Kind::Mailbox => 2,
        }
    }
}

/// A mailbox's message counts, as app_voicemail reports them (`MessageWaiting`'s New and Old;
/// Urgent only where Asterisk tells it apart: its MWI events count urgent messages as new).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Counts {
    pub new: u32,
    pub old: u32,
    pub urgent: u32,
}

impl Counts {
    /// Whether the lamp is lit: Asterisk's `Waiting` (ast_app_has_voicemail) is true when a
    /// new or urgent message is there; old ones alone leave it dark.
    pub fn waiting(self) -> bool {
        self.new > 0 || self.urgent > 0
    }

    /// The entry's `state` for these counts.
    pub fn state_name(self) -> &'static str {
        if self.waiting() {
            "waiting"
        } else {
            "empty"
        }
    }
}

/// What identifies a state: which server it comes from, and which device or presentity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub origin: String,
    pub kind: Kind,
    pub name: String,
}

/// A state's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Device(DeviceState),
    Presence {
        state: PresenceState,
        subtype: String,
        message: String,
    },
    Mailbox(Counts),
}

/// One state as it travels: key, value (None: the origin no longer has it), and the
/// broker's version of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub origin: String,
    pub kind: Kind,
    pub name: String,
    /// Device state name (`INUSE`), presence state (`dnd`) or mailbox lamp (`waiting`,
    /// `empty`); null when removed.
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subtype: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// A mailbox's counts (absent: 0).
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub new: u32,
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub old: u32,
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub urgent: u32,
    /// Assigned by the broker: increases with every change of the table.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u64,
    /// Assigned by the origin agent, carried unchanged (see [`crate::stamp`]).
    #[serde(default, skip_serializing_if = "Stamp::is_zero")]
    pub stamp: Stamp,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero32(v: &u32) -> bool {
    *v == 0
}

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("origin {0:?}: 1 to 32 characters of A-Z a-z 0-9 . _ -")]
    BadOrigin(String),
    #[error("name {0:?}: 1 to 79 printable characters, no ',', '(', ')' or control characters")]
    BadName(String),
    #[error("{kind:?} state {state:?} is not one Asterisk knows")]
    BadState { kind: Kind, state: String },
    #[error("presence subtype or message longer than 255 bytes or holding control characters")]
    BadText,
    #[error("subtype/message given for a device or mailbox")]
    TextOnDevice,
    #[error("message counts given for a device or presence")]
    CountsOnState,
}

pub fn valid_origin(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ORIGIN && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A device or presentity name that is safe inside `DEVICE_STATE(...)`: no control characters
/// (CR/LF would inject AMI headers), no parentheses or commas (function syntax).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.chars()
            .all(|c| !c.is_control() && !matches!(c, '(' | ')' | ',' | '"' | '\\'))
}

fn valid_text(s: &str) -> bool {
    s.len() <= MAX_TEXT && s.chars().all(|c| !c.is_control())
}

/// Presence text as it can cross AMI unchanged, and whether `s` had to be changed for it.
///
/// What an origin reads is published in this form, so that a receiver writes exactly what
/// its Asterisk will report back (anything else never matches, and is written again and
/// again): control characters become blanks (the protocol does not carry them), leading
/// blanks go (an AMI reader skips the blanks after `Name:`, Asterisk's own parser included),
/// and the text is cut at a character boundary to [`MAX_TEXT`] bytes (func_presencestate
/// keeps at most 255 decoded bytes of base64 text).
pub fn fit_text(s: &str) -> (String, bool) {
    let cleaned: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let trimmed = cleaned.trim_start_matches([' ', '\t']);
    let mut end = trimmed.len().min(MAX_TEXT);
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    let out = &trimmed[..end];
    let changed = out != s;
    (out.to_string(), changed)
}

impl Value {
    /// What a receiver writes for this value: what Asterisk can be set to and will report
    /// back as it was written.
    ///
    /// UNKNOWN cannot be written (func_devstate refuses it): it is written as INVALID, which
    /// main/devicestate.c's hint aggregation ranks next to it below every real state (INVALID
    /// 0, UNKNOWN 1, UNAVAILABLE 2, ...), so a hint combining the mirror with anything else
    /// shows the same either way. Presence text a peer sent unfit is fitted (see [`fit_text`]).
    pub fn as_written(self) -> Value {
        match self {
            Value::Device(DeviceState::Unknown) => Value::Device(DeviceState::Invalid),
            Value::Presence {
                state,
                subtype,
                message,
            } => Value::Presence {
                state,
                subtype: fit_text(&subtype).0,
                message: fit_text(&message).0,
            },
            v @ (Value::Device(_) | Value::Mailbox(_)) => v,
        }
    }
}

/// A [`Value`] in 16 bytes (a `Value` takes 56), for the tables that hold one per device of
/// every server: a device state inline, a presence (fewer, and with text) boxed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packed {
    Device(DeviceState),
    Presence(Box<PackedPresence>),
    Mailbox(Counts),
}

/// The presence behind a [`Packed::Presence`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedPresence {
    pub state: PresenceState,
    pub subtype: Box<str>,
    pub message: Box<str>,
}

impl From<Value> for Packed {
    fn from(v: Value) -> Packed {
        match v {
            Value::Device(d) => Packed::Device(d),
            Value::Mailbox(c) => Packed::Mailbox(c),
            Value::Presence {
                state,
                subtype,
                message,
            } => Packed::Presence(Box::new(PackedPresence {
                state,
                subtype: subtype.into(),
                message: message.into(),
            })),
        }
    }
}

impl From<&Packed> for Value {
    fn from(p: &Packed) -> Value {
        match p {
            Packed::Device(d) => Value::Device(*d),
            Packed::Mailbox(c) => Value::Mailbox(*c),
            Packed::Presence(p) => Value::Presence {
                state: p.state,
                subtype: p.subtype.to_string(),
                message: p.message.to_string(),
            },
        }
    }
}

impl PartialEq<Value> for Packed {
    fn eq(&self, v: &Value) -> bool {
        match (self, v) {
            (Packed::Device(a), Value::Device(b)) => a == b,
            (Packed::Mailbox(a), Value::Mailbox(b)) => a == b,
            (
                Packed::Presence(p),
                Value::Presence {
                    state,
                    subtype,
                    message,
                },
            ) => p.state == *state && *p.subtype == **subtype && *p.message == **message,
            _ => false,
        }
    }
}

impl Packed {
    /// The state's name on the wire (`INUSE`, `dnd`, `waiting`).
    pub fn state_name(&self) -> &'static str {
        match self {
            Packed::Device(d) => d.as_str(),
            Packed::Presence(p) => p.state.as_str(),
            Packed::Mailbox(c) => c.state_name(),
        }
    }
}

impl Entry {
    /// An entry for the wire from a packed value (None: removed).
    pub fn from_packed(
        origin: &str,
        kind: Kind,
        name: &str,
        value: Option<&Packed>,
        version: u64,
        stamp: Stamp,
    ) -> Entry {
        let (subtype, message) = match value {
            Some(Packed::Presence(p)) => (p.subtype.to_string(), p.message.to_string()),
            Some(Packed::Device(_) | Packed::Mailbox(_)) | None => (String::new(), String::new()),
        };
        let counts = match value {
            Some(Packed::Mailbox(c)) => *c,
            Some(Packed::Device(_) | Packed::Presence(_)) | None => Counts::default(),
        };
        Entry {
            origin: origin.to_string(),
            kind,
            name: name.to_string(),
            state: value.map(|v| v.state_name().to_string()),
            subtype,
            message,
            new: counts.new,
            old: counts.old,
            urgent: counts.urgent,
            version,
            stamp,
        }
    }

    pub fn device(origin: &str, name: &str, state: DeviceState) -> Entry {
        Entry::from_value(
            Key {
                origin: origin.into(),
                kind: Kind::Device,
                name: name.into(),
            },
            Some(Value::Device(state)),
        )
    }

    pub fn presence(origin: &str, name: &str, state: PresenceState, subtype: &str, message: &str) -> Entry {
        Entry::from_value(
            Key {
                origin: origin.into(),
                kind: Kind::Presence,
                name: name.into(),
            },
            Some(Value::Presence {
                state,
                subtype: subtype.into(),
                message: message.into(),
            }),
        )
    }

    pub fn mailbox(origin: &str, name: &str, counts: Counts) -> Entry {
        Entry::from_value(
            Key {
                origin: origin.into(),
                kind: Kind::Mailbox,
                name: name.into(),
            },
            Some(Value::Mailbox(counts)),
        )
    }

    pub fn from_value(key: Key, value: Option<Value>) -> Entry {
        let mut counts = Counts::default();
        let (state, subtype, message) = match value {
            None => (None, String::new(), String::new()),
            Some(Value::Device(d)) => (Some(d.as_str().to_string()), String::new(), String::new()),
            Some(Value::Presence {
                state,
                subtype,
                message,
            }) => (Some(state.as_str().to_string()), subtype, message),
            Some(Value::Mailbox(c)) => {
                counts = c;
                (Some(c.state_name().to_string()), String::new(), String::new())
            }
        };
        Entry {
            origin: key.origin,
            kind: key.kind,
            name: key.name,
            state,
            subtype,
            message,
            new: counts.new,
            old: counts.old,
            urgent: counts.urgent,
            version: 0,
            stamp: Stamp::ZERO,
        }
    }

    fn has_counts(&self) -> bool {
        self.new != 0 || self.old != 0 || self.urgent != 0
    }

    /// The key, taking the entry's strings instead of copying them.
    pub fn into_key(self) -> Key {
        Key {
            origin: self.origin,
            kind: self.kind,
            name: self.name,
        }
    }

    pub fn key(&self) -> Key {
        Key {
            origin: self.origin.clone(),
            kind: self.kind,
            name: self.name.clone(),
        }
    }

    /// Checks every field and returns the typed value (None: removed).
    pub fn value(&self) -> Result<Option<Value>, EntryError> {
        if !valid_origin(&self.origin) {
            return Err(EntryError::BadOrigin(self.origin.clone()));
        }
        if !valid_name(&self.name) {
            return Err(EntryError::BadName(self.name.chars().take(100).collect()));
        }
        let Some(state) = &self.state else { return Ok(None) };
        let bad_state = || EntryError::BadState {
            kind: self.kind,
            state: state.chars().take(40).collect(),
        };
        match self.kind {
            Kind::Device => {
                if !self.subtype.is_empty() || !self.message.is_empty() {
                    return Err(EntryError::TextOnDevice);
                }
                if self.has_counts() {
                    return Err(EntryError::CountsOnState);
                }
                // UNKNOWN is a state Asterisk reports (a Custom device whose astdb entry says
                // so, devices of some channel drivers): carried as it is; a receiver writes it
                // as [`Value::as_written`] says.
                let d: DeviceState = state.parse().map_err(|_| bad_state())?;
                Ok(Some(Value::Device(d)))
            }
            Kind::Presence => {
                if !valid_text(&self.subtype) || !valid_text(&self.message) {
                    return Err(EntryError::BadText);
                }
                if self.has_counts() {
                    return Err(EntryError::CountsOnState);
                }
                let p: PresenceState = state.parse().map_err(|_| bad_state())?;
                Ok(Some(Value::Presence {
                    state: p,
                    subtype: self.subtype.clone(),
                    message: self.message.clone(),
                }))
            }
            Kind::Mailbox => {
                if !self.subtype.is_empty() || !self.message.is_empty() {
                    return Err(EntryError::TextOnDevice);
                }
                let counts = Counts {
                    new: self.new,
                    old: self.old,
                    urgent: self.urgent,
                };
                // The lamp is derived from the counts; one that disagrees is a garbled entry.
                if state != counts.state_name() {
                    return Err(bad_state());
                }
                Ok(Some(Value::Mailbox(counts)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fitted_for_ami() {
        assert_eq!(fit_text("in a meeting, café"), ("in a meeting, café".into(), false));
        assert_eq!(fit_text("  leading"), ("leading".into(), true));
        assert_eq!(fit_text("tab\there\n"), ("tab here ".into(), true));
        let long = "é".repeat(200); // 400 bytes
        let (cut, changed) = fit_text(&long);
        assert!(changed && cut.len() == 254 && cut.chars().all(|c| c == 'é'));
        assert_eq!(
            Value::Device(DeviceState::Unknown).as_written(),
            Value::Device(DeviceState::Invalid)
        );
    }

    #[test]
    fn packed_values() {
        assert_eq!(std::mem::size_of::<Packed>(), 16);
        let presence = Value::Presence {
            state: PresenceState::Away,
            subtype: "lunch".into(),
            message: "back at 2, café".into(),
        };
        for v in [Value::Device(DeviceState::Busy), presence.clone()] {
            let p = Packed::from(v.clone());
            assert_eq!(p, v);
            assert_eq!(Value::from(&p), v);
        }
        assert_ne!(Packed::Device(DeviceState::Busy), Value::Device(DeviceState::Inuse));
        assert_ne!(Packed::Device(DeviceState::Busy), presence);
        let p = Packed::from(presence);
        assert_eq!(
            Entry::from_packed("a", Kind::Presence, "CustomPresence:1", Some(&p), 7, Stamp::ZERO),
            Entry {
                version: 7,
                ..Entry::presence("a", "CustomPresence:1", PresenceState::Away, "lunch", "back at 2, café")
            }
        );
        let gone = Entry::from_packed("a", Kind::Device, "SIP/1", None, 8, Stamp::ZERO);
        assert_eq!((gone.state, gone.version), (None, 8));
    }

    #[test]
    fn validation() {
        assert!(Entry::device("a", "SIP/100", DeviceState::Inuse).value().is_ok());
        assert!(Entry::device("a b", "SIP/100", DeviceState::Inuse).value().is_err());
        assert!(Entry::device("a", "SIP/100\r\nAction: Originate", DeviceState::Inuse)
            .value()
            .is_err());
        assert!(Entry::device("a", "x)", DeviceState::Inuse).value().is_err());
        assert!(Entry::device("a", &"x".repeat(80), DeviceState::Inuse).value().is_err());
        assert_eq!(
            Entry::device("a", "SIP/1", DeviceState::Unknown).value(),
            Ok(Some(Value::Device(DeviceState::Unknown))),
            "UNKNOWN is a state Asterisk has"
        );
        let mut e = Entry::presence(
            "a",
            "CustomPresence:1",
            PresenceState::Dnd,
            "",
            "in a meeting, back at 3",
        );
        assert!(e.value().is_ok());
        e.message = "x\ny".into();
        assert_eq!(e.value(), Err(EntryError::BadText));
        let mut e = Entry::device("a", "SIP/1", DeviceState::Inuse);
        e.state = Some("BOGUS".into());
        assert!(e.value().is_err());
        e.state = None;
        assert_eq!(e.value(), Ok(None));
    }

    #[test]
    fn mailboxes() {
        let c = Counts {
            new: 2,
            old: 1,
            urgent: 0,
        };
        let e = Entry::mailbox("a", "100@default", c);
        assert_eq!((e.state.as_deref(), e.new, e.old), (Some("waiting"), 2, 1));
        assert_eq!(e.value(), Ok(Some(Value::Mailbox(c))));
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&json).unwrap(), e);
        let old_only = Entry::mailbox(
            "a",
            "100@default",
            Counts {
                new: 0,
                old: 3,
                urgent: 0,
            },
        );
        assert_eq!(
            old_only.state.as_deref(),
            Some("empty"),
            "old messages alone leave the lamp dark"
        );
        let mut lying = e.clone();
        lying.state = Some("empty".into());
        assert!(lying.value().is_err(), "a lamp that disagrees with its counts");
        let mut counted = Entry::device("a", "SIP/1", DeviceState::Inuse);
        counted.new = 1;
        assert_eq!(counted.value(), Err(EntryError::CountsOnState));
        let p = Packed::from(Value::Mailbox(c));
        assert_eq!(p, Value::Mailbox(c));
        assert_eq!(
            Entry::from_packed("a", Kind::Mailbox, "100@default", Some(&p), 0, Stamp::ZERO),
            e
        );
    }
}
