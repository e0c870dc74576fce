//! Dialplan hints: which devices and presence provider an extension watches, and the
//! extension status Asterisk derives from them.

use ami::state::ExtensionStatus;
use ami::DeviceState;

/// One hint and what was last announced for it (Asterisk only notifies changes).
#[derive(Debug, Clone)]
pub struct Hint {
    pub exten: String,
    pub context: String,
    /// The hint string as configured, printed in `Hint:` headers.
    pub text: String,
    pub devices: Vec<String>,
    pub presence: Option<String>,
    pub last_status: ExtensionStatus,
    pub last_presence: Option<PresenceValue>,
}

/// A presence value: state, subtype, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceValue {
    pub state: ami::PresenceState,
    pub subtype: String,
    pub message: String,
}

impl Hint {
    /// Parses `SIP/100&Custom:100,CustomPresence:100` (devices `&`-separated, then presence).
    pub fn parse(exten: &str, context: &str, text: &str) -> Hint {
        let (devs, pres) = match text.split_once(',') {
            Some((d, p)) => (d, Some(p.trim())),
            None => (text, None),
        };
        Hint {
            exten: exten.into(),
            context: context.into(),
            text: text.into(),
            devices: devs
                .split('&')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(String::from)
                .collect(),
            presence: pres.filter(|p| !p.is_empty()).map(String::from),
            last_status: ExtensionStatus::DEACTIVATED,
            last_presence: None,
        }
    }

    /// The extension status from the devices' states.
    pub fn status(&self, state_of: impl Fn(&str) -> DeviceState) -> ExtensionStatus {
        DeviceState::aggregate(self.devices.iter().map(|d| state_of(d))).extension_status()
    }

    /// Whether this hint watches `device` (names compare case-insensitively, as Asterisk does).
    pub fn watches(&self, device: &str) -> bool {
        self.devices.iter().any(|d| d.eq_ignore_ascii_case(device))
    }
}
