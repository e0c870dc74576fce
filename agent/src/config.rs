//! What one agent needs: its server id, its Asterisk, the broker, and where remote states land.

use crate::template::Template;
use ami::ClientConfig;
use proto::transport::SocketOptions;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This server's id in the federation (`origin` of its states).
    pub server: String,
    /// The AMI session to this server's Asterisk.
    pub ami: ClientConfig,
    /// The broker's agent endpoint, e.g. `tcp://10.0.0.1:5560`.
    pub broker: String,
    /// More brokers, active-active with the first: each with its public key when CURVE is on
    /// (the first's is in `curve`).
    pub more_brokers: Vec<(String, Option<String>)>,
    /// Where remote devices land, e.g. `Custom:{device}`.
    pub device_template: Template,
    /// Where remote presence lands, e.g. `CustomPresence:{resource}`.
    pub presence_template: Template,
    /// Local devices whose names start with one of these are not shared (app_queue's
    /// `Queue:` pseudo-devices, `Local/` channels).
    pub ignore: Vec<String>,
    /// How often the agent tells the broker it is alive.
    pub heartbeat: Duration,
    /// A broker silent this long is presumed gone: the agent says hello again.
    pub broker_timeout: Duration,
    pub socket: SocketOptions,
    /// The queue guard, with the name of a member's guard device (None: off).
    pub queue_guard: Option<crate::guard::GuardTemplate>,
    /// For Asterisk 1.8 and 11, which have no device state events: the hints (exten, context)
    /// whose ExtensionStatus is this server's state, published under the extension's name.
    pub legacy_hints: Vec<(String, String)>,
    /// CURVE: this agent's key pair and the broker's public key (Z85). None: plain text.
    pub curve: Option<(proto::auth::KeyPair, String)>,
    /// Device states are shared: off, this agent neither publishes this server's device states
    /// nor writes other servers' (zmq-ami-broker's `device_state = no`).
    pub device_state: bool,
    /// Presence states are shared: off, this agent neither publishes this server's presence
    /// nor writes other servers' (zmq-ami-broker's `presence = no`).
    pub presence: bool,
    /// Queue members' events (AgentCalled ... QueueMemberPause) are sent to the broker for
    /// observers (the board, the feed), whether or not the queue guard is on.
    pub queue_events: bool,
    /// This server's mailboxes (app_voicemail's, or res_mwi_external's not written by us) are
    /// published.
    pub mwi_publish: bool,
    /// How other servers' mailboxes are shown here.
    pub mwi_sink: MwiSink,
}

/// How remote mailboxes are shown on this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MwiSink {
    /// Not at all.
    Off,
    /// Through res_mwi_external_ami's MWIUpdate, under the template's name: phones that
    /// subscribe to that mailbox (`mailboxes=` in pjsip.conf) see its counts. Needs
    /// res_mwi_external, which cannot be loaded beside app_voicemail.
    MwiUpdate(Template),
    /// As a `Custom:` device, INUSE while messages wait and NOT_INUSE otherwise: a lamp on a
    /// BLF key, for servers that have their own voicemail.
    Custom(Template),
}

impl MwiSink {
    /// The default names: `{mailbox}@{context}` for MWIUpdate, `Custom:MWI{mailbox}` for lamps.
    pub fn mwiupdate() -> MwiSink {
        MwiSink::MwiUpdate(Template::mailbox("{mailbox}@{context}").expect("default template"))
    }

    pub fn custom() -> MwiSink {
        MwiSink::Custom(Template::mailbox_lamp("Custom:MWI{mailbox}").expect("default template"))
    }
}

/// The queue guard's name for a member when the configuration gives none.
pub const DEFAULT_GUARD_TEMPLATE: &str = "Custom:{membername}";

impl AgentConfig {
    /// Defaults for everything but the server id, the AMI session and the broker.
    pub fn new(server: &str, ami: ClientConfig, broker: &str) -> AgentConfig {
        AgentConfig {
            server: server.to_string(),
            ami,
            broker: broker.to_string(),
            more_brokers: Vec::new(),
            device_template: Template::device("Custom:{device}").expect("default template"),
            presence_template: Template::presence("CustomPresence:{resource}").expect("default template"),
            ignore: vec!["Queue:".into(), "Local/".into()],
            heartbeat: Duration::from_secs(1),
            broker_timeout: Duration::from_secs(5),
            socket: SocketOptions::default(),
            queue_guard: None,
            legacy_hints: Vec::new(),
            curve: None,
            device_state: true,
            presence: true,
            queue_events: true,
            mwi_publish: true,
            mwi_sink: MwiSink::Off,
        }
    }

    /// Whether this server's own states of `kind` are published.
    pub fn publishes(&self, kind: proto::Kind) -> bool {
        match kind {
            proto::Kind::Device => self.device_state,
            proto::Kind::Presence => self.presence,
            proto::Kind::Mailbox => self.mwi_publish,
        }
    }

    /// Every broker, with its public key when CURVE is on.
    pub fn brokers(&self) -> Vec<(String, Option<String>)> {
        let first = (self.broker.clone(), self.curve.as_ref().map(|(_, k)| k.clone()));
        std::iter::once(first)
            .chain(self.more_brokers.iter().cloned())
            .collect()
    }

    /// Whether this agent publishes or applies states of `kind` (see `device_state`,
    /// `presence`, `mwi_publish` and `mwi_sink`).
    pub fn shares(&self, kind: proto::Kind) -> bool {
        match kind {
            proto::Kind::Device => self.device_state,
            proto::Kind::Presence => self.presence,
            proto::Kind::Mailbox => self.mwi_publish || self.mwi_sink != MwiSink::Off,
        }
    }
}
