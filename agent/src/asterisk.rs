//! How the agent reads states from AMI messages and writes them back with Setvar.

use ami::{DeviceState, Message, PresenceState};
use base64::Engine;
use proto::{Kind, Value};

/// A device or presence state carried by a DeviceStateChange / PresenceStateChange event or
/// list item.
pub fn observed(m: &Message) -> Option<(Kind, String, Value)> {
    match m.event_name()? {
        "DeviceStateChange" => {
            let state: DeviceState = m.get("State")?.parse().ok()?;
            Some((Kind::Device, m.get("Device")?.to_string(), Value::Device(state)))
        }
        "PresenceStateChange" => {
            let state: PresenceState = m.get("Status")?.parse().ok()?;
            // Asterisk C-escapes both texts (see ami::cescape).
            let text = |h: &str| ami::cescape::unescape(m.get(h).unwrap_or("")).into_owned();
            Some((
                Kind::Presence,
                m.get("Presentity")?.to_string(),
                Value::Presence {
                    state,
                    subtype: text("Subtype"),
                    message: text("Message"),
                },
            ))
        }
        _ => None,
    }
}

/// A presence value in the form that crosses AMI unchanged ([`proto::entry::fit_text`]), and
/// whether it had to be changed for that.
pub fn fitted(value: Value) -> (Value, bool) {
    match value {
        Value::Presence {
            state,
            subtype,
            message,
        } => {
            let (subtype, a) = proto::entry::fit_text(&subtype);
            let (message, b) = proto::entry::fit_text(&message);
            (
                Value::Presence {
                    state,
                    subtype,
                    message,
                },
                a || b,
            )
        }
        v => (v, false),
    }
}

/// The Setvar that puts `value` on `target`.
pub fn setvar(target: &str, value: &Value) -> Message {
    let (var, val) = match value {
        Value::Device(d) => (format!("DEVICE_STATE({target})"), d.as_str().to_string()),
        Value::Presence {
            state,
            subtype,
            message,
        } => (
            format!("PRESENCE_STATE({target})"),
            presence_value(*state, subtype, message),
        ),
    };
    Message::action("Setvar").with("Variable", var).with("Value", val)
}

/// `state,subtype,message`, or with the `e` option and base64 whenever a field holds
/// anything but plain characters: a comma would cut the message (func_presencestate's
/// parse_data), and base64 carries any byte.
pub fn presence_value(state: PresenceState, subtype: &str, message: &str) -> String {
    let plain = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || " .-_@!?".contains(c));
    if plain(subtype) && plain(message) {
        format!("{state},{subtype},{message}")
    } else {
        let b = base64::engine::general_purpose::STANDARD;
        format!("{state},{},{},e", b.encode(subtype), b.encode(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_values() {
        assert_eq!(
            presence_value(PresenceState::Away, "lunch", "back soon"),
            "away,lunch,back soon"
        );
        assert_eq!(
            presence_value(PresenceState::Dnd, "", "meeting, 3pm"),
            "dnd,,bWVldGluZywgM3Bt,e"
        );
        let m = setvar("Custom:SIP/100", &Value::Device(DeviceState::Inuse));
        assert_eq!(m.get("Variable"), Some("DEVICE_STATE(Custom:SIP/100)"));
        assert_eq!(m.get("Value"), Some("INUSE"));
    }
}
