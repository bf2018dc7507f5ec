use crate::Pol;

/// Errors from building polynomials and chunker parameters.
///
/// Chunking itself cannot fail; only the streaming adapter reports I/O errors, as
/// [`std::io::Error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkerError {
    /// The text is not 1 to 16 hexadecimal digits.
    #[error("invalid chunker polynomial {0:?}: expected 1 to 16 hex digits")]
    InvalidHex(String),
    /// The polynomial's degree cannot drive the 64-bit rolling hash.
    #[error("chunker polynomial {0} has an unusable degree (must be 8 to 56)")]
    UnusableDegree(Pol),
    /// The polynomial factors over GF(2); restic refuses such a repository config.
    #[error("invalid chunker polynomial {0}: not irreducible")]
    Reducible(Pol),
    /// [`Pol::random`] gave up.
    #[error("unable to find a random irreducible polynomial in {0} tries")]
    NoIrreduciblePolynomial(u32),
    /// The random number generator failed.
    #[error("random number generator failed: {0}")]
    Random(String),
    /// Minimum, average or maximum chunk size out of range or out of order.
    #[error("invalid chunk sizes: {0}")]
    InvalidSizes(String),
}
