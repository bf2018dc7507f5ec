use restash_backend::BackendError;
use restash_format::FormatError;
use thiserror::Error;

/// What went wrong in a repository operation. Each variant knows the exit code restic uses
/// for it, so the CLI never has to guess.
#[derive(Debug, Error)]
pub enum EngineError {
    /// No repository (or no config) at the location.
    #[error("repository does not exist: {0}")]
    NoRepository(String),
    /// No key file opened with the password.
    #[error("wrong password or no key found")]
    WrongPassword,
    /// Another process holds a conflicting lock.
    #[error("repository is already locked: {0}")]
    Locked(String),
    /// A backend call failed.
    #[error("{context}: {source}")]
    Backend {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: BackendError,
    },
    /// A repository file could not be decoded.
    #[error("{context}: {source}")]
    Format {
        /// Which file or blob.
        context: String,
        /// The cause.
        #[source]
        source: FormatError,
    },
    /// Data that decodes but is wrong: hash mismatch, missing blob, bad structure.
    #[error("{0}")]
    Corrupt(String),
    /// Something the user asked for does not exist or is ambiguous (snapshot id, path).
    #[error("{0}")]
    NotFound(String),
    /// A snapshot needed to answer the question (`latest`, an id, a backup's parent) could
    /// not be read; the message names it.
    #[error("{0}")]
    UnreadableSnapshot(String),
    /// Invalid arguments.
    #[error("{0}")]
    Usage(String),
    /// A local file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// Path and operation.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The operation finished but some parts failed; the messages name them.
    #[error("There were {} errors", .0.len())]
    Partial(Vec<String>),
    /// Stopped by SIGINT (or [`crate::events::Cancel::interrupt`]).
    #[error("interrupted")]
    Interrupted,
    /// Stopped by SIGTERM (or [`crate::events::Cancel::terminate`]): the caller is going
    /// away; what was saved is consistent and a later run reuses it.
    #[error("terminated")]
    Terminated,
    /// Stopped by SIGTERM, and uploads still under way after the grace period were left
    /// behind so that the process can end before its pod is killed.
    #[error(
        "terminated by SIGTERM; uploads still in flight after {} s were abandoned \
         (the next backup adopts what arrived)",
        grace.as_secs()
    )]
    Abandoned {
        /// The grace period that ran out.
        grace: std::time::Duration,
    },
}

impl EngineError {
    /// restic's exit code for this error (doc/075_scripting.rst).
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::NoRepository(_) => 10,
            EngineError::Locked(_) => 11,
            EngineError::WrongPassword => 12,
            EngineError::Partial(_) => 3,
            EngineError::Interrupted => 130,
            EngineError::Terminated | EngineError::Abandoned { .. } => 143,
            _ => 1,
        }
    }

    /// Whether retrying may help (a transient backend failure).
    pub fn is_retryable(&self) -> bool {
        matches!(self, EngineError::Backend { source, .. } if source.is_retryable())
    }

    pub(crate) fn backend(context: impl Into<String>) -> impl FnOnce(BackendError) -> Self {
        let context = context.into();
        move |source| match source {
            BackendError::NoRepository(loc) => EngineError::NoRepository(loc),
            source => EngineError::Backend { context, source },
        }
    }

    pub(crate) fn format(context: impl Into<String>) -> impl FnOnce(FormatError) -> Self {
        let context = context.into();
        move |source| EngineError::Format { context, source }
    }

    /// A local I/O failure while doing `context` (for callers writing an operation's
    /// output somewhere of their own).
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| EngineError::Io { context, source }
    }
}

/// Result alias of this crate.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
