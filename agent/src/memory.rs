//! The agent's memory of its own mirror names, kept in its Asterisk's astdb.
//!
//! A mirror name must never be published as the server's own state: the others would mirror
//! the mirror (`Custom:Custom:SIP/100`), astdb would keep it, and every restart would add a
//! level. The broker's snapshot tells which names are mirrors, but only of what the broker
//! holds now: when broker and agents start together, the first agent gets an empty snapshot
//! while its Asterisk has restored yesterday's mirrors from astdb. So the agent writes down
//! every target before its first write, in astdb beside the states themselves (family
//! [`FAMILY`], key = the name, value = the origin it was written for), and reads the list back
//! at every AMI connect, before it reads the states. astdb survives what the names survive
//! (an Asterisk restart, an agent restart, a new host for the agent, agentless mode), needs
//! no file on the agent's side, and DBGetTree / DBPut need only `write = system`, which the
//! agent's AMI user has anyway.

use ami::client::ActionError;
use ami::{Client, Message};

/// The astdb family of the mirror names.
pub const FAMILY: &str = "hintbus/mirror";

/// The key (in [`FAMILY`]) that says the memory is kept on this Asterisk. Until it is there
/// (a first run, or one after zmq-ami-broker or an older hintbus that kept no memory), the
/// mirrors Asterisk already holds cannot be told from its own states by memory: that run
/// adopts the broker's view, and writes the marker.
pub const MARKER: &str = ".kept-since-hintbus-0.1";

/// The names remembered, and whether the marker says the memory can be trusted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub names: Vec<String>,
    pub kept: bool,
}

/// The mirror names this Asterisk's astdb holds.
pub async fn read(client: &Client) -> Result<Remembered, ActionError> {
    let mut names = keys(client, FAMILY).await?;
    let before = names.len();
    names.retain(|n| n != MARKER);
    Ok(Remembered {
        kept: names.len() != before,
        names,
    })
}

/// The astdb family where func_devstate keeps Custom device states.
pub const CUSTOM_DEVSTATE: &str = "CustomDevstate";

/// The full names (`Custom:<key>`) of every Custom device state in astdb, as written: a
/// restart restores a name with `/` under another one.
pub async fn custom_states(client: &Client) -> Result<Vec<String>, ActionError> {
    Ok(keys(client, CUSTOM_DEVSTATE)
        .await?
        .into_iter()
        .map(|k| format!("Custom:{k}"))
        .collect())
}

/// The keys of one astdb family, without the family.
async fn keys(client: &Client, family: &str) -> Result<Vec<String>, ActionError> {
    let list = client.list(Message::action("DBGetTree").with("Family", family)).await?;
    let prefix = format!("/{family}/");
    Ok(list
        .items
        .iter()
        .filter_map(|m| m.get("Key")?.strip_prefix(&prefix).map(str::to_string))
        .collect())
}

/// The action that deletes a Custom state's astdb entry.
pub fn forget_custom(name: &str) -> Option<Message> {
    let key = name.strip_prefix("Custom:")?;
    Some(
        Message::action("DBDel")
            .with("Family", CUSTOM_DEVSTATE)
            .with("Key", key),
    )
}

/// The action that remembers `target`, written for `origin`.
pub fn remember(target: &str, origin: &str) -> Message {
    Message::action("DBPut")
        .with("Family", FAMILY)
        .with("Key", target)
        .with("Val", origin)
}
