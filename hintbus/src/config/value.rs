//! Value types of the file, each read from its text with a message that says what was
//! expected. Ranges are part of the type (`Millis<1, 60_000>`), so a field says its bounds.

use serde::de::{Deserializer, Error};
use serde::Deserialize;
use std::time::Duration;

/// The text of a value, then `parse`; `expected` is the message when it returns None.
pub fn parse<'de, D: Deserializer<'de>, T>(
    d: D,
    expected: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, D::Error> {
    let text = String::deserialize(d)?;
    parse(text.trim()).ok_or_else(|| D::Error::custom(format!("expected {expected}")))
}

/// A number of milliseconds from MIN to MAX: a bound keeps a typo such as
/// `heartbeat_ms = 18446744073709551615` from overflowing a timer later.
#[derive(Debug, Clone, Copy)]
pub struct Millis<const MIN: u64, const MAX: u64>(pub Duration);

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Millis<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expected = format!("a number of milliseconds from {MIN} to {MAX}");
        parse(d, &expected, |s| {
            s.parse::<u64>()
                .ok()
                .filter(|n| (MIN..=MAX).contains(n))
                .map(|n| Millis(Duration::from_millis(n)))
        })
    }
}

/// A TCP port: 1 to 65535 (0 would be "any port", never the AMI's).
#[derive(Debug, Clone, Copy)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse(d, "a TCP port, 1 to 65535", |s| {
            s.parse::<u16>().ok().filter(|p| *p > 0).map(Port)
        })
    }
}

/// `on` or `off` (also yes/no, true/false).
#[derive(Debug, Clone, Copy)]
pub struct Switch(pub bool);

impl<'de> Deserialize<'de> for Switch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse(d, "on or off", |s| match s.to_ascii_lowercase().as_str() {
            "on" | "yes" | "true" => Some(Switch(true)),
            "off" | "no" | "false" => Some(Switch(false)),
            _ => None,
        })
    }
}

/// `a, b, c` (config-rs and INI have no lists: one value, split at commas).
#[derive(Debug, Clone, Default)]
pub struct List(pub Vec<String>);

impl<'de> Deserialize<'de> for List {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(List(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        ))
    }
}
