//! Where a remote state lands on this server: a name template such as `Custom:{device}`.
//!
//! Fields: `{device}` (the remote name, `SIP/100`), `{resource}` (the part after the
//! technology, `100`), `{tech}` (`SIP`), `{origin}` (the remote server id). Only `Custom:`
//! devices and `CustomPresence:` presentities can be written, so a template must produce one.
//!
//! Mailboxes (`100@default`) have their own fields: `{mailbox}` (`100`), `{context}`
//! (`default`) and `{origin}`; their template gives either a mailbox name for MWIUpdate
//! (`{mailbox}@{context}`, anything res_mwi_external takes) or a `Custom:` device for a lamp
//! on a key (`Custom:MWI{mailbox}`).

use proto::entry::valid_name;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    prefix: &'static str,
    /// A mailbox template: fields of [`MAILBOX_FIELDS`].
    mailbox: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("must start with {0:?} (only those can be written through AMI)")]
    Prefix(&'static str),
    #[error("unknown field {{{0}}}: use {{device}}, {{resource}}, {{tech}} or {{origin}}")]
    Field(String),
    #[error("unknown field {{{0}}}: use {{mailbox}}, {{context}} or {{origin}}")]
    MailboxField(String),
    #[error("must contain {{device}} or {{resource}}, or every remote state lands on one name")]
    NoName,
    #[error("must contain {{mailbox}}, or every remote mailbox lands on one name")]
    NoMailbox,
    #[error("holds a character that cannot be in a device name (control, comma, parenthesis)")]
    BadChar,
}

/// Why one remote name cannot be mirrored here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{target:?} cannot be written: {why}")]
pub struct NameError {
    pub target: String,
    pub why: &'static str,
}

const FIELDS: [&str; 4] = ["device", "resource", "tech", "origin"];
const MAILBOX_FIELDS: [&str; 3] = ["mailbox", "context", "origin"];

impl Template {
    /// A device template (`Custom:...`).
    pub fn device(text: &str) -> Result<Template, TemplateError> {
        Self::parse(text, "Custom:")
    }

    /// A presence template (`CustomPresence:...`).
    pub fn presence(text: &str) -> Result<Template, TemplateError> {
        Self::parse(text, "CustomPresence:")
    }

    /// A mailbox template for MWIUpdate (`{mailbox}@{context}`).
    pub fn mailbox(text: &str) -> Result<Template, TemplateError> {
        Self::parse_as(text, "", true)
    }

    /// A mailbox template for a lamp on a key (`Custom:MWI{mailbox}`).
    pub fn mailbox_lamp(text: &str) -> Result<Template, TemplateError> {
        Self::parse_as(text, "Custom:", true)
    }

    fn parse(text: &str, prefix: &'static str) -> Result<Template, TemplateError> {
        Self::parse_as(text, prefix, false)
    }

    fn parse_as(text: &str, prefix: &'static str, mailbox: bool) -> Result<Template, TemplateError> {
        if !text.starts_with(prefix) || (prefix == "Custom:" && text.starts_with("CustomPresence:")) {
            return Err(TemplateError::Prefix(prefix));
        }
        let mut rest = text;
        let mut has_name = false;
        let mut literal = String::new();
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| TemplateError::Field(rest[open + 1..].to_string()))?
                + open;
            let field = &rest[open + 1..close];
            if mailbox {
                if !MAILBOX_FIELDS.contains(&field) {
                    return Err(TemplateError::MailboxField(field.to_string()));
                }
                has_name |= field == "mailbox";
            } else {
                if !FIELDS.contains(&field) {
                    return Err(TemplateError::Field(field.to_string()));
                }
                has_name |= field == "device" || field == "resource";
            }
            rest = &rest[close + 1..];
        }
        literal.push_str(rest);
        if !has_name {
            return Err(if mailbox {
                TemplateError::NoMailbox
            } else {
                TemplateError::NoName
            });
        }
        if literal
            .chars()
            .any(|c| c.is_control() || matches!(c, '(' | ')' | ',' | '"' | '\\'))
        {
            return Err(TemplateError::BadChar);
        }
        Ok(Template {
            text: text.to_string(),
            prefix,
            mailbox,
        })
    }

    /// The local name of `origin`'s `name`, checked against Asterisk's limits.
    pub fn render(&self, origin: &str, name: &str) -> Result<String, NameError> {
        let out = if self.mailbox {
            // app_voicemail names a mailbox `mailbox@context`; without a context it is in
            // `default`.
            let (mailbox, context) = name.split_once('@').unwrap_or((name, "default"));
            self.text
                .replace("{mailbox}", mailbox)
                .replace("{context}", context)
                .replace("{origin}", origin)
        } else {
            let (tech, resource) = split(name);
            self.text
                .replace("{device}", name)
                .replace("{resource}", resource)
                .replace("{tech}", tech)
                .replace("{origin}", origin)
        };
        if self.prefix == "Custom:" && out.len() > ami::state::MAX_DEVICE_LEN {
            return Err(NameError {
                target: out,
                why: "longer than Asterisk's 79-character device limit",
            });
        }
        if !valid_name(&out) && out.len() <= ami::state::MAX_DEVICE_LEN {
            return Err(NameError {
                target: out,
                why: "holds a character Asterisk cannot take in a name",
            });
        }
        if out.len() > 200 || out.chars().any(|c| c.is_control()) {
            return Err(NameError {
                target: out,
                why: "too long or holds control characters",
            });
        }
        Ok(out)
    }
}

impl Template {
    /// The remote name `name` could be the mirror of under this template (`Custom:SIP/100` ->
    /// `SIP/100` for `Custom:{device}`), when it has the template's shape. A template without
    /// `{device}` gives the resource (the technology is not in the name). Literal parts match
    /// exactly; each field takes the shortest text that lets the rest match.
    pub fn strip(&self, name: &str) -> Option<String> {
        let parts = self.parts();
        let mut captured: Option<&str> = None;
        match_parts(&parts, name, &mut captured)
            .then_some(captured)
            .flatten()
            .map(str::to_string)
    }

    /// How many times `name` is this template applied to a name of its shape: 0 for a name of
    /// another shape, 1 for a mirror, 2 for a mirror of a mirror ... A template that maps a
    /// name of its own shape to itself (`CustomPresence:{resource}`) has no nesting: 0 or 1.
    pub fn depth(&self, name: &str) -> usize {
        let mut depth = 0;
        let mut current = name.to_string();
        while let Some(inner) = self.strip(&current) {
            depth += 1;
            if inner.len() >= current.len() || depth >= 8 {
                break;
            }
            current = inner;
        }
        depth
    }

    /// Whether two servers' names can land on one of this server's own names unchanged: the
    /// template maps a name of its own shape to itself (`CustomPresence:{resource}` takes
    /// `CustomPresence:100` of a to `CustomPresence:100` here, where this server may have its
    /// own `CustomPresence:100`).
    pub fn can_collide(&self) -> bool {
        let sample = format!("{}x1", self.prefix);
        self.render("o", &sample).is_ok_and(|t| t == sample)
    }

    fn parts(&self) -> Vec<Part<'_>> {
        let mut out = Vec::new();
        let mut rest = self.text.as_str();
        while let Some(open) = rest.find('{') {
            if open > 0 {
                out.push(Part::Literal(&rest[..open]));
            }
            let close = rest[open..].find('}').map_or(rest.len(), |c| c + open);
            out.push(Part::Field(&rest[open + 1..close]));
            rest = rest.get(close + 1..).unwrap_or("");
        }
        if !rest.is_empty() {
            out.push(Part::Literal(rest));
        }
        out
    }
}

#[derive(Debug, Clone, Copy)]
enum Part<'a> {
    Literal(&'a str),
    Field(&'a str),
}

/// Matches `name` against template parts; `captured` gets `{device}` (or `{resource}`), a
/// slice of `name`: nothing is allocated while candidates are tried (this runs for every
/// event on a name that is not a mirror).
fn match_parts<'n>(parts: &[Part<'_>], name: &'n str, captured: &mut Option<&'n str>) -> bool {
    match parts.split_first() {
        None => name.is_empty(),
        Some((Part::Literal(l), rest)) => name.strip_prefix(l).is_some_and(|n| match_parts(rest, n, captured)),
        Some((Part::Field(f), rest)) => {
            // Shortest non-empty capture first.
            for end in (1..=name.len()).filter(|e| name.is_char_boundary(*e)) {
                let mut inner = *captured;
                if *f == "device" || (*f == "resource" && inner.is_none()) {
                    inner = Some(&name[..end]);
                }
                if match_parts(rest, &name[end..], &mut inner) {
                    *captured = inner;
                    return true;
                }
            }
            false
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `SIP/100` -> (`SIP`, `100`); `Custom:DND100` -> (`Custom`, `DND100`).
fn split(name: &str) -> (&str, &str) {
    for sep in [':', '/'] {
        if let Some(i) = name.find(sep) {
            // `Custom:SIP/100`: the technology is what comes before the first separator.
            let j = name.find([':', '/']).unwrap_or(i);
            return (&name[..j], &name[j + 1..]);
        }
    }
    ("", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_templates() {
        let t = Template::mailbox("{mailbox}@{context}").unwrap();
        assert_eq!(t.render("a", "100@default").unwrap(), "100@default");
        assert_eq!(
            t.render("a", "100").unwrap(),
            "100@default",
            "no context: app_voicemail's default"
        );
        let t = Template::mailbox("{mailbox}@{origin}").unwrap();
        assert_eq!(t.render("vm1", "100@sales").unwrap(), "100@vm1");
        let t = Template::mailbox_lamp("Custom:MWI{mailbox}").unwrap();
        assert_eq!(t.render("a", "100@default").unwrap(), "Custom:MWI100");
        assert_eq!(Template::mailbox("{context}"), Err(TemplateError::NoMailbox));
        assert_eq!(
            Template::mailbox("{device}"),
            Err(TemplateError::MailboxField("device".into()))
        );
        assert_eq!(
            Template::mailbox_lamp("MWI{mailbox}"),
            Err(TemplateError::Prefix("Custom:"))
        );
        assert!(t.render("a", "1\r\nAction: x@d").is_err());
    }

    #[test]
    fn renders_and_validates() {
        let t = Template::device("Custom:{device}").unwrap();
        assert_eq!(t.render("a", "SIP/100").unwrap(), "Custom:SIP/100");
        assert_eq!(t.render("a", "Custom:DND100").unwrap(), "Custom:Custom:DND100");
        let t = Template::device("Custom:{resource}*{origin}").unwrap();
        assert_eq!(t.render("b", "SIP/100").unwrap(), "Custom:100*b");
        let t = Template::presence("CustomPresence:{resource}").unwrap();
        assert_eq!(t.render("b", "CustomPresence:100").unwrap(), "CustomPresence:100");
        assert_eq!(Template::device("SIP/{device}"), Err(TemplateError::Prefix("Custom:")));
        assert_eq!(
            Template::device("CustomPresence:{device}"),
            Err(TemplateError::Prefix("Custom:"))
        );
        assert_eq!(
            Template::device("Custom:{dev}"),
            Err(TemplateError::Field("dev".into()))
        );
        assert_eq!(Template::device("Custom:{origin}"), Err(TemplateError::NoName));
        assert_eq!(Template::device("Custom:x,{device}"), Err(TemplateError::BadChar));
        let d = Template::device("Custom:{device}").unwrap();
        assert_eq!(d.strip("Custom:SIP/100").as_deref(), Some("SIP/100"));
        assert_eq!(d.depth("SIP/100"), 0);
        assert_eq!(d.depth("Custom:DND100"), 1);
        assert_eq!(d.depth("Custom:Custom:Custom:SIP/100"), 3);
        let o = Template::device("Custom:{resource}*{origin}").unwrap();
        assert_eq!(o.strip("Custom:100*b").as_deref(), Some("100"));
        assert_eq!(
            o.depth("Custom:Custom:100*a*b"),
            1,
            "the inner name is not of its shape"
        );
        let p = Template::presence("CustomPresence:{resource}").unwrap();
        assert_eq!(p.depth("CustomPresence:100"), 1, "no nesting");
        assert!(p.can_collide());
        assert!(!d.can_collide());
        assert!(!Template::device("Custom:{device}@{origin}").unwrap().can_collide());
        assert!(Template::device("Custom:{resource}").unwrap().can_collide());
        let long = "x".repeat(75);
        assert!(Template::device("Custom:{device}")
            .unwrap()
            .render("a", &format!("SIP/{long}"))
            .is_err());
    }
}
