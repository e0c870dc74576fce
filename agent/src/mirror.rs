//! The mirrors: what this server should show of every other server's states, and what it
//! shows now.
//!
//! Every remote (origin, name) maps through the template to a local target name. The set of
//! targets is the mirror namespace: states seen on those names are our own writes coming back
//! (never republished), everything else on this server is genuine and shared. Two origins that
//! map to one target are not allowed to overwrite each other silently: the target shows their
//! combination (device states aggregated as in a hint, the newest presence), and a warning
//! names the collision.

use crate::template::Template;
use ami::{DeviceState, PresenceState};
use proto::{Key, Kind, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use tracing::warn;

#[derive(Debug, Default)]
struct Target {
    kind: Option<Kind>,
    /// Value by origin.
    sources: BTreeMap<String, Value>,
    /// Order in which sources last changed (for presence: newest wins).
    stamp: BTreeMap<String, u64>,
    collision_warned: bool,
}

#[derive(Debug)]
pub struct Mirror {
    device_template: Template,
    presence_template: Template,
    targets: HashMap<String, Target>,
    by_key: HashMap<Key, String>,
    /// What restarting Asterisk turns our slash names into (`Custom:SIP/100` -> `Custom:100`).
    artifacts: HashSet<String>,
    /// Every name this agent has written on its Asterisk, as remembered in that Asterisk's
    /// astdb (see [`crate::memory`]): ours even before the broker's snapshot says so.
    known: HashSet<String>,
    /// New targets not yet remembered in astdb, with the origin they are written for.
    unremembered: Vec<(String, String)>,
    /// This server's own (genuine) states' names, as last read: a remote state never lands on
    /// one of them.
    local: HashSet<String>,
    /// Remote keys refused because their target is one of this server's own names, or not a
    /// name Asterisk can take.
    refused: HashSet<Key>,
    /// astdb told us which names are ours. Without that, a name of ours that Asterisk
    /// restored cannot be told from one of its own, so no name is refused as the server's.
    memory: bool,
    /// Remote states refused because they would land on this server's own names.
    pub local_collisions: u64,
    /// What this Asterisk shows on each target, as far as we know, and our writes on the way.
    shown: HashMap<String, Shown>,
    clock: u64,
    pub collisions: u64,
    pub name_errors: u64,
}

impl Mirror {
    pub fn new(device_template: Template, presence_template: Template) -> Mirror {
        Mirror {
            device_template,
            presence_template,
            targets: HashMap::new(),
            by_key: HashMap::new(),
            artifacts: HashSet::new(),
            known: HashSet::new(),
            unremembered: Vec::new(),
            local: HashSet::new(),
            refused: HashSet::new(),
            memory: false,
            local_collisions: 0,
            shown: HashMap::new(),
            clock: 0,
            collisions: 0,
            name_errors: 0,
        }
    }

    /// Whether `name` is one of ours: a target we write, or one we wrote before (this run or
    /// an earlier one, of this agent or of the one before it).
    pub fn is_target(&self, name: &str) -> bool {
        self.targets.contains_key(name) || self.known.contains(name)
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
            self.artifacts.insert(a);
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
                self.artifacts.insert(a);
            }
            self.known.insert(n);
        }
        // Names refused before are looked at again against what is read now.
        self.refused.clear();
    }

    /// A remembered name's DBPut failed: it is remembered at the next write instead.
    pub fn unremember(&mut self, target: &str, origin: &str) {
        if self.known.remove(target) {
            self.unremembered.push((target.to_string(), origin.to_string()));
        }
    }

    /// `name` is one of this server's own states (read from its Asterisk).
    pub fn local_seen(&mut self, name: &str) {
        if !self.local.contains(name) {
            self.local.insert(name.to_string());
        }
    }

    /// The server's own states are about to be read again.
    pub fn forget_local(&mut self) {
        self.local.clear();
    }

    /// Whether `name` is a target that this agent never wrote (neither this run nor before):
    /// when Asterisk shows it, it is the server's own state, not a mirror.
    pub fn is_unclaimed_target(&self, name: &str) -> bool {
        self.memory && self.targets.contains_key(name) && !self.known.contains(name)
    }

    /// `target` turned out to be one of this server's own names: every remote state mapped to
    /// it is refused (warned once, counted) and it is no longer a target.
    pub fn collide(&mut self, target: &str) {
        let Some(t) = self.targets.remove(target) else { return };
        self.unremembered.retain(|(n, _)| n != target);
        self.shown.remove(target);
        let keys: Vec<Key> = self
            .by_key
            .iter()
            .filter(|(_, n)| n.as_str() == target)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.by_key.remove(&k);
            self.refused_collision(&k, target);
        }
        drop(t);
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
    pub fn take_unremembered(&mut self) -> Vec<(String, String)> {
        let new = std::mem::take(&mut self.unremembered);
        new.into_iter().filter(|(t, _)| self.known.insert(t.clone())).collect()
    }

    pub fn targets(&self) -> impl Iterator<Item = &String> {
        self.targets.keys()
    }

    /// Sets (or with None removes) one remote state; returns the target it lands on.
    pub fn set(&mut self, key: &Key, value: Option<Value>) -> Option<String> {
        let target = match self.by_key.get(key) {
            Some(t) => t.clone(),
            None if self.refused.contains(key) => return None,
            None => {
                let template = if key.kind == Kind::Device {
                    &self.device_template
                } else {
                    &self.presence_template
                };
                match template.render(&key.origin, &key.name) {
                    Ok(t) if self.memory && self.local.contains(&t) && !self.known.contains(&t) => {
                        self.refused_collision(key, &t);
                        return None;
                    }
                    Ok(t) => {
                        self.by_key.insert(key.clone(), t.clone());
                        if !self.known.contains(&t) {
                            self.unremembered.push((t.clone(), key.origin.clone()));
                        }
                        if let Some(a) = restored_name(&t) {
                            self.artifacts.insert(a);
                        }
                        t
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
        // Looked up before inserting: the common case (a known target and origin) allocates
        // nothing, which is most of an agent's work under load.
        if !self.targets.contains_key(&target) {
            self.targets.insert(target.clone(), Target::default());
        }
        let t = self.targets.get_mut(&target).expect("inserted above");
        t.kind = Some(key.kind);
        match value {
            Some(v) => match (t.sources.get_mut(&key.origin), t.stamp.get_mut(&key.origin)) {
                (Some(source), Some(stamp)) => {
                    *source = v;
                    *stamp = self.clock;
                }
                _ => {
                    t.sources.insert(key.origin.clone(), v);
                    t.stamp.insert(key.origin.clone(), self.clock);
                }
            },
            None => {
                t.sources.remove(&key.origin);
                t.stamp.remove(&key.origin);
            }
        }
        if t.sources.len() > 1 && !t.collision_warned {
            t.collision_warned = true;
            self.collisions += 1;
            let origins: Vec<&String> = t.sources.keys().collect();
            warn!(target = %ami::shown(&target), ?origins, "several servers map to one name: showing their combined state; use {{origin}} in the template to keep them apart");
        }
        Some(target)
    }

    /// Replaces every remote state with `all` (a snapshot); returns the targets touched.
    /// With `merge`, states missing from `all` are kept (a new broker is still being filled).
    pub fn replace_all(&mut self, all: Vec<(Key, Value)>, merge: bool) -> Vec<String> {
        let mut touched = HashSet::new();
        let incoming: HashSet<Key> = all.iter().map(|(k, _)| k.clone()).collect();
        if !merge {
            let known: Vec<Key> = self
                .by_key
                .iter()
                .filter(|(k, t)| {
                    !incoming.contains(*k) && self.targets.get(*t).is_some_and(|x| x.sources.contains_key(&k.origin))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in known {
                touched.extend(self.set(&k, None));
            }
        }
        for (k, v) in all {
            touched.extend(self.set(&k, Some(v)));
        }
        touched.into_iter().collect()
    }

    /// What the target should show now.
    pub fn desired(&self, target: &str) -> Option<Value> {
        let t = self.targets.get(target)?;
        Some(match t.kind? {
            Kind::Device => Value::Device(DeviceState::aggregate(t.sources.values().filter_map(|v| match v {
                Value::Device(d) => Some(*d),
                _ => None,
            }))),
            Kind::Presence => {
                let newest = t
                    .stamp
                    .iter()
                    .max_by_key(|(_, s)| **s)
                    .and_then(|(o, _)| t.sources.get(o));
                newest.cloned().unwrap_or(Value::Presence {
                    state: PresenceState::NotSet,
                    subtype: String::new(),
                    message: String::new(),
                })
            }
        })
    }

    /// The value to write on `target`, if what it shows (or is about to) differs from what it
    /// should.
    pub fn needs_write(&self, target: &str) -> Option<Value> {
        let want = self.desired(target)?;
        let have = self
            .shown
            .get(target)
            .and_then(|s| s.inflight.back().or(s.applied.as_ref()));
        (have != Some(&want)).then_some(want)
    }

    /// A write of `v` on `target` was sent.
    pub fn mark_inflight(&mut self, target: &str, v: Value) {
        let s = self.shown.entry(target.to_string()).or_default();
        s.inflight.push_back(v.clone());
        s.echoes.push_back(v);
        if s.echoes.len() > MAX_ECHOES {
            s.echoes.pop_front();
        }
    }

    /// The answer to a write of `v` on `target` came: success or not.
    pub fn write_done(&mut self, target: &str, v: &Value, ok: bool) {
        let Some(s) = self.shown.get_mut(target) else { return };
        if let Some(i) = s.inflight.iter().position(|x| x == v) {
            s.inflight.remove(i);
        }
        if !ok {
            // Nothing changed on Asterisk: no echo will come for this write.
            if let Some(i) = s.echoes.iter().rposition(|x| x == v) {
                s.echoes.remove(i);
            }
        } else if !s.outside {
            s.applied = Some(v.clone());
        }
        if s.inflight.is_empty() {
            // From here on `applied` is what Asterisk reported last, or our last write.
            s.outside = false;
        }
    }

    /// Asterisk reported `v` on `target` (an event, or a list at resync).
    pub fn observed(&mut self, target: &str, v: Value) {
        let s = self.shown.entry(target.to_string()).or_default();
        if let Some(i) = s.echoes.iter().position(|x| *x == v) {
            // The echo of one of our writes. Echoes of older writes are not coming any more
            // (Asterisk keeps order); one of a write that newer ones follow says nothing of
            // what Asterisk will show, so it is not taken as the current value.
            s.echoes.drain(..=i);
            if s.echoes.is_empty() {
                s.applied = Some(v);
            }
            return;
        }
        // Not ours: someone else wrote our name, or a late action of a dropped session landed.
        // While writes are on their way their answers no longer say what Asterisk shows.
        if !s.inflight.is_empty() {
            s.outside = true;
        }
        s.applied = Some(v);
    }

    /// After an AMI reconnect nothing is known of what Asterisk shows.
    pub fn forget_applied(&mut self) {
        self.shown.clear();
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
/// writes' echoes from a change made by someone else.
#[derive(Debug, Default)]
struct Shown {
    /// What Asterisk last reported, or what our last answered write set.
    applied: Option<Value>,
    /// Our writes not answered yet, in the order sent.
    inflight: VecDeque<Value>,
    /// Our writes whose echo (the event Asterisk sends for the change) has not come yet.
    echoes: VecDeque<Value>,
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
    fn snapshot_replaces_or_merges() {
        let mut m = mirror();
        let t1 = m.set(&key("a", "SIP/1"), Some(Value::Device(Busy))).unwrap();
        m.replace_all(vec![(key("a", "SIP/2"), Value::Device(Inuse))], true);
        assert_eq!(m.desired(&t1), Some(Value::Device(Busy)));
        m.replace_all(vec![(key("a", "SIP/2"), Value::Device(Inuse))], false);
        assert_eq!(m.desired(&t1), Some(Value::Device(Invalid)));
    }
}
