//! Builders for the events and list items a simulated Asterisk sends, with the fields in the
//! order a real Asterisk 22 sends them (see fixtures/ami/asterisk-22.10.1).

use crate::hints::{Hint, PresenceValue};
use crate::privilege::Classes;
use ami::state::ExtensionStatus;
use ami::{DeviceState, Message};

/// An event with its class: `Event:` then `Privilege:` then the fields.
pub fn event(name: &str, class: Classes) -> Message {
    Message::new()
        .with("Event", name)
        .with("Privilege", class.privilege_header())
}

pub fn device_state_change(device: &str, state: DeviceState) -> Message {
    event("DeviceStateChange", Classes::CALL)
        .with("Device", device)
        .with("State", state.as_str())
}

/// As main/presencestate.c reports it: Subtype and Message C-escaped (`ast_escape_c`).
pub fn presence_state_change(presentity: &str, p: &PresenceValue) -> Message {
    presence_fields(event("PresenceStateChange", Classes::CALL), presentity, p)
}

/// The fields of a PresenceStateChange event or PresenceStateList item.
pub fn presence_fields(m: Message, presentity: &str, p: &PresenceValue) -> Message {
    m.with("Presentity", presentity)
        .with("Status", p.state.as_str())
        .with("Subtype", ami::cescape::escape(&p.subtype))
        .with("Message", ami::cescape::escape(&p.message))
}

pub fn extension_status(hint: &Hint, status: ExtensionStatus) -> Message {
    event("ExtensionStatus", Classes::CALL)
        .with("Exten", hint.exten.clone())
        .with("Context", hint.context.clone())
        .with("Hint", hint.text.clone())
        .with("Status", status.0.to_string())
        .with("StatusText", status.text())
}

pub fn presence_status(hint: &Hint, p: &PresenceValue) -> Message {
    event("PresenceStatus", Classes::CALL)
        .with("Exten", hint.exten.clone())
        .with("Context", hint.context.clone())
        .with("Hint", hint.text.clone())
        .with("Status", p.state.as_str())
        .with("Subtype", p.subtype.clone())
        .with("Message", p.message.clone())
}

/// `Response: Success` (or Error), then `ActionID:` when the action had one (astman_start_ack).
pub fn response(kind: &str, action_id: Option<&str>) -> Message {
    let mut m = Message::new().with("Response", kind);
    if let Some(id) = action_id {
        m.push("ActionID", id);
    }
    m
}

pub fn success(action_id: Option<&str>, message: &str) -> Message {
    response("Success", action_id).with("Message", message)
}

pub fn error(action_id: Option<&str>, message: &str) -> Message {
    response("Error", action_id).with("Message", message)
}

/// A list item: `Event:` then `ActionID:` then the fields (DeviceStateList style).
pub fn list_item(name: &str, action_id: Option<&str>) -> Message {
    let mut m = Message::new().with("Event", name);
    if let Some(id) = action_id {
        m.push("ActionID", id);
    }
    m
}

/// The closing event of a list.
pub fn list_complete(name: &str, action_id: Option<&str>, items: usize) -> Message {
    list_item(name, action_id)
        .with("EventList", "Complete")
        .with("ListItems", items.to_string())
}

/// A whole list answer: the opening response, `items`, and the `complete` event counting them.
pub fn list(action_id: Option<&str>, message: &str, items: Vec<Message>, complete: &str) -> Vec<Message> {
    let n = items.len();
    let mut out = Vec::with_capacity(n + 2);
    out.push(list_start(action_id, message));
    out.extend(items);
    out.push(list_complete(complete, action_id, n));
    out
}

/// The opening response of a list.
pub fn list_start(action_id: Option<&str>, message: &str) -> Message {
    response("Success", action_id)
        .with("EventList", "start")
        .with("Message", message)
}
