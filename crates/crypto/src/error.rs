use thiserror::Error;

/// Why a seal, open or key derivation failed.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum CryptoError {
    /// Shorter than IV + MAC: nothing that was ever sealed.
    #[error("ciphertext too short ({len} bytes, at least 32 needed)")]
    TooShort {
        /// The length that was offered.
        len: usize,
    },
    /// The MAC did not verify: wrong key, or the bytes were altered.
    #[error("ciphertext verification failed")]
    Unauthenticated,
    /// restic never writes an all-zero IV and refuses to open one.
    #[error("all-zero IV")]
    ZeroIv,
    /// scrypt parameters that restic would refuse.
    #[error("invalid scrypt parameters: {0}")]
    InvalidKdfParams(String),
    /// A key part that restic refuses: all zero, or of the wrong length.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
}
