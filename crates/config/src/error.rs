//! The crate's error type.

use std::fmt;

/// Result alias used throughout this crate.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// One thing wrong with a configuration, located by its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path with array indices, e.g. `chains[0].upstreams[1].url`.
    /// Empty when the problem concerns the document as a whole.
    pub key: String,
    /// What is wrong, e.g. `must be between 1 and 1000, got 0`.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Everything that can go wrong while loading a configuration.
///
/// Every variant names the file (`file` is the origin passed to the loader), and
/// where possible the key path, so the message alone tells the operator what to fix.
/// No variant ever contains a database or upstream URL.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read config file: {source}")]
    Io {
        /// Path of the file.
        file: String,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The text is not valid TOML.
    #[error("{}", syntax(file, *line, *column, message))]
    Syntax {
        /// Origin of the text.
        file: String,
        /// 1-based line of the error, 0 when the parser did not report a position.
        line: usize,
        /// 1-based column (in characters) of the error, 0 when unknown.
        column: usize,
        /// The parser's description of the error.
        message: String,
    },

    /// A `CHAINMUX_*` environment override could not be applied.
    #[error("{file}: environment variable {var}: {message}")]
    Override {
        /// Origin of the text the override was applied to.
        file: String,
        /// Name of the environment variable.
        var: String,
        /// Why it could not be applied.
        message: String,
    },

    /// `${VAR}` interpolation failed (unset variable, bad syntax). All failures are listed.
    #[error("{}", problem_lines(file, problems))]
    Interpolation {
        /// Origin of the text.
        file: String,
        /// One entry per string value that failed.
        problems: Vec<Problem>,
    },

    /// A value has the wrong type, a required key is missing or a key is unknown.
    #[error("{}", type_error(file, key, message, set_by.as_deref()))]
    Type {
        /// Origin of the text.
        file: String,
        /// Key path of the offending value, empty for the document root.
        key: String,
        /// Deserializer message, e.g. `invalid type: integer `5`, expected a string`.
        message: String,
        /// The environment override that put the offending value there, if one did.
        set_by: Option<String>,
    },

    /// The configuration is well-formed but breaks one or more rules. All are listed.
    #[error("{}", problem_lines(file, problems))]
    Invalid {
        /// Origin of the text.
        file: String,
        /// Every rule violation found.
        problems: Vec<Problem>,
    },
}

fn syntax(file: &str, line: usize, column: usize, message: &str) -> String {
    if line == 0 {
        format!("{file}: invalid TOML: {message}")
    } else {
        format!("{file}: invalid TOML at line {line}, column {column}: {message}")
    }
}

fn type_error(file: &str, key: &str, message: &str, set_by: Option<&str>) -> String {
    let problem = Problem::new(key, message);
    match set_by {
        Some(var) => format!("{file}: {problem} (value set by environment variable {var})"),
        None => format!("{file}: {problem}"),
    }
}

fn problem_lines(file: &str, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("{file}: {p}")).collect();
    lines.join("\n")
}
