//! Errors callers branch on. Everything else travels as `anyhow` to the edge.

use std::fmt;
use std::path::PathBuf;

/// A failure of a host primitive, shown to the script as a runtime error.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("path '{path}' {reason}")]
    Path { path: String, reason: String },
    #[error("{path}:{line}:{column}: {message}")]
    MalformedJson { path: String, line: usize, column: usize, message: String },
    #[error("{} is locked by {holder}", path.display())]
    Locked { path: PathBuf, holder: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

impl HostError {
    pub(crate) fn path(path: &str, reason: impl Into<String>) -> Self {
        Self::Path { path: path.to_string(), reason: reason.into() }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }

    /// Whether the file (or a folder on the way to it) is not there.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// A command-line mistake: exit code 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The user pressed Ctrl-C (or the process got SIGTERM or SIGHUP): exit code
/// 128 + the signal (`cancel::exit_code`).
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// A script stopped on purpose with `exit(code)` or `fail(message, code)`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ScriptExit {
    pub(crate) code: i32,
    pub(crate) message: String,
}

/// The exit code for an error that reached `main`.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if let Some(exit) = err.downcast_ref::<ScriptExit>() {
        return exit.code;
    }
    if err.downcast_ref::<UsageError>().is_some() {
        return 2;
    }
    if err.downcast_ref::<Interrupted>().is_some() {
        return crate::cancel::exit_code();
    }
    1
}
