//! manager.conf privilege classes (`read=` / `write=`), as a bit set.

/// A set of AMI privilege classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Classes(pub u32);

/// Class names in manager.c's order.
const NAMES: [&str; 19] = [
    "system",
    "call",
    "log",
    "verbose",
    "command",
    "agent",
    "user",
    "config",
    "dtmf",
    "reporting",
    "cdr",
    "dialplan",
    "originate",
    "agi",
    "cc",
    "aoc",
    "test",
    "security",
    "message",
];

impl Classes {
    pub const NONE: Classes = Classes(0);
    pub const ALL: Classes = Classes((1 << NAMES.len()) - 1);
    pub const SYSTEM: Classes = Classes(1 << 0);
    pub const CALL: Classes = Classes(1 << 1);
    pub const COMMAND: Classes = Classes(1 << 4);
    pub const AGENT: Classes = Classes(1 << 5);
    pub const REPORTING: Classes = Classes(1 << 9);
    pub const ORIGINATE: Classes = Classes(1 << 12);

    /// Parses `system,call,agent`; `all` means every class. Unknown names are ignored, as
    /// Asterisk does.
    pub fn parse(list: &str) -> Classes {
        let mut bits = 0;
        for name in list.split(',').map(str::trim) {
            if name.eq_ignore_ascii_case("all") {
                return Classes::ALL;
            }
            if let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)) {
                bits |= 1 << i;
            }
        }
        Classes(bits)
    }

    /// The `Events:` header of a Login: on/off or a class list (manager.c `set_eventmask`).
    pub fn parse_event_mask(value: Option<&str>) -> Classes {
        match value.map(str::trim) {
            None => Classes::ALL,
            Some(v) if ["on", "yes", "true", "1"].iter().any(|w| v.eq_ignore_ascii_case(w)) => Classes::ALL,
            Some(v) if ["off", "no", "false", "0"].iter().any(|w| v.eq_ignore_ascii_case(w)) => Classes::NONE,
            Some(v) => Classes::parse(v),
        }
    }

    pub fn intersects(self, other: Classes) -> bool {
        self.0 & other.0 != 0
    }

    pub fn union(self, other: Classes) -> Classes {
        Classes(self.0 | other.0)
    }

    /// The `Privilege:` header of an event of this class: `call,all`.
    pub fn privilege_header(self) -> String {
        let mut names: Vec<&str> = NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect();
        names.push("all");
        names.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let c = Classes::parse("system, call,agent,bogus");
        assert!(c.intersects(Classes::CALL) && c.intersects(Classes::AGENT) && !c.intersects(Classes::COMMAND));
        assert_eq!(Classes::CALL.privilege_header(), "call,all");
        assert_eq!(Classes::parse_event_mask(Some("off")), Classes::NONE);
        assert_eq!(Classes::parse_event_mask(Some("on")), Classes::ALL);
        assert_eq!(Classes::parse("all"), Classes::ALL);
    }
}
