//! This server's own states: what is read from its Asterisk and shared with the others.

use crate::mirror::Mirror;
use proto::{Entry, Key, Kind, Value};
use std::collections::BTreeMap;

/// What a name seen on this Asterisk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A genuine local state: shared.
    Local,
    /// One of our mirror writes (or its echo): never republished.
    Mirror,
    /// What Asterisk's restore made of a mirror name (`Custom:SIP/100` -> `Custom:100`).
    Artifact,
    /// A mirror of a mirror of a mirror left behind (see [`Mirror::is_stale`]).
    Stale,
    /// Configured not to be shared.
    Ignored,
    /// A name that cannot travel (too long, control characters).
    Invalid,
}

pub fn classify(name: &str, mirror: &Mirror, ignore: &[String]) -> Class {
    if mirror.is_target(name) {
        Class::Mirror
    } else if mirror.is_artifact(name) {
        Class::Artifact
    } else if mirror.is_stale(name) {
        Class::Stale
    } else if ignore.iter().any(|p| name.starts_with(p.as_str())) {
        Class::Ignored
    } else if !proto::entry::valid_name(name) {
        Class::Invalid
    } else {
        Class::Local
    }
}

/// The local states, as last read from Asterisk.
#[derive(Debug, Default)]
pub struct Local {
    pub states: BTreeMap<(Kind, String), Value>,
}

impl Local {
    /// Records a change; true if it is one.
    pub fn set(&mut self, kind: Kind, name: &str, v: Value) -> bool {
        match self.states.get(&(kind, name.to_string())) {
            Some(old) if *old == v => false,
            _ => {
                self.states.insert((kind, name.to_string()), v);
                true
            }
        }
    }

    pub fn entries(&self, origin: &str) -> Vec<Entry> {
        self.states
            .iter()
            .map(|((kind, name), v)| {
                Entry::from_value(
                    Key {
                        origin: origin.to_string(),
                        kind: *kind,
                        name: name.clone(),
                    },
                    Some(v.clone()),
                )
            })
            .collect()
    }
}
