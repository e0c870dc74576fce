//! One AMI message: an action we send, or a response or event Asterisk sends.
//!
//! A message is an ordered list of headers, not a map: names repeat (`Output:`, `Variable:`,
//! `ChanVariable:`, two `Message:` lines in a PresenceState response) and order is part of
//! what Asterisk sends. Lookups are case-insensitive and return the first match, as
//! Asterisk's own `astman_get_header` does.

use crate::escape::shown;
use std::fmt;

/// One AMI message.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Message {
    headers: Vec<(String, String)>,
}

/// Why a message cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A CR or LF inside a name or value would start a new header or a new action in the
    /// same authenticated session (AMI header injection).
    #[error("AMI header {field:?}: {part} contains CR or LF (header injection refused)")]
    LineBreak { field: String, part: &'static str },
    /// A header name that Asterisk could not parse back.
    #[error("AMI header name {field:?} is empty or contains ':'")]
    BadName { field: String },
    /// An empty message would read as a bare blank line.
    #[error("an AMI message needs at least one header")]
    Empty,
}

impl Message {
    /// An empty message.
    pub fn new() -> Self {
        Self::default()
    }

    /// An action: a message whose first header is `Action: <name>`.
    pub fn action(name: &str) -> Self {
        Self::new().with("Action", name)
    }

    /// Builder form of [`Message::push`].
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.push(name, value);
        self
    }

    /// Appends a header (names may repeat).
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.headers.push((name.into(), value.into()));
    }

    /// Sets a header: replaces the first one of that name, or appends it.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        match self.headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some((_, v)) => *v = value.into(),
            None => self.headers.push((name.to_string(), value.into())),
        }
    }

    /// The first value of a header, case-insensitive.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All headers, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Bytes this message holds in memory: its header list and the text of every header.
    /// The unit of the client's memory bounds: a count of messages says little, since one
    /// message may hold 30 bytes or, within Asterisk's limits (128 lines of 1024 bytes), 128 KiB.
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.headers.capacity() * std::mem::size_of::<(String, String)>()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.capacity() + v.capacity())
                .sum::<usize>()
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.headers.len()
    }

    /// True when there is no header.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// `Action:` value, if this is an action.
    pub fn action_name(&self) -> Option<&str> {
        self.get("Action")
    }

    /// `Event:` value, if this is an event.
    pub fn event_name(&self) -> Option<&str> {
        self.get("Event")
    }

    /// `Response:` value, if this is a response.
    pub fn response(&self) -> Option<&str> {
        self.get("Response")
    }

    /// `ActionID:` value.
    pub fn action_id(&self) -> Option<&str> {
        self.get("ActionID")
    }

    /// True for `Response: Success` (and `Follows`, Asterisk's success form for Command).
    pub fn is_success(&self) -> bool {
        matches!(self.response(), Some(r) if r.eq_ignore_ascii_case("Success") || r.eq_ignore_ascii_case("Follows"))
    }

    /// Checks that every header can be sent without changing the message's meaning.
    pub fn validate(&self) -> Result<(), EncodeError> {
        if self.headers.is_empty() {
            return Err(EncodeError::Empty);
        }
        for (name, value) in &self.headers {
            if name.is_empty() || name.contains(':') {
                return Err(EncodeError::BadName { field: name.clone() });
            }
            if has_line_break(name) {
                return Err(EncodeError::LineBreak {
                    field: name.clone(),
                    part: "name",
                });
            }
            if has_line_break(value) {
                return Err(EncodeError::LineBreak {
                    field: name.clone(),
                    part: "value",
                });
            }
        }
        Ok(())
    }

    /// Appends the wire form (`Name: Value\r\n` lines and a blank line) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.validate()?;
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// The wire form as a new buffer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(self.headers.len() * 24 + 2);
        self.encode_into(&mut out)?;
        Ok(out)
    }
}

/// True when `s` holds a CR or LF.
pub fn has_line_break(s: &str) -> bool {
    s.bytes().any(|b| b == b'\r' || b == b'\n')
}

/// Debug prints headers one per line, hiding the values of secret-bearing headers so that a
/// logged Login action never leaks a password, and escaping the rest (they come from a peer).
impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (name, value) in &self.headers {
            if is_secret_header(name) {
                list.entry(&format_args!("{name}: ***"));
            } else {
                list.entry(&format_args!("{}: {}", shown(name), shown(value)));
            }
        }
        list.finish()
    }
}

/// Headers whose values are credentials (`Secret`, and the MD5 `Key`).
pub fn is_secret_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("Secret") || name.eq_ignore_ascii_case("Key")
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Message {
    fn from_iter<T: IntoIterator<Item = (N, V)>>(iter: T) -> Self {
        Self {
            headers: iter.into_iter().map(|(n, v)| (n.into(), v.into())).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_case_insensitive_and_first_wins() {
        let m = Message::new()
            .with("Response", "Success")
            .with("Message", "Presence State")
            .with("message", "back soon");
        assert_eq!(m.get("MESSAGE"), Some("Presence State"));
        assert_eq!(
            m.get_all("Message").collect::<Vec<_>>(),
            ["Presence State", "back soon"]
        );
        assert!(m.is_success());
    }

    #[test]
    fn encoding_refuses_injection_and_names_the_field() {
        let m = Message::action("Setvar")
            .with("Variable", "DEVICE_STATE(Custom:100)")
            .with("Value", "INUSE\r\nAction: Originate");
        let err = m.to_bytes().unwrap_err();
        assert_eq!(
            err,
            EncodeError::LineBreak {
                field: "Value".into(),
                part: "value"
            }
        );
        assert!(err.to_string().contains("\"Value\""));
        let m = Message::action("Ping").with("X\nY", "1");
        assert!(matches!(m.to_bytes(), Err(EncodeError::LineBreak { part: "name", .. })));
        assert!(matches!(Message::new().to_bytes(), Err(EncodeError::Empty)));
        assert!(matches!(
            Message::action("Ping").with("A:B", "1").to_bytes(),
            Err(EncodeError::BadName { .. })
        ));
    }

    #[test]
    fn debug_hides_secrets() {
        let m = Message::action("Login").with("Username", "u").with("Secret", "hunter2");
        let s = format!("{m:?}");
        assert!(!s.contains("hunter2"), "{s}");
    }

    #[test]
    fn set_replaces_first_or_appends() {
        let mut m = Message::action("Ping");
        m.set("ActionID", "1");
        m.set("actionid", "2");
        assert_eq!(m.len(), 2);
        assert_eq!(m.action_id(), Some("2"));
    }
}
