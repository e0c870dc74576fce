//! A configuration mistake, said the way an administrator needs to read it: the file, the
//! section, the key, the value, and where that value came from (a line, or a variable).

use super::env;
use super::ini::Origin;

#[derive(Debug, thiserror::Error)]
#[error("{}", self.0.describe())]
pub struct ConfigError(Box<Mistake>);

impl From<Mistake> for ConfigError {
    fn from(m: Mistake) -> ConfigError {
        ConfigError(Box::new(m))
    }
}

impl ConfigError {
    /// A mistake about the file as a whole, or an environment variable.
    pub fn file(file: &str, problem: impl Into<String>) -> ConfigError {
        Mistake::file(file, problem).into()
    }
}

/// What a [`ConfigError`] says (boxed there: errors travel through every `?` of the loader).
#[derive(Debug)]
pub struct Mistake {
    pub file: String,
    /// Empty: a mistake outside any section.
    pub section: String,
    /// Empty: the section itself.
    pub key: String,
    /// None: the key is not set.
    pub value: Option<String>,
    /// Where the value (or the section) is.
    pub origin: Option<Origin>,
    pub problem: String,
}

impl Mistake {
    pub fn file(file: &str, problem: impl Into<String>) -> Mistake {
        Mistake {
            file: file.to_string(),
            section: String::new(),
            key: String::new(),
            value: None,
            origin: None,
            problem: problem.into(),
        }
    }

    fn describe(&self) -> String {
        let (file, section, key, problem) = (&self.file, &self.section, &self.key, &self.problem);
        let at = match &self.origin {
            Some(o) => format!(" ({o})"),
            None => String::new(),
        };
        if section.is_empty() {
            return match &self.origin {
                Some(o) => format!("{file}: {o}: {problem}"),
                None => format!("{file}: {problem}"),
            };
        }
        if key.is_empty() {
            return format!("{file}: [{section}]: {problem}{at}");
        }
        match &self.value {
            // Never a secret in a log or on a terminal.
            Some(_) if key == "secret" || key == "token" => {
                format!("{file}: [{section}] {key} = \"***\": {problem}{at}")
            }
            Some(v) => format!("{file}: [{section}] {key} = {v:?}: {problem}{at}"),
            None => format!(
                "{file}: [{section}] {key}: {problem} (not set: give it in the file or as {})",
                env::var(section, key)
            ),
        }
    }
}
