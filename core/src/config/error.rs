//! The one error type of configuration loading.

use std::fmt;

/// Why a configuration was rejected: the field path (e.g.
/// `static_resources.listeners[0].filter_chains[0].filters[0].typed_config.stat_prefix`) and what
/// is wrong with it. The path is empty for errors about the text as a whole (YAML syntax).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}
