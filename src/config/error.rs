//! The configuration subsystem's one error type, and `Problem`: one finding of
//! validation, named by its field path.

use std::fmt;
use std::io;
use std::path::PathBuf;

use serde::de::DeserializeOwned;

/// One thing wrong (or suspicious) in a file, named by its field path
/// (`peers[1].bfd.min_rx`), with what is wrong and, where it helps, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where: `asn`, `pools[0].cidrs[1]`, `peers[1].bfd.min_rx`.
    pub path: String,
    /// What is wrong, in words an operator acts on.
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration file, a services file or a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file itself could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The YAML does not have the contract's shape (unknown field, wrong type,
    /// unparseable value). serde stops at the first such error.
    #[error("{}", parse_display(field, message))]
    Parse {
        /// The field path serde was reading (`peers[0].bfd.min_rx`), empty at
        /// the top level.
        field: String,
        /// 1-based line and column, when the parser knows them.
        line: Option<usize>,
        column: Option<usize>,
        /// serde's message, which already ends with the location.
        message: String,
    },
    /// The YAML parsed but breaks rules; every broken rule is listed.
    #[error("{}", invalid_display(problems))]
    Invalid { problems: Vec<Problem> },
    /// A peer's `password_file` cannot be read.
    #[error("cannot read password_file {}: {source}", path.display())]
    PasswordRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A peer's key file is empty (an empty TCP MD5 key would delete the key
    /// instead of setting it).
    #[error("password_file {} is empty", path.display())]
    PasswordEmpty { path: PathBuf },
    /// A peer's key is longer than the kernel accepts.
    #[error(
        "password_file {}: the key is {len} bytes; TCP MD5 keys are at most {max} bytes \
         (TCP_MD5SIG_MAXKEYLEN)",
        path.display(),
        max = super::password::MAX_KEY_LEN
    )]
    PasswordTooLong { path: PathBuf, len: usize },
}

fn parse_display(field: &str, message: &str) -> String {
    if field.is_empty() {
        message.to_string()
    } else {
        format!("{field}: {message}")
    }
}

fn invalid_display(problems: &[Problem]) -> String {
    let mut text = match problems.len() {
        1 => "1 problem:".to_string(),
        n => format!("{n} problems:"),
    };
    for problem in problems {
        text.push_str("\n  ");
        text.push_str(&problem.to_string());
    }
    text
}

impl ConfigError {
    /// The individual findings: every problem of `Invalid`, or this error as
    /// one problem (with an empty path where no field is known).
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            ConfigError::Invalid { problems } => problems.clone(),
            ConfigError::Parse { field, message, .. } => {
                vec![Problem::new(field.clone(), message.clone())]
            }
            other => vec![Problem::new(String::new(), other.to_string())],
        }
    }
}

/// Parses YAML into `T`, keeping the field path of the first error (through
/// serde_path_to_error) and the line and column serde_yaml_ng reports.
pub(crate) fn parse_yaml<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError::Parse {
            field: String::new(),
            line: None,
            column: None,
            message: "the file is empty".to_string(),
        });
    }
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { String::new() } else { path };
        let inner = error.into_inner();
        let location = inner.location();
        let mut message = inner.to_string();
        // serde_yaml_ng starts some messages with its own (parent) path;
        // `field` already says where, more precisely.
        if let Some((prefix, rest)) = message.split_once(": ")
            && !prefix.contains(' ')
            && field.starts_with(prefix)
        {
            message = rest.to_string();
        }
        ConfigError::Parse {
            field,
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            message,
        }
    })
}

/// Turns collected problems into `Ok` or `ConfigError::Invalid`.
pub(crate) fn into_result(problems: Vec<Problem>) -> Result<(), ConfigError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Invalid { problems })
    }
}
