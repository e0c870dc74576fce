//! astdb as the AMI sees it: DBGetTree, DBPut and DBDel (main/db.c), over the same families
//! the simulated func_devstate and func_presencestate keep their states in, so that a write
//! through either path is what the other reads and what a restart restores.

use crate::events::{error, list_complete, list_start, response, success};
use crate::world::World;
use ami::Message;

const DEVSTATE: &str = "CustomDevstate";
const PRESENCE: &str = "CustomPresence";

/// Every entry as `(/family/key, value)`, in key order (sqlite's, by bytes).
fn entries(world: &World) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = world
        .astdb_devstate
        .iter()
        .map(|(k, v)| (format!("/{DEVSTATE}/{k}"), v.clone()))
        .chain(
            world
                .astdb_presence
                .iter()
                .map(|(k, v)| (format!("/{PRESENCE}/{k}"), v.clone())),
        )
        .chain(world.astdb_other.iter().map(|(k, v)| (k.clone(), v.clone())))
        .collect();
    all.sort();
    all
}

/// `DBGetTree`: the entries under `/Family[/Key]`; an empty list when there are none.
pub fn get_tree(world: &World, msg: &Message) -> Vec<Message> {
    let id = msg.action_id();
    let mut prefix = String::new();
    for part in [msg.get("Family"), msg.get("Key")].into_iter().flatten() {
        if !part.is_empty() {
            prefix.push('/');
            prefix.push_str(part);
        }
    }
    let mut out = vec![list_start(id, "Result will follow")];
    let under = format!("{prefix}/");
    for (key, val) in entries(world) {
        if prefix.is_empty() || key.starts_with(&under) {
            // The ActionID comes last in these items (db.c appends it after Key and Val).
            let mut m = Message::new()
                .with("Event", "DBGetTreeResponse")
                .with("Key", key)
                .with("Val", val);
            if let Some(id) = id {
                m.push("ActionID", id);
            }
            out.push(m);
        }
    }
    let n = out.len() - 1;
    out.push(list_complete("DBGetTreeComplete", id, n));
    out
}

/// Family and Key, both required; `no_family` is the error text (DBPut and DBDel differ by
/// a full stop).
fn family_key<'a>(msg: &'a Message, no_family: &str) -> Result<(&'a str, &'a str), Message> {
    let id = msg.action_id();
    let family = msg.get("Family").unwrap_or("");
    let key = msg.get("Key").unwrap_or("");
    if family.is_empty() {
        return Err(error(id, no_family));
    }
    if key.is_empty() {
        return Err(error(id, "No key specified"));
    }
    Ok((family, key))
}

/// `DBPut`.
pub fn put(world: &mut World, msg: &Message) -> Message {
    let (family, key) = match family_key(msg, "No family specified") {
        Ok(fk) => fk,
        Err(e) => return e,
    };
    let val = msg.get("Val").unwrap_or("").to_string();
    match family {
        DEVSTATE => world.astdb_devstate.insert(key.to_string(), val),
        PRESENCE => world.astdb_presence.insert(key.to_string(), val),
        _ => world.astdb_other.insert(format!("/{family}/{key}"), val),
    };
    success(msg.action_id(), "Updated database successfully")
}

/// `DBDel`.
pub fn del(world: &mut World, msg: &Message) -> Message {
    let (family, key) = match family_key(msg, "No family specified.") {
        Ok(fk) => fk,
        Err(e) => return e,
    };
    let gone = match family {
        DEVSTATE => world.astdb_devstate.remove(key).is_some(),
        PRESENCE => world.astdb_presence.remove(key).is_some(),
        _ => world.astdb_other.remove(&format!("/{family}/{key}")).is_some(),
    };
    if gone {
        success(msg.action_id(), "Key deleted successfully")
    } else {
        response("Error", msg.action_id()).with("Message", "Database entry could not be deleted")
    }
}
