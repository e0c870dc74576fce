//! The federated state table: every server's current device and presence states.
//!
//! Ordered by origin first, so that one server's states are one range (its sync replaces
//! that range; its loss marks that range). Every change gets the next version number.

use proto::{Entry, Key, Kind};
use std::collections::BTreeMap;

#[derive(Default)]
pub struct Table {
    entries: BTreeMap<Key, Entry>,
    version: u64,
}

impl Table {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Applies one validated entry; returns it, versioned, if the table changed.
    pub fn apply(&mut self, mut e: Entry) -> Option<Entry> {
        let key = e.key();
        if e.state.is_none() {
            self.entries.remove(&key)?;
            self.version += 1;
            e.version = self.version;
            return Some(e);
        }
        if let Some(old) = self.entries.get(&key) {
            if old.state == e.state && old.subtype == e.subtype && old.message == e.message {
                return None;
            }
        }
        self.version += 1;
        e.version = self.version;
        self.entries.insert(key, e.clone());
        Some(e)
    }

    fn origin_range<'a>(&'a self, origin: &'a str) -> impl Iterator<Item = (&'a Key, &'a Entry)> + 'a {
        let start = Key {
            origin: origin.to_string(),
            kind: Kind::Device,
            name: String::new(),
        };
        self.entries.range(start..).take_while(move |(k, _)| k.origin == origin)
    }

    /// Replaces everything of `origin` with `entries`: what is missing is removed.
    pub fn replace_origin(&mut self, origin: &str, entries: Vec<Entry>) -> Vec<Entry> {
        let incoming: std::collections::HashSet<Key> = entries.iter().map(Entry::key).collect();
        let gone: Vec<Key> = self
            .origin_range(origin)
            .map(|(k, _)| k.clone())
            .filter(|k| !incoming.contains(k))
            .collect();
        let mut changed = Vec::new();
        for k in gone {
            changed.extend(self.apply(Entry::from_value(k, None)));
        }
        for e in entries {
            changed.extend(self.apply(e));
        }
        changed
    }

    /// A lost origin's devices all read `state` (presence is left as it was: a person's
    /// status is not a device's reachability).
    pub fn mark_devices(&mut self, origin: &str, state: ami::DeviceState) -> Vec<Entry> {
        let keys: Vec<Key> = self
            .origin_range(origin)
            .filter(|(k, _)| k.kind == Kind::Device)
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| self.apply(Entry::from_value(k, Some(proto::Value::Device(state)))))
            .collect()
    }

    /// Removes everything of `origin`.
    pub fn remove_origin(&mut self, origin: &str) -> Vec<Entry> {
        self.replace_origin(origin, Vec::new())
    }

    /// Everything except `origin`'s own states (what a snapshot for that agent holds).
    pub fn others(&self, origin: &str) -> impl Iterator<Item = &Entry> + '_ {
        let origin = origin.to_string();
        self.entries.values().filter(move |e| e.origin != origin)
    }

    pub fn all(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.entries.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ami::DeviceState::*;

    #[test]
    fn apply_replace_mark() {
        let mut t = Table::default();
        assert!(t.apply(Entry::device("a", "SIP/1", Inuse)).is_some());
        assert!(
            t.apply(Entry::device("a", "SIP/1", Inuse)).is_none(),
            "unchanged: no new version"
        );
        t.apply(Entry::device("a", "SIP/2", Inuse));
        t.apply(Entry::device("b", "SIP/1", Busy));
        let changed = t.replace_origin(
            "a",
            vec![
                Entry::device("a", "SIP/2", NotInuse),
                Entry::device("a", "SIP/3", Ringing),
            ],
        );
        let names: Vec<_> = changed.iter().map(|e| (e.name.as_str(), e.state.as_deref())).collect();
        assert_eq!(
            names,
            [
                ("SIP/1", None),
                ("SIP/2", Some("NOT_INUSE")),
                ("SIP/3", Some("RINGING"))
            ]
        );
        assert_eq!(t.others("a").count(), 1);
        let marked = t.mark_devices("a", Unavailable);
        assert_eq!(marked.len(), 2);
        assert!(changed.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(t.remove_origin("a").len(), 2);
        assert_eq!(t.len(), 1);
    }
}
