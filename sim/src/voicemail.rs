//! Message waiting (MWI), as the two providers of Asterisk 22 report it.
//!
//! - app_voicemail: each configured mailbox's counts (kept in its spool, so they survive a
//!   restart), `VoicemailUsersList` (VoicemailUserEntry items with NewMessageCount /
//!   OldMessageCount), and a `MessageWaiting` event whenever the counts change.
//! - res_mwi_external + res_mwi_external_ami: mailboxes that someone else counts, set with
//!   `MWIUpdate`, listed with `MWIGet` (`/regex/` for several), removed with `MWIDelete`; kept
//!   in astdb (family `mwi_external`), so they survive a restart too. An update raises the
//!   same `MessageWaiting` event.
//!
//! Both are MWI providers and Asterisk loads only one of them: on a server with one, the other's
//! actions are unknown commands (see [`MwiProvider`]).

use crate::events::{error, event, list, list_item, success};
use crate::privilege::Classes;
use crate::world::World;
use ami::Message;

/// Which MWI provider this simulated Asterisk loads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MwiProvider {
    /// app_voicemail with these mailboxes (`100@default`), all empty at the start.
    Voicemail(Vec<String>),
    /// res_mwi_external and res_mwi_external_ami.
    External,
    /// Neither is loaded.
    #[default]
    None,
}

/// res_mwi_external's astdb family (res_mwi_external.c's MWI_ASTDB_PREFIX, object type
/// `mailboxes`).
const ASTDB: &str = "/mwi_external/mailboxes/";

/// Whether the module that registers `action` is loaded (None: not an MWI action).
pub fn loaded(world: &World, action: &str) -> Option<bool> {
    match action {
        "voicemailuserslist" => Some(matches!(world.config.mwi, MwiProvider::Voicemail(_))),
        "mwiget" | "mwiupdate" | "mwidelete" => Some(world.config.mwi == MwiProvider::External),
        _ => None,
    }
}

/// `MessageWaiting` (main/manager_mwi.c): Waiting is ast_app_has_voicemail, true while new
/// messages are there.
fn message_waiting(mailbox: &str, new: u32, old: u32) -> Message {
    event("MessageWaiting", Classes::CALL)
        .with("Mailbox", mailbox)
        .with("Waiting", if new > 0 { "1" } else { "0" })
        .with("New", new.to_string())
        .with("Old", old.to_string())
}

impl World {
    /// A mailbox's counts (new, old) under whichever provider is loaded.
    pub fn mailbox(&self, mailbox: &str) -> Option<(u32, u32)> {
        match &self.config.mwi {
            MwiProvider::Voicemail(_) => self.voicemail.get(mailbox).copied(),
            MwiProvider::External => self
                .astdb_other
                .get(&format!("{ASTDB}{mailbox}"))
                .and_then(|v| parse_counts(v)),
            MwiProvider::None => None,
        }
    }

    /// app_voicemail's counts change (a message left, heard or deleted): false if this server
    /// has no such voicemail mailbox.
    pub fn set_voicemail(&mut self, mailbox: &str, new: u32, old: u32) -> bool {
        if !matches!(&self.config.mwi, MwiProvider::Voicemail(m) if m.iter().any(|b| b == mailbox)) {
            return false;
        }
        self.voicemail.insert(mailbox.to_string(), (new, old));
        self.emit(Classes::CALL, message_waiting(mailbox, new, old));
        true
    }

    /// Every mailbox this server counts, in the provider's order.
    fn mailboxes(&self) -> Vec<(String, u32, u32)> {
        match &self.config.mwi {
            MwiProvider::Voicemail(names) => names
                .iter()
                .map(|n| {
                    let (new, old) = self.voicemail.get(n).copied().unwrap_or((0, 0));
                    (n.clone(), new, old)
                })
                .collect(),
            MwiProvider::External => self
                .astdb_other
                .iter()
                .filter_map(|(k, v)| {
                    let (new, old) = parse_counts(v)?;
                    Some((k.strip_prefix(ASTDB)?.to_string(), new, old))
                })
                .collect(),
            MwiProvider::None => Vec::new(),
        }
    }
}

fn parse_counts(v: &str) -> Option<(u32, u32)> {
    let (new, old) = v.split_once(',')?;
    Some((new.parse().ok()?, old.parse().ok()?))
}

/// One MWI action from a logged-in session whose provider is loaded (see [`loaded`]).
pub fn handle(world: &mut World, action: &str, msg: &Message) -> Vec<Message> {
    let id = msg.action_id();
    match action {
        "voicemailuserslist" => {
            let all = world.mailboxes();
            if all.is_empty() {
                return vec![success(id, "There are no voicemail users currently defined.")];
            }
            let items = all
                .into_iter()
                .map(|(name, new, old)| {
                    let (mailbox, context) = name.split_once('@').unwrap_or((&name, "default"));
                    list_item("VoicemailUserEntry", id)
                        .with("VMContext", context)
                        .with("VoiceMailbox", mailbox)
                        .with("Fullname", "")
                        .with("NewMessageCount", new.to_string())
                        .with("OldMessageCount", old.to_string())
                })
                .collect();
            list(
                id,
                "Voicemail user list will follow",
                items,
                "VoicemailUserEntryComplete",
            )
        }
        "mwiget" => {
            let Some(pattern) = msg.get("Mailbox").filter(|m| !m.is_empty()) else {
                return vec![error(id, "Missing mailbox parameter in request")];
            };
            // `/regex/`: the simulator knows only `/.*/` (every mailbox) and exact names.
            let items = world
                .mailboxes()
                .into_iter()
                .filter(|(n, _, _)| pattern == "/.*/" || n == pattern)
                .map(|(name, new, old)| {
                    list_item("MWIGet", id)
                        .with("Mailbox", name)
                        .with("OldMessages", old.to_string())
                        .with("NewMessages", new.to_string())
                })
                .collect();
            list(id, "Mailboxes will follow", items, "MWIGetComplete")
        }
        "mwiupdate" => {
            let Some(mailbox) = msg.get("Mailbox").filter(|m| !m.is_empty()) else {
                return vec![error(id, "Missing mailbox parameter in request")];
            };
            let count = |h: &str| -> Result<u32, String> {
                match msg.get(h).filter(|v| !v.is_empty()) {
                    None => Ok(0),
                    Some(v) => v.trim().parse().map_err(|_| v.to_string()),
                }
            };
            let old = match count("OldMessages") {
                Ok(v) => v,
                Err(v) => return vec![error(id, &format!("Invalid OldMessages: {v}"))],
            };
            let new = match count("NewMessages") {
                Ok(v) => v,
                Err(v) => return vec![error(id, &format!("Invalid NewMessages: {v}"))],
            };
            world
                .astdb_other
                .insert(format!("{ASTDB}{mailbox}"), format!("{new},{old}"));
            world.emit(Classes::CALL, message_waiting(mailbox, new, old));
            vec![crate::events::response("Success", id)]
        }
        "mwidelete" => {
            let Some(mailbox) = msg.get("Mailbox").filter(|m| !m.is_empty()) else {
                return vec![error(id, "Missing mailbox parameter in request")];
            };
            // res_mwi_external publishes 0/0 for a deleted mailbox that had messages.
            let had = world.astdb_other.remove(&format!("{ASTDB}{mailbox}"));
            if had
                .and_then(|v| parse_counts(&v))
                .is_some_and(|(new, old)| new > 0 || old > 0)
            {
                world.emit(Classes::CALL, message_waiting(mailbox, 0, 0));
            }
            vec![crate::events::response("Success", id)]
        }
        _ => vec![error(id, "Invalid/unknown command")],
    }
}
