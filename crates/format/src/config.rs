use serde::{Deserialize, Serialize};

use crate::gojson::null_as_default;
use crate::FormatError;

/// The repository `config`: version, unique id and the chunker polynomial.
///
/// An absent `version` reads as 0, as in Go, so the caller's range check reports restic's
/// "unsupported repository version 0". `id` and `chunker_polynomial` are required: a
/// repository without them cannot be cached or written to, and Go would only fail later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Repository format version, 1 or 2 (0 when absent, which no reader accepts).
    #[serde(default, deserialize_with = "null_as_default")]
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

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4d19d56368f085a94f3874f44ed786bcc354cf9f9a31703f152c25df18e63547";

    #[test]
    fn restic_config_round_trips() {
        let json = format!(r#"{{"version":2,"id":"{ID}","chunker_polynomial":"2da3cbccd3a6b5"}}"#);
        let c = Config::from_json(json.as_bytes()).unwrap();
        assert_eq!(c.polynomial().unwrap(), 0x2da3cbccd3a6b5);
        assert_eq!(c.to_json(), json.as_bytes());
    }

    #[test]
    fn only_required_fields_and_unknown_fields() {
        let c = Config::from_json(
            format!(r#"{{"id":"{ID}","chunker_polynomial":"2da3cbccd3a6b5"}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(
            c.version, 0,
            "Go's zero value; the repository layer rejects it"
        );
        let c = Config::from_json(
            format!(
                r#"{{"version":2,"id":"{ID}","chunker_polynomial":"2da3cbccd3a6b5","extra":{{"a":[1,null]}},"note":null}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(c.version, 2);
    }

    #[test]
    fn missing_id_or_polynomial_is_named() {
        let err = Config::from_json(br#"{"version":2,"chunker_polynomial":"2da3cbccd3a6b5"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `id`"), "{err}");
        let err = Config::from_json(format!(r#"{{"version":2,"id":"{ID}"}}"#).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `chunker_polynomial`"), "{err}");
    }
}
