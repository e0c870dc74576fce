//! The federated state table: every server's current device and presence states.
//!
//! Ordered by origin first, so that one server's states are one range (its sync replaces
//! that range; its loss marks that range). Every change gets the next version number.
//!
//! Packed for size: a server may have 100,000 devices. Each origin is stored once, each name
//! once (an `Arc<str>` that the changes queued for agents share rather than copy), and each
//! value in 16 bytes ([`Packed`]); an [`Entry`] (136 bytes and three strings of its own) is
//! only made when one is sent.

use proto::{Entry, Kind, Packed, Stamp};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// One change of the table, as it is queued for the agents and the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub origin: Arc<str>,
    pub kind: Kind,
    pub name: Arc<str>,
    /// None: removed.
    pub value: Option<Packed>,
    pub version: u64,
    /// The origin's stamp (or a broker's lost mark on it), carried unchanged.
    pub stamp: Stamp,
}

impl Change {
    /// The change as it travels.
    pub fn entry(&self) -> Entry {
        Entry::from_packed(
            &self.origin,
            self.kind,
            &self.name,
            self.value.as_ref(),
            self.version,
            self.stamp,
        )
    }

    pub fn same_key(&self, other: &Change) -> bool {
        self.kind == other.kind && self.name == other.name && self.origin == other.origin
    }
}

/// One entry of a sync, validated and packed, held until the sync's last chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub kind: Kind,
    pub name: Arc<str>,
    pub value: Option<Packed>,
    pub stamp: Stamp,
}

impl Staged {
    /// None when the entry is not valid (the broker validates before it stages).
    pub fn new(e: &Entry) -> Option<Staged> {
        let value = e.value().ok()?;
        Some(Staged {
            kind: e.kind,
            name: e.name.as_str().into(),
            value: value.map(Packed::from),
            stamp: e.stamp,
        })
    }
}

/// A sync's entries until its last chunk, in the chunks they came in: one vector of a whole
/// server's state would be copied every time it grew.
#[derive(Debug, Default)]
pub struct Staging {
    chunks: Vec<Vec<Staged>>,
    len: usize,
}

impl Staging {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        *self = Staging::default();
    }

    fn iter(&self) -> impl Iterator<Item = &Staged> {
        self.chunks.iter().flatten()
    }
}

impl Extend<Staged> for Staging {
    /// Adds one chunk.
    fn extend<I: IntoIterator<Item = Staged>>(&mut self, iter: I) {
        let mut chunk: Vec<Staged> = iter.into_iter().collect();
        if !chunk.is_empty() {
            chunk.shrink_to_fit();
            self.len += chunk.len();
            self.chunks.push(chunk);
        }
    }
}

impl From<Vec<Staged>> for Staging {
    fn from(chunk: Vec<Staged>) -> Staging {
        let mut s = Staging::default();
        s.extend(chunk);
        s
    }
}

#[derive(Debug)]
struct Slot {
    value: Packed,
    version: u64,
    stamp: Stamp,
}

/// One origin's states by kind (the order of [`Kind::ALL`]), each by name.
#[derive(Debug, Default)]
struct Origin {
    kinds: [BTreeMap<Arc<str>, Slot>; 3],
    /// The highest stamp epoch seen of this origin (a restarted agent must start above it).
    epoch: u64,
}

const KINDS: [Kind; 3] = Kind::ALL;

#[derive(Default)]
pub struct Table {
    origins: BTreeMap<Arc<str>, Origin>,
    len: usize,
    /// Entries by kind.
    lens: [usize; 3],
    version: u64,
}

impl Table {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len_of(&self, kind: Kind) -> usize {
        self.lens[kind.index()]
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Every origin with states.
    pub fn origins(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.origins
            .iter()
            .filter(|(_, o)| o.kinds.iter().any(|k| !k.is_empty()))
            .map(|(n, _)| n)
    }

    /// The highest stamp epoch seen of `origin` (0: none).
    pub fn epoch(&self, origin: &str) -> u64 {
        self.origins.get(origin).map_or(0, |o| o.epoch)
    }

    /// Applies one validated entry; returns the change, versioned, if the table changed. An
    /// entry stamped no higher than what the table holds is a duplicate, or older (it came the
    /// long way, through another broker): it changes nothing.
    pub fn apply(&mut self, e: Entry) -> Option<Change> {
        let value = e.value().ok()?.map(Packed::from);
        self.set(&e.origin, e.kind, Name::Str(&e.name), value, e.stamp)
    }

    /// A peer's entry that is the very state this table's lost mark was put on: taken, as
    /// the peer hears its origin (a mark made while the peers could not tell each other so).
    pub fn unmark(&mut self, e: Entry) -> Option<Change> {
        let held = self.stamp_of(&e.origin, e.kind, &e.name)?;
        if !held.is_mark() || e.stamp.is_mark() || e.stamp.lost_mark() != held {
            return None;
        }
        let value = e.value().ok()??;
        let origin = self.origins.get_key_value(e.origin.as_str())?.0.clone();
        let states = &mut self.origins.get_mut(&origin)?.kinds[e.kind.index()];
        let name = states.get_key_value(e.name.as_str())?.0.clone();
        let slot = states.get_mut(&name)?;
        slot.value = Packed::from(value);
        slot.stamp = e.stamp;
        self.version += 1;
        slot.version = self.version;
        Some(Change {
            origin,
            kind: e.kind,
            name,
            value: Some(slot.value.clone()),
            version: self.version,
            stamp: e.stamp,
        })
    }

    /// The stamp `origin`'s `name` has now.
    fn stamp_of(&self, origin: &str, kind: Kind, name: &str) -> Option<Stamp> {
        Some(self.origins.get(origin)?.kinds[kind.index()].get(name)?.stamp)
    }

    /// Sets (or with None removes) one state.
    fn set(&mut self, origin: &str, kind: Kind, name: Name, value: Option<Packed>, stamp: Stamp) -> Option<Change> {
        if self
            .stamp_of(origin, kind, name.as_str())
            .is_some_and(|held| !stamp.is_zero() && stamp <= held)
        {
            return None;
        }
        let Some(value) = value else {
            let origin = self.origins.get_key_value(origin)?.0.clone();
            let states = self.origins.get_mut(&origin).expect("looked up above");
            let (name, _) = states.kinds[kind.index()].remove_entry(name.as_str())?;
            self.len -= 1;
            self.lens[kind.index()] -= 1;
            self.version += 1;
            return Some(Change {
                origin,
                kind,
                name,
                value: None,
                version: self.version,
                stamp,
            });
        };
        let origin = match self.origins.get_key_value(origin) {
            Some((o, _)) => o.clone(),
            None => {
                let o: Arc<str> = origin.into();
                self.origins.insert(o.clone(), Origin::default());
                o
            }
        };
        let o = self.origins.get_mut(&origin).expect("inserted above");
        o.epoch = o.epoch.max(stamp.epoch);
        let states = &mut o.kinds[kind.index()];
        let version = self.version + 1;
        let name = match states.get_key_value(name.as_str()) {
            Some((n, slot)) if slot.value == value => {
                // The same value again (a sync after a reconnect): only its stamp is newer.
                let n = n.clone();
                states.get_mut(&n).expect("looked up above").stamp = stamp;
                return None;
            }
            Some((n, _)) => {
                let n = n.clone();
                let slot = states.get_mut(&n).expect("looked up above");
                slot.value = value.clone();
                slot.version = version;
                slot.stamp = stamp;
                n
            }
            None => {
                let n = name.into_arc();
                states.insert(
                    n.clone(),
                    Slot {
                        value: value.clone(),
                        version,
                        stamp,
                    },
                );
                self.len += 1;
                self.lens[kind.index()] += 1;
                n
            }
        };
        self.version = version;
        Some(Change {
            origin,
            kind,
            name,
            value: Some(value),
            version,
            stamp,
        })
    }

    /// Replaces everything of `origin` with `entries`: what is missing is removed.
    pub fn replace_origin(&mut self, origin: &str, entries: Staging) -> Vec<Change> {
        let gone: Vec<(Kind, Arc<str>)> = match self.origins.get(origin) {
            Some(states) => {
                let incoming: HashSet<(Kind, &str)> = entries.iter().map(|s| (s.kind, &*s.name)).collect();
                KINDS
                    .iter()
                    .flat_map(|k| states.kinds[k.index()].keys().map(move |n| (*k, n)))
                    .filter(|(k, n)| !incoming.contains(&(*k, &***n)))
                    .map(|(k, n)| (k, n.clone()))
                    .collect()
            }
            None => Vec::new(),
        };
        // A new origin: every entry is a change (room made once, not at each doubling).
        let mut changed = Vec::with_capacity(if self.origins.contains_key(origin) {
            0
        } else {
            entries.len()
        });
        for (kind, name) in gone {
            changed.extend(self.set(origin, kind, Name::Arc(name), None, Stamp::ZERO));
        }
        for chunk in entries.chunks {
            for s in chunk {
                changed.extend(self.set(origin, s.kind, Name::Arc(s.name), s.value, s.stamp));
            }
        }
        changed
    }

    /// A lost origin's devices all read `state` (presence is left as it was: a person's
    /// status is not a device's reachability), each stamped with the broker's lost mark on
    /// its last state (see [`proto::stamp`]): every broker marks alike, and the origin's next
    /// state wins.
    pub fn mark_devices(&mut self, origin: &str, state: ami::DeviceState) -> Vec<Change> {
        self.mark(origin, Kind::Device, &Packed::Device(state))
    }

    /// A lost origin's states of `kind` all read `value`, with lost marks as
    /// [`Table::mark_devices`] (a lost server's mailboxes cleared).
    pub fn mark(&mut self, origin: &str, kind: Kind, value: &Packed) -> Vec<Change> {
        let names: Vec<(Arc<str>, Stamp)> = match self.origins.get(origin) {
            Some(states) => states.kinds[kind.index()]
                .iter()
                .map(|(n, s)| (n.clone(), s.stamp))
                .collect(),
            None => Vec::new(),
        };
        names
            .into_iter()
            .filter(|(_, s)| !s.is_mark())
            .filter_map(|(n, s)| {
                let mark = s.lost_mark();
                self.set(origin, kind, Name::Arc(n), Some(value.clone()), mark)
            })
            .collect()
    }

    /// Removes everything of `origin`.
    pub fn remove_origin(&mut self, origin: &str) -> Vec<Change> {
        self.replace_origin(origin, Staging::default())
    }

    /// Everything except `origin`'s own states (what a snapshot for that agent holds), made
    /// into entries one at a time as they are taken.
    pub fn others<'a>(&'a self, origin: &'a str) -> impl Iterator<Item = Entry> + 'a {
        self.entries().filter(move |(o, ..)| &***o != origin).map(entry)
    }

    pub fn all(&self) -> impl Iterator<Item = Entry> + '_ {
        self.entries().map(entry)
    }

    /// Every entry as a change (names shared with the table, not copied): a snapshot for the
    /// HTTP API, made on the broker thread and turned into JSON elsewhere.
    pub fn changes(&self) -> impl Iterator<Item = Change> + '_ {
        self.entries().map(|(origin, kind, name, slot)| Change {
            origin: origin.clone(),
            kind,
            name: name.clone(),
            value: Some(slot.value.clone()),
            version: slot.version,
            stamp: slot.stamp,
        })
    }

    fn entries(&self) -> impl Iterator<Item = (&Arc<str>, Kind, &Arc<str>, &Slot)> + '_ {
        self.origins.iter().flat_map(|(o, states)| {
            KINDS
                .iter()
                .flat_map(move |k| states.kinds[k.index()].iter().map(move |(n, s)| (o, *k, n, s)))
        })
    }
}

fn entry((origin, kind, name, slot): (&Arc<str>, Kind, &Arc<str>, &Slot)) -> Entry {
    Entry::from_packed(origin, kind, name, Some(&slot.value), slot.version, slot.stamp)
}

/// A name to look up, and to store if it is new: from an entry (copied only then), or already
/// shared (a staged sync's, or the table's own).
enum Name<'a> {
    Str(&'a str),
    Arc(Arc<str>),
}

impl Name<'_> {
    fn as_str(&self) -> &str {
        match self {
            Name::Str(s) => s,
            Name::Arc(a) => a,
        }
    }

    fn into_arc(self) -> Arc<str> {
        match self {
            Name::Str(s) => s.into(),
            Name::Arc(a) => a,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ami::DeviceState::*;
    use ami::PresenceState;

    fn staged(e: Entry) -> Staged {
        Staged::new(&e).unwrap()
    }

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
        let mut sync = Staging::default();
        sync.extend([staged(Entry::device("a", "SIP/2", NotInuse))]);
        sync.extend([]);
        sync.extend([staged(Entry::device("a", "SIP/3", Ringing))]);
        assert_eq!((sync.len(), sync.chunks.len()), (2, 2));
        let changed = t.replace_origin("a", sync);
        let names: Vec<_> = changed
            .iter()
            .map(|c| (&*c.name, c.entry().state))
            .map(|(n, s)| (n.to_string(), s))
            .collect();
        assert_eq!(
            names,
            [
                ("SIP/1".to_string(), None),
                ("SIP/2".to_string(), Some("NOT_INUSE".to_string())),
                ("SIP/3".to_string(), Some("RINGING".to_string()))
            ]
        );
        assert_eq!(t.others("a").count(), 1);
        let marked = t.mark_devices("a", Unavailable);
        assert_eq!(marked.len(), 2);
        assert!(changed.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(t.remove_origin("a").len(), 2);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn entries_in_key_order_with_their_versions() {
        let mut t = Table::default();
        t.apply(Entry::presence(
            "b",
            "CustomPresence:1",
            PresenceState::Dnd,
            "",
            "in a meeting",
        ));
        t.apply(Entry::device("b", "SIP/2", Busy));
        t.apply(Entry::device("a", "SIP/9", Inuse));
        t.apply(Entry::device("b", "SIP/1", Ringing));
        let all: Vec<Entry> = t.all().collect();
        let keys: Vec<(&str, Kind, &str, u64)> = all
            .iter()
            .map(|e| (e.origin.as_str(), e.kind, e.name.as_str(), e.version))
            .collect();
        assert_eq!(
            keys,
            [
                ("a", Kind::Device, "SIP/9", 3),
                ("b", Kind::Device, "SIP/1", 4),
                ("b", Kind::Device, "SIP/2", 2),
                ("b", Kind::Presence, "CustomPresence:1", 1)
            ]
        );
        assert_eq!(
            all[3],
            Entry {
                version: 1,
                ..Entry::presence("b", "CustomPresence:1", PresenceState::Dnd, "", "in a meeting")
            }
        );
        assert_eq!(t.others("b").map(|e| e.name).collect::<Vec<_>>(), ["SIP/9"]);
        // A removal of what is not there changes nothing; an invalid entry is not stored.
        let mut gone = Entry::device("a", "SIP/5", Busy);
        gone.state = None;
        assert_eq!(t.apply(gone), None);
        let mut bad = Entry::device("a", "SIP/5", Busy);
        bad.state = Some("BOGUS".into());
        assert_eq!(t.apply(bad), None);
        assert_eq!((t.len(), t.version()), (4, 4));
    }

    #[test]
    fn the_highest_stamp_wins_and_a_lost_mark_sits_below_the_next_state() {
        let stamped = |state, counter| Entry {
            stamp: Stamp { epoch: 5, counter },
            ..Entry::device("a", "SIP/1", state)
        };
        let mut t = Table::default();
        assert!(t.apply(stamped(Inuse, 4)).is_some());
        assert!(t.apply(stamped(Ringing, 2)).is_none(), "older: it came the long way");
        assert!(t.apply(stamped(Busy, 4)).is_none(), "a duplicate");
        let marked = t.mark_devices("a", Unavailable);
        assert_eq!(marked[0].stamp, Stamp { epoch: 5, counter: 5 });
        assert!(t.mark_devices("a", Unavailable).is_empty(), "marked once");
        assert_eq!(
            t.apply(stamped(NotInuse, 6)).unwrap().entry().state.as_deref(),
            Some("NOT_INUSE")
        );
        assert_eq!(t.epoch("a"), 5);
        assert_eq!(t.epoch("b"), 0);
    }

    #[test]
    fn names_are_shared_not_copied() {
        let mut t = Table::default();
        let first = t.apply(Entry::device("a", "SIP/1", Inuse)).unwrap();
        let second = t.apply(Entry::device("a", "SIP/1", Busy)).unwrap();
        assert!(Arc::ptr_eq(&first.name, &second.name) && Arc::ptr_eq(&first.origin, &second.origin));
        let synced = t.replace_origin("a", vec![staged(Entry::device("a", "SIP/1", Ringing))].into());
        assert!(
            Arc::ptr_eq(&synced[0].name, &first.name),
            "the table keeps its own name"
        );
        assert!(first.same_key(&synced[0]) && !first.same_key(&t.apply(Entry::device("a", "SIP/2", Busy)).unwrap()));
    }
}
