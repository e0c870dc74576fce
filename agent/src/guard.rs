//! The queue guard (what rt-queue-devstate does, done right).
//!
//! With chan_sip realtime members and `ringinuse=no`, a `sip reload` and a re-registration
//! reset a busy member's device to NOT_INUSE and the queue rings it again mid-call. The fix:
//! the member's state_interface is a hint combining the phone with `Custom:<member>`
//! (`SIP/100&Custom:100`), and the guard keeps that Custom state INUSE from AgentConnect until
//! the call really ends (AgentComplete or AgentDump), in every queue the member serves.
//!
//! It learns each member from QueueMemberStatus/Added and QueueStatus (MemberName,
//! StateInterface) rather than assuming the name is the extension, reconciles from QueueStatus
//! (InCall) after every reconnect so that a missed AgentComplete cannot keep a member busy
//! forever, and only ever writes the guard names of members it knows: never a wholesale wipe.

use ami::{DeviceState, Message};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tracing::warn;

/// `Custom:{membername}` and friends. Fields: `{membername}`, `{interface}` (`SIP/100`),
/// `{resource}` (`100`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardTemplate(String);

impl GuardTemplate {
    pub fn new(text: &str) -> Result<GuardTemplate, String> {
        if !text.starts_with("Custom:") {
            return Err("must start with \"Custom:\" (only those can be written)".into());
        }
        if !["{membername}", "{interface}", "{resource}"]
            .iter()
            .any(|f| text.contains(f))
        {
            return Err("must contain {membername}, {interface} or {resource}".into());
        }
        Ok(GuardTemplate(text.to_string()))
    }

    /// The guard name of a member; None when a field it needs is empty (rt-queue-devstate
    /// wrote `Custom:` for a member without a name) or the result is not a valid name.
    pub fn render(&self, member_name: &str, interface: &str) -> Option<String> {
        let resource = interface.split_once('/').map(|(_, r)| r).unwrap_or(interface);
        for (field, value) in [
            ("{membername}", member_name),
            ("{interface}", interface),
            ("{resource}", resource),
        ] {
            if self.0.contains(field) && value.trim().is_empty() {
                return None;
            }
        }
        let out = self
            .0
            .replace("{membername}", member_name)
            .replace("{interface}", interface)
            .replace("{resource}", resource);
        // A blank in a device name is not one a hint or a queues.conf line can name.
        let fits = out.len() <= ami::state::MAX_DEVICE_LEN
            && proto::entry::valid_name(&out)
            && !out.chars().any(char::is_whitespace);
        fits.then_some(out)
    }
}

/// The (queue, interface) a queue event is about: `Interface`, or `Member` on 1.8/11.
pub fn member_key(m: &Message) -> Option<(String, String)> {
    let queue = m.get("Queue").filter(|q| !q.is_empty())?;
    let interface = m.get("Interface").or(m.get("Member")).filter(|i| !i.is_empty())?;
    Some((queue.to_string(), interface.to_string()))
}

#[derive(Debug, Clone)]
struct Member {
    name: String,
    state_interface: String,
}

/// One write the guard wants: the guard device, its state, and the member it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardWrite {
    pub target: String,
    pub state: DeviceState,
    pub member: String,
    pub queue: String,
}

#[derive(Debug, Clone)]
pub struct Guard {
    template: GuardTemplate,
    /// (queue, interface) -> member.
    members: HashMap<(String, String), Member>,
    /// Guard target -> the (queue, interface) calls in progress.
    busy: BTreeMap<String, BTreeSet<(String, String)>>,
    /// What was last written (or seen) on each guard target.
    shown: HashMap<String, DeviceState>,
    /// Members without a usable guard name, warned about once.
    nameless: std::collections::HashSet<(String, String)>,
}

impl Guard {
    pub fn new(template: GuardTemplate) -> Guard {
        Guard {
            template,
            members: HashMap::new(),
            busy: BTreeMap::new(),
            shown: HashMap::new(),
            nameless: Default::default(),
        }
    }

    /// The guard device of a member: its StateInterface when that is a Custom device itself,
    /// else the template.
    fn target(&self, queue: &str, interface: &str, name_hint: &str) -> Option<String> {
        let m = self.members.get(&(queue.to_string(), interface.to_string()));
        if let Some(m) = m {
            if m.state_interface.starts_with("Custom:") {
                return Some(m.state_interface.clone());
            }
        }
        let name = m
            .map(|m| m.name.as_str())
            .filter(|n| !n.is_empty())
            .unwrap_or(name_hint);
        self.template.render(name, interface)
    }

    fn learn(&mut self, queue: &str, interface: &str, name: &str, state_interface: &str) {
        if queue.is_empty() || interface.is_empty() {
            return;
        }
        let si = if state_interface.is_empty() {
            interface
        } else {
            state_interface
        };
        self.members.insert(
            (queue.into(), interface.into()),
            Member {
                name: name.into(),
                state_interface: si.into(),
            },
        );
    }

    /// The (queue, interface) of an Agent* event whose member the guard has not learnt: its
    /// state interface is not in the event, so it must be looked up (QueueStatus of that
    /// member) before the event is applied. app_queue announces no QueueMemberAdded for static
    /// members that `queue reload` adds, so this is how the guard meets them.
    pub fn unknown_member(&self, m: &Message) -> Option<(String, String)> {
        let ev = m.event_name()?;
        if !matches!(ev, "AgentCalled" | "AgentConnect" | "AgentComplete" | "AgentDump") {
            return None;
        }
        let key = member_key(m)?;
        (!self.members.contains_key(&key)).then_some(key)
    }

    /// Learns the members a QueueStatus answer lists (for one member looked up by
    /// [`Guard::unknown_member`], or all of them).
    pub fn learn_status(&mut self, items: &[Message]) {
        for item in items.iter().filter(|m| m.event_name() == Some("QueueMember")) {
            self.learn(
                item.get("Queue").unwrap_or(""),
                item.get("Location").unwrap_or(""),
                item.get("Name").unwrap_or(""),
                item.get("StateInterface").unwrap_or(""),
            );
        }
    }

    /// A member that could not be looked up: learnt from the event alone, so that it is not
    /// looked up again at every event.
    pub fn learn_unlisted(&mut self, queue: &str, interface: &str, name: &str) {
        self.learn(queue, interface, name, "");
    }

    /// Feeds one AMI event; returns the writes it calls for.
    pub fn on_event(&mut self, m: &Message) -> Vec<GuardWrite> {
        let Some(ev) = m.event_name() else { return Vec::new() };
        let queue = m.get("Queue").unwrap_or("");
        let interface = m.get("Interface").or(m.get("Member")).unwrap_or("");
        let name = m.get("MemberName").unwrap_or("");
        match ev {
            "QueueMemberStatus" | "QueueMemberAdded" => {
                self.learn(queue, interface, name, m.get("StateInterface").unwrap_or(""));
                // InCall 0 on a member we hold busy: its call ended some way we did not see
                // (a transfer, a hang-up path without AgentComplete). Release it.
                let key = (queue.to_string(), interface.to_string());
                let held = self.busy.values().any(|calls| calls.contains(&key));
                match (m.get("InCall"), self.target(queue, interface, name)) {
                    (Some("0"), Some(target)) if held => self.set_call(&target, key, false, name),
                    _ => Vec::new(),
                }
            }
            "QueueMemberRemoved" => {
                let key = (queue.to_string(), interface.to_string());
                let target = self.target(queue, interface, name);
                self.members.remove(&key);
                match target {
                    Some(t) => self.set_call(&t, key, false, name),
                    None => Vec::new(),
                }
            }
            "AgentConnect" | "AgentComplete" | "AgentDump" => {
                let Some(target) = self.target(queue, interface, name) else {
                    // Once per member: its every call would say it again.
                    if self.nameless.insert((queue.to_string(), interface.to_string())) {
                        warn!(queue = %ami::shown(queue), interface = %ami::shown(interface), member = %ami::shown(name), "queue guard: no usable guard name for this member (empty MemberName, or one with blanks: give it a Custom: state interface)");
                    }
                    return Vec::new();
                };
                let on_call = ev == "AgentConnect";
                self.set_call(&target, (queue.to_string(), interface.to_string()), on_call, name)
            }
            _ => Vec::new(),
        }
    }

    fn set_call(&mut self, target: &str, key: (String, String), on_call: bool, name: &str) -> Vec<GuardWrite> {
        let calls = self.busy.entry(target.to_string()).or_default();
        if on_call {
            calls.insert(key.clone());
        } else {
            calls.remove(&key);
        }
        let want = if calls.is_empty() {
            DeviceState::NotInuse
        } else {
            DeviceState::Inuse
        };
        if calls.is_empty() {
            self.busy.remove(target);
        }
        self.want(target, want, name, &key.0)
    }

    fn want(&mut self, target: &str, state: DeviceState, member: &str, queue: &str) -> Vec<GuardWrite> {
        if self.shown.get(target) == Some(&state) {
            return Vec::new();
        }
        self.shown.insert(target.to_string(), state);
        vec![GuardWrite {
            target: target.to_string(),
            state,
            member: member.to_string(),
            queue: queue.to_string(),
        }]
    }

    /// After a reconnect: the QueueStatus items and the current device states decide. A
    /// member InCall in any queue is INUSE; every other known member is NOT_INUSE.
    pub fn reconcile(
        &mut self,
        queue_status: &[Message],
        current: impl Fn(&str) -> Option<DeviceState>,
    ) -> Vec<GuardWrite> {
        self.busy.clear();
        self.shown.clear();
        let mut everyone: BTreeMap<String, (String, String)> = BTreeMap::new();
        for item in queue_status.iter().filter(|m| m.event_name() == Some("QueueMember")) {
            let queue = item.get("Queue").unwrap_or("");
            let interface = item.get("Location").unwrap_or("");
            let name = item.get("Name").unwrap_or("");
            self.learn(queue, interface, name, item.get("StateInterface").unwrap_or(""));
            let Some(target) = self.target(queue, interface, name) else {
                continue;
            };
            everyone
                .entry(target.clone())
                .or_insert((name.to_string(), queue.to_string()));
            if item.get("InCall") == Some("1") {
                self.busy
                    .entry(target)
                    .or_default()
                    .insert((queue.to_string(), interface.to_string()));
            }
        }
        let mut writes = Vec::new();
        for (target, (member, queue)) in everyone {
            let want = if self.busy.contains_key(&target) {
                DeviceState::Inuse
            } else {
                DeviceState::NotInuse
            };
            if current(&target) == Some(want) {
                self.shown.insert(target, want);
            } else {
                writes.extend(self.want(&target, want, &member, &queue));
            }
        }
        writes
    }

    /// A write failed: forget what we thought it showed, so the next change or reconcile
    /// writes it again.
    pub fn failed(&mut self, target: &str) {
        self.shown.remove(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str, fields: &[(&str, &str)]) -> Message {
        let mut m = Message::new().with("Event", name);
        for (k, v) in fields {
            m.push(*k, *v);
        }
        m
    }

    #[test]
    fn connect_complete_across_two_queues() {
        let mut g = Guard::new(GuardTemplate::new("Custom:{membername}").unwrap());
        let f = |q: &'static str| [("Queue", q), ("Interface", "SIP/100"), ("MemberName", "alice")];
        let w = g.on_event(&ev("AgentConnect", &f("sales")));
        assert_eq!(w[0].target, "Custom:alice");
        assert_eq!(w[0].state, DeviceState::Inuse);
        assert!(
            g.on_event(&ev("AgentConnect", &f("support"))).is_empty(),
            "already INUSE"
        );
        assert!(
            g.on_event(&ev("AgentComplete", &f("sales"))).is_empty(),
            "still on the support call"
        );
        assert_eq!(
            g.on_event(&ev("AgentComplete", &f("support")))[0].state,
            DeviceState::NotInuse
        );
        // A call that ends without AgentComplete: QueueMemberStatus InCall 0 releases it.
        g.on_event(&ev("AgentConnect", &f("sales")));
        let status = [
            ("Queue", "sales"),
            ("Interface", "SIP/100"),
            ("MemberName", "alice"),
            ("InCall", "0"),
        ];
        assert_eq!(
            g.on_event(&ev("QueueMemberStatus", &status))[0].state,
            DeviceState::NotInuse
        );
    }

    #[test]
    fn state_interface_custom_is_used_and_empty_names_are_refused() {
        let mut g = Guard::new(GuardTemplate::new("Custom:{membername}").unwrap());
        g.on_event(&ev(
            "QueueMemberStatus",
            &[
                ("Queue", "support"),
                ("Interface", "Local/100@agents"),
                ("MemberName", "Agent 100"),
                ("StateInterface", "Custom:agent100"),
            ],
        ));
        let w = g.on_event(&ev(
            "AgentConnect",
            &[
                ("Queue", "support"),
                ("Interface", "Local/100@agents"),
                ("MemberName", "Agent 100"),
            ],
        ));
        assert_eq!(w[0].target, "Custom:agent100");
        let w = g.on_event(&ev(
            "AgentConnect",
            &[("Queue", "q"), ("Interface", "SIP/7"), ("MemberName", "")],
        ));
        assert!(w.is_empty(), "never `Custom:` with no name");
        assert!(GuardTemplate::new("SIP/{membername}").is_err());
    }

    #[test]
    fn members_added_by_a_reload_are_looked_up_and_names_with_blanks_refused() {
        let mut g = Guard::new(GuardTemplate::new("Custom:{membername}").unwrap());
        let connect = ev(
            "AgentConnect",
            &[
                ("Queue", "support"),
                ("Interface", "Local/100@agents"),
                ("MemberName", "Acc Agent 100"),
            ],
        );
        assert_eq!(
            g.unknown_member(&connect),
            Some(("support".into(), "Local/100@agents".into()))
        );
        // Without a lookup the template gives `Custom:Acc Agent 100`: refused, never written.
        assert!(g.clone().on_event(&connect).is_empty());
        g.learn_status(&[ev(
            "QueueMember",
            &[
                ("Queue", "support"),
                ("Name", "Acc Agent 100"),
                ("Location", "Local/100@agents"),
                ("StateInterface", "Custom:accagent100"),
            ],
        )]);
        assert_eq!(g.unknown_member(&connect), None);
        let w = g.on_event(&connect);
        assert_eq!(w[0].target, "Custom:accagent100");
        assert_eq!(w[0].state, DeviceState::Inuse);
    }

    #[test]
    fn reconcile_from_queue_status() {
        let mut g = Guard::new(GuardTemplate::new("Custom:{resource}").unwrap());
        let items = vec![
            ev(
                "QueueMember",
                &[
                    ("Queue", "a"),
                    ("Name", "x"),
                    ("Location", "SIP/1"),
                    ("StateInterface", "hint:1@default"),
                    ("InCall", "1"),
                ],
            ),
            ev(
                "QueueMember",
                &[
                    ("Queue", "a"),
                    ("Name", "y"),
                    ("Location", "SIP/2"),
                    ("StateInterface", "SIP/2"),
                    ("InCall", "0"),
                ],
            ),
            ev(
                "QueueMember",
                &[
                    ("Queue", "b"),
                    ("Name", "x"),
                    ("Location", "SIP/1"),
                    ("StateInterface", "hint:1@default"),
                    ("InCall", "0"),
                ],
            ),
        ];
        let w = g.reconcile(&items, |d| (d == "Custom:2").then_some(DeviceState::Inuse));
        assert!(w.contains(&GuardWrite {
            target: "Custom:1".into(),
            state: DeviceState::Inuse,
            member: "x".into(),
            queue: "a".into()
        }));
        assert!(w
            .iter()
            .any(|w| w.target == "Custom:2" && w.state == DeviceState::NotInuse));
    }
}
