//! Asterisk's C escaping of event text, and its inverse.
//!
//! Asterisk runs a presence state's Subtype and Message through `ast_escape_c` before it
//! puts them in a PresenceStateChange event or a PresenceStateList item (main/presencestate.c):
//! `\a \b \f \n \r \t \v \\ \' \" \?` become a backslash and a letter. A message read as it
//! comes would grow a backslash at every round trip between two servers (`what's` ->
//! `what\'s` -> `what\\\'s` ...), and a mirror would never match what was written: a write
//! loop. Found on a real Asterisk 22; the escapes here are the table of main/utils.c.

use std::borrow::Cow;

/// The characters `ast_escape_c` escapes, and the letter each becomes after the backslash.
const ESCAPES: [(char, char); 11] = [
    ('\u{07}', 'a'),
    ('\u{08}', 'b'),
    ('\u{0c}', 'f'),
    ('\n', 'n'),
    ('\r', 'r'),
    ('\t', 't'),
    ('\u{0b}', 'v'),
    ('\\', '\\'),
    ('\'', '\''),
    ('"', '"'),
    ('?', '?'),
];

/// Undoes `ast_escape_c`. A backslash before any other character is kept as it is (Asterisk
/// never writes one, but a value from elsewhere may hold it).
pub fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.clone().next() {
            Some(next) => match ESCAPES.iter().find(|(_, letter)| *letter == next) {
                Some((plain, _)) => {
                    out.push(*plain);
                    chars.next();
                }
                None => out.push('\\'),
            },
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// What `ast_escape_c` makes of `s` (the simulator reports presence text through this).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| ESCAPES.iter().any(|(p, _)| *p == c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match ESCAPES.iter().find(|(p, _)| *p == c) {
            Some((_, letter)) => {
                out.push('\\');
                out.push(*letter);
            }
            None => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_asterisk_22_reports_it() {
        // Bytes of a PresenceStateChange seen on Asterisk 22.10.1 for the message
        // `back\slash "q" nl<LF>x` written with the `e` option.
        assert_eq!(unescape(r#"back\\slash \"q\" nl\nx"#), "back\\slash \"q\" nl\nx");
        assert_eq!(unescape(r"what\'s up\?"), "what's up?");
        assert_eq!(unescape(r"tab\there"), "tab\there");
        assert_eq!(unescape("café, plain"), "café, plain");
        assert_eq!(unescape(r"odd \q and end \"), r"odd \q and end \");
        for s in ["a\\b", "it's \"x\"?\n\t\u{07}", "", "\\\\"] {
            assert_eq!(unescape(&escape(s)), s);
        }
        assert_eq!(escape("what's up?"), r"what\'s up\?");
    }
}
