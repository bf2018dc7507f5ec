use thiserror::Error;

/// Why bytes could not be read as (or turned into) a repository file.
#[derive(Debug, Error)]
pub enum FormatError {
    /// Malformed JSON, with the kind of document it was meant to be.
    #[error("invalid {what} JSON: {source}")]
    Json {
        /// e.g. "tree", "index", "snapshot".
        what: &'static str,
        /// The decoder's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A hex id that is not 64 hex digits.
    #[error(transparent)]
    InvalidId(#[from] restash_id::InvalidId),
    /// A pack header or trailer that cannot be right.
    #[error("invalid pack header: {0}")]
    PackHeader(String),
    /// An unpacked file whose leading byte names no known encoding.
    #[error("unsupported encoding format {0:#04x}")]
    UnknownEncoding(u8),
    /// zstd refused the data.
    #[error("zstd: {0}")]
    Zstd(#[source] std::io::Error),
    /// Decryption or MAC check failed.
    #[error(transparent)]
    Crypto(#[from] restash_crypto::CryptoError),
    /// A value that is well-formed JSON but not valid restic (bad base64, bad name quoting…).
    #[error("{0}")]
    Invalid(String),
}

impl FormatError {
    pub(crate) fn json(what: &'static str) -> impl FnOnce(serde_json::Error) -> Self {
        move |source| FormatError::Json { what, source }
    }
}
