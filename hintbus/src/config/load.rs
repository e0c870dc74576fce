//! The file and the environment, merged into sections, each value knowing where it came from.

use super::env;
use super::error::{ConfigError, Mistake};
use super::files::{self, ServiceUser};
use super::ini::{self, Entry, Origin, Section};
use std::cell::RefCell;
use std::path::Path;

pub struct Loaded {
    pub file: String,
    sections: Vec<Section>,
    /// Set by `--check` run as root: files are checked as this user would read them.
    pub service_user: Option<ServiceUser>,
    /// What `--check` prints and the service logs at start, besides the errors.
    warnings: RefCell<Vec<String>>,
}

/// One section (empty when neither the file nor the environment has it).
pub struct Part<'a> {
    pub loaded: &'a Loaded,
    pub name: String,
    section: Option<&'a Section>,
}

impl Loaded {
    /// Reads `path` with the process's environment. `check_as`: the service user to check the
    /// files for (see [`ServiceUser::for_check`]).
    pub fn read(path: &Path, check_as: Option<&str>) -> Result<Loaded, ConfigError> {
        let file = path.display().to_string();
        let service_user = check_as.and_then(ServiceUser::for_check);
        let text = files::read(path, service_user.as_ref()).map_err(|e| {
            let hint = if e == "no such file" {
                " (see config.ini.example)"
            } else {
                ""
            };
            ConfigError::file(&file, format!("{e}{hint}"))
        })?;
        let mut sections = ini::parse(&text).map_err(|e| {
            ConfigError::from(Mistake {
                section: e.section.unwrap_or_default(),
                origin: Some(Origin::Line(e.line)),
                ..Mistake::file(&file, e.problem)
            })
        })?;
        let loaded_warnings = lookalike_comments(&file, &sections);
        let vars = env::config_vars(std::env::vars_os()).map_err(|e| ConfigError::file(&file, e))?;
        env::apply(&mut sections, &vars).map_err(|e| ConfigError::file(&file, e))?;
        Ok(Loaded {
            file,
            sections,
            service_user,
            warnings: RefCell::new(loaded_warnings),
        })
    }

    pub fn section(&self, name: &str) -> Part<'_> {
        Part {
            loaded: self,
            name: name.to_string(),
            section: self.sections.iter().find(|s| s.name == name),
        }
    }

    /// Sections whose names start with `prefix` (`server-b`, `server-c`, ...), in file order.
    pub fn sections_with_prefix(&self, prefix: &str) -> Vec<Part<'_>> {
        self.sections
            .iter()
            .filter(|s| s.name.starts_with(prefix))
            .map(|s| self.section(&s.name))
            .collect()
    }

    /// Every section must be one of `known` (or start with one ending in '-').
    pub fn check_sections(&self, known: &[&str]) -> Result<(), ConfigError> {
        for s in &self.sections {
            let ok = known.iter().any(|k| match k.strip_suffix('-') {
                Some(_) => s.name.starts_with(k) && s.name.len() > k.len(),
                None => s.name == *k,
            });
            if !ok {
                let known = known.iter().map(|k| format!("[{k}]")).collect::<Vec<_>>().join(", ");
                return Err(self
                    .section(&s.name)
                    .section_err(format!("unknown section (known: {})", known.replace("-]", "-<id>]"))));
            }
        }
        Ok(())
    }

    pub fn warn(&self, warning: String) {
        self.warnings.borrow_mut().push(warning);
    }

    pub fn warnings(&self) -> Vec<String> {
        self.warnings.borrow().clone()
    }

    /// Reads a file the configuration names, as the service will.
    pub fn read_file(&self, path: &Path) -> Result<String, String> {
        files::read(path, self.service_user.as_ref())
    }

    /// Whether the service could read `path` (before something else reads it, as root).
    pub fn check_readable(&self, path: &Path) -> Result<(), String> {
        match &self.service_user {
            Some(u) => u.may_read(path),
            None => Ok(()),
        }
    }
}

impl<'a> Part<'a> {
    /// The set entries: an empty value is the same as no value (the default).
    pub fn entries(&self) -> impl Iterator<Item = &'a Entry> {
        self.section
            .into_iter()
            .flat_map(|s| s.entries.iter())
            .filter(|e| !e.value.is_empty())
    }

    pub fn entry(&self, key: &str) -> Option<&'a Entry> {
        self.entries().find(|e| e.key == key)
    }

    /// A mistake in `key`'s value (or its absence).
    pub fn err(&self, key: &str, problem: impl Into<String>) -> ConfigError {
        let entry = self.entry(key);
        Mistake {
            section: self.name.clone(),
            key: key.to_string(),
            value: entry.map(|e| e.value.clone()),
            origin: entry.map(|e| e.origin.clone()),
            ..Mistake::file(&self.loaded.file, problem)
        }
        .into()
    }

    /// A mistake in the section as a whole.
    pub fn section_err(&self, problem: impl Into<String>) -> ConfigError {
        Mistake {
            section: self.name.clone(),
            origin: self.section.and_then(|s| s.line).map(Origin::Line),
            ..Mistake::file(&self.loaded.file, problem)
        }
        .into()
    }
}

/// Values of the file that hold what other INI readers take for the start of a comment
/// (` ;`, ` #`): here it is part of the value (a secret may hold it), which the administrator
/// may not have meant. The value itself is not shown: it may be a secret.
fn lookalike_comments(file: &str, sections: &[Section]) -> Vec<String> {
    let mut out = Vec::new();
    for s in sections {
        for e in &s.entries {
            let Origin::Line(n) = e.origin else { continue };
            if let Some(m) = [" ;", "\t;", " #", "\t#"].iter().find(|m| e.value.contains(*m)) {
                out.push(format!(
                    "warning: {file} line {n}: [{}] {}: the value holds {m:?}, which is part of it: only a line that starts with ; or # is a comment",
                    s.name, e.key
                ));
            }
        }
    }
    out
}
