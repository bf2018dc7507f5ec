use serde::{Deserialize, Serialize};

use crate::{FormatError, GoTime};

/// A lock file: who holds the repository, since when, exclusively or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// Creation or last refresh.
    pub time: GoTime,
    /// Exclusive locks conflict with every other lock.
    pub exclusive: bool,
    /// Host of the holder.
    #[serde(default)]
    pub hostname: String,
    /// User of the holder.
    #[serde(default)]
    pub username: String,
    /// Process id of the holder.
    #[serde(default)]
    pub pid: i64,
    /// uid of the holder (omitted when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uid: u32,
    /// gid of the holder (omitted when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gid: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Lock {
    /// Decodes lock JSON.
    pub fn from_json(data: &[u8]) -> Result<Lock, FormatError> {
        serde_json::from_slice(data).map_err(FormatError::json("lock"))
    }

    /// Compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("lock serializes")
    }
}
