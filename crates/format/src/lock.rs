use serde::{Deserialize, Serialize};

use crate::gojson::null_as_default;
use crate::{FormatError, GoTime};

/// A lock file: who holds the repository, since when, exclusively or not.
///
/// Every field may be absent or `null` and reads as Go's zero value: a lock without a time
/// is as old as can be, hence stale, and one without `exclusive` is shared, as in restic.
/// Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// Creation or last refresh.
    #[serde(default, deserialize_with = "null_as_default")]
    pub time: GoTime,
    /// Exclusive locks conflict with every other lock.
    #[serde(default, deserialize_with = "null_as_default")]
    pub exclusive: bool,
    /// Host of the holder.
    #[serde(default, deserialize_with = "null_as_default")]
    pub hostname: String,
    /// User of the holder.
    #[serde(default, deserialize_with = "null_as_default")]
    pub username: String,
    /// Process id of the holder.
    #[serde(default, deserialize_with = "null_as_default")]
    pub pid: i64,
    /// uid of the holder (omitted when 0).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub uid: u32,
    /// gid of the holder (omitted when 0).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_lock_round_trips() {
        let json = r#"{"time":"2026-11-24T03:21:56.101476311Z","exclusive":true,"hostname":"vm","username":"root","pid":4242,"uid":1000,"gid":100}"#;
        let l = Lock::from_json(json.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(l.to_json()).unwrap(), json);
    }

    #[test]
    fn every_field_is_optional() {
        let empty = Lock::from_json(b"{}").unwrap();
        assert_eq!(empty.time, GoTime::zero());
        assert!(!empty.exclusive && empty.hostname.is_empty() && empty.pid == 0);
        assert_eq!(
            String::from_utf8(empty.to_json()).unwrap(),
            r#"{"time":"0001-01-01T00:00:00Z","exclusive":false,"hostname":"","username":"","pid":0}"#
        );
        let nulls = br#"{"time":null,"exclusive":null,"hostname":null,"username":null,"pid":null,"uid":null,"gid":null}"#;
        assert_eq!(Lock::from_json(nulls).unwrap(), empty);
        let extra =
            br#"{"time":"2026-11-24T03:21:56Z","exclusive":true,"program":"rustic","paths":["/"]}"#;
        assert!(Lock::from_json(extra).unwrap().exclusive);
    }
}
