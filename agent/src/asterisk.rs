//! How the agent reads states from AMI messages and writes them back (Setvar, MWIUpdate).

use ami::{DeviceState, Message, PresenceState};
use base64::Engine;
use proto::{Counts, Kind, Value};

/// A count header: Asterisk prints them with %d / %u; anything else is no count.
fn count(m: &Message, header: &str) -> Option<u32> {
    m.get(header)?.trim().parse().ok()
}

/// A device, presence or mailbox state carried by an event or list item:
/// DeviceStateChange / PresenceStateChange, MessageWaiting (main/manager_mwi.c: Mailbox
/// `100@default`, New, Old; urgent messages are counted as new), VoicemailUserEntry
/// (app_voicemail's VoicemailUsersList: VoiceMailbox, VMContext, NewMessageCount,
/// OldMessageCount) and MWIGet (res_mwi_external_ami: Mailbox, NewMessages, OldMessages).
pub fn observed(m: &Message) -> Option<(Kind, String, Value)> {
    let mailbox =
        |name: String, new: u32, old: u32| Some((Kind::Mailbox, name, Value::Mailbox(Counts { new, old, urgent: 0 })));
    match m.event_name()? {
        "MessageWaiting" => mailbox(m.get("Mailbox")?.to_string(), count(m, "New")?, count(m, "Old")?),
        "VoicemailUserEntry" => {
            let (mbox, context) = (m.get("VoiceMailbox")?, m.get("VMContext").unwrap_or(""));
            let name = if context.is_empty() {
                mbox.to_string()
            } else {
                format!("{mbox}@{context}")
            };
            mailbox(name, count(m, "NewMessageCount")?, count(m, "OldMessageCount")?)
        }
        "MWIGet" => mailbox(
            m.get("Mailbox")?.to_string(),
            count(m, "NewMessages")?,
            count(m, "OldMessages")?,
        ),
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

/// The action that puts `value` on `target`: a Setvar of DEVICE_STATE / PRESENCE_STATE, or
/// res_mwi_external_ami's MWIUpdate for a mailbox (urgent messages count as new there, as in
/// Asterisk's own MWI events).
pub fn setvar(target: &str, value: &Value) -> Message {
    let (var, val) = match value {
        Value::Mailbox(c) => {
            return Message::action("MWIUpdate")
                .with("Mailbox", target)
                .with("NewMessages", (c.new.saturating_add(c.urgent)).to_string())
                .with("OldMessages", c.old.to_string())
        }
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
        let m = setvar(
            "100@default",
            &Value::Mailbox(Counts {
                new: 2,
                old: 1,
                urgent: 1,
            }),
        );
        assert_eq!(m.get("Action"), Some("MWIUpdate"));
        assert_eq!(
            (m.get("Mailbox"), m.get("NewMessages"), m.get("OldMessages")),
            (Some("100@default"), Some("3"), Some("1"))
        );
    }

    #[test]
    fn mailboxes_read() {
        let ev = Message::new()
            .with("Event", "MessageWaiting")
            .with("Mailbox", "100@default")
            .with("Waiting", "1")
            .with("New", "2")
            .with("Old", "0");
        let counts = |new, old| Value::Mailbox(Counts { new, old, urgent: 0 });
        assert_eq!(observed(&ev), Some((Kind::Mailbox, "100@default".into(), counts(2, 0))));
        let user = Message::new()
            .with("Event", "VoicemailUserEntry")
            .with("VMContext", "default")
            .with("VoiceMailbox", "101")
            .with("NewMessageCount", "0")
            .with("OldMessageCount", "4");
        assert_eq!(
            observed(&user),
            Some((Kind::Mailbox, "101@default".into(), counts(0, 4)))
        );
        let got = Message::new()
            .with("Event", "MWIGet")
            .with("Mailbox", "7@remote")
            .with("OldMessages", "1")
            .with("NewMessages", "1");
        assert_eq!(observed(&got), Some((Kind::Mailbox, "7@remote".into(), counts(1, 1))));
        let bad = Message::new()
            .with("Event", "MessageWaiting")
            .with("Mailbox", "1@d")
            .with("New", "-1")
            .with("Old", "0");
        assert_eq!(observed(&bad), None, "a count that is no count");
    }
}
