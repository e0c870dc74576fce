//! Remote states from several brokers, merged: what each broker says, and what the mirrors
//! should show.
//!
//! Each broker's view is kept apart; a key shows the state with the highest stamp among the
//! brokers whose session is live (all of them while none is). One rule decides a lost server
//! without the brokers agreeing on anything: a broker's lost mark (an odd stamp, see
//! [`proto::stamp`]) counts only when no live broker still holds that server's state it was
//! put on. A broker that lost an agent which another still hears changes nothing; when every
//! broker has lost it, they all mark it, and alike.
//!
//! With one broker nothing is kept here: its snapshots and updates go to the mirror as they
//! come (a view would double the agent's memory for nothing).

use proto::{Key, Stamp, Value};
use std::collections::{HashMap, HashSet};

type View = HashMap<Key, (Stamp, Option<Value>)>;

#[derive(Debug, Default)]
pub struct Remote {
    views: Vec<View>,
    live: Vec<bool>,
}

/// A key whose shown state changed: the new one (None: no broker has it).
pub type Shown = (Key, Option<Value>);

impl Remote {
    pub fn new(brokers: usize) -> Remote {
        Remote {
            views: vec![View::new(); brokers],
            live: vec![false; brokers],
        }
    }

    /// What the mirrors should show for `key` now.
    pub fn shown(&self, key: &Key) -> Option<Value> {
        let any_live = self.live.iter().any(|l| *l);
        let held: Vec<&(Stamp, Option<Value>)> = self
            .views
            .iter()
            .zip(&self.live)
            .filter(|(_, live)| **live || !any_live)
            .filter_map(|(v, _)| v.get(key))
            .collect();
        let best_real = held.iter().filter(|(s, _)| !s.is_mark()).max_by_key(|(s, _)| *s);
        let best = held.iter().max_by_key(|(s, _)| *s)?;
        match best_real {
            // Someone still holds the state the mark was put on (or a newer one): the origin
            // is heard there.
            Some(real) if best.0.is_mark() && real.0.lost_mark() >= best.0 => real.1.clone(),
            _ => best.1.clone(),
        }
    }

    /// Broker `i`'s whole view (a snapshot): the keys whose shown state changed. It always
    /// replaces what that broker said before (a restarted broker's partial table is made up
    /// for by the others' views, not by keeping what it no longer holds).
    pub fn snapshot(&mut self, i: usize, entries: Vec<(Key, Stamp, Option<Value>)>) -> Vec<Shown> {
        let new: View = entries.into_iter().map(|(k, s, v)| (k, (s, v))).collect();
        let mut keys: HashSet<Key> = new.keys().cloned().collect();
        keys.extend(self.views[i].keys().cloned());
        self.change(keys, |r| r.views[i] = new)
    }

    /// One update from broker `i`: the key's shown state, if it changed. An entry stamped
    /// below what that broker said before is older news and ignored.
    pub fn update(&mut self, i: usize, key: Key, stamp: Stamp, value: Option<Value>) -> Option<Shown> {
        if self.views[i]
            .get(&key)
            .is_some_and(|(s, _)| !stamp.is_zero() && stamp < *s)
        {
            return None;
        }
        // A removal leaves nothing behind in that broker's view (no tombstone to keep).
        self.change([key.clone()].into_iter().collect(), |r| match value {
            Some(v) => {
                r.views[i].insert(key, (stamp, Some(v)));
            }
            None => {
                r.views[i].remove(&key);
            }
        })
        .pop()
    }

    /// Broker `i`'s session went live, or was lost: keys may show another broker's state.
    pub fn set_live(&mut self, i: usize, live: bool) -> Vec<Shown> {
        if self.live[i] == live {
            return Vec::new();
        }
        let keys: HashSet<Key> = self.views.iter().flat_map(|v| v.keys().cloned()).collect();
        self.change(keys, |r| r.live[i] = live)
    }

    pub fn any_live(&self) -> bool {
        self.live.iter().any(|l| *l)
    }

    /// Every key some broker holds, with what it shows (after the agent showed its own
    /// verdict for a while: the dead broker tier).
    pub fn all_shown(&self) -> Vec<Shown> {
        let keys: HashSet<&Key> = self.views.iter().flat_map(|v| v.keys()).collect();
        keys.into_iter().map(|k| (k.clone(), self.shown(k))).collect()
    }

    /// Applies `f`; returns the keys among `keys` whose shown state changed.
    fn change(&mut self, keys: HashSet<Key>, f: impl FnOnce(&mut Remote)) -> Vec<Shown> {
        let before: Vec<(Key, Option<Value>)> = keys
            .into_iter()
            .map(|k| (self.shown(&k), k))
            .map(|(v, k)| (k, v))
            .collect();
        f(self);
        before
            .into_iter()
            .filter_map(|(k, was)| {
                let now = self.shown(&k);
                (now != was).then_some((k, now))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ami::DeviceState::*;
    use proto::Kind;

    fn key(name: &str) -> Key {
        Key {
            origin: "x".into(),
            kind: Kind::Device,
            name: name.into(),
        }
    }

    fn st(counter: u64) -> Stamp {
        Stamp { epoch: 9, counter }
    }

    fn dev(s: ami::DeviceState) -> Option<Value> {
        Some(Value::Device(s))
    }

    #[test]
    fn the_highest_stamp_of_the_live_brokers_shows() {
        let mut r = Remote::new(2);
        r.set_live(0, true);
        r.set_live(1, true);
        assert_eq!(r.update(0, key("1"), st(2), dev(Inuse)), Some((key("1"), dev(Inuse))));
        assert_eq!(
            r.update(1, key("1"), st(2), dev(Inuse)),
            None,
            "the same through the other broker"
        );
        assert_eq!(
            r.update(1, key("1"), st(4), dev(Ringing)).map(|s| s.1),
            Some(dev(Ringing))
        );
        assert_eq!(r.update(0, key("1"), st(4), dev(Ringing)), None);
        assert_eq!(r.update(0, key("1"), st(2), dev(Inuse)), None, "older news");
        assert_eq!(r.shown(&key("1")), dev(Ringing));
    }

    #[test]
    fn a_lost_mark_counts_only_when_no_live_broker_still_hears_the_origin() {
        let mut r = Remote::new(2);
        r.set_live(0, true);
        r.set_live(1, true);
        r.update(0, key("1"), st(4), dev(Inuse));
        r.update(1, key("1"), st(4), dev(Inuse));
        // Broker 0 lost the agent of x; broker 1 still hears it.
        assert_eq!(r.update(0, key("1"), st(5), dev(Unavailable)), None);
        assert_eq!(r.shown(&key("1")), dev(Inuse));
        // Broker 1 loses it too: the lamp goes dark.
        assert_eq!(
            r.update(1, key("1"), st(5), dev(Unavailable)).map(|s| s.1),
            Some(dev(Unavailable))
        );
        // The origin comes back through either broker: its next state wins.
        assert_eq!(
            r.update(1, key("1"), st(6), dev(NotInuse)).map(|s| s.1),
            Some(dev(NotInuse))
        );
    }

    #[test]
    fn a_dead_broker_gives_way_and_snapshots_replace_its_view() {
        let mut r = Remote::new(2);
        r.set_live(0, true);
        r.set_live(1, true);
        r.update(0, key("1"), st(5), dev(Unavailable));
        r.update(1, key("1"), st(4), dev(Inuse));
        assert_eq!(r.shown(&key("1")), dev(Inuse));
        // Broker 1 dies: only broker 0's (the mark) is live.
        assert_eq!(r.set_live(1, false), vec![(key("1"), dev(Unavailable))]);
        // Broker 0's snapshot no longer has the key: nothing live holds it.
        let changed = r.snapshot(0, vec![(key("2"), st(2), dev(Busy))]);
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert_eq!(r.shown(&key("1")), None);
        // With no broker live, the last of every broker shows.
        r.set_live(0, false);
        assert_eq!(r.shown(&key("1")), dev(Inuse));
        assert_eq!(r.all_shown().len(), 2);
    }
}
