//! The INI file, line by line.
//!
//! Read here rather than by config-rs's INI format (rust-ini) because that reader changes
//! values without a word, and an AMI secret is exactly the value that must arrive as typed:
//! `\` starts an escape (`pa\ss` becomes `pass`), quotes are removed (`"x"y` becomes `xy`), and
//! a section or a key given twice is merged, the last one winning, with no line numbers to
//! report it by. The format here is the one config.ini.example shows, and nothing else:
//!
//! - `[name]` opens a section; each section appears once;
//! - `key = value`: the value is everything after the first `=`, blanks around it trimmed,
//!   taken as it is (`;`, `#`, `\` and quotes included); each key appears once per section;
//! - a line whose first non-blank character is `;` or `#` is a comment; there are no comments
//!   at the end of a line (a secret may hold ` ;`).

/// Where a value came from, for the error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of the file (1-based).
    Line(usize),
    /// An environment variable, by name.
    Env(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Line(n) => write!(f, "line {n}"),
            Origin::Env(var) => write!(f, "from {var}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct Section {
    pub name: String,
    /// The line of `[name]`; None for a section only the environment gave.
    pub line: Option<usize>,
    pub entries: Vec<Entry>,
}

/// A line the reader cannot take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    /// The section it is in, when known.
    pub section: Option<String>,
    pub problem: String,
}

/// The sections of `text`, in file order.
pub fn parse(text: &str) -> Result<Vec<Section>, LineError> {
    let mut sections: Vec<Section> = Vec::new();
    for (i, raw) in text.trim_start_matches('\u{feff}').lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        let err = |section: Option<&Section>, problem: String| LineError {
            line: n,
            section: section.map(|s| s.name.clone()),
            problem,
        };
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']').map(str::trim).filter(|s| !s.is_empty()) else {
                return Err(err(None, format!("{line:?} is not a [section] line")));
            };
            if let Some(first) = sections.iter().find(|s| s.name == name) {
                let problem = format!(
                    "appears twice, line {} and line {n}: the second would replace the first; make them one",
                    first.line.unwrap_or(0)
                );
                return Err(err(Some(first), problem));
            }
            sections.push(Section {
                name: name.to_string(),
                line: Some(n),
                entries: Vec::new(),
            });
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            let problem = format!("{line:?} is neither key = value, a [section] nor a ; comment");
            return Err(err(sections.last(), problem));
        };
        let key = key.trim();
        let Some(section) = sections.last_mut() else {
            return Err(err(None, format!("{key} is outside any [section]")));
        };
        if key.is_empty() {
            return Err(err(Some(section), format!("{line:?} has no key before '='")));
        }
        if let Some(first) = section.entries.iter().find(|e| e.key == key) {
            let problem = format!("{key} is given twice, {} and line {n}: keep one", first.origin);
            return Err(err(Some(section), problem));
        }
        section.entries.push(Entry {
            key: key.to_string(),
            value: value.trim().to_string(),
            origin: Origin::Line(n),
        });
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_taken_as_written() {
        let s = parse("; c\n[ami]\n  # c\nsecret = a ;b\\c\"d'e # f\nhost=h\n").unwrap();
        assert_eq!(s.len(), 1);
        let e = &s[0].entries;
        assert_eq!((e[0].key.as_str(), e[0].value.as_str()), ("secret", "a ;b\\c\"d'e # f"));
        assert_eq!(
            (e[1].key.as_str(), e[1].value.as_str(), &e[1].origin),
            ("host", "h", &Origin::Line(5))
        );
    }

    #[test]
    fn twice_is_an_error_naming_both_lines() {
        let e = parse("[agent]\nserver = a\n[ami]\n[agent]\n").unwrap_err();
        assert_eq!((e.line, e.section.as_deref()), (4, Some("agent")));
        assert!(e.problem.contains("line 1 and line 4"), "{}", e.problem);
        let e = parse("[ami]\nsecret = a\n\nsecret = b\n").unwrap_err();
        assert!(e.problem.starts_with("secret is given twice"), "{}", e.problem);
        assert!(e.problem.contains("line 2 and line 4"), "{}", e.problem);
    }

    #[test]
    fn stray_lines_are_errors() {
        assert!(parse("key = v\n").is_err());
        assert!(parse("[a]\njunk\n").is_err());
        assert!(parse("[a\n").is_err());
        assert!(parse("[a]\n= v\n").is_err());
    }
}
