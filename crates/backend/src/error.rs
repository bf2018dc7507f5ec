use thiserror::Error;

/// A backend failure, with enough context to act on it.
#[derive(Debug, Error)]
pub enum BackendError {
    /// The file does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
    /// A create-only write found the file already there.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The repository location itself is missing.
    #[error("repository {0} does not exist")]
    NoRepository(String),
    /// A read returned fewer bytes than asked.
    #[error("{what}: wanted {wanted} bytes at offset {offset}, got {got}")]
    ShortRead {
        /// The file.
        what: String,
        /// Requested offset.
        offset: u64,
        /// Requested length.
        wanted: u64,
        /// Bytes available.
        got: u64,
    },
    /// An I/O error with the path or object it concerns.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, to what.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The backend cannot be used as configured: a bad URL, an unknown option or missing
    /// credentials. Never retryable.
    #[error("{0}")]
    Config(String),
    /// The TLS handshake with `host` failed in a way no retry cures: its certificate was
    /// refused (unknown issuer, expired, another name), or it refused ours.
    #[error("{context}: TLS handshake with {host} failed: {reason}")]
    Tls {
        /// What was being done, to what.
        context: String,
        /// `host[:port]` of the server.
        host: String,
        /// Why, in words.
        reason: String,
    },
    /// Any other failure; `retryable` says whether trying again may help.
    #[error("{message}")]
    Other {
        /// Description.
        message: String,
        /// Whether a retry may succeed.
        retryable: bool,
    },
}

impl BackendError {
    /// Whether retrying the same call may succeed (network hiccups, throttling).
    pub fn is_retryable(&self) -> bool {
        match self {
            BackendError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::WouldBlock
            ),
            BackendError::Other { retryable, .. } => *retryable,
            _ => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackendError {
        let context = context.into();
        move |source| BackendError::Io { context, source }
    }
}
