use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::FormatError;

/// A SHA-256 content address: of a blob's plaintext, or of a stored file's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

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
    pub fn parse(s: &str) -> Result<Id, FormatError> {
        let mut out = [0u8; 32];
        if s.len() != 64 || hex::decode_to_slice(s, &mut out).is_err() {
            return Err(FormatError::InvalidId(s.to_string()));
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
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Id, FormatError> {
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

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Id);

        impl $name {
            /// SHA-256 of `data`.
            pub fn hash(data: &[u8]) -> Self {
                $name(Id::hash(data))
            }
            /// The 8-hex-digit form restic prints.
            pub fn short(&self) -> String {
                self.0.short()
            }
            /// Parses 64 hex digits.
            pub fn parse(s: &str) -> Result<Self, FormatError> {
                Id::parse(s).map($name)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0.short())
            }
        }
        impl FromStr for $name {
            type Err = FormatError;
            fn from_str(s: &str) -> Result<Self, FormatError> {
                Self::parse(s)
            }
        }
        impl From<Id> for $name {
            fn from(id: Id) -> Self {
                $name(id)
            }
        }
    };
}

typed_id!(
    /// SHA-256 of a blob's plaintext (data chunk or tree), before compression.
    BlobId
);
typed_id!(
    /// Storage id of a pack file under `data/`.
    PackId
);
typed_id!(
    /// Storage id of a snapshot file.
    SnapshotId
);
typed_id!(
    /// Storage id of an index file.
    IndexId
);
typed_id!(
    /// Storage id of a key file.
    KeyId
);
typed_id!(
    /// Storage id of a lock file.
    LockId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_upper_case_and_rejects_junk() {
        let lower = "ac08ce34ba4f8123618661bef2425f7028ffb9ac740578a3ee88684d2523fee8";
        let id = Id::parse(&lower.to_uppercase()).unwrap();
        assert_eq!(id.to_string(), lower);
        assert_eq!(id.short(), "ac08ce34");
        assert!(Id::parse("ac08").is_err());
        assert!(Id::parse(&"zz".repeat(32)).is_err());
        let json = serde_json::to_string(&BlobId(id)).unwrap();
        assert_eq!(json, format!("\"{lower}\""));
        let back: BlobId = serde_json::from_str(&json).unwrap();
        assert_eq!(back.0, id);
    }
}
