use std::fmt;

use chrono::{
    DateTime, Datelike, FixedOffset, Local, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Go `time.Time` as restic stores it: an instant plus the zone offset it was written in.
///
/// The offset matters: restic formats times in the process's local zone, and the bytes of a
/// tree (hence its id) change with it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GoTime(pub DateTime<FixedOffset>);

impl GoTime {
    /// A time as a person types it for restic's `find --oldest/--newest`: a date or a
    /// date and time, in the local zone unless the format has an offset.
    pub fn parse_local(s: &str) -> Result<GoTime, String> {
        let local = |n: NaiveDateTime| -> Option<GoTime> {
            Local
                .from_local_datetime(&n)
                .earliest()
                .map(|t| GoTime(t.fixed_offset()))
        };
        for f in ["%Y-%m-%d", "%d.%m.%Y"] {
            if let Ok(d) = NaiveDate::parse_from_str(s, f) {
                if let Some(t) = d.and_hms_opt(0, 0, 0).and_then(local) {
                    return Ok(t);
                }
            }
        }
        for f in [
            "%Y-%m-%d %H:%M",
            "%Y-%m-%d %H:%M:%S",
            "%d.%m.%Y %H:%M",
            "%d.%m.%Y %H:%M:%S",
        ] {
            if let Ok(n) = NaiveDateTime::parse_from_str(s, f) {
                if let Some(t) = local(n) {
                    return Ok(t);
                }
            }
        }
        for f in ["%Y-%m-%d %H:%M:%S %z", "%d.%m.%Y %H:%M:%S %z"] {
            if let Ok(t) = DateTime::parse_from_str(s, f) {
                return Ok(GoTime(t));
            }
        }
        Err(format!("unable to parse time: {s:?}"))
    }

    /// Go's zero time, `0001-01-01T00:00:00Z`: what a missing field decodes to.
    pub fn zero() -> GoTime {
        let utc = FixedOffset::east_opt(0).expect("zero offset");
        let naive = NaiveDate::from_ymd_opt(1, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .expect("valid date");
        GoTime(utc.from_utc_datetime(&naive))
    }

    /// From Unix seconds and nanoseconds, shown at `offset_secs` east of UTC.
    pub fn from_unix(secs: i64, nanos: u32, offset_secs: i32) -> Option<GoTime> {
        let off = FixedOffset::east_opt(offset_secs)?;
        let utc = DateTime::from_timestamp(secs, nanos)?;
        Some(GoTime(utc.with_timezone(&off)))
    }

    /// The current time in the local zone (TZ), as restic records snapshot and lock times.
    pub fn now_local() -> GoTime {
        let now = chrono::Local::now();
        GoTime(now.with_timezone(&now.offset().fix()))
    }

    /// Seconds since the Unix epoch.
    pub fn unix_secs(&self) -> i64 {
        self.0.timestamp()
    }

    /// The sub-second nanoseconds.
    pub fn nanos(&self) -> u32 {
        self.0.timestamp_subsec_nanos()
    }

    /// Parses RFC 3339 with 0–9 fractional digits and `Z` or `±hh:mm`.
    pub fn parse(s: &str) -> Result<GoTime, String> {
        DateTime::parse_from_rfc3339(s)
            .map(GoTime)
            .map_err(|e| format!("invalid time {s:?}: {e}"))
    }

    /// Go's `time.RFC3339Nano` JSON form: trailing zeros of the fraction dropped, `Z` for a
    /// zero offset.
    pub fn to_go_string(&self) -> String {
        let t = &self.0;
        // Go cannot marshal years outside 0..=9999; restic clamps them beforehand.
        let year = t.year().clamp(0, 9999);
        let mut s = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            year,
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        let nanos = t.nanosecond() % 1_000_000_000;
        if nanos != 0 {
            let frac = format!("{nanos:09}");
            s.push('.');
            s.push_str(frac.trim_end_matches('0'));
        }
        let off = t.offset().local_minus_utc();
        if off == 0 {
            s.push('Z');
        } else {
            let sign = if off < 0 { '-' } else { '+' };
            let a = off.abs();
            s.push_str(&format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60));
        }
        s
    }
}

impl GoTime {
    /// Go's `time.Time.String()` for a time decoded from JSON, as restic prints it in
    /// messages: `2006-01-02 15:04:05.999999999 -0700 -0700`, or `… +0000 UTC` for a
    /// zero offset (a decoded time has no zone name, only its offset).
    pub fn to_go_text(&self) -> String {
        let base = self.0.format("%Y-%m-%d %H:%M:%S");
        let nanos = self.nanos();
        let frac = if nanos == 0 {
            String::new()
        } else {
            format!(".{nanos:09}").trim_end_matches('0').to_string()
        };
        let off = self.0.format("%z").to_string();
        let zone = if self.0.offset().local_minus_utc() == 0 {
            "UTC".to_string()
        } else {
            off.clone()
        };
        format!("{base}{frac} {off} {zone}")
    }
}

impl Default for GoTime {
    fn default() -> Self {
        GoTime::zero()
    }
}

impl fmt::Debug for GoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_go_string())
    }
}

impl fmt::Display for GoTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_go_string())
    }
}

impl Serialize for GoTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_go_string())
    }
}

impl<'de> Deserialize<'de> for GoTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<GoTime, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        GoTime::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_times_in_restic_formats() {
        let with_zone = GoTime::parse_local("2024-02-03 04:05:06 +0200").unwrap();
        assert_eq!(with_zone.0.to_rfc3339(), "2024-02-03T04:05:06+02:00");
        for s in [
            "2024-02-03",
            "03.02.2024",
            "2024-02-03 04:05",
            "03.02.2024 04:05:06",
        ] {
            let t = GoTime::parse_local(s).unwrap();
            assert_eq!((t.0.year(), t.0.month(), t.0.day()), (2024, 2, 3), "{s}");
        }
        let err = GoTime::parse_local("yesterday").unwrap_err();
        assert_eq!(err, "unable to parse time: \"yesterday\"");
    }

    #[test]
    fn go_formatting() {
        for s in [
            "2020-01-02T03:04:05.6Z",
            "1970-01-01T00:00:02Z",
            "2026-11-24T08:51:45.609858272+05:30",
            "2020-01-02T03:04:05.00000012-07:00",
            "0001-01-01T00:00:00Z",
        ] {
            assert_eq!(GoTime::parse(s).unwrap().to_go_string(), s);
        }
        assert_eq!(GoTime::zero().to_go_string(), "0001-01-01T00:00:00Z");
        let t = GoTime::from_unix(2, 500, 0).unwrap();
        assert_eq!(t.to_go_string(), "1970-01-01T00:00:02.0000005Z");
        assert_eq!((t.unix_secs(), t.nanos()), (2, 500));
    }
}
