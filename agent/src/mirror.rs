//! The mirrors: what this server should show of every other server's states, and what it
//! shows now.
//!
//! Every remote (origin, name) maps through the template to a local target name. The set of
//! targets is the mirror namespace: states seen on those names are our own writes coming back
//! (never republished), everything else on this server is genuine and shared. Two origins that
//! map to one target are not allowed to overwrite each other silently: the target shows their
//! combination (device states aggregated as in a hint, the newest presence), and a warning
//! names the collision.
//!
//! Sized for 100,000 remote devices: every name of the mirror namespace is stored once, in
//! [`Mirror::names`], with all that is known of it (its target, whether astdb remembers it, what
//! Asterisk shows); a remote key points to its target by index; values are [`Packed`] (16
//! bytes), and the one source and the one write on the way that a target usually has are held
//! inline, not in a map or a queue of their own (those took 1.7 KB per target).

use crate::config::MwiSink;
use crate::template::Template;
use ami::{DeviceState, PresenceState};
use indexmap::IndexMap;
use proto::{Counts, Key, Kind, Packed, Value};
use smallvec::SmallVec;
use std::collections::{HashMap, HashSet};
use tracing::warn;

/// Everything known of one name of the mirror namespace.
#[derive(Debug, Default)]
struct Name {
    /// Some while remote states land on it.
    target: Option<Target>,
    /// Every name this agent has written on its Asterisk, as remembered in that Asterisk's
    /// astdb (see [`crate::memory`]): ours even before the broker's snapshot says so.
    known: bool,
    /// What this Asterisk shows on it, as far as we know, and our writes on the way.
    shown: Option<Shown>,
}

#[derive(Debug)]
struct Target {
    kind: Kind,
    /// Value by origin, with the order in which they last changed (for presence: newest wins).
    sources: SmallVec<[Source; 1]>,
    collision_warned: bool,
}

#[derive(Debug)]
struct Source {
    /// Index in [`Mirror::origins`].
    origin: u32,
    stamp: u64,
    value: Packed,
}

/// The remote keys of one origin, by kind ([`Kind::index`]) and name: the index of
/// their target in [`Mirror::names`].
#[derive(Debug)]
struct OriginKeys {
    id: u32,
    names: [HashMap<Box<str>, u32>; 3],
}

#[derive(Debug)]
pub struct Mirror {
    device_template: Template,
    presence_template: Template,
    /// Where remote mailboxes land, and as what.
    mailbox_sink: MwiSink,
    /// The mirror namespace: targets, and the names astdb says we wrote, each once, in the
    /// order first seen. Never shrinks (a name once ours stays known, as astdb keeps it).
    names: IndexMap<String, Name>,
    /// Remote key -> target, by origin.
    by_key: HashMap<Box<str>, OriginKeys>,
    /// Origin names by id.
    origins: Vec<Box<str>>,
    /// What restarting Asterisk turns our slash names into (`Custom:SIP/100` -> `Custom:100`).
    artifacts: HashSet<Box<str>>,
    /// astdb told us which names are ours. Without that, a name of ours that Asterisk
    /// restored cannot be told from one of its own, so no name is refused as the server's.
    memory: bool,
    /// New targets not yet remembered in astdb, with the origin they are written for.
    unremembered: Vec<(u32, u32)>,
    /// This server's own (genuine) states' names, as last read: a remote state never lands on
    /// one of them.
    local: HashSet<Box<str>>,
    /// Remote keys refused because their target is one of this server's own names, or not a
    /// name Asterisk can take.
    refused: HashSet<Key>,
    /// Remote states refused because they would land on this server's own names.
    pub local_collisions: u64,
    clock: u64,
    /// Names with a target (see [`Mirror::target_count`]).
    target_count: usize,
    pub collisions: u64,
    pub name_errors: u64,
    /// Every broker is lost: device mirrors show UNAVAILABLE (see [`Mirror::set_dark`]).
    dark: bool,
}

impl Mirror {
    pub fn new(device_template: Template, presence_template: Template) -> Mirror {
        Mirror {
            device_template,
            presence_template,
            mailbox_sink: MwiSink::Off,
            names: IndexMap::new(),
            by_key: HashMap::new(),
            origins: Vec::new(),
            artifacts: HashSet::new(),
            memory: false,
            unremembered: Vec::new(),
            local: HashSet::new(),
            refused: HashSet::new(),
            local_collisions: 0,
            clock: 0,
            target_count: 0,
            collisions: 0,
            name_errors: 0,
            dark: false,
        }
    }

    /// Where remote mailboxes land (see [`crate::config::MwiSink`]).
    pub fn set_mailbox_sink(&mut self, sink: &MwiSink) {
        self.mailbox_sink = sink.clone();
    }

    /// The record of `name`, made if it has none yet.
    fn name_mut(&mut self, name: &str) -> (u32, &mut Name) {
        let i = match self.names.get_index_of(name) {
            Some(i) => i,
            None => self.names.insert_full(name.to_string(), Name::default()).0,
        };
        (i as u32, &mut self.names[i])
    }

    fn is_known(&self, name: &str) -> bool {
        self.names.get(name).is_some_and(|n| n.known)
    }

    fn shown(&self, name: &str) -> Option<&Shown> {
        self.names.get(name).and_then(|n| n.shown.as_ref())
    }

    /// Whether `name` is one of ours: a target we write, or one we wrote before (this run or
    /// an earlier one, of this agent or of the one before it).
    pub fn is_target(&self, name: &str) -> bool {
        self.names.get(name).is_some_and(|n| n.target.is_some() || n.known)
    }

    /// Whether `name` is a mirror of a mirror of a mirror (`Custom:Custom:Custom:SIP/100` under
    /// `Custom:{device}`) that is not one of our targets: what an agent that published its
    /// mirrors as its own states left behind (older versions did, when broker and agents
    /// started together). Never a state of this server.
    pub fn is_stale(&self, name: &str) -> bool {
        !self.is_target(name) && self.device_template.depth(name) >= 3
    }

    /// What Asterisk's restore makes of a stale name is not a state of this server either.
    pub fn stale_restored_as(&mut self, name: &str) {
        if let Some(a) = restored_name(name) {
            self.add_artifact(a);
        }
    }

    /// Whether `name` is what Asterisk's restore made of one of our targets.
    pub fn is_artifact(&self, name: &str) -> bool {
        self.artifacts.contains(name) && !self.is_target(name)
    }

    /// The names Asterisk's astdb says we wrote (read at every AMI connect). `kept`: astdb has
    /// kept them since an earlier run (its marker is there), so a name Asterisk holds and this
    /// agent never wrote is the server's own. Without the marker (a first run, or the first
    /// one after zmq-ami-broker) the mirrors already there are adopted from the broker's view.
    pub fn remember(&mut self, names: impl IntoIterator<Item = String>, kept: bool) {
        self.memory = kept;
        for n in names {
            if let Some(a) = restored_name(&n) {
                self.add_artifact(a);
            }
            self.name_mut(&n).1.known = true;
        }
        // Names refused before are looked at again against what is read now.
        self.refused.clear();
    }

    /// Notes what a restart of Asterisk makes of one of our names (see [`restored_name`]).
    fn add_artifact(&mut self, a: String) {
        if !self.artifacts.contains(a.as_str()) {
            self.artifacts.insert(a.into());
        }
    }

    /// A remembered name's DBPut failed: it is remembered at the next write instead.
    pub fn unremember(&mut self, target: &str, origin: &str) {
        let Some(i) = self.names.get_index_of(target) else {
            return;
        };
        if std::mem::replace(&mut self.names[i].known, false) {
            let origin = self.origin_id(origin);
            self.unremembered.push((i as u32, origin));
        }
    }

    /// `name` is one of this server's own states (read from its Asterisk).
    pub fn local_seen(&mut self, name: &str) {
        if !self.local.contains(name) {
            self.local.insert(name.into());
        }
    }

    /// The server's own states are about to be read again.
    pub fn forget_local(&mut self) {
        self.local.clear();
    }

    /// Whether `name` is a target that this agent never wrote (neither this run nor before):
    /// when Asterisk shows it, it is the server's own state, not a mirror.
    pub fn is_unclaimed_target(&self, name: &str) -> bool {
        self.memory && self.names.get(name).is_some_and(|n| n.target.is_some() && !n.known)
    }

    /// `target` turned out to be one of this server's own names: every remote state mapped to
    /// it is refused (warned once, counted) and it is no longer a target.
    pub fn collide(&mut self, target: &str) {
        let Some((i, _, n)) = self.names.get_full_mut(target) else {
            return;
        };
        if n.target.take().is_none() {
            return;
        }
        self.target_count -= 1;
        n.shown = None;
        let i = i as u32;
        self.unremembered.retain(|(t, _)| *t != i);
        let mut keys = Vec::new();
        for (origin, o) in &mut self.by_key {
            for kind in Kind::ALL {
                o.names[kind.index()].retain(|name, t| {
                    if *t == i {
                        keys.push(Key {
                            origin: origin.to_string(),
                            kind,
                            name: name.to_string(),
                        });
                    }
                    *t != i
                });
            }
        }
        for k in keys {
            self.refused_collision(&k, target);
        }
    }

    fn refused_collision(&mut self, key: &Key, target: &str) {
        if self.refused.insert(key.clone()) {
            self.local_collisions += 1;
            warn!(origin = %key.origin, name = %ami::shown(&key.name), target = %ami::shown(target), "a remote state would land on one of this server's own names: not mirrored (put {{origin}} or a prefix of its own in the template)");
        }
    }

    /// astdb could not be read: names are told apart by the broker's snapshot alone.
    pub fn memory_unavailable(&mut self) {
        self.memory = false;
    }

    /// Targets created since the last call that astdb does not hold yet, each with its origin:
    /// to be remembered before their first write.
    /// One target that astdb does not hold yet, with its origin (marked remembered: give it
    /// back with [`Mirror::unremember`] if its DBPut could not be sent).
    pub fn pop_unremembered(&mut self) -> Option<(String, String)> {
        while let Some((t, origin)) = self.unremembered.pop() {
            let (name, n) = self.names.get_index_mut(t as usize).expect("names are never removed");
            if !std::mem::replace(&mut n.known, true) {
                return Some((name.clone(), self.origins[origin as usize].to_string()));
            }
        }
        None
    }

    pub fn take_unremembered(&mut self) -> Vec<(String, String)> {
        let new = std::mem::take(&mut self.unremembered);
        let mut out = Vec::with_capacity(new.len());
        for (t, origin) in new {
            let (name, n) = self.names.get_index_mut(t as usize).expect("names are never removed");
            if !std::mem::replace(&mut n.known, true) {
                out.push((name.clone(), self.origins[origin as usize].to_string()));
            }
        }
        out
    }

    /// How many names remote states land on: the mirrors this agent keeps (without walking
    /// them, for a gauge updated every turn).
    pub fn target_count(&self) -> usize {
        self.target_count
    }

    pub fn targets(&self) -> impl Iterator<Item = &String> {
        self.names
            .iter()
            .filter(|(_, n)| n.target.is_some())
            .map(|(name, _)| name)
    }

    /// The id of `origin`, made if it has none yet.
    fn origin_id(&mut self, origin: &str) -> u32 {
        if let Some(o) = self.by_key.get(origin) {
            return o.id;
        }
        let id = self.origins.len() as u32;
        self.origins.push(origin.into());
        self.by_key.insert(
            origin.into(),
            OriginKeys {
                id,
                names: Default::default(),
            },
        );
        id
    }

    /// Sets (or with None removes) one remote state; returns the target it lands on.
    pub fn set(&mut self, key: &Key, value: Option<Value>) -> Option<String> {
        let i = self.set_index(key, value)?;
        Some(
            self.names
                .get_index(i as usize)
                .expect("names are never removed")
                .0
                .clone(),
        )
    }

    /// [`Mirror::set`], returning the target's index in [`Mirror::names`].
    fn set_index(&mut self, key: &Key, value: Option<Value>) -> Option<u32> {
        let mapped = self
            .by_key
            .get(key.origin.as_str())
            .and_then(|o| o.names[key.kind.index()].get(key.name.as_str()))
            .copied();
        let i = match mapped {
            Some(i) => i,
            None if self.refused.contains(key) => return None,
            None => {
                let template = match key.kind {
                    Kind::Device => &self.device_template,
                    Kind::Presence => &self.presence_template,
                    Kind::Mailbox => match &self.mailbox_sink {
                        MwiSink::MwiUpdate(t) | MwiSink::Custom(t) => t,
                        MwiSink::Off => return None,
                    },
                };
                match template.render(&key.origin, &key.name) {
                    Ok(t) if self.memory && self.local.contains(t.as_str()) && !self.is_known(&t) => {
                        self.refused_collision(key, &t);
                        return None;
                    }
                    Ok(t) => {
                        let origin = self.origin_id(&key.origin);
                        let (i, n) = self.name_mut(&t);
                        let known = n.known;
                        self.by_key.get_mut(key.origin.as_str()).expect("made above").names[key.kind.index()]
                            .insert(key.name.as_str().into(), i);
                        if !known {
                            self.unremembered.push((i, origin));
                        }
                        if let Some(a) = restored_name(&t) {
                            self.add_artifact(a);
                        }
                        i
                    }
                    Err(e) => {
                        // Said once per remote name: its every change would say it again.
                        if self.refused.insert(key.clone()) {
                            self.name_errors += 1;
                            warn!(origin = %key.origin, name = %ami::shown(&key.name), error = %ami::shown(&e.to_string()), "remote state not mirrored");
                        }
                        return None;
                    }
                }
            }
        };
        self.clock += 1;
        let clock = self.clock;
        let origin = self.origin_id(&key.origin);
        let (target, n) = self.names.get_index_mut(i as usize).expect("names are never removed");
        if n.target.is_none() {
            self.target_count += 1;
        }
        let t = n.target.get_or_insert_with(|| Target {
            kind: key.kind,
            sources: SmallVec::new(),
            collision_warned: false,
        });
        t.kind = key.kind;
        match value {
            Some(v) => match t.sources.iter_mut().find(|s| s.origin == origin) {
                Some(source) => {
                    source.value = v.into();
                    source.stamp = clock;
                }
                None => t.sources.push(Source {
                    origin,
                    stamp: clock,
                    value: v.into(),
                }),
            },
            None => t.sources.retain(|s| s.origin != origin),
        }
        if t.sources.len() > 1 && !t.collision_warned {
            t.collision_warned = true;
            self.collisions += 1;
            let mut origins: Vec<&str> = t.sources.iter().map(|s| &*self.origins[s.origin as usize]).collect();
            origins.sort_unstable();
            warn!(target = %ami::shown(target), ?origins, "several servers map to one name: showing their combined state; use {{origin}} in the template to keep them apart");
        }
        Some(i)
    }

    /// Replaces every remote state with `all` (a snapshot); returns the targets touched.
    /// With `merge`, states missing from `all` are kept (a new broker is still being filled).
    pub fn replace_all(&mut self, all: Vec<(Key, Value)>, merge: bool) -> Vec<String> {
        let mut touched = HashSet::new();
        // Nothing mapped yet (a first snapshot): nothing to remove, and no need to index `all`.
        if !merge && !self.by_key.is_empty() {
            let gone: Vec<Key> = {
                let incoming: HashSet<(&str, Kind, &str)> = all
                    .iter()
                    .map(|(k, _)| (k.origin.as_str(), k.kind, k.name.as_str()))
                    .collect();
                let mut gone = Vec::new();
                for (origin, o) in &self.by_key {
                    for kind in Kind::ALL {
                        for (name, t) in &o.names[kind.index()] {
                            let sourced = self.names[*t as usize]
                                .target
                                .as_ref()
                                .is_some_and(|x| x.sources.iter().any(|s| s.origin == o.id));
                            if sourced && !incoming.contains(&(&**origin, kind, &**name)) {
                                gone.push(Key {
                                    origin: origin.to_string(),
                                    kind,
                                    name: name.to_string(),
                                });
                            }
                        }
                    }
                }
                gone
            };
            for k in gone {
                touched.extend(self.set_index(&k, None));
            }
        }
        for (k, v) in all {
            touched.extend(self.set_index(&k, Some(v)));
        }
        touched
            .into_iter()
            .map(|i| {
                self.names
                    .get_index(i as usize)
                    .expect("names are never removed")
                    .0
                    .clone()
            })
            .collect()
    }

    /// Every broker is lost (or one is back): while dark, every device mirror should read
    /// UNAVAILABLE, as a lost server's do, rather than stay frozen on its last state; the
    /// remote states are kept for when a broker is back. The device targets to write again.
    pub fn set_dark(&mut self, dark: bool) -> Vec<String> {
        if self.dark == dark {
            return Vec::new();
        }
        self.dark = dark;
        self.names
            .iter()
            .filter(|(_, n)| n.target.as_ref().is_some_and(|t| t.kind == Kind::Device))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// What the target should show now.
    pub fn desired(&self, target: &str) -> Option<Value> {
        let t = self.names.get(target)?.target.as_ref()?;
        Some(match t.kind {
            Kind::Device if self.dark => Value::Device(DeviceState::Unavailable),
            Kind::Device => Value::Device(DeviceState::aggregate(t.sources.iter().filter_map(|s| match s.value {
                Packed::Device(d) => Some(d),
                _ => None,
            }))),
            Kind::Presence => {
                let newest = t.sources.iter().max_by_key(|s| s.stamp);
                newest.map(|s| Value::from(&s.value)).unwrap_or(Value::Presence {
                    state: PresenceState::NotSet,
                    subtype: String::new(),
                    message: String::new(),
                })
            }
            Kind::Mailbox => {
                // Several servers' mailboxes on one name add up (a lamp lit by any of them);
                // none left (removed): no messages.
                let mut sum = Counts::default();
                for s in &t.sources {
                    if let Packed::Mailbox(c) = s.value {
                        sum.new = sum.new.saturating_add(c.new);
                        sum.old = sum.old.saturating_add(c.old);
                        sum.urgent = sum.urgent.saturating_add(c.urgent);
                    }
                }
                match self.mailbox_sink {
                    MwiSink::Custom(_) => Value::Device(if sum.waiting() {
                        DeviceState::Inuse
                    } else {
                        DeviceState::NotInuse
                    }),
                    // Asterisk's MWI counts urgent messages as new: written (and read back) so.
                    MwiSink::MwiUpdate(_) | MwiSink::Off => Value::Mailbox(Counts {
                        new: sum.new.saturating_add(sum.urgent),
                        old: sum.old,
                        urgent: 0,
                    }),
                }
            }
        })
    }

    /// The value to write on `target`, if what it shows (or is about to) differs from what it
    /// should.
    pub fn needs_write(&self, target: &str) -> Option<Value> {
        let want = self.desired(target)?;
        let have = self
            .shown(target)
            .and_then(|s| s.inflight.last().or(s.applied.as_ref()));
        (!have.is_some_and(|h| *h == want)).then_some(want)
    }

    /// A write of `v` on `target` was sent.
    pub fn mark_inflight(&mut self, target: &str, v: Value) {
        let s = self.name_mut(target).1.shown.get_or_insert_with(Shown::default);
        let v = Packed::from(v);
        s.inflight.push(v.clone());
        s.echoes.push(v);
        if s.echoes.len() > MAX_ECHOES {
            s.echoes.remove(0);
        }
    }

    /// The answer to a write of `v` on `target` came: success or not.
    pub fn write_done(&mut self, target: &str, v: &Value, ok: bool) {
        let Some(s) = self.names.get_mut(target).and_then(|n| n.shown.as_mut()) else {
            return;
        };
        if let Some(i) = s.inflight.iter().position(|x| x == v) {
            s.inflight.remove(i);
        }
        if !ok {
            // Nothing changed on Asterisk: no echo will come for this write.
            if let Some(i) = s.echoes.iter().rposition(|x| x == v) {
                s.echoes.remove(i);
            }
        } else if !s.outside {
            s.applied = Some(v.clone().into());
        }
        if s.inflight.is_empty() {
            // From here on `applied` is what Asterisk reported last, or our last write.
            s.outside = false;
        }
    }

    /// Asterisk reported `v` on `target` (an event, or a list at resync).
    pub fn observed(&mut self, target: &str, v: Value) {
        let s = self.name_mut(target).1.shown.get_or_insert_with(Shown::default);
        if let Some(i) = s.echoes.iter().position(|x| *x == v) {
            // The echo of one of our writes. Echoes of older writes are not coming any more
            // (Asterisk keeps order); one of a write that newer ones follow says nothing of
            // what Asterisk will show, so it is not taken as the current value.
            s.echoes.drain(..=i);
            if s.echoes.is_empty() {
                s.applied = Some(v.into());
            }
            return;
        }
        // Not ours: someone else wrote our name, or a late action of a dropped session landed.
        // While writes are on their way their answers no longer say what Asterisk shows.
        if !s.inflight.is_empty() {
            s.outside = true;
        }
        s.applied = Some(v.into());
    }

    /// After an AMI reconnect nothing is known of what Asterisk shows.
    pub fn forget_applied(&mut self) {
        for n in self.names.values_mut() {
            n.shown = None;
        }
    }
}

/// What an Asterisk restart brings a Custom device back as: func_devstate restores the astdb
/// key cut at its last `/` (`Custom:SIP/100` -> `Custom:100`). None for a name it keeps.
fn restored_name(name: &str) -> Option<String> {
    let rest = name.strip_prefix("Custom:")?;
    let (_, last) = rest.rsplit_once('/')?;
    Some(format!("Custom:{last}"))
}

/// Echoes expected per target, at most: a write whose echo never comes (Asterisk already
/// showed its value) must not be remembered forever.
const MAX_ECHOES: usize = 8;

/// What we know of one target on this Asterisk. Answers and events reach the agent through
/// different channels and events may lag the answers, so both are needed to tell our own
/// writes' echoes from a change made by someone else. One write on the way is held inline:
/// what a target has nearly always.
#[derive(Debug, Default)]
struct Shown {
    /// What Asterisk last reported, or what our last answered write set.
    applied: Option<Packed>,
    /// Our writes not answered yet, in the order sent.
    inflight: SmallVec<[Packed; 1]>,
    /// Our writes whose echo (the event Asterisk sends for the change) has not come yet.
    echoes: SmallVec<[Packed; 1]>,
    /// A value none of our writes set was reported while writes were on their way: it, not
    /// their answers, says what Asterisk shows.
    outside: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeviceState::*;

    fn key(origin: &str, name: &str) -> Key {
        Key {
            origin: origin.into(),
            kind: Kind::Device,
            name: name.into(),
        }
    }

    fn mirror() -> Mirror {
        Mirror::new(
            Template::device("Custom:{device}").unwrap(),
            Template::presence("CustomPresence:{resource}").unwrap(),
        )
    }

    #[test]
    fn collisions_aggregate_and_removal_neutralises() {
        let mut m = mirror();
        let t = m.set(&key("a", "SIP/100"), Some(Value::Device(Inuse))).unwrap();
        m.set(&key("c", "SIP/100"), Some(Value::Device(NotInuse)));
        assert_eq!(m.collisions, 1);
        assert_eq!(m.desired(&t), Some(Value::Device(Inuse)));
        m.set(&key("a", "SIP/100"), None);
        assert_eq!(m.desired(&t), Some(Value::Device(NotInuse)));
        m.set(&key("c", "SIP/100"), None);
        assert_eq!(
            m.desired(&t),
            Some(Value::Device(Invalid)),
            "no source left: neutral in the hint"
        );
        assert!(m.is_target("Custom:SIP/100"));
        assert!(m.is_artifact("Custom:100"));
    }

    #[test]
    fn writes_are_skipped_when_asterisk_already_has_the_value() {
        let mut m = mirror();
        let t = m.set(&key("a", "SIP/1"), Some(Value::Device(Busy))).unwrap();
        assert_eq!(m.needs_write(&t), Some(Value::Device(Busy)));
        m.mark_inflight(&t, Value::Device(Busy));
        assert_eq!(m.needs_write(&t), None);
        m.write_done(&t, &Value::Device(Busy), true);
        assert_eq!(m.needs_write(&t), None);
        m.forget_applied();
        m.observed(&t, Value::Device(Busy));
        assert_eq!(m.needs_write(&t), None);
    }

    #[test]
    fn a_report_during_a_write_outranks_its_answer() {
        let mut m = mirror();
        let t = m.set(&key("a", "SIP/1"), Some(Value::Device(Busy))).unwrap();
        m.mark_inflight(&t, Value::Device(Busy));
        // Someone else's NOT_INUSE is seen before our write's answer is.
        m.observed(&t, Value::Device(NotInuse));
        m.write_done(&t, &Value::Device(Busy), true);
        assert_eq!(
            m.needs_write(&t),
            Some(Value::Device(Busy)),
            "written again, not believed done"
        );
    }

    #[test]
    fn late_echoes_of_our_own_writes_are_not_written_again() {
        let mut m = mirror();
        let t = m.set(&key("a", "SIP/1"), Some(Value::Device(Ringing))).unwrap();
        m.mark_inflight(&t, Value::Device(Ringing));
        m.set(&key("a", "SIP/1"), Some(Value::Device(Inuse)));
        assert_eq!(m.needs_write(&t), Some(Value::Device(Inuse)));
        m.mark_inflight(&t, Value::Device(Inuse));
        // Both answers first, then both echoes: nothing to write at any step.
        m.write_done(&t, &Value::Device(Ringing), true);
        m.write_done(&t, &Value::Device(Inuse), true);
        m.observed(&t, Value::Device(Ringing));
        assert_eq!(m.needs_write(&t), None, "the echo of an older write is not a change");
        m.observed(&t, Value::Device(Inuse));
        assert_eq!(m.needs_write(&t), None);
        // Echoes before answers: the same.
        m.set(&key("a", "SIP/1"), Some(Value::Device(NotInuse)));
        m.mark_inflight(&t, Value::Device(NotInuse));
        m.set(&key("a", "SIP/1"), Some(Value::Device(Busy)));
        m.mark_inflight(&t, Value::Device(Busy));
        m.observed(&t, Value::Device(NotInuse));
        m.observed(&t, Value::Device(Busy));
        m.write_done(&t, &Value::Device(NotInuse), true);
        assert_eq!(m.needs_write(&t), None);
        m.write_done(&t, &Value::Device(Busy), true);
        assert_eq!(m.needs_write(&t), None);
        // And a change by someone else after all that is still put back.
        m.observed(&t, Value::Device(Unavailable));
        assert_eq!(m.needs_write(&t), Some(Value::Device(Busy)));
    }

    #[test]
    fn a_remote_name_never_lands_on_a_local_one() {
        let mut m = mirror();
        m.remember([], true);
        // b has its own DND lamp; a publishes a device named DND200.
        m.local_seen("Custom:DND200");
        let hostile = Key {
            origin: "a".into(),
            kind: Kind::Device,
            name: "DND200".into(),
        };
        assert_eq!(m.set(&hostile, Some(Value::Device(Busy))), None);
        assert!(!m.is_target("Custom:DND200"));
        assert_eq!(m.local_collisions, 1);
        assert_eq!(m.set(&hostile, Some(Value::Device(Inuse))), None, "refused for good");
        assert_eq!(m.local_collisions, 1, "warned once");
        m.remember([], true);
        // A target made before the local name was read, then seen on Asterisk without ever
        // having been written by us: the server's own, so the target goes.
        let t = m.set(&key("a", "SIP/7"), Some(Value::Device(Busy))).unwrap();
        assert!(m.is_unclaimed_target(&t));
        m.collide(&t);
        assert!(!m.is_target(&t));
        assert_eq!(m.set(&key("a", "SIP/7"), Some(Value::Device(Inuse))), None);
        // A name we wrote before (remembered in astdb) stays ours.
        m.remember(["Custom:SIP/8".to_string()], true);
        m.local_seen("Custom:SIP/8");
        assert!(m.set(&key("a", "SIP/8"), Some(Value::Device(Busy))).is_some());
        assert!(!m.is_unclaimed_target("Custom:SIP/8"));
    }

    #[test]
    fn one_record_per_name() {
        let mut m = mirror();
        m.remember(["Custom:SIP/9".to_string()], true);
        let t = m.set(&key("a", "SIP/9"), Some(Value::Device(Busy))).unwrap();
        assert_eq!(m.names.len(), 1, "a remembered name and its target are one record");
        assert!(m.take_unremembered().is_empty(), "astdb has it already");
        m.set(&key("a", "SIP/10"), Some(Value::Device(Inuse)));
        m.set(&key("b", "SIP/10"), Some(Value::Device(Inuse)));
        assert_eq!(
            m.take_unremembered(),
            [("Custom:SIP/10".to_string(), "a".to_string())],
            "once per target, with the origin it was first written for"
        );
        assert!(m.take_unremembered().is_empty());
        // What Asterisk shows on a name that is not ours does not make it ours.
        m.observed("Custom:DND1", Value::Device(Inuse));
        assert!(!m.is_target("Custom:DND1"));
        assert_eq!(m.targets().count(), 2);
        // Once Asterisk is forgotten, a late answer does not say what it shows.
        m.mark_inflight(&t, Value::Device(Busy));
        m.forget_applied();
        m.write_done(&t, &Value::Device(Busy), true);
        assert_eq!(m.needs_write(&t), Some(Value::Device(Busy)));
        // Echoes that never come are not kept for ever.
        for _ in 0..3 * MAX_ECHOES {
            m.mark_inflight(&t, Value::Device(Inuse));
        }
        assert_eq!(m.shown(&t).unwrap().echoes.len(), MAX_ECHOES);
        // A presence target: packed, and read back as it was set.
        let p = Key {
            origin: "a".into(),
            kind: Kind::Presence,
            name: "CustomPresence:7".into(),
        };
        let away = Value::Presence {
            state: PresenceState::Away,
            subtype: "lunch".into(),
            message: "back at 2, café".into(),
        };
        let pt = m.set(&p, Some(away.clone())).unwrap();
        assert_eq!(m.desired(&pt), Some(away));
        assert!(std::mem::size_of::<Name>() <= 128, "{}", std::mem::size_of::<Name>());
    }

    #[test]
    fn snapshot_replaces_or_merges() {
        let mut m = mirror();
        let t1 = m.set(&key("a", "SIP/1"), Some(Value::Device(Busy))).unwrap();
        m.replace_all(vec![(key("a", "SIP/2"), Value::Device(Inuse))], true);
        assert_eq!(m.desired(&t1), Some(Value::Device(Busy)));
        m.replace_all(vec![(key("a", "SIP/2"), Value::Device(Inuse))], false);
        assert_eq!(m.desired(&t1), Some(Value::Device(Invalid)));
    }
}
