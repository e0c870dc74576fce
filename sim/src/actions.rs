//! The AMI actions a simulated Asterisk answers once a session is logged in, with
//! manager.c's privilege checks and the exact response texts of Asterisk 22.

use crate::clock;
use crate::events::{error, list, list_complete, list_item, list_start, response, success};
use crate::privilege::Classes;
use crate::world::World;
use ami::state::ExtensionStatus;
use ami::Message;
use std::time::SystemTime;

/// What `write=` class an action needs (0: none), as registered in manager.c and app_queue.c.
pub fn required_class(action: &str) -> Option<Classes> {
    let c = |list: &str| Some(Classes::parse(list));
    match action.to_ascii_lowercase().as_str() {
        "ping" | "logoff" | "login" | "challenge" | "queuestatus" | "queuesummary" | "events" => Some(Classes::NONE),
        "coresettings" | "corestatus" => c("system,reporting"),
        "setvar" => c("call"),
        "getvar" | "devicestatelist" | "presencestatelist" | "extensionstatelist" | "extensionstate"
        | "presencestate" => c("call,reporting"),
        "command" => c("command"),
        "originate" => c("originate"),
        "queueadd" | "queueremove" | "queuepause" => c("agent"),
        "dbgettree" => c("system,reporting"),
        "dbput" | "dbdel" => c("system"),
        // app_voicemail.c and res_mwi_external_ami.c.
        "voicemailuserslist" | "mwiget" => c("call,reporting"),
        "mwiupdate" | "mwidelete" => c("call"),
        _ => None,
    }
}

/// Answers one action from a logged-in session. Responses (and list items) are returned;
/// events go through `world.emit` and are sent after them.
pub fn handle(world: &mut World, write: Classes, msg: &Message) -> Vec<Message> {
    let id = msg.action_id();
    let Some(action) = msg.action_name() else {
        return vec![error(id, "Missing action in request")];
    };
    let Some(needed) = required_class(action) else {
        return vec![error(
            id,
            &format!("Invalid/unknown command: {action}. Use Action: ListCommands to show available commands."),
        )];
    };
    let lists_13 = ["devicestatelist", "presencestatelist", "extensionstatelist"];
    if world.legacy() && lists_13.contains(&action.to_ascii_lowercase().as_str()) {
        return vec![error(
            id,
            &format!("Invalid/unknown command: {action}. Use Action: ListCommands to show available commands."),
        )];
    }
    if crate::voicemail::loaded(world, &action.to_ascii_lowercase()) == Some(false) {
        return vec![error(
            id,
            &format!("Invalid/unknown command: {action}. Use Action: ListCommands to show available commands."),
        )];
    }
    if needed != Classes::NONE && !write.intersects(needed) {
        return vec![error(id, "Permission denied")];
    }
    match action.to_ascii_lowercase().as_str() {
        "ping" => vec![response("Success", id)
            .with("Ping", "Pong")
            .with("Timestamp", clock::timestamp(SystemTime::now()))],
        "events" => vec![response("Success", id).with("Events", "On")],
        "coresettings" => vec![response("Success", id)
            .with("AMIversion", world.config.ami_version.clone())
            .with("AsteriskVersion", world.config.asterisk_version.clone())
            .with("SystemName", world.config.system_name.clone())
            .with("CoreMaxCalls", "0")
            .with("CoreMaxLoadAvg", "0.000000")
            .with("CoreRunUser", "")
            .with("CoreRunGroup", "")
            .with("CoreMaxFilehandles", "0")
            .with("CoreRealTimeEnabled", "No")
            .with("CoreCDRenabled", "No")
            .with("CoreHTTPenabled", "No")
            .with("SoundsSearchCustomDir", "No")],
        "corestatus" => {
            let (sd, st) = clock::date_time(world.started);
            let (rd, rt) = clock::date_time(world.reloaded);
            vec![response("Success", id)
                .with("CoreStartupDate", sd)
                .with("CoreStartupTime", st)
                .with("CoreReloadDate", rd)
                .with("CoreReloadTime", rt)
                .with("CoreCurrentCalls", world.calls.len().to_string())
                .with("CoreProcessedCalls", world.processed_calls.to_string())]
        }
        "setvar" => vec![setvar(world, msg)],
        "getvar" => vec![getvar(world, msg)],
        "extensionstate" => {
            let exten = msg.get("Exten").unwrap_or("");
            let context = msg.get("Context").unwrap_or("default");
            let (hint, status) = match world.hints.iter().find(|h| h.exten == exten && h.context == context) {
                Some(h) => (h.text.clone(), h.status(|d| world.state_of(d))),
                None => (String::new(), ExtensionStatus::DEACTIVATED),
            };
            vec![success(id, "Extension Status")
                .with("Exten", exten)
                .with("Context", context)
                .with("Hint", hint)
                .with("Status", status.0.to_string())
                .with("StatusText", status.text())]
        }
        "presencestate" => {
            let Some(provider) = msg.get("Provider") else {
                return vec![error(id, "No provider specified")];
            };
            match world.presence_of(provider) {
                Some(p) => vec![success(id, "Presence State")
                    .with("State", p.state.as_str())
                    .with("Subtype", p.subtype.clone())
                    .with("Message", p.message.clone())
                    .with("PresenceMessage", p.message)],
                None => vec![error(id, "Invalid presence state")],
            }
        }
        "devicestatelist" => {
            let items = world
                .devices
                .iter()
                .map(|(d, s)| {
                    list_item("DeviceStateChange", id)
                        .with("Device", d.clone())
                        .with("State", s.as_str())
                })
                .collect();
            list(id, "Device State Changes will follow", items, "DeviceStateListComplete")
        }
        "presencestatelist" => {
            let items = world
                .presence
                .iter()
                .map(|(p, v)| crate::events::presence_fields(list_item("PresenceStateChange", id), p, v))
                .collect();
            list(
                id,
                "Presence State Changes will follow",
                items,
                "PresenceStateListComplete",
            )
        }
        "extensionstatelist" => {
            let mut out = vec![list_start(id, "Extension Statuses will follow")];
            for h in &world.hints {
                let status = h.status(|d| world.state_of(d));
                out.push(
                    list_item("ExtensionStatus", id)
                        .with("Exten", h.exten.clone())
                        .with("Context", h.context.clone())
                        .with("Hint", h.text.clone())
                        .with("Status", status.0.to_string())
                        .with("StatusText", status.text()),
                );
            }
            let n = out.len() - 1;
            out.push(list_complete("ExtensionStateListComplete", id, n));
            out
        }
        "queuestatus" => queue_status(world, msg),
        "dbgettree" => crate::astdb::get_tree(world, msg),
        "dbput" => vec![crate::astdb::put(world, msg)],
        "dbdel" => vec![crate::astdb::del(world, msg)],
        "queueadd" => {
            let r = world.add_member(
                msg.get("Queue").unwrap_or(""),
                msg.get("Interface").unwrap_or(""),
                msg.get("MemberName").unwrap_or(""),
                msg.get("StateInterface").unwrap_or(""),
            );
            vec![match r {
                Ok(()) => success(id, "Added interface to queue"),
                Err(e) => error(id, &e.to_string()),
            }]
        }
        "queueremove" => {
            let r = world.remove_member(msg.get("Queue").unwrap_or(""), msg.get("Interface").unwrap_or(""));
            vec![match r {
                Ok(()) => success(id, "Removed interface from queue"),
                Err(e) => error(id, &e.to_string()),
            }]
        }
        "queuepause" => vec![queue_pause(world, msg)],
        a @ ("voicemailuserslist" | "mwiget" | "mwiupdate" | "mwidelete") => crate::voicemail::handle(world, a, msg),
        "command" | "originate" | "queuesummary" => {
            vec![error(id, &format!("{action} is not simulated"))]
        }
        _ => vec![error(id, "Invalid/unknown command")],
    }
}

/// `QueuePause` as app_queue's manager_pause_queue_member answers it: Interface and Paused
/// required, Queue optional (every queue of the member), Reason optional; `Paused` is true for
/// what `ast_true` takes (yes, true, y, t, 1, on), false for anything else.
fn queue_pause(world: &mut World, msg: &Message) -> Message {
    let id = msg.action_id();
    let interface = msg.get("Interface").unwrap_or("");
    let paused = msg.get("Paused").unwrap_or("");
    if interface.is_empty() || paused.is_empty() {
        return error(id, "Need 'Interface' and 'Paused' parameters.");
    }
    let paused = ["yes", "true", "y", "t", "1", "on"]
        .iter()
        .any(|t| paused.eq_ignore_ascii_case(t));
    let queue = msg.get("Queue").unwrap_or("");
    match world.pause_member(queue, interface, paused, msg.get("Reason").unwrap_or("")) {
        Ok(()) if paused => success(id, "Interface paused successfully"),
        Ok(()) => success(id, "Interface unpaused successfully"),
        Err(_) => error(id, "Interface not found"),
    }
}

/// Setvar without a Channel: dialplan functions and global variables.
fn setvar(world: &mut World, msg: &Message) -> Message {
    let id = msg.action_id();
    let Some(var) = msg.get("Variable").filter(|v| !v.is_empty()) else {
        return error(id, "No variable specified");
    };
    let value = msg.get("Value").unwrap_or("");
    if world.log_setvars {
        world.setvar_log.push((var.to_string(), value.to_string()));
    }
    if let Some(hook) = &world.setvar_hook {
        hook(var, value);
    }
    let ok = match function_call(var) {
        Some((func, arg)) if func.eq_ignore_ascii_case("DEVICE_STATE") => world.write_custom_device(arg, value),
        Some((func, arg)) if func.eq_ignore_ascii_case("PRESENCE_STATE") => world.write_custom_presence(arg, value),
        Some(_) => false,
        None => {
            world.globals.insert(var.to_string(), value.to_string());
            true
        }
    };
    if ok {
        success(id, "Variable Set")
    } else {
        error(id, "Variable not set")
    }
}

fn getvar(world: &World, msg: &Message) -> Message {
    let id = msg.action_id();
    let Some(var) = msg.get("Variable").filter(|v| !v.is_empty()) else {
        return error(id, "No variable specified");
    };
    let value = match function_call(var) {
        Some((func, arg)) if func.eq_ignore_ascii_case("DEVICE_STATE") => world.state_of(arg).as_str().to_string(),
        Some((func, arg)) if func.eq_ignore_ascii_case("PRESENCE_STATE") => {
            let (provider, field) = arg.split_once(',').unwrap_or((arg, "value"));
            let p = world.presence_of(provider);
            match (p, field.split(',').next().unwrap_or("")) {
                (Some(p), f) if f.eq_ignore_ascii_case("value") => p.state.as_str().to_string(),
                (Some(p), f) if f.eq_ignore_ascii_case("subtype") => p.subtype,
                (Some(p), f) if f.eq_ignore_ascii_case("message") => p.message,
                (None, f) if f.eq_ignore_ascii_case("value") => "not_set".into(),
                _ => String::new(),
            }
        }
        Some(_) => String::new(),
        None => world.globals.get(var).cloned().unwrap_or_default(),
    };
    response("Success", id).with("Variable", var).with("Value", value)
}

/// `NAME(arg)` -> (NAME, arg).
fn function_call(var: &str) -> Option<(&str, &str)> {
    let open = var.find('(')?;
    let inner = var[open + 1..].strip_suffix(')')?;
    Some((&var[..open], inner))
}

fn queue_status(world: &World, msg: &Message) -> Vec<Message> {
    let id = msg.action_id();
    let only_queue = msg.get("Queue").filter(|q| !q.is_empty());
    let only_member = msg.get("Member").filter(|m| !m.is_empty());
    let mut out = vec![list_start(id, "Queue status will follow")];
    let with_id = |mut m: Message| {
        if let Some(id) = id {
            m.push("ActionID", id);
        }
        m
    };
    for q in world.queues.iter().filter(|q| only_queue.is_none_or(|n| n == q.name)) {
        out.push(with_id(
            Message::new()
                .with("Event", "QueueParams")
                .with("Queue", q.name.clone())
                .with("Max", "0")
                .with("Strategy", q.strategy.clone())
                .with("Calls", q.waiting.len().to_string())
                .with("Holdtime", "0")
                .with(
                    "TalkTime",
                    q.talk_time.checked_div(q.completed).unwrap_or(0).to_string(),
                )
                .with("Completed", q.completed.to_string())
                .with("Abandoned", q.abandoned.to_string())
                .with("ServiceLevel", "0")
                .with("ServicelevelPerf", "0.0")
                .with("ServicelevelPerf2", "0.0")
                .with("Weight", "0"),
        ));
        for m in q
            .members
            .iter()
            .filter(|m| only_member.is_none_or(|n| n == m.interface || n == m.name))
        {
            let item = Message::new()
                .with("Event", "QueueMember")
                .with("Queue", q.name.clone())
                .with("Name", m.name.clone())
                .with("Location", m.interface.clone());
            out.push(with_id(crate::queue::member_fields(item, m).with("Wrapuptime", "0")));
        }
        for (pos, call_id) in q.waiting.iter().enumerate() {
            if let Some(call) = world.calls.get(call_id) {
                let mut m = Message::new()
                    .with("Event", "QueueEntry")
                    .with("Queue", q.name.clone())
                    .with("Position", (pos + 1).to_string());
                m.push("Channel", call.caller.name.clone());
                m.push("Uniqueid", call.caller.uniqueid.clone());
                m.push("CallerIDNum", call.caller.caller_num.clone());
                m.push("CallerIDName", call.caller.caller_name.clone());
                m.push("Wait", call.joined_at.elapsed().as_secs().to_string());
                out.push(with_id(m));
            }
        }
    }
    let n = out.len() - 1;
    out.push(list_complete("QueueStatusComplete", id, n));
    out
}
