//! Device and presence states as Asterisk defines them (devicestate.h, presencestate.h), and
//! the hint arithmetic that decides what a phone's lamp shows.

use std::fmt;
use std::str::FromStr;

/// A device state. The discriminants are Asterisk's numeric values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceState {
    Unknown = 0,
    NotInuse = 1,
    Inuse = 2,
    Busy = 3,
    Invalid = 4,
    Unavailable = 5,
    Ringing = 6,
    Ringinuse = 7,
    Onhold = 8,
}

/// A name that is not a state Asterisk knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} state {value:?}")]
pub struct UnknownState {
    pub kind: &'static str,
    pub value: String,
}

impl DeviceState {
    pub const ALL: [DeviceState; 9] = [
        DeviceState::Unknown,
        DeviceState::NotInuse,
        DeviceState::Inuse,
        DeviceState::Busy,
        DeviceState::Invalid,
        DeviceState::Unavailable,
        DeviceState::Ringing,
        DeviceState::Ringinuse,
        DeviceState::Onhold,
    ];

    /// The name Asterisk prints (`NOT_INUSE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Unknown => "UNKNOWN",
            DeviceState::NotInuse => "NOT_INUSE",
            DeviceState::Inuse => "INUSE",
            DeviceState::Busy => "BUSY",
            DeviceState::Invalid => "INVALID",
            DeviceState::Unavailable => "UNAVAILABLE",
            DeviceState::Ringing => "RINGING",
            DeviceState::Ringinuse => "RINGINUSE",
            DeviceState::Onhold => "ONHOLD",
        }
    }

    /// Rank in `ast_devstate_aggregate_add`: the higher one wins in a `A&B` hint.
    fn aggregate_rank(self) -> u8 {
        match self {
            DeviceState::Invalid => 0,
            DeviceState::Unknown => 1,
            DeviceState::Unavailable => 2,
            DeviceState::NotInuse => 3,
            DeviceState::Onhold => 4,
            DeviceState::Ringing => 5,
            DeviceState::Inuse => 6,
            DeviceState::Busy => 7,
            DeviceState::Ringinuse => 8,
        }
    }

    /// Combines the states of a hint's devices as Asterisk does: the highest rank wins,
    /// and ringing together with in use, on hold or busy gives RINGINUSE. An empty list is
    /// INVALID (the neutral element).
    pub fn aggregate(states: impl IntoIterator<Item = DeviceState>) -> DeviceState {
        let mut result = DeviceState::Invalid;
        let (mut ringing, mut inuse) = (false, false);
        for s in states {
            match s {
                DeviceState::Ringing => ringing = true,
                DeviceState::Inuse | DeviceState::Onhold | DeviceState::Busy => inuse = true,
                _ => {}
            }
            if ringing && inuse {
                result = DeviceState::Ringinuse;
            } else if s.aggregate_rank() > result.aggregate_rank() {
                result = s;
            }
        }
        result
    }

    /// The extension state bits (`ast_devstate_to_extenstate`) of a hint in this state.
    pub fn extension_status(self) -> ExtensionStatus {
        match self {
            DeviceState::Onhold => ExtensionStatus::ONHOLD,
            DeviceState::Busy => ExtensionStatus::BUSY,
            DeviceState::Unknown | DeviceState::NotInuse => ExtensionStatus::IDLE,
            DeviceState::Unavailable | DeviceState::Invalid => ExtensionStatus::UNAVAILABLE,
            DeviceState::Ringinuse => ExtensionStatus(ExtensionStatus::INUSE.0 | ExtensionStatus::RINGING.0),
            DeviceState::Ringing => ExtensionStatus::RINGING,
            DeviceState::Inuse => ExtensionStatus::INUSE,
        }
    }

    /// The device state that an extension status stands for (Asterisk 1.8/11 `ExtensionStatus`).
    pub fn from_extension_status(status: ExtensionStatus) -> DeviceState {
        let s = status.0;
        match s {
            x if x < 0 => DeviceState::Unknown,
            0 => DeviceState::NotInuse,
            x if x & 1 != 0 && x & 8 != 0 => DeviceState::Ringinuse,
            x if x & 8 != 0 => DeviceState::Ringing,
            x if x & 1 != 0 => DeviceState::Inuse,
            x if x & 2 != 0 => DeviceState::Busy,
            x if x & 16 != 0 => DeviceState::Onhold,
            x if x & 4 != 0 => DeviceState::Unavailable,
            _ => DeviceState::Unknown,
        }
    }
}

impl FromStr for DeviceState {
    type Err = UnknownState;

    /// Case-insensitive, as `ast_devstate_val`.
    fn from_str(s: &str) -> Result<Self, UnknownState> {
        DeviceState::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownState {
                kind: "device",
                value: s.to_string(),
            })
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An extension (hint) status as AMI prints it: a bit set, or -1/-2 for no hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtensionStatus(pub i32);

impl ExtensionStatus {
    pub const REMOVED: ExtensionStatus = ExtensionStatus(-2);
    pub const DEACTIVATED: ExtensionStatus = ExtensionStatus(-1);
    pub const IDLE: ExtensionStatus = ExtensionStatus(0);
    pub const INUSE: ExtensionStatus = ExtensionStatus(1);
    pub const BUSY: ExtensionStatus = ExtensionStatus(2);
    pub const UNAVAILABLE: ExtensionStatus = ExtensionStatus(4);
    pub const RINGING: ExtensionStatus = ExtensionStatus(8);
    pub const ONHOLD: ExtensionStatus = ExtensionStatus(16);

    /// `StatusText` as `ast_extension_state2str` gives it.
    pub fn text(self) -> &'static str {
        match self.0 {
            0 => "Idle",
            1 => "InUse",
            2 => "Busy",
            4 => "Unavailable",
            8 => "Ringing",
            9 => "InUse&Ringing",
            16 => "Hold",
            17 => "InUse&Hold",
            _ => "Unknown",
        }
    }
}

/// A presence state (`ast_presence_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceState {
    NotSet,
    Unavailable,
    Available,
    Away,
    Xa,
    Chat,
    Dnd,
}

impl PresenceState {
    pub const ALL: [PresenceState; 7] = [
        PresenceState::NotSet,
        PresenceState::Unavailable,
        PresenceState::Available,
        PresenceState::Away,
        PresenceState::Xa,
        PresenceState::Chat,
        PresenceState::Dnd,
    ];

    /// The name Asterisk prints (lowercase).
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceState::NotSet => "not_set",
            PresenceState::Unavailable => "unavailable",
            PresenceState::Available => "available",
            PresenceState::Away => "away",
            PresenceState::Xa => "xa",
            PresenceState::Chat => "chat",
            PresenceState::Dnd => "dnd",
        }
    }
}

impl FromStr for PresenceState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, UnknownState> {
        PresenceState::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownState {
                kind: "presence",
                value: s.to_string(),
            })
    }
}

impl fmt::Display for PresenceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest device string Asterisk handles (`AST_MAX_EXTENSION` 80, less the NUL).
pub const MAX_DEVICE_LEN: usize = 79;

#[cfg(test)]
mod tests {
    use super::DeviceState::*;
    use super::*;

    #[test]
    fn names_round_trip_case_insensitively() {
        for d in DeviceState::ALL {
            assert_eq!(d.as_str().to_lowercase().parse::<DeviceState>(), Ok(d));
        }
        assert!("BOGUS".parse::<DeviceState>().is_err());
        for p in PresenceState::ALL {
            assert_eq!(p.as_str().to_uppercase().parse::<PresenceState>(), Ok(p));
        }
    }

    #[test]
    fn aggregation_follows_asterisk() {
        assert_eq!(DeviceState::aggregate([NotInuse, Inuse]), Inuse);
        assert_eq!(DeviceState::aggregate([Inuse, NotInuse]), Inuse);
        assert_eq!(DeviceState::aggregate([Unavailable, NotInuse]), NotInuse);
        assert_eq!(DeviceState::aggregate([Invalid, Unknown]), Unknown);
        assert_eq!(DeviceState::aggregate([Ringing, Inuse]), Ringinuse);
        assert_eq!(DeviceState::aggregate([Onhold, Ringing]), Ringinuse);
        assert_eq!(DeviceState::aggregate([Busy, Inuse]), Busy);
        assert_eq!(DeviceState::aggregate([]), Invalid);
        assert_eq!(DeviceState::aggregate([Invalid, NotInuse]), NotInuse);
    }

    #[test]
    fn extension_status_matches_fixture_03() {
        // Pairs seen in fixtures/ami/asterisk-22.10.1/03_device_state.txt.
        for (d, status, text) in [
            (Inuse, 1, "InUse"),
            (Ringing, 8, "Ringing"),
            (Ringinuse, 9, "InUse&Ringing"),
            (Onhold, 16, "Hold"),
            (Busy, 2, "Busy"),
            (Unavailable, 4, "Unavailable"),
            (NotInuse, 0, "Idle"),
        ] {
            assert_eq!(d.extension_status(), ExtensionStatus(status));
            assert_eq!(ExtensionStatus(status).text(), text);
            assert_eq!(DeviceState::from_extension_status(ExtensionStatus(status)), d);
        }
        assert_eq!(Invalid.extension_status(), Unavailable.extension_status());
        assert_eq!(ExtensionStatus(-1).text(), "Unknown");
    }
}
