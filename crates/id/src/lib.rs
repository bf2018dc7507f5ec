//! The content id of the restic format: a SHA-256 digest, written as 64 lower-case hex
//! digits. Blobs are addressed by the hash of their plaintext, repository files by the
//! hash of their stored bytes.
//!
//! It lives in a crate of its own so that the storage layer can name files by id without
//! depending on the whole format.
//!
//! ```
//! use restash_id::Id;
//!
//! let id = Id::hash(b"");
//! assert_eq!(id.short(), "e3b0c442");
//! assert_eq!(id.to_string().parse::<Id>().unwrap(), id);
//! ```
#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A SHA-256 content address: of a blob's plaintext, or of a stored file's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid id {0:?}")]
pub struct InvalidId(pub String);

impl Id {
    /// SHA-256 of `data`.
    pub fn hash(data: &[u8]) -> Id {
        Id(Sha256::digest(data).into())
    }

    /// The 8-hex-digit form restic prints.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    /// Full lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits (either case, as Go's decoder accepts).
    pub fn parse(s: &str) -> Result<Id, InvalidId> {
        let mut out = [0u8; 32];
        if s.len() != 64 || hex::decode_to_slice(s, &mut out).is_err() {
            return Err(InvalidId(s.to_string()));
        }
        Ok(Id(out))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl FromStr for Id {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Id, InvalidId> {
        Id::parse(s)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Id::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_upper_case_and_rejects_junk() {
        let lower = "ac08ce34ba4f8123618661bef2425f7028ffb9ac740578a3ee88684d2523fee8";
        let id = Id::parse(&lower.to_uppercase()).unwrap();
        assert_eq!(id.to_string(), lower);
        assert_eq!(id.short(), "ac08ce34");
        assert_eq!(format!("{id:?}"), "Id(ac08ce34)");
        assert_eq!(Id::parse("ac08"), Err(InvalidId("ac08".into())));
        assert!(Id::parse(&"zz".repeat(32)).is_err());
        assert_eq!(Id::parse("x").unwrap_err().to_string(), "invalid id \"x\"");
    }

    #[test]
    fn serde_is_a_hex_string() {
        let id = Id::hash(b"");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
        assert!(serde_json::from_str::<Id>("\"ab\"").is_err());
    }
}
