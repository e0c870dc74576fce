//! Reads the annotated AMI transcripts of `fixtures/ami/` (`>>> SENT` / `<<< RECV` blocks)
//! so that tests can replay them against the codec and the simulator.

use ami::Message;

/// One step of a recorded conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The banner line, e.g. `Asterisk Call Manager/11.0.0`.
    Banner(String),
    /// What the client sent.
    Sent(Message),
    /// What the server sent.
    Recv(Message),
    /// A `###` note (names the scenario of the steps that follow).
    Note(String),
    /// The server closed the connection.
    Closed,
}

/// Parses an annotated transcript.
pub fn parse(text: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("<<< BANNER") {
            let banner = rest.split('\'').nth(1).unwrap_or("").to_string();
            steps.push(Step::Banner(banner));
        } else if line.starts_with(">>> SENT") || line.starts_with("<<< RECV") {
            let mut msg = Message::new();
            while let Some(l) = lines.peek() {
                if l.is_empty() {
                    break;
                }
                let l = lines.next().unwrap_or_default();
                // As an AMI reader takes it (the codec, and Asterisk's own astman_get_header):
                // the blanks after ':' are skipped, so ` leading` reads as `leading`.
                if let Some((name, value)) = l.split_once(':') {
                    msg.push(name, value.trim_start_matches([' ', '\t']));
                }
            }
            steps.push(if line.starts_with(">>>") {
                Step::Sent(msg)
            } else {
                Step::Recv(msg)
            });
        } else if let Some(note) = line.strip_prefix("### ") {
            if note.starts_with("server closed connection") {
                steps.push(Step::Closed);
            } else {
                steps.push(Step::Note(note.to_string()));
            }
        }
    }
    steps
}

/// Headers whose values change from run to run (clocks, random challenges, channel ids).
pub const VOLATILE: &[&str] = &[
    "Timestamp",
    "Uptime",
    "LastReload",
    "CoreStartupDate",
    "CoreStartupTime",
    "CoreReloadDate",
    "CoreReloadTime",
    "Challenge",
    "ActionID",
    "LoginTime",
    "LastCall",
];

/// The message with volatile values blanked, for comparing a simulated answer with a
/// recorded one: names and order must match, and every other value too.
pub fn normalized(m: &Message) -> Message {
    m.headers()
        .iter()
        .map(|(n, v)| {
            let v = if VOLATILE.iter().any(|x| x.eq_ignore_ascii_case(n)) {
                "*".to_string()
            } else {
                v.clone()
            };
            (n.clone(), v)
        })
        .collect()
}
