//! Tollgate's configuration file.
//!
//! [`Config::load`] reads a TOML file, rejects unknown keys, fills in defaults,
//! resolves relative paths against the file's directory and runs the checks that
//! need no I/O (names unique, references resolve, addresses and URLs parse, limits
//! in range). Loading what the paths point at (certificates, trust stores, CRLs,
//! Wasm, KVS files) is the edge's job; `tollgate check` runs both.
//!
//! Every key, its default and an example are in `docs/configuration.md`; a test
//! loads that example.

mod model;

pub use model::*;

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem found in a configuration, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the problem is in (the config file, or a file it names).
    pub file: PathBuf,
    /// Where in the config (`listener "public" mtls.trust_store`), if known.
    pub context: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if !self.context.is_empty() {
            write!(f, ": {}", self.context)?;
        }
        write!(f, ": {}", self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{}", format_problems(.0))]
    Invalid(Vec<Problem>),
}

fn format_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// The problems as a list (a syntax or read error is one problem).
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            ConfigError::Read { path, source } => vec![Problem {
                file: path.clone(),
                context: String::new(),
                message: format!("cannot read: {source}"),
            }],
            ConfigError::Syntax { path, message } => vec![Problem {
                file: path.clone(),
                context: String::new(),
                message: message.clone(),
            }],
            ConfigError::Invalid(problems) => problems.clone(),
        }
    }
}

impl Config {
    /// Reads, parses and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Config::parse(&text, path, &base)
    }

    /// Parses `text` (read from `path`) resolving relative paths against `base`.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', "\n    "),
        })?;
        config.source = path.to_owned();
        config.resolve_paths(base);
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}
