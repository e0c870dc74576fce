//! Text from a peer made safe for a log line: the one function every log site uses for what
//! an Asterisk, an agent or a broker sent.
//!
//! Peer text reaches logs in AMI values, protocol strings and error messages that quote
//! input. Raw, a newline forges a log line, an ANSI escape recolours or rewrites the terminal,
//! and a megabyte-long value is a megabyte of log. [`shown`] writes control and other
//! non-printable characters as escapes (`\n`, `\r`, `\t`, `\x1b`, `\u{202e}`) and stops after
//! [`MAX_SHOWN`] characters, saying how much was left out.
//!
//! A backslash is kept as it is, so that escaping is idempotent: text escaped when an error is
//! made and again where it is logged reads the same, never `\\x1b`. (A peer's literal `\n`
//! therefore reads like an escaped newline; the log line stays one line, which is the point.)

use std::fmt;

/// Characters of peer text shown in one log field; the rest is summarised.
pub const MAX_SHOWN: usize = 200;

/// Displays `text` escaped and bounded to [`MAX_SHOWN`] characters. Costs nothing until it is
/// formatted (tracing formats a field only when its level is enabled).
pub fn shown(text: &str) -> Shown<'_> {
    Shown { text, max: MAX_SHOWN }
}

/// See [`shown`].
#[derive(Clone, Copy)]
pub struct Shown<'a> {
    text: &'a str,
    max: usize,
}

impl Shown<'_> {
    /// Another bound, in characters.
    pub fn max(self, max: usize) -> Self {
        Shown { max, ..self }
    }
}

/// True for a character shown as itself: not a control character, and not one that Rust's
/// own `escape_debug` would escape (format characters such as bidirectional overrides,
/// zero-width spaces, line and paragraph separators, unassigned code points).
pub fn is_printable(c: char) -> bool {
    if c.is_ascii() {
        return !c.is_ascii_control();
    }
    c.escape_debug().len() == 1
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, (i, c)) in self.text.char_indices().enumerate() {
            if n == self.max {
                return write!(f, "…[{} more bytes]", self.text.len() - i);
            }
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_ascii_control() => write!(f, "\\x{:02x}", c as u32)?,
                c if is_printable(c) => fmt::Write::write_char(f, c)?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_escapes() {
        assert_eq!(
            shown("a\nb\r\tc\x1b[31mred\x7f\u{0}").to_string(),
            "a\\nb\\r\\tc\\x1b[31mred\\x7f\\x00"
        );
        // C1 controls, bidi override, line separator, zero-width space, BOM.
        assert_eq!(
            shown("\u{9b}\u{202e}\u{2028}\u{200b}\u{feff}").to_string(),
            "\\u{9b}\\u{202e}\\u{2028}\\u{200b}\\u{feff}"
        );
        assert_eq!(shown("Grüße, 東京 😀").to_string(), "Grüße, 東京 😀");
    }

    #[test]
    fn idempotent_and_bounded() {
        let once = shown("x\n\x1by\\z").to_string();
        assert_eq!(shown(&once).to_string(), once);
        let long = "é".repeat(300);
        let s = shown(&long).to_string();
        assert!(s.starts_with(&"é".repeat(MAX_SHOWN)));
        assert!(s.ends_with("…[200 more bytes]"), "{s}");
        assert_eq!(shown("abcdef").max(3).to_string(), "abc…[3 more bytes]");
        assert!(is_printable('a') && is_printable('ü') && !is_printable('\u{1b}') && !is_printable('\u{2028}'));
    }
}
