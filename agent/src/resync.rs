//! Reading the whole local state of an Asterisk, beside the agent's loop.
//!
//! On a large or loaded server the lists take seconds; the agent's loop must not wait for
//! them: its heartbeats would stop and the broker would declare a healthy server lost, every
//! lamp of it UNAVAILABLE elsewhere. So the reads run in a task of their own and hand their
//! result back; meanwhile the loop serves the broker and its ticks (and leaves the AMI events
//! queued, so that none is older than the lists it is applied after).

use ami::client::{ActionError, ListResult};
use ami::{Client, Message};

/// Everything one resync read.
#[derive(Debug)]
pub enum Read {
    /// Asterisk 13+.
    Lists(Box<Lists>),
    /// Asterisk 1.8/11: the ExtensionState answer of each configured hint.
    Legacy(Vec<((String, String), Result<Message, ActionError>)>),
}

/// The mirror names in astdb, the state lists, and QueueStatus when the queue guard is on.
#[derive(Debug)]
pub struct Lists {
    pub memory: Result<crate::memory::Remembered, ActionError>,
    /// func_devstate's astdb family (`CustomDevstate`): every Custom state's full name, which a
    /// restart may have cut (`Custom:SIP/100` comes back as `Custom:100`).
    pub custom_astdb: Result<Vec<String>, ActionError>,
    pub devices: Result<ListResult, ActionError>,
    pub presence: Result<ListResult, ActionError>,
    /// Mailboxes: app_voicemail's (VoicemailUsersList) and res_mwi_external's (MWIGet of
    /// every mailbox), each empty when its module is not loaded (None: not asked).
    pub mailboxes: Option<Mailboxes>,
    pub queues: Option<Result<ListResult, ActionError>>,
}

/// The two mailbox lists (see [`Lists::mailboxes`]).
#[derive(Debug)]
pub struct Mailboxes {
    pub voicemail: Result<ListResult, ActionError>,
    pub external: Result<ListResult, ActionError>,
}

/// Reads the state of the Asterisk behind `client`.
pub async fn read(client: Client, legacy_hints: Option<Vec<(String, String)>>, queues: bool, mailboxes: bool) -> Read {
    if let Some(hints) = legacy_hints {
        let mut out = Vec::with_capacity(hints.len());
        for (exten, context) in hints {
            let action = Message::action("ExtensionState")
                .with("Exten", exten.clone())
                .with("Context", context.clone());
            out.push(((exten, context), client.action(action).await));
        }
        return Read::Legacy(out);
    }
    // Our own names first: what Asterisk restored of them must not be read as its own.
    let memory = crate::memory::read(&client).await;
    let custom_astdb = crate::memory::custom_states(&client).await;
    let devices = client.list(Message::action("DeviceStateList")).await;
    let presence = client.list(Message::action("PresenceStateList")).await;
    let mailboxes = if mailboxes {
        Some(Mailboxes {
            voicemail: client.list(Message::action("VoicemailUsersList")).await,
            // res_mwi_external_ami takes `/regex/` for a set of mailboxes.
            external: client.list(Message::action("MWIGet").with("Mailbox", "/.*/")).await,
        })
    } else {
        None
    };
    let queues = if queues {
        Some(client.list(Message::action("QueueStatus")).await)
    } else {
        None
    };
    Read::Lists(Box::new(Lists {
        memory,
        custom_astdb,
        devices,
        presence,
        mailboxes,
        queues,
    }))
}
