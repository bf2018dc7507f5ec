use serde::{Deserialize, Serialize};

use crate::FormatError;

/// The repository `config`: version, unique id and the chunker polynomial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Repository format version, 1 or 2.
    pub version: u32,
    /// 64 hex digits, unique per repository.
    pub id: String,
    /// The Rabin polynomial as lower-case hex without `0x`.
    pub chunker_polynomial: String,
}

impl Config {
    /// Decodes the decrypted config (never compressed, even in v2).
    pub fn from_json(data: &[u8]) -> Result<Config, FormatError> {
        serde_json::from_slice(data).map_err(FormatError::json("config"))
    }

    /// Compact JSON with no newline, as restic writes it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("config serializes")
    }

    /// The polynomial as a number (hex of either case).
    pub fn polynomial(&self) -> Result<u64, FormatError> {
        u64::from_str_radix(&self.chunker_polynomial, 16).map_err(|_| {
            FormatError::Invalid(format!(
                "invalid chunker polynomial {:?}",
                self.chunker_polynomial
            ))
        })
    }

    /// A new config with a random id.
    pub fn new(version: u32, polynomial: u64) -> Config {
        let id: [u8; 32] = rand::random();
        Config {
            version,
            id: hex::encode(id),
            chunker_polynomial: format!("{polynomial:x}"),
        }
    }
}
