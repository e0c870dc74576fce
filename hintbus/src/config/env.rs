//! Environment overrides: `HINTBUS_<SECTION>__<KEY>=value` sets `key` of `[section]`, over the
//! file's value.
//!
//! A variable name holds only letters, digits and `_`, while a section may be `[server-b]` or
//! `[server-pbx.north]` and a server id (a key of `[agents]`) may hold `-` and `.`. So names are
//! matched as they are spelt in a variable: upper case, with `-` and `.` written as `_`
//! (`HINTBUS_SERVER_PBX_NORTH__PORT` is `[server-pbx.north] port`). A section or key of the
//! file that spells so is the one set; otherwise the name is taken in lower case, which is how
//! every fixed section and key is written. Two names of the file that spell the same are an
//! error, never a guess. An agentless server is declared in the file (its id cannot be spelt
//! back from a variable): for a `[server-...]` section the file does not have, the variable is
//! an error.
//!
//! Values are taken verbatim: not trimmed, no comment cut off.

use super::ini::{Entry, Origin, Section};

pub const PREFIX: &str = "HINTBUS_";

/// The sections a variable may create when the file does not have them: the known ones of a
/// fixed name (`server-<id>` must be in the file).
fn fixed(name: &str) -> bool {
    super::KNOWN_SECTIONS.contains(&name) && !name.ends_with('-')
}

/// A name as a variable spells it.
pub fn spell(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// The variable that overrides `key` of `[section]`.
pub fn var(section: &str, key: &str) -> String {
    format!("{PREFIX}{}__{}", spell(section), spell(key))
}

/// The configuration variables of `vars` (`HINTBUS_<SECTION>__<KEY>`): others, such as
/// `HINTBUS_LOG`, are not configuration keys.
pub fn config_vars(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (k, v) in vars {
        let Some(k) = k.to_str().filter(|k| k.starts_with(PREFIX) && k.contains("__")) else {
            continue;
        };
        let v = v.into_string().map_err(|_| format!("{k}: the value is not UTF-8"))?;
        out.push((k.to_string(), v));
    }
    out.sort();
    Ok(out)
}

/// Applies `vars` to `sections`.
pub fn apply(sections: &mut Vec<Section>, vars: &[(String, String)]) -> Result<(), String> {
    for (var, value) in vars {
        let rest = &var[PREFIX.len()..];
        let (sec, key) = rest.split_once("__").expect("config_vars keeps names with __");
        if sec.is_empty() || key.is_empty() || key.contains("__") {
            return Err(format!(
                "{var}: expected {PREFIX}<SECTION>__<KEY>, e.g. HINTBUS_AMI__SECRET"
            ));
        }
        let matching: Vec<usize> = (0..sections.len())
            .filter(|&i| spell(&sections[i].name) == sec)
            .collect();
        let index = match matching[..] {
            [i] => i,
            [i, j, ..] => {
                return Err(format!(
                    "{var}: both [{}] and [{}] are spelt {sec} in a variable name: rename one to override it from the environment",
                    sections[i].name, sections[j].name
                ))
            }
            [] => {
                let name = sec.to_ascii_lowercase();
                if !fixed(&name) {
                    let hint = if name.starts_with("server_") {
                        " (an agentless server is declared by its [server-<id>] section in the file; the environment overrides its keys)"
                    } else {
                        ""
                    };
                    return Err(format!("{var}: the file has no section spelt {sec}{hint}"));
                }
                sections.push(Section {
                    name,
                    line: None,
                    entries: Vec::new(),
                });
                sections.len() - 1
            }
        };
        let section = &mut sections[index];
        let keys: Vec<usize> = (0..section.entries.len())
            .filter(|&i| spell(&section.entries[i].key) == key)
            .collect();
        let origin = Origin::Env(var.clone());
        match keys[..] {
            [i] => {
                let e = &mut section.entries[i];
                e.value = value.clone();
                e.origin = origin;
            }
            [i, j, ..] => {
                return Err(format!(
                    "{var}: both {} and {} of [{}] are spelt {key} in a variable name",
                    section.entries[i].key, section.entries[j].key, section.name
                ))
            }
            [] => section.entries.push(Entry {
                key: key.to_ascii_lowercase(),
                value: value.clone(),
                origin,
            }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ini::parse;

    fn set(text: &str, vars: &[(&str, &str)]) -> Result<Vec<Section>, String> {
        let mut s = parse(text).unwrap();
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        apply(&mut s, &vars).map(|()| s)
    }

    #[test]
    fn server_sections_are_reached_by_their_spelling() {
        let s = set(
            "[server-pbx.north]\nport = 1\n[agents]\npbx.north = k\n",
            &[
                ("HINTBUS_SERVER_PBX_NORTH__PORT", "2"),
                ("HINTBUS_AGENTS__PBX_NORTH", " j ;x"),
            ],
        )
        .unwrap();
        assert_eq!(s[0].entries[0].value, "2");
        assert_eq!(
            s[0].entries[0].origin,
            Origin::Env("HINTBUS_SERVER_PBX_NORTH__PORT".into())
        );
        assert_eq!(
            (s[1].entries[0].key.as_str(), s[1].entries[0].value.as_str()),
            ("pbx.north", " j ;x")
        );
        assert_eq!(var("server-pbx.north", "port"), "HINTBUS_SERVER_PBX_NORTH__PORT");
    }

    #[test]
    fn fixed_sections_are_created_others_refused() {
        let s = set("", &[("HINTBUS_AMI__SECRET", "x")]).unwrap();
        assert_eq!((s[0].name.as_str(), s[0].entries[0].key.as_str()), ("ami", "secret"));
        assert!(set("", &[("HINTBUS_SERVER_B__PORT", "1")])
            .unwrap_err()
            .contains("declared"));
        assert!(
            set("[server-a-b]\n[server-a.b]\n", &[("HINTBUS_SERVER_A_B__PORT", "1")])
                .unwrap_err()
                .contains("both")
        );
    }
}
