//! What one simulated Asterisk is: its version, manager.conf users, hints and queues.

use ami::DeviceState;
use std::time::Duration;

/// A manager.conf user.
#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub secret: String,
    /// `read=` classes, e.g. `system,call,agent`.
    pub read: String,
    /// `write=` classes, e.g. `system,call`.
    pub write: String,
}

/// A queues.conf member line: `member => interface,penalty,name,state_interface`.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    pub interface: String,
    pub name: String,
    /// A device, or `hint:exten@context`. Empty means the interface itself.
    pub state_interface: String,
    pub penalty: u32,
}

/// A queues.conf queue.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub name: String,
    pub strategy: String,
    /// `ringinuse=`: when false a member is rung only when NOT_INUSE or UNKNOWN.
    pub ringinuse: bool,
    pub members: Vec<MemberConfig>,
}

impl QueueConfig {
    /// A `ringall` queue with `ringinuse=no` of one member (`interface`, `name`), its state
    /// interface `state` (empty: the interface itself): the call centre of the tests.
    pub fn one_member(queue: &str, interface: &str, name: &str, state: &str) -> QueueConfig {
        QueueConfig {
            name: queue.into(),
            strategy: "ringall".into(),
            ringinuse: false,
            members: vec![MemberConfig {
                interface: interface.into(),
                name: name.into(),
                state_interface: state.into(),
                penalty: 0,
            }],
        }
    }
}

/// A dialplan hint: `exten => <exten>,hint,<hint>` in `[context]`.
#[derive(Debug, Clone)]
pub struct HintConfig {
    pub exten: String,
    pub context: String,
    /// `SIP/100&Custom:100` or `Custom:101,CustomPresence:101`.
    pub hint: String,
}

/// One simulated server.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// For logs.
    pub name: String,
    /// `AsteriskVersion` of CoreSettings.
    pub asterisk_version: String,
    /// The AMI version in the banner and CoreSettings.
    pub ami_version: String,
    pub system_name: String,
    pub users: Vec<User>,
    pub hints: Vec<HintConfig>,
    pub queues: Vec<QueueConfig>,
    /// Devices that exist at start-up (physical phones), with their state.
    pub devices: Vec<(String, DeviceState)>,
    /// Delay before `Authentication failed` (Asterisk: about 1 s).
    pub login_fail_delay: Duration,
    /// `authtimeout`: an unauthenticated session is closed after this.
    pub auth_timeout: Duration,
    /// `writetimeout`: a client that does not take our bytes within this is dropped.
    pub write_timeout: Duration,
    /// `authlimit`: most unauthenticated sessions at once.
    pub auth_limit: usize,
    /// app_voicemail, res_mwi_external, or neither (see [`crate::voicemail`]).
    pub mwi: crate::voicemail::MwiProvider,
}

impl SimConfig {
    /// The server that recorded `fixtures/ami/asterisk-22.10.1` (see its README).
    pub fn fixture_server() -> Self {
        Self {
            name: "sim".into(),
            asterisk_version: "22.10.1".into(),
            ami_version: "11.0.0".into(),
            system_name: String::new(),
            users: vec![User {
                username: "broker".into(),
                secret: "s3cret".into(),
                read: "system,call,agent,user,reporting".into(),
                write: "system,call,agent,user,originate".into(),
            }],
            hints: vec![
                hint("100", "default", "Custom:100"),
                hint("101", "default", "Custom:101,CustomPresence:101"),
                hint("agent100", "default", "Custom:agent100"),
            ],
            queues: vec![QueueConfig {
                name: "support".into(),
                strategy: "ringall".into(),
                ringinuse: false,
                members: vec![MemberConfig {
                    interface: "Local/100@agents".into(),
                    name: "Agent 100".into(),
                    state_interface: "Custom:agent100".into(),
                    penalty: 0,
                }],
            }],
            devices: Vec::new(),
            login_fail_delay: Duration::from_secs(1),
            auth_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_millis(100),
            auth_limit: 50,
            mwi: crate::voicemail::MwiProvider::None,
        }
    }

    /// A PBX with phones `SIP/<n>` for the given extensions, each with the shared hint
    /// `SIP/<n>&Custom:SIP/<n>` (what a federated hints file holds) and presence.
    pub fn pbx(name: &str, extensions: &[&str]) -> Self {
        let mut c = Self::fixture_server();
        c.name = name.into();
        c.system_name = name.into();
        c.users[0].username = "hintbus".into();
        c.users[0].secret = "hintbus".into();
        c.hints.clear();
        c.queues.clear();
        for e in extensions {
            c.devices.push((format!("SIP/{e}"), DeviceState::NotInuse));
            c.hints.push(hint(
                e,
                "default",
                &format!("SIP/{e}&Custom:SIP/{e},CustomPresence:{e}"),
            ));
        }
        c
    }

    /// A PBX of a federation: phones for its own extensions, and the shared hints file for
    /// every extension of every server (`SIP/<n>&Custom:SIP/<n>`, the remote ones lit by the
    /// mirrors).
    pub fn federated(name: &str, own: &[&str], all: &[&str]) -> Self {
        let mut c = Self::pbx(name, own);
        c.hints = all
            .iter()
            .map(|e| hint(e, "default", &format!("SIP/{e}&Custom:SIP/{e},CustomPresence:{e}")))
            .collect();
        c
    }

    /// The major version (1 for 1.8).
    pub fn major(&self) -> u32 {
        self.asterisk_version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(22)
    }

    /// The same PBX as an older Asterisk: `"11"` (AMI 1.3) or `"1.8"` (AMI 1.1), with no
    /// DeviceStateChange, PresenceStateChange or state lists, only ExtensionStatus for hints.
    pub fn legacy(mut self, version: &str) -> Self {
        let (asterisk, ami) = match version {
            "1.8" => ("1.8.32.3", "1.1"),
            _ => ("11.25.3", "1.3"),
        };
        self.asterisk_version = asterisk.into();
        self.ami_version = ami.into();
        self
    }

    /// Every setting made short, for tests (login failure delay 50 ms).
    pub fn fast(mut self) -> Self {
        self.login_fail_delay = Duration::from_millis(50);
        self
    }
}

fn hint(exten: &str, context: &str, hint: &str) -> HintConfig {
    HintConfig {
        exten: exten.into(),
        context: context.into(),
        hint: hint.into(),
    }
}
