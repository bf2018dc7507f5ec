//! Typed wrappers around [`Id`] (moved to `restash-id` so that backends can name files
//! by id without this crate): a blob id cannot be passed where a pack id is meant.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use restash_id::Id;

use crate::FormatError;

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
                Ok($name(Id::parse(s)?))
            }
            /// Full lower-case hex.
            pub fn to_hex(&self) -> String {
                self.0.to_hex()
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
        impl From<$name> for Id {
            fn from(id: $name) -> Id {
                id.0
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
